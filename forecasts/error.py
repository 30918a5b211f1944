"""Day-ahead forecast error model: unbiased point forecasts and calibrated quantiles.

Model (latent Gaussian, the form the martingale model of forecast evolution builds on)
--------------------------------------------------------------------------------------
Each technology's output is first normalised to a value ``u`` with a stable distribution: wind
as a share of farm capacity, PV as a share of ``capacity x cos(zenith)`` (a clear-sky index of
the plant, daylit rows only; night and twilight are forecast exactly). With ``F`` the empirical
distribution of ``u`` in a reference sample (by default the actual series itself), the actual
becomes a standard normal latent ``z_a = Phi^-1(F(u))`` (ties, such as calm hours at exactly
0 MW, get random ranks within the tie). The forecast's latent is the actual's plus an error

    z_f = z_a + tau(z_a) eps_t,    eps_t an AR(1) of unit variance, e-folding ``correlation_hours``

with ``tau`` constant for wind (so wind errors are largest on the steep part of the power
curve) and, for PV, shaped so that the error of ``u`` on the clearest days is
:data:`CLEAR_SKY_ERROR_SHARE` of that in overcast, falling with ``Phi(z_a)`` whatever the
distribution of ``u``: clear skies are forecast better. The forecast is what ``z_f``
says about the actual, by Bayes on a latent grid with the standard normal prior:

- point forecast ``E[u | z_f]``: unbiased by construction, ``E[forecast] = E[actual]``, also at
  calm sites, and always within the range of the reference (no clipping bias);
- quantiles of ``u | z_f``: calibrated by construction; the green total's p10/p90 come from
  stratified samples of both technologies' conditionals (their errors independent);
- ``tau`` is solved per site and technology so that the expected RMSE equals ``nrmse`` x
  capacity (wind over all rows, PV over daylit rows), but at most 70 % of the RMSE of
  climatology (:data:`MAX_SHARE_OF_CLIMATOLOGY`): at a calm site the output varies too little
  for a capacity-based error.

A later forecast vintage is the same model with a smaller ``tau``: successive vintages remove
independent increments of the latent error, so they are consistent and converge on the actual.

Tails: where the output has a point mass (calm hours at exactly 0 MW), a calibrated p10 can
equal the actual, so ``P(actual < p10) <= 10 % <= P(actual <= p10)`` rather than 10 % each.

Defaults follow published day-ahead errors as a share of capacity: wind about 10-20 % NRMSE,
PV about 5-14 % over daylit hours (Giebel et al. 2011, The State-Of-The-Art in Short-Term
Prediction of Wind Power, ANEMOS.plus; Antonanzas et al. 2016, Solar Energy 136, 78-111).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import special

from forecasts.synthetic import ar1

__all__ = [
    "CLEAR_SKY_ERROR_SHARE",
    "MAX_SHARE_OF_CLIMATOLOGY",
    "ForecastError",
    "add_forecast_error",
]

MAX_SHARE_OF_CLIMATOLOGY = 0.7
"""Largest day-ahead RMSE as a share of that of climatology (the mean): NWP-based day-ahead
forecasts beat climatology by 30-50 % (Giebel et al. 2011)."""
CLEAR_SKY_ERROR_SHARE = 0.25
"""PV's error on the clearest days as a share of that in overcast [-]."""
_GRID = np.linspace(-4.5, 4.5, 181)  # latent values of the posterior
_PRIOR = np.exp(-0.5 * _GRID**2)  # standard normal, unnormalised
_SAMPLES = 100  # equal-probability strata per row for the quantiles of the green total
_STRATA = (np.arange(_SAMPLES) + 0.5) / _SAMPLES
_SOLVE_POINTS = special.ndtri((np.arange(40) + 0.5) / 40)  # z_a and eps to size the error
_MIN_SUN_FACTOR = 0.05  # below (sun under ~3 deg) PV is forecast exactly
_MIN_REFERENCE = 8  # fewer reference values (or all equal): forecast exactly


@dataclass(frozen=True)
class ForecastError:
    """Size of day-ahead forecast errors (RMSE as a fraction of capacity) and persistence [h].

    ``wind_nrmse`` is over all rows, ``pv_nrmse`` over daylit rows.
    """

    wind_nrmse: float = 0.15
    pv_nrmse: float = 0.08
    correlation_hours: float = 6.0

    def scaled(self, factor: float) -> ForecastError:
        """The same model with errors ``factor`` times as large (0 = perfect foresight)."""
        return ForecastError(
            self.wind_nrmse * factor, self.pv_nrmse * factor, self.correlation_hours
        )


def _posterior(z_forecast: np.ndarray, spread_on_grid: np.ndarray) -> np.ndarray:
    """``P(z_a = grid value | z_f)`` for each row (rows x grid), normalised, when the latent
    error at grid value ``z`` has standard deviation ``spread_on_grid``."""
    distance = (z_forecast[:, None] - _GRID[None, :]) / spread_on_grid
    log_weights = -0.5 * (distance**2 + _GRID[None, :] ** 2) - np.log(spread_on_grid)
    weights = np.exp(log_weights - log_weights.max(axis=1, keepdims=True))  # no underflow
    return weights / weights.sum(axis=1, keepdims=True)


