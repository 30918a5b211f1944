"""What a settled run reports: per site and slot, per job, its totals and events.

:func:`run_report` turns a walk (:mod:`~scheduler.settlement.state`) into the run tables of
:mod:`scheduler.contracts` (``run.csv``, ``run_jobs.csv``) and the totals of
``run_report.json``; loads, green use, grid draw and energy come from the one scorer in
:mod:`scheduler.metrics` (:func:`~scheduler.metrics.site_load`,
:func:`~scheduler.metrics.energy_totals`), as every plan is scored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scheduler.caps import CAP_KINDS
from scheduler.contracts import CAP_LIST_SEPARATOR, PLAN, RUN_JOBS, CapType, JobStatus
from scheduler.contracts.plandir import RunReport
from scheduler.metrics import CAP_TOLERANCE_MW, energy_totals, site_load
from scheduler.problem import Problem
from scheduler.settlement.state import CapInForce, JobsState, WalkRecord
from scheduler.storage import StorageGuide

__all__ = ["EVENT_COLUMNS", "caps_recorded", "executed_plan", "run_report"]

EVENT_COLUMNS = ["time", "kind", "detail", "site", "job_id", "gpus"]


def executed_plan(problem: Problem, walk: WalkRecord) -> pd.DataFrame:
    """The work that completed, as a plan table."""
    parts = walk.executed or [(np.zeros(0, np.int64),) * 4]
    job, site, slot, gpus = (np.concatenate([p[i] for p in parts]) for i in range(4))
    return pd.DataFrame(
        {
            "job_id": problem.job_ids[job.astype(np.int64)],
            "site": np.asarray(problem.site_names, dtype=object)[site.astype(np.int64)],
            "time": problem.horizon.times[slot.astype(np.int64)],
            "gpus": gpus.astype(np.int64),
        },
        columns=PLAN.names,
    )


def caps_recorded(problem: Problem, t: int) -> list[CapInForce]:
    """The caps of ``problem`` in force in slot ``t``, as the walk records them."""
    return [(s, cap.label, str(cap.type), cap.value_mw) for s, cap in problem.caps_in_force(t)]


def _cap_columns(
    actual: Problem,
    walk: WalkRecord,
    dispatched: np.ndarray,
    grid_cap: np.ndarray,
    load_cap: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``caps_in_force`` and ``caps_binding`` of the run table, arrays ``[site, slot]`` of text.

    A slot that ran names the caps recorded then (none for a slot restored from a walk saved
    before they were recorded); a slot that did not, the caps of ``actual``. A cap binds when
    it is the tightest of its type at the site (``grid_cap`` or ``load_cap`` [MW], the grid
    import limit included) and leaves room for less than one more GPU at the GPUs
    ``dispatched`` on ``actual``'s green supply: what the engine's fit admits (see
    :meth:`~scheduler.problem.Problem.capacity_with`).
    """
    n_sites, n_slots = dispatched.shape
    in_force = np.full((n_sites, n_slots), "", dtype=object)
    binding = np.full((n_sites, n_slots), "", dtype=object)
    mpg = actual.mw_per_gpu[:, None]
    load = actual.base_load_mw[:, None] + dispatched * mpg
    one_more = 1.0 - 1e-9  # the fit's floor(room + 1e-9) admits a GPU from here
    tightest = {  # by type: the tightest cap [MW] and the GPUs more it leaves room for
        str(kind): (cap, (CAP_KINDS[kind].most_load_mw(cap, actual.green_mw) - load) / mpg)
        for kind, cap in ((CapType.IMPORT_CAPACITY_LIMIT, grid_cap), (CapType.LOAD_LIMIT, load_cap))
    }
    for t in range(n_slots):
        if t in walk.caps:
            caps = walk.caps[t]
        elif t in walk.capacity:  # ran before the walk recorded caps
            continue
        else:
            caps = caps_recorded(actual, t)
        for s in sorted({site for site, *_ in caps}):
            labels: set[str] = set()
            bound: set[str] = set()
            for _, label, kind, mw in (cap for cap in caps if cap[0] == s):
                labels.add(label)
                cap_mw, room_gpus = tightest[kind]
                if room_gpus[s, t] < one_more and mw <= cap_mw[s, t] + CAP_TOLERANCE_MW:
                    bound.add(label)
            in_force[s, t] = CAP_LIST_SEPARATOR.join(sorted(labels))
            binding[s, t] = CAP_LIST_SEPARATOR.join(sorted(bound))
    return in_force, binding


