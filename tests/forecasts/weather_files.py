"""Weather files written inside tests, in the exact formats of their sources.

Irradiance comes from pvlib's Ineichen clear sky (a model independent of the Haurwitz clear
sky that :mod:`forecasts.clock` measures with) times a deterministic day-to-day clearness, so
files pass the checks against the sun unless a test breaks them on purpose.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib

SHANGHAI = (31.40, 121.45)  # the CSWD station, UTC+8
EPW_FIELDS = 35


@lru_cache(maxsize=8)
def _hourly_clear_sky(latitude: float, longitude: float, start: str, hours: int) -> pd.DataFrame:
    """Ineichen clear-sky GHI, DNI, DHI [W/m^2] as hourly interval means, labelled at starts."""
    first = pd.Timestamp(start)
    fine = pd.date_range(first, periods=hours * 12, freq="5min")
    location = pvlib.location.Location(latitude, longitude, "UTC", 5.0)
    clear = location.get_clearsky(fine + pd.Timedelta(minutes=2.5), model="ineichen")
    hourly = clear.groupby(np.arange(len(fine)) // 12).mean()
    hourly.index = pd.date_range(first, periods=hours, freq="h")
    return hourly


def hourly_weather(
    start: str = "2019-01-01T00:00Z",
    hours: int = 8760,
    position: tuple[float, float] = SHANGHAI,
    *,
    late_minutes: int = 0,
) -> pd.DataFrame:
    """Hourly weather in contract columns, interval starts in UTC; ``late_minutes`` makes the
    irradiance of each row that of the interval starting that much earlier. Clearness changes
    at local midnight (UTC+8), so a late series is the true one moved in time."""
    first = pd.Timestamp(start) - pd.Timedelta(minutes=late_minutes)
    clear = _hourly_clear_sky(*position, first.isoformat(), hours)
    local_time = pd.date_range(first, periods=hours, freq="h") + pd.Timedelta(hours=8)
    day = ((local_time - pd.Timestamp("2000-01-01", tz="UTC")) // pd.Timedelta(days=1)).to_numpy()
    clearness = 0.55 + 0.4 * np.abs(np.sin(day * 0.7))  # 0.55-0.95, changes day to day
    wind = 3.0 + 2.0 * np.sin(np.arange(hours) * 2 * np.pi / 37) ** 2  # 3-5 m/s
    beam_horizontal = (clear["ghi"] - clear["dhi"]).to_numpy()
    ghi = clear["ghi"].to_numpy() * clearness
    frame = pd.DataFrame(
        {
            "ghi": ghi,
            "dni": clear["dni"].to_numpy() * clearness**2,
            "dhi": ghi - beam_horizontal * clearness**2,  # the components close
            "temp_air": 15.0 + 5 * np.sin(np.arange(hours) * 2 * np.pi / 24),
            "wind_speed": wind,
            "pressure": 101_000.0,
        },
        index=pd.date_range(start, periods=hours, freq="h"),
    )
    return frame.round(1)


def write_plain_csv(path: Path, frame: pd.DataFrame, header: str = "", label_shift="0h") -> Path:
    """The project's plain CSV; ``label_shift`` moves the time labels (e.g. ``"1h"``)."""
    table = frame.copy()
    table.insert(0, "time", (frame.index + pd.Timedelta(label_shift)).strftime("%Y-%m-%dT%H:%MZ"))
    path.write_text(header + table.to_csv(index=False), encoding="utf-8")
    return path


def epw_rows(
    frame: pd.DataFrame, tz_hours: float, years: dict[int, int] | None = None
) -> list[str]:
    """EPW data lines for an hourly UTC ``frame``: hour h (1-24) of local standard time.

    ``years`` maps a month to the year its rows carry (a typical year takes months from
    different years); by default each row carries its own local year.
    """
    local = frame.index.tz_convert(None) + pd.Timedelta(hours=tz_hours)
    rows = []
    for time, values in zip(local, frame.itertuples(index=False), strict=True):
        year = years.get(time.month, time.year) if years else time.year
        fields = [year, time.month, time.day, time.hour + 1, 60, "?9?9?9?9E0?9?9?9?9?9"]
        fields += [round(values.temp_air, 1), 5.0, 60, round(values.pressure), 0, 1415, 300]
        fields += [round(values.ghi), round(values.dni), round(values.dhi), 0, 0, 0, 0, 180]
        fields += [round(values.wind_speed, 1), 5, 5, 20.0, 77777, 9, 999999999, 10, 0.1, 0]
        fields += [88, 0.2, 0.0, 0.0]
        rows.append(",".join(str(f) for f in fields))
    return rows


def epw_text(
    rows: list[str],
    position: tuple[float, float] = SHANGHAI,
    tz_hours: float = 8.0,
    source: str = "CSWD",
) -> str:
    """An EPW file's text: the 8 header lines (``source`` is the LOCATION line's data source,
    which tells typical-year products apart) and ``rows``."""
    header = [
        f"LOCATION,Test,Test,CHN,{source},583620,{position[0]:.2f},{position[1]:.2f},{tz_hours},5.5",
        "DESIGN CONDITIONS,0",
        "TYPICAL/EXTREME PERIODS,0",
        "GROUND TEMPERATURES,0",
        "HOLIDAYS/DAYLIGHT SAVINGS,No,0,0,0",
        "COMMENTS 1,test fixture",
        "COMMENTS 2,",
        "DATA PERIODS,1,1,Data,Sunday, 1/ 1,12/31",
    ]
    return "\n".join(header + rows) + "\n"


