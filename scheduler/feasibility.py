"""Jobs that fit nowhere: checked before planning so the user hears which and why.

A job fits alone when its window holds its work at ``min(max_gpus, free GPUs of its allowed
sites)`` per slot (site GPUs, grid import limit and caps); a non-preemptible job needs one
contiguous block at one site. Work that only competition crowds out is not an error: the
policies report it unfinished.
"""

from __future__ import annotations

import numpy as np

from scheduler.contracts import UserError
from scheduler.policies.blocks import block_gpus, block_starts
from scheduler.problem import Problem

__all__ = ["PlanningError", "check_feasible", "infeasible_jobs"]

_MAX_NAMED = 20


class PlanningError(UserError):
    """A problem the user must fix before it can be planned; the message names the jobs."""


def infeasible_jobs(problem: Problem) -> list[str]:
    """Jobs that could not finish even alone on an empty fleet, one line each.

    A job fits alone when its window holds its work at ``min(max_gpus, free GPUs of its allowed
    sites)`` per slot (site GPUs, grid import limit and caps); a non-preemptible job needs one
    contiguous block at one site.
    """
    capacity = problem.capacity_gpus  # [site, slot]
    masks, inverse = np.unique(problem.site_mask, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    slots = np.arange(problem.horizon.n_slots)
    out = []
    for m, mask in enumerate(masks):
        jobs = np.flatnonzero(inverse == m)
        per_slot = capacity[mask].sum(axis=0)
        window = (slots >= problem.release_slot[jobs, None]) & (
            slots < problem.deadline_slot[jobs, None]
        )
        alone = (np.minimum(per_slot[None, :], problem.max_gpus[jobs, None]) * window).sum(axis=1)
        for j, most in zip(jobs, alone, strict=True):
            if not problem.preemptible[j]:
                gpus = block_gpus(int(problem.work_units[j]), int(problem.max_gpus[j]))
                first, end = problem.release_slot[j], problem.deadline_slot[j]
                sites = np.flatnonzero(mask)
                fits = any(len(block_starts(capacity[s], first, end, gpus)) for s in sites)
                most = problem.work_units[j] if fits else 0
            if most < problem.work_units[j]:
                names = ", ".join(np.asarray(problem.site_names)[mask])
                run = "" if problem.preemptible[j] else " in one contiguous run at one site"
                out.append(
                    f"{problem.job_ids[j]}: needs {problem.work_units[j] * problem.slot_hours:g} "
                    f"GPU-h{run} at {names}; at most {most * problem.slot_hours:g} fit its window"
                )
    return out


def check_feasible(problem: Problem) -> None:
    """Raise :class:`PlanningError` naming every job that fits nowhere (see
    :func:`infeasible_jobs`); work that only competition crowds out is reported unfinished."""
    bad = infeasible_jobs(problem)
    if bad:
        shown = "\n  ".join(bad[:_MAX_NAMED])
        more = f"\n  ... and {len(bad) - _MAX_NAMED} more" if len(bad) > _MAX_NAMED else ""
        raise PlanningError(
            f"{len(bad)} job(s) fit nowhere, even alone on an empty fleet (site GPUs, grid import "
            f"limit and caps over their window at their allowed sites):\n  {shown}{more}"
        )
