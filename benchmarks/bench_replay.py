"""Replay benchmark: a year of daily replays, two sites, default workload, all four policies.

Uses the real typical-year EPW files beside the project when present (Urumqi for qingyang,
Shanghai for shantou), synthetic weather otherwise. Prints wall time per simulated day and where
it goes (weather and supply once for the year, forecast, plan per policy, settle), compares
each policy's planning time with fifo's, and prints the year's summary table.
Set ``GREENSCHED_BENCH_DAYS`` for a shorter run.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from scheduler.config import load_config
from scheduler.drivers.replay import ReplaySpec, replay, summarize
from scheduler.drivers.replay_report import SUMMARY_COLUMNS, summary_lines

WEATHER = Path(__file__).resolve().parents[2] / "shared" / "data" / "weather"
FILES = {
    "qingyang": WEATHER / "CHN_Xinjiang.Uygur.Urumqi.514630_CSWD.epw",
    "shantou": WEATHER / "CHN_Shanghai.Shanghai.583620_CSWD.epw",
}


def main() -> None:
    warnings.filterwarnings("ignore")
    config = load_config()
    days = int(os.environ.get("GREENSCHED_BENCH_DAYS", "365"))
    real = all(path.exists() for path in FILES.values())
    sources = {s: str(FILES[s]) if real else "synthetic" for s in config.sites}
    last = (pd.Timestamp("2026-01-01") + pd.Timedelta(days=days - 1)).date().isoformat()
    started = time.perf_counter()
    result = replay(ReplaySpec(config, sources, "2026-01-01", last))
    wall_s = time.perf_counter() - started
    summary = summarize(result)
    console = Console(width=120)

    where = Table(title=f"replay: {days} days, 2 sites, 4 policies, "
                        f"{'real EPW' if real else 'synthetic'} weather")  # fmt: skip
    where.add_column("step")
    where.add_column("s per simulated day", justify="right")
    where.add_column("share", justify="right")
    where.add_column("vs plan_fifo", justify="right")
    fifo_s = result.timings_s.get("plan_fifo", 0.0)
    for step, seconds in result.timings_s.items():
        ratio = f"{seconds / fifo_s:.1f}x" if step.startswith("plan_") and fifo_s else ""
        where.add_row(step, f"{seconds / days:.3f}", f"{seconds / wall_s:.0%}", ratio)
    where.add_row("total wall", f"{wall_s / days:.3f}", "100%", "")
    target = "met" if wall_s * 365 / days < 300 else "MISSED"
    where.add_row(
        "year at this pace (min)", f"{wall_s * 365 / days / 60:.1f}", f"< 5: {target}", ""
    )
    console.print(where)

    totals = Table(title="the year's summary, settled on actual supply")
    for column in SUMMARY_COLUMNS:
        totals.add_column(column, justify="left" if column == "policy" else "right")
    for cells in summary_lines(summary):
        totals.add_row(*cells)
    console.print(totals)
    share = summary.get("optimizer_share_of_oracle_gain")
    if share is not None:
        console.print(f"optimizer reaches {share:.0%} of the oracle's gain over fifo")


if __name__ == "__main__":
    main()
