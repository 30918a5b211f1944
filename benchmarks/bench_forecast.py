"""Forecast benchmark: a year of 15-minute supply for both default sites.

Prints rows per second and where the time goes (weather, resample, PV, wind, forecast error),
and compares one call for the whole year with the same year computed one day per call (what a
naive day-by-day replay would do). Ratios matter here, not absolute seconds.
"""

from __future__ import annotations

import time
import warnings

import pandas as pd
from rich.console import Console
from rich.table import Table

from scheduler.config import load_config
from scheduler.horizon import operating_day
from scheduler.pipeline import DayPipeline

SAMPLE_DAYS = 14  # days timed one call at a time, scaled to a year


def main() -> None:
    warnings.filterwarnings("ignore")
    config = load_config()
    sources = dict.fromkeys(config.sites, "synthetic")
    console = Console()

    year = operating_day("2026-01-01", config.timezone, 15, days=365)
    started = time.perf_counter()
    pipeline = DayPipeline(config, sources)
    run = pipeline.supply(year)
    year_s = time.perf_counter() - started
    rows = len(run.forecast)

    started = time.perf_counter()
    for offset in range(SAMPLE_DAYS):
        day = (pd.Timestamp("2026-01-01") + pd.Timedelta(days=offset)).date()
        DayPipeline(config, sources).supply(operating_day(day, config.timezone, 15))
    per_day_s = (time.perf_counter() - started) / SAMPLE_DAYS

    table = Table(title="forecast: a year of 15-min supply, 2 sites (synthetic weather)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("rows (site x slot)", f"{rows:,}")
    table.add_row("wall time, one call (s)", f"{year_s:.2f}")
    table.add_row("rows per second", f"{rows / year_s:,.0f}")
    for step, seconds in pipeline.model.timings_s.items():
        table.add_row(f"  {step} (s)", f"{seconds:.3f} ({seconds / year_s:.0%})")
    table.add_row("day-by-day, per day (s)", f"{per_day_s:.3f}")
    table.add_row("day-by-day year / one call (ratio)", f"{per_day_s * 365 / year_s:.1f}x")
    table.add_row("target: year for both sites < 2 s", "met" if year_s < 2 else "MISSED")
    console.print(table)


if __name__ == "__main__":
    main()
