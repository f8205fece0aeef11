"""The plugin platform through a real ``toru serve``: the API, crashes, disable, restarts."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import httpx
import pytest

from tests.support import (
    ADMIN_PASSWORD,
    alive,
    client,
    eventually,
    login,
    server_process,
    write_stubborn_plugin,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture
def plugins(tmp_path: Path, built_example: Path) -> Path:
    """A plugins directory with the Python example, a legacy fixture and a broken binary."""
    plugins = tmp_path / "plugins"
    shutil.copytree(built_example, plugins)
    shutil.copy2(FIXTURES / "legacy_rust_dialect.binary", plugins)
    (plugins / "broken.binary").write_text("#!/bin/sh\nexit 1\n")
    (plugins / "broken.binary").chmod(0o755)
    (plugins / ".metadata").mkdir()
    (plugins / ".metadata" / "config.json").write_text(
        json.dumps({"plugins": {"hello-plugin-python": True, "legacy-rust-dialect": True}})
    )
    return plugins


async def plugin_list(http: httpx.AsyncClient) -> dict[str, dict[str, object]]:
    response = await http.get("/api/plugins")
    assert response.status_code == 200, response.text
    return {p["id"]: p for p in response.json()["plugins"]}


async def test_done_when_of_the_supervisor(tmp_path: Path, plugins: Path) -> None:
    """Enabled plugins run and are healthy; kill -9 is a crash then a restart within 2.5 s;
    disable reaps and persists across a server restart; the broken binary is listed."""
    async with server_process(tmp_path) as server:
        async with client(await server.start()) as http:
            assert (await login(http, "admin", ADMIN_PASSWORD)).status_code == 200
            listed = await http.get("/api/plugins")
            assert listed.json()["rejected"] == [
                {"file": "broken.binary", "reason": "--metadata exited 1"}
            ]
            found = await plugin_list(http)
            for plugin_id in ("hello-plugin-python", "legacy-rust-dialect"):
                assert (found[plugin_id]["state"], found[plugin_id]["health"]) == (
                    "running",
                    "healthy",
                )
                assert alive(found[plugin_id]["pid"])  # type: ignore[arg-type]

            tree = (await http.get("/api/system/tasks")).json()["text"]
            assert "plugin:hello-plugin-python" in tree
            assert "plugin:hello-plugin-python:pinger" in tree
            assert "plugin:legacy-rust-dialect:stderr" in tree

            # kill -9: a crash with the signal, then running again with a new pid.
            first = found["hello-plugin-python"]["pid"]
            os.kill(first, signal.SIGKILL)  # type: ignore[arg-type]
            state: dict[str, object] = {}

            async def poll() -> bool:
                state.update((await plugin_list(http))["hello-plugin-python"])
                return state["state"] == "running" and state["pid"] != first

            await eventually(poll, within=2.5, what="the plugin running again, new pid")
            events = (await http.get("/api/plugins/hello-plugin-python/events")).json()["events"]
            crash = next(e for e in events if e["event"] == "crashed")
            assert crash["details"]["exit"] == "killed by SIGKILL"

            # disable: answers after the process is gone, and config.json says so.
            pid = state["pid"]
            disabled = await http.post("/api/plugins/hello-plugin-python/disable")
            assert disabled.status_code == 200
            assert disabled.json()["state"] == "stopped"
            assert not alive(pid)  # type: ignore[arg-type]
            config = json.loads((plugins / ".metadata" / "config.json").read_text())
            assert config["plugins"]["hello-plugin-python"] is False

        server.send(signal.SIGTERM)
        assert await server.wait(10) == 0

        async with client(await server.start()) as http:
            await login(http, "admin", ADMIN_PASSWORD)
            found = await plugin_list(http)
            assert found["hello-plugin-python"]["state"] == "stopped"
            assert found["hello-plugin-python"]["enabled"] is False
            assert found["legacy-rust-dialect"]["state"] == "running"


async def test_clients_see_only_enabled_plugins_without_internals(
    tmp_path: Path, plugins: Path
) -> None:
    """A client user lists enabled plugins only, without pid, binary or errors."""
    async with server_process(tmp_path) as server:
        async with client(await server.start()) as admin:
            await login(admin, "admin", ADMIN_PASSWORD)
            await admin.post("/api/users", json={"username": "cli", "password": "client password"})
            await admin.post("/api/plugins/legacy-rust-dialect/disable")
        async with client(server.url) as http:
            await login(http, "cli", "client password")
            response = await http.get("/api/plugins")
            assert set(response.json()) == {"plugins"}
            (only,) = response.json()["plugins"]
            assert only["id"] == "hello-plugin-python"
            assert set(only) == {"id", "name", "version", "author", "icon", "route", "enabled",
                                 "running", "health", "state"}  # fmt: skip
            assert (await http.get("/api/plugins/legacy-rust-dialect")).status_code == 404
            assert (await http.post("/api/plugins/hello-plugin-python/disable")).status_code == 403


async def test_plugins_die_within_2_s_of_a_sigkilled_server(tmp_path: Path, plugins: Path) -> None:
    """SIGKILL the server: its plugins follow it (parent-death signal), nothing is orphaned."""
    async with server_process(tmp_path) as server:
        async with client(await server.start()) as http:
            await login(http, "admin", ADMIN_PASSWORD)
            pids = [p["pid"] for p in (await plugin_list(http)).values() if p["pid"]]
        assert len(pids) == 2
        server.send(signal.SIGKILL)
        await server.wait(5)
        await eventually(
            lambda: not any(alive(pid) for pid in pids),
            within=2,
            what="plugins gone",  # type: ignore[arg-type]
        )


async def test_enable_restart_and_errors_through_the_api(tmp_path: Path, plugins: Path) -> None:
    """enable/restart answer with the new status; unknown ids 404; restart of a disabled one 409."""
    async with server_process(tmp_path) as server, client(await server.start()) as http:
        await login(http, "admin", ADMIN_PASSWORD)
        before = (await plugin_list(http))["legacy-rust-dialect"]["pid"]
        restarted = await http.post("/api/plugins/legacy-rust-dialect/restart")
        assert restarted.status_code == 200
        assert restarted.json()["state"] == "running"
        assert restarted.json()["pid"] != before
        assert not alive(before)  # type: ignore[arg-type]
        await http.post("/api/plugins/legacy-rust-dialect/disable")
        refused = await http.post("/api/plugins/legacy-rust-dialect/restart")
        assert refused.status_code == 409
        assert "is disabled; enable it instead" in refused.json()["error"]
        enabled = await http.post("/api/plugins/legacy-rust-dialect/enable")
        assert (enabled.status_code, enabled.json()["state"]) == (200, "running")
        missing = await http.post("/api/plugins/nope/enable")
        assert missing.status_code == 404
        assert missing.json() == {"error": "no plugin with id 'nope'"}
        rescan = await http.post("/api/plugins/rescan")
        assert rescan.status_code == 200
        assert {p["id"] for p in rescan.json()["plugins"]} == {
            "hello-plugin-python",
            "legacy-rust-dialect",
        }


DIES = (
    "#!/bin/sh\n"
    'if [ "$1" = --metadata ]; then echo \'{"id":"dies","name":"D","version":"1",'
    '"route":"/dies"}\'; exit 0; fi\necho "no config" >&2\nexit 3\n'
)


async def test_enable_that_cannot_start_is_409_with_the_reason(tmp_path: Path) -> None:
    """Enabling a plugin that dies at once answers 409 with why; it stays enabled, in backoff."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "dies.binary").write_text(DIES)
    (plugins / "dies.binary").chmod(0o755)
    async with server_process(tmp_path) as server, client(await server.start()) as http:
        await login(http, "admin", ADMIN_PASSWORD)
        response = await http.post("/api/plugins/dies/enable")
        assert response.status_code == 409
        body = response.json()
        assert body["error"] == (
            "plugin 'dies' is enabled but did not start: exited 3 before it was ready; "
            "it is retried with backoff"
        )
        assert (body["plugin"]["enabled"], body["plugin"]["state"]) == (True, "backoff")
        events = (await http.get("/api/plugins/dies/events")).json()["events"]
        crash = next(e for e in events if e["event"] == "crashed")
        assert crash["details"]["stderr_tail"] == ["no config"]


async def test_a_second_sigterm_during_plugin_shutdown_still_ends_cleanly(tmp_path: Path) -> None:
    """SIGTERM twice while a stubborn plugin is being stopped: status 0, the plugin gone."""
    plugins = tmp_path / "plugins"
    (plugins / ".metadata").mkdir(parents=True)
    write_stubborn_plugin(plugins)
    (plugins / ".metadata" / "config.json").write_text('{"plugins": {"stubborn": true}}')
    async with server_process(tmp_path) as server:
        async with client(await server.start()) as http:
            await login(http, "admin", ADMIN_PASSWORD)
            pid = (await plugin_list(http))["stubborn"]["pid"]
        server.send(signal.SIGTERM)
        await eventually(
            lambda: "stopping" in server.log_file.read_text(), within=5, what="plugin stopping"
        )
        server.send(signal.SIGTERM)
        assert await server.wait(15) == 0
    assert not alive(pid)
    assert "toru stopped" in server.log_file.read_text()
