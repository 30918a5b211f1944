"""What a settlement walk has done: per job and per slot, and how it is saved and restored.

:class:`JobsState` holds each job's work (in GPU-slots: one GPU busy for one slot) and how it
ended; :class:`WalkRecord` what each slot dispatched, ran and had in force; :class:`Chunks` one
slot's work as arrays. :func:`to_plain` and :func:`from_plain` turn both into JSON-ready values
and back through :mod:`dataclasses` (a live loop stores them after every slot to survive a
crash), with :data:`SCHEMA_VERSION`; a state written before the version existed is version 1.
Version 2 added the caps in force per slot (:attr:`WalkRecord.caps`); a version 1 state
restores with none recorded for the slots it ran.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scheduler.problem import Problem

__all__ = [
    "SCHEMA_VERSION",
    "CapInForce",
    "Chunks",
    "JobsState",
    "WalkRecord",
    "from_plain",
    "to_plain",
]

SCHEMA_VERSION = 2
"""Version of the saved walk (:func:`to_plain`); raise it with a reader of the older one."""


CapInForce = tuple[int, str, str, float]
"""A cap in force in a slot, as the walk records it: site row, label (its event id, see
:attr:`~scheduler.problem.LoadCap.label`), type and value [MW]."""


@dataclass
class JobsState:
    """Per-job state of a run, as arrays over the problem's jobs (work in GPU-slots)."""

    required: np.ndarray
    done: np.ndarray
    backlog: np.ndarray
    finished_slot: np.ndarray
    ran_site: np.ndarray  # [job, site] bool
    ran_slots: np.ndarray
    tokens_real: np.ndarray
    failed: list[str | None]
    notes: list[list[str]]
    cut_units: int = 0

    @classmethod
    def of(cls, problem: Problem) -> JobsState:
        n = problem.n_jobs
        return cls(
            required=problem.work_units.copy(),
            done=np.zeros(n, dtype=np.int64),
            backlog=np.zeros(n, dtype=np.int64),
            finished_slot=np.full(n, -1, dtype=np.int64),
            ran_site=np.zeros((n, len(problem.sites)), dtype=bool),
            ran_slots=np.zeros(n, dtype=np.int64),
            tokens_real=np.zeros(n, dtype=np.int64),
            failed=[None] * n,
            notes=[[] for _ in range(n)],
        )

    @property
    def remaining(self) -> np.ndarray:
        return self.required - self.done

    @property
    def active(self) -> np.ndarray:
        working = self.remaining > 0
        if self.failed.count(None) == len(self.failed):  # the usual case: no pass in Python
            return working
        return working & np.array([f is None for f in self.failed], dtype=bool)


@dataclass
class Chunks:
    """The chunks of one slot as arrays: ``gpus`` of ``job`` at ``site``."""

    job: np.ndarray
    site: np.ndarray
    gpus: np.ndarray

    def add(self, job: int, site: int, gpus: int) -> None:
        same = np.flatnonzero((self.job == job) & (self.site == site))
        if len(same):
            self.gpus[same[0]] += gpus
            return
        self.job = np.append(self.job, job)
        self.site = np.append(self.site, site)
        self.gpus = np.append(self.gpus, gpus)

    def kept(self) -> Chunks:
        """The chunks with GPUs left."""
        keep = self.gpus > 0
        return Chunks(self.job[keep], self.site[keep], self.gpus[keep])


@dataclass
class WalkRecord:
    """What the walk records per slot, turned into the report at the end: the work that ran
    (job, site, slot, GPUs), what was dispatched, failed tasks, and the live capacity and caps
    in force when each slot ran (the tightest per site, and each cap as :data:`CapInForce`);
    the events."""

    executed: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=list
    )
    dispatched: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)
    failed_tasks: list[tuple[int, int]] = field(default_factory=list)
    capacity: dict[int, np.ndarray] = field(default_factory=dict)
    grid_cap_mw: dict[int, np.ndarray] = field(default_factory=dict)
    load_cap_mw: dict[int, np.ndarray] = field(default_factory=dict)
    caps: dict[int, list[CapInForce]] = field(default_factory=dict)
    events: list[dict[str, object]] = field(default_factory=list)


def _plain(value: Any) -> Any:
    """``value`` as JSON holds it: arrays as lists, times as ISO 8601, numpy scalars as numbers,
    dict keys as text."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_plain(
    jobs: JobsState, walk: WalkRecord, wall_s: float, previous_gpus: np.ndarray | None
) -> dict[str, object]:
    """The walk so far as plain JSON-ready values (see :func:`from_plain`)."""
    jobs_plain = {f.name: _plain(getattr(jobs, f.name)) for f in dataclasses.fields(jobs)}
    del jobs_plain["required"]  # the problem's: not state
    return {
        "schema_version": SCHEMA_VERSION,
        "jobs": jobs_plain,
        **{f.name: _plain(getattr(walk, f.name)) for f in dataclasses.fields(walk)},
        "wall_s": wall_s,
        "previous_gpus": None if previous_gpus is None else previous_gpus.tolist(),
    }


def from_plain(state: dict, jobs: JobsState) -> tuple[WalkRecord, float, np.ndarray | None]:
    """Fill ``jobs`` (made for the same problem) from a :func:`to_plain` state; return the walk
    record, the wall time [s] and the GPUs of the last slot run. Raises ``ValueError`` for a
    state of a newer schema."""
    version = int(state.get("schema_version", 1))
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"the saved walk is of schema {version}; this greensched reads up to {SCHEMA_VERSION}"
        )
    saved = state["jobs"]
    for name in ("done", "backlog", "finished_slot", "ran_slots", "tokens_real"):
        getattr(jobs, name)[:] = saved[name]
    jobs.ran_site[:] = np.asarray(saved["ran_site"], dtype=bool)
    jobs.failed, jobs.notes, jobs.cut_units = saved["failed"], saved["notes"], saved["cut_units"]

    def by_slot(mapping: dict) -> dict[int, np.ndarray]:
        return {int(t): np.asarray(a) for t, a in mapping.items()}

    walk = WalkRecord(
        executed=[
            tuple(np.asarray(a, dtype=np.int64) for a in part)  # type: ignore[misc]
            for part in state["executed"]
        ],
        dispatched=[
            (int(t), np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))
            for t, a, b in state["dispatched"]
        ],
        failed_tasks=[(int(t), int(s)) for t, s in state["failed_tasks"]],
        capacity=by_slot(state["capacity"]),
        grid_cap_mw=by_slot(state["grid_cap_mw"]),
        load_cap_mw=by_slot(state["load_cap_mw"]),
        caps={  # none recorded before version 2
            int(t): [(int(s), str(label), str(kind), float(mw)) for s, label, kind, mw in caps]
            for t, caps in state.get("caps", {}).items()
        },
        events=[{**e, "time": pd.Timestamp(e["time"])} for e in state["events"]],
    )
    previous = state["previous_gpus"]
    return walk, float(state["wall_s"]), None if previous is None else np.asarray(previous, float)
