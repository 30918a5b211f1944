"""Storage benchmark (issue 24): a year of one site's battery settled by greensched and by Vessim.

One site's year (qingyang, 2026: 365 days x 96 slots of 15 minutes) with one lossless battery
(10 MW, 4 h, from 20 MWh, keeping 2 MWh) is settled on the same series twice: by
:func:`~scheduler.storage.follow_surplus`, the rule greensched's scorer applies, and by a Vessim
``Environment`` (native backend, ``SimpleBattery`` then ``GridConnection`` under the
``DefaultDispatchPolicy``, read back with a ``Recorder``), built by the independent check's
own mapping (``tests/scheduler/test_storage_vessim.py``: units, signs, and Vessim recording a
slot's energy at its start).

Timed on each side: from the load and green arrays to the grid import and the state of charge
of every slot (greensched: the fleet, ``follow_surplus`` and the grid import; Vessim: the
traces, the environment, the run and reading back the Recorder's log). Also timed: Vessim with
no controller, which gives back only the final state, a lower bound on Vessim's time rather
than a like-for-like. The series, not timed: green supply from the shared Urumqi EPW file
(synthetic weather when it is absent), load from a greedy plan of each day (each planned on
its own on the day's forecast) settled without a battery: base load plus the GPUs busy.

The machine is shared: each side runs ``REPEATS`` times in turn; times are medians, the ratio
the median of each round's ratio (min-max beside it); ratios matter, not seconds. Targets:
greensched / Vessim (with the Recorder) <= 0.1, grid import and state of charge within 0.1 %.
"""

from __future__ import annotations

import statistics
import time
import warnings

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from benchmarks.bench_ramp import FILES
from scheduler.config import Config, load_config
from scheduler.metrics import site_load
from scheduler.pipeline import DayPipeline, plan_day
from scheduler.storage import StorageFleet, StorageUnit, follow_surplus
from tests.scheduler.test_storage_vessim import SITE, settle_with_vessim, vessim_environment

YEAR = "2026-01-01"
DAYS = 365
REPEATS = 3
UNIT = StorageUnit(p_nom=10.0, max_hours=4.0, state_of_charge_initial=20.0, state_of_charge_min=2.0)
TARGET_RATIO = 0.1


