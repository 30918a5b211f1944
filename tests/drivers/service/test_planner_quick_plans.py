"""The service's planner: quick plans answer at once (the choice among them is tested in
tests/scheduler/test_choice.py), the optimizer follows in the background, from where the running
day stands, and batches gather the changes arriving together."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scheduler.drivers.service.background as background_module
import scheduler.drivers.service.batching as batching_module
from scheduler.choice import PlanChoice
from scheduler.config import load_config
from scheduler.drivers.service.answers import answer
from scheduler.drivers.service.auth import Coordinator
from scheduler.drivers.service.batching import Change
from scheduler.drivers.service.events import CapEvent, CapInterval
from scheduler.drivers.service.planner import PlanCause, Planner, RunState
from scheduler.drivers.service.store import Store
from scheduler.policies.base import PlanStatus, make_result
from scheduler.problem import LOAD_LIMIT, LoadCap
from scheduler.repair import plan_arrays
from scheduler.validate import validate_plan
from tests.scheduler.scheduler_testkit import START, job, make_problem, site

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


def test_a_provisional_plan_answers_at_once_and_says_so(planner: Planner) -> None:
    """The choice (:mod:`scheduler.choice`, tested there) names the version: a provisional
    plan's reason and answer say that the optimum follows."""
    day = planner.day
    hand = _hand(day, [("x", 0, 2), ("w", 1, 2), ("y", 1, 2)])
    previous = planner._version(day, 7, "hand", hand, 0.0, PlanCause.REPLAN, PlanChoice.OPTIMIZER)
    # hours 0 and 2 closed: x, w and y cannot all run (6 GPU-h, 4 GPUs in hour 1 only)
    caps = tuple(
        LoadCap("a", START + t * HOUR, START + (t + 1) * HOUR, LOAD_LIMIT, 0.0) for t in (0, 2)
    )
    capped = replace(day, caps=caps)
    version = planner._chosen(previous, capped, 8, "submit e1", PlanCause.SUBMIT)
    assert version.choice is PlanChoice.PROVISIONAL_GREEDY and version.provisional
    assert version.reason == (
        "submit e1; planned by greedy to answer at once; provisional, optimised in the background"
    )
    said = answer(previous, version, capped)
    assert not said.opt_in and "quick plan" in said.reason and "1 job(s) late" in said.reason
    # the look-ahead day has no background optimiser: there the optimizer answers
    ahead = planner._chosen(previous, capped, 0, "look-ahead", PlanCause.LOOK_AHEAD, late_ok=False)
    assert ahead.choice is PlanChoice.OPTIMIZER and not ahead.provisional


def test_a_background_plan_starts_where_the_running_day_stands(planner: Planner) -> None:
    """The loop's state moved on (a slot began) since the current plan was made: optimising
    that plan's own problem would put work into the slot that began, which never runs it; the
    work left is optimised from the next boundary instead."""
    left = {job_id: 2.0 for job_id in planner.day.job_ids}
    version = planner.replan("hourly", RunState(START, left))
    assert version.from_time == START
    planner.state = RunState(START + HOUR, left)  # what the loop sets when slot 0 starts
    planner.background.unoptimal()
    planner.background.step()
    assert planner.background.running is not None
    assert (
        planner.background.running.problem.horizon.start == START + HOUR
    )  # the work left, from there


def test_a_cancel_before_a_slot_begins_gives_the_room_back(planner: Planner) -> None:
    """The start-up race of a running serve: a cap that leaves no room, the loop's plan of its
    day under it, the cap cancelled (the capped plan already keeps no caps: it is kept), then
    the loop's first slot begins. Within seconds a plan from the next boundary runs every job
    again, without waiting for the loop's next re-plan."""
    left = {job_id: 2.0 for job_id in planner.day.job_ids}
    at_start = RunState(START, left)
    _queued(planner, 0, 0.0, hours=3).result(timeout=10)  # no GPU in any hour of the day
    capped = planner.replan("started during the day", at_start)  # the loop's first plan
    assert capped.metrics.jobs_unfinished == 3
    cancelled = _queued_cancel(planner, 0).result(timeout=10)
    kept = planner.current
    assert cancelled == (True, kept.version) and not kept.problem.caps and not kept.replanned
    planner.state = RunState(START + HOUR, left)  # slot 0 begins, running nothing
    # 6 GPU-h in hours 1-2 of 4 GPUs: x and w end with hour 1 (4 GPU-h there), y in hour 2
    after = planner.wait_for_version(kept.version, timeout_s=10)
    assert after is not None, "the cancelled cap's shape stayed"
    assert after.from_time == START + HOUR and not after.problem.caps
    assert after.result.unfinished_gpu_hours.sum() == pytest.approx(0.0)
    assert after.result.plan["time"].min() >= START + HOUR


@pytest.fixture
def green_planner(tmp_path: Path):
    """The ``planner`` day with 4 GPUs of green in hour 2 only, whose current plan runs ``y`` in
    hour 0 instead (not optimal: the optimum runs it on the green)."""
    jobs = [job("x", 2, 2, 0, 2), job("w", 2, 2, 1, 2), job("y", 2, 2, 0, 3)]
    day = make_problem([site("a", gpus=4)], np.array([[0.0, 0.0, 0.004]]), jobs)
    store = Store(tmp_path / "caps.sqlite")
    planner = Planner(load_config(), day, store, clock=lambda: START - HOUR)
    hand = _hand(day, [("x", 0, 2), ("w", 1, 2), ("y", 0, 2)])
    planner._publish(
        planner._version(day, 2, "hand", hand, 0.0, PlanCause.REPLAN, PlanChoice.OPTIMIZER)
    )
    planner.background.unoptimal()
    yield planner
    planner.close()
    store.close()


