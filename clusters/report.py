"""The run report: what ran where and when, the energy it drew, and planned vs actual totals.

Tables (pandas, long form):

- ``jobs``: per job ``job_id, status, reason, sites, slots, gpu_hours_required,
  gpu_hours_done, tokens_accounted, tokens_real, finished_at, deadline``;
- ``site_slots``: per site and slot ``time, site, planned_gpus, actual_gpus, planned_load_mw,
  load_mw, green_mw, green_used_mw, grid_mw, grid_cap_mw, load_cap_mw, cap_violation_mw, tasks,
  tasks_failed``, where the ``actual`` columns come from chunks that completed;
- ``chunks``: per task attempt ``job_id, site, time, gpus, attempt, outcome, error, node_id,
  site_units, wall_s, delay_s, tokens_real, tokens_accounted``;
- ``events``: deferrals, resumptions, retries, failures, cap breaches, site losses, re-plans.

``totals`` holds ``planned`` and ``actual`` side by side (energy [MWh], green share [-],
tokens), both settled against the same supply table the run used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["RunReport", "energy_totals", "write_run_report"]


@dataclass
class RunReport:
    """A finished run: the four tables, the totals and the wall time [s]."""

    jobs: pd.DataFrame
    site_slots: pd.DataFrame
    chunks: pd.DataFrame
    events: pd.DataFrame
    totals: dict[str, dict[str, float]]
    slot_minutes: float
    wall_s: float
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def statuses(self) -> dict[str, str]:
        """Status by job id."""
        return dict(zip(self.jobs["job_id"], self.jobs["status"], strict=True))


def energy_totals(site_slots: pd.DataFrame, slot_minutes: float, prefix: str) -> dict[str, float]:
    """Load, green-used and grid energy [MWh] and green share [-] of one side of a run.

    ``prefix`` is ``"planned_"`` or ``""`` (actual): the columns read are ``{prefix}load_mw`` and
    ``{prefix}green_mw`` (``green_mw`` when absent), green used is ``min(load, green)`` slot by
    slot. The planned side uses the supply the plan was made on (the forecast), the actual side
    the supply the run settled on.
    """
    slot_h = slot_minutes / 60.0
    load = site_slots[f"{prefix}load_mw"]
    green = site_slots.get(f"{prefix}green_mw", site_slots["green_mw"])
    green_used = load.clip(upper=green)
    load_mwh = float(load.sum() * slot_h)
    green_mwh = float(green_used.sum() * slot_h)
    return {
        "load_mwh": load_mwh,
        "green_used_mwh": green_mwh,
        "grid_mwh": load_mwh - green_mwh,
        "green_share": green_mwh / load_mwh if load_mwh > 0 else 0.0,
    }


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = out[column].map(lambda t: None if pd.isna(t) else t.isoformat())
    return json.loads(out.to_json(orient="records", date_format="iso"))


def write_run_report(directory: str | Path, report: RunReport) -> tuple[Path, Path]:
    """Write ``DIR/run_report.json`` (everything) and ``DIR/run.csv`` (site-slot table)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = directory / "run_report.json", directory / "run.csv"
    body = {
        "slot_minutes": report.slot_minutes,
        "wall_s": report.wall_s,
        "settings": report.settings,
        "totals": report.totals,
        "jobs": _records(report.jobs),
        "events": _records(report.events),
        "site_slots": _records(report.site_slots),
    }
    json_path.write_text(json.dumps(body, indent=1, default=str), encoding="utf-8")
    report.site_slots.to_csv(csv_path, index=False)
    return json_path, csv_path
