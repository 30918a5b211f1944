"""Load-cap events (OpenADR-style) as plain dataclasses, and their validation into caps.

An event targets sites and carries intervals; every interval applies to every target, so an
event of ``T`` targets and ``I`` intervals becomes ``T * I`` :class:`~scheduler.problem.LoadCap`.
An interval is a limit [MW] (``IMPORT_CAPACITY_LIMIT``, ``LOAD_LIMIT``) or a ``PRICE``
[currency/MWh, the config's currency], carried in the same value field; an event holds one or
the other, not both (a price event).
The gRPC layer converts messages to these types and back; nothing here knows of gRPC.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property

import pandas as pd

from scheduler.config import Site
from scheduler.contracts import CapType
from scheduler.problem import LoadCap

__all__ = [
    "MAX_AHEAD_S",
    "MAX_CAP_FACTOR",
    "MAX_DURATION_S",
    "MAX_EVENT_ID_CHARS",
    "MAX_INTERVALS",
    "MAX_PRICE_PER_MWH",
    "MAX_PROGRAM_CHARS",
    "CapEvent",
    "CapInterval",
    "EventError",
    "event_caps",
]

MAX_INTERVALS = 96  # one day of 15-minute slots
MAX_EVENT_ID_CHARS = 128
MAX_PROGRAM_CHARS = 64
MAX_DURATION_S = 31 * 86400  # a month
MAX_AHEAD_S = 7 * 86400  # latest interval start after now: a week (day-ahead markets need 2)
MAX_CAP_FACTOR = 2.0  # a cap above this times max(full load, import limit) is a typo
MAX_PRICE_PER_MWH = 100_000.0  # a price above this is a typo (or a price per kWh x 1000)
_EVENT_ID = re.compile(r"[A-Za-z0-9._:-]+")


class EventError(ValueError):
    """An event that cannot be accepted; ``field`` names the request field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class CapInterval:
    """``value_mw`` of ``type`` from ``start`` (UTC) for ``duration_s`` seconds."""

    start: pd.Timestamp
    duration_s: float
    type: str
    value_mw: float

    @property
    def end(self) -> pd.Timestamp:
        return self.start + pd.Timedelta(seconds=self.duration_s)


