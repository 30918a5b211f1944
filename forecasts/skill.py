"""Forecast skill by lead: a weather model's supply forecasts against what came, beside the
synthetic error model's on the same slots, and the error model's lead table fitted from them.

Pure functions over supply frames indexed by slot start (UTC) with ``pv_mw``, ``wind_mw``,
``green_mw`` [MW] (a forecast also ``green_mw_p10``, ``green_mw_p90``); reading runs and files
and printing are the drivers' (``greensched forecast-skill``, ``python -m benchmarks
fidelity``).

- **Truth**: what the forecasts are compared with. An *actual*: measured supply, or supply
  modelled from a dated weather file. Or a *reference*: another source's runs, each slot from
  the freshest run covering it (:func:`freshest`). A reference is a model too: against it the
  figures measure how far two models disagree, not either one's error.
- **Lead**: a slot's start minus its run's issue time [h]. Band ``k`` holds the leads in
  ``(edges[k], edges[k + 1]]``, the first band also ``edges[0]``: the bands of the error
  model's lead table (:meth:`~forecasts.error.ForecastError.nrmse_at`), so a fitted level
  applies to the leads it was measured on.
- **Bias** ``mean(forecast - truth) / capacity`` and **NRMSE**
  ``sqrt(mean((forecast - truth)^2)) / capacity`` [-]: wind over every slot (capacity: the
  farms' nameplate), PV over daylit slots (cos zenith at the slot's middle above
  :data:`DAYLIT_COS_ZENITH`, the error model's daylit rows; capacity: the inverters' AC
  limit), green over every slot (capacity: both). The error model's levels are defined the
  same way.
- **p10-p90 coverage**: the share of slots whose green truth lies in ``[p10, p90]`` (80 % when
  calibrated); with the shares below p10 and above p90 it sums to 1.
- **The error model's figures** (:func:`error_model_forecasts`): the configured
  :class:`~forecasts.error.ForecastError`'s vintages issued at the runs' issue times around
  the same truth, on the same slots. Its distribution is taken from the compared truth itself
  (:meth:`~forecasts.supply.SupplyModel.vintages`' default), so its NRMSE follows the
  configured level except where that exceeds 70 % of the truth's own variability
  (:data:`~forecasts.error.MAX_SHARE_OF_CLIMATOLOGY`).

Fitting: :func:`fit_lead_levels` turns a source's NRMSE by lead into the error model's lead
table; :func:`fit_spread_factor` searches the ensemble spread factor whose p10-p90 coverage is
nearest 80 % (:func:`ensemble_coverage`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from forecasts.error import ForecastError, LeadLevel, check_lead_levels
from forecasts.nwp.ensemble import run_supply
from forecasts.nwp.run import ForecastRun
from forecasts.solar import solar_position
from forecasts.specs import SupplySite
from forecasts.supply import SupplyModel
from scheduler.contracts.carriers import CARRIERS, capacities_mw, carrier_columns

__all__ = [
    "DAYLIT_COS_ZENITH",
    "DAY_AHEAD_LEADS_H",
    "DEFAULT_LEAD_EDGES_H",
    "MIN_FIT_SLOTS",
    "SKILL_COLUMNS",
    "SPREAD_FACTORS",
    "TARGET_COVERAGE",
    "LeadFit",
    "band_shares",
    "bias_of_capacity",
    "check_lead_edges",
    "daylit_slots",
    "ensemble_coverage",
    "error_model_forecasts",
    "fit_lead_levels",
    "fit_spread_factor",
    "freshest",
    "lead_bands",
    "lead_hours",
    "nrmse_of_capacity",
    "paired",
    "pool_adjacent_violators",
    "skill_by_lead",
]

DEFAULT_LEAD_EDGES_H = (0.0, 1.0, 3.0, 6.0, 12.0, 24.0, 48.0, 72.0, 120.0, 168.0, 240.0, 384.0)
"""Lead band edges [h]: the configured lead table's (1, 3, 6, 12 h), then a day, two, three,
five, seven, ten and sixteen (GFS's last lead)."""
TARGET_COVERAGE = 0.8
"""The p10-p90 coverage of calibrated quantiles [-]."""
DAYLIT_COS_ZENITH = 0.05
"""cos(solar zenith) at a slot's middle above which the slot is daylit (the error model's
daylit rows, sun above ~3 deg) [-]."""
MIN_FIT_SLOTS = 16
"""Fewest slots a lead band needs, of wind and of daylit PV, to give a fitted level."""
SPREAD_FACTORS = (0.25, 5.0)
"""Range the spread factor is searched in [-]: inside the bounds ``forecast.nwp.
ensemble_spread_factor`` accepts (above 0, at most 5)."""
DAY_AHEAD_LEADS_H = (24.0, 48.0)
"""Leads whose error becomes the day-ahead level [h]: beyond the last intraday level (a
day), up to the longest a plan looks ahead (two days, ``solver.look_ahead_days: 1``)."""
SKILL_COLUMNS = (
    "lead_from_h",
    "lead_to_h",
    "technology",
    "slots",
    "runs",
    "bias_of_capacity",
    "nrmse_of_capacity",
    "p10_p90_coverage",
    "below_p10",
    "above_p90",
)
"""Columns of :func:`skill_by_lead`'s table."""
_TECHNOLOGIES = (*(carrier.name for carrier in CARRIERS), "green")
_SUPPLY = [*carrier_columns(), "green_mw"]
_CLEAR_SKY = {carrier.name for carrier in CARRIERS if carrier.error_scale == "clear_sky"}
_TOLERANCE_MW = 1e-6  # a truth this close to a quantile counts as on it


def lead_hours(times: pd.DatetimeIndex, issued_at: pd.Timestamp) -> np.ndarray:
    """Lead of each slot start after the issue time [h]."""
    return np.asarray((pd.DatetimeIndex(times) - issued_at) / pd.Timedelta(hours=1), dtype=float)


def check_lead_edges(edges_h: Sequence[float] | np.ndarray) -> np.ndarray:
    """``edges_h`` as an array [h]; raises ``ValueError`` unless they are at least two leads
    >= 0, increasing."""
    edges = np.asarray(edges_h, dtype=float)
    if edges.size < 2 or edges[0] < 0 or (np.diff(edges) <= 0).any():
        raise ValueError(
            f"lead band edges must be at least two leads >= 0 h, increasing; got "
            f"{', '.join(f'{e:g}' for e in edges)}"
        )
    return edges


def lead_bands(
    lead_h: np.ndarray, edges_h: Sequence[float] | np.ndarray = DEFAULT_LEAD_EDGES_H
) -> np.ndarray:
    """Band index of each lead [h] (module doc: band ``k`` is ``(edges[k], edges[k + 1]]``, the
    first also ``edges[0]``); -1 for a lead outside ``[edges[0], edges[-1]]``."""
    edges = check_lead_edges(edges_h)
    lead = np.asarray(lead_h, dtype=float)
    band = np.searchsorted(edges, lead, side="left") - 1
    band = np.where(lead == edges[0], 0, band)
    return np.where((lead < edges[0]) | (lead > edges[-1]), -1, band)


def bias_of_capacity(forecast_mw: np.ndarray, truth_mw: np.ndarray, capacity_mw: float) -> float:
    """Mean error (forecast - truth) as a fraction of ``capacity_mw`` [-]; NaN without slots."""
    error = np.asarray(forecast_mw, dtype=float) - np.asarray(truth_mw, dtype=float)
    return float(np.mean(error)) / capacity_mw if error.size else float("nan")


def nrmse_of_capacity(forecast_mw: np.ndarray, truth_mw: np.ndarray, capacity_mw: float) -> float:
    """Root mean square error as a fraction of ``capacity_mw`` [-]; NaN without slots."""
    error = np.asarray(forecast_mw, dtype=float) - np.asarray(truth_mw, dtype=float)
    return float(np.sqrt(np.mean(error**2))) / capacity_mw if error.size else float("nan")


def band_shares(
    truth_mw: np.ndarray, p10_mw: np.ndarray, p90_mw: np.ndarray
) -> tuple[float, float, float]:
    """Shares of slots whose truth lies inside ``[p10, p90]``, below p10 and above p90 [-]
    (summing to 1; NaN without slots). A truth on a bound (within 1e-6 MW) is inside: at
    night with no wind, truth, p10 and p90 are all 0."""
    truth = np.asarray(truth_mw, dtype=float)
    if not truth.size:
        return float("nan"), float("nan"), float("nan")
    below = truth < np.asarray(p10_mw, dtype=float) - _TOLERANCE_MW
    above = truth > np.asarray(p90_mw, dtype=float) + _TOLERANCE_MW
    return float(np.mean(~below & ~above)), float(np.mean(below)), float(np.mean(above))


def daylit_slots(times: pd.DatetimeIndex, slot_minutes: int, site: SupplySite) -> np.ndarray:
    """Whether each slot (by its start, UTC) is daylit at ``site``: cos(zenith) at the slot's
    middle above :data:`DAYLIT_COS_ZENITH` (bool)."""
    unique = pd.DatetimeIndex(times).unique().sort_values()
    middles = unique + pd.Timedelta(minutes=slot_minutes) / 2
    zenith_deg = solar_position(middles, site.latitude, site.longitude, site.altitude_m)["zenith"]
    lit = pd.Series(np.cos(np.radians(zenith_deg.to_numpy())) > DAYLIT_COS_ZENITH, index=unique)
    return lit.reindex(pd.DatetimeIndex(times)).to_numpy(dtype=bool)


def freshest(runs: Mapping[pd.Timestamp, pd.DataFrame]) -> pd.DataFrame:
    """Per slot, the supply of the latest issued of ``runs`` (issue time -> supply by slot start)
    covering it: a reference built from a source's runs. Column ``issued_at`` says which run."""
    if not runs:
        raise ValueError("no run to take a reference from")
    stacked = pd.concat(
        [frame[_SUPPLY].assign(issued_at=issued_at) for issued_at, frame in runs.items()]
    )
    stacked = stacked.rename_axis("time").reset_index().dropna(subset=_SUPPLY)
    stacked = stacked.sort_values(["time", "issued_at"]).drop_duplicates("time", keep="last")
    return stacked.set_index("time")


def paired(forecasts: Mapping[pd.Timestamp, pd.DataFrame], truth: pd.DataFrame) -> pd.DataFrame:
    """Each run's forecast (issue time -> supply by slot start) beside the truth, one row per
    run and slot both give from the run's issue time on: ``issued_at``, ``time``, ``lead_h``,
    the forecast's columns and ``truth_pv_mw``, ``truth_wind_mw``, ``truth_green_mw`` [MW]."""
    truth_mw = truth[_SUPPLY].dropna().add_prefix("truth_")
    parts = []
    for issued_at, forecast in forecasts.items():
        joined = forecast.dropna(subset=_SUPPLY).join(truth_mw, how="inner")
        joined = joined[joined.index >= issued_at]
        parts.append(joined.assign(issued_at=issued_at, lead_h=lead_hours(joined.index, issued_at)))
    if not parts:
        columns = ["issued_at", "time", "lead_h", *_SUPPLY, *truth_mw.columns]
        return pd.DataFrame(columns=columns)
    out = pd.concat(parts).rename_axis("time").reset_index()
    first = ["issued_at", "time", "lead_h"]
    return out[[*first, *(c for c in out.columns if c not in first)]]


def skill_by_lead(
    pairs: pd.DataFrame,
    site: SupplySite,
    slot_minutes: int,
    edges_h: Sequence[float] = DEFAULT_LEAD_EDGES_H,
) -> pd.DataFrame:
    """Bias and NRMSE of wind, PV (daylit slots) and green, and green's p10-p90 coverage, per
    lead band of ``pairs`` (:func:`paired`) at ``site`` (module doc): the columns of
    :data:`SKILL_COLUMNS`, one row per band with slots and technology (PV with 0 slots and NaN
    figures in a band without daylight); coverage columns NaN for wind and PV and where the
    forecast has no quantiles."""
    edges = check_lead_edges(edges_h)
    band = lead_bands(pairs["lead_h"].to_numpy(dtype=float), edges)
    lit = daylit_slots(pd.DatetimeIndex(pairs["time"]), slot_minutes, site)
    capacity = capacities_mw(site)
    capacity["green"] = sum(capacity.values())
    quantiles = {"green_mw_p10", "green_mw_p90"} <= set(pairs.columns)
    rows = []
    for k in np.unique(band[band >= 0]).tolist():
        in_band = band == k
        for technology in _TECHNOLOGIES:
            kept = in_band & lit if technology in _CLEAR_SKY else in_band
            part = pairs[kept]
            forecast = part[f"{technology}_mw"].to_numpy(dtype=float)
            truth = part[f"truth_{technology}_mw"].to_numpy(dtype=float)
            shares = (float("nan"),) * 3
            if technology == "green" and quantiles:
                shares = band_shares(truth, part["green_mw_p10"], part["green_mw_p90"])
            rows.append(
                {
                    "lead_from_h": edges[k],
                    "lead_to_h": edges[k + 1],
                    "technology": technology,
                    "slots": len(part),
                    "runs": part["issued_at"].nunique(),
                    "bias_of_capacity": bias_of_capacity(forecast, truth, capacity[technology]),
                    "nrmse_of_capacity": nrmse_of_capacity(forecast, truth, capacity[technology]),
                    "p10_p90_coverage": shares[0],
                    "below_p10": shares[1],
                    "above_p90": shares[2],
                }
            )
    return pd.DataFrame(rows, columns=list(SKILL_COLUMNS))


def error_model_forecasts(
    truth: pd.DataFrame,
    site: SupplySite,
    model: SupplyModel,
    error: ForecastError,
    seed: int,
    slots: Mapping[pd.Timestamp, pd.DatetimeIndex],
) -> dict[pd.Timestamp, pd.DataFrame]:
    """The error model's forecast of ``truth`` (``site``'s supply by slot start) issued at each
    issue time of ``slots``, on those of its slots the truth covers: ``pv_mw``, ``wind_mw``,
    ``green_mw``, ``green_mw_p10``, ``green_mw_p90`` [MW] (module doc)."""
    table = truth[_SUPPLY].dropna().rename_axis("time").reset_index().assign(site=site.name)
    vintages = model.vintages(table, error, seed)
    out = {}
    for issued_at, times in slots.items():
        frame = vintages.at(issued_at).set_index("time").drop(columns="site")
        out[issued_at] = frame.loc[frame.index.intersection(times)]
    return out


@dataclass(frozen=True)
class LeadFit:
    """The error model's lead table fitted from a source's NRMSE by lead [-] (fractions of
    capacity; wind over all slots, PV over daylit ones): day-ahead ``wind_nrmse`` and
    ``pv_nrmse``, measured at leads ``day_ahead_leads_h`` [h], and the ``intraday`` levels;
    ``notes`` say which bands were left out or pooled, and why."""

    wind_nrmse: float
    pv_nrmse: float
    intraday: tuple[LeadLevel, ...]
    day_ahead_leads_h: tuple[float, float]
    notes: tuple[str, ...]

    def __post_init__(self) -> None:
        check_lead_levels(self.intraday, self.wind_nrmse, self.pv_nrmse)


def pool_adjacent_violators(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence nearest ``values`` in weighted least squares: each run of
    values that falls is replaced by its weighted mean (pool-adjacent-violators)."""
    blocks: list[list[float]] = []  # weighted sum, weight, count
    for value, weight in zip(np.asarray(values, float), np.asarray(weights, float), strict=True):
        blocks.append([value * weight, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] > blocks[-1][0] * blocks[-2][1]:
            total, weight_sum, count = blocks.pop()
            blocks[-1] = [blocks[-1][0] + total, blocks[-1][1] + weight_sum, blocks[-1][2] + count]
    return np.repeat([s / w for s, w, _ in blocks], [int(c) for _, _, c in blocks])


def _band_name(start_h: float, end_h: float) -> str:
    return f"{start_h:g}-{end_h:g} h"


def fit_lead_levels(
    skill: pd.DataFrame,
    *,
    min_slots: int = MIN_FIT_SLOTS,
    day_ahead_leads_h: tuple[float, float] = DAY_AHEAD_LEADS_H,
) -> LeadFit:
    """The error model's lead table from a source's skill by lead (:func:`skill_by_lead`).

    - Each band ending at or before ``day_ahead_leads_h[0]`` with at least ``min_slots`` slots
      of wind and of daylit PV gives an intraday level at its end; other bands are left out
      (their leads take the next level).
    - The day-ahead level is the NRMSE over the bands inside ``day_ahead_leads_h`` (pooled:
      the root of their slot-weighted mean square); when they have too few slots, the last
      intraday level becomes the day-ahead one.
    - Levels must grow with the lead: where they fall, the bands are pooled with those before
      (:func:`pool_adjacent_violators` on the mean square, weighted by slots, so a pooled
      level is the NRMSE over its bands).

    Raises ``ValueError`` when no band has enough slots.
    """
    notes: list[str] = []
    bands = []  # (start, end, {tech: (slots, mean square)})
    day_ahead: dict[str, list[tuple[int, float]]] = {"wind": [], "pv": []}
    beyond = False
    for (start, end), rows in skill.groupby(["lead_from_h", "lead_to_h"], sort=True):
        figures = {
            str(row.technology): (int(row.slots), float(row.nrmse_of_capacity) ** 2)
            for row in rows.itertuples()
            if row.technology in ("wind", "pv")
        }
        name = _band_name(float(start), float(end))
        if end <= day_ahead_leads_h[0]:
            short = [f"{figures[t][0]} {'daylit PV' if t == 'pv' else t}" for t in figures
                     if figures[t][0] < min_slots]  # fmt: skip
            if short:
                notes.append(f"band {name} left out: {', '.join(short)} slot(s), "
                             f"{min_slots} needed")  # fmt: skip
            else:
                bands.append((float(start), float(end), figures))
        elif start >= day_ahead_leads_h[0] and end <= day_ahead_leads_h[1]:
            for technology in day_ahead:
                if technology in figures and figures[technology][0]:
                    day_ahead[technology].append(figures[technology])
        elif start < day_ahead_leads_h[1]:
            notes.append(f"band {name} left out: it straddles the day-ahead leads "
                         f"{_band_name(*day_ahead_leads_h)}")  # fmt: skip
        else:
            beyond = True
    if beyond:
        notes.append(f"leads beyond {day_ahead_leads_h[1]:g} h not fitted: the error model "
                     "holds the day-ahead level there")  # fmt: skip
    pooled = {t: _pooled(day_ahead[t]) for t in day_ahead}
    measured = _band_name(*day_ahead_leads_h)
    if min(slots for slots, _ in pooled.values()) >= min_slots:
        leads = day_ahead_leads_h
        levels = {t: pooled[t] for t in pooled}
    elif bands:
        start, end, figures = bands.pop()
        leads = (start, end)
        levels = {t: figures[t] for t in ("wind", "pv")}
        notes.append(
            f"day-ahead leads {measured}: {pooled['wind'][0]} wind, {pooled['pv'][0]} daylit PV "
            f"slot(s), {min_slots} needed; the day-ahead level is that of band "
            f"{_band_name(start, end)}"
        )
    else:
        raise ValueError(
            f"no lead band has {min_slots} slots of wind and of daylit PV up to "
            f"{day_ahead_leads_h[1]:g} h; compare more runs or lower the slots needed"
        )
    fitted: dict[str, np.ndarray] = {}
    for technology in ("wind", "pv"):
        slots = [b[2][technology][0] for b in bands] + [levels[technology][0]]
        squares = [b[2][technology][1] for b in bands] + [levels[technology][1]]
        fitted[technology] = np.sqrt(pool_adjacent_violators(np.array(squares), np.array(slots)))
        raw = np.sqrt(squares)
        if not np.allclose(fitted[technology], raw):
            names = [_band_name(b[0], b[1]) for b in bands] + [f"day-ahead {_band_name(*leads)}"]
            changed = [n for n, a, b in zip(names, raw, fitted[technology], strict=True)
                       if not np.isclose(a, b)]  # fmt: skip
            notes.append(f"{technology}: levels falling with the lead pooled (bands "
                         f"{', '.join(changed)})")  # fmt: skip
    intraday = tuple(
        LeadLevel(end, float(fitted["wind"][i]), float(fitted["pv"][i]))
        for i, (_, end, _) in enumerate(bands)
    )
    return LeadFit(
        float(fitted["wind"][-1]), float(fitted["pv"][-1]), intraday, leads, tuple(notes)
    )


def _pooled(figures: Sequence[tuple[int, float]]) -> tuple[int, float]:
    """Slots and mean square of bands taken together."""
    slots = sum(n for n, _ in figures)
    return slots, (sum(n * square for n, square in figures) / slots if slots else float("nan"))


def _on_span(run: ForecastRun, start: pd.Timestamp, end: pd.Timestamp) -> ForecastRun | None:
    """``run`` with only its slots in ``[start, end]``; ``None`` with fewer than two."""
    weather = {}
    for member, member_weather in run.weather.items():
        data = member_weather.data.loc[start:end]
        if len(data) < 2:
            return None
        weather[member] = replace(member_weather, data=data)
    return replace(run, weather=weather)


def ensemble_coverage(
    runs: Sequence[ForecastRun],
    truth: pd.DataFrame,
    site: SupplySite,
    model: SupplyModel,
    error: ForecastError,
) -> Callable[[float], float]:
    """The p10-p90 coverage [-] of the ensemble ``runs``' green supply against ``truth`` as a
    function of the spread factor (:func:`~forecasts.nwp.ensemble.run_supply`), over every
    slot compared. Each run is cut to the truth's span once (each slot's quantiles come from
    that slot's members alone, so cutting changes none)."""
    truth_mw = truth[_SUPPLY].dropna()
    start, end = truth_mw.index[0], truth_mw.index[-1]
    cut = [r for r in (_on_span(run, start, end) for run in runs if run.is_ensemble) if r]

    def coverage_at(spread_factor: float) -> float:
        forecasts = {
            run.issued_at: run_supply(run, site, model, error, spread_factor=spread_factor)
            for run in cut
        }
        pairs = paired(forecasts, truth_mw)
        inside, _, _ = band_shares(
            pairs["truth_green_mw"], pairs["green_mw_p10"], pairs["green_mw_p90"]
        )
        return inside

    return coverage_at


def fit_spread_factor(
    coverage_at: Callable[[float], float],
    *,
    target: float = TARGET_COVERAGE,
    low: float = SPREAD_FACTORS[0],
    high: float = SPREAD_FACTORS[1],
    resolution: float = 0.01,
) -> tuple[float, float]:
    """The spread factor in ``[low, high]`` whose p10-p90 coverage (``coverage_at(factor)``)
    is nearest ``target``, to ``resolution``; and that coverage [-].

    A wider spread only widens each slot's band, so the coverage grows with the factor (in
    steps): bisection finds the smallest factor reaching the target, then it or the factor
    just below it is taken, whichever coverage is nearer. A target out of reach gives the
    bound nearer it."""
    seen: dict[float, float] = {}

    def at(factor: float) -> float:
        factor = round(factor, 6)
        if factor not in seen:
            seen[factor] = coverage_at(factor)
        return seen[factor]

    if at(low) >= target:
        return low, at(low)
    if at(high) < target:
        return high, at(high)
    below, reached = low, high  # at(below) < target <= at(reached)
    while reached - below > resolution:
        middle = round((below + reached) / 2 / resolution) * resolution
        if middle in (below, reached):
            break
        if at(middle) >= target:
            reached = middle
        else:
            below = middle
    best = min((below, reached), key=lambda f: (abs(at(f) - target), f))
    return round(best, 6), at(best)
