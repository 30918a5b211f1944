"""Answers to cap changes: OPT_IN or OPT_OUT, with what the change cost the plan.

A submission's answer compares the plan version of its batch with the version before it
(:func:`answer`): OPT_IN when no job is later, else OPT_OUT naming the jobs made late (at most
:data:`MAX_NAMED_LATE_JOBS`). A batch's cost is shared by its changes (:func:`answer_of` says
so), an event after the planned day is SCHEDULED, one reaching into the look-ahead day adds that
day's cost (:func:`with_ahead`), and a caller is named only the late jobs it may read
(:func:`scoped`). A price event is not a limit: it is answered OPT_IN with what the re-plan on
its price changed (the grid cost at the prices in force after it, the grid energy moved).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from scheduler.contracts import CapType
from scheduler.drivers.service.auth import Coordinator
from scheduler.drivers.service.versions import PlanVersion
from scheduler.problem import LoadCap, Problem
from scheduler.repair import later_jobs

__all__ = [
    "MAX_NAMED_LATE_JOBS",
    "CapCost",
    "SubmitAnswer",
    "answer",
    "answer_of",
    "scoped",
    "with_ahead",
]

MAX_NAMED_LATE_JOBS = 100


@dataclass(frozen=True)
class CapCost:
    """What a change of caps cost the plan, against the previous version."""

    late_jobs: tuple[str, ...]  # jobs made late, at most MAX_NAMED_LATE_JOBS named
    late_jobs_total: int
    late_gpu_hours: float  # work newly left unfinished by its deadline [GPU-h]
    moved_mwh: float  # half the summed |site load change| over sites and slots [MWh]
    green_share_change: float  # new minus old [-]
    grid_mwh_change: float  # new minus old [MWh]
    # new minus old grid cost, both at the prices in force after the change [currency]
    grid_cost_change: float = 0.0


@dataclass(frozen=True)
class SubmitAnswer:
    """The reply to an accepted event: whether the plan honours it, and at what cost."""

    opt_in: bool
    reason: str
    cost: CapCost
    plan_version: int
    replayed: bool = False
    scheduled: bool = False  # every cap lies after the day planned: stored, not planned yet

    def to_dict(self) -> dict:
        """The answer as plain values (``asdict`` without its deep copies: a late-job list of
        :data:`MAX_NAMED_LATE_JOBS` names made it ~1 ms an answer)."""
        return {**vars(self), "cost": dict(vars(self.cost))}

    @classmethod
    def from_dict(cls, data: dict, replayed: bool) -> SubmitAnswer:
        cost = dict(data["cost"])
        cost["late_jobs"] = tuple(cost["late_jobs"])
        return cls(
            data["opt_in"], data["reason"], CapCost(**cost), data["plan_version"], replayed,
            data.get("scheduled", False),
        )  # fmt: skip


def with_ahead(today: SubmitAnswer, ahead: SubmitAnswer) -> SubmitAnswer:
    """One answer for an event whose caps reach into the look-ahead day: OPT_IN when both days
    keep every job on time; the costs add up; the plan version is today's."""
    if today.scheduled:  # nothing of it falls in the day running
        return replace(ahead, plan_version=today.plan_version, reason=f"next day: {ahead.reason}")
    cost = CapCost(
        late_jobs=(today.cost.late_jobs + ahead.cost.late_jobs)[:MAX_NAMED_LATE_JOBS],
        late_jobs_total=today.cost.late_jobs_total + ahead.cost.late_jobs_total,
        late_gpu_hours=today.cost.late_gpu_hours + ahead.cost.late_gpu_hours,
        moved_mwh=today.cost.moved_mwh + ahead.cost.moved_mwh,
        green_share_change=today.cost.green_share_change,
        grid_mwh_change=today.cost.grid_mwh_change + ahead.cost.grid_mwh_change,
        grid_cost_change=today.cost.grid_cost_change + ahead.cost.grid_cost_change,
    )
    return replace(
        today,
        opt_in=today.opt_in and ahead.opt_in,
        reason=f"today: {today.reason}; next day: {ahead.reason}",
        cost=cost,
    )


_NO_COST = CapCost((), 0, 0.0, 0.0, 0.0, 0.0)


def answer_of(
    caps: Iterable[LoadCap], batch: SubmitAnswer, problem: Problem, changes: int
) -> SubmitAnswer:
    """One event's answer in a batch of ``changes``: SCHEDULED when every one of its ``caps``
    starts after the day planned, else the ``batch`` answer."""
    if all(cap.start >= problem.horizon.end for cap in caps):
        return SubmitAnswer(
            True,
            f"stored; it starts after the operating day now planned (to "
            f"{problem.horizon.end.isoformat()}) and is planned when its day starts",
            _NO_COST,
            batch.plan_version,
            scheduled=True,
        )
    if all(cap.type is CapType.PRICE for cap in caps):
        batch = _priced(batch, problem)
    if changes == 1:
        return batch
    together = f"planned in one batch with {changes - 1} other change(s); the cost is the batch's"
    return replace(batch, reason=f"{batch.reason} ({together})")


