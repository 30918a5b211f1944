"""The day pipeline: config + operating day + weather + jobs + caps -> the planning problem.

One path for every driver (``plan``, ``nightly``, ``serve``, ``replay``, the re-planner of a
run): weather is read through ``forecasts``, the actual supply and the day-ahead forecast are
made with the config's error model and the seed, the day's jobs are drawn with a seed derived
from the date (or given), caps are checked against the sites, and the result is a
:class:`~scheduler.problem.Problem`. A replayed day therefore sees the same jobs and the same
forecast as ``greensched plan --date`` for that day.

The last step, :func:`plan_day`, plans a problem with several policies and validates and
scores every plan.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd

from forecasts.error import ForecastError, SiteReference
from forecasts.nwp.feed import RunFeed
from forecasts.nwp.sources import SOURCE_KINDS, forecast_source
from forecasts.sources import NO_PAD, SYNTHETIC, load_weather, on_dates, read_site_weather
from forecasts.supply import SupplyModel, Vintages
from forecasts.weather import ForecastSourceError, Weather
from scheduler.config import Config
from scheduler.contracts import UserError
from scheduler.feasibility import check_feasible
from scheduler.horizon import Horizon, operating_day, rows_in
from scheduler.jobs import generate_jobs, max_gpus_to_fit, validate_jobs, work_units
from scheduler.metrics import PlanMetrics, plan_metrics
from scheduler.policies import PlanResult, get_policy
from scheduler.problem import LoadCap, Problem, problem_for, purchased_green_mw
from scheduler.storage import UNIT_FIELDS, StorageGuide
from scheduler.validate import assert_valid

__all__ = [
    "REFERENCE_DAY_STRIDE",
    "WEATHER_PAD",
    "DayPipeline",
    "DayPlan",
    "SupplyRun",
    "carry_over",
    "day_seed",
    "forecast_error_of",
    "load_site_weather",
    "parse_forecast_specs",
    "parse_weather_specs",
    "plan_day",
    "sites_table",
    "summary_of",
]

log = logging.getLogger(__name__)

WEATHER_PAD = pd.Timedelta(days=1)
"""Weather read beyond a horizon on either side, so a day's supply does not depend on the
range it was computed in (resampling looks at neighbouring hours and whole days)."""
REFERENCE_DAY_STRIDE = 4
"""The forecast error's climatological reference samples every 4th day of the year: the same
distribution within sampling error (about 90 days, every season), a quarter of the cost of
modelling the whole year for every pipeline (a `plan` or a `serve` start)."""


def parse_weather_specs(
    specs: Sequence[str], site_names: Sequence[str], option: str = "--weather"
) -> dict[str, str]:
    """``["synthetic"]`` or ``["qingyang=FILE", ...]`` -> ``{site: source}`` for every site.

    Sites not named get synthetic weather. Errors name ``option``, the bad spec and the sites.
    """
    sources = dict.fromkeys(site_names, SYNTHETIC)
    for spec in specs:
        if spec == SYNTHETIC:
            continue
        site, sep, path = spec.partition("=")
        if not sep or not path:
            raise UserError(f"{option} {spec!r}: expected 'synthetic' or SITE=FILE")
        if site not in sources:
            raise UserError(
                f"{option} {spec!r}: unknown site {site!r}; known sites: {', '.join(site_names)}"
            )
        if not Path(path).is_file():
            raise UserError(f"{option} {spec!r}: no such file {path!r}")
        sources[site] = path
    return sources


def parse_forecast_specs(
    specs: Sequence[str], config: Config, option: str = "--forecast"
) -> dict[str, str]:
    """``forecast.nwp.sources`` of ``config`` (sites not named: ``synthetic``), overridden by
    ``["SITE=SOURCE", ...]`` (``"synthetic"`` alone: every site synthetic). Errors name
    ``option``, the bad spec and what is allowed; a source itself is checked when read."""
    sources = dict.fromkeys(config.sites, SYNTHETIC) | dict(config.forecast.nwp.sources)
    for spec in specs:
        if spec == SYNTHETIC:
            sources = dict.fromkeys(config.sites, SYNTHETIC)
            continue
        site, sep, source = spec.partition("=")
        if not sep or not source.strip():
            raise UserError(f"{option} {spec!r}: expected SITE=SOURCE; a source is {SOURCE_KINDS}")
        if site not in sources:
            raise UserError(
                f"{option} {spec!r}: unknown site {site!r}; known sites: {', '.join(config.sites)}"
            )
        sources[site] = source
    return sources


def forecast_error_of(config: Config, scale: float = 1.0) -> ForecastError:
    """The config's error model (day-ahead and intraday levels), optionally scaled (0 = perfect
    foresight)."""
    settings = config.forecast
    return ForecastError(
        settings.wind_nrmse,
        settings.pv_nrmse,
        settings.error_correlation_hours,
        settings.lead_levels,
    ).scaled(scale)


@dataclass
class SupplyRun:
    """What one forecast produced: weather per site, actual and forecast supply tables, and per
    site where the forecast came from (``runs``: the weather model run's source, model, issue
    time and members, or the synthetic error model)."""

    weather: dict[str, Weather]
    actual: pd.DataFrame
    forecast: pd.DataFrame
    runs: dict[str, dict] = field(default_factory=dict)


def load_site_weather(
    config: Config,
    horizon: Horizon,
    sources: Mapping[str, str],
    *,
    seed: int,
    only: Iterable[str] | None = None,
    pad: pd.Timedelta = NO_PAD,
) -> dict[str, Weather]:
    """Weather for every site of ``config`` (or those in ``only``) over ``horizon`` and ``pad``
    either side where the source has it."""
    wanted = set(config.sites if only is None else only)
    return {
        name: load_weather(
            site,
            sources.get(name, SYNTHETIC),
            horizon.start,
            horizon.end,
            freq_minutes=horizon.slot_minutes,
            seed=seed,
            max_gap_hours=config.forecast.max_gap_hours,
            far_station_km=config.forecast.far_station_km,
            time_shift=config.forecast.weather_time_shift,
            dni_rule=config.forecast.dni_rule,
            pad=pad,
        )
        for name, site in config.sites.items()
        if name in wanted
    }


def day_seed(seed: int, day: dt.date) -> int:
    """The seed of operating day ``day``'s generated jobs: the same day, the same jobs."""
    return seed * 1_000_003 + day.toordinal()


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _serialised(method: _Method) -> _Method:
    """Run ``method`` under the pipeline's lock (it caches weather and references)."""

    @functools.wraps(method)
    def locked(self: DayPipeline, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return cast(_Method, locked)


class DayPipeline:
    """Operating days of one config and set of weather sources, as planning problems.

    ``seed`` seeds synthetic weather, forecast errors and generated jobs (default: the
    config's); ``error_scale`` scales the forecast error (0 = perfect foresight).
    ``forecasts`` names, per site, a weather model's runs to forecast from (a file or a directory
    of runs; by default ``forecast.nwp.sources`` of the config, else ``synthetic``): a forecast
    issued at T then takes, for that site, the newest run published by T, and the error model
    only for slots the run does not cover; ``require_runs`` makes a missing run an error
    instead of a warning. Call
    :meth:`preload` before walking many days so their weather is read once. Forecast errors
    take their distribution from a climatological reference that does not depend on the days
    asked for: the actual supply of the local calendar year of each day (synthetic weather,
    typical years) or of a dated file's whole span, computed once per pipeline.
    """

    def __init__(
        self,
        config: Config,
        sources: Mapping[str, str] | None = None,
        *,
        seed: int | None = None,
        error_scale: float = 1.0,
        forecasts: Mapping[str, str] | None = None,
        require_runs: bool = False,
    ) -> None:
        self.config = config
        self.sources = dict(sources or dict.fromkeys(config.sites, SYNTHETIC))
        self.seed = config.seed if seed is None else seed
        self.error = forecast_error_of(config, error_scale)
        self.model = SupplyModel(config.sites, slot_minutes=config.forecast.slot_minutes)
        self.weather: dict[str, Weather] = {}
        self._actual: pd.DataFrame | None = None
        self._covered: Horizon | None = None
        self._files: dict[str, Weather] = {}  # whole weather files, read and checked once
        self._references: dict[tuple[str, int | None], SiteReference] = {}
        self._prepared: tuple[Horizon, pd.DataFrame, list[Vintages]] | None = None
        self.timings_s = {"weather_and_supply": 0.0, "forecast": 0.0}
        self._lock = threading.RLock()  # one caller at a time: a live loop and its planner
        self.feed = self._feed(config.forecast.nwp.sources if forecasts is None else forecasts)
        self.require_runs = require_runs

    def _feed(self, specs: Mapping[str, str]) -> RunFeed | None:
        """The feed of the sites forecast from weather model runs (sites sharing a spec share
        its source); ``None`` when every site is synthetic."""
        by_spec: dict[str, object] = {}
        sources = {}
        for site, spec in specs.items():
            if spec not in by_spec:
                by_spec[spec] = forecast_source(spec, self.config.forecast.nwp)
            if by_spec[spec] is not None:
                sources[site] = by_spec[spec]
        if not sources:
            return None
        return RunFeed(
            sources,  # type: ignore[arg-type]
            self.config.sites,
            self.model,
            self.error,
            spread_factor=self.config.forecast.nwp.ensemble_spread_factor,
        )

    def horizon(self, day: dt.date | str, days: int = 1) -> Horizon:
        """Operating day(s) from ``day`` in the sites' zone."""
        try:
            return operating_day(day, self.config.timezone, self.config.forecast.slot_minutes, days)
        except ValueError as error:
            raise UserError(str(error)) from None

    def _file(self, name: str) -> Weather | None:
        """Site ``name``'s weather file, whole, read and checked once; ``None`` if synthetic."""
        site, source, settings = self.config.sites[name], self.sources[name], self.config.forecast
        if source == SYNTHETIC:
            return None
        if name not in self._files:
            self._files[name] = read_site_weather(
                site, source, max_gap_hours=settings.max_gap_hours,
                far_station_km=settings.far_station_km, time_shift=settings.weather_time_shift,
                dni_rule=settings.dni_rule,
            )  # fmt: skip
        return self._files[name]

    def _site_weather(self, name: str, start: pd.Timestamp, end: pd.Timestamp) -> Weather:
        """Weather of site ``name`` over ``[start, end)`` and :data:`WEATHER_PAD` either side."""
        file = self._file(name)
        if file is None:
            return load_weather(
                self.config.sites[name], SYNTHETIC, start, end,
                freq_minutes=self.config.forecast.slot_minutes, seed=self.seed, pad=WEATHER_PAD,
            )  # fmt: skip
        return on_dates(file, start, end, WEATHER_PAD)

    @_serialised
    def preload(self, horizon: Horizon) -> None:
        """Read weather and compute the actual supply for ``horizon`` at once."""
        started = time.perf_counter()
        self.weather = {
            name: self._site_weather(name, horizon.start, horizon.end) for name in self.config.sites
        }
        self._actual = self.model.actual(self.weather)
        self._covered = horizon
        self._prepared = None
        self.timings_s["weather_and_supply"] += time.perf_counter() - started

    @_serialised
    def reference(self, name: str, year: int) -> SiteReference:
        """The error model's reference of site ``name`` for days of local calendar ``year``: the
        actual supply of that year, or of a dated weather file's whole span, on every
        :data:`REFERENCE_DAY_STRIDE`-th day; computed once."""
        file = self._file(name)
        dated = file is not None and not file.typical_year
        key = (name, None if dated else year)
        if key not in self._references:
            started = time.perf_counter()
            site = self.config.sites[name]
            if file is not None and dated:
                supply = self.model.site_actual(site, file, self._reference_days)
            else:
                days = (dt.date(year + 1, 1, 1) - dt.date(year, 1, 1)).days
                supply = self._site_actual(name, self.horizon(dt.date(year, 1, 1), days))
            self._references[key] = self.model.site_reference(site, supply)
            self.timings_s["weather_and_supply"] += time.perf_counter() - started
        return self._references[key]

    def _reference_days(self, times: pd.DatetimeIndex) -> np.ndarray:
        """Slots of the days a reference samples: every :data:`REFERENCE_DAY_STRIDE`-th local
        day of the year (bool mask)."""
        day = times.tz_convert(self.config.timezone).dayofyear.to_numpy()
        return np.asarray((day - 1) % REFERENCE_DAY_STRIDE == 0)

    def _site_actual(self, name: str, span: Horizon) -> pd.DataFrame:
        """Actual supply of site ``name`` on the reference days of ``span``, indexed by slot
        start: taken from the preloaded supply when it covers ``span`` (the same values, by
        :data:`WEATHER_PAD`)."""
        covered = self._covered
        if (
            self._actual is not None
            and covered is not None
            and (covered.start <= span.start and span.end <= covered.end)
        ):
            rows = rows_in(self._actual, span)
            rows = rows[rows["site"] == name].set_index("time").drop(columns="site")
            return rows[self._reference_days(pd.DatetimeIndex(rows.index))]
        frame = self.model.site_actual(
            self.config.sites[name],
            self._site_weather(name, span.start, span.end),
            self._reference_days,
        )
        return frame[(frame.index >= span.start) & (frame.index < span.end)]

    @_serialised
    def supply(self, horizon: Horizon, issued_at: pd.Timestamp | None = None) -> SupplyRun:
        """Actual supply and the forecast over ``horizon`` issued at ``issued_at`` (UTC; slots
        starting before it are the actual), by default the day-ahead forecast. What every
        vintage of ``horizon`` shares is prepared once (for the last horizon asked)."""
        covered = self._covered
        if covered is None or horizon.start < covered.start or horizon.end > covered.end:
            self.preload(horizon)
        actual, vintages = self._vintages_of(horizon)
        started = time.perf_counter()
        parts = [by_year.at(issued_at) for by_year in vintages]
        forecast = (
            parts[0]
            if len(parts) == 1
            else pd.concat(parts).sort_values(["site", "time"], ignore_index=True)
        )
        runs = {name: {"source": SYNTHETIC} for name in self.config.sites}
        if self.feed is not None:
            forecast, from_runs = self._from_runs(forecast, horizon, issued_at)
            runs.update(from_runs)
        self.timings_s["forecast"] += time.perf_counter() - started
        # a shallow copy per call: a caller changing its table leaves the prepared one alone
        return SupplyRun(self.weather, actual.copy(deep=False), forecast, runs)

    def _from_runs(
        self, forecast: pd.DataFrame, horizon: Horizon, issued_at: pd.Timestamp | None
    ) -> tuple[pd.DataFrame, dict[str, dict]]:
        """``forecast`` with the rows of the sites forecast from weather model runs taken from
        the newest run published by ``issued_at`` (the day-ahead forecast: by the horizon's
        start); slots before ``issued_at`` stay actual, slots the run does not cover keep the
        error model's forecast."""
        assert self.feed is not None
        at = horizon.start if issued_at is None else pd.Timestamp(issued_at)
        found = self.feed.at(at)
        forecast = forecast.copy()
        times = pd.DatetimeIndex(forecast["time"])
        sites = forecast["site"].to_numpy()
        runs: dict[str, dict] = {}
        for name, source in self.feed.sources.items():
            rows = np.flatnonzero((sites == name) & (times >= at))
            if name not in found:
                self._missing_run(f"site {name!r}: no run in {source.label} was published by "
                                  f"{at.isoformat()}")  # fmt: skip
                runs[name] = {"source": source.label, "model": None, "slots_from_run": 0,
                              "slots": len(rows)}  # fmt: skip
                continue
            site_forecast = found[name]
            values = site_forecast.supply.reindex(times[rows])
            covered = values["green_mw"].notna().to_numpy()
            if not covered.all():
                run = site_forecast.run
                self._missing_run(
                    f"site {name!r}: the {run.model} run issued {run.issued_at.isoformat()} "
                    f"covers {int(covered.sum())} of the {len(rows)} slots from "
                    f"{at.isoformat()}; the rest are forecast by the error model",
                    fatal=not covered.any(),
                )
            for column in forecast.columns.intersection(values.columns):
                target = forecast.columns.get_loc(column)
                forecast.iloc[rows[covered], target] = values[column].to_numpy()[covered]
            runs[name] = site_forecast.run.describe() | {
                "slots_from_run": int(covered.sum()),
                "slots": len(rows),
            }
        return forecast, runs

    def _missing_run(self, message: str, fatal: bool = True) -> None:
        """A forecast the runs do not give: an error when runs are required and nothing could
        be taken from them, else a warning."""
        if self.require_runs and fatal:
            raise ForecastSourceError(message)
        log.warning(message)

    def _vintages_of(self, horizon: Horizon) -> tuple[pd.DataFrame, list[Vintages]]:
        """The actual supply over ``horizon`` and the forecast vintages of each local calendar
        year in it (the error model's reference is per year); kept for the last horizon."""
        if self._prepared is None or self._prepared[0] != horizon:
            assert self._actual is not None
            actual = rows_in(self._actual, horizon)
            years = pd.DatetimeIndex(actual["time"]).tz_convert(self.config.timezone).year
            vintages = []
            for year in np.unique(years):
                rows = actual[years == year]
                references = {
                    str(name): self.reference(str(name), int(year))
                    for name in rows["site"].unique()
                }
                started = time.perf_counter()
                vintages.append(
                    self.model.vintages(rows, self.error, self.seed, reference=references)
                )
                self.timings_s["forecast"] += time.perf_counter() - started
            self._prepared = (horizon, actual, vintages)
        return self._prepared[1], self._prepared[2]

    def jobs(self, horizon: Horizon) -> pd.DataFrame:
        """The day's jobs drawn from the workload classes; ids start with the local date."""
        day = horizon.start.tz_convert(self.config.timezone).date()
        jobs = generate_jobs(
            self.config.workload,
            horizon.start,
            day_seed(self.seed, day),
            list(self.config.sites),
            horizon.slot_minutes,
        )
        return jobs.assign(job_id=f"{day.isoformat()}:" + jobs["job_id"])

    @_serialised
    def problem(
        self,
        horizon: Horizon,
        *,
        jobs: pd.DataFrame | None = None,
        caps: Sequence[LoadCap] = (),
        carried: pd.DataFrame | None = None,
        jobs_source: str = "jobs row",
    ) -> Problem:
        """The planning problem of ``horizon``: supply, jobs (given or drawn) plus ``carried``
        work from earlier days, and ``caps``. Given jobs are checked against the horizon and
        the sites (errors name ``jobs_source`` and the row)."""
        if jobs is None:
            jobs = self.jobs(horizon)
        else:
            first_row = 2 if jobs_source.endswith(" line") else 1
            validate_jobs(jobs, horizon, list(self.config.sites), jobs_source, first_row)
        if carried is not None and len(carried):
            jobs = pd.concat([carried, jobs], ignore_index=True)
        run = self.supply(horizon)
        return problem_for(
            self.config, horizon, jobs, run.forecast, caps=caps, actual_supply=run.actual
        )


def carry_over(jobs: pd.DataFrame, remaining_gpu_hours: pd.Series, day: Horizon) -> pd.DataFrame:
    """Jobs rows for work left unfinished: released at ``day``'s start, due at its end."""
    left = remaining_gpu_hours[remaining_gpu_hours > 1e-9]
    carried = jobs.set_index("job_id").loc[left.index].reset_index()
    fraction = left.to_numpy() / carried["gpu_hours"].to_numpy()
    carried["tokens"] = carried["tokens"] * fraction
    carried["gpu_hours"] = left.to_numpy()
    carried["release"] = day.start
    carried["deadline"] = day.end
    units = work_units(carried["gpu_hours"].to_numpy(), day.slot_minutes)
    carried["max_gpus"] = max_gpus_to_fit(carried["max_gpus"].to_numpy(), units, day.n_slots)
    return carried


@dataclass(frozen=True)
class DayPlan:
    """Every policy's validated result and metrics for one problem; ``primary`` is the plan."""

    problem: Problem
    primary: str
    results: dict[str, PlanResult]
    metrics: dict[str, PlanMetrics]


def plan_day(problem: Problem, config: Config, policies: Sequence[str]) -> DayPlan:
    """Plan ``problem`` with each policy (the first is primary), validate and score each.

    Raises :class:`~scheduler.feasibility.PlanningError` first if a job fits nowhere.
    """
    check_feasible(problem)
    results, metrics = {}, {}
    for name in dict.fromkeys(policies):
        result = get_policy(name, config.solver).plan(problem)
        assert_valid(problem, result)
        results[name] = result
        metrics[name] = plan_metrics(
            result.plan, problem.jobs, problem.supply, problem.sites, problem.horizon, problem.caps,
            problem.initial_load_mw, problem.soc_start_mwh, result.storage_guide,
        )  # fmt: skip
    return DayPlan(problem, policies[0], results, metrics)


def sites_table(problem: Problem) -> pd.DataFrame:
    """The sites table: every site parameter the plan was made with (carbon and price as the
    day's means, latency to the problem's user region; an absent ramp limit or latency NaN)."""
    sites = problem.sites

    def column(name: str) -> list[float]:
        return [math.nan if getattr(s, name) is None else getattr(s, name) for s in sites]

    return pd.DataFrame(
        {
            "site": [s.name for s in sites],
            "gpus": [s.gpus for s in sites],
            "kw_per_gpu": [s.kw_per_gpu for s in sites],
            "pue": [s.pue for s in sites],
            "base_load_mw": [s.base_load_mw for s in sites],
            "grid_import_limit_mw": [s.grid_import_limit_mw for s in sites],
            "carbon_kg_per_mwh": problem.carbon_kg_per_mwh.mean(axis=1),
            "price_per_mwh": problem.price_per_mwh.mean(axis=1),
            "ramp_up_mw_per_min": column("ramp_up_mw_per_min"),
            "ramp_down_mw_per_min": column("ramp_down_mw_per_min"),
            "user_latency_ms": [s.latency_ms.get(problem.user_region, math.nan) for s in sites],
        }
    )


def storage_table(problem: Problem) -> pd.DataFrame:
    """The storage units table: each unit the plan was scored with, and the energy it held
    before the day (:attr:`~scheduler.problem.Problem.soc_start_mwh`)."""
    units = [
        (site.name, name, unit) for site in problem.sites for name, unit in site.storage.items()
    ]
    return pd.DataFrame(
        {
            "site": [site for site, _, _ in units],
            "unit": [name for _, name, _ in units],
            **{c: [float(getattr(unit, c)) for _, _, unit in units] for c in UNIT_FIELDS},
            "state_of_charge_start": problem.soc_start_mwh.astype(float),
        }
    )


def storage_plan_table(problem: Problem, guide: StorageGuide) -> pd.DataFrame:
    """The storage plan table of ``guide`` (how a plan of ``problem`` runs its units)."""
    units = [(site.name, name) for site in problem.sites for name in site.storage]
    n_slots = problem.horizon.n_slots
    return pd.DataFrame(
        {
            "site": np.repeat([site for site, _ in units], n_slots),
            "unit": np.repeat([name for _, name in units], n_slots),
            "time": np.tile(problem.horizon.times, len(units)),
            **{name: getattr(guide, name).ravel() for name in StorageGuide.FIELDS},
        }
    )


def storage_guide_of(problem: Problem, table: pd.DataFrame) -> StorageGuide:
    """The guide a storage plan table gives ``problem``'s units (NaN where it has no row)."""
    units = [(site.name, name) for site in problem.sites for name in site.storage]
    guide = StorageGuide.empty(len(units), problem.horizon.n_slots, problem.horizon.start)
    row = {unit: u for u, unit in enumerate(units)}
    unit = np.array([row.get(key, -1) for key in zip(table["site"], table["unit"], strict=True)])
    slot = problem.horizon.times.get_indexer(pd.DatetimeIndex(table["time"]))
    keep = (unit >= 0) & (slot >= 0)
    for name in StorageGuide.FIELDS:
        getattr(guide, name)[unit[keep], slot[keep]] = table[name].to_numpy(dtype=float)[keep]
    return guide


def purchases_table(problem: Problem) -> pd.DataFrame:
    """The green purchases table: each site's purchase, what it delivers in the day [MWh]."""
    delivered = purchased_green_mw(problem.sites, problem.horizon).sum(axis=1) * problem.slot_hours
    bought = [(s, site.name, site.green_purchase) for s, site in enumerate(problem.sites)
              if site.green_purchase is not None]  # fmt: skip
    return pd.DataFrame(
        {
            "site": [name for _, name, _ in bought],
            "delivered_mwh": [float(delivered[s]) for s, _, _ in bought],
            "price_per_mwh": [purchase.price_per_mwh for _, _, purchase in bought],
        }
    )


def summary_of(day: DayPlan) -> dict:
    """``summary.json``: one entry per policy, metrics plus solver facts."""
    out = {}
    for name, result in day.results.items():
        out[name] = {
            **day.metrics[name].to_dict(),
            "status": result.status,
            "solve_seconds": result.solve_seconds,
            "objective_kg": result.objective_kg,
            "best_bound_kg": result.best_bound_kg,
            "gap": result.gap,
            "ramp_cost_kg": result.ramp_cost_kg,
            "jobs_unfinished_ids": result.jobs_unfinished,
        }
    return out
