"""``serve --metrics``: the Prometheus endpoint and readiness, scraped over HTTP from a real
server on 127.0.0.1 (simulated clock, real SQLite); bad ``--metrics`` values through the CLI.
The same metrics scraped by a real Prometheus are in ``test_prometheus.py``."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from pathlib import Path

import grpc
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from scheduler.contracts import RUN, read_table
from scheduler.drivers.service.client import CapClient, cap_interval
from scheduler.drivers.service.server import Running, ServeOptions, start
from tests.conftest import greensched
from tests.drivers.test_cli_user_errors import run_main

from .conftest import TIMEZONE, local, start_server

DAY = "2026-06-21"
DAY_START = pd.Timestamp(DAY).tz_localize(TIMEZONE).tz_convert("UTC")
SLOT_S = 900.0
README = Path(__file__).resolve().parents[3] / "README.md"
WITH_FORECAST_RUNS = {"greensched_forecast_age_seconds", "greensched_forecast_fetch_failures_total"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_text(port: int) -> str:
    """What ``/metrics`` on 127.0.0.1:``port`` serves."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def scrape(port: int) -> Samples:
    """Every sample ``/metrics`` on 127.0.0.1:``port`` serves, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics_text(port))
        for sample in family.samples
    }


def metrics_table() -> dict[str, str]:
    """The README's table of metrics: name -> type."""
    return dict(re.findall(r"^\| `(greensched_\w+)` \| (\w+) \|", README.read_text(), re.M))


