"""The gRPC server: wiring and lifetime of ``greensched serve``.

:func:`start` wires config, forecast, jobs, store, planner and authenticator into a running
``grpc.aio`` server (on an event loop in a thread of its own) with standard health checking and
server reflection (so ``grpcurl`` and ``grpc-health-probe`` work), and with ``--metrics`` an
HTTP endpoint of Prometheus metrics (:mod:`.exporter`); :func:`serve` runs it until SIGINT or
SIGTERM. What the methods do is in :mod:`.servicer`.

Health means the control loop keeps pace: with a loop, the service ("" and the load-cap
service) answers NOT_SERVING until the loop has planned its first day and whenever it is more
than a slot behind its clock (:meth:`~.loop.ControlLoop.keeping_pace`, looked at every
:data:`READINESS_POLL_S`), SERVING again once it has caught up. A plan-only service is SERVING
from the start.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pandas as pd
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_reflection.v1alpha.reflection import aio as reflection_aio

from clusters.resources import DEFAULT_GPUS_PER_UNIT, connect, start_local
from clusters.runner import RayRunner
from clusters.tasks import TaskSettings
from scheduler.clock import Clock, CompressedClock, RealClock
from scheduler.config import Config, load_config
from scheduler.contracts import UserError
from scheduler.drivers.service.auth import Authenticator
from scheduler.drivers.service.exporter import ServiceMetrics
from scheduler.drivers.service.forecast_watch import ForecastWatcher
from scheduler.drivers.service.loop import ControlLoop, day_problem
from scheduler.drivers.service.measured import MeasurementBook
from scheduler.drivers.service.planner import Planner, utc_now
from scheduler.drivers.service.servicer import (
    MAX_STREAMS_PER_PEER,
    SERVICE_NAME,
    LoadCapServicer,
    Relays,
    handler,
)
from scheduler.drivers.service.store import Store
from scheduler.horizon import Horizon, tomorrow
from scheduler.jobs import read_jobs
from scheduler.pipeline import DayPipeline, parse_forecast_specs, parse_weather_specs

__all__ = [
    "MAX_MESSAGE_BYTES",
    "READINESS_POLL_S",
    "SERVICE_NAME",
    "Running",
    "ServeOptions",
    "TlsFiles",
    "check_listen",
    "serve",
    "start",
]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024  # an event of 96 intervals is about 4 KiB
READINESS_POLL_S = 0.1  # how often health looks whether the loop keeps pace [s]
_LOOPBACK_NAMES = {"localhost"}
_REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
_T = TypeVar("_T")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the server's certificate and key; with ``client_ca``, clients need a cert."""

    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass(frozen=True)
class ServeOptions:
    """What ``greensched serve`` was asked for."""

    config: Path | None = None  # None = embedded default
    listen: str = "127.0.0.1:50051"
    db: Path = Path("greensched.sqlite")
    auth: Path | None = None  # None = open, loopback only
    tls: TlsFiles | None = None
    date: str | None = None  # operating day; None = tomorrow in the sites' zone
    jobs: Path | None = None  # jobs CSV; None = the config's workload
    weather: tuple[str, ...] = ()  # "SITE=FILE" specs; sites not named get synthetic weather
    forecasts: tuple[str, ...] = ()  # "SITE=SOURCE" weather model runs; default: the config's
    settle_on: str | None = None  # "weather" or "measurements"; default: the config's
    measurements_file: Path | None = None  # a SCADA export to read; default: the config's
    max_workers: int = 16  # threads for blocking work (SQLite, planning, plan messages)
    streams_per_peer: int = MAX_STREAMS_PER_PEER  # open Watch* streams per client address
    loop: bool = False  # run the control loop: days on the clock, caps binding what runs
    dispatch: bool = True  # with the loop: run each slot on Ray (False: chunks complete at once)
    ray_address: str | None = None  # None = an embedded local Ray
    clock_start: pd.Timestamp | None = None  # a simulated clock from here; None = wall clock
    speedup: float = 1.0  # simulated seconds per wall-clock second
    days: int | None = None  # stop after this many operating days; None = run until stopped
    out: Path = Path("out/serve")  # one directory per operating day
    jobs_dir: Path | None = None  # with the loop: each day's jobs from DIR/YYYY-MM-DD.csv
    metrics: str | None = None  # HOST:PORT of the Prometheus endpoint; None = off


