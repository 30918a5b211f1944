"""The rest of a running day (scheduler.replan): the one path every re-plan takes."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scheduler_testkit import START, job, make_problem, site

from scheduler.policies import get_policy
from scheduler.replan import RunState, policy_replan, rest_of_day
from scheduler.validate import assert_valid

HOUR = pd.Timedelta(hours=1)


def _day_with_a_sunny_actual():
    """Two sites, 6 hours; the forecast expects 10 kW of green at each site every hour, the day
    brought 100 kW at site ``b`` in hours 3-5 (which no forecast saw)."""
    forecast = np.full((2, 6), 0.01)
    actual = forecast.copy()
    actual[1, 3:] = 0.1
    jobs = [job("j", 120, 40, 0, 6), job("k", 40, 20, 0, 6)]
    return make_problem([site("a"), site("b")], forecast, jobs, actual_green_mw=actual)


def test_the_rest_is_planned_on_the_forecast_never_on_the_actual():
    day = _day_with_a_sunny_actual()
    state = RunState(START + 2 * HOUR, {"j": 80.0, "k": 0.0}, {"a": 0.04, "b": 0.0})
    rest = rest_of_day(day, state)
    assert rest is not None and rest.actual_supply is None
    assert list(rest.supply["time"].unique()) == list(START + HOUR * np.arange(2, 6))
    np.testing.assert_allclose(rest.supply["green_mw"], 0.01)  # the forecast, not 0.1
    assert rest.initial_load_mw == (0.04, 0.0)  # ramps from the load running
    assert list(rest.jobs["job_id"]) == ["j"] and rest.jobs["gpu_hours"].tolist() == [80.0]
    # the settlement engine's re-planner plans that rest: the 80 GPU-h left
    plan = policy_replan(day, get_policy("optimizer"))(state)
    assert plan is not None and plan["gpus"].sum() == 80


def test_a_fresher_view_handed_in_is_the_one_planned_on():
    day = _day_with_a_sunny_actual()
    fresher = day.actual_supply.assign(green_mw=0.05)
    rest = rest_of_day(day, RunState(START + 3 * HOUR, {"j": 40.0}), fresher)
    assert rest is not None
    np.testing.assert_allclose(rest.supply["green_mw"], 0.05)
    assert rest.initial_load_mw is None


def test_the_rest_keeps_to_live_gpus_and_ramps_from_the_load_running():
    """A site ramping 10 GPUs an hour (0.01 MW/h at 1 kW per GPU) that ran 30 GPUs before the
    boundary: its re-plan cannot drop to 0 or jump to 40 at once, and site b, lost, gets
    nothing."""
    ramped = site("a", ramp_up_mw_per_min=0.01 / 60, ramp_down_mw_per_min=0.01 / 60)
    day = make_problem([ramped, site("b")], np.zeros((2, 6)), [job("j", 120, 40, 0, 6)])
    state = RunState(START + 2 * HOUR, {"j": 100.0}, {"a": 0.03, "b": 0.02}, {"a": 100.0})
    rest = rest_of_day(day, state)
    assert rest is not None and rest.site_names == ["a"]
    result = get_policy("optimizer").plan(rest)
    assert_valid(rest, result)
    first = result.plan[result.plan["time"] == START + 2 * HOUR]["gpus"].sum()
    assert 20 <= first <= 40
