"""The plan validator: does a plan keep every rule of its problem?

Run on every plan before it is written or trusted, whichever policy made it. Rules: integer
``gpus >= 1``; known jobs, sites and slot starts; one row per job, site and slot; each row inside
its job's window and at an allowed site; at most ``max_gpus`` per job and slot; site GPUs, grid
import limit and every cap per site and slot (on the supply the plan was made on); placed plus
reported-unfinished work equals the job's work; non-preemptible jobs in one contiguous run at
one site; at most ``problem.max_site_moves`` site changes per job; no step between adjacent
slots (the first from ``problem.initial_load_mw`` when known) above the site's ramp-up limit,
nor below its ramp-down limit unless a cap leaves less room than the ramp needs, the slot
before was as low as coming down from the day before's load allowed
(:func:`~scheduler.policies.descent.floor_gpus`) or, in the first slot, no work was left that
could have run there (see :mod:`scheduler.ramps`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scheduler.contracts import PLAN
from scheduler.labels import label_index
from scheduler.metrics import CAP_TOLERANCE_MW, problem_load_arrays
from scheduler.policies.base import PlanResult, SupplyBasis, site_moves
from scheduler.policies.descent import floor_gpus
from scheduler.problem import Problem
from scheduler.ramps import RAMP_TOLERANCE_MW, load_steps_mw

__all__ = ["CHECKS", "Check", "PlanInvalidError", "Violation", "assert_valid", "validate_plan"]

_MAX_SHOWN = 10


@dataclass(frozen=True)
class Violation:
    """One broken rule: ``rule`` is a short key (``site_capacity``, ``window``, ...)."""

    rule: str
    message: str


class PlanInvalidError(AssertionError):
    """A plan that breaks its problem's rules; the message lists the violations."""


def validate_plan(problem: Problem, result: PlanResult) -> list[Violation]:
    """Every rule ``result.plan`` breaks (empty when valid); see the module docstring. The
    rules are :data:`CHECKS`, in order, over the rows that name a known job, site and slot."""
    if result.supply_basis is SupplyBasis.ACTUAL:
        problem = problem.on_actual_supply()
    plan = result.plan
    missing = [c for c in PLAN.names if c not in plan.columns]
    if missing:
        return [Violation("columns", f"plan lacks column(s) {', '.join(missing)}")]
    out = _row_checks(problem, plan)
    rows = _Rows.known(problem, plan)
    for check in CHECKS:
        out += check(problem, rows, result)
    return out


def _listed(rule: str, rows: pd.DataFrame, what: str) -> Violation:
    """A rule broken by plan ``rows``: the first :data:`_MAX_SHOWN` named, ``what`` formatted
    with each row ``r``."""
    shown = "; ".join(
        f"{r.job_id}@{r.site} {r.time}: {what.format(r=r)}"
        for r in rows.head(_MAX_SHOWN).itertuples()
    )
    more = f" (and {len(rows) - _MAX_SHOWN} more)" if len(rows) > _MAX_SHOWN else ""
    return Violation(rule, f"{len(rows)} row(s): {shown}{more}")