class _EventLoop:
    """An asyncio event loop running in a daemon thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="greensched-grpc", daemon=True
        )
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


@dataclass
class Running:
    """A started server and what it serves."""

    server: grpc.aio.Server
    port: int
    planner: Planner
    store: Store
    health: health_aio.HealthServicer
    events: _EventLoop
    relays: Relays
    executor: ThreadPoolExecutor
    metrics: ServiceMetrics
    loop: ControlLoop | None = None
    ray_started: bool = False
    thread: threading.Thread | None = None
    watcher: ForecastWatcher | None = None
    metrics_port: int | None = None  # where /metrics is served; None = not served
    readiness: asyncio.Task | None = None  # sets health from the loop's pace

    def start_loop(self) -> threading.Thread:
        """Run the control loop in a thread of its own (and follow the forecast runs)."""
        assert self.loop is not None
        self.thread = threading.Thread(target=self.loop.run, name="greensched-loop", daemon=True)
        self.thread.start()
        if self.watcher is not None:
            self.watcher.start()
        return self.thread

    def stop(self, grace_s: float = 2.0) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.loop is not None:
            self.loop.stop()
            if self.thread is not None:
                self.thread.join()
        self.events.run(self._stop_serving(grace_s))
        self.metrics.close()
        self.relays.stop()
        self.executor.shutdown(cancel_futures=True)
        self.events.close()
        self.planner.close()
        self.store.close()
        if self.ray_started:
            import ray

            ray.shutdown()

    async def _stop_serving(self, grace_s: float) -> None:
        if self.readiness is not None:
            self.readiness.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)


def _runner(options: ServeOptions, config: Config) -> tuple[RayRunner | None, bool]:
    """The Ray runner the loop dispatches on, and whether Ray was started here."""
    if not options.dispatch:
        return None, False
    import ray

    gpus = {name: site.gpus for name, site in config.sites.items()}
    started = not ray.is_initialized()
    if options.ray_address:
        connect(options.ray_address, gpus, DEFAULT_GPUS_PER_UNIT)
    elif started:
        start_local(gpus, DEFAULT_GPUS_PER_UNIT, log_to_driver=False)
    runner = RayRunner(gpus, TaskSettings(gpus_per_unit=DEFAULT_GPUS_PER_UNIT))
    runner.warm_up()  # before the clock starts: a cold worker pool lags the first slots
    return runner, started


# --- wiring --------------------------------------------------------------------------------
def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_port(flag: str, address: str, example: str) -> tuple[str, int]:
    """``HOST:PORT`` of option ``flag`` split; one message naming it otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UserError(f"{flag} {address!r}: expected HOST:PORT, e.g. {example}")
    return host, int(port)


def check_listen(listen: str, auth_open: bool) -> None:
    """Refuse a non-loopback address without an auth file; the message says what is allowed."""
    host, _ = _host_port("--listen", listen, "127.0.0.1:50051")
    if auth_open and not _is_loopback(host):
        raise UserError(
            f"--listen {listen!r}: without --auth the server binds only to loopback "
            "(127.0.0.1, ::1, localhost); give an auth file to listen elsewhere"
        )


def _in_use_message(flag: str, address: str) -> str:
    return f"{flag} {address}: cannot listen there (is the port in use by another process?)"


def _check_port_free(listen: str) -> None:
    """Refuse ``listen`` when every address it names is taken (bound as gRPC binds, with
    ``SO_REUSEADDR``), before gRPC's core tries and logs its own error line first."""
    host, _, port = listen.rpartition(":")
    if int(port) == 0:
        return
    try:
        addresses = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except socket.gaierror:
        return  # gRPC names the address it cannot resolve
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
                return  # one address is free: gRPC can listen
            except OSError:
                continue
    raise UserError(_in_use_message("--listen", listen))


async def _bound_server(options: ServeOptions) -> tuple[grpc.aio.Server, int]:
    """A server listening on ``options.listen`` (TLS when configured), and the port bound."""
    _check_port_free(options.listen)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    try:
        if options.tls is None:
            return server, server.add_insecure_port(options.listen)
        tls = options.tls
        credentials = grpc.ssl_server_credentials(
            [(tls.key.read_bytes(), tls.cert.read_bytes())],
            root_certificates=tls.client_ca.read_bytes() if tls.client_ca else None,
            require_client_auth=tls.client_ca is not None,
        )
        return server, server.add_secure_port(options.listen, credentials)
    except RuntimeError as error:
        raise UserError(f"{_in_use_message('--listen', options.listen)}: {error}") from None


