"""Deep JSON and lone surrogates, over HTTP and over a plugin's socket (issue I2, item 5).

Over HTTP every JSON body goes through ``json_body``: 400 with a reason, never a 500.
Over the socket a frame nested too deep, or holding a lone surrogate, is a protocol
error: the connection is dropped and the plugin restarted as for any protocol error,
never "internal error in Toru's runner" (which disabled the plugin).
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import StartServer
from tests.support import (
    ADMIN_PASSWORD,
    FAST,
    client,
    eventually,
    install_plugins,
    login,
    make_settings,
    sdk_plugin,
)
from toru.db import Database
from toru.plugins.errors import PluginUnavailable
from toru.plugins.events import EventLog
from toru.plugins.messages import HttpRequest
from toru.plugins.supervisor import Supervisor

DEEP = 100_000
TOO_DEEP = "the request body is nested deeper than 64 levels"
LONE = "the request body has an invalid Unicode escape (a lone surrogate)"

#: Bodies that used to overflow the parser's stack (500): open, and closed inside a key.
DEEP_BODIES = {
    "100000-open-brackets": "[" * DEEP,
    "deep-array-in-an-object": '{"a":' + "[" * DEEP + "]" * DEEP + "}",
}


def nested_object(depth: int) -> str:
    """``{"a":[[...]]}``: a body *depth* levels deep, the object itself included."""
    return '{"a":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


def assert_refused(response: httpx.Response, message: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json() == {"error": message}


# -- HTTP ---------------------------------------------------------------------------------


@pytest.mark.parametrize("body", DEEP_BODIES.values(), ids=DEEP_BODIES.keys())
@pytest.mark.parametrize(
    ("who", "path"),
    [("anon", "/api/auth/login"), ("admin", "/api/users"), ("admin", "/api/auth/password")],
)
async def test_deep_json_is_a_400_on_every_json_endpoint(
    anon: httpx.AsyncClient, admin: httpx.AsyncClient, who: str, path: str, body: str
) -> None:
    """100 000 nested '[' (open or closed) is a 400 naming the limit; health still answers."""
    http = anon if who == "anon" else admin
    assert_refused(await http.post(path, content=body), TOO_DEEP)
    assert (await http.get("/api/health")).status_code == 200


async def test_the_depth_limit_is_64_levels(anon: httpx.AsyncClient) -> None:
    """65 levels is refused for its depth; 64 levels parses (and fails as a bad login body)."""
    assert_refused(await anon.post("/api/auth/login", content=nested_object(65)), TOO_DEEP)
    at_limit = await anon.post("/api/auth/login", content=nested_object(64))
    assert at_limit.status_code == 400
    assert at_limit.json()["error"].startswith("invalid request: ")


async def test_brackets_inside_strings_are_not_nesting(anon: httpx.AsyncClient) -> None:
    """A password of 100 000 '[' is an ordinary (wrong) password: 401, not 400."""
    response = await login(anon, "admin", "[" * DEEP)
    assert response.status_code == 401, response.text


async def test_lone_surrogate_username_at_login_is_a_400(anon: httpx.AsyncClient) -> None:
    """A lone surrogate username is 400 (was a 500 from SQLite); a normal login still works."""
    body = r'{"username": "\ud800", "password": "x"}'
    assert_refused(await anon.post("/api/auth/login", content=body), LONE)
    assert (await login(anon, "admin", ADMIN_PASSWORD)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        r'{"username": "\ud800", "password": "long enough 1"}',
        r'{"username": "bob", "password": "long enough \udfff"}',
        r'{"username": "bob", "password": "long enough 1", "display_name": "\ude00\ud83d"}',
        r'{"username": "bob", "password": "long enough 1", "\udc00": 1}',
    ],
    ids=["username", "password", "reversed-pair", "key"],
)
async def test_lone_surrogate_in_a_new_user_is_a_400(admin: httpx.AsyncClient, body: str) -> None:
    """A lone surrogate anywhere in POST /api/users is 400 (was 500) and creates no user."""
    assert_refused(await admin.post("/api/users", content=body), LONE)
    users = (await admin.get("/api/users")).json()["users"]
    assert [user["username"] for user in users if user["username"] == "bob"] == []


async def test_an_encoded_surrogate_is_not_valid_json(anon: httpx.AsyncClient) -> None:
    """A surrogate encoded as UTF-8 bytes (ED A0 80) is refused as not UTF-8 JSON."""
    body = b'{"username": "\xed\xa0\x80", "password": "x"}'
    assert_refused(
        await anon.post("/api/auth/login", content=body), "the request body is not valid JSON"
    )


async def test_a_surrogate_pair_is_one_character(admin: httpx.AsyncClient) -> None:
    """An emoji escaped as a surrogate pair (what json.dumps sends) is accepted as itself."""
    body = json.dumps({"username": "emoji", "password": "long enough 1", "display_name": "😀"})
    assert "\\ud83d\\ude00" in body
    created = await admin.post("/api/users", content=body)
    assert created.status_code == 201, created.text
    assert created.json()["display_name"] == "😀"
    async with client(str(admin.base_url)) as http:
        assert (await login(http, "emoji", "long enough 1")).status_code == 200


@pytest.fixture
async def kv_admin(start_server: StartServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client of a server with one enabled SDK plugin, "notes" (its KV exists)."""
    settings = make_settings(tmp_path)
    sdk_plugin(install_plugins(settings.plugins_dir, enabled=["notes"]), "notes")
    running = await start_server(settings)
    async with client(running.url) as http:
        assert (await login(http, "admin", ADMIN_PASSWORD)).status_code == 200
        yield http


