"""`greensched forecast` end to end, as a user runs it (a real subprocess, real models)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from scheduler.config import DEFAULT_CONFIG_PATH
from tests.conftest import SHANGHAI_EPW, greensched, needs_real_weather


@pytest.mark.slow
def test_forecast_writes_table_and_chart_for_both_sites(tmp_path):
    result = greensched(
        "forecast",
        "--start",
        "2026-11-29",
        "--out",
        "supply.csv",
        "--plot",
        "supply.png",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "supply.csv", parse_dates=["time"])
    assert list(table.columns[:5]) == ["time", "site", "pv_mw", "wind_mw", "green_mw"]
    assert set(table["site"]) == {"qingyang", "shantou"}
    assert len(table) == 2 * 96
    # the operating day 2026-11-29 in Asia/Shanghai starts at 16:00 UTC the day before
    assert table["time"].min() == pd.Timestamp("2026-11-28T16:00:00Z")
    assert (table["green_mw"] - table["pv_mw"] - table["wind_mw"]).abs().max() < 1e-9
    assert (tmp_path / "supply.png").stat().st_size > 10_000
    assert "qingyang" in result.stdout and "CF" in result.stdout


@pytest.mark.slow
@needs_real_weather
def test_forecast_on_an_epw_file_it_has_never_seen(tmp_path):
    copy = tmp_path / "station.epw"
    copy.write_bytes(SHANGHAI_EPW.read_bytes())
    result = greensched(
        "forecast",
        "--weather",
        f"shantou={copy}",
        "--start",
        "2026-07-01",
        "--days",
        "3",
        "--slot-minutes",
        "60",
        "--actual",
        "--out",
        "epw.parquet",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(tmp_path / "epw.parquet")
    shantou = table[table["site"] == "shantou"]
    assert len(shantou) == 72
    assert "km from site 'shantou'" in result.stderr  # Shanghai is ~1,000 km from Shantou
    assert "typical-year" in result.stdout


def test_bad_config_is_one_clear_message(tmp_path):
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["sites"]["shantou"]["wind"]["nanao_offshore"]["turbine_type"] = "E-999"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    result = greensched("forecast", "--config", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert "sites.shantou.wind.nanao_offshore.turbine_type" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_weather_spec_names_known_sites(tmp_path):
    result = greensched("forecast", "--weather", "shanto=x.epw", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown site 'shanto'; known sites: qingyang, shantou" in result.stderr


def test_help_explains_itself(tmp_path):
    result = greensched("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("forecast", "turbines", "check-config"):
        assert command in result.stdout
