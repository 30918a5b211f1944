"""The day pipeline with a site forecast from weather model runs: which run, which slots."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from forecasts.weather import ForecastSourceError
from scheduler.config import load_config
from scheduler.pipeline import DayPipeline, parse_forecast_specs
from tests.conftest import GFS_RUN, NOAA, TUCSON_CONFIG, needs_nwp

pytestmark = [pytest.mark.realdata, needs_nwp]


@pytest.fixture(scope="module")
def config():
    return load_config(TUCSON_CONFIG)


def _site_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["site"] == "tucson"].set_index("time")


def test_day_ahead_forecast_is_the_runs_and_the_actual_is_the_weather(config):
    pipeline = DayPipeline(config, forecasts={"tucson": str(GFS_RUN)})
    synthetic = DayPipeline(config)
    horizon = pipeline.horizon("2019-05-15")
    run = pipeline.supply(horizon)
    feed = pipeline.feed.at(horizon.start)["tucson"].supply
    forecast = _site_rows(run.forecast)
    np.testing.assert_allclose(forecast["green_mw"], feed["green_mw"].reindex(forecast.index))
    np.testing.assert_allclose(forecast["green_mw_p10"],
                               feed["green_mw_p10"].reindex(forecast.index))  # fmt: skip
    # the actual is the site's weather source (synthetic here), untouched by the run
    pd.testing.assert_frame_equal(run.actual, synthetic.supply(horizon).actual)
    assert run.runs["tucson"]["model"] == "gfs_0p25"
    assert run.runs["tucson"]["slots_from_run"] == run.runs["tucson"]["slots"] == 96


def test_an_intraday_vintage_keeps_the_past_actual(config):
    pipeline = DayPipeline(config, forecasts={"tucson": str(GFS_RUN)})
    horizon = pipeline.horizon("2019-05-15")
    noon = horizon.start + pd.Timedelta(hours=12)
    run = pipeline.supply(horizon, issued_at=noon)
    forecast, actual = _site_rows(run.forecast), _site_rows(run.actual)
    before = forecast.index < noon
    np.testing.assert_allclose(forecast.loc[before, "green_mw"], actual.loc[before, "green_mw"])
    feed = pipeline.feed.at(noon)["tucson"].supply
    np.testing.assert_allclose(forecast.loc[~before, "green_mw"],
                               feed["green_mw"].reindex(forecast.index[~before]))  # fmt: skip
    assert run.runs["tucson"]["slots"] == 48


def test_slots_a_short_run_misses_come_from_the_error_model(config, caplog):
    pipeline = DayPipeline(config, forecasts={"tucson": str(NOAA / "hrrr_subhourly")})
    errors = DayPipeline(config)
    horizon = pipeline.horizon("2019-05-15")
    with caplog.at_level(logging.WARNING):
        run = pipeline.supply(horizon)
    assert "covers 44 of the 96 slots" in caplog.text
    forecast = _site_rows(run.forecast)
    by_error_model = _site_rows(errors.supply(horizon).forecast)
    late = forecast.index >= pd.Timestamp("2019-05-15 18:00", tz="UTC")
    pd.testing.assert_frame_equal(forecast[late], by_error_model[late])
    assert not np.allclose(forecast.loc[~late, "green_mw"], by_error_model.loc[~late, "green_mw"])


def test_a_day_without_a_published_run(config, caplog):
    horizon = DayPipeline(config).horizon("2019-05-14")
    with pytest.raises(ForecastSourceError, match=r"no run in .* was published by"):
        DayPipeline(config, forecasts={"tucson": str(GFS_RUN)}, require_runs=True).supply(horizon)
    lenient = DayPipeline(config, forecasts={"tucson": str(GFS_RUN)})
    with caplog.at_level(logging.WARNING):
        run = lenient.supply(horizon)
    assert "no run in" in caplog.text
    assert run.runs["tucson"]["model"] is None
    pd.testing.assert_frame_equal(run.forecast, DayPipeline(config).supply(horizon).forecast)


def test_limits_on_p10_plan_on_the_runs_p10(config):
    pipeline = DayPipeline(config, forecasts={"tucson": str(GFS_RUN)})
    problem = pipeline.problem(pipeline.horizon("2019-05-15"))
    assert problem.limit_green_column == "green_mw_p10"
    assert (problem.supply["green_mw_p10"] <= problem.supply["green_mw"]).all()


def test_forecast_specs_from_the_config_and_the_command_line(config):
    configured = config.updated({"forecast": {"nwp": {"sources": {"tucson": str(GFS_RUN)}}}})
    assert parse_forecast_specs([], configured) == {"tucson": str(GFS_RUN)}
    assert parse_forecast_specs(["synthetic"], configured) == {"tucson": "synthetic"}
    assert parse_forecast_specs([f"tucson={NOAA}/gefs"], config) == {"tucson": f"{NOAA}/gefs"}
