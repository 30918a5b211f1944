"""The service's plan: one operating day, re-planned once for every batch of cap changes.

A submission or cancellation is checked when it arrives (input, scope, modification number
against the stored event) and queued; :meth:`Planner.submit` and :meth:`Planner.cancel` return a
future. One planner thread takes every change queued so far as one batch, plans once under the
caps in force after the whole batch, commits the batch and answers each change. Changes that
arrive while a batch is planned go into the next batch, so N caps arriving together cost about
two plans, not N. A change for an event that has a change queued or being planned waits for it,
so modification numbers apply in order. The caps in force become hard constraints of a
:class:`~scheduler.problem.Problem`, and (the choice is :func:`scheduler.choice.choose_plan`, a
pure function whose :class:`~scheduler.choice.PlanChoice` each version carries):

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
  1,000 jobs, and every change queued behind it would wait too. A repair whose min-cost flow
  already leaves a job later than before is finished (ramp fit, plan table and validator, half
  of its time) only when it may leave less work unfinished than greedy's plan. Only a new
  day, a re-plan of the running day (:meth:`Planner.new_day`, :meth:`Planner.replan`) and a
  cap on the look-ahead day (which nothing optimises in the background) wait for the
  ``optimizer`` (bounded by ``solver.time_limit_s``; an overrun is reported in the solver
  notes and the log).

**Optimising in the background.** A kept plan under loosened caps, a repaired one or a greedy
one is not the optimum (an answer's cost is against the plan it names, so a greedy plan's cost
overstates what the cap itself costs until the optimum follows, and a provisional plan may name
jobs late that the optimum keeps on time). Once no change has arrived for :data:`POLISH_IDLE_S`,
or the plan has waited :data:`POLISH_MAX_WAIT_S` for it while changes keep arriving, the
optimizer plans the same problem in a solver process of its own, at a lower CPU priority
(:data:`POLISH_NICENESS`: the answers come first), while the planner thread goes on answering.
Its plan is published as the next version if it is better than the current one; if caps
changed meanwhile, it is first repaired to them (and optimised again later). When the running
day has moved on since the current plan was made (the control loop began a slot), the work
left from where it stands is optimised instead and replaces the current plan, which would put
work into a slot that has begun; a slot beginning while that runs starts it again from there.
So a change that loosens the caps (a cancel) gives the room back within a second, also when it
comes between the loop's first plan of its day and its first slot.

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

**Ended events.** An event whose caps all end before both the current time and the start of the
planned day can bind no plan any more: it is archived (its caps move to the store's archive) and
leaves the caps held in memory, at start-up, on a new day and before each batch. It is still
stored and listed (:meth:`Planner.events`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np
import pandas as pd

from scheduler.choice import PlanChoice, choose_plan
from scheduler.config import Config
from scheduler.drivers.service.auth import Coordinator
from scheduler.drivers.service.events import CapEvent, event_caps
from scheduler.drivers.service.exporter import ServiceMetrics
from scheduler.drivers.service.store import (
    CANCELLED,
    Cancellation,
    PlanRecord,
    Store,
    StoredEvent,
    Submission,
)
from scheduler.horizon import Horizon
from scheduler.metrics import PlanMetrics, busy_gpus, score_plan
from scheduler.pipeline import remaining_problem
from scheduler.policies import PlanResult, get_policy, greedy
from scheduler.policies.base import PlanArrays
from scheduler.problem import LoadCap, Problem
from scheduler.repair import later_jobs, repair

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
    "SubmitAnswer",
    "UnknownEventError",
    "utc_now",
]

log = logging.getLogger(__name__)

MAX_NAMED_LATE_JOBS = 100
_GATHER_SHARE = 0.25  # of a batch's time, waited for more changes before the next batch [-]
_GATHER_MAX_S = 0.05  # the longest such wait [s]
_ARRIVING_MAX_S = 0.005  # the longest a batch waits for changes already arriving [s]
POLISH_IDLE_S = 0.3  # quiet time before a kept or repaired plan is optimised again [s]
POLISH_MAX_WAIT_S = 2.0  # the longest such a plan waits for it while changes keep arriving [s]
POLISH_NICENESS = 10  # the background optimisation yields the CPU to the plans callers wait for


class ConflictError(Exception):
    """A modification that conflicts with the stored one (gRPC FAILED_PRECONDITION)."""


class UnknownEventError(Exception):
    """An event id that was never accepted (gRPC NOT_FOUND)."""


def utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


@dataclass(frozen=True)
class CapCost:
    """What a change of caps cost the plan, against the previous version."""

    late_jobs: tuple[str, ...]  # jobs made late, at most MAX_NAMED_LATE_JOBS named
    late_jobs_total: int
    late_gpu_hours: float  # work newly left unfinished by its deadline [GPU-h]
    moved_mwh: float  # half the summed |site load change| over sites and slots [MWh]
    green_share_change: float  # new minus old [-]
    grid_mwh_change: float  # new minus old [MWh]


@dataclass(frozen=True)
class SubmitAnswer:
    """The reply to an accepted event: whether the plan honours it, and at what cost."""

    opt_in: bool
    reason: str
    cost: CapCost
    plan_version: int
    replayed: bool = False
    scheduled: bool = False  # every cap lies after the day planned: stored, not planned yet

    def to_dict(self) -> dict:
        """The answer as plain values (``asdict`` without its deep copies: a late-job list of
        :data:`MAX_NAMED_LATE_JOBS` names made it ~1 ms an answer)."""
        return {**vars(self), "cost": dict(vars(self.cost))}

    @classmethod
    def from_dict(cls, data: dict, replayed: bool) -> SubmitAnswer:
        cost = dict(data["cost"])
        cost["late_jobs"] = tuple(cost["late_jobs"])
        return cls(
            data["opt_in"], data["reason"], CapCost(**cost), data["plan_version"], replayed,
            data.get("scheduled", False),
        )  # fmt: skip


class PlanCause(StrEnum):
    """Why a plan version was made; the value is what a caller who may not read every site
    is told (the reason of a change names its events)."""

    STARTUP = "startup"
    DAY = "day"  # a new operating day
    REPLAN = "replan"  # the work left, planned again (the loop's timer, a late start)
    FORECAST = "forecast"  # a fresher forecast run
    SUBMIT = "submit"  # a batch of changes with a submission
    CANCEL = "cancel"  # a batch of cancellations only
    BACKGROUND = "background"  # optimised in the background
    LOOK_AHEAD = "look-ahead"  # the next operating day's plan (answers only, never in force)

    @property
    def names_events(self) -> bool:
        """Whether the version's reason names the events of a batch."""
        return self in (PlanCause.SUBMIT, PlanCause.CANCEL)


