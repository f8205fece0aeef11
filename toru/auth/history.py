"""Reading the login history (the throttle writes it)."""

from __future__ import annotations

import sqlite3
from typing import Any

from toru.db import Database
from toru.timestamps import iso_utc


async def history_page(
    db: Database, *, page: int, page_size: int, username: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    """One page of login attempts, newest first, and the total number that match."""
    where, params = ("WHERE username = ?", [username]) if username else ("", [])

    def query(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], int]:
        total = conn.execute(f"SELECT count(*) FROM login_history {where}", params).fetchone()[0]  # noqa: S608
        rows = conn.execute(
            f"SELECT * FROM login_history {where} ORDER BY timestamp DESC, id DESC"  # noqa: S608
            " LIMIT ? OFFSET ?",
            [*params, page_size, (page - 1) * page_size],
        ).fetchall()
        entries = [
            {
                "id": row["id"],
                "timestamp": iso_utc(row["timestamp"]),
                "username": row["username"],
                "address": row["address"],
                "user_agent": row["user_agent"],
                "outcome": row["outcome"],
                "reason": row["reason"],
            }
            for row in rows
        ]
        return entries, int(total)

    return await db.run(query)
