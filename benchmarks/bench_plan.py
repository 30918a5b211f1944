"""Planning benchmark: 1k, 10k and 100k jobs x 2 sites x 96 slots.

The default workload classes and the default sites (GPUs, base load, grid import limit, ramp
limits, renewable supply) are scaled by the same factor, so utilisation stays near the
default's ~60 % of GPU-hours. For each size it prints build and solve seconds and peak memory
of the optimizer (including its bound), its CO2 and its gap to the bound on the work as asked
(:func:`~scheduler.policies.optimizer.lp_bound`), and the green share of fifo, greedy and
optimizer side by side. It also times the plain time-indexed GLOP model over the work as asked
at 1k jobs, the baseline the flow formulation replaces, and checks the bound against it.
"""

from __future__ import annotations

import resource
import time
import warnings

import pandas as pd
from rich.console import Console
from rich.table import Table

from scheduler.config import Config, load_config
from scheduler.horizon import operating_day
from scheduler.jobs import generate_jobs
from scheduler.metrics import plan_metrics
from scheduler.pipeline import DayPipeline
from scheduler.policies import get_policy
from scheduler.policies.lp_reference import solve_time_indexed_lp
from scheduler.policies.optimizer import lp_bound
from scheduler.problem import Problem
from scheduler.validate import assert_valid

SIZES = (1_000, 10_000, 100_000)
DATE = "2026-06-15"


def scaled_problem(config: Config, supply: pd.DataFrame, n_jobs: int) -> Problem:
    """The default day with ``n_jobs`` jobs; sites and supply scaled by the same factor."""
    default_jobs = sum(c.jobs for c in config.workload.classes.values())
    factor = n_jobs / default_jobs
    classes = {
        name: c.model_copy(update={"jobs": round(c.jobs * factor)})
        for name, c in config.workload.classes.items()
    }
    workload = config.workload.model_copy(update={"classes": classes})
    # model_copy skips validation on purpose: 100k jobs need more GPUs than a config allows
    sites = tuple(
        s.model_copy(
            update={
                "gpus": round(s.gpus * factor),
                "base_load_mw": s.base_load_mw * factor,
                "grid_import_limit_mw": s.grid_import_limit_mw * factor,
                **{
                    field: None if getattr(s, field) is None else getattr(s, field) * factor
                    for field in ("ramp_up_mw_per_min", "ramp_down_mw_per_min")
                },
            }
        )
        for s in config.sites.values()
    )
    horizon = operating_day(DATE, config.timezone, config.forecast.slot_minutes)
    jobs = generate_jobs(
        workload, horizon.start, config.seed, list(config.sites), horizon.slot_minutes
    )
    scaled = supply.copy()
    for column in ("pv_mw", "wind_mw", "green_mw"):
        scaled[column] = scaled[column] * factor
    return Problem(horizon, sites, jobs, scaled, user_region=config.workload.user_region)


def _timed(call):
    began = time.perf_counter()
    out = call()
    return out, time.perf_counter() - began


def main() -> None:
    warnings.filterwarnings("ignore")
    config = load_config()
    console = Console(width=160)
    horizon = operating_day(DATE, config.timezone, config.forecast.slot_minutes)
    supply = DayPipeline(config).supply(horizon).forecast

    table = Table(title=f"planning benchmark: 2 sites x {horizon.n_slots} slots, {DATE}")
    for column in (
        "jobs",
        "build s",
        "optimizer s",
        "peak RSS MiB",
        "gap CO2 %",
        "CO2 t opt / bound",
        "green share fifo",
        "greedy",
        "optimizer",
        "unfinished f/g/o",
    ):
        table.add_column(column, justify="right")
    glop_note = ""
    for n_jobs in SIZES:
        began = time.perf_counter()
        problem = scaled_problem(config, supply, n_jobs)
        _ = problem.site_mask, problem.green_mw, problem.capacity_gpus
        build_s = time.perf_counter() - began
        optimizer = get_policy("optimizer", config.solver)
        result, solve_s = _timed(lambda: optimizer.plan(problem))  # noqa: B023
        assert_valid(problem, result)
        bound_kg = lp_bound(problem)
        shares, unfinished = {}, {}
        for name in ("fifo", "greedy"):
            other = get_policy(name).plan(problem)
            assert_valid(problem, other)
            m = plan_metrics(
                other.plan, problem.jobs, problem.supply, problem.sites, problem.horizon
            )
            shares[name], unfinished[name] = m.green_share, m.jobs_unfinished
        m = plan_metrics(result.plan, problem.jobs, problem.supply, problem.sites, problem.horizon)
        table.add_row(
            f"{problem.n_jobs:,}",
            f"{build_s:.2f}",
            f"{solve_s:.2f}",
            f"{_rss_mib():.0f}",
            f"{100 * (result.gap or 0):.3f}",
            f"{result.objective_kg / 1000:,.2f} / {bound_kg / 1000:,.2f}",
            f"{shares['fifo']:.3f}",
            f"{shares['greedy']:.3f}",
            f"{m.green_share:.3f}",
            f"{unfinished['fifo']}/{unfinished['greedy']}/{m.jobs_unfinished}",
        )
        if n_jobs == SIZES[0]:
            lp, glop_s = _timed(lambda: solve_time_indexed_lp(problem, as_asked=True))  # noqa: B023
            glop_note = (
                f"time-indexed GLOP over the work as asked at {problem.n_jobs:,} jobs: "
                f"{glop_s:.2f} s (objective {lp.objective_kg:,.1f} kg vs bound "
                f"{bound_kg:,.1f} kg; the optimizer's plan {result.objective_kg:,.1f} kg); "
                f"optimizer {solve_s:.2f} s, ratio {glop_s / solve_s:.1f}x"
            )
    console.print(table)
    console.print(glop_note)
    console.print("peak MiB: the process's peak resident memory so far (getrusage ru_maxrss)")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
