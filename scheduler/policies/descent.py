"""Ramp down ahead: no planned fall steeper than a site's ramp-down limit where work runs out.

The forward fit (:mod:`.ramp_fit`) keeps each step after the slot before; it holds a fall by
bringing later work forward, which cannot work where no work is left (the last window ends, the
work is done). This pass walks each site's slots backwards and lowers the slot before such a
fall to what the limit allows, so the load comes down over the slots ahead of it:

* in the first slot, its preemptible work moves first to other sites still falling from the
  day before faster than their limit;
* its preemptible work moves into the slot after where the job's window goes on (as far as
  that slot stays within a step of the one after it), then to earlier slots of the window at
  the same site (the latest first, the jobs released earliest first); always where the site's
  room (size, caps, import limit), the job's ``max_gpus`` and the ramp-up limit leave room;
* what finds no room is left unplaced (reported unfinished), a non-preemptible block ending in
  that slot whole;
* never below what the site needs to come down from the day before's load
  (:func:`floor_gpus`): where work runs out sooner, the fall is the day before's to answer for.

Moving work earlier can make a steeper fall one slot earlier; the backward walk meets it next.
A fall a cap forces (less room after it than the ramp needs) stays: the cap wins, as everywhere
(:mod:`scheduler.ramps`). Lowering a slot to at most a step above the next never makes a rise.
"""

from __future__ import annotations

import numpy as np

from scheduler.policies.base import PlanArrays
from scheduler.problem import Problem

__all__ = ["descend_ahead", "floor_gpus", "steep_falls"]

_GPU_TOLERANCE = 1e-9


def _step_gpus(limit_mw: np.ndarray, mw_per_gpu: np.ndarray) -> np.ndarray:
    """Whole GPUs a ramp limit allows per step ``[site]`` (``inf`` without a limit)."""
    return np.floor(limit_mw / mw_per_gpu + _GPU_TOLERANCE)


def floor_gpus(problem: Problem) -> np.ndarray:
    """Fewest GPUs per ``[site, slot]`` the ramp-down limit lets a site run coming down from
    the day before's load (``problem.initial_gpus``) one step per slot (int; zeros when that
    load is unknown). A slot at its floor cannot come down sooner."""
    n_sites, n_slots = len(problem.sites), problem.horizon.n_slots
    floor = np.zeros((n_sites, n_slots), dtype=np.int64)
    if problem.initial_gpus is None:
        return floor
    down = problem.ramp_down_mw / problem.mw_per_gpu
    level = problem.initial_gpus.astype(float)
    for t in range(n_slots):
        level = np.where(np.isfinite(down), np.ceil(level - down - _GPU_TOLERANCE), 0.0)
        level = np.maximum(level, 0.0)
        if not level.any():
            break
        floor[:, t] = level
    return floor


def steep_falls(problem: Problem, load_gpus: np.ndarray) -> np.ndarray:
    """Slots ``u`` after which a site's GPUs ``[site, slot]`` fall by more than its ramp-down
    limit with neither a cap forcing it nor ``u`` at its :func:`floor_gpus` ``[site, slot]``
    (bool; the last slot is never one)."""
    down = _step_gpus(problem.ramp_down_mw, problem.mw_per_gpu)[:, None]
    before, after = load_gpus[:, :-1], load_gpus[:, 1:]
    forced = problem.capacity_gpus[:, 1:] + down < before  # the room after is below the ramp
    forced |= before <= floor_gpus(problem)[:, :-1]  # still coming down from the day before
    steep = (before > after + down) & ~forced
    return np.concatenate([steep, np.zeros((len(problem.sites), 1), dtype=bool)], axis=1)


def descend_ahead(problem: Problem, arrays: PlanArrays) -> PlanArrays:
    """``arrays`` with every steep fall (:func:`steep_falls`) brought within the ramp-down
    limit as the module docstring says; unchanged when there is none."""
    load = np.zeros((len(problem.sites), problem.horizon.n_slots), dtype=np.int64)
    np.add.at(load, (arrays.site, arrays.slot), arrays.gpus)
    if not steep_falls(problem, load).any():
        return arrays
    return _Descent(problem, arrays, load).run()


