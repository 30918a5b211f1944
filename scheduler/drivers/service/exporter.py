"""Prometheus metrics of ``greensched serve`` (``serve --metrics HOST:PORT``, path ``/metrics``).

:class:`ServiceMetrics` holds one registry per server. The control loop, the planner and the
servicer call its small hooks as things happen (a slot has run, a plan was made, a cap was
answered, a request was refused); what describes the present (plan version, caps in force, the
loop's lag, readiness, forecast age) is read when Prometheus scrapes. Names follow Prometheus's
guide: the ``greensched_`` prefix, base units (joules, watts, seconds), ``_total`` on counters.
The README's metrics table lists every name with its labels and unit.

A slot's figures are recorded together under one lock, and a scrape takes the same lock, so a
scrape never sees half a slot: its energy counters and ``greensched_slot_start_timestamp_seconds``
always describe the same slots run. The counters count each slot once, when it has run, on the
supply it was settled on then (with ``settle_on: measurements``, a slot booked on its
measurement after its grace is not counted again; ``run.csv`` has the booked figures).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scheduler.metrics import green_spilled_mw
from scheduler.problem import Problem
from scheduler.ramps import ramp_stats
from scheduler.settlement import Settlement

if TYPE_CHECKING:  # imported at run time they would import this module back
    from wsgiref.simple_server import WSGIServer

    from scheduler.drivers.service.forecast_watch import ForecastWatcher
    from scheduler.drivers.service.loop import ControlLoop
    from scheduler.drivers.service.planner import Planner

__all__ = ["ServiceMetrics"]

log = logging.getLogger(__name__)

_W_PER_MW = 1e6
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_ANSWER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _SlotConsistentRegistry(CollectorRegistry):
    """A registry whose collection holds ``lock``, the lock a slot's updates hold."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__()
        self._slot_lock = lock

    def collect(self) -> Iterator[Metric]:
        with self._slot_lock:
            families = list(super().collect())
        return iter(families)


