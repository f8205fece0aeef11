"""The SQLite layer on real files: pragmas, migrations, instance id, transactions, threading."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from toru.db import BUSY_TIMEOUT_MS, Database, DatabaseError, ensure_instance_id, migrate
from toru.migrations import MIGRATIONS, Migration

#: The current schema version, and the number a test's synthetic migration takes.
CURRENT = MIGRATIONS[-1].version
NEXT = CURRENT + 1
NOTES = Migration(
    NEXT,
    "notes",
    """
    CREATE TABLE notes (
        id    INTEGER PRIMARY KEY,
        body  TEXT NOT NULL
    );
    INSERT INTO notes (body) VALUES ('first note');
    """,
)


def db_path(tmp_path: Path) -> Path:
    return tmp_path / "toru.db"


async def query(db: Database, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return await db.run(lambda conn: [tuple(row) for row in conn.execute(sql, params)])


async def tables(db: Database) -> set[str]:
    rows = await query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")
    return {name for (name,) in rows}


async def put_setting(db: Database, key: str, value: str) -> None:
    await db.run(
        lambda conn: conn.execute(
            "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, 0)", (key, value)
        )
    )


async def test_connection_pragmas(tmp_path: Path) -> None:
    """The connection uses WAL, enforces foreign keys, waits when busy and syncs fully."""
    async with Database.open(db_path(tmp_path)) as db:
        assert await query(db, "PRAGMA journal_mode") == [("wal",)]
        assert await query(db, "PRAGMA foreign_keys") == [(1,)]
        assert await query(db, "PRAGMA busy_timeout") == [(BUSY_TIMEOUT_MS,)]
        assert BUSY_TIMEOUT_MS > 0
        assert await query(db, "PRAGMA synchronous") == [(2,)]


async def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    """A session pointing at a user that does not exist is rejected by SQLite."""
    async with Database.open(db_path(tmp_path)) as db:
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            await db.run(
                lambda conn: conn.execute(
                    "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)"
                    " VALUES ('x', 999, 0, 1)"
                )
            )


async def test_new_database_is_migrated_and_recorded(tmp_path: Path) -> None:
    """A fresh file gets every migration, each recorded in schema_migrations."""
    async with Database.open(db_path(tmp_path)) as db:
        recorded = await query(db, "SELECT version, name FROM schema_migrations")
        assert recorded == [(m.version, m.name) for m in MIGRATIONS]
        assert {"settings", "users", "sessions", "login_history"} <= await tables(db)


async def test_opening_twice_is_idempotent(tmp_path: Path) -> None:
    """Re-opening applies nothing and keeps the data written before."""
    async with Database.open(db_path(tmp_path)) as db:
        await put_setting(db, "kept", "yes")
        first = await query(db, "SELECT * FROM schema_migrations")

    async with Database.open(db_path(tmp_path)) as db:
        assert await db.run(migrate) == []
        assert await query(db, "SELECT * FROM schema_migrations") == first
        assert await query(db, "SELECT value FROM settings WHERE key = 'kept'") == [("yes",)]


async def test_existing_database_gets_new_migration(tmp_path: Path) -> None:
    """A database at the current version gets a newer migration, with its data intact."""
    async with Database.open(db_path(tmp_path)) as db:
        await put_setting(db, "kept", "yes")
        assert await query(db, "SELECT max(version) FROM schema_migrations") == [(CURRENT,)]

    async with Database.open(db_path(tmp_path), [*MIGRATIONS, NOTES]) as db:
        versions = await query(db, "SELECT version, name FROM schema_migrations ORDER BY version")
        assert versions == [*((m.version, m.name) for m in MIGRATIONS), (NEXT, "notes")]
        assert await query(db, "SELECT body FROM notes") == [("first note",)]
        assert await query(db, "SELECT value FROM settings WHERE key = 'kept'") == [("yes",)]


async def test_failing_migration_rolls_back_completely(tmp_path: Path) -> None:
    """A migration that fails half-way leaves no trace and the version unchanged."""
    broken = Migration(
        NEXT,
        "half done",
        """
        CREATE TABLE half (x INTEGER);
        INSERT INTO settings (key, value, updated_at) VALUES ('from-broken', 'x', 0);
        INSERT INTO no_such_table VALUES (1);
        """,
    )
    async with Database.open(db_path(tmp_path)) as db:
        await put_setting(db, "kept", "yes")

    with pytest.raises(
        DatabaseError, match=rf"^migration {NEXT} \(half done\) failed: .*no_such_table"
    ):
        async with Database.open(db_path(tmp_path), [*MIGRATIONS, broken]):
            pytest.fail("a database whose migration failed must not be handed out")

    async with Database.open(db_path(tmp_path)) as db:
        assert "half" not in await tables(db)
        assert await query(db, "SELECT max(version) FROM schema_migrations") == [(CURRENT,)]
        assert await query(db, "SELECT key FROM settings") == [("kept",)]


async def test_newer_database_is_refused(tmp_path: Path) -> None:
    """A database written by a newer Toru (higher schema version) is refused, not guessed at."""
    async with Database.open(db_path(tmp_path), [*MIGRATIONS, NOTES]):
        pass

    with pytest.raises(
        DatabaseError, match=rf"schema version {NEXT}, newer than this Toru knows \({CURRENT}\)"
    ):
        async with Database.open(db_path(tmp_path)):
            pytest.fail("a database from a newer Toru must not be handed out")


async def test_unopenable_path_raises_database_error(tmp_path: Path) -> None:
    """A database path inside a missing directory gives a DatabaseError naming the path."""
    path = tmp_path / "missing" / "toru.db"
    with pytest.raises(DatabaseError, match=re.escape(str(path))):
        async with Database.open(path):
            pytest.fail("an unopenable database must not be handed out")


async def test_instance_id_is_stable(tmp_path: Path) -> None:
    """The instance id is 32 hex characters and stays the same across calls and re-opens."""
    async with Database.open(db_path(tmp_path)) as db:
        first = await db.run(ensure_instance_id)
        assert await db.run(ensure_instance_id) == first
    assert re.fullmatch(r"[0-9a-f]{32}", first)

    async with Database.open(db_path(tmp_path)) as db:
        assert await db.run(ensure_instance_id) == first


async def test_instance_ids_differ_between_installations(tmp_path: Path) -> None:
    """Two separate databases get different instance ids."""
    async with Database.open(tmp_path / "a.db") as a, Database.open(tmp_path / "b.db") as b:
        assert await a.run(ensure_instance_id) != await b.run(ensure_instance_id)


async def test_transaction_commits(tmp_path: Path) -> None:
    """A transaction whose function returns is committed and its result passed back."""

    def insert(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO settings (key, value, updated_at) VALUES ('a', '1', 0)")
        return "done"

    async with Database.open(db_path(tmp_path)) as db:
        assert await db.transaction(insert) == "done"
    async with Database.open(db_path(tmp_path)) as db:
        assert await query(db, "SELECT key, value FROM settings") == [("a", "1")]


async def test_transaction_rolls_back_on_exception(tmp_path: Path) -> None:
    """An exception inside a transaction undoes its writes and reaches the caller."""

    def insert_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO settings (key, value, updated_at) VALUES ('a', '1', 0)")
        raise RuntimeError("boom")

    async with Database.open(db_path(tmp_path)) as db:
        with pytest.raises(RuntimeError, match="boom"):
            await db.transaction(insert_then_fail)
        assert await query(db, "SELECT count(*) FROM settings") == [(0,)]
        assert not await db.run(lambda conn: conn.in_transaction)


async def test_calls_never_overlap(tmp_path: Path) -> None:
    """Many tasks calling db.run at once reach the connection one at a time."""
    lock = threading.Lock()
    active = peak = calls = 0

    def probe(conn: sqlite3.Connection) -> None:
        nonlocal active, peak, calls
        with lock:
            active += 1
            calls += 1
            peak = max(peak, active)
        # Hold the connection a little, as a slow query would, so any overlap shows.
        time.sleep(0.01)
        conn.execute("SELECT 1").fetchone()
        with lock:
            active -= 1

    async with Database.open(db_path(tmp_path)) as db, trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(db.run, probe)

    assert calls == 10
    assert peak == 1


async def test_cancelled_caller_write_still_completes(tmp_path: Path) -> None:
    """Cancelling the caller of a write in progress does not abandon it: the row is committed."""
    outcome: list[str] = []
    started = trio.Event()
    release = threading.Event()
    scope = trio.CancelScope()

    def slow_write(conn: sqlite3.Connection) -> None:
        trio.from_thread.run_sync(started.set)
        assert release.wait(timeout=10), "the test never released the write"
        conn.execute("INSERT INTO settings (key, value, updated_at) VALUES ('late', 'yes', 0)")

    async def writer(db: Database) -> None:
        with scope:
            await db.run(slow_write)
            outcome.append("write returned")
            # The caller sees the cancellation at its next checkpoint, after the write.
            await trio.lowlevel.checkpoint()
            outcome.append("cancellation missed")

    async with Database.open(db_path(tmp_path)) as db:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer, db)
                await started.wait()
                scope.cancel()
                release.set()
        assert outcome == ["write returned"]
        assert scope.cancelled_caught

    async with Database.open(db_path(tmp_path)) as db:
        assert await query(db, "SELECT value FROM settings WHERE key = 'late'") == [("yes",)]


async def test_failed_commit_rolls_back_and_connection_stays_usable(tmp_path: Path) -> None:
    """A transaction whose COMMIT fails is rolled back; the next transaction works."""

    def orphan_session(conn: sqlite3.Connection) -> None:
        # A deferred foreign-key violation surfaces at COMMIT, not at the INSERT.
        conn.execute("PRAGMA defer_foreign_keys = ON")
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)"
            " VALUES ('x', 999, 0, 1)"
        )

    def insert(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO settings (key, value, updated_at) VALUES ('after', '1', 0)")

    async with Database.open(db_path(tmp_path)) as db:
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            await db.transaction(orphan_session)
        assert not await db.run(lambda conn: conn.in_transaction)
        await db.transaction(insert)
    async with Database.open(db_path(tmp_path)) as db:
        assert await query(db, "SELECT count(*) FROM sessions") == [(0,)]
        assert await query(db, "SELECT key FROM settings") == [("after",)]


async def test_error_that_already_rolled_back_reaches_caller(tmp_path: Path) -> None:
    """When SQLite itself rolled the transaction back, the caller still gets the original error."""

    def conflicting_insert(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT OR ROLLBACK INTO settings (key, value, updated_at) VALUES ('k', 2, 0)")

    async with Database.open(db_path(tmp_path)) as db:
        await put_setting(db, "k", "1")
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            await db.transaction(conflicting_insert)


async def test_migration_with_statements_on_one_line(tmp_path: Path) -> None:
    """A migration may put several statements on one line; each is applied."""
    one_line = Migration(NEXT, "one line", "CREATE TABLE a (x); CREATE TABLE b (y);")
    async with Database.open(db_path(tmp_path), [*MIGRATIONS, one_line]) as db:
        assert {"a", "b"} <= await tables(db)
