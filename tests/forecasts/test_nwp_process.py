"""The pure steps from a model's output to slot weather, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasts.nwp.process import (
    LARSON_OFFSET,
    ModelOutput,
    SlotSun,
    deaccumulate,
    ghi_from_cloud_cover,
    interval_starts,
    means_to_slots,
    members_to_slot_weather,
    shear_exponent,
    to_slot_weather,
    unmix_running_means,
)

ISSUED = pd.Timestamp("2019-05-15 00:00", tz="UTC")


def test_unmix_recovers_hourly_and_three_hourly_means_of_a_six_hour_running_mean():
    """NOAA's values are means since the last 6-hourly reset; the hours come back exactly,
    across a reset and where the steps turn 3-hourly."""
    hourly = [100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    running = [np.nan] + [np.mean(hourly[w * 6 : w * 6 + k + 1]) for w in (0, 1) for k in range(6)]
    three_hourly = [7.0, 9.0]
    running += [7.0, 8.0]  # 15 h: mean of 12-15 h; 18 h: mean of 12-18 h
    hours = [*range(13), 15, 18]
    times = ISSUED + pd.to_timedelta(hours, unit="h")
    unmixed = unmix_running_means(pd.Series(running, index=times), ISSUED)
    assert unmixed.index[0] == ISSUED + pd.Timedelta(hours=1)  # the analysis' NaN dropped
    np.testing.assert_allclose(unmixed.to_numpy(), hourly + three_hourly)


def test_deaccumulate_turns_joules_since_the_start_into_watts_per_interval():
    times = ISSUED + pd.to_timedelta([3, 6, 9], unit="h")
    # 360 W/m2 for 3 h, then 720, then 0
    joules = pd.Series([360 * 3 * 3600.0, (360 + 720) * 3 * 3600.0, 1080 * 3 * 3600.0], times)
    np.testing.assert_allclose(deaccumulate(joules, ISSUED).to_numpy(), [360.0, 720.0, 0.0])


def test_larson_cloud_cover_model():
    clear = np.array([800.0, 800.0, 800.0])
    np.testing.assert_allclose(
        ghi_from_cloud_cover(np.array([0.0, 50.0, 100.0]), clear),
        [800.0, 800.0 * (LARSON_OFFSET + (1 - LARSON_OFFSET) * 0.5), 800.0 * LARSON_OFFSET],
    )


def test_shear_exponent_from_two_levels():
    """u(100) = u(10) * 10**alpha; a calm lower level gets the neutral 1/7."""
    lower, upper = np.array([5.0, 5.0, 0.2]), np.array([5.0 * 10**0.3, 4.0, 3.0])
    alpha = shear_exponent(lower, 10.0, upper, 100.0)
    np.testing.assert_allclose(alpha, [0.3, 0.0, 1 / 7])


def test_means_to_slots_keeps_each_intervals_energy_and_is_zero_at_night():
    """Hourly then 3-hourly interval means (labels at the end) onto 15-minute slots."""
    hours = [*range(13, 22), 24, 27]
    ends = pd.Timestamp("2019-05-15", tz="UTC") + pd.to_timedelta(hours, unit="h")
    values = pd.Series(np.linspace(50, 900, len(ends)), index=ends)
    starts = interval_starts(ends, pd.Timestamp("2019-05-15 12:00", tz="UTC"))
    sun = SlotSun(starts[0], ends[-1], 15, 32.12, -110.42, 900.0)
    slots = means_to_slots(values, starts, sun.ghi_clear, sun)
    interval = np.searchsorted(ends, sun.starts, side="right")
    per_interval = pd.Series(slots).groupby(interval).mean().to_numpy()
    lit = sun.ghi_clear.reshape(-1) > 0
    # every interval with sun keeps its mean; slots without sun stay dark
    daylit = pd.Series(sun.ghi_clear).groupby(interval).mean().to_numpy() > 5
    np.testing.assert_allclose(per_interval[daylit], values.to_numpy()[daylit], rtol=1e-9)
    assert (slots[~lit] == 0).all()


def _output(values: dict[str, list[float]], times: pd.DatetimeIndex, kind: str) -> ModelOutput:
    return ModelOutput(pd.DataFrame(values, index=times), kind, 10.0)  # type: ignore[arg-type]


def test_slot_weather_follows_the_contract_units_and_span():
    """Instants every hour -> 15-minute slots from the first to the last sample; temperature
    stays in C, pressure comes from the altitude when the model gives none."""
    times = pd.date_range("2019-05-15 12:00", periods=7, freq="1h", tz="UTC")
    output = _output(
        {
            "ghi": [0, 50, 250, 450, 650, 800, 900],
            "temp_air": [15, 16, 18, 20, 22, 24, 26],
            "wind_speed": [2, 3, 4, 5, 6, 7, 8],
        },
        times,
        "instant",
    )
    weather = to_slot_weather(
        output, issued_at=ISSUED, slot_minutes=15, latitude=32.12, longitude=-110.42,
        altitude_m=900.0, source="test",
    )  # fmt: skip
    data = weather.data
    assert data.index[0] == times[0] and data.index[-1] == times[-1] - pd.Timedelta(minutes=15)
    assert (np.diff(data.index) == pd.Timedelta(minutes=15)).all()
    assert list(data.columns) == ["ghi", "dni", "dhi", "temp_air", "wind_speed", "pressure"]
    # midpoint of 12:00-12:15 is 12:07:30: an eighth of the way from 15 to 16 C
    assert data["temp_air"].iloc[0] == pytest.approx(15.125)
    assert data["pressure"].iloc[0] == pytest.approx(90_900, rel=0.01)  # 900 m: ~909 hPa
    assert (data["dhi"] <= data["ghi"] + 1e-9).all()
    assert weather.wind_height_m == 10.0


def test_two_wind_levels_keep_the_upper_with_its_shear():
    times = pd.date_range("2019-05-15 00:00", periods=3, freq="1h", tz="UTC")
    values = {"ghi": [0.0] * 3, "temp_air": [20.0] * 3, "wind_speed": [4.0] * 3,
              "wind_speed_upper": [4.0 * 10**0.2] * 3}  # fmt: skip
    output = ModelOutput(pd.DataFrame(values, index=times), "instant", 10.0, 100.0)
    weather = to_slot_weather(
        output, issued_at=ISSUED, slot_minutes=15, latitude=32.12, longitude=-110.42,
        altitude_m=900.0, source="test",
    )  # fmt: skip
    assert weather.wind_height_m == 100.0
    np.testing.assert_allclose(weather.data["wind_speed"], 4.0 * 10**0.2)
    np.testing.assert_allclose(weather.data["wind_shear_exponent"], 0.2)


def test_members_at_once_equal_each_member_alone():
    """An ensemble's members on slots together (the Erbs split done once for all, a member
    with the model's own DNI and DHI beside members without) give each member's weather
    exactly as :func:`to_slot_weather` gives it alone."""
    times = pd.date_range("2019-05-15 12:00", periods=7, freq="1h", tz="UTC")
    base = {"temp_air": [15.0, 16, 18, 20, 22, 24, 26], "wind_speed": [2.0, 3, 4, 5, 6, 7, 8]}
    outputs = {
        "c00": _output({"ghi": [0.0, 50, 250, 450, 650, 800, 900], **base}, times, "instant"),
        "p01": _output({"ghi": [0.0, 40, 150, 300, 700, 810, 890], **base}, times, "instant"),
        "p02": _output({"ghi": [0.0, 60, 260, 460, 660, 790, 910],
                        "dni": [0.0, 100, 400, 600, 800, 900, 950],
                        "dhi": [0.0, 30, 60, 80, 100, 110, 120], **base}, times, "instant"),
    }  # fmt: skip
    sun = SlotSun(times[0], times[-1], 15, 32.12, -110.42, 900.0)
    together = members_to_slot_weather(
        outputs, issued_at=ISSUED, altitude_m=900.0, sources=dict.fromkeys(outputs, "test"),
        station=None, sun=sun,
    )  # fmt: skip
    for member, output in outputs.items():
        alone = to_slot_weather(
            output, issued_at=ISSUED, slot_minutes=15, latitude=32.12, longitude=-110.42,
            altitude_m=900.0, source="test", sun=sun,
        )  # fmt: skip
        pd.testing.assert_frame_equal(together[member].data, alone.data, check_exact=True)
        assert together[member].notes == alone.notes
    assert "Erbs" in together["c00"].notes[0] and "Erbs" not in together["p02"].notes[0]
