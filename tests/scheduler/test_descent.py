"""Ramp down ahead: where the work runs out (every window ends, the work is done) a plan comes
down over the slots before, never faster than the site's ramp-down limit; the validator holds
every plan to that. Sites of 1 kW GPUs with 5 MW per hour up and down."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scheduler_testkit import job, make_problem, plan_all, site

from scheduler.metrics import busy_gpus
from scheduler.policies.base import PlanArrays, make_result
from scheduler.policies.descent import descend_ahead, floor_gpus
from scheduler.ramps import load_steps_mw
from scheduler.validate import validate_plan

LIMIT_MW = 5.0
RAMPED = dict(ramp_up_mw_per_min=LIMIT_MW / 60, ramp_down_mw_per_min=LIMIT_MW / 60)


def ramped_site(gpus: int = 20_000, **kw):
    return site("a", gpus=gpus, grid_import_limit_mw=30.0, **RAMPED, **kw)


def load_mw(problem, plan) -> np.ndarray:
    return busy_gpus(plan, problem.site_names, problem.horizon)[0] / 1000.0


def test_where_every_window_ends_at_once_each_plan_comes_down_ahead_of_it():
    """Green rises to 20 MW at 05:00 and every window ends at 06:00: following the green runs
    the site flat out into 05:00 and drops 20 MW at 06:00. Each policy's plan comes down
    instead (rises and falls at most 5 MW per hour, the midnight step from 0 MW too), and the
    optimizer still finishes the 50 MWh: the widest shape the limits allow holds 60."""
    green = np.array([[0.0, 4.0, 8.0, 12.0, 16.0, 20.0, 0.0, 0.0]])
    jobs = [job("a1", 25_000, 20_000, 0, 6), job("a2", 25_000, 20_000, 0, 6)]
    problem = replace(make_problem([ramped_site()], green, jobs), initial_load_mw=(0.0,))
    for name, result in plan_all(problem).items():  # each checked by the validator
        steps = load_steps_mw(load_mw(problem, result.plan)[None], [0.0])[0]
        assert np.abs(steps).max() <= LIMIT_MW + 1e-9, (name, steps)
    optimizer = plan_all(problem, names=("optimizer",))["optimizer"]
    assert optimizer.jobs_unfinished == []


def arrays_of(problem, gpus_by_slot: list[int], job_index: int = 0) -> PlanArrays:
    slots = np.flatnonzero(gpus_by_slot)
    n = len(slots)
    return PlanArrays(np.full(n, job_index), np.zeros(n, dtype=np.int64), slots,
                      np.asarray(gpus_by_slot)[slots])  # fmt: skip


def test_the_work_moves_to_earlier_slots_of_its_window_where_there_is_room():
    """5 then 10 MW in 02:00-03:00, then nothing (the window ends at 04:00): 5 MW of 03:00 move
    earlier, to 01:00, the latest slot with room (at 02:00 they would make a 10 MW rise from
    01:00); all work stays placed."""
    problem = make_problem([ramped_site()], np.zeros((1, 6)), [job("j", 15_000, 20_000, 0, 4)])
    plan = arrays_of(problem, [0, 0, 5_000, 10_000, 0, 0])
    got = descend_ahead(problem, plan)
    gpus = np.zeros(6, dtype=np.int64)
    np.add.at(gpus, got.slot, got.gpus)
    assert list(gpus) == [0, 5_000, 5_000, 5_000, 0, 0]
    result = make_result(problem, "test", got, plan_status(), 0.0)
    assert validate_plan(problem, result) == []


def plan_status():
    from scheduler.policies.base import PlanStatus

    return PlanStatus.FEASIBLE


@pytest.mark.parametrize(
    ("window_end", "expected_mw", "unfinished_gpu_h"),
    [(4, [5, 10, 7.5, 2.5, 0, 0], 0.0), (3, [5, 10, 5, 0, 0, 0], 5_000.0)],
    ids=["the window goes on", "no room"],
)
def test_a_cliff_with_no_room_before_moves_into_the_slot_after_or_leaves_work_unfinished(
    window_end, expected_mw, unfinished_gpu_h
):
    """A cold 10 MW site planned at 5, 10 and 10 MW, then nothing: it cannot come down 10 MW at
    03:00, nor take more earlier (full at 01:00, a 5 MW rise into 00:00). Where the window goes
    on to 04:00, 2.5 MW move into 03:00 and every GPU-hour stays placed; where it ends at
    03:00, 5 MWh stay unfinished (reported) rather than the ramp broken. The validator refuses
    the plan as it was."""
    jobs = [job("j", 25_000, 10_000, 0, window_end)]
    problem = replace(
        make_problem([ramped_site(gpus=10_000)], np.zeros((1, 6)), jobs), initial_load_mw=(0.0,)
    )
    before = arrays_of(problem, [5_000, 10_000, 10_000, 0, 0, 0])
    cliff = make_result(problem, "test", before, plan_status(), 0.0)
    assert [v.rule for v in validate_plan(problem, cliff)] == ["ramp"]
    result = make_result(problem, "test", descend_ahead(problem, before), plan_status(), 0.0)
    assert validate_plan(problem, result) == []
    assert list(load_mw(problem, result.plan)) == pytest.approx(expected_mw)
    assert result.unfinished_gpu_hours["j"] == pytest.approx(unfinished_gpu_h)


def test_a_site_still_coming_down_from_the_day_before_is_not_asked_to_come_down_sooner():
    """The day before ended at 20 MW and the only work ends at 01:00: the site can be no lower
    than 15 MW at 00:00 (the ramp from 20), so its fall at 01:00 is the day before's to answer
    for. Every plan is valid, runs 15 MW at 00:00 and the floor says so."""
    problem = replace(
        make_problem([ramped_site()], np.zeros((1, 4)), [job("j", 20_000, 20_000, 0, 1)]),
        initial_load_mw=(20.0,),
    )
    assert list(floor_gpus(problem)[0]) == [15_000, 10_000, 5_000, 0]
    for name, result in plan_all(problem).items():
        assert load_mw(problem, result.plan)[0] == pytest.approx(15.0), name


def test_green_above_the_forecast_is_used_without_leaving_a_cliff_where_the_work_ends():
    """A plan that comes down ahead of its window's end (10, 10, 5 MW, then nothing at 03:00)
    on a forecast of no green, settled on 30 MW of green in 00:00-01:00: the surplus rule runs
    later work early, but takes no more than lets the site still come down 5 MW per hour, so
    the settled day never falls faster (pulling the 5 MW of 02:00 forward would drop 10 MW into
    it); all work is done and more of it on green than planned."""
    from scheduler.settlement import settle

    forecast = np.zeros((1, 5))
    actual = forecast.copy()
    actual[0, :2] = 30.0
    jobs = [job("j", 25_000, 20_000, 0, 3)]
    problem = replace(
        make_problem([ramped_site()], forecast, jobs, actual_green_mw=actual),
        initial_load_mw=(10.0,),
    )
    plan = plan_rows_of({0: 10_000, 1: 10_000, 2: 5_000})
    run = settle(problem, plan)
    load = run.site_slots["load_mw"].to_numpy()
    steps = load_steps_mw(load[None], [10.0])[0]
    assert np.abs(steps).max() <= LIMIT_MW + 1e-9, load
    assert load[0] > 10.0  # the surplus was used
    assert run.statuses == {"j": "done"}
    assert run.totals["actual"]["green_used_mwh"] > 20.0 + 1e-9


def plan_rows_of(gpus_by_slot: dict[int, int]):
    import pandas as pd
    from scheduler_testkit import START

    return pd.DataFrame(
        [{"job_id": "j", "site": "a", "time": START + pd.Timedelta(hours=t), "gpus": g}
         for t, g in gpus_by_slot.items()]
    )  # fmt: skip
