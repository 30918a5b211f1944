"""Durable state of the load-cap service in one SQLite file.

Tables: ``events`` (current modification and status per event id), ``event_versions`` (every
accepted modification with its content hash and first answer), ``caps`` (the caps in force, one
row per event, site and interval: the design's caps table), ``caps_archive`` (the caps of events
that ended, moved out of ``caps`` by :meth:`Store.archive`), ``plan_versions``, ``audit``,
``measurements`` (what each site measured per slot, when it came and from whom: one row per
site and slot, the first report kept) and ``loop_days``.
An archived event keeps its ``events`` and ``event_versions`` rows (it is still listed).

The database, its WAL and shared-memory files and its lock file are readable and writable by
the service's user only (mode 0600; an older, wider file is narrowed at start-up): they hold
every coordinator's events and the audit trail.

The schema is versioned (``PRAGMA user_version``): :data:`MIGRATIONS` are applied in order, each
in one transaction with its version number, when the service opens a database older than
:data:`SCHEMA_VERSION` (a copy of a database that holds data is kept beside it first); a
database of a newer version is refused, never guessed at. Version 1 is the schema of the first
release; its databases carry version 0 and gain the stamp without a change. To change the
schema, append a migration; never edit one that has shipped.

The database runs in WAL mode with ``synchronous=FULL``: a transaction is on disk when
``COMMIT`` returns, so a cap is durable before the service acknowledges it. One connection is
shared by the server's threads under a lock; every write is one ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from scheduler.contracts import JOBS, UserError
from scheduler.drivers.service.events import CapEvent
from scheduler.measurements import Measurement
from scheduler.problem import LoadCap

__all__ = [
    "ACTIVE",
    "CANCELLED",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Cancellation",
    "LoopProgress",
    "MeasurementConflict",
    "PlanRecord",
    "Store",
    "StoredEvent",
    "StoredMeasurement",
    "Submission",
    "caps_in_database",
    "migrate",
]

log = logging.getLogger(__name__)

ACTIVE = "active"
CANCELLED = "cancelled"
_PRIVATE = 0o600  # owner read and write

_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    modification_number INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'cancelled')),
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS event_versions (
    event_id TEXT NOT NULL,
    modification_number INTEGER NOT NULL,
    content_sha256 TEXT NOT NULL,
    event_json TEXT NOT NULL,
    coordinator TEXT NOT NULL,
    received_at TEXT NOT NULL,
    answer_json TEXT NOT NULL,
    PRIMARY KEY (event_id, modification_number)
);
CREATE TABLE IF NOT EXISTS caps (
    event_id TEXT NOT NULL REFERENCES events (event_id),
    site TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    type TEXT NOT NULL,
    value_mw REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS caps_by_event ON caps (event_id);
CREATE TABLE IF NOT EXISTS caps_archive (
    event_id TEXT NOT NULL REFERENCES events (event_id),
    site TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    type TEXT NOT NULL,
    value_mw REAL NOT NULL,
    archived_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS caps_archive_by_event ON caps_archive (event_id);
CREATE TABLE IF NOT EXISTS plan_versions (
    version INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    replanned INTEGER NOT NULL,
    caps_in_force INTEGER NOT NULL,
    metrics_json TEXT NOT NULL,
    plan_parquet BLOB
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    coordinator TEXT NOT NULL,
    action TEXT NOT NULL,
    event_id TEXT NOT NULL,
    modification_number INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS measurements (
    site TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    pv_mw REAL NOT NULL,
    wind_mw REAL NOT NULL,
    load_mw REAL,
    received_ns INTEGER NOT NULL,
    reported_by TEXT NOT NULL,
    PRIMARY KEY (site, start_ns)
);
CREATE TABLE IF NOT EXISTS loop_days (
    day TEXT PRIMARY KEY,
    next_slot INTEGER NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0,
    carried_json TEXT NOT NULL,
    engine_json TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


MIGRATIONS: tuple[str, ...] = (_SCHEMA_1,)
"""The schema's migrations in order: ``MIGRATIONS[n - 1]`` takes a database to version ``n``."""
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(
    db: sqlite3.Connection, path: Path, migrations: Sequence[str] = MIGRATIONS
) -> tuple[int, int]:
    """Bring the database ``db`` (the file ``path``) to ``len(migrations)``; return the versions
    before and after. Each migration commits with its version or not at all; a database that
    holds data is first copied to ``PATH.schemaN.bak`` (mode 0600). Raises
    :class:`~scheduler.contracts.UserError` for a database of a newer version."""
    before = int(db.execute("PRAGMA user_version").fetchone()[0])
    latest = len(migrations)
    if before > latest:
        raise UserError(
            f"--db {path}: written by a newer greensched (schema version {before}; this one "
            f"reads up to {latest}); run the newer release or give another --db"
        )
    if before == latest:
        return before, latest
    if db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]:
        backup = Path(f"{path}.schema{before}.bak")
        os.close(os.open(backup, os.O_RDWR | os.O_CREAT | os.O_TRUNC, _PRIVATE))
        with closing(sqlite3.connect(backup)) as copy:
            db.backup(copy)
        log.warning("store %s: schema %d -> %d (a copy is in %s)", path, before, latest, backup)
    for number in range(before + 1, latest + 1):
        try:
            db.executescript(
                f"BEGIN IMMEDIATE;\n{migrations[number - 1]}\nPRAGMA user_version = {number};\n"
                "COMMIT;"
            )
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    return before, latest


