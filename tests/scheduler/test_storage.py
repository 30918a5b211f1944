"""Site storage: the battery rule against hand-worked energy balances (losses, power and energy
limits, standing loss, reserve), its effect on the scores every policy gets, a bad config
named through the command line, and a replay carrying the stored energy from day to day."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from scheduler.config import DEFAULT_CONFIG_PATH
from scheduler.drivers.replay import ReplaySpec, replay
from scheduler.metrics import site_load
from scheduler.pipeline import DayPipeline, plan_day
from scheduler.storage import StorageFleet, StorageUnit, follow_surplus
from tests.conftest import refused_site_change, run_cli

QUARTER_H = 0.25


def _fleet(**unit) -> StorageFleet:
    return StorageFleet.of([{"b": StorageUnit(**unit)}])


def test_surplus_charges_through_the_store_loss_and_deficit_discharges_through_the_other():
    fleet = _fleet(p_nom=10.0, max_hours=2.0, efficiency_store=0.9, efficiency_dispatch=0.8)
    # 8 MW spare for an hour, then 4 MW short for an hour, in 15-minute slots
    load = np.array([[2.0] * 4 + [6.0] * 4])
    green = np.array([[10.0] * 4 + [2.0] * 4])
    out = follow_surplus(fleet, load, green, QUARTER_H)
    np.testing.assert_allclose(out.charge_mw[0, :4], 8.0)
    np.testing.assert_allclose(out.soc_mwh[0, 3], 8.0 * 0.9)  # 7.2 MWh stored of 8 MWh taken
    np.testing.assert_allclose(out.discharge_mw[0, 4:], 4.0)  # 4 MW given, 5 MW drawn
    np.testing.assert_allclose(out.soc_mwh[0, -1], 7.2 - 4.0 / 0.8)


def test_power_and_energy_limits_and_the_reserve_hold():
    fleet = _fleet(p_nom=5.0, max_hours=1.0, state_of_charge_initial=4.0, state_of_charge_min=1.0)
    load = np.array([[0.0, 0.0, 20.0, 20.0, 20.0]])
    green = np.array([[20.0, 20.0, 0.0, 0.0, 0.0]])
    out = follow_surplus(fleet, load, green, QUARTER_H)
    # 15 MW spare: 5 MW (p_nom) taken until full (5 MWh): 1.25 MWh a slot, 1 MWh of room
    np.testing.assert_allclose(out.charge_mw[0, :2], [4.0, 0.0])
    np.testing.assert_allclose(out.soc_mwh[0, :2], [5.0, 5.0])
    # 20 MW short: 5 MW given until the 1 MWh reserve: 4 MWh above it, 1.25 MWh a slot
    np.testing.assert_allclose(out.discharge_mw[0, 2:], [5.0, 5.0, 5.0])
    np.testing.assert_allclose(out.soc_mwh[0, 2:], [3.75, 2.5, 1.25])
    assert out.soc_mwh.min() >= 1.0 - 1e-12 and out.soc_mwh.max() <= 5.0 + 1e-12


def test_standing_loss_is_per_hour_whatever_the_slot_length():
    idle = {"load": np.zeros((1, 4)), "green": np.zeros((1, 4))}
    for slot_h, slots in ((QUARTER_H, 4), (1.0, 1)):
        fleet = _fleet(p_nom=1.0, max_hours=10.0, standing_loss=0.01, state_of_charge_initial=10)
        out = follow_surplus(fleet, idle["load"][:, :slots], idle["green"][:, :slots], slot_h)
        assert out.soc_mwh[0, -1] == pytest.approx(10.0 * 0.99)  # one hour either way


def test_units_of_a_site_fill_in_order_and_sites_do_not_share():
    fleet = StorageFleet.of(
        [
            {
                "first": StorageUnit(p_nom=2.0, max_hours=1.0),
                "second": StorageUnit(p_nom=2.0, max_hours=1.0),
            },
            {},
        ]
    )
    load = np.array([[0.0], [5.0]])
    green = np.array([[3.0], [0.0]])  # site 0 has 3 MW spare, site 1 is 5 MW short
    out = follow_surplus(fleet, load, green, 1.0)
    np.testing.assert_allclose(out.soc_mwh[:, 0], [2.0, 1.0])  # first full, second the rest
    np.testing.assert_allclose(out.discharge_mw[:, 0], [0.0, 0.0])  # site 1 has none


def test_a_battery_turns_spilled_green_into_green_used_in_every_policys_score(config):
    """The same plan scored with and without a battery at qingyang: grid energy falls by the
    energy discharged, green unused by the energy charged, and energy balances hold."""
    battery = {
        "sites": {
            "qingyang": {
                "storage": {
                    "b": {
                        "p_nom": 10.0,
                        "max_hours": 2.0,
                        "efficiency_store": 0.95,
                        "efficiency_dispatch": 0.95,
                    }
                }
            }
        }
    }
    with_battery = config.updated(battery)
    pipeline = DayPipeline(config)
    problem = pipeline.problem(pipeline.horizon("2026-04-11"))
    plan = plan_day(problem, config, ["greedy"]).results["greedy"].plan
    loads = {}
    for name, cfg in (("none", config), ("battery", with_battery)):
        sites = tuple(cfg.sites.values())
        loads[name] = site_load(plan, problem.actual_supply, sites, problem.horizon, problem.caps)
    none, bat = loads["none"], loads["battery"]
    np.testing.assert_allclose(bat["load_mw"], none["load_mw"])
    charged, given = bat["storage_charge_mw"].sum(), bat["storage_discharge_mw"].sum()
    assert given > 0 and charged > 0
    assert given <= 0.95 * 0.95 * charged + 1e-9 * charged  # losses both ways
    np.testing.assert_allclose(none["grid_mw"].sum() - bat["grid_mw"].sum(), given)
    assert (bat["grid_mw"] >= -1e-9).all() and (bat["soc_mwh"] <= 20.0 + 1e-9).all()
    assert (bat.loc[bat["site"] == "shantou", "soc_mwh"] == 0).all()


def test_a_bad_storage_unit_is_one_message_naming_field_and_file(monkeypatch, capsys, tmp_path):
    unit = {"p_nom": 5.0, "max_hours": 2.0, "state_of_charge_initial": 12.0}
    text = refused_site_change(monkeypatch, capsys, tmp_path / "battery.yaml", "qingyang",
                               storage={"b": unit})  # fmt: skip
    assert "sites.qingyang.storage.b" in text
    assert "above the capacity p_nom x max_hours = 10 MWh" in text


@pytest.mark.slow
def test_a_replay_carries_the_stored_energy_into_the_next_day(config, tmp_path):
    """Two days replayed with a battery that keeps a reserve: across midnight the stored
    energy follows the energy balance from the first day's last slot (a day restarting from
    the configured 20 MWh would break it), and the battery lowers the grid's CO2."""
    battery = {"b": {"p_nom": 10.0, "max_hours": 4.0, "state_of_charge_initial": 20.0,
                     "state_of_charge_min": 5.0}}  # fmt: skip
    with_battery = config.updated({"sites": {"qingyang": {"storage": battery}}})
    runs = {}
    for name, cfg in (("none", config), ("battery", with_battery)):
        sources = dict.fromkeys(cfg.sites, "synthetic")
        spec = ReplaySpec(cfg, sources, "2026-04-11", "2026-04-12", policies=("greedy",))
        runs[name] = replay(spec, tmp_path / name)
    assert runs["battery"].daily["co2_t"].sum() < runs["none"].daily["co2_t"].sum()
    load = pd.read_csv(tmp_path / "battery" / "site_load.csv")
    qingyang = load[load["site"] == "qingyang"].reset_index(drop=True)
    midnight = len(qingyang) // 2  # the second day's first slot
    before, first = qingyang.loc[midnight - 1], qingyang.loc[midnight]
    assert before["soc_mwh"] != pytest.approx(20.0)  # the first day moved it
    expected = (
        before["soc_mwh"] + (first["storage_charge_mw"] - first["storage_discharge_mw"]) * 0.25
    )
    assert first["soc_mwh"] == pytest.approx(expected)
    saved = json.loads((tmp_path / "battery" / "storage.json").read_text())
    assert saved["greedy"] == [pytest.approx(qingyang["soc_mwh"].iloc[-1])]


