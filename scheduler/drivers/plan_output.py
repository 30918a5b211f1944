"""Driver: a day's plans as a plan directory (the contract's tables, manifest and chart)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forecasts.plot import local_times, site_panels
from scheduler.config import Config
from scheduler.contracts.plandir import Manifest, PlanTables, write_plan_dir
from scheduler.metrics import site_load
from scheduler.pipeline import DayPlan, sites_table, summary_of
from scheduler.problem import caps_frame

__all__ = ["save_day_plan"]


def _plot(day: DayPlan, load: pd.DataFrame, path: Path, timezone: str) -> None:
    def draw(ax, site: str) -> None:
        part = load[load["site"] == site]
        local = local_times(part["time"], timezone)
        ax.step(local, part["green_mw"], where="post", color="#2a9d8f", label="green supply")
        ax.step(local, part["load_mw"], where="post", color="black", label=f"load ({day.primary})")
        ax.fill_between(local, part["green_used_mw"], part["load_mw"], step="post",
                        color="#e76f51", alpha=0.4, label="grid draw")  # fmt: skip
        ax.step(local, part["cap_mw"] + part["green_mw"], where="post", color="grey", ls=":",
                lw=0.8, label="grid limit + green")  # fmt: skip

    site_panels([s.name for s in day.problem.sites], path, draw, timezone)


def save_day_plan(out: Path, day: DayPlan, config: Config, seed: int) -> Path:
    """Write the plan directory of ``day`` (see :data:`scheduler.contracts.plandir.FILES`)."""
    problem = day.problem
    manifest = Manifest(
        day_start=problem.horizon.start,
        day_end=problem.horizon.end,
        timezone=config.timezone,
        slot_minutes=problem.horizon.slot_minutes,
        sites=tuple(problem.site_names),
        policy=day.primary,
        compared=tuple(p for p in day.results if p != day.primary),
        seed=seed,
        config_sha256=config.sha256(),
    )
    tables = PlanTables(
        manifest=manifest,
        forecast=problem.supply,
        actual=problem.actual_supply,
        jobs=problem.jobs,
        plans={name: result.plan for name, result in day.results.items()},
        sites=sites_table(problem),
        caps=caps_frame(problem.caps),
    )
    primary = day.results[day.primary].plan
    load = site_load(primary, problem.supply, problem.sites, problem.horizon, problem.caps)
    write_plan_dir(out, tables, site_load=load, summary=summary_of(day))
    _plot(day, load, out / "plan.png", config.timezone)
    return out
