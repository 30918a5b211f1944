"""A weather model's run at a site: when it was issued, what it covers, each member's weather.

Every forecast source (files, a directory of runs, Open-Meteo, ECMWF open data) ends here: its
reader hands over each member's :class:`~forecasts.nwp.process.ModelOutput` at the site and
:func:`site_run` brings all members onto the same slots
(:func:`~forecasts.nwp.process.members_to_slot_weather`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from forecasts.nwp.grid import GridPoint
from forecasts.nwp.process import ModelOutput, SlotSun, covered_span, members_to_slot_weather
from forecasts.specs import SupplySite
from forecasts.weather import ForecastSourceError, Weather

__all__ = ["DETERMINISTIC", "ForecastRun", "site_run", "site_runs"]

DETERMINISTIC = ""
"""The member name of a deterministic run's one member."""


@dataclass(frozen=True)
class ForecastRun:
    """One run of a weather model at one site, on slots.

    ``issued_at`` is the run's issue (initialisation) time, UTC; ``weather`` each member's
    weather frame on the same slots (one member named :data:`DETERMINISTIC` for a
    deterministic run); ``grid_point`` where the site's values came from; ``source`` the file,
    directory or service it was read from.
    """

    model: str
    issued_at: pd.Timestamp
    source: str
    weather: Mapping[str, Weather]
    grid_point: GridPoint

    @property
    def members(self) -> tuple[str, ...]:
        """Member names, in the order read."""
        return tuple(self.weather)

    @property
    def is_ensemble(self) -> bool:
        """True with more than one member."""
        return len(self.weather) > 1

    @property
    def slots(self) -> pd.DatetimeIndex:
        """Slot starts the run covers (UTC)."""
        return pd.DatetimeIndex(next(iter(self.weather.values())).data.index)

    @property
    def end(self) -> pd.Timestamp:
        """End of the last slot the run covers (UTC)."""
        slots = self.slots
        return slots[-1] + (slots[1] - slots[0])

    def describe(self) -> dict[str, Any]:
        """What a plan directory's manifest records of the run."""
        return {
            "source": self.source,
            "model": self.model,
            "issued_at": self.issued_at.isoformat(),
            "members": len(self.weather),
            "valid_from": self.slots[0].isoformat(),
            "valid_to": self.end.isoformat(),
            "grid_point": [round(self.grid_point.latitude, 4), round(self.grid_point.longitude, 4)],
            "interpolation": self.grid_point.method,
        }


def site_run(
    outputs: Mapping[str, ModelOutput],
    *,
    model: str,
    issued_at: pd.Timestamp,
    source: str,
    site: SupplySite,
    slot_minutes: int,
    grid_point: GridPoint,
) -> ForecastRun:
    """The run of ``model`` issued at ``issued_at`` at ``site`` from each member's output
    (member name -> output), every member on the slots they all cover."""
    step = pd.Timedelta(minutes=slot_minutes)
    spans = [covered_span(output, issued_at, step) for output in outputs.values()]
    start, end = max(s for s, _ in spans), min(e for _, e in spans)
    if end <= start:
        raise ForecastSourceError(
            f"{source}: the {model} run issued {issued_at.isoformat()} covers no whole "
            f"{slot_minutes}-minute slot at site {site.name!r}"
        )
    sun = SlotSun(start, end, slot_minutes, site.latitude, site.longitude, site.altitude_m)
    label = f"{source} [{model} {issued_at:%Y-%m-%d %H}Z"
    weather = members_to_slot_weather(
        outputs,
        issued_at=issued_at,
        altitude_m=site.altitude_m,
        sources={member: f"{label}{' ' + member if member else ''}]" for member in outputs},
        station=(grid_point.latitude, grid_point.longitude),
        sun=sun,
    )
    return ForecastRun(model, issued_at, source, weather, grid_point)


def site_runs(
    by_member: Mapping[str, Mapping[str, tuple[ModelOutput, GridPoint]]],
    *,
    model: str,
    issued_at: pd.Timestamp,
    source: str,
    sites: Mapping[str, SupplySite],
    slot_minutes: int,
) -> dict[str, ForecastRun]:
    """:func:`site_run` of every site of ``sites`` from what a reader gives: per member, per
    site its output and grid point."""
    first = next(iter(by_member.values()))
    return {
        name: site_run(
            {member: outputs[name][0] for member, outputs in by_member.items()},
            model=model,
            issued_at=issued_at,
            source=source,
            site=site,
            slot_minutes=slot_minutes,
            grid_point=first[name][1],
        )
        for name, site in sites.items()
    }
