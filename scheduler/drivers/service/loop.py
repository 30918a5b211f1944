"""The control plane's loop: operating days back to back on a clock, caps binding what runs.

For each operating day the day pipeline gives the problem; the service's planner (the one the
gRPC API answers from) plans it with every cap in force; the day runner
(:class:`~scheduler.dayrunner.DayRunner`, the one replay's re-plans use) walks it slot by slot
through the settlement engine, on Ray or with no runner (``--no-dispatch``), taking its plans
from the planner. At every slot boundary:

1. if the planner has published a new plan version since the last boundary (a cap submitted or
   cancelled over gRPC), its caps bind from this slot on and its plan of the work left
   replaces the rest of the day's plan; a cap submitted during a slot therefore binds from the
   next slot boundary;
2. otherwise, every ``solver.replan_every_minutes`` the work left is planned again from the
   current state;
3. the engine runs the slot (caps hold on the actual supply, whatever the forecast said), and
   the loop tells the planner where the day stands (work left, from the next boundary), so a
   cap arriving in the middle of the day re-plans only what is left.

At the end of a day its plan directory and run tables go to ``OUT/YYYY-MM-DD/`` and work left
unfinished is carried into the next day, so days roll over by themselves.

With ``measurements.settle_on: measurements`` the slots settle on what the sites measured
(:mod:`~scheduler.drivers.service.measured`): before each slot the file feed is read, the slots
whose grace has passed are booked and the slot is decided on its measurement or the newest
forecast; the day's files are written at its end and written again once its last slots are
booked (a slot's grace into the next day), ``run.csv`` saying per site and slot whether it was
measured or estimated.

After every slot the loop commits where it stands to the service's database (the day, the first
slot not yet run, the work carried into the day, the settlement engine's state) in one
transaction. Started again on the same database after a crash, it resumes there: a slot that was
running when the process died is run again and counted once, and no job is lost.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from scheduler.clock import Clock
from scheduler.config import Config
from scheduler.contracts import JOBS, UserError
from scheduler.contracts.plandir import (
    PlanDirError,
    RunReport,
    last_run_gpus,
    last_run_soc_mwh,
    write_run_report,
)
from scheduler.dayrunner import DayRunner, NewPlan
from scheduler.drivers.plan_output import save_run_day
from scheduler.drivers.service.exporter import ServiceMetrics
from scheduler.drivers.service.measured import MeasurementBook, SettledSupply
from scheduler.drivers.service.planner import Planner, PlanVersion
from scheduler.drivers.service.reports import SlotReports, slot_rows
from scheduler.drivers.service.store import LoopProgress, Store
from scheduler.horizon import Horizon
from scheduler.jobs import read_jobs
from scheduler.metrics import busy_gpus
from scheduler.pipeline import DayPipeline, carry_over
from scheduler.problem import Problem
from scheduler.replan import RunState
from scheduler.settlement import Runner, Settlement

__all__ = ["ControlLoop", "DayDone", "day_problem"]

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    """A finished day whose last slots are still within their grace."""

    day: str
    engine: Settlement
    settled: SettledSupply
    directory: Path


def _forecast_at(pipeline: DayPipeline, horizon: Horizon, at: pd.Timestamp) -> pd.DataFrame:
    """The newest forecast of ``horizon`` issued at ``at``."""
    return pipeline.supply(horizon, issued_at=at).forecast


def day_problem(
    pipeline: DayPipeline,
    horizon: Horizon,
    *,
    carried: pd.DataFrame | None = None,
    jobs_dir: Path | None = None,
) -> Problem:
    """An operating day's problem: its jobs from ``jobs_dir/YYYY-MM-DD.csv`` (none when the file
    is absent; a bad file is refused with its row named in the log and the day runs without
    it) or from the config's workload generator, plus the work ``carried`` into the day."""
    if jobs_dir is None:
        return pipeline.problem(horizon, carried=carried)
    day = horizon.start.tz_convert(pipeline.config.timezone).date().isoformat()
    path = jobs_dir / f"{day}.csv"
    if not path.exists():
        log.warning("%s: no jobs file for %s; only work carried in runs", path, day)
        return pipeline.problem(horizon, jobs=JOBS.empty(), carried=carried)
    try:
        return pipeline.problem(
            horizon, jobs=read_jobs(path), carried=carried, jobs_source=f"{path} line"
        )
    except UserError as error:
        log.error("jobs of %s refused, the day runs without them: %s", day, error)
        return pipeline.problem(horizon, jobs=JOBS.empty(), carried=carried)


@dataclass(frozen=True)
class DayDone:
    """A finished operating day: its local date, where its tables are, and the run report."""

    day: str
    directory: Path
    report: RunReport
    jobs: pd.DataFrame  # the day's jobs table (work carried in included)


