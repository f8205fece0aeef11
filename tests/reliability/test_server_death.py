"""Server death: ``toru serve`` SIGKILLed with five plugins running, then started again."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
import trio

from tests.reliability.helpers import (
    children_of,
    install,
    install_fixture,
    running_toru,
    sdk_plugin,
    short_tmpdir,
    write_config,
)
from tests.support import alive, eventually

ENABLED = {
    "legacy-python": True,
    "hello-plugin-python": True,
    "modern-one": True,
    "modern-two": True,
    "forks-grandchildren": True,
}


@pytest.mark.slow
async def test_plugins_die_with_a_sigkilled_server_and_the_next_start_cleans_up(
    tmp_path: Path, built_example: Path
) -> None:
    """SIGKILL of the server: its five plugin processes are gone within 2 s (the parent-death
    signal), and the next start removes the dead run's socket directory (and kills what a
    plugin left behind in it), then runs the enabled plugins again."""
    plugins = tmp_path / "plugins"
    shutil.copytree(built_example, plugins)
    install_fixture(plugins)
    install(plugins, "forks_grandchildren.binary")
    sdk_plugin(plugins, "modern-one")
    sdk_plugin(plugins, "modern-two")
    write_config(plugins, ENABLED)
    with short_tmpdir() as tmpdir:
        async with running_toru(tmp_path, tmpdir=tmpdir) as toru:
            statuses = {s["id"]: s for s in (await toru.http.get("/api/plugins")).json()["plugins"]}
            assert {k for k, s in statuses.items() if s["state"] == "running"} == set(ENABLED)
            pids = [s["pid"] for s in statuses.values()]
            assert set(children_of(toru.pid)) == set(pids)
            grandchildren_file = plugins / "forks_grandchildren.pids"
            await eventually(grandchildren_file.exists, within=10, what="grandchildren forked")
            grandchildren = [int(p) for p in grandchildren_file.read_text().split()]
            dead_dir = toru.socket_dir()
            assert {p.name for p in dead_dir.glob("*.sock")} == {f"{i}.sock" for i in ENABLED}

            toru.server.send(signal.SIGKILL)
            killed_at = trio.current_time()
            assert await toru.server.wait(5) == -signal.SIGKILL
            await eventually(
                lambda: not any(alive(pid) for pid in pids),
                within=2,
                what="every plugin process gone",
                poll=0.005,
            )
            gone_after = trio.current_time() - killed_at
            print(f"\nall 5 plugin processes gone {gone_after * 1000:.0f} ms after the SIGKILL")
            survivors = [pid for pid in grandchildren if alive(pid)]
            print(f"grandchildren still alive after the server's death: {survivors}")
            assert dead_dir.exists()  # a SIGKILLed server cannot clean up after itself

        async with running_toru(tmp_path, tmpdir=tmpdir) as toru:
            assert not dead_dir.exists()
            assert toru.socket_dirs() == [toru.socket_dir()]
            statuses = {s["id"]: s for s in (await toru.http.get("/api/plugins")).json()["plugins"]}
            assert {k for k, s in statuses.items() if s["state"] == "running"} == set(ENABLED)
            for plugin_id in ENABLED:
                route = statuses[plugin_id]["route"]
                response = await toru.http.get(f"/api/plugins/route{route}/")
                assert response.status_code == 200, (plugin_id, response.text)
            await eventually(
                lambda: not any(alive(pid) for pid in grandchildren),
                within=2,
                what="the dead run's grandchildren gone",
            )
            (removed,) = [
                r
                for r in toru.server_log()
                if r["event"] == "removed the socket directory of a server that is gone"
            ]
            assert removed["path"] == str(dead_dir)
            assert sorted(removed["killed_pids"]) == sorted(survivors)
            # This run's own grandchildren go with a graceful stop (the group sweep).
            await eventually(
                lambda: grandchildren_file.read_text().split() != [str(p) for p in grandchildren],
                within=10,
                what="the new run's grandchildren forked",
            )
            grandchildren = [int(p) for p in grandchildren_file.read_text().split()]
            toru.server.send(signal.SIGTERM)
            assert await toru.server.wait(30) == 0
        assert not any(alive(pid) for pid in grandchildren)
        assert toru.socket_dirs() == []
