"""The clock of a weather file measured against the sun, and irradiance moved onto the sun's clock.

Some files run late or early: the China Standard Weather Data (CSWD) EPW files put the hourly
irradiance about 30 minutes after the interval their hour field names, and a CSV labelled at the
hour end instead of its start is 60 minutes late. :func:`clock_offset_minutes` measures the
offset by cross-correlating the file's GHI with a clear-sky GHI of the same intervals shifted in
time; :func:`shift_irradiance` moves the irradiance columns back onto the sun's clock.

Both work on a 1-minute clear-sky grid built from an analytical sun (Spencer's declination and
equation of time, accurate to about a minute of time) and the Haurwitz clear sky: only the shape
of the clear-sky day matters here, not its level.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib

__all__ = ["IRRADIANCE", "clock_offset_minutes", "shift_irradiance", "sun_interval_means"]

IRRADIANCE: tuple[str, ...] = ("ghi", "dni", "dhi")
MAX_OFFSET_MINUTES = 150
"""Largest clock offset searched [min]; a file further off has a wrong time zone, not a lag."""
_MINUTE = pd.Timedelta(minutes=1)


def _cos_zenith_per_minute(
    first: pd.Timestamp, n_minutes: int, latitude: float, longitude: float
) -> np.ndarray:
    """Cosine of the solar zenith at the middle of each minute from ``first`` (UTC) [-]."""
    first_day = first.floor("D")
    minute_of_first_day = (first - first_day) / _MINUTE
    minutes = minute_of_first_day + 0.5 + np.arange(n_minutes)
    day_offset = (minutes // 1440).astype(int)
    days = pd.date_range(first_day, periods=int(day_offset[-1]) + 1, freq="D")
    doy = days.day_of_year.to_numpy()[day_offset]
    declination = pvlib.solarposition.declination_spencer71(doy)
    eot_min = pvlib.solarposition.equation_of_time_spencer71(doy)
    hour_angle_deg = ((minutes % 1440) / 60.0 - 12.0) * 15.0 + longitude + eot_min / 4.0
    zenith = pvlib.solarposition.solar_zenith_analytical(
        np.radians(latitude), np.radians(hour_angle_deg), declination
    )
    return np.cos(zenith)


def _haurwitz(cos_zenith: np.ndarray) -> np.ndarray:
    """Haurwitz clear-sky GHI [W/m^2] from cos(zenith), zero with the sun below 0.6 deg."""
    ghi = np.zeros(cos_zenith.shape)
    up = cos_zenith > 0.01
    ghi[up] = 1098.0 * cos_zenith[up] * np.exp(-0.057 / cos_zenith[up])
    return ghi


def _clear_sky_per_minute(
    first: pd.Timestamp, n_minutes: int, latitude: float, longitude: float
) -> np.ndarray:
    """Haurwitz clear-sky GHI [W/m^2] at the middle of each minute from ``first`` (UTC)."""
    return _haurwitz(_cos_zenith_per_minute(first, n_minutes, latitude, longitude))


def _interval_sums(cumulative: np.ndarray, first_minute: np.ndarray, minutes: int) -> np.ndarray:
    """Sums of per-minute values over ``[first, first + minutes)``; NaN where out of range."""
    end = first_minute + minutes
    inside = (first_minute >= 0) & (end < len(cumulative))
    out = np.full(first_minute.shape, np.nan)
    out[inside] = cumulative[end[inside]] - cumulative[first_minute[inside]]
    return out


def _step_minutes(index: pd.DatetimeIndex) -> int:
    return int((index[1] - index[0]) / _MINUTE)


def sun_interval_means(index: pd.DatetimeIndex, latitude: float, longitude: float) -> pd.DataFrame:
    """Per interval of a regular ``index``: mean ``cos_zenith`` (0 below the horizon) [-] and
    mean Haurwitz clear-sky ``ghi_clear`` [W/m^2]."""
    step = _step_minutes(index)
    cos_zenith = _cos_zenith_per_minute(index[0], len(index) * step, latitude, longitude)
    shape = (len(index), step)
    return pd.DataFrame(
        {
            "cos_zenith": np.maximum(cos_zenith, 0.0).reshape(shape).mean(axis=1),
            "ghi_clear": _haurwitz(cos_zenith).reshape(shape).mean(axis=1),
        },
        index=index,
    )


def clock_offset_minutes(
    ghi_w_m2: pd.Series, latitude: float, longitude: float
) -> tuple[float, float]:
    """How late a file's irradiance runs against the sun [min], and the peak correlation [-].

    ``ghi_w_m2`` is interval-mean GHI labelled at interval starts (UTC, regular step of whole
    minutes). A positive offset ``d`` means the row labelled ``[t, t + step)`` holds the
    irradiance of ``[t - d, t - d + step)``. The offset maximises the Pearson correlation of the
    rows with the clear-sky GHI of their intervals shifted by ``d`` (searched every minute over
    +-:data:`MAX_OFFSET_MINUTES`, refined by a parabola through the best three lags).
    """
    index = pd.DatetimeIndex(ghi_w_m2.index)
    step = _step_minutes(index)
    margin = MAX_OFFSET_MINUTES + step
    n_minutes = int((index[-1] - index[0]) / _MINUTE) + step + 2 * margin
    clear = _clear_sky_per_minute(index[0] - margin * _MINUTE, n_minutes, latitude, longitude)
    cumulative = np.concatenate(([0.0], np.cumsum(clear)))
    start_minute = ((index - index[0]) / _MINUTE).to_numpy().astype(int) + margin
    values = ghi_w_m2.to_numpy(dtype=float)
    lags = np.arange(-MAX_OFFSET_MINUTES, MAX_OFFSET_MINUTES + 1)
    correlation = np.array(
        [
            np.corrcoef(_interval_sums(cumulative, start_minute - lag, step), values)[0, 1]
            for lag in lags
        ]
    )
    correlation = np.nan_to_num(correlation, nan=-1.0)
    best = int(np.argmax(correlation))
    refined = float(lags[best])
    if 0 < best < len(lags) - 1:
        left, middle, right = correlation[best - 1 : best + 2]
        curvature = left - 2 * middle + right
        if curvature < 0:
            refined += 0.5 * (left - right) / curvature
    return refined, float(correlation[best])


def shift_irradiance(
    data: pd.DataFrame,
    minutes: int,
    latitude: float,
    longitude: float,
    *,
    cyclic: bool,
) -> pd.DataFrame:
    """``data`` with its irradiance moved ``minutes`` earlier onto the sun's clock.

    The row labelled ``[t, t + step)`` is taken to hold the irradiance of ``[t - minutes, ...)``
    (see :func:`clock_offset_minutes`). Each row's energy is spread over that true interval in
    proportion to the clear-sky GHI within it (evenly where the clear sky is dark), and the
    rows of the file's grid take what falls into them: energy-conserving, zero where the sun
    is down. Other columns keep their times. Rows needed beyond the ends come from the other
    end when ``cyclic`` (a typical year) and repeat the end row otherwise.
    """
    index = pd.DatetimeIndex(data.index)
    step = _step_minutes(index)
    n = len(index)
    whole_steps, rest = divmod(int(minutes), step)
    margin = 2 * step + abs(int(minutes))
    clear = _clear_sky_per_minute(
        index[0] - margin * _MINUTE, n * step + 2 * margin, latitude, longitude
    )
    cumulative = np.concatenate(([0.0], np.cumsum(clear)))
    rows = np.arange(n)
    # row j holds the true minutes [t_j - minutes, t_j - minutes + step); grid row i takes the
    # last (step - rest) minutes of source row i + whole_steps and the first rest minutes of the
    # row after it
    source = rows + whole_steps
    source_start = rows * step + margin + step * whole_steps - minutes
    whole = _interval_sums(cumulative, source_start, step)
    tail = _interval_sums(cumulative, source_start + rest, step - rest)
    next_whole = _interval_sums(cumulative, source_start + step, step)
    next_head = _interval_sums(cumulative, source_start + step, rest)
    share_this = np.where(whole > 0, tail / np.where(whole > 0, whole, 1.0), (step - rest) / step)
    share_next = np.where(
        next_whole > 0, next_head / np.where(next_whole > 0, next_whole, 1.0), rest / step
    )
    mode = "wrap" if cyclic else "clip"
    out = data.copy()
    for name in IRRADIANCE:
        values = data[name].to_numpy(dtype=float)
        out[name] = (
            values.take(source, mode=mode) * share_this
            + values.take(source + 1, mode=mode) * share_next
        )
    return out