@dataclass(frozen=True)
class PlanVersion:
    """A plan the service made, with the caps it was made under and its scores."""

    version: int
    created_at: pd.Timestamp
    reason: str  # for people and logs; what to show a caller is read from ``cause``
    cause: PlanCause
    choice: PlanChoice  # how the plan was chosen (OPTIMIZER: the optimizer made it)
    problem: Problem
    result: PlanResult
    metrics: PlanMetrics
    site_load: pd.DataFrame  # scheduler.contracts.SITE_LOAD
    plan_seconds: float  # time to make (or check) this plan [s]
    arrays: PlanArrays  # the plan's rows as positions in the problem's jobs, sites and slots
    from_time: pd.Timestamp | None = None  # the running day's state it plans from (None: all)

    @property
    def replanned(self) -> bool:
        """``False``: the previous plan was kept because it already met the caps."""
        return self.choice.replanned

    @property
    def provisional(self) -> bool:
        """A quick plan leaving work unfinished; the optimum follows."""
        return self.choice.provisional

    @property
    def caps_in_force(self) -> int:
        return len(self.problem.caps)

    def record(self) -> PlanRecord:
        metrics = {
            **self.metrics.to_dict(),
            "solver_status": self.result.status,
            "plan_seconds": self.plan_seconds,
        }
        return PlanRecord(
            self.version,
            self.created_at,
            self.reason,
            self.replanned,
            self.caps_in_force,
            metrics,
            self.result.plan if self.replanned else None,
        )


ForecastAt = Callable[[Horizon, pd.Timestamp], pd.DataFrame]
"""``forecast_at(horizon, issued_at)``: the supply table of ``horizon`` as forecast at
``issued_at`` (an intraday vintage; earlier slots are actuals)."""


@dataclass(frozen=True)
class RunState:
    """Where a running day stands: work left per job [GPU-h] from ``from_time`` (a slot
    boundary) on, and each site's load in the slot before [MW] (``None``: unknown). A re-plan
    covers only that work, from that time, ramping from that load."""

    from_time: pd.Timestamp
    remaining_gpu_hours: dict[str, float]
    load_before_mw: dict[str, float] | None = None


@dataclass(frozen=True)
class _Polishing:
    """An optimisation running in the background: of ``problem``, the work left from
    ``from_time`` (``None``: the whole day) under the caps in force when it began."""

    problem: Problem
    from_time: pd.Timestamp | None
    future: Future
    began: float  # time.perf_counter() [s]


@dataclass
class _Change:
    """A submission (``event`` set) or a cancellation, queued for the planner thread."""

    event_id: str
    coordinator: Coordinator
    at: pd.Timestamp  # received [UTC]
    event: CapEvent | None = None
    caps: list[LoadCap] = field(default_factory=list)
    reason: str = ""  # a cancellation's reason
    modification_number: int = 0  # a cancellation: the event's current modification
    done: Future = field(default_factory=Future)


