"""The divisible planning problem as a min-cost flow (OR-Tools ``SimpleMinCostFlow``).

One unit of flow is one GPU busy for one slot (a GPU-slot). Network::

    group --(cap: group GPUs/slot)--> (group, slot) --> (site, slot) --tiers--> sink
    group --(cap: group work, penalty cost)---------------------------------> sink

* A **group** is a set of jobs merged by :func:`group_jobs`; its node supplies the group's work.
  A ``(group, slot)`` node exists only where two or more of the group's allowed sites have
  free GPUs in the slot; where one has, the group's arc goes straight to that site-slot (with
  the same cap), and slots where none has, or where the group's cap is 0, get no arc at all.
  Under tight caps most slots are full, so the network shrinks to the room that is left.
* **Tiers** (:func:`site_tiers`) carry a site-slot's GPUs to the sink at convex piecewise-linear
  cost: GPUs that green supply covers after base load cost nothing; the one GPU that green
  covers only in part costs its grid share; the rest cost their full grid CO2. For whole GPUs
  this equals the exact grid CO2 ``carbon * max(0, load - green) * slot_h``. The tiers' total
  capacity is the site-slot's GPU capacity under site size, grid import limit and caps.
* Work that fits nowhere flows on the penalty arc and is reported as unplaced.
* With a load profile (:meth:`SiteTiers.within`, the optimizer's ramp-aware profile) each tier
  is split at the profile: GPUs above it cost a premium, so the flow fills the profile first.

Aggregation (:func:`group_jobs`). Jobs with the same window and allowed sites merge into one
group with per-slot cap ``sum(max_gpus)``: this *relaxes* the time-indexed model (every plan
maps to a group flow of the same cost), so that flow's cost is the LP bound.

For planning, a group must be *splittable*: every integral group flow must split back to jobs,
each at most ``max_gpus`` per slot and at most its work. By Gale's theorem that holds iff in any
``k`` slots the group flow is at most ``F(k) = sum_j min(work_j, k * max_gpus_j)``. With a
per-slot cap ``C`` the flow in ``k`` slots is at most ``min(k * C, sum work)``, and
``F(k) = sum work`` once ``k >= D``, the longest duration ``d = ceil(work / max_gpus)`` in the
group; ``F(k) / k`` does not grow with ``k``. So the largest cap that keeps any flow splittable
is ``C* = floor(F(D - 1) / (D - 1))``. Jobs of one duration get ``C* = sum(max_gpus)`` (exact:
no restriction at all); mixing durations costs flexibility, so planning groups also split by
duration bucket (durations within a factor :data:`DURATION_BUCKET_RATIO`), trading a small
restriction (measured as the gap to the bound) for a much smaller network.

Costs: every arc with a cost ends at the sink (tiers and penalty), so only the *order* of the
costs decides the optimum, and the solver gets each cost's rank among the distinct costs: small
integers (cost scaling runs ``log(n * max cost)`` phases; ranks take a half to a third of the
time of costs scaled to integers of 2**24 for the dearest GPU-slot, as used before) and no
rounding. Why: the vectors of flows on
the sink arcs that carry all the work are the bases of a polymatroid (``r(X)`` = the most flow
the arcs ``X`` can carry), and a base ``x`` minimises ``sum c x`` iff ``x(L) = r(L)`` for every
level set ``L = {arcs with c <= c0}``, since ``sum c x = c_max W - sum_i (c_(i+1) - c_(i))
x(L_i)``, each ``x(L_i)`` at most ``r(L_i)`` and the greedy base meets them all. Ranks keep the
level sets, so both costs have the same optimal flows. Where several flows tie, the solver may
return another one with ranks than with scaled costs: the same cost, but the optimizer's bound
flow feeds the load profile and the blocks, so its final plan can change (measured -6e-4 to
+7e-4 of its CO2, either way). CO2 is read back in floating point
from the flows. The price tie-break adds at most 1e-5 of the dearest grid GPU-slot per
GPU-slot, so it can trade away at most that share of CO2.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
from ortools.graph.python import min_cost_flow

from scheduler.policies.base import unfinished_penalty_kg
from scheduler.problem import Problem

__all__ = [
    "DURATION_BUCKET_RATIO",
    "EXACT",
    "FlowResult",
    "Groups",
    "SiteTiers",
    "fixed_grid_mwh",
    "group_jobs",
    "site_tiers",
    "solve_flow",
]

log = logging.getLogger(__name__)

DURATION_BUCKET_RATIO = 1.5  # planning groups mix job durations within this factor
EXACT = 1.0  # a duration ratio of 1: one duration per group, no restriction
_TIE_PRICE = 1e-5  # price tie-break, share of the dearest grid GPU-slot cost
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
    slot_cap: np.ndarray | None = None  # [group, slot] GPUs per slot, overrides ``cap``

    @property
    def n(self) -> int:
        return len(self.work)

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(group, slot, cap)`` of every slot in every group's window."""
        lengths = self.end - self.first
        group = np.repeat(np.arange(self.n), lengths)
        slot = (
            self.first[group]
            + np.arange(lengths.sum())
            - np.repeat(np.cumsum(lengths) - lengths, lengths)
        )
        cap = self.cap[group] if self.slot_cap is None else self.slot_cap[group, slot]
        return group, slot, cap


