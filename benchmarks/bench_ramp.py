"""Ramp benchmark: how calm each policy's settled load is, with ramp limits off and on.

Replays the ten days of issue 13 (2026-03-01 to 03-10) and a year on the shared EPW files
(Urumqi for qingyang, Shanghai for shantou; synthetic weather when they are absent), once with
every site's ramp limits removed and once with the config's limits, and prints per policy and
site the total swing (sum of absolute steps between adjacent slots of the settled load), the
largest step, the slots over the ramp limit (counted against the config's limits in both
runs, every step of the whole run, midnight included, no exemption) and the steps above 5 MW
(the issue's count), the green share, and the optimizer's share of the oracle's gain over
fifo. Targets with limits on: 0 slots over the limit, the optimizer's swing at most 1.5 times
fifo's, and its share of the oracle's gain within 1 percentage point of the run without
limits.

The year runs only when the ten days say it fits in ``GREENSCHED_BENCH_YEAR_MAX_S`` seconds
(default 600) for both runs; otherwise it is skipped with a note.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from scheduler.config import Config, load_config
from scheduler.drivers.replay import ReplaySpec, replay, summarize
from scheduler.ramps import ramp_limits_mw, ramp_stats

WEATHER = Path(__file__).resolve().parents[2] / "shared" / "data" / "weather"
FILES = {
    "qingyang": WEATHER / "CHN_Xinjiang.Uygur.Urumqi.514630_CSWD.epw",
    "shantou": WEATHER / "CHN_Shanghai.Shanghai.583620_CSWD.epw",
}
TEN_DAYS = ("2026-03-01", "2026-03-10")
YEAR = ("2026-01-01", "2026-12-31")
STEP_MW = 5.0  # the count: steps above this [MW per slot]


def without_ramps(config: Config) -> Config:
    """``config`` with every site's ramp limits removed."""
    off = {"ramp_up_mw_per_min": None, "ramp_down_mw_per_min": None}
    return config.updated({"sites": {name: off for name in config.sites}})


def run(config: Config, sources: dict[str, str], first: str, last: str, limits: Config) -> dict:
    """Replay ``first``..``last``; per policy the green share and the steps of the settled load,
    counted against the ramp limits of ``limits`` and above :data:`STEP_MW`."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = replay(ReplaySpec(config, sources, first, last), Path(tmp))
        wall_s = time.perf_counter() - started
        load = pd.read_csv(Path(tmp) / "site_load.csv")
    summary = summarize(result)
    sites = tuple(limits.sites.values())
    up_mw, down_mw = ramp_limits_mw(sites, limits.forecast.slot_minutes)
    out = {"wall_s": wall_s, "share": summary.get("optimizer_share_of_oracle_gain")}
    for name, totals in summary["policies"].items():
        part = load[load["policy"] == name]
        series = part.pivot(index="time", columns="site", values="load_mw").sort_index()
        mw = series[[s.name for s in sites]].to_numpy().T  # [site, slot] over the whole run
        stats = ramp_stats(mw, up_mw, down_mw)
        steps = np.abs(np.diff(mw, axis=1))
        out[name] = {
            "green_share": totals["green_share"],
            "swing_mw": dict(zip(series.columns, stats.total_swing_mw.tolist(), strict=True)),
            "largest_mw": dict(zip(series.columns, stats.largest_step_mw.tolist(), strict=True)),
            "over": dict(zip(series.columns, stats.slots_over_ramp.tolist(), strict=True)),
            "over_5_mw": dict(zip(series.columns, (steps > STEP_MW).sum(axis=1).tolist(),
                                  strict=True)),
        }  # fmt: skip
    return out


def _cell(values: dict[str, float], spec: str) -> str:
    return " / ".join(format(v, spec) for v in values.values())


def table(title: str, off: dict, on: dict, sites: list[str]) -> Table:
    view = Table(title=title)
    for column in ("limits", "policy", "green share", f"total swing MW ({' / '.join(sites)})",
                   "largest step MW", "slots over limit", f"steps > {STEP_MW:g} MW",
                   "swing / fifo's"):  # fmt: skip
        view.add_column(column, justify="left" if column in ("limits", "policy") else "right")
    for label, runs in (("off", off), ("on", on)):
        fifo_swing = sum(runs["fifo"]["swing_mw"].values()) if "fifo" in runs else np.nan
        for name in ("fifo", "greedy", "optimizer", "oracle"):
            row = runs[name]
            swing = sum(row["swing_mw"].values())
            view.add_row(
                label, name, f"{row['green_share']:.2%}", _cell(row["swing_mw"], ",.0f"),
                _cell(row["largest_mw"], ".1f"), _cell(row["over"], "d"),
                _cell(row["over_5_mw"], "d"),
                f"{swing / fifo_swing:.2f}",
            )  # fmt: skip
    return view


def _report(console: Console, title: str, off: dict, on: dict, sites: list[str]) -> None:
    console.print(table(title, off, on, sites))
    share_off, share_on = off["share"], on["share"]
    if share_off is not None and share_on is not None:
        console.print(
            f"optimizer's share of the oracle's gain over fifo: off {share_off:.1%}, on "
            f"{share_on:.1%} ({(share_on - share_off) * 100:+.1f} pp; target within 1 pp)"
        )
    ratio = sum(on["optimizer"]["swing_mw"].values()) / sum(on["fifo"]["swing_mw"].values())
    over = sum(sum(on[p]["over"].values()) for p in ("fifo", "greedy", "optimizer", "oracle"))
    console.print(
        f"limits on: optimizer swing {ratio:.2f}x fifo's (target <= 1.5); slots over the limit "
        f"{over} (target 0); wall {off['wall_s']:.0f} s off, {on['wall_s']:.0f} s on"
    )


def main() -> None:
    warnings.filterwarnings("ignore")
    console = Console(width=140)
    config = load_config()
    real = all(path.exists() for path in FILES.values())
    sources = {s: str(FILES[s]) if real else "synthetic" for s in config.sites}
    sites = list(config.sites)
    limits = ", ".join(
        f"{s.name} up {s.ramp_up_mw_per_min} / down {s.ramp_down_mw_per_min} MW/min"
        for s in config.sites.values()
    )
    weather = "shared EPW files" if real else "synthetic (EPW files absent)"
    console.print(f"weather: {weather}; ramp limits on: {limits}")
    off = run(without_ramps(config), sources, *TEN_DAYS, limits=config)
    on = run(config, sources, *TEN_DAYS, limits=config)
    _report(console, f"ten days {TEN_DAYS[0]} to {TEN_DAYS[1]}", off, on, sites)

    budget_s = float(os.environ.get("GREENSCHED_BENCH_YEAR_MAX_S", "600"))
    estimate_s = (off["wall_s"] + on["wall_s"]) * 36.5
    if estimate_s > budget_s:
        console.print(
            f"year skipped: the ten days took {off['wall_s'] + on['wall_s']:.0f} s, so a year "
            f"off and on would take about {estimate_s / 60:.0f} min, over "
            f"GREENSCHED_BENCH_YEAR_MAX_S={budget_s:.0f} s (raise it to run the year)"
        )
        return
    year_off = run(without_ramps(config), sources, *YEAR, limits=config)
    year_on = run(config, sources, *YEAR, limits=config)
    _report(console, f"year {YEAR[0]} to {YEAR[1]}", year_off, year_on, sites)


if __name__ == "__main__":
    main()
