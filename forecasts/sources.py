"""Choose a weather source for a site and bring it to the requested dates.

A source is ``"synthetic"`` (seeded generator) or a path to a file that
``forecasts.iotools.read_weather`` understands. A file goes through these steps:

1. read and validated (:mod:`forecasts.iotools`: fields, times, ranges, gaps, units);
2. a station far from the site is allowed with a warning naming the distance;
3. its clock is measured against the sun (:func:`forecasts.clock.clock_offset_minutes`) and its
   irradiance moved back by ``time_shift``: ``"auto"`` moves it by the measured offset when
   that is :data:`AUTO_SHIFT_MINUTES` or more (with a warning), a number of minutes moves it by
   that much, 0 keeps the file as it is;
4. its irradiance is checked against the sun (a file without any is warned about and left
   as it is; no dark days, nothing above the top of the atmosphere) and its components
   against each other (:mod:`forecasts.components`, resolved by ``dni_rule``, with a warning
   naming the closure when they do not close);
5. its wind is compared with the site's climate (a warning when more than twice as windy);
6. typical years are mapped onto the requested dates, dated files sliced (a part day missing at
   an end of the request takes the same hours of the nearest covered day, with a warning).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from forecasts.checks import (
    check_below_top_of_atmosphere,
    check_dark_days,
    has_irradiance,
    mean_wind_at_10m_m_s,
    warn_user,
)
from forecasts.clock import (
    MAX_OFFSET_MINUTES,
    clock_offset_minutes,
    shift_irradiance,
    sun_interval_means,
)
from forecasts.components import CLOSURE_TOLERANCE, closure_ratio, resolve_components
from forecasts.iotools import map_to_dates, read_weather, warn_if_far
from forecasts.specs import SupplySite
from forecasts.synthetic import synthetic_weather
from forecasts.weather import Weather, WeatherFileError

__all__ = [
    "AUTO_SHIFT_MINUTES",
    "SYNTHETIC",
    "load_weather",
    "on_dates",
    "on_sun_clock",
    "read_site_weather",
]

SYNTHETIC = "synthetic"
NO_PAD = pd.Timedelta(0)
AUTO_SHIFT_MINUTES = 15.0
"""Smallest measured clock offset that ``time_shift="auto"`` corrects [min]."""
_MIN_SUN_CORRELATION = 0.3
_WINDIER_THAN_CLIMATE = 2.0
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
    time_shift: float | str = "auto",
    dni_rule: str = "file",
    pad: pd.Timedelta = NO_PAD,
) -> Weather:
    """Weather for ``site`` over ``[start, end)`` (UTC) from ``source`` (steps in the module doc),
    and ``pad`` either side where the source has it (so that resampling near ``start`` and
    ``end`` sees the same neighbours whatever range was asked for).

    Synthetic weather is generated at ``freq_minutes``; file weather keeps the file's own
    resolution (the supply model resamples it to slots). ``time_shift`` is ``"auto"`` or
    minutes [min]; ``dni_rule`` one of :data:`forecasts.components.DNI_RULES`.
    """
    if str(source) == SYNTHETIC:
        return synthetic_weather(site, start - pad, end + pad, freq_minutes, seed)
    weather = read_site_weather(
        site, source, max_gap_hours=max_gap_hours, far_station_km=far_station_km,
        time_shift=time_shift, dni_rule=dni_rule,
    )  # fmt: skip
    return on_dates(weather, start, end, pad)


def read_site_weather(
    site: SupplySite,
    path: str | Path,
    *,
    max_gap_hours: float = 3.0,
    far_station_km: float = 100.0,
    time_shift: float | str = "auto",
    dni_rule: str = "file",
) -> Weather:
    """Steps 1-5 of the module doc: a weather file read, checked and put on the sun's clock,
    whole (on the file's own dates); :func:`on_dates` brings it to requested dates."""
    weather = read_weather(Path(path), max_gap_hours=max_gap_hours)
    warn_if_far(weather, site.name, site.latitude, site.longitude, far_station_km)
    position = weather.station or (site.latitude, site.longitude)
    weather = on_sun_clock(weather, *position, time_shift=time_shift, dni_rule=dni_rule)
    _warn_if_windier_than_climate(weather, site)
    return weather


def on_dates(
    weather: Weather, start: pd.Timestamp, end: pd.Timestamp, pad: pd.Timedelta = NO_PAD
) -> Weather:
    """Step 6 of the module doc: file weather over ``[start, end)`` (UTC) and ``pad`` either
    side where a dated file has it; a typical year is mapped onto the dates."""
    if weather.typical_year:
        return map_to_dates(weather, start - pad, end + pad)
    first, stop = weather.data.index[0], weather.data.index[-1] + weather.freq
    return _dated_slice(
        weather, max(start - pad, min(start, first)), min(end + pad, max(end, stop))
    )


def _dated_slice(weather: Weather, start: pd.Timestamp, end: pd.Timestamp) -> Weather:
    """Rows of dated weather in ``[start, end)``.

    A request outside the file's dates is an error. A part day missing at either end, as when
    a file of UTC days serves operating days in another time zone, takes the same hours of the
    nearest day the file covers, with a warning naming how many hours.
    """
    index = weather.data.index
    step = weather.freq
    first, stop = index[0], index[-1] + step
    day = pd.Timedelta(days=1)
    if start < first - day + step or end > stop + day - step or start >= stop or end <= first:
        raise WeatherFileError(
            f"{weather.source}: covers {first.isoformat()} to {stop.isoformat()} (UTC), but "
            f"{start.isoformat()} to {end.isoformat()} is asked for; request dates inside the "
            "file's"
        )
    target = pd.date_range(start, end, freq=step, inclusive="left", name="time")
    source_times = target.where(target >= first, target + day).where(target < stop, target - day)
    positions = index.get_indexer(source_times)
    if (positions < 0).any():
        raise WeatherFileError(
            f"{weather.source}: no row for {target[positions < 0][0].isoformat()}; the file's "
            f"times are not on the {step} grid of the request"
        )
    filled = int((source_times != target).sum())
    notes = weather.notes
    if filled:
        message = (
            f"{weather.source}: covers {first.isoformat()} to {stop.isoformat()} (UTC); "
            f"{filled * step / pd.Timedelta(hours=1):g} h at the ends of the request take the "
            "same hours of the nearest covered day"
        )
        warn_user(message)
        notes = (*notes, message)
    return replace(weather, data=weather.data.iloc[positions].set_axis(target), notes=notes)


def on_sun_clock(
    weather: Weather,
    latitude: float,
    longitude: float,
    *,
    time_shift: float | str = "auto",
    dni_rule: str = "file",
) -> Weather:
    """Steps 3 and 4 of the module doc for a whole file, seen from ``latitude, longitude``.

    Returns the weather with the measured ``clock_offset_minutes``, the applied
    ``time_shift_minutes`` and the ``closure`` filled in, and a note for each.
    """
    source = weather.source
    if not has_irradiance(weather.data["ghi"], source):
        return replace(weather, notes=(*weather.notes, "no irradiance: clock not measured"))
    offset_min, correlation = clock_offset_minutes(weather.data["ghi"], latitude, longitude)
    if correlation < _MIN_SUN_CORRELATION or abs(offset_min) >= MAX_OFFSET_MINUTES - 1:
        raise WeatherFileError(
            f"{source}: column 'ghi' does not follow the sun at {latitude:.2f} N, "
            f"{longitude:.2f} E (best correlation {correlation:.2f} with the clear sky, "
            f"{offset_min:+.0f} min off); check the time zone, the time column and the station"
        )
    shift_min = _chosen_shift(source, offset_min, correlation, time_shift)
    data = weather.data
    if shift_min:
        data = shift_irradiance(data, shift_min, latitude, longitude, cyclic=weather.typical_year)
    # the values are judged against the sun of the clock they were measured on, even when
    # the file's clock is kept; the DNI rule works on the clock the PV model will use
    index = pd.DatetimeIndex(data.index)
    residual = pd.Timedelta(minutes=round(offset_min) - shift_min)
    measured_sun = sun_interval_means(index - residual, latitude, longitude)
    check_dark_days(data["ghi"], measured_sun["ghi_clear"].to_numpy(), longitude, source)
    check_below_top_of_atmosphere(data["ghi"], measured_sun["cos_zenith"].to_numpy(), source)
    closure = closure_ratio(data, measured_sun["cos_zenith"].to_numpy())
    if np.isfinite(closure) and abs(closure - 1.0) > CLOSURE_TOLERANCE:
        warn_user(
            f"{source}: irradiance components do not close: sum(dhi + dni cos Z) / sum(ghi) "
            f"is {closure:.3f} (1 when they close); resolved by forecast.dni_rule "
            f"{dni_rule!r}"
        )
    labelled_sun = measured_sun if not residual else sun_interval_means(index, latitude, longitude)
    data = resolve_components(data, labelled_sun["cos_zenith"].to_numpy(), dni_rule)
    notes = (
        f"clock measured {offset_min:+.1f} min against the sun (clear-sky correlation "
        f"{correlation:.2f}); irradiance moved back {shift_min} min",
        f"components closure {closure:.3f}; DNI rule {dni_rule!r}",
    )
    return replace(
        weather,
        data=data,
        notes=(*weather.notes, *notes),
        clock_offset_minutes=offset_min,
        time_shift_minutes=float(shift_min),
        closure=closure,
    )


def _chosen_shift(
    source: str, offset_min: float, correlation: float, time_shift: float | str
) -> int:
    """The shift to apply [whole min] for ``time_shift``; warns when an offset stays."""
    measured = (
        f"{source}: irradiance runs {offset_min:+.1f} min against the sun (clear-sky "
        f"correlation {correlation:.2f})"
    )
    if abs(offset_min - 60) < AUTO_SHIFT_MINUTES:
        measured += "; rows look labelled at the interval end instead of its start"
    if time_shift == "auto":
        if abs(offset_min) < AUTO_SHIFT_MINUTES:
            return 0
        shift_min = round(offset_min)
        warn_user(
            f"{measured}; moved back {shift_min} min (forecast.weather_time_shift: auto; "
            "0 keeps the file's clock)"
        )
        return shift_min
    shift_min = round(float(time_shift))
    if abs(offset_min - shift_min) >= AUTO_SHIFT_MINUTES:
        warn_user(
            f"{measured}; forecast.weather_time_shift moves it {shift_min} min, leaving "
            f"{offset_min - shift_min:+.1f} min"
        )
    return shift_min


def _warn_if_windier_than_climate(weather: Weather, site: SupplySite) -> None:
    """Warn when the file's mean wind (brought to 10 m) is over twice the site's climate's."""
    file_mean = mean_wind_at_10m_m_s(weather.data["wind_speed"], weather.wind_height_m)
    climate_mean = site.climate.mean_wind_at_10m_m_s
    if file_mean > _WINDIER_THAN_CLIMATE * climate_mean:
        warn_user(
            f"{weather.source}: column 'wind_speed' averages {file_mean:.1f} m/s at 10 m, "
            f"{file_mean / climate_mean:.1f} times the {climate_mean:.1f} m/s of site "
            f"'{site.name}''s climate; check the unit (km/h would be 3.6 times) and the height"
        )
