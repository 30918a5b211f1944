"""The gRPC server: messages in, shared types to the planner, shared types back to messages.

:func:`start` wires config, forecast, jobs, store, planner and authenticator into a running
``grpc.Server`` with standard health checking and server reflection (so ``grpcurl`` and
``grpc-health-probe`` work); :func:`serve` runs it until SIGINT or SIGTERM. The servicer holds
no logic: it identifies the caller, converts, calls the planner and maps its errors to status
codes.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pandas as pd
from google.protobuf import duration_pb2, message, timestamp_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from clusters.resources import DEFAULT_GPUS_PER_UNIT, connect, start_local
from clusters.runner import RayRunner
from clusters.tasks import TaskSettings
from scheduler.clock import Clock, CompressedClock, RealClock
from scheduler.config import Config, load_config
from scheduler.contracts import UserError
from scheduler.drivers.service.auth import (
    Authenticator,
    AuthError,
    Coordinator,
    ScopeError,
    ThrottledError,
)
from scheduler.drivers.service.events import CapEvent, CapInterval, EventError
from scheduler.drivers.service.loop import ControlLoop, ReportRow, day_problem
from scheduler.drivers.service.pb.greensched.v1 import loadcap_pb2 as pb
from scheduler.drivers.service.pb.greensched.v1 import loadcap_pb2_grpc as pb_grpc
from scheduler.drivers.service.planner import (
    ConflictError,
    Planner,
    PlanVersion,
    SubmitAnswer,
    UnknownEventError,
    utc_now,
)
from scheduler.drivers.service.store import ACTIVE, Store, StoredEvent
from scheduler.horizon import tomorrow
from scheduler.jobs import read_jobs
from scheduler.pipeline import DayPipeline, parse_weather_specs

__all__ = [
    "MAX_MESSAGE_BYTES",
    "SERVICE_NAME",
    "LoadCapServicer",
    "Running",
    "ServeOptions",
    "TlsFiles",
    "serve",
    "start",
]

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LoadCapService"].full_name
MAX_MESSAGE_BYTES = 64 * 1024  # an event of 96 intervals is about 4 KiB
_WATCH_POLL_S = 0.5  # how often a WatchPlan stream checks that its client is still there
_EARLIEST = pd.Timestamp("1970-01-01", tz="UTC")
_LATEST = pd.Timestamp("2200-01-01", tz="UTC")


class NoLoopError(Exception):
    """A report asked of a plan-only service (gRPC FAILED_PRECONDITION)."""


_STATUS_OF = {
    EventError: grpc.StatusCode.INVALID_ARGUMENT,
    AuthError: grpc.StatusCode.UNAUTHENTICATED,
    ThrottledError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    NoLoopError: grpc.StatusCode.FAILED_PRECONDITION,
    ScopeError: grpc.StatusCode.PERMISSION_DENIED,
    ConflictError: grpc.StatusCode.FAILED_PRECONDITION,
    UnknownEventError: grpc.StatusCode.NOT_FOUND,
}
_REJECTED: tuple[type[Exception], ...] = tuple(_STATUS_OF)
_INTERNAL = "internal error; the server log has the details"
_LOOPBACK_NAMES = {"localhost"}


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
    max_workers: int = 16
    loop: bool = False  # run the control loop: days on the clock, caps binding what runs
    dispatch: bool = True  # with the loop: run each slot on Ray (False: chunks complete at once)
    ray_address: str | None = None  # None = an embedded local Ray
    clock_start: pd.Timestamp | None = None  # a simulated clock from here; None = wall clock
    speedup: float = 1.0  # simulated seconds per wall-clock second
    days: int | None = None  # stop after this many operating days; None = run until stopped
    out: Path = Path("out/serve")  # one directory per operating day
    jobs_dir: Path | None = None  # with the loop: each day's jobs from DIR/YYYY-MM-DD.csv


@dataclass
class Running:
    """A started server and what it serves."""

    server: grpc.Server
    port: int
    planner: Planner
    store: Store
    health: health.HealthServicer
    loop: ControlLoop | None = None
    ray_started: bool = False
    thread: threading.Thread | None = None

    def start_loop(self) -> threading.Thread:
        """Run the control loop in a thread of its own."""
        assert self.loop is not None
        self.thread = threading.Thread(target=self.loop.run, name="greensched-loop", daemon=True)
        self.thread.start()
        return self.thread

    def stop(self, grace_s: float = 2.0) -> None:
        if self.loop is not None:
            self.loop.stop()
            if self.thread is not None:
                self.thread.join()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()
        self.store.close()
        if self.ray_started:
            import ray

            ray.shutdown()


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
    return RayRunner(gpus, TaskSettings(gpus_per_unit=DEFAULT_GPUS_PER_UNIT)), started


@dataclass(frozen=True)
class _Undecodable:
    """A request whose bytes are not a message of its type (e.g. invalid UTF-8 in a string)."""

    type_name: str


def _lenient(message_type: type[message.Message]) -> Callable[[bytes], object]:
    """A request deserializer that never raises: grpcio answers a raising one with INTERNAL
    and logs a traceback, before any handler runs."""

    def parse(data: bytes) -> object:
        try:
            return message_type.FromString(data)
        except message.DecodeError:
            return _Undecodable(message_type.DESCRIPTOR.name)

    return parse


def _refusal(method: str, error: Exception) -> tuple[grpc.StatusCode, str]:
    """The status and details for ``error``: the mapped code and its message, or INTERNAL
    with a generic message (the traceback goes to the log, never to the client)."""
    if isinstance(error, _REJECTED):
        code = _STATUS_OF[type(error)]
        if code != grpc.StatusCode.RESOURCE_EXHAUSTED:  # the throttle logs once per peer
            log.warning("%s rejected (%s): %s", method, code.name, error)
        return code, str(error)
    log.error("%s failed", method, exc_info=error)
    return grpc.StatusCode.INTERNAL, _INTERNAL


def _checked(request: object) -> None:
    if isinstance(request, _Undecodable):
        raise EventError(
            "request",
            f"not a valid {request.type_name} message (a string field that is not valid "
            "UTF-8, or bytes of another message)",
        )


def _rpc(method: Callable) -> Callable:
    """Refuse undecodable requests; map the planner's and converters' errors to status codes."""

    @functools.wraps(method)
    def wrapper(self: LoadCapServicer, request, context: grpc.ServicerContext):
        try:
            _checked(request)
            return method(self, request, context)
        except Exception as error:  # every error becomes a status: _refusal
            code, details = _refusal(method.__name__, error)
        context.abort(code, details)

    return wrapper


def _stream(method: Callable) -> Callable:
    """:func:`_rpc` for a server-streaming method."""

    @functools.wraps(method)
    def wrapper(self: LoadCapServicer, request, context: grpc.ServicerContext):
        try:
            _checked(request)
            yield from method(self, request, context)
        except Exception as error:  # every error becomes a status: _refusal
            code, details = _refusal(method.__name__, error)
        else:
            return
        context.abort(code, details)

    return wrapper


class LoadCapServicer(pb_grpc.LoadCapServiceServicer):
    """Converts messages to shared types and back; see the module docstring."""

    def __init__(
        self, planner: Planner, auth: Authenticator, loop: ControlLoop | None = None
    ) -> None:
        self._planner = planner
        self._auth = auth
        self._loop = loop

    def _caller(self, context: grpc.ServicerContext) -> Coordinator:
        return self._auth.identify(context.invocation_metadata(), context.peer())

    @_rpc
    def SubmitLoadCap(self, request: pb.SubmitLoadCapRequest, context) -> pb.SubmitLoadCapResponse:
        coordinator = self._caller(context)
        answer = self._planner.submit(_event_of(request), coordinator)
        return _answer_message(answer)

    @_rpc
    def CancelLoadCap(self, request: pb.CancelLoadCapRequest, context) -> pb.CancelLoadCapResponse:
        coordinator = self._caller(context)
        cancelled, version = self._planner.cancel(request.event_id, coordinator, request.reason)
        return pb.CancelLoadCapResponse(cancelled=cancelled, plan_version=version)

    @_rpc
    def ListLoadCaps(self, request: pb.ListLoadCapsRequest, context) -> pb.ListLoadCapsResponse:
        coordinator = self._caller(context)
        events = self._planner.events(
            coordinator,
            self._sites(request.sites, coordinator),
            _time_of(getattr(request, "from"), "from") if request.HasField("from") else None,
            _time_of(request.to, "to") if request.HasField("to") else None,
            request.include_cancelled,
        )
        return pb.ListLoadCapsResponse(events=[_event_message(e) for e in events])

    @_rpc
    def GetPlan(self, request: pb.GetPlanRequest, context) -> pb.Plan:
        sites = self._sites(request.sites, self._caller(context))
        return _plan_message(self._planner.current, sites, self._planner.clock(), slots=True)

    @_stream
    def WatchPlan(self, request: pb.WatchPlanRequest, context) -> Iterator[pb.Plan]:
        sites = self._sites(request.sites, self._caller(context))
        version, clock = self._planner.current, self._planner.clock
        yield _plan_message(version, sites, clock(), slots=not request.summary_only)
        while context.is_active():
            newer = self._planner.wait_for_version(version.version, _WATCH_POLL_S)
            if newer is not None:
                version = newer
                yield _plan_message(version, sites, clock(), slots=not request.summary_only)

    @_rpc
    def GetReport(self, request: pb.GetReportRequest, context) -> pb.Report:
        sites = set(self._sites(request.sites, self._caller(context)))
        loop = self._running_loop()
        start = _time_of(getattr(request, "from"), "from") if request.HasField("from") else None
        end = _time_of(request.to, "to") if request.HasField("to") else None
        with loop.report_added:
            rows = [
                row
                for row in loop.reported
                if row.site in sites
                and (start is None or row.start >= start)
                and (end is None or row.start < end)
            ]
        return self._report_message(rows)

    @_stream
    def WatchReport(self, request: pb.WatchReportRequest, context) -> Iterator[pb.Report]:
        sites = set(self._sites(request.sites, self._caller(context)))
        loop = self._running_loop()
        sent = 0
        while context.is_active():
            with loop.report_added:
                if len(loop.reported) == sent:
                    loop.report_added.wait(_WATCH_POLL_S)
                rows, sent = loop.reported[sent:], len(loop.reported)
            mine = [row for row in rows if row.site in sites]
            if mine:
                yield self._report_message(mine)

    def _running_loop(self) -> ControlLoop:
        if self._loop is None:
            raise NoLoopError("this service runs no control loop (plan only): nothing is reported")
        return self._loop

    def _report_message(self, rows: list[ReportRow]) -> pb.Report:
        return pb.Report(
            clock=_timestamp(self._planner.clock()),
            slot_minutes=self._planner.horizon.slot_minutes,
            slots=[
                pb.ReportSlot(
                    site=row.site,
                    start=_timestamp(row.start),
                    usage_mw=row.usage_mw,
                    demand_mw=row.demand_mw,
                    baseline_mw=row.baseline_mw,
                    operating_state=pb.RUNNING_CURTAILED if row.curtailed else pb.NORMAL,
                    grid_cap_mw=row.grid_cap_mw,
                    load_cap_mw=row.load_cap_mw if math.isfinite(row.load_cap_mw) else None,
                )
                for row in rows
            ],
        )

    @_rpc
    def GetForecast(self, request: pb.GetForecastRequest, context) -> pb.Forecast:
        sites = self._sites(request.sites, self._caller(context))
        supply = self._planner.day.supply
        rows = supply[supply["site"].isin(sites)]
        return pb.Forecast(
            horizon_start=_timestamp(self._planner.horizon.start),
            slot_minutes=self._planner.horizon.slot_minutes,
            slots=[
                pb.SupplySlot(
                    site=row.site,
                    start=_timestamp(row.time),
                    pv_mw=row.pv_mw,
                    wind_mw=row.wind_mw,
                    green_mw=row.green_mw,
                )
                for row in rows.itertuples()
            ],
        )

    def _sites(self, names, coordinator: Coordinator) -> list[str]:
        """The sites a read covers: ``names`` (known, readable by ``coordinator``), or every
        site it may read when empty."""
        known = self._planner.sites
        for k, name in enumerate(names):
            if name not in known:
                raise EventError(
                    f"sites[{k}]", f"unknown site {name[:64]!r}; known sites: {', '.join(known)}"
                )
        return coordinator.readable(names, known)


def _handler(servicer: LoadCapServicer) -> grpc.GenericRpcHandler:
    """The service's method handlers, each with a deserializer that never raises."""
    service = pb.DESCRIPTOR.services_by_name["LoadCapService"]
    handlers = {}
    for method in service.methods:
        request, reply = getattr(pb, method.input_type.name), getattr(pb, method.output_type.name)
        make = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=_lenient(request),
            response_serializer=reply.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


