"""The carrier table: every carrier is wired through each place that handles supply by carrier,
and a carrier's model is a replaceable step whose output is what the supply table holds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from forecasts.error import ForecastError, LeadLevel
from forecasts.specs import SupplySite
from forecasts.supply import CARRIER_MODELS, SupplyModel
from forecasts.synthetic import synthetic_weather
from scheduler.contracts import MEASUREMENTS, SUPPLY
from scheduler.contracts.carriers import CARRIERS, capacities_mw
from scheduler.drivers.service.pb.greensched.v1 import loadcap_pb2 as pb
from scheduler.measurements import Measurement


@pytest.mark.parametrize("carrier", CARRIERS, ids=lambda c: c.name)
def test_every_carrier_is_wired_through(carrier):
    assert carrier.name in SupplySite.model_fields  # the site's plants of the carrier
    assert carrier.name in CARRIER_MODELS
    assert carrier.column in SUPPLY.names and carrier.column in MEASUREMENTS.names
    assert carrier.column in {f.name for f in dataclasses.fields(Measurement)}
    assert carrier.column in pb.Measurement.DESCRIPTOR.fields_by_name
    nrmse = f"{carrier.name}_nrmse"
    assert nrmse in {f.name for f in dataclasses.fields(ForecastError)}
    assert nrmse in {f.name for f in dataclasses.fields(LeadLevel)}


def test_capacities_are_each_carriers_plants_in_mw(config):
    site = config.sites["qingyang"]
    capacity = capacities_mw(site)
    assert capacity["pv"] == pytest.approx(sum(p.capacity_mw_ac for p in site.pv.values()))
    assert capacity["wind"] == pytest.approx(sum(f.capacity_mw for f in site.wind.values()))
    # a farm of 3-8 MW turbines: the nameplate in MW, not kW
    for farm in site.wind.values():
        assert 1.0 <= farm.capacity_mw / farm.turbines <= 10.0


def test_a_replaced_carrier_model_is_what_the_supply_holds(config):
    site = config.sites["qingyang"]
    weather = synthetic_weather(
        site, pd.Timestamp("2026-06-01", tz="UTC"), pd.Timestamp("2026-06-02", tz="UTC"), seed=3
    )

    def one_mw_per_farm(slots, farm, site):
        return pd.Series(1.0, index=slots.data.index)

    default = SupplyModel(config.sites).site_actual(site, weather)
    replaced = SupplyModel(
        config.sites, models={**CARRIER_MODELS, "wind": one_mw_per_farm}
    ).site_actual(site, weather)
    assert (replaced["wind_mw"] == float(len(site.wind))).all()
    np.testing.assert_array_equal(replaced["pv_mw"], default["pv_mw"])
    np.testing.assert_allclose(replaced["green_mw"], default["pv_mw"] + len(site.wind))


def test_a_model_missing_for_a_carrier_is_refused(config):
    with pytest.raises(TypeError, match=r"no model for carrier.*wind"):
        SupplyModel(config.sites, models={"pv": CARRIER_MODELS["pv"]})
