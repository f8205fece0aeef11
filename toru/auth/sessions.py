"""Server-side sessions.

The browser holds 32 random bytes (base64url) in the ``session_id`` cookie;
the database holds only their SHA-256, so a copy of the database cannot be
replayed as a login. Sessions live 7 days from login (absolute, not sliding).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import sqlite3
import time
from collections.abc import Callable

import attrs

from toru.auth.identity import Identity, Role
from toru.db import Database

COOKIE_NAME = "session_id"
SESSION_LIFETIME = 7 * 24 * 3600
TOKEN_BYTES = 32


def hash_token(token: str) -> str | None:
    """The stored form of a cookie value; None when the value cannot be a token of ours."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != TOKEN_BYTES:
        return None
    return hashlib.sha256(raw).hexdigest()


@attrs.define(eq=False)
class SessionStore:
    db: Database
    #: Name and role the environment administrator's sessions resolve to.
    admin_username: str
    clock: Callable[[], float] = time.time
    lifetime: float = SESSION_LIFETIME

    async def create(self, user_id: int | None, *, address: str, user_agent: str) -> str:
        """Start a session for *user_id* (None: the environment admin); return the cookie value."""
        raw = secrets.token_bytes(TOKEN_BYTES)
        token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        token_hash = hashlib.sha256(raw).hexdigest()
        now = self.clock()

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, address,"
                " user_agent) VALUES (?, ?, ?, ?, ?, ?)",
                (token_hash, user_id, now, now + self.lifetime, address, user_agent[:512]),
            )

        await self.db.run(insert)
        return token

    async def resolve(self, token: str) -> Identity | None:
        """The identity behind a cookie value, or None (unknown, expired, user inactive)."""
        token_hash = hash_token(token)
        if token_hash is None:
            return None
        now = self.clock()

        def select(conn: sqlite3.Connection) -> Identity | None:
            row = conn.execute(
                "SELECT s.user_id, u.username, u.role, u.display_name, u.is_active"
                " FROM sessions s LEFT JOIN users u ON u.id = s.user_id"
                " WHERE s.token_hash = ? AND s.expires_at > ?",
                (token_hash, now),
            ).fetchone()
            if row is None:
                return None
            if row["user_id"] is None:
                return Identity(self.admin_username, Role.ADMIN, None, "Administrator", token_hash)
            if not row["is_active"]:
                return None
            return Identity(
                row["username"], Role(row["role"]), row["user_id"], row["display_name"], token_hash
            )

        return await self.db.run(select)

    async def end(self, token_hash: str) -> None:
        await self.db.run(
            lambda conn: conn.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
        )

    async def end_all_for(self, user_id: int | None) -> int:
        """End every session of one user (None: the environment admin); return how many."""

        def delete(conn: sqlite3.Connection) -> int:
            if user_id is None:
                cur = conn.execute("DELETE FROM sessions WHERE user_id IS NULL")
            else:
                cur = conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            return cur.rowcount

        return await self.db.run(delete)

    async def purge_expired(self) -> int:
        now = self.clock()
        return await self.db.run(
            lambda conn: conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,)).rowcount
        )
