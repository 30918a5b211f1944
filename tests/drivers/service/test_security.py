"""What a security reviewer probes: token hashes, failure throttling under a flood, scoped reads
that do not reveal which event ids exist, private database files, raw-byte fuzzing."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
import yaml

from scheduler.config import load_config
from scheduler.contracts import UserError
from scheduler.drivers.service.answers import CapCost, SubmitAnswer, scoped
from scheduler.drivers.service.auth import (
    Authenticator,
    Coordinator,
    FailureThrottle,
    ThrottledError,
    peer_address,
)
from scheduler.drivers.service.client import CapClient, cap_interval
from scheduler.drivers.service.server import Running
from scheduler.horizon import operating_day, tomorrow
from scheduler.jobs import Job, jobs_frame
from scheduler.problem import Problem

from .conftest import (
    DAY,
    TIMEZONE,
    TOKENS,
    free_port,
    launch,
    local,
    start_server,
    wait_serving,
    write_tokens,
)

CLI = [sys.executable, "-m", "scheduler.drivers.service"]
GOOD = cap_interval(local("18:00"), 3600, 5.0)


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True, timeout=120)


# --- token hashes ------------------------------------------------------------------------------
def test_hash_token_prints_a_sha256_entry_the_server_accepts(tmp_path: Path) -> None:
    token = "x" * 10 + "-a-random-token-of-43-characters-" + "y"
    done = cli("caps", "hash-token", "--name", "gd", "--site", "shantou", stdin=token + "\n")
    assert done.returncode == 0, done.stderr
    (entry,) = yaml.safe_load("coordinators:\n" + done.stdout)["coordinators"]
    assert entry == {
        "name": "gd",
        "token_hash": "sha256$" + hashlib.sha256(token.encode()).hexdigest(),
        "sites": ["shantou"],
    }
    auth_file = tmp_path / "tokens.yaml"
    auth_file.write_text("coordinators:\n" + done.stdout)
    auth = Authenticator.from_file(auth_file, ["shantou", "qingyang"])
    who = auth.identify([("authorization", f"Bearer {token}")], "ipv4:127.0.0.1:1")
    assert who.name == "gd" and who.may_cap("shantou") and not who.may_read("qingyang")

    short = cli("caps", "hash-token", stdin="too-short\n")
    assert short.returncode == 2 and "at least 32" in short.stderr
    assert "Traceback" not in short.stderr


def test_an_old_scrypt_entry_is_refused_at_start_up_with_how_to_rehash(
    small_config: Path, tmp_path: Path
) -> None:
    auth_file = tmp_path / "tokens.yaml"
    auth_file.write_text(
        "coordinators:\n  - name: gd\n    token_hash: scrypt$16384$8$1$00$ab\n    sites: ['*']\n"
    )
    db = tmp_path / "caps.sqlite"
    done = cli("serve", f"--config={small_config}", f"--auth={auth_file}", f"--db={db}")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr  # one message
    assert "coordinators[0] (gd): token_hash is in the old scrypt format" in done.stderr
    assert "greensched caps hash-token" in done.stderr
    assert not db.exists()


# --- throttling --------------------------------------------------------------------------------
def test_the_failure_throttle_refills_and_stays_bounded() -> None:
    now = [0.0]
    throttle = FailureThrottle(burst=3, refill_per_s=1.0, max_peers=100, clock=lambda: now[0])
    for _ in range(3):
        throttle.check("10.0.0.1")
        throttle.failed("10.0.0.1")
    with pytest.raises(ThrottledError, match=r"from 10\.0\.0\.1; retry in 1\.0 s"):
        throttle.check("10.0.0.1")
    throttle.check("10.0.0.2")  # another peer is not affected
    now[0] = 1.0
    throttle.check("10.0.0.1")  # one failure refilled after a second
    for k in range(100_000):
        throttle.failed(f"peer-{k}")
    assert len(throttle) == 100
    assert peer_address("ipv4:192.0.2.7:50123") == "192.0.2.7"
    assert peer_address("ipv6:[2001:db8::1:2]:50123") == "2001:db8::/64"
    assert peer_address("ipv6:[2001:db8::ffff]:1") == peer_address("ipv6:[2001:db8::1]:2")


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


@pytest.mark.slow
def test_a_wrong_token_flood_is_throttled_and_health_stays_fast(
    small_config: Path, tmp_path: Path
) -> None:
    """1,000 wrong-token calls from 8 threads of this process against a server process."""
    port, log = free_port(), tmp_path / "serve.log"
    auth = write_tokens(tmp_path / "tokens.yaml")
    process = launch(
        small_config, tmp_path / "caps.sqlite", port, tomorrow(TIMEZONE).isoformat(), log,
        f"--auth={auth}",
    )  # fmt: skip
    target = f"127.0.0.1:{port}"
    try:
        with CapClient(target, timeout_s=5) as probe:
            wait_serving(probe, process, log)
            for _ in range(20):  # warm up: the first calls allocate the server's buffers
                probe.health()
            rss_before = _rss_kib(process.pid)
            codes: list[grpc.StatusCode] = []
            health_s: list[float] = []
            flooding = threading.Event()
            flooding.set()

            def flood(n: int) -> None:
                with CapClient(target, token="w" * 43, timeout_s=5) as stranger:
                    for _ in range(n):
                        try:
                            stranger.plan(["shantou"])
                        except grpc.RpcError as error:
                            codes.append(error.code())

            def watch_health() -> None:
                while flooding.is_set():
                    sent = time.perf_counter()
                    assert probe.health() == "SERVING"
                    health_s.append(time.perf_counter() - sent)
                    time.sleep(0.005)

            watcher = threading.Thread(target=watch_health)
            watcher.start()
            threads = [threading.Thread(target=flood, args=(125,)) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            flooding.clear()
            watcher.join()
            rss_after = _rss_kib(process.pid)
        assert len(codes) == 1000
        assert set(codes) == {
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        }
        assert codes.count(grpc.StatusCode.UNAUTHENTICATED) < 100  # the burst, then throttled
        p99_ms = float(np.percentile(health_s, 99) * 1e3)
        assert p99_ms < 1000, f"health p99 {p99_ms:.0f} ms under the flood"
        assert rss_after - rss_before < 20 * 1024, (rss_before, rss_after)
        time.sleep(1.0)  # the bucket refills: the valid token works again from this address
        with CapClient(target, token=TOKENS["national"], timeout_s=5) as national:
            assert national.plan(["shantou"]).version >= 1
    finally:
        process.terminate()
        process.wait(30)
    assert "Traceback" not in log.read_text()


# --- scopes ------------------------------------------------------------------------------------
def test_reads_are_scoped_and_hidden_events_are_not_found(auth_server: Running) -> None:
    target = f"127.0.0.1:{auth_server.port}"
    with (
        CapClient(target, token=TOKENS["guangdong"]) as guangdong,
        CapClient(target, token=TOKENS["national"]) as national,
        CapClient(target, token=TOKENS["reader"]) as reader,
    ):
        national.submit("q-1", ["qingyang"], [GOOD])
        guangdong.submit("s-1", ["shantou"], [GOOD])
        assert {s.site for s in guangdong.plan().slots} == {"shantou"}
        assert {s.site for s in guangdong.forecast().slots} == {"shantou"}
        assert {s.site for s in next(iter(guangdong.watch())).slots} == {"shantou"}
        for read in (guangdong.plan, guangdong.forecast):
            with pytest.raises(grpc.RpcError) as error:
                read(["qingyang"])
            assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "may not read site(s) qingyang" in error.value.details()
        assert [e.event_id for e in guangdong.list()] == ["s-1"]
        national.submit("q-2", ["qingyang"], [cap_interval(local("19:00"), 3600, 5.0)])
        mine, everything = guangdong.plan(), national.plan()
        assert mine.reason == "submit" and everything.reason == "submit q-2"
        assert not mine.HasField("metrics") and mine.caps_in_force == 0  # totals of every site
        assert everything.HasField("metrics") and everything.caps_in_force == 3
        assert reader.plan().reason == "submit q-2"
        assert {s.site for s in reader.plan().slots} == {"qingyang", "shantou"}
        assert [e.event_id for e in reader.list()] == ["q-1", "s-1", "q-2"]
        with pytest.raises(grpc.RpcError) as error:  # visible to a reader, not its to cancel
            reader.cancel("q-1")
        assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as error:  # a hidden id: taken, nothing more
            guangdong.submit("q-1", ["shantou"], [GOOD])
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error.value.details() == "event 'q-1': this event_id is taken; choose another"
    # a client process: a hidden id and a missing one get the same answer
    answers = []
    for event_id in ("q-1", "no-such"):
        done = cli("caps", "cancel", event_id, "--server", target, "--token", TOKENS["guangdong"])
        assert done.returncode == 2
        answers.append(done.stderr.replace(event_id, "ID"))
    assert answers[0] == answers[1] == "error: NOT_FOUND: event_id 'ID': no such event\n"


# --- files -------------------------------------------------------------------------------------
def test_database_wal_and_lock_files_are_private(small_config: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.sqlite"
    old.touch(mode=0o644)
    old.chmod(0o644)
    for db in (tmp_path / "new.sqlite", old):
        running = start_server(small_config, db)
        try:
            files = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}.lock")]
            assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {
                f.name: "0o600" for f in files
            }
        finally:
            running.stop(0)


# --- no request gets INTERNAL ------------------------------------------------------------------
RAW_FUZZ = """
import json, random, sys
import grpc
random.seed(12)
invalid_utf8 = b"\\x0a\\x03\\xff\\xfe\\xfd"  # field 1 (a string in every request) = 3 bad bytes
codes = {}
with grpc.insecure_channel(sys.argv[1]) as channel:
    for method, n in json.loads(sys.argv[2]).items():
        stream = method.startswith("Watch")
        make = channel.unary_stream if stream else channel.unary_unary
        call = make(f"/greensched.v1.LoadCapService/{method}",
                    request_serializer=lambda b: b, response_deserializer=lambda b: b)
        bodies = [invalid_utf8] + [random.randbytes(random.randint(1, 64)) for _ in range(n)]
        for body in bodies:
            try:
                reply = call(body, timeout=3)
                if stream:
                    next(iter(reply))
                code = "OK"
            except grpc.RpcError as error:
                code = error.code().name
            codes.setdefault(method, []).append(code)
