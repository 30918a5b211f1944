"""The plan directory: one documented format, written and read here only.

A plan directory holds one operating day's plan and, after a run, what ran (see :data:`FILES`).
``manifest.json`` says what the tables mean: the day (UTC start and end), the time zone, the
slot length, the sites, the policies, the seed, a hash of the config and the greensched
version. A reader takes slot length, horizon and sites from the manifest, never from whatever
config it is given; every table is read through its schema, so a bad cell is named by file,
line and column.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from scheduler.contracts.errors import UserError
from scheduler.contracts.tables import (
    CAPS,
    GREEN_PURCHASES,
    JOBS,
    PLAN,
    RUN,
    RUN_JOBS,
    SITES,
    STORAGE_PLAN,
    STORAGE_UNITS,
    SUPPLY,
    Schema,
    TableError,
    ensure_dir,
    read_table,
    write_table,
)

__all__ = [
    "FILES",
    "FORMAT_VERSION",
    "Manifest",
    "PlanDirError",
    "PlanTables",
    "RunReport",
    "greensched_version",
    "last_run_gpus",
    "last_run_soc_mwh",
    "read_plan_dir",
    "write_plan_dir",
    "write_run_report",
]

FORMAT_VERSION = 1
FILES: dict[str, str] = {
    "manifest.json": "format version, operating day (UTC start and end), time zone, slot length, "
    "sites, chosen and compared policies, seed, config hash, greensched version, creation time, "
    "when known each site's load before the day (initial_load_mw, for the ramp limits) and "
    "where each site's forecast came from (forecast: synthetic, or a weather model's source, "
    "model, issue time and members)",
    "supply.csv": "the forecast the plan was made on (supply table, with p10/p90 columns)",
    "supply_actual.csv": "the supply the day settles on (actuals, when known)",
    "jobs.csv": "the jobs table",
    "plan.csv": "the chosen policy's plan (plan table)",
    "plan-<policy>.csv": "each policy's plan",
    "sites.csv": "every site parameter the plan was made with (GPUs, power, base load, import "
    "limit, carbon and price as day means, ramp limits, latency to the user region); dispatch "
    "refuses a config whose GPUs, power, base load, import limit or ramp limits differ",
    "caps.csv": "the load caps in force (caps table)",
    "storage.csv": "the sites' storage units the plan was scored with, and the energy each held "
    "before the day (storage units table); dispatch refuses a config whose units differ",
    "storage_plan.csv": "how the chosen plan runs each storage unit per slot (storage plan table):"
    " dispatch discharges what it discharges and keeps the energy it holds; absent: the storage "
    "rule (charge on surplus, discharge on deficit)",
    "purchases.csv": "the sites' direct green-power purchases and what each delivers in the day "
    "(green purchases table); dispatch refuses a config whose purchases differ",
    "site_load.csv": "the chosen plan's load, green use and grid draw per site and slot",
    "summary.json": "metrics and solver facts per policy; for a day the control loop ran, "
    "'ran' (what ran, on the supply it settled on) and 'planned' (per policy, on the forecast)",
    "plan.png": "per site: green supply vs planned load, grid draw shaded, and the energy "
    "stored where the site has storage",
    "run.csv": "after a run: planned vs actual per site and slot (run table)",
    "run_jobs.csv": "after a run: how each job ended (done, late, failed) and why",
    "run_report.json": "after a run: totals, events, task attempts",
}


class PlanDirError(UserError):
    """A plan directory that cannot be used; the message names the file and what is wrong."""


def greensched_version() -> str:
    """The installed greensched version (``0+unknown`` when not installed)."""
    try:
        return metadata.version("greensched")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class Manifest:
    """What a plan directory's tables mean; times are UTC."""

    day_start: pd.Timestamp
    day_end: pd.Timestamp
    timezone: str
    slot_minutes: int
    sites: tuple[str, ...]
    policy: str
    compared: tuple[str, ...]
    seed: int
    config_sha256: str
    greensched_version: str = field(default_factory=greensched_version)
    created: pd.Timestamp = field(default_factory=lambda: pd.Timestamp.now(tz="UTC").floor("s"))
    format_version: int = FORMAT_VERSION
    initial_load_mw: dict[str, float] | None = None
    """Each site's load in the slot before the day [MW] (the previous day's last slot, so ramp
    limits hold across midnight); ``None`` when unknown. Optional in ``manifest.json``."""
    forecast: dict[str, dict[str, Any]] | None = None
    """Per site, where the forecast in ``supply.csv`` came from: ``{"source": "synthetic"}``
    (actual weather plus the error model), or a weather model's run: ``source`` (its file,
    directory or service), ``model``, ``issued_at`` (UTC), ``members``, ``valid_from`` and
    ``valid_to`` (UTC), ``grid_point`` and ``interpolation``, ``slots_from_run`` of the day's
    ``slots`` (the rest came from the error model). Optional in ``manifest.json``."""

    @property
    def n_slots(self) -> int:
        """Slots in the day."""
        return int((self.day_end - self.day_start) / pd.Timedelta(minutes=self.slot_minutes))

    def to_json(self) -> str:
        body: dict[str, Any] = asdict(self)
        for name in ("day_start", "day_end", "created"):
            body[name] = body[name].isoformat()
        return json.dumps(body, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str) -> Manifest:
        """Parse ``manifest.json``; errors name ``source`` and the field."""
        try:
            body = json.loads(text)
        except json.JSONDecodeError as error:
            raise PlanDirError(f"{source}: not valid JSON: {error}") from None
        if not isinstance(body, dict):
            raise PlanDirError(f"{source}: must be a JSON object")
        version = body.get("format_version")
        if version != FORMAT_VERSION:
            raise PlanDirError(
                f"{source}: format_version {version!r} is not {FORMAT_VERSION}; re-plan the day "
                f"with this greensched ({greensched_version()})"
            )
        names = set(cls.__dataclass_fields__)
        missing = sorted(names - set(body) - _OPTIONAL_FIELDS)
        unknown = sorted(set(body) - names)
        if missing or unknown:
            raise PlanDirError(
                f"{source}: missing field(s) {', '.join(missing) or '-'}; "
                f"unknown field(s) {', '.join(unknown) or '-'}"
            )
        try:
            times = {n: _utc(body[n], n) for n in ("day_start", "day_end", "created")}
            manifest = cls(
                **{
                    **body,
                    **times,
                    "sites": tuple(str(s) for s in body["sites"]),
                    "compared": tuple(str(p) for p in body["compared"]),
                    "slot_minutes": int(body["slot_minutes"]),
                    "seed": int(body["seed"]),
                    "initial_load_mw": _site_loads(body.get("initial_load_mw"), body["sites"]),
                    "forecast": _forecast(body.get("forecast"), body["sites"]),
                }
            )
        except (TypeError, ValueError) as error:
            raise PlanDirError(f"{source}: {error}") from None
        if manifest.n_slots <= 0:
            raise PlanDirError(f"{source}: day_end must be after day_start")
        return manifest