def group_jobs(
    problem: Problem,
    jobs: np.ndarray,
    site_mask: np.ndarray,
    duration_ratio: float | None = None,
    by_preemptible: bool = False,
) -> Groups:
    """Merge ``jobs`` (indices) by window and allowed sites (``site_mask`` is ``[job, site]``).

    ``duration_ratio=None`` gives the relaxed groups of the bound (cap ``sum(max_gpus)``).
    Otherwise groups also split by duration bucket ``floor(log(d) / log(duration_ratio))`` (by
    duration itself for ``duration_ratio <= EXACT``) and
    take the splittable cap ``C*`` of the module docstring; a group whose ``C*`` would not let
    it finish in its window is split by exact duration instead. ``by_preemptible`` also splits
    preemptible from non-preemptible jobs.
    """
    duration = problem.duration_slots[jobs]
    if duration_ratio is None:
        return _groups(
            problem, jobs, site_mask, np.zeros(len(jobs), np.int64), by_preemptible, False
        )
    if duration_ratio <= EXACT:
        bucket = duration
    else:
        bucket = np.floor(np.log(duration) / np.log(duration_ratio) + 1e-9).astype(np.int64)
    groups = _groups(problem, jobs, site_mask, bucket, by_preemptible, True)
    short = groups.cap * (groups.end - groups.first) < groups.work
    if short.any():
        exact = short[groups.job_group[jobs]]
        bucket = np.where(exact, -duration, bucket)  # negative codes: one duration per group
        groups = _groups(problem, jobs, site_mask, bucket, by_preemptible, True)
    return groups


def _groups(
    problem: Problem,
    jobs: np.ndarray,
    site_mask: np.ndarray,
    bucket: np.ndarray,
    by_preemptible: bool,
    splittable: bool,
) -> Groups:
    n_sites = site_mask.shape[1]
    site_code = site_mask[jobs].astype(np.int64) @ (1 << np.arange(n_sites, dtype=np.int64))
    preemptible = problem.preemptible[jobs].astype(np.int64) * by_preemptible
    columns = [
        problem.release_slot[jobs],
        problem.deadline_slot[jobs],
        site_code,
        bucket,
        preemptible,
    ]
    keys = np.stack(columns, axis=1) if len(jobs) else np.zeros((0, len(columns)), dtype=np.int64)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    n_groups = len(unique)
    job_group = np.full(problem.n_jobs, -1, dtype=np.int64)
    job_group[jobs] = inverse
    max_gpus, work = problem.max_gpus[jobs], problem.work_units[jobs]
    cap = np.bincount(inverse, weights=max_gpus, minlength=n_groups)
    if splittable:
        longest = np.zeros(n_groups, dtype=np.int64)
        np.maximum.at(longest, inverse, problem.duration_slots[jobs])
        k = np.maximum(longest - 1, 1)
        f = np.bincount(
            inverse, weights=np.minimum(work, k[inverse] * max_gpus), minlength=n_groups
        )
        cap = np.where(longest > 1, np.floor(f / k + 1e-9), cap)
    return Groups(
        job_group=job_group,
        first=unique[:, 0].astype(np.int64),
        end=unique[:, 1].astype(np.int64),
        site_mask=((unique[:, 2:3] >> np.arange(n_sites)) & 1).astype(bool),
        cap=cap.astype(np.int64),
        work=np.bincount(inverse, weights=work, minlength=n_groups).astype(np.int64),
    )


