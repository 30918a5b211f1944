"""Settle a plan against what actually happened: the caps hold, whatever the forecast said.

A plan made on a forecast can draw more from the grid than allowed when green supply comes in
below forecast. Settlement does what an operator's dispatcher does in that slot: it cuts busy
GPUs at that site until the import limit and every cap hold again, preemptible work first
(largest chunks first), and reports the work cut per job. Nothing is dropped silently: the cut
work is returned so the caller can carry it over.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scheduler.metrics import busy_gpus, slot_index
from scheduler.problem import Problem

__all__ = ["Settlement", "settle"]


@dataclass(frozen=True)
class Settlement:
    """The plan as it could run on actual supply, and what had to be cut.

    ``cut_gpu_hours`` is indexed by ``job_id`` (only jobs with work cut); ``cut_cells`` counts
    site-slots where work was cut.
    """

    plan: pd.DataFrame
    cut_gpu_hours: pd.Series
    cut_cells: int


def settle(problem: Problem, plan: pd.DataFrame) -> Settlement:
    """Cut ``plan`` so it fits the capacity that ``problem.actual_supply`` leaves under caps.

    ``problem.actual_supply`` must be set. Returns a plan with the same columns.
    """
    if problem.actual_supply is None:
        raise ValueError("settle needs problem.actual_supply (what really happened)")
    actual = problem.on_actual_supply()
    names = actual.site_names
    allowed = actual.capacity_gpus  # sites x slots, GPUs that fit under every cap
    busy = busy_gpus(plan, names, actual.horizon)
    excess = busy - allowed
    if not (excess > 0).any() or plan.empty:
        return Settlement(plan, pd.Series(dtype=float, name="cut_gpu_hours"), 0)

    settled = plan.copy()
    site_code = pd.Categorical(settled["site"], categories=names).codes
    slot = slot_index(settled["time"], actual.horizon)
    preemptible = (
        actual.jobs.set_index("job_id")["preemptible"].reindex(settled["job_id"]).to_numpy(bool)
    )
    gpus = settled["gpus"].to_numpy(dtype=np.int64).copy()
    cut = np.zeros(len(settled), dtype=np.int64)
    for site, time in zip(*np.nonzero(excess > 0), strict=True):
        rows = np.flatnonzero((site_code == site) & (slot == time))
        # preemptible first, then the largest chunks: fewest jobs touched
        rows = rows[np.lexsort((-gpus[rows], ~preemptible[rows]))]
        need = int(excess[site, time])
        for row in rows:
            take = min(need, gpus[row])
            gpus[row] -= take
            cut[row] += take
            need -= take
            if need == 0:
                break
    settled["gpus"] = gpus
    cut_units = pd.Series(cut, index=settled["job_id"]).groupby(level=0).sum()
    cut_units = cut_units[cut_units > 0]
    return Settlement(
        plan=settled[settled["gpus"] > 0].reset_index(drop=True),
        cut_gpu_hours=(cut_units * actual.slot_hours).rename("cut_gpu_hours"),
        cut_cells=int((excess > 0).sum()),
    )
