"""Every policy on known-optimum, default-workload, capped and move-limited problems."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from scheduler_testkit import START, job, make_problem, plan_all, supply_frame

from scheduler.contracts import PLAN
from scheduler.horizon import Horizon
from scheduler.jobs import generate_jobs
from scheduler.metrics import plan_metrics
from scheduler.policies import POLICIES, get_policy
from scheduler.policies.base import PlanArrays, objective_kg
from scheduler.problem import IMPORT_CAPACITY_LIMIT, LOAD_LIMIT, LoadCap, Problem


def test_one_job_runs_where_and_when_the_green_is(two_sites):
    green = np.zeros((2, 4))
    green[1, 2] = 0.001  # one GPU's worth at the far site in slot 2 only
    problem = make_problem(two_sites, green, [job("j", 1.0, 1, 0, 4)])
    results = plan_all(problem, names=("fifo", "greedy", "optimizer"))
    best = results["optimizer"]
    assert best.plan[["site", "time", "gpus"]].values.tolist() == [
        ["far", START + pd.Timedelta(hours=2), 1]
    ]
    assert best.objective_kg == pytest.approx(0.0, abs=1e-9)
    assert best.status == "OPTIMAL"
    assert best.best_bound_kg == pytest.approx(0.0, abs=1e-9)
    # fifo: earliest slot at the nearest site, on grid power (1 kW for 1 h at 500 kg/MWh)
    assert results["fifo"].plan[["site", "time"]].values.tolist() == [["near", START]]
    assert results["fifo"].objective_kg == pytest.approx(0.5)


def test_registry_names_and_errors():
    assert set(POLICIES) == {"fifo", "greedy", "optimizer", "oracle"}
    with pytest.raises(ValueError, match="unknown policy 'fast'; allowed: fifo, greedy"):
        get_policy("fast")


def _default_problem(config, caps=(), max_site_moves=None) -> Problem:
    horizon = Horizon(START, config.forecast.slot_minutes, 96)
    names = list(config.sites)
    hours = np.arange(horizon.n_slots) * horizon.slot_hours + 8  # local time in Shanghai
    pv = np.clip(np.sin((hours - 6) / 12 * np.pi), 0, None)
    green = np.stack([30 * pv + 6 + 5 * np.sin(hours / 5), 6 * pv + 6 + 5 * np.sin(hours / 5 + 1)])
    return Problem(
        horizon=horizon,
        sites=tuple(config.sites.values()),
        jobs=generate_jobs(config.workload, START, config.seed, names),
        supply=supply_frame(horizon, names, green),
        actual_supply=supply_frame(horizon, names, green * 0.85),
        caps=tuple(caps),
        user_region=config.workload.user_region,
        max_site_moves=max_site_moves,
    )


@pytest.fixture(scope="module")
def default_results(config):
    problem = _default_problem(config)
    return problem, plan_all(problem, names=tuple(POLICIES))


def test_default_workload_optimizer_beats_fifo_and_greedy(default_results):
    problem, results = default_results
    metrics = {
        name: plan_metrics(r.plan, problem.jobs, problem.supply, problem.sites, problem.horizon)
        for name, r in results.items()
    }
    best = metrics["optimizer"]
    assert best.jobs_unfinished == 0 and best.cap_violations == 0
    for rival in ("fifo", "greedy"):
        assert best.green_share > metrics[rival].green_share
        assert results["optimizer"].objective_kg <= results[rival].objective_kg
    assert results["optimizer"].gap < 0.01


def test_every_policy_plan_is_a_canonical_plan_table(default_results):
    """The settlement engine takes a policy's plan unchecked: it must be canonical as made."""
    _, results = default_results
    for name, result in results.items():
        pd.testing.assert_frame_equal(PLAN.canonical(result.plan), result.plan, obj=name)


def test_oracle_plans_on_actual_supply_and_wins_there(default_results):
    problem, results = default_results
    oracle, forecast_plan = results["oracle"], results["optimizer"]
    assert oracle.supply_basis == "actual"
    actual = problem.on_actual_supply()
    settled = objective_kg(actual, _arrays(actual, forecast_plan.plan))
    assert oracle.objective_kg <= settled * (1 + 1e-6)


def _arrays(problem: Problem, plan: pd.DataFrame) -> PlanArrays:
    job = pd.Index(problem.job_ids).get_indexer(plan["job_id"])
    site = pd.Index(problem.site_names).get_indexer(plan["site"])
    slot = pd.Index(problem.horizon.times).get_indexer(plan["time"])
    return PlanArrays(job, site, slot, plan["gpus"].to_numpy())


def test_caps_and_move_limit_hold_for_every_policy(config):
    caps = [
        LoadCap(
            "shantou",
            START + pd.Timedelta(hours=2),
            START + pd.Timedelta(hours=6),
            IMPORT_CAPACITY_LIMIT,
            2.0,
        ),
        LoadCap(
            "qingyang",
            START + pd.Timedelta(hours=10, minutes=5),
            START + pd.Timedelta(hours=14),
            LOAD_LIMIT,
            12.0,
        ),
    ]
    problem = _default_problem(config, caps=caps, max_site_moves=0)
    for name, result in plan_all(problem).items():
        m = plan_metrics(
            result.plan, problem.jobs, problem.supply, problem.sites, problem.horizon, problem.caps
        )
        assert m.cap_violations == 0, name
        # one site per job
        assert (result.plan.groupby("job_id")["site"].nunique() == 1).all(), name


def test_greedy_compiles_its_loop_once_whatever_the_problem_came_from(config):
    """Job columns come out of pandas read-only, and so do arrays unpickled from bytes (as the
    service's solver process gets them); numba types read-only arrays apart and would compile
    the loop again (10-30 s, on the critical path of a batch of caps). Greedy plans each with
    the one loop its warm-up compiled, the same plan."""
    from scheduler.policies import greedy

    greedy.warm_up()
    problem = _default_problem(config)
    assert not problem.max_gpus.flags.writeable
    here = greedy.GreedyPolicy().plan(problem)
    there = greedy.GreedyPolicy().plan(pickle.loads(pickle.dumps(problem, protocol=5)))
    pd.testing.assert_frame_equal(there.plan, here.plan)
    assert len(greedy._plan_slots.signatures) == 1
