"""SQLite access: one connection, one worker thread at a time, numbered migrations.

Every call goes through :meth:`Database.run`, which hands a function to
``trio.to_thread`` with a private ``CapacityLimiter(1)``: the event loop never
blocks on SQLite, and the connection is never used by two threads at once.
Calls are not abandoned on cancellation, so a write that started finishes (and
is committed) before its caller sees the cancellation.

Durability: WAL journal with ``synchronous=FULL``: a write is acknowledged only
after it reached the disk, so it survives a SIGKILL of the server and a power
cut.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import attrs
import structlog
import trio

from toru.migrations import MIGRATIONS, Migration

T = TypeVar("T")

log = structlog.get_logger("toru.db")

BUSY_TIMEOUT_MS = 5000


class DatabaseError(Exception):
    """The database cannot be used as it is; the message says why and what to do."""


def connect(path: Path) -> sqlite3.Connection:
    """Open *path* with Toru's pragmas; autocommit mode, transactions are explicit."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.row_factory = sqlite3.Row
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode.lower() != "wal":
        conn.close()
        raise DatabaseError(f"{path}: cannot switch SQLite to WAL mode (got {mode!r})")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply every migration newer than the database; return the versions applied.

    Idempotent: a database already at the newest version is left untouched.
    Refuses a database written by a newer Toru rather than guessing.
    """
    known = max((m.version for m in migrations), default=0)
    current = schema_version(conn)
    if current > known:
        raise DatabaseError(
            f"the database is at schema version {current}, newer than this Toru knows "
            f"({known}); run the newer Toru or restore a backup of the data directory"
        )
    applied = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version <= current:
            continue
        try:
            conn.execute("BEGIN IMMEDIATE")
            # executescript would commit first; run statement by statement instead.
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise DatabaseError(
                f"migration {migration.version} ({migration.name}) failed: {exc}"
            ) from exc
        applied.append(migration.version)
    return applied


def _statements(script: str) -> list[str]:
    """Split a migration script into statements at each ``;`` that ends one.

    ``sqlite3.complete_statement`` knows when a ``;`` is inside a string
    literal or a trigger body, so those are not split.
    """
    statements, pending = [], ""
    for piece in script.split(";"):
        pending += piece
        if sqlite3.complete_statement(pending + ";"):
            if pending.strip():
                statements.append(pending.strip() + ";")
            pending = ""
        else:
            pending += ";"
    if pending.strip():
        statements.append(pending.strip())
    return statements


def ensure_instance_id(conn: sqlite3.Connection) -> str:
    """Return this installation's id, generating and storing it the first time."""
    conn.execute(
        "INSERT OR IGNORE INTO settings (key, value, updated_at) VALUES ('instance_id', ?, ?)",
        (secrets.token_hex(16), time.time()),
    )
    row = conn.execute("SELECT value FROM settings WHERE key = 'instance_id'").fetchone()
    return str(row[0])


@attrs.define(eq=False)
class Database:
    """Toru's SQLite database; use :meth:`open` to get one."""

    path: Path
    _conn: sqlite3.Connection
    _limiter: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(1))

    @classmethod
    @asynccontextmanager
    async def open(
        cls, path: Path, migrations: Sequence[Migration] = MIGRATIONS
    ) -> AsyncIterator[Database]:
        """Open (creating if needed) and migrate the database at *path*; close it on exit."""
        try:
            conn = await trio.to_thread.run_sync(connect, path)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open the database {path}: {exc}") from exc
        db = cls(path, conn)
        try:
            applied = await db.run(lambda c: migrate(c, migrations))
            if applied:
                log.info("database migrated", path=str(path), versions=applied)
            yield db
        finally:
            with trio.move_on_after(10, shield=True):
                await trio.to_thread.run_sync(conn.close, limiter=db._limiter)

    async def run(
        self, fn: Callable[[sqlite3.Connection], T], *, abandon_on_cancel: bool = False
    ) -> T:
        """Run ``fn(connection)`` in a worker thread, one call at a time.

        With *abandon_on_cancel*, a cancelled caller returns at once while the call
        finishes in its thread (it keeps its turn: later calls still wait for it).
        For bookkeeping writes that must never hold up the one who makes them (a
        plugin's lifecycle event while its process is being stopped).
        """
        return await trio.to_thread.run_sync(
            fn, self._conn, limiter=self._limiter, abandon_on_cancel=abandon_on_cancel
        )

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in one transaction: committed, or rolled back on error."""

        def in_transaction(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (I/O error, full disk, OR ROLLBACK);
                # a second ROLLBACK would hide the real error behind "no transaction".
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return await self.run(in_transaction)
