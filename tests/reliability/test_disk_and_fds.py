"""A full disk and a process out of file descriptors: ``toru serve`` stays up, says what
happened and what to do, and works again once the operator has fixed the machine."""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.reliability.helpers import (
    install_fixture,
    open_fds,
    running_toru,
    short_tmpdir,
    write_config,
)
from tests.support import EventStream, alive, eventually, write_stubborn_plugin
from toru.api.errors import storage_full
from toru.db import Database
from toru.plugins.enablement import NotSaved
from toru.plugins.kv import FULL_REPLY, KvStore
from toru.plugins.messages import KvRequest

LEGACY = "legacy-python"
STUBBORN = "stubborn"
#: The shutdown ladder (DESIGN.md): 5 s for the plugin to leave, 2 s after SIGTERM, then
#: SIGKILL and the reap (2 s budget). A disable must answer within that, plus a margin for
#: a busy two-core machine; it may not wait on the disk.
LADDER_BOUND = 5 + 2 + 2 + 6
#: Small enough to fill in a moment, large enough for the server's database, logs and the
#: two plugins (about 1 MiB together) with room to spare before the filler takes the rest.
TMPFS_SIZE = "24m"
#: A KV value as large as Toru takes: bigger than the space left in the database's WAL
#: file, so its write must grow a file on the full disk (a small one might fit in it).
BIG_VALUE = "v" * (1024 * 1024)
#: Server log events that mean a request or a runner failed with a bug, not a full disk.
CRASH_EVENTS = {"unhandled error in request handler", "plugin runner failed; the plugin is stopped"}
#: The last line of a traceback: the exception that was raised.
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Group)\b.*")


# -- what counts as "the disk is full" (cheap, no root) ------------------------------------


def sqlite_full_error(path: Path) -> sqlite3.Error:
    """A real SQLITE_FULL from SQLite, made with a page limit instead of a full disk."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE t (v TEXT)")
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(sqlite3.Error) as caught:
            conn.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
        return caught.value
    finally:
        conn.close()


def raised(error: BaseException, *, cause: BaseException | None, hide: bool = False) -> Exception:
    """*error* raised while *cause* was handled (or ``from None`` with *hide*), as caught."""
    try:
        try:
            raise cause if cause is not None else ValueError("no cause")
        except BaseException:
            if hide:
                raise error from None
            raise error  # noqa: B904 - an implicit context is what this builds
    except Exception as caught:
        return caught


def test_storage_full_names_a_full_disk_and_nothing_else(tmp_path: Path) -> None:
    """SQLITE_FULL, ENOSPC and EDQUOT are "full" (also as a cause or inside a group); a
    locked database, a permission error or a context hidden with ``from None`` are not."""
    full = sqlite_full_error(tmp_path / "t.db")
    assert "database or disk is full" in str(full)
    enospc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert storage_full(full) == "database or disk is full"
    assert storage_full(enospc) == "no space left on device"
    assert storage_full(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))) == "disk quota exceeded"
    assert storage_full(raised(NotSaved("not saved"), cause=enospc)) == "no space left on device"
    group = ExceptionGroup("several", [ValueError("x"), full])
    assert storage_full(group) == "database or disk is full"

    assert storage_full(sqlite3.OperationalError("database is locked")) is None
    assert storage_full(OSError(errno.EACCES, os.strerror(errno.EACCES))) is None
    assert storage_full(raised(RuntimeError("bug"), cause=enospc, hide=True)) is None


async def test_a_plugin_is_told_its_storage_is_full(tmp_path: Path) -> None:
    """A KV set over the socket that SQLite cannot write gets a reply that says the storage
    is full and what to do (not "internal error"), and stores nothing; later ones work."""
    async with Database.open(tmp_path / "toru.db") as db:
        handle = KvStore(db).handler_for("p")

        def limit_to_current_size(conn: sqlite3.Connection) -> None:
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {pages}")

        await db.run(limit_to_current_size)
        reply = await handle(KvRequest("set", "big", BIG_VALUE))
        assert reply.error == FULL_REPLY
        assert (await handle(KvRequest("get", "big"))).value is None

        await db.run(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
        assert (await handle(KvRequest("set", "big", BIG_VALUE))).error is None
        assert (await handle(KvRequest("get", "big"))).value == BIG_VALUE


# -- a full disk under a real server (root: a tmpfs) ---------------------------------------


@contextmanager
def small_tmpfs(mount_point: Path) -> Iterator[Path]:
    """A TMPFS_SIZE tmpfs mounted at *mount_point*, unmounted on the way out."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; CI runs as root")
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")
    try:
        yield mount_point
    finally:
        # Lazy when busy (a process that still has a file open there): gone once it closes.
        if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(path: Path) -> int:
    """Write *path* until the file system holding it has no byte left; the bytes written."""
    written = 0
    with path.open("wb", buffering=0) as filler:
        for chunk in (b"\0" * (1024 * 1024), b"\0" * 4096, b"\0"):
            while True:
                try:
                    written += filler.write(chunk) or 0
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
        os.fsync(filler.fileno())
    return written


