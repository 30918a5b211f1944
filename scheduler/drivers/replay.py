"""Replay historical (or synthetic) weather day by day and settle each policy's plan on actuals.

A driver over the day pipeline and the settlement engine: for each operating day the pipeline
gives the day's problem (the same forecast and jobs as ``greensched plan --date``), each policy
plans it (the oracle on the actual supply), the settlement engine runs every plan on the actual
supply with an instant clock and no runner (the same decisions a dispatched night makes: caps
hold, deferred work resumes where room is left), and work left unfinished is carried into the
next day for that policy, so no policy wins by dropping work. Same seed, same numbers.

Each policy's settled load in the last slot of a day is the load the next day starts from
(``initial_load_mw``), so ramp limits hold across midnight, and the steps are counted there too;
likewise the energy in the sites' storage (``initial_soc_mwh``), which follows
:func:`~scheduler.storage.follow_surplus` on the settled load and the actual supply.

With ``replan_every``, each policy that follows the forecast settles its day through
:func:`~scheduler.dayrunner.settle_receding`: at every slot boundary that long after its last
plan, it plans the work left again on the forecast vintage issued then (closer to the actual
the shorter the lead), as the live control loop does; ``daily.csv`` counts the re-plans.

With ``forecasts`` (site -> a weather model's runs, as ``--forecast``), each plan and re-plan
of such a site is made on the newest run published by then (the day-ahead plan: by the day's
start), archived runs replayed as they were issued, and settled on the actual weather;
``runs.csv`` says which run each day's plan took.

Outputs (``out_dir``): ``daily.csv`` (one row per day and policy), ``runs.csv`` (per day and
site: the forecast's source, model, issue time, members and slots from the run),
``ramps.csv`` (per day, policy and site: largest step, total swing and slots over the ramp limit
of the settled load), ``site_load.csv`` (settled load, green supply, grid draw and storage per
policy, site and slot), ``carry-<policy>.csv`` (work carried into the next day) and
``storage.json`` (each policy's stored energy per unit after its last day; both let ``resume``
continue), and ``summary.json`` via :func:`summarize`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from scheduler.config import Config
from scheduler.contracts import (
    JOBS,
    UTC_ISO_FORMAT,
    CapType,
    UserError,
    ensure_dir,
    read_table,
    write_table,
)
from scheduler.contracts.plandir import RunReport
from scheduler.dayrunner import settle_receding
from scheduler.horizon import Horizon
from scheduler.metrics import PlanMetrics, score_plan, storage_end_mwh
from scheduler.pipeline import DayPipeline, carry_over
from scheduler.policies import PlanResult, Policy, get_policy
from scheduler.problem import LoadCap, Problem
from scheduler.settlement import settle
from scheduler.storage import StorageGuide

__all__ = ["DailyCap", "ReplaySpec", "replay", "summarize"]

log = logging.getLogger(__name__)

SITE_LOAD_KEEP = ["policy", "time", "site", "load_mw", "green_mw", "grid_mw",
                  "storage_charge_mw", "storage_discharge_mw", "soc_mwh"]  # fmt: skip
DAILY_COLUMNS = [
    "day", "policy", "green_share", "grid_mwh", "co2_t", "cost", "green_unused_mwh",
    "storage_charged_mwh", "storage_discharged_mwh", "storage_cycles", "late_jobs",
    "energy_used_mwh", "green_used_mwh", "gpu_hours_submitted", "gpu_hours_served",
    "carried_out_gpu_hours", "cut_gpu_hours", "cap_violations", "solve_seconds", "status",
    "replans",
]  # fmt: skip
RAMP_COLUMNS = [
    "day", "policy", "site", "largest_step_mw", "total_swing_mw", "slots_over_ramp",
    "last_load_mw",
]  # fmt: skip
RUN_COLUMNS = ["day", "site", "source", "model", "issued_at", "members", "slots_from_run",
               "slots"]  # fmt: skip


@dataclass(frozen=True)
class DailyCap:
    """A load cap repeated every day: ``site`` limited from local ``start_hour`` to ``end_hour``;
    ``run.csv`` names it by :attr:`event_id` (``daily-cap:SITE:START-END``, as a study writes
    it)."""

    site: str
    start_hour: float
    end_hour: float
    value_mw: float
    type: CapType = CapType.IMPORT_CAPACITY_LIMIT

    def on(self, horizon: Horizon, timezone: str) -> LoadCap:
        """The cap on the operating day that ``horizon`` covers."""
        day = horizon.start.tz_convert(timezone).normalize()
        return LoadCap(
            site=self.site,
            start=(day + pd.Timedelta(hours=self.start_hour)).tz_convert("UTC"),
            end=(day + pd.Timedelta(hours=self.end_hour)).tz_convert("UTC"),
            type=self.type,
            value_mw=self.value_mw,
            event_id=self.event_id,
        )

    @property
    def event_id(self) -> str:
        return f"daily-cap:{self.site}:{self.start_hour:g}-{self.end_hour:g}"


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
    replan_every: pd.Timedelta | None = None  # re-plan within the day on fresher forecasts
    forecasts: dict[str, str] | None = None  # site -> runs to forecast from; None: config's

    @property
    def days(self) -> list[str]:
        """Operating days as ISO dates."""
        dates = pd.date_range(self.first, self.last, freq="D")
        if dates.empty:
            raise UserError(f"--to {self.last} is before --from {self.first}")
        return [d.date().isoformat() for d in dates]


@dataclass
class ReplayResult:
    """Per-day rows, final carried-over work per policy, and where the time went [s] (each
    second once: the forecast vintages the re-plans take are in ``replan``, not ``forecast``)."""

    daily: pd.DataFrame
    carry: dict[str, pd.DataFrame]
    ramps: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=RAMP_COLUMNS))
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    replan_every_minutes: float | None = None  # None: planned once a day


@dataclass(frozen=True)
class _PolicyDay:
    """One policy's day planned and settled: the run, its score on the actual supply, the
    re-plans it took, the work it carries into the next day and its settled load per slot."""

    run: RunReport
    result: PlanResult
    metrics: PlanMetrics
    replans: int
    carry: pd.DataFrame
    load: pd.DataFrame
    soc_end_mwh: tuple[float, ...]  # each storage unit's energy after the day [MWh]
    last_load_mw: tuple[float, ...]  # each site's load of the GPUs held in the last slot [MW]


@dataclass
class _Progress:
    """What a replay has so far (rows of ``daily.csv``, ``ramps.csv`` and ``runs.csv``, the work
    each policy carries and the load its last day ended on): read back to resume, written
    after each day."""

    sites: tuple[str, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)
    ramp_rows: list[dict[str, Any]] = field(default_factory=list)
    run_rows: list[dict[str, Any]] = field(default_factory=list)
    carry: dict[str, pd.DataFrame] = field(default_factory=dict)
    last_load: dict[str, tuple[float, ...]] = field(default_factory=dict)  # per policy [MW]
    last_soc: dict[str, tuple[float, ...]] = field(default_factory=dict)  # per policy [MWh]

    @classmethod
    def read(cls, out_dir: Path, policies: Sequence[str], sites: tuple[str, ...]) -> _Progress:
        """The progress written to ``out_dir`` (none when a table is missing)."""
        progress = cls(sites)
        daily_path, ramps_path, runs_path = (out_dir / f"{name}.csv"
                                             for name in ("daily", "ramps", "runs"))  # fmt: skip
        if runs_path.exists():
            progress.run_rows = pd.read_csv(runs_path, dtype={"day": str}).to_dict("records")
        if not daily_path.exists() or not ramps_path.exists():
            return progress
        progress.rows = pd.read_csv(daily_path, dtype={"day": str}).to_dict("records")
        ramps = pd.read_csv(ramps_path, dtype={"day": str})
        progress.ramp_rows = ramps.to_dict("records")
        for policy in policies:
            path = out_dir / f"carry-{policy}.csv"
            if path.exists():
                progress.carry[policy] = read_table(JOBS, path)
        for name, part in ramps.groupby("policy"):
            last_day = part[part["day"] == part["day"].max()].set_index("site")["last_load_mw"]
            progress.last_load[str(name)] = tuple(float(last_day[site]) for site in sites)
        storage_path = out_dir / "storage.json"
        if storage_path.exists():
            saved = json.loads(storage_path.read_text())
            progress.last_soc = {name: tuple(soc) for name, soc in saved.items()}
        return progress

    @property
    def days_done(self) -> set[str]:
        return {str(row["day"]) for row in self.rows}

    @property
    def daily(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=DAILY_COLUMNS)

    def add(self, day: str, policy: str, done: _PolicyDay, submitted_gpu_hours: float) -> None:
        """Book ``policy``'s settled ``day``."""
        metrics = done.metrics
        self.carry[policy] = done.carry
        self.last_soc[policy] = done.soc_end_mwh
        self.last_load[policy] = done.last_load_mw
        self.ramp_rows += [
            {
                "day": day,
                "policy": policy,
                "site": site,
                "largest_step_mw": metrics.largest_step_mw[site],
                "total_swing_mw": metrics.total_swing_mw[site],
                "slots_over_ramp": metrics.slots_over_ramp[site],
                "last_load_mw": self.last_load[policy][i],
            }
            for i, site in enumerate(self.sites)
        ]
        self.rows.append(
            {
                "day": day,
                "policy": policy,
                "green_share": metrics.green_share,
                "grid_mwh": metrics.grid_mwh,
                "co2_t": metrics.co2_t,
                "cost": metrics.cost,
                "green_unused_mwh": metrics.green_unused_mwh,
                "storage_charged_mwh": metrics.storage_charged_mwh,
                "storage_discharged_mwh": metrics.storage_discharged_mwh,
                "storage_cycles": metrics.storage_cycles,
                "late_jobs": len(done.carry),
                "energy_used_mwh": metrics.energy_used_mwh,
                "green_used_mwh": metrics.green_used_mwh,
                "gpu_hours_submitted": submitted_gpu_hours,
                "gpu_hours_served": metrics.gpu_hours_placed,
                "carried_out_gpu_hours": float(done.carry["gpu_hours"].sum()),
                "cut_gpu_hours": done.run.totals["actual"]["cut_gpu_hours"],
                "cap_violations": metrics.cap_violations,
                "solve_seconds": done.result.solve_seconds,
                "status": str(done.result.status),
                "replans": done.replans,
            }
        )

    def write(self, out_dir: Path, loads: list[pd.DataFrame]) -> None:
        """The tables after a day; its settled ``loads`` appended to ``site_load.csv``."""
        load_path = out_dir / "site_load.csv"  # before daily.csv: a resumed day rewrites it
        pd.concat(loads).to_csv(
            load_path, mode="a", header=not load_path.exists(), index=False,
            date_format=UTC_ISO_FORMAT,
        )  # fmt: skip
        pd.DataFrame(self.ramp_rows, columns=RAMP_COLUMNS).to_csv(
            out_dir / "ramps.csv", index=False
        )
        pd.DataFrame(self.run_rows, columns=RUN_COLUMNS).to_csv(out_dir / "runs.csv", index=False)
        self.daily.to_csv(out_dir / "daily.csv", index=False)
        for name, frame in self.carry.items():
            write_table(frame, out_dir / f"carry-{name}.csv")
        if any(self.last_soc.values()):
            (out_dir / "storage.json").write_text(json.dumps(self.last_soc))


