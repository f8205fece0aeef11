"""Password hashing with argon2id, off the event loop.

Hashing is deliberately expensive (tens of milliseconds, 64 MiB by default),
so it runs in worker threads, at most two at a time: a burst of logins cannot
eat the server's memory.
"""

from __future__ import annotations

import hashlib
import hmac

import argon2
import attrs
import trio


@attrs.define(eq=False)
class PasswordHasher:
    """argon2id hashing and verification that never blocks the event loop."""

    hasher: argon2.PasswordHasher = attrs.field(factory=argon2.PasswordHasher)
    _limiter: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(2))
    _dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        return await trio.to_thread.run_sync(self.hasher.hash, password, limiter=self._limiter)

    async def verify(self, password_hash: str, password: str) -> bool:
        """True when *password* matches; a malformed hash counts as a mismatch."""

        def check() -> bool:
            try:
                return self.hasher.verify(password_hash, password)
            except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
                return False

        return await trio.to_thread.run_sync(check, limiter=self._limiter)

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(password_hash)
        except argon2.exceptions.InvalidHashError:
            return True

    async def burn(self, password: str) -> None:
        """Spend the time a real verification would, so unknown users are not revealed."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("toru-dummy-password")
        await self.verify(self._dummy_hash, password)


def constant_time_equals(a: str, b: str) -> bool:
    """Compare two secrets in constant time, without leaking their lengths."""
    return hmac.compare_digest(
        hashlib.sha256(a.encode("utf-8")).digest(), hashlib.sha256(b.encode("utf-8")).digest()
    )
