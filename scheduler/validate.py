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

__all__ = ["PlanInvalidError", "Violation", "assert_valid", "validate_plan"]

_MAX_SHOWN = 10


@dataclass(frozen=True)
class Violation:
    """One broken rule: ``rule`` is a short key (``site_capacity``, ``window``, ...)."""

    rule: str
    message: str


class PlanInvalidError(AssertionError):
    """A plan that breaks its problem's rules; the message lists the violations."""


def validate_plan(problem: Problem, result: PlanResult) -> list[Violation]:
    """Every rule ``result.plan`` breaks (empty when valid); see the module docstring."""
    if result.supply_basis is SupplyBasis.ACTUAL:
        problem = problem.on_actual_supply()
    plan = result.plan
    out: list[Violation] = []

    def add(rule: str, rows: pd.DataFrame | None, what: str) -> None:
        if rows is None:
            out.append(Violation(rule, what))
            return
        shown = "; ".join(
            f"{r.job_id}@{r.site} {r.time}: {what.format(r=r)}"
            for r in rows.head(_MAX_SHOWN).itertuples()
        )
        more = f" (and {len(rows) - _MAX_SHOWN} more)" if len(rows) > _MAX_SHOWN else ""
        out.append(Violation(rule, f"{len(rows)} row(s): {shown}{more}"))

    missing = [c for c in PLAN.names if c not in plan.columns]
    if missing:
        return [Violation("columns", f"plan lacks column(s) {', '.join(missing)}")]
    gpus = plan["gpus"].to_numpy()
    if not np.issubdtype(gpus.dtype, np.integer):
        add("integer_gpus", None, f"gpus column has dtype {gpus.dtype}; GPUs are whole numbers")
    below = gpus < 1
    if below.any():
        add("integer_gpus", plan[below], "gpus {r.gpus} < 1")
    job = label_index(plan["job_id"], problem.job_ids)
    site = label_index(plan["site"], problem.site_names)
    times = plan["time"]
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        times = pd.to_datetime(times, utc=True)
    time_ns = times.array.as_unit("ns").asi8
    offset_ns = time_ns - problem.horizon.start.as_unit("ns").value
    slot_ns = problem.horizon.slot_minutes * 60 * 10**9
    slot = offset_ns // slot_ns
    unknown = (job < 0) | (site < 0) | (offset_ns % slot_ns != 0) | (slot < 0)
    unknown |= slot >= problem.horizon.n_slots
    if unknown.any():
        add(
            "unknown", plan[unknown], "unknown job, unknown site or not a slot start of the horizon"
        )
        plan, job, site, slot = plan[~unknown], job[~unknown], site[~unknown], slot[~unknown]
    gpus = plan["gpus"].to_numpy().astype(np.int64)
    n_sites, n_slots = len(problem.sites), problem.horizon.n_slots

    _, inverse, counts = np.unique(
        (job * n_sites + site) * n_slots + slot, return_inverse=True, return_counts=True
    )
    duplicated = counts[inverse.ravel()] > 1
    if duplicated.any():
        add("duplicate_rows", plan[duplicated], "more than one row for this job, site and slot")
    outside = (slot < problem.release_slot[job]) | (slot >= problem.deadline_slot[job])
    if outside.any():
        add("window", plan[outside], "slot outside the job's window")
    not_allowed = ~problem.site_mask[job, site]
    if not_allowed.any():
        add("allowed_sites", plan[not_allowed], "site not allowed for this job")

    per_job_slot = np.bincount(
        job * n_slots + slot, weights=gpus, minlength=problem.n_jobs * n_slots
    )
    over = np.flatnonzero(per_job_slot.reshape(problem.n_jobs, n_slots) > problem.max_gpus[:, None])
    if len(over):
        listed = [
            f"{problem.job_ids[c // n_slots]} slot {c % n_slots}: {int(per_job_slot[c])}"
            for c in over[:_MAX_SHOWN]
        ]
        add("max_gpus", None, f"{len(over)} job-slot(s) above max_gpus: {'; '.join(listed)}")

    busy = np.zeros((n_sites, n_slots), dtype=np.int64)
    np.add.at(busy, (site, slot), gpus)
    load = problem_load_arrays(problem, busy)
    over_site = busy > problem.site_gpus[:, None]
    for rule, mask in (("site_capacity", over_site), ("caps", load["cap_violation"])):
        if mask.any():
            shown = "; ".join(
                f"{problem.site_names[s]} {problem.horizon.times[t]}: {busy[s, t]} GPUs, load "
                f"{load['load_mw'][s, t]:.3f} MW, grid {load['grid_mw'][s, t]:.3f} MW (caps: "
                f"grid {load['cap_mw'][s, t]:.3f}, load {load['load_cap_mw'][s, t]:.3f}, "
                f"tolerance {CAP_TOLERANCE_MW})"
                for s, t in np.argwhere(mask)[:_MAX_SHOWN]
            )
            add(rule, None, f"{int(mask.sum())} site-slot(s): {shown}")

    placed = np.bincount(job, weights=gpus, minlength=problem.n_jobs).astype(np.int64)
    ramp = _ramp_violations(problem, load["load_mw"], job, site, slot, gpus, placed)
    if ramp:
        add("ramp", None, f"{len(ramp)} site-slot(s): {'; '.join(ramp[:_MAX_SHOWN])}")
    unfinished = result.unfinished_gpu_hours
    if np.array_equal(unfinished.index.to_numpy(dtype=object), problem.job_ids):
        reported = unfinished.to_numpy(dtype=float)
    else:
        reported = unfinished.reindex(problem.job_ids).to_numpy(dtype=float)
    reported_units = np.rint(reported / problem.slot_hours)
    mismatch = np.isnan(reported) | (placed + reported_units != problem.work_units)
    if mismatch.any():
        work_rows = [
            f"{problem.job_ids[j]}: needs {problem.work_units[j]}, placed {placed[j]}, "
            f"reported unfinished {reported_units[j]:g} GPU-slots"
            for j in np.flatnonzero(mismatch)[:_MAX_SHOWN]
        ]
        add("work", None, f"{int(mismatch.sum())} job(s): {'; '.join(work_rows)}")

    np_rows = ~problem.preemptible[job]
    if np_rows.any():
        broken = _not_one_run(job[np_rows], site[np_rows], slot[np_rows], problem.n_jobs, n_slots)
        if len(broken):
            names = ", ".join(problem.job_ids[broken[:_MAX_SHOWN]])
            add(
                "non_preemptible",
                None,
                f"{len(broken)} job(s) not in one contiguous run at one site: {names}",
            )

    if problem.max_site_moves is not None:
        moves = site_moves(job, site, slot, problem.n_jobs)
        over_moves = np.flatnonzero(moves > problem.max_site_moves)
        if len(over_moves):
            names = ", ".join(f"{problem.job_ids[j]} ({moves[j]})" for j in over_moves[:_MAX_SHOWN])
            add(
                "max_site_moves",
                None,
                f"{len(over_moves)} job(s) move more than {problem.max_site_moves} "
                f"time(s): {names}",
            )
    return out


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
