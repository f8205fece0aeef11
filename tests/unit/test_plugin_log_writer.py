"""The plugin log writer: batches off the event loop, order, rotation, drops, write errors,
draining on close, and a prompt end when cancelled."""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
import trio.testing

from toru.plugins import logfile, logs
from toru.plugins.logs import PluginLogs, open_plugin_logs

Record = dict[str, Any]


def records(path: Path) -> list[Record]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def messages(path: Path) -> list[str]:
    return [str(record["message"]) for record in records(path)]


class Spy:
    """Wraps the worker-thread call and notes each one. With *hold*, the first call that
    has records waits for ``release``: "inside", holding the file as a write stuck on a
    slow disk does; "outside", before it reaches the file, as a thread slow to start."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, hold: str | None = None) -> None:
        self.batches: list[int] = []
        self.threads: set[int] = set()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.closed = threading.Event()
        self.held_done = threading.Event()  # the call held "outside" has returned
        original_run = logfile.RotatingFile.run
        original_append = logfile.RotatingFile._append_rotating

        def held(where: str) -> bool:
            if hold != where or self.entered.is_set():
                return False
            self.entered.set()
            assert self.release.wait(10)
            return True

        def run(file: logfile.RotatingFile, job: logfile.WriteJob) -> tuple[int, OSError | None]:
            self.threads.add(threading.get_ident())
            was_held = False
            if job.records:
                self.batches.append(len(job.records))
                was_held = held("outside")
            try:
                return original_run(file, job)
            finally:
                if job.close:
                    self.closed.set()
                if was_held:
                    self.held_done.set()

        def append(file: logfile.RotatingFile, job: logfile.WriteJob) -> None:
            held("inside")
            original_append(file, job)

        monkeypatch.setattr(logfile.RotatingFile, "run", run)
        monkeypatch.setattr(logfile.RotatingFile, "_append_rotating", append)


async def test_records_keep_their_order_across_many_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is queued goes out in batches of at most BATCH_MAX, and the file keeps the order."""
    spy = Spy(monkeypatch)
    async with open_plugin_logs(tmp_path) as plugin_logs:
        log = plugin_logs.file("p")
        for i in range(2500):  # all queued before the writer first runs
            log.line("stdout", f"m{i}", 1, 1)
        await log.flush()
        for i in range(2500, 3500, 50):
            for j in range(i, i + 50):
                log.line("stdout", f"m{j}", 1, 1)
            await log.flush()
    assert spy.batches == [logs.BATCH_MAX, logs.BATCH_MAX, 500] + [50] * 20
    assert messages(plugin_logs.path_for("p")) == [f"m{i}" for i in range(3500)]


async def test_the_directory_is_made_and_the_file_written_in_worker_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither file() nor line() touches the disk; the writer does, never on the loop's thread."""
    spy = Spy(monkeypatch)
    async with open_plugin_logs(tmp_path) as plugin_logs:
        log = plugin_logs.file("p")
        log.line("stdout", "hello", 1, 1)
        assert not (tmp_path / "plugins").exists()
        await log.flush()
        assert messages(plugin_logs.path_for("p")) == ["hello"]
    assert spy.threads
    assert threading.get_ident() not in spy.threads


async def test_rotation_within_and_across_batches_keeps_whole_lines_and_the_newest(
    tmp_path: Path,
) -> None:
    """Files stay under max_bytes with whole lines; only `backups` rotated files are kept, and
    together they hold the newest records, in order, up to the last one."""
    async with open_plugin_logs(tmp_path, max_bytes=1000, backups=3) as plugin_logs:
        log = plugin_logs.file("p")
        for i in range(300):  # one batch, many rotations
            log.note("info", f"m{i}")
        await log.flush()
        for i in range(300, 400):  # a batch each
            log.note("info", f"m{i}")
            await log.flush()
    path = plugin_logs.path_for("p")
    files = [path.with_name("p.log.3"), path.with_name("p.log.2"), path.with_name("p.log.1"), path]
    assert sorted(path.parent.iterdir()) == sorted(files)
    kept: list[str] = []
    for file in files:
        assert 0 < file.stat().st_size <= 1000
        assert file.read_bytes().endswith(b"\n")
        kept += messages(file)
    first = int(kept[0][1:])
    assert kept == [f"m{i}" for i in range(first, 400)]


