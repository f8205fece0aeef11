"""``GET /api/system/tasks`` and ``toru tasks``: the live task tree of a running server."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from tests.conftest import RunningServer
from tests.support import ADMIN_PASSWORD, read_log, run_toru, server_process


def _paths_to(node: dict[str, Any], fragment: str) -> list[list[dict[str, Any]]]:
    """Every root-to-node path ending at a task whose name contains *fragment*."""
    found = [[node]] if fragment in node["name"] else []
    for child in node["children"]:
        found += [[node, *path] for path in _paths_to(child, fragment)]
    return found


def _cli_env(**extra: str) -> dict[str, str]:
    """The test's environment without Toru settings, plus *extra*."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TORU_", "STEERING_", "ADMIN_"))
    }
    return {**env, **extra}


async def test_tasks_endpoint_refuses_anonymous_and_clients(
    anon: httpx.AsyncClient, client_user: httpx.AsyncClient
) -> None:
    """Anonymous callers get 401 and client users 403, with a JSON error."""
    anonymous = await anon.get("/api/system/tasks")
    assert anonymous.status_code == 401
    assert isinstance(anonymous.json()["error"], str)
    as_client = await client_user.get("/api/system/tasks")
    assert as_client.status_code == 403
    assert isinstance(as_client.json()["error"], str)


async def test_tasks_endpoint_shows_the_http_server_under_the_root(
    admin: httpx.AsyncClient,
) -> None:
    """An admin gets the tree from Trio's root down to Hypercorn, and the same tree as text."""
    response = await admin.get("/api/system/tasks")
    assert response.status_code == 200, response.text
    body = response.json()
    tree = body["tree"]
    assert (tree["name"], tree["system"]) == ("<init>", True)
    paths = _paths_to(tree, "toru.server.serve_http")
    assert len(paths) == 1, paths
    serve_http = paths[0][-1]
    assert serve_http["system"] is False
    # Hypercorn's own tasks hang below ours: the tree goes all the way down.
    assert _paths_to(serve_http, "hypercorn."), serve_http
    assert "toru.server.serve_http" in body["text"]
    assert body["text"].splitlines()[0] == "<init>"


async def test_tasks_cli_needs_the_admin_password() -> None:
    """Without ADMIN_PASSWORD, ``toru tasks`` says so in one line and exits 2."""
    status, out, err = await run_toru("tasks", env=_cli_env())
    assert status == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert "ADMIN_PASSWORD is not set" in err


async def test_tasks_cli_reports_a_refused_login(server: RunningServer) -> None:
    """A wrong ADMIN_PASSWORD: one line with the server's reason and the status, exit 1."""
    status, out, err = await run_toru(
        "tasks", "--url", server.url, env=_cli_env(ADMIN_PASSWORD="not the password")
    )
    assert status == 1
    assert out == ""
    assert err.splitlines() == [
        f"toru: error: login as 'admin' at {server.url} refused: "
        "wrong username or password (HTTP 401)"
    ]


@pytest.mark.slow
async def test_tasks_cli_prints_a_running_servers_tree(tmp_path: Path) -> None:
    """``toru tasks`` logs in to a real ``toru serve`` (by --url or by STEERING_*) and draws it."""
    async with server_process(tmp_path) as server:
        url = await server.start()
        status, out, err = await run_toru(
            "tasks", "--url", url, env=_cli_env(ADMIN_PASSWORD=ADMIN_PASSWORD)
        )
        assert (status, err) == (0, ""), err
        assert out.splitlines()[0] == "<init>"
        assert any(line.endswith("── toru.server.serve_http") for line in out.splitlines()), out

        address = urlsplit(url)
        assert address.hostname is not None
        assert address.port is not None
        status, out, err = await run_toru(
            "tasks",
            env=_cli_env(
                ADMIN_PASSWORD=ADMIN_PASSWORD,
                STEERING_HOST=address.hostname,
                STEERING_PORT=str(address.port),
            ),
        )
        assert (status, err) == (0, ""), err
        assert "serve_http" in out

        # Each run logged in once and out again: no session is left behind.
        assert [r["event"] for r in read_log(server.log_file)].count("login") == 2
        assert await trio.to_thread.run_sync(_session_count, tmp_path / "data" / "toru.db") == 0


def _session_count(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM sessions").fetchone()
    return int(count)


@pytest.mark.slow
async def test_tasks_cli_says_when_the_server_is_not_running(tmp_path: Path) -> None:
    """Once the server has stopped, ``toru tasks`` fails in one line naming the URL, exit 1."""
    async with server_process(tmp_path) as server:
        url = await server.start()
        server.send(signal.SIGTERM)
        assert await server.wait(10) == 0
    with trio.fail_after(30):
        status, out, err = await run_toru(
            "tasks", "--url", url, env=_cli_env(ADMIN_PASSWORD=ADMIN_PASSWORD)
        )
    assert status == 1
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"toru: error: cannot reach Toru at {url}: ")
    assert err.rstrip().endswith("; is it running?")
