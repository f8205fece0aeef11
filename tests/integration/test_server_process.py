"""A real ``toru serve`` process: signals, crashes, restarts, durability, its log file."""

from __future__ import annotations

import signal
import socket
import sqlite3
from pathlib import Path

import pytest

from tests.support import (
    ADMIN_PASSWORD,
    ServerProcess,
    client,
    login,
    read_log,
    run_toru,
    server_process,
)
from toru.migrations import MIGRATIONS


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_stops_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    """SIGTERM or SIGINT ends toru serve with status 0 well within 10 s, logging the stop."""
    async with server_process(tmp_path) as server:
        url = await server.start()
        async with client(url) as http:
            assert (await http.get("/api/health")).status_code == 200
        server.send(signum)
        assert await server.wait(10) == 0
    events = [record["event"] for record in read_log(server.log_file)]
    assert "stop requested" in events
    assert events[-1] == "toru stopped"


async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    """A user created (201) just before a SIGKILL is there after restart; so is the instance id."""
    async with server_process(tmp_path) as server:
        url = await server.start()
        async with client(url) as http:
            await login(http, "admin", ADMIN_PASSWORD)
            created = await http.post(
                "/api/users", json={"username": "durable", "password": "durable password"}
            )
            assert created.status_code == 201
        server.send(signal.SIGKILL)
        assert await server.wait(10) == -signal.SIGKILL
        first_id = _serving_records(server.log_file)[-1]["instance_id"]

        url = await server.start()
        async with client(url) as http:
            assert (await login(http, "durable", "durable password")).status_code == 200
        assert _serving_records(server.log_file)[-1]["instance_id"] == first_id
        server.send(signal.SIGTERM)
        assert await server.wait(10) == 0


async def test_sessions_survive_restart_until_admin_credentials_change(tmp_path: Path) -> None:
    """The admin stays logged in across a restart, but a new ADMIN_PASSWORD ends that session."""
    async with server_process(tmp_path) as server:
        async with client(await server.start()) as http:
            await login(http, "admin", ADMIN_PASSWORD)
            cookie = http.cookies["session_id"]
        server.send(signal.SIGTERM)
        await server.wait(10)

        async with client(await server.start()) as http:
            http.cookies.set("session_id", cookie)
            assert (await http.get("/api/auth/me")).status_code == 200
        server.send(signal.SIGTERM)
        await server.wait(10)

        server.env["ADMIN_PASSWORD"] = "a different admin password"
        async with client(await server.start()) as http:
            http.cookies.set("session_id", cookie)
            assert (await http.get("/api/auth/me")).status_code == 401
    assert "environment admin credentials changed; their sessions ended" in [
        r["event"] for r in read_log(server.log_file)
    ]


async def test_log_file_has_json_access_lines_and_no_secrets(tmp_path: Path) -> None:
    """Hypercorn's access lines are JSON with fields; the admin password never reaches the log."""
    async with server_process(tmp_path) as server:
        async with client(await server.start()) as http:
            await login(http, "admin", ADMIN_PASSWORD)
            await http.get("/api/nope")
        server.send(signal.SIGTERM)
        await server.wait(10)
    text = server.log_file.read_text()
    assert ADMIN_PASSWORD not in text
    access = [r for r in read_log(server.log_file) if r["event"] == "http request"]
    assert {(r["method"], r["path"], r["status"]) for r in access} >= {
        ("POST", "/api/auth/login", 200),
        ("GET", "/api/nope", 404),
    }
    for record in read_log(server.log_file):
        assert record["timestamp"].endswith("Z")
        assert record["level"] in {"debug", "info", "warning", "error", "critical"}


async def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    """Starting on a busy port exits 1 with one line naming the address, not a traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = ServerProcess(tmp_path, {"STEERING_PORT": str(port)}).env
        status, _, stderr = await run_toru("serve", env=env)
    assert status == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0]
    assert "STEERING_PORT" in lines[0]


async def test_database_from_a_newer_toru_is_refused(tmp_path: Path) -> None:
    """A schema version this Toru does not know stops start-up with a clear line, exit 1."""
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "toru.db") as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name, applied_at)"
        )
        conn.execute("INSERT INTO schema_migrations VALUES (99, 'future', 0)")
    status, _, stderr = await run_toru("serve", env=ServerProcess(tmp_path).env)
    assert status == 1
    assert stderr.strip().splitlines() == [
        "toru: error: the database is at schema version 99, newer than this Toru knows "
        f"({MIGRATIONS[-1].version}); "
        "run the newer Toru or restore a backup of the data directory"
    ]


def _serving_records(log_file: Path) -> list[dict[str, object]]:
    return [r for r in read_log(log_file) if r["event"] == "toru is serving"]
