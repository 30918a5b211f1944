"""Model runs as GRIB2 files, read through ``xarray`` and ``cfgrib`` (ECMWF open data, NOAA).

I/O only. A run is one or more files sharing an issue time (one file per lead, as NOAA and
ECMWF publish them, or one file with many steps); each file is opened once per group of
variables on one level (:data:`GROUPS`, cfgrib reads one level type per open), the variables
renamed through :data:`VARIABLE_MAP` and brought to the sites' points
(:mod:`forecasts.nwp.grid`). The kind of each radiation message comes from its GRIB
``stepType``: ``accum`` (ECMWF ``ssrd``, J/m^2 since the run began) is de-accumulated, ``avg``
(NOAA ``sdswrf``, a mean since the last 6-hourly reset) un-averaged, ``instant`` kept as
samples. Wind components become speeds; with 10 m and 100 m both given, the 100 m wind and the
shear between them are used. Without radiation, GHI comes from total cloud cover.
``indexpath=""`` keeps cfgrib from writing index files beside read-only data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from forecasts.nwp.grid import MAX_DISTANCE_KM, GridPoint, at_point
from forecasts.nwp.process import ModelOutput, deaccumulate, unmix_running_means
from forecasts.weather import ForecastSourceError

__all__ = ["GROUPS", "VARIABLE_MAP", "grib_issue_time", "read_grib_run"]

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
_BACKEND: dict[str, Any] = {"indexpath": ""}


def _open(path: Path, keys: Mapping[str, Any]) -> xr.Dataset | None:
    """One level group of a GRIB file, loaded; ``None`` when the file has none of it."""
    try:
        dataset = xr.open_dataset(
            path, engine="cfgrib", backend_kwargs={**_BACKEND, "filter_by_keys": dict(keys)}
        )
    except (OSError, EOFError) as error:
        raise ForecastSourceError(f"{path}: not a readable GRIB file ({error})") from None
    if not dataset.data_vars:
        return None
    return dataset.load()


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


def _cloud_group(path: Path) -> xr.Dataset | None:
    for level in _CLOUD_LEVELS:
        found = _open(path, {"typeOfLevel": level, "shortName": "tcc"})
        if found is not None:
            return found
    return None


def read_grib_run(
    paths: Sequence[Path],
    issued_at: pd.Timestamp,
    points: Mapping[str, tuple[float, float]],
    *,
    max_distance_km: float = MAX_DISTANCE_KM,
) -> dict[str, tuple[ModelOutput, GridPoint]]:
    """The output of the run issued at ``issued_at`` (UTC) in GRIB files ``paths`` at each of
    ``points`` (name -> latitude, longitude [deg])."""
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in points}
    grid: dict[str, GridPoint] = {}
    step_types: set[str] = set()
    for path in paths:
        groups = [_open(path, keys) for keys in GROUPS]
        if not any(g is not None and {"ssrd", "sdswrf", "dswrf"} & set(g.data_vars)
                   for g in groups):  # fmt: skip
            groups.append(_cloud_group(path))
        for group in groups:
            if group is None:
                continue
            step_types |= {
                str(group[n].attrs.get("GRIB_stepType"))
                for n in group.data_vars
                if n in ("ssrd", "sdswrf", "dswrf")
            }
            timed = _by_valid_time(group, issued_at, path)
            for name, (latitude, longitude) in points.items():
                frame, point = at_point(
                    timed, latitude, longitude, source=str(path), max_distance_km=max_distance_km
                )
                frames[name].append(frame)
                grid[name] = point
    if not any(frames.values()):
        raise ForecastSourceError(
            f"{paths[0]}: none of the variables greensched reads ({', '.join(VARIABLE_MAP)})"
        )
    return {
        name: (_output(_combined(parts), issued_at, step_types, paths[0]), grid[name])
        for name, parts in frames.items()
    }


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
