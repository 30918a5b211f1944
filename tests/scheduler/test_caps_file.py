"""The caps file: a cap's event id is an optional column that survives a write and a read."""

from __future__ import annotations

import pandas as pd
import pytest
from scheduler_testkit import START

from scheduler.contracts import TableError, write_table
from scheduler.problem import IMPORT_CAPACITY_LIMIT, LOAD_LIMIT, LoadCap, caps_frame, read_caps

HOUR = pd.Timedelta(hours=1)


def test_caps_with_event_ids_round_trip_through_the_caps_file(tmp_path):
    caps = (
        LoadCap("a", START, START + 2 * HOUR, IMPORT_CAPACITY_LIMIT, 5.0, "dr-2026-06-01:a"),
        LoadCap("b", START + HOUR, START + 3 * HOUR, LOAD_LIMIT, 1.5),  # no event
    )
    path = tmp_path / "caps.csv"
    write_table(caps_frame(caps), path)
    assert path.read_text().splitlines()[0] == "site,start,end,type,value_mw,event_id"
    back = read_caps(path, ["a", "b"])
    assert back == caps
    assert [cap.event_id for cap in back] == ["dr-2026-06-01:a", ""]


def test_a_caps_file_without_event_ids_still_reads(tmp_path):
    path = tmp_path / "caps.csv"
    path.write_text(
        "site,start,end,type,value_mw\n"
        "a,2026-06-01T08:00+08:00,2026-06-01T10:00+08:00,LOAD_LIMIT,2.5\n"
    )
    (cap,) = read_caps(path, ["a"])
    assert cap == LoadCap("a", START, START + 2 * HOUR, LOAD_LIMIT, 2.5)
    assert cap.event_id == ""
    assert cap.label == "LOAD_LIMIT:2026-06-01T00:00:00Z/2026-06-01T02:00:00Z"  # in run.csv


def test_an_event_id_with_the_list_separator_is_refused_by_line(tmp_path):
    """run.csv joins the caps it names with ';': an id holding one could not be told apart."""
    path = tmp_path / "caps.csv"
    path.write_text(
        "site,start,end,type,value_mw,event_id\n"
        "a,2026-06-01T00:00Z,2026-06-01T01:00Z,LOAD_LIMIT,2.5,dr-1\n"
        "a,2026-06-01T01:00Z,2026-06-01T02:00Z,LOAD_LIMIT,2.5,dr-2;dr-3\n"
    )
    with pytest.raises(TableError, match=r"caps.csv line 3: event_id: 'dr-2;dr-3' has a ';'"):
        read_caps(path, ["a"])
