"""The tables every package exchanges: columns, kinds, units and rules, defined once.

One :class:`Schema` per table of the design (supply, jobs, plan, sites, caps, site load, run,
run jobs, measurements; ``docs/formats.md`` is written from them). A schema turns any frame into
its canonical form (:meth:`Schema.canonical`): the columns in order, numbers as floats or ints,
booleans from one set of spellings, times as tz-aware UTC. A time without a UTC offset is
refused everywhere, and every bad cell is named by ``<source> <row>`` and column. Tables are
written with :func:`write_table` (times as ``2026-11-28T16:00:00Z``) and read with
:func:`read_table`. This module is a leaf: it imports nothing of the project, so ``forecasts/``,
the scheduling core and ``clusters/`` can all share it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from scheduler.contracts.carriers import CARRIERS, carrier_columns
from scheduler.contracts.errors import UserError

__all__ = [
    "CAPS",
    "CAP_LIST_SEPARATOR",
    "GREEN_PURCHASES",
    "JOBS",
    "MEASUREMENTS",
    "PLAN",
    "RUN",
    "RUN_JOBS",
    "SITES",
    "SITE_LOAD",
    "STORAGE_PLAN",
    "STORAGE_UNITS",
    "SUPPLY",
    "UTC_ISO_FORMAT",
    "CapType",
    "Column",
    "JobStatus",
    "Kind",
    "Schema",
    "SupplyBasis",
    "TableError",
    "check_slot_minutes",
    "ensure_dir",
    "read_table",
    "split_sites",
    "write_table",
]

UTC_ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # how tables write times (UTC)
CAP_LIST_SEPARATOR = ";"  # between the caps named in a run table cell (caps_in_force, ...)
_MAX_LISTED_ERRORS = 20
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


class TableError(UserError):
    """A table that breaks its contract; the message names the source, rows and columns."""


class Kind(StrEnum):
    """How a column's cells are stored."""

    STR = "str"
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    TIME = "time"  # tz-aware UTC
    SITE_LIST = "site list"  # ';'-separated site names, normalised; empty = any


class CapType(StrEnum):
    """What a grid signal on a site's draw says (OpenADR 3 vocabulary): a limit on it, or its
    price. A ``PRICE`` limits nothing; its value is currency per MWh, not MW."""

    IMPORT_CAPACITY_LIMIT = "IMPORT_CAPACITY_LIMIT"  # grid draw: load minus green used
    LOAD_LIMIT = "LOAD_LIMIT"  # total site load
    PRICE = "PRICE"  # the grid energy price [currency/MWh], in place of the tariff's


class SupplyBasis(StrEnum):
    """What a settled slot's green supply is (``run.csv``'s ``supply_basis``)."""

    ACTUAL = "actual"  # the actual weather (a replay, a simulated day)
    MEASURED = "measured"  # what the site measured, reported in time
    ESTIMATED = "estimated"  # no measurement in time: the latest forecast for the slot


class JobStatus(StrEnum):
    """How a job ended in a run."""

    DONE = "done"
    LATE = "late"  # finished after its deadline, or unfinished (with a reason)
    FAILED = "failed"


def check_slot_minutes(value: int) -> int:
    """``value`` if slots of that many minutes tile the hour (and so the day), else ValueError.

    The one slot-length rule, for configs, the command line and resampling: a divisor of 60
    (5, 10, 15, 30 or 60 are usual).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or value <= 0
        or 60 % value
    ):
        raise ValueError(f"{value!r} min slots do not tile the hour; use 5, 10, 15, 30 or 60")
    return int(value)


def split_sites(cell: object) -> list[str]:
    """Site names of a ``;``-separated ``sites`` cell (empty = any site)."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    return [s.strip() for s in str(cell).split(";") if s.strip()]


