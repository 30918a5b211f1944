"""Replay benchmark: a year of daily replays, two sites, default workload, all four policies.

Uses the real typical-year EPW files beside the project when present (Urumqi for qingyang,
Shanghai for shantou), synthetic weather otherwise. Prints wall time per simulated day and where
it goes (weather and supply once for the year, forecast, plan per policy, settle), compares
each policy's planning time with fifo's, and prints the year's summary table.
Set ``GREENSCHED_BENCH_DAYS`` for a shorter run.

Then the same days again with the optimizer re-planning the work left every
``GREENSCHED_BENCH_REPLAN_MINUTES`` (default 60; 0 skips) on the forecast vintage issued then
(fifo and the oracle do not re-plan, so their first-run totals stand): the optimizer's share of
the oracle's gain over fifo and its CO2 above the oracle's, once a day against re-planned, and
the wall time of the re-planned year (targets of the continuous-operation issue: 95 % or more,
under 1 %, under 10 minutes).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from scheduler.config import Config, load_config
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
    every = int(os.environ.get("GREENSCHED_BENCH_REPLAN_MINUTES", "60"))
    if every and {"fifo", "optimizer", "oracle"} <= summary["policies"].keys():
        _replanned(console, config, sources, last, every, summary)


def _replanned(
    console: Console, config: Config, sources: dict[str, str], last: str, every: int, once: dict
) -> None:
    """The optimizer re-planned every ``every`` minutes against its once-a-day run."""
    spec = ReplaySpec(config, sources, "2026-01-01", last, ("optimizer",),
                      replan_every=pd.Timedelta(minutes=every))  # fmt: skip
    started = time.perf_counter()
    result = replay(spec)
    wall_s = time.perf_counter() - started
    runs = {"once a day": once["policies"]["optimizer"],
            f"every {every} min": summarize(result)["policies"]["optimizer"]}  # fmt: skip
    fifo, oracle = once["policies"]["fifo"], once["policies"]["oracle"]
    title = (
        f"optimizer re-planning within the day on fresher forecasts ({wall_s / 60:.1f} min "
        f"for the {len(result.daily)} days re-planned)"
    )
    table = Table(title=title)
    for column in ("optimizer", "green share", "share of oracle's gain", "CO2 t",
                   "CO2 above oracle", "re-plans", "re-plan s"):  # fmt: skip
        table.add_column(column, justify="left" if column == "optimizer" else "right")
    gain = oracle["green_share"] - fifo["green_share"]
    for label, run in runs.items():
        table.add_row(
            label, f"{run['green_share']:.2%}",
            f"{(run['green_share'] - fifo['green_share']) / gain:.1%}" if gain > 0 else "-",
            f"{run['co2_t']:,.0f}", f"{run['co2_t'] / oracle['co2_t'] - 1:+.2%}",
            str(run.get("replans", 0)),
            f"{result.timings_s.get('replan', 0.0):.0f}" if label != "once a day" else "",
        )  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
