"""Weather file readers, each returning :class:`Weather`.

Typical years: EPW, TMY3, PVGIS TMY. Dated series: actual-year EPW (all rows of one year),
PVGIS hourly series (:func:`read_pvgis_hourly_weather`), the Open-Meteo historical CSV export
(:func:`read_open_meteo_weather`) and the plain CSV below.

Every reader ends in :func:`validate_weather`, so every source obeys the frame contract of
:mod:`forecasts.weather` (UTC index at interval starts, pvlib column names, SI units) and every
problem is a :class:`WeatherFileError` whose message starts with the file path.

Time conventions of the sources
-------------------------------
- EPW and TMY3: hour ``h`` (1..24) is the interval ``[h-1, h)`` in local *standard* time (the
  fixed UTC offset ``TZ`` of the header, no daylight saving). The index is built here from the
  month, day and hour fields, not taken from pvlib, whose labelling differs between the two.
- PVGIS TMY (json or csv): ``time(UTC)`` at hh:00 labels the hour starting then.
- Typical years (EPW, TMY3, PVGIS): rows come from different real years; they are placed on the
  non-leap year :data:`TYPICAL_YEAR` of their own clock (local standard time for EPW/TMY3, UTC
  for PVGIS), Feb 29 rows are dropped, and the clock is recorded in :attr:`Weather.notes` so
  that :func:`map_to_dates` can put them on real dates.

Plain CSV
---------
::

    # wind_height_m: 10
    # latitude: 31.40
    # longitude: 121.45
    time,ghi,dni,dhi,temp_air,wind_speed,pressure
    2024-06-01T00:00Z,0,0,0,21.5,3.2,100900

``time`` is the START of each interval, ISO 8601 with ``Z`` or an explicit offset such as
``+08:00``; naive times are rejected, since their zone would be a guess. Units: ``ghi``,
``dni``, ``dhi`` [W/m^2], ``temp_air`` [C], ``wind_speed`` [m/s], ``pressure`` [Pa], optional
``roughness_length`` [m]; other columns are ignored. Leading ``# key: value`` lines may give
``wind_height_m`` (default 10 m, the WMO standard height, said in the notes) and the station
``latitude`` and ``longitude``; other comment lines are ignored.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib

from forecasts.checks import kmh_suspicion, warn_user
from forecasts.clock import sun_interval_means
from forecasts.weather import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, Weather, WeatherFileError

__all__ = [
    "KINDS",
    "TYPICAL_YEAR",
    "WeatherFileError",
    "map_to_dates",
    "read_csv_weather",
    "read_epw_weather",
    "read_open_meteo_weather",
    "read_pvgis_hourly_weather",
    "read_pvgis_weather",
    "read_tmy3_weather",
    "read_weather",
    "sniff_kind",
    "station_distance_km",
    "typical_year_utc_offset_hours",
    "validate_weather",
    "warn_if_far",
]

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("epw", "tmy3", "pvgis", "pvgis_hourly", "open_meteo", "csv")
TYPICAL_YEAR = 1990
"""Non-leap year on which the rows of a typical-year file are placed (in the file's own clock)."""

STANDARD_WIND_HEIGHT_M = 10.0
EARTH_RADIUS_KM = 6371.0088
_IRRADIANCE = ("ghi", "dni", "dhi")
_NEGATIVE_IRRADIANCE_TOLERANCE_W_M2 = 10.0
_RANGES: dict[str, tuple[float, float, str]] = {
    "ghi": (0.0, 1500.0, "W/m^2"),
    "dni": (0.0, 1500.0, "W/m^2"),
    "dhi": (0.0, 1500.0, "W/m^2"),
    "temp_air": (-60.0, 60.0, "C"),
    "wind_speed": (0.0, 50.0, "m/s"),
    "pressure": (50_000.0, 110_000.0, "Pa"),
    "roughness_length": (0.0, 10.0, "m"),
    "wind_shear_exponent": (0.0, 1.0, "-"),
}
# EPW codes for a missing value: anything at or above these is missing
_EPW_MISSING = {
    "temp_air": 99.9,
    "atmospheric_pressure": 999_999.0,
    "ghi": 9999.0,
    "dni": 9999.0,
    "dhi": 9999.0,
    "wind_speed": 999.0,
}
_PVGIS_MIN_ELEVATION_DEG = 2.0
_OPEN_METEO_HEADER_RE = re.compile(r"^\s*([a-z_0-9]+)\s*\((.*)\)\s*$")
_OPEN_METEO_VARIABLES = {
    "shortwave_radiation": "ghi",
    "direct_normal_irradiance": "dni",
    "diffuse_radiation": "dhi",
    "temperature_2m": "temp_air",
    "wind_speed_10m": "wind_speed",
    "windspeed_10m": "wind_speed",  # the name before 2023
    "surface_pressure": "pressure",
}
_W_M2 = {"W/m²": (1.0, 0.0), "W/m2": (1.0, 0.0)}
_OPEN_METEO_UNITS: dict[str, dict[str, tuple[float, float]]] = {
    "ghi": _W_M2,
    "dni": _W_M2,
    "dhi": _W_M2,
    "temp_air": {"°C": (1.0, 0.0), "°F": (5.0 / 9.0, -32.0 * 5.0 / 9.0)},
    "wind_speed": {"km/h": (1 / 3.6, 0.0), "m/s": (1.0, 0.0), "mp/h": (0.44704, 0.0),
                   "kn": (0.514444, 0.0)},
    "pressure": {"hPa": (100.0, 0.0)},
}  # fmt: skip
_JSON_SNIFF_CHARS = 1_000_000
_EPW_HEADER_LINES = 8
_TYPICAL_YEAR_RE = re.compile(
    r"\b(TMY\w*|IWEC\w*|CWEC|CSWD|TRY|IGDG|CTYW|ISHRAE|typical|standard weather)\b", re.I
)
_EPW_FIELDS = 35
_CLOCK_NOTE = "typical-year clock: local standard time UTC{:+g} h"
_CLOCK_RE = re.compile(r"typical-year clock: local standard time UTC([+-][0-9.]+) h")
_ZONED_TIME_RE = r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"
_CSV_HEADER_RE = re.compile(r"^#\s*(wind_height_m|latitude|longitude)\s*:\s*(\S+)\s*$")


# --------------------------------------------------------------------------------------------
# validation (all sources, also the synthetic generator)


def validate_weather(
    frame: pd.DataFrame,
    source: str,
    *,
    max_gap_hours: float = 3.0,
    wind_height_m: float = STANDARD_WIND_HEIGHT_M,
) -> tuple[pd.DataFrame, int]:
    """Check a weather frame against the contract and fill short gaps.

    Parameters
    ----------
    frame : DataFrame with a tz-aware DatetimeIndex (interval starts) and at least the
        columns of :data:`forecasts.weather.REQUIRED_COLUMNS` in contract units.
    source : file path or other name; every error message starts with it.
    max_gap_hours : longest run of missing values per column that is filled by linear
        interpolation in time [h]; longer runs are errors.
    wind_height_m : height of ``wind_speed`` [m], to judge whether it is m/s.

    Returns
    -------
    (frame, n_filled) : the frame with the contract columns only (float, UTC index named
        ``time``) and the number of values filled.

    Raises
    ------
    WeatherFileError : naming the column, or the 1-based data row and its time.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise WeatherFileError(
            f"{source}: missing column(s) {', '.join(missing)}; "
            f"required: {', '.join(REQUIRED_COLUMNS)}"
        )
    columns = [*REQUIRED_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in frame.columns)]
    index = _checked_index(frame.index, source)
    data = pd.DataFrame(
        {c: _numeric(frame[c], c, index, source) for c in columns}, index=index
    ).rename_axis("time")
    data = _checked_ranges(data, source, wind_height_m)
    return _filled_gaps(data, source, max_gap_hours)


def _row(index: pd.DatetimeIndex, position: int) -> str:
    """``data row N (time)`` for a 0-based position, 1-based in the message."""
    return f"data row {position + 1} ({index[position].isoformat()})"


def _checked_index(index: pd.Index, source: str) -> pd.DatetimeIndex:
    if not isinstance(index, pd.DatetimeIndex):
        raise WeatherFileError(f"{source}: the rows have no times (index is not datetime)")
    if index.tz is None:
        raise WeatherFileError(
            f"{source}: times have no time zone; give them in UTC or with an offset"
        )
    if len(index) < 2:
        raise WeatherFileError(f"{source}: {len(index)} row(s); at least 2 are needed")
    index = index.tz_convert("UTC")
    steps = index[1:] - index[:-1]
    backwards = np.flatnonzero(steps <= pd.Timedelta(0))
    if backwards.size:
        i = int(backwards[0])
        relation = "repeats the time of" if steps[i] == pd.Timedelta(0) else "is earlier than"
        raise WeatherFileError(
            f"{source}: {_row(index, i + 1)} {relation} {_row(index, i)}; times must increase"
        )
    step = pd.Series(steps).mode().iloc[0]
    irregular = np.flatnonzero(steps != step)
    if irregular.size:
        i = int(irregular[0])
        raise WeatherFileError(
            f"{source}: {_row(index, i + 1)} comes {steps[i]} after the row before; "
            f"the file's step is {step} and must be regular"
        )
    return index


def _numeric(column: pd.Series, name: str, index: pd.DatetimeIndex, source: str) -> np.ndarray:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(np.isnan(values) & column.notna().to_numpy())
    if bad.size:
        raise WeatherFileError(
            f"{source}: column {name!r}, {_row(index, int(bad[0]))}: "
            f"{column.iloc[int(bad[0])]!r} is not a number"
        )
    return values


def _unit_hint(name: str, values: pd.Series, wind_height_m: float) -> str:
    """A guess at the unit mistake behind out-of-range values, or ``''``."""
    if name == "temp_air" and values.min() > 150:
        return "; this looks like Kelvin (subtract 273.15)"
    if name == "wind_speed":
        suspicion = kmh_suspicion(values, wind_height_m)
        return f"; {suspicion}" if suspicion else ""
    if name == "pressure" and 500 <= values.median() <= 1100:
        return "; this looks like hPa or mbar (multiply by 100)"
    if name == "pressure" and 50 <= values.median() <= 110:
        return "; this looks like kPa (multiply by 1000)"
    return ""


def _checked_ranges(data: pd.DataFrame, source: str, wind_height_m: float) -> pd.DataFrame:
    """Raise on values outside the physical range; clip small negative irradiance to 0."""
    for name in data.columns:
        low, high, unit = _RANGES[name]
        values = data[name].dropna()
        if values.empty:
            continue
        tolerance = _NEGATIVE_IRRADIANCE_TOLERANCE_W_M2 if name in _IRRADIANCE else 0.0
        hint = _unit_hint(name, values, wind_height_m)
        outside = (data[name] < low - tolerance) | (data[name] > high)
        if hint or outside.any():
            first = int(np.argmax(outside.to_numpy())) if outside.any() else 0
            where = f", first at {_row(data.index, first)}" if outside.any() else ""
            raise WeatherFileError(
                f"{source}: column {name!r} has values from {values.min():g} to "
                f"{values.max():g}; allowed {low:g} to {high:g} {unit}{where}{hint}"
            )
    irradiance = data[list(_IRRADIANCE)]
    n_negative = int((irradiance < 0).sum().sum())
    if n_negative:
        logger.info("%s: clipped %d small negative irradiance values to 0", source, n_negative)
        data = data.assign(**{c: data[c].clip(lower=0.0) for c in _IRRADIANCE})
    return data


def _nan_runs(values: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last)`` positions of each run of NaN."""
    edges = np.diff(np.concatenate(([0], np.isnan(values).astype(int), [0])))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True))


