"""Per-job bookkeeping during a run: work done, work carried, where it ran, how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

__all__ = ["WORK_TOLERANCE_GPU_H", "JobState", "parse_jobs"]

WORK_TOLERANCE_GPU_H = 1e-6  # work left below this counts as none [GPU-h]
_JOB_COLUMNS = ("job_id", "gpu_hours", "max_gpus", "release", "deadline", "sites", "preemptible")


@dataclass
class JobState:
    """One job of the jobs table and what the run has done for it so far.

    ``backlog_gpu_hours`` is work taken out of the plan (deferred for a cap, or lost to a failed
    node or a timeout) that the dispatcher still has to place [GPU-h].
    """

    job_id: str
    gpu_hours_required: float
    max_gpus: float
    release: pd.Timestamp
    deadline: pd.Timestamp
    sites: tuple[str, ...]
    preemptible: bool
    tokens_per_gpu_hour: float
    gpu_hours_done: float = 0.0
    backlog_gpu_hours: float = 0.0
    tokens_accounted: float = 0.0
    tokens_real: int = 0
    sites_run: set[str] = field(default_factory=set)
    slots_run: set[pd.Timestamp] = field(default_factory=set)
    finished_at: pd.Timestamp | None = None
    failed_reason: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def remaining_gpu_hours(self) -> float:
        """Work still to do [GPU-h]."""
        return max(0.0, self.gpu_hours_required - self.gpu_hours_done)

    @property
    def active(self) -> bool:
        """Not failed and work left."""
        return self.failed_reason is None and self.remaining_gpu_hours > WORK_TOLERANCE_GPU_H

    def may_run_at(self, site: str) -> bool:
        """Whether ``site`` is allowed (an empty site list allows any)."""
        return not self.sites or site in self.sites

    def in_window(self, start: pd.Timestamp, end: pd.Timestamp) -> bool:
        """Whether the slot ``[start, end)`` lies inside ``[release, deadline]``."""
        return start >= self.release and end <= self.deadline

    def slack_h(self, t: pd.Timestamp) -> float:
        """Hours to the deadline from ``t`` minus hours the remaining work needs at max GPUs."""
        return (self.deadline - t) / pd.Timedelta(
            hours=1
        ) - self.remaining_gpu_hours / self.max_gpus

    def status(self) -> tuple[str, str]:
        """``(status, reason)``: ``done``, ``late`` (after deadline or unfinished) or ``failed``."""
        notes = "; ".join(self.notes)
        if self.failed_reason is not None:
            return "failed", "; ".join(filter(None, [self.failed_reason, notes]))
        if self.finished_at is None:
            reason = (
                f"unfinished: {self.gpu_hours_done:.6g} of {self.gpu_hours_required:.6g} "
                f"GPU-h done by the deadline {self.deadline.isoformat()}"
            )
            return "late", "; ".join(filter(None, [reason, notes]))
        if self.finished_at > self.deadline:
            late_min = (self.finished_at - self.deadline) / pd.Timedelta(minutes=1)
            return "late", f"finished {late_min:.0f} min after the deadline; {notes}".rstrip("; ")
        return "done", notes


def _as_bool(value: object) -> bool:
    if isinstance(value, str):
        if value.strip().lower() in ("true", "1", "yes"):
            return True
        if value.strip().lower() in ("false", "0", "no", ""):
            return False
        raise ValueError(f"preemptible must be true or false, got {value!r}")
    return bool(value)


def _utc(value: object, what: str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        raise ValueError(f"{what} {stamp} has no time zone; jobs tables carry tz-aware UTC times")
    return stamp.tz_convert("UTC")


def parse_jobs(jobs: pd.DataFrame) -> dict[str, JobState]:
    """Job states by id from a jobs table (the jobs contract; ``tokens`` optional)."""
    missing = [c for c in _JOB_COLUMNS if c not in jobs.columns]
    if missing:
        raise ValueError(f"jobs table lacks columns {missing}; needs {list(_JOB_COLUMNS)}")
    if jobs["job_id"].duplicated().any():
        dupes = sorted(jobs.loc[jobs["job_id"].duplicated(), "job_id"].astype(str).unique())
        raise ValueError(f"job_id must be unique; repeated: {dupes[:5]}")
    states = {}
    for row in jobs.to_dict("records"):
        job_id, gpu_hours = str(row["job_id"]), float(row["gpu_hours"])
        if not gpu_hours > 0 or not float(row["max_gpus"]) > 0:
            raise ValueError(f"job {job_id!r}: gpu_hours and max_gpus must be > 0")
        sites = row["sites"] if isinstance(row["sites"], str) else ""
        tokens = float(row.get("tokens", 0.0) or 0.0)
        states[job_id] = JobState(
            job_id=job_id,
            gpu_hours_required=gpu_hours,
            max_gpus=float(row["max_gpus"]),
            release=_utc(row["release"], f"job {job_id!r} release"),
            deadline=_utc(row["deadline"], f"job {job_id!r} deadline"),
            sites=tuple(s.strip() for s in sites.split(";") if s.strip()),
            preemptible=_as_bool(row["preemptible"]),
            tokens_per_gpu_hour=tokens / gpu_hours,
        )
    return states
