"""Dispatch overhead on the embedded Ray: what the settlement engine and its Ray runner cost
over plain Ray tasks.

A synthetic night of ``SLOTS`` slots with ``JOBS`` jobs at both sites (two chunks per job and
slot) runs on an :class:`InstantClock` with a workload scale so large that each chunk generates
a single token, so what is measured is dispatch, not the model. The baseline submits the same
number of no-op ``ray.remote`` tasks with the same resources in the same per-slot batches.

Reported: tasks per second, and the delay between a slot's start (the engine waking, or
the baseline batch being submitted) and each task starting to run, p50 and p95. A second
baseline runs the runner's task body (one decoder token, its record) as plain Ray tasks,
separating the cost of the body from the cost of the engine around it.

The machine is small and shared, so one night per side swings by half from run to run: each
side runs ``REPEATS`` times, in turn (engine, no-op, body; the order rotating each round).
Tasks per second is the median over the rounds, the ratio the median of each round's ratio
(min-max beside it), delays are pooled over the rounds.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import pandas as pd
import ray
from rich.console import Console
from rich.table import Table

from clusters.resources import site_resource, start_local
from clusters.runner import RayRunner
from clusters.tasks import TaskSettings, run_chunk
from scheduler.clock import InstantClock
from scheduler.config import load_config
from scheduler.contracts import JOBS as JOBS_TABLE
from scheduler.contracts.chunks import Chunk
from scheduler.horizon import Horizon
from scheduler.problem import Problem
from scheduler.settlement import Settlement

SITES_GPUS = {"qingyang": 16000, "shantou": 8000}
SLOTS = 24
JOBS = 16  # chunks per slot = 2 * JOBS
REPEATS = 5  # rounds of the three sides
T0 = pd.Timestamp("2026-11-28 16:00", tz="UTC")
SETTINGS = TaskSettings(gpus_per_unit=1000, num_cpus=0.25, tokens_per_real_token=1e15)


def _night() -> tuple[Problem, pd.DataFrame]:
    """The night's problem (default sites, no green) and a plan of ``2 * JOBS`` chunks a slot."""
    horizon = Horizon(T0, 15, SLOTS)
    jobs = pd.DataFrame(
        {
            "job_id": [f"j{i}" for i in range(JOBS)],
            "gpu_hours": SLOTS * 0.25 * 200.0,
            "max_gpus": 400,
            "release": T0,
            "deadline": horizon.end,
            "sites": "",
            "preemptible": True,
            "tokens": SLOTS * 0.25 * 200.0 * 5e6,
        }
    )
    plan = pd.DataFrame(
        [
            {"job_id": f"j{i}", "site": site, "time": t, "gpus": 100}
            for t in horizon.times
            for i in range(JOBS)
            for site in SITES_GPUS
        ]
    )
    supply = pd.DataFrame(
        [
            {"time": t, "site": s, "pv_mw": 0.0, "wind_mw": 0.0, "green_mw": 0.0}
            for t in horizon.times
            for s in SITES_GPUS
        ]
    )
    config = load_config()
    problem = Problem(horizon, tuple(config.sites.values()), JOBS_TABLE.canonical(jobs), supply)
    return problem, plan


@ray.remote
def _noop() -> float:
    return time.time()


@ray.remote
def _chunk_body(site: str) -> float:
    """The runner's task body (one decoder token and its record), without the engine."""
    chunk = Chunk("bench", site, T0, 100, 15, 5e6)
    return run_chunk(chunk, SETTINGS.tokens_per_real_token, 0).started_unix_s


def _baseline(task: ray.remote_function.RemoteFunction) -> tuple[float, np.ndarray]:
    """Plain Ray: ``task`` in the engine's per-slot batches; (wall s, start delays s)."""
    delays = []
    started = time.perf_counter()
    for _ in range(SLOTS):
        submitted = time.time()
        refs = [
            task.options(num_cpus=SETTINGS.num_cpus, resources={site_resource(s): 0.1}).remote(
                *([s] if task is _chunk_body else [])
            )
            for _ in range(JOBS)
            for s in SITES_GPUS
        ]
        delays += [t - submitted for t in ray.get(refs)]
    return time.perf_counter() - started, np.array(delays)


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="rgs", dir="/tmp"))
    console = Console(width=110)
    started_ray = not ray.is_initialized()
    if started_ray:
        start_local(SITES_GPUS, 1000, num_cpus=2, log_to_driver=False)
    problem, plan = _night()

    engine_runs: list[tuple[int, int]] = []  # (task attempts, jobs done) of each night

    def engine() -> tuple[float, np.ndarray]:
        runner = RayRunner(SITES_GPUS, SETTINGS)
        started = time.perf_counter()
        report = Settlement(problem, plan, runner=runner, clock=InstantClock()).run()
        elapsed_s = time.perf_counter() - started
        engine_runs.append((len(report.chunks), report.totals["actual"]["jobs_done"]))
        return elapsed_s, report.chunks["delay_s"].dropna().to_numpy()

    sides = {
        "engine": engine,
        "noop": lambda: _baseline(_noop),
        "body": lambda: _baseline(_chunk_body),
    }
    runs: dict[str, list[tuple[float, np.ndarray]]] = {name: [] for name in sides}
    try:
        _baseline(_noop)  # warm the worker pool for every side
        _baseline(_chunk_body)
        for round_ in range(REPEATS):
            names = list(sides)
            for name in names[round_ % 3 :] + names[: round_ % 3]:
                runs[name].append(sides[name]())
    finally:
        if started_ray:
            ray.shutdown()

    wall = {name: np.array([s for s, _ in r]) for name, r in runs.items()}
    pooled = {name: np.concatenate([d for _, d in r]) for name, r in runs.items()}
    dispatch_s, base_s, body_s = (float(np.median(wall[k])) for k in ("engine", "noop", "body"))
    delays, base_delays, body_delays = pooled["engine"], pooled["noop"], pooled["body"]
    ratios = wall["noop"] / wall["engine"]

    n = SLOTS * 2 * JOBS
    attempts, done = min(engine_runs)
    table = Table(
        title=f"dispatch overhead: {SLOTS} slots x {2 * JOBS} chunks, embedded Ray, "
        f"median of {REPEATS} rounds"
    )
    for column in (
        "measure",
        "engine + Ray runner",
        "plain: no-op",
        "plain: same body",
        "ratio to no-op",
    ):
        table.add_column(column, justify="left" if column == "measure" else "right")
    table.add_row("tasks", f"{attempts}", f"{n}", f"{n}", "")
    table.add_row(
        "tasks per second",
        f"{attempts / dispatch_s:,.0f}",
        f"{n / base_s:,.0f}",
        f"{n / body_s:,.0f}",
        f"{np.median(ratios):.2f} ({ratios.min():.2f}-{ratios.max():.2f})",
    )
    for q in (50, 95):
        d = np.percentile(delays, q) * 1e3
        b, c = np.percentile(base_delays, q) * 1e3, np.percentile(body_delays, q) * 1e3
        table.add_row(
            f"slot start -> task running p{q} (ms)",
            f"{d:.1f}",
            f"{b:.1f}",
            f"{c:.1f}",
            f"{d / b:.2f}",
        )
    table.add_row("jobs done (fewest in a round)", f"{done} of {problem.n_jobs}", "", "", "")
    console.print(table)


if __name__ == "__main__":
    main()
