"""A year replayed on the shared typical-year weather (Urumqi for qingyang, Shanghai for
shantou), every policy planned once a day and settled on the weather: no settled slot rises or
falls faster than its site's ramp limit, the midnight steps included. Before plans came down
ahead of the end of their work (:mod:`scheduler.policies.descent`) and the settlement stopped
pulling work forward into slots it could not come down from, this year settled 17 slots of
greedy, the optimizer and the oracle above qingyang's 15 MW per slot, up to 21.3 MW. The year
is replayed a quarter per test so the suite's two workers share it (each quarter starts from
an idle day before, as a replay does)."""

from __future__ import annotations

import pytest

from scheduler.config import load_config
from scheduler.drivers.replay import ReplaySpec, replay
from tests.conftest import SHANGHAI_EPW, URUMQI_EPW, needs_real_weather

QUARTERS = {
    "Q1": ("2026-01-01", "2026-03-31", 90),
    "Q2": ("2026-04-01", "2026-06-30", 91),
    "Q3": ("2026-07-01", "2026-09-30", 92),
    "Q4": ("2026-10-01", "2026-12-31", 92),
}


@pytest.mark.slow
@pytest.mark.realdata
@needs_real_weather
@pytest.mark.parametrize("quarter", list(QUARTERS))
def test_no_settled_slot_of_any_policy_breaks_a_ramp_limit_in_the_epw_year(quarter):
    first, last, days = QUARTERS[quarter]
    config = load_config()
    sources = {"qingyang": str(URUMQI_EPW), "shantou": str(SHANGHAI_EPW)}
    result = replay(ReplaySpec(config, sources, first, last))
    ramps = result.ramps
    assert ramps["day"].nunique() == days
    assert set(ramps["policy"]) == {"fifo", "greedy", "optimizer", "oracle"}
    over = ramps[ramps["slots_over_ramp"] > 0]
    assert over.empty, over.to_string()
    limit_mw = config.sites["qingyang"].ramp_down_mw_per_min * config.forecast.slot_minutes
    largest = ramps[ramps["site"] == "qingyang"]["largest_step_mw"].max()
    assert largest >= 0.9 * limit_mw  # the limit binds: steps reach it without passing it
