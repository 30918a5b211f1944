"""Repairing a plan to new caps: it keeps them, moves cut work to green first and blocks whole,
and leaves unfinished only the work that has no room left (which :func:`later_jobs` names)."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from functools import cached_property

import numpy as np
import pandas as pd
from scheduler_testkit import START, job, make_problem, site

from scheduler.policies import get_policy
from scheduler.policies.base import PlanStatus, make_result
from scheduler.problem import LOAD_LIMIT, LoadCap, Problem
from scheduler.repair import draft_repair, keeps_every_job, later_jobs, plan_arrays, repair
from scheduler.validate import validate_plan

HOUR = pd.Timedelta(hours=1)


def planned(problem, rows: list[tuple[str, str, int, int]]):
    plan = pd.DataFrame(
        [{"job_id": j, "site": s, "time": START + t * HOUR, "gpus": g} for j, s, t, g in rows]
    )
    return make_result(problem, "hand", plan_arrays(problem, plan), PlanStatus.FEASIBLE, 0.0)


def gpus_at(result, site_name: str) -> list[int]:
    plan = result.plan[result.plan["site"] == site_name]
    by_slot = plan.groupby("time")["gpus"].sum()
    return [int(by_slot.get(START + t * HOUR, 0)) for t in range(4)]


def test_work_cut_by_a_cap_moves_to_green_room_first():
    """Site a: 60 GPUs of green in hours 0-1 only, none after; site b: 30 GPUs of green in
    hour 2. A 0.02 MW load cap on a in hour 0 cuts 40 of the plan's 60 GPUs there."""
    green = np.array([[0.06, 0.06, 0.0, 0.0], [0.0, 0.0, 0.03, 0.0]])
    problem = make_problem([site("a"), site("b")], green, [job("j", 120, 100, 0, 4)])
    before = planned(problem, [("j", "a", 0, 60), ("j", "a", 1, 60)])
    capped = replace(problem, caps=(LoadCap("a", START, START + HOUR, LOAD_LIMIT, 0.02),))
    result = repair(capped, before, "optimizer")
    assert result is not None
    assert validate_plan(capped, result) == []
    assert gpus_at(result, "a")[0] == 20  # the cap: 20 GPUs x 1 kW
    assert result.plan["gpus"].sum() == 120  # all the work, still
    assert keeps_every_job(result, before) and later_jobs(result, before).empty
    # the 40 GPU-h cut go to green first: b's 30 in hour 2, then the cheapest grid slot
    assert gpus_at(result, "b")[2] == 30
    assert result.objective_kg > before.objective_kg  # not free: 10 GPU-h now on grid


def test_a_repair_is_never_worse_than_planning_again_by_much_and_keeps_every_job():
    green = np.array([[0.05, 0.08, 0.08, 0.02, 0.0, 0.04], [0.02, 0.0, 0.05, 0.05, 0.03, 0.0]])
    jobs = [job(f"j{k}", 20 + 10 * k, 30, k % 3, 6 - k % 2) for k in range(6)]
    problem = make_problem([site("a"), site("b")], green, jobs)
    optimizer = get_policy("optimizer")
    before = optimizer.plan(problem)
    caps = (LoadCap("a", START + HOUR, START + 3 * HOUR, LOAD_LIMIT, 0.03),)
    capped = replace(problem, caps=caps)
    result = repair(capped, before, "optimizer")
    assert result is not None and validate_plan(capped, result) == []
    placed = result.plan.groupby("job_id")["gpus"].sum()
    assert (placed >= before.plan.groupby("job_id")["gpus"].sum()).all()
    again = optimizer.plan(capped)
    assert again.objective_kg <= result.objective_kg + 1e-6  # the optimum is the floor


def test_a_non_preemptible_block_over_a_cap_moves_whole():
    problem = make_problem([site("a")], [[0.1] * 4], [job("block", 80, 40, 0, 4,
                           preemptible=False)])  # fmt: skip
    before = planned(problem, [("block", "a", 0, 40), ("block", "a", 1, 40)])
    capped = replace(problem, caps=(LoadCap("a", START, START + HOUR, LOAD_LIMIT, 0.02),))
    result = repair(capped, before, "optimizer")
    assert result is not None and validate_plan(capped, result) == []
    assert gpus_at(result, "a") in ([0, 40, 40, 0], [0, 0, 40, 40])  # one run, after the cap


def test_a_block_with_no_run_left_in_its_window_leaves_the_plan():
    problem = make_problem([site("a")], [[0.1] * 4], [job("block", 80, 40, 0, 2,
                           preemptible=False)])  # fmt: skip
    before = planned(problem, [("block", "a", 0, 40), ("block", "a", 1, 40)])
    capped = replace(problem, caps=(LoadCap("a", START, START + HOUR, LOAD_LIMIT, 0.02),))
    result = repair(capped, before, "optimizer")
    assert result is not None and result.plan.empty and validate_plan(capped, result) == []
    assert later_jobs(result, before).to_dict() == {"block": 80.0}


def test_work_with_no_room_left_in_the_window_is_left_unfinished():
    """Hour 1 is full, so of the 50 GPU-h the cap cuts from hour 0 only 40 stay (40 kW)."""
    problem = make_problem([site("a", gpus=50)], [[0.1] * 4], [job("j", 100, 50, 0, 2)])
    before = planned(problem, [("j", "a", 0, 50), ("j", "a", 1, 50)])
    capped = replace(problem, caps=(LoadCap("a", START, START + HOUR, LOAD_LIMIT, 0.04),))
    result = repair(capped, before, "optimizer")
    assert result is not None and validate_plan(capped, result) == []
    assert gpus_at(result, "a") == [40, 50, 0, 0]
    assert later_jobs(result, before).to_dict() == {"j": 10.0}
    # the draft (before its ramp fit, table and validator) already tells the caller so
    draft = draft_repair(capped, before)
    assert later_jobs(draft, before).to_dict() == {"j": 10.0}
    pd.testing.assert_series_equal(draft.unfinished_gpu_hours, result.unfinished_gpu_hours)
    assert not keeps_every_job(draft, before) and not keeps_every_job(result, before)
    assert draft.objective_kg == result.objective_kg


