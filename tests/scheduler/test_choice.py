"""The choice of plan when caps change (:func:`scheduler.choice.choose_plan`): hand-built plans of
one 4-GPU site and three hourly slots, each case with the outcome worked out by hand."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from scheduler.choice import PlanChoice, choose_plan
from scheduler.metrics import busy_gpus
from scheduler.policies import get_policy
from scheduler.policies.base import PlanResult, PlanStatus, make_result
from scheduler.problem import IMPORT_CAPACITY_LIMIT, LOAD_LIMIT, LoadCap, Problem
from scheduler.repair import RepairDraft, later_jobs, plan_arrays, repair
from scheduler.validate import validate_plan
from tests.scheduler.scheduler_testkit import START, job, make_problem, site

HOUR = pd.Timedelta(hours=1)
GREEDY = get_policy("greedy")


@pytest.fixture
def finished(monkeypatch) -> list[str]:
    """The policy names of the repairs finished (:meth:`RepairDraft.finish`) from now on."""
    calls: list[str] = []
    finish = RepairDraft.finish

    def counted(self: RepairDraft, name: str):
        calls.append(name)
        return finish(self, name)

    monkeypatch.setattr(RepairDraft, "finish", counted)
    return calls


def _day(green_mw=((0.0, 0.0, 0.0),), jobs=None) -> Problem:
    """``x`` may run in hours 0-1, ``w`` only in hour 1, ``y`` in hours 0-2 (2 GPUs, 2 GPU-h
    each) on one site of 4 GPUs at 1 kW each."""
    jobs = jobs or [job("x", 2, 2, 0, 2), job("w", 2, 2, 1, 2), job("y", 2, 2, 0, 3)]
    return make_problem([site("a", gpus=4)], np.array(green_mw), jobs)


def _hand(problem: Problem, rows) -> PlanResult:
    plan = pd.DataFrame(
        [{"job_id": j, "site": "a", "time": START + t * HOUR, "gpus": g} for j, t, g in rows]
    )
    return make_result(problem, "hand", plan_arrays(problem, plan), PlanStatus.FEASIBLE, 0.0)


def _choose(previous: Problem, result: PlanResult, problem: Problem, late_ok: bool = True):
    arrays = plan_arrays(previous, result.plan)
    busy = busy_gpus(result.plan, previous.site_names, previous.horizon)
    return choose_plan(previous, result, arrays, busy, problem, GREEDY, "optimizer", late_ok)


def _caps(*hours_mw: tuple[int, float]) -> tuple[LoadCap, ...]:
    """A load limit of ``mw`` on site a in each ``hour`` (1 GPU per 0.001 MW)."""
    return tuple(
        LoadCap("a", START + hour * HOUR, START + (hour + 1) * HOUR, LOAD_LIMIT, mw)
        for hour, mw in hours_mw
    )


BUSY_01 = [("x", 0, 2), ("w", 1, 2), ("y", 1, 2)]  # 2 GPUs in hour 0, 4 in hour 1, none in 2


def test_caps_that_change_no_limit_leave_the_plan_unchanged() -> None:
    day = _day()
    # a grid cap above the site's import limit (10 MW), and a cap after the day
    above = (LoadCap("a", START, START + HOUR, IMPORT_CAPACITY_LIMIT, 20.0),)
    after = (LoadCap("a", START + 5 * HOUR, START + 6 * HOUR, LOAD_LIMIT, 0.0),)
    for caps in (above, after):
        problem = replace(day, caps=caps)
        assert _choose(day, _hand(day, BUSY_01), problem).outcome is PlanChoice.UNCHANGED


def test_a_plan_that_keeps_the_caps_is_kept_optimal_only_when_they_tightened() -> None:
    day = _day()
    result = _hand(day, BUSY_01)
    tighter = replace(day, caps=_caps((0, 0.002), (2, 0.0)))  # hour 0 to 2 GPUs, hour 2 shut
    choice = _choose(day, result, tighter)
    assert choice.outcome is PlanChoice.KEPT and choice.result is result
    assert not choice.outcome.optimum_may_differ and not choice.outcome.replanned
    # the cap on hour 2 cancelled, hour 0's kept: looser somewhere, the optimum may use it
    looser = replace(day, caps=_caps((0, 0.002)))
    choice = _choose(tighter, result, replace(looser, jobs=tighter.jobs))
    assert choice.outcome is PlanChoice.KEPT_LOOSENED and choice.result is result
    assert choice.outcome.optimum_may_differ and not choice.outcome.replanned


def test_a_cap_the_plan_breaks_is_met_by_its_repair_when_no_job_gets_later() -> None:
    day = _day()
    # y in hour 0; hour 0 shut: y moves to hour 2 (its window runs to 3), x and w stay in 1
    result = _hand(day, [("y", 0, 2), ("x", 1, 2), ("w", 1, 2)])
    choice = _choose(day, result, replace(day, caps=_caps((0, 0.0))))
    assert choice.outcome is PlanChoice.REPAIRED and choice.outcome.optimum_may_differ
    assert choice.result is not None and choice.result.unfinished_gpu_hours.sum() == 0
    y = choice.result.plan[choice.result.plan["job_id"] == "y"]
    assert set(y["time"]) == {START + 2 * HOUR}


def test_no_repair_but_a_greedy_plan_keeps_every_job(finished) -> None:
    day = _day()
    # x in hour 0; w and y fill hour 1: a cap of 0 GPUs in hour 0 cuts x, whose only other
    # hour is full, so no repair keeps it; planning again moves y to hour 2 and x to hour 1
    previous = _hand(day, BUSY_01)
    capped = replace(day, caps=_caps((0, 0.0)))
    repaired = repair(capped, previous, "optimizer")
    assert repaired is not None and list(later_jobs(repaired, previous).index) == ["x"]
    finished.clear()
    choice = _choose(day, previous, capped)
    assert choice.outcome is PlanChoice.GREEDY and choice.outcome.replanned
    assert not choice.outcome.provisional
    assert finished == []  # its flow already left x later: the repair was not finished
    assert choice.result is not None and choice.result.unfinished_gpu_hours.sum() == 0
    by_slot = choice.result.plan.groupby("time")["gpus"].sum()
    assert by_slot.get(START, 0) == 0 and by_slot.sum() == 6


def test_when_no_plan_keeps_every_job_a_provisional_one_answers() -> None:
    day = _day()
    # hours 0 and 2 shut: x, w and y cannot all run (6 GPU-h, 4 GPUs in hour 1 only)
    capped = replace(day, caps=_caps((0, 0.0), (2, 0.0)))
    previous = _hand(day, BUSY_01)
    # without late_ok (a day nothing optimises in the background) only the optimizer answers
    assert _choose(day, previous, capped, late_ok=False).outcome is PlanChoice.OPTIMIZER
    choice = _choose(day, previous, capped)
    assert choice.outcome is PlanChoice.PROVISIONAL_GREEDY and choice.outcome.provisional
    assert choice.result is not None
    by_slot = choice.result.plan.groupby("time")["gpus"].sum()
    assert set(by_slot.index) == {START + HOUR} and by_slot.sum() == 4  # full, within the caps
    assert choice.result.unfinished_gpu_hours.sum() == pytest.approx(2.0)


def test_the_provisional_plan_is_the_one_leaving_less_work_unfinished(finished) -> None:
    """Greedy does not look ahead: with no green in hour 0 it leaves ``z`` for later, where
    the caps leave no room. A repair of the plan that ran ``z`` in hour 2 moves it to hour 0."""
    jobs = [job("u", 2, 2, 1, 2), job("v", 3, 2, 1, 3), job("z", 2, 2, 0, 3)]
    day = _day(((0.0, 0.002, 0.004),), jobs)
    capped = replace(day, caps=_caps((1, 0.0), (2, 0.001)))  # hour 1 shut, 1 GPU in hour 2
    assert GREEDY.plan(capped).unfinished_gpu_hours.sum() == pytest.approx(5.0)
    previous = _hand(day, [("u", 1, 2), ("v", 1, 1), ("v", 2, 2), ("z", 2, 2)])
    choice = _choose(day, previous, capped)
    assert choice.outcome is PlanChoice.PROVISIONAL_REPAIRED
    assert finished == ["optimizer"]  # finished: its flow left less than greedy
    assert choice.result is not None and validate_plan(capped, choice.result) == []
    left = choice.result.unfinished_gpu_hours
    assert left.sum() == pytest.approx(4.0) and left["z"] == 0  # z runs in hour 0
    # the other way round: the plan repaired had left v and z out, so greedy leaves less
    finished.clear()
    choice = _choose(day, _hand(day, [("u", 1, 2)]), capped)
    assert choice.outcome is PlanChoice.PROVISIONAL_GREEDY
    assert choice.result is not None
    assert choice.result.unfinished_gpu_hours.sum() == pytest.approx(5.0)
    assert finished == []  # its flow left more than greedy: not finished


def test_another_state_of_the_day_is_left_to_the_optimizer() -> None:
    day = _day()
    result = _hand(day, BUSY_01)
    later = replace(day, jobs=day.jobs.copy(), caps=_caps((0, 0.0)))  # the work left, anew
    assert _choose(day, result, later).outcome is PlanChoice.OPTIMIZER
