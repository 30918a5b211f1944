"""The day runner: a day's plan walked slot by slot, re-planned at boundaries.

One walk for every driver that re-plans a running day: replay's ``--replan-every`` (an
instant clock, no runner, the forecast vintage issued at each boundary) and the live control
loop (a clock, Ray, its planner's versions). At each slot boundary :meth:`DayRunner.decide`
takes a newer plan from its :class:`PlanSource` when there is one (the live planner answered a
cap), else, at least ``every`` after the last plan and while work is left, asks it to plan the
rest again (:func:`~scheduler.replan.rest_of_day` from where the day stands); the settlement
engine then runs the slot. A re-plan covers the work left (backlog included) from the boundary
on, ramping from the load running then; the slots before stay as they ran. The re-plan after
a lost site is the engine's own (``Settlement(replan=...)``, the same rest of the day).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from scheduler.contracts.plandir import RunReport
from scheduler.policies import PlanResult, Policy
from scheduler.problem import LoadCap, Problem
from scheduler.replan import RunState, rest_of_day
from scheduler.settlement import Settlement

__all__ = ["DayRunner", "NewPlan", "PlanSource", "RecedingRun", "SupplyAt", "settle_receding"]

SupplyAt = Callable[[pd.Timestamp], pd.DataFrame]
"""``supply_at(issued_at)``: the supply table of the problem's horizon as forecast at
``issued_at`` (an intraday vintage; slots before it are actuals)."""


@dataclass(frozen=True)
class NewPlan:
    """A plan for the rest of the day from a boundary on; ``caps`` the caps in force with it
    (``None``: unchanged)."""

    plan: pd.DataFrame | PlanResult
    caps: tuple[LoadCap, ...] | None = None


class PlanSource(Protocol):
    """Where a running day's new plans come from."""

    def newer(self, boundary: pd.Timestamp) -> NewPlan | None:
        """A plan made since the last one taken (``None``: none)."""
        ...

    def replan(self, state: RunState, reason: str) -> NewPlan | None:
        """The rest of the day planned again from ``state`` (``None``: nothing to plan)."""
        ...


class DayRunner:
    """Walks ``engine``'s day, taking plans from ``source`` at slot boundaries and re-planning
    every ``every`` (``None``: only when ``source`` has a newer plan)."""

    def __init__(
        self, engine: Settlement, source: PlanSource, every: pd.Timedelta | None = None
    ) -> None:
        self.engine = engine
        self.source = source
        self.every = every
        self.planned_at = engine.problem.horizon.start
        self.replans = 0

    def decide(self, t: int) -> NewPlan | None:
        """The plan slot ``t`` runs on: the source's newer plan, else a re-plan when one is due
        (at least ``every`` since the last plan, work left), else the current one (``None``)."""
        boundary = self.engine.problem.horizon.times[t]
        new = self.source.newer(boundary)
        if new is None and self._due(t, boundary):
            new = self.replan(t, f"every {self.every}")
        elif new is not None:
            self._take(new, boundary)
        return new

    def replan(self, t: int, reason: str) -> NewPlan | None:
        """Plan the rest again from slot ``t``'s boundary, whatever the time since the last."""
        boundary = self.engine.problem.horizon.times[t]
        engine = self.engine
        state = engine.run_state(boundary)
        new = self.source.replan(state, reason)
        self.planned_at = boundary
        if new is not None:
            self.replans += 1
            self._take(new, boundary)
        return new

    def run(self) -> RunReport:
        """Walk the whole day (an instant clock: replay): decide and run each slot, up to the
        last slot with work left."""
        for t in range(self.engine.problem.horizon.n_slots):
            if not self.engine.work_left(t):
                break
            self.decide(t)
            self.engine.step(t)
        return self.engine.report()

    def _due(self, t: int, boundary: pd.Timestamp) -> bool:
        return (
            self.every is not None
            and boundary - self.planned_at >= self.every
            and self.engine.work_left(t)
        )

    def _take(self, new: NewPlan, boundary: pd.Timestamp) -> None:
        if new.caps is not None:
            self.engine.set_caps(new.caps)
        self.engine.replace_plan(new.plan, boundary)
        self.planned_at = boundary


class _VintagePlans:
    """Replay's plan source: ``policy`` plans the rest on the vintage issued at the boundary."""

    def __init__(self, problem: Problem, policy: Policy, supply_at: SupplyAt) -> None:
        self.problem, self.policy, self.supply_at = problem, policy, supply_at
        self.seconds = 0.0

    def newer(self, boundary: pd.Timestamp) -> NewPlan | None:
        return None

    def replan(self, state: RunState, reason: str) -> NewPlan | None:
        began = time.perf_counter()
        rest = rest_of_day(self.problem, state, self.supply_at(state.from_time))
        new = None if rest is None else NewPlan(self.policy.plan(rest))
        self.seconds += time.perf_counter() - began
        return new


@dataclass(frozen=True)
class RecedingRun:
    """A settled day and its re-plans: how many, and the time they took [s]."""

    report: RunReport
    replans: int
    replan_seconds: float


def settle_receding(
    problem: Problem,
    plan: pd.DataFrame | PlanResult,
    policy: Policy,
    every: pd.Timedelta,
    supply_at: SupplyAt,
) -> RecedingRun:
    """Settle ``plan`` (a plan table or a policy's result) on ``problem.actual_supply``; at
    each slot boundary at least ``every`` after the last plan, while work is left, ``policy``
    plans the rest again on ``supply_at(boundary)``."""
    source = _VintagePlans(problem, policy, supply_at)
    runner = DayRunner(Settlement(problem, plan), source, every)
    report = runner.run()
    return RecedingRun(report, runner.replans, source.seconds)
