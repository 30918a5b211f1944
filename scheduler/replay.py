"""Replay historical (or synthetic) weather day by day and settle each policy's plan on actuals.

A driver over ``forecasts`` and ``scheduler``: for each operating day it builds the day-ahead
forecast from the weather with the forecast error model, draws the day's jobs, plans with each
policy (the oracle on the actual supply), settles every plan against the actual supply (caps
hold; see :mod:`scheduler.settle`) and carries work left unfinished into the next day for that
policy, so no policy wins by dropping work. Same seed, same numbers.

Outputs (``out_dir``): ``daily.csv`` (one row per day and policy), ``site_load.csv`` (settled
load, green supply and grid draw per policy, site and slot), ``carry-<policy>.csv`` (work carried
into the next day; lets ``resume`` continue), and ``summary.json`` via :func:`summarize`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from forecasts.supply import SupplyModel
from scheduler.config import Config
from scheduler.forecasting import forecast_error_of, load_site_weather
from scheduler.horizon import UTC_ISO_FORMAT, Horizon, operating_day
from scheduler.jobs import generate_jobs, max_gpus_to_fit, work_units
from scheduler.metrics import plan_metrics, site_load
from scheduler.policies import get_policy
from scheduler.problem import LoadCap, problem_for
from scheduler.settle import settle

__all__ = ["DailyCap", "ReplaySpec", "replay", "summarize"]

log = logging.getLogger(__name__)

SITE_LOAD_KEEP = ["policy", "time", "site", "load_mw", "green_mw", "grid_mw"]
DAILY_COLUMNS = [
    "day", "policy", "green_share", "grid_mwh", "co2_t", "green_unused_mwh", "late_jobs",
    "energy_used_mwh", "green_used_mwh", "gpu_hours_submitted", "gpu_hours_served",
    "carried_out_gpu_hours", "cut_gpu_hours", "cap_violations", "solve_seconds", "status",
]  # fmt: skip


@dataclass(frozen=True)
class DailyCap:
    """A load cap repeated every day: ``site`` limited from local ``start_hour`` to ``end_hour``."""

    site: str
    start_hour: float
    end_hour: float
    value_mw: float
    type: str = "IMPORT_CAPACITY_LIMIT"

    def on(self, horizon: Horizon, timezone: str) -> LoadCap:
        """The cap on the operating day that ``horizon`` covers."""
        day = horizon.start.tz_convert(timezone).normalize()
        return LoadCap(
            site=self.site,
            start=(day + pd.Timedelta(hours=self.start_hour)).tz_convert("UTC"),
            end=(day + pd.Timedelta(hours=self.end_hour)).tz_convert("UTC"),
            type=self.type,
            value_mw=self.value_mw,
        )


@dataclass(frozen=True)
class ReplaySpec:
    """What to replay: days ``first``..``last`` (inclusive, sites' local dates)."""

    config: Config
    sources: dict[str, str]
    first: str
    last: str
    policies: tuple[str, ...] = ("fifo", "greedy", "optimizer", "oracle")
    error_scale: float = 1.0
    seed: int = 1
    daily_caps: tuple[DailyCap, ...] = ()
    job_scale: float = 1.0  # multiplies the jobs per class (a job-mix knob for studies)

    @property
    def days(self) -> list[str]:
        """Operating days as ISO dates."""
        dates = pd.date_range(self.first, self.last, freq="D")
        if dates.empty:
            raise ValueError(f"--to {self.last} is before --from {self.first}")
        return [d.date().isoformat() for d in dates]


@dataclass
class ReplayResult:
    """Per-day rows, final carried-over work per policy, and where the time went [s]."""

    daily: pd.DataFrame
    carry: dict[str, pd.DataFrame]
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _carry_over(jobs: pd.DataFrame, remaining_gpu_hours: pd.Series, day: Horizon) -> pd.DataFrame:
    """Rows for work left unfinished: released at the next day's start, due at its end."""
    left = remaining_gpu_hours[remaining_gpu_hours > 1e-9]
    carried = jobs.set_index("job_id").loc[left.index].reset_index()
    fraction = left.to_numpy() / carried["gpu_hours"].to_numpy()
    carried["tokens"] = carried["tokens"] * fraction
    carried["gpu_hours"] = left.to_numpy()
    carried["release"] = day.start
    carried["deadline"] = day.end
    units = work_units(carried["gpu_hours"].to_numpy(), day.slot_minutes)
    carried["max_gpus"] = max_gpus_to_fit(carried["max_gpus"].to_numpy(), units, day.n_slots)
    return carried


def _day_jobs(spec: ReplaySpec, day: str, horizon: Horizon, index: int) -> pd.DataFrame:
    jobs = generate_jobs(
        spec.config.with_jobs_scaled(spec.job_scale).workload,
        horizon.start,
        spec.seed * 1_000_003 + index,
        list(spec.config.sites),
        horizon.slot_minutes,
    )
    return jobs.assign(job_id=day + ":" + jobs["job_id"])


def _read_progress(
    out_dir: Path, policies: Sequence[str]
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    daily_path = out_dir / "daily.csv"
    if not daily_path.exists():
        return pd.DataFrame(columns=DAILY_COLUMNS), {}
    daily = pd.read_csv(daily_path, dtype={"day": str})
    carry = {}
    for policy in policies:
        path = out_dir / f"carry-{policy}.csv"
        if path.exists():
            frame = pd.read_csv(path, dtype={"job_id": str, "sites": str}, keep_default_na=False)
            for column in ("release", "deadline"):
                frame[column] = pd.to_datetime(frame[column], utc=True)
            frame["preemptible"] = frame["preemptible"].astype(str).str.lower() == "true"
            carry[policy] = frame
    return daily, carry


def replay(
    spec: ReplaySpec,
    out_dir: Path | None = None,
    *,
    resume: bool = False,
    progress: Callable[[str, pd.DataFrame], None] | None = None,
) -> ReplayResult:
    """Replay every day of ``spec``; with ``out_dir`` write progress after each day."""
    config = spec.config
    days = spec.days
    slot = config.forecast.slot_minutes
    tz = config.timezone
    sites = tuple(config.sites.values())
    timings = dict.fromkeys(["weather_and_supply", "forecast", "settle"], 0.0)
    timings.update({f"plan_{p}": 0.0 for p in spec.policies})
    policies = {name: get_policy(name, config.solver) for name in spec.policies}

    daily, carry = _read_progress(out_dir, spec.policies) if (resume and out_dir) else (None, {})
    done_days = set(daily["day"]) if daily is not None else set()
    rows = daily.to_dict("records") if daily is not None else []
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            (out_dir / "site_load.csv").unlink(missing_ok=True)

    started = time.perf_counter()
    whole = operating_day(days[0], tz, slot, days=len(days))
    weather = load_site_weather(config, whole, spec.sources, seed=spec.seed)
    model = SupplyModel(config.sites, slot_minutes=slot)
    actual_all = model.actual(weather)
    timings["weather_and_supply"] += time.perf_counter() - started
    notes = [f"{name}: {note}" for name, w in weather.items() for note in w.notes if w.typical_year]
    error = forecast_error_of(config, spec.error_scale)

    for index, day in enumerate(days):
        if day in done_days:
            continue
        horizon = operating_day(day, tz, slot)
        in_day = (actual_all["time"] >= horizon.start) & (actual_all["time"] < horizon.end)
        actual = actual_all[in_day].reset_index(drop=True)
        started = time.perf_counter()
        forecast = model.forecast(actual, error, spec.seed)
        timings["forecast"] += time.perf_counter() - started
        new_jobs = _day_jobs(spec, day, horizon, index)
        caps = tuple(cap.on(horizon, tz) for cap in spec.daily_caps)
        next_day = operating_day(pd.Timestamp(day) + pd.Timedelta(days=1), tz, slot)
        loads: list[pd.DataFrame] = []

        for name, policy in policies.items():
            jobs = (
                pd.concat([carry.get(name), new_jobs], ignore_index=True)
                if name in carry
                else new_jobs
            )
            problem = problem_for(config, horizon, jobs, forecast, caps=caps, actual_supply=actual)
            started = time.perf_counter()
            result = policy.plan(problem)
            timings[f"plan_{name}"] += time.perf_counter() - started
            started = time.perf_counter()
            settled = settle(problem, result.plan)
            metrics = plan_metrics(settled.plan, jobs, actual, sites, horizon, caps)
            timings["settle"] += time.perf_counter() - started
            remaining = result.unfinished_gpu_hours.add(settled.cut_gpu_hours, fill_value=0.0)
            carry[name] = _carry_over(jobs, remaining, next_day)
            load = site_load(settled.plan, actual, sites, horizon, caps)
            loads.append(load.assign(policy=name)[SITE_LOAD_KEEP])
            rows.append(
                {
                    "day": day,
                    "policy": name,
                    "green_share": metrics.green_share,
                    "grid_mwh": metrics.grid_mwh,
                    "co2_t": metrics.co2_t,
                    "green_unused_mwh": metrics.green_unused_mwh,
                    "late_jobs": len(carry[name]),
                    "energy_used_mwh": metrics.energy_used_mwh,
                    "green_used_mwh": metrics.green_used_mwh,
                    "gpu_hours_submitted": float(new_jobs["gpu_hours"].sum()),
                    "gpu_hours_served": metrics.gpu_hours_placed,
                    "carried_out_gpu_hours": float(carry[name]["gpu_hours"].sum()),
                    "cut_gpu_hours": float(settled.cut_gpu_hours.sum()),
                    "cap_violations": metrics.cap_violations,
                    "solve_seconds": result.solve_seconds,
                    "status": result.status,
                }
            )
        daily = pd.DataFrame(rows, columns=DAILY_COLUMNS)
        if out_dir is not None:
            load_path = out_dir / "site_load.csv"  # before daily.csv: a resumed day rewrites it
            pd.concat(loads).to_csv(
                load_path, mode="a", header=not load_path.exists(), index=False,
                date_format=UTC_ISO_FORMAT,
            )  # fmt: skip
            daily.to_csv(out_dir / "daily.csv", index=False)
            for name, frame in carry.items():
                frame.to_csv(out_dir / f"carry-{name}.csv", index=False)
        if progress is not None:
            progress(day, daily)
    return ReplayResult(pd.DataFrame(rows, columns=DAILY_COLUMNS), carry, timings, notes)


def summarize(result: ReplayResult) -> dict:
    """Totals per policy, and the optimizer's share of the oracle's gain over fifo."""
    daily = result.daily
    totals = {}
    for name, part in daily.groupby("policy", sort=False):
        energy = part["energy_used_mwh"].sum()
        totals[name] = {
            "days": len(part),
            "green_share": float(part["green_used_mwh"].sum() / energy) if energy else 0.0,
            "grid_mwh": float(part["grid_mwh"].sum()),
            "co2_t": float(part["co2_t"].sum()),
            "green_unused_mwh": float(part["green_unused_mwh"].sum()),
            "energy_used_mwh": float(energy),
            "gpu_hours_submitted": float(part["gpu_hours_submitted"].sum()),
            "gpu_hours_served": float(part["gpu_hours_served"].sum()),
            "unfinished_gpu_hours_at_end": float(
                result.carry[name]["gpu_hours"].sum() if name in result.carry else 0.0
            ),
            "late_job_days": int(part["late_jobs"].sum()),
            "cap_violations": int(part["cap_violations"].sum()),
            "solve_seconds": float(part["solve_seconds"].sum()),
        }
    summary: dict = {"policies": totals, "timings_s": result.timings_s, "notes": result.notes}
    if {"fifo", "optimizer", "oracle"} <= totals.keys():
        fifo, opt, oracle = (totals[p]["green_share"] for p in ("fifo", "optimizer", "oracle"))
        gain = oracle - fifo
        summary["optimizer_share_of_oracle_gain"] = (opt - fifo) / gain if gain > 1e-12 else None
    return summary


def write_summary(summary: dict, path: Path) -> None:
    """Write ``summary.json`` (plain JSON, 2-space indent)."""
    path.write_text(json.dumps(summary, indent=2, default=float))
