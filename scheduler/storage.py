"""Site storage units (batteries): their parameters and how they follow surplus and deficit.

A unit is described with PyPSA's ``StorageUnit`` attribute names and units (:class:`StorageUnit`):
``p_nom`` [MW] bounds both charging and discharging, ``max_hours`` [h] at ``p_nom`` gives the
energy capacity ``p_nom x max_hours`` [MWh], ``efficiency_store`` and ``efficiency_dispatch``
the losses each way, ``standing_loss`` the share of the stored energy lost per hour. Over a
slot of ``dt`` hours, as PyPSA writes it::

    soc[t] = soc[t-1] x (1 - standing_loss) ** dt
             + efficiency_store x charge[t] x dt - discharge[t] x dt / efficiency_dispatch

with ``charge`` the power taken in [MW] and ``discharge`` the power delivered to the site's
load [MW], the state of charge held in ``[state_of_charge_min, p_nom x max_hours]`` [MWh].
A unit is charged from the site's own green power (from the grid only where
``charge_from_grid`` and a plan charges it so), discharges only into its site's load and
never exports.

The rule (:func:`follow_surplus`, fifo's and greedy's, and what settles any plan that does
not say how the battery runs): in each slot, a site's green power above its load charges its
units, in the order given, as far as their power and room allow (the rest is spilled), and
its load above the green power is served by discharging them as far as their power and
energy allow (the rest comes from the grid). Discharged energy is stored green, so it counts
as green once, after losses.

A plan may say how its batteries should run (:class:`StorageGuide`, the optimizer's): each
unit then discharges in a slot what the plan discharges there, and beyond that only the
energy it holds above the plan's (so energy the plan keeps for a dearer hour stays stored, and
green stored beyond the plan is not kept back); it charges on surplus as the rule does, and a
unit that may charge from the grid tops up from it to the plan's charge. Where the actual
supply is the planned one, the units run as planned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "UNIT_FIELDS",
    "StorageDispatch",
    "StorageFleet",
    "StorageGuide",
    "StorageUnit",
    "follow_surplus",
]

UNIT_FIELDS = ("p_nom", "max_hours", "efficiency_store", "efficiency_dispatch", "standing_loss",
               "state_of_charge_min")  # fmt: skip
"""A unit's parameters a plan depends on (recorded in the plan directory's storage.csv)."""


class StorageUnit(BaseModel):
    """A battery at a site, in PyPSA's ``StorageUnit`` terms (units in the descriptions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    p_nom: float = Field(gt=0, le=10_000, description="charge and discharge power limit [MW]")
    max_hours: float = Field(
        gt=0, le=1_000, description="hours at p_nom from full to empty: capacity p_nom x max_hours"
    )
    efficiency_store: float = Field(default=1.0, gt=0, le=1, description="charging efficiency [-]")
    efficiency_dispatch: float = Field(
        default=1.0, gt=0, le=1, description="discharging efficiency [-]"
    )
    standing_loss: float = Field(
        default=0.0, ge=0, lt=1, description="share of the stored energy lost per hour [1/h]"
    )
    state_of_charge_initial: float = Field(
        default=0.0, ge=0, description="energy stored before the first slot [MWh]"
    )
    state_of_charge_min: float = Field(
        default=0.0, ge=0, description="energy never discharged below (a reserve) [MWh]"
    )
    cyclic_state_of_charge: bool = Field(
        default=False,
        description="a planned day ends with the energy it started with (the optimizer's rule)",
    )
    charge_from_grid: bool = Field(
        default=False, description="may charge from the grid too (the optimizer, on price)"
    )

    @property
    def energy_mwh(self) -> float:
        """Energy capacity [MWh]."""
        return self.p_nom * self.max_hours

    @model_validator(mode="after")
    def _energy_within_capacity(self) -> StorageUnit:
        for name in ("state_of_charge_initial", "state_of_charge_min"):
            if getattr(self, name) > self.energy_mwh + 1e-9:
                raise ValueError(
                    f"{name} ({getattr(self, name):g} MWh) is above the capacity p_nom x "
                    f"max_hours = {self.energy_mwh:g} MWh"
                )
        return self


