"""Scoring a plan: the site-load table and the metrics, one function for every policy.

Everything here is computed from the tables alone (plan, jobs, supply, sites, caps), so a plan
made on a forecast can be settled against actual supply by passing the actual supply table.

Per site and slot (``slot_h = slot_minutes / 60``)::

    load_mw       = gpus_busy * kw_per_gpu * pue / 1000 + base_load_mw
    green_used_mw = min(load_mw, green_mw) + storage_discharge_mw
    grid_mw       = load_mw - green_used_mw + storage_grid_charge_mw
    energy [MWh]  = power [MW] * slot_h

Storage (:mod:`scheduler.storage`) runs by its rule, or as the plan's guide says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scheduler.caps import broken_caps
from scheduler.config import Site
from scheduler.contracts import SITE_LOAD, CapType
from scheduler.horizon import Horizon
from scheduler.jobs import unused_in_last_slot, work_units
from scheduler.labels import label_index
from scheduler.problem import (
    LoadCap,
    Problem,
    hourly_profile,
    priced_per_mwh,
    purchased_green_mw,
    site_green_mw,
    tightest_caps_mw,
)
from scheduler.ramps import ramp_limits_mw, ramp_stats
from scheduler.storage import StorageFleet, StorageGuide, follow_surplus

if TYPE_CHECKING:
    from scheduler.policies.base import PlanArrays

__all__ = [
    "CAP_TOLERANCE_MW",
    "PlanMetrics",
    "PlanScore",
    "busy_gpus",
    "energy_totals",
    "green_spilled_mw",
    "plan_metrics",
    "problem_load_arrays",
    "score_plan",
    "site_load",
    "slot_index",
    "storage_end_mwh",
]

CAP_TOLERANCE_MW = 1e-6  # rounding slack when checking caps [MW]


def busy_gpus(plan: pd.DataFrame, site_names: Sequence[str], horizon: Horizon) -> np.ndarray:
    """GPUs busy per ``[site, slot]`` (int) from a plan table; rows outside are an error."""
    site, slot = _site_slot(plan, site_names, horizon)
    return _busy(site, slot, plan, len(site_names), horizon)


def _site_slot(
    plan: pd.DataFrame, site_names: Sequence[str], horizon: Horizon
) -> tuple[np.ndarray, np.ndarray]:
    """Each plan row's site and slot (positions); rows outside are an error."""
    if plan.empty:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    site = label_index(plan["site"], site_names)
    slot = slot_index(plan["time"], horizon)
    bad = (site < 0) | (slot < 0) | (slot >= horizon.n_slots)
    if bad.any():
        row = plan[bad].iloc[0]
        raise ValueError(
            f"plan row ({row['job_id']}, {row['site']}, {row['time']}) is outside the sites "
            f"{', '.join(site_names)} or the horizon {horizon.start} to {horizon.end}"
        )
    return site, slot


def _busy(
    site: np.ndarray, slot: np.ndarray, plan: pd.DataFrame, n_sites: int, horizon: Horizon
) -> np.ndarray:
    out = np.zeros((n_sites, horizon.n_slots), dtype=np.int64)
    if len(site):
        np.add.at(out, (site, slot), plan["gpus"].to_numpy(dtype=np.int64))
    return out


