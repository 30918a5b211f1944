"""The settlement engine: what runs in each slot, given actual supply, caps and live capacity.

One engine for every way a day is run. A replay walks the day on an instant clock with no
runner (every chunk completes); ``greensched dispatch`` walks it on a real or compressed clock
with the Ray runner of ``clusters/``. Both make the same decisions, so a replayed day predicts
what the operator's night does.

In each slot ``t`` the engine

1. takes the plan's GPUs for ``t`` of jobs still active, never more than the work a job has
   left;
2. fits each site to what it may run: its live capacity and the GPUs that its grid import limit
   and every cap in force allow on the *actual* green supply (the planning problem's own
   capacity rule, :meth:`~scheduler.problem.Problem.capacity_with`);
3. where a site is over, defers work: preemptible jobs before non-preemptible ones (a cap is
   hard: an interrupted non-preemptible job resumes later and says so), and among them the job
   with the most slack first. Deferred work goes to the job's backlog;
4. places backlog where room is left, earliest deadline first, at the allowed site with the
   most room, up to the job's ``max_gpus``, only inside the job's window;
   steps 2-4 also keep each site's ramp limits from the GPUs that ran in the slot before
   (:func:`~scheduler.ramps.ramp_bounds_gpus`): no more than the ramp-up limit allows, and
   where the site would fall faster than its ramp-down limit, work planned there later is
   brought forward (earliest deadline first). A cap is hard and wins over the ramp; an event
   says so;
4b. where the slot's *actual* green supply carries more GPUs than run, brings forward work the
   plan put later on grid power (by the forecast it was made on), dearest grid GPU-slots
   first, so green that comes in above the forecast is used rather than spilled. The engine
   sees each slot's supply as the slot starts, as a site reads its meters (the caps of step 2
   are checked on it too); later slots only by the forecast;
5. hands the chunks to the runner and books what completed; a lost chunk's work returns to the
   backlog, a chunk that failed every attempt fails its job.

A site that loses live capacity triggers ``replan`` for all remaining work. Work is counted in
GPU-slots (one GPU busy for one slot), as the planning problem counts it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import pandas as pd

from scheduler.clock import Clock, InstantClock
from scheduler.contracts import PLAN, RUN_JOBS, JobStatus
from scheduler.contracts.chunks import Chunk, ChunkOutcome, ChunkStatus
from scheduler.contracts.plandir import RunReport
from scheduler.labels import label_index
from scheduler.metrics import site_load, slot_index
from scheduler.policies.base import PlanResult
from scheduler.problem import LoadCap, Problem
from scheduler.ramps import RampBounds, ramp_bounds_gpus

__all__ = [
    "MIN_SLOT_TIMEOUT_S",
    "Replan",
    "Runner",
    "Settlement",
    "SlotProgress",
    "settle",
]

log = logging.getLogger(__name__)

_GPU_TOLERANCE = 1e-9
MIN_SLOT_TIMEOUT_S = 60.0  # shortest wait for a slot's chunks, whatever the clock [s]
EVENT_COLUMNS = ["time", "kind", "detail", "site", "job_id", "gpus"]

Replan = Callable[[pd.Timestamp, dict[str, float], dict[str, float]], pd.DataFrame | None]
"""``replan(from_time, remaining_gpu_hours_by_job, live_gpus_by_site) -> plan table``."""


class Runner(Protocol):
    """What runs a slot's chunks: ``clusters.RayRunner`` on Ray; nothing in a replay."""

    def capacity_gpus(self) -> dict[str, float]:
        """GPUs each site can run now."""
        ...

    def run_slot(self, chunks: Sequence[Chunk], timeout_s: float) -> list[ChunkOutcome]:
        """Run the chunks; one outcome each."""
        ...

    def attempts(self) -> pd.DataFrame:
        """One row per task attempt so far (for the run report)."""
        ...


@dataclass(frozen=True)
class SlotProgress:
    """Passed to the progress callback after each slot with work."""

    index: int
    time: pd.Timestamp
    tasks_by_site: dict[str, int]
    green_share_so_far: float
    jobs_finished: int
    jobs_total: int


@dataclass
class _Jobs:
    """Per-job state of a run, as arrays over the problem's jobs (work in GPU-slots)."""

    required: np.ndarray
    done: np.ndarray
    backlog: np.ndarray
    finished_slot: np.ndarray
    ran_site: np.ndarray  # [job, site] bool
    ran_slots: np.ndarray
    tokens_real: np.ndarray
    failed: list[str | None]
    notes: list[list[str]]
    cut_units: int = 0

    @classmethod
    def of(cls, problem: Problem) -> _Jobs:
        n = problem.n_jobs
        return cls(
            required=problem.work_units.copy(),
            done=np.zeros(n, dtype=np.int64),
            backlog=np.zeros(n, dtype=np.int64),
            finished_slot=np.full(n, -1, dtype=np.int64),
            ran_site=np.zeros((n, len(problem.sites)), dtype=bool),
            ran_slots=np.zeros(n, dtype=np.int64),
            tokens_real=np.zeros(n, dtype=np.int64),
            failed=[None] * n,
            notes=[[] for _ in range(n)],
        )

    @property
    def remaining(self) -> np.ndarray:
        return self.required - self.done

    @property
    def active(self) -> np.ndarray:
        return (self.remaining > 0) & np.array([f is None for f in self.failed], dtype=bool)


@dataclass
class _Slot:
    """The chunks of one slot as arrays: ``gpus`` of ``job`` at ``site``."""

    job: np.ndarray
    site: np.ndarray
    gpus: np.ndarray

    def add(self, job: int, site: int, gpus: int) -> None:
        same = np.flatnonzero((self.job == job) & (self.site == site))
        if len(same):
            self.gpus[same[0]] += gpus
            return
        self.job = np.append(self.job, job)
        self.site = np.append(self.site, site)
        self.gpus = np.append(self.gpus, gpus)


