"""Wind physics against the turbine library: power curve, cut-in/out, hub-height extrapolation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from windpowerlib import TurbineClusterModelChain
from windpowerlib import WindFarm as LibraryFarm
from windpowerlib.power_output import power_curve_density_correction

from forecasts.specs import WindFarm
from forecasts.wind import (
    density_corrected_power_w,
    wind_farm_mw,
    wind_turbine,
    windpowerlib_weather,
)

TURBINE = "V126/3450"


def weather_with(speeds_m_s, temp_c=15.0, pressure_pa=101325.0) -> pd.DataFrame:
    index = pd.date_range("2026-06-01", periods=len(speeds_m_s), freq="15min", tz="UTC")
    return pd.DataFrame(
        {
            "wind_speed": np.asarray(speeds_m_s, dtype=float),
            "temp_air": temp_c,
            "pressure": pressure_pa,
        },
        index=index,
    )


def farm(**overrides) -> WindFarm:
    values = {
        "turbine_type": TURBINE,
        "hub_height_m": 117,
        "turbines": 10,
        "roughness_length_m": 0.1,
    }
    return WindFarm(**(values | overrides))


def test_follows_the_power_curve_at_hub_height():
    spec = farm(efficiency=0.9)
    curve = wind_turbine(TURBINE, 117).power_curve
    speeds = [1.0, 2.5, 5.0, 8.0, 10.0, 13.0, 18.0, 30.0]
    # wind measured at hub height, near-standard air: no extrapolation, density ~1.2 kg/m3
    output = wind_farm_mw(weather_with(speeds, temp_c=15.0), spec, wind_height_m=117)
    expected_mw = np.interp(speeds, curve["wind_speed"], curve["value"], left=0, right=0) / 1e6
    expected_mw *= spec.turbines * spec.efficiency
    assert output.iloc[0] == 0.0  # below cut-in
    assert output.iloc[-1] == 0.0  # above cut-out
    assert output.iloc[5] == pytest.approx(spec.capacity_mw * 0.9, rel=0.02)  # rated
    np.testing.assert_allclose(output.to_numpy(), expected_mw, rtol=0.06, atol=0.05)


def test_never_above_nameplate_and_mw_units():
    spec = farm(efficiency=1.0)
    output = wind_farm_mw(weather_with(np.linspace(0, 40, 200), temp_c=-30.0), spec, 117)
    assert output.max() <= spec.capacity_mw + 1e-9
    assert output.max() == pytest.approx(34.5, rel=0.01)  # 10 x 3.45 MW, not 34,500


def test_rougher_site_extrapolates_to_more_hub_speed():
    weather = weather_with([5.0] * 4)  # 5 m/s at 10 m
    smooth = wind_farm_mw(weather, farm(roughness_length_m=0.0002), wind_height_m=10)
    rough = wind_farm_mw(weather, farm(roughness_length_m=0.3), wind_height_m=10)
    same_height = wind_farm_mw(weather, farm(), wind_height_m=117)
    assert (rough > smooth).all()
    assert (smooth > same_height).all()  # extrapolation from 10 m to 117 m raises the speed


def test_thin_air_gives_less_power_below_rated():
    speeds = [7.0] * 3
    sea = wind_farm_mw(weather_with(speeds, pressure_pa=101325.0), farm(), 117)
    high = wind_farm_mw(weather_with(speeds, pressure_pa=85000.0), farm(), 117)
    assert (high < sea * 0.95).all()


@pytest.mark.parametrize("turbine", [TURBINE, "E-126/4200", "SWT130/3600"])
def test_density_corrected_curve_matches_windpowerlibs_own(turbine):
    """The farm's chain replaces windpowerlib's per-row density correction with one array step;
    its output equals windpowerlib's on thin and dense air, on every curve point, at cut-out
    and past it, and on a missing value."""
    curve = wind_turbine(turbine, 117).power_curve
    rng = np.random.default_rng(7)
    speeds = np.concatenate(
        [rng.uniform(0.0, 32.0, 2_000), curve["wind_speed"], [0.0, 25.0, 25.001, 40.0, np.nan]]
    )
    density = np.concatenate([rng.uniform(0.85, 1.40, 2_000), np.full(len(curve) + 5, 1.225)])
    expected_w = power_curve_density_correction(
        speeds, curve["wind_speed"], curve["value"], density
    )
    got_w = density_corrected_power_w(speeds, curve["wind_speed"], curve["value"], density)
    np.testing.assert_allclose(got_w, expected_w, rtol=1e-12, atol=1e-6)  # [W]
    assert np.isnan(got_w[-1]) and np.isnan(expected_w[-1])


def test_farm_output_equals_windpowerlibs_chain_on_varied_weather():
    """The whole farm against windpowerlib's TurbineClusterModelChain left as it is (10 m wind
    taken to hub height, cold and warm air, low and high pressure)."""
    rng = np.random.default_rng(3)
    n = 500
    weather = weather_with(rng.uniform(0.0, 28.0, n), temp_c=rng.uniform(-30.0, 40.0, n),
                           pressure_pa=rng.uniform(70_000.0, 104_000.0, n))  # fmt: skip
    spec = farm(efficiency=0.93)
    fleet = pd.DataFrame({"wind_turbine": [wind_turbine(TURBINE, 117)], "number_of_turbines": [10]})
    chain = TurbineClusterModelChain(
        LibraryFarm(wind_turbine_fleet=fleet, efficiency=0.93),
        wake_losses_model="wind_farm_efficiency",
        smoothing=False, wind_speed_model="logarithmic", density_model="ideal_gas",
        temperature_model="linear_gradient", power_output_model="power_curve",
        density_correction=True, obstacle_height=0,
    )  # fmt: skip
    chain.run_model(windpowerlib_weather(weather, 10.0, spec.roughness_length_m))
    expected_mw = (chain.power_output.to_numpy(dtype=float) / 1e6).clip(0.0, spec.capacity_mw)
    got_mw = wind_farm_mw(weather, spec, wind_height_m=10.0).to_numpy()
    assert got_mw.max() > 0.5 * spec.capacity_mw  # the comparison reaches rated power
    np.testing.assert_allclose(got_mw, expected_mw, rtol=1e-12, atol=1e-9)
