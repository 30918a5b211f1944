"""The gRPC servicer on ``grpc.aio``: messages in, shared types to the planner, shared types
back to messages, errors to status codes.

The servicer holds no logic: it identifies the caller, converts, calls the planner and maps its
errors to status codes. Handlers are coroutines on the server's event loop; whatever blocks
(SQLite, building a plan message from tables) runs in a bounded thread pool, so a stream
waiting for the next plan version or report holds no thread at all. A submission or
cancellation is checked and queued on the pool, then awaits its answer (the planner's future:
its batch planned and committed) holding no thread either. Two relay threads
(one for plan versions, one for reports) turn the planner's and the loop's thread conditions
into asyncio wake-ups for every stream at once.

Every method is registered with a request deserializer that never raises (grpcio answers a
raising one with INTERNAL and a logged traceback before any handler runs): bytes that are not a
message of the type, such as a string field that is not UTF-8, become INVALID_ARGUMENT. Any
unexpected error in a handler is logged and answered INTERNAL with a generic message.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import pandas as pd
from google.protobuf import duration_pb2, message, timestamp_pb2

from scheduler.drivers.service.auth import (
    Authenticator,
    AuthError,
    Coordinator,
    ScopeError,
    ThrottledError,
    peer_address,
)
from scheduler.drivers.service.events import CapEvent, CapInterval, EventError
from scheduler.drivers.service.exporter import ServiceMetrics
from scheduler.drivers.service.flexibility import Flexibility
from scheduler.drivers.service.loop import ControlLoop
from scheduler.drivers.service.measured import MeasurementBook
from scheduler.drivers.service.pb.greensched.v1 import loadcap_pb2 as pb
from scheduler.drivers.service.planner import (
    ConflictError,
    Planner,
    PlanVersion,
    SubmitAnswer,
    UnknownEventError,
)
from scheduler.drivers.service.reports import ReportRow
from scheduler.drivers.service.store import (
    ACTIVE,
    MeasurementConflict,
    StoredEvent,
    StoredMeasurement,
)
from scheduler.measurements import Measurement, MeasurementError

__all__ = ["MAX_STREAMS_PER_PEER", "SERVICE_NAME", "LoadCapServicer", "Relays", "handler"]

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LoadCapService"].full_name
MAX_STREAMS_PER_PEER = 128  # open WatchPlan + WatchReport streams per peer address
_RELAY_POLL_S = 0.5  # how often a relay thread looks whether the service is stopping
_EARLIEST = pd.Timestamp("1970-01-01", tz="UTC")
_LATEST = pd.Timestamp("2200-01-01", tz="UTC")
_T = TypeVar("_T")


class NoLoopError(Exception):
    """A report asked of a plan-only service (gRPC FAILED_PRECONDITION)."""


class StreamLimitError(Exception):
    """A peer with too many open streams (gRPC RESOURCE_EXHAUSTED)."""


_STATUS_OF = {
    EventError: grpc.StatusCode.INVALID_ARGUMENT,
    AuthError: grpc.StatusCode.UNAUTHENTICATED,
    ThrottledError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    StreamLimitError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    NoLoopError: grpc.StatusCode.FAILED_PRECONDITION,
    ScopeError: grpc.StatusCode.PERMISSION_DENIED,
    ConflictError: grpc.StatusCode.FAILED_PRECONDITION,
    UnknownEventError: grpc.StatusCode.NOT_FOUND,
    MeasurementError: grpc.StatusCode.INVALID_ARGUMENT,
    MeasurementConflict: grpc.StatusCode.ALREADY_EXISTS,
}
_REJECTED: tuple[type[Exception], ...] = tuple(_STATUS_OF)
_QUIET = (ThrottledError, StreamLimitError)  # logged once per episode, not per call
_INTERNAL = "internal error; the server log has the details"


# --- errors and requests -------------------------------------------------------------------
@dataclass(frozen=True)
class _Undecodable:
    """A request whose bytes are not a message of its type (e.g. invalid UTF-8 in a string)."""

    type_name: str


def _lenient(message_type: type[message.Message]) -> Callable[[bytes], object]:
    """A request deserializer that never raises."""

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
        if not isinstance(error, _QUIET):
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
    async def wrapper(self: LoadCapServicer, request, context: grpc.aio.ServicerContext):
        try:
            _checked(request)
            return await method(self, request, context)
        except Exception as error:  # every error becomes a status: _refusal
            code, details = self._refused(method.__name__, error)
        await context.abort(code, details)

    return wrapper


def _stream(method: Callable) -> Callable:
    """:func:`_rpc` for a server-streaming method, holding one of the peer's stream slots."""

    @functools.wraps(method)
    async def wrapper(self: LoadCapServicer, request, context: grpc.aio.ServicerContext):
        try:
            _checked(request)
            with self._streams.held(peer_address(context.peer())):
                async for reply in method(self, request, context):
                    yield reply
        except Exception as error:  # every error becomes a status: _refusal
            code, details = self._refused(method.__name__, error)
        else:
            return
        await context.abort(code, details)

    return wrapper