def exposed(text: str) -> dict[str, str]:
    """The metric families of an exposition: name as scraped (counters with ``_total``) ->
    type; the client library's ``_created`` timestamps left out."""
    return {
        family.name + ("_total" if family.type == "counter" else ""): family.type
        for family in text_string_to_metric_families(text)
        if not family.name.endswith("_created")
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def start_loop(config: Path, tmp_path: Path, speedup: float) -> Running:
    """A server with its loop (not started yet) on a simulated clock from DAY, one day."""
    return start(
        ServeOptions(
            config=config, listen="127.0.0.1:0", db=tmp_path / "caps.sqlite", loop=True,
            dispatch=False, clock_start=DAY_START, speedup=speedup, days=1,
            out=tmp_path / "out", metrics="127.0.0.1:0",
        )
    )  # fmt: skip


def wait_health(client: CapClient, status: str, timeout_s: float) -> None:
    """Return once health answers ``status``; fail after ``timeout_s``."""
    began = time.monotonic()
    while client.health() != status:
        assert time.monotonic() - began < timeout_s, f"health not {status} in {timeout_s} s"
        time.sleep(0.02)


def test_health_goes_not_serving_while_the_loop_stalls(small_config, tmp_path):
    """NOT_SERVING before the loop has planned its day; SERVING once it runs; NOT_SERVING while
    a slot start waits on the planner's lock (as behind a long re-plan) for over a slot, and
    SERVING again once the loop has caught up."""
    running = start_loop(small_config, tmp_path, speedup=1440)  # a slot is 0.625 s
    assert running.metrics_port is not None
    try:
        with CapClient(f"127.0.0.1:{running.port}", timeout_s=10) as client:
            assert client.health() == "NOT_SERVING"
            assert client.health("greensched.v1.LoadCapService") == "NOT_SERVING"
            before = scrape(running.metrics_port)
            assert value(before, "greensched_ready") == 0
            assert ("greensched_loop_lag_seconds", frozenset()) not in before
            running.start_loop()
            wait_health(client, "SERVING", timeout_s=60)
            with running.planner.slot_start():  # the loop's next slot start waits for it
                wait_health(client, "NOT_SERVING", timeout_s=10)
                stalled = scrape(running.metrics_port)
                assert client.health("greensched.v1.LoadCapService") == "NOT_SERVING"
                time.sleep(0.5)
            wait_health(client, "SERVING", timeout_s=20)  # caught up
    finally:
        running.stop(0)
    assert value(stalled, "greensched_ready") == 0
    assert value(stalled, "greensched_loop_lag_seconds") > SLOT_S
    assert value(stalled, "greensched_slot_seconds") == SLOT_S


def test_a_day_counted_in_joules_adds_up_to_run_csv(small_config, tmp_path):
    """After a served day with a battery at each site (qingyang's charges on its wind,
    shantou's starts full and discharges in its morning deficit): per site the energy counters
    [J] are run.csv's MW x 900 s x 1e6 over the slots the loop ran (on a loaded machine it may
    join the day a slot or two in), stored green counted once, the slots and GPU time add up,
    the cap submitted is counted as answered in a batch."""
    data = yaml.safe_load(small_config.read_text())
    battery = {"p_nom": 5.0, "max_hours": 2.0, "efficiency_store": 0.95, "efficiency_dispatch": 0.9}
    data["sites"]["qingyang"]["storage"] = {"b": battery}
    data["sites"]["shantou"]["storage"] = {"b": {**battery, "state_of_charge_initial": 10.0}}
    config = tmp_path / "battery.yaml"
    config.write_text(yaml.safe_dump(data))
    running = start_loop(config, tmp_path, speedup=14400)
    assert running.metrics_port is not None
    try:
        running.start_loop()
        with CapClient(f"127.0.0.1:{running.port}") as client:
            noon = DAY_START + pd.Timedelta(hours=12)
            reply = client.submit("m-1", ["shantou"], [cap_interval(noon, 3 * 3600, 1.5, True)])
            assert running.thread is not None
            running.thread.join(120)
            assert not running.thread.is_alive(), "the day did not finish"
            plan = client.plan()
            report = client.report(
                ["qingyang", "shantou"], DAY_START, DAY_START + pd.Timedelta(days=1)
            )
        assert running.loop is not None
        first_run = running.loop.reports.rows[0].start
        text = metrics_text(running.metrics_port)
        samples = scrape(running.metrics_port)
    finally:
        running.stop(0)
    table = metrics_table()  # the README documents every metric, with its type
    absent = {*WITH_FORECAST_RUNS, "greensched_loop_lag_seconds"}  # the loop has returned
    assert exposed(text) == {k: v for k, v in table.items() if k not in absent}
    run = read_table(RUN, tmp_path / "out" / DAY / "run.csv")
    assert run["storage_charge_mw"].sum() > 0 and run["storage_discharge_mw"].sum() > 0
    # the report's STORAGE_* payloads are run.csv's storage columns, slot by slot
    booked = run.set_index(["site", "time"])
    assert len(report.slots) > 0
    for slot in report.slots:
        row = booked.loc[(slot.site, pd.Timestamp(slot.start.ToDatetime(), tz="UTC"))]
        assert slot.storage_charge_level_mwh == pytest.approx(row["soc_mwh"], abs=1e-9)
        assert slot.storage_charge_mw == pytest.approx(row["storage_charge_mw"], abs=1e-9)
        assert slot.storage_discharge_mw == pytest.approx(row["storage_discharge_mw"], abs=1e-9)
    assert first_run <= DAY_START + pd.Timedelta(hours=6)  # most of the day is compared
    for site, rows in run[run["time"] >= first_run].groupby("site"):
        expected_j = {
            "load": rows["load_mw"].sum(),
            "green_used": rows["green_used_mw"].sum(),
            "grid_import": rows["grid_mw"].sum(),
            "green_unused": (rows["green_mw"] - rows["green_used_mw"]
                             + rows["storage_discharge_mw"] - rows["storage_charge_mw"]).sum(),
        }  # fmt: skip
        for name, mw_slots in expected_j.items():
            got = value(samples, f"greensched_{name}_joules_total", site=site)
            assert got == pytest.approx(mw_slots * SLOT_S * 1e6, rel=1e-3, abs=1.0), (name, site)
        assert value(samples, "greensched_slots_total", site=site, basis="actual") == len(rows)
        gpu_s = rows["actual_gpus"].sum() * SLOT_S
        assert value(samples, "greensched_gpu_seconds_total", site=site) == gpu_s
        violations = (rows["cap_violation_mw"] > 1e-6).sum()
        assert value(samples, "greensched_cap_violations_total", site=site) == violations
    assert value(samples, "greensched_slot_start_timestamp_seconds") == (
        (DAY_START + pd.Timedelta(hours=23, minutes=45)).timestamp()
    )
    assert value(samples, "greensched_plan_version") == plan.version >= reply.plan_version
    assert value(samples, "greensched_cap_answer_seconds_count") == 1
    assert value(samples, "greensched_cap_batch_size_count") == 1
    assert value(samples, "greensched_replan_seconds_count") >= 1


def test_refused_requests_are_counted_by_method_and_code(small_config, tmp_path):
    running = start_server(small_config, tmp_path / "caps.sqlite", metrics="127.0.0.1:0")
    assert running.metrics_port is not None
    try:
        with CapClient(f"127.0.0.1:{running.port}") as client:
            assert client.health() == "SERVING"  # a plan-only service: nothing to keep pace
            evening = local("18:00")
            for k in range(2):
                with pytest.raises(grpc.RpcError) as unknown_site:
                    client.submit(f"bad-{k}", ["nowhere"], [cap_interval(evening, 3600, 5.0)])
                assert unknown_site.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.RpcError) as unknown_event:
                client.cancel("never-submitted")
            assert unknown_event.value.code() == grpc.StatusCode.NOT_FOUND
            reply = client.submit("ok-1", ["shantou"], [cap_interval(evening, 3600, 1.5, True)])
        samples = scrape(running.metrics_port)
    finally:
        running.stop(0)
    rejected = "greensched_rejected_requests_total"
    assert value(samples, rejected, method="SubmitLoadCap", code="INVALID_ARGUMENT") == 2
    assert value(samples, rejected, method="CancelLoadCap", code="NOT_FOUND") == 1
    assert value(samples, "greensched_cap_answer_seconds_count") == 1
    assert value(samples, "greensched_plan_version") == reply.plan_version
    assert value(samples, "greensched_caps_in_force") == 1
    assert value(samples, "greensched_ready") == 1
    assert ("greensched_loop_lag_seconds", frozenset()) not in samples  # no loop


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("9464", "error: --metrics '9464': expected HOST:PORT, e.g. 127.0.0.1:9464"),
        ("127.0.0.1:http", "error: --metrics '127.0.0.1:http': expected HOST:PORT, e.g."),
        ("127.0.0.1:70000", "error: --metrics '127.0.0.1:70000': expected HOST:PORT, e.g."),
    ],
)
def test_a_metrics_value_that_is_not_host_port_is_one_message(
    address, message, tmp_path, monkeypatch, capsys
):
    code, err = run_main(monkeypatch, capsys, "serve", "--metrics", address, "--listen",
                         "127.0.0.1:0", "--db", str(tmp_path / "caps.sqlite"))  # fmt: skip
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith(message)


def test_a_metrics_port_in_use_is_one_message(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = greensched("serve", "--metrics", f"127.0.0.1:{port}", "--listen", "127.0.0.1:0",
                            "--db", str(tmp_path / "caps.sqlite"), cwd=tmp_path,
                            timeout_s=120)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: --metrics 127.0.0.1:{port}: cannot listen there (is the port in use by another "
        "process?)"
    ]


def test_the_dashboard_and_the_rules_use_only_documented_metrics() -> None:
    deploy = README.parent / "deploy"
    dashboard = json.loads((deploy / "grafana" / "greensched.json").read_text())
    texts = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    texts.append((deploy / "prometheus" / "alerts.yml").read_text())
    used = {re.sub(r"_(bucket|sum|count)$", "", name)
            for text in texts for name in re.findall(r"greensched_\w+", text)}  # fmt: skip
    assert used - set(metrics_table()) == set()
    assert len(used) >= 25  # the dashboard shows nearly all of them
