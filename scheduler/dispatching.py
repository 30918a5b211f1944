"""Driver: run a plan directory on Ray (``greensched dispatch``) and the nightly job.

Wires ``clusters`` (the dispatcher) to the scheduler: reads the tables ``greensched plan``
wrote, starts or connects to Ray, hands the dispatcher a re-planner that calls the optimizer on
the remaining work, and writes the run report. Holds no dispatching or planning logic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from clusters.clock import Clock, CompressedClock, RealClock
from clusters.dispatcher import Dispatcher, SlotProgress
from clusters.report import RunReport, write_run_report
from clusters.resources import DEFAULT_GPUS_PER_UNIT, connect, start_local
from clusters.tasks import TaskSettings
from forecasts.supply import SupplyModel
from scheduler.config import Config
from scheduler.forecasting import load_site_weather
from scheduler.horizon import Horizon
from scheduler.jobs import max_gpus_to_fit, read_jobs, work_units
from scheduler.policies import get_policy
from scheduler.problem import problem_for

__all__ = ["PlanDir", "dispatch", "make_replanner", "read_plan_dir"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanDir:
    """The tables of a plan directory that a run needs."""

    plan: pd.DataFrame
    jobs: pd.DataFrame
    sites: pd.DataFrame
    supply: pd.DataFrame  # what the run settles on: actuals when present, else the forecast
    forecast: pd.DataFrame  # what the plan was made on
    caps: pd.DataFrame
    horizon: Horizon


def _times(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for column in columns:
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def read_plan_dir(directory: Path, slot_minutes: int) -> PlanDir:
    """Read ``plan.csv``, ``jobs.csv``, ``sites.csv``, ``caps.csv`` and the supply tables."""
    missing = [
        n
        for n in ("plan.csv", "jobs.csv", "sites.csv", "supply.csv")
        if not (directory / n).exists()
    ]
    if missing:
        raise FileNotFoundError(
            f"{directory}: not a plan directory (missing {', '.join(missing)}); "
            "make one with `greensched plan --out DIR`"
        )
    plan = _times(pd.read_csv(directory / "plan.csv", dtype={"job_id": str}), "time")
    actual = directory / "supply_actual.csv"
    forecast = _times(pd.read_csv(directory / "supply.csv"), "time")
    supply = _times(pd.read_csv(actual), "time") if actual.exists() else forecast
    caps_path = directory / "caps.csv"
    caps = _times(pd.read_csv(caps_path), "start", "end") if caps_path.exists() else None
    times = pd.DatetimeIndex(supply["time"].unique()).sort_values()
    horizon = Horizon(times[0], slot_minutes, len(times))
    return PlanDir(
        plan=plan,
        jobs=read_jobs(directory / "jobs.csv"),
        sites=pd.read_csv(directory / "sites.csv"),
        supply=supply,
        forecast=forecast,
        caps=caps
        if caps is not None
        else pd.DataFrame(columns=["site", "start", "end", "type", "value_mw"]),
        horizon=horizon,
    )


def make_replanner(
    config: Config, plan_dir: PlanDir
) -> Callable[[dict[str, float], pd.Timestamp, dict[str, float]], pd.DataFrame]:
    """The dispatcher's re-planner: the optimizer over the remaining slots and live sites.

    Jobs whose deadline has passed may run until the end of the horizon (they are late);
    jobs allowed only at sites that are gone are left out (the dispatcher reports them).
    """
    horizon = plan_dir.horizon
    slot = pd.Timedelta(minutes=horizon.slot_minutes)

    def replan(
        remaining: dict[str, float], from_time: pd.Timestamp, live: dict[str, float]
    ) -> pd.DataFrame:
        first = horizon.start + np.ceil((from_time - horizon.start) / slot) * slot
        n_slots = int((horizon.end - first) / slot)
        empty = pd.DataFrame(columns=["job_id", "site", "time", "gpus"])
        sites = tuple(
            config.sites[name].model_copy(update={"gpus": int(gpus)})
            for name, gpus in live.items()
            if name in config.sites and gpus >= 1
        )
        if n_slots <= 0 or not sites:
            return empty
        window = Horizon(first, horizon.slot_minutes, n_slots)
        names = {s.name for s in sites}
        jobs = (
            plan_dir.jobs.set_index("job_id")
            .loc[[j for j in remaining if remaining[j] > 0]]
            .reset_index()
        )
        allowed = jobs["sites"].fillna("").map(lambda text: [s for s in text.split(";") if s])
        keep = allowed.map(lambda listed: not listed or bool(set(listed) & names))
        jobs = jobs[keep.to_numpy()].copy()
        if jobs.empty:
            return empty
        jobs["sites"] = (
            allowed[keep].map(lambda listed: ";".join(s for s in listed if s in names)).to_numpy()
        )
        jobs["gpu_hours"] = jobs["job_id"].map(remaining).astype(float)
        jobs["release"] = jobs["release"].clip(lower=first)
        late = jobs["deadline"] <= first
        jobs.loc[late, "deadline"] = window.end
        jobs["deadline"] = jobs["deadline"].clip(upper=window.end)
        slots = ((jobs["deadline"] - jobs["release"]) / slot).to_numpy().astype(np.int64)
        units = work_units(jobs["gpu_hours"].to_numpy(), horizon.slot_minutes)
        jobs["max_gpus"] = max_gpus_to_fit(jobs["max_gpus"].to_numpy(), units, slots)
        supply = plan_dir.supply[plan_dir.supply["time"] >= first]
        # a re-plan runs on the actual supply, which has no forecast quantiles
        problem = problem_for(
            config, window, jobs.reset_index(drop=True), supply, sites=sites, limits_on="forecast"
        )
        result = get_policy("optimizer", config.solver).plan(problem)
        log.info("re-planned %d jobs from %s on %s", len(jobs), first, ", ".join(sorted(names)))
        return result.plan

    return replan


def with_actual_weather(plan_dir: PlanDir, config: Config, sources: dict[str, str]) -> PlanDir:
    """``plan_dir`` settling on supply computed from weather files for the sites named.

    ``sources`` maps site to a weather file; other sites keep the plan directory's actuals.
    """
    if not sources:
        return plan_dir
    named = load_site_weather(config, plan_dir.horizon, sources, seed=config.seed, only=sources)
    actual = SupplyModel(config.sites, slot_minutes=plan_dir.horizon.slot_minutes).actual(named)
    kept = plan_dir.supply[~plan_dir.supply["site"].isin(list(named))]
    supply = pd.concat([kept, actual[kept.columns.intersection(actual.columns)]], ignore_index=True)
    return replace(plan_dir, supply=supply)


def dispatch(
    directory: Path,
    config: Config,
    *,
    actual_weather: dict[str, str] | None = None,
    ray_address: str | None = None,
    speedup: float = 1.0,
    gpus_per_unit: float = DEFAULT_GPUS_PER_UNIT,
    progress: Callable[[SlotProgress], None] | None = None,
    clock: Clock | None = None,
) -> RunReport:
    """Run the plan in ``directory`` on Ray and write ``run_report.json`` and ``run.csv`` there.

    The run settles on ``supply_actual.csv`` of the directory (or its forecast when absent),
    with the sites in ``actual_weather`` (site -> weather file) recomputed from those files.
    """
    import ray

    plan_dir = read_plan_dir(directory, config.forecast.slot_minutes)
    plan_dir = with_actual_weather(plan_dir, config, actual_weather or {})
    gpus = {name: site.gpus for name, site in config.sites.items()}
    started_here = not ray.is_initialized()
    if ray_address:
        connect(ray_address, gpus, gpus_per_unit)
    elif started_here:
        start_local(gpus, gpus_per_unit, log_to_driver=False)
    try:
        if clock is None:
            clock = RealClock() if speedup == 1.0 else CompressedClock(speedup)
        report = Dispatcher(
            plan_dir.plan, plan_dir.jobs, plan_dir.sites, config.forecast.slot_minutes, clock,
            actual_supply=plan_dir.supply, caps=plan_dir.caps, planned_supply=plan_dir.forecast,
            replan=make_replanner(config, plan_dir),
            settings=TaskSettings(gpus_per_unit=gpus_per_unit), progress=progress,
        ).run()  # fmt: skip
    finally:
        if started_here:
            ray.shutdown()
    write_run_report(directory, report)
    return report
