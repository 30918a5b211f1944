"""Site power at run time: load from busy GPUs, green and grid shares, caps in force.

Per site and slot (the same formulas as the plan's metrics)::

    load_mw       = gpus * kw_per_gpu * pue / 1000 + base_load_mw
    green_used_mw = min(load_mw, green_mw)
    grid_mw       = load_mw - green_used_mw

Grid draw is capped by the site's ``grid_import_limit_mw`` and every ``IMPORT_CAPACITY_LIMIT``
cap in force; load by every ``LOAD_LIMIT`` cap. A cap is in force in every slot its interval
overlaps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

__all__ = [
    "CAP_TOLERANCE_MW",
    "CAP_TYPES",
    "SiteParams",
    "SlotLimits",
    "caps_in_force",
    "check_caps",
    "site_params",
]

CAP_TYPES = ("IMPORT_CAPACITY_LIMIT", "LOAD_LIMIT")
CAP_TOLERANCE_MW = 1e-6  # rounding slack when checking caps [MW]
_SITE_FIELDS = ("site", "gpus", "kw_per_gpu", "pue", "base_load_mw", "grid_import_limit_mw")


@dataclass(frozen=True)
class SiteParams:
    """The load and grid terms of one site."""

    site: str
    gpus: int
    kw_per_gpu: float
    pue: float
    base_load_mw: float
    grid_import_limit_mw: float

    @property
    def mw_per_gpu(self) -> float:
        """Site power per busy GPU, PUE included [MW]."""
        return self.kw_per_gpu * self.pue / 1000.0

    def load_mw(self, gpus: float) -> float:
        """Site load with ``gpus`` busy GPUs [MW]."""
        return gpus * self.mw_per_gpu + self.base_load_mw


def site_params(sites: pd.DataFrame | Iterable[object]) -> dict[str, SiteParams]:
    """Site parameters by name from a sites table or objects with the same attributes.

    Objects may name the site ``site`` or ``name`` (as ``scheduler.config.Site`` does).
    """
    if isinstance(sites, pd.DataFrame):
        missing = [c for c in _SITE_FIELDS if c not in sites.columns]
        if missing:
            raise ValueError(f"sites table lacks columns {missing}; needs {list(_SITE_FIELDS)}")
        rows = sites[list(_SITE_FIELDS)].to_dict("records")
    else:
        rows = [
            {
                "site": getattr(s, "site", None) or s.name,
                **{f: getattr(s, f) for f in _SITE_FIELDS[1:]},
            }
            for s in sites
        ]
    params = {str(r["site"]): SiteParams(**{**r, "site": str(r["site"])}) for r in rows}
    if not params:
        raise ValueError("no sites given; at least one site is needed")
    return params


@dataclass(frozen=True)
class SlotLimits:
    """What bounds one site in one slot: green supply and the tightest caps [MW]."""

    green_mw: float
    grid_cap_mw: float
    load_cap_mw: float

    def max_gpus(self, site: SiteParams, capacity_gpus: float) -> int:
        """Most whole GPUs the site may run without breaking a cap or its live capacity."""
        by_grid = (self.grid_cap_mw + self.green_mw - site.base_load_mw) / site.mw_per_gpu
        by_load = (self.load_cap_mw - site.base_load_mw) / site.mw_per_gpu
        bound = min(capacity_gpus, by_grid, by_load)
        return max(0, math.floor(bound + 1e-9))

    def violation_mw(self, load_mw: float) -> float:
        """How far ``load_mw`` breaks the grid or load cap [MW] (0 when it holds)."""
        grid_mw = load_mw - min(load_mw, self.green_mw)
        return max(0.0, grid_mw - self.grid_cap_mw, load_mw - self.load_cap_mw)


def caps_in_force(
    caps: pd.DataFrame | None, site: SiteParams, start: pd.Timestamp, end: pd.Timestamp
) -> tuple[float, float]:
    """Tightest ``(grid_cap_mw, load_cap_mw)`` for ``site`` in the slot ``[start, end)``."""
    grid_cap, load_cap = site.grid_import_limit_mw, math.inf
    if caps is None or caps.empty:
        return grid_cap, load_cap
    here = caps[(caps["site"] == site.site) & (caps["start"] < end) & (caps["end"] > start)]
    for kind, value in zip(here["type"], here["value_mw"], strict=True):
        if kind == "IMPORT_CAPACITY_LIMIT":
            grid_cap = min(grid_cap, float(value))
        else:
            load_cap = min(load_cap, float(value))
    return grid_cap, load_cap


def check_caps(caps: pd.DataFrame | None, known_sites: Iterable[str]) -> pd.DataFrame | None:
    """Validate a caps table (columns, types, sites); return it with UTC timestamps."""
    if caps is None:
        return None
    needed = ["site", "start", "end", "type", "value_mw"]
    missing = [c for c in needed if c not in caps.columns]
    if missing:
        raise ValueError(f"caps table lacks columns {missing}; needs {needed}")
    known = sorted(known_sites)
    unknown = sorted(set(caps["site"]) - set(known))
    if unknown:
        raise ValueError(f"unknown site(s) {unknown} in load caps; known sites: {', '.join(known)}")
    bad = sorted(set(caps["type"]) - set(CAP_TYPES))
    if bad:
        raise ValueError(f"unknown cap type(s) {bad}; allowed: {', '.join(CAP_TYPES)}")
    out = caps.copy()
    out["start"] = pd.to_datetime(out["start"], utc=True)
    out["end"] = pd.to_datetime(out["end"], utc=True)
    return out
