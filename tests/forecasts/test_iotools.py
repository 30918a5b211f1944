"""Weather file readers: every source to the frame contract, every bad file named precisely."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasts.iotools import (
    TYPICAL_YEAR,
    WeatherFileError,
    map_to_dates,
    read_weather,
    sniff_kind,
    station_distance_km,
    validate_weather,
    warn_if_far,
)
from forecasts.weather import REQUIRED_COLUMNS, Weather
from tests.conftest import SHANGHAI_EPW, URUMQI_EPW
from tests.forecasts.weather_files import epw_text

# ------------------------------------------------------------------------------------------
# fixture files, written into tmp_path


def _ghi_w_m2(hour_end: int) -> float:
    """A clear-day shape: the interval [hour_end - 1, hour_end) local, zero at night."""
    middle = hour_end - 0.5
    return round(max(0.0, 800 * np.sin(np.pi * (middle - 6) / 12)), 1)


def _epw_text(
    days: list[tuple[int, int, int]],
    tz_hours: float = 8.0,
    *,
    whole_year: bool = True,
    year: int | None = None,
    **overrides,
) -> str:
    """A minimal EPW: 8 header lines and 24 rows per day.

    With ``whole_year`` the rows are every day of a typical year, each month from another
    year, except the ``days`` listed, which keep the year given; ``overrides`` maps names like
    ``ghi_5`` to a value for row 5 counted within the listed ``days`` (24 rows each). With
    ``year`` every row is from that one year (an actual-year file, Feb 29 included in a leap
    year); without ``whole_year`` only the ``days`` listed are written.
    """
    listed = {(m, d): (position, y) for position, (y, m, d) in enumerate(days)}
    if year is not None:
        calendar = pd.date_range(f"{year}-01-01", f"{year}-12-31", freq="D")
        all_days = [(year, t.month, t.day) for t in calendar]
    elif whole_year:
        calendar = pd.date_range("2001-01-01", "2001-12-31", freq="D")
        all_days = [
            (listed[(t.month, t.day)][1] if (t.month, t.day) in listed else 1998 + t.month % 5,
             t.month, t.day)
            for t in calendar
        ]  # fmt: skip
    else:
        all_days = list(days)
    rows = []
    for row_year, month, day in all_days:
        for hour in range(1, 25):
            ghi = _ghi_w_m2(hour)
            values = {
                "temp_air": 10.0 + hour / 4,
                "pressure": 101_300,
                "ghi": ghi,
                "dni": round(ghi * 0.8, 1),
                "dhi": round(ghi * 0.3, 1),
                "wind_speed": 3.0,
            }
            if (month, day) in listed:
                position = listed[(month, day)][0] * 24 + hour - 1
                for key, value in overrides.items():
                    name, at = key.rsplit("_", 1)
                    if int(at) == position:
                        values[name] = value
            fields = [
                row_year,
                month,
                day,
                hour,
                60,
                "?9?9?9?9E0?9?9?9?9?9?9?9?9?9?9?9?9?9?9*9*9?9?9?9",
            ]
            fields += [values["temp_air"], 5.0, 60, values["pressure"], 0, 1415, 300]
            fields += [values["ghi"], values["dni"], values["dhi"], 0, 0, 0, 0, 180]
            fields += [values["wind_speed"], 5, 5, 20.0, 77777, 9, 999999999, 10, 0.1, 0, 88]
            fields += [0.2, 0.0, 0.0]
            rows.append(",".join(str(f) for f in fields))
    return epw_text(rows, (31.40, 121.45), tz_hours, source="TEST")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _csv_frame(hours: int = 48, start: str = "2024-06-01T00:00Z") -> pd.DataFrame:
    times = pd.date_range(start, periods=hours, freq="1h")
    hour_end = (times.tz_convert("Etc/GMT-8").hour + 1).to_numpy()
    ghi = np.array([_ghi_w_m2(h) for h in hour_end])
    return pd.DataFrame(
        {
            "time": times.strftime("%Y-%m-%dT%H:%MZ"),
            "ghi": ghi,
            "dni": ghi * 0.8,
            "dhi": ghi * 0.3,
            "temp_air": 20.0,
            "wind_speed": np.linspace(1, 8, hours),
            "pressure": 101_000.0,
        }
    )


def _write_csv(tmp_path: Path, frame: pd.DataFrame, header: str = "") -> Path:
    return _write(tmp_path, "weather.csv", header + frame.to_csv(index=False))


# ------------------------------------------------------------------------------------------
# EPW


def test_epw_hours_become_interval_starts_in_utc(tmp_path):
    path = _write(tmp_path, "site.epw", _epw_text([(2005, 1, 1), (2007, 1, 2)], ghi_12=555.0))
    weather = read_weather(path)
    data = weather.data
    assert list(data.columns) == list(REQUIRED_COLUMNS)
    assert str(data.index.tz) == "UTC"
    # EPW hour 1 of Jan 1 (00:00-01:00 at UTC+8) starts at 16:00 UTC the day before
    assert data.index[0] == pd.Timestamp(f"{TYPICAL_YEAR - 1}-12-31T16:00Z")
    # row 12 (0-based) is hour 13: 12:00-13:00 local -> starts 04:00 UTC
    assert data.loc[pd.Timestamp(f"{TYPICAL_YEAR}-01-01T04:00Z"), "ghi"] == 555.0
    assert weather.freq == pd.Timedelta(hours=1)
    assert weather.station == (31.4, 121.45)
    assert weather.typical_year
    assert weather.wind_height_m == 10.0
    # rows from different years are one continuous typical year
    assert len(data) == 8760


def test_epw_missing_codes_are_filled_when_short(tmp_path, caplog):
    path = _write(
        tmp_path, "gaps.epw", _epw_text([(2005, 1, 1)], ghi_10=9999, ghi_11=9999, temp_air_3=99.9)
    )
    with caplog.at_level(logging.INFO, logger="forecasts.iotools"):
        weather = read_weather(path, max_gap_hours=2)
    assert "filled 3 missing values" in caplog.text
    assert any("3 missing values filled" in note for note in weather.notes)
    ghi = weather.data["ghi"].to_numpy()
    assert ghi[10] == pytest.approx(ghi[9] + (ghi[12] - ghi[9]) / 3)


def test_epw_long_gap_names_column_and_times(tmp_path):
    gaps = {f"wind_speed_{i}": 999 for i in range(5, 10)}
    path = _write(tmp_path, "gap.epw", _epw_text([(2005, 1, 1)], **gaps))
    with pytest.raises(WeatherFileError) as error:
        read_weather(path, max_gap_hours=3)
    message = str(error.value)
    assert message.startswith(str(path))
    assert "'wind_speed' is missing for 5 h" in message
    # EPW hours 6 to 10 of Jan 1 at UTC+8: intervals starting 21:00 to 01:00 UTC
    assert f"from {TYPICAL_YEAR - 1}-12-31T21:00:00+00:00" in message
    assert f"to {TYPICAL_YEAR}-01-01T01:00:00+00:00" in message


def test_epw_hpa_pressure_is_named(tmp_path):
    text = _epw_text([(2005, 1, 1)]).replace(",101300,", ",1013,")
    path = _write(tmp_path, "hpa.epw", text)
    with pytest.raises(WeatherFileError, match=r"'pressure'.*hPa or mbar \(multiply by 100\)"):
        read_weather(path)


def test_garbage_epw_is_a_weather_file_error(tmp_path):
    path = _write(tmp_path, "broken.epw", "LOCATION,x\nnot,an,epw\n")
    with pytest.raises(WeatherFileError, match=r"broken\.epw: not a readable EPW file"):
        read_weather(path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(WeatherFileError, match=r"nowhere\.csv: cannot read"):
        read_weather(tmp_path / "nowhere.csv")


# ------------------------------------------------------------------------------------------
# TMY3 and PVGIS


def test_tmy3_end_of_hour_labels_and_mbar(tmp_path):
    lines = [
        '722780,"PHOENIX SKY HARBOR",AZ,-7.0,33.450,-111.983,337',
        "Date (MM/DD/YYYY),Time (HH:MM),GHI (W/m^2),DNI (W/m^2),DHI (W/m^2),Dry-bulb (C),"
        "Wspd (m/s),Pressure (mbar)",
    ]
    for day in pd.date_range("1998-01-01", "1998-12-31", freq="D"):
        for hour in range(1, 25):
            ghi = _ghi_w_m2(hour)
            lines.append(f"{day:%m/%d/%Y},{hour:02d}:00,{ghi},{ghi * 0.8},{ghi * 0.3},5,2,970")
    path = _write(tmp_path, "723456TY.csv", "\n".join(lines) + "\n")
    assert sniff_kind(path) == "tmy3"
    weather = read_weather(path)
    data = weather.data
    # hour 1 of Jan 1 at UTC-7 is 00:00-01:00 local, 07:00 UTC
    assert data.index[0] == pd.Timestamp(f"{TYPICAL_YEAR}-01-01T07:00Z")
    assert data.index[-1] == pd.Timestamp(f"{TYPICAL_YEAR + 1}-01-01T06:00Z")
    assert (data["pressure"] == 97_000.0).all()
    assert weather.station == (33.45, -111.983)
    # the local noon interval 12:00-13:00 is hour 13: peak of the symmetric shape
    assert data["ghi"].idxmax().tz_convert("Etc/GMT+7").hour in (11, 12)


def _pvgis_rows(times: pd.DatetimeIndex) -> list[dict]:
    return [
        {
            "time(UTC)": t.strftime("%Y%m%d:%H%M"),
            "T2m": 1.0,
            "RH": 80.0,
            "G(h)": _ghi_w_m2(t.hour + 1),
            "Gb(n)": 0.0,
            "Gd(h)": _ghi_w_m2(t.hour + 1),
            "IR(h)": 250.0,
            "WS10m": 4.0,
            "WD10m": 200.0,
            "SP": 98_000.0,
        }
        for t in times
    ]


def test_pvgis_json_months_from_different_years(tmp_path):
    times = pd.date_range("2007-01-01", "2007-01-31 23:00", freq="1h").append(
        pd.date_range("2012-02-01", "2012-12-31 23:00", freq="1h")
    )
    source = {
        "inputs": {"location": {"latitude": 45.0, "longitude": 8.0, "elevation": 250.0}},
        "outputs": {"months_selected": [], "tmy_hourly": _pvgis_rows(times)},
        "meta": {"inputs": {}},
    }
    path = _write(tmp_path, "tmy.json", json.dumps(source))
    weather = read_weather(path)
    assert weather.station == (45.0, 8.0)
    assert weather.data.index[0] == pd.Timestamp(f"{TYPICAL_YEAR}-01-01T00:00Z")
    assert len(weather.data) == 8760 and weather.freq == pd.Timedelta(hours=1)
    assert (weather.data["pressure"] == 98_000.0).all()


def test_pvgis_csv_full_year(tmp_path):
    times = pd.date_range("2010-01-01", periods=8760, freq="1h")
    table = pd.DataFrame(_pvgis_rows(times))
    head = (
        "Latitude (decimal degrees):\t23.350\nLongitude (decimal degrees):\t116.700\n"
        "Elevation (m):\t5\nmonth,year,month_name\n"
        + "".join(f"{m},2010,x\n" for m in range(1, 13))
    )
    path = _write(tmp_path, "pvgis_tmy.csv", head + table.to_csv(index=False, lineterminator="\n"))
    assert sniff_kind(path) == "pvgis"
    weather = read_weather(path)
    assert weather.station == (23.35, 116.7)
    assert len(weather.data) == 8760
    assert weather.data.index[0] == pd.Timestamp(f"{TYPICAL_YEAR}-01-01T00:00Z")


# ------------------------------------------------------------------------------------------
# plain CSV and the validator


def test_csv_reads_header_comments_and_offsets(tmp_path):
    frame = _csv_frame()
    frame["time"] = (
        pd.to_datetime(frame["time"]).dt.tz_convert("Etc/GMT-8").map(lambda t: t.isoformat())
    )
    path = _write_csv(
        tmp_path, frame, "# wind_height_m: 50\n# latitude: 23.35\n# longitude: 116.7\n"
    )
    weather = read_weather(path)
    assert sniff_kind(path) == "csv"
    assert weather.wind_height_m == 50.0
    assert weather.station == (23.35, 116.7)
    assert not weather.typical_year
    assert weather.data.index[0] == pd.Timestamp("2024-06-01T00:00Z")


def test_csv_without_wind_height_says_so(tmp_path):
    weather = read_weather(_write_csv(tmp_path, _csv_frame()))
    assert weather.wind_height_m == 10.0
    assert any("wind_height_m" in note for note in weather.notes)


def test_csv_naive_times_are_rejected(tmp_path):
    frame = _csv_frame()
    frame.loc[2, "time"] = "2024-06-01T02:00"
    path = _write_csv(tmp_path, frame)
    with pytest.raises(WeatherFileError, match=r"data row 3: time '2024-06-01T02:00' has no UTC"):
        read_weather(path)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda f: f.drop(columns="dhi"), r"missing column\(s\) dhi"),
        (lambda f: f.drop(columns="time"), r"missing column time"),
        (
            lambda f: f.assign(time=f["time"].where(f.index != 4, f["time"][3])),
            r"data row 5 \(2024-06-01T03:00:00\+00:00\) repeats the time of data row 4",
        ),
        (
            lambda f: f.assign(time=f["time"].where(f.index != 4, f["time"][1])),
            r"data row 5 \(2024-06-01T01:00:00\+00:00\) is earlier than data row 4",
        ),
        (
            lambda f: f.drop(index=7),
            r"data row 8 \(2024-06-01T08:00:00\+00:00\) comes 0 days 02:00:00 after",
        ),
        (
            lambda f: f.assign(temp_air=f["temp_air"] + 273.15),
            r"'temp_air'.*allowed -60 to 60 C, first at data row 1.*Kelvin",
        ),
        (lambda f: f.assign(wind_speed=f["wind_speed"] * 3.6 * 1.6), r"'wind_speed'.*km/h"),
        (
            lambda f: f.assign(pressure=f["pressure"] / 100),
            r"'pressure' has values from 1010 to 1010; allowed 50000 to 110000 Pa.*hPa",
        ),
        (
            lambda f: f.assign(ghi=f["ghi"].where(f.index != 10, -50.0)),
            r"'ghi'.*first at data row 11 \(2024-06-01T10:00:00",
        ),
        (
            lambda f: f.assign(dni=f["dni"].astype(object).where(f.index != 6, "cloudy")),
            r"'dni', data row 7 \(2024-06-01T06:00:00\+00:00\): 'cloudy' is not a number",
        ),
    ],
)
def test_bad_csv_names_column_or_row(tmp_path, edit, expected):
    path = _write_csv(tmp_path, edit(_csv_frame()))
    with pytest.raises(WeatherFileError, match=expected) as error:
        read_weather(path, kind="csv")
    assert str(error.value).startswith(str(path))


def test_kmh_detected_even_within_range():
    frame = _csv_frame(hours=100).set_index("time")
    frame.index = pd.to_datetime(frame.index)
    frame["wind_speed"] = np.full(100, 45.0)  # <= 50 but p99 above 40: km/h
    with pytest.raises(WeatherFileError, match="looks like km/h"):
        validate_weather(frame, "mem")


def test_small_negative_irradiance_is_clipped(caplog):
    frame = _csv_frame().set_index("time")
    frame.index = pd.to_datetime(frame.index)
    frame.loc[frame.index[0], "ghi"] = -3.0
    with caplog.at_level(logging.INFO, logger="forecasts.iotools"):
        data, n_filled = validate_weather(frame, "mem")
    assert data["ghi"].min() == 0.0 and n_filled == 0
    assert "clipped 1 small negative" in caplog.text


def test_validate_rejects_naive_index():
    frame = _csv_frame().set_index("time")
    frame.index = pd.to_datetime(frame.index).tz_localize(None)
    with pytest.raises(WeatherFileError, match="mem: times have no time zone"):
        validate_weather(frame, "mem")


def test_unknown_kind(tmp_path):
    with pytest.raises(WeatherFileError, match="unknown weather kind 'tmy2'; allowed: epw"):
        read_weather(_write_csv(tmp_path, _csv_frame()), kind="tmy2")


# ------------------------------------------------------------------------------------------
# station distance


def _weather_at(station: tuple[float, float] | None) -> Weather:
    frame = _csv_frame().set_index("time")
    frame.index = pd.to_datetime(frame.index)
    return Weather(data=frame, wind_height_m=10, source="station.csv", station=station)


def test_station_distance_haversine():
    # one degree of latitude is 111.2 km
    assert station_distance_km(_weather_at((30.0, 120.0)), 31.0, 120.0) == pytest.approx(
        111.2, abs=0.1
    )
    assert station_distance_km(_weather_at(None), 31.0, 120.0) is None


def test_far_station_warns_and_logs(caplog):
    shanghai = _weather_at((31.40, 121.45))
    with (
        caplog.at_level(logging.WARNING, logger="forecasts.iotools"),
        pytest.warns(UserWarning, match=r"is \d+ km from site 'shantou'") as record,
    ):
        distance = warn_if_far(shanghai, "shantou", 23.35, 116.7, limit_km=100)
    assert 900 < distance < 1100
    assert f"{distance:.0f} km" in str(record[0].message)
    assert "km from site 'shantou'" in caplog.text


def test_near_station_is_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_far(_weather_at((31.40, 121.45)), "sh", 31.2, 121.5, limit_km=100) < 100


# ------------------------------------------------------------------------------------------
# typical year onto dates


def test_map_to_dates_uses_local_clock_and_feb28_for_feb29(tmp_path):
    days = [(2001, 2, 27), (2003, 2, 28), (2004, 3, 1), (2004, 3, 2)]
    text = _epw_text(days, temp_air_24=-5.0)  # Feb 28, hour 1 (00:00-01:00 local)
    weather = read_weather(_write(tmp_path, "feb.epw", text))
    mapped = map_to_dates(weather, "2028-02-27T16:00Z", "2028-03-01T16:00Z")
    data = mapped.data
    assert len(data) == 72 and mapped.freq == pd.Timedelta(hours=1)
    assert data.index[0] == pd.Timestamp("2028-02-27T16:00Z")
    feb28 = data.loc["2028-02-27T16:00Z":"2028-02-28T15:00Z"].to_numpy()
    feb29 = data.loc["2028-02-28T16:00Z":"2028-02-29T15:00Z"].to_numpy()
    np.testing.assert_array_equal(feb29, feb28)
    assert data.loc[pd.Timestamp("2028-02-28T16:00Z"), "temp_air"] == -5.0
    assert any("Feb 29 takes Feb 28" in note for note in mapped.notes)
    assert any("typical year mapped onto 2028-02-27T16:00" in note for note in mapped.notes)
    with pytest.raises(WeatherFileError, match="start '2028-02-28' has no time zone"):
        map_to_dates(weather, "2028-02-28", "2028-03-01T16:00Z")


def test_map_to_dates_slices_real_years(tmp_path):
    weather = read_weather(_write_csv(tmp_path, _csv_frame()))
    sliced = map_to_dates(weather, "2024-06-01T06:00Z", "2024-06-01T12:00Z")
    assert len(sliced.data) == 6
    with pytest.raises(WeatherFileError, match=r"no row for 2024-06-03T00:00:00\+00:00"):
        map_to_dates(weather, "2024-06-02T00:00Z", "2024-06-03T02:00Z")


# ------------------------------------------------------------------------------------------
# the real EPW files


@pytest.fixture(scope="module")
def shanghai() -> Weather:
    return read_weather(SHANGHAI_EPW)


@pytest.mark.realdata
@pytest.mark.skipif(not SHANGHAI_EPW.exists(), reason="Shanghai EPW not present")
def test_shanghai_midnight_dark_and_noon_at_solar_noon(shanghai):
    data = shanghai.data
    assert len(data) == 8760 and shanghai.station == (31.4, 121.45)
    local = data.index.tz_convert("Etc/GMT-8")  # local standard time, UTC+8
    assert (data["ghi"][local.hour == 0] == 0).all()
    # solar noon at 121.45 E is ~11:55 local standard time, 03:55 UTC: the interval with the
    # highest mean GHI is 03:00-04:00 UTC (a labelling off by an hour would move it)
    assert data["ghi"].groupby(data.index.hour).mean().idxmax() == 3
    # centre of the mean daily profile by interval midpoint; the CSWD values sit about 30 min
    # later than the EPW convention implies (seen at Urumqi too), hence the tolerance
    profile = data["ghi"].groupby(local.hour).mean()
    centre_local_h = float(np.average(profile.index + 0.5, weights=profile))
    assert centre_local_h - 8 == pytest.approx(3 + 55 / 60, abs=0.6)
    assert 1200 < data["ghi"].sum() / 1000 < 1400  # kWh/m^2/yr


@pytest.mark.realdata
@pytest.mark.skipif(not URUMQI_EPW.exists(), reason="Urumqi EPW not present")
def test_urumqi_annual_ghi():
    data = read_weather(URUMQI_EPW).data
    assert 1300 < data["ghi"].sum() / 1000 < 1700  # kWh/m^2/yr
    assert 85_000 < data["pressure"].mean() < 95_000  # about 920 m up


@pytest.mark.realdata
@pytest.mark.skipif(not SHANGHAI_EPW.exists(), reason="Shanghai EPW not present")
def test_shanghai_mapped_onto_leap_year_and_beyond(shanghai):
    # operating days of 2028 in Shanghai: 2027-12-31T16:00Z to 2028-12-31T16:00Z
    mapped = map_to_dates(shanghai, "2027-12-31T16:00Z", "2028-12-31T16:00Z")
    assert len(mapped.data) == 366 * 24
    feb29 = mapped.data.loc["2028-02-28T16:00Z":"2028-02-29T15:00Z"]
    feb28 = mapped.data.loc["2028-02-27T16:00Z":"2028-02-28T15:00Z"]
    np.testing.assert_array_equal(feb29.to_numpy(), feb28.to_numpy())
    # the same local hour of the typical year, whatever the target year
    typical = shanghai.data.loc[pd.Timestamp(f"{TYPICAL_YEAR}-06-01T04:00Z")]
    pd.testing.assert_series_equal(
        mapped.data.loc[pd.Timestamp("2028-06-01T04:00Z")], typical, check_names=False
    )
    several = map_to_dates(shanghai, "2027-06-01T00:00Z", "2029-06-01T00:00Z")
    assert len(several.data) == (365 + 366) * 24
    assert several.data.index.is_monotonic_increasing
