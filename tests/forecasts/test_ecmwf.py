"""ECMWF open data through the real ``ecmwf-opendata`` client, against a server on 127.0.0.1
serving real NOAA runs as ECMWF GRIB2 files in ECMWF's layout (tests/forecasts/ecmwf_opendata.py).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import eccodes
import numpy as np
import pandas as pd
import pytest
from pvlib.solarposition import get_solarposition

from forecasts.nwp.archive import AVAILABLE_AFTER
from forecasts.nwp.ecmwf import PARAMS, EcmwfOpenData
from forecasts.nwp.run import ForecastRun
from forecasts.nwp.settings import EcmwfSettings, NwpSettings
from forecasts.nwp.source import RunRef
from forecasts.nwp.sources import forecast_source
from forecasts.weather import ForecastSourceError
from scheduler.config import load_config
from tests.conftest import GEFS_RUN, GFS_RUN, TUCSON_CONFIG, needs_nwp
from tests.forecasts.ecmwf_opendata import Member, OpenDataServer, noaa_member, write_run

pytestmark = needs_nwp

ISSUED = pd.Timestamp("2019-05-15T00:00", tz="UTC")
PUBLISHED = ISSUED + AVAILABLE_AFTER["ecmwf"]
STEPS = list(range(0, 49, 3))  # the deterministic run: every 3 h, as IFS gives them
ENSEMBLE_STEPS = list(range(0, 37, 3))
DAY = (12, 36)  # a whole solar day at the site (sunrise about 12:30 UTC) [h since the issue]
SLOT_MINUTES = 15
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Served:
    root: Path
    oper: Member
    control: Member
    perturbed: tuple[Member, ...]


@dataclass(frozen=True)
class Fetched:
    ref: RunRef
    run: ForecastRun
    cache: Path
    requests: list[tuple[str, str, int]]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    """A deterministic run (GFS) and an ensemble (GEFS control and 4 perturbed members) issued
    2019-05-15 00 UTC, in ECMWF's layout."""
    root = tmp_path_factory.mktemp("opendata")
    oper = noaa_member(GFS_RUN, ISSUED, STEPS)
    control = noaa_member(GEFS_RUN / "gefs_c00.nc", ISSUED, ENSEMBLE_STEPS)
    perturbed = tuple(
        noaa_member(GEFS_RUN / f"gefs_p{n:02d}.nc", ISSUED, ENSEMBLE_STEPS) for n in range(1, 5)
    )
    write_run(root, ISSUED, STEPS, oper=oper)
    write_run(root, ISSUED, ENSEMBLE_STEPS, control=control, perturbed=perturbed)
    return Served(root, oper, control, perturbed)


@pytest.fixture(scope="module")
def tucson():
    return load_config(TUCSON_CONFIG).sites["tucson"]


def _settings(url: str, cache: Path, **changes) -> EcmwfSettings:
    options = {"source": url, "cache_dir": str(cache), "lead_hours": 48, "retries": 0,
               "retry_wait_s": 0.0, "timeout_s": 5.0, **changes}  # fmt: skip
    return EcmwfSettings(**options)


@pytest.fixture(scope="module")
def fetched(served, tucson, tmp_path_factory) -> Fetched:
    """The deterministic run as ``ecmwf:ifs`` finds and reads it at its publication time."""
    cache = tmp_path_factory.mktemp("cache")
    with OpenDataServer(served.root) as server:
        source = EcmwfOpenData(_settings(server.url, cache))
        ref = source.latest(PUBLISHED)
        run = source.read(ref, {"tucson": tucson}, SLOT_MINUTES)["tucson"]
    return Fetched(ref, run, cache, list(server.requests))