class Planner:
    """Owns the current plan of the operating day ``day`` (a problem without caps); see the
    module docstring. While a control loop runs the day, ``state`` says where it stands and
    every re-plan covers only the work left, from the next slot boundary. :meth:`close` stops
    the planner thread once the changes queued are answered. ``metrics`` times the solves,
    the plans published and the batches."""

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
        self._forecast_at = forecast_at
        self._vintage: tuple[Horizon, pd.Timestamp, pd.DataFrame] | None = None
        self._rest: tuple[Problem, RunState, Problem] | None = None  # the work left, no caps
        self._ahead: Problem | None = None  # the next operating day, while a loop runs
        self._ahead_version: PlanVersion | None = None  # its plan under the caps in force
        self._policy = get_policy("optimizer", config.solver)
        self._quick = get_policy("greedy", config.solver)  # when no repair keeps every job
        # from the end of start-up: the optimizer's plans callers wait for, and optimisation in
        # the background (at a lower CPU priority)
        self._solver: ProcessPoolExecutor | None = None
        self._polisher: ProcessPoolExecutor | None = None
        self._lock = threading.RLock()  # one plan at a time; the loop's slot start holds it too
        self._unpolished_since: float | None = None  # monotonic [s]: the plan is not optimal
        self._polishing: _Polishing | None = None  # planner thread only
        self._published = threading.Condition()
        self._caps: dict[str, list[LoadCap]] = {}  # the events in force, by id
        self._ends: dict[str, tuple[list[LoadCap], int]] = {}  # see _end_ns
        self.state: RunState | None = None
        for event_id, cap in store.caps():
            self._caps.setdefault(event_id, []).append(cap)
        self.day = day
        solver, polisher = _solver_process(), _solver_process(POLISH_NICENESS)
        try:
            # imports run in the solver processes while start-up plans
            ready: list[Future] = [solver.submit(int), polisher.submit(int)]
            self._current = self._startup()
            for future in ready:
                future.result()
            greedy.warm_up()  # compiled (or loaded from numba's cache) before the first cap
        except BaseException:
            solver.shutdown(cancel_futures=True)
            polisher.shutdown(cancel_futures=True)
            raise
        self._solver, self._polisher = solver, polisher
        self._queue_changed = threading.Condition()  # guards the four below
        self._waiting: list[_Change] = []  # for the next batch
        self._queued: set[str] = set()  # event ids with a change waiting or being planned
        self._arriving = 0  # changes announced (:meth:`arriving`) and not yet queued
        self._closing = False
        self._worker = threading.Thread(target=self._work, name="greensched-planner", daemon=True)
        self._worker.start()

    def _startup(self) -> PlanVersion:
        """Archive what ended, then plan the day and its baseline under the caps stored."""
        self._archive_ended()
        self.baseline_mw = self._baseline(self.day)
        problem = self._problem(_flat(self._caps))
        version = self._plan(
            problem, self._store.last_plan_version() + 1, "startup", PlanCause.STARTUP
        )
        self._store.save_plan(version.record())
        log.info(
            "startup: %d cap(s) of %d event(s) in force; plan version %d (%s, %.2f s)",
            len(problem.caps),
            len(self._caps),
            version.version,
            version.result.status,
            version.plan_seconds,
        )
        return version

    def close(self) -> None:
        """Answer the changes queued, then stop the planner thread."""
        with self._queue_changed:
            self._closing = True
            self._queue_changed.notify_all()
        self._worker.join()
        for process in (self._solver, self._polisher):
            if process is not None:
                process.shutdown(cancel_futures=True)

    @property
    def horizon(self) -> Horizon:
        """The operating day planned."""
        return self.day.horizon

    def new_day(self, day: Problem) -> PlanVersion:
        """Plan the next operating day ``day`` with every cap in force, from its start."""
        with self._lock:
            same = day.horizon == self.day.horizon and day.jobs.equals(self.day.jobs)
            if same and self.state is None:  # the day planned at start-up
                return self._current
            self.day, self.state = day, None
            self._archive_ended()
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
            self._vintage = None
            self._rest = None
            if self.state is None:
                return None
            return self._replan_locked(reason, PlanCause.FORECAST)

    def look_ahead(self, day: Problem | None) -> None:
        """The operating day after the one running (without caps; ``None``: none): a cap
        inside it is planned at once and answered with what it costs that day."""
        with self._lock:
            if day is not None and day.horizon.start != self.day.horizon.end:
                return  # late: the day it follows has already ended
            self._ahead, self._ahead_version = day, None

    @property
    def ahead(self) -> Horizon | None:
        """The look-ahead day's horizon, once known (``None``: caps after the day running are
        SCHEDULED)."""
        ahead = self._ahead
        return None if ahead is None else ahead.horizon

    def _plan_ahead(self, caps: Sequence[LoadCap], reason: str) -> PlanVersion:
        """The look-ahead day planned under ``caps`` (not a plan version: nothing runs it)."""
        assert self._ahead is not None
        return self._plan(self._ahead.with_caps(caps), 0, reason, PlanCause.LOOK_AHEAD)

    def _replan_locked(self, reason: str, cause: PlanCause) -> PlanVersion:
        problem = self._problem(_flat(self._caps))
        version = self._plan(problem, self._current.version + 1, reason, cause)
        self._unpolished_since = None
        self._store.save_plan(version.record())
        self._publish(version)
        return version

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

    @property
    def sites(self) -> list[str]:
        return list(self.config.sites)

    # --- changes ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Announce a change on its way (a server's call being checked, before :meth:`submit`
        or :meth:`cancel` queues it): a batch about to start waits for it, at most
        :data:`_ARRIVING_MAX_S`, so that changes sent together after a quiet spell are planned
        together rather than the first alone. A lone change waits for nothing."""
        with self._queue_changed:
            self._arriving += 1
        try:
            yield
        finally:
            with self._queue_changed:
                self._arriving -= 1
                self._queue_changed.notify_all()

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
        with self._queue_changed:
            stored = self._stored_unqueued(event.event_id)
            if stored is not None:
                replay = self._check_modification(stored, event, coordinator)
                if replay is not None:
                    return _resolved(replay)
            return self._queue(_Change(event.event_id, coordinator, now, event, caps))

    def cancel(
        self, event_id: str, coordinator: Coordinator, reason: str
    ) -> Future[tuple[bool, int]]:
        """Queue the cancellation of an event; the future gives ``(cancelled now, plan
        version)``. Already cancelled is a no-op, answered at once.

        Raises :class:`UnknownEventError` (also for an event the caller may not see, so that
        the answer does not tell which ids exist) or
        :class:`~scheduler.drivers.service.auth.ScopeError`.
        """
        with self._queue_changed:
            stored = self._stored_unqueued(event_id)
            if stored is None or not coordinator.may_see(stored.event.targets):
                raise UnknownEventError(f"event_id {event_id[:128]!r}: no such event")
            coordinator.require(stored.event.targets, "cancel caps on")
            if stored.status == CANCELLED:
                return _resolved((False, self._current.version))
            number = stored.event.modification_number
            change = _Change(event_id, coordinator, self.clock(), reason=reason,
                             modification_number=number)  # fmt: skip
            return self._queue(change)

    def _stored_unqueued(self, event_id: str) -> StoredEvent | None:
        """The stored event once no change of it is queued (hold ``_queue_changed``)."""
        self._queue_changed.wait_for(lambda: event_id not in self._queued)
        return self._store.event(event_id)

    def _queue(self, change: _Change) -> Future:
        self._queued.add(change.event_id)
        self._waiting.append(change)
        self._queue_changed.notify_all()
        return change.done

    def _work(self) -> None:
        """The planner thread: every change waiting becomes one batch. After answering a batch
        it waits a little (:data:`_GATHER_SHARE` of the batch's time, at most
        :data:`_GATHER_MAX_S`, or until as many more changes wait as it answered): the callers
        just answered may be sending their next change, which then joins the next batch instead
        of waiting for a whole plan after it."""
        while True:
            with self._queue_changed:
                waiting = self._unpolished_since is not None or self._polishing is not None
                self._queue_changed.wait_for(
                    lambda: self._waiting or self._closing or self._polished(),
                    timeout=POLISH_IDLE_S if waiting else None,
                )
                if not self._waiting and self._closing:
                    return
                if self._waiting:  # and more on their way: they join this batch
                    self._queue_changed.wait_for(
                        lambda: not self._arriving or self._closing, _ARRIVING_MAX_S
                    )
                taken, self._waiting = self._waiting, []
            if not taken or self._polished() or self._polish_overdue():
                self._polish()  # quiet, the background plan is ready, or changes never stop
            if not taken:
                continue
            began = time.perf_counter()
            batch = [c for c in taken if c.done.set_running_or_notify_cancel()]
            results: list[object]
            try:
                results = list(self._apply(batch)) if batch else []
            except Exception as error:  # answered to each caller (INTERNAL, logged there)
                results = [error] * len(batch)
            with self._queue_changed:
                self._queued.difference_update(c.event_id for c in taken)
                self._queue_changed.notify_all()
            for change, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    change.done.set_exception(result)
                else:
                    change.done.set_result(result)
            self._gather(
                len(taken), min(_GATHER_MAX_S, _GATHER_SHARE * (time.perf_counter() - began))
            )

    def _gather(self, changes: int, timeout_s: float) -> None:
        """Wait until ``changes`` more changes wait for the next batch than wait now (those
        arrived meanwhile come from other callers), at most ``timeout_s``."""
        with self._queue_changed:
            target = len(self._waiting) + changes
            self._queue_changed.wait_for(
                lambda: len(self._waiting) >= target or self._closing, timeout_s
            )

    def _polished(self) -> bool:
        return self._polishing is not None and self._polishing.future.done()

    def _polish_overdue(self) -> bool:
        since = self._unpolished_since
        return since is not None and time.monotonic() - since >= POLISH_MAX_WAIT_S

    def _unpolished(self) -> None:
        """Note that the current plan is not optimal (from now, unless it was already)."""
        if self._unpolished_since is None:
            self._unpolished_since = time.monotonic()

    def _polish(self) -> None:
        """Start optimising the current problem in the solver process, or publish what it
        found (see the module docstring). When the running day has moved on since the current
        plan was made (a slot began), the work left from where it stands now is optimised."""
        if self._polishing is None:
            with self._lock:
                if self._unpolished_since is None or self._polisher is None:
                    return
                problem = (
                    self._current.problem
                    if self._current_from_now()
                    else self._problem(_flat(self._caps))
                )
                from_time = self._from_time()
            future = self._polisher.submit(self._policy.plan, problem)
            future.add_done_callback(lambda _: self._wake())
            self._polishing = _Polishing(problem, from_time, future, time.perf_counter())
            return
        polishing = self._polishing
        if not polishing.future.done():
            return
        self._polishing = None
        try:
            result = polishing.future.result()
        except BrokenProcessPool:
            log.error("the solver process died optimising in the background; starting another")
            self._polisher = _solver_process(POLISH_NICENESS)
            return
        problem = polishing.problem
        with self._lock:
            current = self._current
            if self._from_time() != polishing.from_time:
                return  # a slot began meanwhile: optimised again from where the day stands
            # the plan in force starts at an earlier boundary and nothing changed since: this
            # plan of the work left replaces it whatever their costs (they cover other slots)
            older = current.from_time != polishing.from_time
            how = _OPTIMISED
            if not older and current.problem is not problem:  # caps changed meanwhile
                now = current.problem
                if now.horizon != problem.horizon or now.jobs is not problem.jobs:
                    return  # a new day or state, planned by the optimizer
                fitted = repair(now, result, self._policy.name)
                if fitted is None:
                    return
                how = f"{how}, then repaired to the caps changed since"
                result, problem = fitted, now
                self._unpolished_since = time.monotonic()  # the next one waits its turn again
            else:
                self._unpolished_since = None
            if not older and result.objective_kg >= current.result.objective_kg * (1 - 1e-9):
                return
            made = PlanChoice.REPAIRED if how != _OPTIMISED else PlanChoice.OPTIMIZER
            seconds = time.perf_counter() - polishing.began
            version = self._version(
                problem, current.version + 1, how, result, seconds, PlanCause.BACKGROUND, made
            )
            self._store.save_plan(version.record())
            self._publish(version)
        if older:
            log.info("plan version %d: %s, the work left from %s", version.version, how,
                     polishing.from_time)  # fmt: skip
        else:
            log.info("plan version %d: %s, %.1f kg CO2 less", version.version, how,
                     current.result.objective_kg - result.objective_kg)  # fmt: skip

    def _from_time(self) -> pd.Timestamp | None:
        """Where the running day stands (``None``: no loop runs it; the whole day)."""
        state = self.state
        return None if state is None else state.from_time

    def _current_from_now(self) -> bool:
        """Whether the current plan starts where the running day stands (hold ``_lock``): a
        plan from an earlier boundary would put work into a slot that has begun, which never
        runs it."""
        return self._current.from_time == self._from_time()

    def _wake(self) -> None:
        with self._queue_changed:
            self._queue_changed.notify_all()

    def _apply(self, batch: list[_Change]) -> list[SubmitAnswer | tuple[bool, int]]:
        """Plan ``batch`` once, commit it with its answers, publish the plan; the answers."""
        self._metrics.batch_planned(len(batch))
        with self._lock:
            self._archive_ended()
            caps = dict(self._caps)
            for change in batch:
                if change.event is None:
                    caps.pop(change.event_id, None)
                else:
                    caps[change.event_id] = change.caps
            problem = self._problem(_flat(caps))
            previous = self._current
            reason = _batch_reason(batch)
            submits = any(change.event is not None for change in batch)
            version = self._next(problem, reason, PlanCause.SUBMIT if submits else PlanCause.CANCEL)
            answer = _answer(previous, version, problem)
            ahead = self._ahead_answer(caps, batch, reason)
            results: list[SubmitAnswer | tuple[bool, int]] = []
            stored: list[Submission | Cancellation] = []
            for change in batch:
                if change.event is None:
                    results.append((True, version.version))
                    stored.append(
                        Cancellation(change.event_id, change.modification_number,
                                     change.coordinator.name, change.at, change.reason)
                    )  # fmt: skip
                else:
                    scoped = _scoped(answer, change.coordinator, problem)
                    mine = _answer_of(change.caps, scoped, problem, len(batch))
                    if ahead is not None and any(_overlaps(c, ahead[0]) for c in change.caps):
                        mine = _with_ahead(mine, ahead[1])
                    results.append(mine)
                    stored.append(
                        Submission(change.event, change.caps, change.coordinator.name,
                                   change.at, mine.to_dict())
                    )  # fmt: skip
            record = version.record() if version is not previous else None
            self._store.save_changes(stored, record)
            self._caps = caps
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

    def _ahead_answer(
        self, caps: dict[str, list[LoadCap]], batch: list[_Change], reason: str
    ) -> tuple[Horizon, SubmitAnswer] | None:
        """The look-ahead day and the batch's cost there, when a submission reaches into it."""
        ahead = self._ahead
        reaching = ahead is not None and any(
            _overlaps(c, ahead.horizon) for change in batch for c in change.caps
        )
        if ahead is None or not reaching:
            if any(change.event is None for change in batch):
                self._ahead_version = None  # planned again on the next cap for that day
            return None
        before = self._ahead_version or self._plan_ahead(_flat(self._caps), "look-ahead")
        problem = ahead.with_caps(_flat(caps))
        after = self._chosen(before, problem, 0, f"look-ahead, {reason}", PlanCause.LOOK_AHEAD,
                             late_ok=False)  # fmt: skip
        self._ahead_version = after
        return after.problem.horizon, _answer(before, after, after.problem)

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
        out = []
        for stored in self._store.events(include_cancelled):
            targets = stored.event.targets
            if not coordinator.may_see(targets):
                continue
            if sites and not set(sites) & set(targets):
                continue
            if any(
                (start is None or i.end > start) and (end is None or i.start < end)
                for i in stored.event.intervals
            ):
                out.append(stored)
        return out

    def wait_for_version(self, after: int, timeout_s: float) -> PlanVersion | None:
        """The current plan once its version is above ``after``; ``None`` after ``timeout_s``."""
        with self._published:
            self._published.wait_for(lambda: self._current.version > after, timeout=timeout_s)
            current = self._current
        return current if current.version > after else None

    # --- internals -------------------------------------------------------------------------
    def _check_modification(
        self, stored: StoredEvent, event: CapEvent, coordinator: Coordinator
    ) -> SubmitAnswer | None:
        """The stored answer for an identical resubmission; ``None`` for a newer modification.
        An event the caller may not see is a conflict that says nothing of it."""
        have, got = stored.event.modification_number, event.modification_number
        name = f"event {event.event_id!r}"
        if not coordinator.may_see(stored.event.targets):
            raise ConflictError(f"{name}: this event_id is taken; choose another")
        if stored.status == CANCELLED and got <= have:
            raise ConflictError(
                f"{name} was cancelled at modification_number {have}; "
                f"submit modification_number > {have} to activate it again"
            )
        if got == have:
            if stored.event.content_sha256 == event.content_sha256:
                return SubmitAnswer.from_dict(stored.answer, replayed=True)
            raise ConflictError(
                f"{name} modification_number {have} is stored with different content; "
                f"send modification_number {have + 1} to change it"
            )
        if got < have:
            raise ConflictError(
                f"{name} is at modification_number {have}; {got} is older and was not applied"
            )
        coordinator.require(stored.event.targets, "modify caps on")
        return None

    def _baseline(self, day: Problem) -> np.ndarray:
        """BASELINE: the load ``[site, slot]`` the day's plan without any cap draws [MW]."""
        free = replace(day, caps=())
        plan = self._solve(free).plan
        gpus = busy_gpus(plan, free.site_names, free.horizon)
        return free.base_load_mw[:, None] + gpus * free.mw_per_gpu[:, None]

    def _archive_ended(self) -> None:
        """Archive the events whose caps all end before now and before the planned day."""
        now = self.clock()
        before = min(now, self.day.horizon.start)
        ended = [e for e, caps in self._caps.items() if self._end_ns(e, caps) <= before.value]
        if ended:
            self._store.archive(ended, now)
            for event_id in ended:
                del self._caps[event_id]
                self._ends.pop(event_id, None)
            log.info("archived %d event(s) that ended before %s", len(ended), before)

    def _end_ns(self, event_id: str, caps: list[LoadCap]) -> int:
        """When the last of an event's ``caps`` ends [ns since the epoch], kept while its list of
        caps is the same (checked before every batch, over every event in force)."""
        kept = self._ends.get(event_id)
        if kept is None or kept[0] is not caps:
            kept = (caps, max(cap.end.value for cap in caps))
            self._ends[event_id] = kept
        return kept[1]

    def _problem(self, caps: Sequence[LoadCap]) -> Problem:
        """The day with ``caps``; while the day runs, only the work left from ``state``."""
        state = self.state
        if state is None:
            return self.day.with_caps(caps)
        if self._rest is None or self._rest[0] is not self.day or self._rest[1] is not state:
            day = self.day
            if self._forecast_at is not None:
                day = replace(day, supply=self._vintage_at(day.horizon, state.from_time))
            rest = remaining_problem(
                day,
                state.from_time,
                state.remaining_gpu_hours,
                {s.name: s.gpus for s in day.sites},
                state.load_before_mw,
            )
            rest = rest if rest is not None else replace(day, jobs=day.jobs.iloc[:0])
            self._rest = (self.day, state, rest)  # the same jobs for every batch until then
        return self._rest[2].with_caps(caps)

    def _vintage_at(self, horizon: Horizon, issued_at: pd.Timestamp) -> pd.DataFrame:
        """The day's forecast as issued at ``issued_at`` (kept for the next change at the same
        moment)."""
        if self._vintage is None or self._vintage[:2] != (horizon, issued_at):
            assert self._forecast_at is not None
            self._vintage = (horizon, issued_at, self._forecast_at(horizon, issued_at))
        return self._vintage[2]

    def _next(self, problem: Problem, reason: str, cause: PlanCause) -> PlanVersion:
        """The plan under ``problem``'s caps: the current version when they change nothing."""
        version = self._chosen(self._current, problem, self._current.version + 1, reason, cause)
        if version.choice.optimum_may_differ:
            self._unpolished()
        return version

    def _chosen(
        self,
        previous: PlanVersion,
        problem: Problem,
        version: int,
        reason: str,
        cause: PlanCause,
        late_ok: bool = True,
    ) -> PlanVersion:
        """The plan :func:`~scheduler.choice.choose_plan` chooses under ``problem``'s caps
        given ``previous`` (``previous`` itself when they change nothing), as version
        ``version``; the optimizer's when it leaves the choice to it (a new day or state, or
        jobs late without ``late_ok``: nothing optimises the look-ahead day in the
        background)."""
        began = time.perf_counter()
        shape = problem.capacity_gpus.shape  # previous covers the same sites and slots
        busy = previous.site_load["gpus_busy"].to_numpy().reshape(shape)
        choice = choose_plan(
            previous.problem, previous.result, previous.arrays, busy, problem, self._quick,
            self._policy.name, late_ok,
        )  # fmt: skip
        if choice.outcome is PlanChoice.UNCHANGED:
            return previous
        if choice.result is None:
            return self._plan(problem, version, reason, cause)
        how = _HOW.get(choice.outcome)
        if how is not None:
            how = how.format(policy=choice.result.policy)
            reason = f"{reason}; {how}, optimised in the background"
        seconds = time.perf_counter() - began
        return self._version(problem, version, reason, choice.result, seconds, cause,
                             choice.outcome)  # fmt: skip

    def _plan(self, problem: Problem, version: int, reason: str, cause: PlanCause) -> PlanVersion:
        began = time.perf_counter()
        result = self._solve(problem)
        seconds = time.perf_counter() - began
        return self._version(problem, version, reason, result, seconds, cause, PlanChoice.OPTIMIZER)

    def _solve(self, problem: Problem) -> PlanResult:
        """The optimizer's plan of ``problem``: in a solver process once serving (its solves
        hold the GIL for hundreds of ms, which would stall every call the server answers),
        here during start-up."""
        began = time.perf_counter()
        if self._solver is None:
            result = self._policy.plan(problem)
        else:
            try:
                result = self._solver.submit(self._policy.plan, problem).result()
            except BrokenProcessPool:
                log.error("the solver process died; starting another")
                self._solver = _solver_process()
                result = self._solver.submit(self._policy.plan, problem).result()
        self._metrics.solved(time.perf_counter() - began)
        return result

    def _version(
        self,
        problem: Problem,
        version: int,
        reason: str,
        result: PlanResult,
        seconds: float,
        cause: PlanCause,
        choice: PlanChoice,
    ) -> PlanVersion:
        plan = result.plan
        score = score_plan(problem, plan, result.positions)  # of the same jobs, sites and slots
        return PlanVersion(
            version=version,
            created_at=self.clock(),
            reason=reason,
            cause=cause,
            choice=choice,
            problem=problem,
            result=result,
            metrics=score.metrics,
            site_load=score.site_load,
            plan_seconds=seconds,
            arrays=PlanArrays(score.job, score.site, score.slot, plan["gpus"].to_numpy()),
            from_time=self._from_time(),
        )

    def _publish(self, version: PlanVersion) -> None:
        if version is self._current:
            return
        self._metrics.plan_made(version.plan_seconds)
        with self._published:
            self._current = version
            self._published.notify_all()


