"""A stand-in for ECMWF's open data server on 127.0.0.1, serving real NOAA runs in ECMWF's
layout.

Files: ``{root}/{yyyymmdd}/{HH}z/{model}/{resol}/{stream}/{yyyymmddHHMMSS}-{step}h-{stream}-
{type}.grib2``, one per step, each with its ``.index`` beside it: one JSON line per message with
its MARS keys, ``param``, ``_offset`` and ``_length``, made by ``ecmwf-opendata``'s own
``grib_index`` (an ensemble's control and perturbed members share the ``ef`` file, the control's
lines without ``number``, as ECMWF writes them). The server answers HEAD, GET and HTTP Range
requests (one range, or several as ``multipart/byteranges``, as data.ecmwf.int does), logs
every request, and can send chosen files cut short.

Messages are encoded as ECMWF encodes them (ecCodes with centre ``ecmf``, local section 1:
class ``od``, stream, type, expver ``0001``; 2 m temperature, 10 m and 100 m wind above ground,
surface pressure and ``ssrd`` accumulated from step 0), on the NOAA run's own grid (lat 32.0 to
32.5, lon -110.5 to -110.0) scanned north to south. Values come from the NOAA runs in
../shared/data/nwp/noaa (see its README), nothing typed by hand:

- ``2t``: ``t2m`` [K];
- ``ssrd``: ``dswrf`` (a mean since the last 6-hourly reset) un-averaged
  (:func:`forecasts.nwp.process.unmix_running_means`) and accumulated from the issue time
  [J/m^2];
- ``10u``, ``10v``: ``si10`` [m/s] shared equally between the components (a south-westerly:
  the runs give speed only, and greensched uses only speeds);
- ``100u``, ``100v``: the 10 m components times the ratio of the westerly wind at the GFS
  2.5 deg run's lowest sigma level (0.995, some 40 m above ground) to its 10 m westerly, at its
  grid point nearest the site (another day's run: it stands for a real profile, not that day's
  wind);
- ``sp``: that run's surface pressure there [Pa];
- ``tcc`` (a field greensched does not ask for, to show the byte ranges select): ``tcdc`` / 100.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

import eccodes
import numpy as np
import pandas as pd
import xarray as xr
from ecmwf.opendata.grib import grib_index

from forecasts.nwp.process import unmix_running_means
from tests.conftest import NOAA
from tests.local_http import LocalHTTPServer

GFS_2P5 = NOAA / "gfs_2p5deg" / "gfs.t12z.pgrbf120.2p5deg.grib2"
SITE = (32.12, -110.42)
"""The sample site near Tucson (configs/tucson.yaml) [deg N, deg E]."""
PARAMS = ("2t", "10u", "10v", "100u", "100v", "sp", "ssrd", "tcc")
_BOUNDARY = "greensched-ecmwf-test"


@dataclass(frozen=True)
class Member:
    """One member's values as served: each param on (step, latitude, longitude), latitudes
    north to south."""

    fields: xr.Dataset

    def at_site(self, param: str) -> np.ndarray:
        """``param`` at :data:`SITE` at every step, interpolated linearly in latitude and
        longitude (by xarray, apart from greensched's own interpolation)."""
        field = self.fields[param].sortby("latitude")
        return field.interp(latitude=SITE[0], longitude=SITE[1]).to_numpy()


@lru_cache(maxsize=1)
def _profile() -> tuple[float, float]:
    """The ratio of the westerly wind at the lowest sigma level to the one at 10 m [-], and the
    surface pressure [Pa], at the GFS 2.5 deg run's grid point nearest :data:`SITE`."""
    found: dict[str, float] = {}
    with open(GFS_2P5, "rb") as handle:
        while (message := eccodes.codes_grib_new_from_file(handle)) is not None:
            try:
                key = (eccodes.codes_get(message, "shortName"),
                       eccodes.codes_get(message, "typeOfLevel"))  # fmt: skip
                if key in {("10u", "heightAboveGround"), ("u", "sigma"), ("sp", "surface")}:
                    lats = eccodes.codes_get_array(message, "latitudes")
                    lons = (eccodes.codes_get_array(message, "longitudes") + 180) % 360 - 180
                    nearest = np.argmin(np.hypot(lats - SITE[0], lons - SITE[1]))
                    found[key[0]] = float(eccodes.codes_get_values(message)[nearest])
            finally:
                eccodes.codes_release(message)
    return found["u"] / found["10u"], found["sp"]


def _accumulated(dswrf: xr.DataArray, issued_at: pd.Timestamp, times: pd.DatetimeIndex):
    """NOAA's running-mean radiation as energy accumulated from ``issued_at`` to each of
    ``times`` [J/m^2], per grid point."""
    out = np.zeros((len(times), *dswrf.shape[1:]))
    for i in range(dswrf.shape[1]):
        for j in range(dswrf.shape[2]):
            series = dswrf[:, i, j].to_series()
            series.index = pd.DatetimeIndex(series.index).tz_localize("UTC")
            means = unmix_running_means(series, issued_at)
            starts = pd.DatetimeIndex([issued_at, *means.index[:-1]])
            energy = (means * (means.index - starts).total_seconds()).cumsum()
            out[:, i, j] = energy.reindex(times, method="ffill").fillna(0.0).to_numpy()
    return out


def noaa_member(path: Path, issued_at: pd.Timestamp, steps: Sequence[int]) -> Member:
    """One NOAA member's values at ``steps`` [h], as :class:`Member`."""
    ratio, pressure_pa = _profile()
    with xr.open_dataset(path) as opened:
        dataset = opened.load().sortby("latitude", ascending=False)
    times = issued_at + pd.to_timedelta(list(steps), unit="h")
    at = dataset.sel(time=times.tz_localize(None).to_numpy())
    component = at["si10"].to_numpy() / np.sqrt(2.0)
    values = {
        "2t": at["t2m"].to_numpy(),
        "10u": component,
        "10v": component,
        "100u": component * ratio,
        "100v": component * ratio,
        "sp": np.full(component.shape, pressure_pa),
        "ssrd": _accumulated(dataset["dswrf"], issued_at, times),
        "tcc": at["tcdc"].to_numpy() / 100.0,
    }
    coords = {"step": list(steps), "latitude": dataset["latitude"].to_numpy(),
              "longitude": dataset["longitude"].to_numpy()}  # fmt: skip
    dims = ("step", "latitude", "longitude")
    return Member(xr.Dataset({name: (dims, v) for name, v in values.items()}, coords=coords))


def _template(issued_at: pd.Timestamp, member: Member, stream: str, kind: str, number: int | None):
    """A GRIB2 message of ECMWF's encoding on the member's grid, to clone per field."""
    lats, lons = member.fields["latitude"].to_numpy(), member.fields["longitude"].to_numpy()
    message = eccodes.codes_grib_new_from_samples("GRIB2")
    settings = {
        "centre": "ecmf", "setLocalDefinition": 1, "localDefinitionNumber": 1,
        "class": "od", "stream": stream, "type": kind, "expver": "0001",
        "dataDate": int(f"{issued_at:%Y%m%d}"), "dataTime": issued_at.hour * 100,
        "gridType": "regular_ll", "Ni": len(lons), "Nj": len(lats),
        "latitudeOfFirstGridPointInDegrees": float(lats[0]),
        "longitudeOfFirstGridPointInDegrees": float(lons[0]),
        "latitudeOfLastGridPointInDegrees": float(lats[-1]),
        "longitudeOfLastGridPointInDegrees": float(lons[-1]),
        "iDirectionIncrementInDegrees": float(abs(lons[1] - lons[0])),
        "jDirectionIncrementInDegrees": float(abs(lats[1] - lats[0])),
        "jScansPositively": 0,
    }  # fmt: skip
    for key, value in settings.items():
        eccodes.codes_set(message, key, value)
    if number is not None:
        eccodes.codes_set(message, "productDefinitionTemplateNumber", 1)
        eccodes.codes_set(message, "perturbationNumber", number)
        eccodes.codes_set(message, "numberOfForecastsInEnsemble", 51)
    return message


def _messages(issued_at, member: Member, stream: str, kind: str, number: int | None, step: int):
    template = _template(issued_at, member, stream, kind, number)
    try:
        for param in PARAMS:
            values = member.fields[param].sel(step=step).to_numpy()
            if np.isnan(values).any():  # NOAA's cloud cover at lead 0
                continue
            message = eccodes.codes_clone(template)
            try:
                if param == "ssrd":
                    eccodes.codes_set(message, "stepType", "accum")
                eccodes.codes_set(message, "shortName", param)
                eccodes.codes_set(message, "stepRange", f"0-{step}" if param == "ssrd" else step)
                eccodes.codes_set_values(message, values.ravel())
                yield eccodes.codes_get_message(message)
            finally:
                eccodes.codes_release(message)
    finally:
        eccodes.codes_release(template)


def write_run(
    root: Path,
    issued_at: pd.Timestamp,
    steps: Sequence[int],
    *,
    oper: Member | None = None,
    control: Member | None = None,
    perturbed: Sequence[Member] = (),
) -> None:
    """A 00 or 12 UTC run in ECMWF's layout under ``root``: the deterministic run
    (``oper``/``fc``) and an ensemble's control and perturbed members (``enfo``/``ef``: ``cf``
    and ``pf`` 1, 2 ...)."""
    files: list[tuple[str, str, list[tuple[Member, str, int | None]]]] = []
    if oper is not None:
        files.append(("oper", "fc", [(oper, "fc", None)]))
    if control is not None or perturbed:
        members = [(control, "cf", 0)] if control is not None else []
        members += [(m, "pf", n) for n, m in enumerate(perturbed, start=1)]
        files.append(("enfo", "ef", members))  # type: ignore[arg-type]
    for stream, kind, members in files:
        folder = root / f"{issued_at:%Y%m%d}" / f"{issued_at:%H}z" / "ifs" / "0p25" / stream
        folder.mkdir(parents=True, exist_ok=True)
        for step in steps:
            path = folder / f"{issued_at:%Y%m%d%H}0000-{step}h-{stream}-{kind}.grib2"
            with open(path, "wb") as handle:
                for member, member_kind, number in members:
                    for message in _messages(issued_at, member, stream, member_kind, number, step):
                        handle.write(message)
            lines = (json.dumps(line) for line in grib_index(str(path)))
            path.with_suffix(".index").write_text("\n".join(lines) + "\n")


@dataclass
class OpenDataServer:
    """The files under ``root`` served on 127.0.0.1 (a context manager; ``url`` is its base).
    ``requests`` logs ``(method, path, status)`` of every request; files whose name ends in one
    of ``cut_short`` are sent with their full length announced and half their bytes."""

    root: Path
    cut_short: tuple[str, ...] = ()
    requests: list[tuple[str, str, int]] = field(default_factory=list)

    def __enter__(self) -> OpenDataServer:
        self._http = LocalHTTPServer(type("Handler", (_Handler,), {"site": self})).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.__exit__(*exc)

    @property
    def url(self) -> str:
        return self._http.url


class _Handler(BaseHTTPRequestHandler):
    site: OpenDataServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: ``site.requests`` logs instead."""

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def _answer(self, send_body: bool) -> None:
        name = unquote(urlsplit(self.path).path).lstrip("/")
        path = self.site.root / name
        if ".." in Path(name).parts or not path.is_file():
            self.site.requests.append((self.command, self.path, 404))
            self.send_error(404)
            return
        data = path.read_bytes()
        ranges = _ranges(self.headers.get("Range"), len(data))
        if not ranges:
            status, body, content_type = 200, data, "application/octet-stream"
        elif len(ranges) == 1:
            ((start, end),) = ranges
            status, body, content_type = 206, data[start : end + 1], "application/octet-stream"
        else:
            status, body = 206, _multipart(data, ranges)
            content_type = f"multipart/byteranges; boundary={_BOUNDARY}"
        self.site.requests.append((self.command, self.path, status))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206 and len(ranges) == 1:
            self.send_header("Content-Range", f"bytes {ranges[0][0]}-{ranges[0][1]}/{len(data)}")
        self.end_headers()
        if send_body:
            cut = any(name.endswith(suffix) for suffix in self.site.cut_short)
            self.wfile.write(body[: len(body) // 2] if cut else body)
            if cut:
                self.close_connection = True


def _ranges(header: str | None, size: int) -> list[tuple[int, int]]:
    """``(first, last)`` byte of each range of a ``Range: bytes=...`` header."""
    if not header or not header.startswith("bytes="):
        return []
    out = []
    for spec in header.removeprefix("bytes=").split(","):
        first, _, last = spec.strip().partition("-")
        out.append((int(first), min(int(last) if last else size - 1, size - 1)))
    return out


def _multipart(data: bytes, ranges: Iterable[tuple[int, int]]) -> bytes:
    """The ranges of ``data`` as a ``multipart/byteranges`` body (RFC 9110, 14.6)."""
    parts = [
        (f"--{_BOUNDARY}\r\nContent-Type: application/octet-stream\r\n"
         f"Content-Range: bytes {first}-{last}/{len(data)}\r\n\r\n").encode()
        + data[first : last + 1] + b"\r\n"
        for first, last in ranges
    ]  # fmt: skip
    return b"".join(parts) + f"--{_BOUNDARY}--\r\n".encode()
