"""The dispatcher on the embedded Ray: happy path, caps under short supply, retries."""

from __future__ import annotations

import pandas as pd
import pytest
from clusters.clock import CompressedClock, InstantClock
from clusters.dispatcher import Dispatcher
from clusters.report import write_run_report
from clusters_testkit import T0, job_row, raises_for_bad, raises_once, sites_table

from clusters.tasks import TaskSettings

SLOT = pd.Timedelta(minutes=15)
FAST = TaskSettings(gpus_per_unit=1000, tokens_per_real_token=1e8)


def slot(i: int) -> pd.Timestamp:
    return T0 + i * SLOT


def plan_rows(job_id: str, site: str, slots: range, gpus: int) -> list[dict]:
    return [{"job_id": job_id, "site": site, "time": slot(i), "gpus": gpus} for i in slots]


def supply(green_by_site: dict[str, float], n_slots: int) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"time": slot(i), "site": site, "green_mw": green}
            for i in range(n_slots)
            for site, green in green_by_site.items()
        ]
    )


@pytest.fixture
def small_night():
    """Two jobs over three slots at both sites; the plan covers all their work."""
    jobs = pd.DataFrame([job_row("a", 1500, 4000), job_row("b", 750, 2000, "shantou")])
    plan = pd.DataFrame(
        plan_rows("a", "qingyang", range(3), 1000)
        + plan_rows("a", "shantou", range(3), 1000)
        + plan_rows("b", "shantou", range(3), 1000)
    )
    return plan, jobs


@pytest.mark.parametrize("clock", [InstantClock(), CompressedClock(speedup=9000)])
def test_small_plan_runs_to_completion_and_totals_match(local_ray, small_night, clock, tmp_path):
    plan, jobs = small_night
    report = Dispatcher(
        plan,
        jobs,
        sites_table(),
        15,
        clock,
        actual_supply=supply({"qingyang": 3, "shantou": 2}, 3),
        settings=FAST,
    ).run()

    assert report.statuses == {"a": "done", "b": "done"}
    planned, actual = report.totals["planned"], report.totals["actual"]
    assert actual["gpu_hours"] == pytest.approx(planned["gpu_hours"]) == 2250
    assert actual["tokens"] == pytest.approx(planned["tokens"]) == 2250 * 5e6
    assert actual["grid_mwh"] == pytest.approx(planned["grid_mwh"])
    assert actual["cap_violations"] == 0
    jobs_out = report.jobs.set_index("job_id")
    assert jobs_out.loc["a", "sites"] == "qingyang;shantou"
    assert jobs_out.loc["b", "slots"] == 3
    assert (report.chunks["outcome"] == "ok").all()
    assert (report.chunks["site_units"] == 1.0).all()
    rows = report.site_slots.set_index(["time", "site"])
    q0 = rows.loc[(slot(0), "qingyang")]
    assert q0["load_mw"] == pytest.approx(1000 * 1.2 * 1.15 / 1000 + 1.5)
    assert q0["green_used_mw"] == pytest.approx(min(q0["load_mw"], 3.0))
    assert q0["grid_mw"] == pytest.approx(q0["load_mw"] - q0["green_used_mw"])

    json_path, csv_path = write_run_report(tmp_path, report)
    assert json_path.name == "run_report.json" and csv_path.name == "run.csv"
    assert len(pd.read_csv(csv_path)) == 6


def test_short_supply_under_a_cap_defers_preemptible_work_and_never_breaks_the_cap(local_ray):
    """The plan assumed 8 MW of green at qingyang; only 2 MW comes in the first two slots."""
    jobs = pd.DataFrame(
        [
            job_row("flex", 2000, 4000, "qingyang"),
            job_row("tight", 500, 2000, "qingyang", window_h=1),
        ]
    )
    plan = pd.DataFrame(
        plan_rows("flex", "qingyang", range(2), 4000)
        + plan_rows("tight", "qingyang", range(2), 1000)
    )
    green = supply({"qingyang": 8.0, "shantou": 0.0}, 12)
    green.loc[green["time"] < slot(2), "green_mw"] = 2.0
    caps = pd.DataFrame(
        [
            {
                "site": "qingyang",
                "start": T0,
                "end": slot(12),
                "type": "IMPORT_CAPACITY_LIMIT",
                "value_mw": 3.0,
            }
        ]
    )
    report = Dispatcher(
        plan,
        jobs,
        sites_table(),
        15,
        InstantClock(),
        actual_supply=green,
        caps=caps,
        settings=FAST,
    ).run()

    slots = report.site_slots
    assert (slots["grid_mw"] <= slots["grid_cap_mw"] + 1e-6).all()
    assert report.totals["actual"]["cap_violations"] == 0
    deferred = report.events[report.events["kind"] == "deferred"]
    assert set(deferred["job_id"]) == {"flex"}  # the one with more slack goes first
    assert report.statuses == {"flex": "done", "tight": "done"}
    assert report.totals["actual"]["gpu_hours"] == pytest.approx(2500)
    flex_slots = report.chunks[report.chunks["job_id"] == "flex"]["time"]
    assert flex_slots.max() > slot(1)  # carried past the plan's last slot