def _priced(batch: SubmitAnswer, problem: Problem) -> SubmitAnswer:
    """A price event's answer: OPT_IN (a price limits nothing), with the re-plan's change."""
    if problem.objective_weights[1] == 0:
        how = "the objective is carbon alone, so the plan does not follow prices"
    elif batch.cost.moved_mwh == 0:
        how = "re-planned on it; no work moved"
    else:
        cost = batch.cost
        how = (
            f"re-planned on it: {cost.moved_mwh:,.2f} MWh moved, grid "
            f"{cost.grid_mwh_change:+,.2f} MWh, grid cost {cost.grid_cost_change:+,.2f} at the "
            "prices now in force"
        )
    return replace(batch, opt_in=True, reason=f"a price, not a limit: stored and in force; {how}")


def scoped(answer: SubmitAnswer, coordinator: Coordinator, problem: Problem) -> SubmitAnswer:
    """``answer`` naming only the late jobs ``coordinator`` may read (a job is readable when
    one of its allowed sites is); the others are counted, not named."""
    late = answer.cost.late_jobs
    if coordinator.read_all or coordinator.sites is None or not late:
        return answer
    readable = np.array([coordinator.may_read(site) for site in problem.site_names])
    row = pd.Index(problem.job_ids).get_indexer(list(late))
    visible = (problem.site_mask[row] & readable).any(axis=1)
    if visible.all():
        return answer
    named = tuple(job for job, shown in zip(late, visible, strict=True) if shown)
    hidden = answer.cost.late_jobs_total - len(named)
    reason = (
        f"{answer.reason.rsplit(': ', 1)[0]}: "
        f"{', '.join(named[:10]) + (' ...' if len(named) > 10 else '') or 'none named'} "
        f"({hidden} late job(s) at sites outside your scope are not named)"
    )
    return replace(answer, reason=reason, cost=replace(answer.cost, late_jobs=named))


def _changes(previous: PlanVersion, new: PlanVersion) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """New minus previous load and grid draw over the site-slots both plans cover [MW],
    ``(load, grid)``, and the grid price there in ``new``'s problem [currency/MWh]."""
    old_problem, new_problem = previous.problem, new.problem
    price = new_problem.price_per_mwh.ravel()  # site-major, as the site-load table
    if (old_problem.horizon, old_problem.site_names) == (
        new_problem.horizon,
        new_problem.site_names,
    ):
        load = new.site_load["load_mw"].to_numpy() - previous.site_load["load_mw"].to_numpy()
        grid = new.site_load["grid_mw"].to_numpy() - previous.site_load["grid_mw"].to_numpy()
        return load, grid, price
    priced = new.site_load.assign(price=price)
    both = priced.merge(previous.site_load, on=["time", "site"], suffixes=("", "_before"))
    return (
        both["load_mw"].to_numpy() - both["load_mw_before"].to_numpy(),
        both["grid_mw"].to_numpy() - both["grid_mw_before"].to_numpy(),
        both["price"].to_numpy(),
    )


def answer(previous: PlanVersion, new: PlanVersion, problem: Problem) -> SubmitAnswer:
    """OPT_IN when no job is later in ``new`` than in ``previous``, else OPT_OUT naming the
    jobs made late."""
    if new is previous:
        return SubmitAnswer(
            True,
            "the caps in force already imply this cap in the planned day "
            f"{problem.horizon.start.isoformat()} to {problem.horizon.end.isoformat()} "
            "(or it lies outside it); the plan is unchanged",
            _NO_COST,
            new.version,
        )
    late = later_jobs(new.result, previous.result).sort_values(ascending=False)
    load_change, grid_change, price = _changes(previous, new)
    load_change = np.abs(load_change)
    cost = CapCost(
        late_jobs=tuple(late.index[:MAX_NAMED_LATE_JOBS]),
        late_jobs_total=len(late),
        late_gpu_hours=float(late.sum()),
        moved_mwh=float(load_change.sum() * problem.horizon.slot_hours / 2),
        green_share_change=new.metrics.green_share - previous.metrics.green_share,
        grid_mwh_change=new.metrics.grid_mwh - previous.metrics.grid_mwh,
        grid_cost_change=float((grid_change * price).sum() * problem.horizon.slot_hours),
    )
    if late.empty:
        how = "re-planned" if new.replanned else "the current plan already keeps it"
        return SubmitAnswer(True, f"honoured with every job on time ({how})", cost, new.version)
    named = ", ".join(cost.late_jobs[:10]) + (" ..." if len(late) > 10 else "")
    which = (
        "the quick plan that answers at once (the optimizer plans the same caps in the "
        "background and publishes a later version if it keeps more jobs on time) leaves"
        if new.provisional
        else "the plan cannot keep it with every job on time:"
    )
    return SubmitAnswer(
        False,
        f"accepted and enforced, but {which} {len(late)} job(s) late by their deadline "
        f"({cost.late_gpu_hours:,.1f} GPU-h unfinished): {named}",
        cost,
        new.version,
    )
