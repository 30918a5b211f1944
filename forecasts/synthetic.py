"""Seeded synthetic weather for a site: pvlib clear sky times a persistent clearness process.

Irradiance: Ineichen clear sky (pvlib's bundled Linke turbidity) times a clear-sky index built
from a daily AR(1) process in logit space (cloudy days come in runs) around a mean that
follows the months, plus an hourly AR(1) anomaly; DNI/DHI by the Erbs decomposition. Wind: a
Gaussian AR(1) process mapped through the normal CDF onto the site's Weibull distribution
(its scale following the months), times the surface diurnal cycle; with the climate's shear
exponents, a ``wind_shear_exponent`` column carries the stability of each hour, so that the
wind aloft peaks at night while the wind at 10 m peaks in the afternoon. Monthly values are
given for mid-month and interpolated linearly between them. Temperature: annual and
daily cycles plus a persistent anomaly. Pressure: barometric at the site's altitude.

Random processes are drawn hourly for whole calendar years, keyed by ``(seed, site, year)``, and
interpolated to the requested interval midpoints: a day has the same weather whether it is asked
for alone or inside a longer range, and whatever the slot length.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pvlib
from scipy import signal, special, stats

from forecasts.solar import solar_position
from forecasts.specs import Climate, SupplySite
from forecasts.weather import Weather

__all__ = ["synthetic_weather"]

_GAUSS_HERMITE = np.polynomial.hermite_e.hermegauss(40)
_INTRADAY_STD = 0.45  # std of the hourly clearness anomaly in logit space [-]
_INTRADAY_HOURS = 2.0  # e-folding time of that anomaly [h]
_TEMP_ANOMALY_STD_C = 2.0
_TEMP_ANOMALY_HOURS = 48.0
_MOST_STABLE_HOUR = 4.0  # local hour of the strongest shear (before dawn)


def _site_key(name: str) -> int:
    """A stable integer for a site name (``hash()`` is salted per process)."""
    return zlib.crc32(name.encode())


def ar1(noise: np.ndarray, phi: float) -> np.ndarray:
    """Unit-variance AR(1) series driven by standard normal ``noise`` with lag-1 coefficient phi."""
    scale = np.sqrt(1.0 - phi**2)
    out = signal.lfilter([scale], [1.0, -phi], noise)
    out[0] = noise[0]  # start in the stationary distribution
    if len(out) > 1:
        out[1:] = signal.lfilter([scale], [1.0, -phi], noise[1:], zi=[phi * noise[0]])[0]
    return out


def logit_offset_for_mean(mean: float, spread: float) -> float:
    """The logit-space centre mu such that E[sigmoid(mu + spread * Z)] = mean, Z ~ N(0, 1)."""
    nodes, weights = _GAUSS_HERMITE
    weights = weights / weights.sum()
    low, high = -10.0, 10.0
    for _ in range(60):  # bisection: the expectation is increasing in mu
        mid = 0.5 * (low + high)
        if np.dot(weights, special.expit(mid + spread * nodes)) < mean:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


_MID_MONTH_FRACTION = (np.arange(12) + 0.5) / 12  # mid-months as fractions of the year


def _through_the_year(monthly: np.ndarray, year_fraction: np.ndarray) -> np.ndarray:
    """Values given for mid-months, interpolated linearly (across New Year too) at
    ``year_fraction`` in [0, 1) [same unit as ``monthly``]."""
    return np.interp(year_fraction, _MID_MONTH_FRACTION, monthly, period=1.0)


def _monthly_logit_centre(climate: Climate) -> np.ndarray:
    """Logit-space centre of daily clearness for each month, for its monthly mean [-]."""
    factors = np.asarray(climate.clearness_month_factors or np.ones(12))
    means = np.clip(climate.clearness_mean * factors, 0.12, 0.93)
    return np.array([logit_offset_for_mean(m, climate.clearness_spread) for m in means])


def _hourly_year(
    climate: Climate, seed: int, site: str, year: int, utc_offset_h: float
) -> pd.DataFrame:
    """The year's hourly random drivers: clearness (logit), wind quantile, temperature anomaly."""
    rng = np.random.default_rng([seed, _site_key(site), year])
    hours = pd.date_range(
        f"{year}-01-01", f"{year + 1}-01-01", freq="h", tz="UTC", inclusive="left"
    )
    n_days = len(hours) // 24
    daily = ar1(rng.standard_normal(n_days + 1), climate.clearness_day_to_day)
    mu = _monthly_logit_centre(climate)
    local_day = (
        (hours.hour.to_numpy() + utc_offset_h) // 24 + hours.dayofyear.to_numpy() - 1
    ).astype(int)
    intraday = ar1(rng.standard_normal(len(hours)), np.exp(-1.0 / _INTRADAY_HOURS))
    day_of_year = np.clip(local_day, 0, n_days)
    centre = _through_the_year(mu, (day_of_year + 0.5) / n_days)
    clearness_logit = centre + climate.clearness_spread * daily[day_of_year]
    clearness_logit = clearness_logit + _INTRADAY_STD * intraday
    wind_z = ar1(rng.standard_normal(len(hours)), np.exp(-1.0 / climate.wind_autocorrelation_hours))
    temp_z = ar1(rng.standard_normal(len(hours)), np.exp(-1.0 / _TEMP_ANOMALY_HOURS))
    return pd.DataFrame(
        {"clearness_logit": clearness_logit, "wind_z": wind_z, "temp_z": temp_z}, index=hours
    )


