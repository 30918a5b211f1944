"""Metrics against hand-computed numbers: catches MW vs MWh and slot-length mistakes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scheduler_testkit import START, site, supply_frame

from scheduler.horizon import Horizon
from scheduler.jobs import Job, jobs_frame
from scheduler.metrics import plan_metrics, score_plan, site_load
from scheduler.policies.base import PlanStatus, make_result
from scheduler.problem import Problem
from scheduler.repair import plan_arrays
from scheduler.storage import StorageUnit


def test_metrics_by_hand_on_15_minute_slots():
    # 1.2 kW x PUE 1.25 = 1.5 kW per GPU; 40 GPUs = 0.06 MW on top of 0.1 MW base load
    s = site("a", kw_per_gpu=1.2, pue=1.25, base_load_mw=0.1, carbon=600.0)
    horizon = Horizon(START, 15, 2)
    supply = supply_frame(horizon, ["a"], np.array([[0.1, 0.2]]))
    jobs = jobs_frame([Job("j", 10.0, 40, START, START + pd.Timedelta(hours=1), tokens=1000.0)])
    plan = pd.DataFrame({"job_id": ["j"], "site": ["a"], "time": [START], "gpus": [40]})

    load = site_load(plan, supply, [s], horizon)
    assert load["load_mw"].tolist() == pytest.approx([0.16, 0.1])
    assert load["grid_mw"].tolist() == pytest.approx([0.06, 0.0])
    assert load["grid_co2_kg"].tolist() == pytest.approx([0.06 * 0.25 * 600, 0.0])

    m = plan_metrics(plan, jobs, supply, [s], horizon)
    assert m.energy_used_mwh == pytest.approx((0.16 + 0.1) * 0.25)
    assert m.green_used_mwh == pytest.approx((0.1 + 0.1) * 0.25)
    assert m.green_share == pytest.approx(0.05 / 0.065)
    assert m.grid_mwh == pytest.approx(0.015)
    assert m.co2_t == pytest.approx(0.009)
    assert m.green_unused_mwh == pytest.approx(0.1 * 0.25)
    # 10 GPU-h = 40 GPU-slots of 15 min: all placed, so all tokens; green fraction 0.1 / 0.16
    assert m.gpu_hours_placed == pytest.approx(10.0)
    assert m.jobs_unfinished == 0
    assert m.tokens == pytest.approx(1000.0)
    assert m.green_tokens == pytest.approx(1000.0 * 0.1 / 0.16)
    assert m.tokens_by_site == {"a": pytest.approx(1000.0)}
    assert m.cap_violations == 0


def test_cost_and_storage_by_hand_on_15_minute_slots():
    """0.3 MW of green in the first slot, none in the second; a 0.04 MW / 0.04 MWh battery
    stores 0.01 MWh of the surplus and gives it back: grid, CO2, cost, spill and cycles by hand
    (a slot counted as an hour would be 4 times off)."""
    s = site("a", kw_per_gpu=1.2, pue=1.25, base_load_mw=0.1, carbon=600.0).model_copy(
        update={"price_per_mwh": 200.0, "storage": {"b": StorageUnit(p_nom=0.04, max_hours=1.0)}}
    )
    horizon = Horizon(START, 15, 2)
    supply = supply_frame(horizon, ["a"], np.array([[0.3, 0.0]]))
    jobs = jobs_frame([Job("j", 10.0, 40, START, START + pd.Timedelta(hours=1), tokens=1000.0)])
    plan = pd.DataFrame({"job_id": ["j"], "site": ["a"], "time": [START], "gpus": [40]})

    load = site_load(plan, supply, [s], horizon)
    assert load["storage_charge_mw"].tolist() == pytest.approx([0.04, 0.0])
    assert load["storage_discharge_mw"].tolist() == pytest.approx([0.0, 0.04])
    assert load["soc_mwh"].tolist() == pytest.approx([0.01, 0.0])
    assert load["grid_mw"].tolist() == pytest.approx([0.0, 0.06])
    m = plan_metrics(plan, jobs, supply, [s], horizon)
    assert m.grid_mwh == pytest.approx(0.015)
    assert m.co2_t == pytest.approx(0.015 * 600 / 1000)
    assert m.cost == pytest.approx(0.015 * 200)
    assert m.green_used_mwh == pytest.approx((0.16 + 0.04) * 0.25)
    assert m.green_unused_mwh == pytest.approx((0.3 - 0.16 - 0.04) * 0.25)
    assert m.storage_charged_mwh == pytest.approx(0.01)
    assert m.storage_discharged_mwh == pytest.approx(0.01)
    assert m.storage_cycles == pytest.approx(0.25)


def test_unfinished_work_and_cap_violation_are_counted():
    s = site("a", grid_import_limit_mw=0.01)  # 10 GPUs on grid power at most
    horizon = Horizon(START, 60, 2)
    supply = supply_frame(horizon, ["a"], np.zeros((1, 2)))
    jobs = jobs_frame([Job("j", 30.0, 20, START, START + pd.Timedelta(hours=2), tokens=30.0)])
    plan = pd.DataFrame({"job_id": ["j"], "site": ["a"], "time": [START], "gpus": [20]})
    m = plan_metrics(plan, jobs, supply, [s], horizon)
    assert m.cap_violations == 1
    assert m.jobs_unfinished == 1
    assert m.unfinished_gpu_hours == pytest.approx(10.0)
    assert m.tokens == pytest.approx(20.0)


def test_one_scoring_pass_gives_the_site_load_table_the_metrics_and_the_rows_positions():
    """``score_plan`` (the service scores every plan version with it) agrees with
    ``site_load`` and ``plan_metrics``, and its positions name each row's job, site and slot."""
    a, b = site("a", base_load_mw=0.05), site("b", carbon=300.0)
    horizon = Horizon(START, 60, 3)
    supply = supply_frame(horizon, ["a", "b"], np.array([[0.1, 0.0, 0.2], [0.0, 0.3, 0.1]]))
    jobs = jobs_frame(
        [
            Job("x", 90.0, 40, START, START + 3 * pd.Timedelta(hours=1), tokens=500.0),
            Job("y", 30.0, 30, START, START + 2 * pd.Timedelta(hours=1), tokens=100.0),
        ]
    )
    times = [START + t * pd.Timedelta(hours=1) for t in range(3)]
    plan = pd.DataFrame(
        {
            "job_id": ["y", "x", "x", "x"],
            "site": ["b", "a", "b", "a"],
            "time": [times[1], times[0], times[1], times[2]],
            "gpus": [30, 40, 10, 40],
        }
    )
    problem = Problem(horizon, (a, b), jobs, supply)
    score = score_plan(problem, plan)
    pd.testing.assert_frame_equal(score.site_load, site_load(plan, supply, [a, b], horizon))
    assert score.metrics == plan_metrics(plan, jobs, supply, [a, b], horizon)
    assert score.job.tolist() == [1, 0, 0, 0]  # y is the jobs table's second row
    assert score.site.tolist() == [1, 0, 1, 0] and score.slot.tolist() == [1, 0, 1, 2]
    # a policy's result carries its rows' positions: scored from them, the same score
    result = make_result(problem, "hand", plan_arrays(problem, plan), PlanStatus.FEASIBLE, 0.0)
    assert result.positions is not None
    from_positions = score_plan(problem, result.plan, result.positions)
    from_labels = score_plan(problem, result.plan)
    pd.testing.assert_frame_equal(from_positions.site_load, from_labels.site_load)
    assert from_positions.metrics == from_labels.metrics == score.metrics
    for name in ("job", "site", "slot"):
        assert getattr(from_positions, name).tolist() == getattr(from_labels, name).tolist()
