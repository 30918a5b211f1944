"""Load-cap service benchmark: a server process on 127.0.0.1 and this process as its client.

For 1,000 and 10,000 jobs (the default workload scaled) it measures:

- ``SubmitLoadCap`` without re-planning (caps that change no limit: above the site's grid
  import limit), sequential p50/p99, and caps/s sustained by 4 concurrent clients;
- ``SubmitLoadCap`` with re-planning (a load limit at 80% of the planned load in a busy hour,
  which the current plan breaks), p50/p99, and the time from sending the cap to receiving the
  new plan version on a ``WatchPlan`` stream.

Every loop is bounded in requests and seconds; only loopback is used.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from scheduler.config import DEFAULT_CONFIG_PATH
from scheduler.drivers.service.client import CapClient, cap_interval
from scheduler.horizon import tomorrow

JOB_COUNTS = (1_000, 10_000)
PLAIN_REQUESTS = 200  # sequential caps that need no re-plan
SUSTAINED_REQUESTS = 400  # concurrent caps that need no re-plan
SUSTAINED_CLIENTS = 4
REPLAN_REQUESTS = {1_000: 12, 10_000: 4}
PHASE_LIMIT_S = 240.0  # stop a phase after this long, whatever its count
STARTUP_LIMIT_S = 600.0


def _config(directory: Path, jobs: int) -> Path:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    classes = data["workload"]["classes"]
    total = sum(c["jobs"] for c in classes.values())
    for c in classes.values():
        c["jobs"] = round(c["jobs"] * jobs / total)
    path = directory / f"bench-{jobs}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(config: Path, directory: Path, day: str) -> tuple[subprocess.Popen, CapClient]:
    port, log = _free_port(), directory / "serve.log"
    command = [sys.executable, "-m", "scheduler.drivers.service", "serve", f"--config={config}"]
    command += [f"--listen=127.0.0.1:{port}", f"--db={directory / 'bench.sqlite'}"]
    command += [f"--date={day}"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ)
    client = CapClient(f"127.0.0.1:{port}", timeout_s=2)
    deadline = time.monotonic() + STARTUP_LIMIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()}")
        try:
            if client.health() == "SERVING":
                client.timeout_s = PHASE_LIMIT_S
                return process, client
        except Exception:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"server did not start in {STARTUP_LIMIT_S} s")


def _ms(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 50) * 1e3), float(np.percentile(values, 99) * 1e3)


def _plain_caps(client: CapClient, day_start: pd.Timestamp, prefix: str, n: int) -> list[float]:
    """Sequential caps above the grid import limits (25 MW): stored, no re-plan."""
    latencies, began = [], time.monotonic()
    for k in range(n):
        if time.monotonic() - began > PHASE_LIMIT_S:
            break
        interval = cap_interval(day_start + pd.Timedelta(hours=k % 24), 3600, 25.0)
        sent = time.perf_counter()
        client.submit(f"{prefix}-{k}", ["qingyang" if k % 2 else "shantou"], [interval])
        latencies.append(time.perf_counter() - sent)
    return latencies


def _replans(client: CapClient, jobs: int, day_start: pd.Timestamp) -> dict[str, float]:
    """Binding load limits: latency and cap-to-new-plan-version time seen on WatchPlan."""
    seen: dict[int, float] = {}
    stream = client.watch(summary_only=True)

    def watch() -> None:
        try:
            for plan in stream:
                seen[plan.version] = time.perf_counter()
        except grpc.RpcError as error:  # cancelled at the end of the phase
            if error.code() != grpc.StatusCode.CANCELLED:
                raise

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    latencies, to_plan, replanned, began = [], [], 0, time.monotonic()
    for k in range(REPLAN_REQUESTS[jobs]):
        if time.monotonic() - began > PHASE_LIMIT_S:
            break
        plan = client.plan()
        slots = pd.DataFrame(
            {
                "site": [s.site for s in plan.slots],
                "start": [s.start.ToNanoseconds() for s in plan.slots],
                "load_mw": [s.load_mw for s in plan.slots],
            }
        )
        slots["hour"] = (slots["start"] - day_start.value) // (3600 * 10**9)
        hourly = slots.groupby(["site", "hour"])["load_mw"].min()
        site, hour = hourly.idxmax()
        value = max(float(hourly.max()) * 0.8, 1.6)  # above both sites' base load
        interval = cap_interval(day_start + pd.Timedelta(hours=int(hour)), 3600, value, True)
        sent = time.perf_counter()
        reply = client.submit(f"replan-{k}", [site], [interval])
        latencies.append(time.perf_counter() - sent)
        wait_until = time.monotonic() + 60
        while reply.plan_version not in seen and time.monotonic() < wait_until:
            time.sleep(0.001)
        if reply.plan_version in seen:
            to_plan.append(seen[reply.plan_version] - sent)
        replanned += int(client.plan().replanned)
    stream.cancel()
    p50, p99 = _ms(latencies)
    return {
        "replan_n": len(latencies),
        "replan_p50_ms": p50,
        "replan_p99_ms": p99,
        "cap_to_plan_p50_ms": _ms(to_plan)[0] if to_plan else float("nan"),
        "cap_to_plan_max_ms": max(to_plan) * 1e3 if to_plan else float("nan"),
        "replanned": replanned,
    }


def run(jobs: int, directory: Path) -> dict[str, float]:
    day = tomorrow("Asia/Shanghai").isoformat()
    day_start = pd.Timestamp(day).tz_localize("Asia/Shanghai").tz_convert("UTC")
    started = time.perf_counter()
    process, client = _start(_config(directory, jobs), directory, day)
    startup_s = time.perf_counter() - started
    try:
        plain = _plain_caps(client, day_start, "plain", PLAIN_REQUESTS)
        per_client = SUSTAINED_REQUESTS // SUSTAINED_CLIENTS
        began = time.perf_counter()
        with ThreadPoolExecutor(SUSTAINED_CLIENTS) as pool:
            counts = list(
                pool.map(
                    lambda c: len(_plain_caps(client, day_start, f"load{c}", per_client)),
                    range(SUSTAINED_CLIENTS),
                )
            )
        sustained = sum(counts) / (time.perf_counter() - began)
        result = {"jobs": jobs, "startup_s": startup_s, "caps_per_s": sustained}
        result["plain_p50_ms"], result["plain_p99_ms"] = _ms(plain)
        result.update(_replans(client, jobs, day_start))
        return result
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    console = Console(width=200)
    rows = []
    for jobs in JOB_COUNTS:
        with tempfile.TemporaryDirectory(prefix="greensched-bench-") as directory:
            rows.append(run(jobs, Path(directory)))
    table = Table(title="load-cap service on 127.0.0.1 (server process + client process)")
    columns = {
        "jobs": "{:,}",
        "startup_s": "{:.1f}",
        "caps_per_s": "{:.0f}",
        "plain_p50_ms": "{:.1f}",
        "plain_p99_ms": "{:.1f}",
        "replan_n": "{}",
        "replan_p50_ms": "{:.0f}",
        "replan_p99_ms": "{:.0f}",
        "cap_to_plan_p50_ms": "{:.0f}",
        "cap_to_plan_max_ms": "{:.0f}",
    }
    for name in columns:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(*(fmt.format(row[name]) for name, fmt in columns.items()))
    console.print(table)
    console.print(
        "plain = caps that change no limit (stored and acknowledged, no re-plan); sustained "
        f"caps/s with {SUSTAINED_CLIENTS} concurrent clients; replan = binding load limits; "
        "cap_to_plan = from sending the cap to the new version on WatchPlan"
    )


if __name__ == "__main__":
    main()
