"""A weather file's clock measured against the sun, and its irradiance put on the sun's clock."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib
import pytest

from forecasts.clock import clock_offset_minutes, shift_irradiance
from forecasts.sources import load_weather
from forecasts.supply import SupplyModel
from tests.conftest import SHANGHAI_EPW, URUMQI_EPW, needs_real_weather
from tests.forecasts.weather_files import SHANGHAI, hourly_weather


@pytest.mark.parametrize("late_minutes", [0, 30, -45, 60])
def test_offset_of_an_ineichen_series_is_found(late_minutes):
    """Irradiance from pvlib's Ineichen sky, labelled ``late_minutes`` late, over 60 days."""
    frame = hourly_weather("2019-03-01T00:00Z", 24 * 60, late_minutes=late_minutes)
    offset, correlation = clock_offset_minutes(frame["ghi"], *SHANGHAI)
    assert offset == pytest.approx(late_minutes, abs=3)
    assert correlation > 0.9


@pytest.mark.parametrize("late_minutes", [28, -20])
def test_shift_puts_the_irradiance_back_on_the_true_hours(late_minutes):
    truth = hourly_weather("2019-05-01T00:00Z", 24 * 10)
    late = hourly_weather("2019-05-01T00:00Z", 24 * 10, late_minutes=late_minutes)
    shifted = shift_irradiance(late, late_minutes, *SHANGHAI, cyclic=False)
    inner = slice(24, -24)  # away from the ends, where rows are repeated
    for column in ("ghi", "dni", "dhi"):
        error = shifted[column].to_numpy()[inner] - truth[column].to_numpy()[inner]
        before = late[column].to_numpy()[inner] - truth[column].to_numpy()[inner]
        assert np.abs(error).max() < 0.25 * np.abs(before).max(), column
    # energy kept: the shift only moves it
    assert shifted["ghi"].to_numpy()[inner].sum() == pytest.approx(
        late["ghi"].to_numpy()[inner].sum(), rel=0.01
    )
    pd.testing.assert_series_equal(shifted["wind_speed"], late["wind_speed"])


def _pv_centre_minutes_after_noon(config, path, position, time_shift) -> float:
    """Energy-weighted time of PV in each day minus solar transit (NREL SPA), over a year [min]."""
    site = config.sites["shantou"].model_copy(
        update={"latitude": position[0], "longitude": position[1], "altitude_m": 5.0}
    )
    start = pd.Timestamp("2025-12-31T16:00Z")
    end = start + pd.Timedelta(days=365)
    weather = load_weather(
        site, path, start, end, freq_minutes=60, seed=1, far_station_km=1e4, time_shift=time_shift
    )
    pv = SupplyModel({site.name: site}, slot_minutes=15).actual({site.name: weather})
    times = pd.DatetimeIndex(pv["time"]) + pd.Timedelta(minutes=7.5)
    power = pv["pv_mw"].to_numpy()
    days = (times + pd.Timedelta(hours=position[1] / 15)).normalize()
    transit = pvlib.solarposition.sun_rise_set_transit_spa(
        pd.DatetimeIndex(days.unique()) + pd.Timedelta(hours=12 - position[1] / 15), *position
    )["transit"]
    noon = pd.Series(transit.to_numpy(), index=days.unique()).reindex(days).to_numpy()
    minutes_after = (times - pd.DatetimeIndex(noon)) / pd.Timedelta(minutes=1)
    return float(np.average(minutes_after, weights=power))


@pytest.mark.realdata
@pytest.mark.slow
@needs_real_weather
@pytest.mark.parametrize(
    ("path", "position", "late_low", "late_high"),
    [(SHANGHAI_EPW, (31.40, 121.45), 22, 34), (URUMQI_EPW, (43.78, 87.65), 15, 34)],
    ids=["shanghai", "urumqi"],
)
def test_cswd_pv_is_centred_on_solar_noon_with_auto_and_late_without(
    config, path, position, late_low, late_high
):
    with pytest.warns(UserWarning, match=r"runs \+2[89]\.\d min against the sun"):
        centred = _pv_centre_minutes_after_noon(config, path, position, "auto")
    assert abs(centred) < 10
    # kept at 0, PV runs late by less than the irradiance's ~28.5 min: the sun used for the
    # plane of array is the labelled one, lower in the afternoon, which pulls PV toward noon
    with pytest.warns(UserWarning, match="components do not close"):
        kept = _pv_centre_minutes_after_noon(config, path, position, 0)
    assert late_low < kept < late_high


def test_a_number_of_minutes_is_applied_as_given(config, tmp_path):
    import warnings

    from tests.forecasts.weather_files import write_plain_csv

    site = config.sites["shantou"].model_copy(
        update={"latitude": SHANGHAI[0], "longitude": SHANGHAI[1]}
    )
    truth = hourly_weather("2019-04-01T00:00Z", 24 * 20)
    late = hourly_weather("2019-04-01T00:00Z", 24 * 20, late_minutes=30)
    path = write_plain_csv(tmp_path / "late.csv", late)
    span = (pd.Timestamp("2019-04-05T00:00Z"), pd.Timestamp("2019-04-08T00:00Z"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the shift given leaves no offset to warn about
        weather = load_weather(site, path, *span, freq_minutes=60, seed=1, time_shift=30)
    assert weather.time_shift_minutes == 30
    assert weather.clock_offset_minutes == pytest.approx(30, abs=3)
    expected = truth.loc[span[0] : span[1] - pd.Timedelta("1h"), "ghi"].to_numpy()
    assert np.abs(weather.data["ghi"].to_numpy() - expected).max() < 0.05 * expected.max()
