"""Choose a weather source for a site and bring it to the requested dates.

A source is ``"synthetic"`` (seeded generator) or a path to a file that
``forecasts.iotools.read_weather`` understands (EPW, TMY3, PVGIS TMY, plain CSV).
Typical-year files are mapped onto the requested dates; a station far from the site is
allowed with a warning that names the distance.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from forecasts.iotools import WeatherFileError, map_to_dates, read_weather, warn_if_far
from forecasts.specs import SupplySite
from forecasts.synthetic import synthetic_weather
from forecasts.weather import Weather

__all__ = ["SYNTHETIC", "load_weather"]

SYNTHETIC = "synthetic"
NO_PAD = pd.Timedelta(0)
log = logging.getLogger(__name__)


def load_weather(
    site: SupplySite,
    source: str | Path,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    freq_minutes: int,
    seed: int,
    max_gap_hours: float = 3.0,
    far_station_km: float = 100.0,
    pad: pd.Timedelta = NO_PAD,
) -> Weather:
    """Weather for ``site`` over ``[start, end)`` (UTC) from ``source``, and ``pad`` either
    side where the source has it (so that resampling near ``start`` and ``end`` sees the same
    neighbours whatever range was asked for).

    Synthetic weather is generated at ``freq_minutes``; file weather keeps the file's own
    resolution (the supply model resamples it to slots).
    """
    if str(source) == SYNTHETIC:
        return synthetic_weather(site, start - pad, end + pad, freq_minutes, seed)
    weather = read_weather(Path(source), max_gap_hours=max_gap_hours)
    warn_if_far(weather, site.name, site.latitude, site.longitude, far_station_km)
    if weather.typical_year:
        return map_to_dates(weather, start - pad, end + pad)
    data = weather.data
    step = weather.freq
    if data.index[0] > start or data.index[-1] + step < end:
        raise WeatherFileError(
            f"{source}: covers {data.index[0]} to {data.index[-1] + step} (UTC) but "
            f"{start} to {end} is needed"
        )
    sliced = data.loc[(data.index >= start - pad) & (data.index < end + pad)]
    log.info("%s: %d rows for %s", source, len(sliced), site.name)
    return Weather(
        sliced, weather.wind_height_m, weather.source, weather.station, False, weather.notes
    )
