"""Shared fixtures: the default config and the real weather files (when present)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from scheduler.config import Config, load_config

# pytest imports readline, which puts COLUMNS=80 and LINES=24 into the process environment
# (not into os.environ): every command run here would print 80-column tables, as no cron job
# or pipe sees them
for _name in ("COLUMNS", "LINES"):
    if _name not in os.environ:
        os.unsetenv(_name)

REPO = Path(__file__).resolve().parents[1]
REAL_WEATHER = REPO.parent / "shared" / "data" / "weather"
SHANGHAI_EPW = REAL_WEATHER / "CHN_Shanghai.Shanghai.583620_CSWD.epw"
URUMQI_EPW = REAL_WEATHER / "CHN_Xinjiang.Uygur.Urumqi.514630_CSWD.epw"

needs_real_weather = pytest.mark.skipif(
    not (SHANGHAI_EPW.exists() and URUMQI_EPW.exists()),
    reason="real EPW files in ../shared/data/weather are absent",
)
NOAA = REPO.parent / "shared" / "data" / "nwp" / "noaa"
"""The real NOAA model runs (see its README): read from there, never copied."""
GFS_RUN = NOAA / "gfs_0p25" / "2019" / "05" / "15" / "00" / "gfs_0p25.nc"
GEFS_RUN = NOAA / "gefs" / "2019" / "05" / "15" / "00"
needs_nwp = pytest.mark.skipif(
    not GFS_RUN.exists(), reason="real NOAA runs in ../shared/data/nwp are absent"
)
TUCSON_CONFIG = REPO / "configs" / "tucson.yaml"


@pytest.fixture(scope="session")
def config() -> Config:
    """The embedded default config (frozen, safe to share)."""
    return load_config()


def greensched(*args: str, cwd: Path, timeout_s: float = 600) -> subprocess.CompletedProcess:
    """Run the ``greensched`` command as a user would, in ``cwd``; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "scheduler.drivers", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``greensched ARGS`` through ``main()`` (the console script's entry point, with its one
    ``UserError`` catch) in this process: (exit code, stdout, stderr)."""
    from scheduler.drivers.cli import main

    monkeypatch.setattr(sys, "argv", ["greensched", *args])
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    code = 0
    try:
        main()
    except SystemExit as stop:
        code = int(stop.code or 0)
    finally:  # the command's logging set-up writes to this test's captured stderr, closed after it
        root.handlers[:], root.level = handlers, level
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused_site_change(monkeypatch, capsys, path: Path, site: str, **changes: object) -> str:
    """``check-config`` on the default config with ``changes`` to ``site``, written to ``path``:
    asserts one message naming the file (exit 2, no traceback) and returns it, whitespace
    collapsed."""
    import yaml

    from scheduler.config import DEFAULT_CONFIG_PATH

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["sites"][site].update(changes)
    path.write_text(yaml.safe_dump(data))
    code, _out, err = run_cli(monkeypatch, capsys, "check-config", str(path))
    assert code == 2 and "Traceback" not in err, err
    text = " ".join(err.split())
    assert str(path) in text
    return text