# --- messages -> shared types --------------------------------------------------------------
def _time_of(message: timestamp_pb2.Timestamp, field: str) -> pd.Timestamp:
    if not 0 <= message.nanos < 10**9:
        raise EventError(f"{field}.nanos", f"{message.nanos}; allowed 0 to 999999999")
    if not _EARLIEST.value // 10**9 <= message.seconds < _LATEST.value // 10**9:
        raise EventError(
            field, f"seconds {message.seconds} out of range; allowed {_EARLIEST} to {_LATEST}"
        )
    return pd.Timestamp(message.seconds * 10**9 + message.nanos, tz="UTC")


def _seconds_of(message: duration_pb2.Duration, field: str) -> float:
    if not -(10**9) < message.nanos < 10**9:
        raise EventError(f"{field}.nanos", f"{message.nanos}; allowed -999999999 to 999999999")
    return message.seconds + message.nanos / 1e9


def _event_of(request: pb.SubmitLoadCapRequest) -> CapEvent:
    intervals = []
    for k, interval in enumerate(request.intervals):
        where = f"intervals[{k}]"
        if not interval.HasField("start"):
            raise EventError(f"{where}.start", "is required")
        kind = interval.type
        intervals.append(
            CapInterval(
                start=_time_of(interval.start, f"{where}.start"),
                duration_s=_seconds_of(interval.duration, f"{where}.duration"),
                type=pb.PayloadType.Name(kind) if kind in pb.PayloadType.values() else str(kind),
                value_mw=interval.value_mw,
            )
        )
    return CapEvent(
        event_id=request.event_id,
        modification_number=request.modification_number,
        program=request.program,
        priority=request.priority,
        targets=tuple(request.targets),
        intervals=tuple(intervals),
    )


