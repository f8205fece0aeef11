"""Web requests forwarded to plugins through a real server: headers, bodies, status mapping."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support import (
    ADMIN_PASSWORD,
    ServerProcess,
    client,
    eventually,
    install_plugins,
    login,
    server_process,
)

REPO = Path(__file__).resolve().parents[2]
Running = tuple[ServerProcess, httpx.AsyncClient]


@pytest.fixture
async def running(
    tmp_path: Path, built_example: Path
) -> AsyncIterator[tuple[ServerProcess, httpx.AsyncClient]]:
    """A server with the Python example and the legacy Python fixture enabled, admin logged in."""
    install_plugins(
        tmp_path / "plugins",
        built_example,
        REPO / "tests" / "fixtures" / "legacy_python.binary",
        enabled=["hello-plugin-python", "legacy-python"],
    )
    async with server_process(tmp_path) as server, client(await server.start()) as http:
        await login(http, "admin", ADMIN_PASSWORD)
        yield server, http


async def test_sdk_plugin_answers_and_keeps_its_counter_in_kv(running: Running) -> None:
    """GET / reaches the plugin; its counter goes through Toru's KV store."""
    _, http = running
    index = await http.get("/api/plugins/route/hello-python/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("application/json")
    assert "instance_id" in index.json()
    for expected in (1, 2):
        bumped = await http.post("/api/plugins/route/hello-python/counter/increment")
        assert bumped.json() == {"count": expected}
    assert (await http.get("/api/plugins/route/hello-python/counter")).json() == {"count": 2}
    stored = await http.post(
        "/api/plugins/hello-plugin-python/kv", json={"action": "get", "key": "counter"}
    )
    assert stored.json() == {"value": "2"}


async def test_headers_are_cleaned_and_identity_added(running: Running) -> None:
    """Cookie, Authorization and forged X-Toru-* never reach the plugin; Toru's own do."""
    _, http = running
    echoed = await http.get(
        "/api/plugins/route/legacy-python/echo/a%20b?x=1&y=2",
        headers={"Authorization": "Bearer secret", "X-Toru-User": "mallory", "X-Custom": "kept"},
    )
    assert echoed.status_code == 200
    seen = echoed.json()
    assert seen["method"] == "GET"
    assert seen["path"] == "/echo/a%20b?x=1&y=2"
    headers = seen["headers"]
    assert "cookie" not in headers
    assert "authorization" not in headers
    assert headers["x-toru-user"] == "admin"
    assert headers["x-toru-role"] == "admin"
    assert headers["x-custom"] == "kept"
    assert headers["x-request-id"] == echoed.headers["x-request-id"]
    assert headers["x-forwarded-for"] == "127.0.0.1"


async def test_bodies_pass_through(running: Running) -> None:
    """A JSON body arrives as text; a form post with X-Toru-Request passes the CSRF rule."""
    _, http = running
    posted = await http.post("/api/plugins/route/legacy-python/echo", json={"a": 1})
    assert json.loads(posted.json()["body"]) == {"a": 1}
    form = await http.post(
        "/api/plugins/route/legacy-python/echo",
        content=b"a=1&b=2",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Toru-Request": "1"},
    )
    assert form.status_code == 200
    assert form.json()["body"] == "a=1&b=2"
    refused = await http.post(
        "/api/plugins/route/legacy-python/echo",
        content=b"a=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert refused.status_code == 403


async def test_status_mapping(running: Running) -> None:
    """Unknown route 404, plugin 404 passed through, disabled 404, crashed-and-restarting 503."""
    _, http = running
    assert (await http.get("/api/plugins/route/nope/")).status_code == 404
    missing = await http.get("/api/plugins/route/legacy-python/missing")
    assert missing.status_code == 404
    assert "not found" in missing.json()["error"]
    pid = (await http.get("/api/plugins/hello-plugin-python")).json()["pid"]
    os.kill(pid, signal.SIGKILL)

    async def not_running() -> bool:
        status = (await http.get("/api/plugins/hello-plugin-python")).json()
        return bool(status["state"] != "running")

    await eventually(not_running, within=2, what="the crash noticed")
    restarting = await http.get("/api/plugins/route/hello-python/")
    assert restarting.status_code == 503
    assert restarting.headers["retry-after"] == "2"
    assert restarting.json()["plugin"] == "hello-plugin-python"
    await http.post("/api/plugins/legacy-python/disable")
    assert (await http.get("/api/plugins/route/legacy-python/")).status_code == 404


async def test_anonymous_requests_are_refused(running: Running) -> None:
    """Plugin routes need a logged-in user."""
    server, _ = running
    async with client(server.url) as anonymous:
        assert (await anonymous.get("/api/plugins/route/hello-python/")).status_code == 401


async def test_bundle_js_with_etag_and_404s(running: Running) -> None:
    """bundle.js comes from PLUGINS_DIR/ID/bundle.js with an ETag; unknown, bundle-less or
    disabled plugins, and ids that are not ids, are 404."""
    server, http = running
    url = "/api/plugins/hello-plugin-python/bundle.js"
    first = await http.get(url)
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("application/javascript")
    assert first.content == (REPO / "examples" / "hello-plugin-python" / "bundle.js").read_bytes()
    assert first.headers["cache-control"] == "no-cache"
    again = await http.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")
    legacy = await http.get("/api/plugins/legacy-python/bundle.js")
    assert (legacy.status_code, legacy.json()["error"]) == (
        404,
        "plugin 'legacy-python' has no bundle.js",
    )
    for bad in ("%2e%2e", "no-such-plugin", "a%2Fb"):
        assert (await http.get(f"/api/plugins/{bad}/bundle.js")).status_code == 404
    await http.post("/api/plugins/hello-plugin-python/disable")
    assert (await http.get(url)).status_code == 404
    async with client(server.url) as anonymous:
        assert (await anonymous.get(url)).status_code == 401


async def test_plugin_log_file_and_logs_api(running: Running) -> None:
    """LOG_DIR/plugins/<id>.log holds only JSON lines, the plugin's own start-up lines and
    Toru's lifecycle records; the logs API returns them newest first and filters by level."""
    server, http = running
    await http.get("/api/plugins/route/legacy-python/")
    path = server.root / "logs" / "plugins" / "legacy-python.log"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert any(r.get("message") == "listening" and r.get("stream") == "stderr" for r in lines)
    assert any(r.get("event") == "ready" and r.get("source") == "toru" for r in lines)
    assert all(r["plugin_id"] == "legacy-python" for r in lines)
    page = (await http.get("/api/plugins/legacy-python/logs", params={"page_size": 3})).json()
    newest_in_file = [json.loads(line) for line in path.read_text().splitlines()][::-1]
    assert page["logs"] == newest_in_file[:3]
    assert page["has_more"] is True
    errors = await http.get("/api/plugins/legacy-python/logs", params={"level": "error"})
    assert all(e["level"] in {"error", "critical"} for e in errors.json()["logs"])
    bad = await http.get("/api/plugins/legacy-python/logs", params={"level": "loud"})
    assert bad.status_code == 400


@pytest.mark.parametrize("plugin", ["hello-python", "legacy-python"])
async def test_a_body_that_grows_past_the_frame_limit_once_encoded_is_413(
    running: Running, plugin: str
) -> None:
    """9 MiB of control bytes (under the 10 MiB body limit) is 54 MiB of JSON: 413, nothing
    sent, the plugin not restarted and still answering."""
    _, http = running
    plugin_id = {"hello-python": "hello-plugin-python", "legacy-python": "legacy-python"}[plugin]
    pid = (await http.get(f"/api/plugins/{plugin_id}")).json()["pid"]
    reply = await http.post(
        f"/api/plugins/route/{plugin}/echo",
        content=b"\x01" * (9 * 1024 * 1024),
        headers={"Content-Type": "application/octet-stream", "X-Toru-Request": "1"},
    )
    assert reply.status_code == 413, reply.text
    assert reply.json()["plugin"] == plugin_id
    assert "too large to send to plugin" in reply.json()["error"]
    assert "16 MiB frame limit" in reply.json()["error"]
    assert (await http.get(f"/api/plugins/route/{plugin}/")).status_code == 200
    status = (await http.get(f"/api/plugins/{plugin_id}")).json()
    assert (status["state"], status["pid"]) == ("running", pid)
