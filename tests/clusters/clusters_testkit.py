"""Shared by the cluster tests: the two default sites, small jobs, and a day's problem."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
from ray import cloudpickle

from clusters.runner import RayRunner
from clusters.tasks import ChunkRecord, TaskSettings, run_chunk
from scheduler.clock import InstantClock
from scheduler.config import load_config
from scheduler.contracts import JOBS
from scheduler.contracts.plandir import RunReport
from scheduler.horizon import Horizon
from scheduler.problem import LoadCap, Problem
from scheduler.settlement import Settlement

# Ray workers cannot import test modules: ship this module's functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SITES_GPUS = {"qingyang": 16000, "shantou": 8000}
GPUS_PER_UNIT = 1000
T0 = pd.Timestamp("2026-11-28 16:00", tz="UTC")  # first slot of operating day 2026-11-29


FAST = TaskSettings(gpus_per_unit=GPUS_PER_UNIT, tokens_per_real_token=1e8)
SLOT = pd.Timedelta(minutes=15)


def slot(i: int) -> pd.Timestamp:
    return T0 + i * SLOT


def plan_rows(job_id: str, site: str, slots: range, gpus: int) -> list[dict]:
    return [{"job_id": job_id, "site": site, "time": slot(i), "gpus": gpus} for i in slots]


def day_problem(
    jobs: list[dict], green_mw: dict[str, float], caps: tuple[LoadCap, ...] = ()
) -> Problem:
    """The default sites over 24 slots of 15 min from :data:`T0`, constant green supply."""
    config = load_config()
    horizon = Horizon(T0, 15, 24)
    supply = pd.DataFrame(
        [
            {"time": t, "site": s, "pv_mw": 0.0, "wind_mw": g, "green_mw": g}
            for t in horizon.times
            for s, g in green_mw.items()
        ]
    )
    return Problem(
        horizon=horizon,
        sites=tuple(config.sites.values()),
        jobs=JOBS.canonical(pd.DataFrame(jobs)),
        supply=supply,
        caps=caps,
        actual_supply=supply,
    )


def run_on_ray(problem: Problem, plan: pd.DataFrame, *, clock=None, **options) -> RunReport:
    """Settle ``plan`` with the Ray runner (``options``: ``work``, ``max_retries``, and the
    engine's ``replan``, ``progress``, ``slot_timeout_s``)."""
    runner_options = {k: options.pop(k) for k in ("work", "max_retries") if k in options}
    runner = RayRunner(SITES_GPUS, FAST, **runner_options)
    return Settlement(problem, plan, runner=runner, clock=clock or InstantClock(), **options).run()


def job_row(job_id: str, gpu_hours: float, max_gpus: int, sites: str = "", **kw) -> dict:
    """A jobs-table row over the first ``window_h`` hours (default 6) of the day."""
    window_h = kw.pop("window_h", 6)
    return {
        "job_id": job_id,
        "gpu_hours": gpu_hours,
        "max_gpus": max_gpus,
        "release": T0,
        "deadline": T0 + pd.Timedelta(hours=window_h),
        "sites": sites,
        "preemptible": kw.pop("preemptible", True),
        "tokens": kw.pop("tokens", gpu_hours * 5e6),
    }


def raises_for_bad(chunk, tokens_per_real_token, seed) -> ChunkRecord:
    """Chunk work that raises for job ``bad`` and runs the decoder otherwise."""
    if chunk.job_id == "bad":
        raise ValueError(f"model weights for {chunk.job_id} are corrupt")
    return run_chunk(chunk, tokens_per_real_token, seed)


def raises_once(chunk, tokens_per_real_token, seed) -> ChunkRecord:
    """Chunk work that raises the first time (``job_id`` is a marker file path), then runs."""
    marker = Path(chunk.job_id)
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("transient")
    return run_chunk(chunk, tokens_per_real_token, seed)


def slow_at_shantou(chunk, tokens_per_real_token, seed) -> ChunkRecord:
    """Chunk work that takes 3 s longer at shantou (so its node can die mid-task)."""
    if chunk.site == "shantou":
        time.sleep(3.0)
    return run_chunk(chunk, tokens_per_real_token, seed)
