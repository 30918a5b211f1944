"""The jobs table: generation from workload classes, CSV reading, row-and-field errors."""

from __future__ import annotations

import pandas as pd
import pytest
from scheduler_testkit import START

from scheduler.config import JobClass, Workload
from scheduler.contracts import UserError
from scheduler.horizon import Horizon
from scheduler.jobs import JobError, generate_jobs, read_jobs, validate_jobs, work_units


def test_generated_jobs_are_deterministic_valid_and_slot_aligned(config):
    horizon = Horizon(START, 15, 96)
    names = list(config.sites)
    a = generate_jobs(config.workload, START, 7, names)
    b = generate_jobs(config.workload, START, 7, names)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(generate_jobs(config.workload, START, 8, names))
    assert len(a) == sum(c.jobs for c in config.workload.classes.values())
    validate_jobs(a, horizon, names)
    for column in ("release", "deadline"):
        assert ((a[column] - START) % pd.Timedelta(minutes=15) == pd.Timedelta(0)).all()


def test_generation_raises_max_gpus_to_fit_the_window():
    tight = JobClass(
        jobs=3, gpu_hours=(100, 100), max_gpus=(1, 1), window_hours=(1, 1), tokens_per_gpu_hour=1
    )
    jobs = generate_jobs(Workload(classes={"tight": tight}), START, 1, ["a"])
    # 100 GPU-h in one hour of four 15-minute slots needs 100 GPUs at once
    assert (jobs["max_gpus"] == 100).all()
    assert (work_units(jobs["gpu_hours"].to_numpy(), 15) == 400).all()


def test_bad_rows_are_named_by_line_and_field(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text(
        "job_id,gpu_hours,max_gpus,release,deadline,sites,preemptible,tokens\n"
        "ok,4,2,2026-06-01T00:00Z,2026-06-01T04:00Z,a,true,10\n"
        "backwards,4,2,2026-06-01T04:00Z,2026-06-01T02:00Z,,true,10\n"
        "nowhere,4,2,2026-06-01T00:00Z,2026-06-01T04:00Z,a;zz,true,10\n"
        "too-big,40,2,2026-06-01T00:00Z,2026-06-01T04:00Z,,true,10\n"
        "fine,1,1,2026-06-01T00:00Z,2026-06-01T04:00Z,,false,1\n"
        "early,1,1,2026-05-31T23:00Z,2026-06-01T04:00Z,,true,1\n"
    )
    jobs = read_jobs(path)
    with pytest.raises(JobError) as error:
        validate_jobs(jobs, Horizon(START, 60, 24), ["a", "b"], source=f"{path} line", first_row=2)
    text = str(error.value)
    assert "line 3 (job_id 'backwards'): deadline" in text
    assert "line 4 (job_id 'nowhere'): sites: unknown site(s) 'zz'; known sites: a, b" in text
    assert "line 5 (job_id 'too-big'): gpu_hours: 40 GPU-h do not fit the window" in text
    assert "line 7 (job_id 'early'): release" in text and "before the horizon start" in text
    assert "line 2 " not in text


def test_unreadable_cells_are_named(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text(
        "job_id,gpu_hours,max_gpus,release,deadline,sites,preemptible,tokens\n"
        "x,lots,2.5,yesterday,2026-06-01T04:00Z,,maybe,1\n"
    )
    with pytest.raises(UserError) as error:
        read_jobs(path)
    text = str(error.value)
    for field in ("gpu_hours", "max_gpus", "release", "preemptible"):
        assert f"line 2 (job_id 'x'): {field}:" in text
    assert "'yesterday' is not an ISO 8601 date-time" in text


def test_repeated_ids_and_naive_times_are_refused_when_read(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text(
        "job_id,gpu_hours,max_gpus,release,deadline,sites,preemptible,tokens\n"
        "ok,4,2,2026-06-01T00:00Z,2026-06-01T04:00Z,a,true,10\n"
        "ok,1,1,2026-06-01T00:00,2026-06-01T04:00Z,,false,1\n"
    )
    with pytest.raises(UserError) as error:
        read_jobs(path)
    text = str(error.value)
    assert "line 3 (job_id 'ok'): release: '2026-06-01T00:00' has no UTC offset" in text
    path.write_text(path.read_text().replace("2026-06-01T00:00,", "2026-06-01T00:00Z,"))
    with pytest.raises(UserError, match=r"line 3 \(job_id 'ok'\): job_id: repeats line 2"):
        read_jobs(path)
