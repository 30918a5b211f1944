"""Coalesced re-planning: concurrent caps planned in batches; ended events archived."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path

import grpc
import pandas as pd
import pytest

from scheduler.drivers.service.client import CapClient, cap_interval, pb
from scheduler.drivers.service.events import CapEvent, CapInterval
from scheduler.drivers.service.planner import CapCost, SubmitAnswer
from scheduler.drivers.service.server import Running, ServeOptions, start
from scheduler.drivers.service.store import Store, Submission
from scheduler.policies import get_policy
from scheduler.problem import LoadCap

from .conftest import DAY, NOW, local

CLIENTS, CAPS_EACH = 8, 3

# 8 threads in a process of their own, each submitting its caps one after the other: shantou
# grid limits of 1.2 to 1.9 MW (its base load is 1 MW), one hour each, in hours 0 to 23
CLIENT_SCRIPT = """
import json, sys, threading
import pandas as pd
from scheduler.drivers.service.client import CapClient, cap_interval
port, clients, each, day = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
replies = {}
def run(c):
    with CapClient(f"127.0.0.1:{port}", timeout_s=120) as client:
        for k in range(each):
            hour = c * each + k
            start = pd.Timestamp(f"{day}T{hour:02d}:00").tz_localize("Asia/Shanghai")
            mw = 1.2 + (hour % 8) / 10
            reply = client.submit(f"b-{hour}", ["shantou"], [cap_interval(start, 3600, mw)])
            replies[f"b-{hour}"] = [hour, mw, reply.plan_version, reply.accepted, reply.opt_reason]
threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(replies))
"""


def _slot_time(slot: pb.SiteSlot) -> pd.Timestamp:
    return pd.Timestamp(slot.start.ToNanoseconds(), tz="UTC")


def test_concurrent_caps_are_planned_in_batches_each_reply_in_force(
    client: CapClient, server: Running
) -> None:
    seen: dict[int, pb.Plan] = {}
    stream = client.watch(sites=["shantou"])

    def watch() -> None:
        try:
            for plan in stream:
                seen[plan.version] = plan
        except grpc.RpcError as error:  # cancelled at the end
            assert error.code() == grpc.StatusCode.CANCELLED

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    first = client.plan().version
    command = [sys.executable, "-c", CLIENT_SCRIPT, str(server.port), str(CLIENTS)]
    done = subprocess.run(
        [*command, str(CAPS_EACH), DAY], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    replies = json.loads(done.stdout)
    final = client.plan(["shantou"])
    stream.cancel()

    assert len(replies) == CLIENTS * CAPS_EACH and all(r[3] for r in replies.values())
    # coalescing: fewer plan versions than caps, and some reply says it shared its batch
    assert final.version - first < CLIENTS * CAPS_EACH
    assert any("planned in one batch with" in r[4] for r in replies.values())
    # each reply's plan version keeps its own cap (the version as streamed, when not skipped)
    checked = 0
    for hour, mw, version, _, _ in replies.values():
        assert first < version <= final.version
        if version in seen:
            start = local(f"{hour:02d}:00").tz_convert("UTC")
            window = [
                s
                for s in seen[version].slots
                if start <= _slot_time(s) < start + pd.Timedelta(hours=1)
            ]
            assert len(window) == 4 and all(s.grid_cap_mw == pytest.approx(mw) for s in window)
            checked += 1
    assert checked >= len(replies) // 2
    # every cap is stored, in force and kept by the final plan
    assert sorted(e.event_id for e in client.list()) == sorted(replies)
    assert final.caps_in_force == CLIENTS * CAPS_EACH
    assert final.metrics.cap_violations == 0
    assert not server.planner.current.site_load["cap_violation"].any()
    # the plan in force is stored with the version that made it (a version that kept the plan
    # before stores none), a Parquet blob that reads back as it is
    current = server.planner.current
    with closing(sqlite3.connect(server.store.path)) as db:
        (blob,) = db.execute(
            "SELECT plan_parquet FROM plan_versions WHERE version <= ? AND plan_parquet IS NOT "
            "NULL ORDER BY version DESC LIMIT 1",
            (current.version,),
        ).fetchone()
    stored = pd.read_parquet(io.BytesIO(blob))
    pd.testing.assert_frame_equal(stored, current.result.plan, check_dtype=False)
    for hour, mw, *_ in replies.values():
        start = local(f"{hour:02d}:00").tz_convert("UTC")
        window = [s for s in final.slots if start <= _slot_time(s) < start + pd.Timedelta(hours=1)]
        assert all(s.grid_mw <= mw + 1e-6 and s.grid_cap_mw == pytest.approx(mw) for s in window)


def _store_event(db: Path, event_id: str, start: pd.Timestamp, hours: int) -> None:
    """A stored shantou event of ``hours`` from ``start``, as an earlier run stored it."""
    interval = CapInterval(start, hours * 3600.0, "IMPORT_CAPACITY_LIMIT", 2.0)
    event = CapEvent(event_id, 1, "test", 0, ("shantou",), (interval,))
    cap = LoadCap("shantou", start, interval.end, interval.type, interval.value_mw)
    answer = SubmitAnswer(True, "stored", CapCost((), 0, 0.0, 0.0, 0.0, 0.0), 1).to_dict()
    store = Store(db)
    try:
        store.save_changes([Submission(event, [cap], "national", start, answer)], None)
    finally:
        store.close()


def test_ended_events_are_archived_but_still_listed(small_config: Path, tmp_path: Path) -> None:
    db = tmp_path / "caps.sqlite"
    ended_start = NOW - pd.Timedelta(days=1)  # ended 23 h before the server's clock
    _store_event(db, "ended", ended_start, 1)
    _store_event(db, "running", NOW - pd.Timedelta(hours=1), 48)  # reaches into the day
    now = [NOW]
    running = start(
        ServeOptions(config=small_config, listen="127.0.0.1:0", db=db, date=DAY),
        clock=lambda: now[0],
    )
    try:
        with CapClient(f"127.0.0.1:{running.port}") as client:
            # at start-up the ended event left the caps in force; the running one stays
            assert client.plan().caps_in_force == 1
            assert running.store.count("caps") == 1 and running.store.count("caps_archive") == 1
            listed = client.list(start=ended_start, end=ended_start + pd.Timedelta(hours=1))
            assert [e.event_id for e in listed] == ["ended"] and listed[0].status == pb.ACTIVE
            assert sorted(e.event_id for e in client.list()) == ["ended", "running"]

            # an event that ends before the day is archived by the first batch after its end
            today = NOW + pd.Timedelta(hours=1)
            client.submit("today", ["shantou"], [cap_interval(today, 3600, 2.0)])
            assert running.store.count("caps") == 2  # before the day: the plan stays
            now[0] = NOW + pd.Timedelta(hours=3)
            client.submit("later", ["shantou"], [cap_interval(local("09:00"), 3600, 1.5)])
            assert client.plan().caps_in_force == 2  # running and later, not today
            assert running.store.count("caps") == 2
            assert running.store.count("caps_archive") == 2
            listed = client.list(start=today, end=today + pd.Timedelta(hours=1))
            assert [e.event_id for e in listed] == ["running", "today"]
    finally:
        running.stop(0)


def test_simultaneous_copies_of_one_event_are_stored_once(server: Running) -> None:
    """The second copy waits for the first one's batch, then replays its answer."""
    interval = cap_interval(local("10:00"), 3600, 1.3)
    replies: list[pb.SubmitLoadCapResponse] = []

    def submit() -> None:
        with CapClient(f"127.0.0.1:{server.port}") as own:
            replies.append(own.submit("twin", ["shantou"], [interval]))

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(replies) == 4
    assert sorted(r.replayed for r in replies) == [False, True, True, True]
    assert len({(r.plan_version, r.opt, r.opt_reason) for r in replies}) == 1
    assert server.store.count("event_versions") == 1


