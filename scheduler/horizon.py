"""Operating days and slots: UTC inside, the sites' zone for what a user calls a date."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import pandas as pd

__all__ = ["Horizon", "operating_day", "tomorrow"]


@dataclass(frozen=True)
class Horizon:
    """``n_slots`` slots of ``slot_minutes`` from ``start`` (UTC, tz-aware)."""

    start: pd.Timestamp
    slot_minutes: int
    n_slots: int

    @property
    def end(self) -> pd.Timestamp:
        """End of the last slot (exclusive), UTC."""
        return self.start + pd.Timedelta(minutes=self.slot_minutes * self.n_slots)

    @property
    def slot_hours(self) -> float:
        """Slot length [h]."""
        return self.slot_minutes / 60.0

    @cached_property
    def times(self) -> pd.DatetimeIndex:
        """Slot starts, UTC."""
        return pd.date_range(self.start, periods=self.n_slots, freq=f"{self.slot_minutes}min")


def operating_day(
    date: dt.date | str, timezone: str, slot_minutes: int = 15, days: int = 1
) -> Horizon:
    """The horizon of operating day(s) ``date`` from 00:00 to 24:00 local time in ``timezone``.

    For Asia/Shanghai the first slot of 2026-11-29 starts at 2026-11-28 16:00 UTC.
    """
    day = pd.Timestamp(date)
    if day.tzinfo is not None or day != day.normalize():
        raise ValueError(f"--date wants a calendar date like 2026-11-29, got {date!r}")
    start = day.tz_localize(timezone).tz_convert("UTC")
    end = (day + pd.Timedelta(days=days)).tz_localize(timezone).tz_convert("UTC")
    n_slots = int((end - start) / pd.Timedelta(minutes=slot_minutes))
    return Horizon(start=start, slot_minutes=slot_minutes, n_slots=n_slots)


def tomorrow(timezone: str, now: pd.Timestamp | None = None) -> dt.date:
    """The next operating day in ``timezone`` (what the nightly run plans)."""
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    return (now.tz_convert(timezone) + pd.Timedelta(days=1)).date()