def _metrics_at(address: str) -> tuple[str, int]:
    """Host and port of ``--metrics``; one message when it is not HOST:PORT."""
    return _host_port("--metrics", address, "127.0.0.1:9464")


def _serve_metrics(address: str, metrics: ServiceMetrics) -> int:
    """Serve ``metrics`` on ``address`` (``--metrics``); the port bound."""
    host, port = _metrics_at(address)
    try:
        bound = metrics.serve(host.strip("[]"), port)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise UserError(_in_use_message("--metrics", address)) from None
        raise UserError(f"--metrics {address}: cannot listen there: {error}") from None
    log.info("metrics on http://%s:%d/metrics", host, bound)
    if not _is_loopback(host):
        log.warning("--metrics %s: anyone who reaches it reads the sites' load (no token)", address)
    return bound


def _loop_clock(options: ServeOptions, store: Store, config: Config) -> Clock:
    """The wall clock, or a simulated one from ``options.clock_start``; a simulated day the
    loop was running when the process stopped resumes at the first slot it had not run."""
    if options.clock_start is None:
        return RealClock()
    start_at = options.clock_start
    progress = store.loop_progress()
    if progress is not None and not progress.finished:
        day_start = pd.Timestamp(progress.day).tz_localize(config.timezone).tz_convert("UTC")
        slot = pd.Timedelta(minutes=config.forecast.slot_minutes)
        start_at = max(start_at, day_start + progress.next_slot * slot)
    return CompressedClock(options.speedup, start=start_at)


async def _set_health(health_servicer: health_aio.HealthServicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else (
        health_pb2.HealthCheckResponse.NOT_SERVING
    )  # fmt: skip
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, status)


async def _follow_pace(health_servicer: health_aio.HealthServicer, loop: ControlLoop) -> None:
    """Health SERVING while ``loop`` keeps pace, NOT_SERVING otherwise (module docstring)."""
    serving, served = False, False  # health was set NOT_SERVING at start
    while True:
        pace = loop.keeping_pace()
        if pace != serving:
            await _set_health(health_servicer, pace)
            _log_pace(loop, pace, served)
            serving, served = pace, True
        await asyncio.sleep(READINESS_POLL_S)


def _log_pace(loop: ControlLoop, pace: bool, served: bool) -> None:
    """Say why health changed (``served``: it was SERVING before)."""
    lag = loop.lag()
    if pace:
        log.info("the loop %s: health SERVING", "caught up" if served else "is running")
    elif lag is None:
        log.info("the loop has stopped: health NOT_SERVING")
    else:
        log.warning("the loop is %.0f s behind its clock (a slot is %.0f s): health NOT_SERVING "
                    "until it catches up", lag.total_seconds(),
                    loop.slot.total_seconds())  # fmt: skip


