"""The plain time-indexed LP, solved by GLOP: the reference the flow model is checked against.

Not a policy (its GPUs are fractional): tests use it to show that the flow bound equals this LP
and the flow optimum its value when aggregation is exact; the benchmark times it as the
baseline. Same cost tiers as :func:`.flow.site_tiers`, same unplaced penalty.

Variables ``x_{job}_{site}_{slot}`` (GPUs), ``y_{site}_{slot}_{tier}`` (GPUs per cost tier),
``u_{job}`` (GPU-slots left unplaced)::

    sum_{s,t} x[j,s,t] + u[j] = work[j]          every job
    sum_s x[j,s,t] <= max_gpus[j]                every job and slot of its window
    sum_j x[j,s,t] = sum_k y[s,t,k]              every site and slot
    0 <= y[s,t,k] <= tier capacity
    minimise  sum y * tier CO2 + penalty * sum u  (+ CO2 of base load)

With storage, every unit ``u`` of a site is modelled as it is (not merged, unlike the
optimizer: :mod:`.battery`), and the site's grid energy ``g_{site}_{slot}`` [MW] is weighed
instead of its tiers (which then only bound its GPUs)::

    soc[u,t] = keep soc[u,t-1] + eta_store dt charge[u,t] - dt / eta_dispatch discharge[u,t]
    g[s,t] >= base + mw_per_gpu sum_j x[j,s,t] + sum_u (charge - discharge) - green,  g >= 0
    sum_u discharge[u,t] <= base + mw_per_gpu sum_j x[j,s,t]
    reserve <= soc[u,t] <= capacity (cyclic: soc[u,T-1] >= soc[u,-1])
    0 <= charge[u,t], discharge[u,t] <= p_nom
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

# imported as a module: beside the typed ortools.linear_solver.python (see profile.py), mypy
# takes ortools.linear_solver for a namespace package without pywraplp
import ortools.linear_solver.pywraplp as pywraplp

from scheduler.policies.base import unfinished_penalty_kg
from scheduler.policies.flow import fixed_grid_mwh, site_tiers
from scheduler.problem import Problem

__all__ = ["LpSolution", "solve_time_indexed_lp"]


@dataclass(frozen=True)
class LpSolution:
    """GLOP's answer: ``objective_kg`` is grid CO2 plus the unplaced penalty [kg]."""

    status: str
    objective_kg: float
    build_seconds: float
    solve_seconds: float


def solve_time_indexed_lp(
    problem: Problem, time_limit_s: float = 600.0, as_asked: bool = False
) -> LpSolution:
    """Build and solve the LP of the module docstring with GLOP; ``as_asked``: each job's work
    as asked (``gpu_hours / slot_h`` GPU-slots, not rounded up), every fraction of a GPU costing
    exactly its grid energy (:func:`.flow.site_tiers`, ``continuous``)."""
    began = time.perf_counter()
    # data
    none = np.zeros((len(problem.sites), problem.horizon.n_slots))
    tiers = site_tiers(problem, none, continuous=as_asked)
    work = problem.gpu_hours / problem.slot_hours if as_asked else problem.work_units
    penalty_kg = unfinished_penalty_kg(problem)
    solver = pywraplp.Solver.CreateSolver("GLOP")
    solver.SetTimeLimit(int(time_limit_s * 1000))

    # variables
    x: dict[tuple[int, int, int], pywraplp.Variable] = {}
    for j in range(problem.n_jobs):
        for s in np.flatnonzero(problem.site_mask[j]).tolist():
            for t in range(problem.release_slot[j], problem.deadline_slot[j]):
                x[j, s, t] = solver.NumVar(0, float(problem.max_gpus[j]), f"x_{j}_{s}_{t}")
    unplaced = [solver.NumVar(0, float(w), f"u_{j}") for j, w in enumerate(work)]
    y = {
        (s, t, k): solver.NumVar(0, float(cap), f"y_{s}_{t}_{k}")
        for (k, s, t), cap in np.ndenumerate(tiers.capacity)
        if cap > 0
    }

    storage = _storage_variables(solver, problem)

    # constraints
    by_job: dict[int, list] = {}
    by_job_slot: dict[tuple[int, int], list] = {}
    by_site_slot: dict[tuple[int, int], list] = {}
    for (j, s, t), var in x.items():
        by_job.setdefault(j, []).append(var)
        by_job_slot.setdefault((j, t), []).append(var)
        by_site_slot.setdefault((s, t), []).append(var)
    for j, w in enumerate(work.tolist()):
        solver.Add(sum(by_job.get(j, [])) + unplaced[j] == float(w))
    for (j, _t), vars_ in by_job_slot.items():
        if len(vars_) > 1:
            solver.Add(sum(vars_) <= float(problem.max_gpus[j]))
    tiers_at: dict[tuple[int, int], list] = {}
    for (s, t, _k), var in y.items():
        tiers_at.setdefault((s, t), []).append(var)
    for (s, t), vars_ in by_site_slot.items():
        solver.Add(sum(vars_) == sum(tiers_at.get((s, t), [])))
    stored_sites = set(problem.storage.site.tolist())
    _storage_constraints(solver, problem, storage, by_site_slot)

    # objective
    objective = solver.Objective()
    for (s, t, k), var in y.items():
        if s not in stored_sites:
            objective.SetCoefficient(var, float(tiers.co2_kg[k, s, t]))
    for (s, t), var in storage["grid"].items():
        objective.SetCoefficient(var, float(problem.objective_per_mwh[s, t] * problem.slot_hours))
    for var in unplaced:
        objective.SetCoefficient(var, penalty_kg)
    objective.SetMinimization()
    built = time.perf_counter()

    # solve
    status = solver.Solve()
    solved = time.perf_counter()

    # read back
    names = {pywraplp.Solver.OPTIMAL: "OPTIMAL", pywraplp.Solver.FEASIBLE: "FEASIBLE"}
    fixed = fixed_grid_mwh(problem, none) * problem.objective_per_mwh
    fixed_kg = float(np.delete(fixed, sorted(stored_sites), axis=0).sum())
    value = objective.Value() + fixed_kg if status in names else float("nan")
    return LpSolution(names.get(status, f"STATUS_{status}"), value, built - began, solved - built)