@dataclass
class _Walk:
    """What the walk records per slot, turned into the report at the end."""

    executed: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=list
    )
    dispatched: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)
    failed_tasks: list[tuple[int, int]] = field(default_factory=list)
    capacity: dict[int, np.ndarray] = field(default_factory=dict)
    grid_cap_mw: dict[int, np.ndarray] = field(default_factory=dict)  # caps in force when run
    load_cap_mw: dict[int, np.ndarray] = field(default_factory=dict)
    events: list[dict[str, object]] = field(default_factory=list)


class Settlement:
    """Walks ``plan`` over ``problem``'s day on ``clock`` with ``runner``; see the module doc.

    ``problem.actual_supply`` is what the day settles on (the forecast when absent);
    ``problem.supply`` is what the plan was made on (the planned side of the report).
    ``runner=None`` completes every chunk at once (replay). ``replan`` is called when a site
    loses live capacity.

    :meth:`run` walks the whole day. A live loop instead calls :meth:`step` at each slot
    boundary, and between steps may hand in the caps now in force (:meth:`set_caps`) and a new
    plan for the rest of the day (:meth:`replace_plan`, made from :meth:`remaining_gpu_hours`);
    :meth:`report` then tells what ran.
    """

    # the plan as the walk reads it, rows in slot order: job, site, slot and GPUs of each row,
    # and the first row of each slot
    _p_job: np.ndarray
    _p_site: np.ndarray
    _p_slot: np.ndarray
    _p_gpus: np.ndarray
    _p_ptr: np.ndarray

    def __init__(
        self,
        problem: Problem,
        plan: pd.DataFrame,
        *,
        runner: Runner | None = None,
        clock: Clock | None = None,
        replan: Replan | None = None,
        progress: Callable[[SlotProgress], None] | None = None,
        slot_timeout_s: float | None = None,
    ) -> None:
        self.problem = problem
        self.actual = problem.on_actual_supply() if problem.actual_supply is not None else problem
        self.plan_original = PLAN.canonical(plan, source="plan row")
        # each plan handed in and the slot it took over at: the plan table is put together
        # when read (:attr:`plan`), not at every re-plan
        self._plans = [(self.plan_original, 0)]
        self.runner = runner
        self.clock = clock if clock is not None else InstantClock()
        self.replan = replan
        self.progress = progress
        self.slot_timeout_s = slot_timeout_s
        self._set_plan(self.plan_original)
        self._jobs = _Jobs.of(problem)
        self._walk = _Walk()
        self._wall_s = 0.0
        in_plan = np.zeros(problem.n_jobs, dtype=bool)
        in_plan[self._p_job] = True
        for j in np.flatnonzero(~in_plan):
            self._jobs.notes[j].append("the plan has no work for this job")
        self._live_gpus = self._live()
        self._drawn_mw = np.zeros(2)  # load and green used summed over the slots run [MW]
        # GPUs run per site in the slot before (None: unknown before the first slot)
        self._previous: np.ndarray | None = problem.initial_gpus

    # ----------------------------------------------------------------- plan as arrays
    @property
    def plan(self) -> pd.DataFrame:
        """The plan walked: the first plan, and each re-plan's rows from the slot it took over
        at until a later one took over (a plan table)."""
        if len(self._plans) > 1:
            horizon = self.problem.horizon
            starts = [start for _, start in self._plans]
            ends = np.minimum.accumulate([*starts[1:], horizon.n_slots][::-1])[::-1]
            parts = []
            for (table, start), end in zip(self._plans, ends.tolist(), strict=True):
                slot = slot_index(table["time"], horizon)
                parts.append(table.iloc[np.flatnonzero((slot >= start) & (slot < end))])
            self._plans = [(pd.concat(parts, ignore_index=True), 0)]
        return self._plans[0][0]

    def _set_plan(self, plan: pd.DataFrame, first: int = 0) -> None:
        """Walk ``plan``'s rows from slot ``first`` on; the rows of earlier slots stay as they
        are (they have run, and the walk never reads them again)."""
        problem = self.problem
        job = label_index(plan["job_id"], problem.job_ids)
        site = label_index(plan["site"], problem.site_names)
        if (job < 0).any() or (site < 0).any():
            row = plan[(job < 0) | (site < 0)].iloc[0]
            raise ValueError(
                f"plan row ({row['job_id']}, {row['site']}) names a job or site the problem "
                f"lacks; sites: {', '.join(problem.site_names)}"
            )
        slot = slot_index(plan["time"], problem.horizon).astype(np.int64)
        later = np.flatnonzero(slot >= first)
        order = later[np.argsort(slot[later], kind="stable")]
        rows = [job[order], site[order], slot[order], plan["gpus"].to_numpy(dtype=np.int64)[order]]
        if first > 0:
            kept = self._p_ptr[first]
            walked = [self._p_job, self._p_site, self._p_slot, self._p_gpus]
            rows = [np.concatenate([a[:kept], b]) for a, b in zip(walked, rows, strict=True)]
        self._p_job, self._p_site, self._p_slot, self._p_gpus = rows
        self._p_ptr = np.searchsorted(self._p_slot, np.arange(problem.horizon.n_slots + 1))

    def _planned(self, t: int) -> _Slot:
        a, b = self._p_ptr[t], self._p_ptr[t + 1]
        return _Slot(self._p_job[a:b].copy(), self._p_site[a:b].copy(), self._p_gpus[a:b].copy())

    # ----------------------------------------------------------------- the walk
    def run(self) -> RunReport:
        """Walk the day; return the run report (tables of :mod:`scheduler.contracts`)."""
        for t in range(self.problem.horizon.n_slots):
            if not self.work_left(t):
                break
            self.step(t)
        return self.report()

    def work_left(self, t: int) -> bool:
        """Whether any plan row from slot ``t`` on, or any backlog, is still to run."""
        return self._work_left(self._jobs, t)

    def step(self, t: int) -> None:
        """Run slot ``t``: fit the plan's work to live capacity, the caps in force on the
        actual supply and the ramp from the slot before, defer and resume, hand the chunks to
        the runner and book the outcome."""
        started = time.perf_counter()
        problem, jobs, walk = self.problem, self._jobs, self._walk
        before, live = self._live_gpus, self._live()
        self._live_gpus = live
        lost = np.flatnonzero(live < before - 1e-9)
        if len(lost):
            self._site_lost(t, lost, before, live, jobs, walk)
        slot = self._planned(t)
        self._cap_to_work_left(slot, jobs)
        allowed = np.minimum(
            self.actual.capacity_gpus[:, t], np.floor(live + 1e-9).astype(np.int64)
        )
        bounds = ramp_bounds_gpus(self._previous, problem.ramp_up_mw, problem.ramp_down_mw,
                                  problem.mw_per_gpu, allowed)  # fmt: skip
        self._defer(t, slot, bounds.most, jobs, walk)
        self._resume(t, slot, bounds.most, jobs, walk)
        self._hold_ramp_down(t, slot, bounds, jobs, walk)
        self._use_surplus(t, slot, bounds.most, jobs, walk)
        keep = slot.gpus > 0
        slot = _Slot(slot.job[keep], slot.site[keep], slot.gpus[keep])
        walk.capacity[t] = live.copy()
        walk.grid_cap_mw[t] = self.actual.grid_cap_mw[:, t].copy()
        walk.load_cap_mw[t] = self.actual.load_cap_mw[:, t].copy()
        self._previous = np.zeros(len(problem.sites))
        if len(slot.job):
            self._previous = self._run(t, slot, jobs, walk).astype(float)
        if self.progress is not None:
            drawn = self.slot_load(t)  # running totals: no re-scoring of the day each slot
            self._drawn_mw += (drawn["load_mw"].sum(), (drawn["load_mw"] - drawn["grid_mw"]).sum())
            if len(slot.job):
                self.progress(self._progress(t, slot, jobs))
        self._wall_s += time.perf_counter() - started

    def settle_on(self, supply: pd.DataFrame) -> None:
        """From now, decide the slots still to run and book every slot on ``supply`` (a supply
        table of the day): a live loop hands in each slot's measurement, or the newest forecast
        for it where none came."""
        self.problem = replace(self.problem, actual_supply=supply)
        self.actual = self.problem.on_actual_supply()

    def set_caps(self, caps: Sequence[LoadCap]) -> None:
        """The caps in force from the next slot run on."""
        self.problem = replace(self.problem, caps=tuple(caps))
        self.actual = replace(self.actual, caps=tuple(caps))

    def remaining_gpu_hours(self) -> dict[str, float]:
        """Work left per active job [GPU-h] (backlog included)."""
        jobs, problem = self._jobs, self.problem
        return {
            problem.job_ids[j]: float(jobs.remaining[j] * problem.slot_hours)
            for j in np.flatnonzero(jobs.active)
        }

    def last_load_mw(self) -> dict[str, float] | None:
        """Each site's load in the last slot run (before any: the problem's initial load) [MW];
        ``None`` when unknown. A re-plan starts from it, so the ramp limits hold."""
        if self._previous is None:
            return None
        problem = self.problem
        load = problem.base_load_mw + self._previous * problem.mw_per_gpu
        return dict(zip(problem.site_names, load.tolist(), strict=True))

    def replace_plan(self, plan: pd.DataFrame | PlanResult, from_time: pd.Timestamp) -> None:
        """Run ``plan`` (a plan table, or a policy's result) from ``from_time`` on (it covers
        all the work left, backlog included); what ran before stays."""
        # a policy's plan comes from make_result, canonical by construction (distinct job,
        # site and slot keys, gpus >= 1, the problem's ids and UTC slot times): checking it
        # cell by cell again cost ~2.5 ms of every hourly re-plan
        new = plan.plan if isinstance(plan, PlanResult) else PLAN.canonical(plan, "re-plan row")
        first = int(self.problem.horizon.times.searchsorted(from_time))  # at or after it
        self._plans.append((new, first))
        self._jobs.backlog[:] = 0
        self._set_plan(new, first)

    def slot_load(self, t: int) -> dict[str, np.ndarray]:
        """What each site drew in slot ``t`` once it has run: ``load_mw``, ``grid_mw`` and the
        ``grid_cap_mw`` and ``load_cap_mw`` in force then, arrays ``[site]`` [MW]."""
        problem, walk = self.problem, self._walk
        gpus = np.zeros(len(problem.sites), dtype=np.int64)
        for _job, site, slot, done in walk.executed[-1:]:
            if len(slot) and slot[0] == t:
                np.add.at(gpus, site, done)
        load = problem.base_load_mw + gpus * problem.mw_per_gpu
        grid = load - np.minimum(load, self.actual.green_mw[:, t])
        return {
            "load_mw": load,
            "grid_mw": grid,
            "grid_cap_mw": walk.grid_cap_mw[t],
            "load_cap_mw": walk.load_cap_mw[t],
        }

    def state(self) -> dict[str, object]:
        """Everything the walk has done so far, as plain JSON-ready values (see
        :meth:`restore`): a live loop stores it after every slot to survive a crash."""
        jobs, walk = self._jobs, self._walk
        return {
            "jobs": {
                "done": jobs.done.tolist(),
                "backlog": jobs.backlog.tolist(),
                "finished_slot": jobs.finished_slot.tolist(),
                "ran_site": jobs.ran_site.tolist(),
                "ran_slots": jobs.ran_slots.tolist(),
                "tokens_real": jobs.tokens_real.tolist(),
                "failed": jobs.failed,
                "notes": jobs.notes,
                "cut_units": jobs.cut_units,
            },
            "executed": [[a.tolist() for a in part] for part in walk.executed],
            "dispatched": [[t, a.tolist(), b.tolist()] for t, a, b in walk.dispatched],
            "failed_tasks": walk.failed_tasks,
            "capacity": {str(t): a.tolist() for t, a in walk.capacity.items()},
            "grid_cap_mw": {str(t): a.tolist() for t, a in walk.grid_cap_mw.items()},
            "load_cap_mw": {str(t): a.tolist() for t, a in walk.load_cap_mw.items()},
            "events": [{k: _plain(v) for k, v in e.items()} for e in walk.events],
            "wall_s": self._wall_s,
            "previous_gpus": None if self._previous is None else self._previous.tolist(),
        }

    def restore(self, state: dict) -> None:
        """Continue from a :meth:`state` of the same problem (after a restart)."""
        saved = state["jobs"]
        jobs = self._jobs
        for name in ("done", "backlog", "finished_slot", "ran_slots", "tokens_real"):
            getattr(jobs, name)[:] = saved[name]
        jobs.ran_site[:] = np.asarray(saved["ran_site"], dtype=bool)
        jobs.failed, jobs.notes, jobs.cut_units = (
            saved["failed"],
            saved["notes"],
            saved["cut_units"],
        )
        arrays = [tuple(np.asarray(a, dtype=np.int64) for a in part) for part in state["executed"]]
        self._walk = _Walk(
            executed=arrays,  # type: ignore[arg-type]
            dispatched=[
                (int(t), np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))
                for t, a, b in state["dispatched"]
            ],
            failed_tasks=[(int(t), int(s)) for t, s in state["failed_tasks"]],
            capacity={int(t): np.asarray(a) for t, a in state["capacity"].items()},
            grid_cap_mw={int(t): np.asarray(a) for t, a in state["grid_cap_mw"].items()},
            load_cap_mw={int(t): np.asarray(a) for t, a in state["load_cap_mw"].items()},
            events=[{**e, "time": pd.Timestamp(e["time"])} for e in state["events"]],
        )
        self._wall_s = float(state["wall_s"])
        previous = state["previous_gpus"]
        self._previous = None if previous is None else np.asarray(previous, dtype=float)

    def report(self) -> RunReport:
        """What ran so far: the run tables, events and totals."""
        return self._report(self._jobs, self._walk, self._wall_s)

    def _live(self) -> np.ndarray:
        gpus = self.problem.site_gpus.astype(float)
        if self.runner is None:
            return gpus
        live = self.runner.capacity_gpus()
        return np.minimum(gpus, [live.get(name, 0.0) for name in self.problem.site_names])

    def _work_left(self, jobs: _Jobs, t: int) -> bool:
        active = jobs.active
        later = self._p_job[self._p_ptr[t] :]
        if active[later].any():
            return True
        waiting = active & (jobs.backlog > 0) & (self.problem.deadline_slot > t)
        return bool(waiting.any())

    def _event(self, t: int, kind: str, detail: str, walk: _Walk, **fields: object) -> None:
        time_t = self.problem.horizon.times[t]
        walk.events.append({"time": time_t, "kind": kind, "detail": detail, **fields})
        log.info("%s %s: %s", time_t.isoformat(), kind, detail)

    # ----------------------------------------------------------------- fitting a slot
    def _cap_to_work_left(self, slot: _Slot, jobs: _Jobs) -> None:
        """Drop chunks of inactive jobs; never run more than a job's work left."""
        slot.gpus[~jobs.active[slot.job]] = 0
        planned = np.bincount(slot.job, weights=slot.gpus, minlength=self.problem.n_jobs)
        for j in np.flatnonzero(planned > jobs.remaining):
            over = int(planned[j] - jobs.remaining[j])
            for row in np.flatnonzero(slot.job == j):
                cut = min(over, int(slot.gpus[row]))
                slot.gpus[row] -= cut
                over -= cut

    def _slack_h(self, t: int, jobs: _Jobs) -> np.ndarray:
        """Hours to the deadline minus hours the work left needs at ``max_gpus`` ``[job]``."""
        problem = self.problem
        slot_h = problem.slot_hours
        return (problem.deadline_slot - t) * slot_h - jobs.remaining / problem.max_gpus * slot_h

    def _defer(self, t: int, slot: _Slot, allowed: np.ndarray, jobs: _Jobs, walk: _Walk) -> None:
        """Cut chunks where a site is over ``allowed``: preemptible first, most slack first."""
        problem = self.problem
        used = np.bincount(slot.site, weights=slot.gpus, minlength=len(problem.sites))
        over_sites = np.flatnonzero(used > allowed)
        if not len(over_sites):
            return
        slack = self._slack_h(t, jobs)
        for s in over_sites:
            excess = int(used[s] - allowed[s])
            rows = np.flatnonzero((slot.site == s) & (slot.gpus > 0))
            rows = rows[np.lexsort((-slack[slot.job[rows]], ~problem.preemptible[slot.job[rows]]))]
            why = (
                f"site {problem.site_names[s]!r} may run {int(allowed[s])} GPUs (grid import "
                f"limit, caps in force and live capacity on the actual green supply, ramp-up "
                f"limit from the slot before)"
            )
            for row in rows:
                j, cut = int(slot.job[row]), min(excess, int(slot.gpus[row]))
                slot.gpus[row] -= cut
                excess -= cut
                jobs.backlog[j] += cut
                jobs.cut_units += cut
                site, job_id = problem.site_names[s], problem.job_ids[j]
                if problem.preemptible[j]:
                    self._event(t, "deferred", f"{cut} GPUs deferred: {why}", walk, site=site,
                                job_id=job_id, gpus=cut)  # fmt: skip
                else:
                    when = problem.horizon.times[t].isoformat()
                    jobs.notes[j].append(f"non-preemptible run interrupted at {when} to keep a cap")
                    self._event(t, "stopped", f"{cut} GPUs of non-preemptible work stopped: "
                                f"{why}", walk, site=site, job_id=job_id, gpus=cut)  # fmt: skip
                if excess == 0:
                    break

    def _resume(self, t: int, slot: _Slot, allowed: np.ndarray, jobs: _Jobs, walk: _Walk) -> None:
        """Place backlog where room is left: earliest deadline first, most room first."""
        problem = self.problem
        waiting = np.flatnonzero(
            jobs.active
            & (jobs.backlog > 0)
            & (problem.release_slot <= t)
            & (problem.deadline_slot > t)
        )
        if not len(waiting):
            return
        free = allowed - np.bincount(slot.site, weights=slot.gpus, minlength=len(problem.sites))
        free = free.astype(np.int64)
        for j in waiting[np.argsort(problem.deadline_slot[waiting], kind="stable")]:
            room = int(problem.max_gpus[j] - slot.gpus[slot.job == j].sum())
            for s in np.argsort(-free, kind="stable"):
                gpus = min(int(jobs.backlog[j]), room, int(free[s]))
                if gpus < 1 or not problem.site_mask[j, s]:
                    continue
                slot.add(int(j), int(s), gpus)
                free[s] -= gpus
                room -= gpus
                jobs.backlog[j] -= gpus
                self._event(t, "resumed", f"{gpus} GPUs of carried work placed", walk,
                            site=problem.site_names[s], job_id=problem.job_ids[j],
                            gpus=gpus)  # fmt: skip

    def _hold_ramp_down(
        self, t: int, slot: _Slot, bounds: RampBounds, jobs: _Jobs, walk: _Walk
    ) -> None:
        """Where a site would fall below ``bounds.least``, bring work planned there later
        forward: active preemptible jobs in their window, earliest deadline first, up to their
        ``max_gpus``, taken from their latest planned slots."""
        problem = self.problem
        for s in np.flatnonzero(bounds.cap_wins):
            self._event(t, "ramp_cap", f"caps, import limit and live capacity leave room for "
                        f"{int(bounds.most[s])} GPUs, the ramp-down limit needs "
                        f"{int(bounds.needed[s])}: the cap wins", walk,
                        site=problem.site_names[s])  # fmt: skip
        used = np.bincount(slot.site, weights=slot.gpus, minlength=len(problem.sites))
        for s in np.flatnonzero(used < bounds.least):
            need = int(bounds.least[s] - used[s])
            later = np.flatnonzero((self._p_slot > t) & (self._p_site == s) & (self._p_gpus > 0))
            ready = jobs.active & problem.preemptible & (problem.release_slot <= t)
            ready &= t < problem.deadline_slot
            for j in np.unique(self._p_job[later[ready[self._p_job[later]]]]):
                if need <= 0:
                    break
                room = int(problem.max_gpus[j] - slot.gpus[slot.job == j].sum())
                rows = later[self._p_job[later] == j][::-1]  # latest first
                take = np.clip(min(room, need) - (np.cumsum(self._p_gpus[rows]) -
                               self._p_gpus[rows]), 0, self._p_gpus[rows])  # fmt: skip
                moved = int(take.sum())
                if moved <= 0:
                    continue
                self._p_gpus[rows] -= take
                slot.add(int(j), int(s), moved)
                need -= moved
                self._event(t, "brought_forward", f"{moved} GPUs of later work run now to keep "
                            "the ramp-down limit", walk, site=problem.site_names[s],
                            job_id=problem.job_ids[j], gpus=moved)  # fmt: skip

    def _use_surplus(
        self, t: int, slot: _Slot, allowed: np.ndarray, jobs: _Jobs, walk: _Walk
    ) -> None:
        """Where the *actual* green supply carries GPUs the slot leaves idle, bring forward
        work the plan put later on grid power, so green that came in above the forecast is
        used instead of spilled.

        Later work counts as grid-powered where the plan's load at that site and slot is
        above the forecast green supply it was made on; those GPU-slots leave the dearest
        (grid CO2 per GPU-slot) first, up to the part above green. Only active preemptible
        jobs in their window move, to an allowed site with room, up to ``max_gpus``; a site
        never goes above ``allowed`` (caps, import limit, live capacity, ramp-up)."""
        problem = self.problem
        n_sites, n_slots = len(problem.sites), problem.horizon.n_slots
        used = np.bincount(slot.site, weights=slot.gpus, minlength=n_sites)
        green_now = np.floor(self.actual.green_gpus[:, t] + _GPU_TOLERANCE)
        room = (np.minimum(green_now, allowed) - used).astype(np.int64)
        if not (room > 0).any():
            return
        rows = self._p_ptr[t + 1] + np.flatnonzero(self._p_gpus[self._p_ptr[t + 1] :] > 0)
        cell = self._p_site[rows] * n_slots + self._p_slot[rows]
        planned = np.bincount(cell, weights=self._p_gpus[rows], minlength=n_sites * n_slots)
        on_grid = np.ceil(planned - np.maximum(problem.green_gpus.ravel(), 0) - _GPU_TOLERANCE)
        ready = jobs.active & problem.preemptible & (problem.release_slot <= t)
        ready &= t < problem.deadline_slot
        take = ready[self._p_job[rows]] & (on_grid[cell] > 0)
        rows, cell = rows[take], cell[take]
        if not len(rows):
            return
        dearest = np.lexsort((-self._p_slot[rows], -problem.grid_kg_per_gpu_slot.ravel()[cell]))
        on_grid = np.maximum(on_grid, 0).astype(np.int64)
        in_slot = np.bincount(slot.job, weights=slot.gpus, minlength=problem.n_jobs)
        job_room = problem.max_gpus - in_slot.astype(np.int64)
        moved = np.zeros(n_sites, dtype=np.int64)
        for row, c in zip(rows[dearest].tolist(), cell[dearest].tolist(), strict=True):
            j = int(self._p_job[row])
            want = min(int(self._p_gpus[row]), int(on_grid[c]), int(job_room[j]))
            for s in np.flatnonzero(problem.site_mask[j] & (room > 0)).tolist():
                if want < 1:
                    break
                gpus = min(want, int(room[s]))
                slot.add(j, s, gpus)
                self._p_gpus[row] -= gpus
                on_grid[c] -= gpus
                job_room[j] -= gpus
                room[s] -= gpus
                moved[s] += gpus
                want -= gpus
            if not (room > 0).any():
                break
        for s in np.flatnonzero(moved).tolist():
            self._event(t, "surplus_green", f"{int(moved[s])} GPUs of later grid-powered "
                        "work run now on green supply above the forecast", walk,
                        site=problem.site_names[s], gpus=int(moved[s]))  # fmt: skip

    # ----------------------------------------------------------------- running a slot
    def _timeout_s(self) -> float:
        if self.slot_timeout_s is not None:
            return self.slot_timeout_s
        slot = pd.Timedelta(minutes=self.problem.horizon.slot_minutes)
        return max(MIN_SLOT_TIMEOUT_S, self.clock.real_seconds(slot))

    def _run(self, t: int, slot: _Slot, jobs: _Jobs, walk: _Walk) -> np.ndarray:
        """Run the slot; return the GPUs that completed per site ``[site]``."""
        problem = self.problem
        walk.dispatched.append((t, slot.site, slot.gpus))
        self.clock.sleep_until(problem.horizon.times[t])
        if self.runner is None:
            ok = np.ones(len(slot.job), dtype=bool)
        else:
            ok = self._run_on(t, slot, jobs, walk)
        job, site, gpus = slot.job[ok], slot.site[ok], slot.gpus[ok]
        walk.executed.append((job, site, np.full(len(job), t), gpus))
        np.add.at(jobs.done, job, gpus)
        jobs.ran_site[job, site] = True
        jobs.ran_slots[np.unique(job)] += 1
        finished = np.flatnonzero((jobs.remaining <= 0) & (jobs.finished_slot < 0))
        jobs.finished_slot[finished] = t
        return np.bincount(site, weights=gpus, minlength=len(problem.sites))

    def _run_on(self, t: int, slot: _Slot, jobs: _Jobs, walk: _Walk) -> np.ndarray:
        """Run the slot's chunks on the runner; ``True`` where a chunk completed."""
        problem = self.problem
        assert self.runner is not None
        job_ids, site_names = problem.job_ids, problem.site_names
        rate = problem.tokens_per_gpu_hour
        when, minutes = problem.horizon.times[t], problem.horizon.slot_minutes
        chunks = [
            Chunk(job_ids[j], site_names[s], when, g, minutes, float(rate[j]))
            for j, s, g in zip(slot.job.tolist(), slot.site.tolist(), slot.gpus.tolist(),
                               strict=True)
        ]  # fmt: skip
        outcomes = self.runner.run_slot(chunks, self._timeout_s())
        ok = np.zeros(len(chunks), dtype=bool)
        for row, outcome in enumerate(outcomes):
            j, s = int(slot.job[row]), int(slot.site[row])
            chunk = outcome.chunk
            for attempt, error in enumerate(outcome.retried):
                self._event(t, "retry", f"attempt {attempt + 1} raised {error}", walk,
                            site=chunk.site, job_id=chunk.job_id)  # fmt: skip
            if outcome.status is ChunkStatus.OK:
                ok[row] = True
                jobs.tokens_real[j] += outcome.tokens_real
                continue
            walk.failed_tasks.append((t, s))
            if outcome.status is ChunkStatus.FAILED:
                jobs.failed[j] = (
                    f"chunk at {chunk.site} in slot {chunk.time.isoformat()} failed after "
                    f"{len(outcome.retried) + 1} attempts: {outcome.error}"
                )
                self._event(t, "failed", jobs.failed[j] or "", walk, site=chunk.site,
                            job_id=chunk.job_id)  # fmt: skip
            else:
                jobs.backlog[j] += chunk.gpus
                self._event(t, "lost", f"{chunk.gpus} GPUs of work carried: {outcome.error}",
                            walk, site=chunk.site, job_id=chunk.job_id,
                            gpus=chunk.gpus)  # fmt: skip
        return ok

    # ----------------------------------------------------------------- losing a site
    def _site_lost(
        self,
        t: int,
        lost: np.ndarray,
        before: np.ndarray,
        live: np.ndarray,
        jobs: _Jobs,
        walk: _Walk,
    ) -> None:
        problem = self.problem
        names = [problem.site_names[s] for s in lost]
        for s in lost:
            self._event(t, "site_lost", f"site {problem.site_names[s]!r} capacity fell from "
                        f"{before[s]:g} to {live[s]:g} GPUs", walk,
                        site=problem.site_names[s])  # fmt: skip
        when = problem.horizon.times[t]
        active = np.flatnonzero(jobs.active)
        remaining = self.remaining_gpu_hours()
        available = {n: float(g) for n, g in zip(problem.site_names, live, strict=True) if g > 0}
        new_plan = None
        if self.replan is not None and remaining:
            try:
                new_plan = self.replan(when, remaining, available)
            except Exception as error:  # a re-plan that cannot place work must not end the run
                self._event(t, "replan_failed", f"re-plan raised {type(error).__name__}: "
                            f"{error}", walk)  # fmt: skip
        if new_plan is None:
            dropped = self.plan[(self.plan["time"] >= when) & self.plan["site"].isin(names)]
            for job_id, rows in dropped.groupby("job_id"):
                gpu_h = rows["gpus"].sum() * problem.slot_hours
                j = int(np.flatnonzero(problem.job_ids == job_id)[0])
                jobs.notes[j].append(
                    f"site {', '.join(names)} lost capacity at {when.isoformat()} and no "
                    f"re-plan placed the {gpu_h:.6g} GPU-h planned there"
                )
            self._plans = [(self.plan.drop(dropped.index).reset_index(drop=True), 0)]
            self._set_plan(self.plan)
            return
        self.replace_plan(new_plan, when)
        placed = self.plan[self.plan["time"] >= when].groupby("job_id")["gpus"].sum()
        for j in active.tolist():
            job_id = problem.job_ids[j]
            got = float(placed.get(job_id, 0) * problem.slot_hours)
            if got < remaining[job_id] - 1e-9:
                jobs.notes[j].append(
                    f"after site {', '.join(names)} lost capacity at {when.isoformat()} the "
                    f"re-plan placed {got:.6g} of {remaining[job_id]:.6g} GPU-h left"
                )
        self._event(t, "replanned", f"re-planned {len(remaining)} jobs after losing "
                    f"{', '.join(names)}", walk)  # fmt: skip

    # ----------------------------------------------------------------- reporting
    def _progress(self, t: int, slot: _Slot, jobs: _Jobs) -> SlotProgress:
        load_mw, green_used_mw = self._drawn_mw
        share = float(green_used_mw / load_mw) if load_mw > 0 else 0.0
        counts = np.bincount(slot.site, minlength=len(self.problem.sites))
        return SlotProgress(
            index=t,
            time=self.problem.horizon.times[t],
            tasks_by_site=dict(zip(self.problem.site_names, counts.tolist(), strict=True)),
            green_share_so_far=share,
            jobs_finished=int((~jobs.active).sum()),
            jobs_total=self.problem.n_jobs,
        )

    def _executed(self, walk: _Walk) -> pd.DataFrame:
        """The work that completed, as a plan table."""
        problem = self.problem
        parts = walk.executed or [(np.zeros(0, np.int64),) * 4]
        job, site, slot, gpus = (np.concatenate([p[i] for p in parts]) for i in range(4))
        return pd.DataFrame(
            {
                "job_id": problem.job_ids[job.astype(np.int64)],
                "site": np.asarray(problem.site_names, dtype=object)[site.astype(np.int64)],
                "time": problem.horizon.times[slot.astype(np.int64)],
                "gpus": gpus.astype(np.int64),
            },
            columns=PLAN.names,
        )

    def _job_table(self, jobs: _Jobs) -> pd.DataFrame:
        """How each job ended (:data:`~scheduler.contracts.RUN_JOBS`); columns as arrays, words
        only for the jobs that need them (a replay reports every day)."""
        problem = self.problem
        slot_h = problem.slot_hours
        required = problem.jobs["gpu_hours"].to_numpy(float)
        done = np.minimum(required, jobs.done * slot_h)
        deadline = problem.jobs["deadline"]
        ended = jobs.finished_slot >= 0
        finished = pd.Series(pd.NaT, index=deadline.index, dtype=deadline.dtype)
        finished.iloc[np.flatnonzero(ended)] = problem.horizon.times[
            jobs.finished_slot[ended]
        ] + pd.Timedelta(hours=slot_h)
        failed = np.array([f is not None for f in jobs.failed], dtype=bool)
        after = ended & (finished > deadline).to_numpy()
        status = np.where(failed, str(JobStatus.FAILED), str(JobStatus.DONE)).astype(object)
        status[~failed & (~ended | after)] = str(JobStatus.LATE)
        reason = ["; ".join(notes) for notes in jobs.notes]
        for j in np.flatnonzero(failed | ~ended | after).tolist():
            if failed[j]:
                why = jobs.failed[j]
            elif not ended[j]:
                why = (f"unfinished: {done[j]:.6g} of {required[j]:.6g} GPU-h done by the "
                       f"deadline {deadline.iat[j].isoformat()}")  # fmt: skip
            else:
                late_min = (finished.iat[j] - deadline.iat[j]) / pd.Timedelta(minutes=1)
                why = f"finished {late_min:.0f} min after the deadline"
            reason[j] = "; ".join(filter(None, [why, reason[j]]))
        tokens = problem.jobs["tokens"].to_numpy(float)
        return pd.DataFrame(
            {
                "job_id": list(problem.job_ids),
                "status": status.tolist(),
                "reason": reason,
                "sites": _site_lists(jobs.ran_site, problem.site_names),
                "slots": jobs.ran_slots.astype(np.int64),
                "gpu_hours_required": required,
                "gpu_hours_done": done,
                "tokens_accounted": jobs.done * slot_h * tokens / required,
                "tokens_real": jobs.tokens_real.astype(np.int64),
                "finished_at": finished.array,
                "deadline": deadline.array,
            },
            columns=RUN_JOBS.names,
        )

    def _report(self, jobs: _Jobs, walk: _Walk, wall_s: float) -> RunReport:
        problem, actual = self.problem, self.actual
        horizon, names = problem.horizon, problem.site_names
        executed = self._executed(walk)
        n_sites, n_slots = len(names), horizon.n_slots
        dispatched = np.zeros((n_sites, n_slots), dtype=np.int64)
        tasks = np.zeros((n_sites, n_slots), dtype=np.int64)
        failed = np.zeros((n_sites, n_slots), dtype=np.int64)
        for t, site, gpus in walk.dispatched:
            slot = np.full(len(site), t)
            np.add.at(dispatched, (site, slot), gpus)
            np.add.at(tasks, (site, slot), 1)
        for t, s in walk.failed_tasks:
            failed[s, t] += 1
        capacity = np.tile(problem.site_gpus.astype(float)[:, None], n_slots)
        grid_cap, load_cap = actual.grid_cap_mw.copy(), actual.load_cap_mw.copy()
        for t, live in walk.capacity.items():  # what was in force when each slot ran
            capacity[:, t] = live
            grid_cap[:, t], load_cap[:, t] = walk.grid_cap_mw[t], walk.load_cap_mw[t]
        done_load = site_load(executed, actual.supply, problem.sites, horizon, problem.caps)
        planned_load = site_load(self.plan_original, problem.supply, problem.sites, horizon,
                                 problem.caps)  # fmt: skip
        run = pd.DataFrame(
            {
                "time": done_load["time"],
                "site": done_load["site"],
                "planned_gpus": planned_load["gpus_busy"],
                "dispatched_gpus": dispatched.ravel(),
                "actual_gpus": done_load["gpus_busy"],
                "tasks": tasks.ravel(),
                "tasks_failed": failed.ravel(),
                "capacity_gpus": capacity.ravel(),
                "planned_load_mw": planned_load["load_mw"],
                "planned_green_mw": planned_load["green_mw"],
                "load_mw": done_load["load_mw"],
                "green_mw": done_load["green_mw"],
                "green_used_mw": done_load["green_used_mw"],
                "grid_mw": done_load["grid_mw"],
                "grid_cap_mw": grid_cap.ravel(),
                "load_cap_mw": load_cap.ravel(),
                "cap_violation_mw": np.where(
                    done_load["gpus_busy"] > 0,
                    np.maximum.reduce(
                        [
                            np.zeros(len(done_load)),
                            done_load["grid_mw"] - grid_cap.ravel(),
                            done_load["load_mw"] - load_cap.ravel(),
                        ]
                    ),
                    0.0,
                ),
            }
        )
        job_table = self._job_table(jobs)
        attempts = self.runner.attempts() if self.runner is not None else pd.DataFrame()
        slot_h = horizon.slot_hours
        totals = {
            "planned": {
                **_energy(planned_load, slot_h),
                "gpu_hours": float(self.plan_original["gpus"].sum() * slot_h),
                "tokens": float(_tokens(self.plan_original, problem)),
            },
            "actual": {
                **_energy(done_load, slot_h),
                "gpu_hours": float(executed["gpus"].sum() * slot_h),
                "tokens": float(_tokens(executed, problem)),
                "tokens_real": float(jobs.tokens_real.sum()),
                "cap_violations": int((run["cap_violation_mw"] > 1e-6).sum()),
                "cut_gpu_hours": float(jobs.cut_units * slot_h),
                **{f"jobs_{s}": int((job_table["status"] == s).sum()) for s in JobStatus},
            },
        }
        return RunReport(
            site_slots=run,
            jobs=job_table,
            chunks=attempts,
            events=pd.DataFrame(walk.events, columns=EVENT_COLUMNS),
            totals=totals,
            slot_minutes=horizon.slot_minutes,
            wall_s=wall_s,
            executed=executed,
        )


