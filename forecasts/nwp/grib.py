"""Model runs as GRIB2 files, read through ``xarray`` and ``cfgrib`` (ECMWF open data, NOAA).

I/O only. A run is one or more files sharing an issue time (one file per lead, as NOAA and
ECMWF publish them, or one file with many steps, as the ``ecmwf-opendata`` client writes a
request); each file is opened once per group of variables on one level (:data:`GROUPS`, cfgrib
reads one level type per open), the variables renamed through :data:`VARIABLE_MAP` and brought
to the sites' points (:mod:`forecasts.nwp.grid`). On a regular latitude/longitude grid only the
cells around the points are loaded (ECMWF's fields are global). The kind of each radiation
message comes from its GRIB ``stepType``: ``accum`` (ECMWF ``ssrd``, J/m^2 since the run began)
is de-accumulated, ``avg`` (NOAA ``sdswrf``, a mean since the last 6-hourly reset) un-averaged,
``instant`` kept as samples. Wind components become speeds; with 10 m and 100 m both given, the
100 m wind and the shear between them are used. Without radiation, GHI comes from total cloud
cover. An ensemble's members are told apart by GRIB ``dataType`` and ``number``: the control
(``cf``) is ``c00``, perturbed members (``pf``) ``p01``, ``p02`` ... (as NOAA's GEFS files are
named); a file may hold both. ``indexpath=""`` keeps cfgrib from writing index files beside
read-only data (a caller that owns the directory may let it keep them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from cfgrib.dataset import DatasetBuildError

from forecasts.nwp.grid import MAX_DISTANCE_KM, GridPoint, at_point, great_circle_km
from forecasts.nwp.process import ModelOutput, deaccumulate, unmix_running_means
from forecasts.nwp.run import DETERMINISTIC
from forecasts.weather import ForecastSourceError

__all__ = ["GROUPS", "VARIABLE_MAP", "grib_issue_time", "read_grib_members", "read_grib_run"]

GROUPS: tuple[dict[str, Any], ...] = (
    {"typeOfLevel": "heightAboveGround", "level": 10, "shortName": ["10u", "10v", "10si"]},
    {"typeOfLevel": "heightAboveGround", "level": 100, "shortName": ["100u", "100v"]},
    {"typeOfLevel": "heightAboveGround", "level": 2, "shortName": ["2t"]},
    {"typeOfLevel": "surface", "shortName": ["ssrd", "sdswrf", "dswrf", "sp", "tcc"]},
)
"""cfgrib filters, one open each: the variables greensched reads, by level."""
_CLOUD_LEVELS = ("atmosphere", "entireAtmosphere", "atmosphereSingleLayer")
VARIABLE_MAP = {
    "u10": "u_10m",
    "v10": "v_10m",
    "si10": "wind_speed",
    "u100": "u_100m",
    "v100": "v_100m",
    "t2m": "temp_air",
    "ssrd": "ghi",
    "sdswrf": "ghi",
    "dswrf": "ghi",
    "sp": "pressure",
    "tcc": "cloud_cover",
}
"""cfgrib variable names -> the weather frame's names (wind components before speeds)."""
_RADIATION = ("ssrd", "sdswrf", "dswrf")
Points = Mapping[str, tuple[float, float]]


@dataclass(frozen=True)
class _Reader:
    """How a run's files are opened: around ``points`` (:func:`_around`), each within
    ``max_distance_km`` of the grid; with ``keep_index``, cfgrib keeps its index of each file
    beside it (in a directory greensched writes), so a file is scanned once, not per group."""

    points: Points
    max_distance_km: float
    keep_index: bool

    def open(self, path: Path, keys: Mapping[str, Any]) -> list[xr.Dataset]:
        """One level group of a GRIB file, loaded: one dataset per kind of message cfgrib keeps
        apart (an ensemble's control and perturbed members in one file), none when the file
        has no such group."""
        backend: dict[str, Any] = {"filter_by_keys": dict(keys)}
        if not self.keep_index:
            backend["indexpath"] = ""
        try:
            dataset = xr.open_dataset(path, engine="cfgrib", backend_kwargs=backend)
        except DatasetBuildError as error:
            if len(error.args) < 3:
                raise ForecastSourceError(
                    f"{path}: GRIB messages that do not fit together ({error})"
                ) from None
            # messages of several kinds under one filter: cfgrib names a narrower filter each
            return [part for narrower in error.args[2] for part in self.open(path, narrower)]
        except (OSError, EOFError) as error:
            raise ForecastSourceError(f"{path}: not a readable GRIB file ({error})") from None
        if not dataset.data_vars:
            return []
        return [_around(dataset, self.points, self.max_distance_km).load()]

    def groups(self, path: Path) -> list[xr.Dataset]:
        """Every group of :data:`GROUPS` in a file, and its cloud cover when it has no
        radiation."""
        groups = [group for keys in GROUPS for group in self.open(path, keys)]
        if any(set(_RADIATION) & set(group.data_vars) for group in groups):
            return groups
        for level in _CLOUD_LEVELS:
            found = self.open(path, {"typeOfLevel": level, "shortName": "tcc"})
            if found:
                return groups + found
        return groups


