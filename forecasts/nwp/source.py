"""What every forecast source offers: its runs by issue time, and a run read at the sites.

A source is one of (:func:`~forecasts.nwp.sources.forecast_source` builds it from a spec):
files (:class:`~forecasts.nwp.archive.RunArchive`: one run's file or directory, or a directory
of runs as they arrive), the Open-Meteo APIs or ECMWF open data. The feed
(:class:`~forecasts.nwp.feed.RunFeed`) asks each for the latest run available at a time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from forecasts.nwp.run import ForecastRun
from forecasts.specs import SupplySite

__all__ = ["ForecastSource", "RunRef"]


@dataclass(frozen=True)
class RunRef:
    """One run a source offers: its model, issue time (UTC) and when it became available
    (UTC: the issue time plus the model's publication delay)."""

    model: str
    issued_at: pd.Timestamp
    available_at: pd.Timestamp


class ForecastSource(ABC):
    """A source of weather model runs (see the module doc)."""

    label: str
    """How the source is named in messages and manifests (a path, ``open-meteo:gfs_seamless``)."""

    @abstractmethod
    def latest(self, at: pd.Timestamp) -> RunRef | None:
        """The newest run available at ``at`` (UTC), or ``None``."""

    @abstractmethod
    def read(
        self, ref: RunRef, sites: Mapping[str, SupplySite], slot_minutes: int
    ) -> dict[str, ForecastRun]:
        """Run ``ref`` at each of ``sites`` (name -> site), on ``slot_minutes`` slots.

        Raises :class:`~forecasts.weather.ForecastSourceError` naming the source and what is
        wrong (unreadable, off the grid, unreachable).
        """

    @abstractmethod
    def refresh(self) -> None:
        """Look again for runs issued since (a directory scanned again)."""
