"""Submit, list, cancel, watch; idempotency and modification numbers; caps shape the plan."""

from __future__ import annotations

import threading

import grpc
import pandas as pd
import pytest

from scheduler.drivers.service.client import CapClient, cap_interval, pb
from scheduler.drivers.service.events import CapEvent, CapInterval
from scheduler.drivers.service.server import Running

from .conftest import HORIZON, local


def shantou_slots(plan: pb.Plan, start: pd.Timestamp, end: pd.Timestamp) -> list[pb.SiteSlot]:
    return [
        s
        for s in plan.slots
        if s.site == "shantou" and start <= pd.Timestamp(s.start.ToNanoseconds(), tz="UTC") < end
    ]


def test_health_reflection_and_forecast(client: CapClient, server: Running) -> None:
    assert client.health() == "SERVING"
    assert client.health("greensched.v1.LoadCapService") == "SERVING"
    forecast = client.forecast(["shantou"])
    assert len(forecast.slots) == HORIZON.n_slots
    assert forecast.slot_minutes == 15
    assert all(s.green_mw >= 0 for s in forecast.slots)
    plan = client.plan()
    assert plan.version == 1 and plan.reason == "startup"
    assert len(plan.slots) == 2 * HORIZON.n_slots


def test_reflection_lists_and_describes_the_service(server: Running) -> None:
    """What grpcurl does first: list services, then fetch the method descriptors."""
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"greensched.v1.LoadCapService", "grpc.health.v1.Health"} <= services
        pool = DescriptorPool(database)
        service = pool.FindServiceByName("greensched.v1.LoadCapService")
        methods = {m.name for m in service.methods}
    assert {"SubmitLoadCap", "CancelLoadCap", "ListLoadCaps", "GetPlan", "WatchPlan",
            "GetForecast"} <= methods  # fmt: skip


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_v1_and_v1alpha_list_the_services(server: Running, version: str) -> None:
    """Newer tools (grpcurl) ask v1 first; both answer (the same protocol, renamed)."""
    from grpc_reflection.v1alpha import reflection_pb2

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="greensched.v1.LoadCapService"
            ),
        ]
        listed, described = list(call(iter(requests), timeout=10))
    names = {s.name for s in listed.list_services_response.service}
    assert {"greensched.v1.LoadCapService", f"grpc.reflection.{version}.ServerReflection"} <= names
    assert described.file_descriptor_response.file_descriptor_proto


def test_submit_list_cancel(client: CapClient, server: Running) -> None:
    reply = client.submit("dr-1", ["shantou"], [cap_interval(local("18:00"), 7200, 5.0)])
    assert reply.accepted and reply.opt == pb.OPT_IN and not reply.replayed
    events = client.list()
    assert [e.event_id for e in events] == ["dr-1"]
    assert events[0].status == pb.ACTIVE and events[0].coordinator == "anonymous"
    assert events[0].intervals[0].duration.seconds == 7200
    assert client.list(sites=["qingyang"]) == []
    assert client.list(start=local("21:00")) == []
    assert len(client.list(start=local("19:00"), end=local("19:30"))) == 1

    cancelled = client.cancel("dr-1", reason="test")
    assert cancelled.cancelled
    assert client.list() == []
    assert [e.status for e in client.list(include_cancelled=True)] == [pb.CANCELLED]
    assert not client.cancel("dr-1").cancelled  # already cancelled: a no-op
    with pytest.raises(grpc.RpcError) as error:
        client.cancel("no-such-event")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    actions = [(a["action"], a["event_id"]) for a in server.store.audit_log()]
    assert actions == [("submit", "dr-1"), ("cancel", "dr-1")]