# --- shared types -> messages --------------------------------------------------------------
def _timestamp(time: pd.Timestamp) -> timestamp_pb2.Timestamp:
    seconds, nanos = divmod(pd.Timestamp(time).value, 10**9)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = math.floor(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))


def _answer_message(answer: SubmitAnswer) -> pb.SubmitLoadCapResponse:
    cost = answer.cost
    return pb.SubmitLoadCapResponse(
        accepted=True,
        opt=pb.SCHEDULED if answer.scheduled else pb.OPT_IN if answer.opt_in else pb.OPT_OUT,
        opt_reason=answer.reason,
        cost=pb.CapCost(
            late_jobs=cost.late_jobs,
            late_jobs_total=cost.late_jobs_total,
            late_gpu_hours=cost.late_gpu_hours,
            moved_mwh=cost.moved_mwh,
            green_share_change=cost.green_share_change,
            grid_mwh_change=cost.grid_mwh_change,
        ),
        plan_version=answer.plan_version,
        replayed=answer.replayed,
    )


def _event_message(stored: StoredEvent) -> pb.LoadCapEvent:
    event = stored.event
    return pb.LoadCapEvent(
        event_id=event.event_id,
        modification_number=event.modification_number,
        program=event.program,
        priority=event.priority,
        targets=event.targets,
        intervals=[
            pb.Interval(
                start=_timestamp(i.start),
                duration=_duration(i.duration_s),
                type=pb.PayloadType.Value(i.type),
                value_mw=i.value_mw,
            )
            for i in event.intervals
        ],
        status=pb.ACTIVE if stored.status == ACTIVE else pb.CANCELLED,
        coordinator=stored.coordinator,
        received_at=_timestamp(stored.received_at),
        opt=pb.OPT_IN if stored.answer["opt_in"] else pb.OPT_OUT,
        plan_version=stored.answer["plan_version"],
    )


