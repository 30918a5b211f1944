"""Day-ahead forecast errors: unbiased, calibrated, sized as published, PV worse when cloudy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasts.error import MAX_SHARE_OF_CLIMATOLOGY, ForecastError, add_forecast_error
from forecasts.supply import SupplyModel, sun_factor
from forecasts.synthetic import synthetic_weather

YEAR = (pd.Timestamp("2025-12-31T16:00Z"), pd.Timestamp("2026-12-31T16:00Z"))
ERROR = ForecastError(wind_nrmse=0.15, pv_nrmse=0.08, correlation_hours=6)


@pytest.fixture(scope="module")
def year_actual(config):
    """A year of hourly actual supply at both default sites from synthetic weather."""
    model = SupplyModel(config.sites, slot_minutes=60)
    weather = {
        name: synthetic_weather(site, *YEAR, 60, seed=5) for name, site in config.sites.items()
    }
    return model.actual(weather)


def _day_by_day(config, actual, error=ERROR, seed=1):
    """Day-ahead forecasts issued one operating day at a time, on the year's distribution."""
    model = SupplyModel(config.sites, slot_minutes=60)
    local_day = (pd.DatetimeIndex(actual["time"]) + pd.Timedelta(hours=8)).date
    parts = [
        model.forecast(rows.reset_index(drop=True), error, seed, reference=actual)
        for _, rows in actual.groupby(local_day)
    ]
    return pd.concat(parts).sort_values(["site", "time"], ignore_index=True)


def _calm_wind_series(hours: int, seed: int = 3) -> pd.DataFrame:
    """Output of a calm site [MW of 30]: cubic in an AR(1) wind, zero below cut-in (~45 %)."""
    rng = np.random.default_rng(seed)
    z = np.zeros(hours)
    for i in range(1, hours):
        z[i] = 0.9 * z[i - 1] + np.sqrt(1 - 0.81) * rng.standard_normal()
    speed = np.maximum(3.0 + 2.0 * z, 0.0)
    power = 30.0 * np.clip((speed - 3.0) / 9.0, 0.0, 1.0) ** 3
    index = pd.date_range("2026-01-01", periods=hours, freq="h", tz="UTC")
    return pd.DataFrame({"pv_mw": 0.0, "wind_mw": power}, index=index)


def _tails(actual: pd.Series, forecast: pd.DataFrame) -> tuple[float, float, float, float]:
    a = actual.to_numpy()
    low, high = forecast["green_mw_p10"].to_numpy(), forecast["green_mw_p90"].to_numpy()
    return (
        float(np.mean(a < low - 1e-9)),
        float(np.mean(a <= low + 1e-9)),
        float(np.mean(a > high + 1e-9)),
        float(np.mean(a >= high - 1e-9)),
    )


@pytest.mark.slow
def test_unbiased_and_calibrated_over_a_year_at_both_sites(config, year_actual):
    forecast = _day_by_day(config, year_actual)
    for name, site in config.sites.items():
        rows = (year_actual["site"] == name).to_numpy()
        actual, predicted = year_actual[rows], forecast[rows]
        for column, capacity in (
            ("wind_mw", site.wind_capacity_mw),
            ("pv_mw", site.pv_capacity_mw_ac),
        ):
            bias = (predicted[column].to_numpy() - actual[column].to_numpy()).mean() / capacity
            assert abs(bias) < 0.01, f"{name} {column} bias {bias:+.2%}"
        below, at_or_below, above, at_or_above = _tails(actual["green_mw"], predicted)
        assert 0.08 <= below <= 0.12 and 0.08 <= above <= 0.12, (name, below, above)
        assert 0.77 <= 1 - below - above <= 0.83
        assert at_or_below >= 0.08 and at_or_above >= 0.08


def test_calm_site_is_unbiased_where_clipping_was_not():
    actual = _calm_wind_series(24 * 120)
    assert (actual["wind_mw"] == 0).mean() > 0.4
    forecast = add_forecast_error(
        actual, capacities_mw={"pv": 0.0, "wind": 30.0}, sun_factor=np.zeros(len(actual)),
        error=ERROR, seed=2, key="calm",
    )  # fmt: skip
    bias = (forecast["wind_mw"] - actual["wind_mw"]).mean() / 30.0
    assert abs(bias) < 0.01
    # the old model, Gaussian error of 15 % of capacity clipped to [0, capacity], is biased high
    rng = np.random.default_rng(0)
    clipped = np.clip(actual["wind_mw"] + 0.15 * 30.0 * rng.standard_normal(len(actual)), 0, 30)
    assert (clipped - actual["wind_mw"]).mean() / 30.0 > 0.03
    # a point mass at 0: a calibrated p10 may equal the actual, so 10 % lies between the two
    below, at_or_below, above, _at_or_above = _tails(actual["wind_mw"], forecast)
    assert below <= 0.12 and at_or_below >= 0.08
    assert 0.08 <= above <= 0.12


