"""``optimizer``: OR-Tools over the whole horizon, as a min-cost flow over aggregated jobs.

Objective: grid CO2 (then grid price, as a tie-break), with work that fits nowhere penalised
and reported unfinished; energy is drawn for the work as asked (a job's last GPU-slot in part,
:func:`~scheduler.policies.base.objective_kg`). Steps:

1. **Bound and split**: jobs merged by window, sites and preemptibility
   (:func:`.flow.group_jobs`). ``best_bound_kg`` is the pooled profile LP over their work as
   asked (:func:`lp_bound`; ``gap = (objective - bound) / bound``); the relaxed flow of their
   whole GPU-slots says where the work goes (by site and slot). On the planning benchmark's
   days the pooled LP over the rounded work equals that flow's cost (1,000 and 10,000 jobs).
2. **Non-preemptible jobs** (if any): place them, largest first, each as one contiguous block
   at the (site, start) with the cheapest marginal grid CO2 on top of the preemptible jobs' load
   in the bound's flow, in residual capacity (pushing preemptible work out costs the dearest
   grid GPU-slot); they are then fixed (moves and re-solves below never change a block).
   That load is where the preemptible jobs would run without the blocks, not where they must:
   when the plan's gap is above ``relative_gap``, steps 2-4 run once more with each block at
   its cheapest start on the supply alone (the preemptible jobs then go around the blocks),
   and the better plan is kept. On days where blocks crowd the green hours this saves 5-12 %
   of the CO2 (measured on mid-day re-plans of synthetic December days).
With storage (:mod:`.battery`), the pooled LP runs the batteries too, so the bound includes
   them; the relaxed flow then goes inside the pooled LP's load (its split sees the batteries)
   on battery tiers at the LP's value of stored energy. The profile LP runs each site's battery
   with its load, and its value of stored energy prices the flows of step 3. Each candidate
   plan is scored with its units run as well as its load allows
   (:func:`.battery.plan_dispatch`), the guide the plan carries to settlement.
2b. **Load profile** (:mod:`.profile`): a small GLOP LP over sites x slots, fed with the
   bound's divisible work and the blocks, decides each site's GPUs per slot under ramp limits,
   caps and supply, with a bounded smoothing term that picks the calmest of equal-carbon
   profiles. Step 3 places jobs inside it, and :func:`.ramp_fit.fit_ramps` repairs what
   rounding or an unfilled profile leaves, so the plan keeps every ramp. ``ramp_cost_kg`` in
   the result is what the ramp limits cost in the profile (the LP with minus without them).
3. **Divisible jobs**: the flow with jobs in splittable groups (window, sites and duration
   bucket, see :mod:`.flow`), split back to whole GPUs per job by
   :func:`.disaggregate.disaggregate`. Status ``OPTIMAL`` when the plan's objective meets the
   bound within :data:`OPTIMAL_GAP`, else ``FEASIBLE`` with its gap to the bound. If the gap
   is above ``SolverSettings.relative_gap``, steps 3-4 run again with exact groups (one duration
   each: no restriction, a larger network) and the better plan is kept. If the plan's objective
   is still above the profile's CO2 by more than ``relative_gap``, the profile could not be
   realised: it is a relaxation that sees each site's work, not each job's GPU cap (a job that
   must run at its cap in every slot of its window, say), and following it cost CO2. Steps 3-4
   then run once more with exact groups and no profile (:func:`.ramp_fit.fit_ramps` keeps the
   ramps), and the better plan is kept.
4. **Site moves**: with ``problem.max_site_moves`` set, jobs that move more often are pinned
   to the site where they did most work and step 3 runs again (at most
   :data:`MAX_PIN_ROUNDS` rounds, after which every multi-site job still free is pinned, which
   meets any limit). The notes say how many jobs were pinned; work a pinned job can no longer
   place is reported unfinished, never dropped.

``SolverSettings.time_limit_s`` is checked after the fact: a min-cost flow cannot be stopped
part way, so a run that takes longer is reported in the notes; ``relative_gap`` is compared with
the achieved gap (see step 3). ``seed`` and ``workers`` are not used: min-cost flow is
deterministic and single-threaded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from scheduler.config import SolverSettings
from scheduler.policies.base import (
    PlanArrays,
    PlanResult,
    PlanStatus,
    SupplyBasis,
    make_result,
    objective_kg,
    site_moves,
)
from scheduler.policies.battery import battery_tiers, plan_dispatch
from scheduler.policies.blocks import cheapest_blocks
from scheduler.policies.disaggregate import disaggregate
from scheduler.policies.flow import (
    DURATION_BUCKET_RATIO,
    EXACT,
    FlowResult,
    Groups,
    SiteTiers,
    group_jobs,
    solve_flow,
)
from scheduler.policies.profile import LoadProfile, SiteWork, solve_profile
from scheduler.policies.ramp_fit import fit_ramps, has_ramps
from scheduler.problem import Problem
from scheduler.storage import StorageGuide

__all__ = [
    "MAX_PIN_ROUNDS",
    "OPTIMAL_GAP",
    "OptimizerPolicy",
    "lp_bound",
    "optimize",
    "relaxed_flow",
]

log = logging.getLogger(__name__)

MAX_PIN_ROUNDS = 3
OPTIMAL_GAP = 1e-6  # a plan this close to the bound is optimal up to cost rounding and tie-breaks


class OptimizerPolicy:
    """Min-cost-flow optimizer; see the module docstring."""

    name = "optimizer"
    follows_forecast = True

    def __init__(self, settings: SolverSettings | None = None) -> None:
        self.settings = settings or SolverSettings()

    def plan(self, problem: Problem) -> PlanResult:
        return optimize(problem, self.settings, self.name)


def lp_bound(problem: Problem) -> float:
    """A lower bound on the objective of any valid plan of ``problem``'s work as asked [kg CO2,
    or the objective's units]: the pooled profile LP (:func:`.profile.solve_profile` with
    ``bound``): every set of jobs (merged by window, allowed sites and preemptibility, cap
    ``sum(max_gpus)``) as its work as asked, in fractions of a GPU-slot, by allowed sites,
    with the sites' storage, without ramps or blocks' contiguity."""
    return _bound(problem).bound_kg


def relaxed_flow(problem: Problem) -> FlowResult:
    """The relaxed flow of the work in whole GPU-slots (jobs merged as for :func:`lp_bound`):
    the least grid CO2 (plus unplaced penalty) of any plan of the rounded work without storage,
    and where it puts the work. Its rows keep only the preemptible jobs' flow (the load
    non-preemptible blocks meet)."""
    return _bound(problem).flow


@dataclass(frozen=True)
class _Bound:
    flow: FlowResult  # the relaxed flow, its rows the preemptible jobs' only
    groups: Groups
    value_per_mwh: np.ndarray | None  # [site, slot] stored energy's value, with storage
    bound_kg: float  # the lower bound on the work as asked


def _bound(problem: Problem) -> _Bound:
    groups = group_jobs(problem, np.arange(problem.n_jobs), problem.site_mask, by_preemptible=True)
    pooled = _pooled(problem, groups)
    value = None
    if pooled.value_per_mwh is None:
        none = np.zeros((len(problem.sites), problem.horizon.n_slots))
        flow = solve_flow(problem, groups, battery_tiers(problem, none, None), tie_break=False)
    else:
        flow, value = _split_with_storage(problem, groups, pooled), pooled.value_per_mwh
    divisible = np.zeros(groups.n, dtype=bool)
    divisible[groups.job_group] = problem.preemptible
    # no plan is below 0 (grid energy weighs >= 0, and so does unplaced work)
    bound_kg = max(pooled.co2_kg, 0.0)
    return _Bound(flow.rows(divisible[flow.group]), groups, value, bound_kg)


def _pooled(problem: Problem, groups: Groups) -> LoadProfile:
    """The pooled profile LP of :func:`lp_bound`: each group's work as asked [GPU-slots]."""
    pools, pool_of = np.unique(groups.site_mask, axis=0, return_inverse=True)
    asked_units = problem.gpu_hours / problem.slot_hours  # every job is in a group here
    asked = np.bincount(groups.job_group, weights=asked_units, minlength=groups.n)
    work = np.zeros((groups.n, len(pools)))
    work[np.arange(groups.n), pool_of.ravel()] = asked
    none = np.zeros((len(problem.sites), problem.horizon.n_slots))
    return solve_profile(problem, SiteWork(groups.first, groups.end, groups.cap, work), none,
                         ramps=False, pools=pools, bound=True)  # fmt: skip


