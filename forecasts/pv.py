"""PV plant output: a pvlib ModelChain per plant with PVWatts DC and AC models.

Choices (explicit, so they can be swapped): PVWatts DC (``pdc0``, ``gamma_pdc``), PVWatts
inverter sized so AC output clips at the plant's ``capacity_mw_ac``, Hay-Davies transposition,
physical IAM, no spectral loss, SAPM cell temperature with the plant's mounting parameters, and
PVWatts' lumped system losses applied as a DC derate before the inverter (as PVWatts does).
"""

from __future__ import annotations

import pandas as pd
import pvlib
from pvlib.modelchain import ModelChain
from pvlib.pvsystem import PVSystem
from pvlib.temperature import TEMPERATURE_MODEL_PARAMETERS

from forecasts.solar import solar_position
from forecasts.specs import PVPlant, SupplySite

__all__ = ["INVERTER_EFFICIENCY", "pv_ac_mw", "pv_model_chain"]

INVERTER_EFFICIENCY = 0.96  # PVWatts nominal inverter efficiency [-]


class _SharedSunLocation(pvlib.location.Location):
    """A Location whose solar position comes from the shared cache in ``forecasts.solar``."""

    def get_solarposition(self, times, pressure=None, temperature=12, **kwargs):
        return solar_position(times, self.latitude, self.longitude, self.altitude)


def pv_model_chain(plant: PVPlant, site: SupplySite) -> ModelChain:
    """The pvlib ModelChain for one plant at one site (powers in W, as pvlib works)."""
    system = PVSystem(
        surface_tilt=plant.tilt_deg,
        surface_azimuth=plant.azimuth_deg,
        module_parameters={
            "pdc0": plant.capacity_mw_dc * 1e6 * (1.0 - plant.losses_percent / 100.0),
            "gamma_pdc": plant.gamma_pdc_per_c,
        },
        inverter_parameters={
            "pdc0": plant.capacity_mw_ac * 1e6 / INVERTER_EFFICIENCY,
            "eta_inv_nom": INVERTER_EFFICIENCY,
        },
        temperature_model_parameters=TEMPERATURE_MODEL_PARAMETERS["sapm"][plant.temperature_model],
    )
    location = _SharedSunLocation(site.latitude, site.longitude, "UTC", site.altitude_m)
    return ModelChain(
        system,
        location,
        dc_model="pvwatts",
        ac_model="pvwatts",
        aoi_model="physical",
        spectral_model="no_loss",
        temperature_model="sapm",
        transposition_model="haydavies",
        losses_model="no_loss",
    )


def pv_ac_mw(weather: pd.DataFrame, plant: PVPlant, site: SupplySite) -> pd.Series:
    """AC output of ``plant`` [MW] for each weather interval.

    ``weather`` follows the weather frame contract (interval-start UTC labels, interval means):
    the sun's position is taken at each interval's midpoint, the result is labelled back at the
    interval start. Output is clipped to ``[0, capacity_mw_ac]`` (zero at night).
    """
    step = pd.Timedelta(weather.index[1] - weather.index[0])
    mid = weather[["ghi", "dni", "dhi", "temp_air", "wind_speed"]].copy()
    mid.index = weather.index + step / 2
    chain = pv_model_chain(plant, site)
    chain.run_model(mid)
    ac_w = pd.Series(chain.results.ac, index=mid.index).fillna(0.0)
    ac_mw = (ac_w / 1e6).clip(lower=0.0, upper=plant.capacity_mw_ac)
    ac_mw.index = weather.index
    return ac_mw.rename("pv_mw")
