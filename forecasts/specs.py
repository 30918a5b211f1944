"""Parameters of the things that make renewable supply: PV plants, wind farms, a site's climate.

These are the only inputs ``forecasts`` needs about a site. They are pydantic models so that a
bad value is caught where the config is read, with the field path in the message. Units are in
the field names.
"""

from __future__ import annotations

import difflib
import math
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["Climate", "PVPlant", "SupplySite", "WindFarm", "turbine_library"]


class _Spec(BaseModel):
    """Strict base: unknown keys are errors, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


TemperatureModel = Literal[
    "open_rack_glass_glass",
    "close_mount_glass_glass",
    "open_rack_glass_polymer",
    "insulated_back_glass_polymer",
]


class PVPlant(_Spec):
    """A fixed-tilt PV plant, modelled with pvlib PVWatts DC/AC and SAPM cell temperature."""

    capacity_mw_dc: float = Field(gt=0, le=5000, description="DC nameplate at STC [MW]")
    capacity_mw_ac: float = Field(gt=0, le=5000, description="inverter AC limit [MW]")
    tilt_deg: float = Field(ge=0, le=90, description="surface tilt from horizontal [deg]")
    azimuth_deg: float = Field(
        default=180, ge=0, lt=360, description="surface azimuth, clockwise from north [deg]"
    )
    temperature_model: TemperatureModel = Field(
        default="open_rack_glass_polymer", description="pvlib SAPM cell-temperature parameter set"
    )
    gamma_pdc_per_c: float = Field(
        default=-0.0037, ge=-0.01, le=0, description="DC power temperature coefficient [1/C]"
    )
    losses_percent: float = Field(
        default=14.0, ge=0, lt=100, description="PVWatts system losses (soiling, wiring, ...) [%]"
    )

    @property
    def capacity_mw(self) -> float:
        """What the plant can deliver at most: its inverter AC limit [MW]."""
        return self.capacity_mw_ac

    @model_validator(mode="after")
    def _dc_ac_ratio(self) -> PVPlant:
        ratio = self.capacity_mw_dc / self.capacity_mw_ac
        if not 0.8 <= ratio <= 2.0:
            raise ValueError(
                f"DC/AC ratio {ratio:.2f} (capacity_mw_dc / capacity_mw_ac) is outside the "
                "plausible range 0.8 to 2.0"
            )
        return self


@lru_cache(maxsize=1)
def turbine_library() -> dict[str, float]:
    """windpowerlib's bundled turbines that have a power curve: ``{turbine_type: nominal_mw}``.

    Reads the CSV that ships inside windpowerlib; never touches the network.
    """
    from windpowerlib import data

    table = data.get_turbine_types(print_out=False)
    names = table.loc[table["has_power_curve"], "turbine_type"]
    # nominal power is encoded in the type name: "E-126/4200" -> 4200 kW
    return {name: float(name.split("/")[1]) / 1000.0 for name in names}


class WindFarm(_Spec):
    """A farm of identical turbines from windpowerlib's bundled library."""

    turbine_type: str = Field(description="windpowerlib turbine type with a power curve")
    hub_height_m: float = Field(gt=10, le=250, description="hub height above ground [m]")
    turbines: int = Field(gt=0, le=5000, description="number of turbines")
    roughness_length_m: float = Field(
        gt=0, le=2, description="surface roughness length z0 [m] (sea ~0.0002, farmland ~0.1)"
    )
    efficiency: float = Field(
        default=0.9,
        gt=0.5,
        le=1.0,
        description="constant farm efficiency standing for wake losses [-]",
    )

    @field_validator("turbine_type")
    @classmethod
    def _known_turbine(cls, value: str) -> str:
        library = turbine_library()
        if value not in library:
            close = difflib.get_close_matches(value, library, n=4, cutoff=0.5)
            hint = f"close matches: {', '.join(close)}" if close else "see `greensched turbines`"
            raise ValueError(
                f"{value!r} is not in windpowerlib's turbine library "
                f"(types with a power curve); {hint}"
            )
        return value

    @property
    def capacity_mw(self) -> float:
        """Nameplate capacity of the farm [MW]."""
        return turbine_library()[self.turbine_type] * self.turbines


