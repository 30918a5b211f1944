"""Storage in the optimizer: each site's units as one battery, its block in the load-profile
LP, and the cost tiers that keep the flow's bound a bound with storage.

**One battery a site** (:class:`SiteBattery`). The optimizer plans each site's units as one:
powers, energies, reserves and stored energy added, the best efficiencies and the least
standing loss. Whatever the units can do, the merged battery can do too, so a bound on it
bounds them; plans are scored on the units as they are, under the storage rule
(:func:`~scheduler.policies.base.objective_kg`).

**The LP block** (:func:`add_battery`), per site with storage ``s`` and slot ``t`` (powers
[MW], energies [MWh], ``dt`` the slot [h])::

    0 <= charge[s,t] <= P,  0 <= discharge[s,t] <= P,  lo[s,t] <= soc[s,t] <= E
    soc[s,t] = keep soc[s,t-1] + eta_store dt charge[s,t] - dt / eta_dispatch discharge[s,t]
    grid[s,t] >= load[s,t] + charge[s,t] - discharge[s,t] - green[s,t],  grid[s,t] >= 0
    discharge[s,t] <= load[s,t]                          (only into the site's own load)
    minimise  ... + sum grid * dt * (what a grid MWh weighs)

``soc[s,-1]`` is the energy before the horizon, ``keep`` what a slot's standing loss leaves,
``lo`` the reserve and, after the last slot, what its cyclic units started with.
The LP does not see where charged energy comes from: it may charge while the grid feeds the
load, which is charging from the grid. Where a grid MWh weighs the same all day that never
pays (a stored MWh gives back at most what it took); with hourly carbon or prices it may, and
the plan is scored under the storage rule, which charges on surplus only.

**The bound** (:func:`battery_tiers`). For any value ``mu[s,t] >= 0`` of a MWh stored at the
end of slot ``t``, the Lagrangian of the energy balance splits by slot (weak duality): a
slot's cost as a function of its net load ``n = load - green`` [MW] is the convex
piecewise-linear ::

    h(n) = -a P dt + dt (min(a, c) clip(n + P, 0, P) + min(b, c) clip(n, 0, P) + c max(n - P, 0))

with ``a = mu eta_store`` (what charging a MW gains), ``b = mu / eta_dispatch`` (what
discharging one costs) and ``c`` what a grid MWh weighs; and once per site the stored
energy's part ``-keep mu[0] soc[-1] + sum_t min(k_t lo_t, k_t E)``, ``k_t = mu_t - keep
mu_{t+1}`` (``mu_T = 0``). Per whole GPU these are cost tiers the min-cost flow takes as it
takes the plain ones (:func:`~scheduler.policies.flow.site_tiers`), so the flow's cost is a
lower bound on every plan with storage, whatever ``mu``; the optimizer takes ``mu`` from the
profile LP's duals, the values at which that LP runs its batteries.

**The dispatch** (:func:`plan_dispatch`). Once the plan's load is known, each unit's charge
and discharge are chosen by a small LP over the units as they are (no merging) with the load
fixed, so charging only from surplus is linear: per site ``s`` and slot ``t``::

    sum of charge of units not charging from the grid <= max(green - load, 0)
    sum of discharge <= max(load - green, 0)      (only into the site's own deficit)
    grid >= load - green + sum (charge - discharge),  grid >= 0,  minimise sum grid weight dt

with each unit's energy balance, power, reserve, capacity and cyclic end as above. The plan
carries it as its :class:`~scheduler.storage.StorageGuide`, which settlement follows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler.policies.array_lp import ArrayLP, rows_by_owner
from scheduler.policies.flow import SiteTiers, fixed_grid_mwh, site_tiers
from scheduler.problem import Problem
from scheduler.storage import StorageGuide

__all__ = [
    "BatteryBlock",
    "SiteBattery",
    "add_battery",
    "battery_tiers",
    "plan_dispatch",
]

_GPU_TOLERANCE = 1e-9


@dataclass(frozen=True)
class SiteBattery:
    """Each site's storage units as one battery, arrays ``[site]`` (zeros where none): powers
    [MW], energies [MWh], efficiencies [-], ``keep`` the share of stored energy a slot keeps."""

    has: np.ndarray
    p_mw: np.ndarray
    energy_mwh: np.ndarray
    soc_min_mwh: np.ndarray
    soc_start_mwh: np.ndarray
    efficiency_store: np.ndarray
    efficiency_dispatch: np.ndarray
    keep: np.ndarray
    end_min_mwh: (
        np.ndarray
    )  # least energy after the last slot: cyclic units' start, others' reserve

    @classmethod
    def of(cls, problem: Problem) -> SiteBattery:
        fleet, n_sites = problem.storage, len(problem.sites)

        def total(values: np.ndarray) -> np.ndarray:
            out = np.zeros(n_sites)
            np.add.at(out, fleet.site, values)
            return out

        def best(values: np.ndarray) -> np.ndarray:
            out = np.zeros(n_sites)
            np.maximum.at(out, fleet.site, values)
            return np.where(has, out, 1.0)

        has = np.zeros(n_sites, dtype=bool)
        has[fleet.site] = True
        return cls(
            has=has,
            p_mw=total(fleet.p_nom_mw),
            energy_mwh=total(fleet.energy_mwh),
            soc_min_mwh=total(fleet.soc_min_mwh),
            soc_start_mwh=total(problem.soc_start_mwh),
            efficiency_store=best(fleet.efficiency_store),
            efficiency_dispatch=best(fleet.efficiency_dispatch),
            keep=best((1.0 - fleet.standing_loss) ** problem.slot_hours),
            end_min_mwh=total(fleet.lowest_end_mwh(problem.soc_start_mwh)),
        )

    def lowest_mwh(self, n_slots: int) -> np.ndarray:
        """The least energy each battery may hold at the end of each slot ``[site, slot]``
        [MWh]: its units' reserves, and after the last slot the energy its cyclic units
        started with."""
        lowest = np.repeat(self.soc_min_mwh[:, None], n_slots, axis=1)
        if n_slots:
            lowest[:, -1] = self.end_min_mwh
        return lowest


@dataclass(frozen=True)
class BatteryBlock:
    """Where the block sits in the LP: ``sites`` with a battery, and its grid draw variables
    and energy balance rows ``[site with a battery, slot]``."""

    sites: np.ndarray
    grid: np.ndarray
    balance: np.ndarray

    def value_per_mwh(self, shape: tuple[int, int], duals: np.ndarray) -> np.ndarray:
        """What a MWh stored at the end of each slot is worth ``[site, slot]`` of ``shape``
        (objective units per MWh, >= 0): a MWh more stored lowers the objective by the negated
        dual of its balance row."""
        out = np.zeros(shape)
        out[self.sites] = np.maximum(-duals[self.balance], 0.0)
        return out


def add_battery(
    lp: ArrayLP, problem: Problem, battery: SiteBattery, p: list[np.ndarray], fixed: np.ndarray
) -> BatteryBlock:
    """Add the block of the module docstring to ``lp`` (an :class:`.array_lp.ArrayLP`) for the
    divisible GPUs ``p`` above ``fixed`` GPUs: their sum is a site's (index arrays ``[site,
    slot]``, ``-1`` for no variable)."""
    sites = np.flatnonzero(battery.has)
    n_slots = problem.horizon.n_slots
    dt = problem.slot_hours
    mpg = problem.mw_per_gpu[sites, None]
    fixed_mw = problem.base_load_mw[sites, None] + mpg * fixed[sites]
    green = problem.green_mw[sites]
    power = battery.p_mw[sites, None]
    keep = battery.keep[sites, None]
    charge = lp.variables("charge", 0.0, np.broadcast_to(power, (len(sites), n_slots)))
    discharge = lp.variables("discharge", 0.0, np.broadcast_to(power, (len(sites), n_slots)))
    soc = lp.variables("soc", battery.lowest_mwh(n_slots)[sites], battery.energy_mwh[sites, None])
    grid = lp.variables("grid", 0.0, np.inf, problem.objective_per_mwh[sites] * dt)
    soc_before = np.concatenate([np.full((len(sites), 1), -1), soc[:, :-1]], axis=1)
    start = np.zeros((len(sites), n_slots))
    start[:, :1] = keep * battery.soc_start_mwh[sites, None]
    balance = lp.constraints(
        "balance",
        start,
        start,
        [(soc, 1.0), (soc_before, -keep),
         (charge, -battery.efficiency_store[sites, None] * dt),
         (discharge, dt / battery.efficiency_dispatch[sites, None])],
    )  # fmt: skip
    p_here = [rows[sites] for rows in p]
    gpus = [(rows, -mpg) for rows in p_here]
    lp.constraints(
        "grid_draw",
        fixed_mw - green,
        np.inf,
        [(grid, 1.0), *gpus, (charge, -1.0), (discharge, 1.0)],
    )
    lp.constraints("to_load", -np.inf, fixed_mw, [(discharge, 1.0), *gpus])
    return BatteryBlock(sites, grid, balance)


def battery_tiers(
    problem: Problem, fixed_gpus: np.ndarray, value_per_mwh: np.ndarray | None
) -> SiteTiers:
    """Cost tiers of the GPUs still free above ``fixed_gpus`` ``[site, slot]`` with each site's
    battery valued at ``value_per_mwh`` ``[site, slot]`` (the bound of the module docstring);
    :func:`~scheduler.policies.flow.site_tiers` where no site has storage or no value is
    known. Sites without storage keep their plain tiers."""
    plain = site_tiers(problem, fixed_gpus)
    battery = SiteBattery.of(problem)
    if value_per_mwh is None or not battery.has.any():
        return plain
    n_sites, n_slots = fixed_gpus.shape
    dt = problem.slot_hours
    mpg = problem.mw_per_gpu[:, None]
    weight = problem.objective_per_mwh
    mu = np.where(battery.has[:, None], np.maximum(value_per_mwh, 0.0), 0.0)
    power = battery.p_mw[:, None]
    gain = np.minimum(mu * battery.efficiency_store[:, None], weight)  # min(a, c)
    spend = np.minimum(mu / battery.efficiency_dispatch[:, None], weight)  # min(b, c)

    def cost(net_mw: np.ndarray) -> np.ndarray:  # H(n) of the module docstring [objective]
        return dt * (
            gain * np.clip(net_mw + power, 0, power)
            + spend * np.clip(net_mw, 0, power)
            + weight * np.maximum(net_mw - power, 0)
        )

    net0 = problem.base_load_mw[:, None] + fixed_gpus * mpg - problem.green_mw  # at 0 GPUs
    total = problem.capacity_with(fixed_gpus)
    knots = [np.zeros_like(total)]
    for edge in (-power, np.zeros_like(power), power):
        at = np.floor((edge - net0) / mpg + _GPU_TOLERANCE).astype(np.int64)
        knots += [at, at + 1]
    knots.append(total)
    gpus = np.maximum.accumulate(np.clip(np.stack(knots), 0, total[None]), axis=0)
    width = np.diff(gpus, axis=0)
    rise = np.diff(cost(net0[None] + gpus * mpg[None]), axis=0)
    per_gpu = np.divide(rise, width, out=np.zeros_like(rise), where=width > 0)
    grid_gpu = weight * mpg * dt
    share = np.divide(per_gpu, grid_gpu[None], out=np.ones_like(per_gpu), where=grid_gpu > 0)
    # sites without storage: their plain tiers, padded with empty ones
    n_tiers = width.shape[0]
    plain_rows = ~battery.has
    pad = np.zeros((n_tiers - plain.capacity.shape[0], n_sites, n_slots))
    for name, array in (("capacity", width), ("co2_kg", per_gpu), ("grid_share", share)):
        padded = np.concatenate([getattr(plain, name), pad])
        array[:, plain_rows] = padded[:, plain_rows]
    fixed = cost(net0) - dt * mu * battery.efficiency_store[:, None] * power
    plain_fixed = fixed_grid_mwh(problem, fixed_gpus) * weight
    fixed_kg = float(np.where(battery.has[:, None], fixed, plain_fixed).sum())
    return SiteTiers(
        capacity=width.astype(np.int64),
        co2_kg=per_gpu,
        grid_share=np.clip(share, 0.0, 1.0),
        fixed_co2_kg=fixed_kg + _stored_energy_kg(battery, mu),
        fixed_grid_mwh=float(fixed_grid_mwh(problem, fixed_gpus).sum()),
    )


def _stored_energy_kg(battery: SiteBattery, mu: np.ndarray) -> float:
    """The stored energy's part of the Lagrangian (module docstring), summed over the sites."""
    n_slots = mu.shape[1]
    keep = battery.keep[:, None]
    k = mu - keep * np.concatenate([mu[:, 1:], np.zeros((len(mu), 1))], axis=1)
    lowest = battery.lowest_mwh(n_slots)
    energy = np.where(k > 0, k * lowest, k * battery.energy_mwh[:, None])
    start = battery.keep * mu[:, 0] * battery.soc_start_mwh if n_slots else 0.0
    return float(np.where(battery.has[:, None], energy, 0.0).sum() - np.sum(start))


