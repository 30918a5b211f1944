"""The load profile first: a small LP (GLOP) over sites x slots that keeps ramps and is calm.

Ramp limits couple adjacent slots, which the min-cost flow of :mod:`.flow` cannot express. So
the optimizer decides each site's load profile here, then places jobs inside it with the flow.
The work each site has to carry comes from the optimizer's relaxed flow (its LP bound): per
site, the divisible (preemptible) work of each set of jobs there, with their window and GPU
cap (:class:`SiteWork`); non-preemptible blocks are fixed load ``F``.

Variables per site ``s`` and slot ``t`` (GPUs, continuous): ``p_{s}_{t}`` divisible GPUs,
``c_{s}_{t}`` GPU-slots of work done by the end of ``t``, ``y_{s}_{t}_{k}`` the GPUs per cost
tier (:func:`.flow.site_tiers`), and the load step ``L[s,t] - L[s,t-1]`` split into parts up
and down, within a ramp limit (``up_{s}_{t}``, ``down_{s}_{t}``) and over it (``up_over_{s}_{t}``,
``down_over_{s}_{t}``); ``q_{s}`` work left unplaced::

    sum_k y[s,t,k] = p[s,t],  0 <= y <= tier capacity        (capacity, caps, import limit)
    0 <= p[s,t] <= sum of the rates of the site's sets of jobs in their window at t
    sum_s p[s,t] <= sum of the rates of all the sets in their window at t  (across sites)

where a set's rate is its GPU cap (``sum(max_gpus)``), or its work if less.
    c[s,t] = c[s,t-1] + p[s,t],  c[s,-1] = 0
    c[s,t] <= work released at s by the end of t             (no work before it exists)
    c[s,t-1] + q[s] >= work due at s by the start of t       (deadlines)
    c[s,T-1] + q[s] = work at s
    L[s,t] = p[s,t] + F[s,t],  L[s,-1] = initial GPUs (when known)
    L[s,t] - L[s,t-1] = up + up_over - down - down_over,  0 <= up <= up limit,
                                                           0 <= down <= down limit
    minimise  sum y * tier CO2 + penalty * sum q + RAMP_PENALTY * sum (up_over + down_over)
              + SMOOTHING_SHARE * (mean grid CO2 of a GPU-slot) * sum (up + up_over + down
                + down_over)

The cumulative ``c`` keeps the model sparse (a few terms per site and slot, not a sum over all
earlier slots per slot). Since every part of a step costs, an optimum never has both an up and
a down part in a slot, so ``up + up_over + down + down_over`` is the absolute step and
``up_over + down_over`` the GPUs over a ramp limit.

Ramp limits are whole GPUs less one per slot of the horizon: the profile is rounded up to whole
GPUs, and the flow may leave up to that many unfilled. The parts over a limit are there only so
the LP always has a solution (a cap or a block can force a step); their penalty is far above
any CO2. The smoothing term is the tie-breaker among equal-carbon profiles: a GPU of step costs
:data:`SMOOTHING_SHARE` of a mean grid GPU-slot, so the LP gives up at most that much CO2 per
GPU of step it avoids, and nothing where costs tie.

With storage, each site's batteries are one (:mod:`.battery`): at such a site the tiers only
bound the GPUs, and the grid energy is weighed in the battery block, which decides how the
battery runs together with the load (its plan and the value of stored energy are read back).

The model is built from arrays (:class:`.array_lp.ArrayLP`) and handed to GLOP through OR-Tools'
model builder in one call.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from scheduler.policies.array_lp import ArrayLP, rows_by_owner
from scheduler.policies.base import unfinished_penalty_kg
from scheduler.policies.battery import SiteBattery, add_battery
from scheduler.policies.flow import fixed_grid_mwh, site_tiers
from scheduler.problem import Problem

__all__ = [
    "GLOP_PARAMETERS",
    "RAMP_PENALTY",
    "SMOOTHING_SHARE",
    "LoadProfile",
    "SiteWork",
    "smoothing_kg_per_gpu",
    "solve_profile",
]

log = logging.getLogger(__name__)

SMOOTHING_SHARE = 1e-3  # cost of a GPU of load step, share of a mean grid GPU-slot's CO2
RAMP_PENALTY = 100.0  # cost of a GPU over a ramp limit, in multiples of the unplaced penalty
# How GLOP solves the profile LP (no bearing on its optimum): the dual simplex without presolve
# takes a third of the iterations of the default primal on the optimizer's days and re-plans.
GLOP_PARAMETERS = "use_dual_simplex:true use_preprocessing:false"


@dataclass(frozen=True)
class LoadProfile:
    """GPUs per ``[site, slot]`` (int, blocks included) and how the LP ended; with storage,
    ``value_per_mwh`` ``[site, slot]``, what a MWh stored at the end of a slot is worth to the
    LP (its duals; ``None`` without storage)."""

    gpus: np.ndarray
    status: str
    co2_kg: float  # grid CO2 of the profile, fixed load included, plus unplaced penalty [kg]
    seconds: float
    ramps_bind: bool  # some step is at (or over) a ramp limit
    value_per_mwh: np.ndarray | None = None


def smoothing_kg_per_gpu(problem: Problem) -> float:
    """What one GPU of load step costs in the profile's objective [kg CO2-equivalent]."""
    return SMOOTHING_SHARE * float(problem.grid_kg_per_gpu_slot.mean()) if problem.n_jobs else 0.0