def _run_state(engine: Settlement, at: pd.Timestamp) -> RunState:
    """Where ``engine``'s day stands at the slot boundary ``at``."""
    return engine.run_state(at)


class _PlannerPlans:
    """The day runner's plan source in the loop: a plan version the planner published since
    the last one taken (a cap answered between boundaries), with its caps; and its re-plans of
    the work left."""

    def __init__(self, planner: Planner, current: PlanVersion) -> None:
        self.planner = planner
        self.seen = current.version

    def newer(self, boundary: pd.Timestamp) -> NewPlan | None:
        current = self.planner.settled()
        if current.version == self.seen:
            return None
        self.seen = current.version
        log.info("%s: plan version %d (%s) runs from here", boundary, current.version,
                 current.reason)  # fmt: skip
        return NewPlan(current.result, tuple(current.problem.caps))

    def replan(self, state: RunState, reason: str) -> NewPlan | None:
        current = self.planner.replan(reason, state)
        self.seen = current.version
        return NewPlan(current.result)


def _running_state(engine: Settlement, t: int) -> RunState:
    """Where ``engine``'s day will stand once slot ``t`` runs as planned: from the boundary after
    it, less the work its plan rows give each job, from its planned load. Plans made while the
    slot runs start after it (the slot's tasks are already decided), so no work is planned into
    a slot that has begun; the state after the slot replaces this one."""
    problem, plan = engine.problem, engine.plan
    horizon = problem.horizon
    rows = plan[plan["time"] == horizon.times[t]]
    remaining = engine.remaining_gpu_hours()
    for job_id, gpus in rows.groupby("job_id")["gpus"].sum().items():
        if job_id in remaining:
            remaining[job_id] = max(remaining[job_id] - gpus * horizon.slot_hours, 0.0)
    busy = busy_gpus(rows, problem.site_names, horizon)[:, t]
    load = problem.base_load_mw + busy * problem.mw_per_gpu
    load_mw = dict(zip(problem.site_names, load.tolist(), strict=True))
    return RunState(
        horizon.times[t] + pd.Timedelta(minutes=horizon.slot_minutes),
        remaining,
        load_mw,
        stored_mwh=engine.stored_mwh(busy),
    )