def plan_dispatch(problem: Problem, gpus: np.ndarray) -> StorageGuide:
    """How each storage unit best runs under the load of ``gpus`` busy ``[site, slot]`` on the
    planning supply: the dispatch LP of the module docstring, as a guide for settlement."""
    fleet, n_slots, dt = problem.storage, problem.horizon.n_slots, problem.slot_hours
    load = problem.base_load_mw[:, None] + gpus * problem.mw_per_gpu[:, None]
    surplus = np.maximum(problem.green_mw - load, 0.0)
    deficit = np.maximum(load - problem.green_mw, 0.0)
    sites = np.unique(fleet.site)
    row_of = np.searchsorted(sites, fleet.site)  # each unit's row among the sites with units
    keep = ((1.0 - fleet.standing_loss) ** dt)[:, None]
    lowest = np.repeat(fleet.soc_min_mwh[:, None], n_slots, axis=1)
    start = np.minimum(problem.soc_start_mwh, fleet.energy_mwh)
    if n_slots:
        lowest[:, -1] = fleet.lowest_end_mwh(problem.soc_start_mwh)
    power = np.broadcast_to(fleet.p_nom_mw[:, None], (fleet.n_units, n_slots))
    lp = ArrayLP()
    charge = lp.variables("charge", 0.0, power)
    discharge = lp.variables("discharge", 0.0, power)
    soc = lp.variables("soc", lowest, fleet.energy_mwh[:, None])
    grid = lp.variables("grid", 0.0, np.inf, problem.objective_per_mwh[sites] * dt)
    soc_before = np.concatenate([np.full((fleet.n_units, 1), -1), soc[:, :-1]], axis=1)
    first = np.zeros((fleet.n_units, n_slots))
    first[:, :1] = keep * start[:, None]
    lp.constraints(
        "balance", first, first,
        [(soc, 1.0), (soc_before, -keep), (charge, -fleet.efficiency_store[:, None] * dt),
         (discharge, dt / fleet.efficiency_dispatch[:, None])],
    )  # fmt: skip
    from_green = np.where(fleet.charge_from_grid[:, None], -1, charge)
    lp.constraints(
        "surplus",
        -np.inf,
        surplus[sites],
        [(rows, 1.0) for rows in rows_by_owner(from_green, row_of, len(sites))],
    )
    lp.constraints(
        "deficit",
        -np.inf,
        deficit[sites],
        [(rows, 1.0) for rows in rows_by_owner(discharge, row_of, len(sites))],
    )
    lp.constraints(
        "grid_draw", (load - problem.green_mw)[sites], np.inf,
        [(grid, 1.0), *((rows, -1.0) for rows in rows_by_owner(charge, row_of, len(sites))),
         *((rows, 1.0) for rows in rows_by_owner(discharge, row_of, len(sites)))],
    )  # fmt: skip
    x = lp.solve("storage dispatch LP", names=False).values
    energy = x[soc]
    before = np.concatenate([start[:, None], energy[:, :-1]], axis=1)
    return StorageGuide(x[charge], x[discharge], before, problem.horizon.start)
