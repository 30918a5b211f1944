"""The operator's night: plan, dispatch on a real local Ray, report; re-planning; the lock;
the plan directory's manifest; a dispatched day settles exactly as its replay."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from filelock import FileLock

from scheduler.config import DEFAULT_CONFIG_PATH, load_config
from scheduler.contracts.plandir import FORMAT_VERSION, read_plan_dir, write_run_report
from scheduler.drivers.nightly import plan_dir_problem
from scheduler.policies import get_policy
from scheduler.replan import RunState, policy_replan
from scheduler.settlement import Settlement
from tests.conftest import greensched

DAY = "2026-03-02"


@pytest.fixture(scope="module")
def small_config_path(tmp_path_factory) -> Path:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    for cls in data["workload"]["classes"].values():
        cls["jobs"] = max(1, cls["jobs"] // 10)
    path = tmp_path_factory.mktemp("config") / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def plan_dir(small_config_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plan")
    result = greensched(
        "plan", "--config", str(small_config_path), "--date", DAY, "--out", str(out), cwd=out
    )
    assert result.returncode == 0, result.stderr
    return out


def test_replanner_moves_work_to_the_sites_left(plan_dir, small_config_path):
    config = load_config(small_config_path)
    problem, _ = plan_dir_problem(plan_dir, config)
    replan = policy_replan(problem, get_policy("optimizer", config.solver))
    jobs = problem.jobs.set_index("job_id")
    remaining = {job: float(row.gpu_hours) / 2 for job, row in jobs.iterrows()}
    noon = problem.horizon.start + pd.Timedelta(hours=12)
    plan = replan(RunState(noon, remaining, live_gpus={"qingyang": 16000.0}))
    assert plan is not None
    assert not plan.empty
    assert set(plan["site"]) == {"qingyang"}
    assert (pd.to_datetime(plan["time"], utc=True) >= noon).all()
    shantou_only = set(jobs.index[jobs["sites"] == "shantou"])
    assert shantou_only and not (set(plan["job_id"]) & shantou_only)
    done = plan.groupby("job_id")["gpus"].sum() / 4  # GPU-slots of 15 min -> GPU-hours
    assert (done <= pd.Series(remaining).reindex(done.index) + 0.25).all()


def test_the_plan_directory_records_every_site_parameter_the_plan_used(plan_dir, small_config_path):
    config = load_config(small_config_path)
    sites = read_plan_dir(plan_dir).sites.set_index("site")
    region = config.workload.user_region
    for name, site in config.sites.items():
        row = sites.loc[name]
        assert row["gpus"] == site.gpus and row["base_load_mw"] == site.base_load_mw
        assert row["ramp_up_mw_per_min"] == site.ramp_up_mw_per_min
        assert row["ramp_down_mw_per_min"] == site.ramp_down_mw_per_min
        assert row["user_latency_ms"] == site.latency_ms[region]
        assert row["price_per_mwh"] == pytest.approx(
            site.price_per_mwh if isinstance(site.price_per_mwh, float) else
            sum(site.price_per_mwh) / 24
        )  # fmt: skip


def test_the_plan_directory_has_a_manifest(plan_dir):
    manifest = json.loads((plan_dir / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["slot_minutes"] == 15 and manifest["timezone"] == "Asia/Shanghai"
    assert manifest["sites"] == ["qingyang", "shantou"]
    assert manifest["day_start"] == "2026-03-01T16:00:00+00:00"
    assert manifest["day_end"] == "2026-03-02T16:00:00+00:00"
    assert manifest["policy"] == "optimizer" and manifest["compared"] == ["fifo", "greedy"]
    assert len(manifest["config_sha256"]) == 64
    tables = read_plan_dir(plan_dir)
    assert tables.manifest.n_slots == 96 and len(tables.plans) == 3


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda data: data["forecast"].update(slot_minutes=60), "slot length 15 min in the plan"),
        (lambda data: data["sites"]["shantou"].update(gpus=4000), "shantou.gpus 8000 in the plan"),
        (lambda data: data["sites"].pop("shantou"), "sites qingyang, shantou in the plan"),
        (
            lambda data: data["sites"]["qingyang"].update(ramp_up_mw_per_min=2.0),
            "qingyang.ramp_up_mw_per_min 1 in the plan, 2 in the config",
        ),
        (
            lambda data: data["sites"]["shantou"].update(ramp_down_mw_per_min=None),
            "shantou.ramp_down_mw_per_min 1 in the plan, none in the config",
        ),
        (
            lambda data: data["sites"]["qingyang"].update(
                storage={"b": {"p_nom": 5.0, "max_hours": 2.0}}
            ),
            "storage unit qingyang.b only in the config",
        ),
        (
            lambda data: data["sites"]["shantou"].update(
                green_purchase={"mwh_per_day": 24.0, "price_per_mwh": 300.0}
            ),
            "shantou green purchase at none in the plan, 300 in the config",
        ),
    ],
)
def test_dispatch_refuses_a_plan_made_under_another_config(
    plan_dir, small_config_path, tmp_path, change, named
):
    data = yaml.safe_load(small_config_path.read_text())
    change(data)
    for cls in data["workload"]["classes"].values():
        cls["sites"] = [s for s in cls.get("sites", []) if s in data["sites"]]
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(data))
    result = greensched("dispatch", str(plan_dir), "--config", str(other), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr and "Traceback" not in result.stderr
    assert not (plan_dir / "run.csv").exists() or "run_report.json" not in result.stderr


@pytest.mark.slow
def test_a_dispatched_day_settles_as_its_replay(plan_dir, small_config_path, tmp_path):
    """One engine: the day dispatched on Ray and the same day replayed agree within 0.1 %."""
    result = greensched("dispatch", str(plan_dir), "--config", str(small_config_path),
                        "--speedup", "100000", cwd=plan_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "planned vs actual" in result.stdout
    dispatched = json.loads((plan_dir / "run_report.json").read_text())["totals"]["actual"]
    replay = greensched("replay", "--config", str(small_config_path), "--from", DAY, "--to", DAY,
                        "--policies", "optimizer", "--seed", "1", "--out", "replay",
                        cwd=tmp_path)  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    day = pd.read_csv(tmp_path / "replay" / "daily.csv").set_index("policy").loc["optimizer"]
    assert dispatched["green_share"] == pytest.approx(day["green_share"], rel=1e-3)
    assert dispatched["grid_mwh"] == pytest.approx(day["grid_mwh"], rel=1e-3)
    # the planned side is what the plan expected: green from the forecast it was made on
    run = pd.read_csv(plan_dir / "run.csv", parse_dates=["time"])
    forecast = pd.read_csv(plan_dir / "supply.csv", parse_dates=["time"])
    joined = run.merge(forecast[["time", "site", "green_mw"]], on=["time", "site"],
                       suffixes=("", "_forecast"))  # fmt: skip
    assert len(joined) == len(run) == 2 * 96
    assert joined["planned_green_mw"].to_numpy() == pytest.approx(joined["green_mw_forecast"])
    outcomes = pd.read_csv(plan_dir / "run_jobs.csv", keep_default_na=False, dtype=str)
    assert set(outcomes["status"]) <= {"done", "late"}
    late = outcomes.loc[outcomes["status"] == "late", "reason"]
    assert (late.str.len() > 0).all()


def test_nightly_refuses_to_overlap(tmp_path, small_config_path):
    """The lock is the parent folder's (one nightly per folder of nights); a refused run
    leaves no folder for its day."""
    out = tmp_path / "nightly"
    out.mkdir()
    with FileLock(str(out / ".greensched-nightly.lock")):
        result = greensched("nightly", "--config", str(small_config_path), "--date", DAY,
                            "--out", str(out), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 75
    assert "another nightly run" in result.stderr
    assert not (out / DAY).exists()


@pytest.mark.slow
@pytest.mark.parametrize("after_s", [0.0, 8.0], ids=["while Ray starts", "while it waits"])
def test_nightly_waits_for_its_day_says_so_and_stops_cleanly_on_sigterm(
    tmp_path, small_config_path, after_s
):
    """On the real clock tomorrow's night is planned at once and waits for its day; SIGTERM
    then ends it with one line and exit 143, not Ray's stack frames and an abort, nor a death
    by the signal while Ray is still starting."""
    import signal
    import subprocess
    import sys
    import time

    out, log = tmp_path / "nights", tmp_path / "nightly.log"
    command = [sys.executable, "-m", "scheduler.drivers", "nightly", "--config",
               str(small_config_path), "--out", str(out)]  # fmt: skip
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while "its first slot is dispatched then" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        time.sleep(after_s)  # 8 s: Ray up and the walk waiting for the first slot
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert "stopped by SIGTERM before the day ended" in text
    assert "SIGTERM received" not in text and "Traceback" not in text
    (night,) = [p for p in out.iterdir() if p.is_dir()]  # OUT/DATE, planned, not run
    assert (night / "plan.csv").is_file() and not (night / "run.csv").exists()


def test_dispatch_of_a_non_plan_directory_is_a_clear_error(tmp_path):
    result = greensched("dispatch", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "not a plan directory" in result.stderr


@pytest.mark.slow
def test_dispatch_settles_on_actual_weather_and_keeps_the_import_limit(
    plan_dir, small_config_path, tmp_path
):
    """A calm, dark day at shantou (weather file made here): no green, grid within its limit."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(plan_dir, run_dir)
    start = pd.Timestamp(DAY, tz="Asia/Shanghai").tz_convert("UTC")
    times = pd.date_range(start, periods=24, freq="h")
    calm = pd.DataFrame(
        {"time": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "ghi": 0.0, "dni": 0.0, "dhi": 0.0,
         "temp_air": 20.0, "wind_speed": 0.0, "pressure": 101325.0}
    )  # fmt: skip
    weather = tmp_path / "calm.csv"
    weather.write_text("# wind_height_m: 10\n" + calm.to_csv(index=False))
    result = greensched("dispatch", str(run_dir), "--config", str(small_config_path),
                        "--actual-weather", f"shantou={weather}", "--speedup", "100000",
                        cwd=run_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    run = pd.read_csv(run_dir / "run.csv")
    shantou = run[run["site"] == "shantou"]
    assert (shantou["green_mw"] == 0).all()
    limit = load_config(small_config_path).sites["shantou"].grid_import_limit_mw
    assert (shantou["grid_mw"] <= limit + 1e-6).all()
    qingyang = run[run["site"] == "qingyang"]
    assert qingyang["green_mw"].sum() > 0  # the other site keeps the plan directory's actuals


def test_the_next_day_ramps_from_the_load_the_day_before_ended_on(small_config_path, tmp_path):
    """``plan --after DIR``: the day's first slot steps from DIR's last slot within the ramp
    limit, in the plan and once dispatched (the manifest carries the load before the day)."""
    data = yaml.safe_load(small_config_path.read_text())
    for site in data["sites"].values():  # 0.2 MW/min: 3 MW per 15-minute slot
        site.update(ramp_up_mw_per_min=0.2, ramp_down_mw_per_min=0.2)
    config_path = tmp_path / "ramped.yaml"
    config_path.write_text(yaml.safe_dump(data))
    config = load_config(config_path)
    before = tmp_path / "day-before"
    made = greensched("plan", "--config", str(config_path), "--date", "2026-03-01",
                      "--out", str(before), cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    problem, plan = plan_dir_problem(before, config)
    report = Settlement(problem, plan).run()
    # the night before ended busy at qingyang: 12 MW, far above what the day would start on
    # (the next day ramps from the GPUs that ran then)
    qingyang = config.sites["qingyang"]
    gpus = round((12.0 - qingyang.base_load_mw) / qingyang.mw_per_gpu)
    busy_mw = qingyang.base_load_mw + gpus * qingyang.mw_per_gpu
    last = report.site_slots["time"] == report.site_slots["time"].max()
    report.site_slots.loc[last & (report.site_slots["site"] == "qingyang"), "actual_gpus"] = gpus
    write_run_report(before, report)

    jobs = tmp_path / "jobs.csv"  # work from the first slot on, so the load can stay up
    jobs.write_text(
        "job_id,gpu_hours,max_gpus,release,deadline,sites,preemptible,tokens\n"
        "export,60000,12000,2026-03-01T16:00Z,2026-03-02T16:00Z,qingyang,true,1e9\n"
    )
    result = greensched("plan", "--config", str(config_path), "--date", DAY, "--after",
                        str(before), "--jobs", str(jobs), "--out", "day", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"qingyang {busy_mw:.2f} MW" in result.stdout and abs(busy_mw - 12.0) < 0.01
    manifest = read_plan_dir(tmp_path / "day").manifest
    assert manifest.initial_load_mw is not None
    assert manifest.initial_load_mw["qingyang"] == pytest.approx(busy_mw)
    day, day_plan = plan_dir_problem(tmp_path / "day", config)
    assert day.initial_load_mw is not None
    first = day.initial_load_mw[day.site_names.index("qingyang")]
    planned = pd.read_csv(tmp_path / "day" / "site_load.csv")
    planned_first = planned[planned["site"] == "qingyang"]["load_mw"].iloc[0]
    assert abs(first - planned_first) <= 3.0 + 1e-6  # the plan ramps from 12 MW
    settled = Settlement(day, day_plan).run().site_slots
    settled_first = settled[settled["site"] == "qingyang"]["load_mw"].iloc[0]
    assert abs(first - settled_first) <= 3.0 + 1e-6  # and so does what runs


def test_after_a_directory_that_never_ran_is_one_clear_error(plan_dir, small_config_path):
    result = greensched("plan", "--config", str(small_config_path), "--date", DAY,
                        "--after", str(plan_dir.parent), "--out", "p", cwd=plan_dir)  # fmt: skip
    assert result.returncode == 2
    assert "run.csv: not found" in result.stderr and "Traceback" not in result.stderr
