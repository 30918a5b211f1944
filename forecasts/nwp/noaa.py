"""NOAA model runs as NetCDF files (wgrib2 output): GFS, GEFS, HRRR, NAM, RAP.

I/O only: a file is opened with ``xarray``, its variables renamed once through
:data:`VARIABLE_MAP` to the names the PV and wind models use, brought to the sites' points
(:mod:`forecasts.nwp.grid`) and handed over as :class:`~forecasts.nwp.process.ModelOutput`.
What each model's radiation means is in :data:`MODELS`:

- GFS and GEFS give ``dswrf`` as a mean since the last 6-hourly reset, labelled at the end of
  its window: un-averaged here (:func:`~forecasts.nwp.process.unmix_running_means`) into
  interval means;
- HRRR (hourly and 15-minute sub-hourly) and NAM give instantaneous ``dswrf``; HRRR also its
  direct (``vbdsf``, a DNI) and diffuse (``vddsf``, a DHI) fluxes;
- RAP gives no radiation here: GHI comes from its cloud cover.

File names follow SolarArbiter's archive: ``gfs_0p25.nc``, ``gefs_c00.nc`` ... ``gefs_p20.nc``
(``gefs_avg`` and ``gefs_spr``, the ensemble's mean and spread of weather, are not members),
``hrrr_hourly.nc``, ``hrrr_subhourly.nc``, ``nam_12km.nc``, ``rap.nc``; a run's directory is
``YYYY/MM/DD/HH/`` of its issue time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import xarray as xr

from forecasts.nwp.grid import MAX_DISTANCE_KM, GridPoint, at_point
from forecasts.nwp.process import ModelOutput, unmix_running_means
from forecasts.weather import ForecastSourceError

__all__ = ["MODELS", "VARIABLE_MAP", "NoaaModel", "classify_noaa_file", "read_noaa_netcdf"]

VARIABLE_MAP = {
    "dswrf": "ghi",
    "vbdsf": "dni",
    "vddsf": "dhi",
    "t2m": "temp_air",
    "si10": "wind_speed",
    "tcdc": "cloud_cover",
}
"""NOAA (wgrib2) variable names -> the weather frame's names."""


@dataclass(frozen=True)
class NoaaModel:
    """How one NOAA model's file is read: ``radiation`` is ``"running_mean"`` (a mean since the
    last ``reset_hours`` reset, labelled at the window's end), ``"instant"`` or ``None`` (no
    radiation: GHI from cloud cover)."""

    name: str
    radiation: str | None
    reset_hours: float = 6.0


MODELS: dict[str, NoaaModel] = {
    model.name: model
    for model in (
        NoaaModel("gfs_0p25", "running_mean"),
        NoaaModel("gefs", "running_mean"),
        NoaaModel("hrrr_hourly", "instant"),
        NoaaModel("hrrr_subhourly", "instant"),
        NoaaModel("nam_12km", "instant"),
        NoaaModel("rap", None),
    )
}
_MEMBER = re.compile(r"^gefs_(c00|p\d\d)$")
_NOT_MEMBERS = ("gefs_avg", "gefs_spr")
_WIND_HEIGHT_M = 10.0  # si10


def classify_noaa_file(path: Path) -> tuple[str, str] | None:
    """``(model, member)`` of a NOAA NetCDF file by its name (member ``""`` for a deterministic
    model); ``None`` for a file that is not a run's member (GEFS mean and spread, other files).
    """
    if path.suffix != ".nc":
        return None
    stem = path.stem
    if stem in MODELS:
        return stem, ""
    match = _MEMBER.match(stem)
    if match:
        return "gefs", match.group(1)
    if stem in _NOT_MEMBERS:
        return None
    return None


def _open(path: Path) -> xr.Dataset:
    """``path`` opened lazily; no pandas index is built for its coordinates (the site's values
    are taken by position, :func:`~forecasts.nwp.grid.at_point`)."""
    try:
        return xr.open_dataset(path, create_default_indexes=False)
    except (OSError, ValueError) as error:
        raise ForecastSourceError(f"{path}: not a readable NetCDF file ({error})") from None


def read_noaa_netcdf(
    path: Path,
    model: str,
    issued_at: pd.Timestamp,
    points: Mapping[str, tuple[float, float]],
    *,
    max_distance_km: float = MAX_DISTANCE_KM,
) -> dict[str, tuple[ModelOutput, GridPoint]]:
    """The output of ``model``'s run issued at ``issued_at`` (UTC) in ``path`` at each of
    ``points`` (name -> latitude, longitude [deg]).

    Raises :class:`ForecastSourceError` naming the file and the variable or the site when a
    variable is missing, the file has no time axis or a site lies off the grid.
    """
    conventions = MODELS[model]
    with _open(path) as dataset:
        if "time" not in dataset.dims:
            raise ForecastSourceError(f"{path}: no 'time' dimension; not a model run's file")
        needed = ["t2m", "si10"] + (["dswrf"] if conventions.radiation else ["tcdc"])
        missing = [name for name in needed if name not in dataset]
        if missing:
            raise ForecastSourceError(
                f"{path}: variable(s) {', '.join(missing)} missing; a {model} file needs "
                f"{', '.join(needed)}"
            )
        if "latitude" not in dataset or "longitude" not in dataset:
            raise ForecastSourceError(f"{path}: no latitude/longitude coordinates")
        names = {n: VARIABLE_MAP[n] for n in VARIABLE_MAP if n in dataset}
        dataset = dataset[list(names)].load()
    out = {}
    for site, (latitude, longitude) in points.items():
        frame, point = at_point(
            dataset, latitude, longitude, source=str(path), max_distance_km=max_distance_km
        )
        frame = frame.rename(columns=names)
        frame.index = frame.index.tz_localize("UTC")
        frame["temp_air"] = frame["temp_air"] - 273.15  # K -> C
        out[site] = (_output(frame, conventions, issued_at), point)
    return out


def _output(frame: pd.DataFrame, model: NoaaModel, issued_at: pd.Timestamp) -> ModelOutput:
    """The frame as a :class:`ModelOutput`, radiation un-averaged where the model averages it."""
    if model.radiation is None:
        frame = frame.drop(columns=["ghi", "dni", "dhi"], errors="ignore")
        return ModelOutput(frame, "instant", _WIND_HEIGHT_M)
    if model.radiation == "running_mean":
        frame = frame.copy()
        for name in ("ghi", "dni", "dhi"):
            if name in frame:  # on the frame's times: NaN where the file has none (lead 0)
                frame[name] = unmix_running_means(frame[name], issued_at, model.reset_hours)
        return ModelOutput(frame, "mean", _WIND_HEIGHT_M)
    return ModelOutput(frame, "instant", _WIND_HEIGHT_M)
