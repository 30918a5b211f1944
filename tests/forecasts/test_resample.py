"""Weather to slot resolution: clear-sky-index upsampling and interval-mean downsampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pvlib
import pytest

from forecasts.iotools import read_weather
from forecasts.resample import to_slots
from forecasts.weather import Weather

SITE = {"latitude": 35.7, "longitude": 107.6, "altitude_m": 1400.0}  # Qingyang-style
SHANGHAI = {"latitude": 31.4, "longitude": 121.45, "altitude_m": 5.5}
SHANGHAI_EPW = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "data"
    / "weather"
    / "CHN_Shanghai.Shanghai.583620_CSWD.epw"
)


def _hourly_weather(days: int = 4, start: str = "2026-03-18T16:00Z") -> Weather:
    """Hourly means of a cloudy sky: 5-min clear sky times a random per-hour clearness."""
    location = pvlib.location.Location(SITE["latitude"], SITE["longitude"], altitude=1400)
    fine = pd.date_range(start, periods=days * 24 * 12, freq="5min")
    clear = location.get_clearsky(fine + pd.Timedelta(minutes=2.5), model="ineichen")
    clearness = np.random.default_rng(7).uniform(0.2, 1.0, days * 24).repeat(12)
    ghi = (clear["ghi"] * clearness).resample("1h").mean()
    hours = ghi.index
    data = pd.DataFrame(
        {
            "ghi": ghi,
            "dni": (clear["dni"] * clearness**2).resample("1h").mean(),
            "dhi": ghi * 0.4,
            "temp_air": np.linspace(0.0, 10.0, len(hours)),
            "wind_speed": 5.0 + 2 * np.sin(np.arange(len(hours)) / 5),
            "pressure": 85_000.0,
        },
        index=hours.rename("time"),
    )
    return Weather(data=data, wind_height_m=10.0, source="test-hourly")


def test_same_step_is_returned_unchanged():
    weather = _hourly_weather(days=1)
    assert to_slots(weather, 60, **SITE) is weather


def test_upsampling_keeps_energy_and_is_dark_at_night():
    hourly = _hourly_weather()
    slots = to_slots(hourly, 15, **SITE)
    data = slots.data
    assert slots.freq == pd.Timedelta(minutes=15)
    assert data.index[0] == hourly.data.index[0] and len(data) == 4 * len(hourly.data)
    assert list(data.columns) == list(hourly.data.columns)
    assert any("clear-sky-index interpolation" in note for note in slots.notes)
    # each day's GHI energy [W/m^2 h] within 3 % of the source's
    daily_source = hourly.data["ghi"].resample("1D").sum()
    daily_slots = data["ghi"].resample("1D").sum() * 0.25
    np.testing.assert_allclose(daily_slots, daily_source, rtol=0.03)
    # zero where the sun is down at the slot's midpoint
    location = pvlib.location.Location(SITE["latitude"], SITE["longitude"], altitude=1400)
    solar = location.get_solarposition(data.index + pd.Timedelta(minutes=7.5))
    night = solar["zenith"].to_numpy() > 90
    assert (data.loc[night, ["ghi", "dni", "dhi"]] == 0).all().all()
    assert (data[["ghi", "dni", "dhi"]] >= 0).all().all()
    # the source's DNI is kept, not rebuilt from GHI and DHI: each hour's mean DNI returns
    # (but for a few W/m^2 at dawn, where the clear-sky DNI of the slots is still zero)
    hourly_dni = data["dni"].resample("1h").mean()
    np.testing.assert_allclose(hourly_dni, hourly.data["dni"], rtol=1e-9, atol=2.0)


def test_clear_hours_become_clear_slots():
    """Hourly means of a clear sky come back as the 15-min clear sky (kt = 1 everywhere)."""
    location = pvlib.location.Location(SITE["latitude"], SITE["longitude"], altitude=1400)
    hourly = _hourly_weather(days=2)
    fine = pd.date_range(hourly.data.index[0], periods=2 * 24 * 12, freq="5min")
    clear = location.get_clearsky(fine + pd.Timedelta(minutes=2.5), model="ineichen")["ghi"]
    clear_hourly = Weather(
        hourly.data.assign(ghi=clear.resample("1h").mean(), dhi=clear.resample("1h").mean() / 5),
        10.0,
        "clear",
    )
    slots = to_slots(clear_hourly, 15, **SITE).data
    expected = clear.resample("15min").mean()
    daylight = expected > 50
    np.testing.assert_allclose(slots["ghi"][daylight], expected[daylight], rtol=0.03)


def test_other_columns_interpolate_linearly_between_midpoints():
    hourly = _hourly_weather(days=1)
    data = to_slots(hourly, 15, **SITE).data
    source_mid = hourly.data.index + pd.Timedelta(minutes=30)
    target_mid = data.index + pd.Timedelta(minutes=7.5)
    inside = (target_mid >= source_mid[0]) & (target_mid <= source_mid[-1])
    hours_from_first = (target_mid - source_mid[0]) / pd.Timedelta(hours=1)
    ramp_per_h = 10.0 / (len(hourly.data) - 1)
    np.testing.assert_allclose(data["temp_air"][inside], hours_from_first[inside] * ramp_per_h)
    # held at the ends
    assert data["temp_air"].iloc[0] == 0.0 and data["temp_air"].iloc[-1] == 10.0
    assert (data["pressure"] == 85_000.0).all()


def test_downsampling_takes_interval_means_and_drops_an_incomplete_slot():
    fine = to_slots(_hourly_weather(days=1), 15, **SITE)
    partial = Weather(fine.data.iloc[:-2], fine.wind_height_m, fine.source)
    hourly = to_slots(partial, 60, **SITE)
    assert hourly.freq == pd.Timedelta(hours=1) and len(hourly.data) == 23
    expected = partial.data.iloc[:4].mean()
    pd.testing.assert_series_equal(hourly.data.iloc[0], expected, check_names=False)
    assert any("interval means" in note for note in hourly.notes)


@pytest.mark.parametrize("slot_minutes", [7, 0, 45, 120])
def test_slot_minutes_must_tile_the_hour(slot_minutes):
    with pytest.raises(ValueError, match="do not tile the hour"):
        to_slots(_hourly_weather(days=1), slot_minutes, **SITE)


def test_steps_must_be_multiples():
    # 20-minute slots tile the hour but neither divide nor are a multiple of a 30-minute step
    half_hourly = to_slots(_hourly_weather(days=1), 30, **SITE)
    with pytest.raises(ValueError, match="one must be a multiple of the other"):
        to_slots(half_hourly, 20, **SITE)


@pytest.mark.realdata
@pytest.mark.skipif(not SHANGHAI_EPW.exists(), reason="Shanghai EPW not present")
def test_real_epw_year_to_15_minutes_keeps_daily_energy():
    hourly = read_weather(SHANGHAI_EPW)
    slots = to_slots(hourly, 15, **SHANGHAI)
    daily_source = hourly.data["ghi"].resample("1D").sum()
    daily_slots = slots.data["ghi"].resample("1D").sum() * 0.25
    np.testing.assert_allclose(daily_slots, daily_source, rtol=0.03)
    local_hour = slots.data.index.tz_convert("Etc/GMT-8").hour
    assert (slots.data["ghi"][(local_hour < 4) | (local_hour >= 21)] == 0).all()


def test_wind_keeps_each_hours_mean_through_upsampling():
    """A windy hour between calm ones: linear interpolation would pull it down to its
    neighbours; the slots keep the hour's mean and stay non-negative."""
    hourly = _hourly_weather(days=1)
    speeds = np.zeros(24)
    speeds[[5, 12, 13, 20]] = [9.0, 6.0, 1.0, 12.0]
    weather = Weather(hourly.data.assign(wind_speed=speeds), 10.0, "calm-gusts")
    slots = to_slots(weather, 15, **SITE).data["wind_speed"]
    np.testing.assert_allclose(slots.to_numpy().reshape(24, 4).mean(axis=1), speeds, atol=1e-9)
    assert (slots >= 0).all()
    assert slots.iloc[5 * 4 : 6 * 4].max() < 9.0 + 4.5  # within-hour slope, not a spike


