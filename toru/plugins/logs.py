"""Per-plugin log files: ``LOG_DIR/plugins/<id>.log``, one JSON object per line.

Every line a plugin writes on stdout or stderr becomes one record. A line that
is a JSON object keeps its fields (its own ``level`` and ``message``) and gets
Toru's added (``timestamp`` if missing, ``plugin_id``, ``pid``, ``generation``,
``stream``); any other line is wrapped as ``{"message": ..., "level": "info"}``
(stdout) or ``"error"`` (stderr). Toru's lifecycle records for the plugin go to
the same file, and only they carry ``"source": "toru"``: a plugin's own
``source`` field is kept as ``plugin_source``, so a plugin cannot fake them.
Files rotate by size between records (10 MiB, 5 kept), so a tailing agent never
sees half a line. A plugin that floods (over 2 000 lines/s
sustained) is rate-limited, with a record saying how many lines were dropped.

Writing is off the event loop. Up to 2 000 lines a second per plugin, each an
``open``/``write``/``rename`` away from a slow or full disk, would stall every
request and every other plugin if done on the Trio thread. So ``line``,
``lifecycle`` and ``note`` only build the record, hand it to live followers and
queue it (:data:`QUEUE_CAPACITY` records per file); one writer task per file,
owned by :class:`PluginLogs`, takes what is queued in batches and writes each
batch in one worker thread call, where the directory is created, the file is
opened and rotated, and the JSON is encoded. Losses are said in the file itself:

* queue full (the disk is slower than the plugin): records are dropped and
  counted; when there is room again a ``warning`` record says
  ``log writer fell behind: dropped N records``;
* a failed write (``ENOSPC``, ``EIO``, a directory that cannot be written):
  the writer keeps going, the records are counted as lost, one warning per
  failure streak goes to Toru's own log (``toru.plugins.logs``), and once a
  write works again an ``error`` record says ``could not write N records: ...``.
  A partly written batch is cut back to its last whole line;
* after :meth:`PluginLogs.close`, records are dropped silently; a cancelled
  service writes what is queued within :data:`WRITER_GRACE` seconds, then gives up.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import attrs
import structlog
import trio

from toru.plugins.logfile import (
    ROTATE_BYTES,
    ROTATE_KEEP,
    Record,
    RotatingFile,
)
from toru.timestamps import iso_utc

log = structlog.get_logger("toru.plugins.logs")

RATE = 2000.0  # lines per second, sustained
BURST = 4000.0
MAX_LINE = 64 * 1024
TRUNCATED = b" [line truncated]"
#: Records a live follower may fall behind by before it is told it missed some.
FOLLOW_BUFFER = 1000
#: Records queued per file for its writer; about two seconds of a plugin at the rate limit.
QUEUE_CAPACITY = 4096
#: Records one worker-thread call writes at most (a few hundred KiB: bounded latency).
BATCH_MAX = 1000
#: Seconds a writer that is cancelled may take to write what is queued and close its file.
WRITER_GRACE = 1.0


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
class PluginLogFile:
    """One plugin's file: its flood limiter, its live followers, its queue and its writer.

    Made and run by :class:`PluginLogs`. The record methods never block and never
    raise for I/O; what is written, dropped or lost is said in the module docstring.
    Records are encoded later, in a worker thread: do not change what you pass in.
    """

    plugin_id: str
    path: Path
    clock: Callable[[], float] = time.monotonic
    max_bytes: int = ROTATE_BYTES
    backups: int = ROTATE_KEEP
    _followers: set[trio.MemorySendChannel[Record]] = attrs.field(factory=set, init=False)
    _following: bool = attrs.field(default=True, init=False)
    _tokens: float = attrs.field(default=BURST, init=False)
    _last: float = attrs.field(default=0.0, init=False)
    _dropped: int = attrs.field(default=0, init=False)  # by the rate limiter
    _file: RotatingFile = attrs.field(init=False)
    _send: trio.MemorySendChannel[Record] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[Record] = attrs.field(init=False)
    _accepting: bool = attrs.field(default=True, init=False)
    _overflow: int = attrs.field(default=0, init=False)  # dropped because the queue was full
    _lost: int = attrs.field(default=0, init=False)  # failed to write, not yet reported
    _error: str = attrs.field(default="", init=False)
    _queued: int = attrs.field(default=0, init=False)  # records ever queued ...
    _done: int = attrs.field(default=0, init=False)  # ... and ever written or lost
    _progress: trio.Event = attrs.field(factory=trio.Event, init=False)
    _ended: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self._file = RotatingFile(self.path, self.max_bytes, self.backups)
        self._send, self._receive = trio.open_memory_channel[Record](QUEUE_CAPACITY)
        self._last = self.clock()

    # -- records (on the event loop, never blocking) -----------------------------------

    def line(self, stream: str, line: str, pid: int, generation: int) -> None:
        """Record one line of the plugin's output."""
        if not self._accepting or not self._allow():
            return
        record: Record | None = None
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except (ValueError, RecursionError):  # not JSON, or nested deeper than Python goes
                parsed = None
            if isinstance(parsed, dict):
                record = parsed
                record.setdefault("timestamp", iso_utc(time.time()))
                record.setdefault("level", "info")
                # Only Toru writes "source" (its own records say "toru"): a plugin's field of
                # that name is kept as plugin_source, so no plugin line passes for Toru's.
                if "source" in record:
                    record["plugin_source"] = record.pop("source")
        if record is None:
            record = {
                "timestamp": iso_utc(time.time()),
                "message": line,
                "level": "error" if stream == "stderr" else "info",
            }
        record.update(plugin_id=self.plugin_id, pid=pid, generation=generation, stream=stream)
        self._emit(record)

    def lifecycle(self, event: str, details: dict[str, Any]) -> None:
        """Toru's own record about the plugin (started, crashed, stopped, ...)."""
        level = "error" if event in {"crashed", "failed"} else "info"
        self._emit({**self._base(level, event), **details, "event": event, "source": "toru"})

    def note(self, level: str, message: str, **details: Any) -> None:
        """A record of Toru's about this plugin that is not a lifecycle event (a refused
        or failed request, for example)."""
        self._emit({**details, **self._toru(level, message)})

    @contextmanager
    def follow(self) -> Iterator[trio.MemoryReceiveChannel[Record]]:
        """Every record from now on, as it is made (before it is on disk), while the
        ``with`` block lasts."""
        send, receive = trio.open_memory_channel[Record](FOLLOW_BUFFER)
        if self._following:
            self._followers.add(send)
        else:
            send.close()
        try:
            yield receive
        finally:
            self._followers.discard(send)
            send.close()

    def end_followers(self) -> None:
        """Live followers see the end of their stream; later ones end at once."""
        self._following = False
        for follower in self._followers:
            follower.close()
        self._followers.clear()

    async def flush(self) -> None:
        """Wait until every record queued so far is written or counted as lost (or the
        writer has ended). Readers of the file use it to see what was just recorded."""
        target = self._queued
        while self._done < target and not self._ended:
            await self._progress.wait()
        await trio.lowlevel.checkpoint()

    def _allow(self) -> bool:
        now = self.clock()
        self._tokens = min(BURST, self._tokens + (now - self._last) * RATE)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            if self._dropped:
                self._emit(self._base("warning", f"rate limit: dropped {self._dropped} lines"))
                self._dropped = 0
            return True
        self._dropped += 1
        return False

    def _base(self, level: str, message: str) -> Record:
        return {
            "timestamp": iso_utc(time.time()),
            "level": level,
            "message": message,
            "plugin_id": self.plugin_id,
        }

    def _toru(self, level: str, message: str) -> Record:
        return {**self._base(level, message), "source": "toru"}

    def _emit(self, record: Record) -> None:
        if not self._accepting:
            return
        self._to_followers(record)
        self._report_overflow()
        if self._overflow or not self._enqueue(record):
            self._overflow += 1

    def _to_followers(self, record: Record) -> None:
        for follower in list(self._followers):
            try:
                follower.send_nowait(record)
            except trio.WouldBlock:
                pass  # a follower that cannot keep up misses records; the file has them all
            except trio.BrokenResourceError:
                self._followers.discard(follower)

    def _enqueue(self, record: Record) -> bool:
        try:
            self._send.send_nowait(record)
        except trio.WouldBlock:
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._accepting = False  # the writer has ended
            return False
        self._queued += 1
        return True

    def _report_overflow(self) -> None:
        """Queue the count of records dropped for a full queue, if there is room now."""
        if self._overflow and self._accepting:
            notice = self._overflow_notice()
            if self._enqueue(notice):
                self._overflow = 0
                self._to_followers(notice)

    def _overflow_notice(self) -> Record:
        return self._toru("warning", f"log writer fell behind: dropped {self._overflow} records")

    def _close(self) -> None:
        """No more records; the writer writes what is queued, closes the file and ends."""
        if self._accepting:
            self._report_overflow()
            self._accepting = False
            self._send.close()
        self.end_followers()

    # -- the writer (a task of PluginLogs's; the file itself is touched in threads only) --

    async def _write_loop(self) -> None:
        """Write batches until closed and drained; then, or when cancelled, close the file."""
        try:
            while batch := await self._next_batch():
                self._report_overflow()  # the batch made room
                await self._write(batch)
        finally:
            rest = self._take_queued()
            self._receive.close()
            if self._overflow:  # closed while the queue was full
                rest.append(self._overflow_notice())
                self._queued, self._overflow = self._queued + 1, 0
            try:
                with trio.move_on_after(WRITER_GRACE, shield=True) as grace:
                    await self._write(rest, close=True)
            finally:
                self._ended = True  # flush() waits no more
                self._progress.set()
            if grace.cancelled_caught:
                log.warning(
                    "plugin log writer stopped before its records were written; they may be lost",
                    plugin_id=self.plugin_id,
                    path=str(self.path),
                    count=self._queued - self._done,
                )

    async def _next_batch(self) -> list[Record]:
        """The next record, waited for, and what else is queued already (no waiting)."""
        try:
            first = await self._receive.receive()
        except trio.EndOfChannel:
            return []
        return [first, *self._take_queued(BATCH_MAX - 1)]

    def _take_queued(self, limit: int | None = None) -> list[Record]:
        taken: list[Record] = []
        while limit is None or len(taken) < limit:
            try:
                taken.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        return taken

    async def _write(self, batch: list[Record], *, close: bool = False) -> None:
        """Write *batch* in one worker thread call, after the count of records lost before."""
        notice = None
        if self._lost:
            notice = self._toru("error", f"could not write {self._lost} records: {self._error}")
        records = batch if notice is None else [notice, *batch]
        job = self._file.submit(records, close)
        written, error = await trio.to_thread.run_sync(self._file.run, job, abandon_on_cancel=True)
        if notice is not None and written:  # the loss is on record now
            written, self._lost = written - 1, 0
            self._to_followers(notice)
        if error is not None:
            if not self._lost:  # a new failure streak: say it once
                self._error = str(error)
                log.warning(
                    "could not write a plugin's log file; its records are lost until writes work",
                    plugin_id=self.plugin_id,
                    path=str(self.path),
                    error=str(error),
                    count=len(batch) - written,
                )
            self._lost += len(batch) - written
        self._done += len(batch)
        self._progress.set()
        self._progress = trio.Event()


