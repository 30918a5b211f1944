"""The objective switch: where grid carbon and grid price disagree between sites, a cost
objective buys cheaper grid energy at the price of more CO2, and the optimizer's bound and
objective are in the chosen units."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scheduler.metrics import plan_metrics
from scheduler.pipeline import DayPipeline
from scheduler.policies import get_policy


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
