"""PV plant output: a pvlib ModelChain per plant with PVWatts DC and AC models.

Choices (explicit, so they can be swapped): PVWatts DC (``pdc0``, ``gamma_pdc``), PVWatts
inverter sized so AC output clips at the plant's ``capacity_mw_ac``, Hay-Davies transposition,
physical IAM, no spectral loss, SAPM cell temperature with the plant's mounting parameters, and
PVWatts' lumped system losses applied as a DC derate before the inverter (as PVWatts does).

Only the rows with irradiance go through the chain: a row without any (night) gives no power
whatever its temperature and wind (the plane of array gets none, PVWatts' inverter output is
at least 0 and pvlib's NaN becomes 0), so those rows are 0 without being modelled; half the
rows of a forecast, whose stacked members made PV the costliest step of its supply.
"""

from __future__ import annotations

import numpy as np
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


class _GivenSunLocation(pvlib.location.Location):
    """A Location whose solar position is given, row by row, for the times the chain models
    (a subset of rows of a grid whose position came from the shared cache)."""

    def __init__(self, position: pd.DataFrame, site: SupplySite) -> None:
        super().__init__(site.latitude, site.longitude, "UTC", site.altitude_m)
        self.position = position

    def get_solarposition(self, times, pressure=None, temperature=12, **kwargs):
        if not self.position.index.equals(times):
            raise ValueError("solar position asked for other times than the ones given")
        return self.position


def pv_model_chain(plant: PVPlant, site: SupplySite) -> ModelChain:
    """The pvlib ModelChain for one plant at one site (powers in W, as pvlib works)."""
    location = _SharedSunLocation(site.latitude, site.longitude, "UTC", site.altitude_m)
    return _model_chain(plant, location)


def _model_chain(plant: PVPlant, location: pvlib.location.Location) -> ModelChain:
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
    lit = (mid[["ghi", "dni", "dhi"]] != 0).any(axis=1).to_numpy()  # NaN counts as lit
    ac_w = np.zeros(len(mid))
    if lit.any():
        position = solar_position(mid.index, site.latitude, site.longitude, site.altitude_m)
        chain = _model_chain(plant, _GivenSunLocation(position[lit], site))
        chain.run_model(mid[lit])
        ac_w[lit] = pd.Series(chain.results.ac).fillna(0.0).to_numpy()
    ac_mw = np.clip(ac_w / 1e6, 0.0, plant.capacity_mw_ac)
    return pd.Series(ac_mw, index=weather.index, name="pv_mw")
