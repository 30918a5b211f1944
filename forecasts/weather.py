"""The weather frame every source returns, and the small type that carries it.

Contract (all sources, synthetic or file):

- index: tz-aware UTC ``DatetimeIndex``, regular, strictly increasing, labels are the START of
  each interval; values are interval means.
- columns (pvlib names): ``ghi``, ``dni``, ``dhi`` [W/m^2], ``temp_air`` [C],
  ``wind_speed`` [m/s] at :attr:`Weather.wind_height_m`, ``pressure`` [Pa],
  optional ``roughness_length`` [m].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

__all__ = ["OPTIONAL_COLUMNS", "REQUIRED_COLUMNS", "Weather"]

REQUIRED_COLUMNS: tuple[str, ...] = ("ghi", "dni", "dhi", "temp_air", "wind_speed", "pressure")
OPTIONAL_COLUMNS: tuple[str, ...] = ("roughness_length",)


@dataclass(frozen=True)
class Weather:
    """Weather for one site: the frame above plus what is needed to interpret it.

    ``station`` is ``(latitude, longitude)`` of the measuring station when known;
    ``typical_year`` is true for TMY/EPW files whose rows come from different real years.
    """

    data: pd.DataFrame
    wind_height_m: float
    source: str
    station: tuple[float, float] | None = None
    typical_year: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def freq(self) -> pd.Timedelta:
        """Interval length of the rows."""
        return pd.Timedelta(self.data.index[1] - self.data.index[0])
