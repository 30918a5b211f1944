"""Repair a plan to new caps in milliseconds instead of planning again.

When caps tighten, the plan made before them usually breaks them in a few site-slots only.
:func:`repair` changes that plan as little as it can so it keeps the new caps:

1. in every site-slot over its capacity (:attr:`~scheduler.problem.Problem.capacity_gpus`,
   caps included) preemptible work is cut, first from the job with the most room elsewhere in
   its window (spare ``max_gpus`` in slots with free GPUs at its sites), then the latest
   deadline; where that is not enough, whole non-preemptible blocks leave the plan (latest
   deadline first);
2. the blocks are placed again whole, each at its cheapest start in the room left
   (:func:`~.policies.blocks.cheapest_blocks`, as the optimizer places them);
3. the cut preemptible work is placed again at the least grid CO2 on top of the rest, by a
   min-cost flow over just those jobs: inside each job's window, at its allowed sites (with
   ``max_site_moves`` set, only at sites the job already runs at), up to its ``max_gpus``
   (when other jobs would have to move to make room, the repair leaves the work out: moving
   them is the planners' work, and trying costs about as much as planning again);
4. the ramp limits are fitted as every policy fits them (:func:`~.policies.ramp_fit.fit_ramps`).

Work that fits nowhere (no room left in its window without moving other jobs) is left
unfinished; the caller compares the repair with the plan it repairs (:func:`later_jobs`) and
decides. A repair is only returned when the validator finds nothing wrong. It is not optimal;
a caller that needs an optimum plans again (the service does so in the background).

A caller that has a better plan whenever the repair leaves work unfinished can stop after step 3
(:func:`draft_repair`): the ramp fit, the plan table and the validator (about half of a
repair's time) then run only for a draft it keeps (:meth:`RepairDraft.finish`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from scheduler.labels import label_index
from scheduler.policies.base import (
    PlanArrays,
    PlanResult,
    PlanStatus,
    make_result,
    objective_kg,
    unfinished_gpu_hours,
)
from scheduler.policies.blocks import cheapest_blocks
from scheduler.policies.flow import Groups, site_tiers, solve_flow
from scheduler.policies.ramp_fit import fit_ramps
from scheduler.problem import Problem
from scheduler.validate import validate_plan

__all__ = [
    "RepairDraft",
    "draft_repair",
    "keeps_every_job",
    "later_jobs",
    "plan_arrays",
    "repair",
]

_LATE_TOLERANCE_GPU_H = 1e-9


def plan_arrays(problem: Problem, plan: pd.DataFrame) -> PlanArrays:
    """A plan table as arrays of ``problem``'s job, site and slot indices."""
    job = label_index(plan["job_id"], problem.job_ids)
    site = label_index(plan["site"], problem.site_names)
    slot = problem.horizon.times.get_indexer(plan["time"])
    if (job < 0).any() or (site < 0).any() or (slot < 0).any():
        raise ValueError("the plan names a job, site or time the problem lacks")
    return PlanArrays(job, site, slot, plan["gpus"].to_numpy(dtype=np.int64))


@dataclass(frozen=True)
class RepairDraft:
    """A repair after step 3 of the module docstring, before its ramp fit: ``arrays`` of
    ``problem``, begun at ``began`` (``time.perf_counter()`` [s])."""

    problem: Problem
    arrays: PlanArrays
    began: float

    @cached_property
    def unfinished_gpu_hours(self) -> pd.Series:
        """The work each job has unplaced [GPU-h], as :attr:`PlanResult.unfinished_gpu_hours`
        (the ramp fit may still defer more, or resume some where a ramp left room)."""
        return unfinished_gpu_hours(self.problem, self.arrays)

    @cached_property
    def objective_kg(self) -> float:
        """Grid CO2 plus the unfinished-work penalty of the draft [kg]."""
        return objective_kg(self.problem, self.arrays)

    def finish(self, name: str) -> PlanResult | None:
        """The repair (step 4 and the plan table) reported as policy ``name``; ``None`` when
        the validator finds it wrong."""
        problem = self.problem
        result = make_result(
            problem, name, fit_ramps(problem, self.arrays), PlanStatus.FEASIBLE,
            time.perf_counter() - self.began, notes=("repaired to new caps; not re-optimised",),
        )  # fmt: skip
        return result if not validate_plan(problem, result) else None


