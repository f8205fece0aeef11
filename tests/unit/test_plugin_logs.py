"""Per-plugin log files: record shapes, flood limiting, rotation without split lines, paging."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path

import pytest
import trio

from toru.plugins import logs
from toru.plugins.logfile import lines_backwards, read_page
from toru.plugins.logs import LineSplitter, open_plugin_logs


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_json_and_plain_lines_become_records(tmp_path: Path) -> None:
    """A JSON object keeps its fields; other lines are wrapped; Toru's fields are added."""
    async with open_plugin_logs(tmp_path) as plugin_logs:
        log = plugin_logs.file("p")
        log.line("stderr", '{"level": "warn", "message": "disk low", "free": 3}', 42, 2)
        log.line("stdout", "plain text", 42, 2)
        log.line("stderr", "Traceback (most recent call last):", 42, 2)
        log.line("stdout", '["not", "an", "object"]', 42, 2)
        log.lifecycle("crashed", {"exit": "exited 1"})
        log.note("warning", "request refused", request_id=7)
    first, plain, error, array, crash, note = records(tmp_path / "plugins" / "p.log")
    assert (first["level"], first["free"], first["message"]) == ("warn", 3, "disk low")
    assert (first["plugin_id"], first["pid"], first["generation"], first["stream"]) == (
        "p",
        42,
        2,
        "stderr",
    )
    assert str(first["timestamp"]).endswith("Z")
    assert (plain["message"], plain["level"]) == ("plain text", "info")
    assert error["level"] == "error"
    assert array["message"] == '["not", "an", "object"]'
    assert (crash["event"], crash["level"], crash["source"], crash["exit"]) == (
        "crashed", "error", "toru", "exited 1"
    )  # fmt: skip
    assert (note["message"], note["level"], note["source"], note["request_id"]) == (
        "request refused", "warning", "toru", 7
    )  # fmt: skip


async def test_a_plugin_cannot_write_a_record_that_passes_for_torus(tmp_path: Path) -> None:
    """A plugin's "source": "toru" becomes plugin_source; only Toru's records carry source."""
    async with open_plugin_logs(tmp_path) as plugin_logs:
        log = plugin_logs.file("p")
        log.line("stdout", '{"source": "toru", "event": "crashed", "level": "error"}', 42, 1)
        log.lifecycle("crashed", {"exit": "exited 1", "source": "a detail"})
    fake, real = records(tmp_path / "plugins" / "p.log")
    assert "source" not in fake
    assert (fake["plugin_source"], fake["stream"], fake["pid"]) == ("toru", "stdout", 42)
    assert (real["source"], real["event"]) == ("toru", "crashed")


async def test_a_line_nested_deeper_than_python_goes_is_kept_as_text(tmp_path: Path) -> None:
    """A JSON-looking line nested 60 000 deep is not a crash of the pump: it is a plain line."""
    deep = '{"a": ' + "[" * 60_000
    async with open_plugin_logs(tmp_path) as plugin_logs:
        plugin_logs.file("p").line("stdout", deep, 42, 1)
    (record,) = records(tmp_path / "plugins" / "p.log")
    assert (record["message"], record["stream"]) == (deep, "stdout")


async def test_a_flood_is_rate_limited_with_a_count(tmp_path: Path) -> None:
    """Past the burst, lines are dropped; the next allowed line is preceded by the count."""
    clock = Clock()
    async with open_plugin_logs(tmp_path, clock=clock) as plugin_logs:
        log = plugin_logs.file("p")
        for i in range(10_000):
            log.line("stdout", f"line {i}", 1, 1)
        clock.now += 1  # a second later: 2 000 more lines allowed
        log.line("stdout", "after the flood", 1, 1)
    written = records(tmp_path / "plugins" / "p.log")
    assert len(written) == int(logs.BURST) + 2
    assert written[-2]["message"] == f"rate limit: dropped {10_000 - int(logs.BURST)} lines"
    assert written[-1]["message"] == "after the flood"


