"""Real NOAA runs (GFS, GEFS, HRRR, NAM, RAP; NetCDF and GRIB2) through the readers to supply,
checked against physics and against pvlib and windpowerlib run directly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib
import pytest
import xarray as xr
from windpowerlib import WindTurbine

from forecasts.error import ForecastError, LeadLevel
from forecasts.nwp.archive import RunArchive
from forecasts.nwp.ensemble import run_supply
from forecasts.nwp.noaa import read_noaa_netcdf
from forecasts.supply import SupplyModel
from scheduler.config import load_config
from tests.conftest import GEFS_RUN, GFS_RUN, NOAA, TUCSON_CONFIG, needs_nwp

pytestmark = [pytest.mark.realdata, needs_nwp]

ISSUED = pd.Timestamp("2019-05-15 00:00", tz="UTC")
DAY = (pd.Timestamp("2019-05-15 07:00", tz="UTC"), pd.Timestamp("2019-05-16 07:00", tz="UTC"))
ERROR = ForecastError(0.15, 0.08, 6.0, (LeadLevel(1, 0.05, 0.04), LeadLevel(6, 0.10, 0.065)))


@pytest.fixture(scope="module")
def site():
    return load_config(TUCSON_CONFIG).sites["tucson"]


@pytest.fixture(scope="module")
def model(site):
    return SupplyModel({"tucson": site}, slot_minutes=15)


def _run(path, site):
    archive = RunArchive(path)
    (ref,) = archive.runs
    return archive.read(ref, {"tucson": site}, 15)["tucson"]


@pytest.fixture(scope="module")
def gfs(site):
    return _run(GFS_RUN, site)


def _gfs_output(site):
    """The GFS run's output at the site as read (radiation un-averaged, hourly)."""
    found = read_noaa_netcdf(GFS_RUN, "gfs_0p25", ISSUED, {"t": (site.latitude, site.longitude)})
    return found["t"][0]


def _day(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[(frame.index >= DAY[0]) & (frame.index < DAY[1])]


def test_gfs_radiation_unaveraged_keeps_each_six_hour_window(site):
    """The file's value at each 6-hourly reset is the mean of the window: the un-averaged
    hours must average back to it."""
    output = _gfs_output(site)
    hours = output.values["ghi"].dropna()
    raw = xr.open_dataset(GFS_RUN)["dswrf"].interp(latitude=site.latitude, longitude=site.longitude)
    raw = raw.to_series().tz_localize("UTC")
    for end in pd.date_range(ISSUED + pd.Timedelta(hours=6), periods=16, freq="6h"):
        window = hours[(hours.index > end - pd.Timedelta(hours=6)) & (hours.index <= end)]
        assert len(window) == 6
        assert window.mean() == pytest.approx(raw[end], abs=0.01)


def test_gfs_run_covers_its_leads_in_slots_with_units_right(gfs):
    weather = gfs.weather[""].data
    assert gfs.issued_at == ISSUED and gfs.model == "gfs_0p25" and not gfs.is_ensemble
    assert weather.index[0] == ISSUED and gfs.end == ISSUED + pd.Timedelta(hours=384)
    assert (np.diff(weather.index) == pd.Timedelta(minutes=15)).all()
    # Tucson in May: air 10-45 C (a kelvin slip would give ~300), wind at 10 m under 25 m/s
    assert weather["temp_air"].between(5, 45).all()
    assert weather["wind_speed"].between(0, 25).all()
    assert gfs.grid_point.method == "bilinear"


def test_pv_is_zero_at_night_and_near_capacity_on_a_clear_noon(gfs, site, model):
    supply = model.site_actual(site, gfs.weather[""])
    zenith = pvlib.solarposition.get_solarposition(
        supply.index + pd.Timedelta(minutes=7.5), site.latitude, site.longitude
    )["zenith"]
    night = zenith.to_numpy() > 91
    assert night.sum() > 500
    assert (supply["pv_mw"].to_numpy()[night] == 0).all()
    day = _day(supply)
    assert day["pv_mw"].max() <= site.pv_capacity_mw_ac + 1e-9
    # a clear May day in the desert: above 85 % of the AC limit at noon (a kW/MW slip fails)
    assert day["pv_mw"].max() > 0.85 * site.pv_capacity_mw_ac


def test_pv_within_two_percent_of_a_direct_pvlib_model_chain(gfs, site, model):
    """The operating day's PV energy from 15-minute slots against pvlib run directly on the
    un-averaged hourly GHI (Erbs split at each hour's midpoint, PVWatts, the plant's
    parameters)."""
    output = _gfs_output(site)
    frame = output.values
    ghi = frame["ghi"].dropna()
    hours = ghi[(ghi.index > DAY[0]) & (ghi.index <= DAY[1])]
    mid = hours.index - pd.Timedelta(minutes=30)
    position = pvlib.solarposition.get_solarposition(mid, site.latitude, site.longitude,
                                                     site.altitude_m)  # fmt: skip
    split = pvlib.irradiance.erbs(hours.to_numpy(), position["zenith"].to_numpy(), mid)
    instants = frame[["temp_air", "wind_speed"]].dropna()
    seconds = (instants.index - ISSUED).total_seconds()
    at = (mid - ISSUED).total_seconds()
    weather = pd.DataFrame(
        {
            "ghi": hours.to_numpy(), "dni": np.asarray(split["dni"]),
            "dhi": np.asarray(split["dhi"]),
            "temp_air": np.interp(at, seconds, instants["temp_air"]),
            "wind_speed": np.interp(at, seconds, instants["wind_speed"]),
        },
        index=mid,
    )  # fmt: skip
    plant = site.pv["desert_pv"]
    system = pvlib.pvsystem.PVSystem(
        surface_tilt=plant.tilt_deg, surface_azimuth=plant.azimuth_deg,
        module_parameters={"pdc0": plant.capacity_mw_dc * 1e6 * (1 - plant.losses_percent / 100),
                           "gamma_pdc": plant.gamma_pdc_per_c},
        inverter_parameters={"pdc0": plant.capacity_mw_ac * 1e6 / 0.96, "eta_inv_nom": 0.96},
        temperature_model_parameters=pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"][
            plant.temperature_model],
    )  # fmt: skip
    location = pvlib.location.Location(site.latitude, site.longitude, "UTC", site.altitude_m)
    chain = pvlib.modelchain.ModelChain(
        system, location, aoi_model="physical", spectral_model="no_loss",
        transposition_model="haydavies",
    )  # fmt: skip
    chain.run_model(weather)
    direct_mwh = (chain.results.ac.clip(lower=0) / 1e6).sum()  # hourly: MW x 1 h
    slots_mwh = _day(model.site_actual(site, gfs.weather[""]))["pv_mw"].sum() * 0.25
    assert direct_mwh > 50  # a sunny May day for 12 MW
    assert slots_mwh == pytest.approx(direct_mwh, rel=0.02)


