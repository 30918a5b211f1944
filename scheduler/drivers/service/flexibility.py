"""Flexibility quotes: how far each site can shed or absorb per slot, and what shedding costs.

A grid coordinator asks ahead of an event (``GetFlexibility``); the answer is computed from the
plan in force (the *baseline*: its load per site and slot) and the problem it was made for,
and nothing is stored, planned or published. Per site and slot of the window:

- **shed floor** [MW]: the lowest load the site can draw in that slot, the slot alone, with
  no job later than in the plan in force. One unit of flow is one GPU busy one slot, as in
  :mod:`scheduler.policies.flow`. A max-flow network (OR-Tools ``SimpleMaxFlow``, built once
  per quote: :class:`ShedNetwork`) carries each job's planned work in the slots not begun
  from a source through its group (jobs of one window, allowed sites and duration at
  ``max_gpus``: by Gale's condition such a group splits back to its jobs exactly, see
  :mod:`scheduler.policies.flow`) to the site-slots of its window (at most the group's
  ``max_gpus`` per slot) and on to the sink at each site-slot's free GPUs
  (:attr:`~scheduler.problem.Problem.capacity_gpus`: site size, grid import limit, caps in
  force). With site-slot ``(s, t)`` closed the most flow is ``f0``; with its arc at capacity
  ``c`` it is ``min(W, f0 + c)`` (a cut holds the arc or not; ``W`` is the work planned), so
  exactly ``W - f0`` GPUs must stay: one max-flow per site-slot. The rise out of the shed
  slot is bounded by the site's ramp-up limit (slot ``t + k`` at most the floor plus ``k``
  ramp-up steps; a fall into a capped slot is allowed, as :mod:`scheduler.ramps` reads a
  cap). Opening the closed arc to ``W - f0`` adds flow only along paths that end on it, so
  the other site-slots keep the flow the closed solve gave them: where that keeps the ramp,
  the floor stands; else it is found by bisection on the same network.
- **absorb ceiling** [MW]: the highest load the site can draw in that slot within its
  capacity (GPUs, import limit, caps): at most what the preemptible jobs allowed there can
  run in the slot (``min(max_gpus, work)`` each; work moved into a slot only frees room
  elsewhere), within one ramp step of the slot before the window and of the ceilings of the
  slots beside it (so an upper bound where ramps bind).
- **baseline** [MW]: the load the plan in force draws.

Per site, the **cost of shedding** below the baseline over the window. The largest shed ``L``
[MW] such that a ``LOAD_LIMIT`` cap at ``max(base load, baseline - L)`` in every slot of the
window keeps every job's planned work placed in the network above (the slots after the window
within the ramp-up, as for the floor) is found by bisection, to 0.1 % of the deepest shed.
At a few levels (25, 50, 75 and 100 % of it, or the levels asked; where nothing can be shed on
time, of the shed down to base load) the caps of the level are planned as a submission of
them now would be: the planner's own choice (:func:`scheduler.choice.choose_plan`: kept,
repaired, greedy or provisional, or the optimizer where a submission waits for it), as
:meth:`~scheduler.drivers.service.planner.Planner.quote` plans a dry run. Each level gives
the extra grid CO2 [kg], the extra cost [currency] and the change of grid energy [MWh] of the
whole plan, and the work made late [GPU-h]; submitting the level's caps
(:attr:`ShedCost.cap_mw`) on the same plan version gets the same answer.

Limits. Non-preemptible jobs stay where the plan has them (their block is not moved), so a
site whose load is mostly blocks shows little to shed, and a re-plan may go below its floor.
Ramp limits are modelled only as said; ``max_site_moves`` is not. A cap at the floor is
answered by the planner's quick path (repair, else greedy): where that misses the plan the
flow proves to exist, the answer is a provisional OPT_OUT until the optimizer's plan follows in
the background; so may a level up to the largest on-time shed be (:attr:`ShedCost.provisional`
says so: at 1,000 jobs the 100 % level was, leaving 58 GPU-h late that the flow places). A
level's cost is that of the plan that answers at once, which may be a greedy or repaired one:
the optimizer's plan that follows often costs less.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from ortools.graph.python import max_flow

from scheduler.contracts import CapType
from scheduler.drivers.service.answers import answer
from scheduler.drivers.service.events import EventError
from scheduler.drivers.service.versions import PlanVersion
from scheduler.horizon import Horizon
from scheduler.policies.base import PlanArrays
from scheduler.problem import LoadCap, Problem

__all__ = [
    "DEFAULT_SHARES",
    "MAX_LEVELS",
    "Flexibility",
    "PlanCaps",
    "ShedAnswer",
    "ShedCost",
    "ShedNetwork",
    "SiteFlexibility",
    "ceiling_gpus",
    "check_levels",
    "level_caps_mw",
    "quote",
    "shed_answer",
    "shed_caps",
    "shed_cost",
    "shed_levels",
    "site_busy_gpus",
    "window_slots",
]

DEFAULT_SHARES = (0.25, 0.5, 0.75, 1.0)  # of the largest on-time shed, when no level is asked
MAX_LEVELS = 10
SHED_RESOLUTION = 1000  # the largest on-time shed is found to 1/1000 of the deepest [-]
_GPU_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ShedCost:
    """What shedding ``shed_mw`` below the baseline in every slot of the window costs, planned
    as a submission of the caps ``cap_mw`` ``[slot]`` (``LOAD_LIMIT``, never below base load)
    would be now; ``shed_mwh`` is the energy below the baseline those caps ask."""

    shed_mw: float
    shed_mwh: float
    cap_mw: tuple[float, ...]
    opt_in: bool  # no job later than in the plan in force
    extra_co2_kg: float  # grid CO2 of the whole plan, new minus old [kg]
    extra_cost: float  # grid and purchase cost of the whole plan, new minus old [currency]
    grid_mwh_change: float  # grid energy of the whole plan, new minus old [MWh]
    late_gpu_hours: float  # work newly unfinished by its deadline [GPU-h]
    late_jobs: int
    provisional: bool = False  # a quick plan answered; the optimizer's may keep more on time


@dataclass(frozen=True)
class SiteFlexibility:
    """One site's quote: per slot of the window ``[slot]`` [MW], and the cost of shedding."""

    site: str
    baseline_mw: np.ndarray
    floor_mw: np.ndarray
    ceiling_mw: np.ndarray
    largest_on_time_shed_mw: float
    costs: tuple[ShedCost, ...]


