"""The service's plan: one operating day, re-planned once for every batch of cap changes.

A submission or cancellation is checked when it arrives (input, scope, modification number
against the stored event: :mod:`.capbook`) and queued; :meth:`Planner.submit` and
:meth:`Planner.cancel` return a future. One planner thread takes every change queued so far as
one batch (:mod:`.batching`), plans once under the caps in force after the whole batch, commits
the batch and answers each change (:mod:`.answers`). The caps in force become hard constraints
of a :class:`~scheduler.problem.Problem` (of the work left, while a control loop runs the day:
:mod:`.running_day`), and the plan answering them is chosen by
:func:`scheduler.choice.choose_plan`, a pure function whose
:class:`~scheduler.choice.PlanChoice` each version carries:

- if the cap matrices do not change (caps outside the planned day, or looser than a limit
  already in force), the plan version stays;
- if the current plan already keeps them, it is kept under a new version with
  ``replanned = False``; when the caps only tightened it stays optimal (adding constraints
  cannot improve an optimum that is still feasible);
- otherwise the current plan is repaired to them (:func:`scheduler.repair.repair`: tens of
  milliseconds) if that leaves no job later than before; where the repair does not, the
  ``greedy`` policy plans the day (about 10 ms at 1,000 jobs) and its plan is used if no job
  has more work unfinished than before;
- where neither does (the caps leave too little room, or only the optimizer finds it), the one
  of the two that leaves less work unfinished answers at once as a *provisional* plan (its
  answer says so). Waiting for the optimizer instead would cost about a second per batch at
  1,000 jobs, and every change queued behind it would wait too. Only a new day, a re-plan of
  the running day (:meth:`Planner.new_day`, :meth:`Planner.replan`) and a cap on the look-ahead
  day (:mod:`.lookahead`, which nothing optimises in the background) wait for the
  ``optimizer`` (bounded by ``solver.time_limit_s``; an overrun is reported in the solver notes
  and the log), in a solver process (:mod:`.solvers`).

A plan that is not the optimum is optimised in the background (:mod:`.background`), also from
where the running day stands when a slot has begun since, so a cancel gives the room back within
a second.

**Answers.** Each submission is answered with the batch's plan version (which keeps its caps)
and with the cost of the batch against the plan before the batch: OPT_IN when no job is later
than in that plan, else OPT_OUT naming the jobs made late. The caps of a batch are planned
together, so one cap's own share of the cost is not known: when a batch holds several changes,
the reason says so and how many. SCHEDULED: every cap of the event starts after the day planned.

**Durability.** The batch's changes, each answer, the plan version and the audit entries are
committed in one SQLite transaction before any change of the batch is answered: an acknowledged
cap is in force after any crash, a crash during a batch loses only changes not yet answered, and
an identical resubmission replays the stored answer. New versions are published to
:meth:`Planner.wait_for_version` callers (WatchPlan streams).

**Ended events** are archived (:meth:`.capbook.CapBook.archive_ended`) at start-up, on a new day
and before each batch; they are still stored and listed (:meth:`Planner.events`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace

import numpy as np
import pandas as pd

from scheduler.choice import PlanChoice, choose_plan
from scheduler.config import Config
from scheduler.drivers.service.answers import (
    MAX_NAMED_LATE_JOBS,
    CapCost,
    SubmitAnswer,
    answer,
    answer_of,
    scoped,
    with_ahead,
)
from scheduler.drivers.service.auth import Coordinator
from scheduler.drivers.service.background import (
    OPTIMISED,
    POLISH_IDLE_S,
    POLISH_MAX_WAIT_S,
    POLISH_NICENESS,
    BackgroundOptimiser,
)
from scheduler.drivers.service.batching import Batcher, Change, batch_reason
from scheduler.drivers.service.capbook import (
    CapBook,
    ConflictError,
    check_modification,
    flat,
    visible_events,
)
from scheduler.drivers.service.events import CapEvent, event_caps
from scheduler.drivers.service.exporter import ServiceMetrics
from scheduler.drivers.service.flexibility import (
    Flexibility,
    ShedAnswer,
    check_levels,
    quote,
    shed_answer,
)
from scheduler.drivers.service.lookahead import LookAhead, overlaps
from scheduler.drivers.service.running_day import RunningDay
from scheduler.drivers.service.solvers import SolverProcess
from scheduler.drivers.service.store import (
    CANCELLED,
    Cancellation,
    Store,
    StoredEvent,
    Submission,
)
from scheduler.drivers.service.versions import (
    ForecastAt,
    PlanCause,
    PlanVersion,
    make_version,
)
from scheduler.horizon import Horizon
from scheduler.metrics import busy_gpus
from scheduler.policies import PlanResult, get_policy, greedy
from scheduler.problem import LoadCap, Problem
from scheduler.replan import RunState

__all__ = [
    "MAX_NAMED_LATE_JOBS",
    "POLISH_IDLE_S",
    "POLISH_MAX_WAIT_S",
    "CapCost",
    "ConflictError",
    "ForecastAt",
    "PlanCause",
    "PlanVersion",
    "Planner",
    "RunState",
    "SubmitAnswer",
    "UnknownEventError",
    "utc_now",
]

log = logging.getLogger(__name__)

_HOW = {  # a quick plan's reason, after its batch's (``{policy}``: the quick policy's name)
    PlanChoice.REPAIRED: "repaired to the caps",
    PlanChoice.GREEDY: "planned by {policy} to answer at once",
    PlanChoice.PROVISIONAL_GREEDY: "planned by {policy} to answer at once; provisional",
    PlanChoice.PROVISIONAL_REPAIRED: (
        "repaired to the caps, leaving what fits nowhere; provisional"
    ),
}


class UnknownEventError(Exception):
    """An event id that was never accepted (gRPC NOT_FOUND)."""


def utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _answers(
    batch: list[Change],
    batch_answer: SubmitAnswer,
    version: PlanVersion,
    ahead: tuple[Horizon, SubmitAnswer] | None,
) -> tuple[list[SubmitAnswer | tuple[bool, int]], list[Submission | Cancellation]]:
    """Each change's answer in a batch planned as ``version`` (answered ``batch_answer``,
    and ``ahead`` on the look-ahead day), and what the store keeps of it."""
    problem = version.problem
    results: list[SubmitAnswer | tuple[bool, int]] = []
    stored: list[Submission | Cancellation] = []
    for change in batch:
        who = change.coordinator
        if change.event is None:
            results.append((True, version.version))
            stored.append(Cancellation(change.event_id, change.modification_number, who.name,
                                       change.at, change.reason))  # fmt: skip
            continue
        mine = answer_of(change.caps, scoped(batch_answer, who, problem), problem, len(batch))
        if ahead is not None and any(overlaps(c, ahead[0]) for c in change.caps):
            mine = with_ahead(mine, ahead[1])
        results.append(mine)
        stored.append(Submission(change.event, change.caps, who.name, change.at, mine.to_dict()))
    return results, stored


def _resolved(result: object) -> Future:
    done: Future = Future()
    done.set_result(result)
    return done


class Planner:
    """Owns the current plan of the operating day ``day`` (a problem without caps) and wires
    the rooms that make it; see the module docstring. While a control loop runs the day,
    ``state`` says where it stands and every re-plan covers only the work left, from the next
    slot boundary. :meth:`close` stops the planner thread once the changes queued are answered.
    ``metrics`` times the solves, the plans published and the batches."""

    def __init__(
        self,
        config: Config,
        day: Problem,
        store: Store,
        clock: Callable[[], pd.Timestamp] = utc_now,
        forecast_at: ForecastAt | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.config = config
        self._metrics = metrics if metrics is not None else ServiceMetrics()
        self._store = store
        self.clock = clock
        self._policy = get_policy("optimizer", config.solver)
        self._quick = get_policy("greedy", config.solver)  # when no repair keeps every job
        self._lock = threading.RLock()  # one plan at a time; the loop's slot start holds it too
        self._published = threading.Condition()
        self._caps = CapBook(store)
        self._running = RunningDay(day, forecast_at)
        self._ahead = LookAhead(
            lambda problem, reason: self._plan(problem, 0, reason, PlanCause.LOOK_AHEAD),
            lambda previous, problem, reason: self._chosen(
                previous, problem, 0, reason, PlanCause.LOOK_AHEAD, late_ok=False
            ),
        )
        # from the end of start-up: the optimizer's plans callers wait for, and optimisation in
        # the background (at a lower CPU priority); their imports run while start-up plans
        self._solver: SolverProcess | None = None
        solver = SolverProcess("plans")
        polisher = SolverProcess("background", POLISH_NICENESS)
        try:
            self._current = self._startup()
            for process in (solver, polisher):
                process.ready.result()
            greedy.warm_up()  # compiled (or loaded from numba's cache) before the first cap
        except BaseException:
            solver.shutdown()
            polisher.shutdown()
            raise
        self._solver = solver
        self.background = BackgroundOptimiser(
            self._policy, polisher, self._lock, lambda: self._current,
            lambda: self._running.from_time, lambda: self._running.problem(self._caps.caps()),
            self._publish_background, lambda: self._batches.wake(),
        )  # fmt: skip
        self._batches = Batcher(self._apply, self.background)

    def _startup(self) -> PlanVersion:
        """Archive what ended, then plan the day and its baseline under the caps stored."""
        self._caps.archive_ended(self.clock(), self.day.horizon.start)
        self.baseline_mw = self._baseline(self.day)
        problem = self._running.problem(self._caps.caps())
        number = self._store.last_plan_version() + 1
        version = self._plan(problem, number, "startup", PlanCause.STARTUP)
        self._store.save_plan(version.record())
        log.info(
            "startup: %d cap(s) of %d event(s) in force; plan version %d (%s, %.2f s)",
            len(problem.caps),
            len(self._caps.by_event),
            version.version,
            version.result.status,
            version.plan_seconds,
        )
        return version

    def close(self) -> None:
        """Answer the changes queued, then stop the planner thread and the solver processes."""
        self._batches.close()
        for process in (self._solver, self.background.solver):
            if process is not None:
                process.shutdown()

    # --- the day ---------------------------------------------------------------------------
    @property
    def day(self) -> Problem:
        """The operating day planned (without caps)."""
        return self._running.day

    @property
    def horizon(self) -> Horizon:
        """The operating day planned."""
        return self.day.horizon

    @property
    def state(self) -> RunState | None:
        """Where the running day stands (``None``: no loop runs it); set by the loop."""
        return self._running.state

    @state.setter
    def state(self, state: RunState | None) -> None:
        self._running.state = state

    @property
    def sites(self) -> list[str]:
        return list(self.config.sites)

    def new_day(self, day: Problem) -> PlanVersion:
        """Plan the next operating day ``day`` with every cap in force, from its start."""
        with self._lock:
            same = day.horizon == self.day.horizon and day.jobs.equals(self.day.jobs)
            if same and self.state is None:  # the day planned at start-up
                return self._current
            self._running.start(day)
            self._caps.archive_ended(self.clock(), day.horizon.start)
            self.baseline_mw = self._baseline(day)
            return self._replan_locked(f"day {day.horizon.start.isoformat()}", PlanCause.DAY)

    def replan(self, reason: str, state: RunState) -> PlanVersion:
        """Plan the work left in ``state`` again (a fresher view, or on a timer)."""
        with self._lock:
            self.state = state
            return self._replan_locked(reason, PlanCause.REPLAN)

    def forecast_changed(self, reason: str) -> PlanVersion | None:
        """A fresher forecast than the one planned on (a new weather model run): while a day
        runs, plan the work left again on it (``None`` before the loop has started)."""
        with self._lock:
            self._running.forget_forecast()
            if self.state is None:
                return None
            return self._replan_locked(reason, PlanCause.FORECAST)

    def look_ahead(self, day: Problem | None) -> None:
        """The operating day after the one running (without caps; ``None``: none): a cap
        inside it is planned at once and answered with what it costs that day."""
        with self._lock:
            self._ahead.follow(day, self.day.horizon.end)

    @property
    def ahead(self) -> Horizon | None:
        """The look-ahead day's horizon, once known (``None``: caps after the day running are
        SCHEDULED)."""
        return self._ahead.horizon

    def _replan_locked(self, reason: str, cause: PlanCause) -> PlanVersion:
        problem = self._running.problem(self._caps.caps())
        version = self._plan(problem, self._current.version + 1, reason, cause)
        self.background.optimal()
        self._store.save_plan(version.record())
        self._publish(version)
        return version

    # --- the plan in force -----------------------------------------------------------------
    @property
    def current(self) -> PlanVersion:
        return self._current

    def slot_start(self) -> threading.RLock:
        """Held by the control loop from a slot boundary until the slot's plan and the state
        after it (:attr:`state`) are set, so a change arriving meanwhile is planned from the
        next boundary, not into the slot that has begun."""
        return self._lock

    def settled(self) -> PlanVersion:
        """The current plan once any change being planned now is published (the control loop
        asks at each slot boundary, so a cap accepted before a boundary binds from it)."""
        with self._lock:
            return self._current

    def wait_for_version(self, after: int, timeout_s: float) -> PlanVersion | None:
        """The current plan once its version is above ``after``; ``None`` after ``timeout_s``."""
        with self._published:
            self._published.wait_for(lambda: self._current.version > after, timeout=timeout_s)
            current = self._current
        return current if current.version > after else None

    def _publish(self, version: PlanVersion) -> None:
        if version is self._current:
            return
        self._metrics.plan_made(version.plan_seconds)
        with self._published:
            self._current = version
            self._published.notify_all()

    def _publish_background(
        self, problem: Problem, result: PlanResult, reason: str, choice: PlanChoice, seconds: float
    ) -> PlanVersion:
        """The background optimiser's plan as the next version, stored and published."""
        number = self._current.version + 1
        version = self._version(problem, number, reason, result, seconds, PlanCause.BACKGROUND,
                                choice)  # fmt: skip
        self._store.save_plan(version.record())
        self._publish(version)
        return version

    # --- changes ---------------------------------------------------------------------------
    def arriving(self) -> contextlib.AbstractContextManager[None]:
        """Announce a change on its way (see :meth:`.batching.Batcher.arriving`)."""
        return self._batches.arriving()

    def submit(self, event: CapEvent, coordinator: Coordinator) -> Future[SubmitAnswer]:
        """Check and queue one event; the future is answered once its batch is committed (see
        the module docstring); an identical resubmission is answered at once.

        Raises :class:`~scheduler.drivers.service.events.EventError` (bad input),
        :class:`~scheduler.drivers.service.auth.ScopeError` (site outside the caller's scope) or
        :class:`ConflictError` (stale or conflicting modification); nothing is stored then.
        """
        now = self.clock()
        caps = event_caps(event, self.config.sites, now)
        coordinator.require(event.targets, "cap")
        # the event's canonical JSON and hash (cached) are made on the caller's thread, not by
        # the planner thread that stores them
        event.content_sha256  # noqa: B018
        with self._batches.unqueued(event.event_id):
            stored = self._store.event(event.event_id)
            if stored is not None:
                replay = check_modification(stored, event, coordinator)
                if replay is not None:
                    return _resolved(replay)
            return self._batches.put(Change(event.event_id, coordinator, now, event, caps))

    def quote(self, event: CapEvent, coordinator: Coordinator) -> SubmitAnswer:
        """What submitting ``event`` now would answer on the day running (OPT_IN or OPT_OUT,
        and the cost), planned as a submission is but with nothing stored, committed or
        published: a dry run. The plan version is the current one; the look-ahead day is not
        quoted. Raises as :meth:`submit` does for bad input or scope."""
        now = self.clock()
        caps = event_caps(event, self.config.sites, now)
        coordinator.require(event.targets, "cap")
        change = Change(event.event_id, coordinator, now, event, caps)
        with self._lock:
            problem = self._running.problem(flat(self._caps.after([change])))
            previous = self._current
            reason = f"dry run {event.event_id}"
            version = self._chosen(previous, problem, previous.version + 1, reason,
                                   PlanCause.SUBMIT)  # fmt: skip
            today = answer(previous, version, problem)
        quoted = answer_of(caps, scoped(today, coordinator, problem), problem, 1)
        return replace(quoted, plan_version=previous.version)

    def cancel(
        self, event_id: str, coordinator: Coordinator, reason: str
    ) -> Future[tuple[bool, int]]:
        """Queue the cancellation of an event; the future gives ``(cancelled now, plan
        version)``. Already cancelled is a no-op, answered at once.

        Raises :class:`UnknownEventError` (also for an event the caller may not see, so that
        the answer does not tell which ids exist) or
        :class:`~scheduler.drivers.service.auth.ScopeError`.
        """
        with self._batches.unqueued(event_id):
            stored = self._store.event(event_id)
            if stored is None or not coordinator.may_see(stored.event.targets):
                raise UnknownEventError(f"event_id {event_id[:128]!r}: no such event")
            coordinator.require(stored.event.targets, "cancel caps on")
            if stored.status == CANCELLED:
                return _resolved((False, self._current.version))
            number = stored.event.modification_number
            change = Change(event_id, coordinator, self.clock(), reason=reason,
                            modification_number=number)  # fmt: skip
            return self._batches.put(change)

    def _apply(self, batch: list[Change]) -> list[SubmitAnswer | tuple[bool, int]]:
        """Plan ``batch`` once, commit it with its answers, publish the plan; the answers."""
        self._metrics.batch_planned(len(batch))
        with self._lock:
            self._caps.archive_ended(self.clock(), self.day.horizon.start)
            caps = self._caps.after(batch)
            problem = self._running.problem(flat(caps))
            previous = self._current
            reason = batch_reason(batch)
            submits = any(change.event is not None for change in batch)
            cause = PlanCause.SUBMIT if submits else PlanCause.CANCEL
            version = self._chosen(previous, problem, previous.version + 1, reason, cause)
            if version.choice.optimum_may_differ:
                self.background.unoptimal()
            ahead = self._ahead.answer(
                self._caps.caps(), flat(caps), [c for change in batch for c in change.caps],
                any(change.event is None for change in batch), reason,
            )  # fmt: skip
            results, stored = _answers(batch, answer(previous, version, problem), version, ahead)
            self._store.save_changes(stored, version.record() if version is not previous else None)
            self._caps.commit(caps)
            self._publish(version)
        for change, result in zip(batch, results, strict=True):
            what = (
                "cancelled"
                if change.event is None or not isinstance(result, SubmitAnswer)
                else f"modification {change.event.modification_number} accepted, "
                + ("OPT_IN" if result.opt_in else "OPT_OUT")
            )
            log.info(
                "%s: event %s %s, plan version %d (a batch of %d)",
                change.coordinator.name, change.event_id, what, version.version, len(batch),
            )  # fmt: skip
        return results

    # --- reads -----------------------------------------------------------------------------
    def events(
        self,
        coordinator: Coordinator,
        sites: Sequence[str] = (),
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        include_cancelled: bool = False,
    ) -> list[StoredEvent]:
        """Stored events that target a site the caller may read (and one of ``sites``, if
        given) with an interval overlapping ``[start, end)``."""
        return visible_events(self._store, coordinator, sites, start, end, include_cancelled)

    def flexibility(
        self,
        sites: Sequence[str],
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        levels_mw: Sequence[float] = (),
    ) -> Flexibility:
        """How far ``sites`` can shed or absorb per slot of ``[start, end)`` and what shedding
        costs (:mod:`.flexibility`), from the plan in force; each shed level is planned as a
        submission of its cap now would be. Only the plan in force and the problem of the work
        left are taken under the planner's lock; nothing is stored, committed or published.
        Raises :class:`~scheduler.drivers.service.events.EventError` for a bad window or
        level."""
        levels = check_levels(levels_mw)
        now = self.clock()
        with self._lock:
            previous = self._current
            problem = self._running.problem(self._caps.caps())

        def plan(caps: Sequence[LoadCap]) -> ShedAnswer:
            capped = problem.with_caps([*problem.caps, *caps])
            version = self._chosen(previous, capped, previous.version + 1, "flexibility quote",
                                   PlanCause.SUBMIT)  # fmt: skip
            return shed_answer(previous, version, capped)

        return quote(previous.problem, previous.arrays, previous.version, now, sites,
                     (start, end), levels, plan)  # fmt: skip

    # --- making plans ----------------------------------------------------------------------
    def _chosen(
        self,
        previous: PlanVersion,
        problem: Problem,
        number: int,
        reason: str,
        cause: PlanCause,
        late_ok: bool = True,
    ) -> PlanVersion:
        """The plan :func:`~scheduler.choice.choose_plan` chooses under ``problem``'s caps
        given ``previous`` (``previous`` itself when they change nothing), as version
        ``number``; the optimizer's when it leaves the choice to it (a new day or state, or
        jobs late without ``late_ok``)."""
        began = time.perf_counter()
        shape = (len(previous.problem.sites), previous.problem.horizon.n_slots)
        busy = previous.site_load["gpus_busy"].to_numpy().reshape(shape)
        choice = choose_plan(
            previous.problem, previous.result, previous.arrays, busy, problem, self._quick,
            self._policy.name, late_ok,
        )  # fmt: skip
        if choice.outcome is PlanChoice.UNCHANGED:
            return previous
        if choice.result is None:
            return self._plan(problem, number, reason, cause)
        how = _HOW.get(choice.outcome)
        if how is not None:
            reason = f"{reason}; {how.format(policy=choice.result.policy)}, {OPTIMISED}"
        seconds = time.perf_counter() - began
        return self._version(problem, number, reason, choice.result, seconds, cause,
                             choice.outcome)  # fmt: skip

    def _plan(self, problem: Problem, number: int, reason: str, cause: PlanCause) -> PlanVersion:
        began = time.perf_counter()
        result = self._solve(problem)
        seconds = time.perf_counter() - began
        return self._version(problem, number, reason, result, seconds, cause, PlanChoice.OPTIMIZER)

    def _solve(self, problem: Problem) -> PlanResult:
        """The optimizer's plan of ``problem``: in a solver process once serving (its solves
        hold the GIL for hundreds of ms, which would stall every call the server answers),
        here during start-up."""
        began = time.perf_counter()
        if self._solver is None:
            result = self._policy.plan(problem)
        else:
            result = self._solver.solve(self._policy, problem)
        self._metrics.solved(time.perf_counter() - began)
        return result

    def _version(
        self,
        problem: Problem,
        number: int,
        reason: str,
        result: PlanResult,
        seconds: float,
        cause: PlanCause,
        choice: PlanChoice,
    ) -> PlanVersion:
        return make_version(problem, number, reason, result, seconds, cause, choice,
                            self.clock(), self._running.from_time)  # fmt: skip

    def _baseline(self, day: Problem) -> np.ndarray:
        """BASELINE: the load ``[site, slot]`` the day's plan without any cap draws [MW]."""
        free = replace(day, caps=())
        plan = self._solve(free).plan
        gpus = busy_gpus(plan, free.site_names, free.horizon)
        return free.base_load_mw[:, None] + gpus * free.mw_per_gpu[:, None]
