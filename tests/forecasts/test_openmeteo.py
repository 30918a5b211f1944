"""The Open-Meteo sources through the real ``openmeteo-requests`` client, its cache and retries,
against a stand-in server on 127.0.0.1 serving real NOAA runs as Open-Meteo would
(:mod:`tests.forecasts.openmeteo_server`); the live service only with GREENSCHED_LIVE=1."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasts.error import ForecastError
from forecasts.nwp.ensemble import run_supply
from forecasts.nwp.openmeteo import MODELS, OpenMeteo, OpenMeteoApi
from forecasts.nwp.settings import NwpSettings, OpenMeteoSettings
from forecasts.nwp.sources import forecast_source
from forecasts.supply import SupplyModel
from forecasts.weather import ForecastSourceError
from scheduler.config import load_config
from tests.forecasts.openmeteo_server import (
    ENSEMBLE_PATH,
    FORECAST_PATH,
    GFS_JULY,
    GFS_MAY,
    NOAA,
    SINGLE_RUNS_PATH,
    OpenMeteoStandIn,
    StandInServer,
    gefs_members,
    grid_point,
    noaa_run,
    open_meteo_values,
    surface_pressure_hpa,
)

pytestmark = pytest.mark.skipif(not NOAA.exists(), reason="../shared/data/nwp/noaa is absent")

REPO = Path(__file__).resolve().parents[2]
MAY_00Z = "2019-05-15T00:00"
JULY_00Z = "2019-07-15T00:00"
GFS = MODELS["ncep_gfs_global"]  # runs every 6 h, served 4 h after its issue time
SLOT_H = 0.25


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def _clock(text: str):
    return lambda: _utc(text)


@pytest.fixture(scope="module")
def tucson():
    return load_config(REPO / "configs" / "tucson.yaml").sites["tucson"]


@pytest.fixture(scope="module")
def runs():
    """The real NOAA runs the stand-in serves: GFS of 2019-05-15 and 2019-07-15 00Z, GEFS
    (control and 20 members) of 2019-05-15 00Z."""
    return {
        "gfs_may": noaa_run([GFS_MAY], MAY_00Z),
        "gfs_july": noaa_run([GFS_JULY], JULY_00Z),
        "gefs_may": noaa_run(gefs_members(), MAY_00Z),
    }


@pytest.fixture
def server(runs):
    """The stand-in: newest runs GFS and GEFS of 2019-05-15 00Z; past runs both GFS runs."""
    stand_in = OpenMeteoStandIn(
        live={FORECAST_PATH: runs["gfs_may"], ENSEMBLE_PATH: runs["gefs_may"]},
        runs={MAY_00Z: runs["gfs_may"], JULY_00Z: runs["gfs_july"]},
    )
    with StandInServer(stand_in) as running:
        yield running


def _settings(base_url: str, cache_dir: Path, **changes) -> OpenMeteoSettings:
    options = {
        "forecast_url": base_url + FORECAST_PATH,
        "ensemble_url": base_url + ENSEMBLE_PATH,
        "single_runs_url": base_url + SINGLE_RUNS_PATH,
        "cache_dir": str(cache_dir),
        "retries": 2,
        "backoff_s": 0.0,
        "timeout_s": 5.0,
    }
    return OpenMeteoSettings(**(options | changes))


def _source(server, tmp_path, api: OpenMeteoApi = "forecast", model=GFS, now=MAY_00Z, **changes):
    """A source on the stand-in whose clock reads ``now`` + 6 h (by default the 2019-05-15 00Z
    run is the newest published)."""
    clock = _clock(str(_utc(now) + pd.Timedelta(hours=6)))
    return OpenMeteo(api, model, _settings(server.base_url, tmp_path, **changes), clock=clock)


def _read_newest(source, site):
    ref = source.latest(source.clock())
    return source.read(ref, {site.name: site}, 15)[site.name]


def _served_energy_wh_m2(served: pd.Series, slots: pd.DatetimeIndex) -> float:
    """Energy of preceding-hour means over the hours inside the slots' span [Wh/m^2]."""
    start, end = slots[0], slots[-1] + pd.Timedelta(minutes=15)
    inside = served[(served.index - pd.Timedelta(hours=1) >= start) & (served.index <= end)]
    return float(inside.sum())


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_forecast_api_run_keeps_each_days_served_irradiance_energy(server, tmp_path, tucson, runs):
    ridge = tucson.model_copy(update={"name": "ridge", "latitude": 32.4, "longitude": -110.1})
    source = _source(server, tmp_path)
    ref = source.latest(source.clock())
    read = source.read(ref, {"tucson": tucson, "ridge": ridge}, 15)

    assert len(server.stand_in.requests) == 1  # both sites in one request
    asked = server.stand_in.requests[0]
    assert (asked["models"], asked["start_hour"], asked["timezone"]) == (GFS.name, MAY_00Z, "GMT")
    for site in (tucson, ridge):
        run = read[site.name]
        assert (run.model, run.issued_at, run.source) == (GFS.name, _utc(MAY_00Z), source.label)
        assert run.members == ("",)
        cell = grid_point(runs["gfs_may"], site.latitude, site.longitude)
        assert (run.grid_point.latitude, run.grid_point.longitude) == pytest.approx(cell)
        weather = run.weather[""].data
        served = open_meteo_values(runs["gfs_may"], 0, site.latitude, site.longitude)
        daily_run = weather["ghi"].groupby(weather.index.floor("D")).sum() * SLOT_H
        for day, energy_wh_m2 in daily_run.items():
            day_slots = weather.index[weather.index.floor("D") == day]
            served_wh_m2 = _served_energy_wh_m2(served["shortwave_radiation"], day_slots)
            assert served_wh_m2 > 5000  # a clear May day in the desert
            assert energy_wh_m2 == pytest.approx(served_wh_m2, rel=0.005)
        # temperature in C, pressure from hPa to Pa
        lead = served.loc[weather.index[0] : weather.index[-1]]
        assert weather["temp_air"].mean() == pytest.approx(lead["temperature_2m"].mean(), abs=0.5)
        hpa = surface_pressure_hpa(site.latitude, site.longitude)
        assert weather["pressure"].to_numpy() == pytest.approx(100 * hpa)
    assert read["tucson"].grid_point != read["ridge"].grid_point  # each site its own cell


