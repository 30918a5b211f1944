"""Against a real Prometheus (Debian's ``prometheus`` package, installed by ``.ci/run``): it
scrapes a running ``greensched serve --metrics`` on a simulated clock every second, and its HTTP
API gives back energy counters that agree with ``run.csv`` and a cap gauge that follows a cap
submitted over gRPC; ``promtool`` accepts the alerting rules and their unit tests; every
dashboard query is valid PromQL. Skipped, saying so, where the binaries are missing."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import yaml

from scheduler.contracts import RUN, read_table
from scheduler.drivers.service.client import CapClient, cap_interval

from .conftest import TIMEZONE, free_port, launch, wait_serving

REPO = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "greensched.json"
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        PROMETHEUS is None or PROMTOOL is None,
        reason="prometheus/promtool not found: install Debian's prometheus package "
        "(apt-get install prometheus; .ci/run does)",
    ),
]

DAY = "2026-06-21"
DAY_START = pd.Timestamp(DAY).tz_localize(TIMEZONE).tz_convert("UTC")
DAY_END = DAY_START + pd.Timedelta(days=1)
SPEEDUP = 4320  # a day in 20 s, a slot in 0.21 s: scrapes every second see every ~5th slot
SLOT_S = 900.0
CAP_START = DAY_START + pd.Timedelta(hours=9)
CAP_END = CAP_START + pd.Timedelta(hours=6)
CAP_MW = 1.5
COLUMNS = {  # energy counter -> its run.csv column [MW]
    "load": "load_mw",
    "green_used": "green_used_mw",
    "grid_import": "grid_mw",
    "green_unused": "green_unused_mw",
}


def test_promtool_accepts_the_alert_rules_and_their_tests() -> None:
    assert PROMTOOL is not None
    checked = subprocess.run([PROMTOOL, "check", "rules", "alerts.yml"], cwd=PROMETHEUS_DIR,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout
    tested = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS_DIR,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
    config = subprocess.run([PROMTOOL, "check", "config", "prometheus.yml"],
                            cwd=PROMETHEUS_DIR, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert config.returncode == 0, config.stdout + config.stderr


@contextmanager
def prometheus(tmp_path: Path, target: str) -> Iterator[str]:
    """The real Prometheus on 127.0.0.1 (a free port, a temporary database) with the shipped
    config and rules, scraping ``target`` every second; yields its base URL."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / "alerts.yml")]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [target]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port, log = free_port(), tmp_path / "prometheus.log"
    command = [str(PROMETHEUS), f"--config.file={path}",
               f"--storage.tsdb.path={tmp_path / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(base):
            assert process.poll() is None, f"prometheus exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"prometheus not ready:\n{log.read_text()}"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(30)


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def api(base: str, path: str, **params: str) -> object:
    """``data`` of a Prometheus HTTP API answer; fails on an error answer."""
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        answer = json.load(reply)
    assert answer["status"] == "success", answer
    return answer["data"]


def raw_samples(base: str, name: str) -> dict[tuple, dict[float, float]]:
    """Every sample Prometheus stored of ``name`` in the last 15 minutes, by label set:
    scrape time [s] -> value."""
    data = api(base, "query", query=f"{name}[15m]")
    assert isinstance(data, dict)
    return {
        tuple(sorted((k, v) for k, v in series["metric"].items() if k != "__name__")): {
            float(t): float(v) for t, v in series["values"]
        }
        for series in data["result"]
    }


def by_site(base: str, name: str) -> dict[str, dict[float, float]]:
    return {dict(labels)["site"]: values for labels, values in raw_samples(base, name).items()}


def test_a_real_prometheus_scrapes_serve(small_config: Path, tmp_path: Path) -> None:
    """Scraped every second by a real Prometheus: at every scrape inside the day, each site's
    energy counters [J] are run.csv's MW x 900 s x 1e6 summed over the slots run by then
    (within 0.1 %; the slots run are the ``greensched_slots_total`` before the last slot
    run, as the loop may join the day a slot or two in), and the load-cap gauge is the cap
    submitted over gRPC in its window and +Inf outside it. The alerting rules load and
    evaluate; the dashboard's queries run."""
    metrics_at, port = f"127.0.0.1:{free_port()}", free_port()
    db, log = tmp_path / "caps.sqlite", tmp_path / "serve.log"
    with prometheus(tmp_path, metrics_at) as base:
        process = launch(small_config, db, port, DAY, log, f"--metrics={metrics_at}",
                         f"--clock-start={DAY_START.isoformat()}", f"--speedup={SPEEDUP}",
                         "--days=2")  # fmt: skip
        try:
            with CapClient(f"127.0.0.1:{port}", timeout_s=10) as client:
                wait_serving(client, process, log)
                client.submit(
                    "prom-1",
                    ["shantou"],
                    [cap_interval(CAP_START, 6 * 3600, CAP_MW, load_limit=True)],
                )
                answered = pd.Timestamp(client.plan().clock.ToNanoseconds(), tz="UTC")
            run_csv = db.parent / "out" / DAY / "run.csv"
            deadline = time.monotonic() + 120
            while not run_csv.exists():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the day did not finish"
                time.sleep(0.2)
            time.sleep(2.5)  # scraped again, and the rules evaluated
            (slot_start,) = raw_samples(base, "greensched_slot_start_timestamp_seconds").values()
            energy = {name: by_site(base, f"greensched_{name}_joules_total") for name in COLUMNS}
            slots_run = by_site(base, "greensched_slots_total")
            load_cap = by_site(base, "greensched_load_cap_watts")["shantou"]
            rules = api(base, "rules")
            dashboard_errors = _dashboard_query_errors(base)
        finally:
            process.terminate()
            process.wait(30)
    run = read_table(RUN, run_csv)
    run["green_unused_mw"] = run["green_mw"] - run["green_used_mw"]
    in_day = {t: pd.Timestamp(s, unit="s", tz="UTC") for t, s in slot_start.items()
              if DAY_START.timestamp() <= s < DAY_END.timestamp()}  # fmt: skip
    assert len(in_day) >= 5 and max(in_day.values()) >= DAY_START + pd.Timedelta(hours=18)
    compared = 0
    for name, sites in energy.items():
        for site, values in sites.items():
            rows = run[run["site"] == site].set_index("time")[COLUMNS[name]]
            for t, start in in_day.items():
                if t in values:
                    first = start - pd.Timedelta(seconds=SLOT_S) * (slots_run[site][t] - 1)
                    expected_j = rows[(rows.index >= first) & (rows.index <= start)].sum()
                    expected_j *= SLOT_S * 1e6
                    assert values[t] == pytest.approx(expected_j, rel=1e-3, abs=1.0), (
                        name, site, start)  # fmt: skip
                    compared += 1
    assert compared >= 4 * 2 * 5
    bound_from = answered.ceil("15min")
    in_cap = [load_cap[t] for t, start in in_day.items()
              if t in load_cap and max(CAP_START, bound_from) <= start < CAP_END]  # fmt: skip
    outside = [load_cap[t] for t, start in in_day.items()
               if t in load_cap and not CAP_START <= start < CAP_END]  # fmt: skip
    assert len(in_cap) >= 2 and set(in_cap) == {CAP_MW * 1e6}
    assert outside and set(outside) == {float("inf")}
    assert isinstance(rules, dict)
    loaded = {r["name"]: r["health"] for group in rules["groups"] for r in group["rules"]}
    assert set(loaded) == _alert_names() and set(loaded.values()) == {"ok"}, loaded
    assert not dashboard_errors, dashboard_errors


def _alert_names() -> set[str]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return {rule["alert"] for group in rules["groups"] for rule in group["rules"]}


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def _dashboard_query_errors(base: str) -> list[str]:
    """The dashboard's queries (Grafana's variables filled in) that Prometheus refuses."""
    fill = {"$instance": ".*", "$site": ".*", "$__rate_interval": "1m", "$__range": "10m"}
    errors = []
    for expr in _dashboard_exprs():
        query = expr
        for variable, value in fill.items():
            query = query.replace(variable, value)
        url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                status = json.load(reply)["status"]
        except OSError as error:  # HTTPError 400: a bad query
            status = str(error)
        if status != "success":
            errors.append(f"{expr}: {status}")
    return errors
