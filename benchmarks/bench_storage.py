"""Storage benchmark (issue 24): a year of one site's battery settled by greensched and by Vessim,
then the year of both sites replayed with batteries of 0, 1, 2 and 4 hours.

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

Then battery sizes (issue 24): the year replayed (:func:`~scheduler.drivers.replay.replay`,
2026-01-01 to 2026-12-31 on the same weather, both sites) with one battery per site of 0, 1, 2
and 4 hours of the site's mean load (:meth:`~scheduler.config.Config.with_storage_hours`:
``p_nom`` the mean load, 95 % efficient each way, empty on 1 January, its energy carried from
day to day), for greedy (whose batteries follow the storage rule,
:func:`~scheduler.storage.follow_surplus`), the optimizer and the oracle (which plan each
battery with the jobs and settle it as planned, their plans' storage guide). Per size and
policy: green share, grid energy, CO2 and its change against no battery, grid cost, stored
green given back to the load, the share of the otherwise-unused green it recovers (stored
green discharged over the unused green of the same policy's run without a battery) and the
cycles of each site's battery (discharged over its capacity), the year's and the most in one
local day. Set ``GREENSCHED_BENCH_DAYS`` (as for the replay benchmark) for fewer days; the
year of three policies takes some 2.5 min per size.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from benchmarks.bench_ramp import FILES
from scheduler.config import Config, load_config
from scheduler.drivers.replay import ReplaySpec, replay, summarize
from scheduler.metrics import site_load
from scheduler.pipeline import DayPipeline, plan_day
from scheduler.storage import StorageFleet, StorageUnit, follow_surplus
from tests.scheduler.test_storage_vessim import SITE, settle_with_vessim, vessim_environment

YEAR = "2026-01-01"
DAYS = 365
REPEATS = 3
UNIT = StorageUnit(p_nom=10.0, max_hours=4.0, state_of_charge_initial=20.0, state_of_charge_min=2.0)
TARGET_RATIO = 0.1
SIZES_H = (0.0, 1.0, 2.0, 4.0)  # battery energy in hours of the site's mean load
SIZE_POLICIES = ("greedy", "optimizer", "oracle")


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
    console = Console(width=160)
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
    battery_sizes(console, config, sources)


@dataclass(frozen=True)
class SizedYear:
    """The year replayed with batteries of one size: ``summarize``'s totals per policy and
    each policy's storage per site (rows: policy, site; columns: ``charged_mwh`` taken in,
    ``discharged_mwh`` given to the load, ``capacity_mwh``, ``cycles`` discharged over
    capacity, ``busiest_day`` the local day of most cycles, ``busiest_cycles`` and
    ``round_trip`` the share of stored energy given back [-]); the replay's wall time [s]."""

    hours: float
    totals: dict[str, dict]
    sites: pd.DataFrame
    wall_s: float


def replay_sized(
    config: Config, sources: dict[str, str], hours: float, first: str, last: str
) -> SizedYear:
    """``first``..``last`` replayed with one battery of ``hours`` of its mean load per site."""
    sized = config.with_storage_hours(hours)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = replay(ReplaySpec(sized, sources, first, last, SIZE_POLICIES), Path(out))
        load = pd.read_csv(Path(out) / "site_load.csv", parse_dates=["time"])
    wall_s = time.perf_counter() - started
    slot_h = config.forecast.slot_minutes / 60
    units = {name: list(site.storage.values()) for name, site in sized.sites.items()}
    capacity = {name: sum(u.energy_mwh for u in site) for name, site in units.items()}
    round_trip = {
        name: min((u.efficiency_store * u.efficiency_dispatch for u in site), default=1.0)
        for name, site in units.items()
    }
    load["day"] = load["time"].dt.tz_convert(config.timezone).dt.date
    load["charged_mwh"] = load["storage_charge_mw"] * slot_h
    load["discharged_mwh"] = load["storage_discharge_mw"] * slot_h
    daily = load.groupby(["policy", "site", "day"], sort=False)["discharged_mwh"].sum()
    rows = []
    for (policy, site), part in load.groupby(["policy", "site"], sort=False):
        cap = capacity[site]
        per_day = daily.loc[(policy, site)]
        rows.append({
            "policy": policy, "site": site, "charged_mwh": part["charged_mwh"].sum(),
            "discharged_mwh": part["discharged_mwh"].sum(), "capacity_mwh": cap,
            "cycles": part["discharged_mwh"].sum() / cap if cap else 0.0,
            "busiest_day": per_day.idxmax(), "busiest_cycles": per_day.max() / cap if cap else 0.0,
            "round_trip": round_trip[site],
        })  # fmt: skip
    return SizedYear(hours, summarize(result)["policies"], pd.DataFrame(rows), wall_s)


