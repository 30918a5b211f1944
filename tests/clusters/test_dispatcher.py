"""The settlement engine on the embedded Ray: a day runs to completion on real tasks, task
failures are retried then fail their job. (Caps and deferral are the engine's and are tested
without Ray in tests/scheduler/test_settlement.py.)"""

from __future__ import annotations

import pandas as pd
import pytest
from clusters_testkit import (
    SITES_GPUS,
    day_problem,
    job_row,
    plan_rows,
    raises_for_bad,
    raises_once,
    run_on_ray,
    slot,
)

from clusters.runner import RayRunner
from scheduler.clock import CompressedClock, InstantClock
from scheduler.contracts.plandir import write_run_report


@pytest.fixture
def small_night():
    """Two jobs over three slots at both sites; the plan covers all their work. Green covers
    less than the planned load (qingyang draws 2.88 MW), so nothing runs early (step 4b)."""
    jobs = [job_row("a", 1500, 4000), job_row("b", 750, 2000, "shantou")]
    plan = pd.DataFrame(
        plan_rows("a", "qingyang", range(3), 1000)
        + plan_rows("a", "shantou", range(3), 1000)
        + plan_rows("b", "shantou", range(3), 1000)
    )
    return day_problem(jobs, {"qingyang": 2.5, "shantou": 2.0}), plan


@pytest.mark.parametrize("clock", [InstantClock(), CompressedClock(speedup=9000)])
def test_small_plan_runs_to_completion_and_totals_match(local_ray, small_night, clock, tmp_path):
    problem, plan = small_night
    report = run_on_ray(problem, plan, clock=clock)

    assert report.statuses == {"a": "done", "b": "done"}
    planned, actual = report.totals["planned"], report.totals["actual"]
    assert actual["gpu_hours"] == pytest.approx(planned["gpu_hours"]) == 2250
    assert actual["tokens"] == pytest.approx(planned["tokens"]) == 2250 * 5e6
    assert actual["tokens_real"] == pytest.approx(2250 * 5e6 / 1e8, abs=9)  # ceil per chunk
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
    assert q0["green_used_mw"] == pytest.approx(2.5)
    assert q0["grid_mw"] == pytest.approx(q0["load_mw"] - q0["green_used_mw"])

    write_run_report(tmp_path, report)
    assert len(pd.read_csv(tmp_path / "run.csv")) == 2 * 24
    assert len(pd.read_csv(tmp_path / "run_jobs.csv")) == 2


def test_a_task_that_raises_is_retried_then_its_job_fails(local_ray):
    jobs = [job_row("bad", 500, 2000), job_row("good", 500, 2000)]
    plan = pd.DataFrame(
        plan_rows("bad", "qingyang", range(2), 1000) + plan_rows("good", "qingyang", range(2), 1000)
    )
    report = run_on_ray(day_problem(jobs, {"qingyang": 0.0, "shantou": 0.0}), plan,
                        max_retries=2, work=raises_for_bad)  # fmt: skip
    assert report.statuses == {"bad": "failed", "good": "done"}
    bad = report.chunks[report.chunks["job_id"] == "bad"]
    assert list(bad["attempt"]) == [0, 1, 2]  # then no more slots for a failed job
    reason = report.jobs.set_index("job_id").loc["bad", "reason"]
    assert "failed after 3 attempts" in reason and "model weights for bad are corrupt" in reason


def test_a_task_that_raises_once_succeeds_on_retry(local_ray, tmp_path):
    job_id = str(tmp_path / "flaky-job")
    plan = pd.DataFrame(plan_rows(job_id, "shantou", range(1), 1000))
    problem = day_problem([job_row(job_id, 250, 1000)], {"qingyang": 0.0, "shantou": 0.0})
    report = run_on_ray(problem, plan, work=raises_once)
    assert report.statuses == {job_id: "done"}
    assert list(report.chunks["outcome"]) == ["error", "ok"]
    assert list(report.events["kind"]) == ["retry"]


def test_compressed_clock_runs_a_day_in_a_minute_at_1440():
    t0 = slot(0)
    clock = CompressedClock(speedup=1440)
    assert clock.real_seconds(pd.Timedelta(hours=24)) == pytest.approx(60)
    clock.sleep_until(t0)
    clock.sleep_until(t0 + pd.Timedelta(minutes=2))  # 2 min of plan = 83 ms
    assert clock.now() >= t0 + pd.Timedelta(minutes=2)
    assert clock.now() < t0 + pd.Timedelta(minutes=20)


def test_warming_up_runs_a_slots_worth_of_tasks_at_once_on_several_workers(local_ray):
    """The embedded Ray has 2 CPUs and each task a quarter of one: up to 8 tasks at once.
    Warming up holds that many tasks at once, so they spread over several workers (8 on a
    fresh cluster; fewer here where earlier tests' workers are reused); the demo's first slots
    otherwise waited for workers to start and ran more than a slot late at 720x."""
    runner = RayRunner(SITES_GPUS)
    assert runner.settings.num_cpus == 0.25
    assert 2 <= runner.warm_up() <= 8