def test_non_preemptible_work_over_a_cap_is_stopped_and_reported(local_ray):
    jobs = pd.DataFrame([job_row("fixed", 1000, 4000, preemptible=False)])
    plan = pd.DataFrame(plan_rows("fixed", "shantou", range(1), 4000))
    caps = pd.DataFrame(
        [{"site": "shantou", "start": T0, "end": slot(1), "type": "LOAD_LIMIT", "value_mw": 4.0}]
    )
    report = Dispatcher(
        plan, jobs, sites_table(), 15, InstantClock(), caps=caps, settings=FAST
    ).run()
    assert report.totals["actual"]["cap_violations"] == 0  # a cap is hard
    stopped = report.events[report.events["kind"] == "stopped"]
    assert len(stopped) == 1 and "non-preemptible" in stopped["detail"].iloc[0]
    job = report.jobs.set_index("job_id").loc["fixed"]
    assert job["gpu_hours_done"] == pytest.approx(1000)  # the stopped work ran later
    assert "interrupted" in job["reason"]


def test_a_task_that_raises_is_retried_then_its_job_fails(local_ray):
    jobs = pd.DataFrame([job_row("bad", 500, 2000), job_row("good", 500, 2000)])
    plan = pd.DataFrame(
        plan_rows("bad", "qingyang", range(2), 1000) + plan_rows("good", "qingyang", range(2), 1000)
    )
    report = Dispatcher(
        plan,
        jobs,
        sites_table(),
        15,
        InstantClock(),
        max_retries=2,
        settings=FAST,
        work=raises_for_bad,
    ).run()
    assert report.statuses == {"bad": "failed", "good": "done"}
    bad = report.chunks[report.chunks["job_id"] == "bad"]
    assert list(bad["attempt"]) == [0, 1, 2]  # then no more slots for a failed job
    reason = report.jobs.set_index("job_id").loc["bad", "reason"]
    assert "failed after 3 attempts" in reason and "model weights for bad are corrupt" in reason


def test_a_task_that_raises_once_succeeds_on_retry(local_ray, tmp_path):
    job_id = str(tmp_path / "flaky-job")
    jobs = pd.DataFrame([job_row(job_id, 250, 1000)])
    plan = pd.DataFrame(plan_rows(job_id, "shantou", range(1), 1000))
    report = Dispatcher(
        plan, jobs, sites_table(), 15, InstantClock(), settings=FAST, work=raises_once
    ).run()
    assert report.statuses == {job_id: "done"}
    assert list(report.chunks["outcome"]) == ["error", "ok"]
    assert list(report.events["kind"]) == ["retry"]


def test_compressed_clock_runs_a_day_in_a_minute_at_1440():
    clock = CompressedClock(speedup=1440)
    assert clock.real_seconds(pd.Timedelta(hours=24)) == pytest.approx(60)
    clock.sleep_until(T0)
    clock.sleep_until(T0 + pd.Timedelta(minutes=2))  # 2 min of plan = 83 ms
    assert clock.now() >= T0 + pd.Timedelta(minutes=2)
    assert clock.now() < T0 + pd.Timedelta(minutes=20)


def test_an_empty_plan_reports_every_job_late_with_a_reason(local_ray):
    jobs = pd.DataFrame([job_row("orphan", 100, 100)])
    empty = pd.DataFrame(columns=["job_id", "site", "time", "gpus"])
    report = Dispatcher(empty, jobs, sites_table(), 15, InstantClock(), settings=FAST).run()
    assert report.statuses == {"orphan": "late"}
    assert "the plan has no work for this job" in report.jobs["reason"].iloc[0]


def test_naive_job_times_are_refused():
    jobs = pd.DataFrame([{**job_row("naive", 1, 1), "release": pd.Timestamp("2026-11-28 16:00")}])
    with pytest.raises(ValueError, match=r"'naive' release .* has no time zone"):
        Dispatcher(
            pd.DataFrame(plan_rows("naive", "shantou", range(1), 1)),
            jobs,
            sites_table(),
            15,
            InstantClock(),
        )
