"""Solver processes beside the server: the optimizer's solves hold the GIL for hundreds of
milliseconds, which would stall every call the server answers.

A :class:`SolverProcess` is one process forked from a preloaded fork server (a fresh
interpreter, so no thread of the server is copied), at a CPU priority ``niceness`` steps below
the server's, exiting with the server even when that is killed with SIGKILL, and replaced when
it dies.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from scheduler.policies import PlanResult
from scheduler.policies.base import Policy
from scheduler.problem import Problem

__all__ = ["SolverProcess"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_WATCH_EVERY_S = 1.0  # how often a solver process looks whether its server is alive


class SolverProcess:
    """One solver process ``niceness`` steps below the server's CPU priority; ``name`` says
    in the log what it solves."""

    def __init__(self, name: str, niceness: int = 0) -> None:
        self.name = name
        self.niceness = niceness
        self._pool = _process(niceness)
        self.ready: Future = self._pool.submit(int)  # done once its imports have run

    def submit(self, policy: Policy, problem: Problem) -> Future[PlanResult]:
        """``policy``'s plan of ``problem``, in the process."""
        return self._pool.submit(policy.plan, problem)

    def solve(self, policy: Policy, problem: Problem) -> PlanResult:
        """``policy``'s plan of ``problem``, waited for; a process that died is replaced and
        asked again once."""
        try:
            return self.submit(policy, problem).result()
        except BrokenProcessPool:
            self.replace()
            return self.submit(policy, problem).result()

    def replace(self) -> None:
        """Start another process in place of one that died."""
        log.error("the solver process (%s) died; starting another", self.name)
        self._pool = _process(self.niceness)

    def call(self, function: Callable[..., _T], *args: object) -> _T:
        """``function(*args)`` in the process, waited for (what the process sees)."""
        return self._pool.submit(function, *args).result()

    def shutdown(self) -> None:
        self._pool.shutdown(cancel_futures=True)


def _process(niceness: int) -> ProcessPoolExecutor:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["scheduler.drivers.service.planner"])
    return ProcessPoolExecutor(
        1, mp_context=context, initializer=_start_solver, initargs=(os.getpid(), niceness)
    )


def _start_solver(server_pid: int, niceness: int) -> None:
    """In a solver process: lower its CPU priority by ``niceness``, and exit once the server
    process ``server_pid`` is gone (its worker pipes stay open in this process, so it would
    never see them close)."""
    if niceness:
        os.nice(niceness)

    def watch() -> None:
        while True:
            time.sleep(_WATCH_EVERY_S)
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, name="greensched-server-watch", daemon=True).start()
