"""Database users: create, read, update, delete, with the password policy enforced.

Usernames are case-insensitive (stored lower-case). Changing a password,
deactivating or deleting a user ends all of that user's sessions in the same
transaction, so there is no window in which an old session still works.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import attrs

from toru.auth.identity import Role
from toru.auth.passwords import PasswordHasher
from toru.config import check_password_policy, check_username, normalize_username
from toru.db import Database


class UserError(Exception):
    """A user operation was refused; ``status`` is the HTTP status that fits."""

    def __init__(self, message: str, *, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@attrs.frozen
class User:
    id: int
    username: str
    display_name: str
    role: Role
    is_active: bool
    created_at: float
    updated_at: float
    password_changed_at: float
    password_hash: str = attrs.field(repr=False)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> User:
        return cls(
            id=row["id"],
            username=row["username"],
            display_name=row["display_name"],
            role=Role(row["role"]),
            is_active=bool(row["is_active"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            password_changed_at=row["password_changed_at"],
            password_hash=row["password_hash"],
        )


def _role(raw: str) -> Role:
    try:
        return Role(raw)
    except ValueError:
        raise UserError(
            f"role {raw!r} is not valid; use 'client' or 'admin'", field="role"
        ) from None


def _display_name(raw: str) -> str:
    name = raw.strip()
    if len(name) > 128 or any(not ch.isprintable() for ch in name):
        raise UserError(
            "display name must be at most 128 printable characters", field="display_name"
        )
    return name


@attrs.define(eq=False)
class UserStore:
    db: Database
    hasher: PasswordHasher
    #: The environment administrator's name, which no database user may take.
    reserved_username: str
    clock: Callable[[], float] = time.time

    async def create(
        self, username: str, password: str, *, role: str = "client", display_name: str = ""
    ) -> User:
        name = normalize_username(username)
        if (why := check_username(name)) is not None:
            raise UserError(why, field="username")
        if name == self.reserved_username:
            raise UserError(
                f"username {name!r} belongs to the environment administrator",
                status=409,
                field="username",
            )
        if (why := check_password_policy(password, name)) is not None:
            raise UserError(why, field="password")
        user_role, shown = _role(role), _display_name(display_name)
        password_hash = await self.hasher.hash(password)
        now = self.clock()

        def insert(conn: sqlite3.Connection) -> User:
            try:
                cur = conn.execute(
                    "INSERT INTO users (username, display_name, password_hash, role, is_active,"
                    " created_at, updated_at, password_changed_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?)",
                    (name, shown, password_hash, user_role.value, now, now, now),
                )
            except sqlite3.IntegrityError:
                raise UserError(
                    f"a user named {name!r} already exists", status=409, field="username"
                ) from None
            return _get(conn, int(cur.lastrowid or 0))

        return await self.db.transaction(insert)

    async def get(self, user_id: int) -> User:
        return await self.db.run(lambda conn: _get(conn, user_id))

    async def find(self, username: str) -> User | None:
        name = normalize_username(username)

        def select(conn: sqlite3.Connection) -> User | None:
            row = conn.execute("SELECT * FROM users WHERE username = ?", (name,)).fetchone()
            return User.from_row(row) if row else None

        return await self.db.run(select)

    async def list(self) -> list[User]:
        def select(conn: sqlite3.Connection) -> list[User]:
            rows = conn.execute("SELECT * FROM users ORDER BY username").fetchall()
            return [User.from_row(row) for row in rows]

        return await self.db.run(select)

    async def update(
        self,
        user_id: int,
        *,
        display_name: str | None = None,
        role: str | None = None,
        is_active: bool | None = None,
        password: str | None = None,
    ) -> User:
        """Change the given fields; a new password or deactivation ends the user's sessions."""
        current = await self.get(user_id)
        changes: dict[str, object] = {}
        if display_name is not None:
            changes["display_name"] = _display_name(display_name)
        if role is not None:
            changes["role"] = _role(role).value
        if is_active is not None:
            changes["is_active"] = int(is_active)
        if password is not None:
            if (why := check_password_policy(password, current.username)) is not None:
                raise UserError(why, field="password")
            changes["password_hash"] = await self.hasher.hash(password)
            changes["password_changed_at"] = self.clock()
        if not changes:
            return current
        changes["updated_at"] = self.clock()
        end_sessions = password is not None or is_active is False

        def write(conn: sqlite3.Connection) -> User:
            assignments = ", ".join(f"{column} = ?" for column in changes)
            cur = conn.execute(
                f"UPDATE users SET {assignments} WHERE id = ?",  # noqa: S608 - fixed column names
                (*changes.values(), user_id),
            )
            if cur.rowcount == 0:
                raise _not_found(user_id)
            if end_sessions:
                conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            return _get(conn, user_id)

        return await self.db.transaction(write)

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        """Store a re-computed hash of the *same* password (stronger parameters); sessions stay."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
            )

        await self.db.run(write)

    async def delete(self, user_id: int) -> User:
        def remove(conn: sqlite3.Connection) -> User:
            user = _get(conn, user_id)
            conn.execute("DELETE FROM users WHERE id = ?", (user_id,))  # sessions cascade
            return user

        return await self.db.transaction(remove)


def _not_found(user_id: int) -> UserError:
    return UserError(f"no user with id {user_id}", status=404)


def _get(conn: sqlite3.Connection, user_id: int) -> User:
    row = conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    if row is None:
        raise _not_found(user_id)
    return User.from_row(row)
