"""``greedy``: follow the green, slot by slot, without looking ahead at supply.

In each slot, in this order:

1. Non-preemptible jobs not yet started (most urgent first) start as one contiguous block at the
   allowed site with the most green headroom, if that headroom carries the block's GPUs now, or
   wherever the block fits if this is their last chance to start.
2. Preemptible jobs, least slack first (slack = slots left minus slots still needed at
   ``max_gpus``), place their *must-run* GPUs (work that can no longer wait), first into green
   headroom (sites by most headroom), then into any free capacity (sites by lowest grid CO2).
   When the work left would not fit the capacity left after this slot (counting on only part
   of it), more work becomes must-run now, least slack first.
3. The same jobs take more GPUs, up to ``max_gpus``, but only where green headroom remains.

Green headroom is the GPUs the site's green supply carries after base load and the GPUs already
placed. Site GPUs, the grid import limit and every cap are hard limits. With a
``max_site_moves`` limit a job stays at the first site it runs at.

The plan is then fitted to the sites' ramp limits slot by slot
(:func:`~scheduler.policies.ramp_fit.fit_ramps`): each slot's load change is capped.

The slot loop is sequential, so it is compiled with numba (:func:`_plan_slots`) rather than
written as numpy calls, whose per-call overhead dominated it. The first call in a process
compiles it, or loads it from numba's cache in ``__pycache__`` (:func:`warm_up`). Ties are broken
as numpy's stable sorts break them: by job or site index.
"""

from __future__ import annotations

import time

import numba
import numpy as np

from scheduler.policies.base import PlanArrays, PlanResult, PlanStatus, make_result
from scheduler.policies.blocks import block_gpus
from scheduler.policies.ramp_fit import fit_ramps
from scheduler.problem import Problem

__all__ = ["GreedyPolicy", "warm_up"]

_GPU_TOLERANCE = 1e-9
SAFETY_SHARE = 0.5  # share of a job's remaining slots greedy will not count on

_block_gpus = numba.njit(cache=True)(block_gpus)


class GreedyPolicy:
    """Slot-by-slot green follower; see the module docstring."""

    name = "greedy"
    follows_forecast = True

    def plan(self, problem: Problem) -> PlanResult:
        began = time.perf_counter()
        return make_result(
            problem,
            self.name,
            fit_ramps(problem, _placed(problem)),
            PlanStatus.HEURISTIC,
            time.perf_counter() - began,
        )


def warm_up() -> None:
    """Compile the slot loop, or load it from numba's cache, on a 1-job, 2-slot problem (the
    first call in a process does; call it where a process starts, not on a plan's clock)."""
    ones = np.ones(1, dtype=np.int64)
    _plan_slots(
        np.ones((1, 2), dtype=np.int64),  # free
        np.ones((1, 2), dtype=np.int64),  # green
        ones,  # work
        ones,  # max_gpus
        np.zeros(1, dtype=np.int64),  # release
        2 * ones,  # deadline
        ones,  # last_start
        np.ones(1, dtype=bool),  # preemptible
        np.ones((1, 1), dtype=bool),  # mask
        np.zeros((1, 2)),  # co2
        False,
    )


def _placed(problem: Problem) -> PlanArrays:
    """Every GPU greedy places, as plan rows: the blocks in the order they start, then the
    preemptible GPUs slot by slot."""
    green = np.clip(np.floor(problem.green_gpus + _GPU_TOLERANCE), 0, None).astype(np.int64)

    def typed(array: np.ndarray, dtype: type) -> np.ndarray:
        """``array`` as the one compiled signature takes it: contiguous and writeable (numba
        types read-only arrays apart, such as job columns out of pandas or arrays unpickled from
        bytes, and would compile the loop again, for seconds, on the first plan)."""
        out: np.ndarray = np.ascontiguousarray(array, dtype=dtype)
        return out if out.flags.writeable else out.copy()

    blocks, filled = _plan_slots(
        typed(problem.capacity_gpus, np.int64),
        typed(np.minimum(green, problem.capacity_gpus), np.int64),
        typed(problem.work_units, np.int64),
        typed(problem.max_gpus, np.int64),
        typed(problem.release_slot, np.int64),
        typed(problem.deadline_slot, np.int64),
        typed(problem.deadline_slot - problem.duration_slots, np.int64),
        typed(problem.preemptible, np.bool_),
        typed(problem.site_mask, np.bool_),
        typed(problem.grid_kg_per_gpu_slot, np.float64),
        problem.max_site_moves is not None,
    )
    return PlanArrays(*np.concatenate([blocks, filled], axis=1))