_OPTIONAL_FIELDS = {"initial_load_mw", "forecast"}


def _forecast(value: object, sites: list[str]) -> dict[str, dict[str, Any]] | None:
    """``forecast`` as site -> a mapping with at least ``source`` (or ``None``)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not set(value) <= set(sites):
        raise ValueError(f"forecast: must map sites among {', '.join(sites)} to their source")
    for site, entry in value.items():
        if not isinstance(entry, dict) or "source" not in entry:
            raise ValueError(f"forecast.{site}: must be an object with a 'source'")
    return {str(site): dict(entry) for site, entry in value.items()}


def _site_loads(value: object, sites: list[str]) -> dict[str, float] | None:
    """``initial_load_mw`` as site -> MW, one finite value >= 0 per site (or ``None``)."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != set(sites):
        raise ValueError(f"initial_load_mw: must map each of {', '.join(sites)} to MW")
    loads = {str(k): float(v) for k, v in value.items()}
    if not all(math.isfinite(v) and v >= 0 for v in loads.values()):
        raise ValueError(f"initial_load_mw: {value} must be finite and >= 0 [MW]")
    return loads


def _utc(value: object, name: str) -> pd.Timestamp:
    stamp = pd.Timestamp(str(value))
    if stamp.tzinfo is None:
        raise ValueError(f"{name}: {value!r} has no UTC offset")
    return stamp.tz_convert("UTC")