@attrs.define(eq=False)
class PluginLogs:
    """Every plugin's log file, and the task that writes each; see :func:`open_plugin_logs`."""

    log_dir: Path
    clock: Callable[[], float] = time.monotonic
    max_bytes: int = ROTATE_BYTES
    backups: int = ROTATE_KEEP
    _files: dict[str, PluginLogFile] = attrs.field(factory=dict, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    _ran: bool = attrs.field(default=False, init=False)
    _following: bool = attrs.field(default=True, init=False)
    _closing: trio.Event = attrs.field(factory=trio.Event, init=False)
    _drained: trio.Event = attrs.field(factory=trio.Event, init=False)

    def path_for(self, plugin_id: str) -> Path:
        """Where the plugin's records go (rotated files add ``.1``, ``.2``, ...)."""
        return self.log_dir / "plugins" / f"{plugin_id}.log"

    def file(self, plugin_id: str) -> PluginLogFile:
        """The plugin's file; made, and its writer started, on first use.

        Raises :class:`RuntimeError` unless the service is running and not closed.
        """
        if self._nursery is None or self._closing.is_set():
            raise RuntimeError(
                f"the plugin logs in {self.log_dir} are not running (not started yet, or"
                f" closed): no log file for plugin {plugin_id!r}; use them inside open_plugin_logs"
            )
        file = self._files.get(plugin_id)
        if file is None:
            file = PluginLogFile(
                plugin_id,
                self.path_for(plugin_id),
                clock=self.clock,
                max_bytes=self.max_bytes,
                backups=self.backups,
            )
            if not self._following:
                file.end_followers()
            self._files[plugin_id] = file
            self._nursery.start_soon(file._write_loop, name=f"plugin-log:{plugin_id}")
        return file

    def end_followers(self) -> None:
        """End every live follower of every file now, and any opened later."""
        self._following = False
        for file in self._files.values():
            file.end_followers()

    def close(self) -> None:
        """Accept no more records (later ones are dropped silently) and end the followers;
        each writer writes what is queued, closes its file and ends. Idempotent."""
        self._closing.set()
        for file in self._files.values():
            file._close()

    async def run(
        self, *, task_status: trio.TaskStatus[PluginLogs] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the writers: started when :meth:`file` works; returns after :meth:`close`,
        once every writer has drained. Cancelled, it returns within about
        :data:`WRITER_GRACE` seconds and what is still queued may be lost. Runs once."""
        if self._ran:
            raise RuntimeError(f"the plugin logs in {self.log_dir} have run already; make new ones")
        self._ran = True
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started(self)
                await self._closing.wait()
        finally:
            self._nursery = None
            self.close()
            self._drained.set()


@asynccontextmanager
async def open_plugin_logs(
    log_dir: Path,
    *,
    drain_timeout: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    max_bytes: int = ROTATE_BYTES,
    backups: int = ROTATE_KEEP,
) -> AsyncIterator[PluginLogs]:
    """Plugin logs under *log_dir*, running for the block.

    On the way out they are closed and get up to *drain_timeout* seconds to write
    what is queued, then each writer is cancelled (and gets :data:`WRITER_GRACE`
    more). When the block itself is cancelled, the writers are too. An exception
    from the block comes out in an exception group.
    """
    logs = PluginLogs(log_dir, clock=clock, max_bytes=max_bytes, backups=backups)
    async with trio.open_nursery() as nursery:
        await nursery.start(logs.run, name="plugin-logs")
        try:
            yield logs
        finally:
            logs.close()
            with trio.move_on_after(drain_timeout, shield=True):
                await logs._drained.wait()
            nursery.cancel_scope.cancel()
