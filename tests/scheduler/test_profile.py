"""The load-profile LP on hand-built days: one site of 1 kW GPUs (PUE 1, no base load) at
500 kg/MWh with hourly slots, so a grid GPU-slot costs 0.5 kg, and 10 GPUs of green in some
slots. Expected profiles and CO2 are worked out by hand in each test."""

from __future__ import annotations

import numpy as np
import pytest
from scheduler_testkit import make_problem, site

from scheduler.policies.base import unfinished_penalty_kg
from scheduler.policies.profile import SiteWork, solve_profile

GRID_KG_PER_GPU_SLOT = 0.5


def _day(green_slots, **site_kw):
    green = np.zeros((1, 6))
    green[0, list(green_slots)] = 0.010  # 10 GPUs
    return make_problem([site("a", gpus=30, **site_kw)], green, [])


def _work(first: int, end: int, rate: int, work: int) -> SiteWork:
    return SiteWork(np.array([first]), np.array([end]), np.array([rate]), np.array([[work]]))


def test_work_waits_for_its_release_and_meets_its_deadline_in_grid_slots():
    """Green only in slot 0 (before the work is released) and slot 5 (after it is due): all 20
    GPU-slots run on the grid, two slots at the 10-GPU rate."""
    problem = _day(green_slots=[0, 5])
    profile = solve_profile(problem, _work(1, 5, rate=10, work=20), np.zeros((1, 6)))
    assert profile.status == "OPTIMAL"
    assert profile.co2_kg == pytest.approx(20 * GRID_KG_PER_GPU_SLOT)
    assert profile.gpus[0, [0, 5]].tolist() == [0, 0]
    assert profile.gpus.sum() == 20
    assert not profile.ramps_bind


def test_work_beyond_its_window_and_rate_is_left_unplaced_at_the_penalty():
    """A 2-slot window at 10 GPUs holds 20 of 25 GPU-slots; the green slot 1 carries 10."""
    problem = _day(green_slots=[1])
    profile = solve_profile(problem, _work(1, 3, rate=10, work=25), np.zeros((1, 6)))
    expected = 10 * GRID_KG_PER_GPU_SLOT + 5 * unfinished_penalty_kg(problem)
    assert profile.co2_kg == pytest.approx(expected)
    assert profile.gpus[0].tolist() == [0, 10, 10, 0, 0, 0]


def test_a_ramp_limit_of_5_gpus_per_slot_costs_5_grid_gpu_slots():
    """11.5 kW per slot less one GPU per slot of the horizon leaves steps of 5 GPUs. Green
    covers 10 GPUs in slots 2 and 3; 20 GPU-slots to do. With x GPUs in each green slot, the
    ramps in and out need at least 2 (x - 5) grid GPU-slots and the rest 20 - 2x: both are 5 at
    x = 7.5, the least. Without the limits all 20 run on green."""
    limit = 0.0115 / 60  # [MW/min]
    problem = _day(green_slots=[2, 3], ramp_up_mw_per_min=limit, ramp_down_mw_per_min=limit)
    work, fixed = _work(0, 6, rate=10, work=20), np.zeros((1, 6))
    ramped = solve_profile(problem, work, fixed)
    free = solve_profile(problem, work, fixed, ramps=False)
    assert ramped.co2_kg == pytest.approx(5 * GRID_KG_PER_GPU_SLOT)
    assert ramped.ramps_bind
    assert free.co2_kg == pytest.approx(0.0, abs=1e-9)
    assert not free.ramps_bind
    assert free.gpus[0].tolist() == [0, 0, 10, 10, 0, 0]


def test_a_block_stepping_over_the_ramp_limit_still_has_a_profile():
    """A 10-GPU block in slot 2 steps up and down by 10 where the limit allows none: the LP
    keeps the block as it is, reports the limit as binding, and its CO2 is the block's (on
    green here, so none)."""
    limit = 0.001 / 60  # under a GPU per slot less the margin: no step allowed [MW/min]
    problem = _day(green_slots=[2], ramp_up_mw_per_min=limit, ramp_down_mw_per_min=limit)
    fixed = np.zeros((1, 6))
    fixed[0, 2] = 10
    profile = solve_profile(problem, _work(0, 6, rate=0, work=0), fixed)
    assert profile.status == "OPTIMAL"
    assert profile.gpus[0].tolist() == [0, 0, 10, 0, 0, 0]
    assert profile.ramps_bind
    assert profile.co2_kg == pytest.approx(0.0, abs=1e-9)