def test_wind_is_asked_and_read_in_metres_per_second(server, tmp_path, tucson, runs):
    run = _read_newest(_source(server, tmp_path), tucson)

    assert server.stand_in.requests[0]["wind_speed_unit"] == "ms"
    weather = run.weather[""].data
    served = open_meteo_values(runs["gfs_may"], 0, tucson.latitude, tucson.longitude)
    served_m_s = served.loc[weather.index[0] : weather.index[-1], "wind_speed_10m"]
    # km/h read as m/s would be 3.6 times as large
    assert weather["wind_speed"].mean() == pytest.approx(served_m_s.mean(), rel=0.05)
    assert run.weather[""].wind_height_m == 10.0  # GFS's 80 m level is not in the NOAA file


def test_wind_answered_in_km_h_is_an_error_naming_the_unit(server, tmp_path, tucson):
    server.stand_in.ignore_wind_unit = True

    with pytest.raises(ForecastSourceError) as error:
        _read_newest(_source(server, tmp_path), tucson)
    message = _one_line(error)
    assert "wind_speed_10m comes in kilometres_per_hour, not metre_per_second" in message
    assert message.startswith(f"open-meteo:{GFS.name}: {server.base_url}{FORECAST_PATH}")


def test_ensemble_api_gives_every_member_and_quantiles_around_the_forecast(
    server, tmp_path, tucson
):
    source = _source(server, tmp_path, "ensemble", MODELS["ncep_gefs025"])
    run = _read_newest(source, tucson)

    assert len(run.members) == len(gefs_members()) == 21
    assert run.members[0] == "m00" and run.is_ensemble
    supply = run_supply(
        run, tucson, SupplyModel({"tucson": tucson}, slot_minutes=15), ForecastError()
    )
    assert (supply["green_mw_p10"] <= supply["green_mw"] + 1e-9).all()
    assert (supply["green_mw"] <= supply["green_mw_p90"] + 1e-9).all()
    spread = supply["green_mw_p90"] - supply["green_mw_p10"]
    assert spread.max() > 0.5  # MW: the members disagree
    noon = supply.index.hour == 19  # local solar noon in Tucson, UTC
    assert (supply.loc[noon, "pv_mw"] > 0).all()


