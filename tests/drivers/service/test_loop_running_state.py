"""While the control loop runs a slot, the planner's state starts after it: a cap arriving
mid-slot is planned from the next boundary, on the work the slot leaves, never into the slot
that has begun (whose tasks are decided and whose new plan rows would never run)."""

from __future__ import annotations

import pandas as pd
import pytest

from scheduler.drivers.service.loop import _running_state
from scheduler.settlement import Settlement
from tests.scheduler.scheduler_testkit import START, job, make_problem, site

HOUR = pd.Timedelta(hours=1)


def test_the_state_while_a_slot_runs_starts_after_it_less_its_planned_work():
    problem = make_problem(
        [site("a", base_load_mw=0.01)],
        [[0.05] * 4],
        [job("j", 120, 40, 0, 4), job("k", 20, 20, 0, 4)],
    )
    rows = [{"job_id": "j", "site": "a", "time": START + t * HOUR, "gpus": 40} for t in range(3)]
    rows.append({"job_id": "k", "site": "a", "time": START + HOUR, "gpus": 20})
    engine = Settlement(problem, pd.DataFrame(rows))
    engine.step(0)
    state = _running_state(engine, 1)
    assert state.from_time == START + 2 * HOUR
    # j: 120 GPU-h, 40 ran in slot 0, 40 more run in slot 1; k: all 20 in slot 1
    assert state.remaining_gpu_hours["j"] == pytest.approx(40.0)
    assert state.remaining_gpu_hours.get("k", 0.0) == pytest.approx(0.0)
    assert state.load_before_mw == {"a": pytest.approx(0.01 + 60 * 0.001)}
