"""The flow model against the plain time-indexed LP solved by GLOP."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scheduler_testkit import START, job, make_problem, site

from scheduler.config import SolverSettings
from scheduler.policies import get_policy
from scheduler.policies.flow import group_jobs, site_tiers, solve_flow
from scheduler.policies.lp_reference import solve_time_indexed_lp
from scheduler.policies.optimizer import lp_bound, relaxed_flow
from scheduler.problem import LOAD_LIMIT, LoadCap
from scheduler.validate import assert_valid


def _random_problem(seed: int, same_duration: bool):
    rng = np.random.default_rng(seed)
    sites = [site("a", gpus=12, carbon=600.0, base_load_mw=0.002), site("b", gpus=8, carbon=450.0)]
    n_slots = 8
    green = rng.uniform(0, 0.012, size=(2, n_slots))
    jobs = []
    for i in range(6):
        first = int(rng.integers(0, 4))
        end = int(rng.integers(first + 2, n_slots + 1))
        max_gpus = int(rng.integers(1, 6))
        slots = 2 if same_duration else int(rng.integers(1, end - first + 1))
        gpu_hours = float(max_gpus * slots - (0 if same_duration else rng.integers(0, max_gpus)))
        sites_ = rng.choice(["", "a", "b"])
        if same_duration:
            first, end, sites_ = 1, 7, ""
        jobs.append(job(f"j{i}", max(gpu_hours, 1.0), max_gpus, first, end,
                        sites=(sites_,) if sites_ else ()))  # fmt: skip
    return make_problem(sites, green, jobs)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_flow_bound_equals_the_time_indexed_lp(seed):
    problem = _random_problem(seed, same_duration=False)
    lp = solve_time_indexed_lp(problem)
    assert lp.status == "OPTIMAL"
    assert relaxed_flow(problem).co2_kg == pytest.approx(lp.objective_kg, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_the_bound_on_the_work_as_asked_is_below_its_lp_and_every_plan(seed):
    problem = _random_problem(seed, same_duration=False)
    asked = solve_time_indexed_lp(problem, as_asked=True)
    rounded = solve_time_indexed_lp(problem)
    assert asked.status == "OPTIMAL"
    assert asked.objective_kg <= rounded.objective_kg + 1e-9  # less work, never dearer
    assert lp_bound(problem) <= asked.objective_kg * (1 + 1e-7) + 1e-9
    result = get_policy("optimizer", SolverSettings()).plan(problem)
    assert result.objective_kg >= asked.objective_kg * (1 - 1e-7) - 1e-9
    assert result.best_bound_kg == pytest.approx(lp_bound(problem))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_flow_with_ranked_costs_equals_the_time_indexed_lp(seed):
    problem = _random_problem(seed, same_duration=False)
    groups = group_jobs(problem, np.arange(problem.n_jobs), problem.site_mask, by_preemptible=True)
    tiers = site_tiers(problem, np.zeros((len(problem.sites), problem.horizon.n_slots)))
    flow = solve_flow(problem, groups, tiers, tie_break=False)
    lp = solve_time_indexed_lp(problem)
    assert flow.co2_kg == pytest.approx(lp.objective_kg, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_site_slots_closed_by_caps_leave_the_network_and_the_flow_still_equals_the_lp(seed):
    """Caps close site a in slots 2-5 (its base load only) and b in slots 3-4: no job reaches
    those site-slots, a job with one of its sites open in a slot reaches it without a (job,
    slot) node, so the network shrinks, and its optimum is still the LP's."""
    problem = _random_problem(seed, same_duration=False)
    hour = pd.Timedelta(hours=1)
    capped = replace(problem, caps=(
        LoadCap("a", START + 2 * hour, START + 6 * hour, LOAD_LIMIT, 0.002),
        LoadCap("b", START + 3 * hour, START + 5 * hour, LOAD_LIMIT, 0.0),
    ))  # fmt: skip
    groups = group_jobs(problem, np.arange(problem.n_jobs), problem.site_mask, by_preemptible=True)
    fixed = np.zeros((len(problem.sites), problem.horizon.n_slots))
    open_ = solve_flow(problem, groups, site_tiers(problem, fixed), tie_break=False)
    closed = solve_flow(capped, groups, site_tiers(capped, fixed), tie_break=False)
    assert closed.n_nodes < open_.n_nodes and closed.n_arcs < open_.n_arcs
    lp = solve_time_indexed_lp(capped)
    assert closed.co2_kg == pytest.approx(lp.objective_kg, rel=1e-9, abs=1e-12)
    in_closed = ((closed.site == 0) & (closed.slot >= 2) & (closed.slot < 6)) | (
        (closed.site == 1) & (closed.slot >= 3) & (closed.slot < 5)
    )
    assert not in_closed.any()


def test_ranked_costs_tell_apart_costs_below_the_scaled_resolution():
    # a's and b's grid CO2 differ by 1e-9 of the dearest site's, far below 2**-24: costs scaled
    # to integers of 2**24 for the dearest would both round to 0; ranked they stay apart
    sites = [site("dear", gpus=4, carbon=1000.0), site("a", gpus=4, carbon=2e-6),
             site("b", gpus=4, carbon=1e-6)]  # fmt: skip
    problem = make_problem(sites, np.zeros((3, 4)), [job("j", 4.0, 2, 0, 4, sites=("a", "b"))])
    groups = group_jobs(problem, np.arange(1), problem.site_mask)
    flow = solve_flow(problem, groups, site_tiers(problem, np.zeros((3, 4))), tie_break=False)
    assert set(flow.site.tolist()) == {2}
    assert flow.gpus.sum() == 4


