"""Flexibility quotes: how long a quote takes, and how close its cost is to applying the cap.

At 1,000 and 10,000 jobs (the default day scaled, its sites with it, as ``benchmarks service``
scales them: :func:`benchmarks.bench_service._scaled`) a server runs in this process on
loopback, plan only, its clock the evening before the day (so no slot has begun and a cap is
answered as the service answers one between its re-plans). Reported per size:

- **quote**: ``GetFlexibility`` over gRPC for a 3-hour window (12:00-15:00 local) at both
  sites with the default four shed levels each (eight quick plans of the capped day); median
  of :data:`REPEATS`, and as a ratio to one plain re-plan of the same day by the optimizer in
  this process (the solve a new day or a re-plan waits for);
- **applying the quote**: per site, the deepest default level quoted on time (else the
  shallowest), submitted for real as the quote's ``LOAD_LIMIT`` caps: its answer (OPT_IN or
  OPT_OUT, as quoted?) and its extra grid CO2 against the quoted one, then the extra CO2 once
  the optimizer's plan of the same caps has followed in the background (a quick plan is not
  the optimum). The event is cancelled before the next site is quoted.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from benchmarks.bench_service import _scaled
from scheduler.drivers.service.client import CapClient, cap_interval, pb
from scheduler.drivers.service.server import Running, ServeOptions, start
from scheduler.policies import get_policy

SIZES = (1_000, 10_000)
DAY = "2026-06-21"
TIMEZONE = "Asia/Shanghai"
DAY_START = pd.Timestamp(DAY).tz_localize(TIMEZONE).tz_convert("UTC")
NOW = DAY_START - pd.Timedelta(hours=4)
WINDOW = (pd.Timestamp(f"{DAY}T12:00").tz_localize(TIMEZONE),
          pd.Timestamp(f"{DAY}T15:00").tz_localize(TIMEZONE))  # fmt: skip
REPEATS = 3
LOOP_START = pd.Timestamp(f"{DAY}T11:00").tz_localize(TIMEZONE)
LOOP_SPEEDUP = 30.0  # a 15-minute slot in 30 s
SETTLE_LIMIT_S = 600.0


def _settled(running: Running) -> None:
    """Wait until no optimisation waits or runs in the background."""
    deadline = time.monotonic() + SETTLE_LIMIT_S
    while running.planner.background.pending and time.monotonic() < deadline:
        time.sleep(0.05)


def _co2_kg(db: Path, version: int) -> float:
    with sqlite3.connect(db) as connection:
        row = connection.execute(
            "SELECT metrics_json FROM plan_versions WHERE version = ?", (version,)
        ).fetchone()
    return float(json.loads(row[0])["co2_t"]) * 1000.0


def _applied(running: Running, client: CapClient, db: Path, site: str) -> dict:
    """Quote ``site`` over the window, submit the chosen level's caps, compare."""
    _settled(running)
    quote = client.flexibility([site], *WINDOW)
    flex = quote.sites[0]
    on_time = [c for c in flex.shed_costs if c.opt == pb.OPT_IN and c.shed_mw > 0]
    level = on_time[-1] if on_time else flex.shed_costs[0]
    intervals = [
        cap_interval(pd.Timestamp(slot.start.ToNanoseconds(), tz="UTC"), 900, mw, True)
        for slot, mw in zip(flex.slots, level.cap_mw, strict=True)
    ]
    before = _co2_kg(db, quote.plan_version)
    reply = client.submit(f"bench-{site}", [site], intervals)
    applied = _co2_kg(db, reply.plan_version) - before
    _settled(running)
    optimised = _co2_kg(db, client.plan().version) - before
    client.cancel(f"bench-{site}")
    return {
        "site": site,
        "level_mw": level.shed_mw,
        "largest_mw": flex.largest_on_time_shed_mw,
        "opt": f"{pb.Opt.Name(level.opt)} / {pb.Opt.Name(reply.opt)}",
        "quoted_kg": level.extra_co2_kg,
        "applied_kg": applied,
        "optimised_kg": optimised,
    }


def run(directory: Path, jobs: int) -> tuple[dict, list[dict]]:
    config = directory / f"flex-{jobs}.yaml"
    config.write_text(yaml.safe_dump(_scaled(jobs)))
    db = directory / f"flex-{jobs}.sqlite"
    options = ServeOptions(config=config, listen="127.0.0.1:0", db=db, date=DAY)
    running = start(options, clock=lambda: NOW)
    try:
        _settled(running)
        day = running.planner.day
        began = time.perf_counter()
        get_policy("optimizer", running.planner.config.solver).plan(day)
        replan_s = time.perf_counter() - began
        with CapClient(f"127.0.0.1:{running.port}", timeout_s=600) as client:
            seconds = []
            for _ in range(REPEATS):
                began = time.perf_counter()
                quote = client.flexibility([], *WINDOW)
                seconds.append(time.perf_counter() - began)
            levels = sum(len(site.shed_costs) for site in quote.sites)
            applied = [_applied(running, client, db, site) for site in ("qingyang", "shantou")]
    finally:
        running.stop(0)
    quote_s = statistics.median(seconds)
    row = {"jobs": day.n_jobs, "replan_s": replan_s, "quote_s": quote_s, "levels": levels,
           "ratio": quote_s / replan_s, "slots": len(quote.sites[0].slots)}  # fmt: skip
    return row, applied


