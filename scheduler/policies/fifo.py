"""``fifo``: the carbon-agnostic baseline that users run today.

Jobs are taken in release order (then ``job_id``). Each starts as early as it can at its
lowest-latency allowed site (latency to ``problem.user_region``) and runs at ``max_gpus`` until
done; when that site is full it spills to the next allowed site by latency in the same slot,
then to later slots. Site GPUs, the grid import limit and every cap are hard limits. Grid
draw is checked with the planning green supply (``grid = load - green``): a real scheduler knows
its power limits, including what the site's own plant delivers, but does not chase it.

With a ``max_site_moves`` limit each job keeps to one site: the first by latency where it can
finish, else the one where it gets most work done. A non-preemptible job takes the earliest
start, at the first site by latency, where its whole contiguous block fits.

The plan is then fitted to the sites' ramp limits slot by slot
(:func:`~scheduler.policies.ramp_fit.fit_ramps`): each slot's load change is capped.
"""

from __future__ import annotations

import time

import numpy as np

from scheduler.policies.base import PlanArrays, PlanResult, PlanStatus, make_result
from scheduler.policies.blocks import block_gpus, block_starts, place_block
from scheduler.policies.ramp_fit import fit_ramps
from scheduler.problem import Problem

__all__ = ["FifoPolicy"]


class FifoPolicy:
    """Earliest start at the nearest site; see the module docstring."""

    name = "fifo"
    follows_forecast = False  # the supply does not enter its plan

    def plan(self, problem: Problem) -> PlanResult:
        began = time.perf_counter()
        free = problem.capacity_gpus.copy()
        order = np.lexsort((problem.job_ids.astype(str), problem.jobs["release"].to_numpy()))
        parts: list[PlanArrays] = []
        for j in order:
            sites = [s for s in problem.latency_order if problem.site_mask[j, s]]
            first, end = int(problem.release_slot[j]), int(problem.deadline_slot[j])
            work, max_gpus = int(problem.work_units[j]), int(problem.max_gpus[j])
            if not problem.preemptible[j]:
                parts.append(
                    _earliest_block(free, j, sites, first, end, block_gpus(work, max_gpus))
                )
            elif problem.max_site_moves is not None:
                parts.append(_one_site(free, j, sites, first, end, work, max_gpus))
            else:
                parts.append(_fill(free, j, sites, first, end, work, max_gpus))
        return make_result(
            problem,
            self.name,
            fit_ramps(problem, PlanArrays.concat(parts)),
            PlanStatus.HEURISTIC,
            time.perf_counter() - began,
        )


def _earliest_block(
    free: np.ndarray, job: int, sites: list[int], first: int, end: int, gpus: np.ndarray
) -> PlanArrays:
    best: tuple[int, int] | None = None  # (start, latency rank)
    for rank, s in enumerate(sites):
        starts = block_starts(free[s], first, end, gpus)
        if len(starts) and (best is None or starts[0] < best[0]):
            best = (int(starts[0]), rank)
    if best is None:
        return PlanArrays.empty()
    return place_block(free, job, sites[best[1]], best[0], gpus)


def _fill(
    free: np.ndarray, job: int, sites: list[int], first: int, end: int, work: int, max_gpus: int
) -> PlanArrays:
    """Earliest slots first, at most ``max_gpus`` per slot, sites in latency order within a slot."""
    window = free[sites, first:end]  # [site (latency order), slot]
    avail = np.minimum(window.sum(axis=0), max_gpus)
    before = np.cumsum(avail) - avail
    take = np.clip(work - before, 0, avail)
    parts = []
    for rank, s in enumerate(sites):
        here = np.minimum(window[rank], take)
        take = take - here
        free[s, first:end] -= here
        slots = np.flatnonzero(here)
        parts.append(
            PlanArrays(np.full(len(slots), job), np.full(len(slots), s), slots + first, here[slots])
        )
    return PlanArrays.concat(parts)


def _one_site(
    free: np.ndarray, job: int, sites: list[int], first: int, end: int, work: int, max_gpus: int
) -> PlanArrays:
    done = [int(min(work, np.minimum(free[s, first:end], max_gpus).sum())) for s in sites]
    finishing = [rank for rank, d in enumerate(done) if d >= work]
    rank = finishing[0] if finishing else int(np.argmax(done))
    return _fill(free, job, [sites[rank]], first, end, work, max_gpus)
