"""A full disk and a process out of file descriptors: ``toru serve`` stays up, says what
happened and what to do, and works again once the operator has fixed the machine."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import trio

from tests.reliability.helpers import (
    PLUGIN_FAILURE_STATUSES,
    Toru,
    fd_kinds,
    install_fixture,
    open_fds,
    running_toru,
    short_tmpdir,
    write_config,
)
from tests.support import (
    ADMIN_PASSWORD,
    EventStream,
    alive,
    client,
    eventually,
    login,
    write_stubborn_plugin,
)
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
#: How Python's logging reports a record it could not write to the full disk.
ENOSPC_LINE = "OSError: [Errno 28] No space left on device"


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


def chained(error: Exception, *, cause: BaseException, hidden: bool = False) -> Exception:
    """*error* as Python leaves it when raised while *cause* was handled: ``raise error``
    (the context), or ``raise error from None`` with *hidden*."""
    error.__context__ = cause
    error.__suppress_context__ = hidden
    return error


def test_storage_full_names_a_full_disk_and_nothing_else(tmp_path: Path) -> None:
    """SQLITE_FULL, ENOSPC and EDQUOT are "full" (also as a cause or inside a group); a
    locked database, a permission error or a context hidden with ``from None`` are not."""
    full = sqlite_full_error(tmp_path / "t.db")
    assert "database or disk is full" in str(full)
    enospc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert storage_full(full) == "database or disk is full"
    assert storage_full(enospc) == "no space left on device"
    assert storage_full(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))) == "disk quota exceeded"
    not_saved = NotSaved("not saved")
    not_saved.__cause__ = enospc  # raise NotSaved(...) from exc, as EnableState.save does
    assert storage_full(not_saved) == "no space left on device"
    assert storage_full(chained(KeyError("k"), cause=full)) == "database or disk is full"
    group = ExceptionGroup("several", [ValueError("x"), full])
    assert storage_full(group) == "database or disk is full"

    assert storage_full(sqlite3.OperationalError("database is locked")) is None
    assert storage_full(OSError(errno.EACCES, os.strerror(errno.EACCES))) is None
    assert storage_full(chained(RuntimeError("bug"), cause=enospc, hidden=True)) is None


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
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        os.fsync(filler.fileno())
    return written


def serving(toru: Toru) -> bool:
    """Whether the ``toru serve`` process still runs."""
    return toru.server.process is not None and toru.server.process.poll() is None


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
                print(f"KV set on the full disk, after {len(stored)} stored: {response.text}")
                assert response.status_code == 507, response.text
                refused = f"big-{len(stored)}"
                assert response.json()["error"] == (
                    "the disk holding Toru's data is full (database or disk is full); "
                    "free some space and try again"
                )
                with trio.fail_after(10):
                    async with client(toru.server.url) as other:
                        response = await login(other, "admin", ADMIN_PASSWORD)
                    print(f"login on the full disk: {response.status_code} {response.text}")
                    assert response.status_code == 507, response.text
                    listed = await toru.http.get("/api/plugins")
                assert listed.status_code == 200, listed.text
                states = {p["id"]: p["state"] for p in listed.json()["plugins"]}
                assert states == {LEGACY: "running", STUBBORN: "stopped"}
                stop_probe.set()
            assert health, "the health probe made no request"
            assert set(health) == {200}, health
            assert serving(toru)

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
            assert serving(toru)
            toru.server.send(signal.SIGTERM)
            assert await toru.server.wait(30) == 0
            # No traceback in toru.log (a bug on the way: an unhandled error, a runner that
            # failed), no critical record (the server stopping on an error).
            faults = [r for r in toru.server_log() if "exception" in r or r["level"] == "critical"]
            assert faults == [], faults
        # While toru.log's disk is full, each record that cannot be written makes Python's
        # logging print a "--- Logging error ---" report here (with the exception being
        # handled when the record was made, a plugin's cancelled run for example): expected,
        # and the only traceback there may be; anything else is a crash or a bug.
        stderr = (tmp_path / "stderr.txt").read_text()
        before, *reports = stderr.split("--- Logging error ---\n")
        print(f"server stderr: {len(stderr.splitlines())} lines, {len(reports)} logging errors")
        assert "Traceback" not in before, before
        for report in reports:
            assert f"{ENOSPC_LINE}\nCall stack:\n" in report, report
            # A report ends with the record's arguments; nothing may follow it.
            assert "\n" not in report.rsplit("\nArguments: ", 1)[1].rstrip("\n"), report


# -- out of file descriptors ------------------------------------------------------------

#: Free descriptors left to the server under its lowered limit: few enough to use up with
#: as many held connections in a second or two, enough for the requests the test still
#: makes on its keep-alive connection (none of which opens a descriptor).
HEADROOM = 20


async def hold_until_full(toru: Toru, limit: int, held: list[EventStream]) -> None:
    """Open event streams into *held* (each one descriptor in the server, kept until we
    close it) until the server has *limit* descriptors open: every one it may have."""
    cookie = toru.http.cookies["session_id"]
    while len(open_fds(toru.pid)) < limit:
        held.append(await EventStream.open(toru.server.url, cookie))
        # Hypercorn closes a connection idle for 5 s: keep the admin's one busy, as a
        # new one could not be accepted any more.
        assert (await toru.http.get("/api/health")).status_code == 200


@pytest.mark.slow
async def test_rescan_survives_emfile(tmp_path: Path) -> None:
    """With every descriptor it may open in use, the server stays up, a rescan answers 503
    with the reason (scan_error says "Too many open files"); once connections close, the
    next rescan succeeds, scan_error clears, and the plugin runs on, never restarted."""
    install_fixture(tmp_path / "plugins")
    write_config(tmp_path / "plugins", {LEGACY: True})
    with short_tmpdir() as tmpdir:
        async with running_toru(tmp_path, tmpdir=tmpdir) as toru:
            plugin = await toru.wait_running(LEGACY)
            assert (await toru.http.get("/api/plugins")).json()["scan_error"] is None
            idle = open_fds(toru.pid)
            # The limit is set on the running server (prlimit(2), as `prlimit --pid` does):
            # it starts with its usual limit, so the number comes from what it really has
            # open, not a guess that fails start-up on another machine. A limit counts
            # descriptor numbers, so it goes above the highest one in use.
            limit = max(idle) + 1 + HEADROOM
            print(f"\nidle server with one plugin: {len(idle)} descriptors, highest {max(idle)}")
            print(f"  {sorted(fd_kinds(toru.pid).items())}")
            resource.prlimit(toru.pid, resource.RLIMIT_NOFILE, (limit, limit))
            held: list[EventStream] = []
            waiting: trio.SocketStream | None = None
            try:
                with trio.fail_after(30):
                    await hold_until_full(toru, limit, held)
                    print(f"limit {limit}: full after {len(held)} held connections")
                    # One more, which the server cannot accept: it waits in the listen
                    # backlog, and the accept loop (retried every 0.1 s) takes any
                    # descriptor that a moment's use (a periodic rescan) gives back.
                    host, port = toru.server.url.removeprefix("http://").rsplit(":", 1)
                    waiting = await trio.open_tcp_stream(host, int(port))
                    response = await toru.http.post("/api/plugins/rescan")
                    print(f"rescan: {response.status_code} {response.json()['error']}")
                    assert response.status_code == 503, response.text
                    assert "Too many open files" in response.json()["error"]
                    listed = await toru.http.get("/api/plugins")
                    assert listed.status_code == 200, listed.text
                    scan_error = listed.json()["scan_error"]
                    assert "Too many open files" in scan_error["message"], scan_error
                    assert "raise the server's file limit" in scan_error["message"], scan_error
                    assert (await toru.http.get("/api/health")).status_code == 200
                    # A legacy plugin gets a new connection per request: none can be made.
                    route = await toru.http.get(f"/api/plugins/route{plugin['route']}/")
                    print(f"plugin route: {route.status_code} {route.json()['error']}")
                    assert route.status_code in PLUGIN_FAILURE_STATUSES, route.text
                    assert "Too many open files" in route.json()["error"], route.text
            finally:
                with trio.move_on_after(5, shield=True):
                    for stream in [waiting, *(h.stream for h in held)]:
                        if stream is not None:
                            await stream.aclose()
            await eventually(
                lambda: len(open_fds(toru.pid)) <= len(idle) + 1,
                within=10,
                what="the server closing the held connections",
            )
            with trio.fail_after(30):
                response = await toru.http.post("/api/plugins/rescan")
                assert response.status_code == 200, response.text
                assert response.json()["scan_error"] is None
                after = await toru.status(LEGACY)
                assert (after["state"], after["pid"]) == ("running", plugin["pid"]), after
                route = await toru.http.get(f"/api/plugins/route{plugin['route']}/")
                assert route.status_code == 200, route.text
                assert (await toru.http.get("/api/health")).status_code == 200
            assert serving(toru)
            accept_errors = [r for r in toru.server_log() if "accept returned" in r["event"]]
            print(f"toru.log: {len(accept_errors)} 'accept returned EMFILE' records")
