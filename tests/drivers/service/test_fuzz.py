"""Fuzzing SubmitLoadCap (hypothesis): the server never crashes; bad input stores nothing."""

from __future__ import annotations

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.drivers.service.client import CapClient, pb
from scheduler.drivers.service.server import Running

from .conftest import HORIZON

TABLES = ("events", "event_versions", "caps", "plan_versions", "audit")
REJECTED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}
HORIZON_S = HORIZON.start.value // 10**9

texts = st.text(max_size=80)
event_ids = st.one_of(texts, st.from_regex(r"[A-Za-z0-9._:-]{1,20}", fullmatch=True))
sites = st.one_of(st.sampled_from(["shantou", "qingyang", "", "Shantou"]), texts)
starts = st.one_of(
    st.integers(HORIZON_S - 2 * 86400, HORIZON_S + 2 * 86400),
    st.integers(-(2**62), 2**62),
)
intervals = st.builds(
    lambda start, nanos, seconds, d_nanos, kind, value: pb.Interval(
        start={"seconds": start, "nanos": nanos},
        duration={"seconds": seconds, "nanos": d_nanos},
        type=kind,
        value_mw=value,
    ),
    starts,
    st.one_of(st.just(0), st.integers(-(2**31), 2**31 - 1)),
    st.one_of(st.integers(-3600, 86400), st.integers(-(2**62), 2**62)),
    st.one_of(st.just(0), st.integers(-(2**31), 2**31 - 1)),
    st.integers(-3, 5),
    st.floats(allow_nan=True, allow_infinity=True),
)
near_valid_intervals = st.builds(
    lambda start, seconds, kind, value: pb.Interval(
        start={"seconds": start}, duration={"seconds": seconds}, type=kind, value_mw=value
    ),
    st.integers(HORIZON_S, HORIZON_S + 86400),
    st.integers(-600, 86400),
    st.integers(0, 3),
    st.one_of(st.floats(-1, 30), st.sampled_from([float("nan"), float("inf")])),
)
near_valid = st.builds(
    pb.SubmitLoadCapRequest,
    event_id=st.from_regex(r"[a-z0-9]{1,3}", fullmatch=True),
    modification_number=st.integers(0, 3),
    targets=st.lists(st.sampled_from(["shantou", "qingyang"]), min_size=1, max_size=2),
    intervals=st.lists(near_valid_intervals, min_size=1, max_size=3),
)
random = st.builds(
    pb.SubmitLoadCapRequest,
    event_id=event_ids,
    modification_number=st.integers(0, 2**32 - 1),
    program=texts,
    priority=st.integers(0, 2**32 - 1),
    targets=st.lists(sites, max_size=4),
    intervals=st.lists(intervals, max_size=4),
)
requests = st.one_of(random, near_valid)


def counts(server: Running) -> dict[str, int]:
    return {table: server.store.count(table) for table in TABLES}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests)
def test_fuzzed_submissions(
    request: pb.SubmitLoadCapRequest, shared_client: CapClient, shared_server: Running
) -> None:
    before = counts(shared_server)
    try:
        reply = shared_client.submit_request(request)
    except grpc.RpcError as error:
        assert error.code() in REJECTED, (error.code(), error.details())
        assert error.details()
        assert counts(shared_server) == before
    else:
        assert reply.accepted
        listed = {e.event_id: e for e in shared_client.list()}
        stored = listed[request.event_id]  # an accepted event is in force as submitted
        assert stored.modification_number == request.modification_number
        assert sorted(stored.targets) == sorted(set(request.targets))
        assert len(stored.intervals) == len(request.intervals)
    assert shared_client.health() == "SERVING"
    # whatever came before: the caps in force are those of the listed events, and the plan
    # published is the last one stored and keeps every cap
    events = shared_client.list()
    assert len(shared_server.store.caps()) == sum(len(e.targets) * len(e.intervals) for e in events)
    assert shared_server.planner.current.metrics.cap_violations == 0
    assert shared_client.plan().version == shared_server.store.last_plan_version()