async def health_probe(url: str, seen: list[int], stop: trio.Event) -> None:
    """``GET /api/health`` on a connection of its own, until *stop*; each status into *seen*."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        while not stop.is_set():
            seen.append((await http.get("/api/health")).status_code)
            with trio.move_on_after(0.2):  # a sample every 0.2 s: there is no event to wait on
                await stop.wait()


async def kv(
    http: httpx.AsyncClient, action: str, key: str, value: str | None = None
) -> httpx.Response:
    """The browser's KV call for the legacy plugin."""
    body = {"action": action, "key": key, "value": value}
    return await http.post(f"/api/plugins/{LEGACY}/kv", json=body)


@pytest.mark.slow
async def test_a_full_disk_stops_nothing(tmp_path: Path) -> None:
    """On a full disk a disable still stops the process within the ladder bound and says the
    state was not saved (507), a KV set answers 507 saying the disk is full, health and the
    list answer 200; once space is freed, enable, KV and disable work and are saved."""
    with small_tmpfs(tmp_path / "disk") as disk, short_tmpdir() as tmpdir:
        # The server's three directories on the small disk; its stderr stays on the real one.
        for name in ("data", "logs", "plugins"):
            (disk / name).mkdir()
            (tmp_path / name).symlink_to(disk / name)
        install_fixture(disk / "plugins")
        write_stubborn_plugin(disk / "plugins")
        write_config(disk / "plugins", {LEGACY: True, STUBBORN: True})
        async with running_toru(tmp_path, tmpdir=tmpdir) as toru:
            stubborn = await toru.wait_running(STUBBORN)
            await toru.wait_running(LEGACY)
            filled = await trio.to_thread.run_sync(fill, disk / "filler")
            print(f"\nfilled the tmpfs with {filled / 2**20:.1f} MiB")
            health: list[int] = []
            stop_probe = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(health_probe, toru.server.url, health, stop_probe)

                started = trio.current_time()
                with trio.fail_after(LADDER_BOUND):
                    response = await toru.http.post(f"/api/plugins/{STUBBORN}/disable")
                took = trio.current_time() - started
                print(f"disable on the full disk: {response.status_code} in {took:.2f} s")
                print(f"  {response.json()['error']}")
                assert response.status_code == 507, response.text
                body = response.json()
                assert "could not be saved" in body["error"], body
                assert "no space left on device" in body["error"].lower(), body
                assert "free space" in body["error"], body
                assert body["plugin"]["state"] == "stopped", body
                assert body["plugin"]["enabled"] is False, body
                assert not alive(stubborn["pid"])

                # Repeat until a write needs more room than the database's files already
                # have (the first usually does); every answer is "stored" or "disk full".
                stored: list[str] = []
                with trio.fail_after(30):
                    for attempt in range(8):
                        response = await kv(toru.http, "set", f"big-{attempt}", BIG_VALUE)
                        if response.status_code != 200:
                            break
                        stored.append(f"big-{attempt}")
                print(f"KV set on the full disk: {response.status_code} after {len(stored)} "
                      f"stored; {response.json()['error']}")  # fmt: skip
                assert response.status_code == 507, response.text
                refused = f"big-{len(stored)}"
                assert response.json()["error"] == (
                    "the disk holding Toru's data is full (database or disk is full); "
                    "free some space and try again"
                )
                with trio.fail_after(10):
                    listed = await toru.http.get("/api/plugins")
                assert listed.status_code == 200, listed.text
                states = {p["id"]: p["state"] for p in listed.json()["plugins"]}
                assert states == {LEGACY: "running", STUBBORN: "stopped"}
                stop_probe.set()
            assert health and set(health) == {200}, health
            assert toru.server.process is not None and toru.server.process.poll() is None

            (disk / "filler").unlink()
            with trio.fail_after(LADDER_BOUND):
                response = await toru.http.post(f"/api/plugins/{STUBBORN}/enable")
            assert response.status_code == 200, response.text
            assert response.json()["state"] == "running"
            with trio.fail_after(10):
                assert (await kv(toru.http, "set", "after", "freed")).status_code == 200
                assert (await kv(toru.http, "get", "after")).json() == {"value": "freed"}
                # Nothing acknowledged was lost, nothing refused was half-stored.
                for key in stored:
                    assert (await kv(toru.http, "get", key)).json() == {"value": BIG_VALUE}
                assert (await kv(toru.http, "get", refused)).json() == {"value": None}
                response = await toru.http.post(f"/api/plugins/{LEGACY}/disable")
            assert response.status_code == 200, response.text
            assert response.json()["state"] == "stopped"
            saved = json.loads((disk / "plugins" / ".metadata" / "config.json").read_text())
            assert saved["plugins"] == {LEGACY: False, STUBBORN: True}
            assert toru.server.process.poll() is None
            toru.server.send(signal.SIGTERM)
            assert await toru.server.wait(30) == 0
            faults = [r for r in toru.server_log() if r["event"] in CRASH_EVENTS]
            assert faults == [], faults
        # While toru.log's disk is full, each record that cannot be written makes Python's
        # logging print its "--- Logging error ---" traceback here: expected, and the only
        # kind of traceback there may be (anything else is a crash or a bug on the way).
        stderr = (tmp_path / "stderr.txt").read_text()
        logging_errors = stderr.count("--- Logging error ---")
        print(f"server stderr: {len(stderr.splitlines())} lines, {logging_errors} logging errors")
        assert stderr.count("Traceback (most recent call last)") == logging_errors
        raised_there = {line for line in stderr.splitlines() if EXCEPTION_LINE.match(line)}
        assert raised_there <= {"OSError: [Errno 28] No space left on device"}, raised_there
