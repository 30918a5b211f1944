"""Load-cap service benchmark: a server process on loopback and this process as its clients.

At 1,000 jobs (the default day scaled, its sites with it: see :func:`_scaled`), with a token
file, each scenario submits caps and reports caps/s and SubmitLoadCap p50/p99. Where the other
calls' latency is the point (streams, a flood, and once under re-planning), a probe thread
times ``Health/Check`` and ``GetPlan`` (p99) on a channel of its own, a pair every
:data:`PROBE_EVERY_S` (about 90 calls/s, a load of its own: it costs the 8-client re-plan a
quarter to a third of its caps/s, measured by the two re-plan rows):

- commit-only: caps that change no limit (above the sites' grid import limits): stored and
  acknowledged, no re-plan; with 1 and with 8 concurrent clients (8 channels);
- re-plan: binding load limits (80 % of the planned load in a busy hour), each a re-plan; with 1
  and 8 clients, and with 8 clients again while the probe runs; with 1 client also the time
  from sending a cap to its plan version arriving on a ``WatchPlan`` stream; caps arriving
  together are planned in one batch, so the number of plan versions made is reported too;
- re-plan with 8 clients on a second server whose database holds :data:`ENDED` events that
  ended the day before (archived at start-up, so they should not slow submissions), after the
  same single-client re-plan as on the first server, so that both 8-client rows start from
  alike plans (the first caps on a fresh plan are repaired whole, later ones fall short);
- commit-only with 100 open ``WatchPlan`` streams;
- commit-only under a wrong-token flood (a process of 8 threads calling from ``::1`` while the
  clients call from ``127.0.0.1``: failures are throttled per address);
- scraping overhead: the server serves ``--metrics``; commit-only with 1 and 8 clients, and
  re-plan with 8 clients (the binding caps of the re-plan rows, each tightened by 10 % and
  loosened again by new modifications, every one a re-plan), in :data:`SCRAPE_PAIRS` pairs of
  trials of :data:`SCRAPE_TRIAL_S` without and with a scraper process that GETs ``/metrics``
  every :data:`SCRAPE_EVERY_S` as Prometheus does (its ``Accept`` header, so the server
  answers in OpenMetrics), the order alternating between pairs, each trial's events
  cancelled after it and each trial started :data:`SCRAPE_QUIET_S` after that (the plan is
  optimised again in the background meanwhile); reported: caps/s of each, the median of the
  pairs' ratios (1.00 = no cost) and the time of one scrape.

Ratios are against the single-client commit-only caps/s. Scenarios start once the server has
settled (:func:`_settle`). Every loop is bounded in requests and seconds; only loopback is
used.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from scheduler.config import DEFAULT_CONFIG_PATH
from scheduler.drivers.service.auth import hash_token
from scheduler.drivers.service.client import CapClient, cap_interval
from scheduler.drivers.service.events import CapEvent, CapInterval
from scheduler.drivers.service.planner import CapCost, SubmitAnswer
from scheduler.drivers.service.store import Store, Submission
from scheduler.horizon import tomorrow
from scheduler.problem import LoadCap

JOBS = 1_000
COMMITS = 200  # commit-only caps per scenario, spread over its clients
REPLANS = {1: 12, 8: 40}  # binding caps per scenario, by clients
STREAMS = 100
FLOOD_THREADS = 8
FLOOD_S = 20.0  # the flood process runs this long
FLOOD_LEAD_S = 2.0  # and this long before the scenario starts
CLIENTS = (1, 8)
ENDED = 1_300  # events stored before the archive scenario, all ended
PHASE_LIMIT_S = 240.0  # stop a scenario after this long, whatever its count
STARTUP_LIMIT_S = 600.0
PROBE_EVERY_S = 0.02
COMMIT_SHARE = 1.25  # commit-only caps: this times the site's grid import limit (within bounds)
SETTLE_CPU_SHARE = 0.1  # the server is settled when it uses less CPU than this [s per s]
SETTLE_LIMIT_S = 120.0
SCRAPE_EVERY_S = 1.0  # Prometheus's scrape interval in the overhead scenario [s]
SCRAPE_TRIAL_S = 4.0  # each commit-only trial of the overhead scenario submits this long [s]
SCRAPE_PAIRS = 4  # trials without and with scraping, per scenario
SCRAPE_ROUNDS = 50  # re-plan trials: each binding cap tightened and loosened up to this often
SCRAPE_QUIET_S = 3.0  # before each trial: the optimisation in the background after the last ends


def _scaled(jobs: int) -> dict:
    """The default config with ``jobs`` jobs a day, its sites (GPUs, base load, import limit,
    ramp limits, PV and wind plant) scaled by the same factor, as ``benchmarks plan`` scales
    them: the day stays as busy as the default (~60 % of GPU-hours), not several times over
    full."""
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    classes = data["workload"]["classes"]
    factor = jobs / sum(c["jobs"] for c in classes.values())
    for c in classes.values():
        c["jobs"] = round(c["jobs"] * factor)
    for site in data["sites"].values():
        site["gpus"] = round(site["gpus"] * factor)
        for key in ("base_load_mw", "grid_import_limit_mw", "ramp_up_mw_per_min",
                    "ramp_down_mw_per_min"):  # fmt: skip
            if site.get(key) is not None:
                site[key] = site[key] * factor
        for plant in site.get("pv", {}).values():
            plant["capacity_mw_dc"] *= factor
            plant["capacity_mw_ac"] *= factor
        for farm in site.get("wind", {}).values():
            farm["turbines"] = round(farm["turbines"] * factor)
    return data


def _config(directory: Path, jobs: int) -> Path:
    path = directory / f"bench-{jobs}.yaml"
    path.write_text(yaml.safe_dump(_scaled(jobs)))
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _store_ended(db: Path, day_start: pd.Timestamp, n: int) -> None:
    """``n`` events of one hour each that ended before the day ``day_start`` begins and before
    now, stored as a service that ran for days would have stored them."""
    first = min(day_start, pd.Timestamp.now(tz="UTC")).floor("h") - pd.Timedelta(hours=n + 1)
    answer = SubmitAnswer(True, "stored", CapCost((), 0, 0.0, 0.0, 0.0, 0.0), 1).to_dict()
    changes = []
    for k in range(n):
        start = first + pd.Timedelta(hours=k)
        site = "qingyang" if k % 2 else "shantou"
        interval = CapInterval(start, 3600.0, "IMPORT_CAPACITY_LIMIT", 5.0)
        event = CapEvent(f"ended-{k}", 1, "bench", 0, (site,), (interval,))
        cap = LoadCap(site, start, interval.end, interval.type, interval.value_mw)
        changes.append(Submission(event, [cap], "bench", start, answer))
    store = Store(db)
    try:
        store.save_changes(changes, None)
    finally:
        store.close()


def _start(
    directory: Path, day: str, token: str, metrics_port: int | None = None
) -> tuple[subprocess.Popen, int]:
    """``greensched serve`` on ``localhost`` (127.0.0.1 and ::1), plan only, with a token file,
    on ``directory/bench.sqlite`` (and ``--metrics`` on ``metrics_port``, when given)."""
    port, log = _free_port(), directory / "serve.log"
    auth = directory / "tokens.yaml"
    entry = {"name": "bench", "token_hash": hash_token(token), "sites": ["*"]}
    auth.write_text(yaml.safe_dump({"coordinators": [entry]}))
    command = [sys.executable, "-m", "scheduler.drivers.service", "serve"]
    command += [f"--config={_config(directory, JOBS)}", f"--listen=localhost:{port}"]
    command += [f"--db={directory / 'bench.sqlite'}", f"--date={day}", f"--auth={auth}"]
    command += ["--no-dispatch", f"--out={directory / 'out'}"]
    if metrics_port is not None:
        command.append(f"--metrics=127.0.0.1:{metrics_port}")
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ)
    deadline = time.monotonic() + STARTUP_LIMIT_S
    with CapClient(f"127.0.0.1:{port}", timeout_s=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited:\n{log.read_text()}")
            try:
                if client.health() == "SERVING":
                    return process, port
            except grpc.RpcError:
                time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"server did not start in {STARTUP_LIMIT_S} s")


def _cpu_s(pid: int) -> float:
    """CPU time process ``pid`` has used, user and system [s] (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settle(process: subprocess.Popen) -> None:
    """Wait until the server's start-up work is done (after SERVING it still forecasts the
    look-ahead day in a background thread, seconds of CPU): its CPU use stays under
    :data:`SETTLE_CPU_SHARE` for a second, at most :data:`SETTLE_LIMIT_S`. Without ``/proc``
    it does not wait."""
    if not Path(f"/proc/{process.pid}/stat").exists():
        return
    deadline = time.monotonic() + SETTLE_LIMIT_S
    used = _cpu_s(process.pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = _cpu_s(process.pid)
        if now - used < SETTLE_CPU_SHARE:
            return
        used = now


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1e3) if values else float("nan")


@dataclass
class _Probe:
    """Times Check and GetPlan on a channel of its own while a scenario runs."""

    target: str
    token: str
    health_s: list[float] = field(default_factory=list)
    plan_s: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> _Probe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with CapClient(self.target, token=self.token, timeout_s=10) as client:
            while not self._stop.wait(PROBE_EVERY_S):
                sent = time.perf_counter()
                client.health()
                self.health_s.append(time.perf_counter() - sent)
                sent = time.perf_counter()
                client.plan(["shantou"])
                self.plan_s.append(time.perf_counter() - sent)


def _binding_caps(client: CapClient, day_start: pd.Timestamp, n: int) -> list[tuple]:
    """``n`` load limits at 80 % of the least planned load in the busiest site-hours (at most
    the site-hours where that is above base load)."""
    plan = client.plan()
    slots = pd.DataFrame(
        {
            "site": [s.site for s in plan.slots],
            "start": [s.start.ToNanoseconds() for s in plan.slots],
            "load_mw": [s.load_mw for s in plan.slots],
        }
    )
    slots["hour"] = (slots["start"] - day_start.value) // (3600 * 10**9)
    hourly = slots.groupby(["site", "hour"])["load_mw"].min().sort_values(ascending=False)
    base = {name: site["base_load_mw"] for name, site in _scaled(JOBS)["sites"].items()}
    binding = [(site, hour, 0.8 * mw) for (site, hour), mw in hourly.items()]
    return [
        (site, day_start + pd.Timedelta(hours=int(hour)), mw)
        for site, hour, mw in binding
        if mw > base[site]  # GPUs run there (a cap below base load is refused)
    ][:n]


def _submit_all(
    target: str,
    token: str,
    work: list[list[tuple]],
    on_reply: Callable | None = None,
    limit_s: float = PHASE_LIMIT_S,
) -> tuple[list[float], float]:
    """Each client (one channel) submits its list of ``(event_id, site, start, mw, load)``
    (a sixth item: the modification number), for at most ``limit_s``; latencies and the wall
    time of the whole scenario. The clients connect first (a coordinator keeps its channel
    open): the clock starts once every one of them has."""
    connected = threading.Barrier(len(work) + 1)

    def client_run(items: list[tuple]) -> list[float]:
        latencies = []
        with CapClient(target, token=token, timeout_s=PHASE_LIMIT_S) as client:
            client.health()
            connected.wait(PHASE_LIMIT_S)
            began = time.monotonic()
            for event_id, site, start, mw, load_limit, *modification in items:
                if time.monotonic() - began > limit_s:
                    break
                sent = time.perf_counter()
                interval = cap_interval(start, 3600, mw, load_limit)
                reply = client.submit(event_id, [site], [interval], *modification)
                latencies.append(time.perf_counter() - sent)
                if on_reply is not None:
                    on_reply(reply, sent)
        return latencies

    with ThreadPoolExecutor(len(work)) as pool:
        parts = [pool.submit(client_run, items) for items in work]
        connected.wait(PHASE_LIMIT_S)
        began = time.perf_counter()
        latencies = [x for part in parts for x in part.result()]
    return latencies, time.perf_counter() - began


def _commits(
    prefix: str, clients: int, day_start: pd.Timestamp, total: int = COMMITS
) -> list[list[tuple]]:
    """Commit-only caps, ``total`` in all, one list per client."""
    per = total // clients
    hours = [day_start + pd.Timedelta(hours=k % 24) for k in range(per)]
    sites = ["qingyang" if k % 2 else "shantou" for k in range(per)]
    limits = {name: s["grid_import_limit_mw"] for name, s in _scaled(JOBS)["sites"].items()}
    return [
        [(f"{prefix}-{c}-{k}", sites[k], hours[k], COMMIT_SHARE * limits[sites[k]], False)
         for k in range(per)]
        for c in range(clients)
    ]  # fmt: skip


def _row(
    name: str, clients: int, latencies: list[float], wall_s: float, probe: _Probe | None
) -> dict:
    """A table row; the health and GetPlan columns only with a ``probe``."""
    row = {
        "scenario": name,
        "clients": clients,
        "caps": len(latencies),
        "caps_per_s": len(latencies) / wall_s if wall_s else float("nan"),
        "p50_ms": _ms(latencies, 50),
        "p99_ms": _ms(latencies, 99),
    }
    if probe is not None:
        row["health_p99_ms"] = _ms(probe.health_s, 99)
        row["getplan_p99_ms"] = _ms(probe.plan_s, 99)
    return row


FLOOD_SCRIPT = """
import json, sys, threading, time
import grpc
from scheduler.drivers.service.client import CapClient
target, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
codes, until = [], time.monotonic() + seconds
def flood():
    with CapClient(target, token="w" * 43, timeout_s=10) as stranger:
        while time.monotonic() < until:
            try:
                stranger.plan(["shantou"])
            except grpc.RpcError as error:
                codes.append(error.code().name)
workers = [threading.Thread(target=flood) for _ in range(threads)]
[w.start() for w in workers]
[w.join() for w in workers]
print(json.dumps({"calls": len(codes), "throttled": codes.count("RESOURCE_EXHAUSTED")}))
"""


def _watch_arrivals(stream, seen: dict[int, float]) -> None:
    """Note when each plan version arrives on ``stream`` until it is cancelled."""
    try:
        for plan in stream:
            seen.setdefault(plan.version, time.perf_counter())
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.CANCELLED:
            raise


def _replan_row(
    watcher: CapClient,
    target: str,
    token: str,
    day_start: pd.Timestamp,
    clients: int,
    name: str,
    tag: str,
    on_reply: Callable | None = None,
    probed: bool = False,
) -> dict:
    """One re-plan scenario with ``clients`` clients (event ids ``tag...``), probed or not, and
    the plan versions it made."""
    caps = _binding_caps(watcher, day_start, REPLANS[clients])
    work = [
        [(f"{tag}{clients}-{k}", *cap, True) for k, cap in enumerate(caps) if k % clients == c]
        for c in range(clients)
    ]
    before = watcher.plan().version
    with _Probe(target, token) if probed else contextlib.nullcontext() as probe:
        latencies, wall = _submit_all(target, token, work, on_reply)
    row = _row(name, clients, latencies, wall, probe)
    row["versions"] = watcher.plan().version - before
    return row


def _replans(target: str, token: str, day_start: pd.Timestamp) -> tuple[list[dict], float]:
    """The re-plan scenarios, and the p50 from sending a cap to its version on WatchPlan [ms]."""
    rows, seen, to_plan = [], {}, []

    def arrival(reply, sent: float) -> None:
        deadline = time.monotonic() + 60
        while reply.plan_version not in seen and time.monotonic() < deadline:
            time.sleep(0.001)
        if reply.plan_version in seen:
            to_plan.append(seen[reply.plan_version] - sent)

    with CapClient(target, token=token) as watcher:
        stream = watcher.watch(summary_only=True)
        threading.Thread(target=_watch_arrivals, args=(stream, seen), daemon=True).start()
        for clients in CLIENTS:
            on_reply = arrival if clients == 1 else None
            row = _replan_row(
                watcher, target, token, day_start, clients, "re-plan", "replan", on_reply
            )
            rows.append(row)
        name = "re-plan, probed"
        rows.append(_replan_row(watcher, target, token, day_start, 8, name, "probed", probed=True))
        stream.cancel()
    return rows, _ms(to_plan, 50)


def _with_ended(directory: Path, day: str, token: str, day_start: pd.Timestamp) -> dict:
    """Re-plan with 8 clients on a server whose database holds :data:`ENDED` ended events."""
    directory.mkdir()
    _store_ended(directory / "bench.sqlite", day_start, ENDED)
    process, port = _start(directory, day, token)
    _settle(process)
    target = f"127.0.0.1:{port}"
    try:
        with CapClient(target, token=token) as watcher:
            _replan_row(watcher, target, token, day_start, 1, "re-plan", "ended-first")
            name = f"re-plan, {ENDED:,} stored ended caps"
            return _replan_row(watcher, target, token, day_start, 8, name, "ended")
    finally:
        _stop(process)


def _with_streams(target: str, token: str, day_start: pd.Timestamp) -> dict:
    """Commit-only with :data:`STREAMS` WatchPlan streams open."""
    with CapClient(target, token=token) as holder, _Probe(target, token) as probe:
        streams = [holder.watch(summary_only=True) for _ in range(STREAMS)]
        for stream in streams:
            next(stream)
        latencies, wall = _submit_all(target, token, _commits("streams", 1, day_start))
        for stream in streams:
            stream.cancel()
    return _row(f"commit-only, {STREAMS} streams", 1, latencies, wall, probe)


def _under_flood(port: int, token: str, day_start: pd.Timestamp) -> tuple[dict, dict]:
    """Commit-only while a flood process sends wrong tokens from ``::1``; its call counts."""
    command = [sys.executable, "-c", FLOOD_SCRIPT, f"[::1]:{port}", str(FLOOD_THREADS)]
    flood = subprocess.Popen([*command, str(FLOOD_S)], stdout=subprocess.PIPE, text=True)
    time.sleep(FLOOD_LEAD_S)  # the flood's burst is spent: it is being throttled
    target = f"127.0.0.1:{port}"
    with _Probe(target, token) as probe:
        latencies, wall = _submit_all(target, token, _commits("flood", 1, day_start))
    row = _row("commit-only, wrong-token flood", 1, latencies, wall, probe)
    return row, json.loads(flood.communicate(timeout=FLOOD_S + 60)[0])


SCRAPE_SCRIPT = """
import sys, threading, time, urllib.request
url, every_s = sys.argv[1], float(sys.argv[2])
accept = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
          "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
took = []
while True:
    began = time.perf_counter()
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as reply:
        reply.read()
    took.append(time.perf_counter() - began)
    if len(took) == 1:
        print("scraping", flush=True)
    if stop.wait(every_s):
        break
print(len(took), sorted(took)[len(took) // 2])
"""


@contextlib.contextmanager
def scraping(metrics_port: int) -> Iterator[list[float]]:
    """A process that scrapes ``/metrics`` on 127.0.0.1:``metrics_port`` every
    :data:`SCRAPE_EVERY_S` as Prometheus does, until the block ends (entered once its first
    scrape is done, so the block does not pay for its start-up); the list yielded holds the
    number of scrapes made and the median time of one [s] once the block has ended."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    command = [sys.executable, "-c", SCRAPE_SCRIPT, url, str(SCRAPE_EVERY_S)]
    scraper = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    made: list[float] = []
    try:
        assert scraper.stdout is not None
        if scraper.stdout.readline().strip() != "scraping":
            raise RuntimeError(f"the scraper of {url} failed")
        yield made
    finally:
        count, median_s = scraper.communicate(input="", timeout=60)[0].split()
        made += [int(count), float(median_s)]


def _cancel_trial(target: str, token: str, prefix: str) -> None:
    """Cancel the events of a trial (ids ``prefix-...``), 8 clients at once, so that every
    trial starts with the same events in force: each event in force makes every batch after
    it slower (commit-only at 1 client fell from 330 to 45 caps/s over 12,000 of them)."""
    with CapClient(target, token=token, timeout_s=PHASE_LIMIT_S) as client:
        ids = [e.event_id for e in client.list() if e.event_id.startswith(f"{prefix}-")]

    def cancel(part: list[str]) -> None:
        with CapClient(target, token=token, timeout_s=PHASE_LIMIT_S) as client:
            for event_id in part:
                client.cancel(event_id)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(cancel, [ids[k::8] for k in range(8)]))


def _scraped_pairs(
    trial: Callable[[str], float], target: str, token: str, metrics_port: int, tag: str
) -> dict:
    """:data:`SCRAPE_PAIRS` pairs of ``trial(event id prefix) -> caps/s`` without and with
    scraping (the order alternating, each trial's events cancelled after it): the median
    caps/s of each, the median of the pairs' ratios (scraped / unscraped), the scrapes made
    and the median time of one."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    scrapes, scrape_s = 0, []
    for k in range(SCRAPE_PAIRS):
        for scraped in (False, True) if k % 2 == 0 else (True, False):
            prefix = f"{tag}-{k}-{'on' if scraped else 'off'}"
            scraper: contextlib.AbstractContextManager[list[float]] = (
                scraping(metrics_port) if scraped else contextlib.nullcontext([])
            )
            with scraper as made:
                time.sleep(SCRAPE_QUIET_S)
                rates[scraped].append(trial(prefix))
            if scraped:
                scrapes += int(made[0])
                scrape_s.append(made[1])
            _cancel_trial(target, token, prefix)
    ratios = np.array(rates[True]) / np.array(rates[False])
    return {
        "off_caps_per_s": float(np.median(rates[False])),
        "on_caps_per_s": float(np.median(rates[True])),
        "ratio": float(np.median(ratios)),
        "scrapes": scrapes,
        "scrape_ms": 1e3 * float(np.median(scrape_s)),
    }


def _scrape_overhead(
    target: str, token: str, day_start: pd.Timestamp, metrics_port: int
) -> list[dict]:
    """The scraping-overhead rows (module docstring)."""
    rows = []
    for clients in CLIENTS:

        def commits(prefix: str, clients: int = clients) -> float:
            work = _commits(prefix, clients, day_start, total=20 * COMMITS)
            latencies, wall = _submit_all(target, token, work, limit_s=SCRAPE_TRIAL_S)
            return len(latencies) / wall

        pairs = _scraped_pairs(commits, target, token, metrics_port, f"scrape{clients}")
        rows.append({"scenario": "commit-only", "clients": clients, **pairs})
    with CapClient(target, token=token) as watcher:

        def replans(prefix: str) -> float:
            caps = _binding_caps(watcher, day_start, REPLANS[8])
            work = [
                [(f"{prefix}-{k}", *cap[:2], cap[2] * (0.9 if r % 2 else 1.0), True, r)
                 for r in range(SCRAPE_ROUNDS) for k, cap in enumerate(caps) if k % 8 == c]
                for c in range(8)
            ]  # fmt: skip
            latencies, wall = _submit_all(target, token, work, limit_s=SCRAPE_TRIAL_S)
            return len(latencies) / wall

        pairs = _scraped_pairs(replans, target, token, metrics_port, "scrape-replan")
        rows.append({"scenario": "re-plan", "clients": 8, **pairs})
    return rows


def run(directory: Path) -> tuple[list[dict], dict]:
    day = tomorrow("Asia/Shanghai").isoformat()
    day_start = pd.Timestamp(day).tz_localize("Asia/Shanghai").tz_convert("UTC")
    token = secrets.token_urlsafe(32)
    started = time.perf_counter()
    metrics_port = _free_port()
    process, port = _start(directory, day, token, metrics_port)
    facts: dict = {"startup_s": time.perf_counter() - started}
    _settle(process)
    facts["settled_s"] = time.perf_counter() - started
    target, rows = f"127.0.0.1:{port}", []
    try:
        for clients in CLIENTS:
            commits = _commits(f"commit{clients}", clients, day_start)
            latencies, wall = _submit_all(target, token, commits)
            rows.append(_row("commit-only", clients, latencies, wall, None))
        replans, facts["cap_to_watchplan_p50_ms"] = _replans(target, token, day_start)
        rows += replans
        rows.append(_with_streams(target, token, day_start))
        row, facts["flood"] = _under_flood(port, token, day_start)
        rows.append(row)
        facts["scraping"] = _scrape_overhead(target, token, day_start, metrics_port)
    finally:
        _stop(process)
    rows.append(_with_ended(directory / "ended", day, token, day_start))
    return rows, facts


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def main() -> None:
    console = Console(width=200)
    with tempfile.TemporaryDirectory(prefix="greensched-bench-") as directory:
        rows, facts = run(Path(directory))
    reference = rows[0]["caps_per_s"]
    table = Table(title=f"load-cap service, {JOBS:,} jobs, server process on loopback")
    columns = {
        "scenario": "{}",
        "clients": "{}",
        "caps": "{}",
        "caps_per_s": "{:.1f}",
        "ratio": "{:.2f}",
        "p50_ms": "{:.1f}",
        "p99_ms": "{:.1f}",
        "health_p99_ms": "{:.1f}",
        "getplan_p99_ms": "{:.1f}",
        "versions": "{}",
    }
    for name in columns:
        table.add_column(name, justify="left" if name == "scenario" else "right")
    for row in rows:
        row["ratio"] = row["caps_per_s"] / reference
        table.add_row(
            *(fmt.format(row[name]) if name in row else "" for name, fmt in columns.items())
        )
    console.print(table)
    console.print(
        "ratio = caps/s against single-client commit-only; versions = plan versions made by "
        f"a re-plan scenario; health and GetPlan p99 where probed (a pair every "
        f"{PROBE_EVERY_S * 1e3:.0f} ms); startup {facts['startup_s']:.1f} s (settled after "
        f"{facts['settled_s']:.1f} s); "
        f"cap to its version on WatchPlan p50 {facts['cap_to_watchplan_p50_ms']:.0f} ms; "
        f"flood: {facts['flood']['calls']} wrong-token calls, {facts['flood']['throttled']} "
        "answered RESOURCE_EXHAUSTED"
    )
    console.print(_scraping_table(facts["scraping"]))


def _scraping_table(rows: list[dict]) -> Table:
    table = Table(
        title=f"cap throughput without and with /metrics scraped every {SCRAPE_EVERY_S:g} s "
        f"({SCRAPE_PAIRS} pairs of {SCRAPE_TRIAL_S:g} s trials, alternating; ratio: median of "
        "the pairs' scraped / unscraped)"
    )
    for column in ("scenario", "clients", "caps/s unscraped", "caps/s scraped", "ratio",
                   "scrapes", "scrape ms"):  # fmt: skip
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for row in rows:
        table.add_row(row["scenario"], str(row["clients"]), f"{row['off_caps_per_s']:.1f}",
                      f"{row['on_caps_per_s']:.1f}", f"{row['ratio']:.3f}",
                      str(row["scrapes"]), f"{row['scrape_ms']:.1f}")  # fmt: skip
    return table


if __name__ == "__main__":
    main()