class _Timings:
    """Where a replay's time goes [s]; the forecast vintages the re-plans take are booked to
    ``replan``, not to the pipeline's ``forecast``."""

    def __init__(self, policies: Sequence[str]) -> None:
        self.seconds = {"settle": 0.0, "replan": 0.0, **{f"plan_{p}": 0.0 for p in policies}}
        self.forecast_in_replans_s = 0.0

    def total(self, pipeline: DayPipeline) -> dict[str, float]:
        seconds = {**self.seconds, **pipeline.timings_s}
        seconds["forecast"] -= self.forecast_in_replans_s
        return seconds


def _policy_day(
    name: str,
    policy: Policy,
    problem: Problem,
    spec: ReplaySpec,
    pipeline: DayPipeline,
    timings: _Timings,
    next_day: Horizon,
) -> _PolicyDay:
    """``policy`` plans ``problem`` and the plan is settled on the actual supply (through
    re-plans on fresher vintages with ``spec.replan_every``); unfinished work is carried into
    ``next_day``."""
    horizon, jobs = problem.horizon, problem.jobs
    started = time.perf_counter()
    result = policy.plan(problem)
    timings.seconds[f"plan_{name}"] += time.perf_counter() - started
    started = time.perf_counter()
    replans = 0
    if spec.replan_every is not None and policy.follows_forecast:
        forecast_before_s = pipeline.timings_s["forecast"]
        receding = settle_receding(
            problem, result, policy, spec.replan_every, partial(_vintage, pipeline, horizon)
        )
        run, replans = receding.report, receding.replans
        timings.seconds["replan"] += receding.replan_seconds
        timings.seconds["settle"] -= receding.replan_seconds
        timings.forecast_in_replans_s += pipeline.timings_s["forecast"] - forecast_before_s
    else:
        run = settle(problem, result)
    assert run.executed is not None and problem.actual_supply is not None
    guide = run.storage_guide if isinstance(run.storage_guide, StorageGuide) else None
    # one pass: table and metrics
    score = score_plan(problem.on_actual_supply(), run.executed, guide=guide)
    timings.seconds["settle"] += time.perf_counter() - started
    done = run.jobs.set_index("job_id")["gpu_hours_done"]
    remaining = jobs.set_index("job_id")["gpu_hours"] - done
    soc_end = storage_end_mwh(run.executed, problem.actual_supply, problem.sites, horizon,
                              problem.soc_start_mwh, guide, jobs)  # fmt: skip
    # the next day ramps from the GPUs held in the last slot (whole GPU-slots, as the ramp
    # rules count them), not from the part of a last GPU-slot a finishing job used
    last = score.site_load.groupby("site", sort=False)["gpus_busy"].last()
    held = problem.base_load_mw + last[problem.site_names].to_numpy() * problem.mw_per_gpu
    return _PolicyDay(run, result, score.metrics, replans, carry_over(jobs, remaining, next_day),
                      score.site_load.assign(policy=name)[SITE_LOAD_KEEP],
                      tuple(soc_end.tolist()), tuple(held.tolist()))  # fmt: skip