async def test_a_slow_write_does_not_block_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a write is stuck in its thread, other tasks run, records are taken and followed
    at once, and afterwards they reach the file in order."""
    spy = Spy(monkeypatch, hold="inside")
    ticked = trio.Event()

    async def ticker() -> None:
        for _ in range(20):  # timers need a running loop
            await trio.sleep(0.001)
        ticked.set()

    async with open_plugin_logs(tmp_path) as plugin_logs:
        log = plugin_logs.file("p")
        log.line("stdout", "first", 1, 1)
        await trio.to_thread.run_sync(spy.entered.wait)  # the writer is now held in its thread
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            with log.follow() as follower:
                for i in range(100):
                    log.line("stdout", f"during {i}", 1, 1)
                    assert follower.receive_nowait()["message"] == f"during {i}"
            with trio.fail_after(10):
                await ticked.wait()
        assert not spy.release.is_set()
        assert not plugin_logs.path_for("p").exists()
        spy.release.set()
    assert messages(plugin_logs.path_for("p")) == ["first"] + [f"during {i}" for i in range(100)]


async def test_a_full_queue_drops_records_and_says_how_many(tmp_path: Path) -> None:
    """Past QUEUE_CAPACITY records waiting, the rest are dropped; one warning record counts them,
    and later records are written after it."""
    async with open_plugin_logs(tmp_path) as plugin_logs:
        log = plugin_logs.file("p")
        for i in range(logs.QUEUE_CAPACITY + 10):  # no checkpoint: the writer cannot run
            log.note("info", f"m{i}")
        with log.follow() as follower:
            await log.flush()
            notice = follower.receive_nowait()
        log.note("info", "after")
    assert notice["message"] == "log writer fell behind: dropped 10 records"
    written = records(plugin_logs.path_for("p"))
    assert [r["message"] for r in written] == [
        *(f"m{i}" for i in range(logs.QUEUE_CAPACITY)),
        "log writer fell behind: dropped 10 records",
        "after",
    ]
    assert written[-2] == notice
    assert (notice["level"], notice["source"], notice["plugin_id"]) == ("warning", "toru", "p")
    assert str(notice["timestamp"]).endswith("Z")


async def test_records_dropped_for_a_full_queue_at_close_are_counted_too(tmp_path: Path) -> None:
    """Closing with a full queue: everything queued is written, then the count of the dropped."""
    async with open_plugin_logs(tmp_path) as plugin_logs:
        log = plugin_logs.file("p")
        for i in range(logs.QUEUE_CAPACITY + 3):
            log.note("info", f"m{i}")
    written = messages(plugin_logs.path_for("p"))
    assert len(written) == logs.QUEUE_CAPACITY + 1
    assert written[-1] == "log writer fell behind: dropped 3 records"


def full_disk(plugins: Path) -> Path:
    """``p.log`` on a device where every write fails with ENOSPC, as on a full disk."""
    plugins.mkdir()
    (plugins / "p.log").symlink_to("/dev/full")
    return plugins / "p.log"


def no_directory(plugins: Path) -> Path:
    """A file where the plugins directory should be: the log cannot be created."""
    plugins.write_text("")
    return plugins


@pytest.mark.parametrize(
    ("make_failing", "error_text"),
    [(full_disk, "No space left on device"), (no_directory, "File exists")],
)
async def test_failed_writes_are_counted_reported_once_and_the_writer_goes_on(
    tmp_path: Path, make_failing: Any, error_text: str
) -> None:
    """Records that cannot be written are counted; Toru logs one warning for the streak; once
    writing works again an error record says how many were lost, and writing goes on."""
    plugins = tmp_path / "plugins"
    in_the_way = make_failing(plugins)
    with structlog.testing.capture_logs() as captured:
        async with open_plugin_logs(tmp_path) as plugin_logs:
            log = plugin_logs.file("p")
            for i in range(3):
                log.line("stdout", f"lost {i}", 1, 1)
            await log.flush()
            log.line("stdout", "lost 3", 1, 1)  # a second failing batch, the same streak
            await log.flush()
            in_the_way.unlink()  # room again
            log.line("stdout", "kept", 1, 1)
            await log.flush()
            log.line("stdout", "still written", 1, 1)
    notice, *rest = records(plugin_logs.path_for("p"))
    assert notice["message"].startswith("could not write 4 records: [Errno ")
    assert error_text in notice["message"]
    assert (notice["level"], notice["source"], notice["plugin_id"]) == ("error", "toru", "p")
    assert [r["message"] for r in rest] == ["kept", "still written"]
    warnings = [entry for entry in captured if entry["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["plugin_id"] == "p"
    assert warnings[0]["path"] == str(plugin_logs.path_for("p"))
    assert warnings[0]["count"] == 3
    assert error_text in warnings[0]["error"]


def log_file_descriptors(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The descriptors ``os.open`` gives for plugin log files, as they are opened."""
    opened: set[int] = set()
    real_open = os.open

    def remember(path: Any, flags: int, mode: int = 0o777) -> int:
        fd = real_open(path, flags, mode)
        if Path(path).parent.name == "plugins":
            opened.add(fd)
        return fd

    monkeypatch.setattr(os, "open", remember)
    return opened


