"""Tables shared by the cluster tests: the two default sites and small jobs."""

from __future__ import annotations

import pandas as pd

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
