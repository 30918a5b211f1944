"""What the settlement engine hands a runner and what comes back: chunks and their outcomes.

A chunk is ``gpus`` GPUs of one job at one site for one slot. A runner (``clusters/`` on Ray,
or nothing in a replay) runs a slot's chunks and answers each with a :class:`ChunkOutcome`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pandas as pd

__all__ = ["Chunk", "ChunkOutcome", "ChunkStatus"]


@dataclass(frozen=True)
class Chunk:
    """``gpus`` GPUs of job ``job_id`` at ``site`` for the slot starting at ``time`` (UTC)."""

    job_id: str
    site: str
    time: pd.Timestamp
    gpus: int
    slot_minutes: int
    tokens_per_gpu_hour: float

    @property
    def gpu_hours(self) -> float:
        """Work in the chunk [GPU-h]."""
        return self.gpus * self.slot_minutes / 60.0

    @property
    def tokens_accounted(self) -> float:
        """Tokens the chunk stands for in the plan: GPU-hours x tokens per GPU-hour [token]."""
        return self.gpu_hours * self.tokens_per_gpu_hour


class ChunkStatus(StrEnum):
    """How a chunk ended."""

    OK = "ok"  # ran to completion: its work counts
    FAILED = "failed"  # raised on every attempt: its job fails
    LOST = "lost"  # the system lost it (node died, timeout): its work is carried


@dataclass(frozen=True)
class ChunkOutcome:
    """A runner's answer for one chunk; ``retried`` holds the errors of attempts that were
    retried (empty when the first attempt ended it)."""

    chunk: Chunk
    status: ChunkStatus
    error: str = ""
    tokens_real: int = 0
    retried: tuple[str, ...] = ()