@dataclass(frozen=True)
class Column:
    """One column: its name, kind, unit and rule.

    ``low``/``high`` bound numbers (``low_open``: strictly above ``low``); ``choices`` bounds
    strings; an optional column missing from a frame is filled with ``default``.
    """

    name: str
    kind: Kind
    unit: str
    description: str
    required: bool = True
    default: object = None
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    choices: tuple[str, ...] = ()

    def rule(self) -> str:
        """The value rule in words (for messages and docs)."""
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"<= {self.high:g}")
        if self.choices:
            parts.append("one of " + ", ".join(self.choices))
        return " and ".join(parts)


@dataclass(frozen=True)
class Schema:
    """A table's columns in order, and the columns whose values must be unique together."""

    name: str
    columns: tuple[Column, ...]
    unique: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]

    @property
    def time_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.kind is Kind.TIME]

    def empty(self) -> pd.DataFrame:
        """A canonical table with no rows."""
        return self.canonical(pd.DataFrame(columns=self.names), source=self.name)

    def canonical(
        self,
        frame: pd.DataFrame,
        source: str | None = None,
        first_row: int = 1,
        *,
        problems: list[str] | None = None,
        bad_rows: set[int] | None = None,
    ) -> pd.DataFrame:
        """``frame`` with this schema's columns in order and kinds, checked cell by cell.

        Extra columns are kept after the schema's. ``source`` names the frame in errors
        (``"jobs.csv line"`` with ``first_row=2`` for a file with a header); every bad cell, and
        every repeat of a unique key (naming the row it repeats), is listed as
        ``<source> <row> (<key>): <column>: what``. Raises :class:`TableError`, unless
        ``problems`` is given: then the messages are added to it (and the positions of the rows
        with a bad cell to ``bad_rows``) for a caller that checks more before it reports.
        """
        source = source or f"{self.name} row"
        missing = [c.name for c in self.columns if c.required and c.name not in frame.columns]
        if missing:
            raise TableError(
                f"{_file_of(source)}: missing column(s) {', '.join(missing)}; the {self.name} "
                f"table needs {', '.join(c.name for c in self.columns if c.required)}"
            )
        errors: list[str] = []
        key = self.unique[0] if len(self.unique) == 1 and self.unique[0] in frame.columns else None
        keys: np.ndarray | None = None  # the key of each row, read at the first error

        def where(i: int | np.integer) -> str:
            nonlocal keys
            if bad_rows is not None:
                bad_rows.add(int(i))
            if key is None:
                return f"{source} {i + first_row}"
            if keys is None:
                keys = frame[key].astype(str).to_numpy()
            return f"{source} {i + first_row} ({key} {keys[i]!r})"

        columns: dict[str, pd.Series] = {}
        for column in self.columns:
            raw = frame[column.name] if column.name in frame.columns else None
            if raw is None:
                raw = pd.Series([column.default] * len(frame), index=frame.index)
            values = _CONVERT[column.kind](raw.reset_index(drop=True), column, where, errors)
            _check_bounds(values, column, where, errors)
            columns[column.name] = values
        for name in frame.columns:
            if name not in columns:  # extra columns, after the schema's
                columns[name] = _numbers_if_all(frame[name].reset_index(drop=True))
        out = pd.DataFrame(columns, index=pd.RangeIndex(len(frame)))  # one frame, not per column
        if self.unique:
            unique = list(self.unique)
            readable = out[unique].notna().all(axis=1).to_numpy()
            repeated = out.duplicated(unique, keep=False).to_numpy() & readable
            first_of = out[repeated].reset_index().groupby(unique, sort=False)["index"].first()
            for i in np.flatnonzero(repeated):
                first = int(first_of.loc[tuple(out.loc[i, unique])])
                if first != i:
                    unit = source.rsplit(" ", 1)[-1]  # "line" of a file, "row" of a frame
                    errors.append(
                        f"{where(i)}: {', '.join(unique)}: repeats {unit} {first + first_row}; "
                        "must be unique"
                    )
        if problems is not None:
            problems.extend(errors)
            return out
        _raise(errors)
        return out


