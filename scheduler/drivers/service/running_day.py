"""The operating day planned, and while the control loop runs it, the work left.

Before the loop starts a day, a plan covers the whole day (``state`` is ``None``). While it
runs, the loop sets :attr:`RunningDay.state` (where the day stands: work left per job from the
next slot boundary, each site's load in the slot before), and every plan covers only that work,
from that time, on the forecast vintage issued then (``forecast_at``; the day's own forecast
without it). The problem of the work left is made once per state and forecast, and given the
caps of each batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pandas as pd

from scheduler.drivers.service.versions import ForecastAt
from scheduler.horizon import Horizon
from scheduler.problem import LoadCap, Problem
from scheduler.replan import RunState, rest_of_day

__all__ = ["RunningDay"]


class RunningDay:
    """The operating day ``day`` (a problem without caps) and where it stands (``state``)."""

    def __init__(self, day: Problem, forecast_at: ForecastAt | None = None) -> None:
        self.day = day
        self.state: RunState | None = None
        self._forecast_at = forecast_at
        self._vintage: tuple[Horizon, pd.Timestamp, pd.DataFrame] | None = None
        self._rest: tuple[Problem, RunState, Problem] | None = None  # the work left, no caps

    def start(self, day: Problem) -> None:
        """A new operating day, planned from its start."""
        self.day, self.state = day, None

    @property
    def from_time(self) -> pd.Timestamp | None:
        """Where the running day stands (``None``: no loop runs it; the whole day)."""
        state = self.state
        return None if state is None else state.from_time

    def forget_forecast(self) -> None:
        """A fresher forecast was issued: the next problem is made on it."""
        self._vintage = None
        self._rest = None

    def problem(self, caps: Sequence[LoadCap]) -> Problem:
        """The day with ``caps``; while the day runs, only the work left from ``state``."""
        state = self.state
        if state is None:
            return self.day.with_caps(caps)
        if self._rest is None or self._rest[0] is not self.day or self._rest[1] is not state:
            day = self.day
            vintage = None
            if self._forecast_at is not None:
                vintage = self._vintage_at(day.horizon, state.from_time)
            rest = rest_of_day(day, state, vintage)
            rest = rest if rest is not None else replace(day, jobs=day.jobs.iloc[:0])
            self._rest = (self.day, state, rest)  # the same jobs for every batch until then
        return self._rest[2].with_caps(caps)

    def _vintage_at(self, horizon: Horizon, issued_at: pd.Timestamp) -> pd.DataFrame:
        """The day's forecast as issued at ``issued_at`` (kept for the next change at the same
        moment)."""
        if self._vintage is None or self._vintage[:2] != (horizon, issued_at):
            assert self._forecast_at is not None
            self._vintage = (horizon, issued_at, self._forecast_at(horizon, issued_at))
        return self._vintage[2]
