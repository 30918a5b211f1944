"""Day-ahead forecast error model: forecast = actual + seeded, autocorrelated error.

Errors are AR(1) in time with e-folding time ``correlation_hours``, Gaussian, with standard
deviation ``wind_nrmse`` x wind capacity and ``pv_nrmse`` x PV capacity x the sun's elevation
factor (so the PV forecast is exact, and zero, at night). Forecasts are clipped to
``[0, capacity]``. Published day-ahead errors are roughly 10-20 % NRMSE of capacity for wind and
less for PV, which the defaults follow. Quantiles assume the Gaussian error before clipping.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from forecasts.synthetic import ar1

__all__ = ["ForecastError", "add_forecast_error"]

_Z90 = float(special.ndtri(0.9))  # 1.2816: the p90 point of a standard normal


@dataclass(frozen=True)
class ForecastError:
    """Size of day-ahead forecast errors (fractions of capacity) and their persistence [h]."""

    wind_nrmse: float = 0.15
    pv_nrmse: float = 0.07
    correlation_hours: float = 6.0

    def scaled(self, factor: float) -> ForecastError:
        """The same model with errors ``factor`` times as large (0 = perfect foresight)."""
        return ForecastError(
            self.wind_nrmse * factor, self.pv_nrmse * factor, self.correlation_hours
        )


def add_forecast_error(
    actual: pd.DataFrame,
    *,
    wind_capacity_mw: float,
    pv_capacity_mw: float,
    sun_factor: np.ndarray,
    error: ForecastError,
    seed: int,
    key: str,
    quantiles: bool = True,
) -> pd.DataFrame:
    """A forecast of one site's supply from its ``actual`` supply (``pv_mw``, ``wind_mw``).

    ``sun_factor`` is cos(solar zenith) clipped to [0, 1] per row; ``key`` (site name) and the
    first timestamp seed the error, so each day-ahead forecast is reproducible. Returns the
    same columns plus ``green_mw`` and, with ``quantiles``, ``green_mw_p10`` / ``green_mw_p90``.
    """
    n = len(actual)
    step_h = (
        pd.Timedelta(actual.index[1] - actual.index[0]) / pd.Timedelta(hours=1) if n > 1 else 1.0
    )
    rng = np.random.default_rng(
        [seed, zlib.crc32(key.encode()), int(actual.index[0].timestamp() // 60), 0xF0CA57]
    )
    phi = float(np.exp(-step_h / error.correlation_hours))
    wind_sd_mw = error.wind_nrmse * wind_capacity_mw
    pv_sd_mw = error.pv_nrmse * pv_capacity_mw * np.asarray(sun_factor, dtype=float)
    wind_err = wind_sd_mw * ar1(rng.standard_normal(n), phi)
    pv_err = pv_sd_mw * ar1(rng.standard_normal(n), phi)

    out = pd.DataFrame(index=actual.index)
    out["pv_mw"] = np.clip(actual["pv_mw"].to_numpy() + pv_err, 0.0, pv_capacity_mw)
    out["wind_mw"] = np.clip(actual["wind_mw"].to_numpy() + wind_err, 0.0, wind_capacity_mw)
    out["green_mw"] = out["pv_mw"] + out["wind_mw"]
    if quantiles:
        total_sd_mw = np.sqrt(wind_sd_mw**2 + pv_sd_mw**2)
        cap = wind_capacity_mw + pv_capacity_mw
        out["green_mw_p10"] = np.clip(out["green_mw"] - _Z90 * total_sd_mw, 0.0, cap)
        out["green_mw_p90"] = np.clip(out["green_mw"] + _Z90 * total_sd_mw, 0.0, cap)
    return out
