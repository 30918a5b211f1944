"""GetFlexibility: per slot the planned load, the shed floor and the absorb ceiling, and the cost
of shedding, against a real server on 127.0.0.1 and the real solver; checked by submitting the
caps it quotes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pandas as pd
import pytest

from scheduler.drivers.service.client import CapClient, cap_interval, pb
from scheduler.drivers.service.server import Running

from .conftest import HORIZON, TOKENS, local, start_server, write_tokens

TABLES = ("events", "event_versions", "caps", "plan_versions", "audit")
MW_PER_GPU = {"qingyang": 1.2 * 1.15 / 1000, "shantou": 1.2 * 1.3 / 1000}
BASE_MW = {"qingyang": 1.5, "shantou": 1.0}
SLOT_S = 900
# one qingyang job that needs 14,000 of the 16,000 GPU-slots its hour allows at its max_gpus
# (4 slots x 4,000): whichever slot is shed, the other three take 12,000 at most, so that slot
# keeps 2,000 GPUs (the floor); work elsewhere fits around it
TIGHT_START, TIGHT_GPUS, TIGHT_FLOOR_GPUS = local("10:00"), 4000, 2000


def _jobs(path: Path) -> Path:
    """The tight job, wide preemptible work anywhere and shantou's non-preemptible blocks."""
    day_start, day_end = HORIZON.start, HORIZON.end
    rows = [("tight", 3500.0, TIGHT_GPUS, TIGHT_START, TIGHT_START + pd.Timedelta(hours=1),
             "qingyang", True)]  # fmt: skip
    rows += [(f"wide-{k}", 1500.0, 600, day_start, day_end, "", True) for k in range(6)]
    rows += [
        (f"block-{k}", 300.0, 300, local(f"{8 + 3 * k:02d}:00"),
         local(f"{8 + 3 * k:02d}:00") + pd.Timedelta(hours=4), "shantou", False)
        for k in range(3)
    ]  # fmt: skip
    frame = pd.DataFrame(
        rows, columns=["job_id", "gpu_hours", "max_gpus", "release", "deadline", "sites",
                       "preemptible"],
    )  # fmt: skip
    for column in ("release", "deadline"):
        frame[column] = frame[column].map(lambda t: t.tz_convert("UTC").isoformat())
    frame.to_csv(path, index=False)
    return path


