"""Forecast error model: unbiased point forecasts, calibrated quantiles, intraday vintages.

Model (latent Gaussian, the form the martingale model of forecast evolution builds on)
--------------------------------------------------------------------------------------
Each technology's output is first normalised to a value ``u`` with a stable distribution: wind
as a share of farm capacity, PV as a share of ``capacity x cos(zenith)`` (a clear-sky index of
the plant, daylit rows only; night and twilight are forecast exactly). With ``F`` the empirical
distribution of ``u`` in a reference sample (:class:`SiteReference`: a climatological record
such as a year; by default the actual series itself), the actual becomes a standard normal
latent ``z_a = Phi^-1(F(u))`` (ties, such as calm hours at exactly 0 MW, get random ranks
within the tie). The forecast's latent is the actual's plus an error

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

Vintages (martingale model of forecast evolution)
-------------------------------------------------
``ForecastError.intraday`` lists RMSE levels at leads ``L_1 < ... < L_{K-1}`` [h]; the
day-ahead level holds beyond (``L_K = inf``). The latent error is a sum of independent bands,

    z_f(t; t0) = z_a(t) + shape(z_a) sum_{k: k = 1 or t - t0 > L_{k-1}} sigma_k eps_k(t)

for slots starting at or after the issue time ``t0`` (earlier slots are the actual), so the
error at a lead in ``(L_{j-1}, L_j]`` has scale ``tau_j^2 = sigma_1^2 + ... + sigma_j^2``, and
each ``tau_j`` is solved as above for level ``j``. Band ``k`` is resolved when the lead falls
to ``L_{k-1}`` (band 1 when the slot is observed). Each ``eps_k`` is a unit AR(1) drawn from a
generator keyed by seed, site, operating day, technology and band, never by the issue time:
a later vintage removes independent increments of the same draw, so successive vintages are
consistent and converge on the actual. The day-ahead forecast is the vintage with every band.
Ties and the order of the quantile strata are keyed the same way.

Tails: where the output has a point mass (calm hours at exactly 0 MW), a calibrated p10 can
equal the actual, so ``P(actual < p10) <= 10 % <= P(actual <= p10)`` rather than 10 % each.

Defaults follow published day-ahead errors as a share of capacity: wind about 10-20 % NRMSE,
PV about 5-14 % over daylit hours (Giebel et al. 2011, The State-Of-The-Art in Short-Term
Prediction of Wind Power, ANEMOS.plus; Antonanzas et al. 2016, Solar Energy 136, 78-111).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import optimize, special

from forecasts.synthetic import ar1
from scheduler.contracts.carriers import CARRIERS, Carrier, green_mw

__all__ = [
    "CLEAR_SKY_ERROR_SHARE",
    "MAX_SHARE_OF_CLIMATOLOGY",
    "ForecastError",
    "LeadLevel",
    "SiteReference",
    "SiteVintages",
    "add_forecast_error",
    "check_lead_levels",
    "site_reference",
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
_SOLVE_POINTS = special.ndtri((np.arange(24) + 0.5) / 24)  # z_a and eps to size the error
_MIN_SUN_FACTOR = 0.05  # below (sun under ~3 deg) PV is forecast exactly
_MIN_REFERENCE = 8  # fewer reference values (or all equal): forecast exactly
_DAY_DRAW_HOURS = 25  # draws cover the longest operating day (a DST autumn day)


@dataclass(frozen=True)
class LeadLevel:
    """Forecast RMSE at leads up to ``lead_hours`` [h], as fractions of capacity [-]: wind
    over all rows, PV over daylit rows."""

    lead_hours: float
    wind_nrmse: float
    pv_nrmse: float


def check_lead_levels(levels: tuple[LeadLevel, ...], wind_nrmse: float, pv_nrmse: float) -> None:
    """Raise ``ValueError`` unless leads are positive and increasing and each technology's
    level grows with the lead up to the day-ahead ``wind_nrmse`` / ``pv_nrmse`` [-]."""
    leads = np.array([level.lead_hours for level in levels])
    if (leads <= 0).any() or (np.diff(leads) <= 0).any():
        raise ValueError(f"lead_hours must be positive and increasing, got {leads.tolist()}")
    for name, day_ahead in (("wind_nrmse", wind_nrmse), ("pv_nrmse", pv_nrmse)):
        values = [getattr(level, name) for level in levels]
        if min(values, default=0.0) < 0 or (np.diff([*values, day_ahead]) < 0).any():
            raise ValueError(
                f"{name} must be >= 0 and grow with the lead up to the day-ahead {day_ahead}, "
                f"got {values}"
            )


@dataclass(frozen=True)
class ForecastError:
    """Size of forecast errors (RMSE as a fraction of capacity) and their persistence [h].

    ``wind_nrmse`` (over all rows) and ``pv_nrmse`` (over daylit rows) are the day-ahead
    levels; ``intraday`` the levels at shorter leads (see the module doc; empty: the day-ahead
    level at every lead).
    """

    wind_nrmse: float = 0.15
    pv_nrmse: float = 0.08
    correlation_hours: float = 6.0
    intraday: tuple[LeadLevel, ...] = field(default=())

    def __post_init__(self) -> None:
        check_lead_levels(self.intraday, self.wind_nrmse, self.pv_nrmse)

    def scaled(self, factor: float) -> ForecastError:
        """The same model with errors ``factor`` times as large (0 = perfect foresight)."""
        return ForecastError(
            self.wind_nrmse * factor,
            self.pv_nrmse * factor,
            self.correlation_hours,
            tuple(
                LeadLevel(level.lead_hours, level.wind_nrmse * factor, level.pv_nrmse * factor)
                for level in self.intraday
            ),
        )

    @property
    def band_floors_h(self) -> np.ndarray:
        """Per band, the lead a forecast must exceed to carry it [h] (band 1: any lead >= 0)."""
        return np.array([-np.inf, *(level.lead_hours for level in self.intraday)])

    def levels(self, technology: str) -> tuple[float, ...]:
        """RMSE levels of ``technology`` (``"wind"`` or ``"pv"``) per band, day-ahead last [-]."""
        name = f"{technology}_nrmse"
        return (*(getattr(level, name) for level in self.intraday), getattr(self, name))

    def nrmse_at(self, technology: str, lead_hours: np.ndarray) -> np.ndarray:
        """RMSE as a fraction of capacity [-] of ``technology`` at each lead [h]: the level
        whose ``lead_hours`` is the first at or above the lead, the day-ahead one beyond."""
        leads = [level.lead_hours for level in self.intraday]
        band = np.searchsorted(leads, np.asarray(lead_hours, dtype=float), side="left")
        return np.asarray(self.levels(technology))[band]


def _posterior(z_forecast: np.ndarray, spread_on_grid: np.ndarray) -> np.ndarray:
    """``P(z_a = grid value | z_f)`` for each row (rows x grid), normalised, when the latent
    error at grid value ``z`` has standard deviation ``spread_on_grid`` (grid or rows x grid)."""
    distance = (z_forecast[:, None] - _GRID[None, :]) / spread_on_grid
    log_weights = -0.5 * (distance**2 + _GRID[None, :] ** 2) - np.log(spread_on_grid)
    weights = np.exp(log_weights - log_weights.max(axis=1, keepdims=True))  # no underflow
    return weights / weights.sum(axis=1, keepdims=True)


class _Marginal:
    """The empirical distribution of a normalised output ``u`` from a reference sample, the
    shape of the latent error over it, and the error scales ``tau`` solved for it."""

    def __init__(self, sorted_reference: np.ndarray, clear_sky_share: float | None) -> None:
        self.sorted = sorted_reference
        self.n = len(self.sorted)
        self.on_grid = self.quantile(special.ndtr(_GRID))  # u at each latent grid value
        self.shape = self._error_shape(clear_sky_share)
        self._scales: dict[float, float] = {}

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

    def forecast_latent(self, z_actual: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """``z_f = z_a + shape(z_a) x noise``, ``noise`` the unshaped latent error."""
        return z_actual + np.interp(z_actual, _GRID, self.shape) * noise

    def expected_rmse(self, tau: float) -> float:
        """Expected RMSE of the point forecast ``E[u | z_f]`` for an error scale ``tau`` [u]."""
        z_actual = np.repeat(_SOLVE_POINTS, len(_SOLVE_POINTS))
        eps = np.tile(_SOLVE_POINTS, len(_SOLVE_POINTS))
        posterior = _posterior(self.forecast_latent(z_actual, tau * eps), tau * self.shape)
        mean = posterior @ self.on_grid
        variance = posterior @ self.on_grid**2 - mean**2
        return float(np.sqrt(max(np.mean(variance), 0.0)))

    def climatology_rmse(self) -> float:
        """RMSE of a forecast without skill, the mean [u]."""
        prior = _PRIOR / _PRIOR.sum()
        return float(np.sqrt(prior @ self.on_grid**2 - (prior @ self.on_grid) ** 2))

    def scale(self, target_rmse: float) -> float:
        """The ``tau`` whose expected RMSE is ``target_rmse`` [u], capped at
        :data:`MAX_SHARE_OF_CLIMATOLOGY` of climatology's; solved once per target."""
        if target_rmse not in self._scales:
            target = min(target_rmse, MAX_SHARE_OF_CLIMATOLOGY * self.climatology_rmse())
            low, high = np.log(1e-3), np.log(30.0)  # the RMSE grows with tau

            def excess(log_tau: float) -> float:
                return self.expected_rmse(float(np.exp(log_tau))) - target

            if target <= 0:
                tau = 0.0
            elif excess(low) >= 0:
                tau = float(np.exp(low))
            else:
                tau = float(np.exp(optimize.brentq(excess, low, high, xtol=1e-5)))
            self._scales[target_rmse] = tau
        return self._scales[target_rmse]

    def band_sigmas(self, targets: tuple[float, ...]) -> np.ndarray:
        """Per band, ``sigma_k`` such that the first ``j`` bands together have the scale of
        ``targets[j]`` [u] (targets by increasing lead)."""
        taus = np.maximum.accumulate([self.scale(t) for t in targets])
        return np.sqrt(np.diff(np.concatenate([[0.0], taus**2])))


