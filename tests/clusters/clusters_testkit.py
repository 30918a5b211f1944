"""Tables shared by the cluster tests: the two default sites and small jobs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
from ray import cloudpickle

from clusters.tasks import ChunkRecord, run_chunk

# Ray workers cannot import test modules: ship this module's functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SITES_GPUS = {"qingyang": 16000, "shantou": 8000}
GPUS_PER_UNIT = 1000
T0 = pd.Timestamp("2026-11-28 16:00", tz="UTC")  # first slot of operating day 2026-11-29


def sites_table() -> pd.DataFrame:
    """The two default sites' load and grid terms."""
    return pd.DataFrame(
        {
            "site": ["qingyang", "shantou"],
            "gpus": [16000, 8000],
            "kw_per_gpu": [1.2, 1.2],
            "pue": [1.15, 1.3],
            "base_load_mw": [1.5, 1.0],
            "grid_import_limit_mw": [20.0, 12.0],
        }
    )


def job_row(job_id: str, gpu_hours: float, max_gpus: int, sites: str = "", **kw) -> dict:
    """A jobs-table row over the first ``window_h`` hours (default 6) of the day."""
    window_h = kw.pop("window_h", 6)
    return {
        "job_id": job_id,
        "gpu_hours": gpu_hours,
        "max_gpus": max_gpus,
        "release": T0,
        "deadline": T0 + pd.Timedelta(hours=window_h),
        "sites": sites,
        "preemptible": kw.pop("preemptible", True),
        "tokens": kw.pop("tokens", gpu_hours * 5e6),
    }


def raises_for_bad(chunk, tokens_per_real_token, seed) -> ChunkRecord:
    """Chunk work that raises for job ``bad`` and runs the decoder otherwise."""
    if chunk.job_id == "bad":
        raise ValueError(f"model weights for {chunk.job_id} are corrupt")
    return run_chunk(chunk, tokens_per_real_token, seed)


def raises_once(chunk, tokens_per_real_token, seed) -> ChunkRecord:
    """Chunk work that raises the first time (``job_id`` is a marker file path), then runs."""
    marker = Path(chunk.job_id)
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("transient")
    return run_chunk(chunk, tokens_per_real_token, seed)


def slow_at_shantou(chunk, tokens_per_real_token, seed) -> ChunkRecord:
    """Chunk work that takes 3 s longer at shantou (so its node can die mid-task)."""
    if chunk.site == "shantou":
        time.sleep(3.0)
    return run_chunk(chunk, tokens_per_real_token, seed)
