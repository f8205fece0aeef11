"""Per-plugin key-value storage in SQLite, for plugins (over their socket) and browsers.

Every operation is scoped to one plugin id, fixed by the caller's identity
(the runner that owns the connection, or the URL of the browser API): a plugin
cannot name another plugin's keys. Limits: keys of 1 to 256 bytes (UTF-8),
values up to 1 MiB, 10 000 keys per plugin. A ``set`` is acknowledged only
once it is on disk (``synchronous=FULL``), so it survives a SIGKILL of the
server. Values outlive plugin restarts, disable/enable and server restarts.

Calls that arrive while the database is busy are run together (:class:`Batcher`):
one trip to the database thread for all of them, and one transaction (one
commit, one flush) for all their writes. A single caller sees no difference;
concurrent callers (one plugin's tasks, several plugins, browsers) no longer
pay a thread trip and a commit each (docs/benchmarks.md, KV).

A full disk is not a bug: a plugin is told so in plain words (:data:`FULL_REPLY`),
and the browser API answers 507 (``toru.api.errors``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar, cast

import attrs
import trio

from toru.db import Database
from toru.plugins.connection import KvHandler
from toru.plugins.messages import KvReply, KvRequest

MAX_KEY_BYTES = 256
MAX_VALUE_BYTES = 1024 * 1024
MAX_KEYS = 10_000
LIST_LIMIT = MAX_KEYS
#: How long a cancelled caller still waits for its call already running in the database
#: thread (which cannot be abandoned): far above SQLite's 5 s busy timeout.
RUNNING_CALL_GRACE = 30.0

#: What a plugin is told when SQLite cannot write (SQLITE_FULL: the disk, or a page limit).
FULL_REPLY = (
    "Toru's storage is full (database or disk is full); nothing was changed: "
    "the server's operator must free disk space, then try again"
)

T = TypeVar("T")


def is_storage_full(error: BaseException) -> bool:
    """Whether *error* is SQLite saying it has no room to write (SQLITE_FULL)."""
    return isinstance(error, sqlite3.Error) and (
        getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        or "database or disk is full" in str(error).lower()
    )


class KvError(Exception):
    """A storage request was refused; the message says why (sent to the plugin or browser)."""


def _check_key(key: str) -> None:
    size = len(key.encode("utf-8"))
    if not 1 <= size <= MAX_KEY_BYTES:
        raise KvError(f"key must be 1 to {MAX_KEY_BYTES} bytes of UTF-8, got {size}")


@attrs.define(eq=False)
class _Call:
    fn: Callable[[sqlite3.Connection], Any]
    write: bool
    done: trio.Event = attrs.field(factory=trio.Event)
    result: Any = None
    error: BaseException | None = None
    ran: bool = False


def _run_batch(calls: list[_Call], conn: sqlite3.Connection) -> None:
    """Run *calls* in arrival order; their writes in one transaction, each in a savepoint.

    A call that fails is rolled back alone (its savepoint) and gets its error. If
    the transaction as a whole fails (the COMMIT: disk full, I/O error), nothing
    of it was stored and every call of the batch gets that error, reads included:
    they may have seen writes that are now undone.
    """
    try:
        if any(call.write for call in calls):
            _run_writes(calls, conn)
        else:
            for call in calls:
                try:
                    call.result = call.fn(conn)
                except Exception as exc:
                    call.error = exc
    finally:
        for call in calls:
            call.ran = True


def _run_writes(calls: list[_Call], conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for call in calls:
            conn.execute("SAVEPOINT kv_call")
            try:
                call.result = call.fn(conn)
            except Exception as exc:
                call.error = exc
                conn.execute("ROLLBACK TO kv_call")
            conn.execute("RELEASE kv_call")
        conn.execute("COMMIT")
    except Exception as exc:
        # SQLite may have rolled back already; a second ROLLBACK would hide the real error.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        for call in calls:
            if call.error is None or call.error is exc:
                call.error, call.result = exc, None


@attrs.define(eq=False)
class Batcher:
    """Runs the calls that queue up while one batch is in the database as the next batch.

    The first caller to find the database free takes every call waiting (its own
    included) to the database thread at once; the others wait for their result.
    Each call is acknowledged only after its batch is committed.
    """

    db: Database
    _waiting: list[_Call] = attrs.field(factory=list, init=False)
    _turn: trio.Lock = attrs.field(factory=trio.Lock, init=False)

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        call = _Call(fn, write)
        self._waiting.append(call)
        try:
            async with self._turn:
                if not call.done.is_set():
                    batch, self._waiting = self._waiting, []
                    try:
                        await self.db.run(partial(_run_batch, batch))
                    finally:
                        for queued in batch:
                            if not queued.ran:
                                queued.error = KvError("the storage call did not complete")
                            queued.done.set()
        except BaseException:
            if call in self._waiting:
                self._waiting.remove(call)  # never started: dropped, as if never made
            elif not call.done.is_set():
                # In another caller's batch, running: like Database.run, a started call
                # is not abandoned. Wait for it, then let the cancellation through.
                with trio.move_on_after(RUNNING_CALL_GRACE, shield=True):
                    await call.done.wait()
            raise
        if call.error is not None:
            raise call.error
        return cast(T, call.result)


@attrs.define(eq=False)
class KvStore:
    db: Database
    clock: Callable[[], float] = time.time
    _batcher: Batcher = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._batcher = Batcher(self.db)

    async def get(self, plugin_id: str, key: str) -> str | None:
        _check_key(key)
        row = await self._batcher.run(
            lambda conn: conn.execute(
                "SELECT value FROM plugin_kv WHERE plugin_id = ? AND key = ?", (plugin_id, key)
            ).fetchone(),
            write=False,
        )
        return None if row is None else str(row[0])

    async def set(self, plugin_id: str, key: str, value: str) -> None:
        _check_key(key)
        size = len(value.encode("utf-8"))
        if size > MAX_VALUE_BYTES:
            raise KvError(f"value of {size} bytes exceeds the {MAX_VALUE_BYTES} byte limit")
        now = self.clock()

        def write(conn: sqlite3.Connection) -> None:
            exists = conn.execute(
                "SELECT 1 FROM plugin_kv WHERE plugin_id = ? AND key = ?", (plugin_id, key)
            ).fetchone()
            if exists is None:
                (count,) = conn.execute(
                    "SELECT count(*) FROM plugin_kv WHERE plugin_id = ?", (plugin_id,)
                ).fetchone()
                if count >= MAX_KEYS:
                    raise KvError(
                        f"plugin {plugin_id!r} already stores {MAX_KEYS} keys, the limit; "
                        "delete some first"
                    )
            conn.execute(
                "INSERT INTO plugin_kv (plugin_id, key, value, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (plugin_id, key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (plugin_id, key, value, now),
            )

        await self._batcher.run(write, write=True)

    async def delete(self, plugin_id: str, key: str) -> bool:
        _check_key(key)
        deleted = await self._batcher.run(
            lambda conn: (
                conn.execute(
                    "DELETE FROM plugin_kv WHERE plugin_id = ? AND key = ?", (plugin_id, key)
                ).rowcount
            ),
            write=True,
        )
        return bool(deleted)

    async def list(self, plugin_id: str, prefix: str = "") -> list[str]:
        # Prefix match without LIKE's wildcards: a key range [prefix, prefix + U+10FFFF).
        rows = await self._batcher.run(
            lambda conn: conn.execute(
                "SELECT key FROM plugin_kv WHERE plugin_id = ? AND key >= ? AND key < ?"
                " ORDER BY key LIMIT ?",
                (plugin_id, prefix, prefix + "\U0010ffff", LIST_LIMIT),
            ).fetchall(),
            write=False,
        )
        return [str(row[0]) for row in rows]

    def handler_for(self, plugin_id: str) -> KvHandler:
        """The socket handler for one plugin's connection: every request is its own."""

        async def handle(request: KvRequest) -> KvReply:
            try:
                match request.action:
                    case "get":
                        return KvReply(value=await self.get(plugin_id, request.key))
                    case "set":
                        if request.value is None:
                            raise KvError("set needs a value (a string; store JSON as text)")
                        await self.set(plugin_id, request.key, request.value)
                        return KvReply(value=request.value)
                    case "delete":
                        await self.delete(plugin_id, request.key)
                        return KvReply()
                    case _:
                        return KvReply(keys=await self.list(plugin_id, request.key))
            except KvError as exc:
                return KvReply(error=str(exc))
            except sqlite3.Error as exc:
                if is_storage_full(exc):
                    return KvReply(error=FULL_REPLY)
                raise  # a real fault: the connection logs it and replies "internal error"

        return handle