def test_a_past_run_is_the_newest_published_by_at_never_a_later_one(server, tmp_path):
    source = _source(server, tmp_path, "single_runs", now="2026-01-01T00:00")
    for minutes in range(0, 24 * 60, 20):
        at = _utc(JULY_00Z) + pd.Timedelta(minutes=minutes)
        ref = source.latest(at)
        assert ref.available_at == ref.issued_at + GFS.available_after <= at
        assert at - ref.available_at < pd.Timedelta(hours=GFS.cycle_hours)  # the newest
        assert ref.issued_at.hour % GFS.cycle_hours == 0


def test_a_past_run_is_read_as_issued_from_the_single_runs_api(server, tmp_path, tucson, runs):
    source = _source(server, tmp_path, "single_runs", now="2026-01-01T00:00")
    ref = source.latest(_utc("2019-07-15T04:00"))  # the 00Z run, published at 04Z
    run = source.read(ref, {"tucson": tucson}, 15)["tucson"]

    asked = server.stand_in.requests[-1]
    assert (asked["path"], asked["run"]) == (SINGLE_RUNS_PATH, JULY_00Z)
    assert run.issued_at == _utc(JULY_00Z)
    weather = run.weather[""].data
    july = open_meteo_values(runs["gfs_july"], 0, tucson.latitude, tucson.longitude)
    served = _served_energy_wh_m2(july["shortwave_radiation"], weather.index)
    assert weather["ghi"].sum() * SLOT_H == pytest.approx(served, rel=0.005)

    # a minute earlier the 00Z run was not published: the 18Z run before, which the stand-in
    # does not hold, and its answer is Open-Meteo's JSON error body
    earlier = source.latest(_utc("2019-07-15T03:59"))
    assert earlier.issued_at == _utc("2019-07-14T18:00")
    with pytest.raises(ForecastSourceError) as error:
        source.read(earlier, {"tucson": tucson}, 15)
    message = _one_line(error)
    assert f"open-meteo-runs:{GFS.name}: {server.base_url}{SINGLE_RUNS_PATH}" in message
    assert "refused: No data available for run 2019-07-14T18:00" in message


def test_a_live_api_does_not_pass_off_a_past_run_as_its_newest(server, tmp_path, tucson):
    source = _source(server, tmp_path, now="2019-05-15T06:00")  # newest now: 06Z
    ref = source.latest(_utc("2019-05-15T05:00"))

    assert ref.issued_at == _utc(MAY_00Z)
    with pytest.raises(ForecastSourceError, match=f"'open-meteo-runs:{GFS.name}'"):
        source.read(ref, {"tucson": tucson}, 15)
    assert server.stand_in.requests == []


def test_a_second_read_comes_from_the_cache_file(server, tmp_path, tucson):
    first = _read_newest(_source(server, tmp_path), tucson)
    again = _read_newest(_source(server, tmp_path), tucson)  # a new source, the same cache

    assert len(server.stand_in.requests) == 1
    pd.testing.assert_frame_equal(first.weather[""].data, again.weather[""].data)
    assert list(tmp_path.glob("*.sqlite"))


@pytest.mark.parametrize(("api", "requests"), [("forecast", 2), ("single_runs", 1)])
def test_a_past_run_is_cached_for_good_a_live_one_for_cache_minutes(
    server, tmp_path, tucson, api, requests
):
    for _ in range(2):
        _read_newest(_source(server, tmp_path, api, cache_minutes=0), tucson)

    assert len(server.stand_in.requests) == requests


def test_a_503_is_retried(server, tmp_path, tucson):
    server.stand_in.fail_next = [503]

    run = _read_newest(_source(server, tmp_path), tucson)
    assert len(server.stand_in.requests) == 2
    assert run.weather[""].data["ghi"].max() > 800


def test_a_service_failing_past_its_retries_is_one_line(server, tmp_path, tucson):
    server.stand_in.fail_next = [503] * 3  # the first try and 2 retries

    with pytest.raises(ForecastSourceError) as error:
        _read_newest(_source(server, tmp_path), tucson)
    message = _one_line(error)
    assert f"{server.base_url}{FORECAST_PATH}" in message
    assert "too many 503 error responses (after 2 retries)" in message


