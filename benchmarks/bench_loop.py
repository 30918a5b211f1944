"""The control loop: does it keep pace, how fast does a cap bind, how long does a re-plan take.

1. **Pace**: `serve`'s loop runs one simulated day on an embedded Ray at a speed-up of 1440
   (a day in 60 s of wall time if it keeps pace); reported: wall time and its ratio to 60 s.
2. **Cap to enforcement**: during that day a coordinator submits a load cap for "now" over gRPC
   at three moments; reported per cap: the reply time, and from the reply to the start of the
   first slot that ran with the cap in force, in slots and simulated minutes.
3. **Re-plan from a mid-day state**: at 1,000 / 10,000 / 100,000 jobs the settlement engine runs
   the morning (48 slots) and the optimizer plans the work left from noon, as the loop does on
   a cap; p50 and worst of ``REPEATS`` re-plans.
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

from benchmarks.bench_plan import SIZES, scaled_problem
from scheduler.config import load_config
from scheduler.contracts import RUN, read_table
from scheduler.drivers.service.client import CapClient, cap_interval
from scheduler.drivers.service.server import ServeOptions, start
from scheduler.horizon import operating_day
from scheduler.pipeline import DayPipeline, remaining_problem
from scheduler.policies import get_policy
from scheduler.settlement import Settlement

DAY = "2026-06-21"
SPEEDUP = 1440.0
CAP_HOURS = (6, 12, 18)  # local hours at which a cap for "now" is submitted
REPEATS = {1_000: 5, 10_000: 3, 100_000: 2}


def _pace_and_caps(console: Console) -> None:
    config = load_config()
    day_start = pd.Timestamp(DAY).tz_localize(config.timezone)
    out = tempfile.mkdtemp(prefix="gs-loop-")
    running = start(
        ServeOptions(
            listen="127.0.0.1:0", db=Path(out) / "caps.sqlite", loop=True, dispatch=True,
            clock_start=day_start.tz_convert("UTC"), speedup=SPEEDUP, days=1, out=Path(out),
        )
    )  # fmt: skip
    assert running.loop is not None
    caps = []
    began = time.perf_counter()
    thread = running.start_loop()
    try:
        with CapClient(f"127.0.0.1:{running.port}") as client:
            for k, hour in enumerate(CAP_HOURS):
                while running.loop.clock.now() < day_start + pd.Timedelta(hours=hour):
                    time.sleep(0.05)
                sent = running.loop.clock.now()
                wall = time.perf_counter()
                value = 2.0 + k / 10
                client.submit(
                    f"now-{k}", ["shantou"], [cap_interval(sent, 3600, value, load_limit=True)]
                )
                replied = running.loop.clock.now()
                caps.append((sent, replied, time.perf_counter() - wall, value))
        thread.join()
        wall_s = time.perf_counter() - began
    finally:
        running.stop(0)
    run = read_table(RUN, Path(out) / DAY / "run.csv")
    shantou = run[run["site"] == "shantou"]

    table = Table(title=f"control loop: one day at speed-up {SPEEDUP:g} on an embedded Ray")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("wall time for the day (s)", f"{wall_s:.1f}")
    table.add_row("ratio to 60 s (1.00 = keeps pace)", f"{wall_s / (86400 / SPEEDUP):.2f}")
    for sent, replied, reply_s, value in caps:
        bound = shantou[(shantou["time"] >= replied) & (shantou["load_cap_mw"] == value)]
        first = bound["time"].min()
        slots = int(np.ceil((first - replied) / pd.Timedelta(minutes=15))) if len(bound) else -1
        local = sent.tz_convert(config.timezone)
        minutes = (first - replied).total_seconds() / 60
        table.add_row(
            f"cap for now at {local:%H:%M}: reply (wall ms) / to first capped slot",
            f"{reply_s * 1e3:.0f} ms / {slots} slot(s), {minutes:.1f} simulated min",
        )
    console.print(table)


def _replans(console: Console) -> None:
    config = load_config()
    horizon = operating_day("2026-06-15", config.timezone, config.forecast.slot_minutes)
    supply = DayPipeline(config).supply(horizon).forecast
    optimizer = get_policy("optimizer", config.solver)
    table = Table(title="re-plan of the work left from noon (engine ran the morning)")
    for column in ("jobs", "jobs left", "p50 s", "worst s"):
        table.add_column(column, justify="right")
    for n in SIZES:
        problem = scaled_problem(config, supply, n)
        plan = optimizer.plan(problem).plan
        engine = Settlement(problem, plan)
        for t in range(48):
            engine.step(t)
        noon = problem.horizon.times[48]
        live = {s.name: float(s.gpus) for s in problem.sites}
        seconds = []
        for _ in range(REPEATS[n]):
            began = time.perf_counter()
            rest = remaining_problem(problem, noon, engine.remaining_gpu_hours(), live)
            assert rest is not None
            optimizer.plan(rest)
            seconds.append(time.perf_counter() - began)
        table.add_row(f"{n:,}", f"{rest.n_jobs:,}", f"{np.median(seconds):.2f}",
                      f"{max(seconds):.2f}")  # fmt: skip
    console.print(table)


def main() -> None:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    console = Console(width=120)
    _replans(console)
    _pace_and_caps(console)


if __name__ == "__main__":
    main()