class _StreamSlots:
    """Open streams per peer address, at most ``limit`` each (used on the event loop only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    @contextmanager
    def held(self, address: str) -> Iterator[None]:
        if self._open[address] >= self.limit:
            raise StreamLimitError(
                f"{address} has {self._open[address]} open streams; at most {self.limit} per "
                "client address (close one, or watch several sites on one stream)"
            )
        self._open[address] += 1
        try:
            yield
        finally:
            self._open[address] -= 1
            if not self._open[address]:
                del self._open[address]


# --- wake-ups from threads -----------------------------------------------------------------
class _Wakeup:
    """Wakes every coroutine waiting on it when another thread calls :meth:`fire`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def armed(self) -> asyncio.Event:
        """The event the next :meth:`fire` sets: take it before looking for news."""
        return self._event

    def fire(self) -> None:
        self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()


class Relays:
    """Two daemon threads that wait on the planner's new versions and the loop's new report
    rows and wake the streams on the event loop; :meth:`stop` ends them."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, planner: Planner, control: ControlLoop | None
    ) -> None:
        self.plans, self.reports = _Wakeup(loop), _Wakeup(loop)
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._plans, args=(planner,), daemon=True)]
        if control is not None:
            self._threads.append(
                threading.Thread(target=self._reports, args=(control,), daemon=True)
            )
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join()

    def _plans(self, planner: Planner) -> None:
        version = planner.current.version
        while not self._stopping.is_set():
            newer = planner.wait_for_version(version, _RELAY_POLL_S)
            if newer is not None:
                version = newer.version
                self.plans.fire()

    def _reports(self, control: ControlLoop) -> None:
        seen = 0
        while not self._stopping.is_set():
            reports = control.reports
            with reports.added:
                if len(reports.rows) == seen:
                    reports.added.wait(_RELAY_POLL_S)
                count = len(reports.rows)
            if count != seen:
                seen = count
                self.reports.fire()


# --- the servicer --------------------------------------------------------------------------
class LoadCapServicer:
    """Converts messages to shared types and back; see the module docstring. Blocking calls
    run on ``executor``; ``relays`` wake the streams; ``metrics`` counts refusals and times
    the answers to caps."""

    def __init__(
        self,
        planner: Planner,
        auth: Authenticator,
        executor: Executor,
        relays: Relays,
        loop: ControlLoop | None = None,
        streams_per_peer: int = MAX_STREAMS_PER_PEER,
        book: MeasurementBook | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self._planner = planner
        self._metrics = metrics if metrics is not None else ServiceMetrics()
        self._book = book
        self._auth = auth
        self._executor = executor
        self._relays = relays
        self._loop = loop
        self._streams = _StreamSlots(streams_per_peer)
        self._plans = _PlanMessages()

    async def _blocking(self, function: Callable[..., _T], *args: Any) -> _T:
        """``function(*args)`` on the executor."""
        running = asyncio.get_running_loop()
        return await running.run_in_executor(self._executor, functools.partial(function, *args))

    async def _planned(self, function: Callable[..., Future[_T]], *args: Any) -> _T:
        """``function(*args)`` on the executor, announced to the planner while it runs (a batch
        about to start waits for it), then the future it returns, awaited without a thread."""
        with self._planner.arriving():
            future = await self._blocking(function, *args)
        return await asyncio.wrap_future(future)

    def _caller(self, context: grpc.aio.ServicerContext) -> Coordinator:
        return self._auth.identify(context.invocation_metadata() or (), context.peer())

    def _refused(self, method: str, error: Exception) -> tuple[grpc.StatusCode, str]:
        """:func:`_refusal`, counted by method and status code."""
        code, details = _refusal(method, error)
        self._metrics.refused(method, code.name)
        return code, details

    @_rpc
    async def SubmitLoadCap(
        self, request: pb.SubmitLoadCapRequest, context
    ) -> pb.SubmitLoadCapResponse:
        began = time.perf_counter()
        coordinator = self._caller(context)
        if request.dry_run:
            quoted = await self._blocking(self._planner.quote, _event_of(request), coordinator)
            return _answer_message(quoted)
        answer = await self._planned(self._planner.submit, _event_of(request), coordinator)
        self._metrics.cap_answered(time.perf_counter() - began)
        return _answer_message(answer)

    @_rpc
    async def CancelLoadCap(
        self, request: pb.CancelLoadCapRequest, context
    ) -> pb.CancelLoadCapResponse:
        coordinator = self._caller(context)
        cancelled, version = await self._planned(
            self._planner.cancel, request.event_id, coordinator, request.reason
        )
        return pb.CancelLoadCapResponse(cancelled=cancelled, plan_version=version)

    @_rpc
    async def ListLoadCaps(
        self, request: pb.ListLoadCapsRequest, context
    ) -> pb.ListLoadCapsResponse:
        coordinator = self._caller(context)
        events = await self._blocking(
            self._planner.events,
            coordinator,
            self._sites(request.sites, coordinator),
            _time_of(getattr(request, "from"), "from") if request.HasField("from") else None,
            _time_of(request.to, "to") if request.HasField("to") else None,
            request.include_cancelled,
        )
        return pb.ListLoadCapsResponse(events=[_event_message(e) for e in events])

    @_rpc
    async def GetPlan(self, request: pb.GetPlanRequest, context) -> pb.Plan:
        coordinator = self._caller(context)
        sites, whole = self._sites(request.sites, coordinator), self._whole(coordinator)
        return await self._blocking(
            self._plans.get, self._planner.current, sites, self._planner.clock(), True, whole
        )

    @_stream
    async def WatchPlan(self, request: pb.WatchPlanRequest, context) -> AsyncIterator[pb.Plan]:
        coordinator = self._caller(context)
        sites, whole = self._sites(request.sites, coordinator), self._whole(coordinator)
        sent = -1
        while True:
            changed = self._relays.plans.armed()
            version = self._planner.current
            if version.version == sent:
                await changed.wait()
                continue
            sent = version.version
            yield await self._blocking(
                self._plans.get,
                version,
                sites,
                self._planner.clock(),
                not request.summary_only,
                whole,
            )

    @_rpc
    async def GetReport(self, request: pb.GetReportRequest, context) -> pb.Report:
        sites = set(self._sites(request.sites, self._caller(context)))
        loop = self._running_loop()
        start = _time_of(getattr(request, "from"), "from") if request.HasField("from") else None
        end = _time_of(request.to, "to") if request.HasField("to") else None
        with loop.reports.added:
            rows = [
                row
                for row in loop.reports.rows
                if row.site in sites
                and (start is None or row.start >= start)
                and (end is None or row.start < end)
            ]
        return self._report_message(rows)

    @_stream
    async def WatchReport(
        self, request: pb.WatchReportRequest, context
    ) -> AsyncIterator[pb.Report]:
        sites = set(self._sites(request.sites, self._caller(context)))
        loop = self._running_loop()
        sent = 0
        while True:
            changed = self._relays.reports.armed()
            with loop.reports.added:
                rows, sent = loop.reports.rows[sent:], len(loop.reports.rows)
            mine = [row for row in rows if row.site in sites]
            if mine:
                yield self._report_message(mine)
            elif not rows:
                await changed.wait()

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
                    supply_basis=row.supply_basis,
                    forecast_age_h=row.forecast_age_h,
                    **_storage_fields(row.storage),
                )
                for row in rows
            ],
        )

    @_rpc
    async def GetForecast(self, request: pb.GetForecastRequest, context) -> pb.Forecast:
        sites = self._sites(request.sites, self._caller(context))
        return await self._blocking(_forecast_message, self._planner, sites)

    @_rpc
    async def ReportMeasurements(
        self, request: pb.ReportMeasurementsRequest, context
    ) -> pb.ReportMeasurementsResponse:
        coordinator = self._caller(context)
        book = self._measurement_book()
        measurements = _measurements_of(request)
        known = set(self._planner.sites)
        coordinator.require({m.site for m in measurements if m.site in known}, "report for")
        stored, replayed = await self._blocking(book.report, measurements, coordinator.name)
        return pb.ReportMeasurementsResponse(stored=stored, replayed=replayed)

    @_rpc
    async def ListMeasurements(
        self, request: pb.ListMeasurementsRequest, context
    ) -> pb.ListMeasurementsResponse:
        coordinator = self._caller(context)
        book = self._measurement_book()
        sites = self._sites(request.sites, coordinator)
        start = _time_of(getattr(request, "from"), "from") if request.HasField("from") else None
        end = _time_of(request.to, "to") if request.HasField("to") else None
        rows = await self._blocking(
            book.store.measurements, start or _EARLIEST, end or _LATEST, sites
        )
        return pb.ListMeasurementsResponse(measurements=[_measurement_message(r) for r in rows])

    @_rpc
    async def GetFlexibility(self, request: pb.GetFlexibilityRequest, context) -> pb.Flexibility:
        sites = self._sites(request.sites, self._caller(context))
        start = _time_of(getattr(request, "from"), "from") if request.HasField("from") else None
        end = _time_of(request.to, "to") if request.HasField("to") else None
        quoted = await self._blocking(
            self._planner.flexibility, sites, start, end, list(request.shed_levels_mw)
        )
        return _flexibility_message(quoted, self._planner.clock())

    def _measurement_book(self) -> MeasurementBook:
        if self._book is None:
            raise NoLoopError("this service runs no control loop: it takes no measurements")
        return self._book

    def _whole(self, coordinator: Coordinator) -> bool:
        """Whether ``coordinator`` may read every site (and so the plan's totals)."""
        return all(coordinator.may_read(site) for site in self._planner.sites)

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


def handler(servicer: LoadCapServicer) -> grpc.GenericRpcHandler:
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
def _measurements_of(request: pb.ReportMeasurementsRequest) -> list[Measurement]:
    out = []
    for k, item in enumerate(request.measurements):
        where = f"measurements[{k}]"
        if not item.HasField("start"):
            raise EventError(f"{where}.start", "is required")
        load = item.load_mw if item.HasField("load_mw") else None
        start = _time_of(item.start, f"{where}.start")
        out.append(Measurement(item.site[:64], start, item.pv_mw, item.wind_mw, load))
    return out


def _measurement_message(stored: StoredMeasurement) -> pb.StoredMeasurement:
    m = stored.measurement
    message = pb.Measurement(site=m.site, start=_timestamp(m.time), pv_mw=m.pv_mw,
                             wind_mw=m.wind_mw)  # fmt: skip
    if m.load_mw is not None:
        message.load_mw = m.load_mw
    return pb.StoredMeasurement(
        measurement=message,
        received_at=_timestamp(stored.received_at),
        reported_by=stored.reported_by,
    )


def _storage_fields(storage: tuple[float, float, float] | None) -> dict[str, float]:
    """A report row's STORAGE_* fields (none for a site without storage)."""
    if storage is None:
        return {}
    level, charge, discharge = storage
    return {"storage_charge_level_mwh": level, "storage_charge_mw": charge,
            "storage_discharge_mw": discharge}  # fmt: skip


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
            grid_cost_change=cost.grid_cost_change,
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


class _PlanMessages:
    """Plan messages made once per plan version and view (sites, slots, whole), kept for the
    last :data:`_PLAN_MESSAGES_KEPT` views: every GetPlan poll and WatchPlan stream of a
    version asks for one of a few views, and making one from the site-load table costs
    milliseconds of the GIL that the planner thread needs. Each reply is a copy with the clock
    of its own moment."""

    def __init__(self) -> None:
        self._made: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, version: PlanVersion, sites: list[str], clock: pd.Timestamp, slots: bool, whole: bool
    ) -> pb.Plan:
        key = (version.version, version.created_at.value, tuple(sites), slots, whole)
        with self._lock:
            made = self._made.get(key)
        if made is None:
            made = _plan_message(version, sites, slots, whole).SerializeToString()
            with self._lock:
                self._made[key] = made
                while len(self._made) > _PLAN_MESSAGES_KEPT:
                    self._made.popitem(last=False)
        reply = pb.Plan.FromString(made)
        reply.clock.CopyFrom(_timestamp(clock))
        return reply


