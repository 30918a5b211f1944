"""Planning policies behind one interface, chosen by name.

>>> from scheduler.policies import get_policy
>>> get_policy("fifo").name
'fifo'

``POLICIES`` maps each name to a factory taking the optimizer's :class:`SolverSettings`
(heuristics ignore them).
"""

from __future__ import annotations

from collections.abc import Callable

from scheduler.config import SolverSettings
from scheduler.contracts import UserError
from scheduler.policies.base import PlanResult, Policy
from scheduler.policies.fifo import FifoPolicy
from scheduler.policies.greedy import GreedyPolicy
from scheduler.policies.optimizer import OptimizerPolicy
from scheduler.policies.oracle import OraclePolicy

__all__ = [
    "POLICIES",
    "FifoPolicy",
    "GreedyPolicy",
    "OptimizerPolicy",
    "OraclePolicy",
    "PlanResult",
    "Policy",
    "get_policy",
]

POLICIES: dict[str, Callable[[SolverSettings], Policy]] = {
    "fifo": lambda settings: FifoPolicy(),
    "greedy": lambda settings: GreedyPolicy(),
    "optimizer": OptimizerPolicy,
    "oracle": OraclePolicy,
}


def get_policy(name: str, settings: SolverSettings | None = None) -> Policy:
    """The policy called ``name`` (one of :data:`POLICIES`), built with ``settings``."""
    try:
        factory = POLICIES[name]
    except KeyError:
        raise UserError(f"unknown policy {name!r}; allowed: {', '.join(POLICIES)}") from None
    return factory(settings or SolverSettings())
