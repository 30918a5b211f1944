"""Wind farm output: windpowerlib's TurbineClusterModelChain with the bundled power curves.

Choices (explicit, so they can be swapped): logarithmic wind profile from the weather's
measurement height to hub height with the farm's roughness length, air temperature to hub
height by the linear gradient, air density by the ideal gas law from temperature and pressure,
power curve density correction, constant farm efficiency standing for wake losses, no power
curve smoothing. Output never exceeds nameplate, is zero below cut-in and above cut-out.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from windpowerlib import TurbineClusterModelChain, WindFarm, WindTurbine

from forecasts.specs import WindFarm as WindFarmSpec

__all__ = ["power_law_to_height", "wind_farm_mw", "wind_turbine"]

_TEMPERATURE_HEIGHT_M = 2.0  # air temperature in weather data is at 2 m


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
    chain = TurbineClusterModelChain(
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
