"""A compressed clock stands at its anchor until started, then runs ``speedup`` times the wall
clock, and never goes back (what a service reading the time before its loop's first day sees)."""

from __future__ import annotations

import time

import pandas as pd

from scheduler.clock import CompressedClock

START = pd.Timestamp("2026-12-07T16:00Z")


def test_time_stands_at_the_anchor_until_started_then_runs_on_without_going_back():
    clock = CompressedClock(3600.0, start=START)
    time.sleep(0.05)  # 3 simulated minutes, were it running
    assert clock.now() == START
    clock.start()
    time.sleep(0.05)
    running = clock.now()
    assert START + pd.Timedelta(minutes=2) <= running <= START + pd.Timedelta(hours=1)
    clock.start()  # a second start does not re-anchor
    assert clock.now() >= running


def test_without_an_anchor_the_first_sleep_anchors_and_starts_it():
    clock = CompressedClock(36_000.0)
    clock.sleep_until(START)
    first = clock.now()
    assert START <= first < START + pd.Timedelta(minutes=10)
    clock.sleep_until(START + pd.Timedelta(minutes=15))  # 0.025 s of wall time
    assert clock.now() >= START + pd.Timedelta(minutes=15)
