"""The day pipeline: a day is the same problem whoever asks for it (plan, replay, serve)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scheduler.contracts import JOBS, SUPPLY, read_table
from scheduler.pipeline import DayPipeline
from scheduler.replan import RunState, rest_of_day
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


def test_a_days_forecast_does_not_depend_on_the_range_asked_for(config):
    """The forecast of a day alone, inside a week asked at once, and as vintages: the same."""
    pipeline = DayPipeline(config, seed=1)
    day = pipeline.horizon(DAY)
    alone = pipeline.supply(day).forecast
    week = DayPipeline(config, seed=1).supply(pipeline.horizon("2026-02-27", 7)).forecast
    inside = week[(week["time"] >= day.start) & (week["time"] < day.end)]
    pd.testing.assert_frame_equal(inside.reset_index(drop=True), alone)
    issued = day.start + pd.Timedelta(hours=9)
    vintage = pipeline.supply(day, issued_at=issued).forecast
    week_vintage = (
        DayPipeline(config, seed=1)
        .supply(pipeline.horizon("2026-02-27", 7), issued_at=issued)
        .forecast
    )
    inside = week_vintage[(week_vintage["time"] >= day.start) & (week_vintage["time"] < day.end)]
    pd.testing.assert_frame_equal(inside.reset_index(drop=True), vintage)
    assert not vintage.equals(alone)


def test_a_vintage_does_not_depend_on_what_the_pipeline_was_asked_before(config):
    """A re-planning loop asks one pipeline for many vintages (and other days in between); each
    is the vintage a fresh pipeline gives, exactly."""
    pipeline = DayPipeline(config, seed=1)
    day = pipeline.horizon(DAY)
    issued = day.start + pd.Timedelta(hours=9)
    for hours in (3, 15):
        pipeline.supply(day, issued_at=day.start + pd.Timedelta(hours=hours))
    pipeline.supply(pipeline.horizon("2026-03-05"), issued_at=issued)
    asked_late = pipeline.supply(day, issued_at=issued)
    fresh = DayPipeline(config, seed=1).supply(day, issued_at=issued)
    pd.testing.assert_frame_equal(asked_late.forecast, fresh.forecast, check_exact=True)
    pd.testing.assert_frame_equal(asked_late.actual, fresh.actual, check_exact=True)


@pytest.mark.slow
def test_a_year_of_daily_forecasts_has_the_configured_error(config):
    """365 day-ahead forecasts issued one day at a time: wind NRMSE near the configured 15 %,
    mean errors within 1 % of capacity, p10-p90 covering 80 +- 3 % with tails of 10 +- 2 %."""
    pipeline = DayPipeline(config, seed=2)
    pipeline.preload(pipeline.horizon("2026-01-01", 365))
    days = pd.date_range("2026-01-01", periods=365).date
    runs = [pipeline.supply(pipeline.horizon(day)) for day in days]
    forecast = pd.concat([run.forecast for run in runs], ignore_index=True)
    actual = pd.concat([run.actual for run in runs], ignore_index=True)
    for name, site in config.sites.items():
        rows = (forecast["site"] == name).to_numpy()
        wind_error = (forecast["wind_mw"] - actual["wind_mw"]).to_numpy()[rows]
        pv_error = (forecast["pv_mw"] - actual["pv_mw"]).to_numpy()[rows]
        nrmse = np.sqrt(np.mean(wind_error**2)) / site.wind_capacity_mw
        assert nrmse == pytest.approx(config.forecast.wind_nrmse, abs=0.015), name
        assert abs(wind_error.mean()) < 0.01 * site.wind_capacity_mw, name
        assert abs(pv_error.mean()) < 0.01 * site.pv_capacity_mw_ac, name
        green = actual["green_mw"].to_numpy()[rows]
        below = np.mean(green < forecast["green_mw_p10"].to_numpy()[rows] - 1e-9)
        above = np.mean(green > forecast["green_mw_p90"].to_numpy()[rows] + 1e-9)
        assert 0.08 <= below <= 0.12 and 0.08 <= above <= 0.12, (name, below, above)
        assert 0.77 <= 1 - below - above <= 0.83, name


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
    rest = rest_of_day(day, RunState(noon, left, live_gpus={"qingyang": 8000.0}))
    assert rest is not None
    assert rest.horizon.start == day.horizon.start + pd.Timedelta(hours=12, minutes=15)
    assert rest.site_names == ["qingyang"] and rest.sites[0].gpus == 8000
    assert (rest.jobs["gpu_hours"] == 10.0).all()
    assert (rest.jobs["release"] >= rest.horizon.start).all()
    assert (rest.jobs["deadline"] <= rest.horizon.end).all()
    assert not rest.jobs["sites"].str.contains("shantou").any()
    shantou_only = set(day.jobs.loc[day.jobs["sites"] == "shantou", "job_id"])
    assert shantou_only and not shantou_only & set(rest.jobs["job_id"])


def test_every_replan_keeps_the_days_settings_p10_limits_included(config):
    """limits_on: p10 (the default) holds in the re-plans of the work left, as in the
    day-ahead plan: each re-planned problem plans its grid limits on the forecast's p10 and
    keeps the day's caps; the re-plans' plans pass the validator on those problems."""
    from scheduler.dayrunner import settle_receding
    from scheduler.policies import get_policy
    from scheduler.validate import assert_valid

    assert config.solver.limits_on == "p10"
    pipeline = DayPipeline(config)
    horizon = pipeline.horizon(DAY)
    day = pipeline.problem(horizon)
    assert day.limit_green_column == "green_mw_p10"
    optimizer = get_policy("optimizer", config.solver)
    planned: list = []

    class Recording:  # the optimizer, keeping each problem it is asked to plan
        name, follows_forecast = "optimizer", True

        def plan(self, problem):
            result = optimizer.plan(problem)
            planned.append((problem, result))
            return result

    first = optimizer.plan(day)
    run = settle_receding(
        day, first.plan, Recording(), pd.Timedelta(hours=6),
        lambda at: pipeline.supply(horizon, issued_at=at).forecast,
    )  # fmt: skip
    assert run.replans == len(planned) >= 2
    for problem, result in planned:
        assert problem.limit_green_column == "green_mw_p10"
        supply = problem.supply
        assert (supply["green_mw_p10"] < supply["green_mw"] - 1e-6).any()  # a real margin
        assert problem.caps == day.caps and problem.user_region == day.user_region
        assert_valid(problem, result)
