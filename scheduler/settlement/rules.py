"""What runs in a slot: the rules that fit the plan's work to what a site may run.

Every rule has one signature, ``rule(view, t, chunks, bounds)``: it changes slot ``t``'s
``chunks`` (and may take work from the plan's later rows) within the GPUs per site ``bounds``
allows (:class:`~scheduler.ramps.RampBounds`: caps, import limit and live capacity on the
supply the slot settles on, and the ramp from the slot before). The engine applies
:data:`RULES` in order; each rule is replaceable, and the order deferral cuts work in is a rule
of its own (:class:`Deferral`, :func:`preemptible_then_most_slack` by default):

1. :func:`cap_to_work_left`: no chunk of an inactive job, none above the work a job has left;
2. :class:`Deferral`: where a site is over, cut work into the jobs' backlog;
3. :func:`resume`: backlog where room is left, earliest deadline first, at the allowed site with
   the most room, up to ``max_gpus``, inside the job's window;
4. :func:`hold_ramp_down`: where a site would fall faster than its ramp-down limit, later work
   planned there comes forward;
5. :func:`use_surplus`: green supply above the forecast carries later grid-powered work now.

Rules 3 and 5 add work the plan did not put in ``t``; they never raise a site above what it can
come down from over the slots after, with the work left there (:func:`descent_room`), so work
pulled forward does not leave a fall steeper than the ramp-down limit where the work runs out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from scheduler.problem import Problem
from scheduler.ramps import RampBounds
from scheduler.settlement.cursor import PlanCursor
from scheduler.settlement.state import Chunks, JobsState

__all__ = [
    "RULES",
    "Deferral",
    "DeferralOrder",
    "LaterLoad",
    "SlotRule",
    "SlotView",
    "cap_to_work_left",
    "descent_room",
    "hold_ramp_down",
    "preemptible_then_most_slack",
    "resume",
    "use_surplus",
]

_GPU_TOLERANCE = 1e-9


class EventSink(Protocol):
    def __call__(self, t: int, kind: str, detail: str, **fields: object) -> None: ...


@dataclass
class SlotView:
    """What a rule sees and may change: the problem as planned and on the supply the slot
    settles on (``actual``), the jobs' state, the plan's rows, and where events go."""

    problem: Problem
    actual: Problem
    jobs: JobsState
    cursor: PlanCursor
    event: EventSink


SlotRule = Callable[[SlotView, int, Chunks, RampBounds], None]
"""``rule(view, t, chunks, bounds)``: see the module doc."""

DeferralOrder = Callable[[SlotView, int, np.ndarray], np.ndarray]
"""``order(view, t, jobs)``: the order in which the chunks of ``jobs`` (positions in the
problem's jobs, one per chunk) are cut at an over-full site, first cut first."""


def cap_to_work_left(view: SlotView, t: int, chunks: Chunks, bounds: RampBounds) -> None:
    """Drop chunks of inactive jobs; never run more than a job's work left."""
    jobs = view.jobs
    chunks.gpus[~jobs.active[chunks.job]] = 0
    planned = np.bincount(chunks.job, weights=chunks.gpus, minlength=view.problem.n_jobs)
    for j in np.flatnonzero(planned > jobs.remaining):
        over = int(planned[j] - jobs.remaining[j])
        for row in np.flatnonzero(chunks.job == j):
            cut = min(over, int(chunks.gpus[row]))
            chunks.gpus[row] -= cut
            over -= cut


def slack_h(view: SlotView, t: int) -> np.ndarray:
    """Hours to the deadline minus hours the work left needs at ``max_gpus`` ``[job]``."""
    problem, remaining = view.problem, view.jobs.remaining
    slot_h = problem.slot_hours
    return (problem.deadline_slot - t) * slot_h - remaining / problem.max_gpus * slot_h


def preemptible_then_most_slack(view: SlotView, t: int, jobs: np.ndarray) -> np.ndarray:
    """Preemptible work first (a non-preemptible job stopped must say so), among them the job
    with the most slack first."""
    slack = slack_h(view, t)
    return np.lexsort((-slack[jobs], ~view.problem.preemptible[jobs]))


@dataclass(frozen=True)
class Deferral:
    """Cut chunks where a site is over ``bounds.most`` in ``order``; the work cut goes to the
    jobs' backlog, and a non-preemptible job stopped carries a note."""

    order: DeferralOrder = preemptible_then_most_slack

    def __call__(self, view: SlotView, t: int, chunks: Chunks, bounds: RampBounds) -> None:
        problem, jobs, allowed = view.problem, view.jobs, bounds.most
        used = np.bincount(chunks.site, weights=chunks.gpus, minlength=len(problem.sites))
        for s in np.flatnonzero(used > allowed):
            excess = int(used[s] - allowed[s])
            rows = np.flatnonzero((chunks.site == s) & (chunks.gpus > 0))
            rows = rows[self.order(view, t, chunks.job[rows])]
            why = (
                f"site {problem.site_names[s]!r} may run {int(allowed[s])} GPUs (grid import "
                f"limit, caps in force and live capacity on the actual green supply, ramp-up "
                f"limit from the slot before)"
            )
            for row in rows:
                j, cut = int(chunks.job[row]), min(excess, int(chunks.gpus[row]))
                chunks.gpus[row] -= cut
                excess -= cut
                jobs.backlog[j] += cut
                jobs.cut_units += cut
                site, job_id = problem.site_names[s], problem.job_ids[j]
                if problem.preemptible[j]:
                    view.event(t, "deferred", f"{cut} GPUs deferred: {why}", site=site,
                               job_id=job_id, gpus=cut)  # fmt: skip
                else:
                    when = problem.horizon.times[t].isoformat()
                    jobs.notes[j].append(f"non-preemptible run interrupted at {when} to keep a cap")
                    view.event(t, "stopped", f"{cut} GPUs of non-preemptible work stopped: "
                               f"{why}", site=site, job_id=job_id, gpus=cut)  # fmt: skip
                if excess == 0:
                    break


class LaterLoad:
    """The GPUs planned per site in the slots after ``t``, for rules that take work from them:
    :meth:`takeable` is what a cell (``site * n_slots + slot``) may give without falling
    faster than the ramp-down limit from the slot before it, so the plan's own descent where
    work runs out survives work pulled forward."""

    def __init__(self, view: SlotView, t: int) -> None:
        problem, cursor = view.problem, view.cursor
        self.t, self.n_slots = t, problem.horizon.n_slots
        rows = np.arange(cursor.ptr[t + 1], len(cursor.job))
        cell = cursor.site[rows] * self.n_slots + cursor.slot[rows]
        self.gpus = np.bincount(cell, weights=cursor.gpus[rows],
                                minlength=len(problem.sites) * self.n_slots)  # fmt: skip
        self.step = np.floor(problem.ramp_down_mw / problem.mw_per_gpu + _GPU_TOLERANCE)

    def takeable(self, cell: int) -> int:
        site, slot = divmod(cell, self.n_slots)
        if slot - 1 <= self.t or not np.isfinite(self.step[site]):
            return int(self.gpus[cell])
        return int(max(self.gpus[cell] - max(self.gpus[cell - 1] - self.step[site], 0), 0))

    def take(self, cell: int, gpus: int) -> None:
        self.gpus[cell] -= gpus


def descent_room(view: SlotView, t: int, chunks: Chunks) -> np.ndarray:
    """GPUs per site ``[site]`` that work pulled into slot ``t`` may add: half the gap between
    the GPUs now in ``t`` and the most the site can come down from, ``min_k (k x ramp-down step
    + GPUs that can run there in t + k)``, counting each job's work left after ``t`` (planned
    there later, or carried) up to its ``max_gpus`` where its window is open. Half, because
    each GPU pulled forward is one the later slots lose. No bound without a ramp-down limit or
    where the horizon ends first."""
    problem, jobs, cursor = view.problem, view.jobs, view.cursor
    n_sites, n_slots = len(problem.sites), problem.horizon.n_slots
    room = np.full(n_sites, np.iinfo(np.int64).max // 4, dtype=np.int64)
    step = np.floor(problem.ramp_down_mw / problem.mw_per_gpu + _GPU_TOLERANCE)
    used = np.bincount(chunks.site, weights=chunks.gpus, minlength=n_sites)
    in_slot = np.bincount(chunks.job, weights=chunks.gpus, minlength=problem.n_jobs)
    left = np.maximum(jobs.remaining - in_slot, 0) * jobs.active
    rows = np.arange(cursor.ptr[t + 1], len(cursor.job))
    rows = rows[cursor.gpus[rows] > 0]
    for s in np.flatnonzero(np.isfinite(step)).tolist():
        here = rows[cursor.site[rows] == s]
        lowest = np.inf
        for k in range(1, int(np.ceil(problem.site_gpus[s] / max(step[s], 1.0))) + 1):
            if t + k >= n_slots:
                break
            u = t + k
            later = np.bincount(cursor.job[here[cursor.slot[here] >= u]],
                                weights=cursor.gpus[here[cursor.slot[here] >= u]],
                                minlength=problem.n_jobs)  # fmt: skip
            movable = np.minimum(later + jobs.backlog, left) * problem.preemptible
            open_ = (problem.release_slot <= u) & (u < problem.deadline_slot)
            open_ &= problem.site_mask[:, s]
            fixed = cursor.gpus[here[(cursor.slot[here] == u) & ~problem.preemptible[
                cursor.job[here]]]].sum()  # fmt: skip
            can = min(float(np.minimum(movable, problem.max_gpus)[open_].sum() + fixed),
                      float(problem.site_gpus[s]))  # fmt: skip
            lowest = min(lowest, k * step[s] + can)
        if np.isfinite(lowest):
            room[s] = max(int((lowest - used[s]) // 2), 0)
    return room


def resume(view: SlotView, t: int, chunks: Chunks, bounds: RampBounds) -> None:
    """Place backlog where room is left: earliest deadline first, most room first."""
    problem, jobs = view.problem, view.jobs
    waiting = np.flatnonzero(
        jobs.active & (jobs.backlog > 0) & (problem.release_slot <= t) & (problem.deadline_slot > t)
    )
    if not len(waiting):
        return
    used = np.bincount(chunks.site, weights=chunks.gpus, minlength=len(problem.sites))
    free = np.minimum(bounds.most - used, descent_room(view, t, chunks)).astype(np.int64)
    for j in waiting[np.argsort(problem.deadline_slot[waiting], kind="stable")]:
        room = int(problem.max_gpus[j] - chunks.gpus[chunks.job == j].sum())
        for s in np.argsort(-free, kind="stable"):
            gpus = min(int(jobs.backlog[j]), room, int(free[s]))
            if gpus < 1 or not problem.site_mask[j, s]:
                continue
            chunks.add(int(j), int(s), gpus)
            free[s] -= gpus
            room -= gpus
            jobs.backlog[j] -= gpus
            view.event(t, "resumed", f"{gpus} GPUs of carried work placed",
                       site=problem.site_names[s], job_id=problem.job_ids[j],
                       gpus=gpus)  # fmt: skip


def hold_ramp_down(view: SlotView, t: int, chunks: Chunks, bounds: RampBounds) -> None:
    """Where a site would fall below ``bounds.least``, bring work planned there later forward:
    active preemptible jobs in their window, earliest deadline first, up to their
    ``max_gpus``, taken from their latest planned slots."""
    problem, jobs, cursor = view.problem, view.jobs, view.cursor
    for s in np.flatnonzero(bounds.cap_wins):
        view.event(t, "ramp_cap", f"caps, import limit and live capacity leave room for "
                   f"{int(bounds.most[s])} GPUs, the ramp-down limit needs "
                   f"{int(bounds.needed[s])}: the cap wins",
                   site=problem.site_names[s])  # fmt: skip
    used = np.bincount(chunks.site, weights=chunks.gpus, minlength=len(problem.sites))
    short = np.flatnonzero(used < bounds.least)
    planned = LaterLoad(view, t) if len(short) else None
    for site in short.tolist():
        assert planned is not None
        need = int(bounds.least[site] - used[site])
        later = np.flatnonzero((cursor.slot > t) & (cursor.site == site) & (cursor.gpus > 0))
        ready = jobs.active & problem.preemptible & (problem.release_slot <= t)
        ready &= t < problem.deadline_slot
        for j in np.unique(cursor.job[later[ready[cursor.job[later]]]]):
            if need <= 0:
                break
            want = min(int(problem.max_gpus[j] - chunks.gpus[chunks.job == j].sum()), need)
            moved = 0
            for row in later[cursor.job[later] == j][::-1].tolist():  # latest first
                cell = site * planned.n_slots + int(cursor.slot[row])
                take = min(want - moved, int(cursor.gpus[row]), planned.takeable(cell))
                if take > 0:
                    cursor.gpus[row] -= take
                    planned.take(cell, take)
                    moved += take
                if moved >= want:
                    break
            if moved <= 0:
                continue
            chunks.add(int(j), int(site), moved)
            need -= moved
            view.event(t, "brought_forward", f"{moved} GPUs of later work run now to keep the "
                       "ramp-down limit", site=problem.site_names[site],
                       job_id=problem.job_ids[j], gpus=moved)  # fmt: skip


def use_surplus(view: SlotView, t: int, chunks: Chunks, bounds: RampBounds) -> None:
    """Where the *actual* green supply carries GPUs the slot leaves idle, bring forward work
    the plan put later on grid power, so green that came in above the forecast is used instead
    of spilled.

    Later work counts as grid-powered where the plan's load at that site and slot is above the
    forecast green supply it was made on; those GPU-slots leave the dearest (grid CO2 per
    GPU-slot) first, up to the part above green. Only active preemptible jobs in their window
    move, to an allowed site with room, up to ``max_gpus``; a site never goes above
    ``bounds.most`` (caps, import limit, live capacity, ramp-up)."""
    problem, jobs, cursor, allowed = view.problem, view.jobs, view.cursor, bounds.most
    n_sites, n_slots = len(problem.sites), problem.horizon.n_slots
    used = np.bincount(chunks.site, weights=chunks.gpus, minlength=n_sites)
    green_now = np.floor(view.actual.green_gpus[:, t] + _GPU_TOLERANCE)
    room = (np.minimum(green_now, allowed) - used).astype(np.int64)
    if not (room > 0).any():
        return
    room = np.minimum(room, descent_room(view, t, chunks))
    if not (room > 0).any():
        return
    rows = cursor.ptr[t + 1] + np.flatnonzero(cursor.gpus[cursor.ptr[t + 1] :] > 0)
    cell = cursor.site[rows] * n_slots + cursor.slot[rows]
    planned = np.bincount(cell, weights=cursor.gpus[rows], minlength=n_sites * n_slots)
    on_grid = np.ceil(planned - np.maximum(problem.green_gpus.ravel(), 0) - _GPU_TOLERANCE)
    ready = jobs.active & problem.preemptible & (problem.release_slot <= t)
    ready &= t < problem.deadline_slot
    take = ready[cursor.job[rows]] & (on_grid[cell] > 0)
    rows, cell = rows[take], cell[take]
    if not len(rows):
        return
    dearest = np.lexsort((-cursor.slot[rows], -problem.grid_kg_per_gpu_slot.ravel()[cell]))
    on_grid = np.maximum(on_grid, 0).astype(np.int64)
    in_slot = np.bincount(chunks.job, weights=chunks.gpus, minlength=problem.n_jobs)
    job_room = problem.max_gpus - in_slot.astype(np.int64)
    moved = np.zeros(n_sites, dtype=np.int64)
    later = LaterLoad(view, t)
    for row, c in zip(rows[dearest].tolist(), cell[dearest].tolist(), strict=True):
        j = int(cursor.job[row])
        want = min(int(cursor.gpus[row]), int(on_grid[c]), int(job_room[j]))
        if want < 1 or (want := min(want, later.takeable(c))) < 1:
            continue
        for s in np.flatnonzero(problem.site_mask[j] & (room > 0)).tolist():
            if want < 1:
                break
            gpus = min(want, int(room[s]))
            chunks.add(j, s, gpus)
            cursor.gpus[row] -= gpus
            later.take(c, gpus)
            on_grid[c] -= gpus
            job_room[j] -= gpus
            room[s] -= gpus
            moved[s] += gpus
            want -= gpus
        if not (room > 0).any():
            break
    for s in np.flatnonzero(moved).tolist():
        view.event(t, "surplus_green", f"{int(moved[s])} GPUs of later grid-powered work run "
                   "now on green supply above the forecast", site=problem.site_names[s],
                   gpus=int(moved[s]))  # fmt: skip


RULES: tuple[SlotRule, ...] = (cap_to_work_left, Deferral(), resume, hold_ramp_down, use_surplus)
"""The rules a slot is fitted by, in order (module doc)."""