def year_series(config: Config, sources: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """:data:`SITE`'s load and actual green supply ``[slot]`` [MW] over the year, the load from
    a greedy plan of each day settled without storage."""
    pipeline = DayPipeline(config, sources)
    year = pipeline.horizon(YEAR, days=DAYS)
    pipeline.preload(year)
    plans = []
    for day in pd.date_range(YEAR, periods=DAYS, freq="D"):
        problem = pipeline.problem(pipeline.horizon(day.date()))
        plans.append(plan_day(problem, config, ["greedy"]).results["greedy"].plan)
    actual = pipeline.supply(year).actual
    plan = pd.concat(plans, ignore_index=True)
    table = site_load(plan, actual, tuple(config.sites.values()), year)
    rows = table[table["site"] == SITE]
    return rows["load_mw"].to_numpy(), rows["green_mw"].to_numpy()


def greensched_settles(
    load_mw: np.ndarray, green_mw: np.ndarray, slot_hours: float
) -> tuple[np.ndarray, np.ndarray]:
    """Grid import [MW] and energy stored at each slot's end [MWh] by greensched's rule."""
    fleet = StorageFleet.of([{"b": UNIT}])
    stored = follow_surplus(fleet, load_mw[None], green_mw[None], slot_hours)
    grid_mw = np.maximum(load_mw - np.minimum(load_mw, green_mw) - stored.discharge_mw[0], 0.0)
    return grid_mw, stored.soc_mwh[0]


def vessim_final_mwh(load_mw: np.ndarray, green_mw: np.ndarray, slot_minutes: int) -> float:
    """Vessim's run with no controller: only the energy stored at the end [MWh]."""
    environment = vessim_environment(load_mw, green_mw, slot_minutes, UNIT)
    result = environment.run(until=len(load_mw) * slot_minutes * 60)
    return result.states[SITE]["dispatch_states"]["battery"]["charge_level"] / 1e6


def _timed(call):
    started = time.perf_counter()
    out = call()
    return time.perf_counter() - started, out


def main() -> None:
    warnings.filterwarnings("ignore")
    console = Console(width=140)
    config = load_config()
    sources = {s: str(FILES[s]) if FILES[s].exists() else "synthetic" for s in config.sites}
    real = sources[SITE] != "synthetic"
    started = time.perf_counter()
    load_mw, green_mw = year_series(config, sources)
    slot_minutes = config.forecast.slot_minutes
    slot_hours = slot_minutes / 60
    console.print(
        f"{SITE}, {DAYS} days from {YEAR}: {len(load_mw):,} slots of {slot_minutes} min; "
        f"weather {'the shared EPW file' if real else 'synthetic (EPW file absent)'}; load "
        f"{load_mw.mean():.1f} MW mean ({load_mw.min():.1f} to {load_mw.max():.1f}), green "
        f"{green_mw.mean():.1f} MW mean (max {green_mw.max():.1f}); series built in "
        f"{time.perf_counter() - started:.0f} s (not timed)"
    )
    console.print(
        f"battery: p_nom {UNIT.p_nom:g} MW, {UNIT.energy_mwh:g} MWh, from "
        f"{UNIT.state_of_charge_initial:g} MWh, keeping {UNIT.state_of_charge_min:g} MWh, lossless"
    )

    times: dict[str, list[float]] = {"greensched": [], "vessim": [], "bare": []}
    ratios: dict[str, list[float]] = {"vessim": [], "bare": []}
    for _ in range(REPEATS):
        ours_s, (grid_mw, soc_mwh) = _timed(
            lambda: greensched_settles(load_mw, green_mw, slot_hours)
        )
        theirs_s, theirs = _timed(lambda: settle_with_vessim(load_mw, green_mw, slot_minutes, UNIT))
        bare_s, final_mwh = _timed(lambda: vessim_final_mwh(load_mw, green_mw, slot_minutes))
        times["greensched"].append(ours_s)
        times["vessim"].append(theirs_s)
        times["bare"].append(bare_s)
        ratios["vessim"].append(ours_s / theirs_s)
        ratios["bare"].append(ours_s / bare_s)

    import_mwh = grid_mw.sum() * slot_hours
    import_gap = np.abs(grid_mw - theirs.grid_import_mw)
    soc_gap = np.abs(soc_mwh - theirs.soc_mwh)
    importing = theirs.grid_import_mw > 0
    import_rel = (import_gap[importing] / theirs.grid_import_mw[importing]).max()
    soc_rel = (soc_gap / theirs.soc_mwh).max()
    total_rel = abs(import_mwh / theirs.grid_import_mwh - 1)

    def ratio_cell(values: list[float]) -> str:
        return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"

    view = Table(title=f"a year of {SITE} with a battery, {REPEATS} rounds")
    columns = ("settled by", "time s (median)", "greensched / this (min-max)", "grid import MWh")
    columns += ("max |d import| MW (rel)", "max |d SOC| MWh (rel)")
    for column in columns:
        view.add_column(column, justify="left" if column == "settled by" else "right")
    view.add_row(
        "greensched follow_surplus", f"{statistics.median(times['greensched']):.3f}", "1",
        f"{import_mwh:,.1f}", "", "",
    )  # fmt: skip
    view.add_row(
        "Vessim, Recorder", f"{statistics.median(times['vessim']):.3f}",
        ratio_cell(ratios["vessim"]), f"{theirs.grid_import_mwh:,.1f}",
        f"{import_gap.max():.1e} ({import_rel:.1e})", f"{soc_gap.max():.1e} ({soc_rel:.1e})",
    )  # fmt: skip
    view.add_row(
        "Vessim, no controller (final state only)", f"{statistics.median(times['bare']):.3f}",
        ratio_cell(ratios["bare"]), "", "",
        f"final {abs(final_mwh - soc_mwh[-1]):.1e}",
    )  # fmt: skip
    console.print(view)
    ratio = statistics.median(ratios["vessim"])
    agree = max(import_rel, soc_rel, total_rel)
    console.print(
        f"greensched / Vessim (Recorder): {ratio:.3f} (target <= {TARGET_RATIO}: "
        f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}); largest relative difference in grid "
        f"import (total {total_rel:.1e}, per importing slot {import_rel:.1e}) and state of "
        f"charge {soc_rel:.1e} (target <= 1e-3: {'met' if agree <= 1e-3 else 'NOT met'}); "
        f"greensched / Vessim with no controller: {statistics.median(ratios['bare']):.3f}"
    )


if __name__ == "__main__":
    main()
