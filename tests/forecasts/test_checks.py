"""Bad weather is refused or warned about, naming the file and the row or column; good passes."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pvlib
import pytest
from scipy import stats

from forecasts.iotools import WeatherFileError, read_weather
from forecasts.sources import load_weather
from tests.conftest import SHANGHAI_EPW, URUMQI_EPW, needs_real_weather
from tests.forecasts.weather_files import (
    SHANGHAI,
    epw_rows,
    epw_text,
    hourly_weather,
    typical_epw,
    typical_year_frame,
    write_plain_csv,
)

JULY_DAY = (pd.Timestamp("2026-07-01T16:00Z"), pd.Timestamp("2026-07-02T16:00Z"))


def _load(site, path, *span, **kwargs):
    start, end = span or JULY_DAY
    return load_weather(site, path, start, end, freq_minutes=60, seed=1, **kwargs)


def test_a_clean_typical_year_passes_quietly(site, tmp_path):
    path = typical_epw(tmp_path / "clean.epw")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weather = _load(site, path)
    assert len(weather.data) == 24
    assert abs(weather.clock_offset_minutes) < 5 and weather.time_shift_minutes == 0
    assert weather.closure == pytest.approx(1.0, abs=0.03)


def test_truncated_typical_year_is_refused(tmp_path):
    rows = epw_rows(typical_year_frame().iloc[:1006], 8.0, {m: 2001 + m for m in range(1, 13)})
    path = tmp_path / "truncated.epw"
    path.write_text(epw_text(rows), encoding="utf-8")
    with pytest.raises(WeatherFileError, match="8,760 hours") as error:
        read_weather(path)
    message = str(error.value)
    assert message.startswith(str(path)) and "1,006 rows" in message
    assert "first missing 02-11 22:00" in message  # row 1007 is Feb 11, 22:00-23:00 local


def test_epw_row_with_a_field_missing_names_the_line(tmp_path):
    text = typical_epw(tmp_path / "ok.epw").read_text().splitlines()
    fields = text[8 + 4000].split(",")
    text[8 + 4000] = ",".join(fields[:7] + fields[8:])  # drop the dew point
    path = tmp_path / "short_row.epw"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(WeatherFileError, match=r"line 4009 has 34 fields, expected 35"):
        read_weather(path)


def test_csv_row_with_a_field_missing_names_the_line(tmp_path):
    path = write_plain_csv(tmp_path / "w.csv", hourly_weather(hours=48))
    lines = path.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(WeatherFileError, match=r"w\.csv: line 6 has 6 fields, expected 7"):
        read_weather(path)


def test_all_zero_irradiance_is_named(site, tmp_path):
    frame = typical_year_frame().assign(ghi=0.0, dni=0.0, dhi=0.0)
    path = typical_epw(tmp_path / "dark.epw", frame)
    with pytest.warns(UserWarning, match=r"dark\.epw: column 'ghi' is zero in every row"):
        weather = _load(site, path)
    assert weather.clock_offset_minutes is None and (weather.data["ghi"] == 0).all()


def test_a_dark_july_day_is_named(site, tmp_path):
    frame = typical_year_frame()
    july_day = (frame.index >= "2019-07-01T16:00Z") & (frame.index < "2019-07-02T16:00Z")
    frame.loc[july_day, ["ghi", "dni", "dhi"]] = 0.0
    path = typical_epw(tmp_path / "gap.epw", frame)
    with pytest.warns(UserWarning, match=r"zero all day on 1 day\(s\).*1990-07-02"):
        _load(site, path)


def test_irradiance_far_above_the_top_of_the_atmosphere_is_refused(site, tmp_path):
    frame = typical_year_frame()
    frame[["ghi", "dni", "dhi"]] *= 1.6  # within 0-1500 W/m^2, but not from this sun
    path = typical_epw(tmp_path / "hot.epw", frame)
    with pytest.raises(WeatherFileError, match="above the top-of-atmosphere"):
        _load(site, path)


@pytest.mark.parametrize("kind", ["epw", "csv"])
def test_wind_in_kmh_is_refused(tmp_path, kind):
    frame = typical_year_frame()
    # a Weibull wind of mean ~3.3 m/s (Shanghai's) written in km/h
    quantiles = (np.arange(len(frame)) * 0.6180339887) % 1
    frame["wind_speed"] = stats.weibull_min.ppf(quantiles, 2.0, scale=3.7) * 3.6
    if kind == "epw":
        path = typical_epw(tmp_path / "kmh.epw", frame)
    else:
        path = write_plain_csv(tmp_path / "kmh.csv", frame)
    with pytest.raises(WeatherFileError, match=r"'wind_speed'.*looks like km/h"):
        read_weather(path)


def test_windy_but_real_m_s_pass(tmp_path):
    """A windy coastal station (Weibull A 7.5 m/s, k 2: mean 6.6 m/s, 1.8 % above 15 m/s) is
    read as m/s, untouched and without a warning; the same winds in km/h are refused."""
    frame = typical_year_frame()
    quantiles = (np.arange(len(frame)) * 0.6180339887) % 1
    frame["wind_speed"] = stats.weibull_min.ppf(quantiles, 2.0, scale=7.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a unit warning would fail here
        weather = read_weather(typical_epw(tmp_path / "windy.epw", frame))
    read = weather.data["wind_speed"].to_numpy()
    assert read.mean() == pytest.approx(7.5 * math.gamma(1.5), rel=0.02)  # 6.65 m/s
    assert np.abs(np.sort(read) - np.sort(frame["wind_speed"].round(1).to_numpy())).max() < 0.06
    frame["wind_speed"] = frame["wind_speed"] * 3.6
    with pytest.raises(WeatherFileError, match="wind_speed"):
        read_weather(typical_epw(tmp_path / "kmh.epw", frame))


def test_windier_than_the_site_climate_warns(site, tmp_path):
    frame = typical_year_frame()
    frame["wind_speed"] = frame["wind_speed"] * 3.0  # 12 m/s mean, within every range
    path = typical_epw(tmp_path / "windy.epw", frame)
    with pytest.warns(UserWarning, match=r"'wind_speed' averages 12\.0 m/s.*site 'shantou'"):
        _load(site, path)


def test_csv_labelled_at_the_hour_end_is_measured_and_corrected(site, tmp_path):
    frame = hourly_weather("2019-06-01T00:00Z", 24 * 20)
    path = write_plain_csv(tmp_path / "end.csv", frame, label_shift="1h")
    span = (pd.Timestamp("2019-06-05T00:00Z"), pd.Timestamp("2019-06-10T00:00Z"))
    with pytest.warns(UserWarning, match=r"\+(59|60|61)\.\d min.*labelled at the interval end"):
        weather = _load(site, path, *span)
    assert weather.time_shift_minutes == pytest.approx(60, abs=3)
    truth = frame.loc[span[0] : span[1] - pd.Timedelta("1h"), "ghi"]
    # corrected GHI lies on the true hours: daily sums equal, hourly profile within 5 % of peak
    np.testing.assert_allclose(weather.data["ghi"].sum(), truth.sum(), rtol=0.01)
    assert np.abs(weather.data["ghi"].to_numpy() - truth.to_numpy()).max() < 0.05 * truth.max()


@pytest.mark.realdata
@needs_real_weather
@pytest.mark.parametrize("path", [SHANGHAI_EPW, URUMQI_EPW], ids=["shanghai", "urumqi"])
def test_real_cswd_files_in_m_s_pass_and_in_kmh_are_refused(path, tmp_path):
    read_weather(path)  # real m/s: no unit complaint
    lines = path.read_text().splitlines()
    for i in range(8, len(lines)):
        fields = lines[i].split(",")
        fields[21] = f"{float(fields[21]) * 3.6:.1f}"
        lines[i] = ",".join(fields)
    kmh = tmp_path / "kmh.epw"
    kmh.write_text("\n".join(lines) + "\n")
    with pytest.raises(WeatherFileError, match="looks like km/h"):
        read_weather(kmh)


def test_components_that_do_not_close_warn_and_follow_the_rule(site, tmp_path):
    """DNI 12 % short of what closes: the closure is named; 'ghi_dhi' rebuilds a DNI that
    closes against an independent sun (NREL SPA), 'file' keeps the file's DNI."""
    frame = typical_year_frame()
    frame["dni"] *= 0.88
    path = typical_epw(tmp_path / "open.epw", frame)
    with pytest.warns(UserWarning, match=r"do not close: .* is 0\.9\d\d .*'file'"):
        kept = _load(site, path)
    with pytest.warns(UserWarning, match="'ghi_dhi'"):
        rebuilt = _load(site, path, dni_rule="ghi_dhi")
    assert kept.closure == pytest.approx(rebuilt.closure) and kept.closure < 0.97
    day = kept.data.index
    sun = pvlib.solarposition.get_solarposition(day + pd.Timedelta(minutes=30), *SHANGHAI)
    cos_zenith = np.cos(np.radians(sun["zenith"].to_numpy()))
    up = (cos_zenith > 0.3).nonzero()[0]

    def independent_closure(weather) -> float:
        data = weather.data.iloc[up]
        return float((data["dhi"] + data["dni"] * cos_zenith[up]).sum() / data["ghi"].sum())

    assert independent_closure(kept) < 0.97
    assert independent_closure(rebuilt) == pytest.approx(1.0, abs=0.02)
    np.testing.assert_array_equal(kept.data["ghi"], rebuilt.data["ghi"])
