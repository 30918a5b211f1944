"""The planning problem: a horizon, sites with per-slot supply, carbon, price and caps, and jobs.

Everything a policy needs is here as numpy arrays indexed ``[site, slot]`` or ``[job]``; site
order is the order of ``Problem.sites``, slot ``t`` starts at ``horizon.start + t * slot``.

Grid and caps, per site and slot (``mpg`` = MW per busy GPU, PUE included)::

    load_mw = base_load_mw + gpus * mpg
    grid_mw = max(0, load_mw - green_mw)
    grid_mw <= grid_cap_mw   (grid import limit and IMPORT_CAPACITY_LIMIT caps)
    load_mw <= load_cap_mw   (LOAD_LIMIT caps; inf when none)

What each type of cap limits is one row of :data:`scheduler.caps.CAP_KINDS`. A ``PRICE``
"cap" limits nothing: it is a coordinator's grid price [currency/MWh] for a site and window,
which replaces the site's tariff in the slots it overlaps (:attr:`Problem.price_per_mwh`; the
highest where prices overlap) and so enters the cost objective.

A cap is in force in every slot its interval ``[start, end)`` overlaps (the conservative
reading of a cap that starts or ends inside a slot).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scheduler.caps import is_limit, most_load_mw, uncapped
from scheduler.config import Config, Site
from scheduler.contracts import (
    CAP_LIST_SEPARATOR,
    CAPS,
    SUPPLY,
    UTC_ISO_FORMAT,
    CapType,
    TableError,
    UserError,
    read_table,
)
from scheduler.horizon import Horizon
from scheduler.jobs import window_slots, work_units
from scheduler.ramps import ramp_limits_mw
from scheduler.storage import StorageFleet

__all__ = [
    "IMPORT_CAPACITY_LIMIT",
    "LOAD_LIMIT",
    "LoadCap",
    "Problem",
    "ProblemError",
    "cap_spans",
    "caps_frame",
    "caps_from_frame",
    "hourly_profile",
    "priced_per_mwh",
    "problem_for",
    "purchased_green_mw",
    "read_caps",
    "site_green_mw",
    "supply_matrix",
    "tightest_caps_mw",
]

log = logging.getLogger(__name__)

IMPORT_CAPACITY_LIMIT = CapType.IMPORT_CAPACITY_LIMIT  # limits grid draw: load - green
LOAD_LIMIT = CapType.LOAD_LIMIT  # limits total site load
_GPU_TOLERANCE = 1e-9  # floor(x + tol): a cap met exactly still admits the GPU


class ProblemError(UserError):
    """Inputs that do not make a plannable problem; the message says what and what is allowed."""


@dataclass(frozen=True)
class LoadCap:
    """A grid coordinator's cap: site ``site`` may draw at most ``value_mw`` in ``[start, end)``.

    ``type`` is ``IMPORT_CAPACITY_LIMIT`` (grid draw, load minus green) or ``LOAD_LIMIT``
    (total site load); or ``PRICE``, which limits nothing: ``value_mw`` is then the grid price
    [currency/MWh] in ``[start, end)`` in place of the site's tariff. Times are converted to
    UTC. ``event_id`` names the event the cap came from (empty when none did); it travels to
    ``run.csv``, which names the (limiting) caps in force and binding in each slot by
    :attr:`label`. Two caps alike but for their ids are two caps.
    """

    site: str
    start: pd.Timestamp
    end: pd.Timestamp
    type: CapType
    value_mw: float
    event_id: str = ""

    def __post_init__(self) -> None:
        if self.type not in tuple(CapType):
            raise ProblemError(
                f"load cap type {self.type!r} is unknown; allowed: {', '.join(CapType)}"
            )
        object.__setattr__(self, "type", CapType(self.type))
        for name in ("start", "end"):
            time = pd.Timestamp(getattr(self, name))
            if time.tzinfo is None:
                raise ProblemError(f"load cap {name} {time} must be tz-aware (UTC)")
            object.__setattr__(self, name, time.tz_convert("UTC"))
        if not self.end > self.start:
            raise ProblemError(f"load cap end {self.end} must be after start {self.start}")
        if not self.value_mw >= 0:
            raise ProblemError(f"load cap value_mw {self.value_mw} must be >= 0")
        if CAP_LIST_SEPARATOR in self.event_id:
            raise ProblemError(
                f"load cap event_id {self.event_id!r} has a {CAP_LIST_SEPARATOR!r}; it separates "
                "the caps named in run.csv"
            )

    @property
    def label(self) -> str:
        """How ``run.csv`` names the cap: its event id, else its type and interval in UTC
        (``LOAD_LIMIT:2026-06-21T02:00:00Z/2026-06-21T05:00:00Z``)."""
        if self.event_id:
            return self.event_id
        start, end = (t.strftime(UTC_ISO_FORMAT) for t in (self.start, self.end))
        return f"{self.type}:{start}/{end}"


def caps_frame(caps: Sequence[LoadCap]) -> pd.DataFrame:
    """The caps table (:data:`~scheduler.contracts.CAPS`) of ``caps``."""
    rows = [{**vars(c), "type": str(c.type)} for c in caps]
    return CAPS.canonical(pd.DataFrame(rows, columns=CAPS.names))


def caps_from_frame(frame: pd.DataFrame) -> list[LoadCap]:
    """Caps from a canonical caps table."""
    return [
        LoadCap(str(site), start, end, CapType(kind), float(value), str(event_id))
        for site, start, end, kind, value, event_id in zip(
            frame["site"],
            frame["start"],
            frame["end"],
            frame["type"],
            frame["value_mw"],
            frame["event_id"],
            strict=True,
        )
    ]


def read_caps(path: str | Path, site_names: Sequence[str]) -> tuple[LoadCap, ...]:
    """Read a caps CSV (``site, start, end, type, value_mw`` and an optional ``event_id``; ISO
    times with an offset).

    Raises :class:`~scheduler.contracts.TableError` or :class:`ProblemError` naming the file,
    the line and the field.
    """
    frame = read_table(CAPS, path)
    for line, (site, start, end, event_id) in enumerate(
        zip(frame["site"], frame["start"], frame["end"], frame["event_id"], strict=True), start=2
    ):
        if site not in site_names:
            raise TableError(
                f"{path} line {line}: site: unknown site {site!r}; "
                f"known sites: {', '.join(site_names)}"
            )
        if not end > start:
            raise TableError(f"{path} line {line}: end: {end} must be after start {start}")
        if CAP_LIST_SEPARATOR in event_id:
            raise TableError(
                f"{path} line {line}: event_id: {event_id!r} has a {CAP_LIST_SEPARATOR!r}; "
                "allowed: any other characters"
            )
    return tuple(caps_from_frame(frame))


def hourly_profile(
    value: float | Sequence[float] | Mapping[Any, float | Sequence[float]],
    times: pd.DatetimeIndex,
    timezone: str,
) -> np.ndarray:
    """Per-slot values of a constant, of 24 hourly values given in local time ``timezone``, or
    of either per day type (``{"weekday": ..., "weekend": ...}``, Saturday and Sunday local).

    Slot ``t`` takes the value of the local hour (and day) in which it starts.
    """
    if isinstance(value, Mapping):
        weekend = times.tz_convert(timezone).dayofweek.to_numpy() >= 5
        by_type = {name: hourly_profile(value[name], times, timezone) for name in value}
        return np.where(weekend, by_type["weekend"], by_type["weekday"])
    if isinstance(value, int | float):
        return np.full(len(times), float(value))
    hours = times.tz_convert(timezone).hour.to_numpy()
    return np.asarray(value, dtype=float)[hours]


def purchased_green_mw(sites: Sequence[Site], horizon: Horizon) -> np.ndarray:
    """Green power each site's purchase (PPA) delivers ``[site, slot]`` [MW]; 0 without one."""
    return np.array(
        [
            np.zeros(horizon.n_slots)
            if s.green_purchase is None
            else hourly_profile(s.green_purchase.delivered_mw, horizon.times, s.timezone)
            for s in sites
        ]
    ).reshape(len(sites), horizon.n_slots)