def site_load(
    plan: pd.DataFrame,
    supply: pd.DataFrame,
    sites: Sequence[Site],
    horizon: Horizon,
    caps: Sequence[LoadCap] = (),
    soc_start_mwh: np.ndarray | None = None,
    guide: StorageGuide | None = None,
    jobs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The site-load table (:data:`~scheduler.contracts.SITE_LOAD`), one row per site and slot.

    ``cap_mw`` is the tightest cap on grid draw (import limit and ``IMPORT_CAPACITY_LIMIT`` caps),
    ``load_cap_mw`` the tightest ``LOAD_LIMIT`` cap (``inf`` when none). ``cap_violation`` marks
    a slot where the plan has GPUs busy and grid or load exceeds its cap by more than
    :data:`CAP_TOLERANCE_MW`; a cap that base load alone breaks is not the plan's doing. The
    sites' storage follows :func:`~scheduler.storage.follow_surplus` from ``soc_start_mwh``
    ``[unit]`` (default: each unit's initial energy), and the plan's ``guide`` if it has one:
    what it discharges is green used. With the ``jobs`` table the load is drawn for the work as
    asked (:func:`idle_gpus`); without, for whole GPU-slots.
    """
    gpus, idle = _held_and_idle(plan, sites, horizon, jobs)
    arrays = _load_arrays(gpus, supply, sites, horizon, caps, soc_start_mwh, guide, idle)
    return _site_load_table(arrays, sites, horizon)


def _held_and_idle(
    plan: pd.DataFrame, sites: Sequence[Site], horizon: Horizon, jobs: pd.DataFrame | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """GPUs ``plan`` holds per ``[site, slot]`` and, with the ``jobs`` table, those of them idle
    (:func:`idle_gpus`; ``None`` without it)."""
    site, slot = _site_slot(plan, [s.name for s in sites], horizon)
    gpus = _busy(site, slot, plan, len(sites), horizon)
    if jobs is None:
        return gpus, None
    job = label_index(plan["job_id"], jobs["job_id"].to_numpy()) if len(plan) else site
    return gpus, idle_gpus(plan, jobs, job, site, slot, gpus.shape, horizon)


def _site_load_table(
    arrays: dict[str, np.ndarray], sites: Sequence[Site], horizon: Horizon
) -> pd.DataFrame:
    """The site-load table of :func:`site_load` from its columns as ``[site, slot]`` arrays."""
    return pd.DataFrame(
        {
            "time": np.tile(horizon.times, len(sites)),
            "site": np.repeat([s.name for s in sites], horizon.n_slots),
            **{name: arrays[name].ravel() for name in SITE_LOAD.names[2:]},
        }
    )


def _load_arrays(
    gpus: np.ndarray,
    supply: pd.DataFrame,
    sites: Sequence[Site],
    horizon: Horizon,
    caps: Sequence[LoadCap],
    soc_start_mwh: np.ndarray | None,
    guide: StorageGuide | None = None,
    idle: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The site-load columns as ``[site, slot]`` arrays for ``gpus`` busy ``[site, slot]``."""
    green = site_green_mw(supply, sites, horizon)
    carbon, price = (
        np.array([hourly_profile(getattr(s, name), horizon.times, s.timezone) for s in sites])
        for name in ("carbon_kg_per_mwh", "price_per_mwh")
    )
    price = priced_per_mwh(price, caps, sites, horizon)  # price events in force
    caps_mw = tightest_caps_mw(caps, sites, horizon)
    storage = StorageFleet.of([s.storage for s in sites])
    return _load_columns(
        gpus, green, sites, caps_mw, (carbon, price), horizon, storage, soc_start_mwh, guide, idle
    )


def problem_load_arrays(
    problem: Problem,
    gpus: np.ndarray,
    guide: StorageGuide | None = None,
    idle: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The site-load columns as ``[site, slot]`` arrays for ``gpus`` busy ``[site, slot]``, on
    ``problem``'s supply and caps, from the matrices it holds; storage following ``guide``,
    ``idle`` GPUs ``[site, slot]`` drawing nothing (:func:`idle_gpus`)."""
    return _load_columns(
        gpus, problem.green_mw, problem.sites, problem.caps_mw,
        (problem.carbon_kg_per_mwh, problem.price_per_mwh), problem.horizon, problem.storage,
        problem.soc_start_mwh, guide, idle,
    )  # fmt: skip


def _load_columns(
    gpus: np.ndarray,
    green: np.ndarray,
    sites: Sequence[Site],
    caps_mw: Mapping[CapType, np.ndarray],
    tariffs: tuple[np.ndarray, np.ndarray],
    horizon: Horizon,
    storage: StorageFleet,
    soc_start_mwh: np.ndarray | None,
    guide: StorageGuide | None = None,
    idle: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The columns (``idle`` GPUs ``[site, slot]`` are busy but draw nothing); ``green``
    includes the sites' green purchases, ``tariffs`` are the grid's carbon [kg CO2/MWh] and
    price [currency/MWh] ``[site, slot]``. Stored green discharged
    counts as green used, and a grid cap may be kept by discharging (the caps see the green
    supply plus what storage gives); energy a unit takes from the grid (as its plan's
    ``guide`` charges it) is grid drawn. A green purchase is paid whether used or not."""
    carbon, price = tariffs
    slot_hours = horizon.slot_hours
    purchase_price = np.array(
        [0.0 if s.green_purchase is None else s.green_purchase.price_per_mwh for s in sites]
    )
    mw_per_gpu = np.array([s.mw_per_gpu for s in sites])[:, None]
    idle_mw = np.zeros(gpus.shape) if idle is None else idle * mw_per_gpu
    load = _load_mw(gpus, sites) - idle_mw
    stored = follow_surplus(storage, load, green, slot_hours, soc_start_mwh, guide)
    green_used = np.minimum(load, green) + stored.discharge_mw
    # a discharge covering the deficit: 0, not -1 ulp
    grid = np.maximum(load - green_used, 0.0) + stored.grid_charge_mw
    violation = (gpus > 0) & broken_caps(
        caps_mw, load, green + stored.discharge_mw, CAP_TOLERANCE_MW
    )
    return {
        "gpus_busy": gpus,
        "load_mw": load,
        "idle_mw": idle_mw,
        "green_mw": green,
        "green_used_mw": green_used,
        "storage_charge_mw": stored.charge_mw,
        "storage_discharge_mw": stored.discharge_mw,
        "storage_grid_charge_mw": stored.grid_charge_mw,
        "soc_mwh": stored.site_soc_mwh(storage, len(sites)),
        "grid_mw": grid,
        "cap_mw": caps_mw[CapType.IMPORT_CAPACITY_LIMIT],
        "load_cap_mw": caps_mw[CapType.LOAD_LIMIT],
        "carbon_kg_per_mwh": carbon,
        "grid_co2_kg": grid * carbon * slot_hours,
        "grid_cost": grid * price * slot_hours,
        "purchase_cost": purchased_green_mw(sites, horizon) * purchase_price[:, None] * slot_hours,
        "cap_violation": violation,
    }


@dataclass(frozen=True)
class PlanMetrics:
    """How green a plan is and whether it did its work; units in the names.

    ``green_share`` is green energy used over energy used, matched slot by slot (base load
    included). A job's tokens are credited per GPU-slot run (``tokens / work_units``), so an
    unfinished job earns part of its tokens; a site-slot's green fraction is
    ``green_used_mw / load_mw``. Per site, the load's steps between adjacent slots (the first
    from ``initial_load_mw`` when given): the largest, their absolute sum (the swing) and how
    many are above the site's ramp limit (see :mod:`scheduler.ramps`).
    """

    energy_used_mwh: float
    green_used_mwh: float
    green_share: float  # [-], 0..1
    grid_mwh: float
    co2_t: float
    cost: float  # grid energy at its price plus green purchases at theirs [currency]
    purchase_cost: float  # the green purchases' part of cost (take or pay) [currency]
    green_unused_mwh: float  # green supply neither used nor stored (curtailed)
    storage_charged_mwh: float  # green taken into the sites' storage
    storage_discharged_mwh: float  # stored green given to the load, after losses
    storage_cycles: float  # discharged over the storage's energy capacity [-]; 0 without
    gpu_hours_placed: float
    jobs_unfinished: int  # jobs with work not placed by their deadline
    unfinished_gpu_hours: float
    cap_violations: int  # site-slots over a cap; must be 0
    tokens: float
    green_tokens: float
    tokens_by_site: dict[str, float]
    green_tokens_by_site: dict[str, float]
    largest_step_mw: dict[str, float]  # largest load change between adjacent slots [MW]
    total_swing_mw: dict[str, float]  # sum of absolute load changes [MW]
    slots_over_ramp: dict[str, int]  # steps above the site's ramp limit; must be 0

    def to_dict(self) -> dict[str, float | int | dict[str, float]]:
        """Plain values for JSON."""
        return asdict(self)


def plan_metrics(
    plan: pd.DataFrame,
    jobs: pd.DataFrame,
    supply: pd.DataFrame,
    sites: Sequence[Site],
    horizon: Horizon,
    caps: Sequence[LoadCap] = (),
    initial_load_mw: Sequence[float] | None = None,
    soc_start_mwh: np.ndarray | None = None,
    guide: StorageGuide | None = None,
) -> PlanMetrics:
    """Score a plan from the tables alone; pass the actual supply to settle a forecast plan.

    ``initial_load_mw`` ``[site]`` is the load before the first slot [MW] (the previous day's
    last slot), when known; ``soc_start_mwh`` ``[unit]`` the sites' storage before it [MWh]
    (default: each unit's initial energy), ``guide`` how the plan runs them.
    """
    site, slot = _site_slot(plan, [s.name for s in sites], horizon)
    busy = _busy(site, slot, plan, len(sites), horizon)
    job = label_index(plan["job_id"], jobs["job_id"].to_numpy()) if len(plan) else site
    idle = idle_gpus(plan, jobs, job, site, slot, busy.shape, horizon)
    load = _load_arrays(busy, supply, sites, horizon, caps, soc_start_mwh, guide, idle)
    return _metrics(plan, jobs, sites, horizon, initial_load_mw, load, site, slot, job)[0]


def storage_end_mwh(
    plan: pd.DataFrame,
    supply: pd.DataFrame,
    sites: Sequence[Site],
    horizon: Horizon,
    soc_start_mwh: np.ndarray | None = None,
    guide: StorageGuide | None = None,
    jobs: pd.DataFrame | None = None,
) -> np.ndarray:
    """Each storage unit's energy after the last slot of ``plan`` run on ``supply`` ``[unit]``
    [MWh], following ``guide`` (the load of the work as asked with the ``jobs`` table): where
    the next day starts from."""
    storage = StorageFleet.of([s.storage for s in sites])
    if storage.n_units == 0 or horizon.n_slots == 0:
        return storage.soc_initial_mwh if soc_start_mwh is None else np.asarray(soc_start_mwh)
    gpus, idle = _held_and_idle(plan, sites, horizon, jobs)
    load = _load_mw(gpus, sites)
    if idle is not None:  # as the site-load table draws it (_load_columns)
        load = load - idle * np.array([s.mw_per_gpu for s in sites])[:, None]
    green = site_green_mw(supply, sites, horizon)
    stored = follow_surplus(storage, load, green, horizon.slot_hours, soc_start_mwh, guide)
    return stored.soc_mwh[:, -1]


def idle_gpus(
    plan: pd.DataFrame,
    jobs: pd.DataFrame,
    job: np.ndarray,
    site: np.ndarray,
    slot: np.ndarray,
    shape: tuple[int, int],
    horizon: Horizon,
) -> np.ndarray:
    """GPUs ``plan`` holds but leaves idle ``[site, slot]``: the unused part of each finished
    job's last GPU-slot (:func:`~scheduler.jobs.unused_in_last_slot`); ``job``, ``site`` and
    ``slot`` are the rows' positions (``job`` -1 for a job not in ``jobs``)."""
    return unused_in_last_slot(job, site, slot, plan["gpus"].to_numpy(dtype=np.int64),
                               jobs["gpu_hours"].to_numpy(dtype=float), horizon.slot_minutes,
                               shape)  # fmt: skip


def green_spilled_mw(load: Mapping[str, np.ndarray]) -> np.ndarray:
    """Green supply neither used at once nor stored, from site-load columns (any shape) [MW]."""
    direct = load["green_used_mw"] - load["storage_discharge_mw"]
    from_green = load["storage_charge_mw"] - load.get("storage_grid_charge_mw", 0.0)
    return np.maximum(load["green_mw"] - direct - from_green, 0.0)


def _load_mw(gpus: np.ndarray, sites: Sequence[Site]) -> np.ndarray:
    """Each site's load for ``gpus`` busy ``[site, slot]``: GPUs x MW per GPU + base [MW]."""
    mw_per_gpu = np.array([s.mw_per_gpu for s in sites])[:, None]
    return gpus * mw_per_gpu + np.array([s.base_load_mw for s in sites])[:, None]


@dataclass(frozen=True)
class PlanScore:
    """A plan's site-load table (:func:`site_load`) and metrics (:func:`plan_metrics`), and
    where its rows fall ``[row]``: ``job`` (position in the jobs table, -1 when not in it),
    ``site`` and ``slot``."""

    site_load: pd.DataFrame
    metrics: PlanMetrics
    job: np.ndarray
    site: np.ndarray
    slot: np.ndarray


def score_plan(
    problem: Problem,
    plan: pd.DataFrame,
    positions: PlanArrays | None = None,
    guide: StorageGuide | None = None,
) -> PlanScore:
    """:func:`site_load` and :func:`plan_metrics` of ``plan`` on ``problem``'s tables (its
    supply, caps and load before the first slot), the plan's labels looked up once; not at all
    when the caller has the plan's ``positions`` in ``problem`` (its rows as job, site and slot
    indices, as :attr:`~scheduler.policies.base.PlanResult.positions`); storage following
    ``guide``."""
    sites, horizon = problem.sites, problem.horizon
    if positions is None:
        site, slot = _site_slot(plan, problem.site_names, horizon)
        job = label_index(plan["job_id"], problem.job_ids) if len(plan) else site
    else:
        job, site, slot = positions.job, positions.site, positions.slot
    busy = _busy(site, slot, plan, len(sites), horizon)
    idle = idle_gpus(plan, problem.jobs, job, site, slot, busy.shape, horizon)
    load = problem_load_arrays(problem, busy, guide, idle)
    metrics, job = _metrics(
        plan, problem.jobs, sites, horizon, problem.initial_load_mw, load, site, slot, job
    )
    return PlanScore(_site_load_table(load, sites, horizon), metrics, job, site, slot)


def _metrics(
    plan: pd.DataFrame,
    jobs: pd.DataFrame,
    sites: Sequence[Site],
    horizon: Horizon,
    initial_load_mw: Sequence[float] | None,
    load: dict[str, np.ndarray],
    site: np.ndarray,
    slot: np.ndarray,
    job: np.ndarray | None = None,
) -> tuple[PlanMetrics, np.ndarray]:
    """The metrics of ``plan`` from its site-load columns ``load`` and each row's site and
    slot; and each row's job (position in ``jobs``, -1 when not in it; looked up unless
    given)."""
    names = [s.name for s in sites]
    up_mw, down_mw = ramp_limits_mw(sites, horizon.slot_minutes)
    initial = None if initial_load_mw is None else np.asarray(initial_load_mw, dtype=float)
    # ramps on the load of the GPUs held (whole GPU-slots), which the plan and the ramp rules
    # bound: a job ending inside its last slot is the job's step, not the plan's
    ramps = ramp_stats(load["load_mw"] + load["idle_mw"], up_mw, down_mw, initial)
    slot_h = horizon.slot_hours
    totals = energy_totals(load["load_mw"], load["green_used_mw"], load["grid_mw"], slot_h)
    required = work_units(jobs["gpu_hours"].to_numpy(dtype=float), horizon.slot_minutes)
    if job is None:
        job = label_index(plan["job_id"], jobs["job_id"].to_numpy())
    known = job >= 0  # rows of jobs not in the table place no work of theirs
    gpus = plan["gpus"].to_numpy()
    placed = np.bincount(job[known], weights=gpus[known], minlength=len(jobs)).astype(np.int64)
    missing = np.maximum(required - placed, 0)

    tokens_per_unit = jobs["tokens"].to_numpy(dtype=float) / np.maximum(required, 1)
    row_tokens = np.where(known, gpus * tokens_per_unit[np.where(known, job, 0)], 0.0)
    green_fraction = np.divide(
        load["green_used_mw"],
        load["load_mw"],
        out=np.zeros_like(load["load_mw"]),
        where=load["load_mw"] > 0,
    )
    row_green_tokens = row_tokens * green_fraction[site, slot]
    discharged_mwh = float(load["storage_discharge_mw"].sum() * slot_h)
    capacity_mwh = float(StorageFleet.of([s.storage for s in sites]).energy_mwh.sum())
    metrics = PlanMetrics(
        energy_used_mwh=totals["load_mwh"],
        green_used_mwh=totals["green_used_mwh"],
        green_share=totals["green_share"],
        grid_mwh=float(load["grid_mw"].sum() * slot_h),
        co2_t=float(load["grid_co2_kg"].sum() / 1000.0),
        cost=float(load["grid_cost"].sum() + load["purchase_cost"].sum()),
        purchase_cost=float(load["purchase_cost"].sum()),
        green_unused_mwh=float(green_spilled_mw(load).sum() * slot_h),
        storage_charged_mwh=float(load["storage_charge_mw"].sum() * slot_h),
        storage_discharged_mwh=discharged_mwh,
        storage_cycles=discharged_mwh / capacity_mwh if capacity_mwh > 0 else 0.0,
        gpu_hours_placed=float(placed.sum() * slot_h),
        jobs_unfinished=int((missing > 0).sum()),
        unfinished_gpu_hours=float(missing.sum() * slot_h),
        cap_violations=int(load["cap_violation"].sum()),
        tokens=float(row_tokens.sum()),
        green_tokens=float(row_green_tokens.sum()),
        tokens_by_site={n: float(row_tokens[site == s].sum()) for s, n in enumerate(names)},
        green_tokens_by_site={
            n: float(row_green_tokens[site == s].sum()) for s, n in enumerate(names)
        },
        largest_step_mw=dict(zip(names, ramps.largest_step_mw.tolist(), strict=True)),
        total_swing_mw=dict(zip(names, ramps.total_swing_mw.tolist(), strict=True)),
        slots_over_ramp=dict(zip(names, ramps.slots_over_ramp.tolist(), strict=True)),
    )
    return metrics, job


def energy_totals(
    load_mw: np.ndarray, green_used_mw: np.ndarray, grid_mw: np.ndarray, slot_hours: float
) -> dict:
    """Energy of a load profile [MWh] and its green share [-]: ``load_mwh``,
    ``green_used_mwh``, ``grid_mwh`` (load minus green used, plus what storage took from the
    grid) and ``green_share`` (green used over load, matched slot by slot), from loads, green
    used and grid draw per site and slot [MW]."""
    load_mwh = float(np.sum(load_mw) * slot_hours)
    green_mwh = float(np.sum(green_used_mw) * slot_hours)
    return {
        "load_mwh": load_mwh,
        "green_used_mwh": green_mwh,
        "grid_mwh": float(np.sum(grid_mw) * slot_hours),
        "green_share": green_mwh / load_mwh if load_mwh > 0 else 0.0,
    }


def slot_index(times: pd.Series, horizon: Horizon) -> np.ndarray:
    """Slot number of each time in ``horizon``; times off the slot grid are an error."""
    time_ns = pd.DatetimeIndex(pd.to_datetime(times, utc=True)).as_unit("ns").asi8
    slot_ns = horizon.slot_minutes * 60 * 10**9
    offset_ns = time_ns - horizon.start.as_unit("ns").value
    if (offset_ns % slot_ns).any():
        raise ValueError("plan times must be slot starts of the horizon")
    return offset_ns // slot_ns
