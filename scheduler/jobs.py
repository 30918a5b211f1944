"""The jobs table: read from CSV, generated from the config's workload classes, validated.

A job is inference work of ``gpu_hours`` GPU-hours that may use up to ``max_gpus`` GPUs at once,
between ``release`` and ``deadline`` (UTC), at one of its allowed ``sites`` (empty = any).

Slots and work units
--------------------
Planning counts work in *GPU-slots* (one GPU busy for one slot):
``work_units = ceil(gpu_hours * 60 / slot_minutes)``. A slot is usable by a job when it lies
wholly inside the job's window: the first usable slot is the first that starts at or after
``release``, the last usable one ends at or before ``deadline``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scheduler.config import Workload
from scheduler.contracts import JOBS, UserError, read_table, split_sites
from scheduler.horizon import Horizon

__all__ = [
    "Job",
    "JobError",
    "generate_jobs",
    "jobs_frame",
    "read_jobs",
    "unused_in_last_slot",
    "validate_jobs",
    "window_slots",
    "work_units",
]

log = logging.getLogger(__name__)

_MAX_LISTED_ERRORS = 20


class JobError(UserError):
    """A jobs table that cannot be planned; the message names the rows and fields at fault."""


@dataclass(frozen=True)
class Job:
    """One inference job (a row of the jobs table).

    ``release`` and ``deadline`` are tz-aware UTC; ``sites`` empty means any site.
    """

    job_id: str
    gpu_hours: float  # work [GPU-h]
    max_gpus: int  # most GPUs at once [-]
    release: pd.Timestamp  # earliest start, UTC
    deadline: pd.Timestamp  # all work done by, UTC
    sites: tuple[str, ...] = ()  # allowed sites; empty = any
    preemptible: bool = True  # may pause and resume between slots
    tokens: float = 0.0  # tokens the job produces [-]


def jobs_frame(jobs: Sequence[Job]) -> pd.DataFrame:
    """The jobs table (:data:`~scheduler.contracts.JOBS`) of a list of :class:`Job`."""
    rows = [
        {
            "job_id": j.job_id,
            "gpu_hours": j.gpu_hours,
            "max_gpus": j.max_gpus,
            "release": j.release,
            "deadline": j.deadline,
            "sites": ";".join(j.sites),
            "preemptible": j.preemptible,
            "tokens": j.tokens,
        }
        for j in jobs
    ]
    return JOBS.canonical(pd.DataFrame(rows, columns=JOBS.names))


def max_gpus_to_fit(
    max_gpus: np.ndarray, units: np.ndarray, window_slots: np.ndarray | int
) -> np.ndarray:
    """``max_gpus`` raised where ``units`` GPU-slots would not fit ``window_slots`` slots."""
    return np.maximum(max_gpus, -(-units // np.maximum(window_slots, 1)))


def work_units(gpu_hours: np.ndarray | float, slot_minutes: int) -> np.ndarray:
    """Work in GPU-slots, rounded up: ``ceil(gpu_hours * 60 / slot_minutes)`` [GPU-slot]."""
    units = np.asarray(gpu_hours, dtype=float) * 60.0 / slot_minutes
    return np.ceil(units - 1e-9).astype(np.int64)


def unused_in_last_slot(
    job: np.ndarray,
    site: np.ndarray,
    slot: np.ndarray,
    gpus: np.ndarray,
    gpu_hours: np.ndarray,
    slot_minutes: int,
    shape: tuple[int, int],
) -> np.ndarray:
    """GPUs a plan holds but leaves idle ``[site, slot]`` (float): a job's work rounded up to
    whole GPU-slots (:func:`work_units`) uses its last GPU-slot only in part, so a job whose
    work is all placed (plan rows ``job``, ``site``, ``slot``, ``gpus``; ``job`` -1 for rows of
    no job) draws ``work_units - gpu_hours / slot_h`` of a GPU less in its last slot, at the
    first site it ran at then. Capacity still counts the whole GPU."""
    out = np.zeros(shape)
    known = job >= 0
    if not known.any():
        return out
    job, site, slot, gpus = job[known], site[known], slot[known], gpus[known]
    units = work_units(gpu_hours, slot_minutes)
    idle = units - np.asarray(gpu_hours, dtype=float) * 60.0 / slot_minutes
    placed = np.bincount(job, weights=gpus, minlength=len(units))
    last = np.lexsort((site, -slot, job))  # each job's latest slot first, lowest site first
    first_row = np.ones(len(last), dtype=bool)
    first_row[1:] = job[last][1:] != job[last][:-1]
    rows = last[first_row]
    share = np.where(placed[job[rows]] >= units[job[rows]], np.clip(idle[job[rows]], 0, 1), 0.0)
    np.add.at(out, (site[rows], slot[rows]), share)
    return out


def window_slots(jobs: pd.DataFrame, horizon: Horizon) -> tuple[np.ndarray, np.ndarray]:
    """First usable slot and end slot (exclusive) of each job's window, as slot indices.

    Slot ``t`` is usable when ``release <= start + t*slot`` and ``start + (t+1)*slot <= deadline``.
    Indices are not clipped to the horizon (see :func:`validate_jobs`).
    """
    slot_ns = horizon.slot_minutes * 60 * 10**9
    start_ns = horizon.start.value
    release_ns = _ns(jobs["release"]) - start_ns
    deadline_ns = _ns(jobs["deadline"]) - start_ns
    first = -(-release_ns // slot_ns)  # ceil
    end = deadline_ns // slot_ns  # floor
    return first.astype(np.int64), end.astype(np.int64)


def read_jobs(
    path: str | Path, horizon: Horizon | None = None, site_names: Sequence[str] = ()
) -> pd.DataFrame:
    """Read a jobs CSV (:data:`~scheduler.contracts.JOBS`); times need a UTC offset.

    Raises :class:`~scheduler.contracts.TableError` naming the file, line and field of every
    cell that cannot be read and every repeated ``job_id``. With ``horizon``, every row is also
    checked against it and ``site_names`` (:func:`validate_jobs`) in the same pass: one
    :class:`JobError` lists every bad cell and row, by line.
    """
    if horizon is None:
        return read_table(JOBS, path)
    problems: list[str] = []
    bad_rows: set[int] = set()
    jobs = read_table(JOBS, path, problems=problems, bad_rows=bad_rows)
    source = f"{path} line"
    validate_jobs(jobs, horizon, site_names, source, first_row=2, problems=problems,
                  skip=bad_rows)  # fmt: skip

    def line(message: str) -> int:
        return int(message[len(source) + 1 :].split(" ", 1)[0])

    _raise(sorted(problems, key=line))
    return jobs


def validate_jobs(
    jobs: pd.DataFrame,
    horizon: Horizon,
    site_names: Sequence[str],
    source: str = "jobs row",
    first_row: int = 1,
    *,
    problems: list[str] | None = None,
    skip: Collection[int] = (),
) -> None:
    """Check a canonical jobs table against a horizon and the known sites.

    Raises :class:`JobError` listing every bad row as ``<source> <n> (job_id 'x'): field: what``
    where ``n`` counts from ``first_row`` (use ``source="jobs.csv line", first_row=2`` for a file);
    with ``problems``, adds them to it instead. Rows in ``skip`` (with a bad cell) are left out.
    """
    errors: list[str] = [] if problems is None else problems

    def fail(i: int | np.integer, field: str, message: str) -> None:
        if int(i) in skip:
            return
        errors.append(
            f"{source} {i + first_row} (job_id {jobs['job_id'].iat[i]!r}): {field}: {message}"
        )

    gpu_hours = jobs["gpu_hours"].to_numpy(dtype=float)
    max_gpus = jobs["max_gpus"].to_numpy()
    release, deadline = jobs["release"], jobs["deadline"]
    for i in np.flatnonzero((deadline <= release).to_numpy()):
        fail(i, "deadline", f"{deadline.iat[i]} is not after release {release.iat[i]}")
    for i in np.flatnonzero((release < horizon.start).to_numpy()):
        fail(i, "release", f"{release.iat[i]} is before the horizon start {horizon.start}")
    for i in np.flatnonzero((deadline > horizon.end).to_numpy()):
        fail(i, "deadline", f"{deadline.iat[i]} is after the horizon end {horizon.end}")
    first, end = window_slots(jobs, horizon)
    slots = np.clip(end, 0, horizon.n_slots) - np.clip(first, 0, horizon.n_slots)
    units = work_units(gpu_hours, horizon.slot_minutes)
    too_much = (
        (deadline > release).to_numpy()
        & (gpu_hours > 0)
        & (units > max_gpus * np.maximum(slots, 0))
    )
    for i in np.flatnonzero(too_much):
        fail(
            i,
            "gpu_hours",
            f"{gpu_hours[i]:g} GPU-h do not fit the window: {max(slots[i], 0)} whole "
            f"{horizon.slot_minutes}-minute slot(s) x max_gpus {max_gpus[i]} hold "
            f"{max(slots[i], 0) * max_gpus[i] * horizon.slot_minutes / 60:g} GPU-h",
        )
    known = set(site_names)
    for row, sites in enumerate(jobs["sites"]):
        unknown = [s for s in split_sites(sites) if s not in known]
        if unknown:
            fail(
                row,
                "sites",
                f"unknown site(s) {', '.join(map(repr, unknown))}; known sites: "
                f"{', '.join(sorted(known))}",
            )
    if problems is None:
        _raise(errors)


def generate_jobs(
    workload: Workload,
    day_start_utc: pd.Timestamp,
    seed: int,
    site_names: Sequence[str],
    slot_minutes: int = 15,
) -> pd.DataFrame:
    """Draw a day's jobs from the workload classes, deterministically for ``seed``.

    Each value is drawn uniformly in its class range (``max_gpus`` as an integer). Releases are
    floored to a slot boundary; deadlines are rounded to one, at least one slot after release and
    clipped to the end of the 24 h day. Where a job's work would not fit its window at
    ``max_gpus`` (``work_units > max_gpus * window_slots``), ``max_gpus`` is raised to
    ``ceil(work_units / window_slots)`` so that every generated job is plannable in principle.
    Job ids are ``<class>-<n>``; tokens are ``gpu_hours * tokens_per_gpu_hour``.
    """
    day_start = pd.Timestamp(day_start_utc)
    if day_start.tzinfo is None:
        raise JobError(f"day_start_utc must be tz-aware (UTC), got {day_start}")
    day_start = day_start.tz_convert("UTC")
    slots_per_day = 24 * 60 // slot_minutes
    known = set(site_names)
    rng = np.random.default_rng(seed)
    frames = []
    for name, cls in workload.classes.items():
        unknown = [s for s in cls.sites if s not in known]
        if unknown:
            raise JobError(
                f"workload class {name!r}: unknown site(s) {', '.join(unknown)}; known sites: "
                f"{', '.join(sorted(known))}"
            )
        n = cls.jobs
        gpu_hours = rng.uniform(*cls.gpu_hours, size=n)
        max_gpus = rng.integers(cls.max_gpus[0], cls.max_gpus[1], endpoint=True, size=n)
        release_slot = np.floor(rng.uniform(*cls.release_hour, size=n) * 60 / slot_minutes)
        window_slot = np.rint(rng.uniform(*cls.window_hours, size=n) * 60 / slot_minutes)
        release_slot = np.minimum(release_slot, slots_per_day - 1).astype(np.int64)
        end_slot = np.minimum(release_slot + np.maximum(window_slot, 1), slots_per_day).astype(
            np.int64
        )
        units = work_units(gpu_hours, slot_minutes)
        max_gpus = max_gpus_to_fit(max_gpus, units, end_slot - release_slot)
        slot = pd.Timedelta(minutes=slot_minutes)
        frames.append(
            pd.DataFrame(
                {
                    "job_id": [f"{name}-{i:05d}" for i in range(n)],
                    "gpu_hours": gpu_hours,
                    "max_gpus": max_gpus,
                    "release": day_start + release_slot * slot,
                    "deadline": day_start + end_slot * slot,
                    "sites": ";".join(cls.sites),
                    "preemptible": cls.preemptible,
                    "tokens": gpu_hours * cls.tokens_per_gpu_hour,
                }
            )
        )
    if not frames:
        return jobs_frame([])
    jobs = pd.concat(frames, ignore_index=True)
    log.info("generated %d jobs from %d workload classes", len(jobs), len(frames))
    return JOBS.canonical(jobs, source="generated jobs row")


def _ns(times: pd.Series) -> np.ndarray:
    """Tz-aware times as ns since the epoch (UTC); naive times raise ``TypeError``."""
    return times.array.tz_convert("UTC").as_unit("ns").asi8


def _raise(errors: list[str]) -> None:
    if not errors:
        return
    shown = errors[:_MAX_LISTED_ERRORS]
    more = f"\n  ... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
    raise JobError(f"{len(errors)} bad job row(s):\n  " + "\n  ".join(shown) + more)
