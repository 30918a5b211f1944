"""The day pipeline: a day is the same problem whoever asks for it (plan, replay, serve)."""

from __future__ import annotations

import pandas as pd
import pytest

from scheduler.contracts import JOBS, SUPPLY, read_table
from scheduler.pipeline import DayPipeline, remaining_problem
from tests.conftest import SHANGHAI_EPW, URUMQI_EPW, greensched, needs_real_weather

DAY = "2026-03-02"


def _day_inside_a_run(config, sources, day: str, first: str, days: int):
    """The problem of ``day`` as a replay of ``days`` days from ``first`` builds it."""
    pipeline = DayPipeline(config, sources, seed=1)
    pipeline.preload(pipeline.horizon(first, days))
    return pipeline.problem(pipeline.horizon(day))


def _day_alone(config, sources, day: str):
    pipeline = DayPipeline(config, sources, seed=1)
    return pipeline.problem(pipeline.horizon(day))


def _same_problem(a, b) -> None:
    pd.testing.assert_frame_equal(a.jobs, b.jobs)
    pd.testing.assert_frame_equal(a.supply, b.supply, rtol=1e-9)
    pd.testing.assert_frame_equal(a.actual_supply, b.actual_supply, rtol=1e-9)


def test_a_day_inside_a_replay_is_the_day_planned_alone(config):
    sources = dict.fromkeys(config.sites, "synthetic")
    inside = _day_inside_a_run(config, sources, DAY, "2026-02-27", 7)
    _same_problem(inside, _day_alone(config, sources, DAY))
    assert inside.n_jobs > 100 and inside.jobs["job_id"].str.startswith(f"{DAY}:").all()


@pytest.mark.realdata
@needs_real_weather
def test_the_same_holds_on_weather_files(config):
    sources = {"qingyang": str(URUMQI_EPW), "shantou": str(SHANGHAI_EPW)}
    inside = _day_inside_a_run(config, sources, DAY, "2026-02-27", 7)
    _same_problem(inside, _day_alone(config, sources, DAY))


def test_other_days_draw_other_jobs(config):
    sources = dict.fromkeys(config.sites, "synthetic")
    a = _day_alone(config, sources, DAY)
    b = _day_alone(config, sources, "2026-03-03")
    assert not a.jobs["gpu_hours"].equals(b.jobs["gpu_hours"])


@pytest.mark.slow
def test_greensched_plan_writes_the_pipelines_day(config, tmp_path):
    result = greensched("plan", "--date", DAY, "--compare", "", "--out", "plan", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    day = _day_alone(config, dict.fromkeys(config.sites, "synthetic"), DAY)
    jobs = read_table(JOBS, tmp_path / "plan" / "jobs.csv")
    pd.testing.assert_frame_equal(jobs, JOBS.canonical(day.jobs), check_dtype=False)
    forecast = read_table(SUPPLY, tmp_path / "plan" / "supply.csv")
    expected = SUPPLY.canonical(day.supply)
    pd.testing.assert_frame_equal(forecast, expected, check_dtype=False, rtol=1e-6)


def test_the_rest_of_a_day_keeps_windows_sites_and_work_left(config):
    day = _day_alone(config, dict.fromkeys(config.sites, "synthetic"), DAY)
    noon = day.horizon.start + pd.Timedelta(hours=12, minutes=5)
    left = {job: 10.0 for job in day.jobs["job_id"]}
    rest = remaining_problem(day, noon, left, {"qingyang": 8000.0})
    assert rest is not None
    assert rest.horizon.start == day.horizon.start + pd.Timedelta(hours=12, minutes=15)
    assert rest.site_names == ["qingyang"] and rest.sites[0].gpus == 8000
    assert (rest.jobs["gpu_hours"] == 10.0).all()
    assert (rest.jobs["release"] >= rest.horizon.start).all()
    assert (rest.jobs["deadline"] <= rest.horizon.end).all()
    assert not rest.jobs["sites"].str.contains("shantou").any()
    shantou_only = set(day.jobs.loc[day.jobs["sites"] == "shantou", "job_id"])
    assert shantou_only and not shantou_only & set(rest.jobs["job_id"])