def _drivers(site: SupplySite, seed: int, times_mid: pd.DatetimeIndex) -> pd.DataFrame:
    """Hourly drivers of every year touched, linearly interpolated onto ``times_mid``."""
    offset_h = times_mid[:1].tz_convert(site.timezone).tz_localize(None)[0] - times_mid[
        0
    ].tz_localize(None)
    margin = pd.Timedelta(hours=1)  # interpolation reaches one hourly value past each end
    years = range((times_mid.min() - margin).year, (times_mid.max() + margin).year + 1)
    hourly = pd.concat(
        [
            _hourly_year(site.climate, seed, site.name, y, offset_h / pd.Timedelta(hours=1))
            for y in years
        ]
    )
    hourly.index = hourly.index + pd.Timedelta(minutes=30)  # an hourly value stands for its middle
    x = hourly.index.asi8.astype(float)
    xi = times_mid.asi8.astype(float)
    return pd.DataFrame(
        {c: np.interp(xi, x, hourly[c].to_numpy()) for c in hourly}, index=times_mid
    )


def _stability_shear(climate: Climate, local_hour: np.ndarray) -> np.ndarray:
    """Power-law shear exponent of the hour [-]: the day value in mid-afternoon (unstable, well
    mixed), the night value before dawn (stable), cosine in between."""
    night_weight = 0.5 * (1.0 + np.cos(2 * np.pi * (local_hour - _MOST_STABLE_HOUR) / 24.0))
    day, night = climate.wind_shear_exponent_day, climate.wind_shear_exponent_night
    assert day is not None and night is not None  # the climate validates both or neither
    return day + (night - day) * night_weight


def synthetic_weather(
    site: SupplySite,
    start: pd.Timestamp,
    end: pd.Timestamp,
    freq_minutes: int = 60,
    seed: int = 1,
) -> Weather:
    """Synthetic weather for ``site`` over ``[start, end)`` in intervals of ``freq_minutes``.

    Returns the weather frame contract (UTC interval-start index, interval means approximated
    at the midpoint) with wind at ``site.climate.wind_height_m``. Same seed, same weather.
    """
    climate = site.climate
    start, end = pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")
    step = pd.Timedelta(minutes=freq_minutes)
    index = pd.date_range(start, end, freq=step, inclusive="left")
    times_mid = index + step / 2
    drivers = _drivers(site, seed, times_mid)

    location = pvlib.location.Location(site.latitude, site.longitude, "UTC", site.altitude_m)
    solpos = solar_position(times_mid, site.latitude, site.longitude, site.altitude_m)
    clear = location.get_clearsky(times_mid, model="ineichen", solar_position=solpos)
    clearness = special.expit(drivers["clearness_logit"].to_numpy())
    ghi = clear["ghi"].to_numpy() * np.minimum(clearness, 1.0)
    split = pvlib.irradiance.erbs(ghi, solpos["apparent_zenith"].to_numpy(), times_mid.dayofyear)
    dni = np.minimum(np.nan_to_num(np.asarray(split["dni"])), clear["dni"].to_numpy())
    dhi = np.clip(ghi - dni * np.cos(np.radians(solpos["apparent_zenith"].to_numpy())), 0, None)

    local = times_mid.tz_convert(site.timezone)
    local_hour = local.hour + local.minute / 60.0
    sign = 1.0 if site.latitude >= 0 else -1.0  # coldest in mid-January in the north
    temp_air = (
        climate.temp_mean_c
        - sign
        * climate.temp_annual_amplitude_c
        * np.cos(2 * np.pi * (local.dayofyear - 15) / 365.25)
        + climate.temp_diurnal_amplitude_c * np.cos(2 * np.pi * (local_hour - 15.0) / 24.0)
        + _TEMP_ANOMALY_STD_C * drivers["temp_z"].to_numpy()
    )

    quantile = np.clip(special.ndtr(drivers["wind_z"].to_numpy()), 1e-9, 1 - 1e-9)
    year_fraction = ((local.dayofyear - 1) + local_hour / 24.0) / 365.25
    scale_m_s = climate.wind_weibull_scale_m_s * _through_the_year(
        np.asarray(climate.wind_month_factors or np.ones(12)), np.asarray(year_fraction)
    )
    wind = stats.weibull_min.ppf(quantile, climate.wind_weibull_shape, scale=scale_m_s)
    diurnal = 1.0 + climate.wind_diurnal_amplitude * np.cos(
        2 * np.pi * (local_hour - climate.wind_peak_hour_local) / 24.0
    )

    data = pd.DataFrame(
        {
            "ghi": ghi,
            "dni": dni,
            "dhi": dhi,
            "temp_air": np.asarray(temp_air, dtype=float),
            "wind_speed": wind * np.asarray(diurnal),
            "pressure": pvlib.atmosphere.alt2pres(site.altitude_m),
        },
        index=index,
    )
    if climate.wind_shear_exponent_day is not None:
        data["wind_shear_exponent"] = _stability_shear(climate, np.asarray(local_hour))
    return Weather(
        data=data,
        wind_height_m=climate.wind_height_m,
        source=f"synthetic(seed={seed})",
        station=(site.latitude, site.longitude),
    )