def _split_with_storage(problem: Problem, groups: Groups, pooled: LoadProfile) -> FlowResult:
    """Where the work goes with storage: the relaxed flow on battery tiers at the pooled LP's
    value of stored energy, inside its load (which sees the batteries; the LP does not say
    which group's work runs where)."""
    assert pooled.value_per_mwh is not None
    none = np.zeros((len(problem.sites), problem.horizon.n_slots))
    premium_kg = float(problem.grid_kg_per_gpu_slot.max(initial=0.0)) + 0.5
    tiers = battery_tiers(problem, none, pooled.value_per_mwh)
    return solve_flow(problem, groups, tiers.within(pooled.gpus, premium_kg), tie_break=False)


def _site_work(flow: FlowResult, groups: Groups, problem: Problem) -> SiteWork:
    """The work of ``flow``'s rows as each group's GPU-slots per site."""
    work = np.zeros((groups.n, len(problem.sites)), dtype=np.int64)
    np.add.at(work, (flow.group, flow.site), flow.gpus)
    return SiteWork(groups.first, groups.end, groups.cap, work)


def optimize(
    problem: Problem,
    settings: SolverSettings,
    name: str = "optimizer",
    supply_basis: SupplyBasis = SupplyBasis.FORECAST,
) -> PlanResult:
    """Plan ``problem`` (steps in the module docstring) and report status, bound and gap."""
    began = time.perf_counter()
    relaxed = _bound(problem)
    bound = relaxed.flow
    divisible_load = np.zeros((len(problem.sites), problem.horizon.n_slots), dtype=np.int64)
    np.add.at(divisible_load, (bound.site, bound.slot), bound.gpus)
    plan = _plan_around_blocks(problem, settings, name, relaxed, divisible_load)
    if _gap(plan.objective_kg, relaxed.bound_kg) > settings.relative_gap and (
        not problem.preemptible.all()
    ):
        log.info("%s: gap above relative_gap; placing the blocks on the supply alone", name)
        alone = np.zeros_like(divisible_load)
        first = _plan_around_blocks(problem, settings, name, relaxed, alone)
        if first.objective_kg < plan.objective_kg:
            plan = first
    arrays, pinned, ramp_cost_kg = plan.arrays, plan.pinned, plan.ramp_cost_kg
    notes: list[str] = []
    if pinned.any():
        notes.append(
            f"max_site_moves={problem.max_site_moves}: "
            f"{int(pinned.sum())} job(s) pinned to one site"
        )
    seconds = time.perf_counter() - began
    objective, guide = _scored(problem, arrays)
    gap = _gap(objective, relaxed.bound_kg)
    status = PlanStatus.OPTIMAL if gap <= OPTIMAL_GAP else PlanStatus.FEASIBLE
    if seconds > settings.time_limit_s:
        notes.append(
            f"took {seconds:.1f} s, over time_limit_s {settings.time_limit_s:g} (a min-cost flow "
            "runs to optimality and cannot be stopped part way)"
        )
    for note in notes:
        log.warning("%s: %s", name, note)
    if gap > settings.relative_gap:
        shown = (
            f"{gap:.4%}" if np.isfinite(gap) else f"{objective:,.1f} kg CO2 over a bound of 0 kg"
        )
        notes.append(f"gap {shown} is above the requested relative_gap {settings.relative_gap:.4%}")
        # no warning: the plan reports its gap, and the bound relaxes what a plan must keep
        # (blocks run whole, ramp limits), so mid-day re-plans often sit well above it
        log.info("%s: %s (the bound ignores blocks' contiguity and ramp limits)", name, notes[-1])
    if ramp_cost_kg is not None:
        notes.append(f"ramp limits cost {ramp_cost_kg:,.1f} kg CO2 in the load profile")
    return make_result(
        problem,
        name,
        arrays,
        status,
        seconds,
        best_bound_kg=relaxed.bound_kg,
        gap=gap,
        supply_basis=supply_basis,
        notes=tuple(notes),
        ramp_cost_kg=ramp_cost_kg,
        storage_guide=guide,
    )


