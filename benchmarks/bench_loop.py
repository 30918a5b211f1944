"""The control loop: does it keep pace, how fast does a cap bind, how long does a re-plan take.

1. **Pace**: `serve`'s loop runs one simulated day on an embedded Ray at a speed-up of 1440
   (a day in 60 s of wall time if it keeps pace); reported: wall time and its ratio to 60 s.
   The same day then runs four times more on the same Ray (its workers warm: the first
   simulated hours of a day on a cold Ray lag by 1 to 3 hours, more than any other
   difference between runs), each on a fresh database, the second and third time with its
   ``--metrics`` scraped every second as Prometheus does
   (:func:`benchmarks.bench_service.scraping`); reported as the mean of each kind and their
   ratio: the wall time, the time the settlement engine spent in the slots (its ``wall_s``)
   and the loop's lag behind its clock (sampled at 10 Hz: median, largest, the share of
   samples over a slot, when health answers NOT_SERVING).
2. **Cap to enforcement**: during each day a coordinator submits a load cap for "now" over gRPC
   at three moments; reported per cap: the reply time, and from the reply to the start of the
   first slot that ran with the cap in force, in slots and simulated minutes.
3. **Re-plan from a mid-day state**: at 1,000 / 10,000 / 100,000 jobs the settlement engine runs
   the morning (48 slots) and the optimizer plans the work left from noon, as the loop does on
   a cap; p50 and worst of ``REPEATS`` re-plans.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import ray
from rich.console import Console
from rich.table import Table

from benchmarks.bench_plan import SIZES, scaled_problem
from benchmarks.bench_service import SCRAPE_EVERY_S, scraping
from clusters.resources import DEFAULT_GPUS_PER_UNIT, start_local
from scheduler.config import load_config
from scheduler.contracts import RUN, read_table
from scheduler.drivers.service.client import CapClient, cap_interval
from scheduler.drivers.service.server import Running, ServeOptions, start
from scheduler.horizon import operating_day
from scheduler.pipeline import DayPipeline
from scheduler.policies import get_policy
from scheduler.replan import RunState, rest_of_day
from scheduler.settlement import Settlement

DAY = "2026-06-21"
SPEEDUP = 1440.0
CAP_HOURS = (6, 12, 18)  # local hours at which a cap for "now" is submitted
REPEATS = {1_000: 5, 10_000: 3, 100_000: 2}
LAG_EVERY_S = 0.1  # how often the loop's lag is sampled [s]
SCRAPED_ORDER = (False, True, True, False)  # days unscraped and scraped, drift cancelling out


def _sample_lags(running: Running, stop: threading.Event, lags_s: list[float]) -> None:
    """Append the loop's lag behind its clock [simulated s] to ``lags_s`` every
    :data:`LAG_EVERY_S` until ``stop``."""
    assert running.loop is not None
    while not stop.wait(LAG_EVERY_S):
        lag = running.loop.lag()
        if lag is not None:
            lags_s.append(lag.total_seconds())


def _day_on_ray(scraped: bool) -> dict:
    """One day at :data:`SPEEDUP` on an embedded Ray with the caps for "now" of
    :data:`CAP_HOURS`, its metrics scraped every second or not: wall time [s], the engine's
    time in the slots [s], the lags sampled [simulated s], the caps and ``run.csv``."""
    config = load_config()
    day_start = pd.Timestamp(DAY).tz_localize(config.timezone)
    out = tempfile.mkdtemp(prefix="gs-loop-")
    running = start(
        ServeOptions(
            listen="127.0.0.1:0", db=Path(out) / "caps.sqlite", loop=True, dispatch=True,
            clock_start=day_start.tz_convert("UTC"), speedup=SPEEDUP, days=1, out=Path(out),
            metrics="127.0.0.1:0",
        )
    )  # fmt: skip
    assert running.loop is not None and running.metrics_port is not None
    lags_s: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_lags, args=(running, stop, lags_s))
    scraper: contextlib.AbstractContextManager[list[float]] = (
        scraping(running.metrics_port) if scraped else contextlib.nullcontext([0])
    )
    try:
        with scraper as made:
            began = time.perf_counter()
            thread = running.start_loop()
            sampler.start()
            caps = _caps_for_now(running, day_start)
            thread.join()
            wall_s = time.perf_counter() - began
            stop.set()
            sampler.join()
        engine_s = running.loop.done[0].report.wall_s
        slot_s = running.loop.slot.total_seconds()
    finally:
        stop.set()
        running.stop(0)
    run = read_table(RUN, Path(out) / DAY / "run.csv")
    return {
        "wall_s": wall_s, "engine_s": engine_s, "caps": caps, "run": run, "scrapes": int(made[0]),
        "lag_p50_s": float(np.median(lags_s)), "lag_max_s": max(lags_s),
        "behind_share": float(np.mean(np.array(lags_s) > slot_s)),
    }  # fmt: skip


def _caps_for_now(running: Running, day_start: pd.Timestamp) -> list[tuple]:
    """Submit a load cap for "now" at shantou at each of :data:`CAP_HOURS`: ``(sent,
    replied, reply wall seconds, value MW)`` each."""
    assert running.loop is not None
    caps = []
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
    return caps


def _pace_and_caps(console: Console) -> None:
    config = load_config()
    gpus = {name: site.gpus for name, site in config.sites.items()}
    start_local(gpus, DEFAULT_GPUS_PER_UNIT, log_to_driver=False)  # every day's Ray
    try:
        plain = _day_on_ray(False)  # on a cold Ray, as a day after start-up runs
        days = [_day_on_ray(scraped) for scraped in SCRAPED_ORDER]
    finally:
        ray.shutdown()
    wall_s, caps, run = plain["wall_s"], plain["caps"], plain["run"]
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
    console.print(_scraping_table(days))


_COMPARED = (
    ("wall time for the day (s)", "wall_s"),
    ("settlement engine in the slots (s)", "engine_s"),
    ("lag behind the clock, median (simulated s)", "lag_p50_s"),
    ("lag behind the clock, largest (simulated s)", "lag_max_s"),
    ("share of the day over a slot behind (NOT_SERVING)", "behind_share"),
)


def _scraping_table(days: list[dict]) -> Table:
    """Each measure of :data:`_COMPARED`: the mean of the days unscraped and scraped, and the
    ratio of the two."""
    by = {scraped: [d for d, s in zip(days, SCRAPED_ORDER, strict=True) if s == scraped]
          for scraped in (False, True)}  # fmt: skip
    scrapes = sum(d["scrapes"] for d in by[True])
    table = Table(
        title=f"the same day with /metrics scraped every {SCRAPE_EVERY_S:g} s or not "
        f"(the mean of {len(by[False])} days each, in the order off, on, on, off; "
        f"{scrapes} scrapes)"
    )
    for column in ("measure", "unscraped", "scraped", "ratio"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for name, key in _COMPARED:
        plain, scraped = (float(np.mean([d[key] for d in by[s]])) for s in (False, True))
        ratio = scraped / plain if plain else float("nan")
        table.add_row(name, f"{plain:.3g}", f"{scraped:.3g}", f"{ratio:.3f}")
    return table


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
            rest = rest_of_day(problem, RunState(noon, engine.remaining_gpu_hours(), None, live))
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