def test_a_repaired_plan_keeps_the_ramp_limits():
    """1 kW GPUs and 0.001 MW/min: a site moves at most 60 GPUs per hour, so the cap's step
    down and back up must stay within it."""
    ramp = 0.001
    sites = [site("a", ramp_up_mw_per_min=ramp, ramp_down_mw_per_min=ramp)]
    problem = make_problem(sites, [[0.05, 0.1, 0.1, 0.05]], [job("j", 200, 100, 0, 4)])
    before = get_policy("optimizer").plan(problem)
    capped = replace(problem, caps=(LoadCap("a", START + HOUR, START + 2 * HOUR, LOAD_LIMIT,
                                            0.03),))  # fmt: skip
    result = repair(capped, before, "optimizer")
    assert result is not None
    assert validate_plan(capped, result) == []
    assert gpus_at(result, "a")[1] <= 30


def test_the_job_with_room_elsewhere_is_cut_not_the_one_at_its_limit_everywhere():
    """One site of 4 GPUs, hours 0-3. ``full`` runs at its max_gpus (2) in every hour of its
    window and has the latest deadline; ``free`` runs 2 GPUs in hour 1 only and could run in
    hours 0 or 2. A cap leaving 2 GPUs in hour 1 must cut ``free`` (its work fits elsewhere):
    cutting ``full``, whose work fits nowhere else, would leave no repair at all."""
    jobs = [job("full", 8, 2, 0, 4), job("free", 2, 2, 0, 3)]
    problem = make_problem([site("a", gpus=4)], np.zeros((1, 4)), jobs)
    rows = [("full", "a", t, 2) for t in range(4)] + [("free", "a", 1, 2)]
    before = planned(problem, rows)
    capped = replace(
        problem, caps=(LoadCap("a", START + HOUR, START + 2 * HOUR, LOAD_LIMIT, 0.002),)
    )
    result = repair(capped, before, "optimizer")
    assert result is not None and validate_plan(capped, result) == []
    assert gpus_at(result, "a") == [4, 2, 2, 2] or gpus_at(result, "a") == [2, 2, 4, 2]
    assert result.plan.groupby("job_id")["gpus"].sum().to_dict() == {"free": 2, "full": 8}


def test_a_repair_from_the_callers_positions_is_the_repair_from_the_table():
    """The service hands the repair each plan version's rows as positions (looked up once
    when the version was scored); the repair is the same as from the plan table."""
    green = np.array([[0.05, 0.08, 0.08, 0.02, 0.0, 0.04], [0.02, 0.0, 0.05, 0.05, 0.03, 0.0]])
    jobs = [job(f"j{k}", 20 + 10 * k, 30, k % 3, 6 - k % 2) for k in range(6)]
    problem = make_problem([site("a"), site("b")], green, jobs)
    before = get_policy("greedy").plan(problem)
    capped = replace(
        problem, caps=(LoadCap("a", START + HOUR, START + 3 * HOUR, LOAD_LIMIT, 0.03),)
    )
    positions = plan_arrays(problem, before.plan.sample(frac=1.0, random_state=3))
    from_table = repair(capped, before, "optimizer")
    from_positions = repair(capped, before, "optimizer", positions)
    assert from_table is not None and from_positions is not None
    pd.testing.assert_frame_equal(from_positions.plan, from_table.plan)
    assert from_positions.objective_kg == from_table.objective_kg


def test_a_problem_under_other_caps_shares_only_what_caps_leave_alone():
    """``with_caps`` (the service builds one problem per batch with it) gives every derived
    value a problem built afresh under those caps gives, for every cached value of
    :class:`Problem`, so a cached value that comes to depend on caps cannot be shared."""
    green = np.array([[0.05, 0.08, 0.08, 0.02], [0.02, 0.0, 0.05, 0.05]])
    jobs = [job("p", 40, 30, 0, 4), job("b", 20, 10, 1, 4, preemptible=False)]
    problem = make_problem([site("a", ramp_up_mw_per_min=0.001), site("b")], green, jobs)
    loose = (LoadCap("a", START, START + HOUR, LOAD_LIMIT, 0.09),)
    tight = (LoadCap("a", START + HOUR, START + 3 * HOUR, LOAD_LIMIT, 0.01),)
    names = [n for n, v in vars(Problem).items() if isinstance(v, cached_property)]
    before = replace(problem, caps=loose)
    for name in names:
        getattr(before, name)  # everything cached under the loose cap
    shared, fresh = before.with_caps(tight), replace(problem, caps=tight)
    for name in names:
        got, want = getattr(shared, name), getattr(fresh, name)
        if isinstance(want, tuple):
            assert len(got) == len(want) and all(map(_same, got, want)), name
        else:
            assert _same(got, want), name
    assert not np.array_equal(shared.capacity_gpus, before.capacity_gpus)  # caps do change it


def _same(a, b) -> bool:
    if isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in b)
    if dataclasses.is_dataclass(b):
        return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(b))
    return bool(np.array_equal(a, b)) if isinstance(b, np.ndarray) else a == b