@pytest.mark.parametrize("seed", [4, 5])
def test_flow_optimum_equals_the_lp_when_aggregation_is_exact(seed):
    problem = _random_problem(seed, same_duration=True)
    lp = solve_time_indexed_lp(problem)
    result = get_policy("optimizer", SolverSettings(relative_gap=0.0)).plan(problem)
    assert_valid(problem, result)
    assert result.objective_kg == pytest.approx(lp.objective_kg, rel=1e-5, abs=1e-9)
    assert result.status == "OPTIMAL"


def test_non_preemptible_jobs_run_in_one_block_and_report_a_gap():
    sites = [site("a", gpus=10), site("b", gpus=10, carbon=300.0)]
    green = np.zeros((2, 6))
    green[0, 2:4] = 0.006
    jobs = [job("np", 8.0, 4, 0, 6, preemptible=False), job("p", 6.0, 3, 0, 6)]
    problem = make_problem(sites, green, jobs)
    result = get_policy("optimizer").plan(problem)
    assert_valid(problem, result)
    run = result.plan[result.plan.job_id == "np"]
    assert run["site"].nunique() == 1 and len(run) == 2 and (run["gpus"] == 4).all()
    assert result.gap is not None and result.gap >= 0
    assert result.objective_kg >= result.best_bound_kg * (1 - 1e-9)


def _two_site_day(green_cells: list[tuple[int, int]]):
    """Sites a (300 kg/MWh) and b (450, 1 kW base load) of 6 GPUs, 6 hourly slots, green of
    15.6 kW in ``(site, slot)`` cells only."""
    green = np.zeros((2, 6))
    for cell in green_cells:
        green[cell] = 0.015625
    return [
        site("a", gpus=6, carbon=300.0),
        site("b", gpus=6, carbon=450.0, base_load_mw=0.001),
    ], green


@pytest.mark.parametrize(
    ("green_cells", "jobs", "grid_gpu_slots"),
    [
        # one job, 2 GPUs a slot across both sites: the profile must not ask 2 at a and 1 at b
        # in the same slot (it did, and the plan ran 2 GPU-slots on grid instead of 1)
        ([(0, 1), (1, 0), (1, 1)], [job("j", 5.0, 2, 0, 3)], {"a": 1}),
        # j0 must run at its cap of 2 in every slot: the profile cannot move its work
        ([(1, 2), (1, 3), (1, 5)], [job("j0", 12.0, 2, 0, 6), job("j1", 1.0, 1, 0, 4)],
         {"a": 6}),
    ],
)  # fmt: skip
def test_the_optimizer_matches_the_least_grid_plan_where_its_load_profile_cannot_be_met(
    green_cells, jobs, grid_gpu_slots
):
    sites, green = _two_site_day(green_cells)
    problem = make_problem(sites, green, jobs)
    settings = SolverSettings(relative_gap=0.0)
    result = get_policy("optimizer", settings).plan(problem)
    assert_valid(problem, result)
    green_at = {("ab"[s], t) for s, t in green_cells}
    grid: dict[str, int] = {}
    for row in result.plan.itertuples():
        if (row.site, row.time.hour) not in green_at:
            grid[row.site] = grid.get(row.site, 0) + int(row.gpus)
    assert grid == grid_gpu_slots
    assert result.objective_kg <= get_policy("greedy").plan(problem).objective_kg * (1 + 1e-9)


def test_blocks_go_where_the_supply_carries_them_when_the_bound_load_would_crowd_them():
    """Green is 1, 2, 3, 3 GPUs (1 kW each, 500 g/kWh). Blocks: ``long`` (5 GPU-h, 3 then 2
    GPUs, slots 1-3), ``early`` (1 GPU in slot 1), ``any`` (1 GPU, slots 1-3); ``mid`` is
    preemptible (1 GPU in slot 2). Placed on top of the bound's preemptible load, ``long``
    starts in slot 1 (4 GPUs there, 2 on the grid: 1 kg); placed on the supply alone it starts
    in slot 2, and only 1 GPU-slot draws from the grid: 0.5 kg, the optimum."""
    problem = make_problem(
        [site("a", gpus=4)],
        np.array([[0.001, 0.002, 0.003, 0.003]]),
        [
            job("any", 1, 2, 1, 4, preemptible=False),
            job("long", 5, 3, 1, 4, preemptible=False),
            job("early", 1, 2, 1, 2, preemptible=False),
            job("mid", 1, 2, 2, 3),
        ],
    )
    result = get_policy("optimizer", SolverSettings()).plan(problem)
    assert_valid(problem, result)
    assert result.objective_kg == pytest.approx(0.5)
    long = result.plan[result.plan["job_id"] == "long"].sort_values("time")
    assert long["gpus"].tolist() == [3, 2] and long["time"].iloc[0] == problem.horizon.times[2]