@lru_cache(maxsize=64)
def _marginal(sorted_reference: bytes, clear_sky_share: float | None) -> _Marginal:
    """The distribution of a sorted reference, cached so its error scales are solved once."""
    return _Marginal(np.frombuffer(sorted_reference), clear_sky_share)


def _marginal_of(values: np.ndarray, clear_sky_share: float | None) -> _Marginal | None:
    """The reference distribution of ``values`` [u], or ``None`` when they hardly vary."""
    if len(values) < _MIN_REFERENCE or np.ptp(values) <= 0:
        return None
    return _marginal(np.sort(np.asarray(values, dtype=float)).tobytes(), clear_sky_share)


@dataclass(frozen=True)
class SiteReference:
    """One site's output in a reference period, as the error model uses it: each carrier's
    distribution of normalised output (``None``: forecast exactly) and the RMS of cos(zenith)
    over the reference's daylit rows [-]. Build with :func:`site_reference`, once per period."""

    marginals: dict[str, _Marginal | None]
    sun_rms: float


def _normalised(
    carrier: Carrier, actual_mw: np.ndarray, capacity_mw: float, sun: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where ``carrier`` has an error and what its output is a share of there: all rows and the
    nameplate, or (``clear_sky``) the daylit rows and ``capacity x cos(zenith)`` [MW]."""
    if carrier.error_scale == "clear_sky":
        return sun > _MIN_SUN_FACTOR, capacity_mw * sun
    return np.ones(len(actual_mw), dtype=bool), np.full(len(actual_mw), capacity_mw)


def site_reference(
    supply: pd.DataFrame, sun_factor: np.ndarray, capacities_mw: dict[str, float]
) -> SiteReference:
    """The :class:`SiteReference` of one site's supply rows (``<carrier>_mw`` [MW]) with
    cos(zenith) ``sun_factor`` per row [-] and each carrier's capacity [MW]."""
    sun = np.asarray(sun_factor, dtype=float)
    marginals: dict[str, _Marginal | None] = {}
    for carrier in CARRIERS:
        capacity_mw = capacities_mw[carrier.name]
        actual_mw = supply[carrier.column].to_numpy()
        covered, scale_mw = _normalised(carrier, actual_mw, capacity_mw, sun)
        clear_sky_share = CLEAR_SKY_ERROR_SHARE if carrier.error_scale == "clear_sky" else None
        marginals[carrier.name] = (
            _marginal_of(actual_mw[covered] / scale_mw[covered], clear_sky_share)
            if capacity_mw > 0
            else None
        )
    daylit = sun > _MIN_SUN_FACTOR
    sun_rms = float(np.sqrt(np.mean(sun[daylit] ** 2))) if daylit.any() else 1.0
    return SiteReference(marginals, sun_rms)


@lru_cache(maxsize=256)
def _day_draws(
    seed: int, key: str, day_minute: int, technology: str, n_bands: int, n_rows: int, phi: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One operating day's random numbers for one technology: tie-breaking uniforms (rows),
    band errors ``eps_k`` (bands x rows, unit AR(1) each) and the order of the quantile strata
    (rows x samples), from generators keyed by day, technology and band (module doc)."""
    base = [seed, zlib.crc32(key.encode()), day_minute, zlib.crc32(technology.encode()), 0xF0CA57]
    rng = np.random.default_rng([*base, 0])
    ties = rng.uniform(size=n_rows)
    order = rng.permuted(np.tile(_STRATA, (n_rows, 1)), axis=1)
    eps = np.array(
        [ar1(np.random.default_rng([*base, 1 + k]).standard_normal(n_rows), phi)
         for k in range(n_bands)]
    )  # fmt: skip
    for array in (ties, order, eps):
        array.flags.writeable = False
    return ties, eps, order


@dataclass(frozen=True)
class _Part:
    """One technology's forecast on the rows it covers: point and stratified samples [MW]."""

    point_mw: np.ndarray
    samples_mw: np.ndarray  # rows x _SAMPLES, each row's strata in a random order


@dataclass(frozen=True)
class _DayRows:
    """One technology's rows of one operating day and what every vintage of them shares:
    ``rows`` index the site's rows; ``actual_mw`` over ``scale_mw`` is ``u``, ``z_actual`` its
    latent; ``marginal`` and ``sigmas`` (per band [latent]) the error model; ``eps`` (bands x
    rows) and ``order`` (rows x samples) the day's draws at these rows."""

    rows: np.ndarray
    actual_mw: np.ndarray
    scale_mw: np.ndarray
    z_actual: np.ndarray
    marginal: _Marginal
    sigmas: np.ndarray
    eps: np.ndarray
    order: np.ndarray

    def part(self, active: np.ndarray) -> _Part:
        """Point forecast and conditional samples (module doc) when ``active`` (rows x bands)
        says which bands each row carries."""
        marginal, sigmas = self.marginal, self.sigmas
        point_mw = self.actual_mw.copy()
        samples_mw = np.repeat(self.actual_mw[:, None], _SAMPLES, axis=1)
        tau = np.sqrt(active.astype(float) @ sigmas**2)
        rows = tau > 0
        if not rows.any():
            return _Part(point_mw, samples_mw)
        noise = np.sum(active[rows] * sigmas[None, :] * self.eps[:, rows].T, axis=1)
        z_forecast = marginal.forecast_latent(self.z_actual[rows], noise)
        posterior = _posterior(z_forecast, tau[rows, None] * marginal.shape[None, :])
        # stratified draws from each row's posterior, in a random order per row so that two
        # technologies pair independently; rows are offset by 2 (each spans [0, 1]) so that
        # one searchsorted over all rows stays sorted
        n = int(rows.sum())
        offset = 2.0 * np.arange(n)[:, None]
        cumulative = np.cumsum(posterior, axis=1)
        cumulative[:, -1] = 1.0
        index = np.searchsorted((cumulative + offset).ravel(), (self.order[rows] + offset).ravel())
        index = np.clip(index.reshape(n, _SAMPLES) - np.arange(n)[:, None] * len(_GRID), 0,
                        len(_GRID) - 1)  # fmt: skip
        point_mw[rows] = (posterior @ marginal.on_grid) * self.scale_mw[rows]
        samples_mw[rows] = marginal.on_grid[index] * self.scale_mw[rows, None]
        return _Part(point_mw, samples_mw)


@dataclass(frozen=True)
class _Technology:
    """One technology of a site: its actual output and cap [MW], and its rows per operating
    day where it has an error (none when its reference does not vary)."""

    name: str
    actual_mw: np.ndarray
    capacity_mw: float
    days: tuple[_DayRows, ...]


class SiteVintages:
    """Every vintage of the forecast of one site's supply over fixed rows.

    The arguments are those of :func:`add_forecast_error`; what does not depend on the issue
    time (the latent of the actual, the day's draws, the error scales) is prepared here once,
    so that a loop re-planning a day on fresh vintages pays only for what changes. A vintage
    is the same whichever vintages were asked before.
    """

    def __init__(
        self,
        actual: pd.DataFrame,
        *,
        capacities_mw: dict[str, float],
        sun_factor: np.ndarray,
        error: ForecastError,
        seed: int,
        key: str,
        reference: SiteReference | None = None,
        timezone: str = "UTC",
    ) -> None:
        sun = np.asarray(sun_factor, dtype=float)
        if reference is None:
            reference = site_reference(actual, sun, capacities_mw)
        index = pd.DatetimeIndex(actual.index)
        times_ns = index.as_unit("ns").asi8
        step_ns = int(times_ns[1] - times_ns[0]) if len(index) > 1 else 3_600_000_000_000
        phi = float(np.exp(-(step_ns / 3.6e12) / error.correlation_hours))
        n_bands = len(error.intraday) + 1
        day_start_ns = index.tz_convert(timezone).normalize().as_unit("ns").asi8  # local midnight
        n_day_rows = -(-_DAY_DRAW_HOURS * 3_600_000_000_000 // step_ns)
        self._times_ns = times_ns
        self._band_floors_h = error.band_floors_h
        self._technologies: list[_Technology] = []
        self._by_bands: dict[tuple[int, bool], dict[str, np.ndarray]] = {}
        for carrier in CARRIERS:
            technology, capacity = carrier.name, capacities_mw[carrier.name]
            marginal = reference.marginals[technology]
            targets = error.levels(technology)
            if carrier.error_scale == "clear_sky":  # levels are over daylit rows' capacity
                targets = tuple(t / reference.sun_rms for t in targets)
            actual_mw = actual[carrier.column].to_numpy(float)
            covered, scale_mw = _normalised(carrier, actual_mw, capacity, sun)
            days = []
            if marginal is not None:
                sigmas = marginal.band_sigmas(targets)
                for start_ns in np.unique(day_start_ns[covered]):
                    rows = np.flatnonzero(covered & (day_start_ns == start_ns))
                    ties, eps, order = _day_draws(
                        seed, key, int(start_ns // 60_000_000_000), technology, n_bands,
                        n_day_rows, phi,
                    )  # fmt: skip
                    at = (times_ns[rows] - start_ns) // step_ns  # rows in the day's draws
                    actual_u = actual_mw[rows] / scale_mw[rows]
                    z_actual = marginal.to_latent(actual_u, ties[at])
                    days.append(
                        _DayRows(
                            rows=rows,
                            actual_mw=actual_mw[rows],
                            scale_mw=scale_mw[rows],
                            z_actual=z_actual,
                            marginal=marginal,
                            sigmas=sigmas,
                            eps=eps[:, at],
                            order=order[at],
                        )
                    )
            self._technologies.append(_Technology(technology, actual_mw, capacity, tuple(days)))

    def columns(
        self, issued_at: pd.Timestamp | None = None, quantiles: bool = True
    ) -> dict[str, np.ndarray]:
        """The vintage issued at ``issued_at`` (UTC; slots starting before it are the actual),
        ``None`` the day-ahead forecast: ``<carrier>_mw``, ``green_mw`` and, with
        ``quantiles``, ``green_mw_p10`` / ``green_mw_p90`` per row [MW].

        A row carries the bands whose lead floor its lead exceeds, always the first few (the
        floors increase), so each row is one of a few forecasts: that of its number of bands,
        computed for every row once (:meth:`_with_bands`) and picked per row here."""
        n_rows, n_bands = len(self._times_ns), len(self._band_floors_h)
        if issued_at is None:
            bands = np.full(n_rows, n_bands)
        else:
            lead_h = (self._times_ns - pd.Timestamp(issued_at).value) / 3.6e12
            bands = np.where(lead_h >= 0, (lead_h[:, None] > self._band_floors_h).sum(axis=1), 0)
        picked: dict[str, np.ndarray] = {}
        for n in np.unique(bands).tolist():
            rows = np.flatnonzero(bands == n)
            for column, values in self._with_bands(n, quantiles).items():
                picked.setdefault(column, np.empty(n_rows))[rows] = values[rows]
        return picked

    def _with_bands(self, n_bands: int, quantiles: bool) -> dict[str, np.ndarray]:
        """The columns of :meth:`columns` were every row to carry the first ``n_bands`` bands (0:
        the actual); computed once per ``n_bands`` and ``quantiles``."""
        key = (n_bands, quantiles)
        if key not in self._by_bands:
            n_rows = len(self._times_ns)
            active = np.zeros((n_rows, len(self._band_floors_h)), dtype=bool)
            active[:, :n_bands] = True
            point, samples = {}, {}
            for technology in self._technologies:
                name, capacity = technology.name, technology.capacity_mw
                point[name] = technology.actual_mw.copy()
                samples[name] = np.repeat(technology.actual_mw[:, None], _SAMPLES, axis=1)
                for day in technology.days:
                    part = day.part(active[day.rows])
                    point[name][day.rows] = np.minimum(part.point_mw, capacity)
                    samples[name][day.rows] = np.minimum(part.samples_mw, capacity)

            columns = {carrier.column: point[carrier.name] for carrier in CARRIERS}
            green = columns["green_mw"] = green_mw(columns)
            if quantiles:
                low, high = np.quantile(green_mw({c.column: samples[c.name] for c in CARRIERS}),
                                        [0.1, 0.9], axis=1)  # fmt: skip
                columns["green_mw_p10"] = np.minimum(low, green)
                columns["green_mw_p90"] = np.maximum(high, green)
            self._by_bands[key] = columns
        return self._by_bands[key]


def add_forecast_error(
    actual: pd.DataFrame,
    *,
    capacities_mw: dict[str, float],
    sun_factor: np.ndarray,
    error: ForecastError,
    seed: int,
    key: str,
    quantiles: bool = True,
    reference: SiteReference | None = None,
    timezone: str = "UTC",
    issued_at: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """A forecast of one site's supply from its ``actual`` supply (``<carrier>_mw`` [MW],
    indexed by regular slot starts, UTC) with each carrier's capacity [MW].

    ``sun_factor`` is cos(solar zenith) clipped to [0, 1] per row. Errors are drawn per
    operating day (local midnight to midnight in ``timezone``), seeded by ``seed``, ``key``
    (the site name) and the day, so a day's forecast does not depend on the range it is asked
    in. ``reference`` is the distribution the model uses (a climatological record, see
    :func:`site_reference`); by default the actual itself. ``issued_at`` (UTC) gives the
    vintage issued then (slots before it are the actual); ``None`` the day-ahead forecast.
    Returns ``<carrier>_mw``, ``green_mw`` and, with ``quantiles``, ``green_mw_p10`` /
    ``green_mw_p90`` [MW]. Many vintages of the same rows: :class:`SiteVintages`.
    """
    vintages = SiteVintages(
        actual, capacities_mw=capacities_mw, sun_factor=sun_factor, error=error, seed=seed,
        key=key, reference=reference, timezone=timezone,
    )  # fmt: skip
    return pd.DataFrame(vintages.columns(issued_at, quantiles), index=actual.index)
