"""Re-planning the rest of a running day: one path for every re-plan.

Replay's intraday re-plans (:mod:`scheduler.dayrunner`), the live service's re-plans (its
planner, on the vintage issued at the boundary) and the re-plan after a site loses capacity
(the settlement engine's ``replan``) all make the problem of the work left here,
:func:`rest_of_day`, from where the day stands (:class:`RunState`) and a supply view: the
forecast the caller plans on, never the day's actual supply (that would be perfect
foresight). The rest keeps every setting of the day (caps, ``limits_on``, user regions, site
moves), ramps from the load running at the boundary, starts from the energy stored then and
plans only the work left, on the sites still live.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from scheduler.horizon import Horizon, rows_in
from scheduler.jobs import max_gpus_to_fit, work_units
from scheduler.policies import Policy
from scheduler.problem import Problem

__all__ = ["Replan", "RunState", "policy_replan", "rest_of_day"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunState:
    """Where a running day stands at a boundary: work left per job [GPU-h] from
    ``from_time`` on (a slot boundary; a time inside a slot means from the next one), each
    site's load in the slot before [MW] (``None``: unknown, no ramp from it), the GPUs live
    per site (``None``: every site's configured GPUs) and each storage unit's energy then, in
    the day's unit order [MWh] (``None``: the day's starting energy)."""

    from_time: pd.Timestamp
    remaining_gpu_hours: Mapping[str, float]
    load_before_mw: Mapping[str, float] | None = None
    live_gpus: Mapping[str, float] | None = None
    stored_mwh: tuple[float, ...] | None = None


Replan = Callable[[RunState], pd.DataFrame | None]
"""``replan(state) -> plan table`` of the work left (``None``: nothing could be planned)."""


def rest_of_day(
    problem: Problem, state: RunState, supply: pd.DataFrame | None = None
) -> Problem | None:
    """The rest of ``problem`` from the first slot at or after ``state.from_time``: the work
    left per job on the sites still live (their GPUs), planned on ``supply`` (a supply table
    covering the day; default: ``problem.supply``, the forecast the day was planned on), ramping
    from ``state.load_before_mw``.

    Jobs whose deadline has passed may run to the end of the horizon (they are late); jobs
    allowed only at sites that are gone are left out. ``None`` when nothing can be planned.
    """
    horizon = problem.horizon
    slot = pd.Timedelta(minutes=horizon.slot_minutes)
    first = horizon.start + np.ceil((state.from_time - horizon.start) / slot) * slot
    n_slots = int((horizon.end - first) / slot)
    live = state.live_gpus
    if live is None:
        live = {site.name: site.gpus for site in problem.sites}
    sites = tuple(  # a site's GPUs only ever lowered to those live (>= 1): still valid
        site.model_copy(update={"gpus": min(site.gpus, int(live[site.name]))})
        for site in problem.sites
        if live.get(site.name, 0) >= 1
    )
    if n_slots <= 0 or not sites:
        return None
    window = Horizon(first, horizon.slot_minutes, n_slots)
    jobs = _jobs_left(problem, state.remaining_gpu_hours, {s.name for s in sites}, window)
    if jobs is None:
        return None
    supply = rows_in(problem.supply if supply is None else supply, window)
    # an actual supply handed in has no quantiles: its limits are on itself
    limit = problem.limit_green_column if problem.limit_green_column in supply else "green_mw"
    load_before = state.load_before_mw
    stored = None
    if state.stored_mwh is not None:  # the units of the sites still live, in order
        live_units = np.isin(
            problem.storage.site, [problem.site_names.index(s.name) for s in sites]
        )
        stored = tuple(np.asarray(state.stored_mwh)[live_units].tolist())
    return replace(
        problem,
        horizon=window,
        sites=sites,
        jobs=jobs,
        supply=supply,
        actual_supply=None,
        limit_green_column=limit,
        initial_load_mw=(
            None if load_before is None else tuple(float(load_before[s.name]) for s in sites)
        ),
        initial_soc_mwh=stored,
    )


def _jobs_left(
    problem: Problem, remaining_gpu_hours: Mapping[str, float], live: set[str], window: Horizon
) -> pd.DataFrame | None:
    """The jobs table of the work left in ``window`` on the ``live`` sites (``None``: none)."""
    # arrays column by column, not pandas row-wise: a re-plan loop calls this every hour
    row_of = {job: row for row, job in enumerate(problem.job_ids)}
    cells = problem.jobs["sites"].to_numpy(dtype=object)
    live_cell = {cell: ";".join(s for s in cell.split(";") if s in live) for cell in set(cells)}
    rows, left_gpu_hours = [], []
    for job, left in remaining_gpu_hours.items():
        if left <= 0:
            continue
        row = row_of[job]
        if not cells[row] or live_cell[cells[row]]:  # any site allowed, or one still live
            rows.append(row)
            left_gpu_hours.append(left)
    if not rows:
        return None
    columns = {name: problem.jobs[name].array.take(rows) for name in problem.jobs.columns}
    release, deadline = columns["release"], columns["deadline"]
    first, slot = window.start, pd.Timedelta(minutes=window.slot_minutes)
    release[release < first] = first
    deadline[deadline <= first] = window.end
    deadline[deadline > window.end] = window.end
    slots = np.asarray((deadline - release) / slot).astype(np.int64)
    gpu_hours = np.array(left_gpu_hours, dtype=float)
    units = work_units(gpu_hours, window.slot_minutes)
    columns["gpu_hours"] = gpu_hours
    columns["sites"] = [live_cell[cell] for cell in cells[rows]]
    columns["max_gpus"] = max_gpus_to_fit(np.asarray(columns["max_gpus"]), units, slots)
    return pd.DataFrame(columns)


def policy_replan(problem: Problem, policy: Policy) -> Replan:
    """The settlement engine's re-planner after a site loses capacity: ``policy`` over the rest
    of ``problem`` (:func:`rest_of_day`) on the forecast the day was planned on."""

    def replan(state: RunState) -> pd.DataFrame | None:
        rest = rest_of_day(problem, state)
        if rest is None:
            return None
        log.info("re-planning %d jobs from %s on %s", rest.n_jobs, rest.horizon.start,
                 ", ".join(rest.site_names))  # fmt: skip
        return policy.plan(rest).plan

    return replan