class Climate(_Spec):
    """Parameters of the seeded synthetic weather for one site.

    Clearness: the daily clear-sky index follows an AR(1) process in logit space, so cloudy days
    come in runs, around a mean that may change by month. Wind: a Weibull-distributed speed at
    ``wind_height_m`` obtained from a Gaussian AR(1) process by a quantile transform, with a
    scale that may change by month and a diurnal cycle; with shear exponents, the wind aloft
    follows the stability of the day (weak shear in the afternoon, strong before dawn).
    """

    clearness_mean: float = Field(
        default=0.65, gt=0.1, lt=0.95, description="mean daily clear-sky index (GHI/GHI_clear) [-]"
    )
    clearness_day_to_day: float = Field(
        default=0.6, ge=0, lt=1, description="lag-1 autocorrelation of daily clearness [-]"
    )
    clearness_spread: float = Field(
        default=1.0, gt=0, le=3, description="std of daily clearness in logit space [-]"
    )
    wind_weibull_scale_m_s: float = Field(
        default=6.0, gt=0.5, le=20, description="Weibull scale A at wind_height_m [m/s]"
    )
    wind_weibull_shape: float = Field(default=2.0, ge=1.0, le=4.0, description="Weibull k [-]")
    wind_height_m: float = Field(default=10.0, gt=0, le=200, description="height of wind [m]")
    wind_autocorrelation_hours: float = Field(
        default=10.0, gt=0, le=240, description="e-folding time of wind anomalies [h]"
    )
    wind_diurnal_amplitude: float = Field(
        default=0.15, ge=0, lt=1, description="relative amplitude of the daily wind cycle [-]"
    )
    wind_peak_hour_local: float = Field(
        default=15.0, ge=0, lt=24, description="local hour of the diurnal wind maximum [h]"
    )
    clearness_month_factors: tuple[float, ...] | None = Field(
        default=None,
        description="12 factors (Jan-Dec, mean 1) on clearness_mean for each month [-]; "
        "null = no seasons",
    )
    wind_month_factors: tuple[float, ...] | None = Field(
        default=None,
        description="12 factors (Jan-Dec, mean 1) on wind_weibull_scale_m_s for each month [-]; "
        "null = no seasons",
    )
    wind_shear_exponent_day: float | None = Field(
        default=None,
        ge=0,
        le=0.6,
        description="power-law exponent of the wind profile above wind_height_m in the "
        "afternoon (unstable, well mixed) [-]; null = the farm's log profile at all hours",
    )
    wind_shear_exponent_night: float | None = Field(
        default=None,
        ge=0,
        le=0.8,
        description="the same before dawn (stable: the surface wind drops, the wind aloft does "
        "not) [-]",
    )
    temp_mean_c: float = Field(default=12.0, ge=-40, le=45, description="annual mean air T [C]")
    temp_annual_amplitude_c: float = Field(default=12.0, ge=0, le=40, description="[C]")
    temp_diurnal_amplitude_c: float = Field(default=5.0, ge=0, le=25, description="[C]")

    @field_validator("clearness_month_factors", "wind_month_factors")
    @classmethod
    def _twelve_months_mean_one(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is None:
            return value
        if len(value) != 12 or min(value) <= 0:
            raise ValueError(f"give 12 positive factors, Jan to Dec; got {len(value)}")
        if not 0.97 <= sum(value) / 12 <= 1.03:
            raise ValueError(f"the 12 factors must average 1 (within 3 %); they average "
                             f"{sum(value) / 12:.3f}")  # fmt: skip
        return value

    @model_validator(mode="after")
    def _shear_day_and_night(self) -> Climate:
        if (self.wind_shear_exponent_day is None) != (self.wind_shear_exponent_night is None):
            raise ValueError("give both wind_shear_exponent_day and _night, or neither")
        return self

    @property
    def mean_wind_at_10m_m_s(self) -> float:
        """Mean of the Weibull wind, brought to 10 m by the neutral 1/7 power law [m/s]."""
        weibull_mean = self.wind_weibull_scale_m_s * math.gamma(1 + 1 / self.wind_weibull_shape)
        return weibull_mean * (10.0 / self.wind_height_m) ** (1.0 / 7.0)


class SupplySite(_Spec):
    """Where a site is and which renewable plants feed it."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$", description="site name, lower case")
    latitude: float = Field(ge=-90, le=90, description="[deg N]")
    longitude: float = Field(ge=-180, le=180, description="[deg E]")
    altitude_m: float = Field(default=0.0, ge=-450, le=6000, description="[m above sea level]")
    timezone: str = Field(default="UTC", description="IANA zone used to display local time")
    pv: dict[str, PVPlant] = Field(default_factory=dict, description="PV plants by name")
    wind: dict[str, WindFarm] = Field(default_factory=dict, description="wind farms by name")
    climate: Climate = Field(default_factory=Climate, description="synthetic weather parameters")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. 'Asia/Shanghai')") from None
        return value

    @property
    def pv_capacity_mw_ac(self) -> float:
        """Sum of the PV inverter limits [MW]."""
        return sum(p.capacity_mw_ac for p in self.pv.values())

    @property
    def wind_capacity_mw(self) -> float:
        """Sum of the wind farms' nameplates [MW]."""
        return sum(w.capacity_mw for w in self.wind.values())
