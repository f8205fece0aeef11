"""The authentication service: logins, password changes and the environment admin.

One object the HTTP layer and the CLI both use, so the rules (throttling,
history, session revocation) live in one place.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import attrs
import structlog

from toru.auth.identity import Identity, Role
from toru.auth.passwords import PasswordHasher, constant_time_equals
from toru.auth.sessions import SessionStore
from toru.auth.throttle import Attempt, LoginThrottle
from toru.auth.users import User, UserError, UserStore
from toru.config import Settings, check_password_policy, normalize_username
from toru.db import Database

log = structlog.get_logger("toru.auth")

ENV_ADMIN_FINGERPRINT = "environment_admin_fingerprint"
# Reasons recorded in the login history (the client is only told "wrong username or password").
WRONG_PASSWORD = "wrong password"  # noqa: S105 - a reason, not a password
UNKNOWN_USER = "unknown username"
DEACTIVATED = "account deactivated"


class LoginFailed(Exception):
    """Wrong username or password (deliberately not saying which)."""


class LoginLocked(Exception):
    """Too many failures: no password is checked until ``locked_until`` (Unix time)."""

    def __init__(self, locked_until: float, now: float) -> None:
        super().__init__("too many failed logins; try again later")
        self.locked_until = locked_until
        self.retry_after = max(1, int(locked_until - now + 0.999))


@attrs.define(eq=False)
class AuthService:
    db: Database
    settings: Settings
    hasher: PasswordHasher
    users: UserStore
    sessions: SessionStore
    throttle: LoginThrottle
    clock: Callable[[], float] = time.time

    @classmethod
    async def create(
        cls,
        db: Database,
        settings: Settings,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> AuthService:
        """Build the service and end stale sessions (expired, or of a changed environment admin)."""
        hasher = hasher or PasswordHasher()
        service = cls(
            db=db,
            settings=settings,
            hasher=hasher,
            users=UserStore(db, hasher, settings.admin_username, clock),
            sessions=SessionStore(db, settings.admin_username, clock),
            throttle=LoginThrottle(db, clock),
            clock=clock,
        )
        await service.sessions.purge_expired()
        if settings.admin_password:
            await service._check_environment_admin()
        if (shadowed := await service.users.find(settings.admin_username)) is not None:
            log.warning(
                "a database user has the environment admin's name and cannot log in; "
                "rename ADMIN_USERNAME or delete the user with `toru user delete`",
                username=shadowed.username,
                user_id=shadowed.id,
            )
        return service

    async def _check_environment_admin(self) -> None:
        """End the environment admin's sessions when ADMIN_USERNAME or ADMIN_PASSWORD changed.

        The database keeps only an argon2 hash of the pair, never the password.
        """
        secret = f"{self.settings.admin_username}\0{self.settings.admin_password}"
        row = await self.db.run(
            lambda conn: conn.execute(
                "SELECT value FROM settings WHERE key = ?", (ENV_ADMIN_FINGERPRINT,)
            ).fetchone()
        )
        if row is not None and await self.hasher.verify(row[0], secret):
            return
        fingerprint = await self.hasher.hash(secret)

        def store(conn: sqlite3.Connection) -> int:
            conn.execute(
                "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (ENV_ADMIN_FINGERPRINT, fingerprint, self.clock()),
            )
            return conn.execute("DELETE FROM sessions WHERE user_id IS NULL").rowcount

        ended = await self.db.transaction(store)
        if row is not None:
            log.info("environment admin credentials changed; their sessions ended", ended=ended)

    async def login(
        self, username: str, password: str, *, address: str, user_agent: str
    ) -> tuple[Identity, str]:
        """Check a login; return the identity and a new session's cookie value.

        Raises :class:`LoginLocked` before looking at the password when a lock
        applies, :class:`LoginFailed` otherwise on any mismatch.
        """
        name = normalize_username(username)[:128]
        attempt = Attempt(name, address, user_agent)
        now = self.clock()
        if (until := await self.throttle.check(attempt)) is not None:
            await self.throttle.record(attempt, "locked")
            raise LoginLocked(until, now)

        identity = await self._verify(name, password)
        if not isinstance(identity, Identity):
            await self.throttle.record(attempt, "failure", identity)
            log.info("login failed", username=name, address=address, reason=identity)
            if identity == DEACTIVATED:
                raise LoginFailed("this account is deactivated; ask an administrator")
            raise LoginFailed("wrong username or password")
        await self.throttle.record(attempt, "success")
        token = await self.sessions.create(identity.user_id, address=address, user_agent=user_agent)
        log.info("login", username=name, role=identity.role.value, address=address)
        return identity, token

    async def _verify(self, name: str, password: str) -> Identity | str:
        """The identity for a correct login, else the reason it failed (for the history)."""
        if name == self.settings.admin_username:
            # Same cost as a database user, so timing does not tell the two apart.
            await self.hasher.burn(password)
            if constant_time_equals(password, self.settings.admin_password):
                return Identity(name, Role.ADMIN, None, "Administrator")
            return WRONG_PASSWORD
        user = await self.users.find(name)
        if user is None:
            await self.hasher.burn(password)
            return UNKNOWN_USER
        if not await self.hasher.verify(user.password_hash, password):
            return WRONG_PASSWORD
        if not user.is_active:
            return DEACTIVATED
        if self.hasher.needs_rehash(user.password_hash):
            await self.users.set_password_hash(user.id, await self.hasher.hash(password))
        return Identity(user.username, user.role, user.id, user.display_name)

    async def change_own_password(
        self,
        identity: Identity,
        current: str,
        new: str,
        *,
        address: str,
        user_agent: str,
    ) -> str:
        """Change the caller's password, end all their sessions, return a fresh cookie value."""
        if identity.is_environment_admin:
            raise UserError(
                "the environment administrator's password comes from ADMIN_PASSWORD; change it "
                "there and restart Toru",
                status=403,
            )
        assert identity.user_id is not None
        attempt = Attempt(identity.username, address, user_agent)
        now = self.clock()
        if (until := await self.throttle.check(attempt)) is not None:
            await self.throttle.record(attempt, "locked")
            raise LoginLocked(until, now)
        user = await self.users.get(identity.user_id)
        if not await self.hasher.verify(user.password_hash, current):
            await self.throttle.record(attempt, "failure", "wrong current password")
            raise UserError("the current password is not correct", field="current_password")
        if (why := check_password_policy(new, user.username)) is not None:
            raise UserError(why, field="new_password")
        await self.users.update(user.id, password=new)  # ends every session of this user
        log.info("password changed", username=user.username)
        return await self.sessions.create(user.id, address=address, user_agent=user_agent)

    async def update_user(
        self,
        user_id: int,
        *,
        by: str,
        display_name: str | None = None,
        role: str | None = None,
        is_active: bool | None = None,
        password: str | None = None,
    ) -> User:
        """An administrator (or the CLI) changes a user in one write.

        A new password or deactivation ends the user's sessions; a new password
        also clears the user's login lock.
        """
        user = await self.users.update(
            user_id, display_name=display_name, role=role, is_active=is_active, password=password
        )
        if password is not None:
            await self.throttle.reset(user.username, by=by)
            log.info("password reset", username=user.username, by=by)
        return user

    async def logout(self, identity: Identity) -> None:
        await self.sessions.end(identity.session_hash)