async def _start_serving(
    server: grpc.aio.Server, servicer: LoadCapServicer, loop: ControlLoop | None
) -> tuple[health_aio.HealthServicer, asyncio.Task | None]:
    """Add the service, health and reflection to ``server`` and start it; with a ``loop``,
    the task that keeps health to its pace."""
    server.add_generic_rpc_handlers((handler(servicer),))
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await _set_health(health_servicer, loop is None)
    names = (SERVICE_NAME, health.SERVICE_NAME, _REFLECTION_V1, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    server.add_generic_rpc_handlers((_reflection_v1(names),))
    await server.start()
    if loop is None:
        return health_servicer, None
    return health_servicer, asyncio.create_task(_follow_pace(health_servicer, loop))


def _reflection_v1(names: tuple[str, ...]) -> grpc.GenericRpcHandler:
    """Server reflection v1 (what grpcurl and newer tools try first) answered by the v1alpha
    servicer: the pinned grpcio-reflection (1.81) ships only v1alpha, and v1 is the same
    protocol under a new package name (the same messages and field numbers)."""
    servicer = reflection_aio.ReflectionServicer(names)
    method = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(_REFLECTION_V1, {"ServerReflectionInfo": method})


def start(options: ServeOptions, clock: Callable[[], pd.Timestamp] = utc_now) -> Running:
    """Forecast the day, load jobs and caps, plan, and start serving on ``options.listen``."""
    config = load_config(options.config)
    if options.settle_on is not None:
        config = config.updated({"measurements": {"settle_on": options.settle_on}}, "--settle-on")
    auth = (
        Authenticator.open()
        if options.auth is None
        else Authenticator.from_file(options.auth, config.sites)
    )
    check_listen(options.listen, auth.is_open)
    if options.metrics is not None:
        _metrics_at(options.metrics)  # refused before anything starts
    events = _EventLoop()
    try:
        server, port = events.run(_bound_server(options))  # a busy port writes nothing
    except BaseException:
        events.close()
        raise
    metrics = ServiceMetrics()
    try:
        metrics_port = None if options.metrics is None else _serve_metrics(options.metrics, metrics)
        running = _start(options, clock, config, auth, events, server, port, metrics)
    except BaseException:
        metrics.close()
        events.run(server.stop(None))
        events.close()
        raise
    running.metrics_port = metrics_port
    return running


def _start(
    options: ServeOptions,
    clock: Callable[[], pd.Timestamp],
    config: Config,
    auth: Authenticator,
    events: _EventLoop,
    server: grpc.aio.Server,
    port: int,
    metrics: ServiceMetrics,
) -> Running:
    store = Store(options.db)
    try:
        loop_clock: Clock | None = None
        if options.loop:
            loop_clock = _loop_clock(options, store, config)
            clock = loop_clock.now
        first = options.date or (
            clock().tz_convert(config.timezone).date().isoformat()
            if options.loop
            else tomorrow(config.timezone).isoformat()
        )
        pipeline = DayPipeline(
            config, parse_weather_specs(list(options.weather), list(config.sites)),
            forecasts=parse_forecast_specs(list(options.forecasts), config),
        )  # fmt: skip
        horizon = pipeline.horizon(first)
        if options.jobs is not None:
            problem = pipeline.problem(
                horizon, jobs=read_jobs(options.jobs), jobs_source=f"{options.jobs} line"
            )
        else:
            problem = day_problem(pipeline, horizon, jobs_dir=options.jobs_dir)

        def forecast_at(day: Horizon, issued_at: pd.Timestamp) -> pd.DataFrame:
            return pipeline.supply(day, issued_at=issued_at).forecast

        planner = Planner(
            config, replace(problem, actual_supply=None), store, clock,
            forecast_at if options.loop else None, metrics,
        )  # fmt: skip
    except BaseException:
        store.close()
        raise
    loop, ray_started, watcher, book = None, False, None, None
    if loop_clock is not None:
        runner, ray_started = _runner(options, config)
        file = options.measurements_file or config.measurements.file
        book = MeasurementBook(store, config.sites, config.forecast.slot_minutes, loop_clock.now,
                               Path(file) if file else None)  # fmt: skip
        loop = ControlLoop(
            config, pipeline, planner, store, loop_clock, first_day=pd.Timestamp(first),
            days=options.days, out_dir=options.out, runner=runner, jobs_dir=options.jobs_dir,
            book=book, metrics=metrics,
        )  # fmt: skip
        if pipeline.feed is not None:
            poll = pd.Timedelta(minutes=config.forecast.nwp.poll_minutes)
            watcher = ForecastWatcher(pipeline.feed, planner, loop_clock, poll=poll)
    executor = ThreadPoolExecutor(options.max_workers, thread_name_prefix="greensched-rpc")
    relays = Relays(events.loop, planner, loop)
    servicer = LoadCapServicer(
        planner, auth, executor, relays, loop, options.streams_per_peer, book=book,
        metrics=metrics,
    )  # fmt: skip
    metrics.follow(planner, loop, watcher)
    health_servicer, readiness = events.run(_start_serving(server, servicer, loop))
    host = options.listen.rpartition(":")[0]
    log.info(
        "greensched serve: listening on %s:%d (%s%s), day %s, %d jobs, database %s",
        host,
        port,
        "TLS" if options.tls else "plaintext",
        ", client certificates required" if options.tls and options.tls.client_ca else "",
        first,
        problem.n_jobs,
        options.db,
    )
    if auth.is_open:
        log.warning(
            "no --auth file: open service, every caller may cap every site; bound to loopback only"
        )
    return Running(
        server, port, planner, store, health_servicer, events, relays, executor, metrics, loop,
        ray_started, watcher=watcher, readiness=readiness,
    )  # fmt: skip


def serve(options: ServeOptions) -> None:
    """Run the server (and its control loop) until SIGINT or SIGTERM, or until the loop has run
    ``options.days`` days; then stop gracefully."""
    running = start(options)
    stopped = threading.Event()

    def stop(signum: int, frame: object) -> None:
        log.info("greensched serve: %s, stopping", signal.Signals(signum).name)
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if running.loop is not None:
        thread = running.start_loop()
        while thread.is_alive() and not stopped.wait(0.5):
            pass
    else:
        stopped.wait()
    running.stop()
