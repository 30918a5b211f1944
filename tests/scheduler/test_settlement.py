"""The settlement engine without Ray: caps hold on actual supply, deferral order, carried work,
reasons for every job that is not done on time. Hand-built sites: 1 kW per GPU, PUE 1, no base
load, so 1,000 GPUs draw 1 MW."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scheduler_testkit import START, job, make_problem, site

from scheduler.problem import IMPORT_CAPACITY_LIMIT, LOAD_LIMIT, LoadCap
from scheduler.replan import RunState
from scheduler.settlement import Settlement, settle

HOUR = pd.Timedelta(hours=1)


def plan_rows(job_id: str, site_name: str, slots: range, gpus: int) -> list[dict]:
    return [
        {"job_id": job_id, "site": site_name, "time": START + i * HOUR, "gpus": gpus} for i in slots
    ]


def test_a_plan_that_fits_runs_as_planned():
    problem = make_problem(
        [site("a")], [[0.05] * 4], [job("j", 120, 40, 0, 4)], actual_green_mw=[[0.05] * 4]
    )
    plan = pd.DataFrame(plan_rows("j", "a", range(3), 40))
    run = settle(problem, plan)
    assert run.statuses == {"j": "done"}
    assert run.totals["actual"]["gpu_hours"] == pytest.approx(120)
    assert run.totals["actual"]["grid_mwh"] == pytest.approx(run.totals["planned"]["grid_mwh"])
    assert run.events.empty
    load = run.site_slots.set_index("time")["load_mw"]
    assert list(load) == pytest.approx([0.04, 0.04, 0.04, 0.0])  # 40 GPUs x 1 kW


def test_short_supply_under_a_cap_defers_the_job_with_most_slack_and_keeps_the_cap():
    """The plan assumed 0.1 MW of green; only 0.02 MW comes in the first two hours, and an
    import cap of 0.03 MW leaves room for 50 GPUs there."""
    forecast = np.full((1, 6), 0.1)
    actual = forecast.copy()
    actual[0, :2] = 0.02
    cap = LoadCap("a", START, START + 6 * HOUR, IMPORT_CAPACITY_LIMIT, 0.03)
    jobs = [job("flex", 80, 40, 0, 6), job("tight", 80, 40, 0, 2)]
    problem = make_problem([site("a")], forecast, jobs, caps=[cap], actual_green_mw=actual)
    plan = pd.DataFrame(
        plan_rows("flex", "a", range(2), 40) + plan_rows("tight", "a", range(2), 40)
    )
    run = settle(problem, plan)

    slots = run.site_slots
    assert (slots["grid_mw"] <= slots["grid_cap_mw"] + 1e-9).all()
    assert run.totals["actual"]["cap_violations"] == 0
    assert list(slots["actual_gpus"][:2]) == [50, 50]  # (0.03 cap + 0.02 green) / 1 kW
    deferred = run.events[run.events["kind"] == "deferred"]
    assert set(deferred["job_id"]) == {"flex"}  # tight has no slack
    assert run.statuses == {"flex": "done", "tight": "done"}
    executed = run.executed
    assert executed.loc[executed["job_id"] == "flex", "time"].max() > START + HOUR  # carried
    assert run.totals["actual"]["cut_gpu_hours"] == pytest.approx(60)


def test_carried_work_stays_in_its_window_and_at_its_allowed_sites():
    forecast = np.full((2, 4), 0.1)
    actual = forecast.copy()
    actual[0, 0] = 0.0  # site a has no green in the first slot; a load cap keeps it at 10 GPUs
    cap = LoadCap("a", START, START + HOUR, LOAD_LIMIT, 0.01)
    jobs = [job("only-a", 80, 40, 0, 2, sites=("a",)), job("late-window", 40, 40, 1, 3)]
    problem = make_problem([site("a"), site("b")], forecast, jobs, caps=[cap],
                           actual_green_mw=actual)  # fmt: skip
    plan = pd.DataFrame(plan_rows("only-a", "a", range(2), 40) + plan_rows("late-window", "b",
                        range(1, 2), 40))  # fmt: skip
    run = settle(problem, plan)
    executed = run.executed
    only_a = executed[executed["job_id"] == "only-a"]
    assert set(only_a["site"]) == {"a"}
    assert only_a["time"].max() < START + 2 * HOUR  # never after the deadline
    assert run.statuses["only-a"] == "late"
    reason = run.jobs.set_index("job_id").loc["only-a", "reason"]
    assert "unfinished: 50 of 80 GPU-h done" in reason
    assert run.statuses["late-window"] == "done"


def test_non_preemptible_work_over_a_cap_is_stopped_then_resumed_with_a_reason():
    problem = make_problem(
        [site("a")],
        [[0.0] * 3],
        [job("fixed", 40, 40, 0, 3, preemptible=False)],
        caps=[LoadCap("a", START, START + HOUR, LOAD_LIMIT, 0.01)],
        actual_green_mw=[[0.0] * 3],
    )
    run = settle(problem, pd.DataFrame(plan_rows("fixed", "a", range(1), 40)))
    assert run.totals["actual"]["cap_violations"] == 0  # a cap is hard
    stopped = run.events[run.events["kind"] == "stopped"]
    assert len(stopped) == 1 and "non-preemptible" in stopped["detail"].iloc[0]
    outcome = run.jobs.set_index("job_id").loc["fixed"]
    assert outcome["gpu_hours_done"] == pytest.approx(40)  # 10 in slot 0, 30 resumed in slot 1
    assert outcome["status"] == "done" and "interrupted" in outcome["reason"]


def test_an_empty_plan_reports_every_job_late_with_a_reason():
    problem = make_problem([site("a")], [[0.0] * 2], [job("orphan", 10, 10, 0, 2)])
    run = settle(problem, pd.DataFrame(columns=["job_id", "site", "time", "gpus"]))
    assert run.statuses == {"orphan": "late"}
    assert "the plan has no work for this job" in run.jobs["reason"].iloc[0]
    assert len(run.site_slots) == 2 and (run.site_slots["load_mw"] == 0).all()


class LosesSiteB:
    """A runner whose site ``b`` vanishes after the first slot; every chunk completes."""

    def __init__(self) -> None:
        self.calls = 0

    def capacity_gpus(self) -> dict[str, float]:
        self.calls += 1
        return {"a": 100.0, "b": 100.0 if self.calls <= 2 else 0.0}

    def run_slot(self, chunks, timeout_s):
        from scheduler.contracts.chunks import ChunkOutcome, ChunkStatus

        return [ChunkOutcome(c, ChunkStatus.OK) for c in chunks]

    def attempts(self) -> pd.DataFrame:
        return pd.DataFrame()


def test_a_lost_site_hands_the_work_left_to_the_replanner():
    green = np.full((2, 4), 0.1)
    problem = make_problem(
        [site("a"), site("b")], green, [job("j", 160, 40, 0, 4)], actual_green_mw=green
    )
    asked = []

    def replan(state):
        asked.append(state)
        return pd.DataFrame(plan_rows("j", "a", range(1, 4), 40))

    plan = pd.DataFrame(plan_rows("j", "b", range(4), 40))
    run = Settlement(problem, plan, runner=LosesSiteB(), replan=replan).run()
    assert asked == [RunState(START + HOUR, {"j": 120.0}, {"a": 0.0, "b": 0.04}, {"a": 100.0})]
    assert run.statuses == {"j": "done"}
    assert set(run.events["kind"]) == {"site_lost", "replanned"}
    ran = run.executed.groupby("site")["gpus"].sum().to_dict()
    assert ran == {"b": 40, "a": 120}


def test_a_walk_resumed_from_its_stored_state_ends_as_if_never_stopped():
    """The state after slot 2, through JSON, into a fresh engine: the same end as one walk."""
    import json

    forecast = np.full((2, 6), 0.05)
    actual = forecast.copy()
    actual[0, 1:3] = 0.0
    cap = LoadCap("a", START + HOUR, START + 3 * HOUR, LOAD_LIMIT, 0.02)
    jobs = [job("x", 120, 40, 0, 6), job("y", 60, 30, 1, 5, preemptible=False)]
    problem = make_problem([site("a"), site("b")], forecast, jobs, caps=[cap],
                           actual_green_mw=actual)  # fmt: skip
    plan = pd.DataFrame(plan_rows("x", "a", range(3), 40) + plan_rows("y", "a", range(1, 3), 30))
    whole = settle(problem, plan)

    first = Settlement(problem, plan)
    for t in range(3):
        first.step(t)
    stored = json.loads(json.dumps(first.state()))
    second = Settlement(problem, plan)
    second.restore(stored)
    for t in range(3, 6):
        if second.work_left(t):
            second.step(t)
    resumed = second.report()
    pd.testing.assert_frame_equal(resumed.site_slots, whole.site_slots)
    pd.testing.assert_frame_equal(resumed.jobs, whole.jobs)
    assert list(resumed.events["kind"]) == list(whole.events["kind"])


def test_a_stored_walk_of_schema_1_restores_without_caps_and_a_newer_one_is_refused():
    """States saved before the schema had a version are version 1, as are those saved before
    caps were recorded (version 2): the slots they ran name no caps, the slots run after
    restoring do. A newer schema is not guessed."""
    cap = LoadCap("a", START, START + 4 * HOUR, LOAD_LIMIT, 0.03, event_id="dr-1")
    problem = make_problem([site("a")], np.full((1, 4), 0.05), [job("j", 120, 40, 0, 4)],
                           caps=[cap])  # fmt: skip
    plan = pd.DataFrame(plan_rows("j", "a", range(3), 40))
    first = Settlement(problem, plan)
    first.step(0)
    stored = first.state()
    assert stored.pop("schema_version") == 2
    assert stored.pop("caps") == {"0": [[0, "dr-1", "LOAD_LIMIT", 0.03]]}  # what version 2 adds
    old = Settlement(problem, plan)
    old.restore(stored)
    for t in range(1, 4):
        old.step(t)
    report = old.report()
    assert report.statuses == {"j": "done"}
    slots = report.site_slots
    assert list(slots["actual_gpus"]) == [30, 30, 30, 30]  # the cap kept before and after
    assert list(slots["caps_in_force"]) == ["", "dr-1", "dr-1", "dr-1"]
    assert list(slots["caps_binding"]) == ["", "dr-1", "dr-1", "dr-1"]
    with pytest.raises(ValueError, match="schema 3; this greensched reads up to 2"):
        Settlement(problem, plan).restore({**first.state(), "schema_version": 3})


def test_run_csv_names_the_caps_in_force_and_those_that_bound(tmp_path):
    """Site a (100 GPUs of 1 kW, no green) runs a job that would take every GPU; site b has no
    cap. Import cap "grid-80" (80 GPUs) in hours 0-2, load cap "load-30" (30 GPUs) in hours
    1-3, a load cap without an id (90 GPUs) in hour 3. Hour 0: grid-80 binds; hours 1-2:
    both in force, load-30 binds (grid draw 0.03 MW, 50 GPUs under grid-80); hour 3: load-30
    binds, the 90 GPU cap is slack."""
    from scheduler.contracts import RUN, read_table
    from scheduler.contracts.plandir import write_run_report

    caps = [
        LoadCap("a", START, START + 3 * HOUR, IMPORT_CAPACITY_LIMIT, 0.08, "grid-80"),
        LoadCap("a", START + HOUR, START + 4 * HOUR, LOAD_LIMIT, 0.03, "load-30"),
        LoadCap("a", START + 3 * HOUR, START + 4 * HOUR, LOAD_LIMIT, 0.09),
    ]
    problem = make_problem([site("a"), site("b")], np.zeros((2, 4)),
                           [job("j", 400, 100, 0, 4, sites=("a",))], caps=caps)  # fmt: skip
    write_run_report(tmp_path, settle(problem, pd.DataFrame(plan_rows("j", "a", range(4), 100))))

    run = read_table(RUN, tmp_path / "run.csv")
    a, b = run[run["site"] == "a"], run[run["site"] == "b"]
    assert list(a["actual_gpus"]) == [80, 30, 30, 30]
    assert list(a["caps_in_force"]) == [
        "grid-80",
        "grid-80;load-30",
        "grid-80;load-30",
        "LOAD_LIMIT:2026-06-01T03:00:00Z/2026-06-01T04:00:00Z;load-30",
    ]
    assert list(a["caps_binding"]) == ["grid-80", "load-30", "load-30", "load-30"]
    assert (b["caps_in_force"] == "").all() and (b["caps_binding"] == "").all()


def surplus_case(**job_kw) -> tuple:
    """Forecast: 40 GPUs of green in hours 0-1, none after. Actual: 80 GPUs' worth in hours
    0-1. The plan runs 40 GPUs in each of the four hours, so hours 2-3 are on grid power."""
    forecast = np.array([[0.04, 0.04, 0.0, 0.0]])
    actual = np.array([[0.08, 0.08, 0.0, 0.0]])
    problem = make_problem(
        [site("a")], forecast, [job("j", 160, 80, 0, 4, **job_kw)], actual_green_mw=actual
    )
    return problem, pd.DataFrame(plan_rows("j", "a", range(4), 40))


def test_green_above_the_forecast_runs_work_planned_later_on_grid_power():
    problem, plan = surplus_case()
    run = settle(problem, plan)
    load = run.site_slots.set_index("time")["load_mw"]
    assert list(load) == pytest.approx([0.08, 0.08, 0.0, 0.0])  # 80 GPUs x 1 kW, then none
    assert run.totals["actual"]["grid_mwh"] == pytest.approx(0.0)
    assert run.totals["planned"]["grid_mwh"] == pytest.approx(0.08)  # 2 h x 40 kW
    assert run.statuses == {"j": "done"}
    moved = run.events[run.events["kind"] == "surplus_green"]
    assert moved["gpus"].sum() == 80


@pytest.mark.parametrize(
    ("job_kw", "why"),
    [({"preemptible": False}, "a non-preemptible run stays one block"),
     ({"sites": ("b",)}, "the job may not run at site a")],
)  # fmt: skip
def test_surplus_green_moves_only_work_that_may_move(job_kw, why):
    forecast = np.array([[0.04, 0.04, 0.0, 0.0], [0.0] * 4])
    actual = np.array([[0.08, 0.08, 0.0, 0.0], [0.0] * 4])
    home = job_kw.get("sites", ("a",))[0]
    problem = make_problem([site("a"), site("b")], forecast, [job("j", 160, 80, 0, 4, **job_kw)],
                           actual_green_mw=actual)  # fmt: skip
    plan = pd.DataFrame(plan_rows("j", home, range(4), 40))
    run = settle(problem, plan)
    assert "surplus_green" not in set(run.events["kind"]), why
    assert list(run.executed.groupby("time")["gpus"].sum()) == [40] * 4


def test_surplus_green_keeps_caps_windows_and_work_planned_on_green():
    """A load cap leaves room for 60 GPUs in hour 0; hour 3's forecast green carries the 80
    GPUs planned there, so that work stays; work released at hour 1 moves only from hour 1."""
    forecast = np.array([[0.04, 0.04, 0.0, 0.08]])
    actual = np.array([[0.12, 0.12, 0.0, 0.08]])
    cap = LoadCap("a", START, START + HOUR, LOAD_LIMIT, 0.06)
    jobs = [job("j", 120, 80, 0, 4), job("green-later", 40, 40, 0, 4), job("late", 40, 40, 1, 4)]
    problem = make_problem([site("a")], forecast, jobs, caps=[cap], actual_green_mw=actual)
    plan = pd.DataFrame(
        plan_rows("j", "a", range(2), 20)
        + plan_rows("j", "a", range(2, 4), 40)
        + plan_rows("green-later", "a", range(3, 4), 40)
        + plan_rows("late", "a", range(2, 3), 40)
    )
    run = settle(problem, plan)
    executed = run.executed.set_index(["job_id", "time"])["gpus"]
    assert executed[("j", START)] == 60  # the cap's 60 GPUs, not the 120 green carries
    assert executed[("late", START + HOUR)] == 40  # not in hour 0, before its release
    assert executed[("j", START + 3 * HOUR)] == 40
    assert executed[("green-later", START + 3 * HOUR)] == 40
    assert run.totals["actual"]["cap_violations"] == 0
    assert run.totals["actual"]["grid_mwh"] == pytest.approx(0.0)
    assert run.statuses == {"j": "done", "green-later": "done", "late": "done"}


def test_each_re_plan_runs_from_the_slot_it_takes_over_at():
    """Three plans for one job at sites a, b and a: the walk and the plan table follow each
    from the slot it was handed in at; a re-plan from an earlier slot than the one before
    replaces that one whole."""
    green = np.full((2, 6), 0.1)
    problem = make_problem(
        [site("a"), site("b")], green, [job("j", 240, 40, 0, 6)], actual_green_mw=green
    )
    engine = Settlement(problem, pd.DataFrame(plan_rows("j", "a", range(6), 40)))
    engine.step(0)
    engine.replace_plan(pd.DataFrame(plan_rows("j", "b", range(1, 6), 40)), START + HOUR)
    engine.step(1)
    engine.step(2)
    engine.replace_plan(pd.DataFrame(plan_rows("j", "a", range(4, 6), 40)), START + 4 * HOUR)
    engine.replace_plan(pd.DataFrame(plan_rows("j", "a", range(3, 6), 40)), START + 3 * HOUR)
    for t in range(3, 6):
        engine.step(t)
    expected = ["a", "b", "b", "a", "a", "a"]
    assert engine.plan.sort_values("time")["site"].tolist() == expected
    executed = engine.report().executed.sort_values("time")
    assert executed["site"].tolist() == expected
    assert executed["gpus"].tolist() == [40] * 6
