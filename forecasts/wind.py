"""Wind farm output: windpowerlib's TurbineClusterModelChain with the bundled power curves.

Choices (explicit, so they can be swapped): logarithmic wind profile from the weather's
measurement height to hub height with the farm's roughness length, air temperature to hub
height by the linear gradient, air density by the ideal gas law from temperature and pressure,
power curve density correction, constant farm efficiency standing for wake losses, no power
curve smoothing. Output never exceeds nameplate, is zero below cut-in and above cut-out.

The chain is windpowerlib's with one step replaced: its density-corrected power curve
(``power_output.power_curve_density_correction``) interpolates each row's corrected curve in a
Python loop, a third of the time an ensemble run's supply took (21 members x 1,536 slots);
:func:`density_corrected_power_w` computes the same values for all rows at once.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from windpowerlib import TurbineClusterModelChain, WindFarm, WindTurbine

from forecasts.specs import WindFarm as WindFarmSpec

__all__ = ["density_corrected_power_w", "power_law_to_height", "wind_farm_mw", "wind_turbine"]

_TEMPERATURE_HEIGHT_M = 2.0  # air temperature in weather data is at 2 m
_STANDARD_DENSITY_KG_M3 = 1.225  # the density power curves are given at


def density_corrected_power_w(
    wind_speed_m_s: np.ndarray,
    curve_wind_speed_m_s: np.ndarray,
    curve_power_w: np.ndarray,
    density_kg_m3: np.ndarray,
) -> np.ndarray:
    """Power [W] at each wind speed [m/s] from a power curve corrected to each row's air density
    [kg/m^3]: windpowerlib's ``power_curve_density_correction`` (Svenningsen 2010: the curve's
    speeds scaled by ``(1.225 / density) ** p``, ``p`` from 1/3 below 7.5 m/s to 2/3 above
    12.5 m/s), zero outside each corrected curve, for all rows at once."""
    speed = np.asarray(wind_speed_m_s, dtype=float)
    curve_speed = np.asarray(curve_wind_speed_m_s, dtype=float)
    curve_power = np.asarray(curve_power_w, dtype=float)
    density_ratio = _STANDARD_DENSITY_KG_M3 / np.asarray(density_kg_m3, dtype=float)
    curves = _speed_factors(density_ratio, curve_speed) * curve_speed  # one curve a row
    upper = np.clip((curves <= speed[:, None]).sum(axis=1), 1, len(curve_speed) - 1)
    rows = np.arange(len(speed))
    low_speed, high_speed = curves[rows, upper - 1], curves[rows, upper]
    share = (speed - low_speed) / (high_speed - low_speed)
    power = curve_power[upper - 1] + share * (curve_power[upper] - curve_power[upper - 1])
    outside = (speed < curves[:, 0]) | (speed > curves[:, -1])
    return np.where(outside, 0.0, power)


def _speed_factors(density_ratio: np.ndarray, curve_speed_m_s: np.ndarray) -> np.ndarray:
    """``density_ratio ** p`` [-] for each row's density ratio and each curve speed's exponent
    ``p`` (Svenningsen's, :func:`density_corrected_power_w`): rows x curve points. The curve
    shares few exponents (all speeds up to 7.5 m/s 1/3, all from 12.5 m/s 2/3), so each row
    takes one power per distinct exponent, not one per curve point."""
    exponent = np.interp(curve_speed_m_s, [7.5, 12.5], [1 / 3, 2 / 3])
    distinct, column = np.unique(exponent, return_inverse=True)
    return (density_ratio[:, None] ** distinct)[:, column]


class _FarmChain(TurbineClusterModelChain):
    """windpowerlib's turbine-cluster chain with its density-corrected power curve step done by
    :func:`density_corrected_power_w` (same values, all rows at once)."""

    def calculate_power_output(self, wind_speed_hub: pd.Series, density_hub: pd.Series):
        curve = self.power_plant.power_curve
        power_w = density_corrected_power_w(
            wind_speed_hub.to_numpy(dtype=float), curve["wind_speed"].to_numpy(),
            curve["value"].to_numpy(), np.asarray(density_hub, dtype=float),
        )  # fmt: skip
        return pd.Series(power_w, index=wind_speed_hub.index, name="feedin_power_plant")


@lru_cache(maxsize=64)
def wind_turbine(turbine_type: str, hub_height_m: float) -> WindTurbine:
    """A windpowerlib turbine from the bundled library (read from disk, never downloaded)."""
    return WindTurbine(hub_height=hub_height_m, turbine_type=turbine_type)


def windpowerlib_weather(
    weather: pd.DataFrame, wind_height_m: float, roughness_length_m: float
) -> pd.DataFrame:
    """The weather frame in windpowerlib's (variable, height) column layout, temperature in K."""
    n = len(weather)
    columns = pd.MultiIndex.from_tuples(
        [
            ("wind_speed", wind_height_m),
            ("temperature", _TEMPERATURE_HEIGHT_M),
            ("pressure", 0),
            ("roughness_length", 0),
        ],
        names=["variable_name", "height"],
    )
    values = np.column_stack(
        [
            weather["wind_speed"].to_numpy(dtype=float),
            weather["temp_air"].to_numpy(dtype=float) + 273.15,
            weather["pressure"].to_numpy(dtype=float),
            np.full(n, roughness_length_m),
        ]
    )
    return pd.DataFrame(values, index=weather.index, columns=columns)


def power_law_to_height(
    wind_speed_m_s: pd.Series, height_m: float, hub_height_m: float, exponent: pd.Series
) -> pd.Series:
    """Wind speed at ``hub_height_m`` from ``height_m`` by the power law ``(h2/h1)**alpha``
    with a per-row shear exponent [m/s] (Hellman; alpha ~0.1 unstable, 0.3-0.5 stable)."""
    return wind_speed_m_s * (hub_height_m / height_m) ** exponent


def wind_farm_mw(weather: pd.DataFrame, farm: WindFarmSpec, wind_height_m: float) -> pd.Series:
    """AC output of ``farm`` [MW] for each weather interval.

    ``weather`` follows the weather frame contract with ``wind_speed`` measured at
    ``wind_height_m``; the farm's own ``roughness_length_m`` describes its surroundings. With a
    ``wind_shear_exponent`` column (synthetic weather with stability) wind is brought to hub
    height by the power law instead of the log profile.
    """
    if "wind_shear_exponent" in weather.columns:
        weather = weather.assign(
            wind_speed=power_law_to_height(
                weather["wind_speed"], wind_height_m, farm.hub_height_m,
                weather["wind_shear_exponent"],
            )
        )  # fmt: skip
        wind_height_m = farm.hub_height_m  # windpowerlib's log profile is then the identity
    turbine = wind_turbine(farm.turbine_type, farm.hub_height_m)
    power_plant = WindFarm(
        wind_turbine_fleet=pd.DataFrame(
            {"wind_turbine": [turbine], "number_of_turbines": [farm.turbines]}
        ),
        efficiency=farm.efficiency,
    )
    chain = _FarmChain(
        power_plant,
        wake_losses_model="wind_farm_efficiency",
        smoothing=False,
        wind_speed_model="logarithmic",
        density_model="ideal_gas",
        temperature_model="linear_gradient",
        power_output_model="power_curve",
        density_correction=True,
        obstacle_height=0,
    )
    chain.run_model(windpowerlib_weather(weather, wind_height_m, farm.roughness_length_m))
    nameplate_mw = farm.capacity_mw
    output_mw = (chain.power_output.astype(float) / 1e6).clip(lower=0.0, upper=nameplate_mw)
    return pd.Series(output_mw.to_numpy(), index=weather.index, name="wind_mw")
