"""A stand-in for Open-Meteo's forecast, ensemble and single-runs APIs on 127.0.0.1, serving real
NOAA runs as Open-Meteo would serve them.

Responses are FlatBuffers laid out by Open-Meteo's schema (open-meteo/sdk,
``flatbuffers/weather_api.fbs``: ``WeatherApiResponse`` > ``VariablesWithTime`` >
``VariableWithValues``), each message after its 4-byte little-endian length, as the service
sends them; the installed ``openmeteo_sdk`` ships only the generated readers (its ``.pyi``
stubs name builder functions its modules lack), so the tables are built here slot by slot with
``flatbuffers.Builder`` and read back by the real client.

Values come from the NOAA runs in ../shared/data/nwp/noaa (see its README), at the grid point
nearest the requested location (what ``cell_selection=nearest`` asks of the service), in
Open-Meteo's conventions: GFS and GEFS ``dswrf`` (a mean since the last 6-hourly reset)
un-averaged into the mean over the preceding interval
(:func:`forecasts.nwp.process.unmix_running_means`), ``t2m`` K -> C, ``si10`` in m/s when
``wind_speed_unit=ms`` is asked and km/h otherwise (the service's default), ``tcdc`` in %.
Surface pressure [hPa] is the GFS 2.5 deg run's ``sp`` at its grid point nearest the location
(another day's run: it stands for the unit, not the weather). A variable the run lacks comes
as NaN, as the service sends a variable its model does not have.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import flatbuffers
import numpy as np
import pandas as pd
import xarray as xr
from openmeteo_sdk.Unit import Unit
from openmeteo_sdk.Variable import Variable

from forecasts.nwp.process import unmix_running_means
from tests.local_http import LocalHTTPServer

NOAA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nwp" / "noaa"
GFS_MAY = NOAA / "gfs_0p25" / "2019" / "05" / "15" / "00" / "gfs_0p25.nc"
GFS_JULY = NOAA / "gfs_0p25" / "2019" / "07" / "15" / "00" / "gfs_0p25.nc"
GEFS_MAY = NOAA / "gefs" / "2019" / "05" / "15" / "00"
GFS_2P5 = NOAA / "gfs_2p5deg" / "gfs.t12z.pgrbf120.2p5deg.grib2"

FORECAST_PATH = "/v1/forecast"
ENSEMBLE_PATH = "/v1/ensemble"
SINGLE_RUNS_PATH = "/single-runs/v1/forecast"

_RADIATION = {
    "shortwave_radiation": Variable.shortwave_radiation,
    "direct_normal_irradiance": Variable.direct_normal_irradiance,
    "diffuse_radiation": Variable.diffuse_radiation,
}
_INSTANT = {
    "temperature_2m": (Variable.temperature, 2, Unit.celsius),
    "surface_pressure": (Variable.surface_pressure, 0, Unit.hectopascal),
    "cloud_cover": (Variable.cloud_cover, 0, Unit.percentage),
}
_WIND_LEVELS_M = (10, 80, 100, 120)
_KMH_PER_MS = 3.6


@dataclass(frozen=True)
class NoaaRun:
    """One NOAA run: its issue time (UTC) and its members' datasets (one for GFS)."""

    issued_at: pd.Timestamp
    members: tuple[xr.Dataset, ...]


def noaa_run(paths: list[Path], issued_at: str) -> NoaaRun:
    """The run in ``paths`` (one file per member), loaded."""
    members = []
    for path in paths:
        with xr.open_dataset(path) as dataset:
            members.append(dataset.load())
    return NoaaRun(pd.Timestamp(issued_at, tz="UTC"), tuple(members))


def gefs_members() -> list[Path]:
    """GEFS control and its 20 perturbed members (not the mean and spread files)."""
    return sorted(GEFS_MAY.glob("gefs_c00.nc")) + sorted(GEFS_MAY.glob("gefs_p??.nc"))


