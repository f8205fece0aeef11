"""Plugin lifecycle events: one row in ``plugin_events`` and one JSON line each.

Every transition a runner or the supervisor makes is recorded here: in the
database (for the API and the UI's timeline) and through the
``toru.plugins.events`` logger, which writes ``LOG_DIR/plugin-supervisor.log``
(and ``toru.log``). Retention: 7 days or 10 000 rows per plugin, whichever
is less, trimmed as events are written.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import attrs
import structlog

from toru.db import Database
from toru.timestamps import iso_utc

log = structlog.get_logger("toru.plugins.events")

MAX_AGE = 7 * 24 * 3600.0
MAX_PER_PLUGIN = 10_000
TRIM_EVERY = 200


@attrs.define(eq=False)
class EventLog:
    db: Database
    clock: Callable[[], float] = time.time
    #: Called with (plugin_id, event, details) for every event (the plugin's own log file).
    listeners: list[Callable[[str, str, dict[str, Any]], None]] = attrs.field(factory=list)

    async def record(self, plugin_id: str, event: str, **details: Any) -> None:
        """Store and log one event; ``details`` must be JSON-serialisable."""
        now = self.clock()
        text = json.dumps(details, default=str)
        level = "warning" if event in {"crashed", "rejected", "backoff", "unhealthy"} else "info"
        if event == "failed":
            level = "error"
        getattr(log, level)(event, plugin_id=plugin_id, **details)
        for listener in self.listeners:
            listener(plugin_id, event, details)

        def insert(conn: sqlite3.Connection) -> None:
            row_id = conn.execute(
                "INSERT INTO plugin_events (plugin_id, event, details, timestamp)"
                " VALUES (?, ?, ?, ?)",
                (plugin_id, event, text, now),
            ).lastrowid
            if row_id and row_id % TRIM_EVERY == 0:
                conn.execute(
                    "DELETE FROM plugin_events WHERE plugin_id = ? AND (timestamp < ? OR id <="
                    " (SELECT id FROM plugin_events WHERE plugin_id = ?"
                    "  ORDER BY id DESC LIMIT 1 OFFSET ?))",
                    (plugin_id, now - MAX_AGE, plugin_id, MAX_PER_PLUGIN),
                )

        # Abandoned if its caller is cancelled (a runner stopping its plugin): the write
        # finishes in its thread, and the caller is never held up by a slow or dead disk.
        await self.db.run(insert, abandon_on_cancel=True)

    async def list(
        self, plugin_id: str, *, limit: int = 100, before: int | None = None
    ) -> list[dict[str, Any]]:
        """Events of one plugin, newest first; ``before`` is an event id for paging."""

        def select(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT * FROM plugin_events WHERE plugin_id = ? AND id < ?"
                " ORDER BY id DESC LIMIT ?",
                (plugin_id, before if before is not None else 2**62, limit),
            ).fetchall()
            return [
                {
                    "id": row["id"],
                    "plugin_id": row["plugin_id"],
                    "event": row["event"],
                    "details": json.loads(row["details"]),
                    "timestamp": iso_utc(row["timestamp"]),
                }
                for row in rows
            ]

        return await self.db.run(select)