@dataclass(frozen=True)
class StoredEvent:
    """An event's current modification as stored, with the answer given to it."""

    event: CapEvent
    status: str  # ACTIVE or CANCELLED
    coordinator: str  # who submitted this modification
    received_at: pd.Timestamp
    answer: dict  # the first reply to this modification (see planner.SubmitAnswer.to_dict)


class MeasurementConflict(Exception):
    """A measurement of a site and slot already stored with other values (gRPC
    ALREADY_EXISTS); nothing of its batch is stored."""


@dataclass(frozen=True)
class StoredMeasurement:
    """A measurement as stored: when it came (UTC) and who reported it."""

    measurement: Measurement
    received_at: pd.Timestamp
    reported_by: str


@dataclass(frozen=True)
class PlanRecord:
    """A plan version to store; ``plan`` is ``None`` when the previous plan was kept."""

    version: int
    created_at: pd.Timestamp
    reason: str
    replanned: bool
    caps_in_force: int
    metrics: dict
    plan: pd.DataFrame | None


@dataclass(frozen=True)
class Submission:
    """An accepted modification to store, with its caps and the answer given to it."""

    event: CapEvent
    caps: Sequence[LoadCap]
    coordinator: str
    received_at: pd.Timestamp
    answer: dict  # see planner.SubmitAnswer.to_dict


@dataclass(frozen=True)
class Cancellation:
    """A cancellation to store: the event's caps leave the caps in force."""

    event_id: str
    modification_number: int  # the event's current modification
    coordinator: str
    at: pd.Timestamp
    reason: str