def _filled_gaps(data: pd.DataFrame, source: str, max_gap_hours: float) -> tuple[pd.DataFrame, int]:
    step_hours = (data.index[1] - data.index[0]) / pd.Timedelta(hours=1)
    for name in data.columns:
        for first, last in _nan_runs(data[name].to_numpy()):
            gap_hours = (last - first + 1) * step_hours
            if gap_hours > max_gap_hours:
                raise WeatherFileError(
                    f"{source}: column {name!r} is missing for {gap_hours:g} h, from "
                    f"{data.index[first].isoformat()} to {data.index[last].isoformat()} "
                    f"(data rows {first + 1} to {last + 1}); at most {max_gap_hours:g} h "
                    "are interpolated"
                )
    n_filled = int(data.isna().sum().sum())
    if n_filled:
        counts = data.isna().sum()
        logger.info(
            "%s: filled %d missing values by linear interpolation in time (%s)",
            source,
            n_filled,
            ", ".join(f"{c}: {n}" for c, n in counts[counts > 0].items()),
        )
        data = data.interpolate(method="time").ffill().bfill()
    return data, n_filled


# --------------------------------------------------------------------------------------------
# readers


def sniff_kind(path: str | Path) -> str:
    """Guess the kind of a weather file from its extension and first lines.

    ``.epw`` or a ``LOCATION,`` first line -> ``'epw'``; PVGIS (``.json``, or a ``Latitude
    (decimal degrees):`` first line) -> ``'pvgis'`` for a TMY (``tmy_hourly`` / ``time(UTC)``)
    and ``'pvgis_hourly'`` for a series (``hourly`` / ``time,``); an Open-Meteo location header
    (``latitude,longitude,elevation,utc_offset_seconds``) -> ``'open_meteo'``; a TMY3 second
    line (``Date (MM/DD/YYYY)``) -> ``'tmy3'``; otherwise ``'csv'``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".epw":
        return "epw"
    if suffix == ".json":
        try:
            with path.open(encoding="utf-8", errors="replace") as handle:
                head = handle.read(_JSON_SNIFF_CHARS)
        except OSError as error:
            raise WeatherFileError(f"{path}: cannot read weather file: {error.strerror}") from None
        return "pvgis_hourly" if '"hourly"' in head and '"tmy_hourly"' not in head else "pvgis"
    lines = _head(path, 60)
    first, second = [*lines, "", ""][:2]
    if first.startswith("LOCATION,"):
        return "epw"
    if first.startswith("Latitude (decimal degrees)"):
        series = any(line.startswith("time,") for line in lines)
        return "pvgis_hourly" if series else "pvgis"
    if first.startswith("latitude,longitude,elevation,utc_offset_seconds"):
        return "open_meteo"
    if second.startswith("Date (MM/DD/YYYY)"):
        return "tmy3"
    return "csv"


def read_weather(
    path: str | Path, kind: str | None = None, *, max_gap_hours: float = 3.0
) -> Weather:
    """Read a weather file of any supported kind into a validated :class:`Weather`.

    ``kind`` is one of :data:`KINDS`; ``None`` guesses it with :func:`sniff_kind`.
    ``max_gap_hours`` is the longest run of missing values that is interpolated [h].
    """
    kind = kind if kind is not None else sniff_kind(path)
    readers: dict[str, Callable[..., Weather]] = {
        "epw": read_epw_weather,
        "tmy3": read_tmy3_weather,
        "pvgis": read_pvgis_weather,
        "pvgis_hourly": read_pvgis_hourly_weather,
        "open_meteo": read_open_meteo_weather,
        "csv": read_csv_weather,
    }
    if kind not in readers:
        raise WeatherFileError(
            f"{path}: unknown weather kind {kind!r}; allowed: {', '.join(KINDS)}"
        )
    weather = readers[kind](path, max_gap_hours=max_gap_hours)
    logger.info("%s: read %d rows of %s weather", path, len(weather.data), kind)
    return weather


def read_epw_weather(path: str | Path, *, max_gap_hours: float = 3.0) -> Weather:
    """Read an EnergyPlus EPW file (wind at 10 m) via pvlib.

    A file whose rows all carry one year, and whose LOCATION source field and COMMENTS lines
    do not name a typical-year product (TMY, IWEC, CWEC, CSWD, TRY, "typical", ...), is that
    actual year and keeps its dates (Feb 29 included); any other file is a typical year (the
    CSWD files carry one year in every row).
    """
    _check_field_counts(Path(path), _EPW_HEADER_LINES, _EPW_FIELDS)
    raw, meta = _with_pvlib(pvlib.iotools.read_epw, path, "EPW")
    raw = raw.assign(
        **{c: raw[c].where(raw[c] < missing) for c, missing in _EPW_MISSING.items()}
    ).rename(columns={"atmospheric_pressure": "pressure"})
    years = raw["year"].unique()
    if len(years) == 1 and not _says_typical(Path(path)):
        return _hour_ending_actual_year(raw, meta, int(years[0]), path, max_gap_hours)
    return _hour_ending_typical_year(
        raw, meta, raw["month"], raw["day"], raw["hour"], path, max_gap_hours, "EPW", ""
    )


def _says_typical(path: Path) -> bool:
    """Whether an EPW header names a typical-year product (LOCATION source, COMMENTS lines)."""
    lines = _head(path, _EPW_HEADER_LINES)
    location = next(csv.reader(lines[:1]), [])
    source = location[4] if len(location) > 4 else ""
    comments = " ".join(line for line in lines if line.startswith("COMMENTS"))
    return bool(_TYPICAL_YEAR_RE.search(f"{source} {comments}"))


def _hour_ending_actual_year(
    raw: pd.DataFrame, meta: dict, year: int, path: str | Path, max_gap_hours: float
) -> Weather:
    """EPW rows of one real year: hour h (1-24) of local standard time is ``[h-1, h)``."""
    offset_hours = float(meta["TZ"])
    try:
        dates = pd.to_datetime(
            pd.DataFrame({"year": year, "month": raw["month"], "day": raw["day"]})
        )
    except ValueError as error:
        raise WeatherFileError(f"{path}: invalid month/day in the rows: {error}") from None
    local = dates + pd.to_timedelta(raw["hour"].to_numpy() - 1, unit="h")
    index = pd.DatetimeIndex(local - pd.Timedelta(hours=offset_hours)).tz_localize("UTC")
    notes = (
        f"EPW rows all of {year}: an actual year, kept on its dates; hour h (1-24, local "
        f"standard time UTC{offset_hours:+g} h) is the interval [h-1, h)",
    )
    return _finish(
        raw.set_axis(index),
        path,
        max_gap_hours,
        station=(meta["latitude"], meta["longitude"]),
        typical_year=False,
        notes=notes,
        wind_height_m=STANDARD_WIND_HEIGHT_M,
    )


def read_tmy3_weather(path: str | Path, *, max_gap_hours: float = 3.0) -> Weather:
    """Read an NREL TMY3 CSV (pressure in mbar, converted to Pa; wind at 10 m) via pvlib."""
    raw, meta = _with_pvlib(pvlib.iotools.read_tmy3, path, "TMY3", map_variables=True)
    date = pd.to_datetime(raw["Date (MM/DD/YYYY)"], format="%m/%d/%Y")
    hour_end = raw["Time (HH:MM)"].str.split(":").str[0].astype(int)
    raw = raw.assign(pressure=raw["pressure"] * 100.0)  # mbar -> Pa
    return _hour_ending_typical_year(
        raw, meta, date.dt.month, date.dt.day, hour_end, path, max_gap_hours, "TMY3",
        "; pressure mbar -> Pa",
    )  # fmt: skip


def _hour_ending_typical_year(
    raw: pd.DataFrame,
    meta: dict,
    month: pd.Series,
    day: pd.Series,
    hour_end: pd.Series,
    path: str | Path,
    max_gap_hours: float,
    kind: str,
    extra_note: str,
) -> Weather:
    """EPW and TMY3: hour h (1-24) in local standard time is the interval [h-1, h)."""
    offset_hours = float(meta["TZ"])
    frame, notes = _on_typical_year(raw, month, day, hour_end - 1, offset_hours, path)
    notes = (
        f"{kind} hour h (1-24, local standard time UTC{offset_hours:+g} h) is the interval "
        f"[h-1, h); relabelled to interval starts in UTC{extra_note}",
        *notes,
    )
    return _finish(
        frame,
        path,
        max_gap_hours,
        station=(meta["latitude"], meta["longitude"]),
        typical_year=True,
        notes=notes,
        wind_height_m=STANDARD_WIND_HEIGHT_M,
    )


def read_pvgis_weather(path: str | Path, *, max_gap_hours: float = 3.0) -> Weather:
    """Read a PVGIS TMY file, json or csv (UTC times, wind at 10 m, pressure in Pa) via pvlib."""
    raw, meta = _with_pvlib(pvlib.iotools.read_pvgis_tmy, path, "PVGIS TMY", map_variables=True)
    inputs = meta["inputs"]
    location = inputs.get("location", inputs)
    times = raw.index
    frame, notes = _on_typical_year(raw, times.month, times.day, times.hour, 0.0, path)
    notes = ("PVGIS time(UTC) hh:00 taken as the start of the hour", *notes)
    return _finish(
        frame,
        path,
        max_gap_hours,
        station=(float(location["latitude"]), float(location["longitude"])),
        typical_year=True,
        notes=notes,
        wind_height_m=STANDARD_WIND_HEIGHT_M,
    )


def read_pvgis_hourly_weather(path: str | Path, *, max_gap_hours: float = 3.0) -> Weather:
    """Read a PVGIS hourly series (``seriescalc``, json or csv) via pvlib: dated, UTC.

    The series must hold the irradiance components on a horizontal plane (``angle=0``,
    ``components=1``): ``Gb(i)`` is then the beam on the horizontal, ``Gd(i)`` the diffuse
    and ``Gr(i)`` zero, so ``ghi = Gb(i) + Gd(i)``, ``dhi = Gd(i)`` and ``dni = Gb(i) / cos Z``
    with the hour's mean cos Z at the station (0, the beam counted as diffuse, with the sun
    below 2 deg). PVGIS time stamps each hour at the minute of its satellite
    image (``hh:10`` for SARAH); the row is taken as the hour starting at ``hh:00``, and any
    offset this leaves is measured against the sun downstream. Pressure, absent from PVGIS,
    comes from the elevation (pvlib ``alt2pres``); wind is at 10 m.
    """
    raw, meta = _with_pvlib(pvlib.iotools.read_pvgis_hourly, path, "PVGIS hourly")
    inputs = meta["inputs"]
    location = inputs.get("location", inputs)
    slope_deg = _pvgis_slope_deg(inputs)
    if slope_deg != 0:
        raise WeatherFileError(
            f"{path}: the PVGIS series is for a plane tilted {slope_deg:g} deg; download it for a "
            "horizontal plane (angle=0) with components=1"
        )
    needed = ("poa_direct", "poa_sky_diffuse", "temp_air", "wind_speed")
    missing = [c for c in needed if c not in raw.columns]
    if missing:
        names = {v: k for k, v in pvlib.iotools.pvgis.VARIABLE_MAP.items()}
        raise WeatherFileError(
            f"{path}: missing column(s) {', '.join(names.get(c, c) for c in missing)}; download "
            "the series with components=1 (Gb(i), Gd(i), Gr(i))"
        )
    latitude, longitude = float(location["latitude"]), float(location["longitude"])
    index = pd.DatetimeIndex(raw.index.floor("h"))
    if len(index) < 2:
        raise WeatherFileError(f"{path}: {len(index)} row(s); at least 2 are needed")
    cos_zenith = sun_interval_means(index, latitude, longitude)["cos_zenith"].to_numpy()
    beam_w_m2 = raw["poa_direct"].to_numpy(dtype=float)
    diffuse_w_m2 = raw["poa_sky_diffuse"].to_numpy(dtype=float)
    up = cos_zenith > math.sin(math.radians(_PVGIS_MIN_ELEVATION_DEG))
    frame = pd.DataFrame(
        {
            "ghi": beam_w_m2 + diffuse_w_m2,
            "dni": np.where(up, beam_w_m2 / np.where(up, cos_zenith, 1.0), 0.0),
            "dhi": diffuse_w_m2 + np.where(up, 0.0, beam_w_m2),
            "temp_air": raw["temp_air"].to_numpy(dtype=float),
            "wind_speed": raw["wind_speed"].to_numpy(dtype=float),
            "pressure": pvlib.atmosphere.alt2pres(float(location["elevation"])),
        },
        index=index,
    )
    notes = (
        "PVGIS hourly series: time hh:mm (UTC) taken as the hour starting hh:00; horizontal "
        "components, dni = Gb(i) / mean cos Z of the hour; pressure from the elevation",
    )
    return _finish(
        frame,
        path,
        max_gap_hours,
        station=(latitude, longitude),
        typical_year=False,
        notes=notes,
        wind_height_m=STANDARD_WIND_HEIGHT_M,
    )


def _pvgis_slope_deg(inputs: dict) -> float:
    """The plane's slope of a PVGIS series [deg]: json ``mounting_system``, csv ``Slope:``."""
    mounting = inputs.get("mounting_system")
    if isinstance(mounting, dict):
        for system in mounting.values():
            slope = system.get("slope", {}).get("value") if isinstance(system, dict) else None
            if slope is None:
                continue
            try:
                return float(slope)
            except (TypeError, ValueError):
                continue  # tracking systems give "-"
        return float("nan")
    match = re.match(r"\s*(-?[0-9.]+)", str(inputs.get("Slope", "")))
    return float(match.group(1)) if match else float("nan")


