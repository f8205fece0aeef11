"""Per-plugin log files: ``LOG_DIR/plugins/<id>.log``, one JSON object per line.

Every line a plugin writes on stdout or stderr becomes one record. A line that
is a JSON object keeps its fields (its own ``level`` and ``message``) and gets
Toru's added (``timestamp`` if missing, ``plugin_id``, ``pid``, ``generation``,
``stream``); any other line is wrapped as ``{"message": ..., "level": "info"}``
(stdout) or ``"error"`` (stderr). Toru's lifecycle records for the plugin go to
the same file. Files rotate by size between records (10 MiB, 5 kept), so a
tailing agent never sees half a line. A plugin that floods (over 2 000 lines/s
sustained) is rate-limited, with a record saying how many lines were dropped.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from toru.timestamps import iso_utc

ROTATE_BYTES = 10 * 1024 * 1024
ROTATE_KEEP = 5
RATE = 2000.0  # lines per second, sustained
BURST = 4000.0
LEVELS = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "critical": 50}
MAX_LINE = 64 * 1024
TRUNCATED = b" [line truncated]"
READ_BLOCK = 64 * 1024
#: Records a live follower may fall behind by before it is told it missed some.
FOLLOW_BUFFER = 1000


def level_rank(level: Any) -> int:
    return LEVELS.get(str(level).lower(), 20)


@attrs.define
class LineSplitter:
    """Reassembles lines from a pipe's chunks; a line over *limit* bytes is cut with a marker.

    The rest of a cut line (until its newline) is dropped, not taken for a new line.
    """

    limit: int = MAX_LINE
    _pending: bytes = attrs.field(default=b"", init=False)
    _discarding: bool = attrs.field(default=False, init=False)

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        *complete, rest = (self._pending + chunk).split(b"\n")
        for line in complete:
            if self._discarding:
                self._discarding = False  # the tail of a line already cut
            elif len(line) > self.limit:
                out.append(line[: self.limit] + TRUNCATED)
            else:
                out.append(line)
        if self._discarding:
            rest = b""
        elif len(rest) > self.limit:
            out.append(rest[: self.limit] + TRUNCATED)
            rest, self._discarding = b"", True
        self._pending = rest
        return out

    def finish(self) -> list[bytes]:
        """The last line when the pipe closed without a newline."""
        rest, self._pending = self._pending, b""
        return [rest] if rest and not self._discarding else []


@attrs.define(eq=False)
class PluginLog:
    """One plugin's file, with its flood limiter and its live followers."""

    plugin_id: str
    path: Path
    clock: Callable[[], float] = time.monotonic
    max_bytes: int = ROTATE_BYTES
    backups: int = ROTATE_KEEP
    _followers: set[trio.MemorySendChannel[dict[str, Any]]] = attrs.field(factory=set, init=False)
    _following: bool = attrs.field(default=True, init=False)
    _logger: logging.Logger = attrs.field(init=False)
    _tokens: float = attrs.field(default=BURST, init=False)
    _last: float = attrs.field(default=0.0, init=False)
    _dropped: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A private logger per plugin (no propagation): only this file, only these lines.
        self._logger = logging.Logger(f"toru.plugin-file.{self.plugin_id}")
        handler = logging.handlers.RotatingFileHandler(
            self.path, maxBytes=self.max_bytes, backupCount=self.backups, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger.addHandler(handler)
        self._last = self.clock()

    def _write(self, record: dict[str, Any]) -> None:
        self._logger.info(json.dumps(record, ensure_ascii=False, default=str))
        for follower in list(self._followers):
            try:
                follower.send_nowait(record)
            except trio.WouldBlock:
                pass  # a follower that cannot keep up misses records; the file has them all
            except trio.BrokenResourceError:
                self._followers.discard(follower)

    @contextmanager
    def follow(self) -> Iterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        """Every record written from now on, while the ``with`` block lasts."""
        send, receive = trio.open_memory_channel[dict[str, Any]](FOLLOW_BUFFER)
        if self._following:
            self._followers.add(send)
        else:
            send.close()
        try:
            yield receive
        finally:
            self._followers.discard(send)
            send.close()

    def _allow(self) -> bool:
        now = self.clock()
        self._tokens = min(BURST, self._tokens + (now - self._last) * RATE)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            if self._dropped:
                self._write(self._base("warning", f"rate limit: dropped {self._dropped} lines"))
                self._dropped = 0
            return True
        self._dropped += 1
        return False

    def _base(self, level: str, message: str) -> dict[str, Any]:
        return {
            "timestamp": iso_utc(time.time()),
            "level": level,
            "message": message,
            "plugin_id": self.plugin_id,
        }

    def line(self, stream: str, line: str, pid: int, generation: int) -> None:
        """Record one line of the plugin's output."""
        if not self._allow():
            return
        record: dict[str, Any] | None = None
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                record = parsed
                record.setdefault("timestamp", iso_utc(time.time()))
                record.setdefault("level", "info")
        if record is None:
            record = {
                "timestamp": iso_utc(time.time()),
                "message": line,
                "level": "error" if stream == "stderr" else "info",
            }
        record.update(plugin_id=self.plugin_id, pid=pid, generation=generation, stream=stream)
        self._write(record)

    def lifecycle(self, event: str, details: dict[str, Any]) -> None:
        """Toru's own record about the plugin (started, crashed, stopped, ...)."""
        level = "error" if event in {"crashed", "failed"} else "info"
        self._write({**self._base(level, event), "event": event, "source": "toru", **details})

    def note(self, level: str, message: str, **details: Any) -> None:
        """A record of Toru's about this plugin that is not a lifecycle event (a refused
        or failed request, for example)."""
        self._write({**self._base(level, message), "source": "toru", **details})

    def end_followers(self) -> None:
        """Live followers see the end of their stream; later ones end at once."""
        self._following = False
        for follower in self._followers:
            follower.close()
        self._followers.clear()

    def close(self) -> None:
        for handler in self._logger.handlers:
            handler.close()
        self.end_followers()


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