_PLAN_MESSAGES_KEPT = 64


def _plan_message(version: PlanVersion, sites: list[str], slots: bool, whole: bool) -> pb.Plan:
    """The plan on ``sites``; what covers every site (metrics, caps in force, the event id in
    the reason) only when the caller may read every site (``whole``)."""
    hidden = not whole and version.cause.names_events  # "submit <event_id>, ..."
    message = pb.Plan(
        version=version.version,
        created_at=_timestamp(version.created_at),
        reason=version.cause.value if hidden else version.reason,
        replanned=version.replanned,
        horizon_start=_timestamp(version.problem.horizon.start),
        slot_minutes=version.problem.horizon.slot_minutes,
        caps_in_force=version.caps_in_force if whole else 0,
        solver_status=version.result.status,
        plan_seconds=version.plan_seconds,
    )
    if whole:
        metrics = version.metrics
        message.metrics.CopyFrom(
            pb.PlanMetrics(
                green_share=metrics.green_share,
                grid_mwh=metrics.grid_mwh,
                energy_used_mwh=metrics.energy_used_mwh,
                co2_t=metrics.co2_t,
                jobs_unfinished=metrics.jobs_unfinished,
                unfinished_gpu_hours=metrics.unfinished_gpu_hours,
                cap_violations=metrics.cap_violations,
            )
        )
    if slots:
        # the price each site-slot is planned on, site-major as the site-load table's rows
        load = version.site_load.assign(price=version.problem.price_per_mwh.ravel())
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
                price_per_mwh=row.price,
            )
            for row in load.itertuples()
        )
    return message