def _around(dataset: xr.Dataset, points: Points, max_distance_km: float) -> xr.Dataset:
    """The cells of a regular latitude/longitude grid around ``points`` (each point's nearest
    grid point and its neighbours on either side), so a global field is not loaded whole; the
    whole grid when it is projected (2-D coordinates) or a point lies outside it or farther than
    ``max_distance_km`` from it (the distance check then names the whole grid's extent)."""
    latitude, longitude = dataset["latitude"], dataset["longitude"]
    if latitude.ndim != 1 or longitude.ndim != 1:
        return dataset
    lats, lons = latitude.to_numpy().astype(float), longitude.to_numpy().astype(float)
    rows: list[int] = []
    columns: list[int] = []
    for lat, lon in points.values():
        east_deg = (lons - lon + 180.0) % 360.0 - 180.0  # grid longitudes east of the point
        if not (lats.min() <= lat <= lats.max() and east_deg.min() <= 0.0 <= east_deg.max()):
            return dataset
        row, column = int(np.argmin(np.abs(lats - lat))), int(np.argmin(np.abs(east_deg)))
        if great_circle_km(lat, lon, lats[row], lon + east_deg[column]) > max_distance_km:
            return dataset
        rows += [row - 1, row + 1]
        columns += [column - 1, column + 1]
    return dataset.isel({
        latitude.dims[0]: slice(max(min(rows), 0), max(rows) + 1),
        longitude.dims[0]: slice(max(min(columns), 0), max(columns) + 1),
    })  # fmt: skip


def _member_name(data_type: str | None, number: int) -> str:
    """An ensemble member's name from its GRIB ``dataType`` and ``number``."""
    if data_type == "cf":
        return f"c{number:02d}"
    if data_type == "pf":
        return f"p{number:02d}"
    return DETERMINISTIC


def _members(dataset: xr.Dataset) -> Iterator[tuple[str, xr.Dataset]]:
    """Each member's part of a group (module doc), without its ``number``."""
    data_type = next(iter(dataset.data_vars.values())).attrs.get("GRIB_dataType")
    if "number" in dataset.dims:
        for number in dataset["number"].to_numpy():
            yield _member_name(data_type, int(number)), dataset.sel(number=number, drop=True)
        return
    number = int(dataset["number"]) if "number" in dataset.coords else 0
    yield _member_name(data_type, number), dataset.drop_vars("number", errors="ignore")


def grib_issue_time(path: Path) -> pd.Timestamp:
    """The issue (initialisation) time of the first message in a GRIB file, UTC."""
    import eccodes

    with open(path, "rb") as handle:
        try:
            message = eccodes.codes_grib_new_from_file(handle)
        except eccodes.CodesInternalError as error:
            raise ForecastSourceError(f"{path}: not a readable GRIB file ({error})") from None
        if message is None:
            raise ForecastSourceError(f"{path}: not a GRIB file (no message read)")
        try:
            date = eccodes.codes_get(message, "dataDate")
            hhmm = eccodes.codes_get(message, "dataTime")
        finally:
            eccodes.codes_release(message)
    return pd.Timestamp(f"{date:08d}T{hhmm:04d}", tz="UTC")


def _by_valid_time(dataset: xr.Dataset, issued_at: pd.Timestamp, path: Path) -> xr.Dataset:
    """A group's variables with a ``time`` dimension of valid times (one per step)."""
    issue = pd.Timestamp(dataset["time"].to_numpy().reshape(-1)[0]).tz_localize("UTC")
    if issue != issued_at:
        raise ForecastSourceError(
            f"{path}: issued {issue.isoformat()}, not {issued_at.isoformat()} as the run's other "
            "files; a run's files share one issue time"
        )
    if "step" not in dataset.dims:
        dataset = dataset.expand_dims("step")
    valid = dataset["valid_time"].to_numpy().reshape(-1)
    dataset = dataset.drop_vars(["time", "valid_time"], errors="ignore")
    dataset = dataset.rename({"step": "time"}).assign_coords(time=("time", valid))
    keep = [name for name in dataset.data_vars if name in VARIABLE_MAP]
    return dataset[keep]


