"""The load profile first: a small LP (GLOP) over sites x slots that keeps ramps and is calm.

Ramp limits couple adjacent slots, which the min-cost flow of :mod:`.flow` cannot express. So
the optimizer decides each site's load profile here, then places jobs inside it with the flow.
The work each site has to carry comes from the optimizer's relaxed flow (its LP bound): per
site, the divisible (preemptible) work of each set of jobs there, with their window and GPU
cap (:class:`SiteWork`); non-preemptible blocks are fixed load ``F``.

Variables per site ``s`` and slot ``t`` (GPUs, continuous): ``p_{s}_{t}`` divisible GPUs,
``y_{s}_{t}_{k}`` the same GPUs per cost tier (:func:`.flow.site_tiers`), ``u_{s}_{t}`` the
absolute step, ``r_{s}_{t}`` GPUs over a ramp limit; ``q_{s}`` work left unplaced::

    sum_k y[s,t,k] = p[s,t],  0 <= y <= tier capacity        (capacity, caps, import limit)
    p[s,t] <= sum of max_gpus of the site's jobs in their window at t
    sum_{tau<=t} p[s,tau] <= work released at s by t        (no work before it exists)
    sum_{tau<t} p[s,tau] + q[s] >= work due at s by t        (deadlines)
    sum_t p[s,t] + q[s] = work at s
    L[s,t] = p[s,t] + F[s,t],  L[s,-1] = initial GPUs (when known)
    -down - r <= L[s,t] - L[s,t-1] <= up + r,   u >= |L[s,t] - L[s,t-1]|
    minimise  sum y * tier CO2 + penalty * sum q + RAMP_PENALTY * sum r
              + SMOOTHING_SHARE * (mean grid CO2 of a GPU-slot) * sum u

Ramp limits are whole GPUs less one per slot of the horizon: the profile is rounded up to whole
GPUs, and the flow may leave up to that many unfilled. ``r`` is there only so the LP always
has a solution (a cap or a block can force a step); its penalty is far above any CO2. The
smoothing term is the tie-breaker among equal-carbon profiles: a GPU of step costs
:data:`SMOOTHING_SHARE` of a mean grid GPU-slot, so the LP gives up at most that much CO2 per
GPU of step it avoids, and nothing where costs tie.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from ortools.linear_solver import pywraplp

from scheduler.policies.base import unfinished_penalty_kg
from scheduler.policies.flow import site_tiers
from scheduler.problem import Problem

__all__ = [
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
_BIG_GPUS = 1e12  # stands in for "no ramp limit"


@dataclass(frozen=True)
class LoadProfile:
    """GPUs per ``[site, slot]`` (int, blocks included) and how the LP ended."""

    gpus: np.ndarray
    status: str
    co2_kg: float  # grid CO2 of the profile, fixed load included, plus unplaced penalty [kg]
    seconds: float
    ramps_bind: bool  # some step is at (or over) a ramp limit


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
    ``rate[s, t]`` GPUs and ``total[s]`` of the divisible work at each site."""
    n_sites = work.work.shape[1]
    released = np.zeros((n_sites, n_slots + 1))
    due = np.zeros((n_sites, n_slots + 1))
    rate = np.zeros((n_sites, n_slots + 1))
    for s in range(n_sites):
        g = np.flatnonzero(work.work[:, s] > 0)
        np.add.at(released[s], work.first[g], work.work[g, s])
        np.add.at(due[s], work.end[g], work.work[g, s])
        np.add.at(rate[s], work.first[g], work.rate[g])
        np.subtract.at(rate[s], work.end[g], work.rate[g])
    return (
        np.cumsum(released, axis=1)[:, :n_slots],
        np.cumsum(due, axis=1)[:, :n_slots],
        np.cumsum(rate, axis=1)[:, :n_slots],
        work.work.sum(axis=0),
    )