def _flexibility_message(quoted: Flexibility, clock: pd.Timestamp) -> pb.Flexibility:
    starts = [_timestamp(time) for time in quoted.times]
    return pb.Flexibility(
        clock=_timestamp(clock),
        plan_version=quoted.plan_version,
        slot_minutes=quoted.slot_minutes,
        sites=[
            pb.SiteFlexibility(
                site=site.site,
                slots=[
                    pb.FlexibilitySlot(start=start, baseline_mw=b, floor_mw=f, ceiling_mw=c)
                    for start, b, f, c in zip(
                        starts, site.baseline_mw.tolist(), site.floor_mw.tolist(),
                        site.ceiling_mw.tolist(), strict=True,
                    )
                ],
                largest_on_time_shed_mw=site.largest_on_time_shed_mw,
                shed_costs=[
                    pb.ShedCost(
                        shed_mw=cost.shed_mw, shed_mwh=cost.shed_mwh, cap_mw=cost.cap_mw,
                        opt=pb.OPT_IN if cost.opt_in else pb.OPT_OUT,
                        extra_co2_kg=cost.extra_co2_kg, extra_cost=cost.extra_cost,
                        grid_mwh_change=cost.grid_mwh_change,
                        late_gpu_hours=cost.late_gpu_hours, late_jobs_total=cost.late_jobs,
                        provisional=cost.provisional,
                    )
                    for cost in site.costs
                ],
            )
            for site in quoted.sites
        ],
    )  # fmt: skip


def _forecast_message(planner: Planner, sites: list[str]) -> pb.Forecast:
    supply = planner.day.supply
    rows = supply[supply["site"].isin(sites)]
    return pb.Forecast(
        horizon_start=_timestamp(planner.horizon.start),
        slot_minutes=planner.horizon.slot_minutes,
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