def read_open_meteo_weather(path: str | Path, *, max_gap_hours: float = 3.0) -> Weather:
    """Read an Open-Meteo historical-weather CSV export: dated, units from its header.

    Layout: a location header (``latitude,longitude,elevation,utc_offset_seconds,timezone,
    ...``) and its values, a blank line, then ``time,<variable> (<unit>),...``. Times are local
    in the export's ``timezone``; each row is labelled at the END of its hour (Open-Meteo's
    radiation is the mean of the preceding hour), so it becomes the interval starting an hour
    earlier. Columns used: ``shortwave_radiation`` (GHI), ``direct_normal_irradiance`` (DNI),
    ``diffuse_radiation`` (DHI), ``temperature_2m``, ``wind_speed_10m`` (or ``windspeed_10m``)
    and ``surface_pressure`` (from the elevation when absent). Units are converted to the
    contract's from the header: wind km/h, m/s, mp/h or kn; temperature degC or degF; pressure
    hPa; irradiance W/m^2.
    """
    lines = _head(Path(path), 4)
    try:
        location = next(csv.DictReader(lines[:2]))
        latitude, longitude = float(location["latitude"]), float(location["longitude"])
        elevation_m, zone = float(location["elevation"]), location["timezone"].strip()
        table = pd.read_csv(path, skiprows=3)
    except (KeyError, TypeError, ValueError, StopIteration) as error:
        raise WeatherFileError(f"{path}: not a readable Open-Meteo CSV export: {error!r}") from None
    columns = _open_meteo_columns(table.columns, path)
    frame = pd.DataFrame(
        {
            name: pd.to_numeric(table[column], errors="coerce") * scale + add
            for name, (column, scale, add) in columns.items()
        }
    )
    if "pressure" not in frame:
        frame["pressure"] = pvlib.atmosphere.alt2pres(elevation_m)
    try:
        local_end = pd.DatetimeIndex(pd.to_datetime(table["time"], format="%Y-%m-%dT%H:%M"))
        index = local_end.tz_localize(zone, ambiguous="infer").tz_convert("UTC")
    except (ValueError, KeyError, TypeError) as error:
        raise WeatherFileError(f"{path}: column 'time': {error}") from None
    notes = (
        f"Open-Meteo export: local times ({zone}) at the hour end, taken as the hour before; "
        f"units {', '.join(f'{n}: {c}' for n, (c, _, _) in columns.items())}",
    )
    return _finish(
        frame.set_axis(index - pd.Timedelta(hours=1)),
        path,
        max_gap_hours,
        station=(latitude, longitude),
        typical_year=False,
        notes=notes,
        wind_height_m=STANDARD_WIND_HEIGHT_M,
    )