@dataclass(frozen=True)
class Flexibility:
    """A quote of the plan version ``plan_version`` over the slots ``times`` (their starts)."""

    plan_version: int
    times: pd.DatetimeIndex
    slot_minutes: int
    sites: tuple[SiteFlexibility, ...]


# --- the window ----------------------------------------------------------------------------
def window_slots(
    horizon: Horizon,
    now: pd.Timestamp,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> tuple[int, int]:
    """The slots ``[first, end)`` of ``horizon`` a quote covers: those overlapping
    ``[start, end)`` that have not begun at ``now`` (default: from the next slot to the end of
    ``horizon``). Raises :class:`~.events.EventError` naming ``from`` or ``to``."""
    slot = pd.Timedelta(minutes=horizon.slot_minutes)
    if start is not None and end is not None and not end > start:
        raise EventError("to", f"{end.isoformat()} must be after from ({start.isoformat()})")
    times = horizon.times
    open_ = np.flatnonzero(times > now)  # a slot starting at now has begun
    if not len(open_):
        raise EventError(
            "from",
            f"the operating day planned ended at {horizon.end.isoformat()}; nothing to quote",
        )
    first, last = int(open_[0]), horizon.n_slots
    if start is not None:
        first = max(first, int(np.searchsorted(times + slot, start, side="right")))
    if end is not None:
        last = min(last, int(np.searchsorted(times, end, side="left")))
    if first >= last:
        raise EventError(
            "from" if start is not None else "to",
            f"the window {_iso(start)} to {_iso(end)} holds no slot of the operating day planned "
            f"that has not begun ({times[open_[0]].isoformat()} to {horizon.end.isoformat()})",
        )
    return first, last


def _iso(time: pd.Timestamp | None) -> str:
    return "(unset)" if time is None else time.isoformat()


def check_levels(levels_mw: Sequence[float]) -> tuple[float, ...]:
    """The shed levels asked [MW]: at most :data:`MAX_LEVELS`, each finite and >= 0; raises
    :class:`~.events.EventError` naming the field."""
    if len(levels_mw) > MAX_LEVELS:
        raise EventError("shed_levels_mw", f"{len(levels_mw)} levels; at most {MAX_LEVELS}")
    for k, level in enumerate(levels_mw):
        if not math.isfinite(level) or level < 0:
            raise EventError(f"shed_levels_mw[{k}]", f"{level}; must be a finite number >= 0 MW")
    return tuple(float(v) for v in levels_mw)


# --- the plan as GPUs ----------------------------------------------------------------------
def site_busy_gpus(problem: Problem, arrays: PlanArrays) -> np.ndarray:
    """GPUs busy per ``[site, slot]`` in a plan given as positions in ``problem``."""
    busy = np.zeros((len(problem.sites), problem.horizon.n_slots), dtype=np.int64)
    np.add.at(busy, (arrays.site, arrays.slot), arrays.gpus)
    return busy


# --- the shed network ----------------------------------------------------------------------
class ShedNetwork:
    """The max-flow network of the module docstring for the plan ``arrays`` of ``problem``,
    with the slots before ``first_open`` closed (they have begun: their work stays as it ran).
    A probe lowers some site-slot arcs (:meth:`carries`) and restores them after."""

    def __init__(self, problem: Problem, arrays: PlanArrays, first_open: int) -> None:
        self.problem = problem
        n_sites, n_slots = len(problem.sites), problem.horizon.n_slots
        known = arrays.job >= 0
        job, site, slot, gpus = (a[known] for a in (arrays.job, arrays.site, arrays.slot,
                                                    arrays.gpus))  # fmt: skip
        stays = ~problem.preemptible[job]  # non-preemptible blocks stay where the plan has them
        self.pinned = np.zeros((n_sites, n_slots), dtype=np.int64)
        np.add.at(self.pinned, (site[stays], slot[stays]), gpus[stays])
        moves = ~stays & (slot >= first_open)
        demand = np.bincount(job[moves], weights=gpus[moves], minlength=problem.n_jobs)
        self.free = np.maximum(problem.capacity_gpus - self.pinned, 0)
        self.free[:, :first_open] = 0
        self.work = int(demand.sum())  # GPU-slots every probe must still place
        self._flow = max_flow.SimpleMaxFlow()
        self.site_flow: np.ndarray | None = None  # see carries
        self._placing: dict[int, list[np.ndarray]] = {}  # per site: probes that placed all
        self._cell_arc = self._build(demand.astype(np.int64), first_open)

    def _build(self, demand: np.ndarray, first_open: int) -> np.ndarray:
        """Add the arcs; the arc of each site-slot to the sink ``[site, slot]``."""
        p = self.problem
        n_sites, n_slots = len(p.sites), p.horizon.n_slots
        jobs = np.flatnonzero(demand > 0)
        max_gpus = p.max_gpus[jobs]
        site_code = p.site_mask[jobs].astype(np.int64) @ (1 << np.arange(n_sites, dtype=np.int64))
        keys = np.stack(
            [np.maximum(p.release_slot[jobs], first_open), p.deadline_slot[jobs], site_code,
             -(-demand[jobs] // max_gpus)], axis=1,
        ).reshape(len(jobs), 4)  # fmt: skip
        unique, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        n_groups = len(unique)
        cap = np.bincount(inverse, weights=max_gpus, minlength=n_groups).astype(np.int64)
        supply = np.bincount(inverse, weights=demand[jobs], minlength=n_groups).astype(np.int64)
        mask = ((unique[:, 2:3] >> np.arange(n_sites)) & 1).astype(bool)

        # nodes: 0 source, 1 sink, groups, site-slots, (group, slot) where two sites have room
        group_node = 2 + np.arange(n_groups)
        cell_base = 2 + n_groups
        lengths = np.maximum(unique[:, 1] - unique[:, 0], 0)
        group = np.repeat(np.arange(n_groups), lengths)
        slot = (
            unique[group, 0]
            + np.arange(lengths.sum())
            - np.repeat(np.cumsum(lengths) - lengths, lengths)
        )
        room = mask[group] & (self.free[:, slot].T > 0)  # [pair, site]
        keep = room.any(axis=1)
        group, slot, room = group[keep], slot[keep], room[keep]
        multi = room.sum(axis=1) > 1
        pair_node = np.full(len(group), -1, dtype=np.int64)
        pair_node[multi] = cell_base + n_sites * n_slots + np.arange(int(multi.sum()))

        tails = [np.zeros(n_groups, np.int64), group_node[group[multi]]]
        heads = [group_node, pair_node[multi]]
        caps = [supply, cap[group[multi]]]
        for s in range(n_sites):
            pick = room[:, s]
            tails.append(np.where(multi[pick], pair_node[pick], group_node[group[pick]]))
            heads.append(cell_base + s * n_slots + slot[pick])
            caps.append(cap[group[pick]])
        cells = n_sites * n_slots
        tails.append(cell_base + np.arange(cells))
        heads.append(np.ones(cells, np.int64))
        caps.append(self.free.ravel())
        arcs = self._flow.add_arcs_with_capacity(
            *(np.concatenate(a).astype(np.int64) for a in (tails, heads, caps))
        )
        return np.asarray(arcs[-cells:]).reshape(n_sites, n_slots)

    def most_flow(self) -> int:
        """The most planned work the network carries as it is [GPU-slots]."""
        status = self._flow.solve(0, 1)
        if status != self._flow.OPTIMAL:
            raise RuntimeError(f"max flow ended with status {status}")
        return int(self._flow.optimal_flow())

    def carries(self, site: int, cap_gpus: dict[int, int]) -> int:
        """The most flow with ``site``'s slots ``t`` lowered to at most ``cap_gpus[t]`` GPUs
        (pinned ones included); the network is restored after. :attr:`site_flow` then holds
        the GPUs that flow placed at ``site`` per slot (the pinned ones not counted)."""
        slots = [
            t for t, gpus in cap_gpus.items() if gpus - self.pinned[site, t] < self.free[site, t]
        ]
        if not slots:
            self.site_flow = None
            return self.work
        arcs = self._cell_arc[site, slots]
        room = [max(cap_gpus[t] - int(self.pinned[site, t]), 0) for t in slots]
        self._flow.set_arcs_capacity(arcs, np.array(room, dtype=np.int64))
        try:
            carried = self.most_flow()
            self.site_flow = np.asarray(self._flow.flows(self._cell_arc[site]), dtype=np.int64)
            if carried >= self.work:
                self._placing.setdefault(site, []).append(self.site_flow)
            return carried
        finally:
            self._flow.set_arcs_capacity(arcs, self.free[site, slots])

    def keeps(self, site: int, cap_gpus: dict[int, int]) -> bool:
        """Whether every job's planned work still fits with ``site`` capped at ``cap_gpus``
        (none of them below its pinned GPUs)."""
        if any(gpus < self.pinned[site, t] for t, gpus in cap_gpus.items()):
            return False
        return self.carries(site, cap_gpus) >= self.work

    def top(self, site: int, slot: int) -> int:
        """The most GPUs ``site`` may run in ``slot``."""
        return int(self.pinned[site, slot] + self.free[site, slot])

    # --- floors ----------------------------------------------------------------------------
    def floor_gpus(self, site: int, slot: int, busy: int, ramp_gpus: float) -> int:
        """The fewest GPUs ``site`` can run in ``slot`` with every job's planned work placed
        (module docstring), the rise after the slot within ``ramp_gpus`` per slot; at most
        the plan's ``busy``."""
        pinned = int(self.pinned[site, slot])
        for placed in self._placing.get(site, ()):  # a probe placed all the work elsewhere
            if placed[slot] == 0 and self._rises_within(site, slot, pinned, ramp_gpus, placed):
                return min(pinned, busy)
        floor = min(pinned + max(self.work - self.carries(site, {slot: pinned}), 0), busy)
        if floor == busy:
            return floor
        # with the slot's arc opened to the floor, the flow grows by augmenting paths that end
        # on that arc, leaving every other site-slot's flow as the closed slot's solve placed
        # it: where that keeps the ramp after the slot, no other solve is needed
        closed = self.site_flow
        if closed is not None and self._rises_within(site, slot, floor, ramp_gpus, closed):
            return floor
        if self.keeps(site, self.rising(site, slot, floor, ramp_gpus)):
            return floor
        low, high = floor, busy  # low fails; the plan keeps its own ramps
        while high - low > 1:
            middle = (low + high) // 2
            if self.keeps(site, self.rising(site, slot, middle, ramp_gpus)):
                high = middle
            else:
                low = middle
        return high

    def _rises_within(
        self, site: int, slot: int, gpus: int, ramp_gpus: float, placed: np.ndarray
    ) -> bool:
        """Whether a flow that placed ``placed`` ``[slot]`` GPUs at ``site`` keeps the rise
        after ``gpus`` in ``slot`` within the ramp-up."""
        caps = self.rising(site, slot, gpus, ramp_gpus)
        return all(placed[t] + self.pinned[site, t] <= cap for t, cap in caps.items() if t != slot)

    def rising(self, site: int, slot: int, gpus: int, ramp_gpus: float) -> dict[int, int]:
        """``gpus`` in ``slot``, and the slots after it at most ``ramp_gpus`` more each."""
        caps = {slot: gpus}
        if not math.isfinite(ramp_gpus):
            return caps
        for k in range(1, self.problem.horizon.n_slots - slot):
            bound = math.floor(gpus + k * ramp_gpus + _GPU_TOLERANCE)
            if bound >= self.top(site, slot + k):
                break
            caps[slot + k] = bound
        return caps

    # --- a shed over the window ------------------------------------------------------------
    def largest_shed_gpus(self, site: int, slots: range, busy: np.ndarray, ramp_gpus: float) -> int:
        """The largest shed [GPUs] below the plan's ``busy`` ``[slot]`` in every slot of
        ``slots`` (never below 0 GPUs) that keeps every job's planned work placed, the slots
        after the window within the ramp-up of its last; by bisection, to
        1/:data:`SHED_RESOLUTION` of the deepest shed (rounded down: the shed returned keeps)."""
        deepest = int(max((busy[t] for t in slots), default=0))
        if self.keeps(site, self.shed(site, slots, busy, deepest, ramp_gpus)):
            return deepest
        low, high = 0, deepest  # low keeps (the plan itself), high does not
        step = max(1, deepest // SHED_RESOLUTION)
        while high - low > step:
            middle = (low + high) // 2
            if self.keeps(site, self.shed(site, slots, busy, middle, ramp_gpus)):
                low = middle
            else:
                high = middle
        return low

    def shed(
        self, site: int, slots: range, busy: np.ndarray, gpus: int, ramp_gpus: float
    ) -> dict[int, int]:
        """The caps [GPUs] of a shed of ``gpus`` below ``busy`` in ``slots``."""
        caps = {t: max(int(busy[t]) - gpus, 0) for t in slots}
        last = slots[-1]
        caps.update(self.rising(site, last, caps[last], ramp_gpus))
        return caps


# --- ceilings ------------------------------------------------------------------------------
def ceiling_gpus(
    problem: Problem,
    busy: np.ndarray,
    pinned: np.ndarray,
    slots: range,
    ramp_up_gpus: np.ndarray,
    ramp_down_gpus: np.ndarray,
) -> np.ndarray:
    """The most GPUs each site can run in each slot of ``slots`` ``[site, slot of slots]``: its
    capacity, at most the ``pinned`` GPUs plus what the preemptible jobs allowed there can run
    in the slot (``min(max_gpus, work)`` each), and within one ramp step (``ramp_*_gpus``
    ``[site]``) of the slot before (the plan's ``busy`` GPUs before the window) and of the
    next slot's ceiling; never below the plan's ``busy``."""
    t = np.asarray(slots, dtype=np.int64)
    in_window = (problem.release_slot[:, None] <= t) & (t < problem.deadline_slot[:, None])
    run = np.where(problem.preemptible, np.minimum(problem.max_gpus, problem.work_units), 0)
    can = (problem.site_mask.T * run) @ in_window.astype(np.int64)  # [site, slot of slots]
    top = np.minimum(problem.capacity_gpus[:, t], pinned[:, t] + can).astype(float)
    top = np.maximum(top, busy[:, t])
    for s in range(len(problem.sites)):
        before = busy[s, t[0] - 1] if t[0] > 0 else math.inf
        for k in range(len(t)):  # a rise into each slot within the ramp-up
            top[s, k] = min(top[s, k], (before if k == 0 else top[s, k - 1]) + ramp_up_gpus[s])
        for k in range(len(t) - 2, -1, -1):  # a fall out of it within the ramp-down
            top[s, k] = min(top[s, k], top[s, k + 1] + ramp_down_gpus[s])
        top[s] = np.maximum(top[s], busy[s, t])
    return np.floor(top + _GPU_TOLERANCE).astype(np.int64)


# --- the cost curve ------------------------------------------------------------------------
def shed_levels(asked_mw: Sequence[float], largest_mw: float, deepest_mw: float) -> list[float]:
    """The levels to cost [MW]: those asked, else :data:`DEFAULT_SHARES` of the largest
    on-time shed (of the ``deepest_mw`` shed to base load when nothing sheds on time)."""
    if asked_mw:
        return list(asked_mw)
    scale = largest_mw if largest_mw > 0 else deepest_mw
    if scale <= 0:
        return []
    return [share * scale for share in DEFAULT_SHARES]


def shed_caps(
    site: str, times: pd.DatetimeIndex, slot_minutes: int, cap_mw: np.ndarray, event_id: str
) -> list[LoadCap]:
    """``LOAD_LIMIT`` caps at ``cap_mw`` ``[slot]`` on ``site`` in the slots starting at
    ``times``."""
    slot = pd.Timedelta(minutes=slot_minutes)
    return [
        LoadCap(site, start, start + slot, CapType.LOAD_LIMIT, float(mw), event_id)
        for start, mw in zip(times, cap_mw, strict=True)
    ]


def level_caps_mw(baseline_mw: np.ndarray, base_mw: float, level_mw: float) -> np.ndarray:
    """The caps of a shed of ``level_mw`` below ``baseline_mw`` ``[slot]``, never below the
    base load ``base_mw`` (drawn whatever runs)."""
    return np.maximum(baseline_mw - level_mw, base_mw)


@dataclass(frozen=True)
class ShedAnswer:
    """What a cap did to the plan in force, new minus old (:class:`ShedCost` has the units)."""

    opt_in: bool
    extra_co2_kg: float
    extra_cost: float
    grid_mwh_change: float
    late_gpu_hours: float
    late_jobs: int
    provisional: bool


PlanCaps = Callable[[Sequence[LoadCap]], ShedAnswer]
"""``plan(caps)``: what a submission of ``caps`` now would do, planned as the planner plans one
(:func:`shed_answer` of the plan it chooses)."""


def shed_cost(
    site: str,
    times: pd.DatetimeIndex,
    slot_minutes: int,
    baseline_mw: np.ndarray,
    base_mw: float,
    level_mw: float,
    plan: PlanCaps,
) -> ShedCost:
    """The cost of shedding ``level_mw`` at ``site`` over ``times``, planned by ``plan``."""
    caps_mw = level_caps_mw(baseline_mw, base_mw, level_mw)
    caps = shed_caps(site, times, slot_minutes, caps_mw, f"flexibility-{site}-{level_mw:g}")
    got = plan(caps)
    shed_mwh = float((baseline_mw - caps_mw).sum() * slot_minutes / 60)
    return ShedCost(
        level_mw, shed_mwh, tuple(float(v) for v in caps_mw), got.opt_in, got.extra_co2_kg,
        got.extra_cost, got.grid_mwh_change, got.late_gpu_hours, got.late_jobs, got.provisional,
    )  # fmt: skip


def shed_answer(previous: PlanVersion, new: PlanVersion, problem: Problem) -> ShedAnswer:
    """What planning ``problem`` as ``new`` changed against ``previous`` (see :data:`PlanCaps`)."""
    reply = answer(previous, new, problem)
    before, after = previous.metrics, new.metrics
    return ShedAnswer(
        reply.opt_in, (after.co2_t - before.co2_t) * 1000.0, after.cost - before.cost,
        reply.cost.grid_mwh_change, reply.cost.late_gpu_hours, reply.cost.late_jobs_total,
        new.provisional,
    )  # fmt: skip


# --- the quote -----------------------------------------------------------------------------
def quote(
    problem: Problem,
    arrays: PlanArrays,
    plan_version: int,
    now: pd.Timestamp,
    sites: Sequence[str],
    window: tuple[pd.Timestamp | None, pd.Timestamp | None],
    levels_mw: Sequence[float],
    plan: PlanCaps,
) -> Flexibility:
    """The flexibility of ``sites`` over the slots of ``window`` (``(from, to)``, see
    :func:`window_slots`) given the plan ``arrays`` of ``problem`` (version ``plan_version``);
    each level of ``levels_mw`` (default :func:`shed_levels`) costed by ``plan``. A site the
    problem lacks (no GPU left live) is left out."""
    horizon = problem.horizon
    first, last = window_slots(horizon, now, *window)
    slots = range(first, last)
    network = ShedNetwork(problem, arrays, window_slots(horizon, now)[0])
    busy = site_busy_gpus(problem, arrays)
    mpg, base = problem.mw_per_gpu, problem.base_load_mw
    up, down = problem.ramp_up_mw / mpg, problem.ramp_down_mw / mpg
    ceilings = ceiling_gpus(problem, busy, network.pinned, slots, up, down)
    times = horizon.times[first:last]
    out = []
    for name in sites:
        if name not in problem.site_names:
            continue
        s = problem.site_names.index(name)
        largest = network.largest_shed_gpus(s, slots, busy[s], up[s])  # its probes help
        floors = np.array([network.floor_gpus(s, t, int(busy[s, t]), up[s]) for t in slots])
        baseline = base[s] + busy[s, first:last] * mpg[s]
        levels = shed_levels(levels_mw, largest * mpg[s], float((baseline - base[s]).max()))
        costs = tuple(
            shed_cost(name, times, horizon.slot_minutes, baseline, float(base[s]), level, plan)
            for level in levels
        )
        out.append(
            SiteFlexibility(
                name, baseline, base[s] + floors * mpg[s], base[s] + ceilings[s] * mpg[s],
                float(largest * mpg[s]), costs,
            )
        )  # fmt: skip
    return Flexibility(plan_version, times, horizon.slot_minutes, tuple(out))
