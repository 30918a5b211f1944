"""The plan a settlement walks, as rows in slot order, and the plans that replaced it.

:class:`PlanCursor` keeps the plan's rows as arrays (job, site, slot and GPUs of each row, and
the first row of each slot) so a slot's work is a slice; a re-plan replaces the rows from the
slot it takes over at, and the rows of slots already run stay as they are. The plan table is put
together only when read (:attr:`PlanCursor.plan`), not at every re-plan.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scheduler.labels import label_index
from scheduler.metrics import slot_index
from scheduler.problem import Problem
from scheduler.settlement.state import Chunks

__all__ = ["PlanCursor"]


class PlanCursor:
    """``plan`` (a canonical plan table) over ``problem``'s jobs, sites and slots.

    ``job``, ``site``, ``slot`` and ``gpus`` are the rows in slot order; ``ptr[t]`` is the first
    row of slot ``t``. Rules may lower ``gpus`` of later rows (work brought forward)."""

    job: np.ndarray
    site: np.ndarray
    slot: np.ndarray
    gpus: np.ndarray
    ptr: np.ndarray

    def __init__(self, problem: Problem, plan: pd.DataFrame) -> None:
        self.problem = problem
        self._plans = [(plan, 0)]  # each plan handed in and the slot it took over at
        self._set(plan, 0)

    @property
    def plan(self) -> pd.DataFrame:
        """The plan walked: the first plan, and each re-plan's rows from the slot it took over
        at until a later one took over (a plan table)."""
        if len(self._plans) > 1:
            horizon = self.problem.horizon
            starts = [start for _, start in self._plans]
            ends = np.minimum.accumulate([*starts[1:], horizon.n_slots][::-1])[::-1]
            parts = []
            for (table, start), end in zip(self._plans, ends.tolist(), strict=True):
                slot = slot_index(table["time"], horizon)
                parts.append(table.iloc[np.flatnonzero((slot >= start) & (slot < end))])
            self._plans = [(pd.concat(parts, ignore_index=True), 0)]
        return self._plans[0][0]

    def replace(self, plan: pd.DataFrame, first: int) -> None:
        """Walk ``plan``'s rows from slot ``first`` on; the rows of earlier slots stay."""
        self._plans.append((plan, first))
        self._set(plan, first)

    def reset(self, plan: pd.DataFrame) -> None:
        """Walk ``plan`` (the whole day, e.g. a plan with a lost site's rows dropped)."""
        self._plans = [(plan, 0)]
        self._set(plan, 0)

    def _set(self, plan: pd.DataFrame, first: int) -> None:
        problem = self.problem
        job = label_index(plan["job_id"], problem.job_ids)
        site = label_index(plan["site"], problem.site_names)
        if (job < 0).any() or (site < 0).any():
            row = plan[(job < 0) | (site < 0)].iloc[0]
            raise ValueError(
                f"plan row ({row['job_id']}, {row['site']}) names a job or site the problem "
                f"lacks; sites: {', '.join(problem.site_names)}"
            )
        slot = slot_index(plan["time"], problem.horizon).astype(np.int64)
        later = np.flatnonzero(slot >= first)
        order = later[np.argsort(slot[later], kind="stable")]
        rows = [job[order], site[order], slot[order], plan["gpus"].to_numpy(dtype=np.int64)[order]]
        if first > 0:
            kept = self.ptr[first]
            walked = [self.job, self.site, self.slot, self.gpus]
            rows = [np.concatenate([a[:kept], b]) for a, b in zip(walked, rows, strict=True)]
        self.job, self.site, self.slot, self.gpus = rows
        self.ptr = np.searchsorted(self.slot, np.arange(problem.horizon.n_slots + 1))

    def planned(self, t: int) -> Chunks:
        """Slot ``t``'s planned work (a copy the rules may change)."""
        a, b = self.ptr[t], self.ptr[t + 1]
        return Chunks(self.job[a:b].copy(), self.site[a:b].copy(), self.gpus[a:b].copy())

    def jobs_from(self, t: int) -> np.ndarray:
        """The job of every row from slot ``t`` on."""
        return self.job[self.ptr[t] :]