@dataclass(frozen=True)
class PlanTables:
    """The tables of a plan directory (canonical, see :mod:`scheduler.contracts.tables`).

    ``plans`` maps every policy to its plan; the manifest's ``policy`` is the plan.
    """

    manifest: Manifest
    forecast: pd.DataFrame
    actual: pd.DataFrame | None
    jobs: pd.DataFrame
    plans: dict[str, pd.DataFrame]
    sites: pd.DataFrame
    caps: pd.DataFrame
    storage: pd.DataFrame | None = None  # None: a directory written before storage existed
    purchases: pd.DataFrame | None = None
    storage_plan: pd.DataFrame | None = None  # None: the plan follows the storage rule

    @property
    def plan(self) -> pd.DataFrame:
        """The chosen policy's plan."""
        return self.plans[self.manifest.policy]

    @property
    def settle_supply(self) -> pd.DataFrame:
        """What the day settles on: the actual supply when known, else the forecast."""
        return self.actual if self.actual is not None else self.forecast


def write_plan_dir(
    directory: str | Path,
    tables: PlanTables,
    *,
    site_load: pd.DataFrame,
    summary: dict[str, Any],
) -> Path:
    """Write every table, ``summary.json`` and, last, ``manifest.json`` (so a directory with a
    manifest is complete). Returns the directory."""
    out = ensure_dir(directory)
    (out / "manifest.json").unlink(missing_ok=True)
    write_table(tables.forecast, out / "supply.csv")
    if tables.actual is not None:
        write_table(tables.actual, out / "supply_actual.csv")
    write_table(tables.jobs, out / "jobs.csv")
    write_table(tables.sites, out / "sites.csv")
    write_table(tables.caps, out / "caps.csv")
    optional = (("storage.csv", tables.storage), ("purchases.csv", tables.purchases),
                ("storage_plan.csv", tables.storage_plan))  # fmt: skip
    (out / "storage_plan.csv").unlink(missing_ok=True)  # an older plan's, when rewritten
    for name, table in optional:
        if table is not None:
            write_table(table, out / name)
    for name, plan in tables.plans.items():
        write_table(plan, out / f"plan-{name}.csv")
    write_table(tables.plan, out / "plan.csv")
    write_table(site_load, out / "site_load.csv")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    (out / "manifest.json").write_text(tables.manifest.to_json())
    return out


def read_plan_dir(directory: str | Path) -> PlanTables:
    """Read and check a plan directory; raises :class:`PlanDirError` naming the file at fault."""
    root = Path(directory)
    manifest_path = root / "manifest.json"
    if not root.is_dir():
        raise PlanDirError(f"{root}: no such directory; make one with `greensched plan --out DIR`")
    if not manifest_path.exists():
        raise PlanDirError(
            f"{root}: not a plan directory (no manifest.json); make one with "
            "`greensched plan --out DIR`"
        )
    manifest = Manifest.from_json(manifest_path.read_text(encoding="utf-8"), str(manifest_path))
    try:
        actual_path = root / "supply_actual.csv"
        plans = {
            name: read_table(PLAN, root / f"plan-{name}.csv")
            for name in (manifest.policy, *manifest.compared)
        }
        tables = PlanTables(
            manifest=manifest,
            forecast=read_table(SUPPLY, root / "supply.csv"),
            actual=read_table(SUPPLY, actual_path) if actual_path.exists() else None,
            jobs=read_table(JOBS, root / "jobs.csv"),
            plans=plans,
            sites=read_table(SITES, root / "sites.csv"),
            caps=read_table(CAPS, root / "caps.csv"),
            storage=_optional(STORAGE_UNITS, root / "storage.csv"),
            purchases=_optional(GREEN_PURCHASES, root / "purchases.csv"),
            storage_plan=_optional(STORAGE_PLAN, root / "storage_plan.csv"),
        )
    except TableError as error:
        raise PlanDirError(str(error)) from None
    _check_consistent(root, tables)
    return tables


def _optional(schema: Schema, path: Path) -> pd.DataFrame | None:
    """The table at ``path`` when the directory has it (older directories do not)."""
    return read_table(schema, path) if path.exists() else None


