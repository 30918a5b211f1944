"""Greensched's battery settlement against Vessim's (issue 24): the same site, the same lossless
battery and the same supply and load series settled by greensched's scorer
(:func:`~scheduler.metrics.site_load`, which runs :func:`~scheduler.storage.follow_surplus`)
and by a real Vessim ``Environment`` (native backend: ``SimpleBattery`` then
``GridConnection`` under the ``DefaultDispatchPolicy``, a ``Recorder`` reading it back).

The series are greensched's own: qingyang's actual green supply (synthetic weather of the
default config) and the site load of a greedy plan of each day, 2026-04-11 to 04-13, in
15-minute slots.

Compared, relative difference at most 0.1 % (``rtol=1e-3``):

- the total grid import [MWh]: greensched's ``grid_mw`` (load - min(load, green) - discharge,
  clipped at 0) times the slot length, against Vessim's Recorder metric ``grid_import`` [Wh];
- the grid import of every slot [MW] against Vessim's ``-p_grid`` where it imports;
- the energy stored at the end of every slot [MWh] against Vessim's ``charge_level`` [Wh];
- the green neither used nor stored [MW] against what Vessim exports (``p_grid > 0``).

Slot by slot a zero on one side must be a zero on the other: ``atol`` is 1e-9 MW (1 mW), a
floating-point floor, not a tolerance on the physics. Where Vessim's conventions differ from
greensched's they are aligned, not absorbed by the tolerance (see :func:`settle_with_vessim`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import vessim as vs

from scheduler.config import Config
from scheduler.horizon import Horizon
from scheduler.metrics import site_load
from scheduler.pipeline import DayPipeline, plan_day
from scheduler.storage import StorageUnit

SITE = "qingyang"
DAYS = ("2026-04-11", "2026-04-12", "2026-04-13")
RTOL = 1e-3  # the 0.1 %
FLOOR_MW = 1e-9  # floating-point noise around a zero, far below any real power [MW]
W_PER_MW = 1e6
WH_PER_MWH = 1e6
LOSSLESS = {"efficiency_store": 1.0, "efficiency_dispatch": 1.0, "standing_loss": 0.0}


@dataclass(frozen=True)
class VessimSettlement:
    """What Vessim's run gives back per slot ``[slot]``: ``grid_import_mw`` and ``export_mw``
    (both >= 0), ``battery_mw`` (positive charging, negative discharging), ``soc_mwh`` the
    energy stored at the end of the slot; ``grid_import_mwh`` the Recorder's total."""

    grid_import_mw: np.ndarray
    export_mw: np.ndarray
    battery_mw: np.ndarray
    soc_mwh: np.ndarray
    grid_import_mwh: float


def vessim_battery(unit: StorageUnit) -> vs.SimpleBattery:
    """``unit`` as Vessim's ``SimpleBattery``: capacity in Wh, energies as fractions of it,
    the power limit ``p_nom`` as a C-rate (``p_nom / capacity`` per hour = ``1 / max_hours``).
    ``SimpleBattery`` is lossless, so a unit with losses is refused."""
    lossy = {
        name: getattr(unit, name)
        for name, lossless in LOSSLESS.items()
        if getattr(unit, name) != lossless
    }
    if lossy:
        raise ValueError(f"Vessim's SimpleBattery is lossless; this unit has {lossy}")
    return vs.SimpleBattery(
        "battery",
        capacity=unit.energy_mwh * WH_PER_MWH,
        initial_soc=unit.state_of_charge_initial / unit.energy_mwh,
        min_soc=unit.state_of_charge_min / unit.energy_mwh,
        c_rate=1.0 / unit.max_hours,
    )