def _plan_message(
    version: PlanVersion, sites: list[str], clock: pd.Timestamp, slots: bool
) -> pb.Plan:
    metrics = version.metrics
    message = pb.Plan(
        clock=_timestamp(clock),
        version=version.version,
        created_at=_timestamp(version.created_at),
        reason=version.reason,
        replanned=version.replanned,
        horizon_start=_timestamp(version.problem.horizon.start),
        slot_minutes=version.problem.horizon.slot_minutes,
        caps_in_force=version.caps_in_force,
        solver_status=version.result.status,
        plan_seconds=version.plan_seconds,
        metrics=pb.PlanMetrics(
            green_share=metrics.green_share,
            grid_mwh=metrics.grid_mwh,
            energy_used_mwh=metrics.energy_used_mwh,
            co2_t=metrics.co2_t,
            jobs_unfinished=metrics.jobs_unfinished,
            unfinished_gpu_hours=metrics.unfinished_gpu_hours,
            cap_violations=metrics.cap_violations,
        ),
    )
    if slots:
        load = version.site_load
        if sites:
            load = load[load["site"].isin(sites)]
        message.slots.extend(
            pb.SiteSlot(
                site=row.site,
                start=_timestamp(row.time),
                gpus_busy=row.gpus_busy,
                load_mw=row.load_mw,
                green_mw=row.green_mw,
                grid_mw=row.grid_mw,
                grid_cap_mw=row.cap_mw,
                load_cap_mw=row.load_cap_mw if math.isfinite(row.load_cap_mw) else None,
            )
            for row in load.itertuples()
        )
    return message