def test_wind_goes_through_the_power_curve_from_10_m(gfs, site, model):
    """Hub-height wind from 10 m by the log profile, then the V126/3450 curve for 3 turbines
    at 90 % farm efficiency, lowered by the thinner, hot air at 900 m (windpowerlib's density
    correction reads the curve at a wind (rho / 1.225)^(1/3 to 2/3) slower, at most ~15 %
    here): the farm's output lies between the two."""
    weather = gfs.weather[""].data
    farm = site.wind["ridge_wind"]
    hub = (
        weather["wind_speed"]
        * np.log(farm.hub_height_m / farm.roughness_length_m)
        / np.log(10.0 / farm.roughness_length_m)
    )
    curve = WindTurbine(hub_height=farm.hub_height_m, turbine_type=farm.turbine_type).power_curve
    per_mw = farm.turbines * farm.efficiency / 1e6
    high = np.interp(hub, curve["wind_speed"], curve["value"], right=0) * per_mw
    low = np.interp(hub * 0.85, curve["wind_speed"], curve["value"], right=0) * per_mw
    wind = model.site_actual(site, gfs.weather[""])["wind_mw"].to_numpy()
    assert wind.max() > 1.0  # the run has wind worth checking
    assert (wind <= high + 1e-6).all()
    assert (wind >= low - 1e-6).all()
    calm = curve["wind_speed"][(curve["value"] == 0) & (curve["wind_speed"] < 10)].max()
    assert (hub < calm).any() and (wind[hub < calm] == 0).all()  # below cut-in


def test_gefs_members_give_quantiles_around_the_forecast(site, model):
    run = _run(GEFS_RUN, site)
    assert run.is_ensemble and len(run.members) == 21 and "c00" in run.members
    supply = run_supply(run, site, model, ERROR)
    day = _day(supply)
    assert (day["green_mw_p10"] <= day["green_mw"] + 1e-9).all()
    assert (day["green_mw"] <= day["green_mw_p90"] + 1e-9).all()
    spread = day["green_mw_p90"] - day["green_mw_p10"]
    assert (spread > 0.1).sum() > 40  # members disagree in most slots of the day
    # from the members' supply: never beyond the site's capacity or below 0
    capacity = site.pv_capacity_mw_ac + site.wind_capacity_mw
    assert day["green_mw_p10"].min() >= 0 and day["green_mw_p90"].max() <= capacity
    # the spread factor widens them
    wider = _day(run_supply(run, site, model, ERROR, spread_factor=2.0))
    assert (wider["green_mw_p90"] - wider["green_mw_p10"]).sum() > spread.sum() * 1.5


