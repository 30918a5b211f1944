"""Energy follows the work asked: whole GPU-slots hold capacity, but a job's last GPU-slot draws
only the part of it the job's GPU-hours need."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scheduler_testkit import job, make_problem, site

from scheduler.config import SolverSettings, load_config
from scheduler.jobs import unused_in_last_slot
from scheduler.metrics import plan_metrics, site_load
from scheduler.pipeline import DayPipeline
from scheduler.policies import get_policy
from scheduler.policies.base import PlanArrays, objective_kg


def test_a_finished_jobs_last_slot_draws_only_the_work_left_for_it():
    # 15-min slots: 1.1 GPU-h is 4.4 GPU-slots, placed as 5; the last one at 0.4 of a GPU
    job_, site_, slot, gpus = (np.array(v) for v in ([0, 0, 0, 1], [0, 0, 1, 1], [3, 4, 2, 0],
                                                     [2, 3, 1, 1]))  # fmt: skip
    idle = unused_in_last_slot(job_, site_, slot, gpus, np.array([1.1, 0.5]), 15, (2, 6))
    expected = np.zeros((2, 6))
    expected[0, 4] = 0.6  # job 0 ended in slot 4 at site 0
    # job 1: 0.5 GPU-h is 2 GPU-slots, 1 placed: unfinished, every placed GPU-slot is used
    np.testing.assert_allclose(idle, expected)


def test_a_days_load_energy_is_its_work_as_asked_not_its_whole_gpu_slots():
    config = load_config()
    pipeline = DayPipeline(config)
    problem = pipeline.problem(pipeline.horizon("2026-04-11"))
    # work that does not fill whole 15-min GPU-slots, each job at one site all day
    problem = replace(problem, max_site_moves=0, jobs=problem.jobs.assign(
        gpu_hours=problem.jobs["gpu_hours"] * 0.97 + 0.01))  # fmt: skip
    result = get_policy("greedy", SolverSettings()).plan(problem)
    assert not result.jobs_unfinished
    load = site_load(result.plan, problem.supply, problem.sites, problem.horizon, problem.caps,
                     jobs=problem.jobs)  # fmt: skip
    base_mwh = problem.base_load_mw.sum() * problem.horizon.n_slots * problem.slot_hours
    kw_per_gpu = {s.name: s.kw_per_gpu * s.pue for s in problem.sites}
    busy = result.plan.merge(problem.jobs[["job_id", "gpu_hours"]], on="job_id")
    by_site = busy.groupby("job_id")["site"].agg(set)
    assert all(len(sites) == 1 for sites in by_site)
    site_of = busy.drop_duplicates("job_id").set_index("job_id")["site"]
    asked_mwh = sum(
        h * kw_per_gpu[site_of[j]] / 1000
        for j, h in zip(problem.jobs["job_id"], problem.jobs["gpu_hours"], strict=True)
    )
    energy_mwh = load["load_mw"].sum() * problem.slot_hours - base_mwh
    assert energy_mwh == pytest.approx(asked_mwh, rel=1e-9)
    rounded_mwh = (result.plan["gpus"] * result.plan["site"].map(kw_per_gpu)).sum() / 1000 * 0.25
    # the whole GPU-slots would overstate it by each job's unused part of its last GPU-slot
    units = np.ceil(problem.jobs["gpu_hours"].to_numpy() / 0.25 - 1e-9)
    excess_mwh = sum(
        (u * 0.25 - h) * kw_per_gpu[site_of[j]] / 1000
        for j, h, u in zip(problem.jobs["job_id"], problem.jobs["gpu_hours"], units, strict=True)
    )
    assert excess_mwh > 0.01
    assert rounded_mwh - energy_mwh == pytest.approx(excess_mwh, rel=1e-6)
    metrics = plan_metrics(result.plan, problem.jobs, problem.supply, problem.sites,
                           problem.horizon, problem.caps)  # fmt: skip
    assert metrics.energy_used_mwh == pytest.approx(energy_mwh + base_mwh, rel=1e-9)


def test_the_objective_charges_the_work_as_asked():
    # one site, 1 h slots, no green: 2.5 GPU-h at 1 kW on a 500 kg/MWh grid is 1.25 kg
    problem = make_problem([site("a", gpus=4)], [[0.0, 0.0, 0.0]], [job("j", 2.5, 1, 0, 3)])
    arrays = PlanArrays(*(np.array(v) for v in ([0, 0, 0], [0, 0, 0], [0, 1, 2], [1, 1, 1])))
    assert objective_kg(problem, arrays) == pytest.approx(2.5 * 0.001 * 500.0)