def test_an_http_error_is_one_line(server, tmp_path, tucson):
    source = _source(server, tmp_path, forecast_url=f"{server.base_url}/v2/forecast")

    with pytest.raises(ForecastSourceError) as error:
        _read_newest(source, tucson)
    assert _one_line(error) == (
        f"open-meteo:{GFS.name}: {server.base_url}/v2/forecast: HTTP 404 Not Found"
    )


def test_a_service_too_slow_is_one_line(server, tmp_path, tucson):
    server.stand_in.delay_s = 0.5

    with pytest.raises(ForecastSourceError) as error:
        _read_newest(_source(server, tmp_path, timeout_s=0.1, retries=0), tucson)
    assert _one_line(error).endswith("no answer within 0.1 s (after 0 retries)")


def test_an_unreachable_service_is_one_line(tmp_path, tucson):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    source = OpenMeteo(
        "forecast", GFS, _settings(closed, tmp_path), clock=_clock("2019-05-15T06:00")
    )

    with pytest.raises(ForecastSourceError) as error:
        _read_newest(source, tucson)
    message = _one_line(error)
    assert message.startswith(f"open-meteo:{GFS.name}: {closed}{FORECAST_PATH}: unreachable")
    assert "Connection refused" in message


def test_a_response_missing_a_variable_names_it(server, tmp_path, tucson):
    server.stand_in.omit = {"temperature_2m"}

    with pytest.raises(ForecastSourceError) as error:
        _read_newest(_source(server, tmp_path), tucson)
    assert "the response has no temperature_2m" in _one_line(error)


def test_specs_name_the_api_and_model():
    settings = NwpSettings()
    sources = {
        spec: forecast_source(spec, settings)
        for spec in ("open-meteo", "open-meteo:ecmwf_ifs", "open-meteo-ensemble",
                     "open-meteo-runs:ncep_hrrr_conus")
    }  # fmt: skip
    assert {spec: (s.api, s.label) for spec, s in sources.items()} == {  # type: ignore[union-attr]
        "open-meteo": ("forecast", "open-meteo:ncep_gfs_global"),
        "open-meteo:ecmwf_ifs": ("forecast", "open-meteo:ecmwf_ifs"),
        "open-meteo-ensemble": ("ensemble", "open-meteo-ensemble:ncep_gefs025"),
        "open-meteo-runs:ncep_hrrr_conus": ("single_runs", "open-meteo-runs:ncep_hrrr_conus"),
    }


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("open-meteo:ecmwf", "unknown model 'ecmwf' for open-meteo; its models: ncep_gfs_global"),
        ("open-meteo-ensemble:ncep_gfs_global", "its models: ncep_gefs025"),
        ("open-meteo-runs:ncep_gefs025", "unknown model 'ncep_gefs025' for open-meteo-runs"),
        ("open-meteo:", "not an Open-Meteo source; give 'open-meteo[:MODEL]'"),
        ("open-meteo-archive:ecmwf_ifs", "not an Open-Meteo source"),
    ],
)
def test_a_bad_spec_names_itself_and_what_is_allowed(spec, expected):
    with pytest.raises(ForecastSourceError) as error:
        forecast_source(spec, NwpSettings())
    message = _one_line(error)
    assert message.startswith(f"forecast source {spec!r}: ")
    assert expected in message


def test_a_bad_default_model_is_named_too():
    settings = NwpSettings(open_meteo={"model": "best_match"})

    with pytest.raises(ForecastSourceError, match="unknown model 'best_match' for open-meteo"):
        forecast_source("open-meteo", settings)


@pytest.mark.live
@pytest.mark.skipif(os.environ.get("GREENSCHED_LIVE") != "1", reason="set GREENSCHED_LIVE=1")
def test_live_forecast_api(tmp_path, tucson):
    source = OpenMeteo("forecast", GFS, OpenMeteoSettings(cache_dir=str(tmp_path)))
    run = _read_newest(source, tucson)

    weather = run.weather[""].data
    assert run.issued_at == source.latest(pd.Timestamp.now(tz="UTC")).issued_at
    assert len(weather) >= 24 * 4
    assert np.all(weather["ghi"] >= 0) and weather["ghi"].max() > 100
    assert 0 <= weather["wind_speed"].max() < 60  # m/s; km/h would reach higher
    assert 70_000 < weather["pressure"].mean() < 100_000  # Pa at 900 m