def _storage_variables(solver: pywraplp.Solver, problem: Problem) -> dict[str, dict]:
    """Each unit's ``charge``, ``discharge`` and ``soc`` per ``(unit, slot)`` and each site with
    storage's ``grid`` per ``(site, slot)``."""
    fleet, n_slots = problem.storage, problem.horizon.n_slots
    out: dict[str, dict] = {"charge": {}, "discharge": {}, "soc": {}, "grid": {}}
    end = fleet.lowest_end_mwh(problem.soc_start_mwh)
    for u in range(fleet.n_units):
        power, energy = float(fleet.p_nom_mw[u]), float(fleet.energy_mwh[u])
        for t in range(n_slots):
            low = float(end[u] if t == n_slots - 1 else fleet.soc_min_mwh[u])
            out["charge"][u, t] = solver.NumVar(0, power, f"charge_{u}_{t}")
            out["discharge"][u, t] = solver.NumVar(0, power, f"discharge_{u}_{t}")
            out["soc"][u, t] = solver.NumVar(low, energy, f"soc_{u}_{t}")
    for s in sorted(set(fleet.site.tolist())):
        for t in range(n_slots):
            out["grid"][s, t] = solver.NumVar(0, solver.infinity(), f"g_{s}_{t}")
    return out


def _storage_constraints(
    solver: pywraplp.Solver, problem: Problem, storage: dict[str, dict], by_site_slot: dict
) -> None:
    """The energy balance of every unit and the grid draw of every site with storage."""
    fleet, dt = problem.storage, problem.slot_hours
    charge, discharge, soc = storage["charge"], storage["discharge"], storage["soc"]
    for u in range(fleet.n_units):
        keep = float((1.0 - fleet.standing_loss[u]) ** dt)
        for t in range(problem.horizon.n_slots):
            before = soc[u, t - 1] if t else float(problem.soc_start_mwh[u])
            solver.Add(
                soc[u, t]
                == keep * before
                + float(fleet.efficiency_store[u]) * dt * charge[u, t]
                - dt / float(fleet.efficiency_dispatch[u]) * discharge[u, t]
            )
    for (s, t), grid in storage["grid"].items():
        units = np.flatnonzero(fleet.site == s).tolist()
        load = float(problem.base_load_mw[s]) + float(problem.mw_per_gpu[s]) * sum(
            by_site_slot.get((s, t), [])
        )
        net = sum(charge[u, t] - discharge[u, t] for u in units)
        solver.Add(grid >= load + net - float(problem.green_mw[s, t]))
        solver.Add(sum(discharge[u, t] for u in units) <= load)
