"""`toru user ...` run as real processes against a database in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.support import fast_hasher, make_settings
from toru.auth.service import AuthService, LoginFailed
from toru.config import Settings
from toru.db import Database

REPO_ROOT = Path(__file__).resolve().parents[2]
ALICE_PASSWORD = "alice password 1"
NEW_PASSWORD = "alice password 2"


async def toru_user(
    tmp_path: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m toru user ARGS`` with data and logs in tmp_path and no ADMIN_PASSWORD."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TORU_", "STEERING_", "ADMIN_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["TORU_DATA_DIR"] = str(tmp_path / "data")
    env["TORU_LOG_DIR"] = str(tmp_path / "logs")
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "toru", "user", *args],
            cwd=tmp_path,
            env=env,
            stdin=stdin.encode(),
            check=False,
            capture_stdout=True,
            capture_stderr=True,
        )


def settings_for(tmp_path: Path) -> Settings:
    """Library-side settings pointing at the same database as the CLI runs."""
    return make_settings(tmp_path, data_dir=tmp_path / "data")


async def add_alice(tmp_path: Path) -> None:
    result = await toru_user(tmp_path, "add", "alice", "--role", "admin", stdin=ALICE_PASSWORD)
    assert result.returncode == 0, result.stderr.decode()


def last_line(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode().splitlines()[-1]


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    stderr = result.stderr.decode()
    assert len(stderr.splitlines()) == 1, stderr
    assert "Traceback" not in stderr
    return stderr.rstrip("\n")


async def test_add_reads_password_from_stdin(tmp_path: Path) -> None:
    """`user add` reads one password line from a non-terminal stdin and creates the user."""
    result = await toru_user(
        tmp_path, "add", "alice", "--role", "admin", stdin=ALICE_PASSWORD + "\nignored\n"
    )

    assert result.returncode == 0, result.stderr.decode()
    assert last_line(result) == "created admin 'alice' (id 1)"
    settings = settings_for(tmp_path)
    async with Database.open(settings.database_path) as db:
        auth = await AuthService.create(db, settings, hasher=fast_hasher())
        identity, _ = await auth.login(
            "alice", ALICE_PASSWORD, address="127.0.0.1", user_agent="test"
        )
    assert (identity.username, identity.role.value) == ("alice", "admin")


async def test_list_shows_users(tmp_path: Path) -> None:
    """`user list` shows each user's id, name, role and whether it is active."""
    await add_alice(tmp_path)
    result = await toru_user(tmp_path, "list")

    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["ID", "USERNAME"])
    assert [line.split() for line in lines[header + 1 :]] == [["1", "alice", "admin", "yes"]]


async def create_empty_database(tmp_path: Path) -> None:
    async with Database.open(settings_for(tmp_path).database_path):
        pass


async def test_commands_refuse_a_missing_database(tmp_path: Path) -> None:
    """list/passwd/delete on a directory without a database say so instead of creating one."""
    for args in (["list"], ["passwd", "alice"], ["delete", "alice"]):
        result = await toru_user(tmp_path, *args)
        assert result.returncode == 1
        assert one_error_line(result).startswith("toru: error: no database at ")
    assert not (tmp_path / "data" / "toru.db").exists()


async def test_list_without_users(tmp_path: Path) -> None:
    """`user list` on an empty database says there are no database users."""
    await create_empty_database(tmp_path)
    result = await toru_user(tmp_path, "list")
    assert result.returncode == 0, result.stderr.decode()
    assert last_line(result) == "no database users (the environment admin is not stored)"


async def test_user_command_stdout_is_only_its_result(tmp_path: Path) -> None:
    """`user add` on a fresh data dir migrates it yet prints only its result on stdout."""
    result = await toru_user(tmp_path, "add", "alice", stdin=ALICE_PASSWORD)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == "created client 'alice' (id 1)\n"


