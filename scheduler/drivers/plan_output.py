"""Driver: a day's plans as a plan directory (the contract's tables, manifest and chart)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forecasts.plot import local_times, site_panels
from scheduler.config import Config
from scheduler.contracts.plandir import Manifest, PlanTables, write_plan_dir
from scheduler.metrics import plan_metrics, site_load
from scheduler.pipeline import (
    DayPlan,
    purchases_table,
    sites_table,
    storage_plan_table,
    storage_table,
    summary_of,
)
from scheduler.problem import Problem, caps_frame
from scheduler.storage import StorageGuide

__all__ = ["save_day_plan", "save_run_day"]


def _plot(policy: str, load: pd.DataFrame, sites: list[str], path: Path, timezone: str) -> None:
    def draw(ax, site: str) -> None:
        part = load[load["site"] == site]
        local = local_times(part["time"], timezone)
        ax.step(local, part["green_mw"], where="post", color="#2a9d8f", label="green supply")
        ax.step(local, part["load_mw"], where="post", color="black", label=f"load ({policy})")
        ax.fill_between(local, part["green_used_mw"], part["load_mw"], step="post",
                        color="#e76f51", alpha=0.4, label="grid draw")  # fmt: skip
        ax.step(local, part["cap_mw"] + part["green_mw"], where="post", color="grey", ls=":",
                lw=0.8, label="grid limit + green")  # fmt: skip
        if (part["soc_mwh"] > 0).any() or (part["storage_charge_mw"] > 0).any():
            stored = ax.twinx()  # the site's storage: energy held at each slot's end
            stored.step(local, part["soc_mwh"], where="post", color="#6a4c93", lw=1.0)
            stored.set_ylabel("stored MWh", color="#6a4c93")
            stored.set_ylim(bottom=0)

    site_panels(sites, path, draw, timezone)


def _manifest(
    problem: Problem,
    config: Config,
    seed: int,
    policies: list[str],
    forecast: dict[str, dict] | None = None,
) -> Manifest:
    return Manifest(
        day_start=problem.horizon.start,
        day_end=problem.horizon.end,
        timezone=config.timezone,
        slot_minutes=problem.horizon.slot_minutes,
        sites=tuple(problem.site_names),
        policy=policies[0],
        compared=tuple(policies[1:]),
        seed=seed,
        config_sha256=config.sha256(),
        initial_load_mw=(
            None
            if problem.initial_load_mw is None
            else dict(zip(problem.site_names, map(float, problem.initial_load_mw), strict=True))
        ),
        forecast=forecast,
    )


def _tables(
    problem: Problem,
    manifest: Manifest,
    plans: dict[str, pd.DataFrame],
    guide: StorageGuide | None = None,
) -> PlanTables:
    return PlanTables(
        manifest=manifest,
        forecast=problem.supply,
        actual=problem.actual_supply,
        jobs=problem.jobs,
        plans=plans,
        sites=sites_table(problem),
        caps=caps_frame(problem.caps),
        storage=storage_table(problem),
        purchases=purchases_table(problem),
        storage_plan=None if guide is None else storage_plan_table(problem, guide),
    )


def save_day_plan(
    out: Path, day: DayPlan, config: Config, seed: int, forecast: dict[str, dict] | None = None
) -> Path:
    """Write the plan directory of ``day`` (see :data:`scheduler.contracts.plandir.FILES`);
    ``forecast`` says per site where the forecast came from (the manifest's ``forecast``)."""
    problem = day.problem
    policies = [day.primary, *(p for p in day.results if p != day.primary)]
    manifest = _manifest(problem, config, seed, policies, forecast)
    guide = day.results[day.primary].storage_guide
    tables = _tables(problem, manifest, {name: r.plan for name, r in day.results.items()}, guide)
    primary = day.results[day.primary].plan
    load = site_load(primary, problem.supply, problem.sites, problem.horizon, problem.caps,
                     problem.soc_start_mwh, guide, problem.jobs)  # fmt: skip
    write_plan_dir(out, tables, site_load=load, summary=summary_of(day))
    _plot(day.primary, load, problem.site_names, out / "plan.png", config.timezone)
    return out


def save_run_day(
    out: Path,
    problem: Problem,
    plan: pd.DataFrame,
    config: Config,
    seed: int,
    executed: pd.DataFrame | None = None,
    guide: StorageGuide | None = None,
) -> Path:
    """Write the plan directory of a day the control loop ran: ``plan`` is what it planned
    from slot to slot (every re-plan included), ``problem`` the day with the caps in force,
    ``executed`` the work that ran (a plan table) when the day ran, ``guide`` how the plans
    ran the sites' storage (``None``: the storage rule).

    ``summary.json`` says what ran apart from what was planned: ``ran`` scores ``executed`` on
    the supply the slots settled on (the actual or measured supply), ``planned`` the plan per
    policy on the forecasts it was made on (a plan may break a cap on a forecast the day
    then did not meet)."""
    manifest = _manifest(problem, config, seed, ["optimizer"])
    soc_start = problem.soc_start_mwh
    load = site_load(plan, problem.supply, problem.sites, problem.horizon, problem.caps,
                     soc_start, guide, problem.jobs)  # fmt: skip
    planned = plan_metrics(
        plan, problem.jobs, problem.supply, problem.sites, problem.horizon, problem.caps,
        problem.initial_load_mw, soc_start, guide,
    )  # fmt: skip
    summary: dict[str, object] = {"planned": {"optimizer": planned.to_dict()}}
    if executed is not None:
        settled_on = problem.actual_supply if problem.actual_supply is not None else problem.supply
        ran = plan_metrics(
            executed, problem.jobs, settled_on, problem.sites, problem.horizon, problem.caps,
            problem.initial_load_mw, soc_start, guide,
        )  # fmt: skip
        summary = {"ran": ran.to_dict(), **summary}
    write_plan_dir(out, _tables(problem, manifest, {"optimizer": plan}, guide), site_load=load,
                   summary=summary)  # fmt: skip
    _plot("optimizer", load, problem.site_names, out / "plan.png", config.timezone)
    return out