def _site_lists(used: np.ndarray, names: Sequence[str]) -> list[str]:
    """``"a;b"`` per row of ``used`` ``[row, site]`` (bool), each distinct row joined once."""
    rows, inverse = np.unique(used, axis=0, return_inverse=True)
    joined = [";".join(np.asarray(names)[row]) for row in rows]
    return [joined[i] for i in inverse.ravel().tolist()]


def _energy(load: pd.DataFrame, slot_h: float) -> dict[str, float]:
    """Load, green-used and grid energy [MWh] and green share [-] of a site-load table."""
    load_mwh = float(load["load_mw"].sum() * slot_h)
    green_mwh = float(load["green_used_mw"].sum() * slot_h)
    return {
        "load_mwh": load_mwh,
        "green_used_mwh": green_mwh,
        "grid_mwh": load_mwh - green_mwh,
        "green_share": green_mwh / load_mwh if load_mwh > 0 else 0.0,
    }


def _tokens(plan: pd.DataFrame, problem: Problem) -> float:
    """Tokens a plan table stands for: GPU-hours x each job's tokens per GPU-hour [token]."""
    jobs = problem.jobs.set_index("job_id")
    per_gpu_hour = (jobs["tokens"] / jobs["gpu_hours"]).reindex(plan["job_id"]).to_numpy()
    return float((plan["gpus"].to_numpy() * problem.slot_hours * per_gpu_hour).sum())


def settle(problem: Problem, plan: pd.DataFrame) -> RunReport:
    """Settle ``plan`` on ``problem.actual_supply`` at once, with no runner (a replayed day)."""
    return Settlement(problem, plan).run()


def _plain(value: object) -> object:
    """A cell as JSON holds it: numpy scalars as numbers, times as ISO 8601 text."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if isinstance(value, np.generic) else value