def _open_meteo_columns(names: pd.Index, path: str | Path) -> dict[str, tuple[str, float, float]]:
    """``{contract name: (export column, scale, offset)}``; the unit is read from the header."""
    found: dict[str, tuple[str, float, float]] = {}
    for column in names:
        match = _OPEN_METEO_HEADER_RE.match(str(column))
        if not match or match.group(1) not in _OPEN_METEO_VARIABLES:
            continue
        variable, unit = match.groups()
        name = _OPEN_METEO_VARIABLES[variable]
        if unit not in _OPEN_METEO_UNITS.get(name, {}):
            allowed = ", ".join(_OPEN_METEO_UNITS[name])
            raise WeatherFileError(
                f"{path}: column {column!r}: unit {unit!r} is not known; allowed: {allowed}"
            )
        found[name] = (str(column), *_OPEN_METEO_UNITS[name][unit])
    missing = [
        variable
        for variable, name in _OPEN_METEO_VARIABLES.items()
        if name not in found and name != "pressure" and variable != "windspeed_10m"
    ]
    if missing:
        raise WeatherFileError(
            f"{path}: missing column(s) {', '.join(missing)}; export them hourly from the "
            "Open-Meteo historical weather API"
        )
    return found


def read_csv_weather(path: str | Path, *, max_gap_hours: float = 3.0) -> Weather:
    """Read the plain CSV described in the module docstring."""
    header = _csv_header(path)
    _check_field_counts(Path(path), 0, None, comment="#")
    try:
        table = pd.read_csv(path, comment="#", skipinitialspace=True)
    except (OSError, ValueError) as error:
        raise WeatherFileError(f"{path}: cannot read as CSV: {error}") from None
    if "time" not in table.columns:
        raise WeatherFileError(
            f"{path}: missing column time (interval start, ISO 8601 with Z or an offset)"
        )
    frame = table.drop(columns="time").set_axis(_zoned_times(table["time"], path))
    notes: tuple[str, ...] = ()
    wind_height_m = header.get("wind_height_m")
    if wind_height_m is None:
        wind_height_m = STANDARD_WIND_HEIGHT_M
        notes = (f"no '# wind_height_m:' line; wind taken at the standard {wind_height_m:g} m",)
    if ("latitude" in header) != ("longitude" in header):
        raise WeatherFileError(f"{path}: give both '# latitude:' and '# longitude:' or neither")
    station = (header["latitude"], header["longitude"]) if "latitude" in header else None
    return _finish(
        frame,
        path,
        max_gap_hours,
        station=station,
        typical_year=False,
        notes=notes,
        wind_height_m=wind_height_m,
    )