async def test_rotation_never_splits_lines_and_paging_crosses_files(tmp_path: Path) -> None:
    """Rotated files hold whole JSON lines; pages run newest first across them; level filters."""
    async with open_plugin_logs(tmp_path, max_bytes=2000, backups=20) as plugin_logs:
        log = plugin_logs.file("p")
        for i in range(100):
            log.line(
                "stdout",
                json.dumps({"message": f"m{i}", "level": "error" if i % 10 == 0 else "info"}),
                1,
                1,
            )
    path = plugin_logs.path_for("p")
    files = sorted(path.parent.glob("p.log*"))
    assert len(files) > 2
    for file in files:
        for line in file.read_text().splitlines():
            json.loads(line)
    page, more = read_page(path, page=0, page_size=5, level=None)
    assert [r["message"] for r in page] == ["m99", "m98", "m97", "m96", "m95"]
    assert more
    errors, _ = read_page(path, page=0, page_size=3, level="error")
    assert [r["message"] for r in errors] == ["m90", "m80", "m70"]
    second, _ = read_page(path, page=1, page_size=5, level=None)
    assert [r["message"] for r in second] == ["m94", "m93", "m92", "m91", "m90"]
    last, more = read_page(path, page=19, page_size=5, level=None)
    assert [r["message"] for r in last] == ["m4", "m3", "m2", "m1", "m0"]
    assert not more
    assert read_page(path, page=20, page_size=5, level=None) == ([], False)


@pytest.mark.parametrize("chunk_size", [1, 3, 17, 4096])
def test_lines_are_reassembled_across_chunks(chunk_size: int) -> None:
    """Lines split across pipe chunks of any size come out whole, the unfinished last one too."""
    data = b'first\nsecond line\n\nthird {"a": 1}\nunfinished'
    splitter = LineSplitter()
    out = []
    for i in range(0, len(data), chunk_size):
        out += splitter.feed(data[i : i + chunk_size])
    out += splitter.finish()
    assert out == [b"first", b"second line", b"", b'third {"a": 1}', b"unfinished"]


@pytest.mark.parametrize("chunk_size", [5, 64, 1000])
def test_an_over_long_line_is_cut_once_and_its_tail_dropped(chunk_size: int) -> None:
    """A line past the limit becomes one truncated record; the rest of it is not a new line."""
    data = b"short\n" + b"x" * 250 + b"\n" + b"after\n" + b"y" * 120
    splitter = LineSplitter(limit=100)
    out = []
    for i in range(0, len(data), chunk_size):
        out += splitter.feed(data[i : i + chunk_size])
    out += splitter.finish()
    assert out == [
        b"short",
        b"x" * 100 + logs.TRUNCATED,
        b"after",
        b"y" * 100 + logs.TRUNCATED,
    ]


async def test_a_plugin_line_over_64_kib_is_truncated_in_the_file(tmp_path: Path) -> None:
    """A 200 KiB line is one record of 64 KiB plus the marker; the next line is intact."""
    async with open_plugin_logs(tmp_path) as plugin_logs:
        log = plugin_logs.file("p")
        splitter = LineSplitter()
        for raw in splitter.feed(b"z" * (200 * 1024) + b"\nnext\n"):
            log.line("stdout", raw.decode(), 1, 1)
    long, after = records(tmp_path / "plugins" / "p.log")
    assert str(long["message"]).endswith("[line truncated]")
    assert len(str(long["message"])) == logs.MAX_LINE + len(logs.TRUNCATED)
    assert after["message"] == "next"


@pytest.mark.parametrize("block", [1, 7, 64, 65536])
def test_lines_backwards_reads_from_the_end_in_blocks(tmp_path: Path, block: int) -> None:
    """Whatever the block size, every line comes back once, last first; no file, no lines."""
    rng = random.Random(block)
    lines = [("é" * rng.randrange(0, 40) + str(i)).encode() for i in range(300)]
    path = tmp_path / "f"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert list(lines_backwards(path, block=block)) == lines[::-1]
    assert list(lines_backwards(tmp_path / "missing")) == []