def draft_repair(
    problem: Problem, previous: PlanResult, arrays: PlanArrays | None = None
) -> RepairDraft:
    """``previous`` changed by steps 1-3 of the module docstring to keep ``problem``'s caps.
    ``arrays`` is ``previous.plan`` as positions in ``problem`` (:func:`plan_arrays`), when the
    caller has them."""
    began = time.perf_counter()
    if arrays is None:
        arrays = plan_arrays(problem, previous.plan)
    kept, units, blocks = _cut(problem, arrays)
    load = np.zeros((len(problem.sites), problem.horizon.n_slots), dtype=np.int64)
    np.add.at(load, (kept.site, kept.slot), kept.gpus)
    moved = cheapest_blocks(problem, blocks, problem.site_mask, np.zeros_like(load), load)
    return RepairDraft(
        problem, PlanArrays.concat([kept, moved, _place(problem, kept, units)]), began
    )


def repair(
    problem: Problem, previous: PlanResult, name: str, arrays: PlanArrays | None = None
) -> PlanResult | None:
    """``previous`` changed to keep ``problem``'s caps (module docstring), reported as policy
    ``name``; ``None`` when the repair is not valid. ``arrays`` is ``previous.plan`` as
    positions in ``problem`` (:func:`plan_arrays`), when the caller has them."""
    return draft_repair(problem, previous, arrays).finish(name)


def later_jobs(result: PlanResult | RepairDraft, previous: PlanResult) -> pd.Series:
    """The work each job has unfinished in ``result`` beyond what it had in ``previous``, for
    the jobs where that is more than a rounding error [GPU-h]."""
    increase, after = _increase(result, previous)
    later = increase > _LATE_TOLERANCE_GPU_H  # masks as arrays: a boolean Series aligns first
    return pd.Series(increase[later], index=after.index[later], name=after.name)


def keeps_every_job(result: PlanResult | RepairDraft, previous: PlanResult) -> bool:
    """Whether no job has more work unfinished in ``result`` than in ``previous``
    (:func:`later_jobs` is empty; without building it)."""
    return not (_increase(result, previous)[0] > _LATE_TOLERANCE_GPU_H).any()


def _increase(
    result: PlanResult | RepairDraft, previous: PlanResult
) -> tuple[np.ndarray, pd.Series]:
    """The unfinished work of each job in ``result`` minus that in ``previous`` [GPU-h], and
    ``result``'s unfinished work."""
    before = previous.unfinished_gpu_hours
    after = result.unfinished_gpu_hours
    if before.index.equals(after.index):  # plans of one problem: the same jobs, in order
        return after.to_numpy() - before.to_numpy(), after
    return (after - before.reindex(after.index, fill_value=0.0)).to_numpy(), after


def _cut(problem: Problem, arrays: PlanArrays) -> tuple[PlanArrays, np.ndarray, np.ndarray]:
    """The plan with every site-slot brought under its capacity, the preemptible GPU-slots cut
    per job ``[job]`` and the non-preemptible jobs whose blocks left (indices)."""
    n_slots = problem.horizon.n_slots
    cell = arrays.site * n_slots + arrays.slot
    load = np.bincount(cell, weights=arrays.gpus, minlength=problem.capacity_gpus.size)
    excess = np.maximum(load - problem.capacity_gpus.ravel(), 0).astype(np.int64)
    gpus = arrays.gpus.copy()
    units = np.zeros(problem.n_jobs, dtype=np.int64)
    removed = np.zeros(problem.n_jobs, dtype=bool)
    rows = np.flatnonzero(excess[cell] > 0)
    job = arrays.job[rows]
    # within a cell: preemptible first, the most room elsewhere first, then the latest deadline
    room = _room(problem, arrays, load, np.unique(job))
    order = np.lexsort(
        (-problem.deadline_slot[job], -room[job], ~problem.preemptible[job], cell[rows])
    )
    rows = rows[order]
    divisible = np.where(problem.preemptible[arrays.job[rows]], gpus[rows], 0)
    if (np.bincount(cell[rows], weights=divisible, minlength=excess.size) >= excess).all():
        # the usual case: preemptible work covers every excess, no block leaves (the loop
        # below would cut the same, row by row)
        given = _in_turn(cell[rows], divisible, excess)
        gpus[rows] -= given
        np.add.at(units, arrays.job[rows], given)
        rows = rows[:0]
    for row in rows.tolist():
        c, j = int(cell[row]), int(arrays.job[row])
        if excess[c] <= 0 or gpus[row] == 0:
            continue
        if problem.preemptible[j]:
            take = min(int(excess[c]), int(gpus[row]))
            gpus[row] -= take
            excess[c] -= take
            units[j] += take
            continue
        block = np.flatnonzero(arrays.job == j)  # the whole block leaves, freeing its slots
        np.subtract.at(excess, cell[block], gpus[block])
        gpus[block] = 0
        removed[j] = True
    keep = gpus > 0
    kept = PlanArrays(arrays.job[keep], arrays.site[keep], arrays.slot[keep], gpus[keep])
    return kept, units, np.flatnonzero(removed)


