"""Driver: the whole system in one run (``greensched demo``, what ``make run`` shows).

The control plane (gRPC API, planning loop, dispatch on an embedded Ray) runs one operating
day on a simulated clock; in the middle of the day a grid coordinator's client submits a load
cap for shantou over gRPC on 127.0.0.1, two hours ahead; the loop re-plans the work left, the
Ray tasks keep the cap from its first slot, and the day's run tables show it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scheduler.contracts.plandir import RunReport
from scheduler.drivers.service.client import CapClient, cap_interval, pb
from scheduler.drivers.service.server import ServeOptions, start

__all__ = ["DemoResult", "run_demo"]

CAP_SITE = "shantou"
CAP_AT_HOUR = 10  # local hour at which the coordinator submits [h]
CAP_LEAD = pd.Timedelta(hours=2)  # the cap starts this long after it is submitted
CAP_HOURS = 4  # and lasts this long [h]


@dataclass(frozen=True)
class DemoResult:
    """The day the demo ran, the cap and the answer it got, and what ran."""

    day: str
    directory: Path
    cap_start: pd.Timestamp
    cap_end: pd.Timestamp
    cap_mw: float
    answer: str
    report: RunReport

    @property
    def capped_slots(self) -> pd.DataFrame:
        """The run table's rows of the capped site inside the cap's window."""
        run = self.report.site_slots
        inside = (run["time"] >= self.cap_start) & (run["time"] < self.cap_end)
        return run[inside & (run["site"] == CAP_SITE)]


def run_demo(
    day: str,
    out: Path,
    *,
    speedup: float = 720.0,
    config: Path | None = None,
    progress: Callable[[pd.Timestamp], None] | None = None,
) -> DemoResult:
    """Run operating day ``day`` on the control plane at ``speedup`` with a mid-day cap."""
    out.mkdir(parents=True, exist_ok=True)
    db = out / "demo.sqlite"
    for stale in out.glob("demo.sqlite*"):
        stale.unlink()
    running = start(
        ServeOptions(
            config=config, listen="127.0.0.1:0", db=db, loop=True, dispatch=True,
            clock_start=pd.Timestamp(day).tz_localize("Asia/Shanghai").tz_convert("UTC"),
            speedup=speedup, days=1, out=out,
        )
    )  # fmt: skip
    assert running.loop is not None and running.thread is None
    loop = running.loop
    timezone = loop.config.timezone
    submit_at = pd.Timestamp(day).tz_localize(timezone) + pd.Timedelta(hours=CAP_AT_HOUR)
    try:
        thread = running.start_loop()
        while loop.clock.now() < submit_at and thread.is_alive():
            if progress is not None:
                progress(loop.clock.now())
            time.sleep(0.2)
        cap_start = (loop.clock.now() + CAP_LEAD).ceil("15min")
        cap_end = cap_start + pd.Timedelta(hours=CAP_HOURS)
        base_mw = loop.config.sites[CAP_SITE].base_load_mw
        cap_mw = _binding_load_cap(running.planner.current.site_load, base_mw, cap_start, cap_end)
        with CapClient(f"127.0.0.1:{running.port}") as client:
            reply = client.submit(
                "demo-afternoon", [CAP_SITE],
                [cap_interval(cap_start, CAP_HOURS * 3600, cap_mw, load_limit=True)],
            )  # fmt: skip
        answer = f"{pb.Opt.Name(reply.opt)}: {reply.opt_reason}"
        while thread.is_alive():
            if progress is not None:
                progress(loop.clock.now())
            thread.join(0.2)
    finally:
        running.stop(0)
    done = loop.done[-1]
    return DemoResult(day, done.directory, cap_start, cap_end, cap_mw, answer, done.report)


def _binding_load_cap(
    load: pd.DataFrame, base_mw: float, start: pd.Timestamp, end: pd.Timestamp
) -> float:
    """A load limit halfway between the site's base load and its planned peak in the window
    (at least 0.5 MW above base load) [MW]."""
    here = load[(load["site"] == CAP_SITE) & (load["time"] >= start) & (load["time"] < end)]
    peak_mw = float(here["load_mw"].max()) if len(here) else base_mw
    return round(base_mw + max(0.5 * (peak_mw - base_mw), 0.5), 2)
