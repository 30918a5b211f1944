"""The control plane: a cap submitted over gRPC to a running loop binds what runs from the next
slot boundary, and days roll over by themselves (simulated clock, real server on 127.0.0.1,
real SQLite, the settlement engine; Ray in the slow test)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd
import pytest

from scheduler.config import load_config
from scheduler.contracts import RUN, RUN_JOBS, read_table
from scheduler.drivers.service.client import CapClient, pb
from scheduler.drivers.service.server import Running, ServeOptions, start

from .conftest import TIMEZONE
from .test_caps import cap_interval

DAY = "2026-06-21"
DAY_START = pd.Timestamp(DAY).tz_localize(TIMEZONE).tz_convert("UTC")
SLOT = pd.Timedelta(minutes=15)


def start_loop(config: Path, tmp_path: Path, speedup: float, days: int, dispatch: bool) -> Running:
    options = ServeOptions(
        config=config, listen="127.0.0.1:0", db=tmp_path / "caps.sqlite", loop=True,
        dispatch=dispatch, clock_start=DAY_START, speedup=speedup, days=days,
        out=tmp_path / "out",
    )  # fmt: skip
    running = start(options)
    running.start_loop()
    return running


def wait_until(running: Running, when: pd.Timestamp, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    assert running.loop is not None
    while running.loop.clock.now() < when:
        assert time.monotonic() < deadline, "the loop's clock did not advance"
        time.sleep(0.05)


def finish(running: Running, timeout_s: float = 240, stop: bool = True) -> None:
    assert running.thread is not None
    running.thread.join(timeout_s)
    assert not running.thread.is_alive(), "the loop did not finish its days"
    if stop:
        running.stop(0)


def capped_rows(tmp_path: Path, day: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    run = read_table(RUN, tmp_path / "out" / day / "run.csv")
    window = (run["site"] == "shantou") & (run["time"] >= start) & (run["time"] < end)
    return run[window]


def submit_load_cap(running: Running, lead: pd.Timedelta, hours: int, value_mw: float):
    """A LOAD_LIMIT at shantou from ``lead`` after the loop's now; returns (reply, start)."""
    assert running.loop is not None
    start_at = running.loop.clock.now() + lead
    with CapClient(f"127.0.0.1:{running.port}") as client:
        reply = client.submit(
            f"dr-{start_at.value}", ["shantou"],
            [cap_interval(start_at, hours * 3600, value_mw, load_limit=True)],
        )  # fmt: skip
    return reply, start_at


def test_a_cap_submitted_during_the_day_binds_what_runs(small_config, tmp_path):
    running = start_loop(small_config, tmp_path, speedup=3600, days=1, dispatch=False)
    wait_until(running, DAY_START + pd.Timedelta(hours=6))
    reply, start_at = submit_load_cap(running, pd.Timedelta(hours=2), 3, 1.5)
    assert reply.accepted
    now_reply, now_at = submit_load_cap(running, pd.Timedelta(0), 1, 1.2)
    assert now_reply.accepted
    with CapClient(f"127.0.0.1:{running.port}") as client:
        clock = pd.Timestamp(client.plan().clock.ToNanoseconds(), tz="UTC")
        assert now_at <= clock <= running.loop.clock.now()  # the service says its clock
        finish(running, stop=False)
        report = client.report(["shantou"], start_at, start_at + pd.Timedelta(hours=3))
    running.stop(0)
    # what the coordinator is told: the load drawn, under the cap, against the baseline
    assert len(report.slots) >= 12
    assert all(r.usage_mw <= 1.5 + 1e-6 and r.load_cap_mw == 1.5 for r in report.slots)
    avoided = sum(r.baseline_mw - r.usage_mw for r in report.slots)
    assert avoided > 0
    for r in report.slots:
        curtailed = r.operating_state == pb.RUNNING_CURTAILED
        assert curtailed == (r.usage_mw < r.baseline_mw - 1e-6)

    window = capped_rows(tmp_path, DAY, start_at.floor("15min"), start_at + pd.Timedelta(hours=3))
    assert len(window) == 13  # 3 h of 15-min slots, the first one started before the cap
    assert (window["load_cap_mw"] <= 1.5).all()  # the "now" cap may overlap its start on a
    alone = window[window["time"] >= now_at + pd.Timedelta(hours=1)]  # slow machine
    assert len(alone) >= 8 and (alone["load_cap_mw"] == 1.5).all()
    assert (window["load_mw"] <= 1.5 + 1e-6).all()
    assert (window["cap_violation_mw"] == 0).all()
    # a cap for "now" binds from the next slot boundary on
    after = capped_rows(tmp_path, DAY, now_at.ceil("15min"), now_at + pd.Timedelta(hours=1))
    assert len(after) >= 3
    assert (after["load_cap_mw"] == 1.2).all() and (after["load_mw"] <= 1.2 + 1e-6).all()
    before = capped_rows(tmp_path, DAY, DAY_START, now_at.floor("15min"))
    assert (before["load_cap_mw"] == float("inf")).all()  # nothing was capped before
    # run.csv names each cap by its event id in the slots it was in force
    capped_id, now_id = f"dr-{start_at.value}", f"dr-{now_at.value}"
    assert (before["caps_in_force"] == "").all() and (before["caps_binding"] == "").all()
    assert (after["caps_in_force"] == now_id).all()
    assert all(capped_id in cell.split(";") for cell in window["caps_in_force"])
    assert (alone["caps_in_force"] == capped_id).all()