def _numbers_if_all(values: pd.Series) -> pd.Series:
    """An extra column as floats when every cell is a number (CSV cells arrive as text)."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers if numbers.notna().all() else values


def _file_of(source: str) -> str:
    return source.removesuffix(" line").removesuffix(" row")


def _as_str(raw: pd.Series, column: Column, where, errors: list[str]) -> pd.Series:
    values = raw.fillna("").astype(str).str.strip()
    if column.required and column.default is None:
        for i in np.flatnonzero((values == "").to_numpy()):
            if column.name in ("job_id", "site"):
                errors.append(f"{where(i)}: {column.name}: empty; every row needs one")
    return values


def _as_site_list(raw: pd.Series, column: Column, where, errors: list[str]) -> pd.Series:
    return pd.Series([";".join(split_sites(cell)) for cell in raw], dtype=str)


def _shown(value: object) -> str:
    """``repr`` of a cell as the user wrote it (numpy scalars as plain numbers)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _as_float(raw: pd.Series, column: Column, where, errors: list[str]) -> pd.Series:
    """Numbers; an optional column whose default is NaN may leave a cell empty."""
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna().to_numpy()
    if not column.required and isinstance(column.default, float) and np.isnan(column.default):
        bad = bad & ~(raw.isna() | (raw.astype(str).str.strip() == "")).to_numpy()
    for i in np.flatnonzero(bad):
        errors.append(f"{where(i)}: {column.name}: {_shown(raw.iat[i])} is not a number")
    return values.astype(float)


def _as_int(raw: pd.Series, column: Column, where, errors: list[str]) -> pd.Series:
    if isinstance(raw.dtype, np.dtype) and raw.dtype.kind == "i":  # numpy integers: whole
        return raw.astype(np.int64)
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() | (values != np.round(values))
    for i in np.flatnonzero(bad.to_numpy()):
        errors.append(f"{where(i)}: {column.name}: {_shown(raw.iat[i])} is not a whole number")
    return values.fillna(0).round().astype(np.int64)


def _as_bool(raw: pd.Series, column: Column, where, errors: list[str]) -> pd.Series:
    if raw.dtype == bool:
        return raw
    out = np.zeros(len(raw), dtype=bool)
    for i, value in enumerate(raw):
        text = str(value).strip().lower()
        if text in _TRUE:
            out[i] = True
        elif text not in _FALSE:
            errors.append(f"{where(i)}: {column.name}: {_shown(value)} is not true/false")
    return pd.Series(out)


_OFFSET = r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"  # an ISO 8601 UTC offset at the end


def _as_time(raw: pd.Series, column: Column, where, errors: list[str]) -> pd.Series:
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(raw.dtype):  # naive datetimes
        for i in np.flatnonzero(raw.notna().to_numpy())[:1]:
            errors.append(f"{where(i)}: {column.name}: {raw.iat[i]} has no time zone (UTC)")
        return pd.Series(pd.DatetimeIndex([pd.NaT] * len(raw), tz="UTC"))
    if raw.map(lambda v: isinstance(v, pd.Timestamp | dt.datetime)).all():
        stamps = [pd.Timestamp(v) for v in raw]
        naive = np.array([s.tzinfo is None for s in stamps], dtype=bool)
        parsed = pd.Series([s.tz_convert("UTC") if s.tzinfo else pd.NaT for s in stamps])
        parsed = pd.to_datetime(parsed, utc=True)
    else:
        text = raw.astype(str).str.strip()
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        naive = ~text.str.contains(_OFFSET, regex=True).to_numpy() & parsed.notna().to_numpy()
        parsed[naive] = pd.NaT
    for i in np.flatnonzero(naive):
        errors.append(
            f"{where(i)}: {column.name}: {_shown(raw.iat[i])} has no UTC offset (add Z or +08:00)"
        )
    for i in np.flatnonzero(parsed.isna().to_numpy() & ~naive):
        errors.append(
            f"{where(i)}: {column.name}: {_shown(raw.iat[i])} is not an ISO 8601 date-time"
        )
    return parsed.reset_index(drop=True)


