"""Caps by type: what each type of cap limits, one row per type.

A cap (:class:`~scheduler.problem.LoadCap`) limits one site's draw in the slots its interval
overlaps; caps of one type at one site combine by the tightest. :data:`CAP_KINDS` says, per
:class:`~scheduler.contracts.CapType`, what the cap limits, its bound when no cap of the type is
in force, and the most load a slot may draw under it. Every reader goes through the table: the
planning problem's capacity (policies, repairs, the settlement's fit), the violations the
validator and the metrics count, and the caps ``run.csv`` names as binding. A new type of cap
on a site's draw is a ``CapType`` value and a row here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from scheduler.config import Site
from scheduler.contracts import CapType

__all__ = ["CAP_KINDS", "CapKind", "broken_caps", "is_limit", "most_load_mw", "uncapped"]


@dataclass(frozen=True)
class CapKind:
    """One type of cap: ``limits`` what it bounds; ``uncapped_mw`` the bound at a site before
    any cap of the type [MW]; ``drawn_mw(load, green)`` the quantity it bounds [MW];
    ``most_load_mw(cap, green)`` the most load a slot may draw under ``cap`` [MW]."""

    type: CapType
    limits: str
    uncapped_mw: Callable[[Site], float]
    drawn_mw: Callable[[np.ndarray, np.ndarray], np.ndarray]
    most_load_mw: Callable[[np.ndarray, np.ndarray], np.ndarray]


CAP_KINDS: dict[CapType, CapKind] = {
    kind.type: kind
    for kind in (
        CapKind(
            CapType.IMPORT_CAPACITY_LIMIT,
            "grid draw: load minus the green supply it uses (the site's import limit included)",
            uncapped_mw=lambda site: site.grid_import_limit_mw,
            drawn_mw=lambda load, green: load - np.minimum(load, green),
            most_load_mw=lambda cap, green: cap + green,
        ),
        CapKind(
            CapType.LOAD_LIMIT,
            "the site's whole load (no cap: none)",
            uncapped_mw=lambda site: np.inf,
            drawn_mw=lambda load, green: load,
            most_load_mw=lambda cap, green: cap,
        ),
    )
}
"""Every type of cap, by :class:`~scheduler.contracts.CapType`."""


def is_limit(cap_type: CapType) -> bool:
    """Whether caps of ``cap_type`` limit a site's draw (a row of :data:`CAP_KINDS`; a
    ``PRICE`` does not)."""
    return cap_type in CAP_KINDS


def uncapped(sites: Sequence[Site], n_slots: int) -> dict[CapType, np.ndarray]:
    """Each type's bound ``[site, slot]`` [MW] before any cap."""
    return {
        kind.type: np.repeat([[kind.uncapped_mw(s)] for s in sites], n_slots, axis=1)
        for kind in CAP_KINDS.values()
    }


def most_load_mw(tightest: Mapping[CapType, np.ndarray], green_mw: np.ndarray) -> np.ndarray:
    """The most load ``[site, slot]`` [MW] every type's tightest cap allows on ``green_mw``."""
    return np.minimum.reduce(
        [CAP_KINDS[kind].most_load_mw(cap, green_mw) for kind, cap in tightest.items()]
    )


def broken_caps(
    tightest: Mapping[CapType, np.ndarray],
    load_mw: np.ndarray,
    green_mw: np.ndarray,
    tolerance_mw: float,
) -> np.ndarray:
    """Where ``load_mw`` on ``green_mw`` breaks a type's tightest cap by more than
    ``tolerance_mw``, ``[site, slot]``."""
    return np.logical_or.reduce(
        [
            CAP_KINDS[kind].drawn_mw(load_mw, green_mw) > cap + tolerance_mw
            for kind, cap in tightest.items()
        ]
    )