class ServiceMetrics:
    """The metrics of one server (module docstring); :meth:`serve` exposes them over HTTP."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.registry = _SlotConsistentRegistry(self._lock)
        self._http: WSGIServer | None = None
        self._last_load: dict[str, tuple[pd.Timestamp, float]] = {}  # site -> slot end, MW
        site = ["site"]
        r = self.registry

        def energy(name: str, what: str) -> Counter:
            return Counter(f"greensched_{name}_joules", f"{what} [J]", site, registry=r)

        def power(name: str, what: str) -> Gauge:
            return Gauge(f"greensched_{name}_watts", f"{what}, last slot run [W]", site, registry=r)

        self.load_j = energy("load", "Energy drawn by the site's load")
        self.green_used_j = energy("green_used", "Green energy used by the load")
        self.grid_j = energy("grid_import", "Energy imported from the grid")
        self.green_unused_j = energy("green_unused", "Green energy the load left unused")
        self.load_w = power("load", "Load drawn")
        self.green_w = power("green_supply", "Green supply the slot settled on")
        self.forecast_w = power("green_forecast", "Green supply forecast the day was planned on")
        self.grid_w = power("grid_import", "Grid import")
        self.grid_cap_w = power("grid_import_cap", "Tightest grid-import cap in force")
        self.load_cap_w = power("load_cap", "Tightest load cap in force (+Inf: none)")
        self.baseline_w = power("baseline", "What the day's plan without caps would draw")
        self.gpus = Gauge("greensched_gpus_busy", "GPUs of work done, last slot run", site,
                          registry=r)  # fmt: skip
        self.gpu_s = Counter("greensched_gpu_seconds", "GPU time of work done [GPU-s]", site,
                             registry=r)  # fmt: skip
        self.jobs = Gauge("greensched_jobs", "Jobs of the day after the last slot run",
                          ["state"], registry=r)  # fmt: skip
        self.slot_start = Gauge("greensched_slot_start_timestamp_seconds",
                                "Start of the last slot run, on the loop's clock [s]",
                                registry=r)  # fmt: skip
        self.slots = Counter("greensched_slots", "Site-slots run, by supply basis",
                             ["site", "basis"], registry=r)  # fmt: skip
        self.cap_violations = Counter("greensched_cap_violations",
                                      "Site-slots whose load or grid import broke a cap", site,
                                      registry=r)  # fmt: skip
        self.ramp_violations = Counter("greensched_ramp_violations",
                                       "Site-slots whose load step broke a ramp limit", site,
                                       registry=r)  # fmt: skip
        self.replan_s = Histogram("greensched_replan_seconds",
                                  "Time to make each plan version published [s]",
                                  buckets=_SECONDS_BUCKETS, registry=r)  # fmt: skip
        self.solve_s = Histogram("greensched_solve_seconds", "Time of each optimizer solve [s]",
                                 buckets=_SECONDS_BUCKETS, registry=r)  # fmt: skip
        self.answer_s = Histogram("greensched_cap_answer_seconds",
                                  "SubmitLoadCap, from the call to its answer [s]",
                                  buckets=_ANSWER_BUCKETS, registry=r)  # fmt: skip
        self.batch = Histogram("greensched_cap_batch_size",
                               "Cap changes planned together in one batch",
                               buckets=_BATCH_BUCKETS, registry=r)  # fmt: skip
        self.rejected = Counter("greensched_rejected_requests",
                                "gRPC requests refused, by method and status code",
                                ["method", "code"], registry=r)  # fmt: skip

    # --- hooks ------------------------------------------------------------------------------
    def plan_made(self, seconds: float) -> None:
        """A plan version was published after ``seconds`` of planning."""
        self.replan_s.observe(seconds)

    def solved(self, seconds: float) -> None:
        """The optimizer solved a problem in ``seconds``."""
        self.solve_s.observe(seconds)

    def batch_planned(self, changes: int) -> None:
        """A batch of ``changes`` cap submissions and cancellations was planned."""
        self.batch.observe(changes)

    def cap_answered(self, seconds: float) -> None:
        """A SubmitLoadCap call was answered ``seconds`` after it came in."""
        self.answer_s.observe(seconds)

    def refused(self, method: str, code: str) -> None:
        """A call to ``method`` was refused with status ``code`` (e.g. ``INVALID_ARGUMENT``)."""
        self.rejected.labels(method, code).inc()

    def slot_ran(
        self,
        engine: Settlement,
        t: int,
        state: Mapping,
        drawn: Mapping[str, np.ndarray],
        baseline_mw: np.ndarray,
        basis: Sequence[str],
    ) -> None:
        """Slot ``t`` of ``engine``'s day has run: count its energy and set the gauges.

        ``state`` is the engine's state after the slot (:meth:`Settlement.state`, the one the
        loop commits), ``drawn`` what each site drew in it (:meth:`Settlement.slot_load`),
        ``baseline_mw`` and ``basis`` per site (the slot's BASELINE [MW] and supply basis)."""
        actual, horizon = engine.actual, engine.actual.horizon
        busy = drawn["gpus_busy"]
        start = horizon.times[t]
        slot = pd.Timedelta(minutes=horizon.slot_minutes)
        over_ramp = self._over_ramp(actual, start, slot, drawn["load_mw"])
        jobs = _job_counts(engine.problem, state, t)
        forecast_mw = engine.problem.green_mw[:, t]
        unused_mw = green_spilled_mw(drawn)
        slot_s = slot.total_seconds()
        j_per_mw = slot_s * _W_PER_MW  # energy of 1 MW over the slot [J]
        with self._lock:
            for s, site in enumerate(actual.site_names):
                self.load_j.labels(site).inc(drawn["load_mw"][s] * j_per_mw)
                self.green_used_j.labels(site).inc(drawn["green_used_mw"][s] * j_per_mw)
                self.grid_j.labels(site).inc(drawn["grid_mw"][s] * j_per_mw)
                self.green_unused_j.labels(site).inc(unused_mw[s] * j_per_mw)
                self.load_w.labels(site).set(drawn["load_mw"][s] * _W_PER_MW)
                self.green_w.labels(site).set(drawn["green_mw"][s] * _W_PER_MW)
                self.forecast_w.labels(site).set(forecast_mw[s] * _W_PER_MW)
                self.grid_w.labels(site).set(drawn["grid_mw"][s] * _W_PER_MW)
                self.grid_cap_w.labels(site).set(drawn["cap_mw"][s] * _W_PER_MW)
                self.load_cap_w.labels(site).set(drawn["load_cap_mw"][s] * _W_PER_MW)
                self.baseline_w.labels(site).set(baseline_mw[s] * _W_PER_MW)
                self.gpus.labels(site).set(busy[s])
                self.gpu_s.labels(site).inc(busy[s] * slot_s)
                self.slots.labels(site, basis[s]).inc()
                self.cap_violations.labels(site).inc(int(drawn["cap_violation"][s]))
                self.ramp_violations.labels(site).inc(int(over_ramp[s]))
            for name, count in jobs.items():
                self.jobs.labels(name).set(count)
            self.slot_start.set(start.timestamp())

    def _over_ramp(
        self, problem: Problem, start: pd.Timestamp, slot: pd.Timedelta, load_mw: np.ndarray
    ) -> np.ndarray:
        """Per site, whether the step into the slot from ``start`` broke a ramp limit ``[site]``
        (int); a site whose slot before did not run here steps from nothing known."""
        before = load_mw.astype(float)
        for s, site in enumerate(problem.site_names):
            end, mw = self._last_load.get(site, (None, 0.0))
            if end == start:
                before[s] = mw
            self._last_load[site] = (start + slot, float(load_mw[s]))
        stats = ramp_stats(load_mw[:, None], problem.ramp_up_mw, problem.ramp_down_mw, before)
        return stats.slots_over_ramp

    # --- what is read at each scrape --------------------------------------------------------
    def follow(
        self, planner: Planner, loop: ControlLoop | None, watcher: ForecastWatcher | None
    ) -> None:
        """Read the plan, the loop's pace and the forecast runs at every scrape."""
        self.registry.register(_Live(planner, loop, watcher))

    # --- the endpoint ---------------------------------------------------------------------
    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` in a thread of its own; the port bound. Raises
        ``OSError`` when it cannot listen there."""
        self._http, _ = start_http_server(port, host, registry=self.registry)
        return self._http.server_port

    def close(self) -> None:
        """Stop serving (nothing to do when not serving)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class _Live(Collector):
    """What describes the present, read when Prometheus scrapes."""

    def __init__(
        self, planner: Planner, loop: ControlLoop | None, watcher: ForecastWatcher | None
    ) -> None:
        self.planner, self.loop, self.watcher = planner, loop, watcher

    def collect(self) -> Iterable[Metric]:
        current, loop = self.planner.current, self.loop
        yield GaugeMetricFamily("greensched_plan_version", "Plan version in force",
                                value=current.version)  # fmt: skip
        yield GaugeMetricFamily("greensched_caps_in_force", "Caps the plan in force keeps",
                                value=current.caps_in_force)  # fmt: skip
        ready = loop is None or loop.keeping_pace()
        yield GaugeMetricFamily("greensched_ready", "1 while gRPC health answers SERVING",
                                value=float(ready))  # fmt: skip
        if loop is None:
            return
        yield GaugeMetricFamily("greensched_slot_seconds", "Slot length [s]",
                                value=loop.slot.total_seconds())  # fmt: skip
        lag = loop.lag()
        if lag is not None:
            yield GaugeMetricFamily(
                "greensched_loop_lag_seconds",
                "How far the loop's clock is past the next slot start the loop has not begun [s]",
                value=lag.total_seconds(),
            )
        if self.watcher is not None:
            yield from self._forecasts(self.watcher, loop.clock.now())

    def _forecasts(self, watcher: ForecastWatcher, now: pd.Timestamp) -> Iterator[Metric]:
        ages = GaugeMetricFamily("greensched_forecast_age_seconds",
                                 "Age of the weather model run in use [s]",
                                 labels=["site"])  # fmt: skip
        for site, age_h in watcher.ages_h(now).items():
            ages.add_metric([site], age_h * 3600)
        yield ages
        yield CounterMetricFamily("greensched_forecast_fetch_failures",
                                  "Looks for and reads of forecast runs that failed",
                                  value=watcher.failures)  # fmt: skip


def _executed_in(state: Mapping, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Job, site and GPUs of the work that completed in slot ``t`` (one entry per chunk),
    from the engine's ``state``: its last part of executed work, when that is slot ``t``'s."""
    executed = state["executed"]
    if not executed or not executed[-1][2] or executed[-1][2][0] != t:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    job, site, _, gpus = (np.asarray(part, dtype=np.int64) for part in executed[-1])
    return job, site, gpus


def _job_counts(problem: Problem, state: Mapping, t: int) -> dict[str, int]:
    """The day's jobs after slot ``t``: ``running`` (work done in the slot), ``waiting``
    (released, work left, none done in the slot) and ``late`` (past the deadline with work
    left, or finished after it)."""
    jobs = state["jobs"]
    failed = np.array([f is not None for f in jobs["failed"]], dtype=bool)
    active = (problem.work_units > np.asarray(jobs["done"])) & ~failed
    running = np.zeros(problem.n_jobs, dtype=bool)
    running[_executed_in(state, t)[0]] = True
    finished = np.asarray(jobs["finished_slot"])
    late = (active & (problem.deadline_slot <= t + 1)) | (
        ~failed & (finished >= 0) & (finished >= problem.deadline_slot)
    )
    waiting = active & ~running & (problem.release_slot <= t + 1)
    return {"running": int(running.sum()), "waiting": int(waiting.sum()), "late": int(late.sum())}