async def test_a_write_that_fails_half_way_leaves_no_half_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short write, then ENOSPC: the file is cut back to its last whole line."""
    failing = threading.Event()
    log_fds = log_file_descriptors(monkeypatch)
    real_write = os.write

    def short_then_full(fd: int, data: Any) -> int:
        if not failing.is_set() or fd not in log_fds:
            return real_write(fd, data)
        if len(data) > 10:
            return real_write(fd, bytes(data[:10]))  # half a line reaches the disk...
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # ...then the disk is full

    monkeypatch.setattr(os, "write", short_then_full)
    async with open_plugin_logs(tmp_path) as plugin_logs:
        log = plugin_logs.file("p")
        log.line("stdout", "before", 1, 1)
        await log.flush()
        failing.set()
        log.line("stdout", "cut", 1, 1)
        await log.flush()
        failing.clear()
        log.line("stdout", "after", 1, 1)
    assert messages(plugin_logs.path_for("p")) == [
        "before",
        "could not write 1 records: [Errno 28] No space left on device",
        "after",
    ]


async def test_a_batch_failing_after_a_rotation_counts_only_what_was_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records written before the failure stay; exactly the others are counted lost."""
    failing = threading.Event()
    log_fds = log_file_descriptors(monkeypatch)
    writes_while_failing: list[int] = []
    real_write = os.write

    def first_then_full(fd: int, data: Any) -> int:
        if failing.is_set() and fd in log_fds:
            writes_while_failing.append(fd)
            if len(writes_while_failing) > 1:  # the write after the first rotation
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", first_then_full)
    async with open_plugin_logs(tmp_path, max_bytes=1000, backups=5) as plugin_logs:
        log = plugin_logs.file("p")
        failing.set()
        for i in range(20):  # one batch, a rotation after every few records
            log.note("info", f"m{i}")
        await log.flush()
        failing.clear()
        log.note("info", "after")
    path = plugin_logs.path_for("p")
    kept = messages(path.with_name("p.log.1")) + messages(path)
    notice = f"could not write {20 - (len(kept) - 2)} records: [Errno 28] No space left on device"
    assert kept == [*(f"m{i}" for i in range(len(kept) - 2)), notice, "after"]
    assert 0 < len(kept) - 2 < 20