@dataclass(frozen=True)
class _Planned:
    arrays: PlanArrays
    pinned: np.ndarray  # [job] pinned to one site (step 4)
    ramp_cost_kg: float | None  # what the ramp limits cost in the load profile
    objective_kg: float


def _plan_around_blocks(
    problem: Problem,
    settings: SolverSettings,
    name: str,
    relaxed: _Bound,
    divisible_load: np.ndarray,
) -> _Planned:
    """Steps 2 to 4: the blocks, each at its cheapest start on top of ``divisible_load``
    ``[site, slot]`` (GPUs), then the profile and the divisible jobs around them."""
    fixed = np.zeros((len(problem.sites), problem.horizon.n_slots), dtype=np.int64)
    blocks = cheapest_blocks(
        problem, np.flatnonzero(~problem.preemptible), problem.site_mask, divisible_load, fixed
    )
    profile, ramp_cost_kg = _profile(problem, relaxed, fixed)
    value = relaxed.value_per_mwh if profile.value_per_mwh is None else profile.value_per_mwh
    tiers = battery_tiers(problem, fixed, value)
    arrays, pinned = _plan_with_moves(problem, DURATION_BUCKET_RATIO, blocks, fixed, tiers, profile)
    score = _scored(problem, arrays)[0]
    if _gap(score, relaxed.bound_kg) > settings.relative_gap:
        log.info("%s: gap above relative_gap; solving again with exact duration groups", name)
        exact, exact_pinned = _plan_with_moves(problem, EXACT, blocks, fixed, tiers, profile)
        exact_score = _scored(problem, exact)[0]
        if exact_score < score:
            arrays, pinned, score = exact, exact_pinned, exact_score
    if _gap(score, profile.co2_kg) > settings.relative_gap:
        log.info("%s: the profile was not realised; planning again without it", name)
        free, free_pinned = _plan_with_moves(problem, EXACT, blocks, fixed, tiers, None)
        free_score = _scored(problem, free)[0]
        if free_score < score:
            arrays, pinned, score = free, free_pinned, free_score
    return _Planned(arrays, pinned, ramp_cost_kg, score)


