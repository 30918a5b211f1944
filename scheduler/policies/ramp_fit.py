"""Fit a plan to its sites' ramp limits, slot by slot (shared by every policy).

Walking the horizon, each site's GPUs in slot ``t`` are kept between the bounds of
:func:`~scheduler.ramps.ramp_bounds_gpus` after the GPUs of slot ``t - 1`` (the first slot after
``problem.initial_gpus`` when known):

* **above the ramp-up bound**: preemptible work is deferred, the latest deadline first, into the
  job's backlog; when that is not enough, non-preemptible blocks starting in ``t`` are dropped
  whole (reported unfinished);
* **room below the bound**: backlog (deferred, or left unplaced by the policy) resumes, the
  earliest deadline first, inside the job's window and up to its ``max_gpus``;
* **below the ramp-down bound**: after backlog, work the job has planned in later slots (at
  any site) is brought forward (earliest deadline first, taken from its latest slots).

Backlog never runs outside its job's window, so what cannot be placed is reported unfinished.
With ``max_site_moves`` set, work resumes only at a site the job already runs at. Where a fall
cannot be held because no work is left, :func:`.descent.descend_ahead` then lowers the slots
before it, so the load comes down ahead of the end of the work.
"""

from __future__ import annotations

import numpy as np

from scheduler.policies.base import PlanArrays
from scheduler.policies.descent import descend_ahead
from scheduler.problem import Problem
from scheduler.ramps import ramp_bounds_gpus

__all__ = ["fit_ramps", "has_ramps"]


def has_ramps(problem: Problem) -> bool:
    """Whether any site has a finite ramp limit."""
    return bool(np.isfinite(problem.ramp_up_mw).any() or np.isfinite(problem.ramp_down_mw).any())


def fit_ramps(problem: Problem, arrays: PlanArrays) -> PlanArrays:
    """``arrays`` changed as little as the module docstring says so every step keeps its ramp."""
    if not has_ramps(problem) or problem.n_jobs == 0:
        return arrays
    return descend_ahead(problem, _Fit(problem, arrays).run())