@dataclass(frozen=True)
class StorageFleet:
    """Every storage unit of a list of sites as arrays ``[unit]``, in site order and each site's
    units in their given order: ``site`` the site's position, powers [MW], energies [MWh],
    efficiencies [-], ``standing_loss`` [1/h]."""

    site: np.ndarray
    p_nom_mw: np.ndarray
    energy_mwh: np.ndarray
    efficiency_store: np.ndarray
    efficiency_dispatch: np.ndarray
    standing_loss: np.ndarray
    soc_min_mwh: np.ndarray
    soc_initial_mwh: np.ndarray
    cyclic: np.ndarray  # [unit] bool: a planned day ends with the energy it started with
    charge_from_grid: np.ndarray  # [unit] bool: may charge from the grid where a plan does

    @classmethod
    def of(cls, storage: Sequence[Mapping[str, StorageUnit]]) -> StorageFleet:
        """The fleet of sites whose units are ``storage[site]`` (name -> unit)."""
        units = [(s, unit) for s, by_name in enumerate(storage) for unit in by_name.values()]

        def column(value, dtype=float) -> np.ndarray:
            return np.array([value(s, u) for s, u in units], dtype=dtype)

        return cls(
            site=column(lambda s, u: s, np.int64),
            p_nom_mw=column(lambda s, u: u.p_nom),
            energy_mwh=column(lambda s, u: u.energy_mwh),
            efficiency_store=column(lambda s, u: u.efficiency_store),
            efficiency_dispatch=column(lambda s, u: u.efficiency_dispatch),
            standing_loss=column(lambda s, u: u.standing_loss),
            soc_min_mwh=column(lambda s, u: u.state_of_charge_min),
            soc_initial_mwh=column(lambda s, u: u.state_of_charge_initial),
            cyclic=column(lambda s, u: u.cyclic_state_of_charge, bool),
            charge_from_grid=column(lambda s, u: u.charge_from_grid, bool),
        )

    @property
    def n_units(self) -> int:
        return len(self.site)

    def lowest_end_mwh(self, soc_start_mwh: np.ndarray) -> np.ndarray:
        """Each unit's least energy after a planned day ``[unit]`` [MWh]: its reserve, and for a
        cyclic unit the energy it started the day with, ``soc_start_mwh`` (within capacity)."""
        start = np.minimum(soc_start_mwh, self.energy_mwh)
        return np.where(self.cyclic, np.maximum(self.soc_min_mwh, start), self.soc_min_mwh)

    def unit_energy_mwh(self, site_mwh: Sequence[float]) -> np.ndarray:
        """Each unit's energy ``[unit]`` [MWh] from each site's total ``site_mwh`` ``[site]``
        (a day ended with, as ``run.csv`` records it): a site's units filled in their order,
        each to its capacity (exact for a site with one unit)."""
        left = np.asarray(site_mwh, dtype=float).copy()
        out = np.zeros(self.n_units)
        for u, s in enumerate(self.site.tolist()):
            out[u] = min(max(left[s], 0.0), float(self.energy_mwh[u]))
            left[s] -= out[u]
        return out


@dataclass(frozen=True)
class StorageDispatch:
    """How storage ran, per site and slot ``[site, slot]`` [MW]: ``charge_mw`` taken in (from
    green power, and from the grid ``grid_charge_mw`` of it), ``discharge_mw`` delivered to the
    load; and each unit's energy at the end of each slot ``soc_mwh`` ``[unit, slot]`` [MWh]."""

    charge_mw: np.ndarray
    discharge_mw: np.ndarray
    soc_mwh: np.ndarray
    grid_charge_mw: np.ndarray

    def site_soc_mwh(self, fleet: StorageFleet, n_sites: int) -> np.ndarray:
        """Energy stored per site at the end of each slot ``[site, slot]`` [MWh]."""
        out = np.zeros((n_sites, self.soc_mwh.shape[1]))
        np.add.at(out, fleet.site, self.soc_mwh)
        return out


@dataclass(frozen=True)
class StorageGuide:
    """How a plan runs its units, ``[unit, slot]`` over the horizon it was planned on, from
    ``start`` (its first slot's start, UTC): ``charge_mw`` and ``discharge_mw`` [MW] and the
    energy held before each slot, ``energy_before_mwh`` [MWh]; NaN in the slots it says
    nothing about (the rule alone runs them)."""

    charge_mw: np.ndarray
    discharge_mw: np.ndarray
    energy_before_mwh: np.ndarray
    start: pd.Timestamp | None = None

    FIELDS = ("charge_mw", "discharge_mw", "energy_before_mwh")

    @classmethod
    def empty(cls, n_units: int, n_slots: int, start: pd.Timestamp | None = None) -> StorageGuide:
        nan = np.full((n_units, n_slots), np.nan)
        return cls(nan, nan.copy(), nan.copy(), start)

    @property
    def n_slots(self) -> int:
        return self.discharge_mw.shape[1]

    def from_slot(self, first: int, rest: StorageGuide | None, rest_first: int) -> StorageGuide:
        """This guide up to slot ``first``, then ``rest`` (a re-plan's, whose own first slot is
        ``rest_first`` of this guide's, at or before ``first``; ``None`` or of other units: the
        rule from there)."""
        out = StorageGuide(self.charge_mw.copy(), self.discharge_mw.copy(),
                           self.energy_before_mwh.copy(), self.start)  # fmt: skip
        fits = rest is not None and rest.discharge_mw.shape[0] == self.discharge_mw.shape[0]
        for name in self.FIELDS:
            mine = getattr(out, name)
            mine[:, first:] = np.nan
            if fits:
                taken = getattr(rest, name)[:, first - rest_first : self.n_slots - rest_first]
                mine[:, first : first + taken.shape[1]] = taken
        return out


