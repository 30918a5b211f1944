"""The caps in force, by event, and the rules for changing an event.

A change is checked against what is stored of its event (:func:`check_modification`): an
identical resubmission replays the stored answer, an older or conflicting modification is
refused. An event whose caps all end before both the current time and the start of the planned
day can bind no plan any more: :meth:`CapBook.archive_ended` moves its caps to the store's
archive and out of the caps held in memory (at start-up, on a new day and before each batch).
It is still stored and listed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd

from scheduler.drivers.service.answers import SubmitAnswer
from scheduler.drivers.service.auth import Coordinator
from scheduler.drivers.service.batching import Change
from scheduler.drivers.service.events import CapEvent
from scheduler.drivers.service.store import CANCELLED, Store, StoredEvent
from scheduler.problem import LoadCap

__all__ = ["CapBook", "ConflictError", "check_modification", "flat", "visible_events"]

log = logging.getLogger(__name__)

Caps = dict[str, list[LoadCap]]  # the caps of each event in force, by event id


class ConflictError(Exception):
    """A modification that conflicts with the stored one (gRPC FAILED_PRECONDITION)."""


class CapBook:
    """The caps of the events in force (read from ``store`` at start), by event id."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.by_event: Caps = {}
        self._ends: dict[str, tuple[list[LoadCap], int]] = {}  # see _end_ns
        for event_id, cap in store.caps():
            self.by_event.setdefault(event_id, []).append(cap)

    def caps(self) -> list[LoadCap]:
        """Every cap in force."""
        return flat(self.by_event)

    def after(self, batch: Sequence[Change]) -> Caps:
        """The caps in force once ``batch`` is applied (not kept: see :meth:`commit`)."""
        caps = dict(self.by_event)
        for change in batch:
            if change.event is None:
                caps.pop(change.event_id, None)
            else:
                caps[change.event_id] = change.caps
        return caps

    def commit(self, caps: Caps) -> None:
        """``caps`` are in force from now (their batch is stored)."""
        self.by_event = caps

    def archive_ended(self, now: pd.Timestamp, day_start: pd.Timestamp) -> None:
        """Archive the events whose caps all end before ``now`` and before ``day_start``."""
        before = min(now, day_start)
        ended = [e for e, caps in self.by_event.items() if self._end_ns(e, caps) <= before.value]
        if ended:
            self._store.archive(ended, now)
            for event_id in ended:
                del self.by_event[event_id]
                self._ends.pop(event_id, None)
            log.info("archived %d event(s) that ended before %s", len(ended), before)

    def _end_ns(self, event_id: str, caps: list[LoadCap]) -> int:
        """When the last of an event's ``caps`` ends [ns since the epoch], kept while its list of
        caps is the same (checked before every batch, over every event in force)."""
        kept = self._ends.get(event_id)
        if kept is None or kept[0] is not caps:
            kept = (caps, max(cap.end.value for cap in caps))
            self._ends[event_id] = kept
        return kept[1]


def flat(caps: Caps) -> list[LoadCap]:
    return [cap for event_caps in caps.values() for cap in event_caps]


def check_modification(
    stored: StoredEvent, event: CapEvent, coordinator: Coordinator
) -> SubmitAnswer | None:
    """The stored answer for an identical resubmission; ``None`` for a newer modification.
    An event the caller may not see is a conflict that says nothing of it."""
    have, got = stored.event.modification_number, event.modification_number
    name = f"event {event.event_id!r}"
    if not coordinator.may_see(stored.event.targets):
        raise ConflictError(f"{name}: this event_id is taken; choose another")
    if stored.status == CANCELLED and got <= have:
        raise ConflictError(
            f"{name} was cancelled at modification_number {have}; "
            f"submit modification_number > {have} to activate it again"
        )
    if got == have:
        if stored.event.content_sha256 == event.content_sha256:
            return SubmitAnswer.from_dict(stored.answer, replayed=True)
        raise ConflictError(
            f"{name} modification_number {have} is stored with different content; "
            f"send modification_number {have + 1} to change it"
        )
    if got < have:
        raise ConflictError(
            f"{name} is at modification_number {have}; {got} is older and was not applied"
        )
    coordinator.require(stored.event.targets, "modify caps on")
    return None


def visible_events(
    store: Store,
    coordinator: Coordinator,
    sites: Sequence[str] = (),
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    include_cancelled: bool = False,
) -> list[StoredEvent]:
    """Stored events that target a site ``coordinator`` may read (and one of ``sites``, if
    given) with an interval overlapping ``[start, end)``."""
    out = []
    for stored in store.events(include_cancelled):
        targets = stored.event.targets
        if not coordinator.may_see(targets):
            continue
        if sites and not set(sites) & set(targets):
            continue
        if any(
            (start is None or i.end > start) and (end is None or i.start < end)
            for i in stored.event.intervals
        ):
            out.append(stored)
    return out