# --- wiring --------------------------------------------------------------------------------
def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(listen: str, auth_open: bool) -> None:
    """Refuse a non-loopback address without an auth file; the message says what is allowed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:50051")
    if auth_open and not _is_loopback(host):
        raise UserError(
            f"--listen {listen!r}: without --auth the server binds only to loopback "
            "(127.0.0.1, ::1, localhost); give an auth file to listen elsewhere"
        )


def _bind(server: grpc.Server, options: ServeOptions) -> int:
    """Listen on ``options.listen`` (TLS when configured); the port bound."""
    try:
        if options.tls is None:
            return server.add_insecure_port(options.listen)
        tls = options.tls
        credentials = grpc.ssl_server_credentials(
            [(tls.key.read_bytes(), tls.cert.read_bytes())],
            root_certificates=tls.client_ca.read_bytes() if tls.client_ca else None,
            require_client_auth=tls.client_ca is not None,
        )
        return server.add_secure_port(options.listen, credentials)
    except RuntimeError as error:
        raise UserError(
            f"--listen {options.listen}: cannot listen there (is the port in use by another "
            f"process?): {error}"
        ) from None


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


def start(options: ServeOptions, clock: Callable[[], pd.Timestamp] = utc_now) -> Running:
    """Forecast the day, load jobs and caps, plan, and start serving on ``options.listen``."""
    config = load_config(options.config)
    auth = (
        Authenticator.open()
        if options.auth is None
        else Authenticator.from_file(options.auth, config.sites)
    )
    check_listen(options.listen, auth.is_open)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="greensched-rpc"),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    port = _bind(server, options)  # before the database: a busy port writes nothing
    store = Store(options.db)
    loop_clock: Clock | None = None
    if options.loop:
        loop_clock = _loop_clock(options, store, config)
        clock = loop_clock.now
    first = options.date or (
        clock().tz_convert(config.timezone).date().isoformat()
        if options.loop
        else tomorrow(config.timezone).isoformat()
    )
    pipeline = DayPipeline(config, parse_weather_specs(list(options.weather), list(config.sites)))
    horizon = pipeline.horizon(first)
    if options.jobs is not None:
        problem = pipeline.problem(
            horizon, jobs=read_jobs(options.jobs), jobs_source=f"{options.jobs} line"
        )
    else:
        problem = day_problem(pipeline, horizon, jobs_dir=options.jobs_dir)
    planner = Planner(config, replace(problem, actual_supply=None), store, clock)
    loop, ray_started = None, False
    if loop_clock is not None:
        runner, ray_started = _runner(options, config)
        loop = ControlLoop(
            config, pipeline, planner, store, loop_clock, first_day=pd.Timestamp(first),
            days=options.days, out_dir=options.out, runner=runner, jobs_dir=options.jobs_dir,
        )  # fmt: skip
    server.add_generic_rpc_handlers((_handler(LoadCapServicer(planner, auth, loop)),))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    server.start()
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
    return Running(server, port, planner, store, health_servicer, loop, ray_started)


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