_CONVERT: dict[Kind, Callable[..., pd.Series]] = {
    Kind.STR: _as_str,
    Kind.FLOAT: _as_float,
    Kind.INT: _as_int,
    Kind.BOOL: _as_bool,
    Kind.TIME: _as_time,
    Kind.SITE_LIST: _as_site_list,
}


def _check_bounds(values: pd.Series, column: Column, where, errors: list[str]) -> None:
    if column.choices:
        for i in np.flatnonzero(~values.isin(column.choices).to_numpy()):
            errors.append(
                f"{where(i)}: {column.name}: {values.iat[i]!r} is not allowed; "
                f"allowed: {', '.join(column.choices)}"
            )
    if column.low is None and column.high is None:
        return
    numbers = values.to_numpy(dtype=float)
    bad = np.zeros(len(values), dtype=bool)
    if column.low is not None:
        bad |= numbers <= column.low if column.low_open else numbers < column.low
    if column.high is not None:
        bad |= numbers > column.high
    for i in np.flatnonzero(bad & ~np.isnan(numbers)):
        errors.append(f"{where(i)}: {column.name}: {values.iat[i]} must be {column.rule()}")


def _raise(errors: Sequence[str]) -> None:
    if not errors:
        return
    shown = list(errors[:_MAX_LISTED_ERRORS])
    more = f"\n  ... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
    raise TableError(f"{len(errors)} bad cell(s):\n  " + "\n  ".join(shown) + more)


def _c(name: str, kind: Kind, unit: str, description: str, **rule: object) -> Column:
    return Column(name, kind, unit, description, **rule)  # type: ignore[arg-type]


_TIME = _c("time", Kind.TIME, "UTC", "slot start")
_SITE = _c("site", Kind.STR, "-", "site name")

SUPPLY = Schema(
    "supply",
    (
        _TIME,
        _SITE,
        *(
            _c(c.column, Kind.FLOAT, "MW", f"{c.description} delivered to the site", low=0)
            for c in CARRIERS
        ),
        _c("green_mw", Kind.FLOAT, "MW", " + ".join(carrier_columns()), low=0),
    ),
    unique=("site", "time"),
)
"""Supply per site and slot; a forecast may add ``green_mw_p10`` / ``green_mw_p90`` [MW]."""

JOBS = Schema(
    "jobs",
    (
        _c("job_id", Kind.STR, "-", "unique id"),
        _c("gpu_hours", Kind.FLOAT, "GPU-h", "work to do", low=0, low_open=True),
        _c("max_gpus", Kind.INT, "GPU", "most GPUs at once", low=1),
        _c("release", Kind.TIME, "UTC", "earliest start"),
        _c("deadline", Kind.TIME, "UTC", "all work done by"),
        _c("sites", Kind.SITE_LIST, "-", "allowed sites, ';'-separated; empty = any", default=""),
        _c("preemptible", Kind.BOOL, "-", "may pause and resume between slots"),
        _c(
            "tokens",
            Kind.FLOAT,
            "token",
            "tokens the job produces",
            required=False,
            default=0.0,
            low=0,
        ),
    ),
    unique=("job_id",),
)

PLAN = Schema(
    "plan",
    (
        _c("job_id", Kind.STR, "-", "job"),
        _SITE,
        _TIME,
        _c("gpus", Kind.INT, "GPU", "GPUs busy for the job in the slot", low=1),
    ),
    unique=("job_id", "site", "time"),
)