def test_deterministic_run_takes_quantiles_from_the_error_model_by_lead(gfs, site, model):
    supply = run_supply(gfs, site, model, ERROR)
    spread = supply["green_mw_p90"] - supply["green_mw_p10"]
    lead = (supply.index - gfs.issued_at) / pd.Timedelta(hours=1)
    night = supply["pv_mw"] == 0
    # at night only wind errs: 2 x 1.28 x nrmse x capacity where no clipping at 0 applies
    calm_free = night & (supply["green_mw"] > 1.3 * 0.15 * site.wind_capacity_mw)
    day_ahead = calm_free & (lead > 6)
    assert day_ahead.any()
    assert spread[day_ahead].to_numpy() == pytest.approx(
        2 * 1.2816 * 0.15 * site.wind_capacity_mw, rel=1e-3
    )
    assert (supply["green_mw_p10"] <= supply["green_mw"]).all()


def test_hrrr_subhourly_is_used_at_15_minutes(site):
    """The 15-minute instants give each slot the value at its midpoint: GHI follows the
    file's samples at 15-minute detail (no hourly smoothing)."""
    run = _run(NOAA / "hrrr_subhourly", site)
    weather = run.weather[""].data
    assert (np.diff(weather.index) == pd.Timedelta(minutes=15)).all()
    assert weather.index[0] == ISSUED and run.end == ISSUED + pd.Timedelta(hours=18)
    samples = xr.open_dataset(NOAA / "hrrr_subhourly/2019/05/15/00/hrrr_subhourly.nc")
    point = samples.isel(x=2, y=4)  # the grid point nearest the site (32.125 N, -110.436 E)
    assert float(point.latitude) == pytest.approx(run.grid_point.latitude)
    ghi = point["dswrf"].to_series().tz_localize("UTC")
    midpoint = (ghi.shift(-1) + ghi) / 2  # linear between samples, at the slot midpoint
    lit = weather["ghi"] > 100
    assert weather.loc[lit, "ghi"].to_numpy() == pytest.approx(
        midpoint.reindex(weather.index[lit]).to_numpy(), rel=0.05
    )


def test_rap_without_radiation_takes_ghi_from_cloud_cover(site):
    """RAP's files here have no radiation: under a clear sky GHI is the clear sky, under
    cloud at least the Larson floor."""
    run = _run(NOAA / "rap", site)
    weather = run.weather[""].data
    clear = pvlib.location.Location(site.latitude, site.longitude, "UTC", site.altitude_m)
    clear_ghi = clear.get_clearsky(weather.index + pd.Timedelta(minutes=7.5))["ghi"].to_numpy()
    assert (weather["ghi"].to_numpy() <= clear_ghi + 1e-6).all()
    assert (weather["ghi"].to_numpy() >= 0.35 * clear_ghi - 1e-6).all()
    assert "cloud cover" in run.weather[""].notes[0]


def test_grib_run_of_per_lead_files(site):
    """RAP GRIB2, one file per lead: one run at its issue time, wind from its components."""
    archive = RunArchive(NOAA / "grib")
    (ref,) = archive.runs
    assert ref.model == "rap" and ref.issued_at == pd.Timestamp("2020-05-13 00:00", tz="UTC")
    run = archive.read(ref, {"tucson": site}, 15)["tucson"]
    weather = run.weather[""].data
    assert len(weather) == 12  # 0-3 h
    speeds = []
    for lead in ("00", "01"):
        wind = xr.open_dataset(
            NOAA / f"grib/rap.t00z.awp130pgrbf{lead}.grib2", engine="cfgrib",
            backend_kwargs={"indexpath": "",
                            "filter_by_keys": {"typeOfLevel": "heightAboveGround", "level": 10}},
        )  # fmt: skip
        distance = (wind.latitude - run.grid_point.latitude) ** 2 + (
            (wind.longitude - 360) - run.grid_point.longitude
        ) ** 2
        y, x = np.unravel_index(int(np.argmin(distance.to_numpy())), distance.shape)
        speeds.append(float(np.hypot(wind.u10[y, x], wind.v10[y, x])))
    # the slot 00:45-01:00: its midpoint 00:52:30 lies 7/8 of the way from the 00 h sample
    assert weather["wind_speed"].loc["2020-05-13 00:45"].item() == pytest.approx(
        speeds[0] / 8 + 7 * speeds[1] / 8, rel=1e-5
    )
