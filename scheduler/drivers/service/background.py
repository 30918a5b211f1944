"""Optimising in the background: the optimum follows a plan chosen to answer at once.

A kept plan under loosened caps, a repaired one or a greedy one is not the optimum (an answer's
cost is against the plan it names, so a greedy plan's cost overstates what the cap itself costs
until the optimum follows, and a provisional plan may name jobs late that the optimum keeps on
time). Once no change has arrived for :data:`POLISH_IDLE_S`, or the plan has waited
:data:`POLISH_MAX_WAIT_S` for it while changes keep arriving, the optimizer plans the same
problem in a solver process of its own, at a lower CPU priority (:data:`POLISH_NICENESS`: the
answers come first), while the planner thread goes on answering. Its plan is published as the
next version if it is better than the current one; if caps changed meanwhile, it is first
repaired to them (and optimised again later).

When the running day has moved on since the current plan was made (the control loop began a
slot), the work left from where it stands is optimised instead and replaces the current plan,
which would put work into a slot that has begun; a slot beginning while that runs starts it
again from there. So a change that loosens the caps (a cancel) gives the room back within a
second, also when it comes between the loop's first plan of its day and its first slot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import pandas as pd

from scheduler.choice import PlanChoice
from scheduler.drivers.service.solvers import SolverProcess
from scheduler.drivers.service.versions import PlanVersion
from scheduler.policies import PlanResult
from scheduler.policies.base import Policy
from scheduler.problem import Problem
from scheduler.repair import repair

__all__ = [
    "OPTIMISED",
    "POLISH_IDLE_S",
    "POLISH_MAX_WAIT_S",
    "POLISH_NICENESS",
    "BackgroundOptimiser",
    "Publish",
]

log = logging.getLogger(__name__)

POLISH_IDLE_S = 0.3  # quiet time before a kept or repaired plan is optimised again [s]
POLISH_MAX_WAIT_S = 2.0  # the longest such a plan waits for it while changes keep arriving [s]
POLISH_NICENESS = 10  # the background optimisation yields the CPU to the plans callers wait for
OPTIMISED = "optimised in the background"  # the reason of the versions it publishes

Publish = Callable[[Problem, PlanResult, str, PlanChoice, float], PlanVersion]
"""``publish(problem, result, reason, choice, seconds)``: the next plan version, stored and
published (called holding the planner's lock)."""


@dataclass(frozen=True)
class _Running:
    """An optimisation running in the background: of ``problem``, the work left from
    ``from_time`` (``None``: the whole day) under the caps in force when it began."""

    problem: Problem
    from_time: pd.Timestamp | None
    future: Future
    began: float  # time.perf_counter() [s]


class BackgroundOptimiser:
    """Optimises the plan in force when it is not optimal (see the module docstring); driven
    by the planner thread (:meth:`step`), told by the planner what is not optimal
    (:meth:`unoptimal`) and what is (:meth:`optimal`).

    ``lock`` is the planner's (one plan at a time); ``current`` gives the plan in force,
    ``from_time`` where the running day stands, ``problem_now`` the problem of the work left
    from there under the caps in force (both called holding ``lock``); ``wake`` wakes the
    planner thread when a solve ends."""

    def __init__(
        self,
        policy: Policy,
        solver: SolverProcess,
        lock: threading.RLock,
        current: Callable[[], PlanVersion],
        from_time: Callable[[], pd.Timestamp | None],
        problem_now: Callable[[], Problem],
        publish: Publish,
        wake: Callable[[], None],
    ) -> None:
        self.policy = policy
        self.solver = solver
        self._lock = lock
        self._current = current
        self._from_time = from_time
        self._problem_now = problem_now
        self._publish = publish
        self._wake = wake
        self.since: float | None = None  # monotonic [s]: since when the plan is not optimal
        self.running: _Running | None = None  # planner thread only

    def unoptimal(self) -> None:
        """Note that the plan in force is not optimal (from now, unless it was already)."""
        if self.since is None:
            self.since = time.monotonic()

    def optimal(self) -> None:
        """Note that the plan in force is the optimizer's."""
        self.since = None

    @property
    def pending(self) -> bool:
        """Whether a plan waits to be optimised or an optimisation runs."""
        return self.since is not None or self.running is not None

    def ready(self) -> bool:
        """Whether an optimisation has ended (:meth:`step` publishes it)."""
        return self.running is not None and self.running.future.done()

    def overdue(self) -> bool:
        """Whether the plan has waited :data:`POLISH_MAX_WAIT_S` for its optimisation."""
        since = self.since
        return since is not None and time.monotonic() - since >= POLISH_MAX_WAIT_S

    def step(self) -> None:
        """Start optimising the plan in force (or the work left from where the day stands),
        or publish what the optimisation found."""
        if self.running is None:
            self._start()
        elif self.running.future.done():
            running, self.running = self.running, None
            try:
                result = running.future.result()
            except BrokenProcessPool:
                self.solver.replace()
                return
            self._finish(running, result)

    def _start(self) -> None:
        with self._lock:
            if self.since is None:
                return
            current, from_time = self._current(), self._from_time()
            # the plan's own problem, unless it starts at an earlier boundary than the day now
            problem = current.problem if current.from_time == from_time else self._problem_now()
        future = self.solver.submit(self.policy, problem)
        future.add_done_callback(lambda _: self._wake())
        self.running = _Running(problem, from_time, future, time.perf_counter())

    def _finish(self, running: _Running, result: PlanResult) -> None:
        problem = running.problem
        with self._lock:
            current = self._current()
            if self._from_time() != running.from_time:
                return  # a slot began meanwhile: optimised again from where the day stands
            # the plan in force starts at an earlier boundary and nothing changed since: this
            # plan of the work left replaces it whatever their costs (they cover other slots)
            older = current.from_time != running.from_time
            how, choice = OPTIMISED, PlanChoice.OPTIMIZER
            if not older and current.problem is not problem:  # caps changed meanwhile
                now = current.problem
                if now.horizon != problem.horizon or now.jobs is not problem.jobs:
                    return  # a new day or state, planned by the optimizer
                fitted = repair(now, result, self.policy.name)
                if fitted is None:
                    return
                how = f"{how}, then repaired to the caps changed since"
                result, problem, choice = fitted, now, PlanChoice.REPAIRED
                self.since = time.monotonic()  # the next one waits its turn again
            else:
                self.since = None
            if not older and result.objective_kg >= current.result.objective_kg * (1 - 1e-9):
                return
            version = self._publish(
                problem, result, how, choice, time.perf_counter() - running.began
            )
        if older:
            log.info("plan version %d: %s, the work left from %s", version.version, how,
                     running.from_time)  # fmt: skip
        else:
            log.info("plan version %d: %s, %.1f kg CO2 less", version.version, how,
                     current.result.objective_kg - result.objective_kg)  # fmt: skip
