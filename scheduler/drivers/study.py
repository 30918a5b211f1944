"""Studies: sweep replay scenarios (forecast error, job mix, a daily cap) and fan them out on Ray.

A study file (YAML, validated like the config) names the replay and the values to sweep; the
scenarios are the cartesian product of the sweeps. Scenarios are independent, so each runs as a
Ray task: on an embedded local Ray by default, on a cluster with ``address``. Results come back
as one tidy table, one row per scenario and policy.

Example::

    from: 2026-03-01
    to: 2026-03-14
    policies: [fifo, optimizer, oracle]
    weather: {qingyang: synthetic, shantou: synthetic}
    sweep:
      forecast_error: [0.0, 1.0, 2.0]
      deferrable_scale: [0.5, 1.0]
      daily_cap: [null, "shantou:18-22:5"]
      limits_on: [forecast, p10]         # default: the config's solver.limits_on
      replan_every_minutes: [null, 60]   # plan once a day, or re-plan hourly on fresher vintages
      storage_hours: [0, 1, 2, 4]        # a battery per site of that many hours of its mean load
      cost_weight: [0, 0.5, 2, 1000]     # plan on CO2 + w x cost [kg/currency]: the front
      price_scale: [1.0, 1.5]            # every site's grid price times this (the tariff axis)

The results table has one row per scenario and policy: the swept values, the policy, its
totals over the days (green share, grid MWh, CO2 t, cost, unused green MWh, stored green
discharged and storage cycles, energy used, GPU-hours
submitted and served, unfinished GPU-hours at the end, late job-days, cap violations, solve
seconds, re-plans), per site the ramp figures (``<site>_largest_step_mw``,
``<site>_total_swing_mw``, ``<site>_slots_over_ramp``) and the optimizer's share of the
oracle's gain over fifo.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scheduler.config import Config, ConfigError, format_validation_errors
from scheduler.contracts import UserError
from scheduler.drivers.replay import DailyCap, ReplaySpec, replay, summarize

__all__ = ["StudySpec", "load_study", "plot_front", "run_study", "scenario_specs"]

log = logging.getLogger(__name__)
DEFERRABLE_WINDOW_H = 12.0  # classes whose shortest window is at least this are "deferrable"


def parse_daily_cap(text: str) -> DailyCap:
    """``SITE:START-END:MW`` (local hours, grid-import MW) -> :class:`DailyCap`."""
    try:
        site, hours, value = text.split(":")
        start, end = (float(h) for h in hours.split("-"))
        return DailyCap(site=site, start_hour=start, end_hour=end, value_mw=float(value))
    except ValueError:
        raise UserError(
            f"daily cap {text!r}: expected SITE:START-END:MW in local hours, e.g. shantou:18-22:5"
        ) from None


class Sweep(BaseModel):
    """Values to sweep; each list is one axis of the scenario grid."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    forecast_error: list[float] = Field(
        default=[1.0],
        min_length=1,
        description="scales of the forecast error (0: perfect foresight)",
    )
    deferrable_scale: list[float] = Field(
        default=[1.0],
        min_length=1,
        description="factors on the jobs of the classes whose shortest window is at least 12 h",
    )
    daily_cap: list[str | None] = Field(
        default=[None],
        min_length=1,
        description="a grid-import cap every day, SITE:START-END:MW in local hours; null: none",
    )
    limits_on: list[Literal["forecast", "p10"]] | None = Field(
        default=None, min_length=1, description="null: the config's solver.limits_on, as replay"
    )
    replan_every_minutes: list[int | None] = Field(
        default=[None],
        min_length=1,
        description="re-plan the work left this often within each day [min]; null: once a day",
    )
    cost_weight: list[float | None] = Field(
        default=[None],
        min_length=1,
        description="plan on CO2 + this many kg per unit of currency of grid cost (0: CO2 "
        "alone; large: cost alone); null: the config's objective. Sweeping it traces the "
        "cost-CO2 front",
    )
    price_scale: list[float] = Field(
        default=[1.0],
        min_length=1,
        description="every site's grid price (and time-of-use tariff) times this factor",
    )
    storage_hours: list[float | None] = Field(
        default=[None],
        min_length=1,
        description="a battery per site, replacing the config's: p_nom the site's mean load "
        "(Config.mean_load_mw), this many hours of it, 95 % efficient each way; 0: none; "
        "null: the config's storage",
    )

    @field_validator("forecast_error", "deferrable_scale", "storage_hours", "cost_weight",
                     "price_scale")  # fmt: skip
    @classmethod
    def _non_negative(cls, values: list[float | None]) -> list[float | None]:
        if any(v is not None and v < 0 for v in values):
            raise ValueError("values must be >= 0")
        return values

    @field_validator("replan_every_minutes")
    @classmethod
    def _positive(cls, values: list[int | None]) -> list[int | None]:
        if any(v is not None and v <= 0 for v in values):
            raise ValueError("minutes must be > 0 (null: plan once a day)")
        return values

    @field_validator("daily_cap")
    @classmethod
    def _caps(cls, values: list[str | None]) -> list[str | None]:
        for value in values:
            if value is not None:
                parse_daily_cap(value)
        return values


