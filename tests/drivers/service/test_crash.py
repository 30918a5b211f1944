"""A server killed with SIGKILL right after acknowledging caps comes back with all of them."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import grpc
import pandas as pd
import pytest

from scheduler.contracts import JOBS, RUN, RUN_JOBS, read_table
from scheduler.drivers.service.client import CapClient, cap_interval, pb, price_interval
from scheduler.horizon import tomorrow

from .conftest import STARTUP_TIMEOUT_S, TIMEZONE, free_port, launch, wait_serving

pytestmark = pytest.mark.slow


def hour_slots(plan, start: pd.Timestamp) -> list:
    """The plan's slots in the hour from ``start``."""
    end = start + pd.Timedelta(hours=1)
    return [s for s in plan.slots if start <= pd.Timestamp(s.start.ToNanoseconds(), tz="UTC") < end]


def test_sigkill_after_acks_loses_no_cap(small_config: Path, tmp_path: Path) -> None:
    day = tomorrow(TIMEZONE).isoformat()
    db, log, port = tmp_path / "caps.sqlite", tmp_path / "serve.log", free_port()
    starts = [pd.Timestamp(f"{day}T{h:02d}:00").tz_localize(TIMEZONE) for h in (8, 9, 10, 18, 20)]

    process = launch(small_config, db, port, day, log)
    try:
        with CapClient(f"127.0.0.1:{port}", timeout_s=60) as client:
            client.timeout_s = 5
            wait_serving(client, process, log)
            client.timeout_s = 60
            acks = [
                client.submit(f"crash-{k}", ["shantou"], [cap_interval(start, 3600, 1.0 + k / 10)])
                for k, start in enumerate(starts)
            ]
            # a price event (tests/drivers/service/test_price_events.py) is kept as caps are
            priced = price_interval(starts[1], 7200, 12_345.0)
            acks.append(client.submit("crash-price", ["qingyang"], [priced]))
            process.send_signal(signal.SIGKILL)  # right after the last ack
            process.wait(timeout=10)
        assert all(a.accepted for a in acks)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    process = launch(small_config, db, port, day, log)
    try:
        with CapClient(f"127.0.0.1:{port}", timeout_s=5) as client:
            wait_serving(client, process, log)
            client.timeout_s = 60
            events = client.list()
            assert sorted(e.event_id for e in events) == [
                *(f"crash-{k}" for k in range(5)),
                "crash-price",
            ]
            assert all(e.status == pb.ACTIVE for e in events)
            priced_hours = [*hour_slots(client.plan(["qingyang"]), starts[1]),
                            *hour_slots(client.plan(["qingyang"]), starts[2])]  # fmt: skip
            assert [s.price_per_mwh for s in priced_hours] == [12_345.0] * 8
            plan = client.plan(["shantou"])
            assert plan.caps_in_force == 5 and plan.reason == "startup"  # a price is no cap
            assert plan.version > max(a.plan_version for a in acks)
            for k, start in enumerate(starts):
                slots = hour_slots(plan, start)
                assert len(slots) == 4
                assert all(s.grid_cap_mw == pytest.approx(1.0 + k / 10) for s in slots)
                assert all(s.grid_mw <= s.grid_cap_mw + 1e-6 for s in slots)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigkill_during_batches_loses_no_acknowledged_cap(
    small_config: Path, tmp_path: Path
) -> None:
    """Eight clients submit caps without pause (planned in batches); SIGKILL once some are
    acknowledged, with others in flight. Every acknowledged cap is in force after a restart."""
    day = tomorrow(TIMEZONE).isoformat()
    db, log, port = tmp_path / "caps.sqlite", tmp_path / "serve.log", free_port()
    acked: dict[str, tuple[pd.Timestamp, float]] = {}
    enough = threading.Event()

    def submit_until_killed(c: int) -> None:
        with CapClient(f"127.0.0.1:{port}", timeout_s=60) as client:
            for k in range(12):
                hour, mw = (c * 12 + k) % 24, 1.2 + (c + k) % 8 / 10
                start = pd.Timestamp(f"{day}T{hour:02d}:00").tz_localize(TIMEZONE)
                try:
                    client.submit(f"kill-{c}-{k}", ["shantou"], [cap_interval(start, 3600, mw)])
                except grpc.RpcError:
                    return  # the server died with this call in flight
                acked[f"kill-{c}-{k}"] = (start, mw)
                if len(acked) >= 12:
                    enough.set()

    process = launch(small_config, db, port, day, log)
    try:
        with CapClient(f"127.0.0.1:{port}", timeout_s=5) as client:
            wait_serving(client, process, log)
        clients = [threading.Thread(target=submit_until_killed, args=(c,)) for c in range(8)]
        for thread in clients:
            thread.start()
        assert enough.wait(timeout=240), log.read_text()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        for thread in clients:
            thread.join(timeout=70)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert 12 <= len(acked) < 96, "the kill should fall while caps are being submitted"

    process = launch(small_config, db, port, day, log)
    try:
        with CapClient(f"127.0.0.1:{port}", timeout_s=5) as client:
            wait_serving(client, process, log)
            client.timeout_s = 60
            listed = {e.event_id for e in client.list() if e.status == pb.ACTIVE}
            assert set(acked) <= listed
            plan = client.plan(["shantou"])
            assert plan.caps_in_force == len(listed)
            for start, mw in acked.values():
                window = hour_slots(plan, start)
                assert len(window) == 4
                assert all(s.grid_cap_mw <= mw + 1e-9 for s in window)
                assert all(s.grid_mw <= s.grid_cap_mw + 1e-6 for s in window)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _next_slot(db: Path) -> int:
    """The furthest slot the loop has committed (0 before its database and table exist)."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT MAX(next_slot) FROM loop_days").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0] or 0)


@pytest.mark.slow
def test_the_loop_killed_twice_resumes_without_losing_or_doubling_work(
    small_config: Path, tmp_path: Path
) -> None:
    """SIGKILL while a simulated day runs, twice; each restart resumes where the last slot was
    committed. In the end every job's work is done once: done + unfinished == submitted."""
    day, db, log = "2026-06-21", tmp_path / "caps.sqlite", tmp_path / "serve.log"
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "scheduler.drivers.service", "serve", f"--config={small_config}",
        f"--db={db}", "--no-dispatch", f"--out={out}", "--clock-start",
        f"{day}T00:00+08:00", "--speedup", "7200", "--days", "1",
    ]  # fmt: skip
    reached = []
    for _ in range(2):
        port = free_port()
        with log.open("ab") as sink:
            process = subprocess.Popen([*command, f"--listen=127.0.0.1:{port}"], stdout=sink,
                                       stderr=subprocess.STDOUT, env=os.environ)  # fmt: skip
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while _next_slot(db) <= (reached[-1] if reached else 0) + 8:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            reached.append(_next_slot(db))
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    port = free_port()
    finished = subprocess.run([*command, f"--listen=127.0.0.1:{port}"], capture_output=True,
                              text=True, timeout=300, check=False)  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    text = log.read_text() + finished.stderr
    assert text.count("resuming at slot") == 2
    assert reached[0] < reached[1] < 96

    outcomes = read_table(RUN_JOBS, out / day / "run_jobs.csv")
    jobs = read_table(JOBS, out / day / "jobs.csv")
    assert sorted(outcomes["job_id"]) == sorted(jobs["job_id"])  # no job lost
    assert set(outcomes["status"]) <= {"done", "late"}
    assert (outcomes.loc[outcomes["status"] == "late", "reason"].str.len() > 0).all()
    assert (outcomes["gpu_hours_done"] <= outcomes["gpu_hours_required"] + 1e-6).all()
    # no work counted twice: what ran slot by slot is the work the jobs were credited with
    # (up to rounding each job's work up to whole GPU-slots of 15 min)
    run = read_table(RUN, out / day / "run.csv")
    assert len(run) == 2 * 96
    ran_gpu_h = run["actual_gpus"].sum() * 0.25
    credited = outcomes["gpu_hours_done"].sum()
    assert credited - 1e-6 <= ran_gpu_h <= credited + 0.25 * len(outcomes)