async def test_followers_get_each_new_record_until_they_leave(tmp_path: Path) -> None:
    """Followers get each record at once, until they leave or the followers are ended."""
    async with open_plugin_logs(tmp_path) as plugin_logs:
        log = plugin_logs.file("p")
        log.line("stdout", "before", 1, 1)
        with log.follow() as first, log.follow() as second:
            log.line("stdout", "one", 1, 1)
            log.lifecycle("crashed", {"exit": "killed by SIGKILL"})
            assert first.receive_nowait()["message"] == "one"
            assert first.receive_nowait()["event"] == "crashed"
            assert second.receive_nowait()["message"] == "one"
        log.line("stdout", "after", 1, 1)
        with pytest.raises(trio.EndOfChannel):
            first.receive_nowait()
        with log.follow() as third:
            plugin_logs.end_followers()
            with pytest.raises(trio.EndOfChannel):
                third.receive_nowait()
        with log.follow() as fourth, plugin_logs.file("q").follow() as of_a_later_file:
            with pytest.raises(trio.EndOfChannel):
                fourth.receive_nowait()
            with pytest.raises(trio.EndOfChannel):
                of_a_later_file.receive_nowait()


class Lines:
    """The lines a reader thread got, in order; Trio code can wait for a count of them."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self._changed = threading.Condition()

    def extend(self, lines: list[bytes]) -> None:
        with self._changed:
            self.lines.extend(lines)
            self._changed.notify_all()

    def wait_for(self, count: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.lines) >= count, timeout=10)


def follow_by_name(path: Path, stop: threading.Event, out: Lines) -> None:
    """What ``tail -F`` and log shippers do: read to the end; when the name points at a new
    file, finish the old one, then open the new one."""
    handle = None
    inode = None
    pending = b""
    while True:
        if handle is None:
            try:
                handle = path.open("rb")
            except FileNotFoundError:
                time.sleep(0.001)
                continue
            inode = os.fstat(handle.fileno()).st_ino
        chunk = handle.read()
        if chunk:
            *lines, pending = (pending + chunk).split(b"\n")
            out.extend(lines)
            continue
        try:
            moved = os.stat(path).st_ino != inode
        except FileNotFoundError:
            moved = True
        if moved:
            rest = handle.read()  # written just before the rename
            *lines, pending = (pending + rest).split(b"\n")
            out.extend(lines)
            assert pending == b"", "a line was split across files"
            handle.close()
            handle = None
            continue
        if stop.is_set():
            handle.close()
            return
        time.sleep(0.001)


async def test_a_reader_following_by_name_gets_every_line_once_across_rotations(
    tmp_path: Path,
) -> None:
    """Three rotations and more while a reader follows ``p.log`` by name: every record
    arrives exactly once, in order, and each line is a whole JSON object."""
    path = tmp_path / "plugins" / "p.log"
    received = Lines()
    stop = threading.Event()
    reader = threading.Thread(target=follow_by_name, args=(path, stop, received))
    reader.start()
    total = 400
    try:
        async with open_plugin_logs(tmp_path, max_bytes=8000, backups=5) as plugin_logs:
            log = plugin_logs.file("p")
            for i in range(total):
                log.line("stdout", json.dumps({"message": f"m{i}", "pad": "p" * (i % 50)}), 1, 1)
                if i % 10 == 9:  # a writer's pace; the reader keeps up, as a shipper does
                    assert await trio.to_thread.run_sync(received.wait_for, i + 1)
    finally:
        stop.set()  # everything is on disk: the reader reads to the end, then stops
        await trio.to_thread.run_sync(reader.join, 10)
    assert len(list(path.parent.glob("p.log.*"))) >= 3, "at least three rotations"
    parsed = [json.loads(line) for line in received.lines]
    assert [r["message"] for r in parsed] == [f"m{i}" for i in range(total)]