def test_days_roll_over_without_restart(small_config, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="scheduler.drivers.service.loop")
    running = start_loop(small_config, tmp_path, speedup=43200, days=3, dispatch=False)
    third_8 = DAY_START + pd.Timedelta(days=2, hours=8)
    with CapClient(f"127.0.0.1:{running.port}") as client:
        reply = client.submit(
            "third-day", ["shantou"], [cap_interval(third_8, 7200, 1.5, load_limit=True)]
        )
    assert reply.opt == pb.SCHEDULED  # beyond the horizon: stored, planned when it comes in
    finish(running)
    days = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert days == ["2026-06-21", "2026-06-22", "2026-06-23"]
    for day in days:
        run = read_table(RUN, tmp_path / "out" / day / "run.csv")
        assert len(run) == 2 * 96 and run["actual_gpus"].sum() > 0
        assert (run["time"] >= pd.Timestamp(day).tz_localize(TIMEZONE)).all()
        # summary.json says what ran (as run.csv does) apart from what was planned
        summary = json.loads((tmp_path / "out" / day / "summary.json").read_text())
        assert set(summary) == {"ran", "planned"} and set(summary["planned"]) == {"optimizer"}
        ran = summary["ran"]
        assert ran["energy_used_mwh"] == pytest.approx(run["load_mw"].sum() * 0.25, rel=1e-6)
        assert ran["cap_violations"] == int((run["cap_violation_mw"] > 0).sum())
    # the log says how the day goes, hour by hour
    progress = [r.getMessage() for r in caplog.records if " ran: " in r.getMessage()]
    assert len(progress) == 3 * 24
    assert progress[0].startswith("2026-06-21 00:45 slot 4/96 ran: qingyang ")
    assert progress[-1].startswith("2026-06-23 23:45 slot 96/96 ran: ")
    capped = capped_rows(tmp_path, days[2], third_8, third_8 + pd.Timedelta(hours=2))
    assert len(capped) == 8 and (capped["load_cap_mw"] == 1.5).all()
    assert (capped["load_mw"] <= 1.5 + 1e-6).all()
    # run.csv names the event where its cap was in force, and where it bound: no room left
    # under 1.5 MW for one more GPU (shantou's MW per GPU, PUE included)
    assert (capped["caps_in_force"] == "third-day").all()
    mw_per_gpu = load_config(small_config).sites["shantou"].mw_per_gpu
    at_cap = capped["load_mw"] > 1.5 - mw_per_gpu
    assert at_cap.any()  # the plan runs at the cap (and, today, below it too)
    assert list(capped["caps_binding"]) == ["third-day" if b else "" for b in at_cap]
    for day in days:
        run = read_table(RUN, tmp_path / "out" / day / "run.csv")
        elsewhere = run.drop(capped.index) if day == days[2] else run
        assert (elsewhere["caps_in_force"] == "").all() and (elsewhere["caps_binding"] == "").all()


def test_a_cap_for_the_next_day_is_planned_at_once(small_config, tmp_path):
    """The horizon runs to the end of the next operating day: a cap there is answered with
    what it costs that day (not SCHEDULED), and binds when the day runs."""
    running = start_loop(small_config, tmp_path, speedup=7200, days=2, dispatch=False)
    deadline = time.monotonic() + 60
    while running.planner.ahead is None:  # the next day's forecast is made off the slot path
        assert time.monotonic() < deadline, "no look-ahead day"
        time.sleep(0.05)
    assert running.planner.ahead.start == DAY_START + pd.Timedelta(days=1)
    next_8 = DAY_START + pd.Timedelta(days=1, hours=8)
    with CapClient(f"127.0.0.1:{running.port}") as client:
        reply = client.submit(
            "next-day", ["shantou"], [cap_interval(next_8, 7200, 1.3, load_limit=True)]
        )
    assert reply.accepted and reply.opt in (pb.OPT_IN, pb.OPT_OUT)
    assert "next day" in reply.opt_reason
    assert reply.cost.moved_mwh > 0  # shantou had work planned then: the cap moved it
    finish(running)
    capped = capped_rows(tmp_path, "2026-06-22", next_8, next_8 + pd.Timedelta(hours=2))
    assert len(capped) == 8 and (capped["load_cap_mw"] == 1.3).all()
    assert (capped["load_mw"] <= 1.3 + 1e-6).all()


