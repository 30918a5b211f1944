"""Direct green-power purchases (PPAs): contracted green delivered at a site counts as green in
every table and metric, is paid whether used or not, and policies plan on it."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.metrics import plan_metrics, site_load
from scheduler.pipeline import DayPipeline, plan_day
from tests.conftest import refused_site_change

DAY = "2026-04-11"


def test_contracted_green_is_green_paid_whether_used_or_not(config):
    """5 MW around the clock at shantou at 300 per MWh: the same plan's green grows by 5 MW in
    every slot, its grid energy falls, and its cost includes all 120 MWh (take or pay)."""
    ppa = {"sites": {"shantou": {"green_purchase": {"mwh_per_day": 120.0, "price_per_mwh": 300.0}}}}
    bought = config.updated(ppa)
    pipeline = DayPipeline(config)
    problem = pipeline.problem(pipeline.horizon(DAY))
    plan = plan_day(problem, config, ["greedy"]).results["greedy"].plan
    scored = {}
    for name, cfg in (("none", config), ("ppa", bought)):
        sites = tuple(cfg.sites.values())
        load = site_load(
            plan, problem.supply, sites, problem.horizon, problem.caps, jobs=problem.jobs
        )
        metrics = plan_metrics(plan, problem.jobs, problem.supply, sites, problem.horizon)
        scored[name] = (load, metrics)
    (before, m0), (after, m1) = scored["none"], scored["ppa"]
    shantou = (after["site"] == "shantou").to_numpy()
    np.testing.assert_allclose(after["green_mw"][shantou] - before["green_mw"][shantou], 5.0)
    np.testing.assert_allclose(after["green_mw"][~shantou], before["green_mw"][~shantou])
    assert m1.grid_mwh < m0.grid_mwh and m1.green_share > m0.green_share
    assert m1.purchase_cost == pytest.approx(120.0 * 300.0)  # a day's volume, 15-min slots
    grid_cost = (after["grid_mw"] * np.where(shantou, 450.0, 280.0)).sum() * 0.25
    assert m1.cost == pytest.approx(grid_cost + 120.0 * 300.0)
    assert m1.green_tokens > m0.green_tokens


def test_the_optimizer_plans_on_contracted_evening_green(config):
    """15 MW bought at qingyang from 18:00 to 24:00 local, when its wind and sun have faded and
    its load is at base: the optimizer moves work there into those hours."""
    evening = [15.0 if h >= 18 else 0.0 for h in range(24)]
    ppa = {"green_purchase": {"profile_mw": evening, "price_per_mwh": 100.0}}
    bought = config.updated({"sites": {"qingyang": ppa}})
    drawn = {}
    for name, cfg in (("none", config), ("ppa", bought)):
        pipeline = DayPipeline(cfg)
        problem = pipeline.problem(pipeline.horizon(DAY))
        plan = plan_day(problem, cfg, ["optimizer"]).results["optimizer"].plan
        load = site_load(plan, problem.supply, problem.sites, problem.horizon, problem.caps)
        local = load["time"].dt.tz_convert("Asia/Shanghai").dt.hour
        there = (load["site"] == "qingyang") & (local >= 18)
        drawn[name] = float(load.loc[there, "load_mw"].sum() * 0.25)  # MWh
    assert drawn["ppa"] > drawn["none"] + 60.0  # of the 90 MWh bought (measured: +89 MWh)


def test_a_purchase_with_no_shape_or_two_is_named_with_the_file(monkeypatch, capsys, tmp_path):
    for purchase in ({"price_per_mwh": 300.0},
                     {"mwh_per_day": 10.0, "profile_mw": 1.0, "price_per_mwh": 300.0}):  # fmt: skip
        text = refused_site_change(monkeypatch, capsys, tmp_path / "ppa.yaml", "shantou",
                                   green_purchase=purchase)  # fmt: skip
        assert "sites.shantou.green_purchase" in text
        assert "give exactly one of profile_mw and mwh_per_day" in text