def typical_year_frame(late_minutes: int = 0) -> pd.DataFrame:
    """A whole local-standard-time year (UTC+8) of hourly weather at Shanghai, in UTC."""
    return hourly_weather("2018-12-31T16:00Z", 8760, late_minutes=late_minutes)


def typical_epw(path: Path, frame: pd.DataFrame | None = None) -> Path:
    """A typical-year EPW at Shanghai, each month from another year."""
    frame = typical_year_frame() if frame is None else frame
    years = {month: 2001 + month % 7 for month in range(1, 13)}
    path.write_text(epw_text(epw_rows(frame, 8.0, years)), encoding="utf-8")
    return path


def _pvgis_rows(frame: pd.DataFrame) -> list[dict]:
    """PVGIS hourly records of a horizontal plane: time stamped hh:10 (UTC, the SARAH image),
    ``Gb(i)`` the beam on the horizontal (``ghi - dhi``), ``Gd(i)`` the diffuse, ``Gr(i)`` 0,
    ``H_sun`` the sun's elevation at the time stamp."""
    stamps = frame.index + pd.Timedelta(minutes=10)
    elevation = pvlib.solarposition.get_solarposition(stamps, *SHANGHAI)["elevation"]
    return [
        {
            "time": f"{stamp:%Y%m%d:%H%M}",
            "Gb(i)": round(row.ghi - row.dhi, 2),
            "Gd(i)": round(row.dhi, 2),
            "Gr(i)": 0.0,
            "H_sun": round(max(sun_height, 0.0), 2),
            "T2m": round(row.temp_air, 2),
            "WS10m": round(row.wind_speed, 2),
            "Int": 0.0,
        }
        for stamp, row, sun_height in zip(
            stamps, frame.itertuples(index=False), elevation, strict=True
        )
    ]


def pvgis_hourly_csv(path: Path, frame: pd.DataFrame, slope_deg: float = 0.0) -> Path:
    """A PVGIS ``seriescalc`` CSV with components on a plane of ``slope_deg`` (0 = horizontal)."""
    rows = _pvgis_rows(frame)
    lines = [
        f"Latitude (decimal degrees):\t{SHANGHAI[0]:.3f}",
        f"Longitude (decimal degrees):\t{SHANGHAI[1]:.3f}",
        "Elevation (m):\t4",
        "Radiation database:\tPVGIS-SARAH2",
        "",
        f"Slope: {slope_deg:g} deg. ",
        "Azimuth: 0 deg. ",
        ",".join(rows[0]),
        *(",".join(str(v) for v in row.values()) for row in rows),
        "",
        "Gb(i): Beam (direct) irradiance on the inclined plane (plane of the array) (W/m2)",
        "Gd(i): Diffuse irradiance on the inclined plane (plane of the array) (W/m2)",
        "Gr(i): Reflected irradiance on the inclined plane (plane of the array) (W/m2)",
        "H_sun: Sun height (degree)",
        "T2m: 2-m air temperature (degree Celsius)",
        "WS10m: 10-m total wind speed (m/s)",
        "Int: 1 means solar radiation values are reconstructed",
        "PVGIS (c) European Union, 2001-2024",
    ]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


def pvgis_hourly_json(path: Path, frame: pd.DataFrame) -> Path:
    """The same series as :func:`pvgis_hourly_csv` in PVGIS's JSON output (horizontal plane)."""
    source = {
        "inputs": {
            "location": {"latitude": SHANGHAI[0], "longitude": SHANGHAI[1], "elevation": 4.0},
            "meteo_data": {"radiation_db": "PVGIS-SARAH2", "meteo_db": "ERA5"},
            "mounting_system": {
                "fixed": {
                    "slope": {"value": 0, "optimal": False},
                    "azimuth": {"value": 0, "optimal": False},
                    "type": "free-standing",
                }
            },
        },
        "outputs": {"hourly": _pvgis_rows(frame)},
        "meta": {"inputs": {}, "outputs": {}},
    }
    path.write_text(json.dumps(source), encoding="utf-8")
    return path


def open_meteo_csv(path: Path, frame: pd.DataFrame, wind_unit: str = "km/h") -> Path:
    """An Open-Meteo historical-weather CSV export in Asia/Shanghai local time.

    Each row is labelled at the END of its hour (Open-Meteo's radiation is the mean of the
    preceding hour); wind in ``wind_unit`` (``km/h`` is Open-Meteo's default), pressure in hPa.
    """
    factor = {"km/h": 3.6, "m/s": 1.0, "mp/h": 1 / 0.44704, "kn": 1 / 0.514444}[wind_unit]
    local_end = (frame.index + pd.Timedelta(hours=1)).tz_convert("Asia/Shanghai")
    lines = [
        "latitude,longitude,elevation,utc_offset_seconds,timezone,timezone_abbreviation",
        f"{SHANGHAI[0]},{SHANGHAI[1]},4.0,28800,Asia/Shanghai,GMT+8",
        "",
        "time,temperature_2m (°C),wind_speed_10m (" + wind_unit + "),shortwave_radiation (W/m²),"
        "diffuse_radiation (W/m²),direct_normal_irradiance (W/m²),surface_pressure (hPa)",
    ]
    for time, row in zip(local_end, frame.itertuples(index=False), strict=True):
        lines.append(
            f"{time:%Y-%m-%dT%H:%M},{row.temp_air:.1f},{row.wind_speed * factor:.1f},"
            f"{row.ghi:.1f},{row.dhi:.1f},{row.dni:.1f},{row.pressure / 100:.1f}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
