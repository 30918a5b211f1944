"""The optimizer with site batteries: its bound against an LP that models every unit as it is,
its plans against that bound and against the storage rule's baselines."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scheduler_testkit import job, make_problem, site

from scheduler.config import SolverSettings, load_config
from scheduler.pipeline import DayPipeline
from scheduler.policies import get_policy
from scheduler.policies.base import PlanArrays, objective_kg
from scheduler.policies.battery import battery_tiers
from scheduler.policies.flow import site_tiers
from scheduler.policies.lp_reference import solve_time_indexed_lp
from scheduler.policies.optimizer import lp_bound
from scheduler.storage import StorageUnit
from scheduler.validate import assert_valid


def _problem(seed: int, storage_a: dict, storage_b: dict | None = None, n_slots: int = 12):
    """Two sites (a: dirtier, b: cleaner grid), random green with a sunny middle, random jobs
    with windows and site sets; ``storage_*`` unit name -> StorageUnit fields."""
    rng = np.random.default_rng(seed)
    units_a = {name: StorageUnit(**fields) for name, fields in storage_a.items()}
    units_b = {name: StorageUnit(**fields) for name, fields in (storage_b or {}).items()}
    sites = [
        site("a", gpus=16, carbon=600.0, base_load_mw=0.002, storage=units_a),
        site("b", gpus=10, carbon=450.0, storage=units_b),
    ]
    sun = np.sin(np.linspace(0, np.pi, n_slots)) ** 2
    green = rng.uniform(0, 0.004, size=(2, n_slots)) + 0.012 * sun * rng.uniform(0.5, 1.5, (2, 1))
    jobs = []
    for i in range(8):
        first = int(rng.integers(0, n_slots // 2))
        end = int(rng.integers(first + 2, n_slots + 1))
        max_gpus = int(rng.integers(1, 6))
        gpu_hours = float(rng.integers(1, max_gpus * (end - first) + 1))
        sites_ = rng.choice(["", "a", "b"])
        jobs.append(job(f"j{i}", gpu_hours, max_gpus, first, end,
                        sites=(sites_,) if sites_ else ()))  # fmt: skip
    return make_problem(sites, green, jobs)


LOSSLESS = {"battery": {"p_nom": 0.004, "max_hours": 3.0}}
LOSSY = {
    "fast": {"p_nom": 0.003, "max_hours": 1.0, "efficiency_store": 0.9,
             "efficiency_dispatch": 0.95, "standing_loss": 0.01, "state_of_charge_initial": 0.001},
    "slow": {"p_nom": 0.001, "max_hours": 4.0, "efficiency_store": 0.8,
             "efficiency_dispatch": 0.85, "state_of_charge_min": 0.0005,
             "state_of_charge_initial": 0.002, "cyclic_state_of_charge": True},
}  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("storage", [LOSSLESS, LOSSY], ids=["lossless", "two-lossy-units"])
def test_the_bound_with_storage_is_below_the_lp_of_every_unit_and_the_plan_above_it(seed, storage):
    problem = _problem(seed, storage, {"b1": {"p_nom": 0.002, "max_hours": 2.0}})
    lp = solve_time_indexed_lp(problem, as_asked=True)
    assert lp.status == "OPTIMAL"
    bound = lp_bound(problem)
    plan = get_policy("optimizer", SolverSettings()).plan(problem)
    assert_valid(problem, plan)
    assert bound <= lp.objective_kg * (1 + 1e-7) + 1e-7
    assert plan.objective_kg >= lp.objective_kg * (1 - 1e-7) - 1e-7
    assert plan.best_bound_kg == pytest.approx(bound)


@pytest.fixture(scope="module")
def day_with_batteries():
    """A default day (synthetic weather, 140 jobs) with a battery of 2 hours of each site's
    mean load, 95 % efficient each way, and the same day without."""
    config = load_config()
    pipeline = DayPipeline(config.with_storage_hours(2.0))
    stored = pipeline.problem(pipeline.horizon("2026-04-11"))
    plain = replace(stored, sites=tuple(s.model_copy(update={"storage": {}}) for s in stored.sites))
    return plain, stored


def test_on_a_day_the_optimizer_with_storage_is_within_1_percent_of_an_honest_bound(
    day_with_batteries,
):
    plain, stored = day_with_batteries
    lp = solve_time_indexed_lp(stored, as_asked=True)
    settings = SolverSettings()
    optimizer = get_policy("optimizer", settings).plan(stored)
    assert optimizer.best_bound_kg is not None and optimizer.gap is not None
    assert optimizer.best_bound_kg <= lp.objective_kg * (1 + 1e-7)  # a bound
    assert optimizer.objective_kg >= lp.objective_kg * (1 - 1e-7)
    assert optimizer.gap <= 0.01
    # storage lowers the bound, and the optimizer uses it better than greedy under the rule
    # and than its own plan made without the battery, scored with it
    assert lp_bound(stored) < lp_bound(plain) * 0.99
    greedy = get_policy("greedy", settings).plan(stored)
    blind = get_policy("optimizer", settings).plan(plain).positions
    assert blind is not None
    assert optimizer.objective_kg < greedy.objective_kg
    assert optimizer.objective_kg < objective_kg(stored, blind)


def test_storage_valued_at_nothing_is_a_free_source_of_its_power():
    # mu = 0: the Lagrangian lets the battery give p_nom in every slot for nothing, so each
    # GPU costs what it costs on a site with that much more green, GPU by GPU
    stored = _problem(5, LOSSLESS)
    power = LOSSLESS["battery"]["p_nom"]
    more_green = stored.supply.assign(
        green_mw=stored.supply["green_mw"] + np.where(stored.supply["site"] == "a", power, 0.0)
    )
    plain = replace(
        stored,
        supply=more_green,
        sites=tuple(s.model_copy(update={"storage": {}}) for s in stored.sites),
    )
    none = np.zeros((2, stored.horizon.n_slots))
    expected = site_tiers(plain, none)
    valued = battery_tiers(stored, none, np.zeros_like(none))
    for s in range(2):
        for t in range(stored.horizon.n_slots):
            a = np.repeat(expected.co2_kg[:, s, t], expected.capacity[:, s, t])
            b = np.repeat(valued.co2_kg[:, s, t], valued.capacity[:, s, t])
            np.testing.assert_allclose(b, a, atol=1e-9)
    assert valued.fixed_co2_kg == pytest.approx(expected.fixed_co2_kg)


def test_a_plans_objective_counts_the_green_its_battery_gives_back():
    # 1 h slots; site a: 10 GPUs of 1 kW on 0.008 MW green then none; lossless 5 kWh battery
    sa = site("a", gpus=10, carbon=500.0, storage={"b": StorageUnit(p_nom=0.005, max_hours=1)})
    problem = make_problem([sa], [[0.008, 0.0]], [job("j", 8.0, 4, 0, 2)])
    arrays = PlanArrays(*(np.array(v) for v in ([0, 0], [0, 0], [0, 1], [4, 4])))
    # slot 0: 4 kW load, 4 kW surplus charged; slot 1: 4 kW load served by the battery
    assert objective_kg(problem, arrays) == pytest.approx(0.0, abs=1e-12)
    unstored = make_problem([site("a", gpus=10)], [[0.008, 0.0]], [job("j", 8.0, 4, 0, 2)])
    assert objective_kg(unstored, arrays) == pytest.approx(0.004 * 500.0)
