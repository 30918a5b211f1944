"""Driver: config + weather sources -> actual and day-ahead forecast supply tables.

Wires ``forecasts`` for the commands (forecast, plan, nightly, replay); holds no physics.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from forecasts.error import ForecastError
from forecasts.sources import SYNTHETIC, load_weather
from forecasts.supply import SupplyModel
from forecasts.weather import Weather
from scheduler.config import Config
from scheduler.horizon import Horizon

__all__ = [
    "SupplyRun",
    "forecast_error_of",
    "load_site_weather",
    "parse_weather_specs",
    "run_supply",
]


def parse_weather_specs(specs: Sequence[str], site_names: Sequence[str]) -> dict[str, str]:
    """``["synthetic"]`` or ``["qingyang=FILE", ...]`` -> ``{site: source}`` for every site.

    Sites not named get synthetic weather. Errors name the bad spec and the known sites.
    """
    sources = dict.fromkeys(site_names, SYNTHETIC)
    for spec in specs:
        if spec == SYNTHETIC:
            continue
        site, sep, path = spec.partition("=")
        if not sep or not path:
            raise ValueError(f"--weather {spec!r}: expected 'synthetic' or SITE=FILE")
        if site not in sources:
            raise ValueError(
                f"--weather {spec!r}: unknown site {site!r}; known sites: {', '.join(site_names)}"
            )
        if not Path(path).is_file():
            raise ValueError(f"--weather {spec!r}: no such file {path!r}")
        sources[site] = path
    return sources


def forecast_error_of(config: Config, scale: float = 1.0) -> ForecastError:
    """The config's day-ahead error model, optionally scaled (0 = perfect foresight)."""
    settings = config.forecast
    return ForecastError(
        settings.wind_nrmse, settings.pv_nrmse, settings.error_correlation_hours
    ).scaled(scale)


@dataclass
class SupplyRun:
    """What one forecast run produced: weather per site, actual and forecast supply tables."""

    weather: dict[str, Weather]
    actual: pd.DataFrame
    forecast: pd.DataFrame
    timings_s: dict[str, float] = field(default_factory=dict)


def load_site_weather(
    config: Config,
    horizon: Horizon,
    sources: Mapping[str, str],
    *,
    seed: int,
    only: Iterable[str] | None = None,
) -> dict[str, Weather]:
    """Weather for every site of ``config`` (or those in ``only``) over ``horizon``."""
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
        )
        for name, site in config.sites.items()
        if name in wanted
    }


def run_supply(
    config: Config,
    horizon: Horizon,
    sources: Mapping[str, str],
    *,
    seed: int | None = None,
    error_scale: float = 1.0,
) -> SupplyRun:
    """Weather -> actual supply -> day-ahead forecast for every site over ``horizon``."""
    seed = config.seed if seed is None else seed
    started = time.perf_counter()
    weather = load_site_weather(config, horizon, sources, seed=seed)
    weather_s = time.perf_counter() - started
    model = SupplyModel(config.sites, slot_minutes=horizon.slot_minutes)
    actual = model.actual(weather)
    forecast = model.forecast(actual, forecast_error_of(config, error_scale), seed)
    return SupplyRun(weather, actual, forecast, {"weather": weather_s, **model.timings_s})
