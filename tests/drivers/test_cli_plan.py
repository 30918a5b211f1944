"""`greensched plan` as a user runs it: caps from a file, jobs that fit nowhere, bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import greensched

DAY = "2026-03-02"  # operating day in Asia/Shanghai: 2026-03-01 16:00Z to 2026-03-02 16:00Z


@pytest.mark.slow
def test_a_caps_file_is_a_hard_constraint(tmp_path):
    caps = tmp_path / "caps.csv"
    caps.write_text(
        "site,start,end,type,value_mw\n"
        "shantou,2026-03-02T08:00+08:00,2026-03-02T12:00+08:00,IMPORT_CAPACITY_LIMIT,2.5\n"
    )
    result = greensched("plan", "--date", DAY, "--caps", str(caps), "--out", "plan", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # shantou-only work fits around the cap
    load = pd.read_csv(tmp_path / "plan" / "site_load.csv", parse_dates=["time"])
    window = (
        (load["site"] == "shantou")
        & (load["time"] >= "2026-03-02T00:00Z")
        & (load["time"] < "2026-03-02T04:00Z")
    )
    assert window.sum() == 16
    assert (load.loc[window, "grid_mw"] <= 2.5 + 1e-6).all()
    assert (load.loc[window, "cap_mw"] == 2.5).all()
    written = pd.read_csv(tmp_path / "plan" / "caps.csv")
    assert list(written["site"]) == ["shantou"]
    summary = json.loads((tmp_path / "plan" / "summary.json").read_text())
    assert all(entry["cap_violations"] == 0 for entry in summary.values())


def test_bad_caps_file_names_line_and_field(tmp_path):
    caps = tmp_path / "caps.csv"
    caps.write_text(
        "site,start,end,type,value_mw\n"
        "shantou,2026-03-02T08:00+08:00,2026-03-02T12:00+08:00,IMPORT_CAPACITY_LIMIT,2.5\n"
        "shantou,2026-03-02T08:00,2026-03-02T12:00+08:00,IMPORT_CAPACITY_LIMIT,2.5\n"
    )
    result = greensched("plan", "--date", DAY, "--caps", str(caps), cwd=tmp_path)
    assert result.returncode == 2
    assert "line 3: start:" in result.stderr and "no UTC offset" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_job_that_fits_nowhere_is_named_not_a_traceback(tmp_path):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(
        "job_id,gpu_hours,max_gpus,release,deadline,sites,preemptible,tokens\n"
        "ok-1,100,50,2026-03-01T16:00Z,2026-03-02T16:00Z,,true,1e9\n"
        "huge-1,500000,100000,2026-03-01T16:00Z,2026-03-01T20:00Z,shantou,true,1e9\n"
    )
    result = greensched("plan", "--date", DAY, "--jobs", str(jobs), "--out", "p", cwd=tmp_path)
    assert result.returncode == 2
    assert "huge-1" in result.stderr
    assert "Traceback" not in result.stderr
