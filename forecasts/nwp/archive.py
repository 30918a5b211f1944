"""Runs in files: one run's file, one run's directory (an ensemble's members, a run's leads), or
a directory of runs as they arrive.

Every NetCDF (``.nc``) and GRIB2 (``.grib2``, ``.grb2``, ``.grib``) file under the path is a
piece of a run. Its model and member come from its name (:func:`~forecasts.nwp.noaa.
classify_noaa_file`; GRIB files by their name's first word or their centre), its issue time
from a ``YYYY/MM/DD/HH/`` directory in its path, else from the file itself (a NetCDF file's
first valid time, a GRIB file's ``dataDate``/``dataTime``). Pieces sharing a model and an issue
time make a run. A run counts as available :data:`AVAILABLE_AFTER` its issue time (the model's
usual publication delay), or after the delay the source is given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from forecasts.nwp.grib import grib_issue_time, read_grib_run
from forecasts.nwp.grid import MAX_DISTANCE_KM
from forecasts.nwp.noaa import classify_noaa_file, read_noaa_netcdf
from forecasts.nwp.run import DETERMINISTIC, ForecastRun, site_runs
from forecasts.nwp.source import ForecastSource, RunRef
from forecasts.specs import SupplySite
from forecasts.weather import ForecastSourceError

__all__ = ["AVAILABLE_AFTER", "RunArchive", "RunFile"]

AVAILABLE_AFTER: dict[str, pd.Timedelta] = {
    "gfs_0p25": pd.Timedelta(hours=4),
    "gefs": pd.Timedelta(hours=5),
    "hrrr_hourly": pd.Timedelta(hours=1),
    "hrrr_subhourly": pd.Timedelta(hours=1),
    "nam_12km": pd.Timedelta(hours=2),
    "rap": pd.Timedelta(hours=1),
    "ecmwf": pd.Timedelta(hours=7),
}
"""Usual delay from a run's issue time to its publication (NOAA NOMADS, ECMWF open data;
approximate, as operational schedules give them); a model not listed: 0."""
_GRIB_SUFFIXES = (".grib2", ".grb2", ".grib")
_ISSUE_DIRS = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/(\d{2})(?:/|$)")
_GRIB_MODELS = ("rap", "hrrr", "gfs", "nam", "gefs")
_GRIB_CENTRES = {"ecmf": "ecmwf", "kwbc": "ncep"}


@dataclass(frozen=True)
class RunFile:
    """One file of a run: its model, member (``""`` for a deterministic run) and issue time."""

    path: Path
    model: str
    member: str
    issued_at: pd.Timestamp

    @property
    def is_grib(self) -> bool:
        return self.path.suffix in _GRIB_SUFFIXES


def _issue_time_from_path(path: Path) -> pd.Timestamp | None:
    match = _ISSUE_DIRS.search(path.parent.as_posix())
    if not match:
        return None
    year, month, day, hour = (int(g) for g in match.groups())
    try:
        return pd.Timestamp(year=year, month=month, day=day, hour=hour, tz="UTC")
    except ValueError:
        return None


def _netcdf_issue_time(path: Path) -> pd.Timestamp:
    import netCDF4

    try:
        with netCDF4.Dataset(path) as dataset:
            times = dataset["time"]
            first = netCDF4.num2date(times[0], times.units, only_use_cftime_datetimes=False)
    except (OSError, IndexError, KeyError, AttributeError) as error:
        raise ForecastSourceError(f"{path}: cannot read its first valid time ({error})") from None
    return pd.Timestamp(str(first), tz="UTC")


def _grib_model(path: Path) -> str:
    first = re.split(r"[._-]", path.name.lower())[0]
    if first in _GRIB_MODELS:
        return first
    import eccodes

    with open(path, "rb") as handle:
        message = eccodes.codes_grib_new_from_file(handle)
        if message is None:
            raise ForecastSourceError(f"{path}: not a GRIB file (no message read)")
        try:
            centre = str(eccodes.codes_get(message, "centre"))
        finally:
            eccodes.codes_release(message)
    return _GRIB_CENTRES.get(centre, centre)


def _run_file(path: Path) -> RunFile | None:
    """The run piece ``path`` is, or ``None`` for a file that is none."""
    if path.suffix in _GRIB_SUFFIXES:
        issued = _issue_time_from_path(path) or grib_issue_time(path)
        return RunFile(path, _grib_model(path), DETERMINISTIC, issued)
    kind = classify_noaa_file(path)
    if kind is None:
        return None
    model, member = kind
    issued = _issue_time_from_path(path) or _netcdf_issue_time(path)
    return RunFile(path, model, member, issued)


class RunArchive(ForecastSource):
    """Runs in the files under ``path`` (module doc). ``available_after`` overrides the models'
    publication delays; ``max_distance_km`` bounds a site's distance from the grid."""

    def __init__(
        self,
        path: str | Path,
        *,
        available_after: pd.Timedelta | None = None,
        max_distance_km: float = MAX_DISTANCE_KM,
    ) -> None:
        self.path = Path(path)
        self.label = str(path)
        self.available_after = available_after
        self.max_distance_km = max_distance_km
        self._runs: dict[tuple[str, pd.Timestamp], list[RunFile]] = {}
        self._known: dict[Path, RunFile | None] = {}
        self.refresh()

    def refresh(self) -> None:
        """Scan the path again: runs that arrived since are found, files read once."""
        if not self.path.exists():
            raise ForecastSourceError(f"{self.path}: no such file or directory")
        files = [self.path] if self.path.is_file() else sorted(
            p for p in self.path.rglob("*") if p.is_file()
        )  # fmt: skip
        for path in files:
            if path not in self._known:
                self._known[path] = _run_file(path)
        runs: dict[tuple[str, pd.Timestamp], list[RunFile]] = {}
        for piece in self._known.values():
            if piece is not None:
                runs.setdefault((piece.model, piece.issued_at), []).append(piece)
        if not runs:
            raise ForecastSourceError(
                f"{self.path}: no model run found (NOAA NetCDF files named like gfs_0p25.nc or "
                "gefs_p01.nc, or GRIB2 files)"
            )
        models = sorted({model for model, _ in runs})
        if len(models) > 1:
            raise ForecastSourceError(
                f"{self.path}: runs of several models ({', '.join(models)}); give one model's "
                "directory"
            )
        self._runs = runs

    def _available_at(self, model: str, issued_at: pd.Timestamp) -> pd.Timestamp:
        delay = self.available_after
        if delay is None:
            delay = AVAILABLE_AFTER.get(model, pd.Timedelta(0))
        return issued_at + delay

    @property
    def runs(self) -> list[RunRef]:
        """Every run found, oldest first."""
        refs = [RunRef(model, at, self._available_at(model, at)) for model, at in self._runs]
        return sorted(refs, key=lambda ref: ref.issued_at)

    def latest(self, at: pd.Timestamp) -> RunRef | None:
        available = [ref for ref in self.runs if ref.available_at <= at]
        return available[-1] if available else None

    def read(
        self, ref: RunRef, sites: Mapping[str, SupplySite], slot_minutes: int
    ) -> dict[str, ForecastRun]:
        pieces = self._runs[(ref.model, ref.issued_at)]
        points = {name: (site.latitude, site.longitude) for name, site in sites.items()}
        grib = [piece.path for piece in pieces if piece.is_grib]
        by_member = (
            {DETERMINISTIC: read_grib_run(grib, ref.issued_at, points,
                                          max_distance_km=self.max_distance_km)}
            if grib
            else {
                piece.member: read_noaa_netcdf(piece.path, piece.model, ref.issued_at, points,
                                               max_distance_km=self.max_distance_km)
                for piece in sorted(pieces, key=lambda p: p.member)
            }
        )  # fmt: skip
        return site_runs(
            by_member, model=ref.model, issued_at=ref.issued_at, source=self.label, sites=sites,
            slot_minutes=slot_minutes,
        )  # fmt: skip
