"""Sites report what they measured; a running day settles each slot on it, or on the newest
forecast (flagged estimated) when none came by the slot's end plus the grace (simulated clock,
real server on 127.0.0.1, real SQLite, the file feed and the CLI; SIGKILL in a subprocess)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import pandas as pd
import pytest
import yaml

from scheduler.contracts import RUN, read_table
from scheduler.drivers.service.client import CapClient
from scheduler.drivers.service.server import Running, ServeOptions, start
from scheduler.horizon import tomorrow
from scheduler.measurements import Measurement
from tests.conftest import TUCSON_CONFIG, greensched

from .conftest import free_port, launch, wait_serving

pytestmark = pytest.mark.slow

EVENING = pd.Timestamp("2019-05-16 03:00", tz="UTC")  # 20:00 in Tucson; the day ends 07:00Z
SLOT = pd.Timedelta(minutes=15)


def _config(tmp_path: Path, feed: Path) -> Path:
    data = yaml.safe_load(TUCSON_CONFIG.read_text())
    data["measurements"] = {"settle_on": "measurements", "grace_minutes": 5, "file": str(feed)}
    path = tmp_path / "measured.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _wait_clock(running: Running, at: pd.Timestamp, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    assert running.loop is not None
    while running.loop.clock.now() < at:
        assert time.monotonic() < deadline, "the loop's clock did not get there"
        time.sleep(0.02)


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code(), error.value.details()


def test_slots_settle_on_measurements_in_time_and_estimate_the_rest(tmp_path):
    feed = tmp_path / "scada.csv"
    options = ServeOptions(
        config=_config(tmp_path, feed), listen="127.0.0.1:0", db=tmp_path / "serve.sqlite",
        loop=True, dispatch=False, clock_start=EVENING, speedup=900, days=1,
        out=tmp_path / "out",
    )  # fmt: skip
    running = start(options)
    try:
        running.start_loop()
        client = CapClient(f"127.0.0.1:{running.port}", timeout_s=30)
        first, second, third, fourth = (EVENING + k * SLOT for k in range(4))
        _wait_clock(running, first + pd.Timedelta(minutes=2))
        reply = client.report_measurements([Measurement("tucson", first, 0.0, 4.2, 7.5)])
        assert (reply.stored, reply.replayed) == (1, 0)
        again = client.report_measurements([Measurement("tucson", first, 0.0, 4.2, 7.5)])
        assert (again.stored, again.replayed) == (0, 1)
        # refused: nothing of a refused batch is stored
        code, details = _code(lambda: client.report_measurements(
            [Measurement("tucson", first - SLOT, 0.0, 3.0), Measurement("tucson", first, 0.0, 9.9)]
        ))  # fmt: skip
        assert code == grpc.StatusCode.ALREADY_EXISTS and "measurements[1]" in details
        code, details = _code(lambda: client.report_measurements(
            [Measurement("tucson", first, -1.0, 1.0)]))  # fmt: skip
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("measurements[0].pv_mw: -1.0 must be a finite number >= 0")
        later = EVENING + pd.Timedelta(hours=3)
        code, details = _code(lambda: client.report_measurements(
            [Measurement("tucson", later, 0.0, 1.0)]))  # fmt: skip
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "has not begun" in details
        code, details = _code(lambda: client.report_measurements(
            [Measurement("tucson", first, 0.0, 12_000.0)]))  # fmt: skip
        assert "check the unit (kW would be 1000 times MW)" in details
        # the second slot through the SCADA file feed
        _wait_clock(running, second + pd.Timedelta(minutes=1))
        feed.write_text(f"time,site,pv_mw,wind_mw\n{second.isoformat()},tucson,0.0,5.0\n")
        # the third slot gets nothing; the fourth's measurement comes after its grace
        _wait_clock(running, fourth + SLOT + pd.Timedelta(minutes=30))
        client.report_measurements([Measurement("tucson", fourth, 0.0, 6.0)])
        stored = client.measurements(["tucson"])
        assert [m.reported_by for m in stored] == ["anonymous", f"file:{feed}", "anonymous"]
        running.thread.join(60)
        assert running.thread is not None and not running.thread.is_alive()
        report = client.report(["tucson"], first, fourth + SLOT)
        # booked: the first two on their measurements, the others on the forecast; the site's
        # forecast is the synthetic error model's: no run, no age
        basis = [r.supply_basis for r in report.slots]
        assert basis == ["measured", "measured", "estimated", "estimated"]
        assert not any(r.HasField("forecast_age_h") for r in report.slots)
        horizon = running.loop.pipeline.horizon("2019-05-15")
        estimate = running.loop.pipeline.supply(horizon, issued_at=third).forecast
    finally:
        running.stop(0)
    run = read_table(RUN, tmp_path / "out" / "2019-05-15" / "run.csv").set_index("time")
    assert run.loc[first, "supply_basis"] == "measured" and run.loc[first, "green_mw"] == 4.2
    assert run.loc[first, "measured_load_mw"] == 7.5
    assert run.loc[second, "supply_basis"] == "measured" and run.loc[second, "green_mw"] == 5.0
    for slot in (third, fourth):  # none, and one too late: the forecast issued at its start
        assert run.loc[slot, "supply_basis"] == "estimated"
    forecast = estimate.set_index("time")
    assert run.loc[third, "green_mw"] == pytest.approx(forecast.loc[third, "green_mw"])
    assert run.loc[fourth, "green_mw"] != 6.0
    # the grid draw is booked on what was measured: load minus the measured green used
    measured = run.loc[first]
    assert measured["grid_mw"] == pytest.approx(measured["load_mw"] - min(measured["load_mw"], 4.2))


def test_an_acknowledged_measurement_survives_sigkill(small_config, tmp_path):
    """As operators run it: `greensched measure submit` to a served process, SIGKILL right
    after the acknowledgement, a new process on the same database lists it; bad input through
    the CLI is one line and exit 2."""
    day = tomorrow("Asia/Shanghai").isoformat()
    db, log, port = tmp_path / "serve.sqlite", tmp_path / "serve.log", free_port()
    slot = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=20)).floor("15min")
    server = f"--server=127.0.0.1:{port}"
    process = launch(small_config, db, port, day, log, "--settle-on=measurements")
    try:
        with CapClient(f"127.0.0.1:{port}", timeout_s=5) as client:
            wait_serving(client, process, log)
        done = greensched(
            "measure", "submit", server, "--site=shantou", f"--time={slot.isoformat()}",
            "--pv-mw=0.5", "--wind-mw=2.25", "--load-mw=9", cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "1 measurement(s) stored" in done.stdout
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        bad = greensched("measure", "submit", server, "--site=shantou", "--time=yesterday",
                         "--pv-mw=1", "--wind-mw=1", cwd=tmp_path)  # fmt: skip
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert "--time 'yesterday' is not a time in ISO 8601 with an offset" in bad.stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    process = launch(small_config, db, port, day, log)
    try:
        with CapClient(f"127.0.0.1:{port}", timeout_s=5) as client:
            wait_serving(client, process, log)
        listed = greensched("measure", "list", server, "--site=shantou", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert f"{slot.isoformat()} shantou: pv 0.5 wind 2.25 load 9 MW" in listed.stdout
        wrong = greensched("measure", "submit", server, "--site=shantou",
                           f"--time={slot.isoformat()}", "--pv-mw=0.5", "--wind-mw=99",
                           cwd=tmp_path)  # fmt: skip
        assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
        assert "error: INVALID_ARGUMENT: measurements[0].wind_mw: 99 MW is above" in wrong.stderr
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
