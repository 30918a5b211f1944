"""Small hand-built problems for the scheduler tests (no forecasts needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scheduler.config import Site
from scheduler.horizon import Horizon
from scheduler.jobs import Job, jobs_frame
from scheduler.policies import get_policy
from scheduler.problem import LoadCap, Problem
from scheduler.validate import assert_valid

START = pd.Timestamp("2026-06-01 00:00", tz="UTC")
POLICY_NAMES = ("fifo", "greedy", "optimizer")


def site(name: str, gpus: int = 100, carbon: float = 500.0, latency: float = 50.0, **kw) -> Site:
    """A site of ``gpus`` GPUs at 1 kW each (PUE 1): 0.001 MW per GPU, no base load."""
    params = dict(kw_per_gpu=1.0, pue=1.0, base_load_mw=0.0, grid_import_limit_mw=10.0)
    params.update(kw)
    return Site(
        name=name,
        latitude=0.0,
        longitude=0.0,
        gpus=gpus,
        carbon_kg_per_mwh=carbon,
        latency_ms={"singapore": latency},
        **params,
    )


def supply_frame(horizon: Horizon, names: Sequence[str], green_mw: np.ndarray) -> pd.DataFrame:
    """Supply table with ``green_mw[site, slot]`` all from wind."""
    rows = [
        pd.DataFrame({"time": horizon.times, "site": n, "pv_mw": 0.0, "wind_mw": g, "green_mw": g})
        for n, g in zip(names, np.asarray(green_mw, dtype=float), strict=True)
    ]
    return pd.concat(rows, ignore_index=True)


def job(job_id: str, gpu_hours: float, max_gpus: int, first: int, end: int, slot_minutes=60, **kw):
    slot = pd.Timedelta(minutes=slot_minutes)
    return Job(job_id, gpu_hours, max_gpus, START + first * slot, START + end * slot, **kw)


def make_problem(
    sites: Sequence[Site],
    green_mw: np.ndarray,
    jobs: Sequence[Job],
    caps: Sequence[LoadCap] = (),
    slot_minutes: int = 60,
    actual_green_mw: np.ndarray | None = None,
    max_site_moves: int | None = None,
) -> Problem:
    green_mw = np.asarray(green_mw, dtype=float)
    horizon = Horizon(START, slot_minutes, green_mw.shape[1])
    names = [s.name for s in sites]
    return Problem(
        horizon=horizon,
        sites=tuple(sites),
        jobs=jobs_frame(jobs),
        supply=supply_frame(horizon, names, green_mw),
        caps=tuple(caps),
        actual_supply=None
        if actual_green_mw is None
        else supply_frame(horizon, names, actual_green_mw),
        max_site_moves=max_site_moves,
    )


def plan_all(problem: Problem, names=POLICY_NAMES, **settings):
    """Every policy's plan, each checked by the validator."""
    from scheduler.config import SolverSettings

    results = {}
    for name in names:
        result = get_policy(name, SolverSettings(**settings)).plan(problem)
        assert_valid(problem, result)
        results[name] = result
    return results
