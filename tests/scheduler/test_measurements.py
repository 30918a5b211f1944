"""What a site can have measured, and what a slot settles on."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from scheduler.measurements import (
    Measurement,
    MeasurementError,
    check_measurement,
    settled_rows,
)

NOW = pd.Timestamp("2026-06-21 04:07", tz="UTC")
SLOT = pd.Timestamp("2026-06-21 03:45", tz="UTC")


def check(config, **changes) -> None:
    values = dict(site="shantou", time=SLOT, pv_mw=2.0, wind_mw=10.0, load_mw=None) | changes
    check_measurement(Measurement(**values), "measurements[3]", sites=config.sites,
                      slot_minutes=15, now=NOW)  # fmt: skip


def test_a_plausible_measurement_passes(config):
    check(config)
    check(config, load_mw=9.0, time=NOW - pd.Timedelta(days=6, minutes=7))
    check(config, time=pd.Timestamp("2026-06-21 04:00", tz="UTC"))  # the running slot


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"site": "shanto"}, "site", "unknown site 'shanto'; known sites: qingyang, shantou"),
        ({"time": SLOT + pd.Timedelta(minutes=5)}, "time", "not the start of a 15-minute slot"),
        ({"time": pd.Timestamp("2026-06-21 04:15", tz="UTC")}, "time", "has not begun"),
        ({"time": SLOT - pd.Timedelta(days=8)}, "time", "more than 7 days old"),
        ({"pv_mw": -0.1}, "pv_mw", "must be a finite number >= 0"),
        ({"wind_mw": math.nan}, "wind_mw", "must be a finite number >= 0"),
        # shantou: 6.5 MW PV AC, 4 x 8 MW offshore wind; a value in kW is 1000 times too big
        ({"pv_mw": 6500.0}, "pv_mw", "above 7.15 MW .1.1 x the PV nameplate of site 'shantou'"),
        ({"wind_mw": 35.3}, "wind_mw", "above 35.2 MW .1.1 x the wind nameplate"),
        ({"load_mw": 1e4}, "load_mw", "x the full load of site 'shantou'"),
    ],
)
def test_an_impossible_measurement_names_its_field(config, changes, field, says):
    with pytest.raises(MeasurementError, match=says) as error:
        check(config, **changes)
    assert error.value.field == f"measurements[3].{field}"
    assert str(error.value).startswith(f"measurements[3].{field}: ")


def test_a_slot_settles_on_what_was_measured_and_estimates_the_rest():
    estimate = pd.DataFrame(
        {"time": [SLOT, SLOT], "site": ["qingyang", "shantou"], "pv_mw": [5.0, 1.0],
         "wind_mw": [20.0, 8.0], "green_mw": [25.0, 9.0], "green_mw_p10": [20.0, 6.0],
         "green_mw_p90": [30.0, 12.0]}
    )  # fmt: skip
    measured = pd.DataFrame(
        {"time": [SLOT], "site": ["shantou"], "pv_mw": [0.5], "wind_mw": [3.0], "load_mw": [9.0]}
    )
    rows, basis = settled_rows(estimate, measured)
    assert basis.tolist() == ["estimated", "measured"]
    assert rows["green_mw"].tolist() == [25.0, 3.5]
    # a measured slot is known: its quantiles are the value; the estimate keeps its own
    assert rows["green_mw_p10"].tolist() == [20.0, 3.5]
    assert rows["green_mw_p90"].tolist() == [30.0, 3.5]
    none, basis = settled_rows(estimate, measured.iloc[:0])
    assert (basis == "estimated").all() and np.allclose(none["green_mw"], [25.0, 9.0])
