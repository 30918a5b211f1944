"""Infeasible input names the jobs; the validator catches broken plans."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scheduler_testkit import START, job, make_problem, site

from scheduler.feasibility import PlanningError, check_feasible
from scheduler.pipeline import plan_day
from scheduler.policies import get_policy
from scheduler.problem import LOAD_LIMIT, LoadCap
from scheduler.validate import validate_plan

HOUR = pd.Timedelta(hours=1)


def test_job_that_fits_nowhere_is_named(config):
    sites = [site("qingyang", gpus=100), site("shantou", gpus=10)]
    jobs = [
        job("fine", 4.0, 2, 0, 4),
        job("too-big-for-shantou", 50.0, 20, 0, 4, sites=("shantou",)),
        job("no-block", 6.0, 3, 0, 4, sites=("shantou",), preemptible=False),
    ]
    caps_free = make_problem(sites, np.zeros((2, 4)), jobs)
    squeezed = replace(caps_free, sites=(sites[0], site("shantou", gpus=2)))
    with pytest.raises(PlanningError) as error:
        check_feasible(squeezed)
    text = str(error.value)
    assert "too-big-for-shantou: needs 50 GPU-h at shantou; at most 8 fit" in text
    assert "no-block: needs 6 GPU-h in one contiguous run at one site at shantou" in text
    assert "fine" not in text
    with pytest.raises(PlanningError):
        plan_day(squeezed, config, ["optimizer"])


def test_validator_names_each_broken_rule(two_sites):
    problem = make_problem(two_sites, np.zeros((2, 4)), [job("j", 2.0, 1, 1, 3, sites=("near",))])
    good = get_policy("fifo").plan(problem)
    assert validate_plan(problem, good) == []
    bad_plan = pd.DataFrame(
        {
            "job_id": ["j", "j"],
            "site": ["far", "near"],
            "time": [START, START + pd.Timedelta(hours=1)],
            "gpus": [1, 5],
        }
    )
    rules = {v.rule for v in validate_plan(problem, replace(good, plan=bad_plan))}
    assert {"window", "allowed_sites", "max_gpus", "work"} <= rules


def test_validator_finds_duplicates_unknown_rows_and_split_blocks(two_sites):
    jobs = [job("p", 2.0, 2, 0, 4), job("np", 2.0, 1, 0, 4, preemptible=False)]
    problem = make_problem(two_sites, np.zeros((2, 4)), jobs)
    good = get_policy("fifo").plan(problem)
    assert validate_plan(problem, good) == []
    hour = pd.Timedelta(hours=1)
    bad_plan = pd.DataFrame(
        {
            "job_id": ["p", "p", "np", "np", "ghost", "p"],
            "site": ["near", "near", "near", "far", "near", "far"],
            "time": [START, START, START, START + 2 * hour, START, START + 0.5 * hour],
            "gpus": [1, 1, 1, 1, 1, 1],
        }
    )
    violations = {v.rule: v.message for v in validate_plan(problem, replace(good, plan=bad_plan))}
    assert "2 row(s)" in violations["duplicate_rows"]
    # the unknown job and the row off the slot grid
    assert violations["unknown"].startswith("2 row(s): ghost@near")
    assert "p@far 2026-06-01 00:30" in violations["unknown"]
    assert "np" in violations["non_preemptible"]
    # a block at one site with a gap between its slots is broken too; one run is not
    gap = bad_plan.iloc[[2]].assign(time=[START + 2 * hour])
    gapped = pd.concat([bad_plan.iloc[[2]], gap])
    rules = {v.rule for v in validate_plan(problem, replace(good, plan=gapped))}
    assert "non_preemptible" in rules
    run = pd.concat([bad_plan.iloc[[2]], gap.assign(time=[START + hour])])
    rules = {v.rule for v in validate_plan(problem, replace(good, plan=run))}
    assert "non_preemptible" not in rules


def test_validator_names_the_site_slots_over_site_gpus_and_over_a_cap(two_sites):
    """Site ``near`` has 100 GPUs at 1 kW; a 0.03 MW load cap binds it in hour 1."""
    problem = make_problem(two_sites, np.zeros((2, 4)), [job("j", 150.0, 200, 0, 4)])
    cap = LoadCap("near", START + HOUR, START + 2 * HOUR, LOAD_LIMIT, 0.03)
    capped = replace(problem, caps=(cap,))
    good = get_policy("fifo").plan(capped)
    assert validate_plan(capped, good) == []
    bad_plan = pd.DataFrame(
        {
            "job_id": ["j", "j"],
            "site": ["near", "near"],
            "time": [START, START + HOUR],
            "gpus": [110, 40],  # 10 over the site's GPUs; 40 kW against the 30 kW cap
        }
    )
    violations = {v.rule: v.message for v in validate_plan(capped, replace(good, plan=bad_plan))}
    assert violations["site_capacity"].startswith("1 site-slot(s): near 2026-06-01 00:00:00+00:00")
    assert "110 GPUs, load 0.110 MW" in violations["site_capacity"]
    assert violations["caps"].startswith("1 site-slot(s): near 2026-06-01 01:00:00+00:00")
    assert "40 GPUs, load 0.040 MW" in violations["caps"]
    assert "load 0.030" in violations["caps"]