class ControlLoop:
    """Runs ``days`` operating days from ``first_day`` (``None``: until stopped) on ``clock``.

    ``runner`` runs each slot's chunks (``None``: every chunk completes at once); ``out_dir``
    receives one directory per day; ``solver.replan_every_minutes`` is the longest the loop
    keeps a plan without re-planning the work left; ``metrics`` counts each slot run.

    The loop keeps pace (:meth:`keeping_pace`, what gRPC health SERVING means) from its first
    day planned until it returns, while it is at most a slot behind its clock (:meth:`lag`).
    """

    def __init__(
        self,
        config: Config,
        pipeline: DayPipeline,
        planner: Planner,
        store: Store,
        clock: Clock,
        *,
        first_day: pd.Timestamp,
        days: int | None,
        out_dir: Path,
        runner: Runner | None = None,
        jobs_dir: Path | None = None,
        book: MeasurementBook | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.planner = planner
        self.store = store
        self.clock = clock
        self.first_day = first_day
        self.days = days
        self.out_dir = out_dir
        self.runner = runner
        self.jobs_dir = jobs_dir
        self.replan_every = pd.Timedelta(minutes=config.solver.replan_every_minutes)
        self.slot = pd.Timedelta(minutes=config.forecast.slot_minutes)
        self.metrics = metrics if metrics is not None else ServiceMetrics()
        self._due: pd.Timestamp | None = None  # the next slot start to begin; None: unplanned
        self.done: list[DayDone] = []
        self.reports = SlotReports()  # every site-slot run so far, in order
        self._stop = threading.Event()
        self.book = book if config.measurements.settle_on == "measurements" else None
        self.grace = pd.Timedelta(minutes=config.measurements.grace_minutes)
        self._pending: _Pending | None = None  # a finished day whose last slots are not booked

    def stop(self) -> None:
        """Stop after the slot running now."""
        self._stop.set()

    def lag(self) -> pd.Timedelta | None:
        """How far the clock is past the next slot start the loop has not begun (zero while it
        waits for it); ``None`` before its first day is planned and once it has returned."""
        due = self._due
        if due is None:
            return None
        return max(self.clock.now() - due, pd.Timedelta(0))

    def keeping_pace(self) -> bool:
        """Whether the loop runs, its first day planned, at most a slot behind its clock."""
        lag = self.lag()
        return lag is not None and lag <= self.slot

    def run(self) -> list[DayDone]:
        """Run the days; returns them as they finished (also in :attr:`done`)."""
        try:
            return self._run_days()
        finally:
            self._due = None  # stopped or done: it keeps no pace any more

    def _run_days(self) -> list[DayDone]:
        progress = self.store.loop_progress()
        resume = progress if progress is not None and not progress.finished else None
        day = pd.Timestamp(resume.day) if resume is not None else self.first_day
        carried = resume.carried if resume is not None else None
        while not self._stop.is_set() and (self.days is None or len(self.done) < self.days):
            finished = self._run_day(day.date().isoformat(), carried, resume)
            if finished is None:
                break
            resume = None
            self.done.append(finished)
            jobs = finished.report.jobs.set_index("job_id")
            left = jobs["gpu_hours_required"] - jobs["gpu_hours_done"]
            day = day + pd.Timedelta(days=1)
            carried = carry_over(
                finished.jobs, left[jobs["status"] != "failed"], self.pipeline.horizon(day.date())
            )
            self.store.save_loop_slot(day.date().isoformat(), 0, carried, {})
        pending = self._pending
        if pending is not None and self._wait_until(pending.settled.closes_at):
            self._finish_pending(self.clock.now())
        return self.done

    def _write_day(
        self, directory: Path, engine: Settlement, settled: SettledSupply | None
    ) -> RunReport:
        """The day's plan directory and run tables (supply basis per slot when measured)."""
        report = engine.report()
        if settled is not None:
            report = replace(report, site_slots=settled.columns(report.site_slots))
        save_run_day(directory, engine.problem, engine.plan, self.config, self.pipeline.seed,
                     executed=report.executed, guide=engine.storage_guide)  # fmt: skip
        write_run_report(directory, report)
        return report

    def _finish_pending(self, now: pd.Timestamp) -> None:
        """Book the finished day's last slots once their grace has passed, and write its
        files again when that changed them."""
        pending = self._pending
        if pending is None or now < pending.settled.closes_at:
            return
        booked = pending.settled.close(now)
        if booked:
            pending.engine.settle_on(pending.settled.table)
            self._write_day(pending.directory, pending.engine, pending.settled)
            self.reports.rebook(pending.settled, booked)
            log.info("day %s: last slots booked on their measurements", pending.day)
        self._pending = None

    def _wait_until(self, t: pd.Timestamp) -> bool:
        """Sleep until ``t`` on the clock, waking at once when stopped; ``False`` if stopped."""
        while not self._stop.is_set():
            left_s = self.clock.real_seconds(t - self.clock.now())
            if left_s <= 0:
                return True
            self._stop.wait(min(left_s, 1.0))
        return False

    def _next_day(self, day: str) -> Problem | None:
        """The day after ``day`` as far as known now (its jobs, no work carried in yet), when
        ``solver.look_ahead_days`` puts it inside the horizon."""
        if not self.config.solver.look_ahead_days:
            return None
        after = self.pipeline.horizon((pd.Timestamp(day) + pd.Timedelta(days=1)).date())
        ahead = day_problem(self.pipeline, after, jobs_dir=self.jobs_dir)
        return replace(ahead, actual_supply=None)

    def _after_day_before(self, day: str, problem: Problem) -> Problem:
        """``problem`` starting where the day before ``day`` ended, from that day's ``run.csv``
        (as it is when it did not run here): each site's load in its last slot, so the ramp
        limits hold across midnight, and the energy in its storage; also after a restart."""
        before = self.out_dir / (pd.Timestamp(day) - pd.Timedelta(days=1)).date().isoformat()
        if not (before / "run.csv").is_file():
            return problem
        sites = problem.site_names
        try:
            load = problem.load_mw_of(last_run_gpus(before, sites))
            stored = problem.storage.unit_energy_mwh(last_run_soc_mwh(before, sites))
        except PlanDirError as error:  # another set of sites ran there: no ramp across midnight
            log.warning("day %s starts without the load before it: %s", day, error)
            return problem
        return replace(problem, initial_load_mw=load, initial_soc_mwh=tuple(stored.tolist()))

    def _report_slot(
        self,
        engine: Settlement,
        t: int,
        start: pd.Timestamp,
        settled: SettledSupply | None,
        state: dict[str, object],
    ) -> None:
        """Add slot ``t``'s report rows (one per site) and count it in the metrics;
        ``state`` is the engine's after the slot."""
        baseline = self.planner.baseline_mw[:, t]
        feed = self.pipeline.feed
        runs = {site: run.issued_at for site, run in feed.in_use(start).items()} if feed else {}
        drawn = engine.slot_load(t)
        rows = slot_rows(engine, t, drawn, baseline, settled, runs)
        self.metrics.slot_ran(engine, t, state, drawn, baseline, [r.supply_basis for r in rows])
        self._log_progress(engine, t, start, drawn)
        self.reports.add(rows)

    def _log_progress(
        self, engine: Settlement, t: int, start: pd.Timestamp, drawn: dict[str, np.ndarray]
    ) -> None:
        """One line at the end of each hour of the day: the slot, each site's load and grid
        draw [MW], the jobs with work left."""
        horizon = engine.problem.horizon
        if (t + 1) % max(60 // horizon.slot_minutes, 1) and t + 1 < horizon.n_slots:
            return
        sites = ", ".join(
            f"{name} {drawn['load_mw'][s]:.1f} MW (grid {drawn['grid_mw'][s]:.1f})"
            for s, name in enumerate(engine.problem.site_names)
        )
        local = start.tz_convert(self.config.timezone)
        log.info("%s slot %d/%d ran: %s; %d job(s) with work left", f"{local:%Y-%m-%d %H:%M}",
                 t + 1, horizon.n_slots, sites, len(engine.remaining_gpu_hours()))  # fmt: skip

    def _run_day(
        self, day: str, carried: pd.DataFrame | None, resume: LoopProgress | None
    ) -> DayDone | None:
        horizon = self.pipeline.horizon(day)
        problem = day_problem(self.pipeline, horizon, carried=carried, jobs_dir=self.jobs_dir)
        problem = self._after_day_before(day, problem)
        version = self.planner.new_day(replace(problem, actual_supply=None))
        self.planner.look_ahead(None)
        threading.Thread(  # off the slot path: the next day's forecast takes a while
            target=lambda: self.planner.look_ahead(self._next_day(day)),
            name=f"look-ahead-{day}", daemon=True,
        ).start()  # fmt: skip
        engine = Settlement(
            replace(problem, caps=version.problem.caps),
            version.result,
            runner=self.runner,
            clock=self.clock,
        )
        settled = None
        if self.book is not None:
            forecast_at = partial(_forecast_at, self.pipeline, horizon)
            settled = SettledSupply(horizon, self.book, forecast_at, self.grace)
            engine.settle_on(settled.table)
        slot = pd.Timedelta(minutes=horizon.slot_minutes)
        if not self.done:  # a simulated clock starts now: preparing the day took no plan time
            self.clock.start()
        # started inside the first day: plan the work from the first slot still to come (later
        # days run every slot, late if the loop has fallen behind its clock); resumed after a
        # crash: from the first slot not yet run
        first = 0 if self.done else int((horizon.times + slot <= self.clock.now()).sum())
        if resume is not None and resume.engine_state:
            engine.restore(resume.engine_state)
            first = max(first, resume.next_slot)
            log.warning("day %s: resuming at slot %d after a restart", day, first)
        first = min(first, horizon.n_slots - 1)
        if settled is not None:  # the slots run before: as decided then, booked as due now
            for t in range(first):
                settled.decide(t, horizon.times[t])
            settled.close(self.clock.now())
        source = _PlannerPlans(self.planner, version)
        runner = DayRunner(engine, source, self.replan_every)
        if first:
            runner.replan(first, "started during the day")
        self._due = horizon.times[first]
        log.info("day %s: %d jobs, plan version %d", day, problem.n_jobs, source.seen)
        for t in range(first, horizon.n_slots):
            boundary = horizon.times[t]
            if not self._wait_until(boundary):
                return None
            self._due = boundary + slot  # slot t has begun
            with self.planner.slot_start():
                runner.decide(t)
                self.planner.state = _running_state(engine, t)
            if settled is not None:
                settled.book.read_file()
                self._finish_pending(boundary)
                self.reports.rebook(settled, settled.close(boundary))
                engine.settle_on(settled.decide(t, boundary))
            engine.step(t)
            walked = engine.state()
            self.store.save_loop_slot(day, t + 1, carried, walked)
            self.planner.state = _run_state(engine, boundary + slot)
            self._report_slot(engine, t, boundary, settled, walked)
        self.store.save_loop_slot(day, horizon.n_slots, carried, engine.state(), finished=True)
        directory = self.out_dir / day
        if settled is not None:
            self.reports.rebook(settled, settled.close(self.clock.now()))
            engine.settle_on(settled.table)
            if not settled.closed.all():
                self._pending = _Pending(day, engine, settled, directory)
        report = self._write_day(directory, engine, settled)
        totals = report.totals["actual"]
        log.info(
            "day %s done: green share %.1f%%, grid %.1f MWh, %d cap violation(s), jobs %d done "
            "%d late %d failed",
            day, 100 * totals["green_share"], totals["grid_mwh"], totals["cap_violations"],
            totals["jobs_done"], totals["jobs_late"], totals["jobs_failed"],
        )  # fmt: skip
        return DayDone(day, directory, report, problem.jobs)
