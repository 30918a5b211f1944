"""The choice of plan when caps change: keep, repair, re-plan quickly, or leave it to the optimizer.

A service that answers cap changes at once cannot wait for the optimizer on every change
(about a second per change at 1,000 jobs). :func:`choose_plan` says what plan answers a change
of caps on the plan in force, as a :class:`PlanChoice`:

- ``UNCHANGED``: the caps change no cap matrix of the day planned (outside it, or looser than
  a limit already in force): the plan in force stays as it is;
- ``KEPT``: the plan in force already keeps the new caps, which only tightened: it stays as
  optimal as it was (adding constraints cannot improve an optimum that is still feasible); or
  only prices changed, which the objective does not weigh (carbon alone): the plan stays, its
  new version carries the prices;
- ``KEPT_LOOSENED``: it keeps them, but some cap loosened: the optimum may use the room;
- ``REPAIRED``: its repair (:func:`~scheduler.repair.repair`) leaves no job later;
- ``GREEDY``: the quick policy's plan (``greedy``) leaves no job with more work unfinished;
- ``PROVISIONAL_REPAIRED`` / ``PROVISIONAL_GREEDY``: neither keeps every job; the one of the
  two that leaves less work unfinished answers for now, until the optimizer's plan follows;
- ``OPTIMIZER``: only the optimizer decides: another day or another state of it (a new jobs
  table), a change of what a grid MWh weighs in the objective (a ``PRICE`` cap under a cost or
  weighted objective: no limit moved, so only a new optimum can answer it), or a change that
  leaves work unfinished where no optimum follows (``late_ok`` off).

The function computes (the repair, the quick plan) but changes nothing and reads no clock: the
caller runs the optimizer, times the choice, names it and publishes it. A repair whose min-cost
flow already leaves a job later is finished (ramp fit, plan table and validator, half of its
time) only when it may leave less work unfinished than the quick plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from scheduler.policies.base import PlanArrays, PlanResult, Policy
from scheduler.problem import Problem
from scheduler.repair import RepairDraft, draft_repair, keeps_every_job

__all__ = ["Choice", "PlanChoice", "choose_plan", "unfinished_first"]


class PlanChoice(StrEnum):
    """How the plan answering a change of caps was chosen (module docstring)."""

    OPTIMIZER = "optimizer"
    UNCHANGED = "unchanged"
    KEPT = "kept"
    KEPT_LOOSENED = "kept_loosened"
    REPAIRED = "repaired"
    GREEDY = "greedy"
    PROVISIONAL_REPAIRED = "provisional_repaired"
    PROVISIONAL_GREEDY = "provisional_greedy"

    @property
    def replanned(self) -> bool:
        """Whether the plan's rows differ from the plan in force."""
        return self not in (PlanChoice.UNCHANGED, PlanChoice.KEPT, PlanChoice.KEPT_LOOSENED)

    @property
    def provisional(self) -> bool:
        """Whether the plan leaves work unfinished that the optimum may yet keep on time."""
        return self in (PlanChoice.PROVISIONAL_REPAIRED, PlanChoice.PROVISIONAL_GREEDY)

    @property
    def optimum_may_differ(self) -> bool:
        """Whether the optimizer may find a better plan under the same caps."""
        return self not in (PlanChoice.OPTIMIZER, PlanChoice.UNCHANGED, PlanChoice.KEPT)


@dataclass(frozen=True)
class Choice:
    """A :class:`PlanChoice` and the plan it chose (``None`` for ``UNCHANGED`` and
    ``OPTIMIZER``; the plan in force for the two ``KEPT``)."""

    outcome: PlanChoice
    result: PlanResult | None = None


def choose_plan(
    previous: Problem,
    result: PlanResult,
    arrays: PlanArrays,
    busy_gpus: np.ndarray,
    problem: Problem,
    quick: Policy,
    repaired_as: str,
    late_ok: bool = True,
) -> Choice:
    """The plan answering ``problem``'s caps, given the plan in force: ``result`` of
    ``previous`` (its rows as ``arrays``, its GPUs busy ``[site, slot]`` as ``busy_gpus``).
    ``quick`` plans when no repair keeps every job; a finished repair carries the policy name
    ``repaired_as``; ``late_ok`` allows a provisional plan (else ``OPTIMIZER``)."""
    if previous.horizon != problem.horizon or previous.jobs is not problem.jobs:
        return Choice(PlanChoice.OPTIMIZER)
    if not np.array_equal(previous.objective_per_mwh, problem.objective_per_mwh):
        return Choice(PlanChoice.OPTIMIZER)  # a price moved: the plan minimises something else
    old_grid, old_load = previous.grid_cap_mw, previous.load_cap_mw
    new_grid, new_load = problem.grid_cap_mw, problem.load_cap_mw
    if np.array_equal(old_grid, new_grid) and np.array_equal(old_load, new_load):
        if previous.prices != problem.prices:  # priced, not planned on: the plan stays
            return Choice(PlanChoice.KEPT, result)
        return Choice(PlanChoice.UNCHANGED)
    if (busy_gpus <= problem.capacity_gpus).all():  # the limits every policy plans to
        tighter = (new_grid <= old_grid).all() and (new_load <= old_load).all()
        return Choice(PlanChoice.KEPT if tighter else PlanChoice.KEPT_LOOSENED, result)
    draft = draft_repair(problem, result, arrays)
    short_draft = not keeps_every_job(draft, result)  # finished only if chosen
    repaired = None if short_draft else draft.finish(repaired_as)
    if repaired is not None and keeps_every_job(repaired, result):
        return Choice(PlanChoice.REPAIRED, repaired)
    greedy = quick.plan(problem)
    if keeps_every_job(greedy, result):
        return Choice(PlanChoice.GREEDY, greedy)
    if not late_ok:
        return Choice(PlanChoice.OPTIMIZER)
    if short_draft and unfinished_first(draft) < unfinished_first(greedy):
        repaired = draft.finish(repaired_as)  # it may leave less unfinished
    if repaired is None or unfinished_first(greedy) <= unfinished_first(repaired):
        return Choice(PlanChoice.PROVISIONAL_GREEDY, greedy)
    return Choice(PlanChoice.PROVISIONAL_REPAIRED, repaired)


def unfinished_first(result: PlanResult | RepairDraft) -> tuple[float, float]:
    """Orders plans by the work they leave unfinished [GPU-h], then by their objective [kg]."""
    return float(result.unfinished_gpu_hours.sum()), result.objective_kg