def vessim_environment(
    load_mw: np.ndarray, green_mw: np.ndarray, slot_minutes: int, unit: StorageUnit
) -> vs.Environment:
    """A Vessim study of one site: ``load_mw`` and ``green_mw`` ``[slot]`` as a Consumer and a
    Producer (W, each slot's value held from its start, as greensched's slot times are slot
    starts), the battery then the grid under the default policy; one tick per slot (the
    traces are indexed by seconds from tick zero, so ``sim_start`` is only a label)."""
    step_s = slot_minutes * 60
    offsets_s = np.arange(len(load_mw)) * step_s

    def trace(mw: np.ndarray) -> vs.Trace:
        return vs.Trace(pd.Series(mw * W_PER_MW, index=offsets_s), fill_method="ffill")

    environment = vs.Environment(sim_start="2026-01-01", step_size=step_s)
    environment.add_microgrid(
        actors=[vs.Consumer("load", trace(load_mw)), vs.Producer("green", trace(green_mw))],
        dispatchables=[vessim_battery(unit), vs.GridConnection()],
        policy=vs.DefaultDispatchPolicy(),
        name=SITE,
    )
    return environment


def settle_with_vessim(
    load_mw: np.ndarray, green_mw: np.ndarray, slot_minutes: int, unit: StorageUnit
) -> VessimSettlement:
    """Run :func:`vessim_environment` over the whole series and read it back in greensched's
    units and conventions.

    Vessim's powers are W, signed: ``p_grid`` negative imports, positive exports; the
    battery's ``current_power`` positive charges. Its battery energy ``charge_level`` is Wh.
    A tick at ``t`` first integrates the setpoints held since the last tick, then dispatches
    the interval ``[t, t + step)``; the Recorder sees the state after the dispatch, before the
    interval is integrated. So the power recorded at tick ``t`` is slot ``t``'s, but the energy
    recorded there is the energy at the *start* of slot ``t``, where greensched's ``soc_mwh``
    is at its end: slot ``t``'s end is tick ``t + 1``'s record, and the last slot's end is the
    run's final state (advanced to the horizon). Surplus the battery cannot take Vessim
    exports (a GridConnection with ``max_export=0`` makes the default policy raise, having no
    curtailment); greensched spills it and never exports, so the export is compared with what
    greensched spills and does not enter the import.
    """
    environment = vessim_environment(load_mw, green_mw, slot_minutes, unit)
    recorder = environment.add_controller(vs.Recorder())
    result = environment.run(until=len(load_mw) * slot_minutes * 60)
    states = [by_grid[SITE] for by_grid in recorder.log.values()]
    p_grid_mw = np.array([state["p_grid"] for state in states]) / W_PER_MW
    battery = [state["dispatch_states"]["battery"] for state in states]
    level_wh = [b["charge_level"] for b in battery[1:]]
    level_wh.append(result.states[SITE]["dispatch_states"]["battery"]["charge_level"])
    return VessimSettlement(
        grid_import_mw=np.maximum(-p_grid_mw, 0.0),
        export_mw=np.maximum(p_grid_mw, 0.0),
        battery_mw=np.array([b["current_power"] for b in battery]) / W_PER_MW,
        soc_mwh=np.array(level_wh) / WH_PER_MWH,
        grid_import_mwh=recorder.metrics["microgrids"][SITE]["grid_import"] / WH_PER_MWH,
    )


@dataclass(frozen=True)
class Days:
    """Greedy plans of :data:`DAYS`, each day planned on its own, as one plan over them all."""

    config: Config
    horizon: Horizon
    plan: pd.DataFrame
    supply: pd.DataFrame


@pytest.fixture(scope="module")
def days(config) -> Days:
    pipeline = DayPipeline(config)
    pipeline.preload(pipeline.horizon(DAYS[0], days=len(DAYS)))
    plans, supplies = [], []
    for day in DAYS:
        problem = pipeline.problem(pipeline.horizon(day))
        plans.append(plan_day(problem, config, ["greedy"]).results["greedy"].plan)
        supplies.append(problem.actual_supply)
    return Days(
        config,
        pipeline.horizon(DAYS[0], days=len(DAYS)),
        pd.concat(plans, ignore_index=True),
        pd.concat(supplies, ignore_index=True),
    )


