"""What the loop reports of each slot it ran: OpenADR 3 report rows, kept for the gRPC API.

:func:`slot_rows` makes a slot's rows (one per site) from the settlement engine's load of the
slot; :class:`SlotReports` keeps every row so far in order, lets readers wait for new ones
(``GetReport``, ``WatchReport``) and re-books a row's supply basis when its slot is booked on
a measurement after it ran.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from scheduler.contracts import SupplyBasis
from scheduler.drivers.service.measured import SettledSupply
from scheduler.settlement import Settlement

__all__ = ["ReportRow", "SlotReports", "slot_rows"]


@dataclass(frozen=True)
class ReportRow:
    """One site in one slot that has run, in the OpenADR 3 report vocabulary [MW]."""

    site: str
    start: pd.Timestamp
    usage_mw: float  # USAGE: load drawn
    demand_mw: float  # DEMAND: grid draw, load minus green used
    baseline_mw: float  # BASELINE: what the day's plan without caps would have drawn
    curtailed: bool  # OPERATING_STATE RUNNING_CURTAILED: a cap in force, usage below baseline
    grid_cap_mw: float
    load_cap_mw: float  # inf when no LOAD_LIMIT was in force
    supply_basis: str = str(SupplyBasis.ACTUAL)  # what the slot ran on, known at its start
    forecast_age_h: float | None = None  # of the weather model run in use; None: synthetic
    storage: tuple[float, float, float] | None = None  # STORAGE_*: MWh at the end, MW in, out


def slot_rows(
    engine: Settlement,
    t: int,
    drawn: Mapping[str, np.ndarray],
    baseline_mw: np.ndarray,
    settled: SettledSupply | None,
    runs_issued: Mapping[str, pd.Timestamp],
) -> list[ReportRow]:
    """Slot ``t``'s rows, one per site, once it has run: ``drawn`` the engine's load of the
    slot (``Settlement.slot_load``), ``baseline_mw`` each site's load without caps ``[site]``,
    ``settled`` what the slot was settled on (``None``: the actual weather), ``runs_issued`` the
    issue time of the weather model run in use per site."""
    start = engine.problem.horizon.times[t]
    rows = []
    for s, site in enumerate(engine.problem.sites):
        grid_cap, load_cap = drawn["grid_cap_mw"][s], drawn["load_cap_mw"][s]
        capped = grid_cap < site.grid_import_limit_mw or np.isfinite(load_cap)
        basis = (
            str(SupplyBasis.ACTUAL)
            if settled is None
            else str(settled.basis[t][settled.sites.index(site.name)])
        )
        issued = runs_issued.get(site.name)
        rows.append(
            ReportRow(
                site=site.name,
                start=start,
                usage_mw=float(drawn["load_mw"][s]),
                demand_mw=float(drawn["grid_mw"][s]),
                baseline_mw=float(baseline_mw[s]),
                curtailed=bool(capped and drawn["load_mw"][s] < baseline_mw[s] - 1e-6),
                grid_cap_mw=float(grid_cap),
                load_cap_mw=float(load_cap),
                supply_basis=basis,
                forecast_age_h=None if issued is None else (start - issued) / pd.Timedelta(hours=1),
                storage=_storage(drawn, s) if site.storage else None,
            )
        )
    return rows


def _storage(drawn: Mapping[str, np.ndarray], s: int) -> tuple[float, float, float]:
    """Site ``s``'s storage in the slot: energy at its end [MWh], charge and discharge [MW]."""
    return (
        float(drawn["soc_mwh"][s]),
        float(drawn["storage_charge_mw"][s]),
        float(drawn["storage_discharge_mw"][s]),
    )


class SlotReports:
    """Every report row so far, in the order the slots ran; ``added`` is notified on each
    change (hold it to read :attr:`rows`)."""

    def __init__(self) -> None:
        self.rows: list[ReportRow] = []
        self.added = threading.Condition()
        self._at: dict[tuple[str, pd.Timestamp], int] = {}  # (site, start) -> row

    def add(self, rows: Sequence[ReportRow]) -> None:
        with self.added:
            for row in rows:
                self._at[(row.site, row.start)] = len(self.rows)
                self.rows.append(row)
            self.added.notify_all()

    def rebook(self, settled: SettledSupply, slots: Sequence[int]) -> None:
        """The rows of ``slots`` with the basis they were booked on."""
        with self.added:
            for t in slots:
                start = settled.horizon.times[t]
                for k, site in enumerate(settled.sites):
                    at = self._at.get((site, start))
                    if at is not None:
                        self.rows[at] = replace(
                            self.rows[at], supply_basis=str(settled.basis[t][k])
                        )
