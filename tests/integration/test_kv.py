"""Plugin key-value storage: limits, scoping, the socket path from a real SDK plugin, the API."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.support import (
    ADMIN_PASSWORD,
    client,
    login,
    plugin_connection,
    running_plugin,
    server_process,
)
from toru.db import Database
from toru.plugins.connection import ConnectionLost, PluginConnection
from toru.plugins.kv import MAX_KEYS, KvError, KvStore
from toru.plugins.messages import HttpRequest, Init, KvRequest, decode_http_reply

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello-plugin-python"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[KvStore]:
    async with Database.open(tmp_path / "toru.db") as db:
        yield KvStore(db)


async def test_set_get_delete_list(store: KvStore) -> None:
    """The four operations, with prefix listing that treats % and _ literally."""
    await store.set("p", "a/1", "one")
    await store.set("p", "a/2", "two")
    await store.set("p", "a%", "pct")
    await store.set("p", "b", "bee")
    assert await store.get("p", "a/1") == "one"
    assert await store.list("p", "a/") == ["a/1", "a/2"]
    assert await store.list("p", "a%") == ["a%"]
    assert await store.list("p") == ["a%", "a/1", "a/2", "b"]
    assert await store.delete("p", "b") is True
    assert await store.delete("p", "b") is False
    assert await store.get("p", "b") is None
    await store.set("p", "a/1", "uno")
    assert await store.get("p", "a/1") == "uno"


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("", "v", "key must be 1 to 256 bytes of UTF-8, got 0"),
        ("é" * 129, "v", "key must be 1 to 256 bytes of UTF-8, got 258"),
        ("k", "x" * (1024 * 1024 + 1), "value of 1048577 bytes exceeds the 1048576 byte limit"),
    ],
)
async def test_limits(store: KvStore, key: str, value: str, reason: str) -> None:
    """Keys of 1..256 bytes and values up to 1 MiB; anything else is refused, nothing stored."""
    with pytest.raises(KvError, match=reason):
        await store.set("p", key, value)
    assert await store.list("p") == []


async def test_key_count_limit(store: KvStore) -> None:
    """10 000 keys per plugin: a new key past that is refused; updating an old one is fine."""

    def fill(conn: object) -> None:
        conn.executemany(  # type: ignore[attr-defined]
            "INSERT INTO plugin_kv VALUES ('p', ?, 'v', 0)", [(f"k{i}",) for i in range(MAX_KEYS)]
        )

    await store.db.transaction(fill)
    with pytest.raises(KvError, match="already stores 10000 keys"):
        await store.set("p", "one-more", "v")
    await store.set("p", "k1", "changed")
    await store.set("other", "k", "v")  # the limit is per plugin


async def test_plugins_cannot_reach_each_others_keys(store: KvStore) -> None:
    """A plugin's handler only ever sees that plugin's keys."""
    await store.set("b", "secret", "b's")
    as_a = store.handler_for("a")
    assert (await as_a(KvRequest("get", "secret"))).value is None
    assert (await as_a(KvRequest("list", ""))).keys == []
    await as_a(KvRequest("set", "secret", "a's"))
    assert await store.get("b", "secret") == "b's"
    bad = await as_a(KvRequest("set", "", "v"))
    assert bad.error == "key must be 1 to 256 bytes of UTF-8, got 0"


async def test_sdk_example_counter_goes_through_the_store(store: KvStore, tmp_path: Path) -> None:
    """The real example plugin's counter lives in SQLite, via its socket and our handler."""
    plugin_py = tmp_path / "plugin.binary"
    plugin_py.write_text(f"#!{sys.executable}\n" + (EXAMPLE / "plugin.py").read_text())
    plugin_py.chmod(0o755)
    async with (
        running_plugin(plugin_py, tmp_path / "p.sock", "hello-plugin-python", "i") as plugin,
        plugin_connection(plugin) as framed,
        trio.open_nursery() as nursery,
    ):
        connection = PluginConnection(
            framed, "hello-plugin-python", store.handler_for("hello-plugin-python")
        )

        async def read() -> None:
            with contextlib.suppress(ConnectionLost):
                await connection.run()

        nursery.start_soon(read)
        await connection.notify(Init("i", str(plugin.socket), ""))
        for expected in (1, 2):
            reply = await connection.request(HttpRequest("POST", "/counter/increment"), timeout=10)
            assert json.loads(decode_http_reply(reply).body) == {"count": expected}
        assert await store.get("hello-plugin-python", "counter") == "2"
        nursery.cancel_scope.cancel()


async def kv(http: httpx.AsyncClient, **body: str) -> httpx.Response:
    return await http.post("/api/plugins/legacy-python/kv", json=body)


async def test_browser_api_persists_across_kill_and_restart(tmp_path: Path) -> None:
    """POST /api/plugins/{id}/kv: set, get, delete; an acknowledged set survives SIGKILL."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy2(REPO / "tests" / "fixtures" / "legacy_python.binary", plugins)
    async with server_process(tmp_path) as server:
        async with client(await server.start()) as http:
            await login(http, "admin", ADMIN_PASSWORD)
            assert (await kv(http, action="get", key="k")).status_code == 404  # not enabled
            await http.post("/api/plugins/legacy-python/enable")
            assert (await kv(http, action="get", key="k")).json() == {"value": None}
            assert (await kv(http, action="set", key="k", value="v1")).json() == {"value": "v1"}
            bad = await kv(http, action="drop", key="k")
            assert bad.status_code == 400
            assert bad.json()["error"] == "unknown action 'drop'; use get, set or delete"
            assert (await kv(http, action="set", key="", value="v")).status_code == 400
        server.send(signal.SIGKILL)
        await server.wait(5)
        async with client(await server.start()) as http:
            await login(http, "admin", ADMIN_PASSWORD)
            assert (await kv(http, action="get", key="k")).json() == {"value": "v1"}
            await http.post("/api/plugins/legacy-python/disable")
            assert (await kv(http, action="get", key="k")).status_code == 404
            await http.post("/api/plugins/legacy-python/enable")
            assert (await kv(http, action="Get", key="k")).json() == {"value": "v1"}
            await kv(http, action="delete", key="k")
            assert (await kv(http, action="get", key="k")).json() == {"value": None}