async def test_close_drains_what_is_queued_and_run_returns(tmp_path: Path) -> None:
    """After close(), run() returns once every file has written all it had queued."""
    async with trio.open_nursery() as nursery:
        plugin_logs = await nursery.start(PluginLogs(tmp_path).run)
        for plugin_id in ("a", "b"):
            log = plugin_logs.file(plugin_id)
            for i in range(3000):
                log.note("info", f"{plugin_id}{i}")
        plugin_logs.close()
    for plugin_id in ("a", "b"):
        path = plugin_logs.path_for(plugin_id)
        assert messages(path) == [f"{plugin_id}{i}" for i in range(3000)]


async def test_after_close_records_are_dropped_and_file_refuses(tmp_path: Path) -> None:
    """Closed: records on a file already made are dropped silently; file() raises."""
    async with open_plugin_logs(tmp_path) as plugin_logs:
        log = plugin_logs.file("p")
        log.line("stdout", "kept", 1, 1)
        plugin_logs.close()
        log.line("stdout", "dropped", 1, 1)
        log.lifecycle("stopped", {})
        log.note("info", "dropped too")
        with pytest.raises(RuntimeError, match="not running"):
            plugin_logs.file("q")
    assert messages(plugin_logs.path_for("p")) == ["kept"]
    with pytest.raises(RuntimeError, match="not running"):
        PluginLogs(tmp_path).file("p")


async def test_a_service_runs_once(tmp_path: Path) -> None:
    """run() on a service that has run already raises instead of serving no one."""
    async with open_plugin_logs(tmp_path) as plugin_logs:
        pass
    with pytest.raises(RuntimeError, match="have run already"):
        await plugin_logs.run()


async def test_a_cancelled_service_still_writes_what_is_queued(tmp_path: Path) -> None:
    """Cancelled with a healthy disk: the queued records are written before run() returns."""
    with trio.CancelScope() as scope:
        async with open_plugin_logs(tmp_path) as plugin_logs:
            log = plugin_logs.file("p")
            for i in range(100):
                log.note("info", f"m{i}")
            scope.cancel()
            await trio.sleep_forever()
    assert messages(plugin_logs.path_for("p")) == [f"m{i}" for i in range(100)]


async def test_cancelling_run_with_a_stuck_write_returns_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """A write stuck in its thread does not hold a cancelled run() past WRITER_GRACE; the loss
    is logged, and the file is still written, in order, and closed once the thread is free."""
    spy = Spy(monkeypatch, hold="inside")
    with structlog.testing.capture_logs() as captured:
        async with trio.open_nursery() as nursery:
            plugin_logs = await nursery.start(PluginLogs(tmp_path).run)
            log = plugin_logs.file("p")
            log.line("stdout", "stuck", 1, 1)
            await trio.to_thread.run_sync(spy.entered.wait)
            log.line("stdout", "queued", 1, 1)
            cancelled_at = trio.current_time()
            nursery.cancel_scope.cancel()
    assert trio.current_time() - cancelled_at == pytest.approx(logs.WRITER_GRACE)
    (warning,) = [entry for entry in captured if entry["log_level"] == "warning"]
    assert (warning["plugin_id"], warning["count"]) == ("p", 2)
    spy.release.set()
    assert await trio.to_thread.run_sync(spy.closed.wait, 10)
    assert messages(plugin_logs.path_for("p")) == ["stuck", "queued"]


async def test_an_abandoned_write_that_starts_late_keeps_the_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while a write's thread has not reached the file: the closing write does the
    earlier batch first, and the late thread writes nothing twice."""
    spy = Spy(monkeypatch, hold="outside")
    async with trio.open_nursery() as nursery:
        plugin_logs = await nursery.start(PluginLogs(tmp_path).run)
        log = plugin_logs.file("p")
        log.line("stdout", "first", 1, 1)
        await trio.to_thread.run_sync(spy.entered.wait)
        log.line("stdout", "second", 1, 1)
        nursery.cancel_scope.cancel()
    assert spy.closed.is_set()
    assert messages(plugin_logs.path_for("p")) == ["first", "second"]
    spy.release.set()
    assert await trio.to_thread.run_sync(spy.held_done.wait, 10)
    assert messages(plugin_logs.path_for("p")) == ["first", "second"]