@lru_cache(maxsize=8)
def surface_pressure_hpa(latitude: float, longitude: float) -> float:
    """The GFS 2.5 deg run's surface pressure at its grid point nearest the location [hPa]."""
    with xr.open_dataset(
        GFS_2P5,
        engine="cfgrib",
        backend_kwargs={"indexpath": "", "filter_by_keys": {"typeOfLevel": "surface",
                                                            "shortName": "sp"}},
    ) as dataset:  # fmt: skip
        sp_pa = dataset["sp"].sel(latitude=latitude, longitude=longitude % 360, method="nearest")
        return float(sp_pa) / 100.0


def grid_point(run: NoaaRun, latitude: float, longitude: float) -> tuple[float, float]:
    """The run's grid point nearest the location [deg N, deg E]."""
    point = run.members[0].sel(latitude=latitude, longitude=longitude, method="nearest")
    return float(point["latitude"]), float(point["longitude"])


def open_meteo_values(run: NoaaRun, member: int, latitude: float, longitude: float) -> pd.DataFrame:
    """A member at the grid point nearest the location, indexed by valid time (UTC), in
    Open-Meteo's variables and units (wind in m/s); see the module doc."""
    point = run.members[member].sel(latitude=latitude, longitude=longitude, method="nearest")
    times = pd.DatetimeIndex(point["time"].to_numpy()).tz_localize("UTC")
    ghi = pd.Series(point["dswrf"].to_numpy(), index=times)
    return pd.DataFrame(
        {
            "shortwave_radiation": unmix_running_means(ghi, run.issued_at).reindex(times),
            "temperature_2m": point["t2m"].to_numpy() - 273.15,
            "wind_speed_10m": point["si10"].to_numpy(),
            "cloud_cover": point["tcdc"].to_numpy(),
            "surface_pressure": surface_pressure_hpa(latitude, longitude),
        },
        index=times,
    )


class Refusal(Exception):
    """What the service answers with HTTP 400 and its JSON error body."""


def _variable_table(
    builder: flatbuffers.Builder, name: str, values: np.ndarray, member: int, kmh: bool
) -> int:
    """One ``VariableWithValues`` (fields 0 variable, 1 unit, 3 values, 5 altitude,
    10 ensemble_member)."""
    if name in _RADIATION:
        variable, altitude, unit = _RADIATION[name], 0, Unit.watt_per_square_metre
    elif name in _INSTANT:
        variable, altitude, unit = _INSTANT[name]
    elif name in {f"wind_speed_{h}m" for h in _WIND_LEVELS_M}:
        variable, altitude = Variable.wind_speed, int(name[len("wind_speed_") : -1])
        unit = Unit.kilometres_per_hour if kmh else Unit.metre_per_second
        values = values * _KMH_PER_MS if kmh else values
    else:
        raise Refusal(f"Cannot initialize ForecastVariable from invalid String value {name}")
    vector = builder.CreateNumpyVector(np.asarray(values, dtype=np.float32))
    builder.StartObject(13)
    builder.PrependUint8Slot(0, variable, 0)
    builder.PrependUint8Slot(1, unit, 0)
    builder.PrependUOffsetTRelativeSlot(3, vector, 0)
    builder.PrependInt16Slot(5, altitude, 0)
    builder.PrependInt16Slot(10, member, 0)
    return builder.EndObject()


