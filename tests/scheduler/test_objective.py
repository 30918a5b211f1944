"""The objective switch: where grid carbon and grid price disagree between sites, a cost
objective buys cheaper grid energy at the price of more CO2, and the optimizer's bound and
objective are in the chosen units."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from scheduler.metrics import plan_metrics, site_load
from scheduler.pipeline import DayPipeline
from scheduler.policies import get_policy
from scheduler.problem import hourly_profile
from tests.conftest import refused_site_change


@pytest.mark.parametrize("policy", ["optimizer", "greedy"])
def test_a_cost_objective_trades_co2_for_cost_where_price_and_carbon_disagree(config, policy):
    # qingyang's grid is dirtier (620 kg/MWh) but cheaper (280 per MWh) than shantou's (520, 450)
    qingyang, shantou = config.sites["qingyang"], config.sites["shantou"]
    assert qingyang.carbon_kg_per_mwh > shantou.carbon_kg_per_mwh
    assert qingyang.price_per_mwh < shantou.price_per_mwh
    pipeline = DayPipeline(config)
    problem = pipeline.problem(pipeline.horizon("2026-04-11"))
    scores, results = {}, {}
    for objective in ("carbon", "cost"):
        weights = config.with_solver(objective=objective).solver.objective_weights()
        planned = replace(problem, objective_weights=weights)
        results[objective] = get_policy(policy, config.solver).plan(planned)
        plan = results[objective].plan
        scores[objective] = plan_metrics(plan, problem.jobs, problem.supply, problem.sites,
                                         problem.horizon, problem.caps)  # fmt: skip
    assert scores["cost"].cost < scores["carbon"].cost
    assert scores["cost"].co2_t > scores["carbon"].co2_t
    if policy == "optimizer":  # its objective is the plan's cost (no work unfinished here)
        assert scores["cost"].jobs_unfinished == 0
        assert results["cost"].objective_kg == pytest.approx(scores["cost"].cost, rel=1e-6)
        # the bound is in the same units: the gap stays small and never negative
        for result in results.values():
            assert result.best_bound_kg <= result.objective_kg * (1 + 1e-9)
            assert result.gap is not None and 0 <= result.gap <= 0.05
        assert results["carbon"].objective_kg == pytest.approx(
            scores["carbon"].co2_t * 1000, rel=1e-6
        )


def test_weights_follow_the_config(config):
    solver = config.solver
    assert solver.objective == "carbon" and solver.objective_weights() == (1.0, 0.0)
    assert config.with_solver(objective="cost").solver.objective_weights() == (0.0, 1.0)
    weighted = config.with_solver(objective="weighted", cost_weight=0.5).solver
    assert weighted.objective_weights() == (1.0, 0.5)


def test_a_time_of_use_tariff_by_hour_and_day_type():
    # 2026-04-10 is a Friday: its slots take the weekday hours, the Saturday's the weekend's
    times = pd.date_range("2026-04-10T00:00+08:00", periods=2 * 96, freq="15min").tz_convert("UTC")
    weekday = [100.0] * 8 + [500.0] * 16  # cheap before 08:00 local
    price = hourly_profile({"weekday": weekday, "weekend": 50.0}, times, "Asia/Shanghai")
    local = times.tz_convert("Asia/Shanghai")
    friday, saturday = local.dayofweek == 4, local.dayofweek == 5
    assert (price[friday & (local.hour < 8)] == 100.0).all()
    assert (price[friday & (local.hour >= 8)] == 500.0).all()
    assert (price[saturday] == 50.0).all()


def test_a_tariff_missing_a_day_type_is_named_with_the_file(monkeypatch, capsys, tmp_path):
    text = refused_site_change(monkeypatch, capsys, tmp_path / "tariff.yaml", "qingyang",
                               price_per_mwh={"weekday": 300.0})  # fmt: skip
    assert "sites.qingyang.price_per_mwh" in text
    assert "needs both 'weekday' and 'weekend'" in text


def test_under_a_night_tariff_the_cost_objective_draws_its_grid_energy_at_night(config):
    """Both sites' grid energy four times dearer from 08:00 to 24:00 local: planning on cost
    puts a larger share of the day's grid energy into the cheap night hours than on carbon."""
    tariff = {"weekday": [100.0] * 8 + [400.0] * 16, "weekend": [100.0] * 8 + [400.0] * 16}
    tou = config.updated({"sites": {n: {"price_per_mwh": tariff} for n in config.sites}})
    pipeline = DayPipeline(tou)
    problem = pipeline.problem(pipeline.horizon("2026-04-11"))
    night = np.asarray(problem.horizon.times.tz_convert("Asia/Shanghai").hour < 8)
    share = {}
    for objective in ("carbon", "cost"):
        weights = tou.with_solver(objective=objective).solver.objective_weights()
        planned = replace(problem, objective_weights=weights)
        plan = get_policy("optimizer", tou.solver).plan(planned).plan
        load = site_load(plan, problem.supply, problem.sites, problem.horizon, problem.caps)
        grid = load["grid_mw"].to_numpy().reshape(len(problem.sites), -1)
        share[objective] = grid[:, night].sum() / grid.sum()
    assert share["cost"] > share["carbon"] + 0.02
