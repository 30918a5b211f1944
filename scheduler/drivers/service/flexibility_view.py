"""What a coordinator reads of a flexibility quote: ``greensched caps flexibility``.

:func:`slot_frame` turns a ``GetFlexibility`` reply into one row per site and slot (planned
load, shed floor, absorb ceiling), :func:`cost_frame` into one row per site and shed level (the
cost of shedding); :func:`write_quote` prints both as tables, CSV (the slot rows, a blank line,
then the cost rows, each with its header) or JSON lines (one object per row, ``kind`` ``slot``
or ``shed``); :func:`plot_quote` draws baseline, floor and ceiling per site.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal, TextIO

import pandas as pd
from rich.console import Console
from rich.table import Table

from scheduler.drivers.service.pb.greensched.v1 import loadcap_pb2 as pb

__all__ = [
    "COST_COLUMNS",
    "SLOT_COLUMNS",
    "QuoteFormat",
    "cost_frame",
    "plot_quote",
    "slot_frame",
    "write_quote",
]

QuoteFormat = Literal["table", "csv", "json"]
SLOT_COLUMNS = ("site", "start", "baseline_mw", "floor_mw", "ceiling_mw")
"""Columns of a slot row [MW]; times in ISO 8601 with their offset."""
COST_COLUMNS = (
    "site", "shed_mw", "shed_mwh", "opt", "extra_co2_kg", "extra_cost", "grid_mwh_change",
    "late_gpu_hours", "late_jobs", "largest_on_time_shed_mw",
)  # fmt: skip
"""Columns of a shed-level row; ``largest_on_time_shed_mw`` is the site's."""
_HEADERS = {
    "baseline_mw": "planned MW", "floor_mw": "shed floor MW", "ceiling_mw": "absorb ceiling MW",
    "shed_mw": "shed MW", "shed_mwh": "shed MWh", "opt": "answer", "extra_co2_kg": "+CO2 kg",
    "extra_cost": "+cost", "grid_mwh_change": "+grid MWh", "late_gpu_hours": "late GPU-h",
    "late_jobs": "late jobs",
}  # fmt: skip


def _time(message, timezone: str | None) -> pd.Timestamp:
    time = pd.Timestamp(message.ToNanoseconds(), tz="UTC")
    return time.tz_convert(timezone) if timezone else time


def slot_frame(quote: pb.Flexibility, timezone: str | None = None) -> pd.DataFrame:
    """One row per site and slot of ``quote`` (:data:`SLOT_COLUMNS`), slot starts in
    ``timezone`` (default UTC)."""
    rows = [
        {
            "site": site.site,
            "start": _time(slot.start, timezone),
            "baseline_mw": slot.baseline_mw,
            "floor_mw": slot.floor_mw,
            "ceiling_mw": slot.ceiling_mw,
        }
        for site in quote.sites
        for slot in site.slots
    ]
    return pd.DataFrame(rows, columns=list(SLOT_COLUMNS))


def cost_frame(quote: pb.Flexibility) -> pd.DataFrame:
    """One row per site and shed level of ``quote`` (:data:`COST_COLUMNS`)."""
    rows = [
        {
            "site": site.site,
            "shed_mw": cost.shed_mw,
            "shed_mwh": cost.shed_mwh,
            "opt": pb.Opt.Name(cost.opt) + (" (provisional)" if cost.provisional else ""),
            "extra_co2_kg": cost.extra_co2_kg,
            "extra_cost": cost.extra_cost,
            "grid_mwh_change": cost.grid_mwh_change,
            "late_gpu_hours": cost.late_gpu_hours,
            "late_jobs": cost.late_jobs_total,
            "largest_on_time_shed_mw": site.largest_on_time_shed_mw,
        }
        for site in quote.sites
        for cost in site.shed_costs
    ]
    return pd.DataFrame(rows, columns=list(COST_COLUMNS))


def write_quote(
    quote: pb.Flexibility, fmt: QuoteFormat, timezone: str | None = None, out: TextIO | None = None
) -> None:
    """Print ``quote`` as tables, CSV or JSON lines (module docstring)."""
    out = sys.stdout if out is None else out
    slots, costs = slot_frame(quote, timezone), cost_frame(quote)
    if fmt == "csv":
        slots.to_csv(out, index=False, date_format="%Y-%m-%dT%H:%M:%S%z")
        out.write("\n")
        costs.to_csv(out, index=False)
    elif fmt == "json":
        for kind, frame in (("slot", slots), ("shed", costs)):
            for record in frame.to_dict("records"):
                cells = {k: v.isoformat() if isinstance(v, pd.Timestamp) else v
                         for k, v in record.items()}  # fmt: skip
                out.write(json.dumps({"kind": kind, **cells}) + "\n")
    else:
        console = Console(file=out, width=max(Console().width, 120))
        console.print(_table(slots, f"flexibility, plan version {quote.plan_version} (MW)"))
        largest = {site.site: site.largest_on_time_shed_mw for site in quote.sites}
        title = "cost of shedding over the window (whole plan, new minus old); largest shed " \
            "on time: " + ", ".join(f"{k} {v:,.2f} MW" for k, v in largest.items())  # fmt: skip
        console.print(_table(costs.drop(columns="largest_on_time_shed_mw"), title))
    out.flush()


def _table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(title=title)
    for column in frame.columns:
        left = column in ("site", "start", "opt")
        table.add_column(_HEADERS.get(column, column), justify="left" if left else "right",
                         no_wrap=left)  # fmt: skip
    for record in frame.itertuples(index=False):
        table.add_row(*(_cell(v) for v in record))
    return table


def _cell(value: object) -> str:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def plot_quote(quote: pb.Flexibility, path: Path, timezone: str | None = None) -> None:
    """Baseline, shed floor and absorb ceiling per slot, one panel per site, to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slots = slot_frame(quote, timezone)
    sites = list(dict.fromkeys(slots["site"]))
    figure, axes = plt.subplots(len(sites), 1, figsize=(10, 3 * len(sites)), squeeze=False,
                                sharex=True)  # fmt: skip
    for ax, name in zip(axes[:, 0], sites, strict=True):
        rows = slots[slots["site"] == name]
        times = rows["start"].dt.tz_localize(None)
        ax.fill_between(times, rows["floor_mw"], rows["ceiling_mw"], step="post", alpha=0.2,
                        label="reachable (floor to ceiling)")  # fmt: skip
        for column, label, style in (
            ("ceiling_mw", "absorb ceiling", "--"),
            ("baseline_mw", "planned (baseline)", "-"),
            ("floor_mw", "shed floor", ":"),
        ):
            ax.step(times, rows[column], where="post", linestyle=style, label=label)
        ax.set_title(name)
        ax.set_ylabel("MW")
        ax.legend(loc="upper left", fontsize="small")
    axes[-1, 0].set_xlabel(f"slot start ({timezone or 'UTC'})")
    figure.suptitle(f"flexibility, plan version {quote.plan_version}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
