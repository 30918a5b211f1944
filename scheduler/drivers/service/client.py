"""A thin client of the load-cap service, for the CLI, the tests and the benchmark.

>>> client = CapClient("127.0.0.1:50051", token="...")          # doctest: +SKIP
>>> client.submit("dr-1", ["shantou"], [cap_interval(start, 7200, 5.0)])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import pandas as pd
from google.protobuf import duration_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scheduler.contracts import CapType
from scheduler.drivers.service.pb.greensched.v1 import loadcap_pb2 as pb
from scheduler.drivers.service.pb.greensched.v1 import loadcap_pb2_grpc as pb_grpc
from scheduler.measurements import Measurement
from scheduler.problem import LoadCap

__all__ = ["CapClient", "cap_interval", "pb", "price_interval"]


def cap_interval(
    start: pd.Timestamp, duration_s: float, value_mw: float, load_limit: bool = False
) -> pb.Interval:
    """One interval: at most ``value_mw`` of grid draw (or total load) from ``start``."""
    kind = pb.LOAD_LIMIT if load_limit else pb.IMPORT_CAPACITY_LIMIT
    return _interval(start, duration_s, kind, value_mw)


def price_interval(start: pd.Timestamp, duration_s: float, price_per_mwh: float) -> pb.Interval:
    """One interval of a price event: grid energy at ``price_per_mwh`` [currency/MWh] from
    ``start`` (OpenADR 3 ``PRICE``)."""
    return _interval(start, duration_s, pb.PRICE, price_per_mwh)


def _interval(start: pd.Timestamp, duration_s: float, kind: int, value: float) -> pb.Interval:
    start = pd.Timestamp(start)
    seconds, nanos = divmod(start.tz_convert("UTC").value, 10**9)
    whole = int(duration_s)
    return pb.Interval(
        start=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos),
        duration=duration_pb2.Duration(seconds=whole, nanos=round((duration_s - whole) * 1e9)),
        type=kind,  # type: ignore[arg-type]
        value_mw=value,
    )


class CapClient:
    """Calls of the ``greensched.v1.LoadCapService`` with the bearer token attached."""

    def __init__(
        self,
        target: str,
        token: str | None = None,
        tls_ca: Path | None = None,
        tls_client: tuple[Path, Path] | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        if tls_ca is None and tls_client is None:
            self.channel = grpc.insecure_channel(target)
        else:
            cert_chain = private_key = None
            if tls_client is not None:
                cert_chain, private_key = tls_client[0].read_bytes(), tls_client[1].read_bytes()
            credentials = grpc.ssl_channel_credentials(
                tls_ca.read_bytes() if tls_ca else None,  # None: the system's roots
                private_key=private_key,
                certificate_chain=cert_chain,
            )
            self.channel = grpc.secure_channel(target, credentials)
        self.stub = pb_grpc.LoadCapServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout_s = timeout_s

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> CapClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(
        self,
        event_id: str,
        targets: Sequence[str],
        intervals: Sequence[pb.Interval],
        modification_number: int = 0,
        program: str = "demand-response",
        priority: int = 0,
        dry_run: bool = False,
    ) -> pb.SubmitLoadCapResponse:
        """Submit a cap event (``dry_run``: only ask what the answer would be)."""
        request = pb.SubmitLoadCapRequest(
            event_id=event_id,
            modification_number=modification_number,
            program=program,
            priority=priority,
            targets=targets,
            intervals=intervals,
            dry_run=dry_run,
        )
        return self.submit_request(request)

    def submit_request(self, request: pb.SubmitLoadCapRequest) -> pb.SubmitLoadCapResponse:
        return self.stub.SubmitLoadCap(request, metadata=self.metadata, timeout=self.timeout_s)

    def cancel(self, event_id: str, reason: str = "") -> pb.CancelLoadCapResponse:
        return self.stub.CancelLoadCap(
            pb.CancelLoadCapRequest(event_id=event_id, reason=reason),
            metadata=self.metadata,
            timeout=self.timeout_s,
        )

    def list(
        self,
        sites: Sequence[str] = (),
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        include_cancelled: bool = False,
    ) -> list[pb.LoadCapEvent]:
        request = pb.ListLoadCapsRequest(sites=sites, include_cancelled=include_cancelled)
        for field, time in (("from", start), ("to", end)):
            if time is not None:
                getattr(request, field).FromNanoseconds(pd.Timestamp(time).value)
        reply = self.stub.ListLoadCaps(request, metadata=self.metadata, timeout=self.timeout_s)
        return list(reply.events)

    def caps_in_force(self) -> tuple[LoadCap, ...]:
        """Every cap of the active events the caller may see, one per target and interval
        (a price event's as ``PRICE`` caps, which limit nothing but price the grid)."""
        return tuple(
            LoadCap(
                site,
                pd.Timestamp(interval.start.ToNanoseconds(), tz="UTC"),
                pd.Timestamp(interval.start.ToNanoseconds(), tz="UTC")
                + pd.Timedelta(seconds=interval.duration.ToTimedelta().total_seconds()),
                CapType(pb.PayloadType.Name(interval.type)),
                interval.value_mw,
                event.event_id,
            )
            for event in self.list()
            if event.status == pb.ACTIVE
            for site in event.targets
            for interval in event.intervals
        )

    def plan(self, sites: Sequence[str] = ()) -> pb.Plan:
        return self.stub.GetPlan(
            pb.GetPlanRequest(sites=sites), metadata=self.metadata, timeout=self.timeout_s
        )

    def watch(self, sites: Sequence[str] = (), summary_only: bool = False) -> Iterator[pb.Plan]:
        """Plan versions as they come (the current one first); cancel with ``.cancel()``."""
        return self.stub.WatchPlan(
            pb.WatchPlanRequest(sites=sites, summary_only=summary_only), metadata=self.metadata
        )

    def report(
        self,
        sites: Sequence[str] = (),
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pb.Report:
        """What the sites drew in the slots run so far (usage, demand, baseline, state)."""
        request = pb.GetReportRequest(sites=sites)
        for field, time in (("from", start), ("to", end)):
            if time is not None:
                getattr(request, field).FromNanoseconds(pd.Timestamp(time).value)
        return self.stub.GetReport(request, metadata=self.metadata, timeout=self.timeout_s)

    def watch_report(self, sites: Sequence[str] = ()) -> Iterator[pb.Report]:
        """The report so far, then each slot as it runs; cancel with ``.cancel()``."""
        return self.stub.WatchReport(pb.WatchReportRequest(sites=sites), metadata=self.metadata)

    def forecast(self, sites: Sequence[str] = ()) -> pb.Forecast:
        return self.stub.GetForecast(
            pb.GetForecastRequest(sites=sites), metadata=self.metadata, timeout=self.timeout_s
        )

    def flexibility(
        self,
        sites: Sequence[str] = (),
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        shed_levels_mw: Sequence[float] = (),
    ) -> pb.Flexibility:
        """A flexibility quote: per site and slot of ``[start, end)`` (default: from the next
        slot to the end of the day running) the planned load, the shed floor and the absorb
        ceiling, and per site the cost of shedding at ``shed_levels_mw`` (default: 25 to 100 %
        of the largest on-time shed). Nothing is stored."""
        request = pb.GetFlexibilityRequest(sites=sites, shed_levels_mw=shed_levels_mw)
        for field, time in (("from", start), ("to", end)):
            if time is not None:
                getattr(request, field).FromNanoseconds(pd.Timestamp(time).value)
        return self.stub.GetFlexibility(request, metadata=self.metadata, timeout=self.timeout_s)

    def report_measurements(
        self, measurements: Sequence[Measurement]
    ) -> pb.ReportMeasurementsResponse:
        """Report what sites measured (site, slot start, PV, wind, optional load [MW])."""
        request = pb.ReportMeasurementsRequest()
        for m in measurements:
            item = request.measurements.add(site=m.site, pv_mw=m.pv_mw, wind_mw=m.wind_mw)
            item.start.FromNanoseconds(pd.Timestamp(m.time).value)
            if m.load_mw is not None:
                item.load_mw = m.load_mw
        return self.stub.ReportMeasurements(request, metadata=self.metadata, timeout=self.timeout_s)

    def measurements(
        self,
        sites: Sequence[str] = (),
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> Sequence[pb.StoredMeasurement]:
        """Measurements of the sites the caller may read, by slot."""
        request = pb.ListMeasurementsRequest(sites=sites)
        for field, time in (("from", start), ("to", end)):
            if time is not None:
                getattr(request, field).FromNanoseconds(pd.Timestamp(time).value)
        reply = self.stub.ListMeasurements(request, metadata=self.metadata, timeout=self.timeout_s)
        return list(reply.measurements)

    def health(self, service: str = "") -> str:
        """``SERVING`` / ``NOT_SERVING`` / ... of the standard health service."""
        reply = health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self.timeout_s
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