def _solver_process(niceness: int = 0) -> ProcessPoolExecutor:
    """One solver process, forked from a server process that has imported this module once
    (a fresh interpreter, so no thread of this process is copied), ``niceness`` steps below
    the server's CPU priority; it exits with this process, even one killed with SIGKILL."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return ProcessPoolExecutor(
        1, mp_context=context, initializer=_start_solver, initargs=(os.getpid(), niceness)
    )


_WATCH_EVERY_S = 1.0  # how often a solver process looks whether its server is alive


def _start_solver(server_pid: int, niceness: int) -> None:
    """In a solver process: lower its CPU priority by ``niceness``, and exit once the server
    process ``server_pid`` is gone (its worker pipes stay open in this process, so it would
    never see them close)."""
    if niceness:
        os.nice(niceness)

    def watch() -> None:
        while True:
            time.sleep(_WATCH_EVERY_S)
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, name="greensched-server-watch", daemon=True).start()


def _flat(caps: dict[str, list[LoadCap]]) -> list[LoadCap]:
    return [cap for event_caps in caps.values() for cap in event_caps]


def _resolved(result: object) -> Future:
    done: Future = Future()
    done.set_result(result)
    return done


_OPTIMISED = "optimised in the background"
_HOW = {  # a quick plan's reason, after its batch's (``{policy}``: the quick policy's name)
    PlanChoice.REPAIRED: "repaired to the caps",
    PlanChoice.GREEDY: "planned by {policy} to answer at once",
    PlanChoice.PROVISIONAL_GREEDY: "planned by {policy} to answer at once; provisional",
    PlanChoice.PROVISIONAL_REPAIRED: (
        "repaired to the caps, leaving what fits nowhere; provisional"
    ),
}
_NAMED_IN_REASON = 10  # event ids a batch's reason names


def _batch_reason(batch: Sequence[_Change]) -> str:
    """``"submit a, b; cancel c"`` (the first word says what kind, for readers who may not see
    the ids), naming at most a few ids."""
    parts = []
    for kind, ids in (
        ("submit", [c.event_id for c in batch if c.event is not None]),
        ("cancel", [c.event_id for c in batch if c.event is None]),
    ):
        if ids:
            more = len(ids) - _NAMED_IN_REASON
            parts.append(f"{kind} {', '.join(ids[:_NAMED_IN_REASON])}"
                         + (f" and {more} more" if more > 0 else ""))  # fmt: skip
    return "; ".join(parts)


def _overlaps(cap: LoadCap, horizon: Horizon) -> bool:
    return cap.start < horizon.end and cap.end > horizon.start


def _with_ahead(today: SubmitAnswer, ahead: SubmitAnswer) -> SubmitAnswer:
    """One answer for an event whose caps reach into the look-ahead day: OPT_IN when both days
    keep every job on time; the costs add up; the plan version is today's."""
    if today.scheduled:  # nothing of it falls in the day running
        return replace(ahead, plan_version=today.plan_version, reason=f"next day: {ahead.reason}")
    cost = CapCost(
        late_jobs=(today.cost.late_jobs + ahead.cost.late_jobs)[:MAX_NAMED_LATE_JOBS],
        late_jobs_total=today.cost.late_jobs_total + ahead.cost.late_jobs_total,
        late_gpu_hours=today.cost.late_gpu_hours + ahead.cost.late_gpu_hours,
        moved_mwh=today.cost.moved_mwh + ahead.cost.moved_mwh,
        green_share_change=today.cost.green_share_change,
        grid_mwh_change=today.cost.grid_mwh_change + ahead.cost.grid_mwh_change,
    )
    return replace(
        today,
        opt_in=today.opt_in and ahead.opt_in,
        reason=f"today: {today.reason}; next day: {ahead.reason}",
        cost=cost,
    )