class _Marginal:
    """The empirical distribution of a normalised output ``u`` from a reference sample, and
    the shape of the latent error over it."""

    def __init__(self, reference: np.ndarray, clear_sky_share: float | None) -> None:
        self.sorted = np.sort(np.asarray(reference, dtype=float))
        self.n = len(self.sorted)
        self.on_grid = self.quantile(special.ndtr(_GRID))  # u at each latent grid value
        self.shape = self._error_shape(clear_sky_share)

    def _error_shape(self, clear_sky_share: float | None) -> np.ndarray:
        """Relative latent error on the grid [-]: 1 (wind), or for PV (``clear_sky_share``
        given) what makes the error of ``u`` fall from overcast to ``clear_sky_share`` of it on
        the clearest days, whatever the distribution: the wanted error over the slope of ``u``
        (floored at 5 % of its steepest)."""
        if clear_sky_share is None:
            return np.ones_like(_GRID)
        wanted_u = 1.0 - (1.0 - clear_sky_share) * special.ndtr(_GRID)
        slope = np.gradient(self.on_grid, _GRID)
        shape = wanted_u / np.maximum(slope, 0.05 * float(np.max(slope)))
        return shape / float(np.average(shape, weights=_PRIOR))

    def to_latent(self, values: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        """``Phi^-1`` of the randomised mid-rank of each value [-]."""
        below = np.searchsorted(self.sorted, values, side="left")
        ties = np.searchsorted(self.sorted, values, side="right") - below
        rank = below + uniform * np.maximum(ties, 1)
        return special.ndtri(np.clip(rank / self.n, 0.5 / self.n, 1 - 0.5 / self.n))

    def quantile(self, probability: np.ndarray) -> np.ndarray:
        """``F^-1(p)`` by linear interpolation between the sorted reference values."""
        return np.interp(probability * self.n - 0.5, np.arange(self.n), self.sorted)

    def forecast_latent(self, z_actual: np.ndarray, tau: float, eps: np.ndarray) -> np.ndarray:
        """``z_f = z_a + tau x shape(z_a) x eps``."""
        return z_actual + tau * np.interp(z_actual, _GRID, self.shape) * eps

    def expected_rmse(self, tau: float) -> float:
        """Expected RMSE of the point forecast ``E[u | z_f]`` for an error scale ``tau`` [u]."""
        z_actual = np.repeat(_SOLVE_POINTS, len(_SOLVE_POINTS))
        eps = np.tile(_SOLVE_POINTS, len(_SOLVE_POINTS))
        posterior = _posterior(self.forecast_latent(z_actual, tau, eps), tau * self.shape)
        mean = posterior @ self.on_grid
        variance = posterior @ self.on_grid**2 - mean**2
        return float(np.sqrt(max(np.mean(variance), 0.0)))

    def climatology_rmse(self) -> float:
        """RMSE of a forecast without skill, the mean [u]."""
        prior = _PRIOR / _PRIOR.sum()
        return float(np.sqrt(prior @ self.on_grid**2 - (prior @ self.on_grid) ** 2))


@lru_cache(maxsize=32)
def _marginal_and_scale(
    sorted_reference: bytes, target_rmse: float, clear_sky_share: float | None
) -> tuple[_Marginal, float]:
    """The reference's distribution and the ``tau`` whose expected RMSE is ``target_rmse``
    [u], capped at :data:`MAX_SHARE_OF_CLIMATOLOGY` of climatology's; cached per reference."""
    marginal = _Marginal(np.frombuffer(sorted_reference), clear_sky_share)
    target = min(target_rmse, MAX_SHARE_OF_CLIMATOLOGY * marginal.climatology_rmse())
    low, high = 1e-3, 30.0  # the RMSE grows with tau
    for _ in range(30):
        middle = float(np.sqrt(low * high))  # bisection on a log scale
        if marginal.expected_rmse(middle) < target:
            low = middle
        else:
            high = middle
    return marginal, float(np.sqrt(low * high))


@dataclass(frozen=True)
class _Part:
    """One technology's forecast on the rows it covers: point and stratified samples [MW]."""

    point_mw: np.ndarray
    samples_mw: np.ndarray  # rows x _SAMPLES, each row's strata in a random order


def _forecast_part(
    actual_u: np.ndarray,
    reference_u: np.ndarray,
    scale_mw: np.ndarray,
    target_rmse_u: float,
    clear_sky_share: float | None,
    phi: float,
    rng: np.random.Generator,
) -> _Part:
    """Point forecast and conditional samples of one technology (see the module doc)."""
    n = len(actual_u)
    varies = len(reference_u) >= _MIN_REFERENCE and np.ptp(reference_u) > 0
    if n == 0 or not varies or target_rmse_u <= 0:
        actual_mw = actual_u * scale_mw
        return _Part(actual_mw, np.repeat(actual_mw[:, None], _SAMPLES, axis=1))
    marginal, tau = _marginal_and_scale(
        np.sort(np.asarray(reference_u, dtype=float)).tobytes(), target_rmse_u, clear_sky_share
    )
    z_actual = marginal.to_latent(actual_u, rng.uniform(size=n))
    z_forecast = marginal.forecast_latent(z_actual, tau, ar1(rng.standard_normal(n), phi))
    posterior = _posterior(z_forecast, tau * marginal.shape)
    # stratified draws from each row's posterior, in a random order per row so that two
    # technologies pair independently; rows are offset by 2 (each spans [0, 1]) so that one
    # searchsorted over all rows stays sorted
    offset = 2.0 * np.arange(n)[:, None]
    cumulative = np.cumsum(posterior, axis=1)
    cumulative[:, -1] = 1.0
    draws = rng.permuted(np.tile(_STRATA, (n, 1)), axis=1) + offset
    index = np.searchsorted((cumulative + offset).ravel(), draws.ravel()).reshape(n, _SAMPLES)
    index = np.clip(index - np.arange(n)[:, None] * len(_GRID), 0, len(_GRID) - 1)
    point_u = posterior @ marginal.on_grid
    return _Part(point_u * scale_mw, marginal.on_grid[index] * scale_mw[:, None])


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
    reference: pd.DataFrame | None = None,
    reference_sun_factor: np.ndarray | None = None,
) -> pd.DataFrame:
    """A forecast of one site's supply from its ``actual`` supply (``pv_mw``, ``wind_mw``).

    ``sun_factor`` is cos(solar zenith) clipped to [0, 1] per row; ``key`` (site name) and the
    first timestamp seed the error, so each day-ahead forecast is reproducible. ``reference``
    (same columns, with ``reference_sun_factor``) is the sample whose distribution the model
    uses; pass a climatological record (a year) so that a short forecast does not take its
    own distribution; by default the actual itself. Returns ``pv_mw``, ``wind_mw``,
    ``green_mw`` and, with ``quantiles``, ``green_mw_p10`` / ``green_mw_p90`` [MW].
    """
    if reference is None:
        reference, reference_sun_factor = actual, sun_factor
    n = len(actual)
    step_h = (
        pd.Timedelta(actual.index[1] - actual.index[0]) / pd.Timedelta(hours=1) if n > 1 else 1.0
    )
    rng = np.random.default_rng(
        [seed, zlib.crc32(key.encode()), int(actual.index[0].timestamp() // 60), 0xF0CA57]
    )
    phi = float(np.exp(-step_h / error.correlation_hours))

    wind_capacity = max(wind_capacity_mw, 1e-9)
    wind = _forecast_part(
        actual["wind_mw"].to_numpy() / wind_capacity,
        reference["wind_mw"].to_numpy() / wind_capacity,
        np.full(n, wind_capacity_mw),
        error.wind_nrmse if wind_capacity_mw > 0 else 0.0,
        None,
        phi,
        rng,
    )
    sun = np.asarray(sun_factor, dtype=float)
    reference_sun = np.asarray(reference_sun_factor, dtype=float)
    daylit = sun > _MIN_SUN_FACTOR
    reference_daylit = reference_sun > _MIN_SUN_FACTOR
    pv_scale_mw = pv_capacity_mw * sun[daylit]
    pv_target = (
        error.pv_nrmse / np.sqrt(np.mean(reference_sun[reference_daylit] ** 2))
        if pv_capacity_mw > 0 and reference_daylit.any()
        else 0.0
    )
    pv_daylit = _forecast_part(
        actual["pv_mw"].to_numpy()[daylit] / np.maximum(pv_scale_mw, 1e-9),
        reference["pv_mw"].to_numpy()[reference_daylit]
        / (max(pv_capacity_mw, 1e-9) * reference_sun[reference_daylit]),
        pv_scale_mw,
        pv_target,
        CLEAR_SKY_ERROR_SHARE,
        phi,
        rng,
    )
    pv_point = actual["pv_mw"].to_numpy(dtype=float).copy()
    pv_point[daylit] = np.minimum(pv_daylit.point_mw, pv_capacity_mw)
    pv_samples = np.repeat(pv_point[:, None], _SAMPLES, axis=1)
    pv_samples[daylit] = np.minimum(pv_daylit.samples_mw, pv_capacity_mw)

    out = pd.DataFrame(index=actual.index)
    out["pv_mw"] = pv_point
    out["wind_mw"] = wind.point_mw
    out["green_mw"] = out["pv_mw"] + out["wind_mw"]
    if quantiles:
        low, high = np.quantile(wind.samples_mw + pv_samples, [0.1, 0.9], axis=1)
        out["green_mw_p10"] = np.minimum(low, out["green_mw"].to_numpy())
        out["green_mw_p90"] = np.maximum(high, out["green_mw"].to_numpy())
    return out