def test_idempotent_resubmission_and_modifications(client: CapClient, server: Running) -> None:
    interval = cap_interval(local("08:00"), 3600, 2.0)
    first = client.submit("dr-2", ["shantou"], [interval])
    again = client.submit("dr-2", ["shantou"], [interval])
    assert again.replayed and again.plan_version == first.plan_version
    assert again.opt == first.opt and again.opt_reason == first.opt_reason
    assert server.store.count("event_versions") == 1

    with pytest.raises(grpc.RpcError) as error:  # same number, different content
        client.submit("dr-2", ["shantou"], [cap_interval(local("08:00"), 3600, 3.0)])
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "modification_number 1" in error.value.details()

    newer = client.submit(
        "dr-2", ["shantou"], [cap_interval(local("09:00"), 3600, 3.0)], modification_number=3
    )
    assert not newer.replayed
    (event,) = client.list()
    assert event.modification_number == 3 and event.intervals[0].value_mw == 3.0

    with pytest.raises(grpc.RpcError) as error:  # older than the stored one
        client.submit("dr-2", ["shantou"], [interval], modification_number=2)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert server.store.count("event_versions") == 2
    assert len(server.store.caps()) == 1


def test_cap_lowers_grid_draw_in_its_window(client: CapClient) -> None:
    # the four hours in which the plan draws most from the grid at shantou: a cap there binds
    slots = shantou_slots(client.plan(["shantou"]), HORIZON.start, HORIZON.end)
    grid = [s.grid_mw for s in slots]
    first = max(range(len(slots) - 15), key=lambda i: sum(grid[i : i + 16]))
    start = pd.Timestamp(slots[first].start.ToNanoseconds(), tz="UTC")
    end = start + pd.Timedelta(hours=4)
    peak_mw = max(grid[first : first + 16])
    assert peak_mw > 1.2, "the test config should draw from the grid"
    limit_mw = round((1.0 + peak_mw) / 2, 3)  # between shantou's base load (1 MW) and the peak

    reply = client.submit("dr-grid", ["shantou"], [cap_interval(start, 4 * 3600, limit_mw)])
    plan = client.plan(["shantou"])
    assert plan.version == reply.plan_version and plan.replanned
    window = shantou_slots(plan, start, end)
    assert len(window) == 16
    assert all(s.grid_mw <= limit_mw + 1e-6 and s.grid_cap_mw == limit_mw for s in window)
    assert plan.metrics.cap_violations == 0
    assert reply.cost.moved_mwh > 0
    # only work that may run nowhere else (shantou-only jobs) can be made late by the cap
    assert all(":sea_interactive-" in job for job in reply.cost.late_jobs)


def test_load_limit_below_need_is_opt_out_naming_late_jobs(client: CapClient) -> None:
    # shantou's base load is 1 MW: a load limit of 1 MW for the day is valid but leaves no GPU
    reply = client.submit(
        "dr-all-day", ["shantou"], [cap_interval(HORIZON.start, 86400, 1.0, load_limit=True)]
    )
    assert reply.accepted and reply.opt == pb.OPT_OUT
    assert reply.cost.late_jobs_total > 0 and reply.cost.late_gpu_hours > 0
    assert all(":sea_interactive-" in job for job in reply.cost.late_jobs)  # shantou-only
    assert "late" in reply.opt_reason
    plan = client.plan(["shantou"])
    assert all(s.gpus_busy == 0 and s.load_cap_mw == 1.0 for s in plan.slots)
    assert plan.metrics.jobs_unfinished == reply.cost.late_jobs_total
    assert [e.opt for e in client.list()] == [pb.OPT_OUT]


def test_caps_that_change_nothing_keep_the_plan_version(client: CapClient) -> None:
    above_limit = cap_interval(local("08:00"), 3600, 20.0)  # grid limit of shantou is 12 MW
    reply = client.submit("loose", ["shantou"], [above_limit])
    assert reply.opt == pb.OPT_IN and reply.plan_version == 1
    next_day = cap_interval(HORIZON.end + pd.Timedelta(hours=2), 3600, 2.0)
    reply = client.submit("tomorrow", ["shantou"], [next_day])
    assert reply.plan_version == 1 and reply.opt == pb.SCHEDULED  # stored, planned later
    assert "planned when its day starts" in reply.opt_reason
    assert len(client.list()) == 2


