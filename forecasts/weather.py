"""The weather frame every source returns, and the small type that carries it.

Contract (all sources, synthetic or file):

- index: tz-aware UTC ``DatetimeIndex``, regular, strictly increasing, labels are the START of
  each interval; values are interval means.
- columns (pvlib names): ``ghi``, ``dni``, ``dhi`` [W/m^2], ``temp_air`` [C],
  ``wind_speed`` [m/s] at :attr:`Weather.wind_height_m`, ``pressure`` [Pa],
  optional ``roughness_length`` [m] and ``wind_shear_exponent`` [-] (power-law exponent of
  the wind profile above the measurement height; when given, wind is brought to hub height by
  it instead of by the farm's log profile).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from scheduler.contracts import UserError

__all__ = [
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "ForecastSourceError",
    "Weather",
    "WeatherFileError",
]

REQUIRED_COLUMNS: tuple[str, ...] = ("ghi", "dni", "dhi", "temp_air", "wind_speed", "pressure")
OPTIONAL_COLUMNS: tuple[str, ...] = ("roughness_length", "wind_shear_exponent")


class WeatherFileError(UserError):
    """A weather file that cannot be used; the message starts with the file path."""


class ForecastSourceError(UserError):
    """A weather forecast (a model run's file, a directory of runs, a forecast service) that
    cannot be used; the message names the source and what is wrong."""


@dataclass(frozen=True)
class Weather:
    """Weather for one site: the frame above plus what is needed to interpret it.

    ``station`` is ``(latitude, longitude)`` of the measuring station when known;
    ``typical_year`` is true for TMY/EPW files whose rows come from different real years.
    ``clock_offset_minutes`` is how late the file's irradiance runs against the sun as measured
    (``None`` when not measured) and ``time_shift_minutes`` how far it was moved back [min];
    ``closure`` is ``sum(dhi + dni cos Z) / sum(ghi)`` of the file (``None`` when not measured).
    """

    data: pd.DataFrame
    wind_height_m: float
    source: str
    station: tuple[float, float] | None = None
    typical_year: bool = False
    notes: tuple[str, ...] = field(default=())
    clock_offset_minutes: float | None = None
    time_shift_minutes: float = 0.0
    closure: float | None = None

    @property
    def freq(self) -> pd.Timedelta:
        """Interval length of the rows."""
        return pd.Timedelta(self.data.index[1] - self.data.index[0])