def flatbuffer_message(
    members: list[pd.DataFrame], names: list[str], cell: tuple[float, float], kmh: bool
) -> bytes:
    """One location's ``WeatherApiResponse`` (fields 0 latitude, 1 longitude, 11 hourly) with
    every member's ``names`` on the members' common hourly axis."""
    times = pd.DatetimeIndex(members[0].index)
    steps = np.unique(np.diff(times.asi8))
    if len(steps) != 1:
        raise Refusal("the window mixes time steps")
    interval_s = int(steps[0] // 10**9)
    builder = flatbuffers.Builder(4096)
    tables = [
        _variable_table(
            builder, name, frame[name].to_numpy() if name in frame else np.full(len(frame), np.nan),
            member, kmh,
        )
        for member, frame in enumerate(members)
        for name in names
    ]  # fmt: skip
    builder.StartVector(4, len(tables), 4)
    for table in reversed(tables):
        builder.PrependUOffsetTRelative(table)
    variables = builder.EndVector()
    start_s = int(times[0].timestamp())
    builder.StartObject(4)  # VariablesWithTime: 0 time, 1 time_end, 2 interval, 3 variables
    builder.PrependInt64Slot(0, start_s, 0)
    builder.PrependInt64Slot(1, start_s + interval_s * len(times), 0)
    builder.PrependInt32Slot(2, interval_s, 0)
    builder.PrependUOffsetTRelativeSlot(3, variables, 0)
    hourly = builder.EndObject()
    builder.StartObject(15)
    builder.PrependFloat32Slot(0, cell[0], 0.0)
    builder.PrependFloat32Slot(1, cell[1], 0.0)
    builder.PrependUOffsetTRelativeSlot(11, hourly, 0)
    builder.Finish(builder.EndObject())
    return bytes(builder.Output())


@dataclass
class OpenMeteoStandIn:
    """The stand-in's runs and what it was asked: ``live`` is the run its forecast or ensemble
    path serves (path -> run), ``runs`` the single runs by ``run=`` value; ``requests`` every
    request's path and query; ``fail_next`` HTTP statuses to answer the next requests with;
    ``ignore_wind_unit`` answers in km/h whatever is asked; ``omit`` variables left out of the
    response; ``delay_s`` how long each answer waits. A path it does not serve is HTTP 404."""

    live: dict[str, NoaaRun]
    runs: dict[str, NoaaRun]
    requests: list[dict[str, str]] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    ignore_wind_unit: bool = False
    omit: set[str] = field(default_factory=set)
    delay_s: float = 0.0

    def run_for(self, path: str, query: dict[str, str]) -> NoaaRun:
        if path == SINGLE_RUNS_PATH:
            if query.get("run") not in self.runs:
                raise Refusal(f"No data available for run {query.get('run')}")
            return self.runs[query["run"]]
        return self.live[path]

    def answer(self, path: str, query: dict[str, str]) -> bytes:
        """The response body for a request (or :class:`Refusal`)."""
        if query.get("format") != "flatbuffers" or query.get("timezone") != "GMT":
            raise Refusal("this stand-in answers format=flatbuffers, timezone=GMT only")
        run = self.run_for(path, query)
        start = pd.Timestamp(query["start_hour"], tz="UTC")
        end = pd.Timestamp(query["end_hour"], tz="UTC")
        names = [n for n in query["hourly"].split(",") if n not in self.omit]
        kmh = self.ignore_wind_unit or query.get("wind_speed_unit") != "ms"
        body = b""
        for latitude, longitude in zip(
            map(float, query["latitude"].split(",")),
            map(float, query["longitude"].split(",")),
            strict=True,
        ):
            members = [
                open_meteo_values(run, member, latitude, longitude).loc[start:end]
                for member in range(len(run.members))
            ]
            message = flatbuffer_message(members, names, grid_point(run, latitude, longitude),
                                         kmh)  # fmt: skip
            body += len(message).to_bytes(4, "little") + message
        return body


def _handler(stand_in: OpenMeteoStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            stand_in.requests.append({"path": url.path, **query})
            time.sleep(stand_in.delay_s)
            if url.path not in {*stand_in.live, SINGLE_RUNS_PATH}:
                self._send(404, b"Not Found", "text/plain")
                return
            if stand_in.fail_next:
                self._send(stand_in.fail_next.pop(0), b"try again later", "text/plain")
                return
            try:
                body = stand_in.answer(url.path, query)
            except Refusal as refusal:
                error = json.dumps({"error": True, "reason": str(refusal)}).encode()
                self._send(400, error, "application/json; charset=utf-8")
                return
            self._send(200, body, "application/octet-stream")

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the tests read ``stand_in.requests``."""

    return Handler


class StandInServer(LocalHTTPServer):
    """The stand-in behind a threaded HTTP server on 127.0.0.1 (a free port)."""

    def __init__(self, stand_in: OpenMeteoStandIn) -> None:
        super().__init__(_handler(stand_in))
        self.stand_in = stand_in
        self.base_url = self.url

    def __enter__(self) -> StandInServer:
        super().__enter__()
        return self
