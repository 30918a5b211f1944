"""``oracle``: the optimizer handed the actual supply instead of the forecast.

Used by replay: it is the best any forecast-driven plan could have done on the day, so a
forecast plan settled against actual supply is measured against it.
"""

from __future__ import annotations

from scheduler.config import SolverSettings
from scheduler.policies.base import PlanResult, SupplyBasis
from scheduler.policies.optimizer import optimize
from scheduler.problem import Problem

__all__ = ["OraclePolicy"]


class OraclePolicy:
    """Optimize on ``problem.actual_supply``; the result's ``supply_basis`` is ``ACTUAL``."""

    name = "oracle"
    follows_forecast = False  # it plans on the actual supply

    def __init__(self, settings: SolverSettings | None = None) -> None:
        self.settings = settings or SolverSettings()

    def plan(self, problem: Problem) -> PlanResult:
        return optimize(
            problem.on_actual_supply(), self.settings, self.name, supply_basis=SupplyBasis.ACTUAL
        )
