"""The service database's schema is versioned: a database written by the release of
2026-12-07 (``data/store-2026-12-07.sqlite``, written by ``greensched serve`` with two cap
events, one cancelled, two measurements and a finished day) opens with everything in it; a
database of a newer schema is refused by the CLI in one message; a migration that fails leaves
the database as it was."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest

from scheduler.contracts import UserError
from scheduler.drivers.service.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Store,
    caps_in_database,
    migrate,
)
from tests.conftest import greensched

DAY_START = pd.Timestamp("2026-12-07T16:00Z")  # 2026-12-08 in Asia/Shanghai
RELEASED = Path(__file__).parent / "data" / "store-2026-12-07.sqlite"


def _copy(tmp_path: Path, name: str = "store.sqlite") -> Path:
    return Path(shutil.copy(RELEASED, tmp_path / name))


def _version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_a_database_of_the_first_release_opens_with_everything_in_it(tmp_path):
    path = _copy(tmp_path)
    assert _version(path) == 0  # the first release did not stamp a version
    store = Store(path)
    try:
        assert _version(path) == SCHEMA_VERSION
        events = {e.event.event_id: e.status for e in store.events(include_cancelled=True)}
        assert events == {"dr-evening": "active", "dr-cancelled": "cancelled"}
        [(event_id, cap)] = store.caps()
        assert (event_id, cap.site, cap.value_mw) == ("dr-evening", "qingyang", 3.0)
        assert cap.start == pd.Timestamp("2026-12-08T10:00Z")
        assert cap.end == pd.Timestamp("2026-12-08T12:00Z")
        assert store.last_plan_version() == 25
        assert [a["action"] for a in store.audit_log()] == ["submit", "submit", "cancel"]
        measured = {
            m.measurement.site: m.measurement
            for m in store.measurements(DAY_START, DAY_START + pd.Timedelta(days=1))
        }
        assert measured["qingyang"].wind_mw == 31.5 and measured["qingyang"].load_mw == 20.0
        assert measured["shantou"].time == pd.Timestamp("2026-12-07T17:00Z")
        progress = store.loop_progress()
        assert (progress.day, progress.next_slot, progress.finished) == ("2026-12-09", 0, False)
    finally:
        store.close()
    assert Path(f"{path}.schema0.bak").stat().st_mode & 0o777 == 0o600
    assert caps_in_database(path) == [cap]
    reopened = Store(path)  # at the latest version: nothing to migrate, no second copy
    reopened.close()
    assert sorted(p.name for p in tmp_path.glob("*.bak")) == ["store.sqlite.schema0.bak"]


def test_a_new_database_is_stamped_without_a_copy(tmp_path):
    Store(tmp_path / "new.sqlite").close()
    assert _version(tmp_path / "new.sqlite") == SCHEMA_VERSION
    assert not list(tmp_path.glob("*.bak"))


def test_a_database_of_a_newer_schema_is_refused_by_the_cli_and_left_alone(tmp_path):
    path = _copy(tmp_path)
    with closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = path.read_bytes()
    result = greensched(
        "serve", "--db", str(path), "--no-dispatch", "--listen", "127.0.0.1:0", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"written by a newer greensched (schema version {SCHEMA_VERSION + 1}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before
    with pytest.raises(UserError, match=r"--caps-db .*newer greensched"):
        caps_in_database(path)


def test_a_file_that_is_not_a_database_is_one_message(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not sqlite\n" * 100)
    result = greensched(
        "serve", "--db", str(path), "--no-dispatch", "--listen", "127.0.0.1:0", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert "not a greensched database" in result.stderr and "Traceback" not in result.stderr


def test_migrations_apply_in_order_and_a_failing_one_changes_nothing(tmp_path):
    path = _copy(tmp_path)
    later = (
        *MIGRATIONS,
        "ALTER TABLE measurements ADD COLUMN quality TEXT NOT NULL DEFAULT 'good';",
        "CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('a'); SELECT * FROM nowhere;",
    )
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        with pytest.raises(sqlite3.OperationalError, match="nowhere"):
            migrate(db, path, later)
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
        assert db.execute("SELECT DISTINCT quality FROM measurements").fetchall() == [("good",)]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "notes" not in tables  # the failed migration left nothing behind
        assert db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 2
        assert migrate(db, path, later[:-1]) == (len(MIGRATIONS) + 1, len(MIGRATIONS) + 1)


def test_serve_keeps_its_database_in_the_state_directory_not_where_it_was_started(tmp_path):
    """Without --db, serve's database is greensched.sqlite in the user's state directory (here
    XDG_STATE_HOME), made when missing; the directory it was started in gets nothing."""
    import os
    import signal
    import subprocess
    import sys
    import time

    work, state = tmp_path / "work", tmp_path / "state"
    work.mkdir()
    env = {**os.environ, "XDG_STATE_HOME": str(state)}
    env.pop("GREENSCHED_DB", None)
    db = state / "greensched" / "greensched.sqlite"
    command = [sys.executable, "-m", "scheduler.drivers", "serve", "--listen", "127.0.0.1:0",
               "--no-dispatch", "--out", str(tmp_path / "out")]  # fmt: skip
    process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not (db.exists() and _version(db) == SCHEMA_VERSION):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "serve made no database in the state directory"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert not list(work.iterdir())