_NO_COST = CapCost((), 0, 0.0, 0.0, 0.0, 0.0)


def _answer_of(
    caps: Iterable[LoadCap], batch: SubmitAnswer, problem: Problem, changes: int
) -> SubmitAnswer:
    """One event's answer in a batch of ``changes``: SCHEDULED when every one of its ``caps``
    starts after the day planned, else the ``batch`` answer."""
    if all(cap.start >= problem.horizon.end for cap in caps):
        return SubmitAnswer(
            True,
            f"stored; it starts after the operating day now planned (to "
            f"{problem.horizon.end.isoformat()}) and is planned when its day starts",
            _NO_COST,
            batch.plan_version,
            scheduled=True,
        )
    if changes == 1:
        return batch
    together = f"planned in one batch with {changes - 1} other change(s); the cost is the batch's"
    return replace(batch, reason=f"{batch.reason} ({together})")


def _scoped(answer: SubmitAnswer, coordinator: Coordinator, problem: Problem) -> SubmitAnswer:
    """``answer`` naming only the late jobs ``coordinator`` may read (a job is readable when
    one of its allowed sites is); the others are counted, not named."""
    late = answer.cost.late_jobs
    if coordinator.read_all or coordinator.sites is None or not late:
        return answer
    readable = np.array([coordinator.may_read(site) for site in problem.site_names])
    row = pd.Index(problem.job_ids).get_indexer(list(late))
    visible = (problem.site_mask[row] & readable).any(axis=1)
    if visible.all():
        return answer
    named = tuple(job for job, shown in zip(late, visible, strict=True) if shown)
    hidden = answer.cost.late_jobs_total - len(named)
    reason = (
        f"{answer.reason.rsplit(': ', 1)[0]}: "
        f"{', '.join(named[:10]) + (' ...' if len(named) > 10 else '') or 'none named'} "
        f"({hidden} late job(s) at sites outside your scope are not named)"
    )
    return replace(answer, reason=reason, cost=replace(answer.cost, late_jobs=named))


