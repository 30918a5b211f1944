"""The policy interface and what a policy returns.

A policy is a small object with a ``name`` and one method, ``plan(problem) -> PlanResult``.
Policies build their plan as four integer arrays (job, site, slot, gpus) and hand them to
:func:`make_result`, which turns them into the plan table and scores the objective the same
way for every policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np
import pandas as pd

from scheduler.contracts import PLAN
from scheduler.jobs import unused_in_last_slot
from scheduler.labels import labels_at
from scheduler.problem import Problem
from scheduler.storage import StorageGuide, follow_surplus

__all__ = [
    "PlanArrays",
    "PlanResult",
    "PlanStatus",
    "Policy",
    "SupplyBasis",
    "make_result",
    "objective_kg",
    "site_moves",
    "unfinished_gpu_hours",
    "unfinished_penalty_kg",
]


class PlanStatus(StrEnum):
    """How a plan was found."""

    OPTIMAL = "OPTIMAL"  # within the optimizer's optimality tolerance of its bound
    FEASIBLE = "FEASIBLE"  # valid, with a gap to the bound above that tolerance
    HEURISTIC = "HEURISTIC"  # a heuristic's plan: valid, no bound


class SupplyBasis(StrEnum):
    """Which supply a plan was made on."""

    FORECAST = "forecast"
    ACTUAL = "actual"


@dataclass(frozen=True)
class PlanResult:
    """A policy's plan and how it was found.

    ``plan`` is a plan table (:data:`~scheduler.contracts.PLAN`; one row per job, site and slot
    with ``gpus >= 1``).
    ``objective_kg`` is grid CO2 of the plan on the supply it was planned on [kg], plus
    :func:`unfinished_penalty_kg` per GPU-slot of work left unplaced. ``best_bound_kg`` and
    ``gap = (objective - bound) / bound`` are set by policies that have a bound.
    ``unfinished_gpu_hours`` is indexed by ``job_id`` (every job, zeros included).
    ``supply_basis`` says which supply the plan was made on: ``"forecast"`` or ``"actual"``.
    ``ramp_cost_kg`` is the grid CO2 the sites' ramp limits cost, for policies that measure it
    (the optimizer: its load profile with the limits minus without them) [kg].
    ``positions`` is ``plan`` as indices into the jobs, sites and slots of the problem it was
    made for (:func:`make_result` sets it), so that scoring it there looks up no label; a
    result whose ``plan`` is replaced must drop it. ``storage_guide`` is how the plan runs the
    sites' storage units, for settlement to follow (``None``: the storage rule alone).
    """

    policy: str
    plan: pd.DataFrame
    unfinished_gpu_hours: pd.Series
    status: PlanStatus
    objective_kg: float
    solve_seconds: float
    best_bound_kg: float | None = None
    gap: float | None = None
    build_seconds: float = 0.0
    supply_basis: SupplyBasis = SupplyBasis.FORECAST
    notes: tuple[str, ...] = field(default_factory=tuple)
    ramp_cost_kg: float | None = None
    positions: PlanArrays | None = field(default=None, compare=False, repr=False)
    storage_guide: StorageGuide | None = field(default=None, compare=False, repr=False)

    @property
    def jobs_unfinished(self) -> list[str]:
        """Ids of jobs with work left unplaced."""
        return self.unfinished_gpu_hours.index[self.unfinished_gpu_hours > 0].tolist()


class Policy(Protocol):
    """Anything with a name that turns a problem into a plan; ``follows_forecast`` says whether
    a fresher forecast can change its plan (worth re-planning within the day)."""

    name: str
    follows_forecast: bool

    def plan(self, problem: Problem) -> PlanResult: ...


@dataclass(frozen=True)
class PlanArrays:
    """A plan as parallel integer arrays: ``gpus`` GPUs of job ``job`` at ``site`` in ``slot``."""

    job: np.ndarray
    site: np.ndarray
    slot: np.ndarray
    gpus: np.ndarray

    @classmethod
    def empty(cls) -> PlanArrays:
        return cls(*(np.zeros(0, dtype=np.int64) for _ in range(4)))

    @classmethod
    def concat(cls, parts: list[PlanArrays]) -> PlanArrays:
        if not parts:
            return cls.empty()
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts]).astype(np.int64)
                for f in ("job", "site", "slot", "gpus")
            )
        )

    def placed_units(self, n_jobs: int) -> np.ndarray:
        """GPU-slots placed per job."""
        return np.bincount(self.job, weights=self.gpus, minlength=n_jobs).astype(np.int64)


def unfinished_penalty_kg(problem: Problem) -> float:
    """Objective penalty per GPU-slot left unplaced [kg CO2-equivalent].

    Twice the dearest grid GPU-slot plus 1 kg: dearer than placing the work anywhere.
    """
    return 2.0 * float(problem.grid_kg_per_gpu_slot.max(initial=0.0)) + 1.0


def objective_kg(problem: Problem, arrays: PlanArrays, guide: StorageGuide | None = None) -> float:
    """The objective of a plan on the problem's supply: its grid energy weighed by
    :attr:`~scheduler.problem.Problem.objective_per_mwh` (grid CO2 [kg] by default) plus the
    unfinished-work penalty. Energy is drawn for the work as asked: a finished job's last
    GPU-slot only in part (:func:`~scheduler.jobs.unused_in_last_slot`). The sites' storage
    runs as settlement runs it (:func:`~scheduler.storage.follow_surplus`, following the plan's
    ``guide`` if it has one), so its stored green lowers the grid energy and grid charging adds
    to it."""
    shape = (len(problem.sites), problem.horizon.n_slots)
    gpus = np.zeros(shape)
    np.add.at(gpus, (arrays.site, arrays.slot), arrays.gpus)
    gpus -= unused_in_last_slot(arrays.job, arrays.site, arrays.slot, arrays.gpus,
                                problem.gpu_hours, problem.horizon.slot_minutes, shape)  # fmt: skip
    load = problem.base_load_mw[:, None] + gpus * problem.mw_per_gpu[:, None]
    supplied, bought = problem.green_mw, np.zeros_like(problem.green_mw)
    if problem.storage.n_units:
        stored = follow_surplus(
            problem.storage, load, supplied, problem.slot_hours, problem.soc_start_mwh, guide
        )
        supplied, bought = supplied + stored.discharge_mw, stored.grid_charge_mw
    grid_mwh = (np.maximum(load - supplied, 0) + bought) * problem.slot_hours
    missing = np.maximum(problem.work_units - arrays.placed_units(problem.n_jobs), 0)
    return float((grid_mwh * problem.objective_per_mwh).sum()) + unfinished_penalty_kg(
        problem
    ) * float(missing.sum())


def unfinished_gpu_hours(problem: Problem, arrays: PlanArrays) -> pd.Series:
    """The work each job has left unplaced by ``arrays`` [GPU-h], indexed by ``job_id`` (every
    job, zeros included), as :attr:`PlanResult.unfinished_gpu_hours`."""
    missing = np.maximum(problem.work_units - arrays.placed_units(problem.n_jobs), 0)
    index = pd.Index(problem.job_ids, name="job_id")
    return pd.Series(missing * problem.slot_hours, index=index, name="gpu_hours")


def make_result(
    problem: Problem,
    policy: str,
    arrays: PlanArrays,
    status: PlanStatus,
    solve_seconds: float,
    **extra,
) -> PlanResult:
    """Build a :class:`PlanResult` from plan arrays.

    Rows for the same job, site and slot are summed; rows with ``gpus == 0`` are dropped.
    """
    n_sites, n_slots = len(problem.sites), problem.horizon.n_slots
    key = (arrays.job * n_slots + arrays.slot) * n_sites + arrays.site  # sorts by job, slot, site
    unique, inverse = np.unique(key, return_inverse=True)
    gpus = np.bincount(inverse.ravel(), weights=arrays.gpus, minlength=len(unique)).astype(np.int64)
    keep = gpus > 0
    unique, gpus = unique[keep], gpus[keep]
    job, rest = np.divmod(unique, n_slots * n_sites)
    slot, site = np.divmod(rest, n_sites)
    plan = pd.DataFrame(
        {
            "job_id": labels_at(problem.job_ids, job),
            "site": labels_at(problem.site_names, site),
            "time": problem.horizon.times[slot],
            "gpus": gpus,
        },
        columns=PLAN.names,
    )
    arrays = PlanArrays(job, site, slot, gpus)
    return PlanResult(
        policy=policy,
        plan=plan,
        unfinished_gpu_hours=unfinished_gpu_hours(problem, arrays),
        status=status,
        objective_kg=objective_kg(problem, arrays, extra.get("storage_guide")),
        solve_seconds=solve_seconds,
        positions=arrays,
        **extra,
    )


def site_moves(job: np.ndarray, site: np.ndarray, slot: np.ndarray, n_jobs: int) -> np.ndarray:
    """Site changes per job ``[job]``.

    Walking a job's run slots in time order, every site it uses that it did not use in its
    previous run slot counts one entry; moves are entries minus one (so a job that stays at one
    site has 0, one split across two sites in a slot has 1).
    """
    if len(job) == 0:
        return np.zeros(n_jobs, dtype=np.int64)
    order = np.lexsort((site, slot, job))
    job, site, slot = job[order], site[order], slot[order]
    new_slot = np.ones(len(job), dtype=bool)
    new_slot[1:] = (job[1:] != job[:-1]) | (slot[1:] != slot[:-1])
    run = np.cumsum(new_slot)  # global run-slot counter; consecutive within a job
    n_sites = int(site.max()) + 1
    key = run * n_sites + site
    previous = (run - 1) * n_sites + site
    starts = np.ones(len(job), dtype=bool)
    starts[1:] = job[1:] != job[:-1]
    first_run_id = run[starts][np.cumsum(starts) - 1]
    first_run = run == first_run_id
    entered = first_run | ~np.isin(previous, key)
    entries = np.bincount(job, weights=entered, minlength=n_jobs).astype(np.int64)
    return np.maximum(entries - 1, 0)
