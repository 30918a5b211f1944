"""``serve`` follows a directory of weather model runs: a run dropped in is planned on within
one poll interval; a run that cannot be read keeps the last good one and never stops the loop
(simulated clock, real server on 127.0.0.1, real SQLite, the real NOAA GFS run)."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr
import yaml

from scheduler.drivers.service.client import CapClient
from scheduler.drivers.service.server import Running, ServeOptions, start
from tests.conftest import GFS_RUN, TUCSON_CONFIG, needs_nwp

pytestmark = [pytest.mark.realdata, needs_nwp, pytest.mark.slow]

DAY_START = pd.Timestamp("2019-05-15 07:00", tz="UTC")  # 00:00 in Tucson
MORNING = DAY_START + pd.Timedelta(hours=8)  # the loop starts during the day
POLL = pd.Timedelta(minutes=5)
SPEEDUP = 300  # a poll every second


def _config(tmp_path: Path) -> Path:
    data = yaml.safe_load(TUCSON_CONFIG.read_text())
    data["forecast"]["nwp"].update(available_after_minutes=0, poll_minutes=POLL.seconds / 60)
    data["solver"].update(replan_every_minutes=1440)  # only a new run re-plans
    path = tmp_path / "tucson.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cloudier_run(runs: Path, hour: int) -> Path:
    """The GFS run again as issued ``hour`` Z with half its sunshine: a fresher forecast that
    tells a different day."""
    folder = runs / f"2019/05/15/{hour:02d}"
    folder.mkdir(parents=True)
    with xr.open_dataset(GFS_RUN) as run:
        darker = run.load()
    darker["dswrf"] = darker["dswrf"] * 0.5
    darker.to_netcdf(folder / "partial.nc")
    (folder / "partial.nc").rename(folder / "gfs_0p25.nc")  # whole, or not there
    return folder


def _wait(running: Running, until, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_serve_plans_on_a_run_dropped_in_and_survives_a_bad_one(tmp_path, caplog):
    runs = tmp_path / "runs"
    (runs / "2019/05/15/00").mkdir(parents=True)
    shutil.copy(GFS_RUN, runs / "2019/05/15/00/gfs_0p25.nc")
    options = ServeOptions(
        config=_config(tmp_path), listen="127.0.0.1:0", db=tmp_path / "serve.sqlite", loop=True,
        dispatch=False, clock_start=MORNING, speedup=SPEEDUP, days=1, out=tmp_path / "out",
        forecasts=(f"tucson={runs}",),
    )  # fmt: skip
    caplog.set_level(logging.INFO, logger="scheduler.drivers.service")
    running = start(options)
    try:
        running.start_loop()
        assert running.loop is not None and running.watcher is not None
        clock = running.loop.clock
        _wait(running, lambda: running.planner.state is not None)
        first = running.planner.settled()
        _cloudier_run(runs, 6)
        polls_at_drop = running.watcher.polls
        _wait(running, lambda: "new forecast run" in running.planner.current.reason)
        version = running.planner.current
        assert "gfs_0p25 issued 2019-05-15 06:00Z" in version.reason
        # found by the first poll begun after the drop (one begun before may find it too)
        (found,) = running.watcher.found_at.values()
        assert found <= polls_at_drop + 1
        # the work left is planned on the darker run: less green from the next slot on
        later = version.problem.supply["time"] >= version.from_time
        before = first.problem.supply
        planned = version.problem.supply.loc[later, "green_mw"].sum()
        earlier = before.loc[before["time"] >= version.from_time, "green_mw"].sum()
        assert planned < earlier
        # a run that cannot be read: a warning, the darker run stays in use, the day goes on
        bad = runs / "2019/05/15/12"
        bad.mkdir(parents=True)
        (bad / "gfs_0p25.nc").write_bytes(b"not a NetCDF file at all")
        failures = running.watcher.failures
        _wait(running, lambda: running.watcher.failures > failures)
        assert "not a readable NetCDF file" in (running.watcher.last_error or "")
        in_use = running.watcher.feed.in_use(clock.now())["tucson"]
        assert in_use.issued_at == pd.Timestamp("2019-05-15 06:00", tz="UTC")
        assert "planning on the last good run(s): tucson" in caplog.text
        with CapClient(f"127.0.0.1:{running.port}", timeout_s=30) as client:
            ran = client.report(["tucson"]).slots[-1]
        ran_at = pd.Timestamp(ran.start.ToNanoseconds(), tz="UTC")
        issued = pd.Timestamp("2019-05-15 06:00" if ran_at >= version.from_time else
                              "2019-05-15 00:00", tz="UTC")  # fmt: skip
        assert ran.forecast_age_h == pytest.approx((ran_at - issued) / pd.Timedelta(hours=1))
        assert ran.supply_basis == "actual"  # a simulated day: the weather source
        failed_at = clock.now()
        _wait(running, lambda: clock.now() >= failed_at + pd.Timedelta(minutes=30))
        assert running.thread is not None and running.thread.is_alive()  # the loop goes on
        now = clock.now()  # one reading: the clock runs SPEEDUP times faster than the wall
        age = running.watcher.ages_h(now)["tucson"]
        assert age == pytest.approx((now - in_use.issued_at) / pd.Timedelta(hours=1))
    finally:
        running.stop(0)
