"""The supply model end to end: weather file -> slots -> PV + wind -> supply table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasts.iotools import read_weather
from forecasts.sources import load_weather
from forecasts.supply import SupplyModel, site_summary
from tests.conftest import SHANGHAI_EPW, URUMQI_EPW, needs_real_weather


def test_energy_is_independent_of_slot_length(config):
    """15- and 60-minute slots give the same MWh: catches a slot-length slip in energy."""
    site = config.sites["qingyang"]
    start = pd.Timestamp("2026-04-01", tz="UTC")
    energy = {}
    for minutes in (15, 60):
        weather = load_weather(
            site, "synthetic", start, start + pd.Timedelta(days=3), freq_minutes=minutes, seed=2
        )
        supply = SupplyModel(config.sites, slot_minutes=minutes).actual({"qingyang": weather})
        energy[minutes] = site_summary(supply, config.sites).loc[0, "green_mwh"]
        assert len(supply) == 3 * 24 * 60 // minutes
    assert energy[60] == pytest.approx(energy[15], rel=0.03)


def test_hourly_file_upsampled_to_15_minutes_keeps_energy(config, tmp_path):
    site = config.sites["qingyang"]
    start = pd.Timestamp("2026-05-01", tz="UTC")
    hourly = load_weather(
        site, "synthetic", start, start + pd.Timedelta(days=2), freq_minutes=60, seed=5
    )
    path = tmp_path / "hourly.csv"
    frame = hourly.data.copy()
    frame.index.name = "time"
    path.write_text(
        f"# wind_height_m: {hourly.wind_height_m}\n"
        + frame.to_csv(date_format="%Y-%m-%dT%H:%M:%SZ")
    )
    from_file = read_weather(path)
    model15 = SupplyModel(config.sites, slot_minutes=15)
    model60 = SupplyModel(config.sites, slot_minutes=60)
    supply15 = model15.actual({"qingyang": from_file})
    supply60 = model60.actual({"qingyang": hourly})
    assert len(supply15) == 4 * len(supply60)
    pv15 = supply15["pv_mw"].sum() * 0.25
    pv60 = supply60["pv_mw"].sum()
    assert pv15 == pytest.approx(pv60, rel=0.06)
    assert supply15["wind_mw"].sum() * 0.25 == pytest.approx(supply60["wind_mw"].sum(), rel=0.1)


@pytest.mark.realdata
@needs_real_weather
def test_real_epw_year_gives_plausible_pv_yield(config):
    """A year of the real typical-year files: PV specific yield in the published range."""
    start = pd.Timestamp("2026-01-01", tz="Asia/Shanghai").tz_convert("UTC")
    end = start + pd.Timedelta(days=365)
    # Shanghai-like coast ~1,000-1,300 kWh/kWp/yr, Urumqi ~1,200-1,600 (AC yield on DC capacity)
    expected = {"shantou": (SHANGHAI_EPW, 850, 1350), "qingyang": (URUMQI_EPW, 1000, 1700)}
    for name, (path, low, high) in expected.items():
        site = config.sites[name]
        weather = load_weather(site, path, start, end, freq_minutes=60, seed=1, far_station_km=5000)
        supply = SupplyModel(config.sites, slot_minutes=60).actual({name: weather})
        dc_mw = sum(p.capacity_mw_dc for p in site.pv.values())
        specific_yield = supply["pv_mw"].sum() / dc_mw  # MWh/MWp == kWh/kWp
        assert low < specific_yield < high, f"{name}: {specific_yield:.0f} kWh/kWp"
        local_hour = pd.DatetimeIndex(supply["time"]).tz_convert(site.timezone).hour
        assert (supply.loc[np.asarray((local_hour < 3) | (local_hour >= 22)), "pv_mw"] == 0).all()
        wind_cf = supply["wind_mw"].mean() / site.wind_capacity_mw
        assert 0.02 < wind_cf < 0.6
