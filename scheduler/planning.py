"""Driver: plan one operating day with several policies and write the plan directory.

Wires forecasts (supply), jobs, the policies, the validator and metrics; holds no planning
logic. Every plan is checked by the shared validator before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecasts.plot import local_times, site_panels
from scheduler.config import Config
from scheduler.horizon import UTC_ISO_FORMAT
from scheduler.metrics import PlanMetrics, plan_metrics, site_load
from scheduler.policies import PlanResult, get_policy
from scheduler.policies._blocks import block_gpus, block_starts
from scheduler.problem import Problem, caps_frame
from scheduler.validate import assert_valid

__all__ = [
    "DayPlan",
    "PlanningError",
    "check_feasible",
    "infeasible_jobs",
    "plan_day",
    "write_plan_dir",
]

_MAX_NAMED = 20


class PlanningError(ValueError):
    """A problem the user must fix before it can be planned; the message names the jobs."""


def infeasible_jobs(problem: Problem) -> list[str]:
    """Jobs that could not finish even alone on an empty fleet, one line each.

    A job fits alone when its window holds its work at ``min(max_gpus, free GPUs of its allowed
    sites)`` per slot (site GPUs, grid import limit and caps); a non-preemptible job needs one
    contiguous block at one site.
    """
    capacity = problem.capacity_gpus  # [site, slot]
    masks, inverse = np.unique(problem.site_mask, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    slots = np.arange(problem.horizon.n_slots)
    out = []
    for m, mask in enumerate(masks):
        jobs = np.flatnonzero(inverse == m)
        per_slot = capacity[mask].sum(axis=0)
        window = (slots >= problem.release_slot[jobs, None]) & (
            slots < problem.deadline_slot[jobs, None]
        )
        alone = (np.minimum(per_slot[None, :], problem.max_gpus[jobs, None]) * window).sum(axis=1)
        for j, most in zip(jobs, alone, strict=True):
            if not problem.preemptible[j]:
                gpus = block_gpus(int(problem.work_units[j]), int(problem.max_gpus[j]))
                first, end = problem.release_slot[j], problem.deadline_slot[j]
                sites = np.flatnonzero(mask)
                fits = any(len(block_starts(capacity[s], first, end, gpus)) for s in sites)
                most = problem.work_units[j] if fits else 0
            if most < problem.work_units[j]:
                names = ", ".join(np.asarray(problem.site_names)[mask])
                run = "" if problem.preemptible[j] else " in one contiguous run at one site"
                out.append(
                    f"{problem.job_ids[j]}: needs {problem.work_units[j] * problem.slot_hours:g} "
                    f"GPU-h{run} at {names}; at most {most * problem.slot_hours:g} fit its window"
                )
    return out


def check_feasible(problem: Problem) -> None:
    """Raise :class:`PlanningError` naming every job that fits nowhere (see
    :func:`infeasible_jobs`); work that only competition crowds out is reported unfinished."""
    bad = infeasible_jobs(problem)
    if bad:
        shown = "\n  ".join(bad[:_MAX_NAMED])
        more = f"\n  ... and {len(bad) - _MAX_NAMED} more" if len(bad) > _MAX_NAMED else ""
        raise PlanningError(
            f"{len(bad)} job(s) fit nowhere, even alone on an empty fleet (site GPUs, grid import "
            f"limit and caps over their window at their allowed sites):\n  {shown}{more}"
        )


@dataclass(frozen=True)
class DayPlan:
    """Every policy's validated result and metrics for one problem; ``primary`` is the plan."""

    problem: Problem
    primary: str
    results: dict[str, PlanResult]
    metrics: dict[str, PlanMetrics]


def plan_day(problem: Problem, config: Config, policies: Sequence[str]) -> DayPlan:
    """Plan ``problem`` with each policy (the first is primary), validate and score each.

    Raises :class:`PlanningError` first if a job fits nowhere (see :func:`check_feasible`).
    """
    check_feasible(problem)
    results, metrics = {}, {}
    for name in dict.fromkeys(policies):
        result = get_policy(name, config.solver).plan(problem)
        assert_valid(problem, result)
        results[name] = result
        metrics[name] = plan_metrics(
            result.plan, problem.jobs, problem.supply, problem.sites, problem.horizon, problem.caps
        )
    return DayPlan(problem, policies[0], results, metrics)


def sites_frame(problem: Problem) -> pd.DataFrame:
    """The parameters the plan was made with (carbon as the day's mean of any profile)."""
    carbon = problem.carbon_kg_per_mwh.mean(axis=1)
    return pd.DataFrame(
        {
            "site": [s.name for s in problem.sites],
            "gpus": [s.gpus for s in problem.sites],
            "kw_per_gpu": [s.kw_per_gpu for s in problem.sites],
            "pue": [s.pue for s in problem.sites],
            "base_load_mw": [s.base_load_mw for s in problem.sites],
            "grid_import_limit_mw": [s.grid_import_limit_mw for s in problem.sites],
            "carbon_kg_per_mwh": carbon,
        }
    )


def summary_of(day: DayPlan) -> dict:
    """``summary.json``: one entry per policy, metrics plus solver facts."""
    out = {}
    for name, result in day.results.items():
        out[name] = {
            **day.metrics[name].to_dict(),
            "status": result.status,
            "solve_seconds": result.solve_seconds,
            "objective_kg": result.objective_kg,
            "best_bound_kg": result.best_bound_kg,
            "gap": result.gap,
            "jobs_unfinished_ids": result.jobs_unfinished,
        }
    return out


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


def write_plan_dir(
    out: Path, day: DayPlan, actual_supply: pd.DataFrame | None, timezone: str
) -> None:
    """Write the plan directory of issue 3 (CSV tables, ``summary.json``, ``plan.png``)."""
    out.mkdir(parents=True, exist_ok=True)
    problem = day.problem

    def csv(frame: pd.DataFrame, name: str) -> None:
        frame.to_csv(out / name, index=False, date_format=UTC_ISO_FORMAT)

    csv(problem.supply, "supply.csv")
    if actual_supply is not None:
        csv(actual_supply, "supply_actual.csv")
    csv(problem.jobs, "jobs.csv")
    csv(sites_frame(problem), "sites.csv")
    csv(caps_frame(list(problem.caps)), "caps.csv")
    for name, result in day.results.items():
        csv(result.plan, f"plan-{name}.csv")
    csv(day.results[day.primary].plan, "plan.csv")
    load = site_load(day.results[day.primary].plan, problem.supply, problem.sites, problem.horizon,
                     problem.caps)  # fmt: skip
    csv(load, "site_load.csv")
    (out / "summary.json").write_text(json.dumps(summary_of(day), indent=2, default=float))
    _plot(day, load, out / "plan.png", timezone)
