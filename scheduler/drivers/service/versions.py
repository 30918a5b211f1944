"""The service's plan versions: what was planned, why, how it was chosen, with its scores.

A :class:`PlanVersion` is immutable; :func:`make_version` scores a plan into one. Where a
running day stands is the core's :class:`~scheduler.replan.RunState` (the control loop sets it
on the planner).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import pandas as pd

from scheduler.caps import is_limit
from scheduler.choice import PlanChoice
from scheduler.drivers.service.store import PlanRecord
from scheduler.horizon import Horizon
from scheduler.metrics import PlanMetrics, score_plan
from scheduler.policies import PlanResult
from scheduler.policies.base import PlanArrays
from scheduler.problem import Problem

__all__ = ["ForecastAt", "PlanCause", "PlanVersion", "make_version"]


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
        """The caps on the sites' draw the plan keeps (prices are not caps)."""
        return sum(is_limit(cap.type) for cap in self.problem.caps)

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


def make_version(
    problem: Problem,
    number: int,
    reason: str,
    result: PlanResult,
    seconds: float,
    cause: PlanCause,
    choice: PlanChoice,
    created_at: pd.Timestamp,
    from_time: pd.Timestamp | None,
) -> PlanVersion:
    """``result`` (a plan of ``problem``) scored as plan version ``number``, made in
    ``seconds`` [s] from the running day's state at ``from_time`` (``None``: the whole day)."""
    plan = result.plan
    # of the same jobs, sites and slots
    score = score_plan(problem, plan, result.positions, result.storage_guide)
    return PlanVersion(
        version=number,
        created_at=created_at,
        reason=reason,
        cause=cause,
        choice=choice,
        problem=problem,
        result=result,
        metrics=score.metrics,
        site_load=score.site_load,
        plan_seconds=seconds,
        arrays=PlanArrays(score.job, score.site, score.slot, plan["gpus"].to_numpy()),
        from_time=from_time,
    )