def caps_in_database(path: str | Path) -> list[LoadCap]:
    """The caps in force in a service database, read without writing to it (a cron run beside
    a running service). Raises :class:`~scheduler.contracts.UserError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--caps-db {path}: no such file (the database of `greensched serve`)")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise UserError(
                    f"--caps-db {path}: written by a newer greensched (schema version {version}; "
                    f"this one reads up to {SCHEMA_VERSION})"
                )
            rows = db.execute(_CAPS_QUERY).fetchall()
    except sqlite3.DatabaseError as error:
        raise UserError(f"--caps-db {path}: not a greensched database: {error}") from None
    return [_cap(row) for row in rows]


@dataclass(frozen=True)
class LoopProgress:
    """How far the control loop got on ``day`` (see :meth:`Store.save_loop_slot`)."""

    day: str
    next_slot: int
    finished: bool
    carried: pd.DataFrame | None
    engine_state: dict


class Store:
    """The service's SQLite database; see the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._writer = FileLock(f"{self.path}.lock", mode=_PRIVATE)  # one service per database
        try:
            self._writer.acquire(timeout=0)
        except Timeout:
            raise UserError(
                f"--db {self.path}: in use by another `greensched serve` (it holds "
                f"{self.path}.lock); one service per database, or give another --db"
            ) from None
        except OSError as error:
            raise UserError(f"--db {self.path}: cannot open: {error.strerror}") from None
        try:  # SQLite gives the WAL and shared-memory files the database file's mode
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, _PRIVATE))
        except OSError as error:
            self._writer.release()
            raise UserError(f"--db {self.path}: cannot open: {error.strerror}") from None
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._open()
        except (UserError, sqlite3.DatabaseError) as error:
            self.close()
            if isinstance(error, UserError):
                raise
            raise UserError(f"--db {self.path}: not a greensched database: {error}") from None
        log.info("store %s: schema %d, WAL, synchronous=FULL", self.path, SCHEMA_VERSION)

    def _open(self) -> None:
        """The schema up to date (a newer one refused before anything is written), WAL, durable
        commits, the files private."""
        migrate(self._db, self.path)
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
        for suffix in ("", "-wal", "-shm", ".lock"):
            if (file := Path(f"{self.path}{suffix}")).exists():
                file.chmod(_PRIVATE)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._writer.release()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- reads -------------------------------------------------------------------------------
    def event(self, event_id: str) -> StoredEvent | None:
        """The current modification of ``event_id``, or ``None``."""
        with self._lock:
            row = self._db.execute(_EVENT_QUERY + " WHERE e.event_id = ?", (event_id,)).fetchone()
        return _stored_event(row) if row else None

    def events(self, include_cancelled: bool = False) -> list[StoredEvent]:
        """Every event's current modification, oldest first."""
        where = "" if include_cancelled else f" WHERE e.status = '{ACTIVE}'"
        with self._lock:
            rows = self._db.execute(_EVENT_QUERY + where + " ORDER BY v.received_at").fetchall()
        return [_stored_event(row) for row in rows]

    def caps(self) -> list[tuple[str, LoadCap]]:
        """Every cap in force as ``(event_id, cap)``."""
        with self._lock:
            rows = self._db.execute(_CAPS_QUERY).fetchall()
        return [(cap.event_id, cap) for cap in map(_cap, rows)]

    def last_plan_version(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(version) FROM plan_versions").fetchone()
        return int(row[0] or 0)

    def count(self, table: str) -> int:
        """Rows in ``table`` (one of the schema's tables)."""
        if table not in (
            "events",
            "event_versions",
            "caps",
            "caps_archive",
            "plan_versions",
            "audit",
        ):
            raise ValueError(f"unknown table {table!r}")
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def audit_log(self) -> list[dict]:
        with self._lock:
            cursor = self._db.execute("SELECT * FROM audit ORDER BY id")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # --- writes ------------------------------------------------------------------------------
    def save_changes(
        self, changes: Sequence[Submission | Cancellation], plan: PlanRecord | None
    ) -> None:
        """Store accepted modifications and cancellations (each with its audit entry) and the
        plan made under them, in one transaction, committed (and on disk) when this returns."""
        with self._transaction() as db:
            for change in changes:
                if isinstance(change, Submission):
                    _save_submission(db, change)
                else:
                    _save_cancellation(db, change)
            if plan is not None:
                _insert_plan(db, plan)

    def archive(self, event_ids: Sequence[str], at: pd.Timestamp) -> None:
        """Move the caps of ``event_ids`` (events that ended) from ``caps`` to
        ``caps_archive``, in one transaction."""
        marks = ", ".join("?" * len(event_ids))
        with self._transaction() as db:
            db.execute(
                "INSERT INTO caps_archive SELECT event_id, site, start_ns, end_ns, type, "
                f"value_mw, ? FROM caps WHERE event_id IN ({marks}) ORDER BY rowid",
                (at.isoformat(), *event_ids),
            )
            db.execute(f"DELETE FROM caps WHERE event_id IN ({marks})", tuple(event_ids))

    def save_plan(self, plan: PlanRecord) -> None:
        with self._transaction() as db:
            _insert_plan(db, plan)

    # --- measurements ----------------------------------------------------------------------
    def save_measurements(
        self, measurements: Sequence[Measurement], reported_by: str, received_at: pd.Timestamp
    ) -> tuple[int, int]:
        """Store a batch in one transaction (on disk when this returns): ``(stored, replayed)``
        counts. A measurement of a site and slot already stored is a replay when its values are
        the same; with other values it raises :class:`MeasurementConflict` and nothing of the
        batch is stored (the first report of a slot stands)."""
        stored = replayed = 0
        with self._transaction() as db:
            for k, m in enumerate(measurements):
                row = db.execute(
                    "SELECT pv_mw, wind_mw, load_mw, reported_by FROM measurements "
                    "WHERE site = ? AND start_ns = ?",
                    (m.site, m.time.value),
                ).fetchone()
                if row is not None:
                    before = Measurement(m.site, m.time, row[0], row[1], row[2])
                    if not before.same_values(m):
                        raise MeasurementConflict(
                            f"measurements[{k}]: site {m.site!r} slot {m.time.isoformat()} was "
                            f"reported already by {row[3]!r} (pv_mw {row[0]:g}, wind_mw "
                            f"{row[1]:g}); a slot keeps its first measurement"
                        )
                    replayed += 1
                    continue
                db.execute(
                    "INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (m.site, m.time.value, m.pv_mw, m.wind_mw, m.load_mw, received_at.value,
                     reported_by),
                )  # fmt: skip
                stored += 1
        return stored, replayed

    def measurements(
        self, start: pd.Timestamp, end: pd.Timestamp, sites: Sequence[str] | None = None
    ) -> list[StoredMeasurement]:
        """Measurements of slots starting in ``[start, end)`` (of ``sites``; all when
        ``None``), by slot then site."""
        query = (
            "SELECT site, start_ns, pv_mw, wind_mw, load_mw, received_ns, reported_by FROM "
            "measurements WHERE start_ns >= ? AND start_ns < ?"
        )
        with self._lock:
            rows = self._db.execute(
                query + " ORDER BY start_ns, site", (start.value, end.value)
            ).fetchall()
        wanted = None if sites is None else set(sites)
        return [
            StoredMeasurement(
                Measurement(site, pd.Timestamp(start_ns, tz="UTC"), pv, wind, load),
                pd.Timestamp(received_ns, tz="UTC"),
                reported_by,
            )
            for site, start_ns, pv, wind, load, received_ns, reported_by in rows
            if wanted is None or site in wanted
        ]

    # --- the control loop's progress --------------------------------------------------------
    def save_loop_slot(
        self,
        day: str,
        next_slot: int,
        carried: pd.DataFrame | None,
        engine_state: dict,
        finished: bool = False,
    ) -> None:
        """Where the loop stands on ``day`` after a slot, in one transaction: the first slot
        not yet run, the jobs carried into the day, the settlement engine's state."""
        carried_json = "" if carried is None else carried.to_json(orient="split", date_format="iso")
        with self._transaction() as db:
            db.execute(
                "INSERT INTO loop_days (day, next_slot, finished, carried_json, engine_json, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (day) DO UPDATE SET "
                "next_slot = excluded.next_slot, finished = excluded.finished, "
                "carried_json = excluded.carried_json, engine_json = excluded.engine_json, "
                "updated_at = excluded.updated_at",
                (day, next_slot, int(finished), carried_json, json.dumps(engine_state),
                 pd.Timestamp.now(tz="UTC").isoformat()),
            )  # fmt: skip

    def loop_progress(self) -> LoopProgress | None:
        """The latest day the loop ran, and how far (``None`` before the first slot)."""
        with self._lock:
            row = self._db.execute(
                "SELECT day, next_slot, finished, carried_json, engine_json FROM loop_days "
                "ORDER BY day DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        day, next_slot, finished, carried_json, engine_json = row
        carried = (
            JOBS.canonical(
                pd.read_json(
                    io.StringIO(carried_json), orient="split", convert_dates=False, dtype=False
                )
            )
            if carried_json
            else None
        )
        return LoopProgress(day, int(next_slot), bool(finished), carried, json.loads(engine_json))


_EVENT_QUERY = (
    "SELECT v.event_json, e.status, v.coordinator, v.received_at, v.answer_json "
    "FROM events e JOIN event_versions v "
    "ON v.event_id = e.event_id AND v.modification_number = e.modification_number"
)


_CAPS_QUERY = "SELECT event_id, site, start_ns, end_ns, type, value_mw FROM caps ORDER BY rowid"


def _cap(row: tuple) -> LoadCap:
    """A cap in force from a row of :data:`_CAPS_QUERY`, with the id of its event."""
    event_id, site, start, end, kind, value = row
    start, end = (pd.Timestamp(ns, tz="UTC") for ns in (start, end))
    return LoadCap(site, start, end, kind, value, event_id)


def _stored_event(row: tuple) -> StoredEvent:
    event_json, status, coordinator, received_at, answer_json = row
    return StoredEvent(
        CapEvent.from_json(event_json),
        status,
        coordinator,
        pd.Timestamp(received_at),
        json.loads(answer_json),
    )


def _save_submission(db: sqlite3.Connection, change: Submission) -> None:
    event, at = change.event, change.received_at.isoformat()
    db.execute(
        "INSERT INTO events (event_id, modification_number, status, updated_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO UPDATE SET "
        "modification_number = excluded.modification_number, status = excluded.status, "
        "updated_at = excluded.updated_at",
        (event.event_id, event.modification_number, ACTIVE, at),
    )
    db.execute(
        "INSERT INTO event_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            event.event_id,
            event.modification_number,
            event.content_sha256,
            event.to_json(),
            change.coordinator,
            at,
            json.dumps(change.answer),
        ),
    )
    _drop_caps(db, event.event_id)
    db.executemany(
        "INSERT INTO caps VALUES (?, ?, ?, ?, ?, ?)",
        [
            (event.event_id, c.site, c.start.value, c.end.value, c.type, c.value_mw)
            for c in change.caps
        ],
    )
    _audit(
        db, at, change.coordinator, "submit", event.event_id, event.modification_number,
        change.answer,
    )  # fmt: skip