@dataclass(frozen=True)
class CapEvent:
    """A coordinator's event: the idempotency key, its modification and what it caps (or, for
    a price event, what it prices)."""

    event_id: str
    modification_number: int
    program: str
    priority: int
    targets: tuple[str, ...]
    intervals: tuple[CapInterval, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        """Canonical JSON (times as ISO UTC); equal events give equal text."""
        return self._json

    @cached_property
    def _json(self) -> str:  # stored, hashed and compared on every submission: made once
        # shallow copies: asdict's deep copies of the timestamps cost ~0.2 ms an event
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["intervals"] = [
            {**vars(i), "start": pd.Timestamp(i.start).isoformat()} for i in self.intervals
        ]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> CapEvent:
        data = json.loads(text)
        intervals = tuple(
            CapInterval(pd.Timestamp(i["start"]), i["duration_s"], i["type"], i["value_mw"])
            for i in data.pop("intervals")
        )
        return cls(**{**data, "targets": tuple(data["targets"]), "intervals": intervals})

    @cached_property
    def content_sha256(self) -> str:
        """Hash of the canonical JSON: the identity of a resubmission."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @property
    def is_price(self) -> bool:
        """Whether the event prices its sites' grid energy rather than limiting their draw."""
        return any(i.type == CapType.PRICE for i in self.intervals)

    @property
    def start(self) -> pd.Timestamp:
        return min(i.start for i in self.intervals)

    @property
    def end(self) -> pd.Timestamp:
        return max(i.end for i in self.intervals)


def event_caps(event: CapEvent, sites: Mapping[str, Site], now: pd.Timestamp) -> list[LoadCap]:
    """Validate ``event`` against the known ``sites`` and the clock; return its caps.

    Raises :class:`EventError` naming the first bad field and what is allowed. Rules: event id
    of 1 to 128 characters ``[A-Za-z0-9._:-]``; program at most 64 characters; one or more
    distinct known targets; 1 to :data:`MAX_INTERVALS` intervals, in order of start and not
    overlapping, each with a known type, a positive duration of at most 31 days, an end after
    ``now``, a start at most :data:`MAX_AHEAD_S` (7 days) after ``now``, and a finite value at
    or above every target's base load (a site draws its base load whatever runs, even without
    wind or sun) and at most :data:`MAX_CAP_FACTOR` times the larger of its full load and its
    grid import limit. A ``PRICE`` interval's value is a price: finite, >= 0 and at most
    :data:`MAX_PRICE_PER_MWH` [currency/MWh]; an event's intervals are all prices or all limits.
    """
    if not event.event_id or len(event.event_id) > MAX_EVENT_ID_CHARS:
        raise EventError("event_id", f"must have 1 to {MAX_EVENT_ID_CHARS} characters")
    if not _EVENT_ID.fullmatch(event.event_id):
        raise EventError(
            "event_id", f"{event.event_id!r}: allowed characters are A-Z a-z 0-9 . _ : -"
        )
    if len(event.program) > MAX_PROGRAM_CHARS:
        raise EventError(
            "program", f"has {len(event.program)} characters; at most {MAX_PROGRAM_CHARS}"
        )
    if not event.targets:
        raise EventError(
            "targets", f"name at least one site; known sites: {', '.join(sorted(sites))}"
        )
    for k, target in enumerate(event.targets):
        if target not in sites:
            raise EventError(
                f"targets[{k}]",
                f"unknown site {target[:64]!r}; known sites: {', '.join(sorted(sites))}",
            )
    if len(set(event.targets)) != len(event.targets):
        raise EventError("targets", "names a site more than once")
    if not event.intervals:
        raise EventError("intervals", "at least one interval is needed")
    if len(event.intervals) > MAX_INTERVALS:
        raise EventError(
            "intervals", f"{len(event.intervals)} intervals; at most {MAX_INTERVALS} per event"
        )
    caps = []
    for k, interval in enumerate(event.intervals):
        where = f"intervals[{k}]"
        if interval.type not in tuple(CapType):
            raise EventError(f"{where}.type", f"{interval.type!r}; allowed: {', '.join(CapType)}")
        if not 0 < interval.duration_s <= MAX_DURATION_S:
            raise EventError(
                f"{where}.duration",
                f"{interval.duration_s:g} s; must be > 0 (end after start) and at most "
                f"{MAX_DURATION_S} s (31 days)",
            )
        if not interval.end > now:
            raise EventError(
                f"{where}",
                f"ends {interval.end.isoformat()}, in the past (now {now.isoformat()})",
            )
        latest = now + pd.Timedelta(seconds=MAX_AHEAD_S)
        if interval.start > latest:
            raise EventError(
                f"{where}.start",
                f"{interval.start.isoformat()} is more than {MAX_AHEAD_S // 86400} days ahead; "
                f"allowed up to {latest.isoformat()}",
            )
        if k and interval.start < event.intervals[k - 1].end:
            raise EventError(
                f"{where}.start",
                f"{interval.start.isoformat()} is before the end of intervals[{k - 1}] "
                f"({event.intervals[k - 1].end.isoformat()}); intervals must be in order of "
                "start and must not overlap",
            )
        if (interval.type == CapType.PRICE) != (event.intervals[0].type == CapType.PRICE):
            raise EventError(
                f"{where}.type",
                f"{interval.type} after {event.intervals[0].type} in intervals[0]; an event "
                "carries prices or limits, not both: send the prices as an event of their own",
            )
        if interval.type == CapType.PRICE:
            caps.extend(_price_caps(event, interval, where))
            continue
        if not math.isfinite(interval.value_mw) or interval.value_mw < 0:
            raise EventError(
                f"{where}.value_mw", f"{interval.value_mw}; must be a finite number >= 0 MW"
            )
        for target in event.targets:
            site = sites[target]
            base = site.base_load_mw
            most = MAX_CAP_FACTOR * max(site.full_load_mw, site.grid_import_limit_mw)
            if not base <= interval.value_mw <= most:
                raise EventError(
                    f"{where}.value_mw",
                    f"{interval.value_mw:g} MW is out of range for site {target!r}; allowed: "
                    f"{base:g} MW (its base load, drawn whatever runs) to {most:g} MW "
                    f"({MAX_CAP_FACTOR:g} x the larger of its full load and import limit)",
                )
            caps.append(
                LoadCap(
                    target,
                    interval.start,
                    interval.end,
                    CapType(interval.type),
                    interval.value_mw,
                    event.event_id,
                )
            )
    return caps


def _price_caps(event: CapEvent, interval: CapInterval, where: str) -> list[LoadCap]:
    """A ``PRICE`` interval's caps, one per target (its value a price [currency/MWh])."""
    price = interval.value_mw
    if not (math.isfinite(price) and 0 <= price <= MAX_PRICE_PER_MWH):
        raise EventError(
            f"{where}.value_mw",
            f"{price} is not a price this service takes; a PRICE interval's value is the "
            f"price per MWh: finite, >= 0 and at most {MAX_PRICE_PER_MWH:,.0f}",
        )
    return [
        LoadCap(target, interval.start, interval.end, CapType.PRICE, price, event.event_id)
        for target in event.targets
    ]
