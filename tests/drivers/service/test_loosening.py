"""A cancel (or any change that loosens the caps) gives the room back within seconds, also when
it comes right after start-up, before the control loop's first slot: the plan a caller sees
runs the work again instead of keeping the capped shape until the loop's hourly re-plan (real
server on 127.0.0.1, real SQLite, the loop on a clock running at wall-clock speed)."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from scheduler.drivers.service.client import CapClient, cap_interval, pb
from scheduler.drivers.service.server import ServeOptions, start

from .conftest import TIMEZONE

DAY = "2026-06-21"
DAY_START = pd.Timestamp(DAY).tz_localize(TIMEZONE).tz_convert("UTC")
SLOT = pd.Timedelta(minutes=15)
ROOM_BACK_S = 10.0  # the longest the plan may keep the cancelled cap's shape [s]


def test_a_cancel_right_after_start_up_gives_the_room_back(small_config: Path, tmp_path: Path):
    # speedup 1: the loop's next slot boundary and its hourly re-plan lie far beyond the test
    options = ServeOptions(
        config=small_config, listen="127.0.0.1:0", db=tmp_path / "caps.sqlite", loop=True,
        dispatch=False, clock_start=DAY_START, speedup=1.0, days=1, out=tmp_path / "out",
    )  # fmt: skip
    running = start(options)
    try:
        uncapped = running.planner.current
        assert uncapped.metrics.jobs_unfinished == 0  # the whole day fits without a cap
        with CapClient(f"127.0.0.1:{running.port}") as client:
            # 2 MW of load all day on both sites: 0.5 and 1 MW above their base loads
            whole_day = [cap_interval(DAY_START, 24 * 3600, 2.0, load_limit=True)]
            reply = client.submit("impossible", ["qingyang", "shantou"], whole_day)
            assert reply.opt == pb.OPT_OUT and reply.cost.late_jobs_total > 0
            assert client.cancel("impossible", "a mistake").cancelled
            running.start_loop()  # its first slot begins at once, before anything is optimised
            deadline = time.monotonic() + ROOM_BACK_S
            plan = client.plan()
            while plan.caps_in_force or plan.metrics.jobs_unfinished:
                assert time.monotonic() < deadline, (
                    f"plan version {plan.version} ({plan.reason}) still leaves "
                    f"{plan.metrics.jobs_unfinished} job(s) unfinished {ROOM_BACK_S} s after "
                    "the cap was cancelled"
                )
                time.sleep(0.1)
                plan = client.plan()
        # still in the first slot: neither a slot boundary nor the loop's re-plan gave it back
        assert running.loop is not None and running.loop.clock.now() < DAY_START + SLOT
        assert plan.metrics.unfinished_gpu_hours == 0
    finally:
        running.stop(0)