def _load_change_mw(previous: PlanVersion, new: PlanVersion) -> np.ndarray:
    """New minus previous load over the site-slots both plans cover [MW]."""
    old_problem, new_problem = previous.problem, new.problem
    if (old_problem.horizon, old_problem.site_names) == (
        new_problem.horizon,
        new_problem.site_names,
    ):
        return new.site_load["load_mw"].to_numpy() - previous.site_load["load_mw"].to_numpy()
    both = new.site_load.merge(previous.site_load, on=["time", "site"], suffixes=("", "_before"))
    return both["load_mw"].to_numpy() - both["load_mw_before"].to_numpy()


def _answer(previous: PlanVersion, new: PlanVersion, problem: Problem) -> SubmitAnswer:
    """OPT_IN when no job is later in ``new`` than in ``previous``, else OPT_OUT naming the
    jobs made late."""
    if new is previous:
        return SubmitAnswer(
            True,
            "the caps in force already imply this cap in the planned day "
            f"{problem.horizon.start.isoformat()} to {problem.horizon.end.isoformat()} "
            "(or it lies outside it); the plan is unchanged",
            _NO_COST,
            new.version,
        )
    late = later_jobs(new.result, previous.result).sort_values(ascending=False)
    load_change = np.abs(_load_change_mw(previous, new))
    cost = CapCost(
        late_jobs=tuple(late.index[:MAX_NAMED_LATE_JOBS]),
        late_jobs_total=len(late),
        late_gpu_hours=float(late.sum()),
        moved_mwh=float(load_change.sum() * problem.horizon.slot_hours / 2),
        green_share_change=new.metrics.green_share - previous.metrics.green_share,
        grid_mwh_change=new.metrics.grid_mwh - previous.metrics.grid_mwh,
    )
    if late.empty:
        how = "re-planned" if new.replanned else "the current plan already keeps it"
        return SubmitAnswer(True, f"honoured with every job on time ({how})", cost, new.version)
    named = ", ".join(cost.late_jobs[:10]) + (" ..." if len(late) > 10 else "")
    which = (
        "the quick plan that answers at once (the optimizer plans the same caps in the "
        "background and publishes a later version if it keeps more jobs on time) leaves"
        if new.provisional
        else "the plan cannot keep it with every job on time:"
    )
    return SubmitAnswer(
        False,
        f"accepted and enforced, but {which} {len(late)} job(s) late by their deadline "
        f"({cost.late_gpu_hours:,.1f} GPU-h unfinished): {named}",
        cost,
        new.version,
    )