def _scored(problem: Problem, arrays: PlanArrays) -> tuple[float, StorageGuide | None]:
    """A plan's objective with its storage run as well as its load allows
    (:func:`.battery.plan_dispatch`, the guide it then carries); without storage, as is."""
    if not problem.storage.n_units:
        return objective_kg(problem, arrays), None
    gpus = np.zeros((len(problem.sites), problem.horizon.n_slots), dtype=np.int64)
    np.add.at(gpus, (arrays.site, arrays.slot), arrays.gpus)
    guide = plan_dispatch(problem, gpus)
    return objective_kg(problem, arrays, guide), guide


def _profile(
    problem: Problem, relaxed: _Bound, fixed: np.ndarray
) -> tuple[LoadProfile, float | None]:
    """The load profile (:mod:`.profile`) for the bound's divisible work and the blocks'
    ``fixed`` GPUs, and what the ramp limits cost in it [kg CO2] (``None`` when no site has a
    limit)."""
    site_work = _site_work(relaxed.flow, relaxed.groups, problem)
    profile = solve_profile(problem, site_work, fixed)
    if not has_ramps(problem):
        return profile, None
    if not profile.ramps_bind:  # no limit touched: the LP without them has the same optimum
        return profile, 0.0
    free = solve_profile(problem, site_work, fixed, ramps=False)
    return profile, max(profile.co2_kg - free.co2_kg, 0.0)


def _plan_with_moves(
    problem: Problem,
    duration_ratio: float,
    blocks: PlanArrays,
    fixed: np.ndarray,
    tiers: SiteTiers,
    profile: LoadProfile | None,
) -> tuple[PlanArrays, np.ndarray]:
    """Plan, pinning jobs that move too often (step 4); returns the plan and who was pinned.

    ``blocks`` are the non-preemptible jobs' runs (step 2) and ``fixed`` their GPUs ``[site,
    slot]``: pinning never changes them, since a block runs at one site. ``tiers`` are the
    costs of the GPUs left free above them."""
    site_mask = problem.site_mask.copy()
    pinned = np.zeros(problem.n_jobs, dtype=bool)
    for round_ in range(MAX_PIN_ROUNDS + 1):
        divisible = _plan_divisible(problem, site_mask, fixed, duration_ratio, tiers, profile)
        arrays = fit_ramps(problem, PlanArrays.concat([blocks, divisible]))
        if problem.max_site_moves is None:
            break
        moves = site_moves(arrays.job, arrays.site, arrays.slot, problem.n_jobs)
        over = moves > problem.max_site_moves
        if not over.any():
            break
        if round_ == MAX_PIN_ROUNDS - 1:
            over = ~pinned & (site_mask.sum(axis=1) > 1)
        used = np.zeros_like(site_mask, dtype=np.int64)
        np.add.at(used, (arrays.job, arrays.site), arrays.gpus)
        for j in np.flatnonzero(over):
            allowed = np.flatnonzero(site_mask[j])
            main = allowed[np.argmax(used[j, allowed])]
            site_mask[j] = False
            site_mask[j, main] = True
        pinned |= over
    return arrays, pinned


def _gap(objective: float, bound: float) -> float:
    if bound > 0:
        return max(objective - bound, 0.0) / bound
    return 0.0 if objective <= 1e-9 else float("inf")


def _plan_divisible(
    problem: Problem,
    site_mask: np.ndarray,
    fixed: np.ndarray,
    duration_ratio: float,
    tiers: SiteTiers,
    profile: LoadProfile | None,
) -> PlanArrays:
    """Preemptible jobs in splittable groups, inside the profile above ``fixed`` GPUs: leaving
    the profile costs the dearest grid GPU-slot's CO2 plus 0.5 kg more, above any CO2 a move
    can save, so it carries only work the profile cannot; and below the unplaced penalty
    (twice the dearest plus 1 kg), so no work is dropped for it. ``profile=None``: at the least
    CO2 alone."""
    divisible = np.flatnonzero(problem.preemptible)
    groups = group_jobs(problem, divisible, site_mask, duration_ratio)
    premium_kg = float(problem.grid_kg_per_gpu_slot.max(initial=0.0)) + 0.5
    if profile is not None:
        tiers = tiers.within(profile.gpus - fixed, premium_kg)
    flow = solve_flow(problem, groups, tiers, tie_break=True)
    return disaggregate(problem, groups, flow)
