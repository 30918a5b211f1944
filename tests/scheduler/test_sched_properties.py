"""Properties on random small feasible instances (hypothesis, real OR-Tools)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheduler_testkit import START, job, make_problem, plan_all, site

from scheduler.metrics import busy_gpus, plan_metrics
from scheduler.policies.optimizer import lp_bound
from scheduler.problem import IMPORT_CAPACITY_LIMIT, LoadCap
from scheduler.ramps import load_steps_mw

N_SLOTS = 6
REL = 1e-4  # the price tie-break may trade away up to ~1e-5 of CO2 per GPU-slot


@st.composite
def instances(draw):
    sites = [
        site("a", gpus=draw(st.integers(6, 20)), carbon=draw(st.sampled_from([300.0, 600.0]))),
        site("b", gpus=draw(st.integers(6, 20)), carbon=draw(st.sampled_from([450.0, 700.0])),
             base_load_mw=0.001),
    ]  # fmt: skip
    green = np.array(draw(st.lists(st.floats(0, 0.02), min_size=2 * N_SLOTS, max_size=2 * N_SLOTS)))
    jobs = []
    for i in range(draw(st.integers(1, 5))):
        first = draw(st.integers(0, N_SLOTS - 2))
        end = draw(st.integers(first + 1, N_SLOTS))
        max_gpus = draw(st.integers(1, 5))
        units = draw(st.integers(1, max_gpus * (end - first)))
        allowed = draw(st.sampled_from([(), ("a",), ("b",)]))
        jobs.append(job(f"j{i}", float(units), max_gpus, first, end, sites=allowed))
    return make_problem(sites, green.reshape(2, N_SLOTS), jobs)


def _optimum(problem) -> float:
    return plan_all(problem, names=("optimizer",), relative_gap=0.0)["optimizer"].objective_kg


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_optimizer_is_never_worse_than_the_heuristics_nor_better_than_the_bound(problem):
    results = plan_all(problem, relative_gap=0.0)
    best = results["optimizer"].objective_kg
    for rival in ("fifo", "greedy"):
        assert best <= results[rival].objective_kg * (1 + REL) + 1e-9
    assert best >= lp_bound(problem) * (1 - 1e-9) - 1e-9
    # the reported bound holds below every plan any policy found
    bound = results["optimizer"].best_bound_kg
    assert bound is not None
    assert bound <= min(r.objective_kg for r in results.values()) * (1 + 1e-9) + 1e-9


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.integers(0, N_SLOTS - 1), st.floats(0.0, 0.01))
def test_a_cap_never_lowers_the_optimum(problem, slot, value_mw):
    start = START + np.timedelta64(slot, "h")
    cap = LoadCap("a", start, start + np.timedelta64(2, "h"), IMPORT_CAPACITY_LIMIT, value_mw)
    capped = replace(problem, caps=(cap,))
    assert _optimum(capped) >= _optimum(problem) * (1 - REL) - 1e-9


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.floats(0.0, 0.01))
def test_more_green_never_raises_the_optimum(problem, extra_mw):
    greener = problem.supply.assign(green_mw=problem.supply["green_mw"] + extra_mw)
    assert _optimum(replace(problem, supply=greener)) <= _optimum(problem) * (1 + REL) + 1e-9


@st.composite
def ramped_instances(draw):
    """:func:`instances` with ramp limits (1 to 8 GPUs per hourly slot, up and down, or none)
    and a known load before the first slot."""
    problem = draw(instances())

    def limit():
        return draw(st.sampled_from([None, 1 / 60, 2 / 60, 4 / 60, 8 / 60]))  # [kW/min] per GPU

    sites = tuple(
        s.model_copy(update={"ramp_up_mw_per_min": None if (r := limit()) is None else r / 1000,
                             "ramp_down_mw_per_min": None if (d := limit()) is None else d / 1000})
        for s in problem.sites
    )  # fmt: skip
    initial = tuple(
        s.base_load_mw + draw(st.integers(0, s.gpus)) * s.mw_per_gpu for s in problem.sites
    )
    return replace(problem, sites=sites, initial_load_mw=initial)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ramped_instances())
def test_no_policy_ever_steps_above_a_ramp_limit(problem):
    results = plan_all(problem)  # the validator holds ramps, falls included (with exemptions)
    for result in results.values():
        load = metrics_load(problem, result.plan)
        rises = load_steps_mw(load, np.array(problem.initial_load_mw))
        assert (rises <= problem.ramp_up_mw[:, None] + 1e-9).all()
        metrics = plan_metrics(
            result.plan,
            problem.jobs,
            problem.supply,
            problem.sites,
            problem.horizon,
            initial_load_mw=problem.initial_load_mw,
        )
        for s, name in enumerate(problem.site_names):  # the metrics measure the same steps
            assert metrics.largest_step_mw[name] == pytest.approx(np.abs(rises[s]).max())
            assert metrics.total_swing_mw[name] == pytest.approx(np.abs(rises[s]).sum())


def metrics_load(problem, plan) -> np.ndarray:
    """Site load ``[site, slot]`` [MW] of a plan."""
    gpus = busy_gpus(plan, problem.site_names, problem.horizon)
    return problem.base_load_mw[:, None] + gpus * problem.mw_per_gpu[:, None]
