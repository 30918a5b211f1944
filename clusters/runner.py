"""Run a slot's chunks on Ray: one task per chunk, pinned to its site's resource.

:class:`RayRunner` is the runner the settlement engine (``scheduler.settlement``) hands each
slot's chunks to. It submits them as Ray tasks holding ``site:<name>`` units, waits until the
slot's deadline, retries a task that raises up to ``max_retries`` times, and answers each chunk:
``ok``, ``failed`` (raised on every attempt, with the error) or ``lost`` (a node died, a worker
crashed, or the deadline passed). It decides nothing about what runs: the engine does.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import ray
from ray.exceptions import GetTimeoutError, RayTaskError

from clusters.resources import site_capacity_units
from clusters.tasks import ChunkRecord, ChunkRunner, ChunkWork, TaskSettings, run_chunk
from scheduler.contracts.chunks import Chunk, ChunkOutcome, ChunkStatus

__all__ = ["ATTEMPT_COLUMNS", "RayRunner"]

log = logging.getLogger(__name__)

ATTEMPT_COLUMNS = [
    "job_id", "site", "time", "gpus", "attempt", "outcome", "error", "node_id", "site_units",
    "wall_s", "delay_s", "tokens_real", "tokens_accounted",
]  # fmt: skip


@dataclass
class _Attempt:
    index: int
    chunk: Chunk
    attempt: int
    ref: ray.ObjectRef
    errors: tuple[str, ...] = ()


@ray.remote(max_retries=0)
def _warm() -> int:
    """A task that holds its worker a moment, so that a batch of them starts one worker each;
    the worker's process id."""
    time.sleep(0.2)
    return os.getpid()


