"""A dry run of SubmitLoadCap: the answer and cost a submission would get, with nothing stored,
planned or published; through the client and the CLI against a real server on 127.0.0.1."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from scheduler.drivers.service.client import cap_interval, pb

from .conftest import local

TABLES = ("events", "event_versions", "caps", "plan_versions", "audit")


def _rows(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as connection:
        return {t: connection.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


def test_a_dry_run_answers_what_submitting_would_and_stores_nothing(server, client, tmp_path):
    db = tmp_path / "caps.sqlite"
    tight = [cap_interval(local("18:00"), 6 * 3600, 1.0)]  # shantou at base load all evening
    version, stored = client.plan().version, _rows(db)
    quoted = client.submit("q-1", ["shantou"], tight, dry_run=True)
    assert quoted.accepted and quoted.opt == pb.OPT_OUT and quoted.cost.late_jobs_total > 0
    assert quoted.plan_version == version
    assert client.plan().version == version and client.list() == [] and _rows(db) == stored
    # the same cap submitted for real gets the answer the dry run gave
    real = client.submit("q-1", ["shantou"], tight)
    assert real.plan_version == version + 1 and len(client.list()) == 1
    assert (real.opt, real.cost.late_jobs_total) == (quoted.opt, quoted.cost.late_jobs_total)
    assert real.cost.grid_mwh_change == pytest.approx(quoted.cost.grid_mwh_change, abs=1e-6)
    assert real.cost.late_gpu_hours == pytest.approx(quoted.cost.late_gpu_hours, abs=1e-6)
    with pytest.raises(grpc.RpcError) as error:
        client.submit("q-2", ["marsbase"], tight, dry_run=True)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_cli_dry_run_says_nothing_was_stored(server, client):
    command = [sys.executable, "-m", "scheduler.drivers.service", "caps", "submit",
               "--server", f"127.0.0.1:{server.port}", "--site", "qingyang", "--start",
               "2026-11-30T20:00+08:00", "--duration", "2h", "--max-grid-mw", "15",
               "--dry-run"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "dry run (nothing stored), would be OPT_" in result.stdout
    assert client.list() == []