def _day_energy_kwh_m2(ghi_w_m2: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> float:
    """Irradiation on the slots in ``[start, end)`` [kWh/m^2]."""
    inside = (ghi_w_m2.index >= start) & (ghi_w_m2.index < end)
    return float(ghi_w_m2[inside].sum()) * SLOT_MINUTES / 60 / 1000


def _served_energy_kwh_m2(member: Member, steps: list[int]) -> float:
    """The served ``ssrd`` at the site accumulated over :data:`DAY` [kWh/m^2]."""
    ssrd = member.at_site("ssrd")
    return float(ssrd[steps.index(DAY[1])] - ssrd[steps.index(DAY[0])]) / J_PER_KWH


def _fields(path: Path) -> set[tuple[str, int, int | None]]:
    """``(param, step, member number)`` of every message in a GRIB file."""
    out = set()
    with open(path, "rb") as handle:
        while (message := eccodes.codes_grib_new_from_file(handle)) is not None:
            key = [eccodes.codes_get(message, k) for k in ("shortName", "endStep", "dataType")]
            number = eccodes.codes_get(message, "number") if key[2] == "pf" else None
            out.add((key[0], key[1], number))
            eccodes.codes_release(message)
    return out


def test_the_run_published_by_the_planning_time_is_read_at_the_site(fetched):
    assert fetched.ref == RunRef("ecmwf-ifs", ISSUED, PUBLISHED)
    run = fetched.run
    assert (run.model, run.issued_at, run.source, run.members) == (
        "ecmwf-ifs",
        ISSUED,
        "ecmwf:ifs",
        ("",),
    )
    assert run.slots[0] == ISSUED
    assert run.end == ISSUED + pd.Timedelta(hours=STEPS[-1])
    assert run.grid_point.method == "bilinear"


def test_daily_ghi_energy_is_the_served_accumulation_and_nights_are_dark(fetched, served, tucson):
    weather = fetched.run.weather[""].data
    start, end = (ISSUED + pd.Timedelta(hours=h) for h in DAY)
    energy = _day_energy_kwh_m2(weather["ghi"], start, end)
    assert energy == pytest.approx(_served_energy_kwh_m2(served.oper, STEPS), rel=0.01)
    mids = weather.index + pd.Timedelta(minutes=SLOT_MINUTES / 2)
    zenith = get_solarposition(mids, tucson.latitude, tucson.longitude)["apparent_zenith"]
    night = zenith.to_numpy() > 91.0
    assert night.any() and (weather["ghi"].to_numpy()[night] == 0).all()


def test_wind_at_100_m_is_used_with_the_shear_from_10_m(fetched, served):
    weather = fetched.run.weather[""]
    assert weather.wind_height_m == 100
    step_s = np.array(STEPS, dtype=float) * 3600
    mid_s = ((weather.data.index - ISSUED).total_seconds() + SLOT_MINUTES * 30).to_numpy()
    speed_100 = np.hypot(served.oper.at_site("100u"), served.oper.at_site("100v"))
    speed_10 = np.hypot(served.oper.at_site("10u"), served.oper.at_site("10v"))
    expected_100 = np.interp(mid_s, step_s, speed_100)
    np.testing.assert_allclose(weather.data["wind_speed"], expected_100, rtol=1e-6)
    # the served 100 m wind is the 10 m wind times one real profile's ratio: one exponent
    ratio = float(np.median(speed_100 / speed_10))
    defined = np.interp(mid_s, step_s, speed_10) >= 1.0
    np.testing.assert_allclose(
        weather.data["wind_shear_exponent"].to_numpy()[defined], np.log(ratio) / np.log(10.0),
        rtol=1e-6,
    )  # fmt: skip


def test_only_the_fields_asked_for_are_fetched_by_byte_ranges(fetched):
    (path,) = (fetched.cache / "ifs-0p25" / "2019051500").glob("*.grib2")
    assert _fields(path) == {(param, step, None) for param in PARAMS for step in STEPS}
    data = [(method, status) for method, url, status in fetched.requests if "grib2" in url]
    assert ("GET", 206) in data and ("GET", 200) not in data


def test_a_cached_run_is_read_again_without_a_request(fetched, served, tucson):
    with OpenDataServer(served.root) as server:
        source = EcmwfOpenData(_settings(server.url, fetched.cache))
        ref = source.latest(PUBLISHED)
        run = source.read(ref, {"tucson": tucson}, SLOT_MINUTES)["tucson"]
    assert server.requests == []
    assert ref == fetched.ref
    pd.testing.assert_frame_equal(run.weather[""].data, fetched.run.weather[""].data)


def test_the_run_before_is_used_when_the_newest_is_not_on_the_server(served, tmp_path, caplog):
    newest = ISSUED + pd.Timedelta(hours=6)  # not served: as if not published yet
    with OpenDataServer(served.root) as server:
        source = EcmwfOpenData(_settings(server.url, tmp_path))
        ref = source.latest(newest + AVAILABLE_AFTER["ecmwf"] + pd.Timedelta(minutes=30))
    assert ref.issued_at == ISSUED
    missing = [url for method, url, status in server.requests if status == 404]
    assert missing == ["/20190515/06z/ifs/0p25/scda/20190515060000-48h-scda-fc.index"]
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "2019-05-15T06:00:00+00:00 is not on the server (HTTP 404" in warnings
    assert "using the run issued 2019-05-15T00:00:00+00:00" in warnings


def test_a_run_is_never_used_before_it_is_published(served, tmp_path):
    with OpenDataServer(served.root) as server:
        source = EcmwfOpenData(_settings(server.url, tmp_path))
        with pytest.raises(ForecastSourceError) as raised:
            source.latest(PUBLISHED - pd.Timedelta(minutes=1))
    assert not any("/20190515/00z/" in url for _, url, _ in server.requests)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"ecmwf:ifs: {server.url}/20190514/00z/ifs/0p25/oper/")
    assert "HTTP 404 Not Found" in message and "2019-05-14 00Z to 2019-05-14 18Z" in message


