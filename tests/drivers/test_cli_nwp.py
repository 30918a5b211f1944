"""The commands on real weather model runs (``--forecast SITE=SOURCE``), and every bad forecast
source a user can hand them: one message, exit code 2, never a traceback."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from scheduler.contracts import SUPPLY, read_table
from tests.conftest import (
    GEFS_RUN,
    GFS_RUN,
    NOAA,
    TUCSON_CONFIG,
    greensched,
    needs_nwp,
    run_cli,
)

pytestmark = [pytest.mark.realdata, needs_nwp]
TUCSON = ["--config", str(TUCSON_CONFIG)]


@pytest.mark.slow
def test_plan_on_a_gfs_run_records_the_run_in_the_manifest(tmp_path):
    """As a user runs it: a real subprocess plans the sample site's day on the GFS run."""
    done = greensched(
        "plan", *TUCSON, "--date", "2019-05-15", "--forecast", f"tucson={GFS_RUN}",
        "--time-limit", "10", "--out", str(tmp_path / "plan"), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "gfs_0p25 2019-05-15 00Z" in done.stdout
    manifest = json.loads((tmp_path / "plan" / "manifest.json").read_text())
    run = manifest["forecast"]["tucson"]
    assert run["model"] == "gfs_0p25" and run["members"] == 1
    assert run["issued_at"] == "2019-05-15T00:00:00+00:00"
    assert run["slots_from_run"] == 96 and run["source"] == str(GFS_RUN)
    supply = read_table(SUPPLY, tmp_path / "plan" / "supply.csv")
    local = pd.DatetimeIndex(supply["time"]).tz_convert("America/Phoenix")
    night = (local.hour < 4) | (local.hour >= 20)
    assert (supply.loc[night, "pv_mw"] == 0).all() and supply["pv_mw"].max() > 10


def test_forecast_from_the_gefs_members_has_their_spread(monkeypatch, capsys, tmp_path):
    out = tmp_path / "supply.csv"
    code, stdout, err = run_cli(
        monkeypatch, capsys, "forecast", *TUCSON, "--start", "2019-05-15",
        "--forecast", f"tucson={GEFS_RUN}", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert "gefs 2019-05-15 00Z, 21 members" in stdout
    supply = read_table(SUPPLY, out)
    assert (supply["green_mw_p10"] <= supply["green_mw"] + 1e-9).all()
    assert (supply["green_mw"] <= supply["green_mw_p90"] + 1e-9).all()
    assert (supply["green_mw_p90"] - supply["green_mw_p10"]).max() > 0.5


def test_the_config_names_a_sites_source(monkeypatch, capsys, tmp_path):
    config = tmp_path / "tucson.yaml"
    text = TUCSON_CONFIG.read_text().replace(
        "    sources: {}", f"    sources: {{tucson: {NOAA / 'gfs_0p25'}}}"
    )
    config.write_text(text)
    code, stdout, err = run_cli(
        monkeypatch, capsys, "forecast", "--config", str(config), "--start", "2019-07-15",
        "--out", str(tmp_path / "supply.csv"),
    )  # fmt: skip
    assert code == 0, err
    assert "gfs_0p25 2019-07-15 00Z" in stdout  # the newer of the directory's two runs


CASES = {
    "no such path": (["--forecast", "tucson=/nowhere/gfs.nc"], "no such file or directory"),
    "unknown site": (["--forecast", f"shanghai={GFS_RUN}"], "unknown site 'shanghai'"),
    "no SITE=": ([f"--forecast={GFS_RUN}"], "expected SITE=SOURCE"),
    "several models": (["--forecast", f"tucson={NOAA}"], "runs of several models"),
    "no run yet": (["--forecast", f"tucson={GFS_RUN}", "--start", "2019-05-14"],
                   "no run in .* was published by 2019-05-14T07:00"),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_a_bad_forecast_source_is_one_message_and_exit_2(monkeypatch, capsys, tmp_path, case):
    args, says = CASES[case]
    if "--start" not in args:
        args = [*args, "--start", "2019-05-15"]
    code, _, err = run_cli(
        monkeypatch, capsys, "forecast", *TUCSON, *args, "--out", str(tmp_path / "s.csv")
    )
    assert code == 2
    assert "Traceback" not in err
    assert pytest.importorskip("re").search(says, " ".join(err.split())), err


def test_a_corrupt_run_and_a_site_off_the_grid_through_plan(monkeypatch, capsys, tmp_path):
    run = tmp_path / "runs/2019/05/15/00"
    run.mkdir(parents=True)
    (run / "gfs_0p25.nc").write_bytes(GFS_RUN.read_bytes()[:4000])
    code, _, err = run_cli(
        monkeypatch, capsys, "plan", *TUCSON, "--date", "2019-05-15",
        "--forecast", f"tucson={tmp_path / 'runs'}", "--out", str(tmp_path / "p"),
    )  # fmt: skip
    assert code == 2 and "gfs_0p25.nc: not a readable NetCDF file" in err
    assert "Traceback" not in err
    # the default sites are in China: the Tucson run's grid is ~11,000 km away
    code, _, err = run_cli(
        monkeypatch, capsys, "plan", "--date", "2019-05-16", "--forecast",
        f"qingyang={GFS_RUN}", "--out", str(tmp_path / "q"),
    )  # fmt: skip
    assert code == 2 and "km from the nearest grid point" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("source", ["open-meteo-runs", "ecmwf"])
def test_an_unreachable_forecast_service_is_one_line_and_exit_2(tmp_path, source):
    """As a user runs it (a subprocess): the service's port is closed; nothing but the one
    error line reaches stderr (no retry warnings, no client notices, no traceback)."""
    import socket

    import yaml

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    data = yaml.safe_load(TUCSON_CONFIG.read_text())
    data["forecast"]["nwp"].update(
        open_meteo={"single_runs_url": f"{closed}/v1/forecast", "retries": 1, "backoff_s": 0,
                    "cache_dir": str(tmp_path / "om")},
        ecmwf={"source": closed, "retries": 1, "retry_wait_s": 0,
               "cache_dir": str(tmp_path / "ec")},
    )  # fmt: skip
    config = tmp_path / "offline.yaml"
    config.write_text(yaml.safe_dump(data))
    done = greensched(
        "forecast", "--config", str(config), "--start", "2019-05-15",
        "--forecast", f"tucson={source}", "--out", str(tmp_path / "s.csv"), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and "127.0.0.1" in lines[0]
