"""Synthetic weather: seeded, persistent, plausible; a year gives plausible capacity factors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib
import pytest
from scipy import special

from forecasts.error import ForecastError
from forecasts.pv import pv_ac_mw
from forecasts.specs import Climate
from forecasts.supply import SupplyModel, sun_factor
from forecasts.synthetic import synthetic_weather
from forecasts.wind import power_law_to_height, wind_farm_mw

UTC = "UTC"
YEAR = (pd.Timestamp("2026-01-01", tz=UTC), pd.Timestamp("2027-01-01", tz=UTC))


@pytest.fixture(scope="module")
def year_weather(config):
    return {name: synthetic_weather(site, *YEAR, 60, seed=7) for name, site in config.sites.items()}


def test_same_seed_same_weather_and_day_consistency(config):
    site = config.sites["qingyang"]
    day = (pd.Timestamp("2026-03-10", tz=UTC), pd.Timestamp("2026-03-11", tz=UTC))
    alone = synthetic_weather(site, *day, 15, seed=3).data
    again = synthetic_weather(site, *day, 15, seed=3).data
    pd.testing.assert_frame_equal(alone, again)
    in_range = synthetic_weather(site, pd.Timestamp("2026-03-01", tz=UTC), day[1], 15, seed=3).data
    pd.testing.assert_frame_equal(alone, in_range.loc[alone.index])
    other = synthetic_weather(site, *day, 15, seed=4).data
    assert not np.allclose(alone["wind_speed"], other["wind_speed"])


def test_weather_frame_contract(config):
    weather = synthetic_weather(
        config.sites["shantou"], *YEAR[:1], YEAR[0] + pd.Timedelta(days=2), 15
    )
    data = weather.data
    assert str(data.index.tz) == UTC and data.index.is_monotonic_increasing
    assert set(data.columns) >= {"ghi", "dni", "dhi", "temp_air", "wind_speed", "pressure"}
    assert (data[["ghi", "dni", "dhi", "wind_speed"]] >= 0).all().all()
    assert data["ghi"].max() < 1200
    assert 95_000 < data["pressure"].iloc[0] < 102_000  # near sea level
    assert weather.wind_height_m == config.sites["shantou"].climate.wind_height_m


def test_cloudy_days_come_in_runs_and_wind_is_weibull(config, year_weather):
    site = config.sites["qingyang"]
    data = year_weather["qingyang"].data
    local_day = data.index.tz_convert(site.timezone).date
    clear_ghi = data["ghi"] / np.maximum(data["ghi"].groupby(local_day).transform("max"), 1)
    daily = data["ghi"].groupby(local_day).sum()
    lag1 = np.corrcoef(daily.to_numpy()[:-1], daily.to_numpy()[1:])[0, 1]
    assert lag1 > 0.3, "daily irradiance should persist from day to day"
    assert clear_ghi.notna().all()
    climate = site.climate
    weibull_mean = climate.wind_weibull_scale_m_s * special.gamma(
        1 + 1 / climate.wind_weibull_shape
    )
    assert data["wind_speed"].mean() == pytest.approx(weibull_mean, rel=0.1)
    hourly = data["wind_speed"].to_numpy()
    assert np.corrcoef(hourly[:-1], hourly[1:])[0, 1] > 0.8  # wind persists hour to hour


def test_annual_irradiance_is_plausible(config, year_weather):
    # Gansu loess plateau receives about 1,400-1,650 kWh/m2 a year, coastal Guangdong 1,200-1,450
    ranges = {"qingyang": (1300, 1750), "shantou": (1100, 1500)}
    for name, (low, high) in ranges.items():
        annual_kwh_m2 = year_weather[name].data["ghi"].sum() / 1000
        assert low < annual_kwh_m2 < high, name


def test_annual_capacity_factors_are_plausible(config, year_weather):
    """Ranges: China's onshore wind averages ~22-28 % (Gansu ~20-30 %), offshore ~30-45 %,
    utility PV ~14-20 % on AC capacity in Gansu and ~11-17 % on the humid south coast."""
    expected = {
        ("qingyang", "pv"): (0.13, 0.22),
        ("qingyang", "wind"): (0.18, 0.34),
        ("shantou", "pv"): (0.10, 0.18),
        ("shantou", "wind"): (0.28, 0.48),
    }
    for name, weather in year_weather.items():
        site = config.sites[name]
        for plant in site.pv.values():
            cf = pv_ac_mw(weather.data, plant, site).mean() / plant.capacity_mw_ac
            low, high = expected[(name, "pv")]
            assert low < cf < high, f"{name} PV CF {cf:.3f}"
        for farm in site.wind.values():
            cf = wind_farm_mw(weather.data, farm, weather.wind_height_m).mean() / farm.capacity_mw
            low, high = expected[(name, "wind")]
            assert low < cf < high, f"{name} wind CF {cf:.3f}"


def test_forecast_error_size_and_night(config, year_weather):
    model = SupplyModel(config.sites, slot_minutes=60)
    actual = model.actual({"qingyang": year_weather["qingyang"]})
    error = ForecastError(wind_nrmse=0.15, pv_nrmse=0.07, correlation_hours=6)
    forecast = model.forecast(actual, error, seed=1)
    site = config.sites["qingyang"]
    wind_nrmse = (
        np.sqrt(((forecast["wind_mw"] - actual["wind_mw"]) ** 2).mean()) / site.wind_capacity_mw
    )
    assert 0.08 < wind_nrmse < 0.16  # clipping at 0 and nameplate trims the 15 % a little
    night = sun_factor(pd.DatetimeIndex(actual["time"]), site.latitude, site.longitude) == 0
    assert (forecast.loc[night, "pv_mw"] == 0).all()
    assert (forecast["green_mw_p10"] <= forecast["green_mw"] + 1e-9).all()
    assert (forecast["green_mw_p90"] >= forecast["green_mw"] - 1e-9).all()
    perfect = model.forecast(actual, error.scaled(0.0), seed=1, quantiles=False)
    np.testing.assert_allclose(perfect["green_mw"], actual["green_mw"])
    again = model.forecast(actual, error, seed=1)
    pd.testing.assert_frame_equal(forecast, again)


def _local(frame: pd.DataFrame, site) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(frame.index).tz_convert(site.timezone)


def test_shantou_wind_is_stronger_in_the_winter_monsoon(config, year_weather):
    """The north-east monsoon through the Taiwan Strait (Oct-Mar) against summer's weak
    south-west monsoon: at 10 m and in the farm's output."""
    site = config.sites["shantou"]
    data = year_weather["shantou"].data
    month = _local(data, site).month
    winter, summer = month.isin([12, 1, 2]), month.isin([6, 7, 8])
    assert data["wind_speed"][winter].mean() > 1.2 * data["wind_speed"][summer].mean()
    output = sum(wind_farm_mw(data, farm, 10.0) for farm in site.wind.values())
    assert output[winter].mean() > 1.2 * output[summer].mean()


