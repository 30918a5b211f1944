"""Bad input maps to INVALID_ARGUMENT naming the field (and nothing is stored); auth codes."""

from __future__ import annotations

import math

import grpc
import pandas as pd
import pytest

from scheduler.drivers.service.client import CapClient, cap_interval, pb
from scheduler.drivers.service.server import Running

from .conftest import NOW, TOKENS, local


def code_and_details(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code(), error.value.details()


GOOD = cap_interval(local("18:00"), 3600, 5.0)

BAD_EVENTS = {
    "unknown site": (dict(targets=["shanto"]), "targets[0]: unknown site 'shanto'; known sites"),
    "no target": (dict(targets=[]), "targets: name at least one site"),
    "site twice": (dict(targets=["shantou", "shantou"]), "more than once"),
    "zero duration": (
        dict(intervals=[cap_interval(local("18:00"), 0, 5.0)]),
        "intervals[0].duration: 0 s; must be > 0",
    ),
    "end before start": (
        dict(intervals=[GOOD, cap_interval(local("18:00"), -3600, 5.0)]),
        "intervals[1].duration",
    ),
    "in the past": (
        dict(intervals=[cap_interval(NOW - pd.Timedelta(hours=3), 3600, 5.0)]),
        "in the past",
    ),
    "negative MW": (dict(intervals=[cap_interval(local("18:00"), 60, -1.0)]), "value_mw: -1.0"),
    "NaN MW": (dict(intervals=[cap_interval(local("18:00"), 60, math.nan)]), "value_mw: nan"),
    "infinite MW": (dict(intervals=[cap_interval(local("18:00"), 60, math.inf)]), "value_mw: inf"),
    "below base load": (
        dict(intervals=[cap_interval(local("18:00"), 60, 0.5)]),
        "0.5 MW is out of range for site 'shantou'; allowed: 1 MW (its base load",
    ),
    # shantou: 8,000 GPUs x 1.2 kW x PUE 1.3 + 1 MW base = 13.48 MW full load (import limit 12)
    "above twice the full load": (
        dict(intervals=[cap_interval(local("18:00"), 60, 27.0)]),
        "27 MW is out of range for site 'shantou'; allowed: 1 MW (its base load, drawn "
        "whatever runs) to 26.96 MW",
    ),
    "1e9 MW": (dict(intervals=[cap_interval(local("18:00"), 60, 1e9)]), "value_mw: 1e+09 MW"),
    "1e308 MW": (dict(intervals=[cap_interval(local("18:00"), 60, 1e308)]), "value_mw: 1e+308"),
    "eight days ahead": (
        dict(intervals=[cap_interval(NOW + pd.Timedelta(days=8), 3600, 5.0)]),
        "intervals[0].start: 2026-12-07T12:00:00+00:00 is more than 7 days ahead; allowed up "
        "to 2026-12-06T12:00:00+00:00",
    ),
    "ten years ahead": (
        dict(intervals=[cap_interval(NOW + pd.Timedelta(days=3653), 3600, 5.0)]),
        "intervals[0].start: 2036",
    ),
    "in 2199": (
        dict(intervals=[cap_interval(pd.Timestamp("2199-06-01", tz="UTC"), 3600, 5.0)]),
        "more than 7 days ahead",
    ),
    "overlapping intervals": (
        dict(intervals=[GOOD, cap_interval(local("18:30"), 3600, 5.0)]),
        "intervals[1].start: 2026-11-30T10:30:00+00:00 is before the end of intervals[0] "
        "(2026-11-30T11:00:00+00:00); intervals must be in order of start and must not overlap",
    ),
    "intervals out of order": (
        dict(intervals=[GOOD, cap_interval(local("16:00"), 3600, 5.0)]),
        "intervals[1].start: 2026-11-30T08:00:00+00:00 is before the end of intervals[0]",
    ),
    "too many intervals": (dict(intervals=[GOOD] * 97), "97 intervals; at most 96"),
    "no interval": (dict(intervals=[]), "at least one interval"),
    "no payload type": (
        dict(intervals=[pb.Interval(start=GOOD.start, duration=GOOD.duration, value_mw=5.0)]),
        "intervals[0].type: 'PAYLOAD_TYPE_UNSPECIFIED'; allowed: IMPORT_CAPACITY_LIMIT, LOAD_LIMIT",
    ),
    "no start": (
        dict(intervals=[pb.Interval(duration=GOOD.duration, type=pb.LOAD_LIMIT, value_mw=5.0)]),
        "intervals[0].start: is required",
    ),
    "bad event id": (dict(event_id="no spaces"), "event_id: 'no spaces': allowed characters"),
    "empty event id": (dict(event_id=""), "event_id: must have 1 to 128 characters"),
    "long program": (dict(program="x" * 65), "program: has 65 characters; at most 64"),
}


@pytest.mark.parametrize("case", list(BAD_EVENTS))
def test_bad_input_is_invalid_argument_and_not_stored(
    case: str, shared_client: CapClient, shared_server: Running
) -> None:
    fields, message = BAD_EVENTS[case]
    request = pb.SubmitLoadCapRequest(
        **{"event_id": "bad-1", "targets": ["shantou"], "intervals": [GOOD], **fields}
    )
    code, details = code_and_details(lambda: shared_client.submit_request(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in details
    for table in ("events", "event_versions", "caps", "audit"):
        assert shared_server.store.count(table) == 0


def test_oversized_message_is_refused(shared_client: CapClient, shared_server: Running) -> None:
    request = pb.SubmitLoadCapRequest(
        event_id="big", targets=["shantou"], intervals=[GOOD], program="x" * 100_000
    )
    code, _ = code_and_details(lambda: shared_client.submit_request(request))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert shared_server.store.count("events") == 0


def test_unknown_site_filter_is_invalid(shared_client: CapClient) -> None:
    code, details = code_and_details(lambda: shared_client.plan(["atlantis"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "sites[0]" in details


def test_auth_no_token_wrong_token_out_of_scope(auth_server: Running) -> None:
    target = f"127.0.0.1:{auth_server.port}"
    with CapClient(target) as anonymous:
        assert anonymous.health() == "SERVING"  # probes need no token
        code, details = code_and_details(lambda: anonymous.submit("a", ["shantou"], [GOOD]))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in details
        code, _ = code_and_details(anonymous.plan)
        assert code == grpc.StatusCode.UNAUTHENTICATED
    with CapClient(target, token="not-a-token-of-anyone") as stranger:
        code, details = code_and_details(lambda: stranger.submit("a", ["shantou"], [GOOD]))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "unknown bearer token" in details
    with (
        CapClient(target, token=TOKENS["guangdong"]) as guangdong,
        CapClient(target, token=TOKENS["national"]) as national,
    ):
        code, details = code_and_details(lambda: guangdong.submit("g", ["qingyang"], [GOOD]))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "'guangdong' may not cap site(s) qingyang; its sites: shantou" in details
        assert guangdong.submit("g", ["shantou"], [GOOD]).accepted
        assert national.submit("n", ["qingyang", "shantou"], [GOOD]).accepted
        code, _ = code_and_details(lambda: guangdong.cancel("n"))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert sorted(e.event_id for e in guangdong.list()) == ["g", "n"]  # n targets shantou
        assert national.cancel("n").cancelled
    audit = [(a["coordinator"], a["action"], a["event_id"]) for a in auth_server.store.audit_log()]
    assert audit == [
        ("guangdong", "submit", "g"),
        ("national", "submit", "n"),
        ("national", "cancel", "n"),
    ]


def test_a_second_service_on_the_same_database_refuses_to_start(server, small_config):
    from scheduler.contracts import UserError

    from .conftest import start_server

    versions = server.store.last_plan_version()
    with pytest.raises(UserError, match=r"in use by another `greensched serve`"):
        start_server(small_config, server.store.path)
    assert server.store.last_plan_version() == versions  # it wrote nothing
