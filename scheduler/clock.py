"""Clocks a day is walked on: real time, compressed time, or instant (replays, tests).

All share one interface: ``now()`` is the plan time (UTC, tz-aware), ``sleep_until(t)`` blocks
until the plan time reaches ``t`` (returns at once when it already has), and
``real_seconds(duration)`` converts a plan duration to wall-clock seconds.
"""

from __future__ import annotations

import time
from typing import Protocol

import pandas as pd

__all__ = ["Clock", "CompressedClock", "InstantClock", "RealClock"]


class Clock(Protocol):
    """What the settlement engine needs from a clock; ``start`` starts a simulated clock from
    its anchor (a no-op for the wall clock and for a clock already running)."""

    def start(self) -> None: ...

    def now(self) -> pd.Timestamp: ...

    def sleep_until(self, t: pd.Timestamp) -> None: ...

    def real_seconds(self, duration: pd.Timedelta) -> float: ...


class RealClock:
    """Wall-clock UTC: a night planned for tomorrow waits until tomorrow."""

    def start(self) -> None:
        """Nothing to do: the wall clock runs by itself."""

    def now(self) -> pd.Timestamp:
        return pd.Timestamp.now(tz="UTC")

    def sleep_until(self, t: pd.Timestamp) -> None:
        wait_s = (t - self.now()).total_seconds()
        if wait_s > 0:
            time.sleep(wait_s)

    def real_seconds(self, duration: pd.Timedelta) -> float:
        return duration.total_seconds()


class CompressedClock:
    """Plan time running ``speedup`` times faster than the wall clock.

    Plan time stands at its anchor until it starts, then runs from there: ``start`` starts it
    (a loop that took a while to prepare its first day does not find the first slots already
    past, and nobody who read the time meanwhile sees it go back); without an anchor given,
    the first ``sleep_until`` anchors and starts it, so the first slot starts at once and 24 h
    at ``speedup=1440`` take 60 s.
    """

    def __init__(self, speedup: float, start: pd.Timestamp | None = None) -> None:
        if not speedup > 0:
            raise ValueError(
                f"speedup must be > 0 (1 = real time, 1440 = a day per minute), got {speedup}"
            )
        self.speedup = float(speedup)
        self._plan_start = start
        self._real_start: float | None = None  # wall time [s, monotonic] when plan time started

    def start(self) -> None:
        """Plan time runs from now on (from the anchor); a clock already running runs on."""
        if self._real_start is None:
            self._real_start = time.monotonic()

    def _anchor(self, t: pd.Timestamp) -> None:
        if self._plan_start is None:
            self._plan_start = t
        self.start()

    def now(self) -> pd.Timestamp:
        if self._plan_start is None:
            raise RuntimeError("CompressedClock has no anchor yet: call sleep_until(first slot)")
        if self._real_start is None:
            return self._plan_start
        elapsed_s = (time.monotonic() - self._real_start) * self.speedup
        return self._plan_start + pd.Timedelta(seconds=elapsed_s)

    def sleep_until(self, t: pd.Timestamp) -> None:
        self._anchor(t)
        wait_s = (t - self.now()).total_seconds() / self.speedup
        if wait_s > 0:
            time.sleep(wait_s)

    def real_seconds(self, duration: pd.Timedelta) -> float:
        return duration.total_seconds() / self.speedup


class InstantClock:
    """Plan time that jumps to each slot at once (tests, benchmarks, replays)."""

    def __init__(self) -> None:
        self._now: pd.Timestamp | None = None

    def start(self) -> None:
        """Nothing to do: instant time moves only with ``sleep_until``."""

    def now(self) -> pd.Timestamp:
        if self._now is None:
            raise RuntimeError("InstantClock has no time yet: call sleep_until(first slot)")
        return self._now

    def sleep_until(self, t: pd.Timestamp) -> None:
        if self._now is None or t > self._now:
            self._now = t

    def real_seconds(self, duration: pd.Timedelta) -> float:
        return 0.0
