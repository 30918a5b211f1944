"""Price events (OpenADR 3 PRICE) against a real server on 127.0.0.1 and the real solver: a
price at a site and window moves the cost-optimal plan's work out of the dear window and leaves
a carbon-optimal plan as it was; it is submitted, replayed, listed and cancelled as a cap is,
refused as a cap is (bad value, scope), and a dry run stores nothing. That an acknowledged price
survives a SIGKILL of the server is checked with the caps in test_crash.py (one server launch
costs about 20 s)."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import grpc
import pandas as pd
import pytest
import yaml

from scheduler.drivers.service.client import CapClient, cap_interval, pb, price_interval

from .conftest import DAY, TOKENS, local, start_server

DEAR = 50_000.0  # per MWh, over 100 x shantou's tariff of 450
WINDOW = (local("16:00"), local("19:00"))  # shantou draws most from the grid then
TARIFF = 450.0  # shantou's, configs/default.yaml
TABLES = ("events", "event_versions", "caps", "plan_versions", "audit")


@pytest.fixture(scope="module")
def cost_config(small_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small day planned on grid cost (solver.objective: cost)."""
    data = yaml.safe_load(small_config.read_text())
    data["solver"]["objective"] = "cost"
    path = tmp_path_factory.mktemp("cost") / "cost.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _dear_window() -> list:
    return [price_interval(WINDOW[0], (WINDOW[1] - WINDOW[0]).total_seconds(), DEAR)]


def _slots(plan) -> pd.DataFrame:
    return pd.DataFrame(
        [
            (s.site, pd.Timestamp(s.start.ToNanoseconds(), tz="UTC"), s.load_mw, s.grid_mw,
             s.price_per_mwh)
            for s in plan.slots
        ],
        columns=["site", "time", "load_mw", "grid_mw", "price_per_mwh"],
    )  # fmt: skip


def _in_window(slots: pd.DataFrame) -> pd.Series:
    return (slots["site"] == "shantou") & slots["time"].between(*WINDOW, inclusive="left")


def _rows(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as connection:
        return {t: connection.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


def _refused(call, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as error:
        call()
    assert error.value.code() == code, error.value.details()
    return error.value.details()


def _cli(port: int, *args: str) -> str:
    command = [sys.executable, "-m", "scheduler.drivers.service", "caps", *args,
               "--server", f"127.0.0.1:{port}"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_price_moves_the_cost_optimal_plan_out_of_the_dear_window(cost_config, tmp_path):
    db = tmp_path / "caps.sqlite"
    running = start_server(cost_config, db)
    try:
        with CapClient(f"127.0.0.1:{running.port}") as client:
            before = client.plan()
            old = _slots(before)
            window = _in_window(old)
            assert (old["price_per_mwh"][old["site"] == "shantou"] == TARIFF).all()
            old_grid_mwh = old["grid_mw"][window].sum() / 4
            assert old_grid_mwh > 1.0  # the window draws from the grid on the tariff

            # bad input: the value of a PRICE interval is a price, refused as a cap's value is
            good = _dear_window()[0]
            for value in (-1.0, math.nan, math.inf, 1e9):
                bad = pb.Interval(start=good.start, duration=good.duration, type=pb.PRICE,
                                  value_mw=value)  # fmt: skip
                details = _refused(lambda bad=bad: client.submit("bad", ["shantou"], [bad]),
                                   grpc.StatusCode.INVALID_ARGUMENT)  # fmt: skip
                assert "intervals[0].value_mw" in details and "price" in details
            later = cap_interval(WINDOW[1], 3600, 2.0)
            details = _refused(lambda: client.submit("mixed", ["shantou"], [good, later]),
                               grpc.StatusCode.INVALID_ARGUMENT)  # fmt: skip
            assert "intervals[1].type" in details
            details = _refused(lambda: client.submit("mars", ["marsbase"], [good]),
                               grpc.StatusCode.INVALID_ARGUMENT)  # fmt: skip
            assert "targets[0]" in details

            # a dry run answers and stores nothing
            stored = _rows(db)
            quoted = client.submit("tou-1", ["shantou"], _dear_window(), dry_run=True)
            assert quoted.opt == pb.OPT_IN and quoted.plan_version == before.version
            assert client.list() == [] and client.plan().version == before.version
            assert _rows(db) == stored

            reply = client.submit("tou-1", ["shantou"], _dear_window())
            assert reply.accepted and reply.opt == pb.OPT_IN and not reply.replayed
            assert reply.opt_reason.startswith("a price, not a limit")
            assert reply.cost.late_jobs_total == 0
            # the re-plan saves at the price now in force, as the dry run said it would
            assert reply.cost.grid_cost_change < 0
            assert reply.cost.grid_cost_change == pytest.approx(quoted.cost.grid_cost_change)
            after = client.plan()
            new = _slots(after)
            assert after.version == reply.plan_version > before.version and after.replanned
            assert (new["price_per_mwh"][window] == DEAR).all()
            assert (new["price_per_mwh"][~window & (new["site"] == "shantou")] == TARIFF).all()
            # work left the dear window: its grid energy fell by more than a fifth
            assert new["grid_mw"][window].sum() / 4 < 0.8 * old_grid_mwh
            assert after.caps_in_force == 0 and after.metrics.jobs_unfinished == 0

            # idempotent, listed (client and CLI), cancelled
            again = client.submit("tou-1", ["shantou"], _dear_window())
            assert again.replayed and again.plan_version == reply.plan_version
            (event,) = client.list()
            assert [(i.type, i.value_mw) for i in event.intervals] == [(pb.PRICE, DEAR)]
            listed = _cli(running.port, "list", "--timezone", "Asia/Shanghai")
            assert f"{DAY}T16:00:00+08:00 for 3 h: PRICE 50000 per MWh" in listed
            client.cancel("tou-1")
            back = _slots(client.plan())
            assert (back["price_per_mwh"][back["site"] == "shantou"] == TARIFF).all()
    finally:
        running.stop(0)


def test_a_price_leaves_the_carbon_optimal_plan_alone_and_keeps_to_scopes(auth_server):
    with (
        CapClient(f"127.0.0.1:{auth_server.port}", token=TOKENS["national"]) as national,
        CapClient(f"127.0.0.1:{auth_server.port}", token=TOKENS["guangdong"]) as guangdong,
    ):
        before = national.plan()
        # guangdong may cap and price shantou only
        details = _refused(
            lambda: guangdong.submit("gd-1", ["qingyang"], _dear_window()),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert "qingyang" in details
        reply = guangdong.submit("gd-1", ["shantou"], _dear_window())
        assert reply.opt == pb.OPT_IN and "carbon alone" in reply.opt_reason
        assert (reply.cost.moved_mwh, reply.cost.grid_cost_change) == (0.0, 0.0)
        after = national.plan()
        assert after.version == reply.plan_version == before.version + 1
        assert not after.replanned
        old, new = _slots(before), _slots(after)
        pd.testing.assert_series_equal(old["load_mw"], new["load_mw"])  # the very same plan
        window = _in_window(new)
        assert (new["price_per_mwh"][window] == DEAR).all()
        assert (old["price_per_mwh"][window] == TARIFF).all()
    # the CLI gives a price with --price in place of --max-grid-mw
    said = _cli(auth_server.port, "submit", "--token", TOKENS["guangdong"], "--site", "shantou",
                "--start", f"{DAY}T20:00+08:00", "--duration", "1h", "--price", "900",
                "--dry-run")  # fmt: skip
    assert "dry run (nothing stored), would be OPT_IN" in said and "a price, not a limit" in said
