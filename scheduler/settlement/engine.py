"""The settlement engine: walks a plan slot by slot, fits each slot by the rules, runs it.

See :mod:`scheduler.settlement` for what a slot is fitted to and
:mod:`~scheduler.settlement.rules` for the rules; this module holds the walk: the plan's rows
(:class:`~scheduler.settlement.cursor.PlanCursor`), the jobs' state and the record of each slot
(:mod:`~scheduler.settlement.state`), the runner and the clock, a site that loses capacity,
and the report (:func:`~scheduler.settlement.report.run_report`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import pandas as pd

from scheduler.clock import Clock, InstantClock
from scheduler.contracts import PLAN
from scheduler.contracts.chunks import Chunk, ChunkOutcome, ChunkStatus
from scheduler.contracts.plandir import RunReport
from scheduler.jobs import unused_in_last_slot
from scheduler.metrics import problem_load_arrays
from scheduler.policies.base import PlanResult
from scheduler.problem import LoadCap, Problem
from scheduler.ramps import ramp_bounds_gpus
from scheduler.replan import Replan, RunState
from scheduler.settlement.cursor import PlanCursor
from scheduler.settlement.report import caps_recorded, run_report
from scheduler.settlement.rules import RULES, SlotRule, SlotView
from scheduler.settlement.state import Chunks, JobsState, WalkRecord, from_plain, to_plain
from scheduler.storage import StorageGuide, follow_surplus

__all__ = ["MIN_SLOT_TIMEOUT_S", "Runner", "Settlement", "SlotProgress", "settle"]

log = logging.getLogger(__name__)

MIN_SLOT_TIMEOUT_S = 60.0  # shortest wait for a slot's chunks, whatever the clock [s]


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


class Settlement:
    """Walks ``plan`` over ``problem``'s day on ``clock`` with ``runner``; see
    :mod:`scheduler.settlement`.

    ``problem.actual_supply`` is what the day settles on (the forecast when absent);
    ``problem.supply`` is what the plan was made on (the planned side of the report).
    ``runner=None`` completes every chunk at once (replay). ``replan`` is called when a site
    loses live capacity. ``rules`` fit each slot (:data:`~scheduler.settlement.rules.RULES`).

    :meth:`run` walks the whole day. A live loop instead calls :meth:`step` at each slot
    boundary, and between steps may hand in the caps now in force (:meth:`set_caps`), the
    supply the slots settle on (:meth:`settle_on`) and a new plan for the rest of the day
    (:meth:`replace_plan`, made from :meth:`remaining_gpu_hours`); :meth:`report` then tells
    what ran.
    """

    def __init__(
        self,
        problem: Problem,
        plan: pd.DataFrame | PlanResult,
        *,
        runner: Runner | None = None,
        clock: Clock | None = None,
        replan: Replan | None = None,
        progress: Callable[[SlotProgress], None] | None = None,
        slot_timeout_s: float | None = None,
        rules: Sequence[SlotRule] = RULES,
        guide: StorageGuide | None = None,
    ) -> None:
        self.problem = problem
        self.actual = problem.on_actual_supply() if problem.actual_supply is not None else problem
        self.plan_original = _plan_table(plan)
        if guide is None and isinstance(plan, PlanResult):
            guide = plan.storage_guide
        self.guide_original = guide  # how the plan runs the sites' storage (None: the rule)
        self._guide = guide
        self.cursor = PlanCursor(problem, self.plan_original)
        self.runner = runner
        self.clock = clock if clock is not None else InstantClock()
        self.replan = replan
        self.progress = progress
        self.slot_timeout_s = slot_timeout_s
        self.rules = tuple(rules)
        self._jobs = JobsState.of(problem)
        self._walk = WalkRecord()
        self._wall_s = 0.0
        in_plan = np.zeros(problem.n_jobs, dtype=bool)
        in_plan[self.cursor.job] = True
        for j in np.flatnonzero(~in_plan):
            self._jobs.notes[j].append("the plan has no work for this job")
        self._live_gpus = self._live()
        self._drawn_mw = np.zeros(2)  # load and green used summed over the slots run [MW]
        # GPUs run per site in the slot before (None: unknown before the first slot)
        self._previous: np.ndarray | None = problem.initial_gpus

    @property
    def plan(self) -> pd.DataFrame:
        """The plan walked (every re-plan from the slot it took over at; a plan table)."""
        return self.cursor.plan

    @property
    def storage_guide(self) -> StorageGuide | None:
        """How the plans walked run the sites' storage, each from the slot it took over at
        (``None``: the storage rule all day)."""
        return self._guide

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
        jobs = self._jobs
        active = jobs.active
        if active[self.cursor.jobs_from(t)].any():
            return True
        waiting = active & (jobs.backlog > 0) & (self.problem.deadline_slot > t)
        return bool(waiting.any())

    def step(self, t: int) -> None:
        """Run slot ``t``: fit the plan's work by the rules to live capacity, the caps in force
        on the supply it settles on and the ramp from the slot before, hand the chunks to the
        runner and book the outcome."""
        started = time.perf_counter()
        problem, jobs, walk = self.problem, self._jobs, self._walk
        before, live = self._live_gpus, self._live()
        self._live_gpus = live
        lost = np.flatnonzero(live < before - 1e-9)
        if len(lost):
            self._site_lost(t, lost, before, live)
        chunks = self.cursor.planned(t)
        allowed = np.minimum(
            self.actual.capacity_gpus[:, t], np.floor(live + 1e-9).astype(np.int64)
        )
        bounds = ramp_bounds_gpus(self._previous, problem.ramp_up_mw, problem.ramp_down_mw,
                                  problem.mw_per_gpu, allowed)  # fmt: skip
        view = SlotView(problem, self.actual, jobs, self.cursor, self._event)
        for rule in self.rules:
            rule(view, t, chunks, bounds)
        chunks = chunks.kept()
        walk.capacity[t] = live.copy()
        walk.grid_cap_mw[t] = self.actual.grid_cap_mw[:, t].copy()
        walk.load_cap_mw[t] = self.actual.load_cap_mw[:, t].copy()
        walk.caps[t] = caps_recorded(self.actual, t)
        self._previous = np.zeros(len(problem.sites))
        if len(chunks.job):
            self._previous = self._run(t, chunks).astype(float)
        if self.progress is not None:
            drawn = self.slot_load(t)  # running totals: no re-scoring of the day each slot
            self._drawn_mw += (drawn["load_mw"].sum(), (drawn["load_mw"] - drawn["grid_mw"]).sum())
            if len(chunks.job):
                self.progress(self._progress(t, chunks))
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
        new = _plan_table(plan, "re-plan row")
        first = int(self.problem.horizon.times.searchsorted(from_time))  # at or after it
        self._jobs.backlog[:] = 0
        self.cursor.replace(new, first)
        rest = plan.storage_guide if isinstance(plan, PlanResult) else None
        if self._guide is not None or rest is not None:
            problem = self.problem
            walked = self._guide or StorageGuide.empty(problem.storage.n_units,
                                                       problem.horizon.n_slots)  # fmt: skip
            # a re-plan's guide starts where its horizon did, at or before the slot it takes over
            planned_from = first
            if rest is not None and rest.start is not None:
                planned_from = min(int(problem.horizon.times.searchsorted(rest.start)), first)
            self._guide = walked.from_slot(first, rest, planned_from)

    def slot_load(self, t: int) -> dict[str, np.ndarray]:
        """What each site drew in slot ``t`` once it has run, arrays ``[site]``: the site-load
        columns (:func:`~scheduler.metrics.problem_load_arrays`: ``gpus_busy``, ``load_mw``,
        ``green_mw``, ``green_used_mw``, storage, ``grid_mw`` [MW], ...) on the supply the slot
        settled on, the storage following the slots run so far, and the ``grid_cap_mw`` and
        ``load_cap_mw`` in force then [MW]."""
        walk = self._walk
        gpus, idle = self._executed()
        columns = problem_load_arrays(self.actual, gpus, self._guide, idle)
        drawn = {name: column[:, t] for name, column in columns.items()}
        drawn["grid_cap_mw"], drawn["load_cap_mw"] = walk.grid_cap_mw[t], walk.load_cap_mw[t]
        return drawn

    def stored_mwh(self, gpus_next: np.ndarray | None = None) -> tuple[float, ...] | None:
        """Each storage unit's energy after the slots run so far [MWh] (``None`` without
        storage); with ``gpus_next`` ``[site]``, after the next slot too, run with those GPUs
        busy, on the supply the day settles on."""
        problem = self.problem
        if not problem.storage.n_units:
            return None
        last = max(self._walk.capacity, default=-1)
        gpus, idle = self._executed()
        if gpus_next is not None and last + 1 < problem.horizon.n_slots:
            last += 1
            gpus[:, last] = gpus_next
        if last < 0:
            return tuple(problem.soc_start_mwh.tolist())
        actual = self.actual
        load = problem.base_load_mw[:, None] + (gpus - idle) * problem.mw_per_gpu[:, None]
        stored = follow_surplus(problem.storage, load, actual.green_mw, problem.slot_hours,
                                problem.soc_start_mwh, self._guide)  # fmt: skip
        return tuple(stored.soc_mwh[:, last].tolist())

    def run_state(self, at: pd.Timestamp, live_gpus: Mapping[str, float] | None = None) -> RunState:
        """Where the day stands at the slot boundary ``at`` (after the slots run so far)."""
        return RunState(at, self.remaining_gpu_hours(), self.last_load_mw(), live_gpus,
                        self.stored_mwh())  # fmt: skip

    def _executed(self) -> tuple[np.ndarray, np.ndarray]:
        """GPUs that ran per ``[site, slot]`` so far, and those of them idle: the unused part
        of each finished job's last GPU-slot (:func:`~scheduler.jobs.unused_in_last_slot`)."""
        problem = self.problem
        shape = (len(problem.sites), problem.horizon.n_slots)
        parts = self._walk.executed or [(np.zeros(0, np.int64),) * 4]
        job, site, slot, done = (np.concatenate([p[i] for p in parts]) for i in range(4))
        gpus = np.zeros(shape, dtype=np.int64)
        np.add.at(gpus, (site, slot), done)
        idle = unused_in_last_slot(job, site, slot, done, problem.gpu_hours,
                                   problem.horizon.slot_minutes, shape)  # fmt: skip
        return gpus, idle

    def state(self) -> dict[str, object]:
        """Everything the walk has done so far, as plain JSON-ready values with a schema
        version (see :meth:`restore`): a live loop stores it after every slot to survive a
        crash."""
        state = to_plain(self._jobs, self._walk, self._wall_s, self._previous)
        guide = self._guide
        if guide is not None:  # how the plans walked run the storage, NaN as null
            state["storage_guide"] = {
                **{name: [[None if v != v else v for v in row]
                          for row in getattr(guide, name).tolist()]
                   for name in StorageGuide.FIELDS},
                "start": None if guide.start is None else guide.start.isoformat(),
            }  # fmt: skip
        return state

    def restore(self, state: dict) -> None:
        """Continue from a :meth:`state` of the same problem (after a restart)."""
        self._walk, self._wall_s, self._previous = from_plain(state, self._jobs)
        saved = state.get("storage_guide")
        if saved is not None:
            start = None if saved["start"] is None else pd.Timestamp(saved["start"])
            charge, discharge, energy = (np.array(saved[name], dtype=float)
                                         for name in StorageGuide.FIELDS)  # fmt: skip
            self._guide = StorageGuide(charge, discharge, energy, start)

    def report(self) -> RunReport:
        """What ran so far: the run tables, events and totals."""
        chunks = self.runner.attempts() if self.runner is not None else pd.DataFrame()
        return run_report(self.problem, self.actual, self.plan_original, self._jobs,
                          self._walk, self._wall_s, chunks,
                          (self.guide_original, self._guide))  # fmt: skip

    def _live(self) -> np.ndarray:
        gpus = self.problem.site_gpus.astype(float)
        if self.runner is None:
            return gpus
        live = self.runner.capacity_gpus()
        return np.minimum(gpus, [live.get(name, 0.0) for name in self.problem.site_names])

    def _event(self, t: int, kind: str, detail: str, **fields: object) -> None:
        time_t = self.problem.horizon.times[t]
        self._walk.events.append({"time": time_t, "kind": kind, "detail": detail, **fields})
        log.info("%s %s: %s", time_t.isoformat(), kind, detail)

    # ----------------------------------------------------------------- running a slot
    def _timeout_s(self) -> float:
        if self.slot_timeout_s is not None:
            return self.slot_timeout_s
        slot = pd.Timedelta(minutes=self.problem.horizon.slot_minutes)
        return max(MIN_SLOT_TIMEOUT_S, self.clock.real_seconds(slot))

    def _run(self, t: int, chunks: Chunks) -> np.ndarray:
        """Run the slot; return the GPUs that completed per site ``[site]``."""
        problem, jobs, walk = self.problem, self._jobs, self._walk
        walk.dispatched.append((t, chunks.site, chunks.gpus))
        self.clock.sleep_until(problem.horizon.times[t])
        if self.runner is None:
            ok = np.ones(len(chunks.job), dtype=bool)
        else:
            ok = self._run_on(t, chunks)
        job, site, gpus = chunks.job[ok], chunks.site[ok], chunks.gpus[ok]
        walk.executed.append((job, site, np.full(len(job), t), gpus))
        np.add.at(jobs.done, job, gpus)
        jobs.ran_site[job, site] = True
        jobs.ran_slots[np.unique(job)] += 1
        finished = np.flatnonzero((jobs.remaining <= 0) & (jobs.finished_slot < 0))
        jobs.finished_slot[finished] = t
        return np.bincount(site, weights=gpus, minlength=len(problem.sites))

    def _run_on(self, t: int, chunks: Chunks) -> np.ndarray:
        """Run the slot's chunks on the runner; ``True`` where a chunk completed."""
        problem, jobs, walk = self.problem, self._jobs, self._walk
        assert self.runner is not None
        job_ids, site_names = problem.job_ids, problem.site_names
        rate = problem.tokens_per_gpu_hour
        when, minutes = problem.horizon.times[t], problem.horizon.slot_minutes
        sent = [
            Chunk(job_ids[j], site_names[s], when, g, minutes, float(rate[j]))
            for j, s, g in zip(chunks.job.tolist(), chunks.site.tolist(), chunks.gpus.tolist(),
                               strict=True)
        ]  # fmt: skip
        outcomes = self.runner.run_slot(sent, self._timeout_s())
        ok = np.zeros(len(sent), dtype=bool)
        for row, outcome in enumerate(outcomes):
            j, s = int(chunks.job[row]), int(chunks.site[row])
            chunk = outcome.chunk
            for attempt, error in enumerate(outcome.retried):
                self._event(t, "retry", f"attempt {attempt + 1} raised {error}",
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
                self._event(t, "failed", jobs.failed[j] or "", site=chunk.site,
                            job_id=chunk.job_id)  # fmt: skip
            else:
                jobs.backlog[j] += chunk.gpus
                self._event(t, "lost", f"{chunk.gpus} GPUs of work carried: {outcome.error}",
                            site=chunk.site, job_id=chunk.job_id, gpus=chunk.gpus)  # fmt: skip
        return ok

    # ----------------------------------------------------------------- losing a site
    def _site_lost(self, t: int, lost: np.ndarray, before: np.ndarray, live: np.ndarray) -> None:
        problem, jobs = self.problem, self._jobs
        names = [problem.site_names[s] for s in lost]
        for s in lost:
            self._event(t, "site_lost", f"site {problem.site_names[s]!r} capacity fell from "
                        f"{before[s]:g} to {live[s]:g} GPUs",
                        site=problem.site_names[s])  # fmt: skip
        when = problem.horizon.times[t]
        active = np.flatnonzero(jobs.active)
        remaining = self.remaining_gpu_hours()
        available = {n: float(g) for n, g in zip(problem.site_names, live, strict=True) if g > 0}
        new_plan = None
        if self.replan is not None and remaining:
            try:
                new_plan = self.replan(self.run_state(when, available))
            except Exception as error:  # a re-plan that cannot place work must not end the run
                self._event(t, "replan_failed", f"re-plan raised {type(error).__name__}: "
                            f"{error}")  # fmt: skip
        if new_plan is None:
            plan = self.plan
            dropped = plan[(plan["time"] >= when) & plan["site"].isin(names)]
            for job_id, rows in dropped.groupby("job_id"):
                gpu_h = rows["gpus"].sum() * problem.slot_hours
                j = int(np.flatnonzero(problem.job_ids == job_id)[0])
                jobs.notes[j].append(
                    f"site {', '.join(names)} lost capacity at {when.isoformat()} and no "
                    f"re-plan placed the {gpu_h:.6g} GPU-h planned there"
                )
            self.cursor.reset(plan.drop(dropped.index).reset_index(drop=True))
            return
        self.replace_plan(new_plan, when)
        plan = self.plan
        placed = plan[plan["time"] >= when].groupby("job_id")["gpus"].sum()
        for j in active.tolist():
            job_id = problem.job_ids[j]
            got = float(placed.get(job_id, 0) * problem.slot_hours)
            if got < remaining[job_id] - 1e-9:
                jobs.notes[j].append(
                    f"after site {', '.join(names)} lost capacity at {when.isoformat()} the "
                    f"re-plan placed {got:.6g} of {remaining[job_id]:.6g} GPU-h left"
                )
        self._event(t, "replanned", f"re-planned {len(remaining)} jobs after losing "
                    f"{', '.join(names)}")  # fmt: skip

    # ----------------------------------------------------------------- progress
    def _progress(self, t: int, chunks: Chunks) -> SlotProgress:
        load_mw, green_used_mw = self._drawn_mw
        share = float(green_used_mw / load_mw) if load_mw > 0 else 0.0
        counts = np.bincount(chunks.site, minlength=len(self.problem.sites))
        return SlotProgress(
            index=t,
            time=self.problem.horizon.times[t],
            tasks_by_site=dict(zip(self.problem.site_names, counts.tolist(), strict=True)),
            green_share_so_far=share,
            jobs_finished=int((~self._jobs.active).sum()),
            jobs_total=self.problem.n_jobs,
        )


def settle(problem: Problem, plan: pd.DataFrame | PlanResult) -> RunReport:
    """Settle ``plan`` (a plan table or a policy's result) on ``problem.actual_supply`` at once,
    with no runner (a replayed day)."""
    return Settlement(problem, plan).run()


def _plan_table(plan: pd.DataFrame | PlanResult, source: str = "plan row") -> pd.DataFrame:
    """The plan table of ``plan``: a policy's result as it is (``make_result`` builds it
    canonical: distinct job, site and slot keys, gpus >= 1, the problem's ids and UTC slot
    times; checking it cell by cell again cost ~9 ms of every replayed day and ~2.5 ms of every
    hourly re-plan), a table handed in checked and made canonical (``source`` names its rows
    in errors)."""
    return plan.plan if isinstance(plan, PlanResult) else PLAN.canonical(plan, source)