@pytest.fixture
def refusing_url():
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_url():
    """A port on 127.0.0.1 that takes connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize(
    ("server", "reason"),
    [("refusing_url", "cannot connect ([Errno 111] Connection refused"),
     ("silent_url", "no answer within 0.3 s")],
)  # fmt: skip
def test_an_unreachable_server_is_one_line_naming_the_source_url_and_reason(
    request, tmp_path, server, reason
):
    url = request.getfixturevalue(server)
    source = EcmwfOpenData(_settings(url, tmp_path, timeout_s=0.3))
    with pytest.raises(ForecastSourceError) as raised:
        source.latest(PUBLISHED)
    message = str(raised.value)
    assert "\n" not in message
    index = f"{url}/20190515/00z/ifs/0p25/oper/20190515000000-48h-oper-fc.index"
    assert message.startswith(f"ecmwf:ifs: {index}: {reason}")


def test_a_download_cut_short_is_one_line_and_leaves_nothing_in_the_cache(served, tucson, tmp_path):
    cut = "20190515000000-24h-oper-fc.grib2"
    with OpenDataServer(served.root, cut_short=(cut,)) as server:
        source = EcmwfOpenData(_settings(server.url, tmp_path))
        with pytest.raises(ForecastSourceError) as raised:
            source.read(source.latest(PUBLISHED), {"tucson": tucson}, SLOT_MINUTES)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"ecmwf:ifs: {server.url}/20190515/00z/ifs/0p25/oper/{cut}: download cut short"
    )
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_ensemble_members_are_the_control_and_the_perturbed_numbers_asked_for(
    served, tucson, tmp_path
):
    with OpenDataServer(served.root) as server:
        source = EcmwfOpenData(
            _settings(server.url, tmp_path, lead_hours=36, ensemble_members=3), ensemble=True
        )
        ref = source.latest(PUBLISHED)
        run = source.read(ref, {"tucson": tucson}, SLOT_MINUTES)["tucson"]
    assert (ref.model, run.source, run.members) == (
        "ecmwf-ifs-ens",
        "ecmwf-ens:ifs",
        ("c00", "p01", "p02", "p03"),
    )
    perturbed = tmp_path / "ifs-0p25" / "2019051500" / "enfo-pf3-36h.grib2"
    assert {number for _, _, number in _fields(perturbed)} == {1, 2, 3}
    start, end = (ISSUED + pd.Timedelta(hours=h) for h in DAY)
    energies = []
    for name, member in zip(run.members, (served.control, *served.perturbed[:3]), strict=True):
        energy = _day_energy_kwh_m2(run.weather[name].data["ghi"], start, end)
        assert energy == pytest.approx(_served_energy_kwh_m2(member, ENSEMBLE_STEPS), rel=0.01)
        energies.append(energy)
    assert len(set(np.round(energies, 3))) > 1  # the members differ


@pytest.mark.parametrize(
    ("spec", "label", "model"),
    [("ecmwf", "ecmwf:ifs", "ecmwf-ifs"),
     ("ecmwf:aifs-single", "ecmwf:aifs-single", "ecmwf-aifs-single"),
     ("ecmwf-ens", "ecmwf-ens:ifs", "ecmwf-ifs-ens"),
     ("ecmwf-ens:aifs-ens", "ecmwf-ens:aifs-ens", "ecmwf-aifs-ens")],
)  # fmt: skip
def test_specs_name_the_model(tmp_path, spec, label, model):
    settings = NwpSettings(ecmwf=_settings("http://127.0.0.1:9", tmp_path))
    source = forecast_source(spec, settings)
    assert isinstance(source, EcmwfOpenData)
    assert (source.label, source.run_model, source.url) == (label, model, "http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("spec", "allowed"),
    [("ecmwf:gfs", "ecmwf:ifs or ecmwf:aifs-single"),
     ("ecmwf-ens:aifs-single", "ecmwf-ens:ifs or ecmwf-ens:aifs-ens"),
     ("ecmwf:", "'ecmwf' or 'ecmwf:MODEL' (MODEL: ifs, aifs-single)")],
)  # fmt: skip
def test_a_bad_spec_names_it_and_what_is_allowed(tmp_path, spec, allowed):
    settings = NwpSettings(ecmwf=_settings("http://127.0.0.1:9", tmp_path))
    with pytest.raises(ForecastSourceError) as raised:
        forecast_source(spec, settings)
    assert f"forecast source {spec!r}" in str(raised.value)
    assert allowed in str(raised.value)


@pytest.mark.skipif(
    os.environ.get("GREENSCHED_LIVE") != "1", reason="live ECMWF open data: GREENSCHED_LIVE=1"
)
def test_live_ecmwf_open_data(tucson, tmp_path):
    source = EcmwfOpenData(EcmwfSettings(cache_dir=str(tmp_path), lead_hours=6))
    ref = source.latest(pd.Timestamp.now(tz="UTC"))
    run = source.read(ref, {"tucson": tucson}, SLOT_MINUTES)["tucson"]
    weather = run.weather[""].data
    assert run.issued_at == ref.issued_at and len(weather) == 6 * 60 // SLOT_MINUTES
    assert (weather["ghi"] >= 0).all() and weather["temp_air"].between(-40, 60).all()
