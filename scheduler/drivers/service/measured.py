"""Measured output in the control plane: measurements in, and what a live day's slots settle on.

:class:`MeasurementBook` takes measurements from every way in (gRPC, the SCADA file feed,
``greensched measure``), checks them (:func:`~scheduler.measurements.check_measurement`) and
stores them before they are acknowledged (one SQLite transaction, ``synchronous=FULL``: an
acknowledged measurement survives SIGKILL). A site's slot keeps its first measurement; the same
values again are a replay, other values a conflict.

With ``measurements.settle_on: measurements``, :class:`SettledSupply` holds what a running
day's slots settle on: at a slot's start, what runs is decided on its measurement when one came
early, else on the newest forecast for it; once the slot and ``measurements.grace_minutes`` have
passed it is booked on its measurement when one came in time, else on that forecast, flagged
``estimated`` in ``run.csv``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from scheduler.config import Site
from scheduler.contracts import MEASUREMENTS, SupplyBasis, TableError, read_table
from scheduler.drivers.service.store import MeasurementConflict, Store
from scheduler.horizon import Horizon
from scheduler.measurements import (
    Measurement,
    MeasurementError,
    check_measurement,
    measurements_frame,
    settled_rows,
)

__all__ = ["MAX_MEASUREMENTS", "MeasurementBook", "SettledSupply"]

log = logging.getLogger(__name__)

MAX_MEASUREMENTS = 1_000
"""Most measurements in one report (a day of 15-minute slots of 10 sites is 960; the gRPC
message limit is 64 KiB)."""


class MeasurementBook:
    """Measurements of ``sites`` into ``store`` on ``slot_minutes`` slots, checked against
    ``clock``'s now; ``file`` is a SCADA export read for new rows by :meth:`read_file`."""

    def __init__(
        self,
        store: Store,
        sites: Mapping[str, Site],
        slot_minutes: int,
        clock: Callable[[], pd.Timestamp],
        file: Path | None = None,
    ) -> None:
        self.store = store
        self.sites = sites
        self.slot_minutes = slot_minutes
        self.clock = clock
        self.file = file
        self._file_seen: tuple[float, int] | None = None  # (mtime, size) read last

    def report(self, measurements: list[Measurement], reported_by: str) -> tuple[int, int]:
        """Check and store a batch: ``(stored, replayed)``. Raises
        :class:`~scheduler.measurements.MeasurementError` naming the field of the first bad
        one, or :class:`~scheduler.drivers.service.store.MeasurementConflict`; nothing of a
        refused batch is stored."""
        if not measurements:
            raise MeasurementError("measurements", "empty; give at least one")
        if len(measurements) > MAX_MEASUREMENTS:
            raise MeasurementError(
                "measurements", f"{len(measurements)} in one report; at most {MAX_MEASUREMENTS}"
            )
        now = self.clock()
        seen: set[tuple[str, pd.Timestamp]] = set()
        for k, measurement in enumerate(measurements):
            where = f"measurements[{k}]"
            check_measurement(
                measurement, where, sites=self.sites, slot_minutes=self.slot_minutes, now=now
            )
            key = (measurement.site, measurement.time)
            if key in seen:
                raise MeasurementError(where, f"site {key[0]!r} slot {key[1].isoformat()} twice")
            seen.add(key)
        return self.store.save_measurements(measurements, reported_by, now)

    def read_file(self) -> int:
        """Rows of the file feed not stored yet, checked and stored: how many were new. A bad
        file or row is a warning naming the file and the line (the feed is read again when it
        changes); rows already stored are skipped."""
        if self.file is None or not self.file.is_file():
            return 0
        status = self.file.stat()
        if self._file_seen == (status.st_mtime, status.st_size):
            return 0
        self._file_seen = (status.st_mtime, status.st_size)
        try:
            table = read_table(MEASUREMENTS, self.file)
        except TableError as error:
            log.warning("measurements file not read: %s", error)
            return 0
        now = self.clock()
        new = 0
        for line, row in enumerate(table.itertuples(index=False), start=2):
            load = None if np.isnan(row.load_mw) else float(row.load_mw)
            measurement = Measurement(
                str(row.site), row.time, float(row.pv_mw), float(row.wind_mw), load
            )
            try:
                check_measurement(measurement, f"{self.file} line {line}", sites=self.sites,
                                  slot_minutes=self.slot_minutes, now=now)  # fmt: skip
                stored, _ = self.store.save_measurements([measurement], f"file:{self.file}", now)
            except MeasurementError as error:
                if not str(error).endswith("has not begun"):  # a slot not yet run: next time
                    log.warning("measurements file: %s", error)
                self._file_seen = None  # read again: the row may be good later
                continue
            except MeasurementConflict as error:
                log.warning("measurements file %s line %d: %s", self.file, line, error)
                continue
            new += stored
        return new

    def received(self, start: pd.Timestamp, end: pd.Timestamp, by: pd.Timestamp) -> pd.DataFrame:
        """The measurements table of slots starting in ``[start, end)`` that came by ``by``."""
        return measurements_frame(
            [s.measurement for s in self.store.measurements(start, end) if s.received_at <= by]
        )