SITES = Schema(
    "sites",
    (
        _SITE,
        _c("gpus", Kind.INT, "GPU", "GPUs the scheduler may use", low=1),
        _c("kw_per_gpu", Kind.FLOAT, "kW", "server power per busy GPU", low=0, low_open=True),
        _c("pue", Kind.FLOAT, "-", "power usage effectiveness", low=1),
        _c("base_load_mw", Kind.FLOAT, "MW", "load drawn whatever runs", low=0),
        _c(
            "grid_import_limit_mw",
            Kind.FLOAT,
            "MW",
            "most the site may draw from the grid",
            low=0,
            low_open=True,
        ),
        _c(
            "carbon_kg_per_mwh",
            Kind.FLOAT,
            "kg CO2/MWh",
            "grid carbon (day mean)",
            required=False,
            default=float("nan"),
        ),
        _c(
            "price_per_mwh",
            Kind.FLOAT,
            "currency/MWh",
            "grid energy price (day mean)",
            required=False,
            default=float("nan"),
        ),
        _c(
            "ramp_up_mw_per_min",
            Kind.FLOAT,
            "MW/min",
            "fastest the load may rise; empty: no limit",
            required=False,
            default=float("nan"),
        ),
        _c(
            "ramp_down_mw_per_min",
            Kind.FLOAT,
            "MW/min",
            "fastest the load may fall; empty: no limit",
            required=False,
            default=float("nan"),
        ),
        _c(
            "user_latency_ms",
            Kind.FLOAT,
            "ms",
            "latency to the workload's user region; empty: unknown (ranked last)",
            required=False,
            default=float("nan"),
        ),
    ),
    unique=("site",),
)

STORAGE_UNITS = Schema(
    "storage units",
    (
        _SITE,
        _c("unit", Kind.STR, "-", "the unit's name at its site"),
        _c("p_nom", Kind.FLOAT, "MW", "charge and discharge power limit", low=0, low_open=True),
        _c("max_hours", Kind.FLOAT, "h", "hours at p_nom from full to empty", low=0,
           low_open=True),
        _c("efficiency_store", Kind.FLOAT, "-", "charging efficiency", low=0, low_open=True),
        _c("efficiency_dispatch", Kind.FLOAT, "-", "discharging efficiency", low=0,
           low_open=True),
        _c("standing_loss", Kind.FLOAT, "1/h", "share of the stored energy lost per hour", low=0),
        _c("state_of_charge_start", Kind.FLOAT, "MWh", "energy stored before the day's first "
           "slot", low=0),
        _c("state_of_charge_min", Kind.FLOAT, "MWh", "energy never discharged below", low=0),
    ),
    unique=("site", "unit"),
)  # fmt: skip
"""A plan directory's storage units (PyPSA's StorageUnit attributes), one row per unit."""

STORAGE_PLAN = Schema(
    "storage plan",
    (
        _SITE,
        _c("unit", Kind.STR, "-", "the unit's name at its site"),
        _TIME,
        _c("charge_mw", Kind.FLOAT, "MW", "power the plan charges the unit with", low=0),
        _c("discharge_mw", Kind.FLOAT, "MW", "power the plan discharges into the site's load",
           low=0),
        _c("energy_before_mwh", Kind.FLOAT, "MWh", "energy the plan holds before the slot",
           low=0),
    ),
    unique=("site", "unit", "time"),
)  # fmt: skip
"""How the chosen plan runs each storage unit, one row per unit and slot: settlement discharges
what it discharges and keeps the energy it holds (:mod:`scheduler.storage`)."""

GREEN_PURCHASES = Schema(
    "green purchases",
    (
        _SITE,
        _c("delivered_mwh", Kind.FLOAT, "MWh", "green energy the purchase delivers in the day",
           low=0),
        _c("price_per_mwh", Kind.FLOAT, "currency/MWh", "contract price, take or pay", low=0),
    ),
    unique=("site",),
)  # fmt: skip
"""A plan directory's direct green-power purchases (PPAs), one row per site with one."""

CAPS = Schema(
    "caps",
    (
        _SITE,
        _c("start", Kind.TIME, "UTC", "cap in force from"),
        _c("end", Kind.TIME, "UTC", "cap in force until (exclusive)"),
        _c("type", Kind.STR, "-", "what the cap limits (PRICE: nothing)", choices=tuple(CapType)),
        _c(
            "value_mw",
            Kind.FLOAT,
            "MW",
            "the limit; for a PRICE row the price [currency/MWh]",
            low=0,
        ),
        _c(
            "event_id",
            Kind.STR,
            "-",
            "the event the cap came from (a grid coordinator's id; no ';'), named in run.csv; "
            "empty: none",
            required=False,
            default="",
        ),
    ),
)