def test_qingyang_wind_aloft_peaks_at_night_while_the_surface_peaks_by_day(config, year_weather):
    site = config.sites["qingyang"]
    data = year_weather["qingyang"].data
    hour = _local(data, site).hour
    farm = next(iter(site.wind.values()))
    hub = power_law_to_height(
        data["wind_speed"], 10.0, farm.hub_height_m, data["wind_shear_exponent"]
    )
    hub_by_hour = hub.groupby(hour).mean()
    surface_by_hour = data["wind_speed"].groupby(hour).mean()
    assert hub_by_hour.idxmax() in (21, 22, 23, 0, 1, 2, 3, 4, 5, 6, 7)
    assert 11 <= surface_by_hour.idxmax() <= 17
    output = wind_farm_mw(data, farm, 10.0).groupby(hour).mean() / farm.capacity_mw
    night, afternoon = output[[0, 1, 2, 3, 4, 5]].mean(), output[[13, 14, 15, 16]].mean()
    assert night > 1.2 * afternoon  # the wind and the sun no longer coincide


def test_qingyang_autumn_is_cloudier_than_winter(config, year_weather):
    site = config.sites["qingyang"]
    data = year_weather["qingyang"].data
    clear = pvlib.location.Location(site.latitude, site.longitude, "UTC", site.altitude_m)
    ghi_clear = clear.get_clearsky(data.index + pd.Timedelta(minutes=30))["ghi"].to_numpy()
    month = _local(data, site).month
    index = (
        pd.Series(data["ghi"].to_numpy(), index=month).groupby(level=0).sum()
        / pd.Series(ghi_clear, index=month).groupby(level=0).sum()
    )
    assert index[9] < 0.85 * index[12]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("wind_month_factors", [1.0] * 11, "12 positive factors"),
        ("clearness_month_factors", [1.5] * 12, "must average 1"),
        ("wind_shear_exponent_day", 0.1, "or neither"),
    ],
)
def test_climate_months_and_shear_are_checked(field, value, message):
    with pytest.raises(ValueError, match=message):
        Climate(**{field: value})
