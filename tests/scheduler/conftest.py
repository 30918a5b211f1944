"""Fixtures of the scheduler tests; helpers live in ``scheduler_testkit``."""

from __future__ import annotations

import pytest
from scheduler_testkit import site

from scheduler.config import Site


@pytest.fixture
def two_sites() -> list[Site]:
    return [site("near", latency=30.0), site("far", latency=90.0)]