_STORAGE_COLUMNS = (
    _c("storage_charge_mw", Kind.FLOAT, "MW", "green power taken into the site's storage",
       low=0, required=False, default=0.0),
    _c("storage_discharge_mw", Kind.FLOAT, "MW", "power the site's storage gave its load (stored "
       "green, after losses)", low=0, required=False, default=0.0),
    _c("soc_mwh", Kind.FLOAT, "MWh", "energy in the site's storage at the slot's end", low=0,
       required=False, default=0.0),
)  # fmt: skip

SITE_LOAD = Schema(
    "site load",
    (
        _TIME,
        _SITE,
        _c("gpus_busy", Kind.INT, "GPU", "GPUs busy"),
        _c("load_mw", Kind.FLOAT, "MW", "GPUs x kW per GPU x PUE + base load"),
        _c("green_mw", Kind.FLOAT, "MW", "green supply"),
        _c("green_used_mw", Kind.FLOAT, "MW", "min(load, green) + storage discharged"),
        *_STORAGE_COLUMNS,
        _c("grid_mw", Kind.FLOAT, "MW", "load - green used"),
        _c("cap_mw", Kind.FLOAT, "MW", "tightest grid-draw cap (import limit and caps)"),
        _c("load_cap_mw", Kind.FLOAT, "MW", "tightest load cap (inf when none)"),
        _c("carbon_kg_per_mwh", Kind.FLOAT, "kg CO2/MWh", "grid carbon intensity"),
        _c("grid_co2_kg", Kind.FLOAT, "kg", "grid CO2 in the slot"),
        _c(
            "grid_cost",
            Kind.FLOAT,
            "currency",
            "grid energy x its price in the slot",
            required=False,
            default=0.0,
        ),
        _c("cap_violation", Kind.BOOL, "-", "a cap broken with GPUs busy"),
    ),
)

RUN = Schema(
    "run",
    (
        _TIME,
        _SITE,
        _c("planned_gpus", Kind.INT, "GPU", "GPUs the plan put here"),
        _c("dispatched_gpus", Kind.INT, "GPU", "GPUs sent to run after caps and capacity"),
        _c("actual_gpus", Kind.INT, "GPU", "GPUs of chunks that completed"),
        _c("tasks", Kind.INT, "-", "chunks sent"),
        _c("tasks_failed", Kind.INT, "-", "chunks that did not complete"),
        _c("capacity_gpus", Kind.FLOAT, "GPU", "live capacity of the site"),
        _c("planned_load_mw", Kind.FLOAT, "MW", "load of the plan"),
        _c("planned_green_mw", Kind.FLOAT, "MW", "green supply the plan was made on"),
        _c("load_mw", Kind.FLOAT, "MW", "load actually drawn"),
        _c("green_mw", Kind.FLOAT, "MW", "actual green supply"),
        _c("green_used_mw", Kind.FLOAT, "MW", "min(load, green) + storage discharged"),
        *_STORAGE_COLUMNS,
        _c("grid_mw", Kind.FLOAT, "MW", "load - green used"),
        _c("grid_cap_mw", Kind.FLOAT, "MW", "tightest grid-draw cap in force"),
        _c("load_cap_mw", Kind.FLOAT, "MW", "tightest load cap in force (inf when none)"),
        _c("cap_violation_mw", Kind.FLOAT, "MW", "how far a cap was broken (0 when kept)"),
        _c(
            "supply_basis",
            Kind.STR,
            "-",
            "what green_mw is: the actual weather, what the site measured, or an estimate (the "
            "latest forecast) where no measurement came in time",
            required=False,
            default=str(SupplyBasis.ACTUAL),
            choices=tuple(SupplyBasis),
        ),
        _c(
            "measured_load_mw",
            Kind.FLOAT,
            "MW",
            "the load the site measured, when it reported one",
            required=False,
            default=float("nan"),
            low=0,
        ),
        _c(
            "caps_in_force",
            Kind.STR,
            "-",
            "the caps in force at the site in the slot, ';'-separated: each by its event_id, "
            "or without one as TYPE:START/END (UTC); empty: none",
            required=False,
            default="",
        ),
        _c(
            "caps_binding",
            Kind.STR,
            "-",
            "those of caps_in_force that bound the slot: the tightest cap of its type, with "
            "room for less than one more GPU at the GPUs dispatched (on green_mw)",
            required=False,
            default="",
        ),
    ),
)

