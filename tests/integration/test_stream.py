"""``GET /api/stream``: every open browser hears of plugin changes, each in its own view."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import httpx
import trio

from tests.conftest import CLIENT_PASSWORD, StartServer
from tests.support import (
    ADMIN_PASSWORD,
    EventStream,
    client,
    login,
    make_settings,
    server_process,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_python.binary"


async def test_enable_and_disable_reach_every_open_stream(
    start_server: StartServer, tmp_path: Path
) -> None:
    """An admin's and a client's streams both see a plugin enabled and disabled, live: the
    admin its disabled status, the client (shown enabled plugins only) ``removed``."""
    settings = make_settings(tmp_path)
    settings.plugins_dir.mkdir()
    shutil.copy2(FIXTURE, settings.plugins_dir)
    running = await start_server(settings)
    async with client(running.url) as admin, client(running.url) as user:
        await login(admin, "admin", ADMIN_PASSWORD)
        await admin.post("/api/users", json={"username": "carol", "password": CLIENT_PASSWORD})
        await login(user, "carol", CLIENT_PASSWORD)
        with trio.fail_after(15):
            admin_lines = await EventStream.open(running.url, admin.cookies["session_id"])
            user_lines = await EventStream.open(running.url, user.cookies["session_id"])
            async with admin_lines.stream, user_lines.stream:
                assert "content-type: text/event-stream" in admin_lines.headers
                event, data = await admin_lines.next_event()
                assert event == "snapshot"
                assert [p["id"] for p in data["plugins"]] == ["legacy-python"]
                assert await user_lines.next_event() == ("snapshot", {"plugins": []})

                assert (await admin.post("/api/plugins/legacy-python/enable")).status_code == 200
                seen = {}
                while seen.get("state") != "running":
                    event, seen = await user_lines.next_event()
                    assert event == "plugin"
                assert "pid" not in seen  # the public view only
                assert seen["enabled"] is True
                while True:
                    event, full = await admin_lines.next_event()
                    if full["state"] == "running":
                        break
                assert isinstance(full["pid"], int)

                await admin.post("/api/plugins/legacy-python/disable")
                while event == "plugin" and seen["enabled"]:
                    event, seen = await user_lines.next_event()
                assert (event, seen) == ("removed", {"id": "legacy-python"})
                while full["state"] != "stopped":
                    event, full = await admin_lines.next_event()
                assert full["enabled"] is False


async def test_stream_needs_a_login(start_server: StartServer, tmp_path: Path) -> None:
    """Anonymous callers get 401, not a stream."""
    running = await start_server(make_settings(tmp_path))
    async with httpx.AsyncClient(base_url=running.url) as anonymous:
        assert (await anonymous.get("/api/stream")).status_code == 401


async def test_open_streams_end_when_the_server_stops(tmp_path: Path) -> None:
    """SIGTERM ends open status and log streams at once: each browser sees its stream end
    (and stops listening) instead of a connection cut at the end of the 5 s drain."""
    root = tmp_path / "server"
    (root / "plugins").mkdir(parents=True)
    shutil.copy2(FIXTURE, root / "plugins")
    ended: list[float] = []

    async def follow(http: httpx.AsyncClient, path: str, opened: trio.Event) -> None:
        async with http.stream("GET", path) as response:
            assert response.status_code == 200
            opened.set()
            async for _ in response.aiter_lines():
                pass
        ended.append(trio.current_time())

    async with server_process(root) as server, client(await server.start()) as admin:
        await login(admin, "admin", ADMIN_PASSWORD)
        assert (await admin.post("/api/plugins/legacy-python/enable")).status_code == 200
        with trio.fail_after(4):  # under the 5 s drain
            async with trio.open_nursery() as nursery:
                for path in ("/api/stream", "/api/plugins/legacy-python/logs/stream"):
                    opened = trio.Event()
                    nursery.start_soon(follow, admin, path, opened)
                    await opened.wait()
                stopped_at = trio.current_time()
                server.send(signal.SIGTERM)
        print(f"streams ended {max(ended) - stopped_at:.3f} s after SIGTERM")
        assert len(ended) == 2
        assert await server.wait(10) == 0
