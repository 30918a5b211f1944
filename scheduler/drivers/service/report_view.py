"""What a coordinator reads of the service's reports: ``greensched caps report [--watch]``.

:func:`report_frame` turns ``GetReport`` / ``WatchReport`` messages into one row per site and
slot in the OpenADR 3 vocabulary (USAGE, DEMAND, BASELINE, OPERATING_STATE, the caps in force,
the supply basis, the forecast's age and, where a site has storage, its STORAGE_* payloads);
:func:`write_rows` prints them as a table, CSV or JSON lines (one object per row, so a watch
can be piped).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Literal, TextIO

import pandas as pd
from rich.console import Console
from rich.table import Table

from scheduler.drivers.service.pb.greensched.v1 import loadcap_pb2 as pb

__all__ = ["REPORT_COLUMNS", "ReportFormat", "report_frame", "write_rows"]

ReportFormat = Literal["table", "csv", "json"]
REPORT_COLUMNS = (
    "site", "start", "usage_mw", "demand_mw", "baseline_mw", "operating_state", "grid_cap_mw",
    "load_cap_mw", "supply_basis", "forecast_age_h", "storage_charge_level_mwh",
    "storage_charge_mw", "storage_discharge_mw",
)  # fmt: skip
"""Columns of a report row; units in the names, times in ISO 8601 with their offset."""
_HEADERS = {
    "usage_mw": "USAGE MW", "demand_mw": "DEMAND MW", "baseline_mw": "BASELINE MW",
    "operating_state": "OPERATING_STATE", "grid_cap_mw": "grid cap MW", "load_cap_mw":
    "load cap MW", "supply_basis": "basis", "forecast_age_h": "forecast age h",
    "storage_charge_level_mwh": "stored MWh", "storage_charge_mw": "charge MW",
    "storage_discharge_mw": "discharge MW",
}  # fmt: skip
"""Short headers of the table format (the CSV and JSON keep :data:`REPORT_COLUMNS`)."""
_OPTIONAL = ("load_cap_mw", "forecast_age_h", "storage_charge_level_mwh", "storage_charge_mw",
             "storage_discharge_mw")  # fmt: skip


def report_frame(report: pb.Report, timezone: str | None = None) -> pd.DataFrame:
    """One row per site and slot of ``report`` (:data:`REPORT_COLUMNS`); slot starts in
    ``timezone`` (default UTC); a value the service left unset is NaN."""
    rows = []
    for slot in report.slots:
        start = pd.Timestamp(slot.start.ToNanoseconds(), tz="UTC")
        row = {
            "site": slot.site,
            "start": start.tz_convert(timezone) if timezone else start,
            "usage_mw": slot.usage_mw,
            "demand_mw": slot.demand_mw,
            "baseline_mw": slot.baseline_mw,
            "operating_state": pb.OperatingState.Name(slot.operating_state),
            "grid_cap_mw": slot.grid_cap_mw,
            "supply_basis": slot.supply_basis,
        }
        for name in _OPTIONAL:
            row[name] = getattr(slot, name) if slot.HasField(name) else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=list(REPORT_COLUMNS))


def write_rows(
    rows: pd.DataFrame, fmt: ReportFormat, out: TextIO | None = None, header: bool = True
) -> None:
    """Print ``rows`` (:func:`report_frame`) as a table, CSV (``header`` for the first batch of
    a watch only) or JSON lines (NaN as null)."""
    out = sys.stdout if out is None else out
    if fmt == "csv":
        rows.to_csv(out, index=False, header=header, date_format="%Y-%m-%dT%H:%M:%S%z")
    elif fmt == "json":
        for record in rows.to_dict("records"):
            cells = {k: _json_value(v) for k, v in record.items()}
            out.write(json.dumps(cells) + "\n")
    else:
        table = Table(title=None if not header else "report (MW; OpenADR 3 payloads)")
        shown = [c for c in REPORT_COLUMNS if c in rows and rows[c].notna().any()]
        for column in shown:
            left = column in ("site", "start")
            table.add_column(_HEADERS.get(column, column), justify="left" if left else "right",
                             no_wrap=left)  # fmt: skip
        for record in rows[shown].itertuples(index=False):
            table.add_row(*(_cell(v) for v in record))
        Console(file=out, width=max(Console().width, 160)).print(table)
    out.flush()


def _json_value(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _cell(value: object) -> str:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:,.2f}"
    return str(value)