async def test_add_twice_fails_with_one_line(tmp_path: Path) -> None:
    """Adding an existing user exits 1 with one line saying so, and changes nothing."""
    await add_alice(tmp_path)
    result = await toru_user(tmp_path, "add", "Alice", stdin="another password\n")

    assert result.returncode == 1
    assert one_error_line(result) == "toru: error: a user named 'Alice' already exists"
    settings = settings_for(tmp_path)
    async with Database.open(settings.database_path) as db:
        auth = await AuthService.create(db, settings, hasher=fast_hasher())
        users = await auth.users.list()
    assert [(u.username, u.role.value) for u in users] == [("alice", "admin")]


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "password must be at least 8 characters"),
        ("ALICE-SMITH", "password must not be the same as the username"),
    ],
)
async def test_add_with_weak_password_fails(tmp_path: Path, password: str, reason: str) -> None:
    """A password that breaks the policy exits 1 with the policy's reason; no user is created."""
    result = await toru_user(tmp_path, "add", "alice-smith", stdin=password + "\n")

    assert result.returncode == 1
    assert one_error_line(result) == f"toru: error: {reason}"
    listing = await toru_user(tmp_path, "list")
    assert "alice-smith" not in listing.stdout.decode()


async def test_passwd_changes_password_and_ends_sessions(tmp_path: Path) -> None:
    """`user passwd` sets the new password, refuses the old one and ends the user's sessions."""
    await add_alice(tmp_path)
    settings = settings_for(tmp_path)
    async with Database.open(settings.database_path) as db:
        auth = await AuthService.create(db, settings, hasher=fast_hasher())
        alice = await auth.users.find("alice")
        assert alice is not None
        token = await auth.sessions.create(alice.id, address="127.0.0.1", user_agent="test")
        session = await auth.sessions.resolve(token)
        assert session is not None
        assert session.username == "alice"

    result = await toru_user(tmp_path, "passwd", "alice", stdin=NEW_PASSWORD + "\n")

    assert result.returncode == 0, result.stderr.decode()
    assert last_line(result) == "password of 'alice' changed; their sessions ended"
    async with Database.open(settings.database_path) as db:
        auth = await AuthService.create(db, settings, hasher=fast_hasher())
        assert await auth.sessions.resolve(token) is None
        with pytest.raises(LoginFailed):
            await auth.login("alice", ALICE_PASSWORD, address="127.0.0.1", user_agent="test")
        identity, _ = await auth.login(
            "alice", NEW_PASSWORD, address="127.0.0.1", user_agent="test"
        )
    assert identity.username == "alice"


async def test_passwd_with_weak_password_changes_nothing(tmp_path: Path) -> None:
    """`user passwd` with a too-short password exits 1 and the old password still works."""
    await add_alice(tmp_path)
    result = await toru_user(tmp_path, "passwd", "alice", stdin="short\n")

    assert result.returncode == 1
    assert one_error_line(result) == "toru: error: password must be at least 8 characters"
    settings = settings_for(tmp_path)
    async with Database.open(settings.database_path) as db:
        auth = await AuthService.create(db, settings, hasher=fast_hasher())
        identity, _ = await auth.login(
            "alice", ALICE_PASSWORD, address="127.0.0.1", user_agent="test"
        )
    assert identity.username == "alice"


async def test_delete_removes_user_and_sessions(tmp_path: Path) -> None:
    """`user delete` removes the user and, with it, every session of theirs."""
    await add_alice(tmp_path)
    settings = settings_for(tmp_path)
    async with Database.open(settings.database_path) as db:
        auth = await AuthService.create(db, settings, hasher=fast_hasher())
        alice = await auth.users.find("alice")
        assert alice is not None
        token = await auth.sessions.create(alice.id, address="127.0.0.1", user_agent="test")
        assert await auth.sessions.resolve(token) is not None

    result = await toru_user(tmp_path, "delete", "alice")

    assert result.returncode == 0, result.stderr.decode()
    assert last_line(result) == "deleted 'alice'; their sessions ended"
    async with Database.open(settings.database_path) as db:
        auth = await AuthService.create(db, settings, hasher=fast_hasher())
        assert await auth.users.find("alice") is None
        assert await auth.sessions.resolve(token) is None
    listing = await toru_user(tmp_path, "list")
    assert last_line(listing) == "no database users (the environment admin is not stored)"


@pytest.mark.parametrize("action", ["passwd", "delete"])
async def test_unknown_user(tmp_path: Path, action: str) -> None:
    """`user passwd` and `user delete` of a name nobody has exit 1 with "no user named"."""
    await add_alice(tmp_path)
    result = await toru_user(tmp_path, action, "bob", stdin=NEW_PASSWORD + "\n")

    assert result.returncode == 1
    assert one_error_line(result) == "toru: error: no user named 'bob'"