MEASUREMENTS = Schema(
    "measurements",
    (
        _TIME,
        _SITE,
        *(
            _c(c.column, Kind.FLOAT, "MW", f"{c.description} the site measured, slot mean", low=0)
            for c in CARRIERS
        ),
        _c(
            "load_mw",
            Kind.FLOAT,
            "MW",
            "the site's load, slot mean (optional)",
            required=False,
            default=float("nan"),
            low=0,
        ),
    ),
    unique=("site", "time"),
)
"""What sites measured, per site and slot (a SCADA export, or over gRPC)."""

RUN_JOBS = Schema(
    "run jobs",
    (
        _c("job_id", Kind.STR, "-", "job"),
        _c("status", Kind.STR, "-", "how the job ended", choices=tuple(JobStatus)),
        _c("reason", Kind.STR, "-", "why, when not done on time", default=""),
        _c("sites", Kind.SITE_LIST, "-", "sites it ran at, ';'-separated", default=""),
        _c("slots", Kind.INT, "-", "slots it ran in"),
        _c("gpu_hours_required", Kind.FLOAT, "GPU-h", "work submitted"),
        _c("gpu_hours_done", Kind.FLOAT, "GPU-h", "work done"),
        _c("tokens_accounted", Kind.FLOAT, "token", "tokens credited for work done"),
        _c("tokens_real", Kind.INT, "token", "tokens the tasks really generated"),
        _c("finished_at", Kind.TIME, "UTC", "end of the slot it finished in", required=False),
        _c("deadline", Kind.TIME, "UTC", "deadline"),
    ),
    unique=("job_id",),
)


def ensure_dir(path: str | Path) -> Path:
    """The directory ``path``, made with its parents when missing. Raises :class:`UserError`
    naming it when it cannot be: a file in the way, no permission, a read-only place."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: is a file, not a directory; give a directory (or remove it)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        blocked = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        why = f"{blocked} is a file" if blocked is not None else (error.strerror or str(error))
        raise UserError(f"{path}: cannot make this directory: {why}") from None
    return path


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as ``.csv`` (UTC times with ``Z``) or ``.parquet``; returns the path.
    Raises :class:`UserError` naming the path when it cannot be written."""
    path = Path(path)
    if path.suffix not in (".parquet", ".csv"):
        raise TableError(f"{path}: use a .csv or .parquet file name")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give a file name ending .csv or .parquet")
    ensure_dir(path.parent)
    try:
        if path.suffix == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False, date_format=UTC_ISO_FORMAT)
    except OSError as error:
        raise UserError(f"{path}: cannot write: {error.strerror or error}") from None
    return path


def read_table(
    schema: Schema,
    path: str | Path,
    *,
    problems: list[str] | None = None,
    bad_rows: set[int] | None = None,
) -> pd.DataFrame:
    """Read a ``.csv`` or ``.parquet`` table and return it canonical (see :meth:`Schema.canonical`).

    Raises :class:`TableError` naming the file, and the line and column of every bad cell (with
    ``problems``, collects them instead, as :meth:`Schema.canonical` does).
    """
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            raw = pd.read_parquet(path)
        else:
            raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise TableError(f"{path}: no such file") from None
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise TableError(f"{path}: cannot read the {schema.name} table: {error}") from None
    # in a CSV line 1 is the header, so data row i is on line i + 2
    return schema.canonical(
        raw, source=f"{path} line", first_row=2, problems=problems, bad_rows=bad_rows
    )
