"""The look-ahead day: the operating day after the one running, while a control loop runs.

A cap reaching into it is planned at once and answered with what it costs that day (nothing
optimises that day in the background, so where no quick plan keeps every job the optimizer
answers). Its plan is not a plan version: nothing runs it until its day starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from scheduler.drivers.service.answers import SubmitAnswer, answer
from scheduler.drivers.service.versions import PlanVersion
from scheduler.horizon import Horizon
from scheduler.problem import LoadCap, Problem

__all__ = ["LookAhead", "overlaps"]

Plan = Callable[[Problem, str], PlanVersion]
"""``plan(problem, reason)``: the optimizer's plan of ``problem``."""
Choose = Callable[[PlanVersion, Problem, str], PlanVersion]
"""``choose(previous, problem, reason)``: the plan answering ``problem``'s caps, given
``previous`` (:func:`scheduler.choice.choose_plan`; the optimizer's when jobs would be late)."""


class LookAhead:
    """The look-ahead day (``None`` until known) and its plan under the caps in force."""

    def __init__(self, plan: Plan, choose: Choose) -> None:
        self._plan = plan
        self._choose = choose
        self.day: Problem | None = None
        self._version: PlanVersion | None = None  # its plan under the caps in force

    @property
    def horizon(self) -> Horizon | None:
        return None if self.day is None else self.day.horizon

    def follow(self, day: Problem | None, running_end: pd.Timestamp) -> None:
        """The day after the one running (``None``: none); ignored when it does not start
        at ``running_end`` (late: the day it follows has already ended)."""
        if day is not None and day.horizon.start != running_end:
            return
        self.day, self._version = day, None

    def answer(
        self,
        before: Sequence[LoadCap],
        after: Sequence[LoadCap],
        changed: Sequence[LoadCap],
        cancels: bool,
        reason: str,
    ) -> tuple[Horizon, SubmitAnswer] | None:
        """The day's horizon and what going from the caps ``before`` to ``after`` costs there,
        when one of the caps submitted (``changed``) reaches into it; ``None`` otherwise (then
        a batch that ``cancels`` leaves the day to be planned again on the next cap for it)."""
        day = self.day
        reaching = day is not None and any(overlaps(c, day.horizon) for c in changed)
        if day is None or not reaching:
            if cancels:
                self._version = None
            return None
        previous = self._version or self._plan(day.with_caps(before), "look-ahead")
        problem = day.with_caps(after)
        made = self._choose(previous, problem, f"look-ahead, {reason}")
        self._version = made
        return made.problem.horizon, answer(previous, made, made.problem)


def overlaps(cap: LoadCap, horizon: Horizon) -> bool:
    """Whether ``cap`` binds some slot of ``horizon``."""
    return cap.start < horizon.end and cap.end > horizon.start