def replay(
    spec: ReplaySpec,
    out_dir: Path | None = None,
    *,
    resume: bool = False,
    progress: Callable[[str, pd.DataFrame], None] | None = None,
) -> ReplayResult:
    """Replay every day of ``spec``; with ``out_dir`` write progress after each day."""
    config = spec.config.with_jobs_scaled(spec.job_scale)
    days, tz = spec.days, config.timezone
    sites = tuple(config.sites)
    timings = _Timings(spec.policies)
    policies = {name: get_policy(name, config.solver) for name in spec.policies}
    book = (
        _Progress.read(out_dir, spec.policies, sites) if (resume and out_dir) else _Progress(sites)
    )
    done_days = book.days_done
    if out_dir is not None:
        ensure_dir(out_dir)
        if not resume:
            (out_dir / "site_load.csv").unlink(missing_ok=True)

    pipeline = DayPipeline(
        config, spec.sources, seed=spec.seed, error_scale=spec.error_scale,
        forecasts=spec.forecasts,
    )  # fmt: skip
    pipeline.preload(pipeline.horizon(days[0], len(days)))
    notes = [
        f"{name}: {note}"
        for name, w in pipeline.weather.items()
        for note in w.notes
        if w.typical_year
    ]

    for day in days:
        if day in done_days:
            continue
        horizon = pipeline.horizon(day)
        caps = tuple(cap.on(horizon, tz) for cap in spec.daily_caps)
        day_problem = pipeline.problem(horizon, caps=caps)
        book.run_rows += [
            {"day": day, "site": site, **{c: used.get(c) for c in RUN_COLUMNS[2:]}}
            for site, used in pipeline.supply(horizon).runs.items()
        ]
        submitted_gpu_hours = float(day_problem.jobs["gpu_hours"].sum())
        next_day = pipeline.horizon(pd.Timestamp(day).date() + pd.Timedelta(days=1))
        loads: list[pd.DataFrame] = []
        for name, policy in policies.items():
            problem = replace(day_problem, initial_load_mw=book.last_load.get(name),
                              initial_soc_mwh=book.last_soc.get(name))  # fmt: skip
            if name in book.carry and len(book.carry[name]):
                jobs = pd.concat([book.carry[name], day_problem.jobs], ignore_index=True)
                problem = replace(problem, jobs=jobs)
            done = _policy_day(name, policy, problem, spec, pipeline, timings, next_day)
            book.add(day, name, done, submitted_gpu_hours)
            loads.append(done.load)
        if out_dir is not None:
            book.write(out_dir, loads)
        if progress is not None:
            progress(day, book.daily)
    if pipeline.feed is not None:
        runs = pd.DataFrame(book.run_rows, columns=RUN_COLUMNS)
        from_runs = runs[runs["model"].notna()]
        notes.append(
            f"forecasts from weather model runs: {len(from_runs)} of {len(runs)} site-days "
            f"planned on a run ({', '.join(sorted(from_runs['model'].astype(str).unique()))}); "
            "the others on the error model (see runs.csv)"
        )
    return ReplayResult(
        book.daily,
        book.carry,
        pd.DataFrame(book.ramp_rows, columns=RAMP_COLUMNS),
        timings.total(pipeline),
        notes,
        None if spec.replan_every is None else spec.replan_every / pd.Timedelta(minutes=1),
    )