def _in_turn(cells: np.ndarray, gpus: np.ndarray, excess: np.ndarray) -> np.ndarray:
    """What each row gives, in turn within its cell (rows grouped by cell), until the cell's
    ``excess`` is met: ``min(gpus, excess left)`` ``[row]``."""
    total = np.cumsum(gpus)
    first = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
    start = np.repeat(first, np.diff(np.r_[first, len(cells)]))
    before = total - gpus - (total[start] - gpus[start])  # given by earlier rows of the cell
    return np.clip(excess[cells] - before, 0, gpus)


def _room(problem: Problem, arrays: PlanArrays, load: np.ndarray, jobs: np.ndarray) -> np.ndarray:
    """GPU-slots each of ``jobs`` could add in its window outside the site-slots over capacity:
    per slot the least of its spare ``max_gpus`` and the free GPUs at its allowed sites
    (shared with the other jobs, so an upper bound) ``[job]``, 0 for the other jobs."""
    n_sites, n_slots = len(problem.sites), problem.horizon.n_slots
    free = np.maximum(problem.capacity_gpus.ravel() - load, 0).reshape(n_sites, n_slots)
    row = np.full(problem.n_jobs, -1)
    row[jobs] = np.arange(len(jobs))
    mine = row[arrays.job] >= 0
    in_slot = np.zeros((len(jobs), n_slots), dtype=np.int64)
    np.add.at(in_slot, (row[arrays.job[mine]], arrays.slot[mine]), arrays.gpus[mine])
    site_free = problem.site_mask[jobs].astype(np.int64) @ free.astype(np.int64)
    slots = np.arange(n_slots)
    window = (slots >= problem.release_slot[jobs, None]) & (
        slots < problem.deadline_slot[jobs, None]
    )
    spare = np.maximum(problem.max_gpus[jobs, None] - in_slot, 0)
    room = np.zeros(problem.n_jobs, dtype=np.int64)
    room[jobs] = np.where(window, np.minimum(spare, site_free), 0).sum(axis=1)
    return room


def _place(problem: Problem, kept: PlanArrays, units: np.ndarray) -> PlanArrays:
    """Place ``units`` GPU-slots per job around ``kept`` at the least grid CO2 (module docstring,
    step 3): a min-cost flow (:func:`~.policies.flow.solve_flow`) of one group per job over the
    GPUs ``kept`` leaves free; work that does not fit is left out."""
    jobs = np.flatnonzero(units)
    if not len(jobs):
        return PlanArrays.empty()
    n_sites, n_slots = len(problem.sites), problem.horizon.n_slots
    load = np.zeros((n_sites, n_slots), dtype=np.int64)
    np.add.at(load, (kept.site, kept.slot), kept.gpus)
    in_slot = np.zeros((problem.n_jobs, n_slots), dtype=np.int64)
    np.add.at(in_slot, (kept.job, kept.slot), kept.gpus)
    site_mask = problem.site_mask[jobs].copy()
    if problem.max_site_moves is not None:  # only where the job already runs, if anywhere
        used = np.zeros((problem.n_jobs, n_sites), dtype=bool)
        used[kept.job, kept.site] = True
        runs = used[jobs].any(axis=1)
        site_mask[runs] &= used[jobs][runs]
    job_group = np.full(problem.n_jobs, -1, dtype=np.int64)
    job_group[jobs] = np.arange(len(jobs))
    groups = Groups(
        job_group=job_group,
        first=problem.release_slot[jobs],
        end=problem.deadline_slot[jobs],
        site_mask=site_mask,
        cap=problem.max_gpus[jobs],
        work=units[jobs],
        slot_cap=np.maximum(problem.max_gpus[jobs, None] - in_slot[jobs], 0),
    )
    flow = solve_flow(problem, groups, site_tiers(problem, load), tie_break=True)
    return PlanArrays(jobs[flow.group], flow.site, flow.slot, flow.gpus)
