"""Login throttling by username and by client address.

Counts come from ``login_history`` itself, so a restart does not reset them
and there is no in-memory state to clean up. Within the last hour, the 3rd,
6th, 9th and 12th failure lock for 1, 3, 10 and 30 minutes (every further 3rd
failure: 30 minutes again). Attempts made while locked are recorded as
``locked`` but do not count as failures. A successful login (or a password
reset by an administrator) forgives the earlier failures against *that
username*, in both counts: the user who mistyped is not kept out by their own
address, while failures against other usernames from the same address still
count, so one valid account cannot unlock guessing at all the others.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence

import attrs

from toru.db import Database

WINDOW = 3600.0
#: The history keeps at most this many rows and nothing older than this, so a client
#: hammering a locked account (each attempt is recorded) cannot grow the database forever.
HISTORY_MAX_ROWS = 100_000
HISTORY_MAX_AGE = 90 * 24 * 3600.0
#: Trimming runs on every this-many-th insert: amortised, no clean-up task needed.
HISTORY_TRIM_EVERY = 1000
#: (failures, lock seconds): reaching a multiple of 3 failures locks for this long.
TIERS: tuple[tuple[int, float], ...] = ((3, 60.0), (6, 180.0), (9, 600.0), (12, 1800.0))


#: How far back a failure can still affect a lock: one window to count it, then its lock.
HORIZON = WINDOW + TIERS[-1][1]


def lock_seconds(failures: int) -> float:
    """How long the *failures*-th failure in the window locks for (0 for no lock)."""
    if failures <= 0 or failures % 3:
        return 0.0
    seconds = 0.0
    for threshold, duration in TIERS:
        if failures >= threshold:
            seconds = duration
    return seconds


def locked_until(failure_times: Sequence[float]) -> float | None:
    """When the lock caused by these (ascending) failure times ends, or None if never locked.

    Each failure is judged by how many failures the hour *up to it* held, so a
    lock does not shrink when older failures later leave the window.
    """
    until = None
    first = 0
    for index, moment in enumerate(failure_times):
        while failure_times[first] <= moment - WINDOW:
            first += 1
        if seconds := lock_seconds(index - first + 1):
            until = max(until or 0.0, moment + seconds)
    return until


@attrs.frozen
class Attempt:
    username: str
    address: str
    user_agent: str = ""


@attrs.define(eq=False)
class LoginThrottle:
    db: Database
    clock: Callable[[], float] = time.time

    async def check(self, attempt: Attempt) -> float | None:
        """The end of the lock that applies to *attempt* now, or None when it may proceed."""
        now = self.clock()

        def query(conn: sqlite3.Connection) -> float | None:
            ends = [
                _locked_until(conn, "username", attempt.username, now),
                _locked_until(conn, "address", attempt.address, now),
            ]
            active = [end for end in ends if end is not None and end > now]
            return max(active) if active else None

        return await self.db.run(query)

    async def record(self, attempt: Attempt, outcome: str, reason: str = "") -> None:
        """Add *attempt* to the login history (``success``, ``failure``, ``locked``, ``reset``)."""
        now = self.clock()

        def insert(conn: sqlite3.Connection) -> None:
            row_id = conn.execute(
                "INSERT INTO login_history (timestamp, username, address, user_agent, outcome,"
                " reason) VALUES (?, ?, ?, ?, ?, ?)",
                (now, attempt.username, attempt.address, attempt.user_agent[:512], outcome, reason),
            ).lastrowid
            if row_id and row_id % HISTORY_TRIM_EVERY == 0:
                # Past the row cap, only rows the lock decisions cannot need go: `locked`
                # rows (never counted) and rows older than a failure can matter. Otherwise
                # a flood of cheap locked attempts would delete the failures behind a lock.
                conn.execute(
                    "DELETE FROM login_history WHERE timestamp < ? OR (id <= ?"
                    " AND (outcome = 'locked' OR timestamp < ?))",
                    (now - HISTORY_MAX_AGE, row_id - HISTORY_MAX_ROWS, now - HORIZON),
                )

        await self.db.run(insert)

    async def reset(self, username: str, *, by: str) -> None:
        """Clear *username*'s failure count (an administrator reset its password)."""
        await self.record(Attempt(username, "-"), "reset", f"password reset by {by}")


def _locked_until(conn: sqlite3.Connection, column: str, value: str, now: float) -> float | None:
    since = now - HORIZON
    times = [
        r[0]
        for r in conn.execute(
            f"SELECT f.timestamp FROM login_history f WHERE f.{column} = ?"  # noqa: S608
            " AND f.outcome = 'failure' AND f.timestamp > ?"
            # Failures against a name that has since logged in (or been reset) are forgiven.
            " AND NOT EXISTS (SELECT 1 FROM login_history s WHERE s.username = f.username"
            " AND s.outcome IN ('success', 'reset') AND s.timestamp >= f.timestamp)"
            " ORDER BY f.timestamp",
            (value, since),
        )
    ]
    return locked_until(times)
