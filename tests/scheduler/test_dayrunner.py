"""The day runner: plans taken at slot boundaries, re-plans when due, the engine runs them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scheduler_testkit import START, job, make_problem, site

from scheduler.dayrunner import DayRunner, NewPlan
from scheduler.problem import LOAD_LIMIT, LoadCap
from scheduler.settlement import Settlement

HOUR = pd.Timedelta(hours=1)


def _rows(job_id: str, site_name: str, slots, gpus: int) -> pd.DataFrame:
    times = [START + t * HOUR for t in slots]
    return pd.DataFrame({"job_id": job_id, "site": site_name, "time": times, "gpus": gpus})


class Source:
    """Hands in a plan moving ``j`` to site b (with a cap on a) at ``newer_at``; re-plans put the
    rest on site a; records each re-plan's state."""

    def __init__(self, newer_at: pd.Timestamp | None = None) -> None:
        self.newer_at, self.states = newer_at, []

    def newer(self, boundary):
        if boundary != self.newer_at:
            return None
        cap = LoadCap("a", boundary, START + 6 * HOUR, LOAD_LIMIT, 0.0, event_id="shed-a")
        return NewPlan(_rows("j", "b", range(2, 6), 10), caps=(cap,))

    def replan(self, state, reason):
        self.states.append((state, reason))
        slot = int((state.from_time - START) / HOUR)
        left = round(state.remaining_gpu_hours["j"] / 10)
        return NewPlan(_rows("j", "a", range(slot, slot + left), 10))


def _day():
    return make_problem([site("a"), site("b")], np.zeros((2, 6)), [job("j", 60, 10, 0, 6)])


def test_a_newer_plan_and_its_caps_run_from_the_boundary_it_is_taken_at():
    engine = Settlement(_day(), _rows("j", "a", range(6), 10))
    runner = DayRunner(engine, Source(newer_at=START + 2 * HOUR))
    report = runner.run()
    ran = report.executed.groupby("site")["time"].agg(["min", "max", "count"])
    assert ran.loc["a", "count"] == 2 and ran.loc["a", "max"] == START + HOUR
    assert ran.loc["b", "min"] == START + 2 * HOUR and ran.loc["b", "count"] == 4
    assert runner.replans == 0  # a newer plan is not a re-plan
    slots = report.site_slots
    capped = slots[slots["caps_in_force"].str.contains("shed-a")]
    assert set(capped["site"]) == {"a"}
    assert list(capped["time"]) == [START + t * HOUR for t in range(2, 6)]


def test_re_plans_come_every_interval_from_where_the_day_stands():
    engine = Settlement(_day(), _rows("j", "b", range(6), 10))
    source = Source()
    runner = DayRunner(engine, source, every=2 * HOUR)
    report = runner.run()
    assert [state.from_time for state, _ in source.states] == [START + 2 * HOUR, START + 4 * HOUR]
    assert [reason for _, reason in source.states] == ["every 0 days 02:00:00"] * 2
    first, second = (state for state, _ in source.states)
    assert first.remaining_gpu_hours == {"j": 40.0} and second.remaining_gpu_hours == {"j": 20.0}
    assert first.load_before_mw == {"a": 0.0, "b": 0.01}  # slot 1 ran 10 GPUs at b
    assert second.load_before_mw == {"a": 0.01, "b": 0.0}
    assert runner.replans == 2
    assert report.executed.groupby("site")["gpus"].sum().to_dict() == {"a": 40, "b": 20}


def test_a_day_joined_late_re_plans_once_there_and_then_every_interval_from_there():
    """The live loop started in the middle of a day plans the rest at its first slot; the
    next re-plan is an interval later, not at the next boundary (the interval was counted from
    the day's start, so a loop joining after an hour re-planned twice in a row)."""
    engine = Settlement(_day(), _rows("j", "b", range(6), 10))
    source = Source()
    runner = DayRunner(engine, source, every=2 * HOUR)
    runner.replan(3, "started during the day")
    for t in range(3, 6):
        runner.decide(t)
        engine.step(t)
    assert [(s.from_time, reason) for s, reason in source.states] == [
        (START + 3 * HOUR, "started during the day"),
        (START + 5 * HOUR, "every 0 days 02:00:00"),
    ]