def site_green_mw(
    supply: pd.DataFrame, sites: Sequence[Site], horizon: Horizon, column: str = "green_mw"
) -> np.ndarray:
    """The green power each site has ``[site, slot]`` [MW]: the supply table's ``column`` (its
    plants) plus what its green purchase delivers."""
    plants = supply_matrix(supply, [s.name for s in sites], horizon, column)
    if all(s.green_purchase is None for s in sites):
        return plants
    return plants + purchased_green_mw(sites, horizon)


def supply_matrix(
    supply: pd.DataFrame, site_names: Sequence[str], horizon: Horizon, column: str = "green_mw"
) -> np.ndarray:
    """``supply[column]`` as an array ``[site, slot]`` [MW]; every site needs every slot.

    Rows outside the horizon are ignored. Raises :class:`ProblemError` naming a missing site,
    missing or duplicate slots, or bad values.
    """
    missing = [c for c in ("time", "site", column) if c not in supply.columns]
    if missing:
        raise ProblemError(
            f"supply table lacks column(s) {', '.join(missing)}; it needs {', '.join(SUPPLY.names)}"
        )
    code_of = {name: code for code, name in enumerate(site_names)}
    site_code = np.array([code_of.get(site, -1) for site in supply["site"].to_numpy()], np.int64)
    times = supply["time"]
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        times = pd.to_datetime(times, utc=True)
    time_ns = times.array.as_unit("ns").asi8  # since the epoch, UTC
    slot_ns = horizon.slot_minutes * 60 * 10**9
    offset_ns = time_ns - horizon.start.as_unit("ns").value
    on_grid = (
        (site_code >= 0)
        & (offset_ns >= 0)
        & (offset_ns < horizon.n_slots * slot_ns)
        & (offset_ns % slot_ns == 0)
    )
    slot = offset_ns[on_grid] // slot_ns
    site = site_code[on_grid]
    values = supply[column].to_numpy(dtype=float)[on_grid]
    count = np.zeros((len(site_names), horizon.n_slots), dtype=np.int64)
    np.add.at(count, (site, slot), 1)
    if (count > 1).any():
        s, t = np.argwhere(count > 1)[0]
        raise ProblemError(
            f"supply has more than one row for site {site_names[s]} at {horizon.times[t]}"
        )
    out = np.full((len(site_names), horizon.n_slots), np.nan)
    out[site, slot] = values
    for s, name in enumerate(site_names):
        if not count[s].any():
            raise ProblemError(
                f"supply has no rows for site {name!r} in the horizon {horizon.start} to "
                f"{horizon.end}; sites in supply: "
                f"{', '.join(sorted(map(str, supply['site'].unique())))}"
            )
        gaps = (count[s] == 0) | np.isnan(out[s])
        if gaps.any():
            gaps = horizon.times[gaps]
            raise ProblemError(
                f"supply for site {name!r} lacks {len(gaps)} of {horizon.n_slots} slots of "
                f"{horizon.slot_minutes} min (first {gaps[0]}); slot starts must match the horizon"
            )
        if (out[s] < 0).any():
            raise ProblemError(f"supply {column} for site {name!r} has negative values")
    return out