def read_grib_members(
    paths: Sequence[Path],
    issued_at: pd.Timestamp,
    points: Points,
    *,
    max_distance_km: float = MAX_DISTANCE_KM,
    keep_index: bool = False,
) -> dict[str, dict[str, tuple[ModelOutput, GridPoint]]]:
    """Each member's output of the run issued at ``issued_at`` (UTC) in GRIB files ``paths`` at
    each of ``points`` (name -> latitude, longitude [deg]): member name (module doc;
    :data:`~forecasts.nwp.run.DETERMINISTIC` for a deterministic run) -> point name -> output
    and the grid point it came from. With ``keep_index`` cfgrib writes its index of each file
    beside it (``.idx``; for files in a directory greensched owns)."""
    frames: dict[str, dict[str, list[pd.DataFrame]]] = {}
    grid: dict[str, GridPoint] = {}
    step_types: set[str] = set()
    reader = _Reader(points, max_distance_km, keep_index)
    for path in paths:
        for group in reader.groups(path):
            step_types |= {
                str(group[n].attrs.get("GRIB_stepType")) for n in group.data_vars
                if n in _RADIATION
            }  # fmt: skip
            for member, part in _members(group):
                timed = _by_valid_time(part, issued_at, path)
                for name, (latitude, longitude) in points.items():
                    frame, point = at_point(timed, latitude, longitude, source=str(path),
                                            max_distance_km=max_distance_km)  # fmt: skip
                    frames.setdefault(member, {}).setdefault(name, []).append(frame)
                    grid[name] = point
    if not frames:
        raise ForecastSourceError(
            f"{paths[0]}: none of the variables greensched reads ({', '.join(VARIABLE_MAP)})"
        )
    return {
        member: {
            name: (_output(_combined(parts), issued_at, set(step_types), paths[0]), grid[name])
            for name, parts in by_point.items()
        }
        for member, by_point in sorted(frames.items())
    }


def read_grib_run(
    paths: Sequence[Path],
    issued_at: pd.Timestamp,
    points: Points,
    *,
    max_distance_km: float = MAX_DISTANCE_KM,
    keep_index: bool = False,
) -> dict[str, tuple[ModelOutput, GridPoint]]:
    """The output of the deterministic run issued at ``issued_at`` (UTC) in GRIB files
    ``paths`` at each of ``points`` (name -> latitude, longitude [deg]); raises
    :class:`ForecastSourceError` for an ensemble's files (:func:`read_grib_members` reads
    them). ``keep_index`` as there."""
    members = read_grib_members(
        paths, issued_at, points, max_distance_km=max_distance_km, keep_index=keep_index
    )
    if len(members) > 1:
        raise ForecastSourceError(
            f"{paths[0]}: {len(members)} ensemble members ({', '.join(members)}) where one "
            "deterministic run was expected"
        )
    return next(iter(members.values()))


def _combined(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """One frame per valid time from the groups and files of a run."""
    frame = pd.concat(parts).groupby(level=0).first().sort_index()
    frame.index = pd.DatetimeIndex(frame.index).tz_localize("UTC")
    return frame.rename(columns=VARIABLE_MAP)


def _output(
    frame: pd.DataFrame, issued_at: pd.Timestamp, step_types: set[str], source: Path
) -> ModelOutput:
    """Speeds from components, K to C, radiation de-accumulated or un-averaged."""
    out = pd.DataFrame(index=frame.index)
    if "temp_air" not in frame or ("wind_speed" not in frame and "u_10m" not in frame):
        raise ForecastSourceError(
            f"{source}: a run needs 2 m temperature (2t) and 10 m wind (10u/10v or 10si)"
        )
    out["temp_air"] = frame["temp_air"] - 273.15
    out["wind_speed"] = (
        np.hypot(frame["u_10m"], frame["v_10m"]) if "u_10m" in frame else frame["wind_speed"]
    )
    upper = None
    if {"u_100m", "v_100m"} <= set(frame.columns):
        out["wind_speed_upper"] = np.hypot(frame["u_100m"], frame["v_100m"])
        upper = 100.0
    if "pressure" in frame:
        out["pressure"] = frame["pressure"]
    if "cloud_cover" in frame:
        out["cloud_cover"] = frame["cloud_cover"]
    kind = "instant"
    if "ghi" in frame:
        if len(step_types) > 1:
            raise ForecastSourceError(f"{source}: radiation of mixed kinds {sorted(step_types)}")
        step_type = step_types.pop() if step_types else "instant"
        ghi = frame["ghi"]
        if step_type == "accum":
            out = out.join(deaccumulate(ghi, issued_at).rename("ghi"), how="outer")
            kind = "mean"
        elif step_type == "avg":
            out = out.join(unmix_running_means(ghi, issued_at).rename("ghi"), how="outer")
            kind = "mean"
        else:
            out["ghi"] = ghi
    return ModelOutput(out, kind, 10.0, upper)  # type: ignore[arg-type]
