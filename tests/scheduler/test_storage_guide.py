"""Settlement follows how a plan runs its batteries (the optimizer's storage guide): on the
planned supply the day settles as planned, on another it keeps what the plan keeps."""

from __future__ import annotations

import functools
import json
from dataclasses import replace

import numpy as np
import pytest
import yaml

from scheduler.config import load_config, parse_config
from scheduler.drivers.nightly import plan_dir_guide
from scheduler.drivers.plan_output import save_day_plan
from scheduler.metrics import score_plan
from scheduler.pipeline import DayPipeline, plan_day
from scheduler.policies import get_policy
from scheduler.replan import rest_of_day
from scheduler.settlement.engine import Settlement, settle
from scheduler.storage import StorageFleet, StorageGuide, StorageUnit, follow_surplus
from tests.conftest import run_cli

PEAK = [300.0] * 8 + [600.0] * 4 + [900.0] * 6 + [1200.0] * 4 + [300.0] * 2  # per MWh, local


def _fleet(**unit) -> StorageFleet:
    return StorageFleet.of([{"b": StorageUnit(**unit)}])


def test_a_guide_keeps_energy_for_the_slot_its_plan_discharges_in():
    # 1 h slots: 10 MW green then none, 5 MW load; a lossless 10 MW, 10 MWh battery
    fleet = _fleet(p_nom=10.0, max_hours=1.0)
    load, green = np.array([[5.0, 5.0, 5.0]]), np.array([[10.0, 0.0, 0.0]])
    rule = follow_surplus(fleet, load, green, 1.0)
    np.testing.assert_allclose(rule.discharge_mw, [[0.0, 5.0, 0.0]])  # the first deficit
    later = StorageGuide(
        charge_mw=np.array([[5.0, 0.0, 0.0]]),
        discharge_mw=np.array([[0.0, 0.0, 5.0]]),
        energy_before_mwh=np.array([[0.0, 5.0, 5.0]]),
    )
    guided = follow_surplus(fleet, load, green, 1.0, guide=later)
    np.testing.assert_allclose(guided.discharge_mw, [[0.0, 0.0, 5.0]])
    np.testing.assert_allclose(guided.soc_mwh, [[5.0, 5.0, 0.0]])
    # more green than planned: the energy above the plan is not kept back
    more = follow_surplus(fleet, load, np.array([[12.0, 0.0, 0.0]]), 1.0, guide=later)
    np.testing.assert_allclose(more.discharge_mw, [[0.0, 2.0, 5.0]])
    # less: the plan's discharge as far as the energy goes
    less = follow_surplus(fleet, load, np.array([[8.0, 0.0, 0.0]]), 1.0, guide=later)
    np.testing.assert_allclose(less.discharge_mw, [[0.0, 0.0, 3.0]])


def test_a_unit_that_may_charge_from_the_grid_tops_up_to_its_plan_and_only_then():
    guide = StorageGuide(np.array([[4.0, 0.0]]), np.zeros((1, 2)), np.array([[0.0, 4.0]]))
    load, green = np.array([[5.0, 5.0]]), np.array([[1.0, 0.0]])
    allowed = follow_surplus(_fleet(p_nom=5.0, max_hours=2.0, charge_from_grid=True), load,
                             green, 1.0, guide=guide)  # fmt: skip
    np.testing.assert_allclose(allowed.grid_charge_mw, [[4.0, 0.0]])
    np.testing.assert_allclose(allowed.soc_mwh, [[4.0, 4.0]])  # discharge 0 planned in slot 1
    barred = follow_surplus(_fleet(p_nom=5.0, max_hours=2.0), load, green, 1.0, guide=guide)
    np.testing.assert_allclose(barred.grid_charge_mw, 0.0)
    assert allowed.charge_mw.sum() > barred.charge_mw.sum()


@functools.cache
def _peak_priced(cyclic: bool, from_grid: bool = False, day: str = "2026-04-11"):
    """The default sites on cost, a time-of-use tariff with an evening peak and a 4-hour
    battery each starting a quarter full (``cyclic``: ending at least so; ``from_grid``: that
    may charge from the grid); a default ``day`` with its synthetic weather, and the
    optimizer's plan of it."""
    data = load_config().model_dump()
    data["solver"]["objective"] = "cost"
    for site in data["sites"].values():
        site["price_per_mwh"] = PEAK
    config = parse_config(data, "<test>").with_storage_hours(4.0)
    data = config.model_dump()
    for site in data["sites"].values():
        unit = site["storage"]["battery"]
        unit.update(cyclic_state_of_charge=cyclic, charge_from_grid=from_grid,
                    state_of_charge_initial=unit["p_nom"] * unit["max_hours"] / 4)  # fmt: skip
    config = parse_config(data, "<test>")
    pipeline = DayPipeline(config)
    problem = pipeline.problem(pipeline.horizon(day))
    return config, problem, get_policy("optimizer", config.solver).plan(problem)


@pytest.fixture(scope="module")
def peak_priced():
    return _peak_priced(False)


def _settled(problem, result):
    """``result`` settled on the supply it was planned on, and its metrics."""
    as_planned = replace(problem, actual_supply=problem.supply)
    run = settle(as_planned, result)
    return run, score_plan(as_planned.on_actual_supply(), run.executed, guide=run.storage_guide)


def test_a_plan_settled_on_its_own_supply_costs_what_it_planned(peak_priced):
    _config, problem, result = peak_priced
    assert result.storage_guide is not None
    _run, score = _settled(problem, result)
    assert score.metrics.cost == pytest.approx(result.objective_kg, rel=1e-9)
    # the same plan under the storage rule discharges at the first deficit, off the peak
    _ruled, ruled = _settled(problem, replace(result, storage_guide=None))
    assert score.metrics.cost < ruled.metrics.cost * 0.97


