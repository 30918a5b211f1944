"""Caps by type (scheduler.caps): every type has its row, and each row's rule is what the
problem's capacity, the metrics' violations and the validator hold a plan to."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scheduler_testkit import START, job, make_problem, site

from scheduler.caps import CAP_KINDS
from scheduler.contracts import CapType
from scheduler.metrics import site_load
from scheduler.policies import get_policy
from scheduler.problem import LoadCap
from scheduler.validate import validate_plan

HOUR = pd.Timedelta(hours=1)


def test_every_type_of_cap_has_a_row():
    # every type but PRICE, which limits nothing (tests/scheduler/test_price_caps.py)
    assert set(CAP_KINDS) == set(CapType) - {CapType.PRICE}


@pytest.mark.parametrize(
    ("cap_type", "room_gpus"),
    [
        # 1 kW GPUs, 10 kW of green: a 20 kW import cap leaves 30 GPUs, a 20 kW load cap 20
        (CapType.IMPORT_CAPACITY_LIMIT, 30),
        (CapType.LOAD_LIMIT, 20),
    ],
)
def test_each_type_bounds_capacity_plans_and_violations_as_its_row_says(cap_type, room_gpus):
    cap = LoadCap("a", START + HOUR, START + 2 * HOUR, cap_type, 0.02, event_id="c")
    day = make_problem([site("a", gpus=100)], np.full((1, 3), 0.01), [job("j", 90, 60, 0, 3)],
                       caps=[cap])  # fmt: skip
    assert day.capacity_gpus[0].tolist() == [100, room_gpus, 100]
    result = get_policy("optimizer").plan(day)
    in_capped_slot = result.plan[result.plan["time"] == START + HOUR]["gpus"].sum()
    assert in_capped_slot <= room_gpus
    over = pd.DataFrame({"job_id": "j", "site": "a", "time": [START + HOUR], "gpus": room_gpus + 1})
    load = site_load(over, day.supply, day.sites, day.horizon, day.caps)
    assert load["cap_violation"].tolist() == [False, True, False]
    at_room = over.assign(gpus=room_gpus)
    assert not site_load(at_room, day.supply, day.sites, day.horizon, day.caps)[
        "cap_violation"
    ].any()
    assert any(v.rule == "caps" for v in validate_plan(day, replace(result, plan=over)))