def _change(k: int, mw: float, hour: int = 0, hours: int = 1) -> Change:
    """Event ``e{k}``: a load limit of ``mw`` on site a for ``hours`` from hour ``hour``."""
    start = START + hour * HOUR
    cap = LoadCap("a", start, start + hours * HOUR, LOAD_LIMIT, mw)
    interval = CapInterval(start, hours * 3600.0, LOAD_LIMIT, mw)
    event = CapEvent(f"e{k}", 0, "", 0, ("a",), (interval,))
    return Change(event.event_id, Coordinator("grid", None), START - HOUR, event, [cap])


def test_a_plan_is_optimised_while_changes_never_stop(green_planner, monkeypatch) -> None:
    """Changes arrive one after another, never leaving the quiet time the background optimiser
    waits for: after ``POLISH_MAX_WAIT_S`` it runs anyway, and its plan (repaired to the caps
    that changed meanwhile) replaces the one that was not optimal."""
    monkeypatch.setattr(background_module, "POLISH_IDLE_S", 60.0)
    monkeypatch.setattr(background_module, "POLISH_MAX_WAIT_S", 0.2)
    deadline = time.monotonic() + 20
    k = 0
    while "optimised in the background" not in green_planner.current.reason:
        assert time.monotonic() < deadline, "never optimised while changes kept arriving"
        # a little over 4 GPUs, changing each time: a new cap matrix, the same plan kept
        done = green_planner._batches.put(_change(k, 0.004 + 1e-5 * (k % 50 + 1)))
        done.result(timeout=10)
        k += 1
    current = green_planner.current
    plan = current.result.plan
    assert set(plan.loc[plan["job_id"] == "y", "time"]) == {START + 2 * HOUR}
    assert validate_plan(current.problem, current.result) == []


def test_a_background_plan_of_caps_since_changed_is_repaired_to_them(
    green_planner, monkeypatch
) -> None:
    """The optimum runs y on hour 2's green with 2 GPUs; while it is computed, a cap leaves
    hour 2 one GPU. The optimum, repaired to that cap, still beats the plan in force."""
    monkeypatch.setattr(background_module, "POLISH_IDLE_S", 60.0)
    planner = green_planner
    with planner._lock:  # the planner thread publishes the background plan only after this
        planner.background.step()  # starts optimising the current problem
        assert planner.background.running is not None
        planner._apply([_change(0, 0.001, hour=2)])  # the current plan keeps it (hour 2 idle)
        before = planner.current
        assert before.problem.caps and not before.replanned
    after = planner.wait_for_version(before.version, timeout_s=30)
    assert after is not None and "then repaired to the caps changed since" in after.reason
    assert validate_plan(after.problem, after.result) == []  # keeps the cap on hour 2
    y = after.result.plan[after.result.plan["job_id"] == "y"]
    assert y.loc[y["time"] == START + 2 * HOUR, "gpus"].sum() == 1  # green, up to the cap
    assert after.result.objective_kg < before.result.objective_kg
    assert planner.background.since is not None  # the repair is not optimal: again later


def test_the_background_optimisation_yields_the_cpu_to_the_plans_callers_wait_for(
    planner: Planner,
) -> None:
    """The optimizer a caller waits for runs at the server's CPU priority; the optimisation in
    the background runs lower, so it slows no answer."""
    here = os.nice(0)
    assert planner._solver is not None
    assert planner._solver.call(os.nice, 0) == here
    polisher = planner.background.solver.call(os.nice, 0)
    assert polisher == min(here + background_module.POLISH_NICENESS, 19)


def _queued(planner: Planner, k: int, mw: float, hours: int = 1):
    """Change ``e{k}`` (:func:`_change`) queued as :meth:`Planner.submit` queues it."""
    return planner._batches.put(_change(k, mw, hours=hours))


def _queued_cancel(planner: Planner, k: int):
    """The cancellation of event ``e{k}`` queued as :meth:`Planner.cancel` queues it."""
    change = Change(f"e{k}", Coordinator("grid", None), START - HOUR, reason="test")
    return planner._batches.put(change)


def test_a_batch_waits_for_a_change_already_arriving(planner: Planner, monkeypatch) -> None:
    """A change announced on its way (a call being checked) joins the batch of the change queued
    just before it, instead of waiting for that batch to be planned; the wait is bounded."""
    monkeypatch.setattr(batching_module, "_ARRIVING_MAX_S", 5.0)
    with planner.arriving():
        first = _queued(planner, 1, 0.003)
        time.sleep(0.2)  # the batch would have been planned and answered by now
        assert not first.done()
        second = _queued(planner, 2, 0.002)
    a, b = first.result(timeout=10), second.result(timeout=10)
    assert a.plan_version == b.plan_version and "1 other change" in a.reason
    # without an announcement each is planned on its own
    lone = _queued(planner, 3, 0.001)
    time.sleep(0.2)
    assert lone.done() and "other change" not in lone.result().reason
    # an announced change that never comes holds a batch for _ARRIVING_MAX_S at most
    monkeypatch.setattr(batching_module, "_ARRIVING_MAX_S", 0.05)
    with planner.arriving():
        began = time.monotonic()
        _queued(planner, 4, 0.0035).result(timeout=10)
        assert time.monotonic() - began < 2.0
