"""A small config (40 jobs), a real server on 127.0.0.1 with a real SQLite file, a client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pandas as pd
import pytest
import yaml

from scheduler.config import DEFAULT_CONFIG_PATH
from scheduler.drivers.service.auth import hash_token
from scheduler.drivers.service.client import CapClient
from scheduler.drivers.service.server import Running, ServeOptions, start
from scheduler.horizon import operating_day

DAY = "2026-11-30"
TIMEZONE = "Asia/Shanghai"
NOW = pd.Timestamp("2026-11-29T12:00:00Z")  # the servers' clock: the day before DAY
HORIZON = operating_day(DAY, TIMEZONE, 15)
JOBS_PER_CLASS = {"batch_export": 12, "medium": 16, "sea_interactive": 12}
TOKENS = {
    "guangdong": "guangdong-token-0123456789abcdefghij",
    "national": "national-token-0123456789abcdefghijk",
    "reader": "reader-token-0123456789abcdefghijklm",
}


def local(text: str) -> pd.Timestamp:
    """A time on DAY in the sites' zone, e.g. ``local("18:00")``."""
    return pd.Timestamp(f"{DAY}T{text}").tz_localize(TIMEZONE)


def write_small_config(path: Path) -> Path:
    """40 jobs; shantou with little wind and PV, so that it draws from the grid in the morning."""
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    for name, jobs in JOBS_PER_CLASS.items():
        data["workload"]["classes"][name]["jobs"] = jobs
    sea = data["workload"]["classes"]["sea_interactive"]
    sea.update(gpu_hours=[1500, 2500], max_gpus=[600, 900])
    shantou = data["sites"]["shantou"]
    shantou["wind"]["nanao_offshore"].update(turbine_type="V126/3450", turbines=1, efficiency=0.6)
    shantou["pv"]["rooftop_and_fishpond_pv"].update(capacity_mw_dc=1.2, capacity_mw_ac=1.0)
    path.write_text(yaml.safe_dump(data))
    return path


def write_tokens(path: Path) -> Path:
    """guangdong caps and reads shantou; national every site; reader caps shantou, reads all."""
    entries = [
        {"name": "guangdong", "token_hash": hash_token(TOKENS["guangdong"]), "sites": ["shantou"]},
        {"name": "national", "token_hash": hash_token(TOKENS["national"]), "sites": ["*"]},
        {
            "name": "reader",
            "token_hash": hash_token(TOKENS["reader"]),
            "sites": ["shantou"],
            "read_all": True,
        },
    ]
    path.write_text(yaml.safe_dump({"coordinators": entries}))
    return path


@pytest.fixture(scope="session")
def small_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_config(tmp_path_factory.mktemp("config") / "small.yaml")


def start_server(config: Path, db: Path, **options) -> Running:
    return start(
        ServeOptions(config=config, listen="127.0.0.1:0", db=db, date=DAY, **options),
        clock=lambda: NOW,
    )


@pytest.fixture
def server(small_config: Path, tmp_path: Path) -> Iterator[Running]:
    """An open (no auth) server on a fresh database."""
    running = start_server(small_config, tmp_path / "caps.sqlite")
    yield running
    running.stop(0)


@pytest.fixture
def client(server: Running) -> Iterator[CapClient]:
    with CapClient(f"127.0.0.1:{server.port}") as c:
        yield c


@pytest.fixture
def auth_server(small_config: Path, tmp_path: Path) -> Iterator[Running]:
    running = start_server(
        small_config, tmp_path / "caps.sqlite", auth=write_tokens(tmp_path / "tokens.yaml")
    )
    yield running
    running.stop(0)


@pytest.fixture(scope="module")
def shared_server(
    small_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """One open server for a module whose tests store nothing (bad input, fuzzing)."""
    running = start_server(small_config, tmp_path_factory.mktemp("shared") / "caps.sqlite")
    yield running
    running.stop(0)


@pytest.fixture(scope="module")
def shared_client(shared_server: Running) -> Iterator[CapClient]:
    with CapClient(f"127.0.0.1:{shared_server.port}") as c:
        yield c


STARTUP_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(config: Path, db: Path, port: int, day: str, log: Path, *extra: str) -> subprocess.Popen:
    """``greensched serve --no-dispatch`` in a process of its own, its output in ``log``."""
    command = [
        sys.executable,
        "-m",
        "scheduler.drivers.service",
        "serve",
        f"--config={config}",
        f"--listen=127.0.0.1:{port}",
        f"--db={db}",
        f"--date={day}",
        "--no-dispatch",
        f"--out={db.parent / 'out'}",
        *extra,
    ]
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ)


def wait_serving(client: CapClient, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server exited:\n{log.read_text()}"
        try:
            if client.health() == "SERVING":
                return
        except grpc.RpcError:
            time.sleep(0.2)
    raise AssertionError(f"server not serving after {STARTUP_TIMEOUT_S} s:\n{log.read_text()}")