def test_watch_streams_new_versions(client: CapClient) -> None:
    stream = client.watch(sites=["shantou"], summary_only=True)
    seen: list[int] = []

    def read() -> None:
        for plan in stream:
            seen.append(plan.version)
            if len(seen) == 3:
                return

    reader = threading.Thread(target=read)
    reader.start()
    client.submit("w-1", ["shantou"], [cap_interval(local("09:00"), 3600, 1.2)])
    client.cancel("w-1")
    reader.join(timeout=30)
    stream.cancel()
    assert seen == [1, 2, 3]


def test_concurrent_submissions_are_all_kept(client: CapClient, server: Running) -> None:
    def submit(k: int) -> None:
        with CapClient(f"127.0.0.1:{server.port}") as own:
            own.submit(f"c-{k}", ["qingyang"], [cap_interval(local(f"{k:02d}:00"), 3600, 5.0)])

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(e.event_id for e in client.list()) == sorted(f"c-{k}" for k in range(8))
    assert len(server.store.caps()) == 8
    assert server.planner.current.caps_in_force == 8


def test_serve_plans_on_a_weather_file(small_config, tmp_path) -> None:
    """`serve --weather shantou=FILE` forecasts that site from the file; a bad spec is refused."""
    from tests.conftest import SHANGHAI_EPW

    from .conftest import start_server

    with pytest.raises(ValueError, match="unknown site 'shanto'; known sites"):
        start_server(small_config, tmp_path / "bad.sqlite", weather=("shanto=x.epw",))
    if not SHANGHAI_EPW.exists():
        pytest.skip("real EPW files are absent")
    synthetic = start_server(small_config, tmp_path / "a.sqlite")
    from_file = start_server(
        small_config, tmp_path / "b.sqlite", weather=(f"shantou={SHANGHAI_EPW}",)
    )
    try:
        green = {}
        for name, running in (("synthetic", synthetic), ("file", from_file)):
            with CapClient(f"127.0.0.1:{running.port}") as client:
                green[name] = [s.green_mw for s in client.forecast(["shantou"]).slots]
        assert len(green["file"]) == HORIZON.n_slots
        assert green["file"] != green["synthetic"]
    finally:
        synthetic.stop(0)
        from_file.stop(0)


def test_an_events_canonical_json_and_hash_stay_those_stored_before() -> None:
    """A resubmission is identified by the hash of this text: if it changed, a database written
    before would take an identical resubmission for a conflicting one."""
    utc, shanghai = pd.Timestamp("2026-12-02T04:15:00Z"), pd.Timestamp("2026-12-02T06:00+08:00")
    event = CapEvent("ev-1", 3, "prog", 2, ("shantou", "qingyang"), (
        CapInterval(utc, 3600.0, "LOAD_LIMIT", 4.5),
        CapInterval(shanghai, 900.0, "IMPORT_CAPACITY_LIMIT", 2.25),
    ))  # fmt: skip
    assert event.to_json() == (
        '{"event_id":"ev-1","intervals":[{"duration_s":3600.0,"start":"2026-12-02T04:15:00+00:00",'
        '"type":"LOAD_LIMIT","value_mw":4.5},{"duration_s":900.0,"start":'
        '"2026-12-02T06:00:00+08:00","type":"IMPORT_CAPACITY_LIMIT","value_mw":2.25}],'
        '"modification_number":3,"priority":2,"program":"prog","targets":["shantou","qingyang"]}'
    )
    assert event.content_sha256 == (
        "a1474dd38fe4e8da8edc50e1e16641a909162c6de686a2009fe6ebeb9317f031"
    )
    assert CapEvent.from_json(event.to_json()) == event