@dataclass(frozen=True)
class SiteWork:
    """Divisible work to carry: ``work[g, s]`` GPU-slots of a set of jobs ``g`` at site ``s``,
    which may run in slots ``first[g]`` to ``end[g]`` (exclusive) at most ``rate[g]`` GPUs."""

    first: np.ndarray
    end: np.ndarray
    rate: np.ndarray
    work: np.ndarray


def _site_work(work: SiteWork, n_slots: int) -> tuple[np.ndarray, ...]:
    """``released[s, t]`` (released by the end of t), ``due[s, t]`` (due by the start of t),
    ``rate[s, t]`` GPUs and ``total[s]`` of the divisible work at each site, and ``rate_all[t]``
    GPUs of all of it (a set of jobs at several sites counted once)."""
    n_sites = work.work.shape[1]
    released = np.zeros((n_sites, n_slots + 1))
    due = np.zeros((n_sites, n_slots + 1))
    rate = np.zeros((n_sites + 1, n_slots + 1))  # the last row: every site together
    for s, amount in enumerate([*work.work.T, work.work.sum(axis=1)]):
        g = np.flatnonzero(amount > 0)
        if s < n_sites:
            np.add.at(released[s], work.first[g], amount[g])
            np.add.at(due[s], work.end[g], amount[g])
        g_rate = np.minimum(work.rate[g], amount[g])  # no slot runs more than all the work
        np.add.at(rate[s], work.first[g], g_rate)
        np.subtract.at(rate[s], work.end[g], g_rate)
    rate = np.cumsum(rate, axis=1)[:, :n_slots]
    return (
        np.cumsum(released, axis=1)[:, :n_slots],
        np.cumsum(due, axis=1)[:, :n_slots],
        rate[:n_sites],
        work.work.sum(axis=0),
        rate[n_sites],
    )


