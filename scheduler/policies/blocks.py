"""Contiguous runs ("blocks") of non-preemptible jobs, shared by the policies.

A non-preemptible job runs at one site in ``d = ceil(work / max_gpus)`` consecutive slots, with
``max_gpus`` GPUs in each but the last, which holds the rest of the work.
"""

from __future__ import annotations

import numpy as np

from scheduler.policies.base import PlanArrays
from scheduler.problem import Problem

__all__ = ["block_gpus", "block_starts", "cheapest_blocks", "place_block"]


def block_gpus(work: int, max_gpus: int) -> np.ndarray:
    """GPUs per slot of a job's block, e.g. work 10, max 4 -> [4, 4, 2]."""
    d = -(-work // max_gpus)
    gpus = np.full(d, max_gpus, dtype=np.int64)
    gpus[-1] = work - (d - 1) * max_gpus
    return gpus


def block_starts(free: np.ndarray, first: int, end: int, gpus: np.ndarray) -> np.ndarray:
    """Start slots ``a`` in ``[first, end - len(gpus)]`` where ``free[a:a+d] >= gpus``.

    ``free`` is one site's free GPUs per slot.
    """
    d = len(gpus)
    starts = np.arange(first, end - d + 1)
    if len(starts) == 0:
        return starts
    # a block fits at a when no slot of it is short; count short slots with one cumsum per
    # distinct GPU level (at most two: max_gpus and the last slot's rest)
    short_full = np.concatenate([[0], np.cumsum(free < gpus[0])])
    fits = short_full[starts + d - 1] - short_full[starts] == 0
    fits &= free[starts + d - 1] >= gpus[-1]
    return starts[fits]


def place_block(free: np.ndarray, job: int, site: int, start: int, gpus: np.ndarray) -> PlanArrays:
    """Reserve ``gpus`` at ``site`` from ``start`` in ``free`` (in place); return its plan rows."""
    d = len(gpus)
    free[site, start : start + d] -= gpus
    return PlanArrays(np.full(d, job), np.full(d, site), np.arange(start, start + d), gpus.copy())


def cheapest_blocks(
    problem: Problem,
    jobs: np.ndarray,
    site_mask: np.ndarray,
    divisible_load: np.ndarray,
    fixed: np.ndarray,
) -> PlanArrays:
    """Place the non-preemptible ``jobs`` (indices), largest first, each at its cheapest block.

    A block fits in the GPUs ``fixed`` ``[site, slot]`` leave free (updated in place); its cost
    is the grid CO2 it adds on top of ``divisible_load`` plus, for GPUs of that load it pushes
    over capacity, the dearest grid GPU-slot each. A job that fits nowhere is left out
    (reported unfinished)."""
    capacity = problem.capacity_gpus
    green = problem.green_gpus
    co2 = problem.grid_kg_per_gpu_slot
    displaced_kg = float(co2.max(initial=0.0))

    def over(x: np.ndarray, limit: np.ndarray) -> np.ndarray:
        return np.maximum(x - limit, 0)

    jobs = jobs[np.lexsort((jobs, -problem.work_units[jobs]))]
    parts: list[PlanArrays] = []
    for j in jobs.tolist():
        gpus = block_gpus(int(problem.work_units[j]), int(problem.max_gpus[j]))
        d = len(gpus)
        best: tuple[float, int, int] | None = None  # (cost, start, site)
        for s in np.flatnonzero(site_mask[j]).tolist():
            starts = block_starts(
                capacity[s] - fixed[s], problem.release_slot[j], problem.deadline_slot[j], gpus
            )
            if len(starts) == 0:
                continue
            load = divisible_load[s] + fixed[s]

            def marginal(m: int, s: int = s, load: np.ndarray = load) -> np.ndarray:
                grid = over(load + m, green[s]) - over(load, green[s])
                pushed = over(load + m, capacity[s]) - over(load, capacity[s])
                return co2[s] * grid + displaced_kg * pushed

            full = np.concatenate([[0.0], np.cumsum(marginal(int(gpus[0])))])
            cost = full[starts + d - 1] - full[starts] + marginal(int(gpus[-1]))[starts + d - 1]
            k = int(np.argmin(cost))
            if best is None or (cost[k], starts[k]) < (best[0], best[1]):
                best = (float(cost[k]), int(starts[k]), int(s))
        if best is None:
            continue  # fits nowhere: reported unfinished
        _, start, s = best
        fixed[s, start : start + d] += gpus
        parts.append(PlanArrays(np.full(d, j), np.full(d, s), np.arange(start, start + d), gpus))
    return PlanArrays.concat(parts)
