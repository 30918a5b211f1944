"""NOAA model runs as NetCDF files (wgrib2 output): GFS, GEFS, HRRR, NAM, RAP.

I/O only: a file is read with netCDF4 and decoded by ``xarray``, its variables renamed once
through :data:`VARIABLE_MAP` to the names the PV and wind models use, brought to the sites' points
(:mod:`forecasts.nwp.grid`) and handed over as :class:`~forecasts.nwp.process.ModelOutput`.
What each model's radiation means is in :data:`MODELS`:

- GFS and GEFS give ``dswrf`` as a mean since the last 6-hourly reset, labelled at the end of
  its window: un-averaged here (:func:`~forecasts.nwp.process.unmix_running_mean_values`) into
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

import netCDF4
import numpy as np
import pandas as pd
import xarray as xr
from xarray.coding.times import decode_cf_datetime
from xarray.conventions import decode_cf_variable

from forecasts.nwp.grid import MAX_DISTANCE_KM, GridPoint, point_weights
from forecasts.nwp.process import ModelOutput, unmix_running_mean_values
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


def _read_variables(
    path: Path, model: NoaaModel
) -> tuple[pd.DatetimeIndex, dict[str, xr.Variable]]:
    """The valid times (UTC) of ``path`` and its variables that :data:`VARIABLE_MAP` names,
    with ``latitude`` and ``longitude``, read whole and decoded by xarray's CF conventions.

    The raw values are read with netCDF4 and decoded by xarray (``decode_cf_variable``, the
    time axis by ``decode_cf_datetime``): the values ``xr.open_dataset`` gives, without it
    building a Dataset (indexes, encodings, file-manager locks, a trial decoding of the
    times), which took two thirds of the CPU time of reading the GEFS run's 21 small files
    (reading them: 0.18 s -> 0.08 s). Raises :class:`ForecastSourceError` naming the file
    and what is missing.
    """
    try:
        handle = netCDF4.Dataset(path)
    except OSError as error:
        raise ForecastSourceError(f"{path}: not a readable NetCDF file ({error})") from None
    with handle:
        present = handle.variables
        if "time" not in handle.dimensions or "time" not in present:
            raise ForecastSourceError(f"{path}: no 'time' dimension; not a model run's file")
        if "units" not in present["time"].ncattrs():
            raise ForecastSourceError(f"{path}: its 'time' has no units")
        needed = ["t2m", "si10"] + (["dswrf"] if model.radiation else ["tcdc"])
        missing = [name for name in needed if name not in present]
        if missing:
            raise ForecastSourceError(
                f"{path}: variable(s) {', '.join(missing)} missing; a {model.name} file needs "
                f"{', '.join(needed)}"
            )
        if "latitude" not in present or "longitude" not in present:
            raise ForecastSourceError(f"{path}: no latitude/longitude coordinates")
        handle.set_auto_maskandscale(False)  # raw values: xarray decodes them
        time = present["time"]
        times = decode_cf_datetime(time[...], time.units, getattr(time, "calendar", None))
        names = [name for name in VARIABLE_MAP if name in present]
        return pd.DatetimeIndex(times).tz_localize("UTC"), {
            name: _decoded(name, present[name]) for name in ("latitude", "longitude", *names)
        }


def _decoded(name: str, variable: netCDF4.Variable) -> xr.Variable:
    """A netCDF4 variable's raw values decoded by xarray's CF conventions."""
    attributes = {key: variable.getncattr(key) for key in variable.ncattrs()}
    return decode_cf_variable(name, xr.Variable(variable.dimensions, variable[...], attributes))


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
    times, variables = _read_variables(path, conventions)
    latitude_deg, longitude_deg = variables.pop("latitude"), variables.pop("longitude")
    out = {}
    for site, (latitude, longitude) in points.items():
        at = point_weights(latitude_deg, longitude_deg, latitude, longitude, source=str(path),
                           max_distance_km=max_distance_km)  # fmt: skip
        columns = {VARIABLE_MAP[name]: at.values(values) for name, values in variables.items()}
        columns["temp_air"] = columns["temp_air"] - 273.15  # K -> C
        out[site] = (_output(columns, times, conventions, issued_at), at.point)
    return out


def _output(
    columns: dict[str, np.ndarray], times: pd.DatetimeIndex, model: NoaaModel,
    issued_at: pd.Timestamp,
) -> ModelOutput:  # fmt: skip
    """The columns at ``times`` as a :class:`ModelOutput`, radiation un-averaged where the model
    averages it (NaN where the file has none: lead 0)."""
    radiation = [name for name in ("ghi", "dni", "dhi") if name in columns]
    if model.radiation is None:
        kept = {name: values for name, values in columns.items() if name not in radiation}
        return ModelOutput(pd.DataFrame(kept, index=times), "instant", _WIND_HEIGHT_M)
    if model.radiation == "running_mean":
        times_ns = times.as_unit("ns").asi8
        unmixed = {
            name: _unmixed(times_ns, columns[name], issued_at, model.reset_hours)
            for name in radiation
        }
        return ModelOutput(pd.DataFrame(columns | unmixed, index=times), "mean", _WIND_HEIGHT_M)
    return ModelOutput(pd.DataFrame(columns, index=times), "instant", _WIND_HEIGHT_M)


def _unmixed(
    times_ns: np.ndarray, running_mean: np.ndarray, issued_at: pd.Timestamp, reset_hours: float
) -> np.ndarray:
    """Interval means of a running mean at ``times_ns`` [ns since 1970] [same unit], NaN where
    it is NaN."""
    known = ~np.isnan(running_mean)
    out = np.full(len(running_mean), np.nan)
    out[known] = unmix_running_mean_values(
        times_ns[known], running_mean[known], issued_at, reset_hours
    )
    return out