@pytest.mark.parametrize(
    ("body", "message"),
    [
        *((body, TOO_DEEP) for body in DEEP_BODIES.values()),
        (r'{"action": "set", "key": "k", "value": "\ud800"}', LONE),
        (r'{"action": "get", "key": "\udbff"}', LONE),
    ],
    ids=[*DEEP_BODIES.keys(), "lone-value", "lone-key"],
)
async def test_kv_refuses_deep_json_and_lone_surrogates(
    kv_admin: httpx.AsyncClient, body: str, message: str
) -> None:
    """The browser KV endpoint answers 400 for them (404 first if no plugin), then works."""
    assert_refused(await kv_admin.post("/api/plugins/notes/kv", content=body), message)
    assert (await kv_admin.post("/api/plugins/nobody/kv", content=body)).status_code == 404
    ok = await kv_admin.post("/api/plugins/notes/kv", json={"action": "get", "key": "k"})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"value": None}


# -- the plugin socket ----------------------------------------------------------------------

#: A modern stdlib plugin. After ``init`` it sends ``bad_frame.json`` (when the file is
#: there), and answers the first HTTP request with ``bad_reply.json`` (its REQUEST_ID
#: replaced), each once: the files are renamed when used, so the restarted process
#: behaves. Otherwise it answers pings and requests, and exits on shutdown.
PLUGIN = """\
import json, os, sys, time

import corpus_wire

corpus_wire.metadata("misbehaves-once", modern=True)


def once(name):
    path = corpus_wire.here(name)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as file:
        data = file.read()
    os.replace(path, path + ".used")
    return data


conn = corpus_wire.accept_modern(corpus_wire.listen())
if (bad := once("bad_frame.json")) is not None:
    corpus_wire.write_raw(conn, bad)
while (message := corpus_wire.read_frame(conn)) is not None:
    if message["type"] == "http":
        if (bad := once("bad_reply.json")) is not None:
            request_id = json.dumps(message["request_id"]).encode()
            corpus_wire.write_raw(conn, bad.replace(b"REQUEST_ID", request_id))
        else:
            reply = {"status": 200, "headers": {}, "body": "fine"}
            answer = corpus_wire.envelope("http", message["request_id"], reply)
            corpus_wire.write_frame(conn, answer)
    elif corpus_wire.action(message) == "ping":
        pong = corpus_wire.envelope("lifecycle", message["request_id"], {"action": "pong"})
        corpus_wire.write_frame(conn, pong)
    elif corpus_wire.action(message) == "shutdown":
        sys.exit(0)
while True:  # Toru dropped the connection: wait for its SIGTERM
    time.sleep(3600)
"""
CORPUS_WIRE = Path(__file__).resolve().parents[1] / "reliability" / "corpus" / "corpus_wire.py"
PLUGIN_ID = "misbehaves-once"
Start = Callable[[], Awaitable[Supervisor]]


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    """A plugins directory holding the misbehaving plugin, enabled."""
    plugins = install_plugins(tmp_path / "plugins", enabled=[PLUGIN_ID])
    binary = plugins / f"{PLUGIN_ID}.binary"
    binary.write_text(f"#!{sys.executable}\n{textwrap.dedent(PLUGIN)}")
    shutil.copy2(CORPUS_WIRE, plugins / "corpus_wire.py")  # the wire helpers the corpus shares
    binary.chmod(0o755)
    return plugins


