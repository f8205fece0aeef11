"""Size-rotated JSON-lines files on disk: written in worker threads, read newest first.

:class:`RotatingFile` appends whole lines to ``NAME``, rotating by size between
lines into ``NAME.1`` ... ``NAME.<backups>`` (so a tailing agent never sees half a
line), and raises its errors to its caller (the stdlib ``RotatingFileHandler``
prints them to stderr and can leave half a line behind on a full disk).
:func:`read_page` reads records back, newest first, across the rotated files,
in blocks from the end. :mod:`toru.plugins.logs` is the only writer (one task
per plugin, off the event loop); the logs API is the reader.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from toru.timestamps import iso_utc

ROTATE_BYTES = 10 * 1024 * 1024
ROTATE_KEEP = 5
LEVELS = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "critical": 50}
READ_BLOCK = 64 * 1024

Record = dict[str, Any]


def level_rank(level: Any) -> int:
    return LEVELS.get(str(level).lower(), 20)


def encode_line(record: Record) -> bytes:
    """One JSON line. A record that cannot be encoded becomes an error record saying why."""
    try:
        text = json.dumps(record, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RuntimeError) as error:  # odd keys, a cycle, a changed dict
        text = json.dumps(
            {
                "timestamp": iso_utc(time.time()),
                "level": "error",
                "message": f"could not encode a record: {error}",
                "plugin_id": str(record.get("plugin_id")),
                "source": "toru",
            }
        )
    # Lone surrogates (from a plugin's "\ud800") stay escapes instead of failing the write.
    return text.encode("utf-8", "backslashreplace") + b"\n"


@attrs.define(eq=False)
class WriteJob:
    """Records to write (then maybe close the file); once done, how it went."""

    records: list[Record]
    close: bool
    written: int = 0
    error: OSError | None = None
    done: bool = False


@attrs.define(eq=False)
class RotatingFile:
    """An append-only file rotated by size between lines, written in worker threads.

    Stands in for the stdlib ``RotatingFileHandler``, which reports its errors to
    stderr instead of raising them, and can leave half a line behind on a full disk.
    """

    path: Path
    max_bytes: int
    backups: int
    _fd: int | None = attrs.field(default=None, init=False)
    _size: int = attrs.field(default=0, init=False)  # up to the end of the last whole line
    _regular: bool = attrs.field(default=True, init=False)
    # Jobs in the writer's order. A cancelled writer abandons its thread, so two calls
    # can overlap, or one never start: the thread holding _io does every job queued
    # before its own, in order.
    _jobs: collections.deque[WriteJob] = attrs.field(factory=collections.deque, init=False)
    _io: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    def submit(self, records: list[Record], close: bool = False) -> WriteJob:
        """Queue writing *records* (then closing the file); on the event loop, no I/O."""
        job = WriteJob(records, close)
        self._jobs.append(job)
        return job

    def run(self, job: WriteJob) -> tuple[int, OSError | None]:
        """In a worker thread: do the jobs queued up to *job*, in order; *job*'s outcome.

        That is how many of its records were written, and the error that stopped the
        rest (the file is then cut back to its last whole line and reopened next time).
        """
        with self._io:
            while not job.done:
                self._do(self._jobs.popleft())  # *job* is still queued: never empty here
            return job.written, job.error

    def _do(self, job: WriteJob) -> None:
        try:
            if job.records:
                self._append_rotating(job)
        except OSError as error:
            job.error = error
            self._discard(truncate=True)
        finally:
            if job.close:
                self._discard(truncate=False)
            job.done = True

    def _append_rotating(self, job: WriteJob) -> None:
        if self._fd is None:
            self._open()
        chunk: list[bytes] = []
        chunk_size = 0
        for record in job.records:
            data = encode_line(record)
            size = self._size + chunk_size
            if self._regular and size and size + len(data) > self.max_bytes:
                self._append(chunk)
                job.written += len(chunk)
                chunk, chunk_size = [], 0
                self._rotate()
            chunk.append(data)
            chunk_size += len(data)
        self._append(chunk)
        job.written += len(chunk)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o666)  # the umask decides, as for open()
        status = os.fstat(self._fd)
        self._size, self._regular = status.st_size, stat.S_ISREG(status.st_mode)

    def _append(self, chunk: list[bytes]) -> None:
        assert self._fd is not None
        data = b"".join(chunk)
        rest = memoryview(data)
        while rest:  # a write may be short (a disk filling up); the rest follows or fails
            rest = rest[os.write(self._fd, rest) :]
        self._size += len(data)

    def _rotate(self) -> None:
        self._discard(truncate=False)
        if self.backups > 0:
            for number in range(self.backups - 1, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(self._numbered(number), self._numbered(number + 1))
            os.replace(self.path, self._numbered(1))
        else:
            os.unlink(self.path)  # nothing kept: the file starts again
        self._open()

    def _numbered(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{number}")

    def _discard(self, *, truncate: bool) -> None:
        """Close the file; with *truncate*, first cut off a partly written line."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if truncate and self._regular:
            with contextlib.suppress(OSError):  # best effort: the next open starts clean
                os.ftruncate(fd, self._size)
        with contextlib.suppress(OSError):  # the descriptor is released whatever close says
            os.close(fd)


def lines_backwards(path: Path, block: int = READ_BLOCK) -> Iterator[bytes]:
    """The lines of *path*, last first, reading *block* bytes at a time from the end.

    Memory stays at about one block plus the longest line, whatever the file's size.
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        position = os.fstat(handle.fileno()).st_size
        tail = b""
        while position > 0:
            step = min(block, position)
            position -= step
            handle.seek(position)
            chunk = handle.read(step) + tail
            first, *lines = chunk.split(b"\n")
            tail = first  # may be the end of a line that started in an earlier block
            for line in reversed(lines):
                if line:
                    yield line
        if tail:
            yield tail


def rotated_files(path: Path) -> Iterator[Path]:
    """*path*, then ``path.1``, ``path.2``, ... while they exist: newest to oldest."""
    yield path
    number = 1
    while (older := path.with_name(f"{path.name}.{number}")).exists():
        yield older
        number += 1


def read_page(
    path: Path, *, page: int, page_size: int, level: str | None
) -> tuple[list[dict[str, Any]], bool]:
    """Records newest first, across the rotated files, at or above *level*.

    Returns one page and whether there are more. Runs in a worker thread.
    """
    minimum = level_rank(level) if level else 0
    skip, wanted = page * page_size, page_size + 1
    out: list[dict[str, Any]] = []
    for file in rotated_files(path):
        for raw in lines_backwards(file):
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(record, dict) or level_rank(record.get("level")) < minimum:
                continue
            if skip:
                skip -= 1
                continue
            out.append(record)
            if len(out) == wanted:
                return out[:page_size], True
    return out, False
