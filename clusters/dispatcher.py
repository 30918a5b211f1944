"""Run a plan on Ray slot by slot, adapting when supply, caps or capacity differ from the plan.

At each slot start the :class:`Dispatcher`

1. checks each site's live capacity (``site:<name>`` units in ``ray.cluster_resources()``); a
   site that lost capacity triggers ``replan`` for all remaining work;
2. fits the slot's chunks to what each site may run: live capacity, the grid import limit and
   caps in force given the actual green supply. Where they would be broken it defers
   preemptible chunks first (largest slack first) and carries that work to later slots in the
   job's window where room allows; non-preemptible work that still breaks a cap runs and the
   breach is recorded;
3. submits the chunks as Ray tasks holding their site's resource;
4. collects results until the slot deadline: a task that raises is retried up to
   ``max_retries`` times and then fails its job with the error text; a task lost to the system
   (node died, worker crashed) or past the deadline has its work carried like a deferral.

Every job ends ``done``, ``late`` (finished after its deadline, or unfinished with a reason) or
``failed`` (with the error), see :mod:`clusters.jobstate`.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import ray
from ray.exceptions import GetTimeoutError, RayTaskError

from clusters.clock import Clock
from clusters.jobstate import WORK_TOLERANCE_GPU_H, parse_jobs
from clusters.power import SlotLimits, caps_in_force, check_caps, site_params
from clusters.report import RunReport, energy_totals
from clusters.resources import site_capacity_units
from clusters.tasks import Chunk, ChunkRecord, ChunkRunner, ChunkWork, TaskSettings, run_chunk

__all__ = ["Dispatcher", "Replan", "SlotProgress"]

log = logging.getLogger(__name__)

Replan = Callable[[dict[str, float], pd.Timestamp, dict[str, float]], pd.DataFrame]
"""``replan(remaining_gpu_hours_by_job, from_time, gpus_by_available_site) -> plan table``."""

MIN_SLOT_TIMEOUT_S = 60.0  # shortest wait for a slot's tasks, whatever the clock [s]
_PLAN_COLUMNS = ["job_id", "site", "time", "gpus"]


@dataclass(frozen=True)
class SlotProgress:
    """Passed to the progress callback after each slot."""

    index: int
    time: pd.Timestamp
    tasks_by_site: dict[str, int]
    green_share_so_far: float
    jobs_finished: int
    jobs_total: int


@dataclass
class _Attempt:
    chunk: Chunk
    attempt: int
    ref: ray.ObjectRef
    submitted_unix_s: float


def _plan_table(plan: pd.DataFrame, what: str) -> pd.DataFrame:
    missing = [c for c in _PLAN_COLUMNS if c not in plan.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; needs {_PLAN_COLUMNS}")
    out = plan[_PLAN_COLUMNS].copy()
    out["job_id"] = out["job_id"].astype(str)
    out["site"] = out["site"].astype(str)
    out["time"] = pd.to_datetime(out["time"], utc=True)
    out["gpus"] = out["gpus"].astype(float)
    return out[out["gpus"] > 0].reset_index(drop=True)


def _error_text(error: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message`` of the task's own exception, at most ``limit`` chars."""
    cause = getattr(error, "cause", None)
    shown = cause if isinstance(cause, BaseException) else error
    lines = str(shown).strip().splitlines()
    text = f"{type(shown).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Dispatcher:
    """Runs ``plan`` (``job_id, site, time, gpus``) for ``jobs`` on the connected Ray cluster.

    ``sites`` is a sites table (``site, gpus, kw_per_gpu, pue, base_load_mw,
    grid_import_limit_mw``) or objects with those attributes. ``actual_supply``
    (``time, site, green_mw``) is what the run settles against; pass the forecast when no
    actuals exist; a site-slot it lacks counts as 0 MW green. ``planned_supply`` is the supply
    the plan was made on (the forecast), for the planned side of the report (default: the
    actual supply). ``caps`` is the load-caps table.
    ``slot_timeout_s`` bounds the wait for a slot's tasks [s] (default: the slot's length on
    ``clock``, at least :data:`MIN_SLOT_TIMEOUT_S`). ``work`` is what each task runs.
    """

    def __init__(
        self,
        plan: pd.DataFrame,
        jobs: pd.DataFrame,
        sites: pd.DataFrame | list[object],
        slot_minutes: int,
        clock: Clock,
        actual_supply: pd.DataFrame | None = None,
        caps: pd.DataFrame | None = None,
        planned_supply: pd.DataFrame | None = None,
        replan: Replan | None = None,
        max_retries: int = 2,
        settings: TaskSettings | None = None,
        work: ChunkWork = run_chunk,
        slot_timeout_s: float | None = None,
        progress: Callable[[SlotProgress], None] | None = None,
    ) -> None:
        if slot_minutes <= 0 or max_retries < 0:
            raise ValueError(
                f"slot_minutes must be > 0 and max_retries >= 0, got {slot_minutes}, {max_retries}"
            )
        self.sites = site_params(sites)
        self.jobs = parse_jobs(jobs)
        self.original_plan = _plan_table(plan, "plan")
        self._check_plan(self.original_plan)
        self.plan = self.original_plan.copy()
        self.slot = pd.Timedelta(minutes=slot_minutes)
        self.slot_minutes = slot_minutes
        self.clock = clock
        self.caps = check_caps(caps, self.sites)
        self.green = self._green_lookup(actual_supply)
        self.planned_green = (
            self._green_lookup(planned_supply) if planned_supply is not None else self.green
        )
        self.replan = replan
        self.max_retries = max_retries
        self.settings = settings if settings is not None else TaskSettings()
        self.runner = ChunkRunner(self.settings, work)
        self.slot_timeout_s = slot_timeout_s
        self.progress = progress
        self._capacity_gpus: dict[str, float] = {}
        self._slot_rows: list[dict[str, object]] = []
        self._chunk_rows: list[dict[str, object]] = []
        self._events: list[dict[str, object]] = []

    # ----------------------------------------------------------------- inputs
    def _check_plan(self, plan: pd.DataFrame) -> None:
        unknown_sites = sorted(set(plan["site"]) - set(self.sites))
        unknown_jobs = sorted(set(plan["job_id"]) - set(self.jobs))
        if unknown_sites or unknown_jobs:
            raise ValueError(
                f"plan names unknown site(s) {unknown_sites} or job(s) {unknown_jobs[:5]}; "
                f"known sites: {', '.join(sorted(self.sites))}; jobs come from the jobs table"
            )

    def _green_lookup(self, supply: pd.DataFrame | None) -> dict[tuple[pd.Timestamp, str], float]:
        if supply is None:
            return {}
        missing = [c for c in ("time", "site", "green_mw") if c not in supply.columns]
        if missing:
            raise ValueError(f"actual_supply lacks columns {missing}; needs time, site, green_mw")
        times = pd.to_datetime(supply["time"], utc=True)
        return dict(zip(zip(times, supply["site"], strict=True), supply["green_mw"], strict=True))

    def _limits(self, site: str, t: pd.Timestamp) -> SlotLimits:
        grid_cap, load_cap = caps_in_force(self.caps, self.sites[site], t, t + self.slot)
        green = float(self.green.get((t, site), 0.0))
        return SlotLimits(green_mw=green, grid_cap_mw=grid_cap, load_cap_mw=load_cap)

    def _event(self, t: pd.Timestamp, kind: str, detail: str, **fields: object) -> None:
        self._events.append({"time": t, "kind": kind, "detail": detail, **fields})
        log.info("%s %s: %s", t.isoformat(), kind, detail)

    # ----------------------------------------------------------------- slots
    def _end(self) -> pd.Timestamp:
        """Last slot end worth walking: the plan's end or the latest deadline of active jobs."""
        ends = [self.plan["time"].max() + self.slot] if len(self.plan) else []
        ends += [j.deadline for j in self.jobs.values() if j.active]
        return max(ends)

    def _work_left(self, t: pd.Timestamp) -> bool:
        active = {j for j, s in self.jobs.items() if s.active}
        later = self.plan[(self.plan["time"] >= t) & self.plan["job_id"].isin(active)]
        carried = any(
            self.jobs[j].backlog_gpu_hours > WORK_TOLERANCE_GPU_H
            and self.jobs[j].deadline >= t + self.slot
            for j in active
        )
        return bool(len(later)) or carried

    def run(self) -> RunReport:
        """Walk the slots until no work is left; return the run report."""
        started = time.perf_counter()
        for job in self.jobs.values():
            if job.job_id not in set(self.plan["job_id"]):
                job.notes.append("the plan has no work for this job")
        self._capacity_gpus = self._live_capacity()
        t = self.plan["time"].min() if len(self.plan) else None
        index = 0
        while t is not None and t < self._end() and self._work_left(t):
            self.clock.sleep_until(t)
            woke_unix_s = time.time()
            self._check_capacity(t)
            chunks = self._fit_slot(t)
            records = self._run_slot(t, chunks, woke_unix_s)
            self._settle(t, chunks, records)
            if self.progress is not None:
                self.progress(self._progress(index, t, chunks))
            t, index = t + self.slot, index + 1
        return self._report(time.perf_counter() - started)

    # ----------------------------------------------------------------- capacity
    def _live_capacity(self) -> dict[str, float]:
        units = site_capacity_units(list(self.sites))
        return {
            s: min(float(p.gpus), units[s] * self.settings.gpus_per_unit)
            for s, p in self.sites.items()
        }

    def _check_capacity(self, t: pd.Timestamp) -> None:
        now = self._live_capacity()
        lost = [s for s in self.sites if now[s] < self._capacity_gpus[s] - 1e-9]
        for site in lost:
            self._event(
                t,
                "site_lost",
                f"site {site!r} capacity fell from {self._capacity_gpus[site]:g} to "
                f"{now[site]:g} GPUs",
                site=site,
            )
        self._capacity_gpus = now
        if lost:
            self._replan(t, lost)

    def _replan(self, t: pd.Timestamp, lost: list[str]) -> None:
        remaining = {j: s.remaining_gpu_hours for j, s in self.jobs.items() if s.active}
        available = {s: g for s, g in self._capacity_gpus.items() if g > 0}
        lost_text = ", ".join(lost)
        new_plan = None
        if self.replan is not None and remaining:
            try:
                new_plan = _plan_table(self.replan(remaining, t, available), "re-plan")
            except Exception as error:  # a replan that cannot place work must not end the night
                self._event(t, "replan_failed", f"re-plan raised {_error_text(error)}")
        if new_plan is None:
            dropped = self.plan[(self.plan["time"] >= t) & self.plan["site"].isin(lost)]
            for job_id, rows in dropped.groupby("job_id"):
                gpu_h = rows["gpus"].sum() * self.slot_minutes / 60.0
                self.jobs[job_id].notes.append(
                    f"site {lost_text} lost capacity at {t.isoformat()} and no re-plan placed "
                    f"the {gpu_h:.6g} GPU-h planned there"
                )
            self.plan = self.plan.drop(dropped.index).reset_index(drop=True)
            return
        bad = (
            (new_plan["time"] < t)
            | ~new_plan["site"].isin(list(available))
            | ~new_plan["job_id"].isin(list(remaining))
        )
        if bad.any():
            self._event(
                t,
                "replan_rows_ignored",
                f"{int(bad.sum())} re-plan rows were before {t.isoformat()}, at an unavailable "
                f"site or for a finished job; allowed sites: {', '.join(sorted(available))}",
            )
        new_plan = new_plan[~bad]
        placed = new_plan.groupby("job_id")["gpus"].sum() * self.slot_minutes / 60.0
        for job_id, need in remaining.items():
            job = self.jobs[job_id]
            job.backlog_gpu_hours = 0.0
            got = float(placed.get(job_id, 0.0))
            if got < need - WORK_TOLERANCE_GPU_H:
                job.notes.append(
                    f"after site {lost_text} lost capacity at {t.isoformat()} the re-plan placed "
                    f"{got:.6g} of {need:.6g} GPU-h left"
                )
        self.plan = pd.concat([self.plan[self.plan["time"] < t], new_plan], ignore_index=True)
        self._event(t, "replanned", f"re-planned {len(remaining)} jobs after losing {lost_text}")

    # ----------------------------------------------------------------- fitting
    def _fit_slot(self, t: pd.Timestamp) -> dict[tuple[str, str], float]:
        """GPUs per ``(job_id, site)`` to run in slot ``t``, within capacity and caps."""
        slot_h = self.slot_minutes / 60.0
        chunks: dict[tuple[str, str], float] = defaultdict(float)
        rows = self.plan[self.plan["time"] == t]
        for job_id, site, gpus in zip(rows["job_id"], rows["site"], rows["gpus"], strict=True):
            if self.jobs[job_id].active:
                chunks[(job_id, site)] += gpus
        for job_id in {j for j, _ in chunks}:  # never run more than the work left
            need = math.ceil(self.jobs[job_id].remaining_gpu_hours / slot_h - 1e-9)
            keys = [k for k in chunks if k[0] == job_id]
            over = sum(chunks[k] for k in keys) - need
            for key in keys:
                cut = min(chunks[key], max(0.0, over))
                chunks[key], over = chunks[key] - cut, over - cut

        allowed = {}
        for site, params in self.sites.items():
            limits = self._limits(site, t)
            allowed[site] = limits.max_gpus(params, self._capacity_gpus[site])
            self._defer(t, site, chunks, allowed[site], limits)
        self._resume(t, chunks, allowed)
        return {k: g for k, g in chunks.items() if g > 1e-9}

    def _defer(
        self,
        t: pd.Timestamp,
        site: str,
        chunks: dict[tuple[str, str], float],
        allowed_gpus: int,
        limits: SlotLimits,
    ) -> None:
        """Cut chunks at ``site`` until it fits: preemptible first, then non-preemptible."""
        here = [k for k in chunks if k[1] == site and chunks[k] > 0]
        excess = sum(chunks[k] for k in here) - allowed_gpus
        if excess <= 1e-9:
            return
        why = (
            f"site {site!r} may run {allowed_gpus} GPUs (capacity "
            f"{self._capacity_gpus[site]:g} GPUs, grid cap {limits.grid_cap_mw:g} MW, "
            f"load cap {limits.load_cap_mw:g} MW, green {limits.green_mw:.3f} MW)"
        )
        # preemptible work first, largest slack first; then non-preemptible work, because a cap
        # is hard: an interrupted non-preemptible job resumes later and says so in its reason
        order = sorted(
            here, key=lambda k: (not self.jobs[k[0]].preemptible, -self.jobs[k[0]].slack_h(t))
        )
        for key in order:
            cut = min(chunks[key], excess)
            chunks[key] -= cut
            excess -= cut
            job = self.jobs[key[0]]
            job.backlog_gpu_hours += cut * self.slot_minutes / 60.0
            if job.preemptible:
                self._event(t, "deferred", f"{cut:g} GPUs deferred: {why}", site=site,
                            job_id=key[0], gpus=cut)  # fmt: skip
            else:
                job.notes.append(
                    f"non-preemptible run interrupted at {t.isoformat()} to keep a cap"
                )
                self._event(t, "stopped", f"{cut:g} GPUs of non-preemptible work stopped: {why}",
                            site=site, job_id=key[0], gpus=cut)  # fmt: skip
            if excess <= 1e-9:
                return

    def _resume(
        self, t: pd.Timestamp, chunks: dict[tuple[str, str], float], allowed: dict[str, int]
    ) -> None:
        """Place carried work in slot ``t`` where room is left, earliest deadline first."""
        slot_h = self.slot_minutes / 60.0
        free = {
            s: allowed[s] - sum(g for (_, site), g in chunks.items() if site == s) for s in allowed
        }
        waiting = [
            j for j in self.jobs.values() if j.active and j.backlog_gpu_hours > WORK_TOLERANCE_GPU_H
        ]
        for job in sorted(waiting, key=lambda j: j.deadline):
            if not job.in_window(t, t + self.slot):
                continue
            room = job.max_gpus - sum(g for (j, _), g in chunks.items() if j == job.job_id)
            for site in sorted(free, key=lambda s: -free[s]):
                if not job.may_run_at(site) or job.backlog_gpu_hours <= WORK_TOLERANCE_GPU_H:
                    continue
                gpus = min(math.ceil(job.backlog_gpu_hours / slot_h - 1e-9), room, free[site])
                if gpus < 1:
                    continue
                chunks[(job.job_id, site)] += gpus
                free[site] -= gpus
                room -= gpus
                job.backlog_gpu_hours = max(0.0, job.backlog_gpu_hours - gpus * slot_h)
                self._event(
                    t,
                    "resumed",
                    f"{gpus:g} GPUs of carried work placed",
                    site=site,
                    job_id=job.job_id,
                    gpus=gpus,
                )

    # ----------------------------------------------------------------- running
    def _chunk(self, job_id: str, site: str, t: pd.Timestamp, gpus: float) -> Chunk:
        return Chunk(
            job_id=job_id,
            site=site,
            time=t,
            gpus=gpus,
            slot_minutes=self.slot_minutes,
            tokens_per_gpu_hour=self.jobs[job_id].tokens_per_gpu_hour,
        )

    def _submit(self, chunk: Chunk, attempt: int) -> _Attempt:
        return _Attempt(chunk, attempt, self.runner.submit(chunk, attempt), time.time())

    def _run_slot(
        self, t: pd.Timestamp, chunks: dict[tuple[str, str], float], woke_unix_s: float
    ) -> dict[tuple[str, str], ChunkRecord | None]:
        """Run the slot's chunks; a record per chunk, ``None`` where it did not complete."""
        timeout_s = self.slot_timeout_s
        if timeout_s is None:
            timeout_s = max(MIN_SLOT_TIMEOUT_S, self.clock.real_seconds(self.slot))
        deadline = time.monotonic() + timeout_s
        pending = {}
        for (job_id, site), gpus in chunks.items():
            attempt = self._submit(self._chunk(job_id, site, t, gpus), 0)
            pending[attempt.ref] = attempt
        records: dict[tuple[str, str], ChunkRecord | None] = {}
        while pending:
            ready, _ = ray.wait(
                list(pending), num_returns=1, timeout=max(0.0, deadline - time.monotonic())
            )
            if not ready:
                for attempt in pending.values():
                    ray.cancel(attempt.ref, force=True)
                    self._lost(t, attempt, f"timed out after {timeout_s:g} s", "timeout")
                    records[(attempt.chunk.job_id, attempt.chunk.site)] = None
                break
            attempt = pending.pop(ready[0])
            key = (attempt.chunk.job_id, attempt.chunk.site)
            try:
                record = ray.get(attempt.ref, timeout=0)
            except RayTaskError as error:
                text = _error_text(error)
                self._chunk_row(attempt, "error", woke_unix_s, error=text)
                if attempt.attempt < self.max_retries:
                    self._event(
                        t,
                        "retry",
                        f"attempt {attempt.attempt + 1} raised {text}",
                        site=key[1],
                        job_id=key[0],
                    )
                    retry = self._submit(attempt.chunk, attempt.attempt + 1)
                    pending[retry.ref] = retry
                    continue
                self._fail(t, attempt, text)
                records[key] = None
            except (ray.exceptions.RayError, GetTimeoutError) as error:
                self._lost(t, attempt, _error_text(error), "lost")
                records[key] = None
            else:
                self._chunk_row(attempt, "ok", woke_unix_s, record=record)
                records[key] = record
        return records

    def _fail(self, t: pd.Timestamp, attempt: _Attempt, text: str) -> None:
        chunk = attempt.chunk
        job = self.jobs[chunk.job_id]
        job.failed_reason = (
            f"chunk at {chunk.site} in slot {t.isoformat()} failed after "
            f"{attempt.attempt + 1} attempts: {text}"
        )
        self._event(t, "failed", job.failed_reason, site=chunk.site, job_id=chunk.job_id)

    def _lost(self, t: pd.Timestamp, attempt: _Attempt, text: str, outcome: str) -> None:
        """A chunk the system lost (node died, timeout): carry its work to later slots."""
        chunk = attempt.chunk
        self._chunk_row(attempt, outcome, None, error=text)
        self.jobs[chunk.job_id].backlog_gpu_hours += chunk.gpu_hours
        self._event(
            t,
            outcome,
            f"{chunk.gpus:g} GPUs of work carried: {text}",
            site=chunk.site,
            job_id=chunk.job_id,
            gpus=chunk.gpus,
        )

    def _chunk_row(
        self,
        attempt: _Attempt,
        outcome: str,
        woke_unix_s: float | None,
        record: ChunkRecord | None = None,
        error: str = "",
    ) -> None:
        chunk = attempt.chunk
        self._chunk_rows.append(
            {
                "job_id": chunk.job_id,
                "site": chunk.site,
                "time": chunk.time,
                "gpus": chunk.gpus,
                "attempt": attempt.attempt,
                "outcome": outcome,
                "error": error,
                "node_id": record.node_id if record else "",
                "site_units": (
                    record.assigned_resources.get(f"site:{chunk.site}", 0.0) if record else 0.0
                ),
                "wall_s": record.wall_s if record else float("nan"),
                "delay_s": (
                    record.started_unix_s - woke_unix_s
                    if record and woke_unix_s is not None and attempt.attempt == 0
                    else float("nan")
                ),
                "tokens_real": record.tokens_real if record else 0,
                "tokens_accounted": record.tokens_accounted if record else 0.0,
            }
        )

    def _settle(
        self,
        t: pd.Timestamp,
        chunks: dict[tuple[str, str], float],
        records: dict[tuple[str, str], ChunkRecord | None],
    ) -> None:
        for (job_id, site), record in records.items():
            if record is None:
                continue
            job = self.jobs[job_id]
            gpu_h = chunks[(job_id, site)] * self.slot_minutes / 60.0
            job.gpu_hours_done = min(job.gpu_hours_required, job.gpu_hours_done + gpu_h)
            job.tokens_accounted += record.tokens_accounted
            job.tokens_real += record.tokens_real
            job.sites_run.add(site)
            job.slots_run.add(t)
            if job.finished_at is None and job.remaining_gpu_hours <= WORK_TOLERANCE_GPU_H:
                job.finished_at = t + self.slot
        for site in self.sites:
            here = {k: g for k, g in chunks.items() if k[1] == site}
            self._slot_rows.append(
                {
                    "time": t,
                    "site": site,
                    "dispatched_gpus": sum(here.values()),
                    "actual_gpus": sum(g for k, g in here.items() if records.get(k) is not None),
                    "tasks": len(here),
                    "tasks_failed": sum(1 for k in here if records.get(k) is None),
                    "capacity_gpus": self._capacity_gpus[site],
                }
            )

    def _progress(
        self, index: int, t: pd.Timestamp, chunks: dict[tuple[str, str], float]
    ) -> SlotProgress:
        table = self._site_slot_table()
        share = energy_totals(table, self.slot_minutes, "")["green_share"]
        return SlotProgress(
            index=index,
            time=t,
            tasks_by_site={s: sum(1 for k in chunks if k[1] == s) for s in self.sites},
            green_share_so_far=share,
            jobs_finished=sum(1 for j in self.jobs.values() if not j.active),
            jobs_total=len(self.jobs),
        )

    # ----------------------------------------------------------------- report
    def _site_slot_table(self) -> pd.DataFrame:
        """Site-slot table over every walked or planned slot, settled against the supply."""
        walked = pd.DataFrame(
            self._slot_rows,
            columns=[
                "time",
                "site",
                "dispatched_gpus",
                "actual_gpus",
                "tasks",
                "tasks_failed",
                "capacity_gpus",
            ],
        )
        walked["time"] = pd.to_datetime(walked["time"], utc=True)
        planned = (
            self.original_plan.groupby(["time", "site"], as_index=False)["gpus"]
            .sum()
            .rename(columns={"gpus": "planned_gpus"})
        )
        table = walked.merge(planned, on=["time", "site"], how="outer")
        counts = ["dispatched_gpus", "actual_gpus", "planned_gpus", "tasks", "tasks_failed"]
        table[counts] = table[counts].fillna(0.0)
        table = table.sort_values(["time", "site"]).reset_index(drop=True)
        rows = []
        for t, site, planned_gpus, actual_gpus in zip(
            table["time"], table["site"], table["planned_gpus"], table["actual_gpus"], strict=True
        ):
            params, limits = self.sites[site], self._limits(site, t)
            load = params.load_mw(actual_gpus)
            green_used = min(load, limits.green_mw)
            rows.append(
                {
                    "planned_load_mw": params.load_mw(planned_gpus),
                    "planned_green_mw": float(self.planned_green.get((t, site), 0.0)),
                    "load_mw": load,
                    "green_mw": limits.green_mw,
                    "green_used_mw": green_used,
                    "grid_mw": load - green_used,
                    "grid_cap_mw": limits.grid_cap_mw,
                    "load_cap_mw": limits.load_cap_mw,
                    "cap_violation_mw": limits.violation_mw(load),
                }
            )
        columns = ["planned_load_mw", "planned_green_mw", "load_mw", "green_mw", "green_used_mw"]
        columns += ["grid_mw"]
        columns += ["grid_cap_mw", "load_cap_mw", "cap_violation_mw"]
        return pd.concat([table, pd.DataFrame(rows, index=table.index, columns=columns)], axis=1)

    def _report(self, wall_s: float) -> RunReport:
        site_slots = self._site_slot_table()
        jobs = []
        for job in self.jobs.values():
            status, reason = job.status()
            jobs.append(
                {
                    "job_id": job.job_id,
                    "status": status,
                    "reason": reason,
                    "sites": ";".join(sorted(job.sites_run)),
                    "slots": len(job.slots_run),
                    "gpu_hours_required": job.gpu_hours_required,
                    "gpu_hours_done": job.gpu_hours_done,
                    "tokens_accounted": job.tokens_accounted,
                    "tokens_real": job.tokens_real,
                    "finished_at": job.finished_at,
                    "deadline": job.deadline,
                }
            )
        jobs_frame = pd.DataFrame(jobs)
        chunks = pd.DataFrame(self._chunk_rows)
        slot_h = self.slot_minutes / 60.0
        plan = self.original_plan
        planned_tokens = sum(
            g * slot_h * self.jobs[j].tokens_per_gpu_hour
            for j, g in zip(plan["job_id"], plan["gpus"], strict=True)
        )
        totals = {
            "planned": {
                **energy_totals(site_slots, self.slot_minutes, "planned_"),
                "gpu_hours": float(plan["gpus"].sum() * slot_h),
                "tokens": float(planned_tokens),
            },
            "actual": {
                **energy_totals(site_slots, self.slot_minutes, ""),
                "gpu_hours": float(site_slots["actual_gpus"].sum() * slot_h),
                "tokens": float(jobs_frame["tokens_accounted"].sum()) if jobs else 0.0,
                "tokens_real": float(jobs_frame["tokens_real"].sum()) if jobs else 0.0,
                "cap_violations": int((site_slots["cap_violation_mw"] > 1e-6).sum()),
                **{
                    f"jobs_{s}": int((jobs_frame["status"] == s).sum()) if jobs else 0
                    for s in ("done", "late", "failed")
                },
            },
        }
        return RunReport(
            jobs=jobs_frame,
            site_slots=site_slots,
            chunks=chunks,
            events=pd.DataFrame(
                self._events, columns=["time", "kind", "detail", "site", "job_id", "gpus"]
            ),
            totals=totals,
            slot_minutes=self.slot_minutes,
            wall_s=wall_s,
            settings={
                "gpus_per_unit": self.settings.gpus_per_unit,
                "num_cpus_per_task": self.settings.num_cpus,
                "tokens_per_real_token": self.settings.tokens_per_real_token,
                "max_retries": self.max_retries,
            },
        )
