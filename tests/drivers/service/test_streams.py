"""Streams hold no worker thread: 100 open WatchPlan streams leave unary calls fast; a client
address has a bounded number of open streams."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest

from scheduler.drivers.service.client import CapClient, cap_interval
from scheduler.horizon import tomorrow

from .conftest import TIMEZONE, free_port, launch, wait_serving

STREAMS = 100


@pytest.mark.slow
def test_a_hundred_open_streams_do_not_starve_unary_calls(
    small_config: Path, tmp_path: Path
) -> None:
    """A server process; this process opens 100 WatchPlan streams, then times Check and GetPlan
    (the sync server had 16 worker threads: 16 streams starved every other call)."""
    day = tomorrow(TIMEZONE)
    port, log = free_port(), tmp_path / "serve.log"
    process = launch(small_config, tmp_path / "caps.sqlite", port, day.isoformat(), log)
    try:
        with CapClient(f"127.0.0.1:{port}", timeout_s=5) as client:
            wait_serving(client, process, log)
            streams = [client.watch(summary_only=True) for _ in range(STREAMS)]
            first = {next(stream).version for stream in streams}
            health_s, plan_s = [], []
            for _ in range(100):
                sent = time.perf_counter()
                assert client.health() == "SERVING"
                health_s.append(time.perf_counter() - sent)
                sent = time.perf_counter()
                client.plan(["shantou"])
                plan_s.append(time.perf_counter() - sent)
            evening = pd.Timestamp(f"{day}T18:00").tz_localize(TIMEZONE)
            reply = client.submit("s-1", ["shantou"], [cap_interval(evening, 3600, 5.0)])
            with ThreadPoolExecutor(16) as pool:
                news = [pool.submit(next, stream) for stream in streams]
                versions = {future.result(timeout=60).version for future in news}
            for stream in streams:
                stream.cancel()
            assert client.health() == "SERVING"
    finally:
        process.terminate()
        process.wait(30)
    assert len(first) == 1 and versions == {reply.plan_version} and reply.plan_version > min(first)
    health_p99_ms = float(np.percentile(health_s, 99) * 1e3)
    plan_p99_ms = float(np.percentile(plan_s, 99) * 1e3)
    assert health_p99_ms < 1000 and plan_p99_ms < 1000, (health_p99_ms, plan_p99_ms)


def test_open_streams_per_client_address_are_bounded(small_config: Path, tmp_path: Path) -> None:
    """``serve --streams-per-client 3``: a fourth stream is RESOURCE_EXHAUSTED, unary calls go
    on, and a stream closed makes room again."""
    port, log = free_port(), tmp_path / "serve.log"
    process = launch(small_config, tmp_path / "caps.sqlite", port, tomorrow(TIMEZONE), log,
                     "--streams-per-client=3")  # fmt: skip
    try:
        with CapClient(f"127.0.0.1:{port}", timeout_s=10) as client:
            wait_serving(client, process, log)
            streams = [client.watch(summary_only=True) for _ in range(3)]
            for stream in streams:
                next(stream)
            with pytest.raises(grpc.RpcError) as error:
                next(client.watch(summary_only=True))
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "127.0.0.1 has 3 open streams; at most 3 per client address" in (
                error.value.details()
            )
            assert client.plan().version >= 1  # unary calls are not limited
            streams.pop().cancel()
            deadline = time.monotonic() + 10
            while True:  # the server sees the cancellation shortly after
                try:
                    assert next(client.watch(summary_only=True)).version >= 1
                    break
                except grpc.RpcError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            for stream in streams:
                stream.cancel()
    finally:
        process.terminate()
        process.wait(30)