def _job_table(problem: Problem, jobs: JobsState) -> pd.DataFrame:
    """How each job ended (:data:`~scheduler.contracts.RUN_JOBS`); columns as arrays, words
    only for the jobs that need them (a replay reports every day)."""
    slot_h = problem.slot_hours
    required = problem.jobs["gpu_hours"].to_numpy(float)
    done = np.minimum(required, jobs.done * slot_h)
    deadline = problem.jobs["deadline"]
    ended = jobs.finished_slot >= 0
    finished = pd.Series(pd.NaT, index=deadline.index, dtype=deadline.dtype)
    finished.iloc[np.flatnonzero(ended)] = problem.horizon.times[
        jobs.finished_slot[ended]
    ] + pd.Timedelta(hours=slot_h)
    failed = np.array([f is not None for f in jobs.failed], dtype=bool)
    after = ended & (finished > deadline).to_numpy()
    status = np.where(failed, str(JobStatus.FAILED), str(JobStatus.DONE)).astype(object)
    status[~failed & (~ended | after)] = str(JobStatus.LATE)
    reason = ["; ".join(notes) for notes in jobs.notes]
    for j in np.flatnonzero(failed | ~ended | after).tolist():
        if failed[j]:
            why = jobs.failed[j]
        elif not ended[j]:
            why = (f"unfinished: {done[j]:.6g} of {required[j]:.6g} GPU-h done by the "
                   f"deadline {deadline.iat[j].isoformat()}")  # fmt: skip
        else:
            late_min = (finished.iat[j] - deadline.iat[j]) / pd.Timedelta(minutes=1)
            why = f"finished {late_min:.0f} min after the deadline"
        reason[j] = "; ".join(filter(None, [why, reason[j]]))
    tokens = problem.jobs["tokens"].to_numpy(float)
    return pd.DataFrame(
        {
            "job_id": list(problem.job_ids),
            "status": status.tolist(),
            "reason": reason,
            "sites": _site_lists(jobs.ran_site, problem.site_names),
            "slots": jobs.ran_slots.astype(np.int64),
            "gpu_hours_required": required,
            "gpu_hours_done": done,
            "tokens_accounted": jobs.done * slot_h * tokens / required,
            "tokens_real": jobs.tokens_real.astype(np.int64),
            "finished_at": finished.array,
            "deadline": deadline.array,
        },
        columns=RUN_JOBS.names,
    )


