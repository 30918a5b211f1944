"""Plausibility of a weather file against physics, climate and the sun.

The readers in :mod:`forecasts.iotools` check a file's form (fields, times, ranges, gaps); the
functions here check that its values could be real weather: irradiance that is there when the
sun is up and not above what reaches the top of the atmosphere, and wind speeds that are m/s at
the stated height. Each raises :class:`~forecasts.weather.WeatherFileError` naming the file and
the row or column, or returns what it measured so that the caller can warn with
:func:`warn_user`.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from forecasts.components import SOLAR_CONSTANT_W_M2
from forecasts.weather import WeatherFileError

__all__ = [
    "check_below_top_of_atmosphere",
    "check_dark_days",
    "has_irradiance",
    "kmh_suspicion",
    "mean_wind_at_10m_m_s",
    "warn_user",
]

logger = logging.getLogger(__name__)

_DARK_DAY_CLEAR_KWH_M2 = 1.0  # a day whose clear sky gives more than this is never fully dark
_TOA_MARGIN_W_M2 = 25.0  # rounding and the sun's distance (+3.4 % in January)
_TOA_MAX_SHARE = 0.01  # of daylit rows; a few hours of cloud enhancement are real
_SHEAR_EXPONENT = 1.0 / 7.0  # neutral power-law profile to bring wind to 10 m
_KMH_MEAN_10M_M_S = 6.0
_STRONG_WIND_10M_M_S = 15.0  # Beaufort 7, "near gale", as an hourly mean at 10 m
_STRONG_WIND_MAX_SHARE = 0.02


def warn_user(message: str) -> None:
    """Log ``message`` as a warning and raise it as a ``UserWarning`` (once per call site)."""
    logger.warning(message)
    warnings.warn(message, UserWarning, stacklevel=3)


def has_irradiance(ghi_w_m2: pd.Series, source: str) -> bool:
    """Whether GHI is above zero anywhere; warns (naming the file) when it is not.

    A file of zeros is allowed, as a deliberately dark scenario, but never silently: it
    gives no PV at all, and is more often missing irradiance written as 0.
    """
    if (ghi_w_m2 > 0).any():
        return True
    warn_user(
        f"{source}: column 'ghi' is zero in every row, so there is no PV from this file; if "
        "the irradiance is missing rather than dark, fix the file"
    )
    return False


def check_dark_days(
    ghi_w_m2: pd.Series, ghi_clear_w_m2: np.ndarray, longitude: float, source: str
) -> None:
    """Warn when irradiance is zero all day on days the sun is well up.

    Even a day of thick overcast lets through about a tenth of the clear-sky irradiance, so a
    day of zeros is missing data written as 0 (the CSWD Urumqi file has three). Days are days
    of local mean solar time at ``longitude`` [deg E], so that each runs from night to night; a
    day counts when its clear-sky GHI exceeds 1 kWh/m^2.
    """
    step_h = (ghi_w_m2.index[1] - ghi_w_m2.index[0]) / pd.Timedelta(hours=1)
    solar_days = (ghi_w_m2.index + pd.Timedelta(hours=longitude / 15.0)).date
    frame = pd.DataFrame({"ghi": ghi_w_m2.to_numpy(), "clear": ghi_clear_w_m2})
    days = frame.groupby(solar_days).sum() * step_h / 1000.0
    dark = days.index[(days["ghi"] <= 0) & (days["clear"] > _DARK_DAY_CLEAR_KWH_M2)]
    if len(dark):
        first_row = int(np.flatnonzero(solar_days == dark[0])[0])
        listed = ", ".join(str(d) for d in dark[:5]) + (", ..." if len(dark) > 5 else "")
        warn_user(
            f"{source}: column 'ghi' is zero all day on {len(dark)} day(s) with the sun up "
            f"({listed}, local solar time; first at data row {first_row + 1}): missing values "
            "written as 0, so no PV then"
        )


def check_below_top_of_atmosphere(ghi_w_m2: pd.Series, cos_zenith: np.ndarray, source: str) -> None:
    """Raise when GHI exceeds the irradiance at the top of the atmosphere in many rows.

    The bound is ``1361 W/m^2 x mean cos(zenith)`` of each interval plus 25 W/m^2; more than 1 %
    of the daylit rows above it means wrong units, a wrong position or a wrong clock.
    """
    bound = SOLAR_CONSTANT_W_M2 * cos_zenith + _TOA_MARGIN_W_M2
    above = ghi_w_m2.to_numpy() > bound
    daylit = int((cos_zenith > 0).sum())
    if above.sum() > max(1, _TOA_MAX_SHARE * daylit):
        first = int(np.flatnonzero(above)[0])
        raise WeatherFileError(
            f"{source}: column 'ghi' is above the top-of-atmosphere irradiance in "
            f"{int(above.sum())} of {daylit} daylit rows, first at data row {first + 1} "
            f"({ghi_w_m2.index[first].isoformat()}: {ghi_w_m2.iloc[first]:g} W/m^2 > "
            f"{bound[first]:.0f}); check the units (W/m^2, interval means), the station "
            "position and the time zone"
        )


def mean_wind_at_10m_m_s(wind_speed: pd.Series, height_m: float) -> float:
    """Mean wind speed brought from ``height_m`` to 10 m by the 1/7 power law [m/s]."""
    return float(wind_speed.mean() * (10.0 / height_m) ** _SHEAR_EXPONENT)


def kmh_suspicion(wind_speed: pd.Series, height_m: float) -> str:
    """Why ``wind_speed`` [m/s at ``height_m``] looks like km/h, or ``''`` when it does not.

    In m/s at 10 m, a mean above 6 m/s is a very windy station, and hourly means above
    15 m/s (Beaufort 7) in more than 2 % of the hours happen only at exposed capes and summits;
    both together are what km/h (3.6 times the m/s figures) look like.
    """
    to_10m = (10.0 / height_m) ** _SHEAR_EXPONENT
    mean_10m = float(wind_speed.mean() * to_10m)
    strong_share = float((wind_speed * to_10m > _STRONG_WIND_10M_M_S).mean())
    if mean_10m > _KMH_MEAN_10M_M_S and strong_share > _STRONG_WIND_MAX_SHARE:
        return (
            f"mean {mean_10m:.1f} m/s and {strong_share:.1%} of rows above "
            f"{_STRONG_WIND_10M_M_S:g} m/s (brought to 10 m), while stations rarely exceed a "
            f"{_KMH_MEAN_10M_M_S:g} m/s mean and {_STRONG_WIND_MAX_SHARE:.0%} of such hours; "
            "this looks like km/h (divide by 3.6)"
        )
    return ""
