"""Planning with site batteries (issue 24): the optimizer with and without storage on the same
day, at 1,000 and 10,000 jobs.

The planning benchmark's day (:func:`benchmarks.bench_plan.scaled_problem`: the default sites
and supply scaled with the jobs), once as it is and once with one battery per site of 2 hours of
the site's mean load (``p_nom`` the mean load, 95 % efficient each way, empty at the start),
scaled like the sites. Per size: the optimizer's CO2 and its gap to its bound (with storage, the
bound includes it), the solve time with storage over the time without (the median of
``REPEATS`` rounds, each side in turn; ratios, not seconds, matter on a shared machine), and a
mid-day re-plan with storage (the rest of the day from 12:00 local, from the energy stored
then), timed alone. Targets at 10,000 jobs: gap with storage <= 1 %, time ratio <= 2, re-plan
< 1 s. Also the CO2 of greedy, whose batteries follow the storage rule.
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import replace

import pandas as pd
from rich.console import Console
from rich.table import Table

from benchmarks.bench_plan import DATE, scaled_problem
from scheduler.config import load_config
from scheduler.horizon import operating_day
from scheduler.pipeline import DayPipeline
from scheduler.policies import get_policy
from scheduler.problem import Problem
from scheduler.replan import RunState, rest_of_day
from scheduler.settlement.engine import Settlement
from scheduler.storage import StorageUnit

SIZES = (1_000, 10_000)
REPEATS = 3
HOURS = 2.0
EFFICIENCY = 0.95


def with_batteries(problem: Problem, mean_load_mw: dict[str, float], factor: float) -> Problem:
    """``problem`` with one battery per site of :data:`HOURS` of its mean load, scaled."""
    sites = tuple(
        s.model_copy(update={"storage": {"battery": StorageUnit(
            p_nom=mean_load_mw[s.name] * factor, max_hours=HOURS,
            efficiency_store=EFFICIENCY, efficiency_dispatch=EFFICIENCY,
        )}})
        for s in problem.sites
    )  # fmt: skip
    return replace(problem, sites=sites)


def midday_state(problem: Problem, result) -> RunState:
    """Where the day stands at 12:00 local once its plan has run to then (forecast as actual)."""
    engine = Settlement(replace(problem, actual_supply=problem.supply), result)
    noon = pd.Timestamp(f"{DATE} 12:00", tz=load_config().timezone).tz_convert("UTC")
    first = int(problem.horizon.times.searchsorted(noon))
    for t in range(first):
        engine.step(t)
    return engine.run_state(problem.horizon.times[first])


def main() -> None:
    warnings.filterwarnings("ignore")
    console = Console(width=160)
    config = load_config()
    horizon = operating_day(DATE, config.timezone, config.forecast.slot_minutes)
    supply = DayPipeline(config).supply(horizon).forecast
    mean = config.mean_load_mw()
    optimizer = get_policy("optimizer", config.solver)
    view = Table(title=f"optimizer with and without batteries ({HOURS:g} h of mean load), {DATE}")
    for column in ("jobs", "storage", "CO2 t", "bound t", "gap %", "solve s (median)",
                   "with / without", "greedy CO2 t", "mid-day re-plan s"):  # fmt: skip
        view.add_column(column, justify="right")
    for n_jobs in SIZES:
        plain = scaled_problem(config, supply, n_jobs)
        factor = plain.sites[0].gpus / config.sites[plain.sites[0].name].gpus
        stored = with_batteries(plain, mean, factor)
        seconds: dict[str, list[float]] = {"without": [], "with": []}
        results = {}
        for _ in range(REPEATS):
            for name, problem in (("without", plain), ("with", stored)):
                began = time.perf_counter()
                results[name] = optimizer.plan(problem)
                seconds[name].append(time.perf_counter() - began)
        ratio = statistics.median(w / o for w, o in zip(seconds["with"], seconds["without"],
                                                        strict=True))  # fmt: skip
        state = midday_state(stored, results["with"])
        rest = rest_of_day(stored, state)
        assert rest is not None
        began = time.perf_counter()
        optimizer.plan(rest)
        replan_s = time.perf_counter() - began
        for name, problem in (("without", plain), ("with", stored)):
            result = results[name]
            greedy = get_policy("greedy", config.solver).plan(problem)
            view.add_row(
                f"{problem.n_jobs:,}", name, f"{result.objective_kg / 1000:,.2f}",
                f"{(result.best_bound_kg or 0) / 1000:,.2f}", f"{100 * (result.gap or 0):.3f}",
                f"{statistics.median(seconds[name]):.2f}",
                f"{ratio:.2f}" if name == "with" else "", f"{greedy.objective_kg / 1000:,.2f}",
                f"{replan_s:.2f}" if name == "with" else "",
            )  # fmt: skip
    console.print(view)
    console.print(
        "targets at 10,000 jobs with storage: gap <= 1 %, with / without <= 2, mid-day re-plan "
        "< 1 s (the re-plan starts from the energy stored at noon, on the plan's own supply)"
    )