print(json.dumps(codes))
"""


def test_raw_random_bytes_never_get_internal(
    shared_server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    per_method = {"SubmitLoadCap": 100, "CancelLoadCap": 30, "ListLoadCaps": 30, "GetPlan": 30,
                  "GetReport": 30, "GetForecast": 30, "GetFlexibility": 30, "WatchPlan": 0,
                  "WatchReport": 0}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", RAW_FUZZ, f"127.0.0.1:{shared_server.port}", json.dumps(per_method)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout)
    assert all(c[0] == "INVALID_ARGUMENT" for c in codes.values()), codes  # invalid UTF-8
    seen = {code for method in codes.values() for code in method}
    assert not seen & {"INTERNAL", "UNKNOWN"}, codes
    assert seen <= {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION"}, seen
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_an_unexpected_failure_is_internal_without_internal_text(
    small_config: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "caps.sqlite"
    running = start_server(small_config, db)
    try:
        with closing(sqlite3.connect(db)) as other:  # break the database under the server
            other.execute("DROP TABLE caps")
        target = f"127.0.0.1:{running.port}"
        with CapClient(target) as client, pytest.raises(grpc.RpcError) as error:
            client.submit("x-1", ["shantou"], [GOOD])
        assert error.value.code() == grpc.StatusCode.INTERNAL
        assert error.value.details() == "internal error; the server log has the details"
        assert any("no such table: caps" in r.getMessage() or r.exc_info for r in caplog.records)
    finally:
        running.stop(0)


def test_a_bad_auth_file_is_one_user_error(tmp_path: Path) -> None:
    auth_file = tmp_path / "tokens.yaml"
    auth_file.write_text("coordinators: [{name: a, token_hash: sha256$00, sites: ['*']}]")
    with pytest.raises(UserError, match=r"token_hash must look like sha256\$<64 hex digits>"):
        Authenticator.from_file(auth_file, ["shantou"])


def test_an_answer_names_only_the_late_jobs_its_caller_may_read() -> None:
    """A job is readable when one of its allowed sites is; the others are counted only."""
    config = load_config()
    horizon = operating_day(DAY, config.timezone, 60)
    start, end = horizon.start, horizon.end
    jobs = [
        Job("q-only", 10, 5, start, end, sites=("qingyang",)),
        Job("s-only", 10, 5, start, end, sites=("shantou",)),
        Job("both", 10, 5, start, end),
    ]
    supply = pd.DataFrame(
        [
            {"time": t, "site": n, "pv_mw": 0.0, "wind_mw": 0.0, "green_mw": 0.0}
            for n in config.sites
            for t in horizon.times
        ]
    )
    problem = Problem(horizon, tuple(config.sites.values()), jobs_frame(jobs), supply)
    late = ("q-only", "s-only", "both")
    answer = SubmitAnswer(
        False,
        "accepted and enforced, but the plan cannot keep it with every job on time: 3 job(s) "
        "late by their deadline (30.0 GPU-h unfinished): q-only, s-only, both",
        CapCost(late, 3, 30.0, 0.0, 0.0, 0.0),
        7,
    )
    named = scoped(answer, Coordinator("guangdong", frozenset({"shantou"})), problem)
    assert named.cost.late_jobs == ("s-only", "both")
    assert named.cost.late_jobs_total == 3  # counted, not named
    assert "q-only" not in named.reason and "s-only, both" in named.reason
    assert "1 late job(s) at sites outside your scope" in named.reason
    reader = Coordinator("reader", frozenset({"shantou"}), read_all=True)
    assert scoped(answer, reader, problem) == answer
    assert scoped(answer, Coordinator("national", None), problem) == answer
