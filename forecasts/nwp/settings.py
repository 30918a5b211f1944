"""Settings of the weather-forecast sources (the ``forecast.nwp`` section of the config).

Pydantic models, as :mod:`forecasts.specs`: a bad value is caught where the config is read,
with the field path in the message. Units are in the field names.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["SYNTHETIC", "NwpSettings"]

SYNTHETIC = "synthetic"
"""The source that is no weather model: actual weather plus the error model."""


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NwpSettings(_Settings):
    """Where each site's forecast comes from, and how runs are read."""

    sources: dict[str, str] = Field(
        default_factory=dict,
        description="per site: 'synthetic' (actual weather plus the error model, the default), "
        "a model run's file, a run's directory or a directory of runs",
    )
    available_after_minutes: float | None = Field(
        default=None,
        ge=0,
        le=24 * 60,
        description="a run is used from this long after its issue time [min]; null: the "
        "model's usual publication delay (GFS 4 h, GEFS 5 h, HRRR and RAP 1 h, NAM 2 h, "
        "ECMWF 7 h)",
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
                raise ValueError(f"{site}: empty source; give 'synthetic', a file or a directory")
        return value