def test_calm_site_wind_energy_is_the_same_in_15_minute_and_hourly_slots(config):
    """A year of hourly Weibull wind at a calm site (mean 3 m/s at 10 m), AR(1) in time."""
    from scipy import stats

    from forecasts.supply import SupplyModel

    hours = 8760
    rng = np.random.default_rng(11)
    z = np.zeros(hours)
    for i in range(1, hours):
        z[i] = 0.9 * z[i - 1] + np.sqrt(1 - 0.81) * rng.standard_normal()
    wind = stats.weibull_min.ppf(stats.norm.cdf(z), 1.8, scale=3.4)
    index = pd.date_range("2026-01-01", periods=hours, freq="h", tz="UTC", name="time")
    frame = pd.DataFrame(
        {"ghi": 0.0, "dni": 0.0, "dhi": 0.0, "temp_air": 15.0, "wind_speed": wind,
         "pressure": 101_000.0},
        index=index,
    )  # fmt: skip
    weather = {"qingyang": Weather(frame, 10.0, "calm")}
    energy = {
        slot: SupplyModel(config.sites, slot_minutes=slot).actual(weather)["wind_mw"].sum()
        * slot
        / 60
        for slot in (60, 15)
    }
    assert energy[15] == pytest.approx(energy[60], rel=0.005)