@dataclass(frozen=True)
class SiteTiers:
    """Convex cost tiers of the GPUs per site and slot; arrays ``[tier, site, slot]``."""

    capacity: np.ndarray  # GPUs (int)
    co2_kg: np.ndarray  # grid CO2 per GPU-slot [kg]
    grid_share: np.ndarray  # share of a GPU's energy drawn from the grid [-]
    fixed_co2_kg: float  # grid CO2 of base load and fixed GPUs [kg]
    fixed_grid_mwh: float  # their grid energy [MWh]
    premium_kg: np.ndarray | None = None  # cost added to a tier's GPU-slot in the flow [kg]

    def within(self, profile_gpus: np.ndarray, premium_kg: float) -> SiteTiers:
        """Each tier split at ``profile_gpus`` ``[site, slot]`` free GPUs (filled tier by tier):
        the part above the profile costs ``premium_kg`` more per GPU-slot in the flow, so the
        flow fills the profile first and leaves it only for work the profile cannot carry."""
        before = np.cumsum(self.capacity, axis=0) - self.capacity
        inside = np.clip(profile_gpus[None] - before, 0, self.capacity)
        premium = np.concatenate(
            [np.zeros_like(self.co2_kg), np.full_like(self.co2_kg, premium_kg)]
        )
        return replace(
            self,
            capacity=np.concatenate([inside, self.capacity - inside]),
            co2_kg=np.concatenate([self.co2_kg, self.co2_kg]),
            grid_share=np.concatenate([self.grid_share, self.grid_share]),
            premium_kg=premium,
        )


def fixed_grid_mwh(problem: Problem, fixed_gpus: np.ndarray) -> np.ndarray:
    """Grid energy of base load and ``fixed_gpus`` ``[site, slot]`` on the planning supply,
    without storage ``[site, slot]`` [MWh]."""
    fixed_load = problem.base_load_mw[:, None] + fixed_gpus * problem.mw_per_gpu[:, None]
    return np.maximum(fixed_load - problem.green_mw, 0) * problem.slot_hours


def site_tiers(problem: Problem, fixed_gpus: np.ndarray, continuous: bool = False) -> SiteTiers:
    """Tiers for the GPUs still free when ``fixed_gpus`` ``[site, slot]`` are already busy.

    ``continuous``: for GPUs counted in fractions (an LP over the work as asked), the green
    tier ends where green does (float capacities, no partial GPU), so every fraction of a GPU
    costs exactly its grid energy; the whole-GPU tiers cost the partial GPU its average."""
    total = problem.capacity_with(fixed_gpus)
    green = problem.green_gpus - fixed_gpus  # GPUs green covers beyond base and fixed load
    if continuous:
        tier0 = np.clip(green, 0, total)
        return _tiers(problem, fixed_gpus, [tier0, np.zeros_like(tier0), total - tier0],
                      [np.zeros_like(green), np.ones_like(green), np.ones_like(green)])  # fmt: skip
    whole = np.clip(np.floor(green + _GPU_TOLERANCE), 0, None)
    partial_share = np.where(green > 0, 1.0 - (green - whole), 1.0)  # grid share of next GPU
    has_partial = (green > 0) & (partial_share > _GPU_TOLERANCE) & (partial_share < 1.0)
    tier0 = np.minimum(whole.astype(np.int64), total)
    tier1 = np.minimum(has_partial.astype(np.int64), total - tier0)
    tier2 = total - tier0 - tier1
    share = [np.zeros_like(green), np.where(has_partial, partial_share, 1.0), np.ones_like(green)]
    return _tiers(problem, fixed_gpus, [tier0, tier1, tier2], share)