class _Fit:
    def __init__(self, problem: Problem, arrays: PlanArrays) -> None:
        self.p = problem
        n_sites, n_slots = len(problem.sites), problem.horizon.n_slots
        order = np.lexsort((arrays.site, arrays.slot))
        self.job = arrays.job[order].astype(np.int64)
        self.site = arrays.site[order].astype(np.int64)
        self.slot = arrays.slot[order].astype(np.int64)
        self.gpus = arrays.gpus[order].astype(np.int64).copy()
        self.extra: list[PlanArrays] = []
        self.ptr = np.searchsorted(self.slot, np.arange(n_slots + 1))
        placed = np.bincount(self.job, weights=self.gpus, minlength=problem.n_jobs)
        self.backlog = np.maximum(problem.work_units - placed.astype(np.int64), 0)
        self.load = np.zeros((n_sites, n_slots), dtype=np.int64)
        np.add.at(self.load, (self.site, self.slot), self.gpus)
        self.ran_at = np.zeros((problem.n_jobs, n_sites), dtype=bool)
        self.ran_at[self.job, self.site] = True
        self.deadline_order = np.argsort(problem.deadline_slot, kind="stable")
        self._future: dict[int, np.ndarray] | None = None
        self.job_gpus = np.zeros(problem.n_jobs, dtype=np.int64)  # [job] GPUs in slot counted
        self._counted = -1  # the slot job_gpus counts (:meth:`_count`)
        # the bounds of every slot after the slot before as planned [site, slot]
        first = ramp_bounds_gpus(problem.initial_gpus, problem.ramp_up_mw, problem.ramp_down_mw,
                                 problem.mw_per_gpu, problem.capacity_gpus[:, 0])  # fmt: skip
        rest = ramp_bounds_gpus(
            self.load[:, :-1].astype(float), problem.ramp_up_mw[:, None],
            problem.ramp_down_mw[:, None], problem.mw_per_gpu[:, None],
            problem.capacity_gpus[:, 1:],
        )  # fmt: skip
        self.planned_load = self.load.copy()
        self.planned_most = np.column_stack([first.most, rest.most])
        self.planned_least = np.column_stack([first.least, rest.least])

    def run(self) -> PlanArrays:
        if not self._keeps_every_ramp():
            self._walk()
        keep = self.gpus > 0
        own = PlanArrays(self.job[keep], self.site[keep], self.slot[keep], self.gpus[keep])
        return PlanArrays.concat([own, *self.extra])

    def _keeps_every_ramp(self) -> bool:
        """Whether the walk would change nothing: no backlog to resume, and each slot's GPUs
        within the bounds its slot before sets (itself unchanged then); the usual case for a
        plan made inside the optimizer's ramp-aware profile, checked at once for all slots."""
        if self.backlog.any():
            return False
        return bool(((self.load <= self.planned_most) & (self.load >= self.planned_least)).all())

    def _bounds(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """``most`` and ``least`` GPUs per site in slot ``t`` after the slot before as it stands
        now (the walk changes slots from ``t`` on only): the planned bounds while that slot is
        unchanged, which spares most slots a call of :func:`ramp_bounds_gpus`."""
        if t == 0 or (self.load[:, t - 1] == self.planned_load[:, t - 1]).all():
            return self.planned_most[:, t], self.planned_least[:, t]
        p = self.p
        bounds = ramp_bounds_gpus(self.load[:, t - 1].astype(float), p.ramp_up_mw,
                                  p.ramp_down_mw, p.mw_per_gpu, p.capacity_gpus[:, t])  # fmt: skip
        return bounds.most, bounds.least

    def _count(self, t: int) -> None:
        """Count each job's GPUs in slot ``t`` into ``job_gpus`` (once per slot, before a move
        changes the slot; the moves keep it up to date after)."""
        if self._counted != t:
            a, b = self.ptr[t], self.ptr[t + 1]
            self.job_gpus = np.bincount(
                self.job[a:b], weights=self.gpus[a:b], minlength=self.p.n_jobs
            ).astype(np.int64)
            self._counted = t

    def _walk(self) -> None:
        p = self.p
        for t in range(p.horizon.n_slots):
            most, least = self._bounds(t)
            sites = range(len(p.sites))
            for s in sites:  # cuts first: they free room in the jobs' max_gpus elsewhere
                if self.load[s, t] > most[s]:
                    self._defer(t, s, int(self.load[s, t] - most[s]))
            for s in sites:
                if self.load[s, t] < most[s] and self.backlog.any():
                    self._resume(t, s, int(most[s] - self.load[s, t]))
            for s in sites:
                if self.load[s, t] < least[s]:
                    self._bring_forward(t, s, int(least[s] - self.load[s, t]))

    # ------------------------------------------------------------------ helpers
    def _rows(self, t: int, s: int) -> np.ndarray:
        a, b = self.ptr[t], self.ptr[t + 1]
        return a + np.flatnonzero((self.site[a:b] == s) & (self.gpus[a:b] > 0))

    def _add(self, t: int, s: int, job: np.ndarray, gpus: np.ndarray) -> None:
        self._count(t)
        hit = gpus > 0
        if hit.any():
            n = int(hit.sum())
            self.extra.append(PlanArrays(job[hit], np.full(n, s), np.full(n, t), gpus[hit]))
            self.load[s, t] += int(gpus[hit].sum())
            np.add.at(self.job_gpus, job[hit], gpus[hit])
            self.ran_at[job[hit], s] = True

    def _candidates(self, t: int, s: int) -> np.ndarray:
        """Preemptible jobs that may run at ``s`` in ``t``, earliest deadline first."""
        p = self.p
        j = self.deadline_order
        ok = p.preemptible[j] & p.site_mask[j, s] & (p.release_slot[j] <= t)
        ok &= t < p.deadline_slot[j]
        if p.max_site_moves is not None:
            ok &= self.ran_at[j, s] | ~self.ran_at[j].any(axis=1)
        return j[ok]

    # ------------------------------------------------------------------ the three moves
    def _defer(self, t: int, s: int, excess: int) -> None:
        p = self.p
        self._count(t)
        rows = self._rows(t, s)
        soft = rows[p.preemptible[self.job[rows]]]
        soft = soft[np.argsort(-p.deadline_slot[self.job[soft]], kind="stable")]
        cut = np.clip(excess - (np.cumsum(self.gpus[soft]) - self.gpus[soft]), 0, self.gpus[soft])
        self.gpus[soft] -= cut
        np.add.at(self.backlog, self.job[soft], cut)
        np.subtract.at(self.job_gpus, self.job[soft], cut)
        self.load[s, t] -= int(cut.sum())
        excess -= int(cut.sum())
        if excess <= 0:
            return
        starting = [
            r for r in rows
            if not p.preemptible[self.job[r]] and p.release_slot[self.job[r]] <= t
            and not ((self.job == self.job[r]) & (self.slot < t) & (self.gpus > 0)).any()
        ]  # fmt: skip
        for r in sorted(starting, key=lambda r: -int(self.gpus[r])):
            block = np.flatnonzero((self.job == self.job[r]) & (self.gpus > 0))
            np.subtract.at(self.load, (self.site[block], self.slot[block]), self.gpus[block])
            excess -= int(self.gpus[r])
            self.job_gpus[self.job[r]] -= int(self.gpus[r])
            self.gpus[block] = 0  # the whole block goes: reported unfinished
            if excess <= 0:
                return

    def _resume(self, t: int, s: int, room: int) -> None:
        jobs = self._candidates(t, s)
        jobs = jobs[self.backlog[jobs] > 0]
        if not len(jobs):
            return
        self._count(t)
        free = np.minimum(self.p.max_gpus[jobs] - self.job_gpus[jobs], self.backlog[jobs])
        free = np.maximum(free, 0)
        give = np.clip(room - (np.cumsum(free) - free), 0, free)
        self.backlog[jobs] -= give
        self._add(t, s, jobs, give)

    def _bring_forward(self, t: int, s: int, need: int) -> None:
        jobs = self._candidates(t, s)
        if not len(jobs):
            return
        self._count(t)
        room = np.maximum(self.p.max_gpus[jobs] - self.job_gpus[jobs], 0)
        future = self._future_rows()
        for j, free in zip(jobs.tolist(), room.tolist(), strict=True):
            if need <= 0:
                break
            rows = future.get(j)
            if rows is None or free <= 0:
                continue
            rows = rows[(self.slot[rows] > t) & (self.gpus[rows] > 0)][::-1]  # latest first
            take = min(free, need)
            cut = np.clip(take - (np.cumsum(self.gpus[rows]) - self.gpus[rows]), 0, self.gpus[rows])
            moved = int(cut.sum())
            if moved == 0:
                continue
            self.gpus[rows] -= cut
            np.subtract.at(self.load, (self.site[rows], self.slot[rows]), cut)
            self._add(t, s, np.array([j]), np.array([moved]))
            need -= moved

    def _future_rows(self) -> dict[int, np.ndarray]:
        """Row indices of each preemptible job's work, in slot order (built once)."""
        if self._future is None:
            soft = np.flatnonzero(self.p.preemptible[self.job])
            order = soft[np.lexsort((self.slot[soft], self.job[soft]))]
            cuts = np.flatnonzero(np.diff(self.job[order])) + 1
            starts = self.job[order][np.r_[0, cuts]] if len(order) else np.zeros(0, np.int64)
            self._future = {
                int(j): rows for j, rows in zip(starts, np.split(order, cuts), strict=True)
            }
        return self._future