def _vintage(pipeline: DayPipeline, horizon: Horizon, issued_at: pd.Timestamp) -> pd.DataFrame:
    """The forecast of ``horizon`` issued at ``issued_at``."""
    return pipeline.supply(horizon, issued_at=issued_at).forecast


def summarize(result: ReplayResult) -> dict:
    """Totals per policy, and the optimizer's share of the oracle's gain over fifo."""
    daily = result.daily
    totals: dict[str, dict[str, Any]] = {}
    for name, part in daily.groupby("policy", sort=False):
        energy = part["energy_used_mwh"].sum()
        totals[name] = {
            "days": len(part),
            "green_share": float(part["green_used_mwh"].sum() / energy) if energy else 0.0,
            "grid_mwh": float(part["grid_mwh"].sum()),
            "co2_t": float(part["co2_t"].sum()),
            "cost": float(part["cost"].fillna(0).sum()),
            "green_unused_mwh": float(part["green_unused_mwh"].sum()),
            "storage_discharged_mwh": float(part["storage_discharged_mwh"].fillna(0).sum()),
            "storage_cycles": float(part["storage_cycles"].fillna(0).sum()),
            "energy_used_mwh": float(energy),
            "gpu_hours_submitted": float(part["gpu_hours_submitted"].sum()),
            "gpu_hours_served": float(part["gpu_hours_served"].sum()),
            "unfinished_gpu_hours_at_end": float(
                result.carry[name]["gpu_hours"].sum() if name in result.carry else 0.0
            ),
            "late_job_days": int(part["late_jobs"].sum()),
            "cap_violations": int(part["cap_violations"].sum()),
            "solve_seconds": float(part["solve_seconds"].sum()),
            "replans": int(part["replans"].fillna(0).sum()),
        }
    for name in totals:
        part = result.ramps[result.ramps["policy"] == name]
        totals[name]["ramps"] = {
            str(site): {
                "largest_step_mw": float(rows["largest_step_mw"].max()),
                "total_swing_mw": float(rows["total_swing_mw"].sum()),
                "slots_over_ramp": int(rows["slots_over_ramp"].sum()),
            }
            for site, rows in part.groupby("site", sort=False)
        }
    summary: dict = {
        "policies": totals,
        "replan_every_minutes": result.replan_every_minutes,
        "timings_s": result.timings_s,
        "notes": result.notes,
    }
    if {"fifo", "optimizer", "oracle"} <= totals.keys():
        fifo, opt, oracle = (totals[p]["green_share"] for p in ("fifo", "optimizer", "oracle"))
        gain = oracle - fifo
        summary["optimizer_share_of_oracle_gain"] = (opt - fifo) / gain if gain > 1e-12 else None
    return summary


def write_summary(summary: dict, path: Path) -> None:
    """Write ``summary.json`` (plain JSON, 2-space indent)."""
    path.write_text(json.dumps(summary, indent=2, default=float))