def solve_profile(
    problem: Problem,
    site_work: SiteWork,
    fixed: np.ndarray,
    ramps: bool = True,
    pools: np.ndarray | None = None,
    bound: bool = False,
) -> LoadProfile:
    """The profile LP of the module docstring for ``site_work``; ``fixed`` ``[site, slot]`` are
    the GPUs of non-preemptible blocks (kept as they are). ``ramps=False`` drops the ramp
    limits (smoothing stays): what the limits cost is the difference in ``co2_kg``.

    ``pools`` ``[pool, site]`` (bool) lets work choose its site: ``site_work.work[g, k]`` is then
    the work of pool ``k``, which may run at any of the pool's sites (``p`` has a variable per
    pool, site and slot, and a pool's work in a slot is at most its rate); default one pool
    per site, the work fixed per site. ``bound=True`` drops the smoothing term and costs GPUs
    in fractions exactly (:func:`.flow.site_tiers`, ``continuous``): with all the work (as
    asked, in fractions of a GPU-slot) in pools by allowed sites, no ramps and no blocks,
    ``co2_kg`` is then a lower bound on every plan of the work as asked (the LP relaxes each
    set of jobs to its windows' totals and whole GPUs to fractions)."""
    began = time.perf_counter()
    # data
    n_sites, n_slots = len(problem.sites), problem.horizon.n_slots
    released, due, rate, work, rate_all = _site_work(site_work, n_slots)
    pools = np.eye(n_sites, dtype=bool) if pools is None else pools
    pair_pool, pair_site = np.nonzero(pools)  # a variable row per pool and allowed site
    tiers = site_tiers(problem, fixed, continuous=bound)
    mpg = problem.mw_per_gpu
    margin = n_slots  # rounding the profile up leaves at most one GPU per slot unfilled

    def limit_gpus(limit_mw: np.ndarray) -> np.ndarray:
        gpus = np.floor(limit_mw / mpg + 1e-9) - margin
        return np.where(np.isfinite(limit_mw) & ramps, np.maximum(gpus, 0), np.inf)

    up_limit, down_limit = limit_gpus(problem.ramp_up_mw), limit_gpus(problem.ramp_down_mw)
    initial = problem.initial_gpus
    before = np.zeros(n_sites) if initial is None else initial  # L[s,-1]
    known_step = np.diff(fixed, axis=1, prepend=before[:, None])  # of F, in L's step
    has_step = np.ones((n_sites, n_slots), dtype=bool)
    has_step[:, 0] = initial is not None
    penalty_kg = unfinished_penalty_kg(problem)
    smooth_kg = 0.0 if bound else smoothing_kg_per_gpu(problem)
    over_kg = smooth_kg + RAMP_PENALTY * penalty_kg
    battery = SiteBattery.of(problem)
    stored = battery.has[:, None, None]  # the battery block weighs these sites' grid energy
    tier_capacity = np.moveaxis(tiers.capacity, 0, -1)  # [site, slot, tier]
    tier_co2_kg = np.where(stored, 0.0, np.moveaxis(tiers.co2_kg, 0, -1))
    fixed_kg = float(
        (fixed_grid_mwh(problem, fixed) * problem.objective_per_mwh)[~battery.has].sum()
    )
    lp = ArrayLP()
    inf = np.inf

    # variables
    p = lp.variables("p", 0.0, rate[pair_pool])
    c = lp.variables("c", 0.0, released)
    y = lp.variables("y", 0.0, tier_capacity, tier_co2_kg)
    q = lp.variables("q", 0.0, work, penalty_kg)
    up = lp.variables("up", 0.0, np.where(has_step, up_limit[:, None], 0.0), smooth_kg)
    down = lp.variables("down", 0.0, np.where(has_step, down_limit[:, None], 0.0), smooth_kg)
    up_over = lp.variables("up_over", 0.0, np.where(has_step, inf, 0.0), over_kg)
    down_over = lp.variables("down_over", 0.0, np.where(has_step, inf, 0.0), over_kg)
    at_site = rows_by_owner(p, pair_site, n_sites)  # [k][site, slot]: the k-th pool at each site
    in_pool = rows_by_owner(p, pair_pool, len(pools))  # [k][pool, slot]: the k-th site of each pool
    c_before = np.concatenate([np.full((len(pools), 1), -1), c[:, :-1]], axis=1)  # c[k,t-1]

    def before_of(rows: np.ndarray) -> np.ndarray:
        return np.concatenate([np.full((n_sites, 1), -1), rows[:, :-1]], axis=1)

    # constraints
    lp.constraints(
        "tiers",
        0.0,
        0.0,
        [*((rows, 1.0) for rows in at_site), *((y[..., k], -1.0) for k in range(3))],
    )
    lp.constraints(
        "done", 0.0, 0.0, [(c, 1.0), (c_before, -1.0), *((rows, -1.0) for rows in in_pool)]
    )
    lp.constraints("due", due, inf, [(c_before, 1.0), (q[:, None], 1.0)], where=due > 0)
    lp.constraints("work", work, work, [(c[:, -1], 1.0), (q, 1.0)])
    lp.constraints("rate", 0.0, rate_all, [(p[j], 1.0) for j in range(len(pair_pool))])
    shared = pools.sum(axis=1) > 1  # a pool's rate holds across its sites
    lp.constraints("pool_rate", 0.0, rate, [(rows, 1.0) for rows in in_pool], where=shared[:, None])
    step_terms = [
        *((rows, 1.0) for rows in at_site),
        *((before_of(rows), -1.0) for rows in at_site),
        (up, -1.0),
        (up_over, -1.0),
        (down, 1.0),
        (down_over, 1.0),
    ]
    lp.constraints("step", -known_step, -known_step, step_terms, where=has_step)  # fmt: skip
    block = add_battery(lp, problem, battery, at_site, fixed) if battery.has.any() else None

    # solve
    answer = lp.solve("profile LP", GLOP_PARAMETERS)

    # read back
    x = answer.values
    values = sum(np.where(rows >= 0, x[rows], 0.0) for rows in at_site)
    load = values + fixed
    steps = (
        np.diff(load, axis=1)
        if initial is None
        else np.diff(load, axis=1, prepend=initial[:, None])
    )
    ramps_bind = bool(
        (steps >= up_limit[:, None] - 1e-6).any() or (-steps >= down_limit[:, None] - 1e-6).any()
    )
    gpus = np.ceil(values - 1e-6).astype(np.int64) + fixed.astype(np.int64)
    co2 = fixed_kg + float((x[y] * tier_co2_kg).sum() + penalty_kg * x[q].sum())
    value = None
    if block is not None:
        weight = problem.objective_per_mwh[block.sites] * problem.slot_hours
        co2 += float((x[block.grid] * weight).sum())
        value = block.value_per_mwh((n_sites, n_slots), answer.duals)
    seconds = time.perf_counter() - began
    log.info(
        "profile LP: %s, objective %.6g kg, in %.3f s", answer.status, answer.objective, seconds
    )
    return LoadProfile(gpus, answer.status, co2, seconds, ramps_bind, value)