def test_the_plan_directory_records_storage_units_and_purchases(monkeypatch, capsys, tmp_path):
    from scheduler.contracts.plandir import read_plan_dir

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    unit = {"p_nom": 10.0, "max_hours": 4.0, "efficiency_store": 0.9, "state_of_charge_initial": 8}
    data["sites"]["qingyang"]["storage"] = {"b": unit}
    data["sites"]["shantou"]["green_purchase"] = {"mwh_per_day": 48.0, "price_per_mwh": 300.0}
    config = tmp_path / "assets.yaml"
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "plan"
    code, _out, err = run_cli(monkeypatch, capsys, "plan", "--config", str(config), "--date",
                              "2026-04-11", "--out", str(out))  # fmt: skip
    assert code == 0, err
    tables = read_plan_dir(out)
    (unit,) = tables.storage.itertuples(index=False)
    assert (unit.site, unit.unit, unit.p_nom, unit.max_hours) == ("qingyang", "b", 10.0, 4.0)
    assert (unit.efficiency_store, unit.state_of_charge_start) == (0.9, 8.0)
    (bought,) = tables.purchases.itertuples(index=False)
    assert (bought.site, bought.price_per_mwh) == ("shantou", 300.0)
    assert bought.delivered_mwh == pytest.approx(48.0)  # a day's volume on 15-minute slots


