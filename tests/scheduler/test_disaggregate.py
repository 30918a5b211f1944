"""Splitting a group flow back into jobs, against hand-counted plans."""

from __future__ import annotations

import numpy as np
from scheduler_testkit import job, make_problem, site

from scheduler.policies.disaggregate import disaggregate
from scheduler.policies.flow import DURATION_BUCKET_RATIO, FlowResult, group_jobs


def _flow(group, site_, slot, gpus) -> FlowResult:
    arrays = (np.asarray(a, dtype=np.int64) for a in (group, site_, slot, gpus))
    return FlowResult("OPTIMAL", *arrays, np.zeros(2, np.int64), 0.0, 0.0, 0.0, 0, 0)


def test_a_lone_job_takes_its_group_flow_and_a_shared_group_splits_within_max_gpus():
    sites = [site("a", gpus=4), site("b", gpus=4)]
    jobs = [job("x", 2.0, 1, 0, 4), job("y", 2.0, 1, 0, 4), job("lone", 3.0, 2, 1, 3)]
    problem = make_problem(sites, np.zeros((2, 4)), jobs)
    groups = group_jobs(problem, np.arange(3), problem.site_mask, DURATION_BUCKET_RATIO)
    shared, lone = groups.job_group[0], groups.job_group[2]
    assert groups.job_group[1] == shared != lone
    # shared: 2 GPUs in slots 0 (one per site) and 1 (both at a); lone: 3 GPU-slots in 1 and 2
    flow = _flow(
        [shared, shared, shared, lone, lone, lone],
        [0, 1, 0, 0, 1, 1],
        [0, 0, 1, 1, 1, 2],
        [1, 1, 2, 1, 1, 1],
    )
    plan = disaggregate(problem, groups, flow)
    columns = (a.tolist() for a in (plan.job, plan.slot, plan.site, plan.gpus))
    rows = sorted(zip(*columns, strict=True))
    assert [r for r in rows if r[0] == 2] == [(2, 1, 0, 1), (2, 1, 1, 1), (2, 2, 1, 1)]
    for j in (0, 1):  # one GPU (max_gpus) in each of slots 0 and 1, the one at b moves to a
        mine = [r for r in rows if r[0] == j]
        assert [(slot, gpus) for _, slot, _, gpus in mine] == [(0, 1), (1, 1)]
        assert mine[1][2] == 0
    assert sorted(r[2] for r in rows if r[0] < 2 and r[1] == 0) == [0, 1]


def test_a_job_first_takes_gpus_at_the_site_of_its_run_slot_before():
    """x and y split across a and b in slots 0 and 2 and both at b in slot 1: in slot 0 the
    GPUs are dealt in order (x to a, y to b); in slot 2 both ran at b last, where one GPU is
    left, so x (first in order) stays there and y takes a."""
    sites = [site("a", gpus=4), site("b", gpus=4)]
    jobs = [job("x", 3.0, 1, 0, 3), job("y", 3.0, 1, 0, 3)]
    problem = make_problem(sites, np.zeros((2, 3)), jobs)
    groups = group_jobs(problem, np.arange(2), problem.site_mask, DURATION_BUCKET_RATIO)
    assert groups.n == 1
    plan = disaggregate(
        problem, groups, _flow([0] * 5, [0, 1, 1, 0, 1], [0, 0, 1, 2, 2], [1, 1, 2, 1, 1])
    )
    assert plan.gpus.tolist() == [1] * 6
    rows = sorted(zip(plan.job.tolist(), plan.slot.tolist(), plan.site.tolist(), strict=True))
    assert [site_ for j, _, site_ in rows if j == 0] == [0, 1, 1]
    assert [site_ for j, _, site_ in rows if j == 1] == [1, 1, 0]