def error_text(error: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message`` of the task's own exception, at most ``limit`` chars."""
    cause = getattr(error, "cause", None)
    shown = cause if isinstance(cause, BaseException) else error
    lines = str(shown).strip().splitlines()
    text = f"{type(shown).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RayRunner:
    """Runs chunks as Ray tasks on the connected cluster.

    ``site_gpus`` bounds each site's capacity (GPUs); ``settings`` says how GPUs become
    resource units and what each task asks for; ``work`` is what each task runs (tests inject
    failing work).
    """

    def __init__(
        self,
        site_gpus: Mapping[str, int],
        settings: TaskSettings | None = None,
        *,
        max_retries: int = 2,
        work: ChunkWork = run_chunk,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.site_gpus = dict(site_gpus)
        self.settings = settings if settings is not None else TaskSettings()
        self.max_retries = max_retries
        self._tasks = ChunkRunner(self.settings, work)
        self._rows: list[dict[str, object]] = []

    def capacity_gpus(self) -> dict[str, float]:
        """GPUs each site can run now: its resource units on the cluster, at most its GPUs."""
        units = site_capacity_units(list(self.site_gpus))
        return {
            s: min(float(g), units[s] * self.settings.gpus_per_unit)
            for s, g in self.site_gpus.items()
        }

    def warm_up(self) -> int:
        """Start the workers a slot's tasks run on (as many as fit the cluster's CPUs at each
        task's CPU share) with this package loaded in each, so the first slots do not wait for
        workers to start; returns how many workers ran them."""
        share = self.settings.num_cpus
        tasks = max(int(float(ray.cluster_resources().get("CPU", 0.0)) / share), 1)
        return len(set(ray.get([_warm.options(num_cpus=share).remote() for _ in range(tasks)])))

    def attempts(self) -> pd.DataFrame:
        """One row per task attempt so far (columns :data:`ATTEMPT_COLUMNS`)."""
        return pd.DataFrame(self._rows, columns=ATTEMPT_COLUMNS)

    def run_slot(self, chunks: Sequence[Chunk], timeout_s: float) -> list[ChunkOutcome]:
        """Run ``chunks`` until done or ``timeout_s`` passes; one outcome per chunk, in order."""
        woke_unix_s = time.time()
        deadline = time.monotonic() + timeout_s
        outcomes: list[ChunkOutcome | None] = [None] * len(chunks)
        pending = {}
        for index, chunk in enumerate(chunks):
            attempt = _Attempt(index, chunk, 0, self._tasks.submit(chunk, 0))
            pending[attempt.ref] = attempt
        while pending:
            # wait for the whole batch (one call, not one per task), up to the slot's deadline
            ready, _ = ray.wait(
                list(pending),
                num_returns=len(pending),
                timeout=max(0.0, deadline - time.monotonic()),
            )
            if not ready:
                for attempt in pending.values():
                    ray.cancel(attempt.ref, force=True)
                    text = f"timed out after {timeout_s:g} s"
                    self._row(attempt, "timeout", None, woke_unix_s, text)
                    outcomes[attempt.index] = ChunkOutcome(
                        attempt.chunk, ChunkStatus.LOST, text, retried=attempt.errors
                    )
                break
            try:  # one call for the batch; when one of them failed, each is asked below
                values: list[bytes] | None = ray.get(ready, timeout=0)
            except (ray.exceptions.RayError, GetTimeoutError):
                values = None
            for i, ref in enumerate(ready):
                attempt = pending.pop(ref)
                value = values[i] if values is not None else None
                retry = self._settle(attempt, value, woke_unix_s, outcomes)
                if retry is not None:
                    pending[retry.ref] = retry
        return [o for o in outcomes if o is not None]

    def _settle(
        self,
        attempt: _Attempt,
        value: bytes | None,
        woke_unix_s: float,
        outcomes: list[ChunkOutcome | None],
    ) -> _Attempt | None:
        """Book one finished attempt into ``outcomes`` (``value``: what its task returned, when
        already fetched); the retry to wait for, if any."""
        try:
            if value is None:
                value = ray.get(attempt.ref, timeout=0)
            record = ChunkRecord.from_bytes(value)
        except RayTaskError as error:
            text = error_text(error)
            self._row(attempt, "error", None, woke_unix_s, text)
            if attempt.attempt < self.max_retries:
                return _Attempt(
                    attempt.index,
                    attempt.chunk,
                    attempt.attempt + 1,
                    self._tasks.submit(attempt.chunk, attempt.attempt + 1),
                    (*attempt.errors, text),
                )
            outcomes[attempt.index] = ChunkOutcome(
                attempt.chunk, ChunkStatus.FAILED, text, retried=attempt.errors
            )
        except (ray.exceptions.RayError, GetTimeoutError) as error:
            text = error_text(error)
            self._row(attempt, "lost", None, woke_unix_s, text)
            outcomes[attempt.index] = ChunkOutcome(
                attempt.chunk, ChunkStatus.LOST, text, retried=attempt.errors
            )
        else:
            self._row(attempt, "ok", record, woke_unix_s)
            outcomes[attempt.index] = ChunkOutcome(
                attempt.chunk, ChunkStatus.OK, tokens_real=record.tokens_real,
                retried=attempt.errors,
            )  # fmt: skip
        return None

    def _row(
        self,
        attempt: _Attempt,
        outcome: str,
        record: ChunkRecord | None,
        woke_unix_s: float,
        error: str = "",
    ) -> None:
        chunk = attempt.chunk
        self._rows.append(
            {
                "job_id": chunk.job_id,
                "site": chunk.site,
                "time": chunk.time,
                "gpus": chunk.gpus,
                "attempt": attempt.attempt,
                "outcome": outcome,
                "error": error,
                "node_id": record.node_id if record else "",
                "site_units": (
                    record.assigned_resources.get(f"site:{chunk.site}", 0.0) if record else 0.0
                ),
                "wall_s": record.wall_s if record else float("nan"),
                "delay_s": (
                    record.started_unix_s - woke_unix_s
                    if record and attempt.attempt == 0
                    else float("nan")
                ),
                "tokens_real": record.tokens_real if record else 0,
                "tokens_accounted": chunk.tokens_accounted if record else 0.0,
            }
        )