@pytest.mark.slow
def test_the_cap_binds_the_ray_tasks(small_config, tmp_path):
    running = start_loop(small_config, tmp_path, speedup=2880, days=1, dispatch=True)
    wait_until(running, DAY_START + pd.Timedelta(hours=4), timeout_s=180)
    reply, start_at = submit_load_cap(running, pd.Timedelta(hours=2), 2, 1.5)
    assert reply.accepted
    finish(running, timeout_s=400)
    window = capped_rows(tmp_path, DAY, start_at.ceil("15min"), start_at + pd.Timedelta(hours=2))
    assert len(window) >= 7
    assert (window["load_mw"] <= 1.5 + 1e-6).all() and (window["cap_violation_mw"] == 0).all()
    assert window["tasks"].sum() > 0 or (window["actual_gpus"] == 0).all()


def test_caps_in_a_service_database_are_read_without_writing(server, client, tmp_path):
    from scheduler.drivers.service.store import caps_in_database

    from .conftest import local

    client.submit("dr-db", ["shantou"], [cap_interval(local("18:00"), 7200, 1.5, load_limit=True)])
    before = server.store.path.stat().st_mtime_ns
    (cap,) = caps_in_database(server.store.path)
    assert (cap.site, cap.value_mw, str(cap.type)) == ("shantou", 1.5, "LOAD_LIMIT")
    assert cap.start == local("18:00") and cap.end == local("20:00")
    assert server.store.path.stat().st_mtime_ns == before


@pytest.mark.slow
def test_nightly_runs_under_a_cap_submitted_over_grpc(server, client, small_config, tmp_path):
    from tests.conftest import greensched

    from .conftest import DAY as SERVED_DAY
    from .conftest import local

    client.submit("dr-night", ["qingyang"], [cap_interval(local("18:00"), 7200, 5.0)])
    result = greensched("nightly", "--config", str(small_config), "--date", SERVED_DAY,
                        "--caps-from", f"127.0.0.1:{server.port}", "--speedup", "100000",
                        "--out", str(tmp_path / "night"), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 cap(s) in force" in result.stdout
    run = read_table(RUN, tmp_path / "night" / SERVED_DAY / "run.csv")
    window = run[(run["site"] == "qingyang") & (run["time"] >= local("18:00"))
                 & (run["time"] < local("20:00"))]  # fmt: skip
    assert len(window) == 8 and (window["grid_cap_mw"] == 5.0).all()
    assert (window["grid_mw"] <= 5.0 + 1e-6).all()
    assert (window["caps_in_force"] == "dr-night").all()  # the event id came along


def test_a_plan_only_service_has_nothing_to_report(client):
    import grpc

    with pytest.raises(grpc.RpcError) as error:
        client.report()
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_jobs_arrive_day_by_day_from_a_directory(small_config, tmp_path, caplog):
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    header = "job_id,gpu_hours,max_gpus,release,deadline,sites,preemptible,tokens\n"
    (jobs_dir / "2026-06-21.csv").write_text(
        header + "a,400,200,2026-06-21T01:00+08:00,2026-06-21T09:00+08:00,,true,1e9\n"
        "b,100,100,2026-06-21T12:00+08:00,2026-06-21T18:00+08:00,shantou,false,1e9\n"
    )
    (jobs_dir / "2026-06-22.csv").write_text(
        header + "c,100,100,2026-06-22T01:00,2026-06-22T09:00+08:00,,true,1e9\n"  # naive time
    )
    options = ServeOptions(
        config=small_config, listen="127.0.0.1:0", db=tmp_path / "caps.sqlite", loop=True,
        dispatch=False, clock_start=DAY_START, speedup=43200, days=3, out=tmp_path / "out",
        jobs_dir=jobs_dir,
    )  # fmt: skip
    running = start(options)
    running.start_loop()
    finish(running)
    first = read_table(RUN_JOBS, tmp_path / "out" / "2026-06-21" / "run_jobs.csv")
    assert dict(zip(first["job_id"], first["status"], strict=True)) == {"a": "done", "b": "done"}
    assert first["gpu_hours_done"].sum() == pytest.approx(500)
    for day in ("2026-06-22", "2026-06-23"):  # refused file, then no file: no new jobs
        assert read_table(RUN_JOBS, tmp_path / "out" / day / "run_jobs.csv").empty
    assert "2026-06-22.csv line 2 (job_id 'c'): release" in caplog.text
    assert "2026-06-23.csv: no jobs file" in caplog.text


def test_a_simulated_day_runs_from_its_first_slot_however_long_it_took_to_prepare(
    small_config, tmp_path
):
    """At 43,200x a slot lasts 21 ms of the wall clock: the clock starts once the first day is
    prepared (its problem and plan), so the loop runs every slot of it, the first included (it
    joined the day a few slots in, or a whole slot late at make run's 720x)."""
    running = start_loop(small_config, tmp_path, speedup=43200, days=1, dispatch=False)
    finish(running)
    rows = running.loop.reports.rows if running.loop is not None else []
    first_site = rows[0].site
    starts = [row.start for row in rows if row.site == first_site]
    assert starts[0] == DAY_START and len(starts) == 96
    run = read_table(RUN, tmp_path / "out" / DAY / "run.csv")
    assert (run.groupby("site")["load_mw"].count() == 96).all()