def test_a_binding_cap_is_answered_with_a_repair_then_optimised_in_the_background(
    client: CapClient, server: Running
) -> None:
    """The reply's plan is the current plan repaired to the cap (no solve on the way); once no
    change comes for a moment, the optimizer plans the same caps in the background and its plan
    follows as a new version when it is better. Cancelling the cap keeps the repaired plan (it
    keeps looser caps too) until the background plan, the start-up optimum again, replaces it."""
    planner = server.planner
    startup = planner.current
    start_time = local("14:00")
    load = startup.site_load
    hour = load[(load["site"] == "shantou") & (load["time"] >= start_time)
                & (load["time"] < start_time + pd.Timedelta(hours=1))]  # fmt: skip
    limit_mw = 0.9 * float(hour["load_mw"].max())  # binding: the plan breaks it
    interval = cap_interval(start_time, 3600, limit_mw, load_limit=True)
    reply = client.submit("repair", ["shantou"], [interval])
    assert reply.accepted and reply.opt == pb.OPT_IN
    repaired = planner.current
    assert repaired.version == reply.plan_version
    assert "repaired" in repaired.reason and repaired.replanned
    assert not repaired.site_load["cap_violation"].any()

    optimum = get_policy("optimizer", planner.config.solver).plan(repaired.problem)
    better = optimum.objective_kg < repaired.result.objective_kg * (1 - 1e-9)
    optimised = planner.wait_for_version(repaired.version, timeout_s=60 if better else 5)
    if better:
        assert optimised is not None and optimised.reason == "optimised in the background"
        assert optimised.problem is repaired.problem  # the same caps, the same work
        assert optimised.result.objective_kg == pytest.approx(optimum.objective_kg)
        assert not optimised.site_load["cap_violation"].any()
    else:
        assert optimised is None  # the repair stays: the optimizer found nothing better

    client.cancel("repair")
    kept = planner.current
    assert not kept.replanned and kept.caps_in_force == 0
    assert kept.result.objective_kg > startup.result.objective_kg  # the detour stays, for now
    optimised = planner.wait_for_version(kept.version, timeout_s=60)
    assert optimised is not None and optimised.reason == "optimised in the background"
    assert optimised.result.objective_kg == pytest.approx(startup.result.objective_kg)
    assert client.plan().version == optimised.version
    assert server.store.last_plan_version() == optimised.version  # stored, survives a restart