def test_cyclic_units_end_the_day_with_the_energy_they_started_with():
    _config, problem, result = _peak_priced(True)
    start = problem.soc_start_mwh.sum()

    def end_mwh(run) -> float:
        slots = run.site_slots
        return float(slots.loc[slots["time"] == slots["time"].max(), "soc_mwh"].sum())

    guided, _score = _settled(problem, result)
    assert end_mwh(guided) >= start - 1e-6
    ruled, _score = _settled(problem, replace(result, storage_guide=None))
    assert end_mwh(ruled) < start  # the rule alone spends it: the plan's guide keeps it


def test_a_re_plan_starts_from_the_energy_stored_at_its_boundary_on_the_sites_still_live(
    peak_priced,
):
    _config, problem, result = peak_priced
    engine = Settlement(problem, result)
    for t in range(40):
        engine.step(t)
    boundary = problem.horizon.times[40]
    stored = engine.stored_mwh()
    report = engine.report()
    held = report.site_slots[report.site_slots["time"] == problem.horizon.times[39]]
    assert sum(stored) == pytest.approx(held["soc_mwh"].sum())
    assert sum(stored) != pytest.approx(problem.soc_start_mwh.sum())  # it moved since the start
    rest = rest_of_day(problem, engine.run_state(boundary))
    assert rest is not None and rest.soc_start_mwh.tolist() == pytest.approx(list(stored))
    only = problem.site_names[1]
    lost = rest_of_day(problem, engine.run_state(boundary, {only: 10.0}))
    assert lost is not None and lost.site_names == [only]
    assert lost.soc_start_mwh.tolist() == pytest.approx([stored[1]])
    # the re-plan's guide takes over from its boundary; the slots before keep the first plan's
    new = get_policy("optimizer", _config.solver).plan(rest)
    engine.replace_plan(new, boundary)
    walked = engine.storage_guide
    assert walked is not None and new.storage_guide is not None
    np.testing.assert_allclose(walked.discharge_mw[:, 40:], new.storage_guide.discharge_mw)
    np.testing.assert_allclose(
        walked.discharge_mw[:, :40], result.storage_guide.discharge_mw[:, :40]
    )


def test_the_plan_directory_carries_the_storage_plan_dispatch_follows(peak_priced, tmp_path):
    config, problem, _result = peak_priced
    day = plan_day(problem, config, ["optimizer", "greedy"])
    save_day_plan(tmp_path, day, config, seed=7)
    guide = day.results["optimizer"].storage_guide
    assert guide is not None and (tmp_path / "storage_plan.csv").exists()
    read = plan_dir_guide(tmp_path, problem)
    assert read is not None
    for name in StorageGuide.FIELDS:
        np.testing.assert_allclose(getattr(read, name), getattr(guide, name), atol=1e-9)


def test_the_walked_guide_survives_a_restart_through_the_saved_state(peak_priced):
    config, problem, result = peak_priced
    engine = Settlement(problem, result)
    for t in range(40):
        engine.step(t)
    rest = rest_of_day(problem, engine.run_state(problem.horizon.times[40]))
    assert rest is not None
    engine.replace_plan(get_policy("optimizer", config.solver).plan(rest), rest.horizon.start)
    saved = json.loads(json.dumps(engine.state()))  # as the loop's store keeps it
    again = Settlement(problem, result)
    again.restore(saved)
    assert again.storage_guide is not None and engine.storage_guide is not None
    for name in StorageGuide.FIELDS:
        np.testing.assert_array_equal(getattr(again.storage_guide, name),
                                      getattr(engine.storage_guide, name))  # fmt: skip
    assert again.stored_mwh() == pytest.approx(engine.stored_mwh())


def test_a_bad_storage_plan_stops_dispatch_with_one_message(monkeypatch, capsys, tmp_path):
    data = load_config().with_storage_hours(2.0).model_dump(mode="json")
    config = tmp_path / "batteries.yaml"
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "day"
    code, _out, err = run_cli(monkeypatch, capsys, "plan", "--config", str(config), "--date",
                              "2026-04-11", "--out", str(out))  # fmt: skip
    assert code == 0, err
    path = out / "storage_plan.csv"
    lines = path.read_text().splitlines()
    cells = lines[2].split(",")
    cells[3] = "-5"  # charge_mw of the second row
    lines[2] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    code, shown, err = run_cli(monkeypatch, capsys, "dispatch", str(out), "--config", str(config))
    assert code == 2
    assert "storage_plan.csv line 3: charge_mw" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 2 and not shown.strip()  # the error and its cell


def test_energy_bought_to_store_is_grid_energy_in_every_total():
    # night power at 300 stored for a 1,200 peak pays even at 95 % x 95 %: on a day of little
    # green (July's synthetic weather) the plan buys it
    _config, problem, result = _peak_priced(False, from_grid=True, day="2026-07-20")
    assert result.storage_guide is not None
    run, score = _settled(problem, result)
    slots = run.site_slots
    bought_mwh = float((slots["grid_mw"] - slots["load_mw"] + slots["green_used_mw"]).sum() * 0.25)
    assert bought_mwh > 10.0
    grid_mwh = float(slots["grid_mw"].sum() * 0.25)
    assert run.totals["actual"]["grid_mwh"] == pytest.approx(grid_mwh)
    assert score.metrics.grid_mwh == pytest.approx(grid_mwh)
    assert score.metrics.cost == pytest.approx(result.objective_kg, rel=1e-9)
    # and it pays: the same day without grid charging costs more
    _config, _problem, kept = _peak_priced(False, day="2026-07-20")
    assert result.objective_kg < kept.objective_kg
