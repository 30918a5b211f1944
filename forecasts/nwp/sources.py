"""A forecast source from its spec: ``synthetic``, a file or a directory of runs.

The spec is what a user writes after ``--forecast SITE=`` or under ``forecast.nwp.sources``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forecasts.nwp.archive import RunArchive
from forecasts.nwp.settings import SYNTHETIC, NwpSettings
from forecasts.nwp.source import ForecastSource
from forecasts.weather import ForecastSourceError

__all__ = ["SOURCE_KINDS", "forecast_source"]

SOURCE_KINDS = f"'{SYNTHETIC}', a model run's file, a run's directory or a directory of runs"


def forecast_source(spec: str, settings: NwpSettings) -> ForecastSource | None:
    """The source ``spec`` names (``None`` for ``synthetic``); raises
    :class:`ForecastSourceError` naming the spec and what is allowed."""
    if spec == SYNTHETIC:
        return None
    path = Path(spec)
    if not path.exists():
        raise ForecastSourceError(
            f"forecast source {spec!r}: no such file or directory; give {SOURCE_KINDS}"
        )
    delay = settings.available_after_minutes
    return RunArchive(
        path,
        available_after=None if delay is None else pd.Timedelta(minutes=delay),
        max_distance_km=settings.max_grid_distance_km,
    )
