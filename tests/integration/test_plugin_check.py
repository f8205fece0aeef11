"""``toru plugin check`` against broken plugins: precise reasons, bounded time, nothing left."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support import leftover_processes, run_toru

METADATA = '{"id": "broken", "name": "Broken", "version": "1", "route": "/broken"}'
MODERN = '{"id": "broken", "name": "Broken", "version": "1", "route": "/broken", "protocol": 2}'


def make(tmp_path: Path, body: str, *, name: str = "broken.binary", mode: int = 0o755) -> Path:
    path = tmp_path / name
    path.write_text(body)
    path.chmod(mode)
    return path


def python_plugin(tmp_path: Path, metadata: str, main: str) -> Path:
    """A plugin script: prints *metadata* for --metadata, otherwise runs *main*."""
    code = textwrap.dedent(
        """\
        import json, os, signal, socket, struct, sys, time
        if sys.argv[1:] == ["--metadata"]:
            print({metadata!r})
            sys.exit(0)
        path = os.environ["TORU_PLUGIN_SOCKET"]
        """
    ).format(metadata=metadata) + textwrap.dedent(main)
    return make(tmp_path, f"#!{sys.executable}\n{code}")


async def check(binary: Path) -> tuple[int, list[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORU_", "ADMIN_"))}
    started = time.monotonic()
    status, stdout, stderr = await run_toru("plugin", "check", str(binary), env=env)
    assert "Traceback" not in stderr, stderr
    return status, stdout.splitlines(), time.monotonic() - started


@pytest.mark.parametrize(
    ("script", "mode", "reason"),
    [
        ("#!/bin/sh\necho hi\n", 0o644, "✘ metadata  not executable (chmod +x it)"),
        ("just some text\n", 0o755, "✘ metadata  not a program (the kernel cannot execute it)"),
        ("#!/bin/sh\necho boom >&2\nexit 3\n", 0o755, "✘ metadata  --metadata exited 3: boom"),
        ("#!/bin/sh\necho '{\"id\": '\n", 0o755, "✘ metadata  invalid JSON at line 2 column 1"),
        ("#!/bin/sh\necho '[1]'\n", 0o755, "✘ metadata  expected a JSON object, got a JSON list"),
        (
            '#!/bin/sh\necho \'{"id":"x","name":"X","version":"1"}\'\n',
            0o755,
            "✘ metadata  missing field 'route'",
        ),
        (
            '#!/bin/sh\necho \'{"id":"a b","name":"X","version":"1","route":"/a"}\'\n',
            0o755,
            "✘ metadata  id 'a b' has a space",
        ),
        ("#!/bin/sh\nyes\n", 0o755, "✘ metadata  --metadata printed more than 64 KiB"),
    ],
)
async def test_bad_metadata_is_reported_precisely(
    tmp_path: Path, script: str, mode: int, reason: str
) -> None:
    """Each way of failing --metadata gives its own reason and a non-zero exit."""
    status, lines, _ = await check(make(tmp_path, script, mode=mode))
    assert status == 1
    assert lines[0].startswith(reason), lines
    assert lines[-1] == "the plugin is NOT usable; see ✘ above"


async def test_hanging_metadata_fails_within_six_seconds(tmp_path: Path) -> None:
    """A plugin whose --metadata never returns is reported in about 5 s and killed."""
    binary = make(tmp_path, f"#!/bin/sh\nexec sleep 300 # {tmp_path}\n")
    status, lines, took = await check(binary)
    assert status == 1
    assert lines[0] == "✘ metadata  --metadata timed out after 5 s"
    assert took < 6.5
    assert leftover_processes(str(tmp_path)) == []


async def test_plugin_that_never_listens(tmp_path: Path) -> None:
    """A plugin that runs but never creates its socket fails the socket step after 5 s."""
    binary = python_plugin(tmp_path, METADATA, "time.sleep(300)\n")
    status, lines, took = await check(binary)
    assert status == 1
    assert any(line.startswith("✘ socket    nothing listened on") for line in lines), lines
    assert took < 9
    assert leftover_processes(str(tmp_path)) == []


async def test_plugin_that_exits_at_once(tmp_path: Path) -> None:
    """A plugin that dies on start is reported with its exit status and last stderr line."""
    binary = python_plugin(
        tmp_path, METADATA, "print('no config found', file=sys.stderr)\nsys.exit(4)\n"
    )
    status, lines, took = await check(binary)
    assert status == 1
    assert "✘ socket    the plugin exited 4 before listening: no config found" in lines
    assert took < 3


IGNORES_EVERYTHING = """
signal.signal(signal.SIGTERM, signal.SIG_IGN)
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen()
while True:
    conn, _ = server.accept()
    conn.recv(65536)
    conn.close()
"""


async def test_plugin_that_ignores_shutdown_and_sigterm(tmp_path: Path) -> None:
    """A legacy plugin ignoring requests and SIGTERM: each step says so; SIGKILL ends it."""
    binary = python_plugin(tmp_path, METADATA, IGNORES_EVERYTHING)
    status, lines, took = await check(binary)
    assert status == 1
    assert "✔ ping      no ping support (legacy): liveness comes from exchanges" in lines
    assert "✘ GET /     plugin 'broken' closed the connection without replying" in lines
    assert any(
        line.startswith("✘ shutdown  ignored shutdown and SIGTERM; SIGKILL after") for line in lines
    ), lines
    assert "✔ clean-up  no process left behind" in lines
    assert "✔ clean-up  the plugin left its socket file; removed it" in lines
    assert took < 30
    assert leftover_processes(str(tmp_path)) == []


async def test_modern_plugin_that_never_pongs(tmp_path: Path) -> None:
    """A plugin claiming protocol 2 but not answering pings fails the ping step."""
    binary = python_plugin(
        tmp_path, MODERN, IGNORES_EVERYTHING.replace("conn.close()", "time.sleep(60)")
    )
    status, lines, _ = await check(binary)
    assert status == 1
    assert "✘ ping      plugin 'broken' did not answer the ping request within 5 s" in lines
    assert leftover_processes(str(tmp_path)) == []


FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.mark.parametrize("name", ["legacy_python.binary", "legacy_rust_dialect.binary"])
async def test_legacy_fixtures_pass_without_ping_support(name: str) -> None:
    """Both old dialects are usable: a connection per exchange, no pings, GET / answered."""
    status, lines, _ = await check(FIXTURES / name)
    assert status == 0, lines
    assert "protocol 1 (legacy: a connection per exchange)" in lines[0]
    assert "✔ ping      no ping support (legacy): liveness comes from exchanges" in lines
    assert any(line.startswith("✔ GET /     200 in") for line in lines), lines
    assert any(line.startswith("✔ shutdown  exited 0") for line in lines), lines
    assert lines[-1] == "the plugin is usable"