def _check_field_counts(
    path: Path, skip_lines: int, expected: int | None, *, comment: str | None = None
) -> None:
    """Raise on the first data line whose comma-separated field count is not ``expected``.

    The first ``skip_lines`` lines (and lines starting with ``comment``) are not data; with
    ``expected`` None the first data line (a header) sets the count. Lines are numbered from 1
    as in an editor. A row with a field too few or too many would otherwise be read shifted.
    """
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                text = line.rstrip("\r\n")
                if number <= skip_lines or not text.strip():
                    continue
                if comment is not None and text.startswith(comment):
                    continue
                fields = len(next(csv.reader([text])))
                if expected is None:
                    expected = fields
                elif fields != expected:
                    raise WeatherFileError(
                        f"{path}: line {number} has {fields} fields, expected {expected}; "
                        "a missing or extra field would shift the columns"
                    )
    except OSError as error:
        raise WeatherFileError(f"{path}: cannot read weather file: {error.strerror}") from None


def _head(path: Path, n_lines: int) -> list[str]:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return [line for _, line in zip(range(n_lines), handle, strict=False)]
    except OSError as error:
        raise WeatherFileError(f"{path}: cannot read weather file: {error.strerror}") from None


def _with_pvlib(
    reader: Callable, path: str | Path, what: str, **kwargs
) -> tuple[pd.DataFrame, dict]:
    """Call a pvlib reader; turn its failures into a :class:`WeatherFileError`."""
    try:
        return reader(path, **kwargs)
    except OSError as error:
        raise WeatherFileError(f"{path}: cannot read weather file: {error.strerror}") from None
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise WeatherFileError(f"{path}: not a readable {what} file: {error!r}") from None


