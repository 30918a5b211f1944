"""Every bad input a user hands the command line is one message and exit code 2, never a
traceback: bad weather files through ``forecast``, ``plan`` and ``replay``, a bad
``--actual-weather`` for ``dispatch``, and ``serve`` on a port already in use.

The matrix runs ``main()`` in this process (the console script's entry point, with its one
``UserError`` catch); one case per command also runs as a real subprocess.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scheduler.drivers.cli import main
from tests.conftest import greensched

DAY = "2026-04-12"
START = pd.Timestamp(DAY, tz="Asia/Shanghai").tz_convert("UTC")


def _csv(path: Path, frame: pd.DataFrame) -> Path:
    path.write_text("# wind_height_m: 10\n" + frame.to_csv(index=False))
    return path


def _day_frame(hours: int = 48) -> pd.DataFrame:
    times = pd.date_range(START - pd.Timedelta(hours=12), periods=hours, freq="h")
    hour = np.arange(hours) % 24
    sun = np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)
    return pd.DataFrame(
        {
            "time": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ghi": 800 * sun, "dni": 600 * sun, "dhi": 150 * sun,
            "temp_air": 15.0, "wind_speed": 6.0, "pressure": 90000.0,
        }
    )  # fmt: skip


def truncated_epw(tmp: Path) -> Path:
    """The first 200 rows of a valid EPW: January only, asked for April."""
    from tests.conftest import SHANGHAI_EPW

    if not SHANGHAI_EPW.exists():
        pytest.skip("real EPW files absent")
    lines = SHANGHAI_EPW.read_text(encoding="latin-1").splitlines()
    path = tmp / "truncated.epw"
    path.write_text("\n".join(lines[: 8 + 200]) + "\n", encoding="latin-1")
    return path


def duplicated_times(tmp: Path) -> Path:
    frame = _day_frame()
    return _csv(tmp / "dup.csv", pd.concat([frame.iloc[:10], frame.iloc[9:]]))


def naive_times(tmp: Path) -> Path:
    frame = _day_frame()
    frame["time"] = frame["time"].str.removesuffix("Z")
    return _csv(tmp / "naive.csv", frame)


def empty_file(tmp: Path) -> Path:
    path = tmp / "empty.epw"
    path.write_text("")
    return path


def binary_file(tmp: Path) -> Path:
    path = tmp / "noise.epw"
    path.write_bytes(bytes(range(256)) * 64)
    return path


def csv_renamed_epw(tmp: Path) -> Path:
    path = tmp / "renamed.epw"
    path.write_text(_day_frame().to_csv(index=False))
    return path


def pressure_in_hpa(tmp: Path) -> Path:
    frame = _day_frame()
    frame["pressure"] = 900.0
    return _csv(tmp / "hpa.csv", frame)


def temperature_in_kelvin(tmp: Path) -> Path:
    frame = _day_frame()
    frame["temp_air"] = 288.0
    return _csv(tmp / "kelvin.csv", frame)


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated EPW": (truncated_epw, "truncated.epw"),
    "duplicated timestamps": (duplicated_times, "dup.csv"),
    "naive CSV times": (naive_times, "naive.csv"),
    "empty file": (empty_file, "empty.epw"),
    "binary file": (binary_file, "noise.epw"),
    "CSV renamed .epw": (csv_renamed_epw, "renamed.epw"),
    "pressure in hPa": (pressure_in_hpa, "pressure"),
    "temperature in kelvin": (temperature_in_kelvin, "temp_air"),
}


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``greensched ARGS`` through ``main()``; returns (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["greensched", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    return stop.value.code, capsys.readouterr().err


COMMANDS = {
    "forecast": lambda f, out: ["forecast", "--weather", f"qingyang={f}", "--start", DAY,
                                "--out", str(out / "supply.csv")],
    "plan": lambda f, out: ["plan", "--weather", f"qingyang={f}", "--date", DAY,
                            "--out", str(out / "plan")],
    "replay": lambda f, out: ["replay", "--weather", f"qingyang={f}", "--from", DAY, "--to", DAY,
                              "--policies", "fifo", "--out", str(out / "replay")],
}  # fmt: skip


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", list(CASES))
def test_bad_weather_is_one_message_and_exit_2(case, command, tmp_path, monkeypatch, capsys):
    make, named = CASES[case]
    path = make(tmp_path)
    code, err = run_main(monkeypatch, capsys, *COMMANDS[command](path, tmp_path))
    assert code == 2, err
    assert "Traceback" not in err
    assert err.count("error:") == 1 and named in err.split("error:")[1]


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_as_a_subprocess_too(command, tmp_path):
    path = naive_times(tmp_path)
    result = greensched(*COMMANDS[command](path, tmp_path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "naive.csv" in result.stderr


def test_dispatch_with_bad_actual_weather_is_one_message(tmp_path, monkeypatch, capsys):
    code, err = run_main(monkeypatch, capsys, "plan", "--date", DAY, "--out", str(tmp_path / "p"))
    assert code in (0, None), err
    bad = empty_file(tmp_path)
    code, err = run_main(monkeypatch, capsys, "dispatch", str(tmp_path / "p"),
                         "--actual-weather", f"shantou={bad}")  # fmt: skip
    assert code == 2 and "empty.epw" in err and "Traceback" not in err


def test_serve_on_a_port_in_use_is_one_message(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = greensched("serve", "--listen", f"127.0.0.1:{port}", "--db",
                            str(tmp_path / "caps.sqlite"), cwd=tmp_path, timeout_s=120)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and str(port) in result.stderr
    assert result.stderr.strip().splitlines() == [  # one line: no gRPC core log before it
        f"error: --listen 127.0.0.1:{port}: cannot listen there (is the port in use by another "
        "process?)"
    ]


@pytest.mark.parametrize(
    ("every", "named"), [("7min", "15-minute slot"), ("soon", "'soon'"), ("-1h", "positive")]
)
def test_a_bad_replan_interval_is_one_message(every, named, tmp_path, monkeypatch, capsys):
    code, err = run_main(monkeypatch, capsys, "replay", "--from", DAY, "--to", DAY,
                         "--replan-every", every, "--out", str(tmp_path / "r"))  # fmt: skip
    assert code == 2 and "--replan-every" in err and named in err and "Traceback" not in err


def _a_file(tmp: Path) -> Path:
    path = tmp / "a-file"
    path.write_text("not a folder")
    return path


def _a_dir(tmp: Path) -> Path:
    path = tmp / "supply.csv"
    path.mkdir()
    return path


OUTPUTS = {
    "plan --out on a file": (lambda t: ["plan", "--out", str(_a_file(t))], "is a file, not a dir"),
    "plan --out under a file": (
        lambda t: ["plan", "--out", str(_a_file(t) / "day")],
        "cannot make this directory: .*a-file is a file",
    ),
    "forecast --out a folder": (
        lambda t: ["forecast", "--out", str(_a_dir(t))],
        "is a directory; give a file name",
    ),
    "forecast --out under a file": (
        lambda t: ["forecast", "--out", str(_a_file(t) / "s.csv")],
        "a-file: is a file",
    ),
    "forecast --plot a folder": (lambda t: ["forecast", "--plot", str(t)], "--plot .*directory"),
    "replay --out on a file": (
        lambda t: ["replay", "--from", DAY, "--to", DAY, "--out", str(_a_file(t))],
        "is a file, not a directory",
    ),
    "plan --date not ISO": (
        lambda t: ["plan", "--date", "12/10/2026", "--out", str(t / "p")],
        "--date '12/10/2026' is not a day in ISO 8601: give YYYY-MM-DD",
    ),
    "replay --from not ISO": (
        lambda t: ["replay", "--from", "2026/01/01", "--to", DAY, "--out", str(t / "r")],
        "--from '2026/01/01' is not a day in ISO 8601",
    ),
    "forecast --start month 13": (
        lambda t: ["forecast", "--start", "2026-13-01", "--out", str(t / "s.csv")],
        "--start '2026-13-01' is not a day in ISO 8601",
    ),
    # the coordinators' commands: checked before any server is asked (none runs here)
    "caps submit --start in words": (
        lambda t: [*CAP, "--start", "tomorrow 6pm"],
        "--start 'tomorrow 6pm' is not a time in ISO 8601 with an offset",
    ),
    "caps submit --start month 13": (
        lambda t: [*CAP, "--start", "2026-13-01T10:00+08:00"],
        "--start '2026-13-01T10:00\\+08:00' is not a time in ISO 8601",
    ),
    "caps submit --start without offset": (
        lambda t: [*CAP, "--start", "2026-12-01T10:00"],
        "is not a time in ISO 8601 with an offset",
    ),
    "plan --objective unknown": (
        lambda t: ["plan", "--date", DAY, "--objective", "price", "--out", str(t / "p")],
        "--objective: invalid configuration solver.objective: 'price': Input should be "
        "'carbon', 'cost' or 'weighted'",
    ),
    "replay --objective unknown": (
        lambda t: ["replay", "--from", DAY, "--to", DAY, "--objective", "x", "--out", str(t / "r")],
        "--objective: invalid configuration solver.objective: 'x'",
    ),
    "caps list --timezone unknown": (
        lambda t: ["caps", "list", "--timezone", "Mars/Olympus"],
        "--timezone 'Mars/Olympus' is not a time zone",
    ),
    "measure list --from not ISO": (
        lambda t: ["measure", "list", "--from", "12/10/2026"],
        "--from '12/10/2026' is not a time in ISO 8601",
    ),
}
CAP = ["caps", "submit", "--site", "qingyang", "--duration", "2h", "--max-grid-mw", "3"]


@pytest.mark.parametrize("case", OUTPUTS)
def test_a_bad_path_day_time_or_zone_is_one_message_and_exit_2(monkeypatch, capsys, tmp_path, case):
    """What a newcomer typed: an output where a file is in the way, a day or a time in another
    format, a time zone that does not exist."""
    import re

    make, says = OUTPUTS[case]
    code, err = run_main(monkeypatch, capsys, *make(tmp_path))
    assert code == 2, err
    assert "Traceback" not in err
    assert " ".join(err.split()).startswith("error: "), err  # the message first, nothing before
    assert re.search(says, " ".join(err.split())), err


def test_every_bad_job_cell_and_row_is_named_in_one_pass(monkeypatch, capsys, tmp_path):
    """A bad cell, a repeated job_id, a row that breaks a rule and an unknown site: one
    message lists all four by line (bad cells had hidden the rest until fixed)."""
    start, end = "2026-04-11T16:00:00Z", "2026-04-12T10:00:00Z"
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(
        "job_id,gpu_hours,max_gpus,release,deadline,sites,preemptible\n"
        f"a,100,10,{start},{end},,true\n"
        f"b,-5,10,{start},{end},,true\n"
        f"a,100,10,{start},{end},,true\n"
        f"c,100,10,{end},{start},,true\n"
        f"d,100,10,{start},{end},marsbase,true\n"
    )
    code, err = run_main(monkeypatch, capsys, "plan", "--date", DAY, "--jobs", str(jobs),
                         "--out", str(tmp_path / "p"))  # fmt: skip
    assert code == 2 and "Traceback" not in err
    text = " ".join(err.split())
    assert "4 bad job row(s)" in text
    lines = [f"jobs.csv line {n} (job_id '{j}'): {f}" for n, j, f in
             ((3, "b", "gpu_hours"), (4, "a", "job_id: repeats line 2"), (5, "c", "deadline"),
              (6, "d", "sites: unknown site(s) 'marsbase'"))]  # fmt: skip
    positions = [text.index(line) for line in lines]
    assert positions == sorted(positions)
