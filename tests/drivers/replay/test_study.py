"""Studies: a sweep file fans scenarios out as Ray tasks and returns one tidy table."""

from __future__ import annotations

import pandas as pd
import pytest

from scheduler.config import ConfigError
from scheduler.drivers.study import load_study, run_study, scenario_specs

STUDY = """\
from: 2026-04-01
to: 2026-04-01
policies: [fifo, optimizer]
sweep:
  forecast_error: [0.0, 2.0]
  deferrable_scale: [0.2]
  daily_cap: [null, "shantou:18-22:4"]
"""


def test_study_file_is_validated(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(STUDY.replace("forecast_error", "forecast_eror"))
    with pytest.raises(ConfigError, match=r"sweep\.forecast_eror: unknown key"):
        load_study(bad)
    bad.write_text(STUDY.replace('"shantou:18-22:4"', '"shantou@18"'))
    with pytest.raises(ConfigError, match="SITE:START-END:MW"):
        load_study(bad)


@pytest.mark.slow
def test_study_grid_runs_as_ray_tasks(tmp_path, config):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY)
    spec = load_study(path)
    assert len(scenario_specs(spec, config)) == 4
    table = run_study(spec, config)
    assert len(table) == 4 * 2
    assert set(table["policy"]) == {"fifo", "optimizer"}
    assert (table["cap_violations"] == 0).all()
    # limits_on as replay's default (the config's), and no Python text in any cell
    assert (table["limits_on"] == config.solver.limits_on).all()
    assert (table["qingyang_slots_over_ramp"] >= 0).all()
    assert not table.map(lambda cell: isinstance(cell, str) and "{" in cell).to_numpy().any()
    optimizer = table[table["policy"] == "optimizer"].set_index(["forecast_error", "daily_cap"])
    # perfect foresight is never worse than a forecast twice the default error
    assert optimizer.loc[(0.0, ""), "green_share"] >= optimizer.loc[(2.0, ""), "green_share"] - 1e-9


def test_replanning_is_an_axis_of_the_grid(tmp_path, config):
    import pandas as pd

    from scheduler.contracts import UserError

    path = tmp_path / "study.yaml"
    path.write_text(STUDY + "  replan_every_minutes: [null, 60]\n")
    grid = scenario_specs(load_study(path), config)
    assert len(grid) == 8
    assert {spec.replan_every for _, spec in grid} == {None, pd.Timedelta(hours=1)}
    assert {p["replan_every_minutes"] for p, _ in grid} == {None, 60}
    path.write_text(STUDY + "  replan_every_minutes: [7]\n")
    with pytest.raises(UserError, match="not a multiple of the 15-minute slot"):
        scenario_specs(load_study(path), config)
    path.write_text(STUDY + "  replan_every_minutes: [0]\n")
    with pytest.raises(ConfigError, match="replan_every_minutes"):
        load_study(path)


def test_battery_size_is_an_axis_of_the_grid(tmp_path, config):
    """storage_hours puts a battery of that many hours of each site's mean load at every site:
    a day replayed with 2 hours emits less grid CO2 than with none, and cycles its batteries."""
    from scheduler.drivers.replay import replay, summarize

    path = tmp_path / "study.yaml"
    path.write_text(STUDY.replace("[fifo, optimizer]", "[greedy]")
                    .replace("[0.0, 2.0]", "[1.0]").replace('[null, "shantou:18-22:4"]', "[null]")
                    + "  storage_hours: [0, 2]\n")  # fmt: skip
    grid = scenario_specs(load_study(path), config)
    assert [p["storage_hours"] for p, _ in grid] == [0, 2]
    none, two = (spec for _, spec in grid)
    assert all(not site.storage for site in none.config.sites.values())
    for name, site in two.config.sites.items():
        (battery,) = site.storage.values()
        # p_nom is the site's mean load: above its base load, below its full load [MW]
        assert site.base_load_mw < battery.p_nom < site.full_load_mw
        assert battery.energy_mwh == pytest.approx(2 * none.config.mean_load_mw()[name])
    totals = [summarize(replay(spec))["policies"]["greedy"] for spec in (none, two)]
    assert totals[1]["co2_t"] < totals[0]["co2_t"]
    assert totals[0]["storage_cycles"] == 0 < totals[1]["storage_cycles"]


def test_cost_weight_and_price_scale_are_axes_and_trace_the_front(tmp_path, config):
    """cost_weight puts the weighted objective in each scenario and price_scale multiplies every
    site's tariff; replaying a day at weight 1000 settles at a lower cost than at weight 0 (CO2
    need not rise on a settled day: the plans are made on the forecast), and the front is
    plotted only when the weight is swept."""
    from scheduler.drivers.replay import replay, summarize
    from scheduler.drivers.study import plot_front

    path = tmp_path / "study.yaml"
    path.write_text(STUDY.replace("[fifo, optimizer]", "[optimizer]")
                    .replace("[0.0, 2.0]", "[1.0]").replace('[null, "shantou:18-22:4"]', "[null]")
                    + "  cost_weight: [0, 1000]\n  price_scale: [1.0, 2.0]\n")  # fmt: skip
    grid = scenario_specs(load_study(path), config)
    assert [(p["cost_weight"], p["price_scale"]) for p, _ in grid] == [
        (0, 1.0),
        (0, 2.0),
        (1000, 1.0),
        (1000, 2.0),
    ]
    for parameters, spec in grid:
        assert spec.config.solver.objective_weights() == (1.0, parameters["cost_weight"])
        price = spec.config.sites["shantou"].price_per_mwh
        assert price == config.sites["shantou"].price_per_mwh * parameters["price_scale"]
    rows = []
    for parameters, spec in (grid[0], grid[2]):
        totals = summarize(replay(spec))["policies"]["optimizer"]
        rows.append({**parameters, "policy": "optimizer", **totals})
    table = pd.DataFrame(rows)
    carbon, cost = table.iloc[0], table.iloc[1]
    assert cost["cost"] < carbon["cost"]  # identical were the weight not applied
    assert plot_front(table, tmp_path / "front.png") == tmp_path / "front.png"
    assert (tmp_path / "front.png").stat().st_size > 10_000
    assert plot_front(table.iloc[:1], tmp_path / "none.png") is None
