"""PV physics against references: zero at night, clipped at the inverter, peak at solar noon."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib
import pytest

from forecasts.pv import pv_ac_mw, pv_model_chain
from forecasts.specs import PVPlant


def clear_day(site, day: str, minutes: int) -> pd.DataFrame:
    """Clear-sky weather for one local day in the weather-frame contract."""
    start = pd.Timestamp(day, tz=site.timezone).tz_convert("UTC")
    index = pd.date_range(start, periods=24 * 60 // minutes, freq=f"{minutes}min")
    mid = index + pd.Timedelta(minutes=minutes) / 2
    location = pvlib.location.Location(site.latitude, site.longitude, "UTC", site.altitude_m)
    sky = location.get_clearsky(mid)
    sky.index = index
    return sky.assign(temp_air=20.0, wind_speed=2.0, pressure=101325.0)


@pytest.mark.parametrize("site_name", ["qingyang", "shantou"])
def test_zero_at_night_and_clipped_at_inverter(config, site_name):
    site = config.sites[site_name]
    plant = next(iter(site.pv.values()))
    ac = pv_ac_mw(clear_day(site, "2026-06-21", 15), plant, site)
    local_hour = ac.index.tz_convert(site.timezone).hour
    night = (local_hour < 4) | (local_hour >= 21)
    assert (ac[night] == 0).all()
    assert ac.max() <= plant.capacity_mw_ac + 1e-9
    assert ac.max() > 0.6 * plant.capacity_mw_ac  # a clear June day gets near full output


def test_peak_near_solar_noon_local_time(config):
    site = config.sites["qingyang"]  # 107.6 E in UTC+8: solar noon is about 12:50 local
    plant = next(iter(site.pv.values()))
    ac = pv_ac_mw(clear_day(site, "2026-09-22", 15), plant, site)
    local = ac.index.tz_convert(site.timezone) + pd.Timedelta(minutes=7.5)
    hours = local.hour + local.minute / 60
    centroid = float(np.average(hours, weights=ac.to_numpy()))
    solar_noon = 12 + (120 - site.longitude) * 4 / 60 + 7.5 / 60  # equation of time ~ -7.5 min
    assert abs(centroid - solar_noon) < 0.3


def test_daily_yield_units_and_slot_length(config):
    """A clear-day yield of 4-8 kWh/kWp catches kW/MW slips; 15 and 60 min slots agree."""
    site = config.sites["qingyang"]
    plant = next(iter(site.pv.values()))
    energy_mwh = {}
    for minutes in (15, 60):
        ac = pv_ac_mw(clear_day(site, "2026-06-21", minutes), plant, site)
        energy_mwh[minutes] = ac.sum() * minutes / 60
    specific_yield = energy_mwh[15] / plant.capacity_mw_dc  # MWh/MWp == kWh/kWp
    assert 4.0 < specific_yield < 8.5
    assert energy_mwh[60] == pytest.approx(energy_mwh[15], rel=0.05)


def test_more_dc_than_ac_clips_flat(config):
    site = config.sites["qingyang"]
    plant = PVPlant(capacity_mw_dc=40, capacity_mw_ac=20, tilt_deg=30)
    ac = pv_ac_mw(clear_day(site, "2026-06-21", 15), plant, site)
    assert ac.max() == pytest.approx(20.0)
    assert (ac > 19.99).sum() >= 8  # a flat clipped top of at least two hours


def test_rows_without_irradiance_skipped_as_the_whole_chain_gives_them(config):
    """Only rows with irradiance are modelled: the output equals pvlib's chain run on every
    row, with dark rows in daytime, missing values and frost and heat among them."""
    site = config.sites["qingyang"]
    plant = next(iter(site.pv.values()))
    weather = clear_day(site, "2026-06-21", 15)
    weather["temp_air"] = np.linspace(-30.0, 50.0, len(weather))
    weather.iloc[40:44, weather.columns.get_indexer(["ghi", "dni", "dhi"])] = 0.0  # eclipse
    weather.iloc[50, weather.columns.get_loc("ghi")] = np.nan
    weather.iloc[52, weather.columns.get_loc("temp_air")] = np.nan
    chain = pv_model_chain(plant, site)
    mid = weather[["ghi", "dni", "dhi", "temp_air", "wind_speed"]]
    mid.index = weather.index + pd.Timedelta(minutes=7.5)
    chain.run_model(mid)
    whole_mw = (chain.results.ac.fillna(0.0) / 1e6).clip(lower=0.0, upper=plant.capacity_mw_ac)
    np.testing.assert_array_equal(pv_ac_mw(weather, plant, site).to_numpy(), whole_mw.to_numpy())