def _slots(problem: Problem, plan: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each row's slot index and whether its time is a slot start of the horizon."""
    times = plan["time"]
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        times = pd.to_datetime(times, utc=True)
    offset_ns = times.array.as_unit("ns").asi8 - problem.horizon.start.as_unit("ns").value
    slot_ns = problem.horizon.slot_minutes * 60 * 10**9
    slot = offset_ns // slot_ns
    return slot, (offset_ns % slot_ns == 0) & (slot >= 0) & (slot < problem.horizon.n_slots)


def _row_checks(problem: Problem, plan: pd.DataFrame) -> list[Violation]:
    """Rows that are no plan rows of ``problem``: GPUs not whole or below 1, an unknown job or
    site, a time that is no slot start of the horizon."""
    out = []
    gpus = plan["gpus"].to_numpy()
    if not np.issubdtype(gpus.dtype, np.integer):
        out.append(Violation("integer_gpus", f"gpus column has dtype {gpus.dtype}; GPUs are whole "
                             "numbers"))  # fmt: skip
    if (gpus < 1).any():
        out.append(_listed("integer_gpus", plan[gpus < 1], "gpus {r.gpus} < 1"))
    _, on_slot = _slots(problem, plan)
    unknown = (label_index(plan["job_id"], problem.job_ids) < 0) | ~on_slot
    unknown |= label_index(plan["site"], problem.site_names) < 0
    if unknown.any():
        what = "unknown job, unknown site or not a slot start of the horizon"
        out.append(_listed("unknown", plan[unknown], what))
    return out


@dataclass(frozen=True)
class _Rows:
    """The plan rows that name a known job, site and slot: the rows (for messages) and their
    job, site and slot indices and GPUs, arrays ``[row]``."""

    plan: pd.DataFrame
    job: np.ndarray
    site: np.ndarray
    slot: np.ndarray
    gpus: np.ndarray

    @classmethod
    def known(cls, problem: Problem, plan: pd.DataFrame) -> _Rows:
        job = label_index(plan["job_id"], problem.job_ids)
        site = label_index(plan["site"], problem.site_names)
        slot, on_slot = _slots(problem, plan)
        keep = (job >= 0) & (site >= 0) & on_slot
        if not keep.all():
            plan, job, site, slot = plan[keep], job[keep], site[keep], slot[keep]
        return cls(plan, job, site, slot, plan["gpus"].to_numpy().astype(np.int64))

    def busy(self, problem: Problem) -> np.ndarray:
        """GPUs busy per ``[site, slot]``."""
        busy = np.zeros((len(problem.sites), problem.horizon.n_slots), dtype=np.int64)
        np.add.at(busy, (self.site, self.slot), self.gpus)
        return busy

    def placed(self, problem: Problem) -> np.ndarray:
        """GPU-slots placed per job ``[job]``."""
        return np.bincount(self.job, weights=self.gpus, minlength=problem.n_jobs).astype(np.int64)


Check = Callable[[Problem, _Rows, PlanResult], list[Violation]]
"""A rule of the validator over the known rows of a plan."""


def _placement(problem: Problem, rows: _Rows, result: PlanResult) -> list[Violation]:
    """One row per job, site and slot; each inside its job's window at an allowed site."""
    out = []
    n_sites, n_slots = len(problem.sites), problem.horizon.n_slots
    job, site, slot = rows.job, rows.site, rows.slot
    _, inverse, counts = np.unique(
        (job * n_sites + site) * n_slots + slot, return_inverse=True, return_counts=True
    )
    for rule, mask, what in (
        ("duplicate_rows", counts[inverse.ravel()] > 1,
         "more than one row for this job, site and slot"),
        ("window", (slot < problem.release_slot[job]) | (slot >= problem.deadline_slot[job]),
         "slot outside the job's window"),
        ("allowed_sites", ~problem.site_mask[job, site], "site not allowed for this job"),
    ):  # fmt: skip
        if mask.any():
            out.append(_listed(rule, rows.plan[mask], what))
    return out


def _max_gpus(problem: Problem, rows: _Rows, result: PlanResult) -> list[Violation]:
    """At most ``max_gpus`` per job and slot."""
    n_slots = problem.horizon.n_slots
    per_job_slot = np.bincount(
        rows.job * n_slots + rows.slot, weights=rows.gpus, minlength=problem.n_jobs * n_slots
    )
    over = np.flatnonzero(per_job_slot.reshape(problem.n_jobs, n_slots) > problem.max_gpus[:, None])
    if not len(over):
        return []
    listed = [
        f"{problem.job_ids[c // n_slots]} slot {c % n_slots}: {int(per_job_slot[c])}"
        for c in over[:_MAX_SHOWN]
    ]
    return [Violation("max_gpus", f"{len(over)} job-slot(s) above max_gpus: {'; '.join(listed)}")]


def _sites_and_caps(problem: Problem, rows: _Rows, result: PlanResult) -> list[Violation]:
    """Site GPUs, the grid import limit and every cap per site and slot."""
    busy = rows.busy(problem)
    load = problem_load_arrays(problem, busy)
    out = []
    for rule, mask in (
        ("site_capacity", busy > problem.site_gpus[:, None]),
        ("caps", load["cap_violation"]),
    ):
        if mask.any():
            shown = "; ".join(
                f"{problem.site_names[s]} {problem.horizon.times[t]}: {busy[s, t]} GPUs, load "
                f"{load['load_mw'][s, t]:.3f} MW, grid {load['grid_mw'][s, t]:.3f} MW (caps: "
                f"grid {load['cap_mw'][s, t]:.3f}, load {load['load_cap_mw'][s, t]:.3f}, "
                f"tolerance {CAP_TOLERANCE_MW})"
                for s, t in np.argwhere(mask)[:_MAX_SHOWN]
            )
            out.append(Violation(rule, f"{int(mask.sum())} site-slot(s): {shown}"))
    return out


def _ramps(problem: Problem, rows: _Rows, result: PlanResult) -> list[Violation]:
    """No step between adjacent slots above the ramp limits, but for the exempt falls."""
    load_mw = problem_load_arrays(problem, rows.busy(problem))["load_mw"]
    ramp = _ramp_violations(problem, load_mw, rows.job, rows.site, rows.slot, rows.gpus,
                            rows.placed(problem))  # fmt: skip
    if not ramp:
        return []
    return [Violation("ramp", f"{len(ramp)} site-slot(s): {'; '.join(ramp[:_MAX_SHOWN])}")]


def _work(problem: Problem, rows: _Rows, result: PlanResult) -> list[Violation]:
    """Placed plus reported-unfinished work equals each job's work."""
    placed = rows.placed(problem)
    unfinished = result.unfinished_gpu_hours
    if np.array_equal(unfinished.index.to_numpy(dtype=object), problem.job_ids):
        reported = unfinished.to_numpy(dtype=float)
    else:
        reported = unfinished.reindex(problem.job_ids).to_numpy(dtype=float)
    reported_units = np.rint(reported / problem.slot_hours)
    mismatch = np.isnan(reported) | (placed + reported_units != problem.work_units)
    if not mismatch.any():
        return []
    work_rows = [
        f"{problem.job_ids[j]}: needs {problem.work_units[j]}, placed {placed[j]}, "
        f"reported unfinished {reported_units[j]:g} GPU-slots"
        for j in np.flatnonzero(mismatch)[:_MAX_SHOWN]
    ]
    return [Violation("work", f"{int(mismatch.sum())} job(s): {'; '.join(work_rows)}")]


def _runs_and_moves(problem: Problem, rows: _Rows, result: PlanResult) -> list[Violation]:
    """Non-preemptible jobs in one contiguous run at one site; at most ``max_site_moves`` site
    changes per job."""
    out = []
    job, site, slot = rows.job, rows.site, rows.slot
    np_rows = ~problem.preemptible[job]
    if np_rows.any():
        broken = _not_one_run(job[np_rows], site[np_rows], slot[np_rows], problem.n_jobs,
                              problem.horizon.n_slots)  # fmt: skip
        if len(broken):
            names = ", ".join(problem.job_ids[broken[:_MAX_SHOWN]])
            out.append(Violation("non_preemptible", f"{len(broken)} job(s) not in one contiguous "
                                 f"run at one site: {names}"))  # fmt: skip
    if problem.max_site_moves is not None:
        moves = site_moves(job, site, slot, problem.n_jobs)
        over_moves = np.flatnonzero(moves > problem.max_site_moves)
        if len(over_moves):
            names = ", ".join(f"{problem.job_ids[j]} ({moves[j]})" for j in over_moves[:_MAX_SHOWN])
            out.append(Violation("max_site_moves", f"{len(over_moves)} job(s) move more than "
                                 f"{problem.max_site_moves} time(s): {names}"))  # fmt: skip
    return out


CHECKS: tuple[Check, ...] = (_placement, _max_gpus, _sites_and_caps, _ramps, _work, _runs_and_moves)
"""The validator's rules over known rows, in the order their violations are listed."""


def _not_one_run(
    job: np.ndarray, site: np.ndarray, slot: np.ndarray, n_jobs: int, n_slots: int
) -> np.ndarray:
    """Jobs (sorted) whose rows use more than one site or leave a gap between their slots."""
    first, last = np.full(n_jobs, n_slots), np.full(n_jobs, -1)
    np.minimum.at(first, job, slot)
    np.maximum.at(last, job, slot)
    low, high = np.full(n_jobs, np.iinfo(np.int64).max), np.full(n_jobs, -1)
    np.minimum.at(low, job, site)
    np.maximum.at(high, job, site)
    slots = np.bincount(np.unique(job * n_slots + slot) // n_slots, minlength=n_jobs)
    return np.flatnonzero((last >= 0) & ((low != high) | (last - first + 1 != slots)))


def _ramp_violations(
    problem: Problem,
    load_mw: np.ndarray,
    job: np.ndarray,
    site: np.ndarray,
    slot: np.ndarray,
    gpus: np.ndarray,
    placed: np.ndarray,
) -> list[str]:
    """Steps that break a ramp limit, described; exempt falls are those the module doc names."""
    initial = None if problem.initial_load_mw is None else np.asarray(problem.initial_load_mw)
    steps = load_steps_mw(load_mw, initial)
    up, down = problem.ramp_up_mw[:, None], problem.ramp_down_mw[:, None]
    rises = steps > up + RAMP_TOLERANCE_MW
    falls = -steps > down + RAMP_TOLERANCE_MW
    if not (rises.any() or falls.any()):
        return []
    previous = load_mw - steps
    room_mw = problem.base_load_mw[:, None] + problem.capacity_gpus * problem.mw_per_gpu[:, None]
    falls &= room_mw + RAMP_TOLERANCE_MW >= previous - down  # a cap that needs the fall wins
    floor_mw = problem.base_load_mw[:, None] + floor_gpus(problem) * problem.mw_per_gpu[:, None]
    unfinished = placed < problem.work_units
    ran_at = np.zeros((problem.n_jobs, len(problem.sites)), dtype=bool)
    ran_at[job, site] = True
    last_slot = np.full(problem.n_jobs, -1, dtype=np.int64)
    np.maximum.at(last_slot, job, slot)
    out = []
    for s, t in np.argwhere(rises | falls):
        what = f"{problem.site_names[s]} {problem.horizon.times[t]}: step {steps[s, t]:+.3f} MW"
        if rises[s, t]:
            out.append(f"{what} above the ramp-up limit {problem.ramp_up_mw[s]:.3f} MW")
            continue
        if t > 0:  # the plan could have come down over the slots before, unless still coming
            if previous[s, t] > floor_mw[s, t - 1] + RAMP_TOLERANCE_MW:  # down from the day before
                out.append(f"{what} below the ramp-down limit {problem.ramp_down_mw[s]:.3f} MW")
            continue
        at_t = np.bincount(job[slot == t], weights=gpus[slot == t], minlength=problem.n_jobs)
        could = problem.preemptible & problem.site_mask[:, s] & (at_t < problem.max_gpus)
        could &= (problem.release_slot <= t) & (t < problem.deadline_slot)
        could &= (last_slot > t) | unfinished  # work it runs later, or never
        if problem.max_site_moves is not None:
            could &= ran_at[:, s] | ~ran_at.any(axis=1)
        if could.any():
            out.append(
                f"{what} below the ramp-down limit {problem.ramp_down_mw[s]:.3f} MW while "
                f"{int(could.sum())} job(s) could have run there"
            )
    return out


def assert_valid(problem: Problem, result: PlanResult) -> None:
    """Raise :class:`PlanInvalidError` listing every violation of ``result``'s plan."""
    violations = validate_plan(problem, result)
    if violations:
        lines = "\n  ".join(f"[{v.rule}] {v.message}" for v in violations)
        raise PlanInvalidError(f"plan of policy {result.policy!r} is invalid:\n  {lines}")