def run_report(
    problem: Problem,
    actual: Problem,
    plan_original: pd.DataFrame,
    jobs: JobsState,
    walk: WalkRecord,
    wall_s: float,
    chunks: pd.DataFrame,
    guides: tuple[StorageGuide | None, StorageGuide | None] = (None, None),
) -> RunReport:
    """The report of a walk over ``problem`` settled on ``actual`` (the same day on the supply
    it settled on): ``plan_original`` is the plan it started with (the planned side), ``chunks``
    the runner's task attempts, ``guides`` how the storage runs on the planned side and as
    walked (``None``: the storage rule)."""
    horizon, names = problem.horizon, problem.site_names
    executed = executed_plan(problem, walk)
    n_sites, n_slots = len(names), horizon.n_slots
    dispatched = np.zeros((n_sites, n_slots), dtype=np.int64)
    tasks = np.zeros((n_sites, n_slots), dtype=np.int64)
    failed = np.zeros((n_sites, n_slots), dtype=np.int64)
    for t, site, gpus in walk.dispatched:
        slot = np.full(len(site), t)
        np.add.at(dispatched, (site, slot), gpus)
        np.add.at(tasks, (site, slot), 1)
    for t, s in walk.failed_tasks:
        failed[s, t] += 1
    capacity = np.tile(problem.site_gpus.astype(float)[:, None], n_slots)
    grid_cap, load_cap = actual.grid_cap_mw.copy(), actual.load_cap_mw.copy()
    for t, live in walk.capacity.items():  # what was in force when each slot ran
        capacity[:, t] = live
        grid_cap[:, t], load_cap[:, t] = walk.grid_cap_mw[t], walk.load_cap_mw[t]
    caps_in_force, caps_binding = _cap_columns(actual, walk, dispatched, grid_cap, load_cap)
    soc_start = problem.soc_start_mwh
    planned_guide, walked_guide = guides
    done_load = site_load(executed, actual.supply, problem.sites, horizon, problem.caps,
                          soc_start, walked_guide, problem.jobs)  # fmt: skip
    planned_load = site_load(plan_original, problem.supply, problem.sites, horizon,
                             problem.caps, soc_start, planned_guide, problem.jobs)  # fmt: skip
    run = pd.DataFrame(
        {
            "time": done_load["time"],
            "site": done_load["site"],
            "planned_gpus": planned_load["gpus_busy"],
            "dispatched_gpus": dispatched.ravel(),
            "actual_gpus": done_load["gpus_busy"],
            "tasks": tasks.ravel(),
            "tasks_failed": failed.ravel(),
            "capacity_gpus": capacity.ravel(),
            "planned_load_mw": planned_load["load_mw"],
            "planned_green_mw": planned_load["green_mw"],
            "load_mw": done_load["load_mw"],
            "green_mw": done_load["green_mw"],
            "green_used_mw": done_load["green_used_mw"],
            **{c: done_load[c] for c in ("storage_charge_mw", "storage_discharge_mw", "soc_mwh")},
            "grid_mw": done_load["grid_mw"],
            "grid_cap_mw": grid_cap.ravel(),
            "load_cap_mw": load_cap.ravel(),
            "cap_violation_mw": np.where(
                done_load["gpus_busy"] > 0,
                np.maximum.reduce(
                    [
                        np.zeros(len(done_load)),
                        done_load["grid_mw"] - grid_cap.ravel(),
                        done_load["load_mw"] - load_cap.ravel(),
                    ]
                ),
                0.0,
            ),
            "caps_in_force": caps_in_force.ravel(),
            "caps_binding": caps_binding.ravel(),
        }
    )
    job_table = _job_table(problem, jobs)
    slot_h = horizon.slot_hours
    totals = {
        "planned": {
            **energy_totals(
                planned_load["load_mw"],
                planned_load["green_used_mw"],
                planned_load["grid_mw"],
                slot_h,
            ),
            **_storage_totals(planned_load, horizon.n_slots, slot_h),
            "gpu_hours": float(plan_original["gpus"].sum() * slot_h),
            "tokens": float(_tokens(plan_original, problem)),
        },
        "actual": {
            **energy_totals(
                done_load["load_mw"], done_load["green_used_mw"], done_load["grid_mw"], slot_h
            ),
            **_storage_totals(done_load, horizon.n_slots, slot_h),
            "gpu_hours": float(executed["gpus"].sum() * slot_h),
            "tokens": float(_tokens(executed, problem)),
            "tokens_real": float(jobs.tokens_real.sum()),
            "cap_violations": int((run["cap_violation_mw"] > 1e-6).sum()),
            "cut_gpu_hours": float(jobs.cut_units * slot_h),
            **{f"jobs_{s}": int((job_table["status"] == s).sum()) for s in JobStatus},
        },
    }
    return RunReport(
        site_slots=run,
        jobs=job_table,
        chunks=chunks,
        events=pd.DataFrame(walk.events, columns=EVENT_COLUMNS),
        totals=totals,
        slot_minutes=horizon.slot_minutes,
        wall_s=wall_s,
        executed=executed,
        storage_guide=walked_guide,
    )


def _storage_totals(load: pd.DataFrame, n_slots: int, slot_hours: float) -> dict[str, float]:
    """Stored green given back over the day [MWh] and the energy in storage at its end [MWh],
    from a site-load table (sites in blocks of ``n_slots``)."""
    end = load["soc_mwh"].to_numpy().reshape(-1, n_slots)[:, -1] if n_slots else np.zeros(0)
    return {
        "storage_discharged_mwh": float(load["storage_discharge_mw"].sum() * slot_hours),
        "storage_end_mwh": float(end.sum()),
    }


def _site_lists(used: np.ndarray, names: Sequence[str]) -> list[str]:
    """``"a;b"`` per row of ``used`` ``[row, site]`` (bool), each distinct row joined once."""
    rows, inverse = np.unique(used, axis=0, return_inverse=True)
    joined = [";".join(np.asarray(names)[row]) for row in rows]
    return [joined[i] for i in inverse.ravel().tolist()]


def _tokens(plan: pd.DataFrame, problem: Problem) -> float:
    """Tokens a plan table stands for: GPU-hours x each job's tokens per GPU-hour [token]."""
    jobs = problem.jobs.set_index("job_id")
    per_gpu_hour = (jobs["tokens"] / jobs["gpu_hours"]).reindex(plan["job_id"]).to_numpy()
    return float((plan["gpus"].to_numpy() * problem.slot_hours * per_gpu_hour).sum())