def run_with_loop(directory: Path, jobs: int) -> list[float]:
    """A quote of 3 hours from the next slot at both sites, :data:`REPEATS` times, while the
    control loop runs the day on a simulated clock (no dispatch) from 11:00 local at
    :data:`LOOP_SPEEDUP`, from its first slot on. While the loop runs, the plan in force was made
    from an earlier boundary than the one the day now stands at, so each level is planned by
    the optimizer, as a submission then is [s]."""
    config = directory / f"flex-loop-{jobs}.yaml"
    config.write_text(yaml.safe_dump(_scaled(jobs)))
    options = ServeOptions(
        config=config, listen="127.0.0.1:0", db=directory / f"flex-loop-{jobs}.sqlite",
        date=DAY, loop=True, dispatch=False, clock_start=LOOP_START, speedup=LOOP_SPEEDUP,
        days=1, out=directory / "out",
    )  # fmt: skip
    running = start(options)
    seconds = []
    try:
        running.start_loop()
        deadline = time.monotonic() + SETTLE_LIMIT_S
        while running.planner.state is None and time.monotonic() < deadline:
            time.sleep(0.05)
        with CapClient(f"127.0.0.1:{running.port}", timeout_s=600) as client:
            for _ in range(REPEATS):
                state = running.planner.state
                assert state is not None
                start_at = pd.Timestamp(state.from_time)  # the next slot
                began = time.perf_counter()
                client.flexibility([], start_at, start_at + pd.Timedelta(hours=3))
                seconds.append(time.perf_counter() - began)
    finally:
        running.stop(0)
    return seconds


def _percent(quoted: float, real: float) -> str:
    if abs(real) < 1e-9:
        return "0.0" if abs(quoted) < 1e-9 else "n/a"
    return f"{100 * (quoted - real) / abs(real):+.1f}"


def main() -> None:
    warnings.filterwarnings("ignore")
    console = Console(width=180)
    rows, applied = [], []
    with tempfile.TemporaryDirectory(prefix="greensched-bench-flex-") as directory:
        for jobs in SIZES:
            row, sites = run(Path(directory), jobs)
            rows.append(row)
            applied += [{"jobs": row["jobs"], **site} for site in sites]
        looped = run_with_loop(Path(directory), SIZES[0])
    table = Table(title="flexibility quote, 3-hour window (12:00-15:00 local), both sites")
    for column in ("jobs", "slots", "levels costed", "quote s (median)", "re-plan s",
                   "quote / re-plan"):  # fmt: skip
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(f"{row['jobs']:,}", str(row["slots"]), str(row["levels"]),
                      f"{row['quote_s']:.3f}", f"{row['replan_s']:.2f}",
                      f"{row['ratio']:.3f}")  # fmt: skip
    console.print(table)
    looped_s = statistics.median(looped)
    console.print(
        f"with the loop running ({SIZES[0]:,} jobs, simulated clock from 11:00 at x"
        f"{LOOP_SPEEDUP:g}, no dispatch), 3 hours from the next slot: median "
        f"{looped_s:.2f} s of {len(looped)} ({', '.join(f'{v:.2f}' for v in looped)}), "
        f"{looped_s / rows[0]['replan_s']:.2f} x the re-plan of the whole day: each level is "
        "planned by the optimizer (the plan in force is from an earlier boundary), as a "
        "submission then is"
    )
    table = Table(title="a quoted shed level applied for real (extra grid CO2 of the whole plan)")
    for column in ("jobs", "site", "largest on-time MW", "level MW", "quoted / answered",
                   "quoted kg", "applied kg", "quoted vs applied %", "after optimiser kg",
                   "quoted vs optimised %"):  # fmt: skip
        table.add_column(column, justify="left" if column == "site" else "right")
    for r in applied:
        table.add_row(
            f"{r['jobs']:,}", r["site"], f"{r['largest_mw']:,.2f}", f"{r['level_mw']:,.2f}",
            r["opt"], f"{r['quoted_kg']:,.1f}", f"{r['applied_kg']:,.1f}",
            _percent(r["quoted_kg"], r["applied_kg"]), f"{r['optimised_kg']:,.1f}",
            _percent(r["quoted_kg"], r["optimised_kg"]),
        )  # fmt: skip
    console.print(table)
    console.print(
        "re-plan: the optimizer's plan of the same day in this process; quote: over gRPC, plan "
        "only, no slot begun; after optimiser: the plan in force once the background "
        "optimisation of the applied caps has ended (published only if better)"
    )