def _rows(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as connection:
        return {t: connection.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


def _metrics(db: Path, version: int) -> dict:
    with sqlite3.connect(db) as connection:
        text = connection.execute(
            "SELECT metrics_json FROM plan_versions WHERE version = ?", (version,)
        ).fetchone()[0]
    return json.loads(text)


def _settled(running: Running, timeout_s: float = 60) -> None:
    """Wait until no optimisation waits or runs in the background."""
    deadline = time.monotonic() + timeout_s
    while running.planner.background.pending:
        assert time.monotonic() < deadline, "the background optimisation did not settle"
        time.sleep(0.05)


def _site(quote: pb.Flexibility, name: str) -> pb.SiteFlexibility:
    return next(site for site in quote.sites if site.site == name)


def _start(slot: pb.FlexibilitySlot) -> pd.Timestamp:
    return pd.Timestamp(slot.start.ToNanoseconds(), tz="UTC")


def _load_limits(slots, caps_mw) -> list[pb.Interval]:
    return [
        cap_interval(_start(slot), SLOT_S, mw, load_limit=True)
        for slot, mw in zip(slots, caps_mw, strict=True)
    ]


@pytest.fixture(scope="module")
def tight(small_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One server on the tight day for the tests that only read; tokens: see write_tokens."""
    directory = tmp_path_factory.mktemp("flexibility")
    running = start_server(
        small_config, directory / "caps.sqlite", jobs=_jobs(directory / "jobs.csv"),
        auth=write_tokens(directory / "tokens.yaml"),
    )  # fmt: skip
    _settled(running)
    yield running
    running.stop(0)


@pytest.fixture(scope="module")
def national(tight: Running) -> Iterator[CapClient]:
    with CapClient(f"127.0.0.1:{tight.port}", token=TOKENS["national"]) as client:
        yield client


def test_floor_baseline_ceiling_per_slot_and_nothing_stored(tight: Running, national: CapClient):
    version, stored = national.plan().version, _rows(tight.store.path)
    quote = national.flexibility()
    assert quote.plan_version == version and quote.slot_minutes == 15
    assert [site.site for site in quote.sites] == ["qingyang", "shantou"]
    plan = national.plan()
    load = {(s.site, s.start.ToNanoseconds()): s.load_mw for s in plan.slots}
    for site in quote.sites:
        assert len(site.slots) == 96  # the whole day: the clock is the day before
        for slot in site.slots:
            assert slot.floor_mw <= slot.baseline_mw + 1e-9 <= slot.ceiling_mw + 2e-9
            assert slot.floor_mw >= BASE_MW[site.site] - 1e-9
            assert slot.baseline_mw == pytest.approx(load[(site.site, slot.start.ToNanoseconds())])
    # the tight hour: 2,000 GPUs stay in each slot, exactly
    tight_slots = [s for s in _site(quote, "qingyang").slots if TIGHT_START <= _start(s)
                   < TIGHT_START + pd.Timedelta(hours=1)]  # fmt: skip
    floor = BASE_MW["qingyang"] + TIGHT_FLOOR_GPUS * MW_PER_GPU["qingyang"]
    assert [s.floor_mw for s in tight_slots] == pytest.approx([floor] * 4)
    # a quote stores, plans and publishes nothing
    assert national.plan().version == version and national.list() == []
    assert _rows(tight.store.path) == stored


def test_a_full_hour_sheds_nothing_on_time_and_its_levels_make_work_late(national: CapClient):
    """The tight hour holds exactly the 14,000 GPU-slots its job needs (4,000 + 4,000 + 2,000 +
    4,000 as planned): any shed in every slot leaves work late, so the largest on-time shed is
    0 and the default levels (of the shed down to base load) are all OPT_OUT; asked levels are
    costed as asked."""
    hour = (TIGHT_START, TIGHT_START + pd.Timedelta(hours=1))
    site = _site(national.flexibility(["qingyang"], *hour), "qingyang")
    assert site.largest_on_time_shed_mw == 0
    deepest = max(s.baseline_mw for s in site.slots) - BASE_MW["qingyang"]
    assert [c.shed_mw for c in site.shed_costs] == pytest.approx(
        [share * deepest for share in (0.25, 0.5, 0.75, 1.0)]
    )
    assert all(c.opt == pb.OPT_OUT and c.late_gpu_hours > 0 for c in site.shed_costs)
    asked = _site(national.flexibility(["qingyang"], *hour, [0.0, 5.0]), "qingyang")
    none, deep = asked.shed_costs
    assert none.opt == pb.OPT_IN and none.late_gpu_hours == 0 and none.extra_co2_kg == 0
    assert deep.shed_mw == 5.0 and deep.opt == pb.OPT_OUT and deep.provisional
    assert deep.cap_mw == pytest.approx([max(s.baseline_mw - 5.0, BASE_MW["qingyang"])
                                         for s in asked.slots])  # fmt: skip
    assert deep.shed_mwh == pytest.approx(
        sum(s.baseline_mw - c for s, c in zip(asked.slots, deep.cap_mw, strict=True)) / 4
    )


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code(), error.value.details()


def test_bad_input_and_scopes(tight: Running, national: CapClient):
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    code, details = _code(lambda: national.flexibility(["marsbase"]))
    assert code == invalid and details.startswith("sites[0]: unknown site 'marsbase'")
    later, earlier = local("13:00"), local("10:00")
    code, details = _code(lambda: national.flexibility(["qingyang"], later, earlier))
    assert code == invalid and details.startswith("to: ") and "must be after from" in details
    code, details = _code(lambda: national.flexibility([], HORIZON.end, None))
    assert code == invalid and details.startswith("from: ")
    code, details = _code(lambda: national.flexibility([], None, None, [5.0, -1.0]))
    assert code == invalid and details.startswith("shed_levels_mw[1]: -1.0")
    with CapClient(f"127.0.0.1:{tight.port}", token=TOKENS["guangdong"]) as guangdong:
        code, details = _code(lambda: guangdong.flexibility(["qingyang"]))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "qingyang" in details
        assert [site.site for site in guangdong.flexibility().sites] == ["shantou"]
    with CapClient(f"127.0.0.1:{tight.port}") as anonymous:
        assert _code(anonymous.flexibility)[0] == grpc.StatusCode.UNAUTHENTICATED


def test_a_cap_at_the_floor_keeps_every_job_and_one_gpu_below_does_not(
    small_config: Path, tmp_path: Path
):
    """On the tight day: a cap at the quoted floor of a slot of the tight hour is OPT_IN; one
    GPU below it is OPT_OUT, and the optimizer's plan that follows leaves that work late too."""
    running = start_server(small_config, tmp_path / "caps.sqlite", jobs=_jobs(tmp_path / "j.csv"))
    try:
        with CapClient(f"127.0.0.1:{running.port}") as client:
            _settled(running)
            slot = _site(client.flexibility(["qingyang"], TIGHT_START), "qingyang").slots[1]
            assert slot.floor_mw < slot.baseline_mw  # 10:15: the plan runs more than it must
            at = client.submit("floor", ["qingyang"], _load_limits([slot], [slot.floor_mw]))
            assert at.opt == pb.OPT_IN, at.opt_reason
            below = [slot.floor_mw - MW_PER_GPU["qingyang"]]
            lower = client.submit("floor", ["qingyang"], _load_limits([slot], below), 1)
            assert lower.opt == pb.OPT_OUT and lower.cost.late_gpu_hours >= SLOT_S / 3600
            _settled(running)
            assert client.plan().metrics.unfinished_gpu_hours >= SLOT_S / 3600
    finally:
        running.stop(0)


def test_the_largest_shed_on_time_applied_as_quoted_costs_what_was_quoted(
    server: Running, client: CapClient, tmp_path: Path
):
    """The day of 40 jobs, qingyang 12:00-15:00: the largest shed quoted with every job on time,
    submitted as the quote's caps, is OPT_IN and its extra CO2, cost and grid energy are the
    quote's (within 5 %)."""
    _settled(server)
    quote = client.flexibility(["qingyang"], local("12:00"), local("15:00"))
    site = _site(quote, "qingyang")
    assert len(site.slots) == 12 and [c.shed_mw for c in site.shed_costs] == pytest.approx(
        [share * site.largest_on_time_shed_mw for share in (0.25, 0.5, 0.75, 1.0)]
    )
    largest = site.shed_costs[-1]
    assert largest.opt == pb.OPT_IN and largest.late_gpu_hours == 0 and not largest.provisional
    assert largest.extra_co2_kg > 100  # work leaves green hours: a cost worth comparing
    before = _metrics(server.store.path, quote.plan_version)
    real = client.submit("shed", ["qingyang"], _load_limits(site.slots, largest.cap_mw))
    assert real.opt == pb.OPT_IN and real.plan_version == quote.plan_version + 1
    after = _metrics(server.store.path, real.plan_version)
    assert (after["co2_t"] - before["co2_t"]) * 1000 == pytest.approx(
        largest.extra_co2_kg, rel=0.05
    )
    assert after["cost"] - before["cost"] == pytest.approx(largest.extra_cost, rel=0.05)
    assert real.cost.grid_mwh_change == pytest.approx(largest.grid_mwh_change, rel=0.05)


FLEXIBILITY = [sys.executable, "-m", "scheduler.drivers.service", "caps", "flexibility"]


@pytest.mark.slow
def test_the_cli_prints_the_quote_and_refuses_a_bad_site(tight: Running, tmp_path: Path):
    common = ["--server", f"127.0.0.1:{tight.port}", "--token", TOKENS["national"]]
    plot = tmp_path / "flex" / "quote.png"
    shown = subprocess.run(
        [*FLEXIBILITY, *common, "--site", "qingyang", "--from", "2026-11-30T10:00+08:00",
         "--to", "2026-11-30T13:00+08:00", "--levels", "0.5,1", "--timezone", "Asia/Shanghai",
         "--plot", str(plot)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "shed floor MW" in shown.stdout and "absorb ceiling MW" in shown.stdout
    assert "2026-11-30T10:00:00+08:00" in shown.stdout and "OPT_" in shown.stdout
    assert plot.stat().st_size > 10_000
    bad = subprocess.run(
        [*FLEXIBILITY, *common, "--site", "marsbase"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert (
        bad.stderr.strip().splitlines() == [bad.stderr.strip()]
        and "INVALID_ARGUMENT: sites[0]: unknown site 'marsbase'" in bad.stderr
    )
