"""Contiguous runs ("blocks") of non-preemptible jobs, shared by the policies.

A non-preemptible job runs at one site in ``d = ceil(work / max_gpus)`` consecutive slots, with
``max_gpus`` GPUs in each but the last, which holds the rest of the work.
"""

from __future__ import annotations

import numpy as np

from scheduler.policies.base import PlanArrays

__all__ = ["block_gpus", "block_starts", "place_block"]


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
