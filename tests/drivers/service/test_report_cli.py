"""``greensched caps report``: what a coordinator reads of a running service, through the CLI
as a user runs it (a real server on 127.0.0.1, a served day on a simulated clock)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from scheduler.contracts import RUN, read_table
from scheduler.drivers.service.report_view import REPORT_COLUMNS
from scheduler.drivers.service.server import ServeOptions, start

from .conftest import TIMEZONE

DAY = "2026-06-21"
DAY_START = pd.Timestamp(DAY).tz_localize(TIMEZONE).tz_convert("UTC")
REPORT = [sys.executable, "-m", "scheduler.drivers.service", "caps", "report"]


def _report(port: int, *args: str) -> subprocess.CompletedProcess:
    command = [*REPORT, "--server", f"127.0.0.1:{port}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_the_report_as_a_table_csv_json_and_a_watch(small_config: Path, tmp_path: Path):
    """A day served with a battery at qingyang: the watch started before the day streams every
    slot as JSON lines; afterwards the CSV holds run.csv's load and grid draw per site and slot,
    the storage only where there is one, and the table prints; a bad --format is one message."""
    data = yaml.safe_load(small_config.read_text())
    data["sites"]["qingyang"]["storage"] = {"b": {"p_nom": 5.0, "max_hours": 2.0}}
    config = tmp_path / "battery.yaml"
    config.write_text(yaml.safe_dump(data))
    options = ServeOptions(
        config=config, listen="127.0.0.1:0", db=tmp_path / "caps.sqlite", loop=True,
        dispatch=False, clock_start=DAY_START, speedup=14400, days=1, out=tmp_path / "out",
    )  # fmt: skip
    running = start(options)
    watch = subprocess.Popen(
        [*REPORT, "--watch", "--format", "json", "--server", f"127.0.0.1:{running.port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    watched: list[str] = []
    threading.Thread(target=lambda: watched.extend(watch.stdout or ()), daemon=True).start()
    try:
        time.sleep(2.0)  # the watch is connected before the day starts
        running.start_loop()
        assert running.thread is not None
        running.thread.join(120)
        assert not running.thread.is_alive(), "the day did not finish"
        as_csv = _report(running.port, "--format", "csv")
        as_table = _report(running.port, "--site", "qingyang", "--timezone", TIMEZONE)
        bad = _report(running.port, "--format", "xml")
        expected = len(as_csv.stdout.splitlines()) - 1
        deadline = time.monotonic() + 30
        while len(watched) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        watch.kill()
        running.stop(0)
    run = read_table(RUN, tmp_path / "out" / DAY / "run.csv").set_index(["site", "time"])
    assert as_csv.returncode == 0, as_csv.stderr
    rows = pd.read_csv(io.StringIO(as_csv.stdout))
    assert list(rows.columns) == list(REPORT_COLUMNS)
    assert len(rows) >= 2 * 90  # both sites, most of the day (the loop may join a slot late)
    for row in rows.itertuples(index=False):
        booked = run.loc[(row.site, pd.Timestamp(row.start).tz_convert("UTC"))]
        assert row.usage_mw == pytest.approx(booked["load_mw"])
        assert row.demand_mw == pytest.approx(booked["grid_mw"])
    has_storage = rows.dropna(subset=["storage_charge_level_mwh"])["site"].unique().tolist()
    assert has_storage == ["qingyang"]
    lines = [json.loads(line) for line in watched if line.strip()]
    assert len(lines) == len(rows)  # the watch saw every slot the report holds
    assert {line["site"] for line in lines} == {"qingyang", "shantou"}
    assert all(line["load_cap_mw"] is None for line in lines)  # unset, not NaN
    assert as_table.returncode == 0 and "USAGE MW" in as_table.stdout
    assert "+08:00" in as_table.stdout and "shantou" not in as_table.stdout
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: --format 'xml': give table, csv or json"
