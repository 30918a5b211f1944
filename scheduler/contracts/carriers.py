"""The generators a site has, by carrier: one row per carrier, after PyPSA's component tables.

Every place that handles supply by carrier reads this table: the supply model (one model per
carrier, :data:`forecasts.supply.CARRIER_MODELS`), the error model (how a carrier's error
scales), ensembles, forecast skill, measurement bounds, plots and the supply and measurements
table contracts (one ``<carrier>_mw`` column each; ``green_mw`` is their sum).

Adding a carrier: a row here, its plant spec (a pydantic model with ``capacity_mw`` [MW]) as a
``dict[str, Spec]`` field of :class:`~forecasts.specs.SupplySite` named like the carrier, its
model in :data:`~forecasts.supply.CARRIER_MODELS`, and its error levels in the forecast error
config (``<carrier>_nrmse``). Measurements over gRPC and in SQLite keep one field per carrier
(``pv_mw``, ``wind_mw``): a new carrier there is a proto field and a schema migration.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from functools import reduce
from typing import Any, Literal, Protocol

__all__ = ["CARRIERS", "Carrier", "capacities_mw", "carrier_columns", "green_mw"]

ErrorScale = Literal["nameplate", "clear_sky"]


class Plant(Protocol):
    """A plant's parameters (:mod:`forecasts.specs`): what it can deliver at most [MW]."""

    @property
    def capacity_mw(self) -> float: ...


@dataclass(frozen=True)
class Carrier:
    """One kind of generation: its name (the site's field of plants, the error config's key,
    the supply column ``<name>_mw``), its label in tables and plots, and how its forecast
    error scales:
    ``"nameplate"`` (a share of capacity at every hour) or ``"clear_sky"`` (a share of
    ``capacity x cos(zenith)``, daylit hours only)."""

    name: str
    label: str
    error_scale: ErrorScale
    description: str

    @property
    def column(self) -> str:
        """The carrier's column in the supply and measurements tables [MW]."""
        return f"{self.name}_mw"

    def plants(self, site: object) -> Mapping[str, Plant]:
        """The plants of this carrier by name of ``site`` (a
        :class:`~forecasts.specs.SupplySite`)."""
        plants: Mapping[str, Plant] = getattr(site, self.name)
        return plants

    def capacity_mw(self, site: object) -> float:
        """What the site's plants of this carrier can deliver at most [MW, AC]."""
        return sum(plant.capacity_mw for plant in self.plants(site).values())


CARRIERS: tuple[Carrier, ...] = (
    Carrier("pv", "PV", "clear_sky", "PV AC output"),
    Carrier("wind", "wind", "nameplate", "wind output"),
)
"""Every carrier, in the supply table's column order."""


def carrier_columns() -> list[str]:
    """The supply table's carrier columns in order (``pv_mw``, ``wind_mw``)."""
    return [carrier.column for carrier in CARRIERS]


def capacities_mw(site: object) -> dict[str, float]:
    """Each carrier's capacity at ``site`` [MW]."""
    return {carrier.name: carrier.capacity_mw(site) for carrier in CARRIERS}


def green_mw(by_column: Mapping[str, Any] | Any) -> Any:
    """The carriers' columns of ``by_column`` (a frame, or a dict of arrays) added up [MW]: the
    supply table's ``green_mw``; NaN where any carrier is NaN."""
    return reduce(operator.add, (by_column[column] for column in carrier_columns()))