def solve_profile(
    problem: Problem, site_work: SiteWork, fixed: np.ndarray, ramps: bool = True
) -> LoadProfile:
    """The profile LP of the module docstring for ``site_work``; ``fixed`` ``[site, slot]`` are
    the GPUs of non-preemptible blocks (kept as they are). ``ramps=False`` drops the ramp
    limits (smoothing stays): what the limits cost is the difference in ``co2_kg``."""
    began = time.perf_counter()
    # data
    n_sites, n_slots = len(problem.sites), problem.horizon.n_slots
    released, due, rate, work = _site_work(site_work, n_slots)
    tiers = site_tiers(problem, fixed)
    mpg = problem.mw_per_gpu
    margin = n_slots  # rounding the profile up leaves at most one GPU per slot unfilled

    def limit_gpus(limit_mw: np.ndarray) -> np.ndarray:
        gpus = np.floor(limit_mw / mpg + 1e-9) - margin
        return np.where(np.isfinite(limit_mw) & ramps, np.maximum(gpus, 0), _BIG_GPUS)

    up, down = limit_gpus(problem.ramp_up_mw), limit_gpus(problem.ramp_down_mw)
    initial = problem.initial_gpus
    penalty_kg = unfinished_penalty_kg(problem)
    smooth_kg = smoothing_kg_per_gpu(problem)
    solver = pywraplp.Solver.CreateSolver("GLOP")

    # variables
    inf = solver.infinity()
    p = [[solver.NumVar(0, float(rate[s, t]), f"p_{s}_{t}") for t in range(n_slots)]
         for s in range(n_sites)]  # fmt: skip
    q = [solver.NumVar(0, float(work[s]), f"q_{s}") for s in range(n_sites)]
    objective = solver.Objective()
    co2_terms: list[tuple[pywraplp.Variable, float]] = [(v, penalty_kg) for v in q]

    def constraint(low: float, high: float, terms: list[tuple[pywraplp.Variable, float]]) -> None:
        row = solver.Constraint(low, high)
        for var, coefficient in terms:
            row.SetCoefficient(var, coefficient)

    # constraints
    for s in range(n_sites):
        objective.SetCoefficient(q[s], penalty_kg)
        constraint(float(work[s]), float(work[s]), [(v, 1.0) for v in p[s]] + [(q[s], 1.0)])
        for t in range(n_slots):
            # tiers carry p at their CO2
            tiers_st = []
            for k in np.flatnonzero(tiers.capacity[:, s, t] > 0).tolist():
                y = solver.NumVar(0, float(tiers.capacity[k, s, t]), f"y_{s}_{t}_{k}")
                objective.SetCoefficient(y, float(tiers.co2_kg[k, s, t]))
                co2_terms.append((y, float(tiers.co2_kg[k, s, t])))
                tiers_st.append((y, -1.0))
            constraint(0.0, 0.0, [(p[s][t], 1.0), *tiers_st])
            # released and due work
            constraint(-inf, float(released[s, t]), [(v, 1.0) for v in p[s][: t + 1]])
            if due[s, t] > 0:
                terms = [(v, 1.0) for v in p[s][:t]] + [(q[s], 1.0)]
                constraint(float(due[s, t]), inf, terms)
            # steps: L[t] - L[t-1] = p[t] - p[t-1] + (F[t] - F[t-1]), with u >= |step|
            if t == 0:
                if initial is None:
                    continue
                moves, known = [(p[s][0], 1.0)], float(fixed[s, 0] - initial[s])
            else:
                moves, known = (
                    [(p[s][t], 1.0), (p[s][t - 1], -1.0)],
                    float(fixed[s, t] - fixed[s, t - 1]),
                )
            u = solver.NumVar(0, inf, f"u_{s}_{t}")
            r = solver.NumVar(0, inf, f"r_{s}_{t}")
            objective.SetCoefficient(u, smooth_kg)
            objective.SetCoefficient(r, RAMP_PENALTY * penalty_kg)
            negated = [(v, -c) for v, c in moves]
            constraint(known, inf, [(u, 1.0), *negated])  # u >= step
            constraint(-known, inf, [(u, 1.0), *moves])  # u >= -step
            constraint(-inf, float(up[s]) - known, [*moves, (r, -1.0)])  # step <= up + r
            constraint(-inf, float(down[s]) + known, [*negated, (r, -1.0)])  # -step <= down + r
    objective.SetMinimization()

    # solve
    status = solver.Solve()
    names = {pywraplp.Solver.OPTIMAL: "OPTIMAL", pywraplp.Solver.FEASIBLE: "FEASIBLE"}
    status_name = names.get(status, f"STATUS_{status}")

    # read back
    if status not in names:
        raise RuntimeError(f"profile LP ended with status {status_name}; it always has a solution")
    values = np.array([[v.solution_value() for v in row] for row in p])
    load = values + fixed
    steps = (
        np.diff(load, axis=1)
        if initial is None
        else np.diff(load, axis=1, prepend=initial[:, None])
    )
    ramps_bind = bool((steps >= up[:, None] - 1e-6).any() or (-steps >= down[:, None] - 1e-6).any())
    gpus = np.ceil(values - 1e-6).astype(np.int64) + fixed.astype(np.int64)
    co2 = tiers.fixed_co2_kg + sum(v.solution_value() * c for v, c in co2_terms)
    seconds = time.perf_counter() - began
    log.info("profile LP: %s in %.2f s", status_name, seconds)
    return LoadProfile(gpus, status_name, co2, seconds, ramps_bind)
