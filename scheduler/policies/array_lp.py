"""A linear program built from numpy arrays, handed to OR-Tools' model builder in one call.

Variables and constraints come in named blocks of any shape (element ``i, j`` of block ``p`` is
named ``p_{i}_{j}``), so a model reads as its algebra: the load-profile LP
(:mod:`.profile`) and the storage dispatch LP (:mod:`.battery`) are built with it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from ortools.linear_solver.python import model_builder_helper as mbh
from scipy import sparse

__all__ = ["ArrayLP", "LpAnswer", "rows_by_owner"]


@dataclass(frozen=True)
class LpAnswer:
    """GLOP's answer: ``values`` of every variable and ``duals`` of every constraint (in the
    order added), the status' name and the objective."""

    values: np.ndarray
    duals: np.ndarray
    status: str
    objective: float


@functools.lru_cache(maxsize=1024)
def _labels(name: str, shape: tuple[int, ...]) -> tuple[str, ...]:
    """``name_i_j`` for every element of a block of ``shape``, in C order (kept: the shapes
    recur from one re-plan to the next; a day of hourly re-plans uses about 300, and a
    smaller cache, walked in that cycle, missed every time)."""
    return tuple("_".join((name, *map(str, at))) for at in np.ndindex(shape))


class ArrayLP:
    """A linear program built from arrays: variables and constraints are added in named blocks
    of any shape, each a numpy array of indices (element ``i, j`` of block ``p`` is named
    ``p_{i}_{j}``); terms refer to variables by those indices, ``-1`` for "no term"."""

    def __init__(self) -> None:
        self._lower: list[np.ndarray] = []
        self._upper: list[np.ndarray] = []
        self._cost: list[np.ndarray] = []
        self._row_lower: list[np.ndarray] = []
        self._row_upper: list[np.ndarray] = []
        self._entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._names: list[tuple[str, int, tuple[int, ...]]] = []  # variable blocks
        self._row_names: list[tuple[str, np.ndarray]] = []
        self.n_variables = 0
        self.n_constraints = 0

    def variables(self, name: str, lower: ArrayLike, upper: ArrayLike, cost: ArrayLike = 0.0):
        """A block of variables of the shape of ``lower``, ``upper`` and ``cost`` (broadcast)."""
        lower, upper, cost = np.broadcast_arrays(
            *(np.asarray(a, float) for a in (lower, upper, cost))
        )
        first = self.n_variables
        self.n_variables += lower.size
        self._lower.append(lower.ravel())
        self._upper.append(upper.ravel())
        self._cost.append(cost.ravel())
        self._names.append((name, first, lower.shape))
        return first + np.arange(lower.size).reshape(lower.shape)

    def constraints(
        self,
        name: str,
        lower: ArrayLike,
        upper: ArrayLike,
        terms: Sequence[tuple[np.ndarray, ArrayLike]],
        where: ArrayLike = True,
    ) -> np.ndarray:
        """``lower <= sum of coefficient * variable <= upper`` for each element of the block,
        ``terms`` as ``(variable indices, coefficients)``; only where ``where`` holds (the
        others are ``-1`` in the indices returned)."""
        shapes = [np.shape(a) for a in (lower, upper, where)]
        shapes += [np.shape(a) for term in terms for a in term]
        shape = np.broadcast_shapes(*shapes)
        keep = np.broadcast_to(np.asarray(where, dtype=bool), shape)

        def kept(values: ArrayLike) -> np.ndarray:
            return np.broadcast_to(values, shape)[keep]

        low, high = kept(np.asarray(lower, dtype=float)), kept(np.asarray(upper, dtype=float))
        rows = self.n_constraints + np.arange(low.size)
        for variables, coefficients in terms:
            var, coefficient = kept(variables), kept(np.asarray(coefficients, dtype=float))
            has = var >= 0
            self._entries.append((rows[has], var[has], coefficient[has]))
        self.n_constraints += low.size
        self._row_lower.append(low)
        self._row_upper.append(high)
        index = np.full(shape, -1)
        index[keep] = rows
        self._row_names.append((name, index))
        return index

    def model(self, names: bool = True) -> mbh.ModelBuilderHelper:
        """The model, ready for :class:`mbh.ModelSolverHelper`; ``names`` off saves time."""
        rows, cols, coefficients = (np.concatenate(a) for a in zip(*self._entries, strict=True))
        matrix = sparse.csr_matrix(
            (coefficients, (rows, cols)), shape=(self.n_constraints, self.n_variables)
        )
        lower, upper, cost = (np.concatenate(a) for a in (self._lower, self._upper, self._cost))
        row_lower, row_upper = (np.concatenate(a) for a in (self._row_lower, self._row_upper))
        model = mbh.ModelBuilderHelper()
        fill = model.fill_model_from_sparse_data
        # the stub types the bounds as Eigen vectors, which mypy cannot match to an ndarray
        fill(lower, upper, cost, row_lower, row_upper, matrix)  # type: ignore[arg-type]
        if names:
            for name, first, shape in self._names:
                for offset, label in enumerate(_labels(name, shape)):
                    model.set_var_name(first + offset, label)
            for name, index in self._row_names:
                labels = _labels(name, index.shape)
                for position in np.flatnonzero(index >= 0).tolist():
                    model.set_constraint_name(int(index.flat[position]), labels[position])
        return model

    def solve(self, what: str, parameters: str = "", names: bool = True) -> LpAnswer:
        """Solve with GLOP (``parameters`` in its text format); ``what`` names the model in the
        error raised when it ends neither optimal nor feasible (a model that always has a
        solution: a bug)."""
        solver = mbh.ModelSolverHelper("glop")
        if parameters:
            solver.set_solver_specific_parameters(parameters)
        solver.solve(self.model(names))
        status = solver.status()
        if status not in (mbh.SolveStatus.OPTIMAL, mbh.SolveStatus.FEASIBLE):
            raise RuntimeError(f"{what} ended with status {status.name}; it always has a solution")
        return LpAnswer(
            np.asarray(solver.variable_values()),
            np.asarray(solver.dual_values()),
            status.name,
            float(solver.objective_value()),
        )


def rows_by_owner(p: np.ndarray, owner: np.ndarray, n_owners: int) -> list[np.ndarray]:
    """The rows of variable block ``p`` ``[row, slot]`` by each row's ``owner`` (a site, a pool),
    as terms for constraints ``[owner, slot]`` that sum an owner's rows: a list of index arrays
    ``[owner, slot]``, the first row of each owner, the second, ... (``-1`` where an owner has
    fewer)."""
    rank = np.zeros(len(owner), dtype=np.int64)
    for k in range(len(owner)):
        rank[k] = int((owner[:k] == owner[k]).sum())
    out = []
    for r in range(int(rank.max(initial=-1)) + 1):
        rows = np.full((n_owners, p.shape[1]), -1)
        pick = rank == r
        rows[owner[pick]] = p[pick]
        out.append(rows)
    return out