def _save_cancellation(db: sqlite3.Connection, change: Cancellation) -> None:
    at = change.at.isoformat()
    db.execute(
        "UPDATE events SET status = ?, updated_at = ? WHERE event_id = ?",
        (CANCELLED, at, change.event_id),
    )
    _drop_caps(db, change.event_id)
    _audit(
        db, at, change.coordinator, "cancel", change.event_id, change.modification_number,
        {"reason": change.reason},
    )  # fmt: skip


def _drop_caps(db: sqlite3.Connection, event_id: str) -> None:
    """An event's caps leave both the caps in force and the archive (a newer modification or a
    cancellation replaces them)."""
    db.execute("DELETE FROM caps WHERE event_id = ?", (event_id,))
    db.execute("DELETE FROM caps_archive WHERE event_id = ?", (event_id,))


def _insert_plan(db: sqlite3.Connection, plan: PlanRecord) -> None:
    blob = None
    if plan.plan is not None:
        buffer = io.BytesIO()
        # on the path of every batch's reply: LZ4 takes about half zstd's time on a 1,000-job
        # plan, leaving out column statistics (nothing queries the blob) a quarter less, and
        # one thread spares starting a pool of threads per plan to convert 4 columns
        table = pa.Table.from_pandas(plan.plan, preserve_index=False, nthreads=1)
        pq.write_table(table, buffer, compression="lz4", write_statistics=False)
        blob = buffer.getvalue()
    db.execute(
        "INSERT INTO plan_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            plan.version,
            plan.created_at.isoformat(),
            plan.reason,
            int(plan.replanned),
            plan.caps_in_force,
            json.dumps(plan.metrics),
            blob,
        ),
    )


def _audit(
    db: sqlite3.Connection,
    at: str,
    coordinator: str,
    action: str,
    event_id: str,
    modification_number: int,
    detail: dict,
) -> None:
    db.execute(
        "INSERT INTO audit (at, coordinator, action, event_id, modification_number, detail) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (at, coordinator, action, event_id, modification_number, json.dumps(detail)),
    )
    log.info(
        "audit: %s %s event %s modification %d", coordinator, action, event_id, modification_number
    )
