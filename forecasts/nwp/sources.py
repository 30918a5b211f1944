"""A forecast source from its spec: ``synthetic``, a file or a directory of runs, or an
Open-Meteo API.

The spec is what a user writes after ``--forecast SITE=`` or under ``forecast.nwp.sources``.
An Open-Meteo spec is one of :data:`~forecasts.nwp.openmeteo.SPEC_KINDS`, optionally followed
by ``:MODEL`` (Open-Meteo's model name; without it, the model of ``forecast.nwp.open_meteo``):

- ``open-meteo[:MODEL]``: the Weather Forecast API, the model's newest run (live);
- ``open-meteo-ensemble[:MODEL]``: the Ensemble API, an ensemble's newest run, every member;
- ``open-meteo-runs[:MODEL]``: the Single Runs API, the run issued before the planning time as
  it was issued (for replay).

An ECMWF open data spec (:mod:`forecasts.nwp.ecmwf`) is ``ecmwf[:MODEL]`` (the deterministic
run; MODEL ``ifs`` or ``aifs-single``, without it ``forecast.nwp.ecmwf.model``) or
``ecmwf-ens[:MODEL]`` (the ensemble; ``ifs``, the default, or ``aifs-ens``), fetched as
``forecast.nwp.ecmwf`` says.

A path that exists is read as files, whatever its name.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forecasts.nwp.archive import RunArchive
from forecasts.nwp.ecmwf import SPEC_KINDS as ECMWF_SPEC_KINDS
from forecasts.nwp.ecmwf import EcmwfOpenData
from forecasts.nwp.openmeteo import SPEC_KINDS, OpenMeteo, models_of
from forecasts.nwp.settings import SYNTHETIC, NwpSettings
from forecasts.nwp.source import ForecastSource
from forecasts.weather import ForecastSourceError

__all__ = ["SOURCE_KINDS", "forecast_source"]

_OPEN_METEO_SPECS = ", ".join(f"'{kind}[:MODEL]'" for kind in SPEC_KINDS)
_ECMWF_SPECS = ", ".join(
    f"'{kind}[:{'|'.join(models)}]'" for kind, models in ECMWF_SPEC_KINDS.items()
)
SOURCE_KINDS = (
    f"'{SYNTHETIC}', a model run's file, a run's directory, a directory of runs, "
    f"{_OPEN_METEO_SPECS} (Open-Meteo's forecast, ensemble and single-runs APIs), or "
    f"{_ECMWF_SPECS} (ECMWF open data)"
)


def _available_after(settings: NwpSettings) -> pd.Timedelta | None:
    delay = settings.available_after_minutes
    return None if delay is None else pd.Timedelta(minutes=delay)


def _open_meteo(spec: str, settings: NwpSettings) -> OpenMeteo:
    """The Open-Meteo source ``spec`` names (module doc)."""
    kind, colon, name = spec.partition(":")
    api = SPEC_KINDS.get(kind)
    if api is None or (colon and not name):
        raise ForecastSourceError(
            f"forecast source {spec!r}: not an Open-Meteo source; give {_OPEN_METEO_SPECS}"
        )
    options = settings.open_meteo
    model = name or (options.ensemble_model if api == "ensemble" else options.model)
    models = models_of(api)
    if model not in models:
        raise ForecastSourceError(
            f"forecast source {spec!r}: unknown model {model!r} for {kind}; its models: "
            f"{', '.join(models)}"
        )
    return OpenMeteo(
        api,
        models[model],
        options,
        available_after=_available_after(settings),
        max_distance_km=settings.max_grid_distance_km,
    )


def forecast_source(spec: str, settings: NwpSettings) -> ForecastSource | None:
    """The source ``spec`` names (``None`` for ``synthetic``); raises
    :class:`ForecastSourceError` naming the spec and what is allowed."""
    if spec == SYNTHETIC:
        return None
    path = Path(spec)
    if path.exists():
        return RunArchive(
            path,
            available_after=_available_after(settings),
            max_distance_km=settings.max_grid_distance_km,
        )
    if spec.startswith("open-meteo"):
        return _open_meteo(spec, settings)
    if spec.partition(":")[0] in ECMWF_SPEC_KINDS:
        return EcmwfOpenData.from_spec(spec, settings)
    raise ForecastSourceError(
        f"forecast source {spec!r}: no such file or directory; give {SOURCE_KINDS}"
    )
