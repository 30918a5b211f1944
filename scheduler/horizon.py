"""Operating days and slots: UTC inside, the sites' zone for what a user calls a date."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from functools import cached_property

import pandas as pd

__all__ = ["Horizon", "iso_day", "iso_time", "operating_day", "rows_in", "time_zone", "tomorrow"]


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


def rows_in(frame: pd.DataFrame, horizon: Horizon) -> pd.DataFrame:
    """The rows of a table with a ``time`` column (slot starts, UTC) inside ``horizon``."""
    times = pd.DatetimeIndex(frame["time"])
    keep = (times >= horizon.start) & (times < horizon.end)
    return frame.iloc[keep.nonzero()[0]].reset_index(drop=True)


def operating_day(
    date: dt.date | str, timezone: str, slot_minutes: int = 15, days: int = 1
) -> Horizon:
    """The horizon of operating day(s) ``date`` from 00:00 to 24:00 local time in ``timezone``.

    For Asia/Shanghai the first slot of 2026-11-29 starts at 2026-11-28 16:00 UTC.
    """
    day = pd.Timestamp(iso_day(date) if isinstance(date, str) else date)
    if day.tzinfo is not None or day != day.normalize():
        raise ValueError(f"{date!r} is not a calendar date like 2026-11-29")
    start = day.tz_localize(timezone).tz_convert("UTC")
    end = (day + pd.Timedelta(days=days)).tz_localize(timezone).tz_convert("UTC")
    n_slots = int((end - start) / pd.Timedelta(minutes=slot_minutes))
    return Horizon(start=start, slot_minutes=slot_minutes, n_slots=n_slots)


def iso_day(text: str) -> dt.date:
    """The calendar day ``text`` in ISO 8601 (``2026-11-29``); raises ``ValueError`` saying so
    for anything else (``12/10/2026`` is October to some and December to others)."""
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a day in ISO 8601: give YYYY-MM-DD, e.g. 2026-11-29 (other forms "
            "are ambiguous: 12/10/2026 is October to some, December to others)"
        ) from None


def iso_time(text: str) -> pd.Timestamp:
    """The instant ``text`` in ISO 8601 with a UTC offset (``2026-11-29T18:00+08:00``, ``...Z``),
    as UTC; raises ``ValueError`` saying so for anything else (a time without an offset is a
    different instant at each site)."""
    try:
        time = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        time = None
    if time is None or time.tzinfo is None:
        raise ValueError(
            f"{text!r} is not a time in ISO 8601 with an offset: give e.g. "
            "2026-11-29T18:00+08:00 or 2026-11-29T10:00Z"
        )
    return pd.Timestamp(time).tz_convert("UTC")


def time_zone(name: str) -> str:
    """``name`` if it is an IANA time zone (``Asia/Shanghai``); raises ``ValueError`` otherwise."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not a time zone: give an IANA name, e.g. Asia/Shanghai"
        ) from None
    return name


def tomorrow(timezone: str, now: pd.Timestamp | None = None) -> dt.date:
    """The next operating day in ``timezone`` (what the nightly run plans)."""
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    return (now.tz_convert(timezone) + pd.Timedelta(days=1)).date()
