"""The divisible planning problem as a min-cost flow (OR-Tools ``SimpleMinCostFlow``).

One unit of flow is one GPU busy for one slot (a GPU-slot). Network::

    group --(cap: group GPUs/slot)--> (group, slot) --> (site, slot) --tiers--> sink
    group --(cap: group work, penalty cost)---------------------------------> sink

* A **group** is a set of jobs merged by :func:`group_jobs`; its node supplies the group's work.
  A group with one allowed site skips the ``(group, slot)`` node.
* **Tiers** (:func:`site_tiers`) carry a site-slot's GPUs to the sink at convex piecewise-linear
  cost: GPUs that green supply covers after base load cost nothing; the one GPU that green
  covers only in part costs its grid share; the rest cost their full grid CO2. For whole GPUs
  this equals the exact grid CO2 ``carbon * max(0, load - green) * slot_h``. The tiers' total
  capacity is the site-slot's GPU capacity under site size, grid import limit and caps.
* Work that fits nowhere flows on the penalty arc and is reported as unplaced.

Exact aggregation: jobs with the same window, allowed sites and duration
``d = ceil(work / max_gpus)`` merge into one group with per-slot cap ``sum(max_gpus)``. Any
integral group flow can be split back to jobs (each job at most ``max_gpus`` per slot): for
``k < d`` slots a job can take ``k * max_gpus < work``, so every ``k`` slots of the group can
absorb ``k * cap``; for ``k >= d`` every job can finish. By Gale's theorem the split exists, so
the flow optimum is the optimum of the time-indexed model (see :mod:`.disaggregate`).
Merging by window and sites only (cap ``sum(max_gpus)``) relaxes the model: that flow's cost is
the LP bound.

Costs are scaled to int64; tie-breaks (cheaper grid price, then earlier slot) are at most
1e-7 of the dearest grid GPU-slot, so they never trade away more than that share of CO2.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from ortools.graph.python import min_cost_flow

from scheduler.policies.base import unfinished_penalty_kg
from scheduler.problem import Problem

__all__ = ["FlowResult", "Groups", "SiteTiers", "group_jobs", "site_tiers", "solve_flow"]

log = logging.getLogger(__name__)

_TIE_PRICE = 1e-7  # price tie-break, share of the dearest grid GPU-slot cost
_TIE_SLOT = 1e-9  # earlier-slot tie-break per slot index, same unit
_INT_BUDGET = 2**62  # int64 headroom for OR-Tools' cost scaling
_GPU_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Groups:
    """Jobs merged into flow groups; arrays ``[group]`` unless noted."""

    job_group: np.ndarray  # [job] group of each job, -1 when left out
    first: np.ndarray  # first usable slot
    end: np.ndarray  # end slot, exclusive
    site_mask: np.ndarray  # [group, site] allowed sites
    cap: np.ndarray  # GPUs per slot
    work: np.ndarray  # GPU-slots

    @property
    def n(self) -> int:
        return len(self.work)


def group_jobs(problem: Problem, jobs: np.ndarray, site_mask: np.ndarray, exact: bool) -> Groups:
    """Merge ``jobs`` (indices) by window and allowed sites, and by duration and preemptibility
    when ``exact`` (see the module docstring); ``site_mask`` is ``[job, site]``."""
    n_sites = site_mask.shape[1]
    site_code = site_mask[jobs].astype(np.int64) @ (1 << np.arange(n_sites, dtype=np.int64))
    columns = [problem.release_slot[jobs], problem.deadline_slot[jobs], site_code]
    if exact:
        columns += [problem.duration_slots[jobs], problem.preemptible[jobs].astype(np.int64)]
    keys = np.stack(columns, axis=1) if len(jobs) else np.zeros((0, len(columns)), dtype=np.int64)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    job_group = np.full(problem.n_jobs, -1, dtype=np.int64)
    job_group[jobs] = inverse
    n_groups = len(unique)
    return Groups(
        job_group=job_group,
        first=unique[:, 0].astype(np.int64),
        end=unique[:, 1].astype(np.int64),
        site_mask=((unique[:, 2:3] >> np.arange(n_sites)) & 1).astype(bool),
        cap=np.bincount(inverse, weights=problem.max_gpus[jobs], minlength=n_groups).astype(
            np.int64
        ),
        work=np.bincount(inverse, weights=problem.work_units[jobs], minlength=n_groups).astype(
            np.int64
        ),
    )


@dataclass(frozen=True)
class SiteTiers:
    """Convex cost tiers of the GPUs per site and slot; arrays ``[tier, site, slot]``."""

    capacity: np.ndarray  # GPUs (int)
    co2_kg: np.ndarray  # grid CO2 per GPU-slot [kg]
    grid_share: np.ndarray  # share of a GPU's energy drawn from the grid [-]
    fixed_co2_kg: float  # grid CO2 of base load and fixed GPUs [kg]
    fixed_grid_mwh: float  # their grid energy [MWh]


def site_tiers(problem: Problem, fixed_gpus: np.ndarray) -> SiteTiers:
    """Tiers for the GPUs still free when ``fixed_gpus`` ``[site, slot]`` are already busy."""
    total = problem.capacity_with(fixed_gpus)
    green = problem.green_gpus - fixed_gpus  # GPUs green covers beyond base and fixed load
    whole = np.clip(np.floor(green + _GPU_TOLERANCE), 0, None)
    partial_share = np.where(green > 0, 1.0 - (green - whole), 1.0)  # grid share of next GPU
    has_partial = (green > 0) & (partial_share > _GPU_TOLERANCE) & (partial_share < 1.0)
    tier0 = np.minimum(whole.astype(np.int64), total)
    tier1 = np.minimum(has_partial.astype(np.int64), total - tier0)
    tier2 = total - tier0 - tier1
    share = np.stack(
        [np.zeros_like(green), np.where(has_partial, partial_share, 1.0), np.ones_like(green)]
    )
    fixed_load = problem.base_load_mw[:, None] + fixed_gpus * problem.mw_per_gpu[:, None]
    fixed_grid = np.maximum(fixed_load - problem.green_mw, 0) * problem.slot_hours
    return SiteTiers(
        capacity=np.stack([tier0, tier1, tier2]),
        co2_kg=share * problem.grid_kg_per_gpu_slot[None],
        grid_share=share,
        fixed_co2_kg=float((fixed_grid * problem.carbon_kg_per_mwh).sum()),
        fixed_grid_mwh=float(fixed_grid.sum()),
    )


@dataclass(frozen=True)
class FlowResult:
    """A solved flow: GPUs of group ``group`` at ``site`` in ``slot`` (rows with flow > 0)."""

    status: str
    group: np.ndarray
    site: np.ndarray
    slot: np.ndarray
    gpus: np.ndarray
    unplaced: np.ndarray  # [group] GPU-slots left on the penalty arc
    co2_kg: float  # grid CO2 incl. fixed load, plus the unplaced penalty [kg]
    grid_mwh: float  # grid energy incl. fixed load [MWh]
    seconds: float
    n_nodes: int
    n_arcs: int


def solve_flow(problem: Problem, groups: Groups, tiers: SiteTiers, tie_break: bool) -> FlowResult:
    """Build and solve the network of the module docstring; costs read back in float."""
    began = time.perf_counter()
    n_sites, n_slots = len(problem.sites), problem.horizon.n_slots
    n_groups = groups.n

    # data: (group, slot) pairs of every group's window
    lengths = groups.end - groups.first
    pair_group = np.repeat(np.arange(n_groups), lengths)
    pair_slot = groups.first[pair_group] + (
        np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    )
    multi = groups.site_mask.sum(axis=1) > 1
    pair_multi = multi[pair_group]

    # variables (nodes): sink, groups, site-slots, (group, slot) of multi-site groups
    sink = 0
    group_node = 1 + np.arange(n_groups)
    site_slot_base = 1 + n_groups
    pair_node = np.full(len(pair_group), -1, dtype=np.int64)
    pair_node[pair_multi] = site_slot_base + n_sites * n_slots + np.arange(pair_multi.sum())
    n_nodes = site_slot_base + n_sites * n_slots + int(pair_multi.sum())

    # costs
    total_work = int(groups.work.sum())
    penalty_kg = unfinished_penalty_kg(problem)
    scale = (
        min(_INT_BUDGET / (4 * (n_nodes + 1)), _INT_BUDGET / (2 * (total_work + 1))) / penalty_kg
    )
    unit = tiers.co2_kg * scale
    if tie_break:
        price_gpu_slot = problem.price_per_mwh * problem.mw_per_gpu[:, None] * problem.slot_hours
        dearest = max(float(unit.max()), 1.0)
        price_norm = max(float(price_gpu_slot.max()), 1e-12)
        unit = unit + tiers.grid_share * (price_gpu_slot / price_norm)[None] * _TIE_PRICE * dearest
        unit = unit + np.arange(n_slots)[None, None, :] * max(1.0, _TIE_SLOT * dearest)
    unit = np.rint(unit).astype(np.int64)

    # constraints (arcs)
    tails, heads, caps, costs, kinds = [], [], [], [], []

    def arcs(tail, head, cap, cost, kind: int) -> None:
        tails.append(np.asarray(tail, dtype=np.int64))
        heads.append(np.asarray(head, dtype=np.int64))
        caps.append(np.broadcast_to(np.asarray(cap, dtype=np.int64), len(tails[-1])))
        costs.append(np.broadcast_to(np.asarray(cost, dtype=np.int64), len(tails[-1])))
        kinds.append(np.full(len(tails[-1]), kind, dtype=np.int8))

    site_free = tiers.capacity.sum(axis=0)  # [site, slot]
    # group -> (group, slot) for multi-site groups: the group's per-slot GPU cap
    g = pair_group[pair_multi]
    arcs(group_node[g], pair_node[pair_multi], groups.cap[g], 0, kind=0)
    # (group, slot) -> (site, slot), or group -> (site, slot) for single-site groups
    x_group, x_site, x_slot = [], [], []
    for s in range(n_sites):
        pick = groups.site_mask[pair_group, s] & (site_free[s, pair_slot] > 0)
        tail = np.where(pair_multi[pick], pair_node[pick], group_node[pair_group[pick]])
        arcs(
            tail,
            site_slot_base + s * n_slots + pair_slot[pick],
            groups.cap[pair_group[pick]],
            0,
            kind=1,
        )
        x_group.append(pair_group[pick])
        x_site.append(np.full(int(pick.sum()), s))
        x_slot.append(pair_slot[pick])
    # (site, slot) -> sink tiers
    for k in range(tiers.capacity.shape[0]):
        s, t = np.nonzero(tiers.capacity[k] > 0)
        arcs(
            site_slot_base + s * n_slots + t,
            np.full(len(s), sink),
            tiers.capacity[k, s, t],
            unit[k, s, t],
            kind=2 + k,
        )
    # group -> sink: unplaceable work at the penalty
    penalty = int(np.rint(penalty_kg * scale))
    arcs(group_node, np.full(n_groups, sink), groups.work, penalty, kind=9)

    tails_a, heads_a = np.concatenate(tails), np.concatenate(heads)
    caps_a, costs_a, kinds_a = np.concatenate(caps), np.concatenate(costs), np.concatenate(kinds)
    smcf = min_cost_flow.SimpleMinCostFlow()
    arc_ids = smcf.add_arcs_with_capacity_and_unit_cost(tails_a, heads_a, caps_a, costs_a)
    supplies = np.zeros(n_nodes, dtype=np.int64)
    supplies[group_node] = groups.work
    supplies[sink] = -total_work
    smcf.set_nodes_supplies(np.arange(n_nodes), supplies)
    built = time.perf_counter()

    # solve
    status = smcf.solve()
    solved = time.perf_counter()
    status_name = getattr(status, "name", str(status))
    if status != smcf.OPTIMAL:
        raise RuntimeError(
            f"min-cost flow ended with status {status_name}; its network is always feasible"
        )

    # read back
    flow = smcf.flows(arc_ids)
    placement = kinds_a == 1
    x_flow = flow[placement]
    keep = x_flow > 0
    groups_x, sites_x, slots_x = (np.concatenate(a)[keep] for a in (x_group, x_site, x_slot))
    unplaced = flow[kinds_a == 9]
    co2 = tiers.fixed_co2_kg + penalty_kg * float(unplaced.sum())
    grid_mwh = tiers.fixed_grid_mwh
    mwh_per_gpu_slot = problem.mw_per_gpu[:, None] * problem.slot_hours
    for k in range(tiers.capacity.shape[0]):
        s, t = np.nonzero(tiers.capacity[k] > 0)
        f = flow[kinds_a == 2 + k]
        co2 += float((f * tiers.co2_kg[k, s, t]).sum())
        grid_mwh += float((f * tiers.grid_share[k, s, t] * mwh_per_gpu_slot[s, 0]).sum())
    log.info(
        "min-cost flow: %d groups, %d nodes, %d arcs; built %.2f s, solved %.2f s",
        n_groups,
        n_nodes,
        len(tails_a),
        built - began,
        solved - built,
    )
    return FlowResult(
        status=status_name,
        group=groups_x,
        site=sites_x,
        slot=slots_x,
        gpus=x_flow[keep].astype(np.int64),
        unplaced=unplaced.astype(np.int64),
        co2_kg=co2,
        grid_mwh=grid_mwh,
        seconds=solved - began,
        n_nodes=n_nodes,
        n_arcs=len(tails_a),
    )
