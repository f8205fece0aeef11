"""Per-plugin key-value storage in SQLite, for plugins (over their socket) and browsers.

Every operation is scoped to one plugin id, fixed by the caller's identity
(the runner that owns the connection, or the URL of the browser API): a plugin
cannot name another plugin's keys. Limits: keys of 1 to 256 bytes (UTF-8),
values up to 1 MiB, 10 000 keys per plugin. A ``set`` is acknowledged only
once it is on disk (``synchronous=FULL``), so it survives a SIGKILL of the
server. Values outlive plugin restarts, disable/enable and server restarts.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import attrs

from toru.db import Database
from toru.plugins.connection import KvHandler
from toru.plugins.messages import KvReply, KvRequest

MAX_KEY_BYTES = 256
MAX_VALUE_BYTES = 1024 * 1024
MAX_KEYS = 10_000
LIST_LIMIT = MAX_KEYS


class KvError(Exception):
    """A storage request was refused; the message says why (sent to the plugin or browser)."""


def _check_key(key: str) -> None:
    size = len(key.encode("utf-8"))
    if not 1 <= size <= MAX_KEY_BYTES:
        raise KvError(f"key must be 1 to {MAX_KEY_BYTES} bytes of UTF-8, got {size}")


@attrs.define(eq=False)
class KvStore:
    db: Database
    clock: Callable[[], float] = time.time

    async def get(self, plugin_id: str, key: str) -> str | None:
        _check_key(key)
        row = await self.db.run(
            lambda conn: conn.execute(
                "SELECT value FROM plugin_kv WHERE plugin_id = ? AND key = ?", (plugin_id, key)
            ).fetchone()
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

        await self.db.transaction(write)

    async def delete(self, plugin_id: str, key: str) -> bool:
        _check_key(key)
        deleted = await self.db.run(
            lambda conn: (
                conn.execute(
                    "DELETE FROM plugin_kv WHERE plugin_id = ? AND key = ?", (plugin_id, key)
                ).rowcount
            )
        )
        return bool(deleted)

    async def list(self, plugin_id: str, prefix: str = "") -> list[str]:
        # Prefix match without LIKE's wildcards: a key range [prefix, prefix + U+10FFFF).
        rows = await self.db.run(
            lambda conn: conn.execute(
                "SELECT key FROM plugin_kv WHERE plugin_id = ? AND key >= ? AND key < ?"
                " ORDER BY key LIMIT ?",
                (plugin_id, prefix, prefix + "\U0010ffff", LIST_LIMIT),
            ).fetchall()
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

        return handle
