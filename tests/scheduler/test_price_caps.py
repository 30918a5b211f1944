"""Price events (OpenADR 3 PRICE) in the planning problem: a price replaces the tariff in the
slots it covers and so moves the cost-optimal plan, leaves the carbon-optimal plan alone, and
never limits load."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scheduler_testkit import START, job, make_problem, site

from scheduler.contracts import CapType
from scheduler.metrics import busy_gpus, plan_metrics, site_load
from scheduler.policies import get_policy
from scheduler.problem import LoadCap
from scheduler.validate import assert_valid

HOUR = pd.Timedelta(hours=1)
CARBON = [600.0 - 10 * h for h in range(24)]  # kg/MWh, cleaner every hour (UTC)
TARIFF = [200.0 - 5 * h for h in range(24)]  # per MWh, cheaper every hour


def _problem(caps=(), objective=(0.0, 1.0)):
    """One site of 100 GPUs (0.1 MW at full load) without green supply or base load, its grid
    cleaner and cheaper every hour; one job of 200 GPU-h that may run in any of the first 8
    hours: it takes the last two (6 and 7) on carbon and on the tariff."""
    sites = [site("a", carbon=CARBON, price_per_mwh=TARIFF)]
    jobs = [job("j", 200.0, 100, 0, 8)]
    problem = make_problem(sites, np.zeros((1, 8)), jobs, caps=caps)
    return replace(problem, objective_weights=objective)


def _price(first: int, end: int, price: float, event_id: str = "p") -> LoadCap:
    return LoadCap("a", START + first * HOUR, START + end * HOUR, CapType.PRICE, price, event_id)


def _busy(problem) -> np.ndarray:
    result = get_policy("optimizer").plan(problem)
    assert_valid(problem, result)
    assert float(result.unfinished_gpu_hours.sum()) == 0
    return busy_gpus(result.plan, problem.site_names, problem.horizon)[0]


def test_a_price_event_moves_the_cost_optimal_plan_and_not_the_carbon_optimal_one():
    dear = [_price(6, 8, 10_000.0)]  # the two cleanest hours at about 60 x the tariff
    cost_before, cost_after = _busy(_problem()), _busy(_problem(dear))
    assert cost_before.tolist() == [0, 0, 0, 0, 0, 0, 100, 100]
    # hours 4 and 5 are the cheapest left: 180 and 175 per MWh against 10,000
    assert cost_after.tolist() == [0, 0, 0, 0, 100, 100, 0, 0]
    carbon = (1.0, 0.0)
    assert _busy(_problem(objective=carbon)).tolist() == [0, 0, 0, 0, 0, 0, 100, 100]
    assert _busy(_problem(dear, objective=carbon)).tolist() == [0, 0, 0, 0, 0, 0, 100, 100]
    # weighted, 1 kg per unit of currency: 10,000 per MWh outweighs 20 kg/MWh more CO2
    assert _busy(_problem(dear, objective=(1.0, 1.0))).tolist() == [0, 0, 0, 0, 100, 100, 0, 0]


def test_a_price_replaces_the_tariff_where_it_is_in_force_and_limits_nothing():
    free = _problem()
    # a price of 0 would be a cap of 0 MW if it were read as a limit
    priced = _problem([_price(2, 4, 0.0, "zero"), _price(3, 5, 900.0, "dear"),
                       _price(4, 5, 300.0, "less")])  # fmt: skip
    assert priced.price_per_mwh[0].tolist() == [200, 195, 0, 900, 900, 175, 170, 165]
    assert free.price_per_mwh[0].tolist() == TARIFF[:8]
    np.testing.assert_array_equal(priced.capacity_gpus, free.capacity_gpus)
    for kind in (CapType.IMPORT_CAPACITY_LIMIT, CapType.LOAD_LIMIT):
        np.testing.assert_array_equal(priced.caps_mw[kind], free.caps_mw[kind])
    assert CapType.PRICE not in priced.caps_mw
    assert priced.caps_in_force(3) == []  # run.csv names limits only
    # under the cost objective a grid MWh weighs its price there
    assert priced.objective_per_mwh[0, 3] == 900.0
    # a problem made from another by with_caps follows its own prices, not the other's
    assert free.with_caps(priced.caps).price_per_mwh[0, 3] == 900.0
    assert priced.with_caps(()).objective_per_mwh[0, 3] == 185.0
    again = priced.with_caps([*priced.caps])
    assert again.price_per_mwh is priced.price_per_mwh  # the same prices: shared, not remade


def test_a_price_is_a_row_of_the_caps_table(tmp_path):
    from scheduler.problem import caps_frame, read_caps

    caps = [_price(6, 8, 1234.5, "tou-1")]
    path = tmp_path / "caps.csv"
    caps_frame(caps).to_csv(path, index=False)
    assert list(read_caps(path, ["a"])) == caps
    assert _problem(read_caps(path, ["a"])).price_per_mwh[0, 7] == pytest.approx(1234.5)


def test_the_settled_tables_cost_grid_energy_at_the_price_in_force():
    # the plan's site-load table (run.csv's grid_cost, replay, summaries) and its metrics price
    # a slot's grid energy at the event's price where one is in force, as the planner does
    problem = _problem([_price(6, 8, 10_000.0)], objective=(1.0, 0.0))  # carbon: hours 6, 7
    result = get_policy("optimizer").plan(problem)
    load = site_load(result.plan, problem.supply, problem.sites, problem.horizon, problem.caps,
                     jobs=problem.jobs)  # fmt: skip
    assert load["grid_cost"].tolist() == pytest.approx([0.0] * 6 + [0.1 * 10_000.0] * 2)
    metrics = plan_metrics(result.plan, problem.jobs, problem.supply, problem.sites,
                           problem.horizon, problem.caps)  # fmt: skip
    assert metrics.cost == pytest.approx(2 * 0.1 * 10_000.0)