def battery_sizes(console: Console, config: Config, sources: dict[str, str]) -> None:
    """The year replayed for each of :data:`SIZES_H`, one table, then any number that cannot
    be right: recovered over the round trip's efficiency, more cycles in a day than running at
    ``p_nom`` all day allows, more given back than taken in after losses, CO2 rising with size."""
    days = int(os.environ.get("GREENSCHED_BENCH_DAYS", "365"))
    first = "2026-01-01"
    last = (pd.Timestamp(first) + pd.Timedelta(days=days - 1)).date().isoformat()
    runs = []
    for hours in SIZES_H:
        runs.append(replay_sized(config, sources, hours, first, last))
        console.print(f"battery {hours:g} h: {days} days replayed in {runs[-1].wall_s:.0f} s")
    none = runs[0].totals
    sites = list(config.sites)
    mean_mw = config.mean_load_mw()
    weather = "the shared EPW files" if "synthetic" not in sources.values() else "synthetic"
    title = (
        f"battery size: {first} to {last} replayed on {weather}, one battery per site of "
        f"p_nom its mean load ({', '.join(f'{s} {mean_mw[s]:.1f} MW' for s in sites)}) and "
        "h hours of it, 95 % efficient each way"
    )
    caption = (
        "unused: green neither used nor stored; stored out: green energy the batteries gave to "
        "the load, after losses; recovered: stored out / the unused of the same "
        "policy's run with no battery (95 % x 95 % of what is stored comes back; greedy runs "
        "its batteries by the rule, the optimizer and the oracle plan them with the jobs); "
        "cycles: each site's battery, discharged / capacity, over the period "
        f"({' / '.join(sites)}), and the most in one local day (site, month-day); cost: grid "
        "energy x the site's price, millions"
    )
    view = Table(title=title, caption=caption)
    columns = ("battery h", "policy", "green share", "grid MWh", "CO2 t", "CO2 vs 0 h", "cost M",
               "unused MWh", "stored out MWh", "recovered", "cycles",
               "most in a day")  # fmt: skip
    for column in columns:
        view.add_column(
            column,
            justify="left" if column in ("policy", "most in a day") else "right",
            no_wrap=True,
        )
    for run in runs:
        for policy in SIZE_POLICIES:
            row, base = run.totals[policy], none[policy]
            stores = run.sites[run.sites["policy"] == policy].set_index("site")
            busiest = stores.loc[stores["busiest_cycles"].idxmax()] if run.hours else None
            view.add_row(
                f"{run.hours:g}", policy, f"{row['green_share']:.2%}",
                f"{row['grid_mwh']:,.0f}", f"{row['co2_t']:,.0f}",
                f"{row['co2_t'] / base['co2_t'] - 1:+.1%}" if run.hours else "",
                f"{row['cost'] / 1e6:.2f}", f"{row['green_unused_mwh']:,.0f}",
                f"{row['storage_discharged_mwh']:,.0f}",
                f"{row['storage_discharged_mwh'] / base['green_unused_mwh']:.1%}"
                if run.hours and base["green_unused_mwh"] > 0 else "",
                " / ".join(f"{stores.loc[s, 'cycles']:.1f}" for s in sites) if run.hours else "",
                f"{busiest['busiest_cycles']:.2f} {busiest.name} {busiest['busiest_day']:%m-%d}"
                if busiest is not None else "",
            )  # fmt: skip
        view.add_section()
    console.print(view)
    for line in _odd_numbers(runs) or ["no number out of bounds"]:
        console.print(line)


def _odd_numbers(runs: list[SizedYear]) -> list[str]:
    """What in ``runs`` cannot be right (:func:`battery_sizes`), one line each."""
    odd = []
    previous: dict[str, float] = {}
    for run in runs:
        for policy in SIZE_POLICIES:
            row, base = run.totals[policy], runs[0].totals[policy]
            # plans blind to the battery: it can store only what the 0-h run left unused
            ceiling = run.sites["round_trip"].max() if run.hours else 0.0
            out_mwh, unused_mwh = row["storage_discharged_mwh"], base["green_unused_mwh"]
            if out_mwh > ceiling * unused_mwh + 1e-6:
                odd.append(
                    f"{run.hours:g} h, {policy}: recovered {out_mwh / unused_mwh:.1%}, over "
                    f"the {ceiling:.1%} a round trip leaves"
                )
            if policy in previous and row["co2_t"] > previous[policy] * (1 + 1e-9):
                odd.append(
                    f"{run.hours:g} h, {policy}: CO2 {row['co2_t']:,.1f} t, more than "
                    f"{previous[policy]:,.1f} t with the next smaller battery"
                )
            previous[policy] = row["co2_t"]
        for stores in run.sites.itertuples():
            if not run.hours:
                continue
            # a day of 24 h charging and discharging at p_nom, the capacity p_nom x hours
            most = 24 / run.hours
            if stores.busiest_cycles > most:
                odd.append(
                    f"{run.hours:g} h, {stores.policy}, {stores.site}: "
                    f"{stores.busiest_cycles:.2f} cycles on {stores.busiest_day}, over the "
                    f"{most:g} a battery of {run.hours:g} h can do in a day"
                )
            if stores.discharged_mwh > stores.charged_mwh * stores.round_trip + 1e-6:
                odd.append(
                    f"{run.hours:g} h, {stores.policy}, {stores.site}: "
                    f"{stores.discharged_mwh:,.1f} MWh given back from "
                    f"{stores.charged_mwh:,.1f} MWh taken in, more than the "
                    f"{stores.round_trip:.1%} left after losses"
                )
    return odd


if __name__ == "__main__":
    main()