class SettledSupply:
    """What a running day's slots settle on (module doc): the supply table of ``horizon``,
    each slot's basis, and the site's measured load where reported.

    ``forecast_at(issued_at)`` is the day's newest forecast as issued then (a supply table);
    ``grace`` how long after a slot's end its measurement still counts.
    """

    def __init__(
        self,
        horizon: Horizon,
        book: MeasurementBook,
        forecast_at: Callable[[pd.Timestamp], pd.DataFrame],
        grace: pd.Timedelta,
    ) -> None:
        self.horizon = horizon
        self.book = book
        self.forecast_at = forecast_at
        self.grace = grace
        self.table = forecast_at(horizon.start).reset_index(drop=True)
        self.sites = list(dict.fromkeys(self.table["site"]))
        n_slots, n_sites = horizon.n_slots, len(self.sites)
        self.basis = np.full((n_slots, n_sites), str(SupplyBasis.ESTIMATED), dtype=object)
        self.load_mw = np.full((n_slots, n_sites), np.nan)
        self.closed = np.zeros(n_slots, dtype=bool)
        self._slot = pd.Timedelta(minutes=horizon.slot_minutes)

    def _rows(self, t: int) -> np.ndarray:
        times = pd.DatetimeIndex(self.table["time"])
        return np.flatnonzero(times == self.horizon.times[t])

    def _settle(self, t: int, estimate: pd.DataFrame, by: pd.Timestamp) -> bool:
        """Slot ``t``'s rows: measured where it came by ``by``, else ``estimate``'s; whether
        any row changed."""
        start = self.horizon.times[t]
        measured = self.book.received(start, start + self._slot, by)
        rows, basis = settled_rows(estimate, measured)
        at = self._rows(t)
        numbers = [c for c in self.table.columns if c not in ("time", "site")]
        before = self.table["green_mw"].to_numpy()[at]
        for column in numbers:
            self.table.iloc[at, self.table.columns.get_loc(column)] = rows[column].to_numpy()
        changed = not np.allclose(before, rows["green_mw"].to_numpy()) or not np.array_equal(
            self.basis[t], basis
        )
        self.basis[t] = basis
        loads = measured.set_index("site")["load_mw"]
        self.load_mw[t] = [float(loads.get(site, np.nan)) for site in rows["site"]]
        return changed

    def decide(self, t: int, now: pd.Timestamp) -> pd.DataFrame:
        """The day's table with slot ``t`` as it is known at its start ``now``: measured where
        a measurement already came, else the newest forecast for it."""
        forecast = self.forecast_at(self.horizon.times[t])
        estimate = forecast[pd.DatetimeIndex(forecast["time"]) == self.horizon.times[t]]
        self._settle(t, estimate[self.table.columns].reset_index(drop=True), now)
        return self.table

    def close(self, now: pd.Timestamp) -> list[int]:
        """Book the slots whose end plus the grace has passed by ``now`` on the measurements
        that came in time (the others stay estimated): the slots whose supply or basis changed
        when booked."""
        changed = []
        for t in np.flatnonzero(~self.closed).tolist():
            deadline = self.horizon.times[t] + self._slot + self.grace
            if deadline > now:
                break
            estimate = self.table.iloc[self._rows(t)].reset_index(drop=True)
            if self._settle(t, estimate, deadline):
                changed.append(t)
            self.closed[t] = True
        return changed

    @property
    def closes_at(self) -> pd.Timestamp:
        """When the day's last slot is booked: its end plus the grace (UTC)."""
        return self.horizon.end + self.grace

    def columns(self, run: pd.DataFrame) -> pd.DataFrame:
        """``run`` (a run table of the day) with ``supply_basis`` and ``measured_load_mw``."""
        slot = np.asarray((pd.DatetimeIndex(run["time"]) - self.horizon.start) / self._slot)
        slot = slot.astype(np.int64)
        site = np.array([self.sites.index(s) for s in run["site"]], dtype=np.int64)
        return run.assign(
            supply_basis=self.basis[slot, site], measured_load_mw=self.load_mw[slot, site]
        )
