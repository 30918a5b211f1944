"""The supply forecast of the sites whose forecast comes from weather model runs.

:class:`RunFeed` answers "what did the forecast say at time T": for each such site, the newest
run its source had published by T (:meth:`ForecastSource.latest`), read once for every site
sharing the source and turned into supply once (:func:`~forecasts.nwp.ensemble.run_supply`).
The last few runs of each source are kept, so a loop re-planning a day on the same run, or a
replay walking forward through an archive, reads each run once.

A long-running control plane sets ``follow``: then :meth:`RunFeed.at` never reads (it serves
the newest run already read, or reads only a source's very first run), and
:meth:`RunFeed.update`, called off the loop's thread, looks for and reads new runs; a failed
look or read leaves the last good run in use.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from forecasts.error import ForecastError
from forecasts.nwp.ensemble import run_supply
from forecasts.nwp.run import ForecastRun
from forecasts.nwp.source import ForecastSource, RunRef
from forecasts.specs import SupplySite
from forecasts.supply import SupplyModel

__all__ = ["RunFeed", "SiteForecast"]

log = logging.getLogger(__name__)
_KEPT_RUNS = 4  # per source


@dataclass(frozen=True)
class SiteForecast:
    """One site's forecast from one run: the run, and its supply indexed by slot start (UTC):
    ``pv_mw``, ``wind_mw``, ``green_mw``, ``green_mw_p10``, ``green_mw_p90`` [MW]."""

    run: ForecastRun
    supply: pd.DataFrame


class RunFeed:
    """Forecasts of ``sources`` (site -> its source; sites may share one) for ``sites``, on the
    slots of ``model``, with ``error`` for a deterministic run's quantiles and
    ``spread_factor`` calibrating an ensemble's (see :mod:`forecasts.nwp.ensemble`)."""

    def __init__(
        self,
        sources: Mapping[str, ForecastSource],
        sites: Mapping[str, SupplySite],
        model: SupplyModel,
        error: ForecastError,
        *,
        spread_factor: float = 1.0,
    ) -> None:
        self.sources = dict(sources)
        self.sites = sites
        self.model = model
        self.error = error
        self.spread_factor = spread_factor
        self.read_seconds = 0.0
        self.follow = False
        self._read: dict[int, OrderedDict[RunRef, dict[str, SiteForecast]]] = {}
        self._lock = threading.Lock()  # guards _read; a run is read outside it

    def _groups(self) -> dict[int, tuple[ForecastSource, list[str]]]:
        """Sites by the source they share."""
        groups: dict[int, tuple[ForecastSource, list[str]]] = {}
        for site, source in self.sources.items():
            groups.setdefault(id(source), (source, []))[1].append(site)
        return groups

    def refresh(self) -> None:
        """Ask every source for runs published since (a directory scanned again)."""
        for source, _ in self._groups().values():
            source.refresh()

    def latest(self, at: pd.Timestamp) -> dict[str, RunRef]:
        """Per site, the newest run published by ``at`` (UTC); sites without one are left out."""
        out = {}
        for source, names in self._groups().values():
            ref = source.latest(at)
            if ref is not None:
                out.update(dict.fromkeys(names, ref))
        return out

    def at(self, at: pd.Timestamp) -> dict[str, SiteForecast]:
        """Per site, the forecast of the newest run published by ``at`` (UTC); sites whose
        source had none yet are left out. With ``follow``, only runs already read count (a
        source's first run is read here). Raises
        :class:`~forecasts.weather.ForecastSourceError` when a run cannot be read."""
        out: dict[str, SiteForecast] = {}
        for key, (source, names) in self._groups().items():
            with self._lock:
                kept = self._read.setdefault(key, OrderedDict())
                published = [ref for ref in kept if ref.available_at <= at]
            if self.follow and kept:
                ref = max(published, key=lambda r: r.issued_at) if published else None
            else:
                ref = source.latest(at)
            if ref is None:
                continue
            out.update(self._kept(key, source, ref, names))
        return out

    def update(self, at: pd.Timestamp) -> list[RunRef]:
        """Look for runs published by ``at`` (UTC) that were not read yet and read them:
        the runs read, newest per source. Raises
        :class:`~forecasts.weather.ForecastSourceError` when a source cannot be looked at or
        a run read (the runs already read stay)."""
        new = []
        for key, (source, names) in self._groups().items():
            source.refresh()
            ref = source.latest(at)
            with self._lock:
                known = ref is None or ref in self._read.get(key, {})
            if not known:
                assert ref is not None
                self._kept(key, source, ref, names)
                new.append(ref)
        return new

    def in_use(self, at: pd.Timestamp) -> dict[str, RunRef]:
        """Per site, the run :meth:`at` would serve at ``at`` without reading (for reports)."""
        out = {}
        for key, (_, names) in self._groups().items():
            with self._lock:
                published = [r for r in self._read.get(key, {}) if r.available_at <= at]
            if published:
                out.update(dict.fromkeys(names, max(published, key=lambda r: r.issued_at)))
        return out

    def _kept(
        self, key: int, source: ForecastSource, ref: RunRef, names: list[str]
    ) -> dict[str, SiteForecast]:
        """Run ``ref`` of ``source`` for ``names``, read once and kept among the last few."""
        with self._lock:
            kept = self._read.setdefault(key, OrderedDict())
            if ref in kept:
                kept.move_to_end(ref)
                return kept[ref]
        forecasts = self._read_run(source, ref, names)
        with self._lock:
            kept[ref] = forecasts
            while len(kept) > _KEPT_RUNS:
                kept.popitem(last=False)
        return forecasts

    def _read_run(
        self, source: ForecastSource, ref: RunRef, names: list[str]
    ) -> dict[str, SiteForecast]:
        started = time.perf_counter()
        runs = source.read(ref, {name: self.sites[name] for name in names},
                           self.model.slot_minutes)  # fmt: skip
        out = {
            name: SiteForecast(
                run,
                run_supply(
                    run, self.sites[name], self.model, self.error, spread_factor=self.spread_factor
                ),
            )
            for name, run in runs.items()
        }
        self.read_seconds += time.perf_counter() - started
        log.info(
            "read %s run issued %s from %s for %s (%.2f s)", ref.model,
            ref.issued_at.isoformat(), source.label, ", ".join(names),
            time.perf_counter() - started,
        )  # fmt: skip
        return out