@numba.njit(cache=True)
def _plan_slots(
    free: np.ndarray,
    green: np.ndarray,
    work: np.ndarray,
    max_gpus: np.ndarray,
    release: np.ndarray,
    deadline: np.ndarray,
    last_start: np.ndarray,
    preemptible: np.ndarray,
    mask: np.ndarray,
    co2: np.ndarray,
    pin: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-3 of the module docstring in every slot.

    ``free`` (GPUs free), ``green`` (green headroom [GPUs], at most ``free``) and ``co2`` (grid
    kg per GPU-slot) are ``[site, slot]``; ``mask`` (sites allowed) is ``[job, site]``; the rest
    are ``[job]``: work [GPU-slots], max GPUs, first usable slot, end slot (exclusive), last
    start of a block. ``pin`` keeps a job at its first site. The arguments are left as they are.
    Returns the blocks' rows and the preemptible rows, each ``[(job, site, slot, gpus), row]``.
    """
    free, green, mask = free.copy(), green.copy(), mask.copy()  # updated as GPUs are placed
    remaining = work.copy()  # preemptible work not yet placed [GPU-slots]
    started = preemptible.copy()  # preemptible jobs never start a block
    blocks, n_blocks = np.empty((4, 16), dtype=np.int64), np.int64(0)  # not literal 0s:
    filled, n_filled = np.empty((4, 16), dtype=np.int64), np.int64(0)  # one signature each
    for t in range(free.shape[1]):
        blocks, n_blocks = _start_blocks(
            t, free, green, mask, started, release, last_start, work, max_gpus, blocks, n_blocks
        )
        filled, n_filled = _fill(
            t, free, green, remaining, mask, pin, preemptible, release, deadline, max_gpus, co2,
            filled, n_filled,
        )  # fmt: skip
    return blocks[:, :n_blocks], filled[:, :n_filled]


@numba.njit(cache=True)
def _append(
    rows: np.ndarray, n: np.int64, job: int, site: int, slot: int, gpus: int
) -> tuple[np.ndarray, np.int64]:
    """``rows`` ``[(job, site, slot, gpus), row]`` with a row added after its first ``n``
    (grown, twice as long, when full), and the rows now held."""
    if n == rows.shape[1]:
        grown = np.empty((4, 2 * n), dtype=np.int64)
        grown[:, :n] = rows
        rows = grown
    rows[0, n], rows[1, n], rows[2, n], rows[3, n] = job, site, slot, gpus
    return rows, n + 1


@numba.njit(cache=True)
def _use(free: np.ndarray, green: np.ndarray, site: int, slot: int, gpus: np.int64) -> None:
    """``gpus`` more GPUs busy at ``site`` in ``slot``: fewer free, less green headroom there
    (never below zero or above the GPUs still free)."""
    free[site, slot] -= gpus
    green[site, slot] = min(max(green[site, slot] - gpus, 0), free[site, slot])


@numba.njit(cache=True)
def _start_blocks(
    t: int,
    free: np.ndarray,
    green: np.ndarray,
    mask: np.ndarray,
    started: np.ndarray,
    release: np.ndarray,
    last_start: np.ndarray,
    work: np.ndarray,
    max_gpus: np.ndarray,
    rows: np.ndarray,
    n: np.int64,
) -> tuple[np.ndarray, np.int64]:
    """Step 1 in slot ``t`` (arrays as in :func:`_plan_slots`, ``started`` ``[job]`` updated):
    ``rows`` with the blocks started added (see :func:`_append`)."""
    for j in _blocks_due(t, green, mask, started, release, last_start, work, max_gpus):
        gpus = _block_gpus(work[j], max_gpus[j])  # [slot of the block]
        d = len(gpus)  # inside the horizon: t <= last start
        s = _block_site(t, gpus, free[:, t : t + d], green[:, t], mask[j], last_start[j])
        if s >= 0:
            started[j] = True
            for k in range(d):
                _use(free, green, s, t + k, gpus[k])
                rows, n = _append(rows, n, j, s, t + k, gpus[k])
    return rows, n


@numba.njit(cache=True)
def _blocks_due(
    t: int,
    green: np.ndarray,
    mask: np.ndarray,
    started: np.ndarray,
    release: np.ndarray,
    last_start: np.ndarray,
    work: np.ndarray,
    max_gpus: np.ndarray,
) -> np.ndarray:
    """Blocks that may start in slot ``t`` ``[job]``: on green headroom that carries their first
    slot (before any block of this slot is placed: it only shrinks), or anywhere at their last
    chance; by last start, then largest work first."""
    due = np.empty(len(work), dtype=np.int64)
    n = 0
    for j in range(len(work)):
        if started[j] or release[j] > t or t > last_start[j]:
            continue
        headroom = 0  # on the sites allowed [GPUs]
        for s in range(green.shape[0]):
            if mask[j, s]:
                headroom = max(headroom, green[s, t])
        if min(max_gpus[j], work[j]) <= headroom or last_start[j] == t:
            due[n] = j
            n += 1
    due = due[:n]
    due = due[np.argsort(-work[due], kind="mergesort")]
    return due[np.argsort(last_start[due], kind="mergesort")]


@numba.njit(cache=True)
def _block_site(
    t: int, gpus: np.ndarray, free: np.ndarray, green: np.ndarray, allowed: np.ndarray, last: int
) -> int:
    """Site where a block of ``gpus`` ``[slot of the block]`` starts in slot ``t``, or -1: of the
    sites ``allowed`` ``[site]``, by most green headroom ``[site]`` in ``t``, the first where it
    fits in ``free`` ``[site, slot of the block]``, if that headroom carries its first slot or
    ``t`` is its ``last`` start."""
    sites = np.flatnonzero(allowed)
    for s in sites[np.argsort(-green[sites], kind="mergesort")]:
        if green[s] < gpus[0] and t != last:
            return -1  # sites are by headroom: none further carries it either
        if (free[s] >= gpus).all():
            return s
    return -1


@numba.njit(cache=True)
def _fill(
    t: int,
    free: np.ndarray,
    green: np.ndarray,
    remaining: np.ndarray,
    mask: np.ndarray,
    pin: bool,
    preemptible: np.ndarray,
    release: np.ndarray,
    deadline: np.ndarray,
    max_gpus: np.ndarray,
    co2: np.ndarray,
    rows: np.ndarray,
    n: np.int64,
) -> tuple[np.ndarray, np.int64]:
    """Steps 2 and 3 in slot ``t`` (arrays as in :func:`_plan_slots`, ``remaining`` [GPU-slots]
    ``[job]`` updated): ``rows`` with the GPUs placed added (see :func:`_append`)."""
    active = _fill_order(t, preemptible, release, deadline, remaining, max_gpus)
    if len(active) == 0:
        return rows, n
    must = _must_run(t, free, deadline[active], remaining[active], max_gpus[active])
    extra = np.minimum(max_gpus[active], remaining[active]) - must
    by_headroom = np.argsort(-green[:, t], kind="mergesort")  # [site]
    by_co2 = by_headroom[np.argsort(co2[by_headroom, t], kind="mergesort")]  # [site]
    for want, sites, green_only in (
        (must, by_headroom, True),
        (must, by_co2, False),
        (extra, by_headroom, True),
    ):
        if want.any():
            rows, n = _give(
                t, active, want, sites, green_only, free, green, remaining, mask, pin, rows, n
            )
    return rows, n


@numba.njit(cache=True)
def _fill_order(
    t: int,
    preemptible: np.ndarray,
    release: np.ndarray,
    deadline: np.ndarray,
    remaining: np.ndarray,
    max_gpus: np.ndarray,
) -> np.ndarray:
    """Preemptible jobs with work left that may run in slot ``t``, least slack first ``[job]``
    (slack = slots left minus slots still needed at ``max_gpus``)."""
    active = np.flatnonzero(preemptible & (release <= t) & (t < deadline) & (remaining > 0))
    slack = deadline[active] - t - (-(-remaining[active] // max_gpus[active]))
    return active[np.argsort(slack, kind="mergesort")]


@numba.njit(cache=True)
def _must_run(
    t: int, free: np.ndarray, deadline: np.ndarray, remaining: np.ndarray, max_gpus: np.ndarray
) -> np.ndarray:
    """GPUs the jobs (``[job in fill order]``) must run in slot ``t``: the work that would not
    fit at ``max_gpus`` in the slots after it they may count on, all but :data:`SAFETY_SHARE`;
    and more, least slack first, while all the work left would not fit in the capacity left
    after ``t`` (counting on only part of it), or per-job must-run work alone would let jobs
    with long windows all wait for the same late slots."""
    must = np.empty(len(remaining), dtype=np.int64)
    for i in range(len(remaining)):
        spare = int(np.floor((deadline[i] - t - 1) * (1 - SAFETY_SHARE)))  # slots
        must[i] = min(max(remaining[i] - max_gpus[i] * spare, 0), max_gpus[i])
    future = float(free[:, t + 1 :].sum()) * (1 - SAFETY_SHARE)
    backlog = int(remaining.sum() - future) - int(must.sum())
    if backlog <= 0:
        return must
    before = 0  # the room of the jobs before [GPUs]
    for i in range(len(remaining)):
        room = min(max_gpus[i], remaining[i]) - must[i]
        must[i] += min(max(backlog - before, 0), room)
        before += room
    return must


@numba.njit(cache=True)
def _give(
    t: int,
    active: np.ndarray,
    want: np.ndarray,
    sites: np.ndarray,
    green_only: bool,
    free: np.ndarray,
    green: np.ndarray,
    remaining: np.ndarray,
    mask: np.ndarray,
    pin: bool,
    rows: np.ndarray,
    n: np.int64,
) -> tuple[np.ndarray, np.int64]:
    """Each of ``sites`` in turn gives the jobs ``active`` allowed there (``want`` GPUs each,
    ``[job in fill order]``, lowered as given) its green headroom, or with ``green_only`` false
    its free GPUs, in slot ``t``: each job gets what the jobs before it leave, at most its wish.
    Returns ``rows`` with the GPUs given added (see :func:`_append`)."""
    for s in sites:
        room = green[s, t] if green_only else free[s, t]
        if room <= 0:
            continue
        before = 0  # the wishes of the jobs before [GPUs]
        given = np.int64(0)  # [GPUs]
        for i in range(len(active)):
            j = active[i]
            wish = want[i] if mask[j, s] else 0
            give = min(max(room - before, 0), wish)
            before += wish
            if give != 0:
                want[i] -= give
                remaining[j] -= give
                given += give
                rows, n = _append(rows, n, j, s, t, give)
                if pin:
                    mask[j] = False
                    mask[j, s] = True
        _use(free, green, s, t, given)
    return rows, n