def cap_spans(
    caps: Sequence[LoadCap], sites: Sequence[Site], horizon: Horizon
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each cap is in force: its site's row in ``sites``, its first slot and its end slot
    (exclusive), arrays ``[cap]`` (first >= end: outside the horizon). A cap is in force in
    every slot its interval overlaps. Raises :class:`ProblemError` for an unknown site."""
    names = {s.name: row for row, s in enumerate(sites)}
    unknown = sorted({cap.site for cap in caps} - names.keys())
    if unknown:
        raise ProblemError(
            f"unknown site {unknown[0]!r} in load cap; known sites: {', '.join(sorted(names))}"
        )
    # vectorised: a service holds hundreds of caps and builds these for every change
    slot_ns, start_ns = horizon.slot_minutes * 60 * 10**9, horizon.start.value
    row = np.array([names[cap.site] for cap in caps], dtype=np.int64)
    first = np.maximum(np.floor_divide([c.start.value - start_ns for c in caps], slot_ns), 0)
    end = -np.floor_divide([start_ns - c.end.value for c in caps], slot_ns)
    end = np.minimum(end, horizon.n_slots)
    return row, first.astype(np.int64), end.astype(np.int64)


def tightest_caps_mw(
    caps: Sequence[LoadCap], sites: Sequence[Site], horizon: Horizon
) -> dict[CapType, np.ndarray]:
    """The tightest cap of each type per ``[site, slot]`` [MW]: the type's bound without caps
    (:data:`~scheduler.caps.CAP_KINDS`: the grid import limit, no load limit) lowered by every
    cap of the type in force (in every slot its interval overlaps)."""
    tightest = uncapped(sites, horizon.n_slots)
    if not caps:
        return tightest
    row, first, end = cap_spans(caps, sites, horizon)
    value = np.array([cap.value_mw for cap in caps])
    kind = np.array([str(cap.type) for cap in caps])
    length = np.maximum(end - first, 0)
    cap_of = np.repeat(np.arange(len(caps)), length)
    slot = first[cap_of] + np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
    cell = row[cap_of] * horizon.n_slots + slot
    for cap_type, target in tightest.items():
        of_type = kind[cap_of] == str(cap_type)
        np.minimum.at(target.reshape(-1), cell[of_type], value[cap_of][of_type])
    return tightest


def priced_per_mwh(
    tariff_per_mwh: np.ndarray, caps: Sequence[LoadCap], sites: Sequence[Site], horizon: Horizon
) -> np.ndarray:
    """The grid price ``[site, slot]`` [currency/MWh]: ``tariff_per_mwh`` ``[site, slot]``
    where no ``PRICE`` cap is in force, else the price in force (in every slot its interval
    overlaps, as for limits; the highest where prices of several events overlap)."""
    prices = [cap for cap in caps if cap.type is CapType.PRICE]
    if not prices:
        return tariff_per_mwh
    row, first, end = cap_spans(prices, sites, horizon)
    priced = np.full(tariff_per_mwh.shape, -np.inf)
    for s, a, b, cap in zip(row, first, end, prices, strict=True):
        priced[s, a:b] = np.maximum(priced[s, a:b], cap.value_mw)
    return np.where(np.isneginf(priced), tariff_per_mwh, priced)


@dataclass(frozen=True, eq=False)
class Problem:
    """What to plan: horizon, sites, planning supply, jobs, caps.

    ``supply`` is what policies plan on (usually a forecast); ``actual_supply``, when given, is
    what happened and is used by the oracle and to settle plans. ``jobs`` is a canonical jobs
    table (see :mod:`scheduler.jobs`), already validated against the horizon and sites.
    ``max_site_moves`` limits how often one job may change site (``None`` = no limit, 0 = one
    site for the whole job). ``limit_green_column`` is the supply column the grid import limit
    and caps are checked against (``green_mw``, or ``green_mw_p10`` for a margin against
    forecast error); costs always use ``green_mw``. ``initial_load_mw`` is each site's load
    in the slot before the horizon (the previous day's last slot) [MW], ``None`` when unknown:
    the ramp limits then bind from the horizon's second slot. ``initial_soc_mwh`` is each
    storage unit's energy before the horizon (:attr:`storage` order) [MWh], ``None``: each
    unit's ``state_of_charge_initial``. ``objective_weights`` are what a grid MWh weighs in
    the policies' objective: ``(carbon, cost)`` per kg CO2 and per unit of currency (``(1, 0)``:
    grid CO2 in kg, the default; ``(0, 1)``: grid cost).
    """

    horizon: Horizon
    sites: tuple[Site, ...]
    jobs: pd.DataFrame
    supply: pd.DataFrame
    caps: tuple[LoadCap, ...] = ()
    actual_supply: pd.DataFrame | None = None
    user_region: str = "singapore"
    max_site_moves: int | None = None
    limit_green_column: str = "green_mw"
    objective_weights: tuple[float, float] = (1.0, 0.0)
    initial_load_mw: tuple[float, ...] | None = None
    initial_soc_mwh: tuple[float, ...] | None = None

    def __getstate__(self) -> dict:
        """The fields and the values cached so far, copied at once: another thread may cache
        more while this one pickles (the service's pool pickles the plan in force for the
        background optimiser while its planner thread may still read that problem)."""
        return dict(self.__dict__)

    def with_caps(self, caps: Sequence[LoadCap]) -> Problem:
        """This problem under ``caps`` instead of its own, sharing every value derived from
        what caps leave alone (computed once here): the service builds one per batch of cap
        changes."""
        capped = replace(self, caps=tuple(caps))
        for name in _CAPS_FREE:
            capped.__dict__[name] = getattr(self, name)
        if capped.prices == self.prices:  # the same prices: the same objective
            for name in _PRICES_ONLY:
                capped.__dict__[name] = getattr(self, name)
        return capped

    def on_actual_supply(self) -> Problem:
        """The same problem planned on ``actual_supply`` (the oracle's view)."""
        if self.actual_supply is None:
            raise ProblemError("this problem has no actual_supply; the oracle needs one")
        return replace(self, supply=self.actual_supply, limit_green_column="green_mw")

    # --- sites x slots -----------------------------------------------------------------
    @cached_property
    def site_names(self) -> list[str]:
        return [s.name for s in self.sites]

    @cached_property
    def slot_hours(self) -> float:
        """Slot length [h]."""
        return self.horizon.slot_minutes / 60.0

    @cached_property
    def green_mw(self) -> np.ndarray:
        """Planning green supply ``[site, slot]`` [MW]: the plants' and the green purchases'."""
        return site_green_mw(self.supply, self.sites, self.horizon)

    @cached_property
    def carbon_kg_per_mwh(self) -> np.ndarray:
        """Grid carbon intensity ``[site, slot]`` [kg CO2/MWh]."""
        return self._profile("carbon_kg_per_mwh")

    @cached_property
    def price_per_mwh(self) -> np.ndarray:
        """Grid energy price ``[site, slot]`` [currency/MWh]: each site's tariff, replaced by
        the ``PRICE`` caps in force (:func:`priced_per_mwh`)."""
        return priced_per_mwh(self._profile("price_per_mwh"), self.caps, self.sites, self.horizon)

    @cached_property
    def prices(self) -> tuple[LoadCap, ...]:
        """The ``PRICE`` caps among :attr:`caps` (they limit nothing)."""
        return tuple(cap for cap in self.caps if cap.type is CapType.PRICE)

    @cached_property
    def caps_mw(self) -> dict[CapType, np.ndarray]:
        """The tightest cap of each type ``[site, slot]`` [MW] (:func:`tightest_caps_mw`)."""
        return tightest_caps_mw(self.caps, self.sites, self.horizon)

    @cached_property
    def _cap_spans(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return cap_spans(self.caps, self.sites, self.horizon)

    def caps_in_force(self, t: int) -> list[tuple[int, LoadCap]]:
        """The caps limiting a site's draw in slot ``t``, each with its site's row: ``(site,
        cap)`` (a ``PRICE`` limits nothing and is not one of them)."""
        row, first, end = self._cap_spans
        return [
            (int(row[k]), self.caps[k])
            for k in np.flatnonzero((first <= t) & (t < end))
            if is_limit(self.caps[k].type)
        ]

    @property
    def grid_cap_mw(self) -> np.ndarray:
        """Tightest grid-draw cap ``[site, slot]`` [MW] (import limit and import caps)."""
        return self.caps_mw[CapType.IMPORT_CAPACITY_LIMIT]

    @property
    def load_cap_mw(self) -> np.ndarray:
        """Tightest load cap ``[site, slot]`` [MW]; ``inf`` where none is in force."""
        return self.caps_mw[CapType.LOAD_LIMIT]

    @cached_property
    def mw_per_gpu(self) -> np.ndarray:
        """Site power per busy GPU, PUE included ``[site]`` [MW]."""
        return np.array([s.mw_per_gpu for s in self.sites])

    def load_mw_of(self, gpus: Sequence[float]) -> tuple[float, ...]:
        """Each site's load with ``gpus`` ``[site]`` busy [MW]."""
        return tuple((self.base_load_mw + np.asarray(gpus) * self.mw_per_gpu).tolist())

    @cached_property
    def base_load_mw(self) -> np.ndarray:
        """Load drawn whatever runs ``[site]`` [MW]."""
        return np.array([s.base_load_mw for s in self.sites])

    @cached_property
    def site_gpus(self) -> np.ndarray:
        """GPUs per site ``[site]``."""
        return np.array([s.gpus for s in self.sites], dtype=np.int64)

    @cached_property
    def green_gpus(self) -> np.ndarray:
        """GPUs that green supply carries after base load ``[site, slot]`` (float, may be < 0)."""
        return (self.green_mw - self.base_load_mw[:, None]) / self.mw_per_gpu[:, None]

    @cached_property
    def objective_per_mwh(self) -> np.ndarray:
        """What a MWh of grid energy weighs in the objective ``[site, slot]``: its CO2 [kg]
        under the default weights, its cost [currency] under ``(0, 1)``, their blend else."""
        carbon, cost = self.objective_weights
        if cost == 0:
            return carbon * self.carbon_kg_per_mwh
        return carbon * self.carbon_kg_per_mwh + cost * self.price_per_mwh

    @cached_property
    def grid_kg_per_gpu_slot(self) -> np.ndarray:
        """What one GPU busy one slot on grid power weighs in the objective ``[site, slot]``:
        grid CO2 [kg] under the default objective (:attr:`objective_per_mwh`)."""
        return self.objective_per_mwh * self.mw_per_gpu[:, None] * self.slot_hours

    @cached_property
    def limit_green_mw(self) -> np.ndarray:
        """Green supply [MW] the grid limit and caps are checked against, ``[site, slot]``."""
        if self.limit_green_column == "green_mw":
            return self.green_mw
        return np.minimum(
            site_green_mw(self.supply, self.sites, self.horizon, self.limit_green_column),
            self.green_mw,
        )

    @cached_property
    def capacity_gpus(self) -> np.ndarray:
        """Most GPUs busy per ``[site, slot]`` under site size, grid cap, load cap and the
        terminal ramp condition (int)."""
        return self.capacity_with(np.zeros((len(self.sites), self.horizon.n_slots)))

    @property
    def terminal_load_mw(self) -> np.ndarray:
        """Most load per site in the horizon's last slot ``[site]`` [MW]: base load plus one
        ramp-down step, so whatever follows the horizon can start from base load (``inf``
        without a ramp-down limit). A terminal condition: the midnight step keeps the limit
        whatever work the next day brings."""
        return self.base_load_mw + self.ramp_down_mw

    def capacity_with(self, fixed_gpus: np.ndarray) -> np.ndarray:
        """GPUs still available per ``[site, slot]`` when ``fixed_gpus`` are already busy."""
        mpg = self.mw_per_gpu[:, None]
        base = self.base_load_mw[:, None]
        by_caps = (most_load_mw(self.caps_mw, self.limit_green_mw) - base) / mpg
        terminal = (self.terminal_load_mw - self.base_load_mw) / self.mw_per_gpu
        by_caps[:, -1] = np.minimum(by_caps[:, -1], terminal)
        limit = np.minimum(by_caps, self.site_gpus[:, None].astype(float))
        free = np.floor(limit + _GPU_TOLERANCE) - fixed_gpus
        return np.maximum(free, 0).astype(np.int64)

    @cached_property
    def _ramps(self) -> tuple[np.ndarray, np.ndarray]:
        return ramp_limits_mw(self.sites, self.horizon.slot_minutes)

    @property
    def ramp_up_mw(self) -> np.ndarray:
        """Largest rise of each site's load from one slot to the next ``[site]`` [MW per slot];
        ``inf`` without a limit."""
        return self._ramps[0]

    @property
    def ramp_down_mw(self) -> np.ndarray:
        """Largest fall of each site's load from one slot to the next ``[site]`` [MW per slot];
        ``inf`` without a limit."""
        return self._ramps[1]

    @cached_property
    def storage(self) -> StorageFleet:
        """The sites' storage units as arrays ``[unit]`` (site order, each site's in order)."""
        return StorageFleet.of([site.storage for site in self.sites])

    @cached_property
    def soc_start_mwh(self) -> np.ndarray:
        """Each storage unit's energy before the horizon ``[unit]`` [MWh]."""
        if self.initial_soc_mwh is None:
            return self.storage.soc_initial_mwh
        soc = np.asarray(self.initial_soc_mwh, dtype=float)
        if soc.shape != (self.storage.n_units,):
            raise ProblemError(
                f"initial_soc_mwh has {soc.size} value(s); it needs one per storage unit "
                f"({self.storage.n_units})"
            )
        return np.minimum(soc, self.storage.energy_mwh)

    @cached_property
    def initial_gpus(self) -> np.ndarray | None:
        """GPUs busy per site in the slot before the horizon ``[site]`` (float), from
        ``initial_load_mw``; ``None`` when unknown."""
        if self.initial_load_mw is None:
            return None
        load = np.asarray(self.initial_load_mw, dtype=float)
        if load.shape != (len(self.sites),):
            raise ProblemError(
                f"initial_load_mw has {load.size} value(s); it needs one per site "
                f"({', '.join(self.site_names)})"
            )
        return np.maximum(load - self.base_load_mw, 0.0) / self.mw_per_gpu

    def _profile(self, field: str) -> np.ndarray:
        times = self.horizon.times
        return np.array([hourly_profile(getattr(s, field), times, s.timezone) for s in self.sites])

    # --- jobs -----------------------------------------------------------------------------
    @cached_property
    def n_jobs(self) -> int:
        return len(self.jobs)

    @cached_property
    def job_ids(self) -> np.ndarray:
        return self.jobs["job_id"].to_numpy(dtype=object)

    @cached_property
    def gpu_hours(self) -> np.ndarray:
        """Work per job as asked ``[job]`` [GPU-h]."""
        return self.jobs["gpu_hours"].to_numpy(dtype=float)

    @cached_property
    def work_units(self) -> np.ndarray:
        """Work per job in GPU-slots ``[job]`` (int)."""
        return work_units(self.gpu_hours, self.horizon.slot_minutes)

    @cached_property
    def tokens_per_gpu_hour(self) -> np.ndarray:
        """Tokens each job produces per GPU-hour of its work ``[job]`` [token/GPU-h]."""
        return self.jobs["tokens"].to_numpy(float) / self.jobs["gpu_hours"].to_numpy(float)

    @cached_property
    def max_gpus(self) -> np.ndarray:
        """Most GPUs per job per slot ``[job]`` (int)."""
        return self.jobs["max_gpus"].to_numpy(dtype=np.int64)

    @cached_property
    def _windows(self) -> tuple[np.ndarray, np.ndarray]:
        first, end = window_slots(self.jobs, self.horizon)
        return np.clip(first, 0, self.horizon.n_slots), np.clip(end, 0, self.horizon.n_slots)

    @property
    def release_slot(self) -> np.ndarray:
        """First usable slot per job ``[job]``."""
        return self._windows[0]

    @property
    def deadline_slot(self) -> np.ndarray:
        """End slot per job, exclusive ``[job]``."""
        return self._windows[1]

    @cached_property
    def site_mask(self) -> np.ndarray:
        """Allowed sites ``[job, site]`` (bool); an empty ``sites`` cell allows all."""
        cells, inverse = np.unique(self.jobs["sites"].to_numpy(dtype=str), return_inverse=True)
        by_cell = np.array(
            [[not cell or name in cell.split(";") for name in self.site_names] for cell in cells],
            dtype=bool,
        ).reshape(len(cells), len(self.sites))
        return by_cell[inverse]

    @cached_property
    def preemptible(self) -> np.ndarray:
        return self.jobs["preemptible"].to_numpy(dtype=bool)

    @cached_property
    def duration_slots(self) -> np.ndarray:
        """Slots a job needs at ``max_gpus``: ``ceil(work_units / max_gpus)`` ``[job]``."""
        return -(-self.work_units // self.max_gpus)

    @cached_property
    def latency_order(self) -> list[int]:
        """Site indices by latency to ``user_region`` (unknown latency last), ties by name."""

        def key(s: int) -> tuple[float, str]:
            site = self.sites[s]
            return (site.latency_ms.get(self.user_region, np.inf), site.name)

        return sorted(range(len(self.sites)), key=key)


_CAPS_FREE = (  # Problem's cached values that do not depend on its caps
    "site_names", "slot_hours", "green_mw", "carbon_kg_per_mwh", "mw_per_gpu",
    "base_load_mw", "site_gpus", "green_gpus",
    "limit_green_mw", "_ramps", "initial_gpus", "storage", "soc_start_mwh", "n_jobs", "job_ids",
    "work_units", "tokens_per_gpu_hour", "max_gpus", "_windows", "site_mask", "preemptible",
    "duration_slots", "latency_order",
)  # fmt: skip
_PRICES_ONLY = (  # Problem's cached values that depend on its caps through the PRICE caps only
    "price_per_mwh", "objective_per_mwh", "grid_kg_per_gpu_slot",
)  # fmt: skip


def problem_for(
    config: Config,
    horizon: Horizon,
    jobs: pd.DataFrame,
    supply: pd.DataFrame,
    *,
    caps: Sequence[LoadCap] = (),
    actual_supply: pd.DataFrame | None = None,
    sites: Sequence[Site] | None = None,
    limits_on: str | None = None,
) -> Problem:
    """A :class:`Problem` with the config's sites (or ``sites``) and planning settings.

    ``limits_on`` overrides ``config.solver.limits_on`` (e.g. ``"forecast"`` for actual supply,
    which has no quantiles).
    """
    limits_on = config.solver.limits_on if limits_on is None else limits_on
    return Problem(
        horizon=horizon,
        sites=tuple(config.sites.values()) if sites is None else tuple(sites),
        jobs=jobs,
        supply=supply,
        caps=tuple(caps),
        actual_supply=actual_supply,
        user_region=config.workload.user_region,
        max_site_moves=config.solver.max_site_moves,
        limit_green_column="green_mw_p10" if limits_on == "p10" else "green_mw",
        objective_weights=config.solver.objective_weights(),
    )