class StudySpec(BaseModel):
    """A study file."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    first: dt.date = Field(alias="from", description="first operating day (local date)")
    last: dt.date = Field(alias="to", description="last operating day, inclusive")
    policies: list[str] = Field(
        default=["fifo", "greedy", "optimizer", "oracle"],
        min_length=1,
        description="policies replayed in every scenario",
    )
    weather: dict[str, str] = Field(
        default_factory=dict, description="per site: 'synthetic' or a weather file"
    )
    seed: int = Field(default=1, description="seed of weather, forecast errors and jobs")
    sweep: Sweep = Field(default_factory=Sweep, description="the values to sweep (below)")


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file; errors name the file and the field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read study: {error}") from None
    try:
        return StudySpec.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_errors(str(path), error)) from None


def scenario_specs(study: StudySpec, config: Config) -> list[tuple[dict[str, Any], ReplaySpec]]:
    """The scenario grid: ``(parameters, replay spec)`` per point."""
    sources = {name: study.weather.get(name, "synthetic") for name in config.sites}
    out = []
    sweep = study.sweep
    slot_minutes = config.forecast.slot_minutes
    for every in sweep.replan_every_minutes:
        if every is not None and every % slot_minutes:
            raise UserError(
                f"sweep.replan_every_minutes: {every} is not a multiple of the "
                f"{slot_minutes}-minute slot"
            )
    limits = sweep.limits_on or [config.solver.limits_on]
    for error, scale, cap, limits_on, every, hours, weight, price in itertools.product(
        sweep.forecast_error, sweep.deferrable_scale, sweep.daily_cap, limits,
        sweep.replan_every_minutes, sweep.storage_hours, sweep.cost_weight, sweep.price_scale,
    ):  # fmt: skip
        scenario_config = config.with_jobs_scaled(scale, DEFERRABLE_WINDOW_H).with_solver(
            limits_on=limits_on
        )
        if hours is not None:
            scenario_config = scenario_config.with_storage_hours(hours)
        if weight is not None:
            scenario_config = scenario_config.with_solver(objective="weighted", cost_weight=weight)
        if price != 1.0:
            scenario_config = scenario_config.with_prices_scaled(price)
        spec = ReplaySpec(
            config=scenario_config,
            sources=sources,
            first=study.first.isoformat(),
            last=study.last.isoformat(),
            policies=tuple(study.policies),
            error_scale=error,
            seed=study.seed,
            daily_caps=(parse_daily_cap(cap),) if cap else (),
            replan_every=None if every is None else pd.Timedelta(minutes=every),
        )
        parameters = {
            "forecast_error": error,
            "deferrable_scale": scale,
            "daily_cap": cap or "",
            "limits_on": limits_on,
            "replan_every_minutes": every,
            "storage_hours": hours,
            "cost_weight": weight,
            "price_scale": price,
        }
        out.append((parameters, spec))
    return out


def _run_one(parameters: dict[str, Any], spec: ReplaySpec) -> list[dict[str, Any]]:
    summary = summarize(replay(spec))
    share = summary.get("optimizer_share_of_oracle_gain")
    return [
        {**parameters, "policy": policy, **_flat(totals), "optimizer_share_of_oracle_gain": share}
        for policy, totals in summary["policies"].items()
    ]


def _flat(totals: dict[str, Any]) -> dict[str, Any]:
    """A policy's totals as table cells: per-site ramp figures as ``<site>_<figure>`` columns
    (a nested mapping would land in the CSV as Python text)."""
    ramps = totals.get("ramps", {})
    cells = {k: v for k, v in totals.items() if k != "ramps"}
    for site, figures in ramps.items():
        cells.update({f"{site}_{name}": value for name, value in figures.items()})
    return cells


def run_study(
    study: StudySpec, config: Config, *, address: str | None = None, num_cpus: int = 2
) -> pd.DataFrame:
    """Run every scenario as a Ray task and return the tidy results table."""
    import ray

    from clusters.resources import ray_environment_defaults

    scenarios = scenario_specs(study, config)
    ray_environment_defaults()
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(_run_one)
        futures = [task.remote(parameters, spec) for parameters, spec in scenarios]
        log.info("study: %d scenarios submitted", len(futures))
        rows = [row for result in ray.get(futures) for row in result]
    finally:
        if started_here:
            ray.shutdown()
    return pd.DataFrame(rows)


def plot_front(table: pd.DataFrame, path: Path) -> Path | None:
    """The cost-CO2 front of a study that swept ``cost_weight``: each policy's scenarios as
    points (grid cost, CO2 t), joined in the order of the weight, one line per combination of
    the other swept values; ``None`` (nothing written) when the weight was not swept."""
    weights = table["cost_weight"].dropna().unique()
    if len(weights) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [c for c in ("forecast_error", "deferrable_scale", "daily_cap", "limits_on",
                          "replan_every_minutes", "storage_hours", "price_scale")
              if table[c].nunique(dropna=False) > 1]  # fmt: skip
    fig, ax = plt.subplots(figsize=(8, 5))
    for keys, part in table.dropna(subset=["cost_weight"]).groupby(["policy", *others]):
        part = part.sort_values("cost_weight")
        label = ", ".join(str(k) for k in (keys if isinstance(keys, tuple) else (keys,)))
        ax.plot(part["cost"], part["co2_t"], marker="o", label=label)
    ax.set_xlabel("grid cost [currency]")
    ax.set_ylabel("grid CO2 [t]")
    ax.set_title("cost-CO2 front (each point a cost_weight; lower left is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