def follow_surplus(
    fleet: StorageFleet,
    load_mw: np.ndarray,
    green_mw: np.ndarray,
    slot_hours: float,
    soc_start_mwh: np.ndarray | None = None,
    guide: StorageGuide | None = None,
) -> StorageDispatch:
    """The rule of the module doc over ``load_mw`` and ``green_mw`` ``[site, slot]`` [MW], from
    each unit's energy ``soc_start_mwh`` ``[unit]`` before the first slot (default: its
    ``state_of_charge_initial``), following ``guide`` where it says how (module doc)."""
    n_sites, n_slots = load_mw.shape
    start = fleet.soc_initial_mwh if soc_start_mwh is None else np.asarray(soc_start_mwh)
    out = {name: np.zeros((n_sites, n_slots)) for name in ("charge", "discharge", "grid")}
    soc_out = np.zeros((fleet.n_units, n_slots))
    surplus = np.maximum(green_mw - load_mw, 0.0)
    deficit = np.maximum(load_mw - green_mw, 0.0)
    for s in np.unique(fleet.site).tolist():  # sites do not share: one walk per site
        units = np.flatnonzero(fleet.site == s)
        planned = None
        if guide is not None:
            planned = tuple(getattr(guide, name)[units].tolist() for name in guide.FIELDS)
        walked = _walk_site(fleet, units, surplus[s].tolist(), deficit[s].tolist(), slot_hours,
                            start[units].astype(float).tolist(), planned)  # fmt: skip
        out["charge"][s], out["discharge"][s], out["grid"][s], soc_out[units] = walked
    return StorageDispatch(out["charge"], out["discharge"], soc_out, out["grid"])


def _walk_site(
    fleet: StorageFleet,
    units: np.ndarray,
    surplus_mw: list[float],
    deficit_mw: list[float],
    slot_hours: float,
    soc_mwh: list[float],
    planned: tuple[list[list[float]], ...] | None = None,
) -> tuple[list[float], list[float], list[float], list[list[float]]]:
    """:func:`follow_surplus` at one site whose ``units`` (fleet positions, in order) start at
    ``soc_mwh``: charge, discharge and grid charge per slot [MW] and each unit's energy per slot
    [MWh]; ``planned`` is the guide's charge, discharge and energy before each slot per unit.
    On plain floats: a slot's few operations on numpy scalars cost five times as much."""
    params = [
        (float(fleet.p_nom_mw[u]), float(fleet.energy_mwh[u]), float(fleet.efficiency_store[u]),
         float(fleet.efficiency_dispatch[u]), float(fleet.soc_min_mwh[u]),
         float((1.0 - fleet.standing_loss[u]) ** slot_hours), bool(fleet.charge_from_grid[u]))
        for u in units.tolist()
    ]  # fmt: skip
    soc = list(soc_mwh)
    n = len(surplus_mw)
    charge, discharge, from_grid = [0.0] * n, [0.0] * n, [0.0] * n
    trace: list[list[float]] = [[0.0] * n for _ in params]
    for t, (to_store, to_serve) in enumerate(zip(surplus_mw, deficit_mw, strict=True)):
        for k, (p_nom, energy, eta_store, eta_dispatch, soc_min, keep, grid_ok) in enumerate(
            params
        ):
            level = soc[k] * keep  # standing loss over the slot
            room = max((energy - level) / (eta_store * slot_hours), 0.0)
            taken = min(to_store, p_nom, room)
            given = min(to_serve, p_nom, max(level - soc_min, 0.0) * eta_dispatch / slot_hours)
            bought = 0.0
            if planned is not None and planned[1][k][t] == planned[1][k][t]:  # not NaN
                ahead = max(level - planned[2][k][t] * keep, 0.0)  # held above the plan
                given = min(given, planned[1][k][t] + ahead * eta_dispatch / slot_hours)
                if grid_ok:  # the plan's charge beyond the surplus, from the grid
                    bought = max(min(planned[0][k][t], p_nom, room) - taken, 0.0)
            soc[k] = level + ((taken + bought) * eta_store - given / eta_dispatch) * slot_hours
            trace[k][t] = soc[k]
            to_store -= taken
            to_serve -= given
            charge[t] += taken + bought
            discharge[t] += given
            from_grid[t] += bought
    return charge, discharge, from_grid, trace