def greensched_settles(days: Days, unit: StorageUnit) -> pd.DataFrame:
    """The scorer's site-load rows of :data:`SITE` with ``unit`` its only battery."""
    config = days.config.updated({"sites": {SITE: {"storage": {"b": unit.model_dump()}}}})
    table = site_load(days.plan, days.supply, tuple(config.sites.values()), days.horizon)
    return table[table["site"] == SITE].reset_index(drop=True)


def assert_agree(ours: pd.DataFrame, theirs: VessimSettlement, slot_hours: float) -> None:
    """The comparisons of the module docstring."""
    grid_mw = np.maximum(ours["grid_mw"].to_numpy(), 0.0)
    assert grid_mw.sum() * slot_hours == pytest.approx(theirs.grid_import_mwh, rel=RTOL)
    np.testing.assert_allclose(grid_mw, theirs.grid_import_mw, rtol=RTOL, atol=FLOOR_MW)
    np.testing.assert_allclose(ours["soc_mwh"], theirs.soc_mwh, rtol=RTOL)
    spilled_mw = ours["green_mw"] - np.minimum(ours["load_mw"], ours["green_mw"])
    spilled_mw -= ours["storage_charge_mw"]
    np.testing.assert_allclose(spilled_mw, theirs.export_mw, rtol=RTOL, atol=FLOOR_MW)


def test_a_battery_settles_as_vessim_settles_it(days):
    """Three days at qingyang with a 10 MW, 4 h battery from 20 MWh, keeping 2 MWh."""
    unit = StorageUnit(
        p_nom=10.0, max_hours=4.0, state_of_charge_initial=20.0, state_of_charge_min=2.0
    )
    ours = greensched_settles(days, unit)
    load, green = ours["load_mw"].to_numpy(), ours["green_mw"].to_numpy()
    assert len(ours) == 3 * 96 and (green > load).sum() > 50 and (load > green).sum() > 50
    theirs = settle_with_vessim(load, green, days.horizon.slot_minutes, unit)
    assert theirs.grid_import_mwh > 50.0  # the battery does not carry the nights
    assert np.ptp(theirs.soc_mwh) > 20.0  # it cycles, not idles
    assert_agree(ours, theirs, days.horizon.slot_hours)


def test_power_and_energy_limits_bind_alike(days):
    """A 2 MW, 2 h battery (4 MWh, from 2 MWh, keeping 0.4 MWh) on the same days: Vessim's
    run shows it charging and discharging at its power limit, full with green left over and
    at its reserve with load left over, and greensched settles every slot as Vessim does."""
    unit = StorageUnit(
        p_nom=2.0, max_hours=2.0, state_of_charge_initial=2.0, state_of_charge_min=0.4
    )
    ours = greensched_settles(days, unit)
    load, green = ours["load_mw"].to_numpy(), ours["green_mw"].to_numpy()
    theirs = settle_with_vessim(load, green, days.horizon.slot_minutes, unit)
    at_power = np.isclose(np.abs(theirs.battery_mw), unit.p_nom, rtol=1e-12)
    assert (at_power & (theirs.battery_mw > 0)).sum() >= 4
    assert (at_power & (theirs.battery_mw < 0)).sum() >= 4
    full = np.isclose(theirs.soc_mwh, unit.energy_mwh, rtol=1e-12)
    empty = np.isclose(theirs.soc_mwh, unit.state_of_charge_min, rtol=1e-12)
    assert (full & (theirs.battery_mw == 0) & (theirs.export_mw > 1.0)).sum() >= 4
    assert (empty & (theirs.battery_mw == 0) & (theirs.grid_import_mw > 1.0)).sum() >= 4
    # slots where the room or the energy left, not the power limit, stops the battery
    assert (full & (theirs.battery_mw > 0) & ~at_power & (theirs.export_mw > 0)).any()
    assert (empty & (theirs.battery_mw < 0) & ~at_power & (theirs.grid_import_mw > 0)).any()
    assert_agree(ours, theirs, days.horizon.slot_hours)
