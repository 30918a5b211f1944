"""What sites measured, and what a live slot settles on.

A site reports, per slot, the PV and wind output it measured and optionally its load [MW,
slot means] (over gRPC, from a SCADA file feed, or with ``greensched measure``). Each
measurement is checked here (:func:`check_measurement`) against the site's plants and the
clock, so every way in refuses the same values with the same message naming the field.

A live day settles each slot on the measurement when it arrived within the slot plus a grace
period, else on the newest forecast's value for that slot, flagged ``estimated``
(:func:`settled_rows`). What runs in a slot is decided at its start, before it can be measured:
on its measurement if one came early, else on the newest forecast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scheduler.config import Site
from scheduler.contracts import SupplyBasis, UserError
from scheduler.contracts.carriers import CARRIERS, green_mw

__all__ = [
    "MAX_AGE",
    "Measurement",
    "MeasurementError",
    "check_measurement",
    "measurements_frame",
    "settled_rows",
]

MAX_AGE = pd.Timedelta(days=7)
"""Oldest slot a measurement may be reported for."""
_OVER_NAMEPLATE = 1.1  # meters and nameplates disagree by a few %; 10 % is a unit slip's floor
_OVER_FULL_LOAD = 1.5
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


class MeasurementError(UserError):
    """A measurement that cannot be used: ``field`` names it (``measurements[2].pv_mw``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Measurement:
    """What ``site`` measured in the slot starting at ``time`` (UTC): each carrier's output
    (a field per carrier of :data:`~scheduler.contracts.carriers.CARRIERS`, as on the wire and
    in the store) and, when given, the site's load [MW, slot means]."""

    site: str
    time: pd.Timestamp
    pv_mw: float
    wind_mw: float
    load_mw: float | None = None

    def same_values(self, other: Measurement) -> bool:
        """Whether ``other`` reports the same (a resubmission)."""

        def same(a: float | None, b: float | None) -> bool:
            return (a is None and b is None) or (
                a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
            )

        names = [*(c.column for c in CARRIERS), "load_mw"]
        return all(same(getattr(self, name), getattr(other, name)) for name in names)


def check_measurement(
    measurement: Measurement,
    where: str,
    *,
    sites: Mapping[str, Site],
    slot_minutes: int,
    now: pd.Timestamp,
) -> None:
    """Raise :class:`MeasurementError` naming ``where`` and the field when ``measurement`` is
    not one a site can have made: an unknown site, a time off the slot grid, in a slot not yet
    begun or older than :data:`MAX_AGE`, a value not finite, below 0 or above 1.1 times the
    site's nameplate (1.5 times its full load for the load)."""
    site = sites.get(measurement.site)
    if site is None:
        raise MeasurementError(
            f"{where}.site",
            f"unknown site {measurement.site!r}; known sites: {', '.join(sites)}",
        )
    time = measurement.time
    if time.tzinfo is None:
        raise MeasurementError(f"{where}.time", f"{time} has no UTC offset")
    slot = pd.Timedelta(minutes=slot_minutes)
    if (time - _EPOCH) % slot != pd.Timedelta(0):
        raise MeasurementError(
            f"{where}.time", f"{time.isoformat()} is not the start of a {slot_minutes}-minute slot"
        )
    if time > now:
        raise MeasurementError(
            f"{where}.time",
            f"the slot at {time.isoformat()} has not begun (now {now.isoformat()}); a slot is "
            "measured while or after it runs",
        )
    if time < now - MAX_AGE:
        raise MeasurementError(
            f"{where}.time", f"{time.isoformat()} is more than {MAX_AGE.days} days old"
        )
    bounds = {
        c.column: (getattr(measurement, c.column), _OVER_NAMEPLATE * c.capacity_mw(site),
                   f"{c.label} nameplate")
        for c in CARRIERS
    }  # fmt: skip
    bounds["load_mw"] = (measurement.load_mw, _OVER_FULL_LOAD * site.full_load_mw, "full load")
    for name, (value, most, what) in bounds.items():
        if value is None:
            continue
        if not math.isfinite(value) or value < 0:
            raise MeasurementError(f"{where}.{name}", f"{value} must be a finite number >= 0 [MW]")
        if value > most + 1e-9:
            raise MeasurementError(
                f"{where}.{name}",
                f"{value:g} MW is above {most:.3g} MW ({'1.5' if name == 'load_mw' else '1.1'} x "
                f"the {what} of site {site.name!r}); check the unit (kW would be 1000 times MW)",
            )


def measurements_frame(measurements: list[Measurement]) -> pd.DataFrame:
    """The measurements table (:data:`~scheduler.contracts.MEASUREMENTS`) of ``measurements``."""
    return pd.DataFrame(
        {
            "time": pd.DatetimeIndex([m.time for m in measurements], tz="UTC"),
            "site": [m.site for m in measurements],
            **{c.column: [getattr(m, c.column) for m in measurements] for c in CARRIERS},
            "load_mw": [np.nan if m.load_mw is None else m.load_mw for m in measurements],
        }
    )


def settled_rows(estimate: pd.DataFrame, measured: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The supply rows of a slot (one per site) and their basis: each site's measured output of
    every carrier where ``measured`` has a row for it, else ``estimate``'s (the newest forecast).

    ``estimate`` and ``measured`` are supply / measurements tables of the same slot; returns
    the rows in ``estimate``'s order (``green_mw`` the carriers' sum) and per row
    :class:`~scheduler.contracts.SupplyBasis` (measured or estimated)."""
    rows = estimate.copy()
    by_site = measured.set_index("site")
    basis = np.full(len(rows), str(SupplyBasis.ESTIMATED), dtype=object)
    for i, site in enumerate(rows["site"].to_numpy()):
        if site in by_site.index:
            for column in (c.column for c in CARRIERS):
                rows.iloc[i, rows.columns.get_loc(column)] = float(by_site.at[site, column])
            basis[i] = str(SupplyBasis.MEASURED)
    rows["green_mw"] = green_mw(rows)
    measured_rows = np.flatnonzero(basis == str(SupplyBasis.MEASURED))
    for quantile in ("green_mw_p10", "green_mw_p90"):  # a measured slot is known
        if quantile in rows.columns:
            rows.iloc[measured_rows, rows.columns.get_loc(quantile)] = rows["green_mw"].to_numpy()[
                measured_rows
            ]
    return rows, basis
