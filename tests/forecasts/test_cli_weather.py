"""Bad weather through the command line: one message naming the file and the row or column, exit 2;
a CSWD file is corrected by default and the summary says by how much."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SHANGHAI_EPW, greensched, needs_real_weather
from tests.forecasts.weather_files import (
    epw_rows,
    epw_text,
    hourly_weather,
    typical_epw,
    typical_year_frame,
    write_plain_csv,
)


def _truncated_epw(tmp_path: Path) -> Path:
    rows = epw_rows(typical_year_frame().iloc[:1006], 8.0, {m: 2001 + m for m in range(1, 13)})
    path = tmp_path / "truncated.epw"
    path.write_text(epw_text(rows), encoding="utf-8")
    return path


def _kmh_csv(tmp_path: Path) -> Path:
    frame = hourly_weather("2026-06-25T00:00Z", 24 * 14)
    frame["wind_speed"] = frame["wind_speed"] * 3.6 * 2  # km/h of a windy fortnight
    return write_plain_csv(tmp_path / "kmh.csv", frame)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "make", "expected"),
    [
        (["forecast", "--start", "2026-07-01"], _truncated_epw, r"8,760 hours"),
        (["plan", "--date", "2026-07-01", "--policy", "fifo"], _kmh_csv, "looks like km/h"),
        (
            ["replay", "--from", "2026-07-01", "--to", "2026-07-02", "--policies", "fifo"],
            _truncated_epw,
            r"8,760 hours",
        ),
    ],
    ids=["forecast-truncated-epw", "plan-kmh-csv", "replay-truncated-epw"],
)
def test_bad_weather_is_one_message_and_exit_2(tmp_path, command, make, expected):
    path = make(tmp_path)
    out = "out.csv" if command[0] == "forecast" else "out"
    result = greensched(*command, "--weather", f"shantou={path}", "--out", out, cwd=tmp_path)
    assert str(path) in result.stderr and expected in result.stderr
    assert "Traceback" not in result.stderr
    assert result.returncode == 2


@pytest.mark.slow
def test_clean_file_forecast_shows_its_measured_clock(tmp_path):
    path = typical_epw(tmp_path / "clean.epw")
    result = greensched(
        "forecast", "--weather", f"shantou={path}", "--start", "2026-07-01", "--out", "s.csv",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "clock offset" in result.stdout and "moved 0" in result.stdout


@pytest.mark.slow
@pytest.mark.realdata
@needs_real_weather
def test_cswd_file_is_corrected_by_default_and_says_so(tmp_path):
    result = greensched(
        "forecast", "--weather", f"shantou={SHANGHAI_EPW}", "--start", "2026-07-01",
        "--out", "s.csv", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "+28.4 min, moved 28" in result.stdout
    assert "runs +28.4 min against the sun" in " ".join(result.stderr.split())
