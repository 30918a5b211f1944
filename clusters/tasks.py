"""One plan chunk (job, site, slot, GPUs) as a Ray task pinned to its site's resource."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from functools import cache, lru_cache
from typing import Any

import msgpack
import pandas as pd
import ray

from clusters.resources import DEFAULT_GPUS_PER_UNIT, gpus_to_units, site_resource
from clusters.workload import DEFAULT_TOKENS_PER_REAL_TOKEN, real_tokens, tiny_decoder
from scheduler.contracts.chunks import Chunk

__all__ = [
    "ChunkRecord",
    "ChunkRunner",
    "ChunkWork",
    "TaskSettings",
    "chunk_seed",
    "run_chunk",
]


@dataclass(frozen=True)
class TaskSettings:
    """How chunks become Ray tasks.

    ``gpus_per_unit`` scales GPUs to site-resource units; ``num_cpus`` is the CPU share each task
    asks for [CPU]; ``tokens_per_real_token`` is planned tokens per token really generated.
    """

    gpus_per_unit: float = DEFAULT_GPUS_PER_UNIT
    num_cpus: float = 0.25
    tokens_per_real_token: float = DEFAULT_TOKENS_PER_REAL_TOKEN

    def resources(self, chunk: Chunk) -> dict[str, float]:
        """Custom resources the chunk's task requests: ``{"site:<name>": units}``."""
        return {site_resource(chunk.site): gpus_to_units(chunk.gpus, self.gpus_per_unit)}


@dataclass(frozen=True)
class ChunkRecord:
    """What a chunk's task did: tokens, wall time [s], where it ran and what it held."""

    tokens_real: int
    tokens_accounted: float
    wall_s: float
    started_unix_s: float
    node_id: str
    assigned_resources: dict[str, float]

    def to_bytes(self) -> bytes:
        """The record's fields, in order, packed with msgpack (what a task returns: Ray hands
        bytes over as they are, without its own serialization around them)."""
        return msgpack.packb(
            [
                self.tokens_real,
                self.tokens_accounted,
                self.wall_s,
                self.started_unix_s,
                self.node_id,
                self.assigned_resources,
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ChunkRecord:
        """The record of :meth:`to_bytes` (what ``ray.get`` of a chunk task returns)."""
        return cls(*msgpack.unpackb(data))


def run_chunk(chunk: Chunk, tokens_per_real_token: float, seed: int) -> ChunkRecord:
    """Generate the chunk's real tokens with the decoder and account its planned tokens."""
    started = time.time()
    t0 = time.perf_counter()
    tokens = chunk.tokens_accounted
    n_real = real_tokens(tokens, tokens_per_real_token)
    generated = tiny_decoder().generate(n_real, seed)
    return ChunkRecord(
        tokens_real=len(generated),
        tokens_accounted=tokens,
        wall_s=time.perf_counter() - t0,
        started_unix_s=started,
        node_id=_node_id(),
        assigned_resources=dict(ray.get_runtime_context().get_assigned_resources()),
    )


@cache
def _node_id() -> str:
    """The Ray node this worker process runs on (it never moves)."""
    return ray.get_runtime_context().get_node_id()


def chunk_seed(chunk: Chunk, attempt: int) -> int:
    """A seed fixed by job, site, slot and attempt, so reruns generate the same tokens."""
    key = f"{chunk.job_id}|{chunk.site}|{_isoformat(chunk.time, chunk.time.tz)}|{attempt}"
    return zlib.crc32(key.encode())


@lru_cache(maxsize=256)
def _utc(time_ns: int) -> pd.Timestamp:
    """The UTC time ``time_ns`` ns after the epoch; a worker runs many chunks of a slot."""
    return pd.Timestamp(time_ns, tz=UTC)


@lru_cache(maxsize=256)
def _isoformat(time: pd.Timestamp, tz: object) -> str:
    """``time.isoformat()``, once per slot start (it costs more than the rest of the seed);
    ``tz`` is part of the key: equal instants in two zones print differently."""
    return time.isoformat()


ChunkWork = Callable[[Chunk, float, int], ChunkRecord]
"""What a task runs: ``(chunk, tokens_per_real_token, seed) -> ChunkRecord``."""


def _chunk_task(work: ChunkWork) -> Callable[[bytes], bytes]:
    """The task body: rebuild the chunk from its packed fields, run ``work`` on it, and return
    its record packed (:meth:`ChunkRecord.to_bytes`).

    A chunk travels as a msgpack list of plain values (``job_id, site, time as UTC ns, gpus,
    slot_minutes, tokens_per_gpu_hour, tokens_per_real_token, seed``) and its record comes back
    as one. Pickling a :class:`Chunk` (with its timestamp) and a :class:`ChunkRecord` cost more
    than the task's decoder token; Ray's own packing of plain lists still cost about 5 % of
    dispatch throughput more than bytes, which it hands over as they are.
    """

    def chunk_task(data: bytes) -> bytes:
        job_id, site, time_ns, gpus, slot_minutes, tokens_per_gpu_hour, scale, seed = (
            msgpack.unpackb(data)
        )
        chunk = Chunk(job_id, site, _utc(time_ns), gpus, slot_minutes, tokens_per_gpu_hour)
        return work(chunk, scale, seed).to_bytes()

    return chunk_task


@lru_cache(maxsize=16)
def _remote_chunk_task(work: ChunkWork) -> Any:
    """The Ray remote function of ``work``'s task body, made once per process (not once per
    runner): each new one is exported to the cluster and fetched by every worker before its
    first task."""
    return ray.remote(max_retries=0)(_chunk_task(work))


_MAX_OPTIONS = 1024  # options wrappers a ChunkRunner keeps (one per site and chunk size)


class ChunkRunner:
    """Submits chunks as Ray tasks pinned to their site's resource.

    ``work`` is the function each task runs (default :func:`run_chunk`; tests inject failing
    ones). Ray's own retries are off (``max_retries=0``): the dispatcher counts attempts and
    decides whether a failure is the task's (retry) or the site's (re-plan). Ray's task events
    (its state API and dashboard task list) are off: greensched reports each attempt itself
    (``RayRunner.attempts``), and recording them cost about 6 % of dispatch throughput.
    """

    def __init__(self, settings: TaskSettings = TaskSettings(), work: ChunkWork = run_chunk):
        self.settings = settings
        self._remote = _remote_chunk_task(work)
        # one options wrapper per (site, GPUs): building it costs more than submitting
        self._options: dict[tuple[str, int], Any] = {}

    def submit(self, chunk: Chunk, attempt: int = 0) -> ray.ObjectRef:
        """Start ``chunk`` (attempt number ``attempt``); return the ref of its packed record
        (``ChunkRecord.from_bytes(ray.get(ref))`` is the record)."""
        remote = self._options.get((chunk.site, chunk.gpus))
        if remote is None:
            if len(self._options) >= _MAX_OPTIONS:  # a long night of varied chunk sizes
                self._options.clear()
            resources = self.settings.resources(chunk)
            remote = self._remote.options(
                num_cpus=self.settings.num_cpus, resources=resources, enable_task_events=False
            )
            self._options[chunk.site, chunk.gpus] = remote
        fields = [
            chunk.job_id,
            chunk.site,
            chunk.time.value,
            chunk.gpus,
            chunk.slot_minutes,
            chunk.tokens_per_gpu_hour,
            self.settings.tokens_per_real_token,
            chunk_seed(chunk, attempt),
        ]
        return remote.remote(msgpack.packb(fields))
