"""Receding-horizon settlement: settle a day slot by slot and re-plan the work left every so
often on the forecast issued at that moment.

The replay's ``--replan-every`` runs days through here (instant clock, no runner); the live
control loop does the same through its planner, with the same
:func:`~scheduler.replan.rest_of_day` and the same settlement engine, so a replayed day follows
the rules a live day does. A re-plan covers
the work left (backlog included) from the slot boundary on, on the sites' GPUs, ramping from
the load running then; the slots before stay as they ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from scheduler.contracts.plandir import RunReport
from scheduler.policies import Policy
from scheduler.problem import Problem
from scheduler.replan import RunState, rest_of_day
from scheduler.settlement import Settlement

__all__ = ["RecedingRun", "SupplyAt", "settle_receding"]

SupplyAt = Callable[[pd.Timestamp], pd.DataFrame]
"""``supply_at(issued_at)``: the supply table of the problem's horizon as forecast at
``issued_at`` (an intraday vintage; slots before it are actuals)."""


@dataclass(frozen=True)
class RecedingRun:
    """A settled day and its re-plans: how many, and the time they took [s]."""

    report: RunReport
    replans: int
    replan_seconds: float


def settle_receding(
    problem: Problem,
    plan: pd.DataFrame,
    policy: Policy,
    every: pd.Timedelta,
    supply_at: SupplyAt,
) -> RecedingRun:
    """Settle ``plan`` on ``problem.actual_supply``; at each slot boundary at least ``every``
    after the last plan, while work is left, ``policy`` plans the rest again on
    ``supply_at(boundary)``."""
    engine = Settlement(problem, plan)
    horizon = problem.horizon
    gpus = {site.name: float(site.gpus) for site in problem.sites}
    planned_at, replans, seconds = horizon.start, 0, 0.0
    for t in range(horizon.n_slots):
        if not engine.work_left(t):
            break
        boundary = horizon.times[t]
        if boundary - planned_at >= every:
            began = time.perf_counter()
            state = RunState(boundary, engine.remaining_gpu_hours(), engine.last_load_mw(), gpus)
            rest = rest_of_day(problem, state, supply_at(boundary))
            if rest is not None:
                engine.replace_plan(policy.plan(rest), boundary)
                replans += 1
            planned_at = boundary
            seconds += time.perf_counter() - began
        engine.step(t)
    return RecedingRun(engine.report(), replans, seconds)
