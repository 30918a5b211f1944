"""Ramp limits: how fast a site's load may change from one slot to the next.

A grid operator connects a large load with ramp-rate limits (MW per minute, up and down); a
site's config holds them (``ramp_up_mw_per_min``, ``ramp_down_mw_per_min``) and the problem
turns them into MW per slot (:attr:`~scheduler.problem.Problem.ramp_up_mw`). The load steps at
slot boundaries; the step into slot ``t`` is ``load[t] - load[t - 1]``, and into the first slot
it is taken from the previous day's last slot when known (``initial_load_mw``), else not
counted.

Two readings of the limit are shared by the validator, the metrics, the policies and the
settlement engine:

* a rise is never above the ramp-up limit;
* a fall is never below the ramp-down limit, except where a cap (or the grid import limit on
  the supply) leaves less room than the ramp needs (a cap is hard and wins), where the slot
  before is still coming down from the day before's load as fast as the limit allows, or in a
  plan's first slot, stepping from the day before, where no work was left that could have run.
  Where work runs out later in the day the load comes down over the slots ahead of it (plans:
  :mod:`scheduler.policies.descent`; settlement: work is not pulled forward into a slot the
  site could not come down from).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scheduler.config import Site

__all__ = [
    "RAMP_TOLERANCE_MW",
    "RampBounds",
    "RampStats",
    "load_steps_mw",
    "ramp_bounds_gpus",
    "ramp_limits_mw",
    "ramp_stats",
]

RAMP_TOLERANCE_MW = 1e-6  # rounding slack when checking ramps [MW]
_GPU_TOLERANCE = 1e-9


def ramp_limits_mw(sites: Sequence[Site], slot_minutes: int) -> tuple[np.ndarray, np.ndarray]:
    """Ramp-up and ramp-down limits per site ``[site]`` [MW per slot]; ``inf`` without one."""

    def per_slot(field: str) -> np.ndarray:
        rates = [getattr(s, field) for s in sites]
        return np.array([np.inf if r is None else r * slot_minutes for r in rates], dtype=float)

    return per_slot("ramp_up_mw_per_min"), per_slot("ramp_down_mw_per_min")


def load_steps_mw(load_mw: np.ndarray, initial_load_mw: np.ndarray | None) -> np.ndarray:
    """Step into each slot ``[site, slot]`` [MW]: ``load[t] - load[t - 1]``.

    The first slot steps from ``initial_load_mw`` ``[site]``, or 0 when that is ``None``.
    """
    load_mw = np.asarray(load_mw, dtype=float)
    first = (
        load_mw[:, :1] * 0.0
        if initial_load_mw is None
        else (load_mw[:, :1] - np.asarray(initial_load_mw, dtype=float)[:, None])
    )
    return np.concatenate([first, np.diff(load_mw, axis=1)], axis=1)


@dataclass(frozen=True)
class RampStats:
    """Per-site step statistics of a load profile; arrays ``[site]``.

    ``largest_step_mw`` is the largest absolute change between adjacent slots [MW per slot],
    ``total_swing_mw`` the sum of absolute changes [MW], ``slots_over_ramp`` the slots whose
    step is above the ramp limit (either direction, no exemption) [-].
    """

    largest_step_mw: np.ndarray
    total_swing_mw: np.ndarray
    slots_over_ramp: np.ndarray


def ramp_stats(
    load_mw: np.ndarray,
    ramp_up_mw: np.ndarray,
    ramp_down_mw: np.ndarray,
    initial_load_mw: np.ndarray | None = None,
) -> RampStats:
    """Steps of ``load_mw`` ``[site, slot]`` against limits ``[site]`` [MW per slot]."""
    steps = load_steps_mw(load_mw, initial_load_mw)
    over = (steps > ramp_up_mw[:, None] + RAMP_TOLERANCE_MW) | (
        -steps > ramp_down_mw[:, None] + RAMP_TOLERANCE_MW
    )
    return RampStats(
        largest_step_mw=np.abs(steps).max(axis=1, initial=0.0),
        total_swing_mw=np.abs(steps).sum(axis=1),
        slots_over_ramp=over.sum(axis=1).astype(np.int64),
    )


@dataclass(frozen=True)
class RampBounds:
    """GPUs per site ``[site]`` (int) a slot may run: at most ``most``, at least ``least``.

    ``needed`` is what the ramp-down limit alone asks for; where it is above ``most`` a cap (or
    the site's size, import limit or live capacity) leaves less room and wins.
    """

    most: np.ndarray
    least: np.ndarray
    needed: np.ndarray

    @property
    def cap_wins(self) -> np.ndarray:
        """Sites where the ramp-down limit cannot hold under the room left ``[site]`` (bool)."""
        return self.needed > self.most


def ramp_bounds_gpus(
    previous_gpus: np.ndarray | None,
    ramp_up_mw: np.ndarray,
    ramp_down_mw: np.ndarray,
    mw_per_gpu: np.ndarray,
    allowed_gpus: np.ndarray,
) -> RampBounds:
    """The GPUs per site a slot may run after ``previous_gpus`` ``[site]`` ran in the slot before.

    ``most`` is ``allowed_gpus`` (site size, caps, import limit, live capacity) lowered by the
    ramp-up limit; ``least`` is what the ramp-down limit needs, lowered to ``most`` where that
    leaves less room (a cap is hard and wins). ``previous_gpus=None`` (the load before the
    first slot is unknown) bounds nothing. Limits are [MW per slot], ``mw_per_gpu`` [MW].
    """
    allowed = np.asarray(allowed_gpus, dtype=np.int64)
    if previous_gpus is None:
        none = np.zeros_like(allowed)
        return RampBounds(allowed, none, none)
    previous = np.asarray(previous_gpus, dtype=float)
    up = np.floor(previous + ramp_up_mw / mw_per_gpu + _GPU_TOLERANCE)
    down = np.ceil(previous - ramp_down_mw / mw_per_gpu - _GPU_TOLERANCE)
    most = np.minimum(allowed, np.where(np.isfinite(up), up, allowed)).astype(np.int64)
    needed = np.where(np.isfinite(down), np.maximum(down, 0), 0).astype(np.int64)
    return RampBounds(most, np.minimum(needed, most), needed)
