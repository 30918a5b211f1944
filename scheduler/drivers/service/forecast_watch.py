"""The control plane follows the weather model runs.

While ``serve`` runs a day, :class:`ForecastWatcher` looks for new runs every
``forecast.nwp.poll_minutes`` of the loop's clock, off the loop's thread: a directory of runs is
scanned again (a run dropped in is found) and a newly published run read, within
``timeout_s``. A new run makes the planner plan the work left again on it, through the same
re-plan the loop's timer uses; the loop takes the new plan at its next slot boundary. The feed
follows (:attr:`~forecasts.nwp.feed.RunFeed.follow`), so no slot boundary ever waits for a read.
A failed look or read, or one that takes too long, keeps the last good run: a warning says why
and how old the runs in use are, and :attr:`ForecastWatcher.failures` counts it.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import pandas as pd

from forecasts.nwp.feed import RunFeed
from forecasts.nwp.source import RunRef
from forecasts.weather import ForecastSourceError
from scheduler.clock import Clock
from scheduler.drivers.service.planner import Planner

__all__ = ["ForecastWatcher"]

log = logging.getLogger(__name__)


class ForecastWatcher:
    """Follows ``feed``'s sources every ``poll`` of ``clock`` time (module doc); a new run
    re-plans through ``planner``."""

    def __init__(
        self, feed: RunFeed, planner: Planner, clock: Clock, *, poll: pd.Timedelta,
        timeout_s: float = 60.0,
    ) -> None:  # fmt: skip
        self.feed = feed
        self.planner = planner
        self.clock = clock
        self.poll_every = poll
        self.timeout_s = timeout_s
        self.failures = 0
        self.polls = 0  # polls begun
        self.found_at: dict[RunRef, int] = {}  # each run read: the poll that found it
        self.last_error: str | None = None
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="greensched-forecast-read")
        self._reading: Future | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        feed.follow = True

    def start(self) -> None:
        """Poll in a thread of its own until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="greensched-forecasts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._reader.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.wait(max(self.clock.real_seconds(self.poll_every), 0.05)):
            self.poll()

    def poll(self) -> list[RunRef]:
        """Look for runs published by now and read the new ones; re-plan when one came. The
        runs read (none after a failure, which keeps the runs in use)."""
        now = self.clock.now()
        self.polls += 1
        if self._reading is not None and not self._reading.done():
            self._failed(now, f"a read is still running after {self.timeout_s:g} s")
            return []
        self._reading = self._reader.submit(self.feed.update, now)
        try:
            new = self._reading.result(timeout=self.timeout_s)
        except FutureTimeout:
            self._failed(now, f"no answer within {self.timeout_s:g} s")
            return []
        except ForecastSourceError as error:
            self._failed(now, str(error))
            return []
        self.found_at.update(dict.fromkeys(new, self.polls))
        if new:
            runs = ", ".join(f"{ref.model} issued {ref.issued_at:%Y-%m-%d %H:%M}Z" for ref in new)
            log.info("%s: new forecast run(s): %s; re-planning the work left", now, runs)
            self.last_error = None
            self.planner.forecast_changed(f"new forecast run ({runs})")
        return new

    def ages_h(self, now: pd.Timestamp) -> dict[str, float]:
        """Per site, the age of the run in use at ``now`` (now minus its issue time) [h]."""
        return {
            site: (now - ref.issued_at) / pd.Timedelta(hours=1)
            for site, ref in self.feed.in_use(now).items()
        }

    def _failed(self, now: pd.Timestamp, why: str) -> None:
        self.failures += 1
        self.last_error = why
        ages = ", ".join(f"{site} {age:.1f} h old" for site, age in self.ages_h(now).items())
        log.warning(
            "%s: forecast runs not updated (%s); planning on the last good run(s): %s",
            now, why, ages or "none read yet",
        )  # fmt: skip
