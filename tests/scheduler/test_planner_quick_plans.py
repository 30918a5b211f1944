"""The service's planner: when no repair keeps every job, it answers from the quick (greedy)
plan if that keeps every job's work, and plans with the optimizer only when it does not."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scheduler_testkit import START, job, make_problem, site

from scheduler.config import load_config
from scheduler.drivers.service.planner import Planner, RunState
from scheduler.drivers.service.store import Store
from scheduler.policies.base import PlanStatus, make_result
from scheduler.problem import LOAD_LIMIT, LoadCap
from scheduler.repair import plan_arrays, repair

HOUR = pd.Timedelta(hours=1)


@pytest.fixture
def planner(tmp_path: Path):
    """A planner of a day of one 4-GPU site and 3 hourly slots: ``x`` may run in hours 0-1,
    ``w`` only in hour 1, ``y`` in hours 0-2 (2 GPUs, 2 GPU-h each)."""
    jobs = [job("x", 2, 2, 0, 2), job("w", 2, 2, 1, 2), job("y", 2, 2, 0, 3)]
    day = make_problem([site("a", gpus=4)], np.zeros((1, 3)), jobs)
    store = Store(tmp_path / "caps.sqlite")
    planner = Planner(load_config(), day, store, clock=lambda: START - HOUR)
    yield planner
    planner.close()
    store.close()


def _hand(problem, rows):
    plan = pd.DataFrame(
        [{"job_id": j, "site": "a", "time": START + t * HOUR, "gpus": g} for j, t, g in rows]
    )
    return make_result(problem, "hand", plan_arrays(problem, plan), PlanStatus.FEASIBLE, 0.0)


def test_no_repair_but_a_greedy_plan_keeps_every_job(planner: Planner) -> None:
    day = planner.day
    # x in hour 0; w and y fill hour 1: a cap of 0 GPUs in hour 0 cuts x, whose only other
    # hour is full, so no repair keeps it; planning again moves y to hour 2 and x to hour 1
    previous = planner._version(
        day, 7, "hand", _hand(day, [("x", 0, 2), ("w", 1, 2), ("y", 1, 2)]), 0.0, True
    )
    capped = replace(day, caps=(LoadCap("a", START, START + HOUR, LOAD_LIMIT, 0.0),))
    assert repair(capped, previous.result, "optimizer") is None
    version = planner._kept_or_repaired(previous, capped, 8, "cap")
    assert version is not None and version.replanned
    assert "planned by greedy" in version.reason
    assert version.result.unfinished_gpu_hours.sum() == 0
    by_slot = version.result.plan.groupby("time")["gpus"].sum()
    assert by_slot.get(START, 0) == 0 and by_slot.sum() == 6


def test_when_greedy_would_leave_work_only_the_optimizer_answers(planner: Planner) -> None:
    day = planner.day
    previous = planner._version(
        day, 7, "hand", _hand(day, [("x", 0, 2), ("w", 1, 2), ("y", 1, 2)]), 0.0, True
    )
    # hours 0 and 2 closed: x, w and y cannot all run (6 GPU-h, 4 GPUs in hour 1 only)
    caps = tuple(
        LoadCap("a", START + t * HOUR, START + (t + 1) * HOUR, LOAD_LIMIT, 0.0) for t in (0, 2)
    )
    assert planner._kept_or_repaired(previous, replace(day, caps=caps), 8, "cap") is None


def test_no_background_plan_starts_from_a_slot_that_has_begun(planner: Planner) -> None:
    """The loop's state moved on (a slot began) since the current plan was made: optimising
    that plan in the background would put work into the slot that began, which never runs it."""
    left = {job_id: 2.0 for job_id in planner.day.job_ids}
    version = planner.replan("hourly", RunState(START, left))
    assert version.from_time == START
    planner.state = RunState(START + HOUR, left)  # what the loop sets when slot 0 starts
    planner._polish_wanted = True
    planner._polish()
    assert planner._polishing is None
    planner.state = RunState(START, left)  # the plan's own state: it may be optimised
    planner._polish()
    assert planner._polishing is not None
