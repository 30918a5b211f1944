"""Replay on archived weather model runs: each plan and re-plan on the run published by then."""

from __future__ import annotations

import pandas as pd
import pytest

from scheduler.config import load_config
from scheduler.drivers.replay import ReplaySpec, replay, summarize
from tests.conftest import NOAA, TUCSON_CONFIG, needs_nwp

pytestmark = [pytest.mark.realdata, needs_nwp]


def _spec(config, **overrides) -> ReplaySpec:
    values = dict(sources={"tucson": "synthetic"}, first="2019-05-15", last="2019-05-16",
                  policies=("greedy", "optimizer"), replan_every=pd.Timedelta(hours=6))  # fmt: skip
    return ReplaySpec(config, **(values | overrides))


def test_replay_plans_on_the_archived_run_and_settles_on_the_weather(tmp_path):
    config = load_config(TUCSON_CONFIG)
    on_runs = replay(_spec(config, forecasts={"tucson": str(NOAA / "gfs_0p25")}), tmp_path)
    runs = pd.read_csv(tmp_path / "runs.csv")
    # the directory holds 2019-05-15 and 2019-07-15 runs: May's days take May's run
    assert runs["model"].tolist() == ["gfs_0p25", "gfs_0p25"]
    assert set(runs["issued_at"]) == {"2019-05-15T00:00:00+00:00"}
    assert (runs["slots_from_run"] == 96).all()
    synthetic = replay(_spec(config, forecasts={"tucson": "synthetic"}))
    # same jobs and the same actual weather; only the forecast planned on differs
    assert on_runs.daily["gpu_hours_submitted"].equals(synthetic.daily["gpu_hours_submitted"])
    assert not on_runs.daily["green_share"].equals(synthetic.daily["green_share"])
    assert (on_runs.daily["cap_violations"] == 0).all()
    assert (on_runs.daily["replans"] > 0).all()
    assert "2 of 2 site-days planned on a run (gfs_0p25)" in " ".join(summarize(on_runs)["notes"])
