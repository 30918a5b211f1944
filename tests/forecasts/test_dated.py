"""Dated historical weather keeps its dates: actual-year EPW, PVGIS hourly, Open-Meteo CSV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib
import pytest

from forecasts.iotools import WeatherFileError, read_weather, sniff_kind
from forecasts.sources import load_weather
from tests.conftest import greensched
from tests.forecasts.weather_files import (
    SHANGHAI,
    epw_rows,
    epw_text,
    hourly_weather,
    open_meteo_csv,
    pvgis_hourly_csv,
    pvgis_hourly_json,
)

# operating days of Asia/Shanghai: local midnight is 16:00 UTC the day before
DAY_2019_06_10 = (pd.Timestamp("2019-06-09T16:00Z"), pd.Timestamp("2019-06-10T16:00Z"))


@pytest.fixture(scope="module")
def utc_2019() -> pd.DataFrame:
    """Hourly weather of the UTC year 2019 at Shanghai (interval starts)."""
    return hourly_weather("2019-01-01T00:00Z", 8760)


def _load(site, path, start, end):
    return load_weather(site, path, start, end, freq_minutes=60, seed=1, far_station_km=1e4)


def test_actual_year_epw_keeps_its_dates_and_feb_29(site, tmp_path):
    frame = hourly_weather("2019-12-31T16:00Z", 8784)  # the local leap year 2020 at UTC+8
    text = epw_text(epw_rows(frame, 8.0)).replace(",CSWD,", ",AMY,")
    path = tmp_path / "shanghai_2020.epw"
    path.write_text(text)
    weather = read_weather(path)
    assert not weather.typical_year
    assert weather.data.index[0] == pd.Timestamp("2019-12-31T16:00Z") and len(weather.data) == 8784
    feb29 = (pd.Timestamp("2020-02-28T16:00Z"), pd.Timestamp("2020-02-29T16:00Z"))
    day = _load(site, path, *feb29)
    np.testing.assert_allclose(
        day.data["temp_air"], frame.loc[feb29[0] : feb29[1], "temp_air"].iloc[:-1], atol=0.05
    )
    with pytest.raises(WeatherFileError, match=r"covers 2019-12-31T16:00.*asked for") as error:
        _load(site, path, pd.Timestamp("2021-03-01T16:00Z"), pd.Timestamp("2021-03-02T16:00Z"))
    assert str(error.value).startswith(str(path))


def test_one_year_epw_of_a_typical_year_product_stays_typical(tmp_path):
    """The CSWD files carry one year in every row; their header says what they are."""
    frame = hourly_weather("2004-12-31T16:00Z", 8760)
    path = tmp_path / "cswd.epw"
    path.write_text(epw_text(epw_rows(frame, 8.0)))  # LOCATION source field: CSWD
    assert read_weather(path).typical_year


@pytest.mark.parametrize("writer", [pvgis_hourly_csv, pvgis_hourly_json], ids=["csv", "json"])
def test_pvgis_hourly_series_on_its_dates(site, tmp_path, utc_2019, writer):
    path = writer(
        tmp_path / f"pvgis_2019.{'csv' if writer is pvgis_hourly_csv else 'json'}", utc_2019
    )
    assert sniff_kind(path) == "pvgis_hourly"
    weather = read_weather(path)
    assert not weather.typical_year and weather.station == pytest.approx(SHANGHAI)
    data = weather.data
    assert data.index[0] == pd.Timestamp("2019-01-01T00:00Z") and len(data) == 8760
    np.testing.assert_allclose(data["ghi"], utc_2019["ghi"], atol=0.1)
    # beam back to normal incidence; where the sun is well up it matches the source DNI
    # (below 2 deg of sun the beam is counted as diffuse)
    high = utc_2019["ghi"].to_numpy() > 300
    np.testing.assert_allclose(data["dhi"][high], utc_2019["dhi"][high], atol=0.1)
    np.testing.assert_allclose(data["dni"][high], utc_2019["dni"][high], rtol=0.06)
    assert data["pressure"].iloc[0] == pytest.approx(pvlib.atmosphere.alt2pres(4.0))
    day = _load(site, path, *DAY_2019_06_10)
    assert day.data.index[0] == DAY_2019_06_10[0] and abs(day.clock_offset_minutes) < 10
    np.testing.assert_allclose(day.data["ghi"], utc_2019.loc[day.data.index, "ghi"], atol=0.1)


def test_pvgis_first_local_day_takes_the_missing_utc_hours_with_a_warning(site, tmp_path, utc_2019):
    path = pvgis_hourly_csv(tmp_path / "pvgis_2019.csv", utc_2019)
    first_day = (pd.Timestamp("2018-12-31T16:00Z"), pd.Timestamp("2019-01-01T16:00Z"))
    with pytest.warns(UserWarning, match=r"8 h at the ends of the request"):
        day = _load(site, path, *first_day)
    assert len(day.data) == 24
    np.testing.assert_allclose(  # 16:00-24:00 UTC of Dec 31 from Jan 1
        day.data["temp_air"].iloc[:8], utc_2019["temp_air"].iloc[16:24], atol=0.01
    )
    with pytest.raises(WeatherFileError, match="asked for"):
        _load(site, path, pd.Timestamp("2018-12-29T16:00Z"), pd.Timestamp("2019-01-01T16:00Z"))


def test_pvgis_series_on_a_tilted_plane_is_refused(tmp_path, utc_2019):
    path = pvgis_hourly_csv(tmp_path / "tilted.csv", utc_2019.iloc[:48], slope_deg=30)
    with pytest.raises(WeatherFileError, match="tilted 30 deg; download it for a horizontal"):
        read_weather(path)


@pytest.mark.parametrize("unit", ["km/h", "m/s", "kn"])
def test_open_meteo_export_units_and_hour_end_labels(site, tmp_path, utc_2019, unit):
    path = open_meteo_csv(tmp_path / "open-meteo.csv", utc_2019, wind_unit=unit)
    assert sniff_kind(path) == "open_meteo"
    weather = read_weather(path)
    data = weather.data
    # local 2019-01-01T09:00 (UTC+8) ends the hour that starts at 00:00 UTC
    assert data.index[0] == pd.Timestamp("2019-01-01T00:00Z") and not weather.typical_year
    np.testing.assert_allclose(data["wind_speed"], utc_2019["wind_speed"], atol=0.06)
    np.testing.assert_allclose(data["pressure"], 101_000.0)
    np.testing.assert_allclose(data["ghi"], utc_2019["ghi"], atol=0.06)
    day = _load(site, path, *DAY_2019_06_10)
    assert abs(day.clock_offset_minutes) < 10


def test_open_meteo_unknown_unit_names_the_column(tmp_path, utc_2019):
    path = open_meteo_csv(tmp_path / "om.csv", utc_2019.iloc[:48])
    path.write_text(path.read_text().replace("(hPa)", "(inHg)"))
    with pytest.raises(WeatherFileError, match=r"'surface_pressure \(inHg\)': unit 'inHg'"):
        read_weather(path)


@pytest.mark.slow
def test_replay_runs_pvgis_and_open_meteo_on_their_real_dates(tmp_path, utc_2019):
    """``greensched replay`` on a PVGIS series (qingyang) and an Open-Meteo export (shantou):
    the supply it settles on is the one ``forecast --actual`` computes from the same files on
    the same real dates."""
    pvgis = pvgis_hourly_csv(tmp_path / "pvgis_2019.csv", utc_2019)
    meteo = open_meteo_csv(tmp_path / "open_meteo_2019.csv", utc_2019)
    weather = ["--weather", f"qingyang={pvgis}", "--weather", f"shantou={meteo}"]
    replay = greensched("replay", *weather, "--from", "2019-06-10", "--to", "2019-06-11",
                        "--policies", "fifo,greedy", "--out", str(tmp_path / "replay"),
                        cwd=tmp_path)  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    forecast = greensched("forecast", *weather, "--start", "2019-06-10", "--days", "2",
                          "--actual", "--out", str(tmp_path / "actual.csv"),
                          cwd=tmp_path)  # fmt: skip
    assert forecast.returncode == 0, forecast.stderr
    load = pd.read_csv(tmp_path / "replay" / "site_load.csv", parse_dates=["time"])
    load = load[load["policy"] == "fifo"]
    actual = pd.read_csv(tmp_path / "actual.csv", parse_dates=["time"])
    daily = pd.read_csv(tmp_path / "replay" / "daily.csv")
    assert sorted(daily["day"].unique()) == ["2019-06-10", "2019-06-11"]
    merged = load.merge(actual, on=["time", "site"], suffixes=("_load", "_actual"))
    assert len(merged) == len(actual) == 2 * 2 * 96
    np.testing.assert_allclose(merged["green_mw_load"], merged["green_mw_actual"], atol=1e-6)
