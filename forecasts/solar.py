"""The sun's position, computed once per site and time grid and shared by every step.

Synthetic weather, resampling, the PV model chain and the forecast error model all need the
sun's position at the same slot midpoints; NREL SPA is the costliest step of a year's forecast,
so it is cached on (position, regular time grid). Refraction uses pvlib's defaults (pressure
from altitude, 12 C), not the weather of the hour: a difference of hundredths of a degree.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pvlib

__all__ = ["solar_position"]


@lru_cache(maxsize=32)
def _grid_position(
    latitude: float, longitude: float, altitude_m: float, first_ns: int, step_ns: int, periods: int
) -> pd.DataFrame:
    times = pd.date_range(
        pd.Timestamp(first_ns, tz="UTC"), periods=periods, freq=pd.Timedelta(step_ns)
    )
    pressure_pa = pvlib.atmosphere.alt2pres(altitude_m)
    return pvlib.solarposition.get_solarposition(
        times, latitude, longitude, altitude_m, pressure=pressure_pa, method="nrel_numpy"
    )


def solar_position(
    times: pd.DatetimeIndex, latitude: float, longitude: float, altitude_m: float
) -> pd.DataFrame:
    """pvlib's solar position (zenith, apparent_zenith, azimuth, ... [deg]) at ``times`` (UTC).

    Regular grids are cached; the frame returned is a copy the caller may change.
    """
    times = pd.DatetimeIndex(times).tz_convert("UTC")
    grid = _repeated_grid(times)
    if grid is not None:  # members of an ensemble stacked on the same slots
        block = solar_position(grid, latitude, longitude, altitude_m)
        position = pd.concat([block] * (len(times) // len(grid)))
        position.index = times
        return position
    if len(times) > 2 and (times[1:] - times[:-1]).nunique() == 1:
        step_ns = int((times[1] - times[0]).value)
        position = _grid_position(
            float(latitude),
            float(longitude),
            float(altitude_m),
            int(times[0].value),
            step_ns,
            len(times),
        ).copy()
        position.index = times
        return position
    pressure_pa = pvlib.atmosphere.alt2pres(altitude_m)
    return pvlib.solarposition.get_solarposition(
        times, latitude, longitude, altitude_m, pressure=pressure_pa, method="nrel_numpy"
    )


def _repeated_grid(times: pd.DatetimeIndex) -> pd.DatetimeIndex | None:
    """The regular grid that ``times`` repeats two or more times end to end, else ``None``."""
    if len(times) < 6 or times.is_monotonic_increasing:
        return None
    ns = times.as_unit("ns").asi8
    restart = int(np.argmax(np.diff(ns) <= 0)) + 1  # first step back
    if len(times) % restart:
        return None
    block = ns[:restart]
    if (np.diff(block) != block[1] - block[0]).any() or not (
        ns.reshape(-1, restart) == block
    ).all():
        return None
    return times[:restart]