def _check_consistent(root: Path, tables: PlanTables) -> None:
    """Sites and times of every table agree with the manifest."""
    manifest = tables.manifest
    known = set(manifest.sites)
    if set(tables.sites["site"]) != known:
        raise PlanDirError(
            f"{root / 'sites.csv'}: sites {', '.join(sorted(tables.sites['site']))} differ from "
            f"the manifest's {', '.join(manifest.sites)}"
        )
    start, end = manifest.day_start, manifest.day_end
    for name, frame in [(f"plan-{p}.csv", plan) for p, plan in tables.plans.items()]:
        outside = ~frame["site"].isin(known) | (frame["time"] < start) | (frame["time"] >= end)
        if outside.any():
            row = frame[outside].iloc[0]
            raise PlanDirError(
                f"{root / name}: row ({row['job_id']}, {row['site']}, {row['time']}) is outside "
                f"the manifest's sites or day {start} to {end}"
            )
    unknown = sorted(set(tables.plan["job_id"]) - set(tables.jobs["job_id"]))
    if unknown:
        raise PlanDirError(
            f"{root / 'plan.csv'}: job(s) {', '.join(unknown[:5])} are not in jobs.csv"
        )


@dataclass
class RunReport:
    """What a run did: per site and slot (:data:`RUN`), per job (:data:`RUN_JOBS`), the
    runner's task attempts, events, totals (``planned`` and ``actual``), the wall time [s] and
    the work that completed as a plan table (``executed``)."""

    site_slots: pd.DataFrame
    jobs: pd.DataFrame
    chunks: pd.DataFrame
    events: pd.DataFrame
    totals: dict[str, dict[str, float]]
    slot_minutes: int
    wall_s: float
    settings: dict[str, object] = field(default_factory=dict)
    executed: pd.DataFrame | None = None  # the work that completed, as a plan table
    # how storage ran as walked: a scheduler.storage.StorageGuide, None for the storage rule
    # (typed loosely: the contracts import nothing else of the project)
    storage_guide: object | None = None

    @property
    def statuses(self) -> dict[str, str]:
        """Status by job id."""
        return dict(zip(self.jobs["job_id"], self.jobs["status"], strict=True))


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def write_run_report(directory: str | Path, report: RunReport) -> Path:
    """Write ``run.csv``, ``run_jobs.csv`` and ``run_report.json`` into ``directory``."""
    out = Path(directory)
    write_table(RUN.canonical(report.site_slots), out / "run.csv")
    write_table(RUN_JOBS.canonical(report.jobs), out / "run_jobs.csv")
    body = {
        "slot_minutes": report.slot_minutes,
        "wall_s": report.wall_s,
        "settings": report.settings,
        "totals": report.totals,
        "events": _records(report.events),
        "chunks": _records(report.chunks),
    }
    path = out / "run_report.json"
    path.write_text(json.dumps(body, indent=1, default=str), encoding="utf-8")
    return path


def last_run_gpus(directory: str | Path, sites: Sequence[str]) -> tuple[float, ...]:
    """Each site's GPUs busy in the last slot that ran in ``directory`` (its ``run.csv``), in
    ``sites`` order: whose load the next day ramps from (whole GPUs, as the ramp rules count
    them; ``load_mw`` is what a job finishing inside the slot drew)."""
    return _last_run(directory, sites, "actual_gpus")


def last_run_soc_mwh(directory: str | Path, sites: Sequence[str]) -> tuple[float, ...]:
    """Each site's stored energy after the last slot that ran in ``directory`` [MWh], in
    ``sites`` order: what its storage starts the next day with (0 from a ``run.csv`` written
    before storage existed)."""
    return _last_run(directory, sites, "soc_mwh")


def _last_run(directory: str | Path, sites: Sequence[str], column: str) -> tuple[float, ...]:
    """``column`` of each site in the last slot of ``directory``'s ``run.csv``."""
    path = Path(directory) / "run.csv"
    if not path.is_file():
        raise PlanDirError(f"{path}: not found; the day has not run (dispatch it first)")
    run = read_table(RUN, path)
    if run.empty:
        raise PlanDirError(f"{path}: no slot has run")
    last = run[run["time"] == run["time"].max()].set_index("site")[column]
    if set(last.index) != set(sites):
        raise PlanDirError(
            f"{path}: ran sites {', '.join(sorted(last.index))}, not {', '.join(sites)}"
        )
    return tuple(float(last[site]) for site in sites)
