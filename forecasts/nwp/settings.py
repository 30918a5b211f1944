"""Settings of the weather-forecast sources (the ``forecast.nwp`` section of the config).

Pydantic models, as :mod:`forecasts.specs`: a bad value is caught where the config is read,
with the field path in the message. Units are in the field names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["SYNTHETIC", "EcmwfSettings", "NwpSettings", "OpenMeteoSettings"]

SYNTHETIC = "synthetic"
"""The source that is no weather model: actual weather plus the error model."""


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_URL = r"^https?://\S+$"


class OpenMeteoSettings(_Settings):
    """How the Open-Meteo APIs are reached (:mod:`forecasts.nwp.openmeteo`)."""

    forecast_url: str = Field(
        default="https://api.open-meteo.com/v1/forecast",
        pattern=_URL,
        description="the Weather Forecast API (a model's newest run)",
    )
    ensemble_url: str = Field(
        default="https://ensemble-api.open-meteo.com/v1/ensemble",
        pattern=_URL,
        description="the Ensemble API (an ensemble's newest run, every member)",
    )
    single_runs_url: str = Field(
        default="https://single-runs-api.open-meteo.com/v1/forecast",
        pattern=_URL,
        description="the Single Runs API (a past run by its issue time, for replay)",
    )
    model: str = Field(
        default="ncep_gfs_global",
        description="the weather model of 'open-meteo' and 'open-meteo-runs' sources "
        "(Open-Meteo's name, e.g. ncep_gfs_global, ecmwf_ifs, dwd_icon_global)",
    )
    ensemble_model: str = Field(
        default="ncep_gefs025",
        description="the ensemble model of 'open-meteo-ensemble' sources (e.g. ncep_gefs025, "
        "ecmwf_ifs025_ensemble)",
    )
    horizon_hours: int = Field(
        default=72, ge=1, le=384, description="leads requested of each run, from its issue time [h]"
    )
    cache_dir: str | None = Field(
        default=None,
        description="directory of the response cache (a SQLite file); null: the user's cache "
        "directory",
    )
    cache_minutes: float = Field(
        default=60.0,
        ge=0,
        le=24 * 60,
        description="a live API's response is reused this long (a past run's for good) [min]",
    )
    retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="retries of a request that failed to connect or got HTTP 500, 502, 503 or 504",
    )
    backoff_s: float = Field(
        default=0.5, ge=0, le=60, description="backoff factor between retries (urllib3) [s]"
    )
    timeout_s: float = Field(
        default=30.0, gt=0, le=600, description="longest wait for an answer, per try [s]"
    )


class EcmwfSettings(_Settings):
    """How ECMWF open data is fetched (:mod:`forecasts.nwp.ecmwf`: the ``ecmwf`` and
    ``ecmwf-ens`` sources)."""

    source: str = Field(
        default="ecmwf",
        pattern=r"^(https?://\S+|[a-z][a-z0-9-]*)$",
        description="where runs are fetched: a name the ecmwf-opendata client knows ('ecmwf': "
        "data.ecmwf.int, the last few days; 'aws', 'azure', 'google': mirrors keeping more) "
        "or a server's base URL",
    )
    model: Literal["ifs", "aifs-single"] = Field(
        default="ifs", description="the model of 'ecmwf' sources ('ecmwf:MODEL' overrides it)"
    )
    resolution: Literal["0p25", "0p1"] = Field(
        default="0p25", description="grid spacing: 0p25 (0.25 deg) or 0p1 (IFS only, 2026-05-12 on)"
    )
    lead_hours: int = Field(
        default=72,
        ge=6,
        le=144,
        description="leads fetched of each run, from its issue time [h] (steps every 3 h for "
        "IFS, 6 h for AIFS)",
    )
    ensemble_members: int = Field(
        default=10,
        ge=1,
        le=50,
        description="perturbed members fetched for 'ecmwf-ens' besides the control (each "
        "about as much data as the deterministic run, some 0.1 GB for 72 h at 0p25)",
    )
    cache_dir: str | None = Field(
        default=None,
        description="directory of the fetched runs (one directory per issue time, never "
        "fetched twice); null: $XDG_CACHE_HOME/greensched/ecmwf (~/.cache/greensched/ecmwf)",
    )
    timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="longest wait for an answer, per try [s]"
    )
    retries: int = Field(
        default=2,
        ge=0,
        le=20,
        description="retries of a request that failed to connect or got HTTP 408, 429, 500, "
        "502, 503 or 504",
    )
    retry_wait_s: float = Field(
        default=10.0,
        ge=0,
        le=600,
        description="wait before each retry (or the server's Retry-After) [s]",
    )


class NwpSettings(_Settings):
    """Where each site's forecast comes from, and how runs are read."""

    sources: dict[str, str] = Field(
        default_factory=dict,
        description="per site: 'synthetic' (actual weather plus the error model, the default), "
        "a model run's file, a run's directory, a directory of runs, or an Open-Meteo API "
        "('open-meteo[:MODEL]', 'open-meteo-ensemble[:MODEL]', 'open-meteo-runs[:MODEL]'), or "
        "ECMWF open data ('ecmwf[:MODEL]', 'ecmwf-ens[:MODEL]')",
    )
    available_after_minutes: float | None = Field(
        default=None,
        ge=0,
        le=24 * 60,
        description="a run is used from this long after its issue time [min]; null: the "
        "model's usual publication delay (files: GFS 4 h, GEFS 5 h, HRRR and RAP 1 h, NAM 2 h, "
        "ECMWF 7 h; Open-Meteo: per model, forecasts.nwp.openmeteo.MODELS)",
    )
    max_grid_distance_km: float = Field(
        default=50.0, gt=0, le=500, description="farthest a site may be from a grid point [km]"
    )
    ensemble_spread_factor: float = Field(
        default=1.0,
        gt=0,
        le=5,
        description="calibration of an ensemble's p10/p90: the members' spread about their "
        "mean supply is widened by this factor (1: the members as they are) [-]",
    )
    open_meteo: OpenMeteoSettings = Field(
        default_factory=OpenMeteoSettings,
        description="the Open-Meteo APIs: their URLs, default models, cache and retries",
    )
    ecmwf: EcmwfSettings = Field(
        default_factory=EcmwfSettings,
        description="ECMWF open data: server, model, resolution, leads, members, cache, retries",
    )
    poll_minutes: float = Field(
        default=15.0,
        gt=0,
        le=24 * 60,
        description="`serve` looks for new runs this often [min]",
    )

    @field_validator("sources")
    @classmethod
    def _not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        for site, spec in value.items():
            if not spec.strip():
                raise ValueError(
                    f"{site}: empty source; give 'synthetic', a file, a directory or an "
                    "Open-Meteo API"
                )
        return value