def _on_typical_year(
    frame: pd.DataFrame,
    month: pd.Series | pd.Index,
    day: pd.Series | pd.Index,
    hour_start: pd.Series | pd.Index,
    utc_offset_hours: float,
    path: str | Path,
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Index rows by interval start in UTC, placed on :data:`TYPICAL_YEAR` of their clock."""
    month, day, hour_start = (np.asarray(v, dtype=int) for v in (month, day, hour_start))
    leap_day = (month == 2) & (day == 29)
    notes = [
        _CLOCK_NOTE.format(utc_offset_hours),
        f"typical year: rows placed on {TYPICAL_YEAR} of that clock",
    ]
    if leap_day.any():
        notes.append(f"dropped {int(leap_day.sum())} rows of Feb 29")
        logger.info("%s: dropped %d rows of Feb 29 from a typical year", path, leap_day.sum())
    keep = ~leap_day
    bad_hour = np.flatnonzero(keep & ((hour_start < 0) | (hour_start > 23)))
    if bad_hour.size:
        raise WeatherFileError(
            f"{path}: data row {bad_hour[0] + 1}: hour {hour_start[bad_hour[0]] + 1} is not in 1-24"
        )
    try:
        dates = pd.to_datetime(
            pd.DataFrame({"year": TYPICAL_YEAR, "month": month[keep], "day": day[keep]})
        )
    except ValueError as error:
        raise WeatherFileError(f"{path}: invalid month/day in the rows: {error}") from None
    local = pd.DatetimeIndex(dates + pd.to_timedelta(hour_start[keep], unit="h"))
    _check_covers_typical_year(local, path)
    index = pd.DatetimeIndex(local - pd.Timedelta(hours=utc_offset_hours)).tz_localize("UTC")
    return frame.loc[keep].set_axis(index), tuple(notes)


def _check_covers_typical_year(local: pd.DatetimeIndex, path: str | Path) -> None:
    """Raise unless the hours (in the file's clock) are every hour of the typical year."""
    year = pd.date_range(
        f"{TYPICAL_YEAR}-01-01", f"{TYPICAL_YEAR + 1}-01-01", freq="h", inclusive="left"
    )
    missing = year.difference(local)
    if len(missing) or len(local) != len(year):
        first = (
            f", first missing {missing[0]:%m-%d %H:00} (hour starting, file's clock)"
            if len(missing)
            else ""
        )
        raise WeatherFileError(
            f"{path}: a typical year must have one row for each of the {len(year):,} hours "
            f"(Feb 29 aside); the rows give {local.nunique():,} distinct hours in {len(local):,} "
            f"rows{first}; the file is truncated or has repeated rows"
        )


def _finish(
    frame: pd.DataFrame,
    path: str | Path,
    max_gap_hours: float,
    *,
    station: tuple[float, float] | None,
    typical_year: bool,
    notes: tuple[str, ...],
    wind_height_m: float,
) -> Weather:
    data, n_filled = validate_weather(
        frame, str(path), max_gap_hours=max_gap_hours, wind_height_m=wind_height_m
    )
    if n_filled:
        notes = (*notes, f"{n_filled} missing values filled by linear interpolation in time")
    return Weather(
        data=data,
        wind_height_m=float(wind_height_m),
        source=str(path),
        station=None if station is None else (float(station[0]), float(station[1])),
        typical_year=typical_year,
        notes=notes,
    )


def _csv_header(path: str | Path) -> dict[str, float]:
    """``# key: value`` lines at the top of a plain CSV (only the documented keys)."""
    header: dict[str, float] = {}
    for line in _head(Path(path), 50):
        if not line.startswith("#"):
            break
        match = _CSV_HEADER_RE.match(line.strip())
        if match:
            key, text = match.groups()
            try:
                header[key] = float(text)
            except ValueError:
                raise WeatherFileError(
                    f"{path}: '# {key}:' must be a number, got {text!r}"
                ) from None
    return header


def _zoned_times(text: pd.Series, path: str | Path) -> pd.DatetimeIndex:
    """Parse ISO 8601 times that carry ``Z`` or an offset; naive ones are errors."""
    text = text.astype(str).str.strip()
    naive = np.flatnonzero(~text.str.contains(_ZONED_TIME_RE, regex=True).to_numpy())
    if naive.size:
        i = int(naive[0])
        raise WeatherFileError(
            f"{path}: data row {i + 1}: time {text.iloc[i]!r} has no UTC offset; write e.g. "
            "2024-06-01T00:00Z or 2024-06-01T08:00+08:00 (naive times are rejected)"
        )
    times = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    bad = np.flatnonzero(times.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        raise WeatherFileError(
            f"{path}: data row {i + 1}: {text.iloc[i]!r} is not an ISO 8601 time"
        )
    return pd.DatetimeIndex(times)


# --------------------------------------------------------------------------------------------
# station distance


def station_distance_km(weather: Weather, latitude: float, longitude: float) -> float | None:
    """Great-circle (haversine) distance from the weather station to a point [km].

    ``None`` when the source names no station.
    """
    if weather.station is None:
        return None
    lat1, lon1, lat2, lon2 = map(math.radians, (*weather.station, latitude, longitude))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def warn_if_far(
    weather: Weather, site_name: str, latitude: float, longitude: float, limit_km: float
) -> float | None:
    """Warn (``UserWarning``) and log when the station is farther than ``limit_km`` from a site.

    Reusing a nearby station is allowed; this says so. Returns the distance [km] or ``None``.
    """
    distance_km = station_distance_km(weather, latitude, longitude)
    if distance_km is not None and distance_km > limit_km and weather.station is not None:
        message = (
            f"{weather.source}: weather station at {weather.station[0]:.2f} N, "
            f"{weather.station[1]:.2f} E is {distance_km:.0f} km from site '{site_name}' "
            f"(more than {limit_km:g} km); its weather may not represent the site"
        )
        warn_user(message)
    return distance_km


# --------------------------------------------------------------------------------------------
# typical year -> real dates


def typical_year_utc_offset_hours(weather: Weather) -> float:
    """UTC offset of the clock a typical year was read in [h], from :attr:`Weather.notes`."""
    for note in weather.notes:
        match = _CLOCK_RE.fullmatch(note)
        if match:
            return float(match.group(1))
    raise WeatherFileError(
        f"{weather.source}: the notes do not state the typical year's clock; "
        "pass utc_offset_hours to map_to_dates"
    )


def map_to_dates(
    weather: Weather,
    start: pd.Timestamp | str,
    end: pd.Timestamp | str,
    *,
    utc_offset_hours: float | None = None,
) -> Weather:
    """Weather on the real dates ``[start, end)`` (tz-aware) at the weather's own step.

    For a typical year, each requested time takes the row with the same month, day, hour and
    minute in the file's local standard time (``utc_offset_hours``, default: the clock the
    reader recorded); Feb 29 takes Feb 28's values. Ranges may span several years. Real-year
    weather is sliced and must cover the range.
    """
    start, end = (
        _utc_timestamp(t, name, weather.source) for t, name in ((start, "start"), (end, "end"))
    )
    if end <= start:
        raise WeatherFileError(f"{weather.source}: end {end} is not after start {start}")
    target = pd.date_range(start, end, freq=weather.freq, inclusive="left", name="time")
    if not weather.typical_year:
        positions = weather.data.index.get_indexer(target)
        _raise_if_uncovered(weather, target, positions)
        return replace(weather, data=weather.data.iloc[positions].set_axis(target))
    if utc_offset_hours is None:
        utc_offset_hours = typical_year_utc_offset_hours(weather)
    offset = pd.Timedelta(hours=utc_offset_hours)
    keys = pd.Index(_calendar_key(weather.data.index + offset))
    if not keys.is_unique:
        raise WeatherFileError(f"{weather.source}: a typical year must not cover a date twice")
    target_local = target + offset
    leap_day = (target_local.month == 2) & (target_local.day == 29)
    target_keys = _calendar_key(target_local) - np.where(leap_day, 10_000, 0)  # Feb 29 -> 28
    positions = keys.get_indexer(target_keys)
    _raise_if_uncovered(weather, target, positions)
    notes = [
        f"typical year mapped onto {start.isoformat()} to {end.isoformat()} by month, day and "
        f"hour of local standard time UTC{utc_offset_hours:+g} h"
    ]
    if leap_day.any():
        notes.append("Feb 29 takes Feb 28's values")
    return replace(
        weather,
        data=weather.data.iloc[positions].set_axis(target),
        notes=(*weather.notes, *notes),
    )


def _utc_timestamp(value: pd.Timestamp | str, name: str, source: str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        raise WeatherFileError(f"{source}: {name} {value!r} has no time zone; give it in UTC")
    return stamp.tz_convert("UTC")


def _calendar_key(index: pd.DatetimeIndex) -> np.ndarray:
    """``MMDDhhmm`` as one integer per time."""
    return np.asarray(
        index.month * 1_000_000 + index.day * 10_000 + index.hour * 100 + index.minute,
        dtype=np.int64,
    )


def _raise_if_uncovered(weather: Weather, target: pd.DatetimeIndex, positions: np.ndarray) -> None:
    uncovered = np.flatnonzero(positions < 0)
    if uncovered.size:
        index = weather.data.index
        raise WeatherFileError(
            f"{weather.source}: no row for {target[uncovered[0]].isoformat()} "
            f"({uncovered.size} of {len(target)} requested times missing); the weather covers "
            f"{index[0].isoformat()} to {index[-1].isoformat()} at a {weather.freq} step"
        )
