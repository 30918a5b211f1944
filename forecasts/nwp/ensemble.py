"""A run's supply forecast at one site, with its p10 and p90.

The point forecast is the mean of the members' supply (a deterministic run's own supply). The
quantiles come from:

- **an ensemble's members' supply** (not their weather: the power curve and the inverter clip
  what the weather spreads): each slot's green supply of every member, their spread about the
  members' mean widened by ``spread_factor`` (the calibration step: ensembles are usually
  under-dispersive; 1 keeps the members as they are, ``greensched forecast-skill --fit`` says
  what the past runs need), clipped to [0, capacity], then the empirical 10 % and 90 %
  quantiles (linear between order statistics);
- **the error model** around a deterministic run: a Gaussian whose standard deviation is the
  error model's RMSE at the slot's lead (``forecast.intraday`` and the day-ahead levels, wind
  over all hours, PV shaped by the sun as in :mod:`forecasts.error`: each carrier by its error
  scale), the carriers independent, clipped to [0, capacity].

Either way ``green_mw_p10 <= green_mw <= green_mw_p90`` (a bound is moved to the point forecast
when a skewed ensemble puts its mean outside).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecasts.error import ForecastError
from forecasts.nwp.run import ForecastRun
from forecasts.specs import SupplySite
from forecasts.supply import SupplyModel, sun_factor
from scheduler.contracts.carriers import CARRIERS, capacities_mw, green_mw

__all__ = ["Z_90", "run_supply"]

Z_90 = 1.2815515655446004
"""The standard normal's 90 % quantile [-]."""
_MIN_SUN = 0.05  # cos(zenith) below which PV has no error (the error model's daylit rows)


def run_supply(
    run: ForecastRun,
    site: SupplySite,
    model: SupplyModel,
    error: ForecastError,
    *,
    spread_factor: float = 1.0,
) -> pd.DataFrame:
    """Supply forecast of ``site`` from ``run``, indexed by slot start (UTC): each carrier's
    ``<carrier>_mw``, ``green_mw``, ``green_mw_p10``, ``green_mw_p90`` [MW] (method in the module
    doc)."""
    members = model.site_members(site, list(run.weather.values()))
    columns = {
        c.column: np.mean([m[c.column].to_numpy() for m in members], axis=0) for c in CARRIERS
    }
    green = green_mw(columns)
    capacity = sum(capacities_mw(site).values())
    if run.is_ensemble:
        spread = np.array([m["green_mw"].to_numpy() for m in members]) - green
        calibrated = np.clip(green + spread_factor * spread, 0.0, capacity)
        low, high = np.quantile(calibrated, [0.1, 0.9], axis=0)
    else:
        sigma = _error_sigma_mw(run, site, error, members[0].index)
        low = np.clip(green - Z_90 * sigma, 0.0, capacity)
        high = np.clip(green + Z_90 * sigma, 0.0, capacity)
    frame = pd.DataFrame(
        {
            **columns,
            "green_mw": green,
            "green_mw_p10": np.minimum(low, green),
            "green_mw_p90": np.maximum(high, green),
        },
        index=members[0].index,
    )
    frame.index.name = "time"
    return frame


def _error_sigma_mw(
    run: ForecastRun, site: SupplySite, error: ForecastError, slots: pd.DatetimeIndex
) -> np.ndarray:
    """The error model's standard deviation of green supply at each slot's lead [MW]: each
    carrier's, independent."""
    lead_h = np.asarray((slots - run.issued_at) / pd.Timedelta(hours=1), dtype=float)
    sun = sun_factor(slots, site.latitude, site.longitude, site.altitude_m)
    daylit = sun > _MIN_SUN
    sun_rms = float(np.sqrt(np.mean(sun[daylit] ** 2))) if daylit.any() else 1.0
    variance = np.zeros(len(slots))
    for carrier in CARRIERS:
        sigma = error.nrmse_at(carrier.name, lead_h) * carrier.capacity_mw(site)
        if carrier.error_scale == "clear_sky":
            sigma = np.where(daylit, sigma * sun / sun_rms, 0)
        variance = variance + sigma**2
    return np.sqrt(variance)