class _Descent:
    def __init__(self, problem: Problem, arrays: PlanArrays, load: np.ndarray) -> None:
        self.p = problem
        self.job = arrays.job.astype(np.int64)
        self.site = arrays.site.astype(np.int64)
        self.slot = arrays.slot.astype(np.int64)
        self.gpus = arrays.gpus.astype(np.int64).copy()
        self.load = load
        self.up = _step_gpus(problem.ramp_up_mw, problem.mw_per_gpu)
        self.down = _step_gpus(problem.ramp_down_mw, problem.mw_per_gpu)
        self.floor = floor_gpus(problem)

    def run(self) -> PlanArrays:
        p = self.p
        for s in np.flatnonzero(np.isfinite(self.down)).tolist():
            for u in range(p.horizon.n_slots - 2, -1, -1):
                gap = int(self.load[s, u] - self.load[s, u + 1] - self.down[s])
                if gap <= 0 or p.capacity_gpus[s, u + 1] + self.down[s] < self.load[s, u]:
                    continue
                if self.load[s, u] <= self.floor[s, u]:
                    continue  # still coming down from the day before
                if u == 0:
                    gap = self._move_aside(s, gap)
                gap = self._move_later(s, u, gap)
                lower = min(gap, int(self.load[s, u] - self.floor[s, u]))
                if lower > 0:
                    lower = self._move_earlier(s, u, lower)
                if lower > 0:
                    self._drop(s, u, lower)
        keep = self.gpus > 0
        return PlanArrays(self.job[keep], self.site[keep], self.slot[keep], self.gpus[keep])

    def _rows(self, s: int, u: int) -> np.ndarray:
        return np.flatnonzero((self.site == s) & (self.slot == u) & (self.gpus > 0))

    def _room(self, j: int, s: int, t: int) -> int:
        """GPUs job ``j`` may gain at site ``s`` in slot ``t``."""
        p = self.p
        if t > 0:
            before = float(self.load[s, t - 1])
        else:
            before = np.inf if p.initial_gpus is None else float(np.floor(p.initial_gpus[s]))
        in_slot = int(self.gpus[(self.job == j) & (self.slot == t)].sum())
        room = min(
            float(p.capacity_gpus[s, t] - self.load[s, t]),
            float(p.max_gpus[j] - in_slot),
            before + self.up[s] - self.load[s, t],
        )
        return max(int(room), 0)

    def _add(self, j: int, s: int, t: int, gpus: int) -> None:
        self.job = np.append(self.job, j)
        self.site = np.append(self.site, s)
        self.slot = np.append(self.slot, t)
        self.gpus = np.append(self.gpus, gpus)
        self.load[s, t] += gpus

    def _move_aside(self, s: int, excess: int) -> int:
        """In the first slot, move preemptible work of ``s`` to other sites that fall from the
        day before faster than the limit (below their :func:`floor_gpus`): it holds their first
        step, and the jobs keep their GPUs in the slot and their last slot, so no site that
        could have run them is left short for it. Not with ``max_site_moves``."""
        p = self.p
        if p.max_site_moves is not None:
            return excess
        for row in self._rows(s, 0)[p.preemptible[self.job[self._rows(s, 0)]]].tolist():
            j = int(self.job[row])
            for other in np.flatnonzero(p.site_mask[j] & (self.load[:, 0] < self.floor[:, 0])):
                if other == s or excess <= 0:
                    continue
                room = min(self.floor[other, 0], p.capacity_gpus[other, 0]) - self.load[other, 0]
                above_floor = int(self.load[s, 0] - self.floor[s, 0])
                gpus = min(excess, int(self.gpus[row]), int(room), above_floor)
                if gpus <= 0:
                    continue
                self.gpus[row] -= gpus
                self.load[s, 0] -= gpus
                self._add(j, int(other), 0, gpus)
                excess -= gpus
        return excess

    def _move_later(self, s: int, u: int, excess: int) -> int:
        """Move preemptible work of ``(s, u)`` into ``u + 1`` where its window goes on (each GPU
        moved closes the gap by two), keeping ``u + 1`` within a step of ``u + 2``; return what
        is left to lower."""
        p = self.p
        t = u + 1
        after = self.load[s, t + 1] + self.down[s] if t + 1 < p.horizon.n_slots else np.inf
        rows = self._rows(s, u)
        rows = rows[p.preemptible[self.job[rows]] & (p.deadline_slot[self.job[rows]] > t)]
        rows = rows[np.argsort(-p.deadline_slot[self.job[rows]], kind="stable")]
        for row in rows.tolist():
            j = int(self.job[row])
            in_slot = int(self.gpus[(self.job == j) & (self.slot == t)].sum())
            room = min(
                float(p.capacity_gpus[s, t] - self.load[s, t]),
                float(p.max_gpus[j] - in_slot),
                after - self.load[s, t],
                (self.up[s] + self.load[s, u] - self.load[s, t]) // 2,
            )
            above_floor = int(self.load[s, u] - self.floor[s, u])
            gpus = min(-(-excess // 2), int(self.gpus[row]), max(int(room), 0), above_floor)
            if gpus <= 0:
                continue
            self.gpus[row] -= gpus
            self.load[s, u] -= gpus
            self._add(j, s, t, gpus)
            excess -= 2 * gpus
            if excess <= 0:
                break
        return max(excess, 0)

    def _move_earlier(self, s: int, u: int, excess: int) -> int:
        """Move up to ``excess`` GPUs of preemptible work out of ``(s, u)`` into earlier slots;
        return what is left to lower."""
        p = self.p
        rows = self._rows(s, u)
        rows = rows[p.preemptible[self.job[rows]]]
        rows = rows[np.argsort(p.release_slot[self.job[rows]], kind="stable")]
        for row in rows.tolist():
            j = int(self.job[row])
            for t in range(u - 1, int(p.release_slot[j]) - 1, -1):
                if excess <= 0 or self.gpus[row] <= 0:
                    break
                gpus = min(excess, int(self.gpus[row]), self._room(j, s, t))
                if gpus <= 0:
                    continue
                self.gpus[row] -= gpus
                self.load[s, u] -= gpus
                self._add(j, s, t, gpus)
                excess -= gpus
        return excess

    def _drop(self, s: int, u: int, excess: int) -> None:
        """Leave ``excess`` GPUs of ``(s, u)`` unplaced: preemptible work first (the latest
        deadline first), then whole non-preemptible blocks that end in ``u``."""
        p = self.p
        rows = self._rows(s, u)
        soft = rows[p.preemptible[self.job[rows]]]
        soft = soft[np.argsort(-p.deadline_slot[self.job[soft]], kind="stable")]
        for row in soft.tolist():
            cut = min(excess, int(self.gpus[row]))
            self.gpus[row] -= cut
            self.load[s, u] -= cut
            excess -= cut
            if excess <= 0:
                return
        for row in rows[~p.preemptible[self.job[rows]]].tolist():
            block = np.flatnonzero((self.job == self.job[row]) & (self.gpus > 0))
            if self.slot[block].max() != u:
                continue  # it runs on after u: it is in the lower slot too
            np.subtract.at(self.load, (self.site[block], self.slot[block]), self.gpus[block])
            excess -= int(self.gpus[row])
            self.gpus[block] = 0
            if excess <= 0:
                return