def _tiers(
    problem: Problem, fixed_gpus: np.ndarray, capacity: list[np.ndarray], share: list[np.ndarray]
) -> SiteTiers:
    """The tiers of ``capacity`` GPUs each ``[site, slot]`` drawing ``share`` of their energy
    from the grid, above ``fixed_gpus``."""
    grid_share = np.stack(share)
    fixed_grid = fixed_grid_mwh(problem, fixed_gpus)
    return SiteTiers(
        capacity=np.stack(capacity),
        co2_kg=grid_share * problem.grid_kg_per_gpu_slot[None],
        grid_share=grid_share,
        fixed_co2_kg=float((fixed_grid * problem.objective_per_mwh).sum()),
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

    def rows(self, keep: np.ndarray) -> FlowResult:
        """The flow rows where ``keep`` (bool per row) holds; the rest as it is."""
        kept = {name: getattr(self, name)[keep] for name in ("group", "site", "slot", "gpus")}
        return replace(self, **kept)


def solve_flow(problem: Problem, groups: Groups, tiers: SiteTiers, tie_break: bool) -> FlowResult:
    """Build and solve the network of the module docstring; costs read back in float."""
    began = time.perf_counter()
    n_sites, n_slots = len(problem.sites), problem.horizon.n_slots
    n_groups = groups.n

    # data: (group, slot) pairs of every group's window with room at one of its sites at least
    pair_group, pair_slot, pair_cap = groups.pairs()
    site_free = tiers.capacity.sum(axis=0)  # [site, slot]
    room = groups.site_mask[pair_group] & (site_free[:, pair_slot].T > 0)  # [pair, site]
    n_room = room.sum(axis=1)
    usable = (pair_cap > 0) & (n_room > 0)
    pair_group, pair_slot, pair_cap = pair_group[usable], pair_slot[usable], pair_cap[usable]
    room = room[usable]
    pair_multi = n_room[usable] > 1

    # variables (nodes): sink, groups, site-slots, (group, slot) of multi-site groups
    sink = 0
    group_node = 1 + np.arange(n_groups)
    site_slot_base = 1 + n_groups
    pair_node = np.full(len(pair_group), -1, dtype=np.int64)
    pair_node[pair_multi] = site_slot_base + n_sites * n_slots + np.arange(pair_multi.sum())
    n_nodes = site_slot_base + n_sites * n_slots + int(pair_multi.sum())

    # costs [kg]; the solver gets their ranks (module docstring)
    total_work = int(groups.work.sum())
    penalty_kg = unfinished_penalty_kg(problem)
    dearest_kg = max(float(problem.grid_kg_per_gpu_slot.max(initial=0.0)), 1e-9)
    unit_kg = tiers.co2_kg
    if tiers.premium_kg is not None:
        unit_kg = unit_kg + tiers.premium_kg
    if tie_break:
        price_gpu_slot = problem.price_per_mwh * problem.mw_per_gpu[:, None] * problem.slot_hours
        price_share = price_gpu_slot / max(float(price_gpu_slot.max()), 1e-12)
        unit_kg = unit_kg + tiers.grid_share * price_share[None] * _TIE_PRICE * dearest_kg
    levels = np.unique(np.append(unit_kg[tiers.capacity > 0], penalty_kg))
    unit = np.searchsorted(levels, unit_kg).astype(np.int64)
    penalty = int(np.searchsorted(levels, penalty_kg))

    # constraints (arcs)
    tails, heads, caps, costs, kinds = [], [], [], [], []

    def arcs(tail, head, cap, cost, kind: int) -> None:
        tails.append(np.asarray(tail, dtype=np.int64))
        heads.append(np.asarray(head, dtype=np.int64))
        caps.append(np.broadcast_to(np.asarray(cap, dtype=np.int64), len(tails[-1])))
        costs.append(np.broadcast_to(np.asarray(cost, dtype=np.int64), len(tails[-1])))
        kinds.append(np.full(len(tails[-1]), kind, dtype=np.int8))

    # group -> (group, slot) where two sites or more have room: the group's per-slot GPU cap
    g = pair_group[pair_multi]
    arcs(group_node[g], pair_node[pair_multi], pair_cap[pair_multi], 0, kind=0)
    # (group, slot) -> (site, slot), or group -> (site, slot) where one site has room
    x_group, x_site, x_slot = [], [], []
    for s in range(n_sites):
        pick = room[:, s]
        tail = np.where(pair_multi[pick], pair_node[pick], group_node[pair_group[pick]])
        arcs(
            tail,
            site_slot_base + s * n_slots + pair_slot[pick],
            pair_cap[pick],
            0,
            kind=1,
        )
        x_group.append(pair_group[pick])
        x_site.append(np.full(int(pick.sum()), s))
        x_slot.append(pair_slot[pick])
    # (site, slot) -> sink tiers
    for k in range(tiers.capacity.shape[0]):
        tier_site, tier_slot = np.nonzero(tiers.capacity[k] > 0)
        arcs(
            site_slot_base + tier_site * n_slots + tier_slot,
            np.full(len(tier_site), sink),
            tiers.capacity[k, tier_site, tier_slot],
            unit[k, tier_site, tier_slot],
            kind=2 + k,
        )
    # group -> sink: unplaceable work at the penalty
    arcs(group_node, np.full(n_groups, sink), groups.work, penalty, kind=-1)

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
    unplaced = flow[kinds_a == -1]
    co2 = tiers.fixed_co2_kg + penalty_kg * float(unplaced.sum())
    grid_mwh = tiers.fixed_grid_mwh
    mwh_per_gpu_slot = problem.mw_per_gpu[:, None] * problem.slot_hours
    for k in range(tiers.capacity.shape[0]):
        tier_site, tier_slot = np.nonzero(tiers.capacity[k] > 0)
        f = flow[kinds_a == 2 + k]
        co2 += float((f * tiers.co2_kg[k, tier_site, tier_slot]).sum())
        share = tiers.grid_share[k, tier_site, tier_slot]
        grid_mwh += float((f * share * mwh_per_gpu_slot[tier_site, 0]).sum())
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
