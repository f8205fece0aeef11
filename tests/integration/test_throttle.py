"""Login throttling tiers, windows and forgiveness, on a real database with a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import fast_hasher, make_settings
from toru.auth.service import AuthService, LoginFailed, LoginLocked
from toru.auth.throttle import WINDOW, lock_seconds, locked_until
from toru.db import Database

PASSWORD = "bobs password"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def auth(tmp_path: Path, clock: FakeClock) -> AsyncIterator[AuthService]:
    settings = make_settings(tmp_path)
    async with Database.open(settings.database_path) as db:
        service = await AuthService.create(db, settings, hasher=fast_hasher(), clock=clock)
        await service.users.create("bob", PASSWORD)
        yield service


async def attempt(
    auth: AuthService, password: str, *, username: str = "bob", address: str = "10.0.0.1"
) -> str:
    """Try a login and say how it went: 'ok', 'failed' or 'locked <seconds>'."""
    try:
        await auth.login(username, password, address=address, user_agent="test")
    except LoginFailed:
        return "failed"
    except LoginLocked as locked:
        return f"locked {locked.retry_after}"
    return "ok"


async def fail(auth: AuthService, times: int, **kwargs: str) -> None:
    for _ in range(times):
        assert await attempt(auth, "wrong password", **kwargs) == "failed"


def test_lock_tiers() -> None:
    """3, 6, 9, 12 failures lock for 1, 3, 10, 30 minutes; others do not lock."""
    assert [lock_seconds(n) for n in range(1, 19)] == [
        0, 0, 60, 0, 0, 180, 0, 0, 600, 0, 0, 1800, 0, 0, 1800, 0, 0, 1800,
    ]  # fmt: skip


def test_lock_does_not_shrink_when_old_failures_leave_the_window() -> None:
    """The 12th failure's 30-minute lock stands even after the 1st failure is an hour old."""
    times = [0.0] + [3500.0 + i for i in range(11)]
    assert locked_until(times) == 3510.0 + 1800
    assert locked_until([0.0, 1.0, WINDOW + 1]) is None


async def test_tiers_over_an_hour(auth: AuthService, clock: FakeClock) -> None:
    """Each third failure in an hour locks longer: 1, 3, 10 and 30 minutes."""
    for seconds in (60, 180, 600, 1800):
        await fail(auth, 3)
        assert await attempt(auth, PASSWORD) == f"locked {seconds}"
        clock.advance(seconds - 1)
        assert await attempt(auth, PASSWORD) == "locked 1"
        clock.advance(1)
    assert await attempt(auth, PASSWORD) == "ok"


async def test_locked_attempts_do_not_count(auth: AuthService, clock: FakeClock) -> None:
    """Hammering during a lock does not make the next lock come sooner."""
    await fail(auth, 3)
    for _ in range(20):
        assert (await attempt(auth, "wrong password")).startswith("locked")
    clock.advance(60)
    await fail(auth, 2)  # failures 4 and 5: no lock yet
    assert await attempt(auth, PASSWORD) == "ok"


async def test_failures_older_than_an_hour_are_forgotten(
    auth: AuthService, clock: FakeClock
) -> None:
    """Two failures, an hour of quiet, two more: never three in one hour, so no lock."""
    await fail(auth, 2)
    clock.advance(WINDOW + 1)
    await fail(auth, 2)
    assert await attempt(auth, PASSWORD) == "ok"


async def test_success_clears_the_username_count(auth: AuthService) -> None:
    """Two failures, a success, two failures: the count restarted, so no lock."""
    await fail(auth, 2)
    assert await attempt(auth, PASSWORD) == "ok"
    await fail(auth, 2)
    assert await attempt(auth, PASSWORD) == "ok"


async def test_address_is_locked_across_usernames(auth: AuthService) -> None:
    """Guessing three different names from one address locks that address, not others."""
    for name in ("alice", "bruno", "chen"):
        await fail(auth, 1, username=name)
    assert await attempt(auth, PASSWORD) == "locked 60"
    assert await attempt(auth, PASSWORD, address="10.0.0.2") == "ok"


async def test_a_valid_account_does_not_unlock_guessing_others(auth: AuthService) -> None:
    """Logging into your own account forgives only failures against that account."""
    await fail(auth, 1, username="alice")
    await fail(auth, 1, username="bruno")
    assert await attempt(auth, PASSWORD) == "ok"  # bob is the attacker's own account
    await fail(auth, 1, username="chen")
    assert await attempt(auth, PASSWORD) == "locked 60"


async def test_reset_forgives_the_users_failures(auth: AuthService) -> None:
    """An administrator's password reset lifts the lock on the name (and its address count)."""
    await fail(auth, 3)
    assert (await attempt(auth, PASSWORD)).startswith("locked")
    bob = await auth.users.find("bob")
    assert bob is not None
    await auth.update_user(bob.id, by="admin", password="bobs new password")
    assert await attempt(auth, "bobs new password") == "ok"


async def test_sessions_expire_after_seven_days(auth: AuthService, clock: FakeClock) -> None:
    """A session works for 7 days after login and not a second longer (absolute lifetime)."""
    identity, token = await auth.login("bob", PASSWORD, address="10.0.0.1", user_agent="t")
    clock.advance(7 * 24 * 3600 - 1)
    assert await auth.sessions.resolve(token) is not None
    clock.advance(1)
    assert await auth.sessions.resolve(token) is None
    assert await auth.sessions.purge_expired() == 1
    assert identity.username == "bob"


async def test_history_is_bounded(
    auth: AuthService, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hammering a locked account cannot grow the history past its cap, nor lift the lock."""
    from toru.auth import throttle

    monkeypatch.setattr(throttle, "HISTORY_MAX_ROWS", 30)
    monkeypatch.setattr(throttle, "HISTORY_TRIM_EVERY", 10)

    async def outcomes() -> list[str]:
        rows = await auth.db.run(lambda c: c.execute("SELECT outcome FROM login_history"))
        return [row[0] for row in rows]

    await fail(auth, 3)
    for _ in range(57):
        assert (await attempt(auth, "wrong password")).startswith("locked")
    # 60 rows written; at row 60 the 30 oldest go, but only locked ones: the failures stay.
    assert len(await outcomes()) == 33
    assert (await outcomes()).count("failure") == 3
    assert (await attempt(auth, PASSWORD)).startswith("locked")

    clock.advance(throttle.HISTORY_MAX_AGE + 1)
    for _ in range(9):
        assert await attempt(auth, PASSWORD) == "ok"
    assert len(await outcomes()) == 9  # everything older than the age limit went at row 70