def test_error_size_follows_the_target_or_a_share_of_climatology():
    windy = _calm_wind_series(24 * 120) * 3.0  # 0-90 MW on a 90 MW farm: enough variability
    windy["wind_mw"] = np.minimum(windy["wind_mw"] + 20.0 * (windy["wind_mw"] > 0), 90.0)
    for actual, capacity in ((windy, 90.0), (_calm_wind_series(24 * 120), 30.0)):
        forecast = add_forecast_error(
            actual, capacities_mw={"pv": 0.0, "wind": capacity},
            sun_factor=np.zeros(len(actual)), error=ERROR, seed=4, key="x",
        )  # fmt: skip
        nrmse = np.sqrt(((forecast["wind_mw"] - actual["wind_mw"]) ** 2).mean()) / capacity
        climatology = actual["wind_mw"].std() / capacity
        expected = min(0.15, MAX_SHARE_OF_CLIMATOLOGY * climatology)
        assert nrmse == pytest.approx(expected, rel=0.15), (capacity, climatology)


@pytest.mark.slow
def test_pv_errors_grow_with_cloudiness_and_match_published_size(config, year_actual):
    """Pooled over four seeds (one year of draws alone varies the ratio between about 0.7 and
    0.9): clear days' PV RMSE well below cloudy days', where an error independent of the
    weather would give clear days the larger MW errors (more sun)."""
    site = config.sites["qingyang"]
    rows = (year_actual["site"] == "qingyang").to_numpy()
    actual = year_actual[rows]
    times = pd.DatetimeIndex(actual["time"])
    daylit = sun_factor(times, site.latitude, site.longitude, site.altitude_m) > 0.05
    capacity = site.pv_capacity_mw_ac
    day = (times + pd.Timedelta(hours=8)).normalize()[daylit]
    frames = []
    for seed in (1, 2, 3, 4):
        predicted = _day_by_day(config, year_actual, seed=seed)[rows]
        error = (predicted["pv_mw"].to_numpy() - actual["pv_mw"].to_numpy())[daylit]
        frames.append(
            pd.DataFrame({"seed": seed, "day": day, "pv": actual["pv_mw"].to_numpy()[daylit],
                          "e2": error**2})
        )  # fmt: skip
    frame = pd.concat(frames, ignore_index=True)
    nrmse = np.sqrt(frame["e2"].mean()) / capacity
    assert 0.05 <= nrmse <= 0.14  # published day-ahead PV, share of capacity, daylit hours
    # clear days (top third of daily PV energy in their month) against cloudy ones (bottom third)
    daily = frame.groupby(["seed", "day"]).agg(pv=("pv", "sum"), e2=("e2", "mean"))
    months = daily.index.get_level_values("day").month
    rank = daily.groupby([daily.index.get_level_values("seed"), months])["pv"].rank(pct=True)
    clear_rmse = np.sqrt(daily.loc[rank > 2 / 3, "e2"].mean())
    cloudy_rmse = np.sqrt(daily.loc[rank < 1 / 3, "e2"].mean())
    assert clear_rmse < 0.85 * cloudy_rmse


def test_perfect_foresight_and_dark_nights(config, year_actual):
    rows = year_actual[year_actual["site"] == "qingyang"].iloc[: 24 * 7]
    model = SupplyModel(config.sites, slot_minutes=60)
    perfect = model.forecast(rows.reset_index(drop=True), ERROR.scaled(0.0), seed=1)
    np.testing.assert_allclose(perfect["green_mw"], rows["green_mw"])
    forecast = model.forecast(rows.reset_index(drop=True), ERROR, seed=1)
    site = config.sites["qingyang"]
    night = sun_factor(pd.DatetimeIndex(rows["time"]), site.latitude, site.longitude) == 0
    assert (forecast.loc[night, "pv_mw"] == 0).all()
    assert (forecast["green_mw_p10"] <= forecast["green_mw"] + 1e-9).all()
    assert (forecast["green_mw_p90"] >= forecast["green_mw"] - 1e-9).all()
    assert (forecast["green_mw"] <= site.pv_capacity_mw_ac + site.wind_capacity_mw + 1e-9).all()
    again = model.forecast(rows.reset_index(drop=True), ERROR, seed=1)
    pd.testing.assert_frame_equal(forecast, again)