@pytest.fixture
async def start(tmp_path: Path, plugins: Path) -> AsyncIterator[Start]:
    """Start a Supervisor over *plugins* with a real database; stopped afterwards."""
    async with Database.open(tmp_path / "toru.db") as db, trio.open_nursery() as nursery:

        async def run() -> Supervisor:
            supervisor = Supervisor(
                plugins_dir=plugins,
                events=EventLog(db),
                instance_id="test-instance",
                timing=FAST,
                rescan_interval=3600,
            )
            await nursery.start(supervisor.run)
            return supervisor

        yield run
        nursery.cancel_scope.cancel()


async def events_of(supervisor: Supervisor) -> list[dict[str, Any]]:
    return list(reversed(await supervisor.events.list(PLUGIN_ID, limit=1000)))


async def restarted_after(supervisor: Supervisor, reason: str) -> None:
    """Wait until the plugin runs again, restarted once because of *reason*; and check it
    was never failed (nor disabled) on the way."""

    def running_again() -> bool:
        status = supervisor.status(PLUGIN_ID)
        return status.state == "running" and status.restart_count == 1

    await eventually(running_again, within=15, what="the plugin running again after a restart")
    status = supervisor.status(PLUGIN_ID)
    assert status.last_error == f"connection lost: plugin {PLUGIN_ID!r}: protocol error: {reason}"
    assert status.enabled
    assert status.health == "healthy"
    events = await events_of(supervisor)
    assert "failed" not in {event["event"] for event in events}
    backoff = [event["details"]["reason"] for event in events if event["event"] == "backoff"]
    assert backoff == [status.last_error]


BAD_FRAMES = {
    "100000-open-brackets": (b"[" * DEEP, "frame is nested deeper than 128 levels"),
    "deep-payload": (
        b'{"type":"lifecycle","request_id":null,"payload":' + b"[" * DEEP + b"]" * DEEP + b"}",
        "frame is nested deeper than 128 levels",
    ),
    "lone-surrogate": (
        b'{"type":"lifecycle","request_id":null,"payload":{"type":"lifecycle","action":"\\ud800"}}',
        "frame has an invalid Unicode escape (a lone surrogate)",
    ),
}


@pytest.mark.parametrize(("frame", "reason"), BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_a_bad_frame_after_init_drops_the_connection_and_restarts(
    plugins: Path, start: Start, frame: bytes, reason: str
) -> None:
    """A too-deep or lone-surrogate frame drops the connection: a restart, never 'failed'."""
    (plugins / "bad_frame.json").write_bytes(frame)
    with trio.fail_after(30):
        supervisor = await start()
        await restarted_after(supervisor, reason)
    assert (plugins / "bad_frame.json.used").exists()


BAD_REPLIES = {
    "deep-body": (
        b'{"type":"http","request_id":REQUEST_ID,"payload":{"status":200,"body":'
        + b"[" * DEEP
        + b"]" * DEEP
        + b"}}",
        "frame is nested deeper than 128 levels",
    ),
    "lone-surrogate-body": (
        b'{"type":"http","request_id":REQUEST_ID,"payload":{"status":200,"body":"\\udfff"}}',
        "frame has an invalid Unicode escape (a lone surrogate)",
    ),
    "lone-surrogate-header": (
        b'{"type":"http","request_id":REQUEST_ID,"payload":{"status":200,'
        b'"headers":{"x-name":"\\ud800"},"body":"ok"}}',
        "frame has an invalid Unicode escape (a lone surrogate)",
    ),
}


@pytest.mark.parametrize(("reply", "reason"), BAD_REPLIES.values(), ids=BAD_REPLIES.keys())
async def test_a_bad_http_reply_is_a_502_and_a_restart(
    plugins: Path, start: Start, reply: bytes, reason: str
) -> None:
    """A too-deep or lone-surrogate HTTP reply is a 502 and a restart; then it answers."""
    (plugins / "bad_reply.json").write_bytes(reply)
    with trio.fail_after(30):
        supervisor = await start()
        with pytest.raises(PluginUnavailable) as refused:
            await supervisor.request(PLUGIN_ID, HttpRequest("GET", "/"))
        assert refused.value.status == 502
        assert reason in str(refused.value)
        await restarted_after(supervisor, reason)
        reply_now = await supervisor.request(PLUGIN_ID, HttpRequest("GET", "/"))
    assert (reply_now.status, reply_now.body) == (200, b"fine")
