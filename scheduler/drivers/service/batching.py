"""Changes queued from the server's threads, planned by one thread in batches.

One planner thread takes every change queued so far as one batch and hands it to ``apply``
(which plans once under the caps after the whole batch, commits it and returns each change's
answer). Changes that arrive while a batch is planned go into the next batch, so N caps
arriving together cost about two plans, not N. A change for an event that has a change queued
or being planned waits for it (:meth:`Batcher.unqueued`), so modification numbers apply in
order. Between batches the thread drives the background optimisation.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import pandas as pd

from scheduler.drivers.service import background
from scheduler.drivers.service.auth import Coordinator
from scheduler.drivers.service.background import BackgroundOptimiser
from scheduler.drivers.service.events import CapEvent
from scheduler.problem import LoadCap

__all__ = ["Batcher", "Change", "batch_reason"]

_GATHER_SHARE = 0.25  # of a batch's time, waited for more changes before the next batch [-]
_GATHER_MAX_S = 0.05  # the longest such wait [s]
_ARRIVING_MAX_S = 0.005  # the longest a batch waits for changes already arriving [s]
_NAMED_IN_REASON = 10  # event ids a batch's reason names


@dataclass
class Change:
    """A submission (``event`` set) or a cancellation, queued for the planner thread."""

    event_id: str
    coordinator: Coordinator
    at: pd.Timestamp  # received [UTC]
    event: CapEvent | None = None
    caps: list[LoadCap] = field(default_factory=list)
    reason: str = ""  # a cancellation's reason
    modification_number: int = 0  # a cancellation: the event's current modification
    done: Future = field(default_factory=Future)


Apply = Callable[[list[Change]], Sequence[object]]
"""``apply(batch)``: plan and commit ``batch``; each change's answer, in order."""


class Batcher:
    """The queue of changes and the planner thread that applies them in batches (module
    docstring); between batches it steps ``optimiser``. :meth:`close` stops the thread once
    the changes queued are answered."""

    def __init__(self, apply: Apply, optimiser: BackgroundOptimiser) -> None:
        self._apply = apply
        self._optimiser = optimiser
        self._changed = threading.Condition()  # guards the four below
        self._waiting: list[Change] = []  # for the next batch
        self._queued: set[str] = set()  # event ids with a change waiting or being planned
        self._arriving = 0  # changes announced (:meth:`arriving`) and not yet queued
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="greensched-planner", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Announce a change on its way (a server's call being checked, before it is queued):
        a batch about to start waits for it, at most :data:`_ARRIVING_MAX_S`, so that changes
        sent together after a quiet spell are planned together rather than the first alone. A
        lone change waits for nothing."""
        with self._changed:
            self._arriving += 1
        try:
            yield
        finally:
            with self._changed:
                self._arriving -= 1
                self._changed.notify_all()

    @contextlib.contextmanager
    def unqueued(self, event_id: str) -> Iterator[None]:
        """Hold the queue once no change of ``event_id`` is queued or being planned: what is
        stored of it is then final until :meth:`put` queues the next change."""
        with self._changed:
            self._changed.wait_for(lambda: event_id not in self._queued)
            yield

    def put(self, change: Change) -> Future:
        """Queue ``change``; the future gives its answer once its batch is committed."""
        with self._changed:
            self._queued.add(change.event_id)
            self._waiting.append(change)
            self._changed.notify_all()
        return change.done

    def wake(self) -> None:
        """Wake the planner thread (a background optimisation ended)."""
        with self._changed:
            self._changed.notify_all()

    def close(self) -> None:
        """Answer the changes queued, then stop the planner thread."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()

    def _work(self) -> None:
        """The planner thread: every change waiting becomes one batch. After answering a batch
        it waits a little (:data:`_GATHER_SHARE` of the batch's time, at most
        :data:`_GATHER_MAX_S`, or until as many more changes wait as it answered): the callers
        just answered may be sending their next change, which then joins the next batch instead
        of waiting for a whole plan after it."""
        optimiser = self._optimiser
        while True:
            with self._changed:
                self._changed.wait_for(
                    lambda: self._waiting or self._closing or optimiser.ready(),
                    timeout=background.POLISH_IDLE_S if optimiser.pending else None,
                )
                if not self._waiting and self._closing:
                    return
                if self._waiting:  # and more on their way: they join this batch
                    self._changed.wait_for(
                        lambda: not self._arriving or self._closing, _ARRIVING_MAX_S
                    )
                taken, self._waiting = self._waiting, []
            if not taken or optimiser.ready() or optimiser.overdue():
                optimiser.step()  # quiet, the background plan is ready, or changes never stop
            if taken:
                began = time.perf_counter()
                self._answer(taken)
                share = _GATHER_SHARE * (time.perf_counter() - began)
                self._gather(len(taken), min(_GATHER_MAX_S, share))

    def _answer(self, taken: list[Change]) -> None:
        """Apply the changes not cancelled by their callers and answer each."""
        batch = [c for c in taken if c.done.set_running_or_notify_cancel()]
        results: list[object]
        try:
            results = list(self._apply(batch)) if batch else []
        except Exception as error:  # answered to each caller (INTERNAL, logged there)
            results = [error] * len(batch)
        with self._changed:
            self._queued.difference_update(c.event_id for c in taken)
            self._changed.notify_all()
        for change, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                change.done.set_exception(result)
            else:
                change.done.set_result(result)

    def _gather(self, changes: int, timeout_s: float) -> None:
        """Wait until ``changes`` more changes wait for the next batch than wait now (those
        arrived meanwhile come from other callers), at most ``timeout_s``."""
        with self._changed:
            target = len(self._waiting) + changes
            self._changed.wait_for(lambda: len(self._waiting) >= target or self._closing, timeout_s)


def batch_reason(batch: Sequence[Change]) -> str:
    """``"submit a, b; cancel c"`` (the first word says what kind, for readers who may not see
    the ids), naming at most a few ids."""
    parts = []
    for kind, ids in (
        ("submit", [c.event_id for c in batch if c.event is not None]),
        ("cancel", [c.event_id for c in batch if c.event is None]),
    ):
        if ids:
            more = len(ids) - _NAMED_IN_REASON
            parts.append(f"{kind} {', '.join(ids[:_NAMED_IN_REASON])}"
                         + (f" and {more} more" if more > 0 else ""))  # fmt: skip
    return "; ".join(parts)
