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
"""

from __future__ import annotations

import time

import numpy as np

from scheduler.policies.base import PlanArrays, PlanResult, PlanStatus, make_result
from scheduler.policies.blocks import block_gpus, place_block
from scheduler.policies.ramp_fit import fit_ramps
from scheduler.problem import Problem

__all__ = ["GreedyPolicy"]

_GPU_TOLERANCE = 1e-9
SAFETY_SHARE = 0.5  # share of a job's remaining slots greedy will not count on


def _spare_slots(left_slots: np.ndarray) -> np.ndarray:
    """Slots after this one a job may still count on: all but :data:`SAFETY_SHARE` of them."""
    return np.floor((left_slots - 1) * (1 - SAFETY_SHARE)).astype(np.int64)


class GreedyPolicy:
    """Slot-by-slot green follower; see the module docstring."""

    name = "greedy"
    follows_forecast = True

    def plan(self, problem: Problem) -> PlanResult:
        began = time.perf_counter()
        state = _State(problem)
        for t in range(problem.horizon.n_slots):
            state.start_blocks(t)
            state.fill(t)
        return make_result(
            problem,
            self.name,
            fit_ramps(problem, state.arrays()),
            PlanStatus.HEURISTIC,
            time.perf_counter() - began,
        )


class _State:
    def __init__(self, problem: Problem) -> None:
        self.p = problem
        self.free = problem.capacity_gpus.copy()
        self.green = np.clip(np.floor(problem.green_gpus + _GPU_TOLERANCE), 0, None).astype(
            np.int64
        )
        self.green = np.minimum(self.green, self.free)
        self.remaining = problem.work_units.copy()
        self.mask = problem.site_mask.copy()
        self.pin = problem.max_site_moves is not None
        self.started = problem.preemptible.copy()  # preemptible jobs never start a block
        self.last_start = problem.deadline_slot - problem.duration_slots
        self.parts: list[PlanArrays] = []  # blocks
        self.filled: list[tuple[np.ndarray, int, int, np.ndarray]] = []  # (jobs, site, slot, gpus)

    def arrays(self) -> PlanArrays:
        """Every GPU placed, as plan rows."""
        if self.filled:
            jobs, sites, slots, gpus = zip(*self.filled, strict=True)
            lengths = [len(j) for j in jobs]
            self.parts.append(
                PlanArrays(
                    np.concatenate(jobs),
                    np.repeat(sites, lengths),
                    np.repeat(slots, lengths),
                    np.concatenate(gpus),
                )
            )
            self.filled = []
        return PlanArrays.concat(self.parts)

    def _use(self, site: int, slots: slice | int, gpus: np.ndarray | int) -> None:
        """``gpus`` more GPUs busy at ``site`` in ``slots`` (``free`` already lowered): less
        green headroom there, never below zero or above the GPUs still free."""
        green = np.maximum(self.green[site, slots] - gpus, 0)
        self.green[site, slots] = np.minimum(green, self.free[site, slots])

    def start_blocks(self, t: int) -> None:
        p = self.p
        waiting = np.flatnonzero(~self.started & (p.release_slot <= t) & (t <= self.last_start))
        # a block starts now on green headroom that carries its first slot, or anywhere at its
        # last chance; headroom only shrinks while this slot's blocks are placed
        first_gpus = np.minimum(p.max_gpus[waiting], p.work_units[waiting])
        headroom = np.where(self.mask[waiting], self.green[:, t], 0).max(axis=1, initial=0)
        waiting = waiting[(first_gpus <= headroom) | (self.last_start[waiting] == t)]
        order = waiting[np.lexsort((waiting, -p.work_units[waiting], self.last_start[waiting]))]
        green = self.green[:, t]  # a view: lowered as blocks are placed
        for j in order.tolist():
            gpus = block_gpus(int(p.work_units[j]), int(p.max_gpus[j]))
            last_chance = t == self.last_start[j]
            run = slice(t, t + len(gpus))  # inside the horizon: t <= last start
            sites = np.flatnonzero(self.mask[j]).tolist()
            for s in sorted(sites, key=lambda s: -green[s]):  # by headroom (stable)
                if green[s] < gpus[0] and not last_chance:
                    break  # sites are by headroom: none further carries it either
                if (self.free[s, run] >= gpus).all():  # the block fits from t
                    self.parts.append(place_block(self.free, j, s, t, gpus))
                    self._use(s, run, gpus)
                    self.started[j] = True
                    self.remaining[j] = 0
                    break

    def _crowded(
        self, t: int, remaining: np.ndarray, max_gpus: np.ndarray, must: np.ndarray
    ) -> np.ndarray:
        """Raise must-run GPUs (least slack first) when all the work left would not fit in the
        capacity left after this slot, counting on only part of it (:data:`SAFETY_SHARE`).

        Per-job must-run work alone lets jobs with long windows all wait for the same late slots.
        """
        future = float(self.free[:, t + 1 :].sum()) * (1 - SAFETY_SHARE)
        backlog = int(remaining.sum() - future) - int(must.sum())
        if backlog <= 0:
            return must
        room = np.minimum(max_gpus, remaining) - must
        return must + np.clip(backlog - (np.cumsum(room) - room), 0, room)

    def fill(self, t: int) -> None:
        p = self.p
        active = np.flatnonzero(
            p.preemptible & (p.release_slot <= t) & (t < p.deadline_slot) & (self.remaining > 0)
        )
        if len(active) == 0:
            return
        left_slots = p.deadline_slot[active] - t
        max_gpus, remaining = p.max_gpus[active], self.remaining[active]
        slack = left_slots - (-(-remaining // max_gpus))
        order = np.lexsort((active, slack))
        active, max_gpus, remaining = active[order], max_gpus[order], remaining[order]
        must = np.clip(remaining - max_gpus * _spare_slots(left_slots[order]), 0, max_gpus)
        must = self._crowded(t, remaining, max_gpus, must)
        extra = np.minimum(max_gpus, remaining) - must
        by_headroom = np.argsort(-self.green[:, t], kind="stable").tolist()
        by_co2 = np.lexsort((-self.green[:, t], p.grid_kg_per_gpu_slot[:, t])).tolist()
        taken = np.zeros(len(active), dtype=np.int64)
        allowed = self.mask[active].T  # [site, active job]
        for want, sites, green_only in (
            (must, by_headroom, True),
            (must, by_co2, False),
            (extra, by_headroom, True),
        ):
            if not want.any():
                continue
            for s in sites:
                room = int(self.green[s, t] if green_only else self.free[s, t])
                if room <= 0:
                    continue
                wish = want * allowed[s]
                # in turn: each job gets what the jobs before it leave, at most its wish
                give = np.minimum(np.maximum(room - (np.cumsum(wish) - wish), 0), wish)
                got = np.flatnonzero(give)
                if len(got) == 0:
                    continue
                want -= give
                taken += give
                self.free[s, t] -= give.sum()
                self.green[s, t] = min(max(self.green[s, t] - give.sum(), 0), self.free[s, t])
                self.filled.append((active[got], s, t, give[got]))
                if self.pin:
                    self.mask[active[got]] = False
                    self.mask[active[got], s] = True
                    allowed = self.mask[active].T
        self.remaining[active] -= taken