def test_a_settled_run_totals_what_its_storage_gave_and_held(config):
    from scheduler.settlement import settle

    battery = {"b": {"p_nom": 10.0, "max_hours": 2.0, "state_of_charge_initial": 5.0}}
    cfg = config.updated({"sites": {"qingyang": {"storage": battery}}})
    pipeline = DayPipeline(cfg)
    problem = pipeline.problem(pipeline.horizon("2026-04-11"))
    run = settle(problem, plan_day(problem, cfg, ["greedy"]).results["greedy"])
    slots = run.site_slots
    qingyang = slots[slots["site"] == "qingyang"]
    actual = run.totals["actual"]
    assert actual["storage_end_mwh"] == pytest.approx(qingyang["soc_mwh"].iloc[-1])
    assert actual["storage_discharged_mwh"] == pytest.approx(
        slots["storage_discharge_mw"].sum() * 0.25
    )
    assert actual["storage_discharged_mwh"] > 0


def test_units_take_a_sites_stored_energy_in_order_up_to_their_capacity():
    fleet = StorageFleet.of(
        [{"a": StorageUnit(p_nom=1.0, max_hours=2.0), "b": StorageUnit(p_nom=1.0, max_hours=4.0)},
         {"c": StorageUnit(p_nom=5.0, max_hours=1.0)}]
    )  # fmt: skip
    np.testing.assert_allclose(fleet.unit_energy_mwh([3.0, 9.0]), [2.0, 1.0, 5.0])


def test_a_day_planned_after_another_starts_with_the_energy_it_ended_with(
    monkeypatch, capsys, tmp_path
):
    """plan --after DIR: the battery starts the day with what DIR's run ended with (its
    run.csv), not the configured initial energy; storage.csv records it and the settled day
    starts from it."""
    from scheduler.config import load_config
    from scheduler.contracts.plandir import read_plan_dir, write_run_report
    from scheduler.drivers.nightly import plan_dir_problem
    from scheduler.settlement import Settlement

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["sites"]["qingyang"]["storage"] = {"b": {"p_nom": 10.0, "max_hours": 4.0}}
    path = tmp_path / "battery.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    before = tmp_path / "before"
    code, _, err = run_cli(monkeypatch, capsys, "plan", "--config", str(path), "--date",
                           "2026-04-10", "--out", str(before))  # fmt: skip
    assert code == 0, err
    problem, plan = plan_dir_problem(before, config)
    report = Settlement(problem, plan).run()
    write_run_report(before, report)
    slots = report.site_slots
    ended = float(slots[slots["site"] == "qingyang"]["soc_mwh"].iloc[-1])
    assert 0 < ended <= 40.0  # the day before left energy in the battery
    day_dir = tmp_path / "day"
    args = ["--date", "2026-04-11", "--after", str(before), "--out", str(day_dir)]
    code, out, err = run_cli(monkeypatch, capsys, "plan", "--config", str(path), *args)
    assert code == 0, err
    assert f"stored: qingyang {ended:.2f} MWh" in " ".join(out.split())
    (unit,) = read_plan_dir(day_dir).storage.itertuples(index=False)
    assert unit.state_of_charge_start == pytest.approx(ended)
    day, _plan = plan_dir_problem(day_dir, config)
    assert day.soc_start_mwh.tolist() == [pytest.approx(ended)]
