"""Which plugins are enabled: ``PLUGINS_DIR/.metadata/config.json``.

The file is ``{"plugins": {"<id>": true|false}}``, pretty-printed with sorted
keys. A plugin missing from it is disabled until an admin enables it. Toru
reads it once at start-up and keeps it in memory, which is what the server
obeys; every change is written atomically and durably (temporary file in the
same directory, fsync, rename, fsync of the directory), so a crash at any
moment leaves either the old or the new file, never a partial one. A change
the disk cannot take still holds in memory (a disable must hold on a full
disk), and the caller is told (:class:`NotSaved`).

The file is also the operator's: top-level keys and plugin ids Toru does not
know are kept as they are. A file that cannot be understood is copied aside to
``config.json.corrupt-<UTC timestamp>`` (never lost) and Toru starts with every
plugin disabled.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import structlog
import trio

log = structlog.get_logger("toru.plugins")

METADATA_DIR = ".metadata"
CONFIG_NAME = "config.json"
CORRUPT_INFIX = ".corrupt-"
TEMP_PREFIX = f".{CONFIG_NAME}."
TEMP_SUFFIX = ".tmp"
#: A temporary file older than this was left by a writer that died; it is removed at load.
STALE_TEMP_SECONDS = 60.0
FILE_MODE = 0o644


class NotSaved(Exception):
    """The enable state holds in memory but could not be written to ``config.json``."""


class CorruptConfig(Exception):
    """The enable-state file is not ``{"plugins": {...}}``; the message says what is wrong."""


def _parse(raw: bytes) -> dict[str, Any]:
    """The document in *raw*, checked for shape (values are checked by the caller)."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CorruptConfig(f"not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise CorruptConfig(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(document, dict):
        raise CorruptConfig(f"expected a JSON object, got a JSON {type(document).__name__}")
    plugins = document.setdefault("plugins", {})
    if not isinstance(plugins, dict):
        raise CorruptConfig(f"'plugins' must be an object, not a JSON {type(plugins).__name__}")
    return document


def _render(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Replace *path* with *data* so that a crash leaves the old or the new file (blocking).

    Temporary file in the same directory, written, flushed and fsynced, renamed
    over *path*, then the directory fsynced so the rename itself is durable.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fchmod(temp.fileno(), mode)
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    _fsync_directory(path.parent)


def _utc_stamp() -> str:
    return dt.datetime.now(tz=dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _back_up(path: Path, raw: bytes) -> Path:
    """Keep a copy of a corrupt file beside it; reuse an identical earlier copy (blocking)."""
    for earlier in sorted(path.parent.glob(f"{path.name}{CORRUPT_INFIX}*")):
        with contextlib.suppress(OSError):
            if earlier.read_bytes() == raw:
                return earlier  # a restart loop must not fill the directory with copies
    backup = path.with_name(f"{path.name}{CORRUPT_INFIX}{_utc_stamp()}")
    write_atomically(backup, raw)
    return backup


def _remove_stale_temps(directory: Path, now: float) -> None:
    """Remove temporary files that a writer killed mid-write left behind (blocking)."""
    with contextlib.suppress(FileNotFoundError):
        for temp in directory.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                if now - temp.lstat().st_mtime > STALE_TEMP_SECONDS:
                    temp.unlink()


def _load(path: Path) -> dict[str, Any]:
    """The document in *path*; ``{"plugins": {}}`` if missing or corrupt (blocking)."""
    _remove_stale_temps(path.parent, time.time())
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {"plugins": {}}
    try:
        return _parse(raw)
    except CorruptConfig as exc:
        backup = _back_up(path, raw)
        log.warning(
            "plugin enable state is corrupt; every plugin starts disabled",
            path=str(path),
            reason=str(exc),
            backup=str(backup),
        )
        return {"plugins": {}}


@attrs.define(eq=False)
class EnableState:
    """The enable state of every plugin: in memory, and in ``config.json`` on each change."""

    path: Path
    _document: dict[str, Any] = attrs.field(factory=lambda: {"plugins": {}}, init=False)
    _lock: trio.Lock = attrs.field(factory=trio.Lock, init=False)

    @classmethod
    def for_plugins_dir(cls, plugins_dir: Path) -> EnableState:
        return cls(plugins_dir / METADATA_DIR / CONFIG_NAME)

    async def load(self) -> dict[str, bool]:
        """Read the file (at start-up): a missing file means every plugin is disabled.

        A corrupt file is copied aside, logged, and treated as empty; values that
        are not booleans are logged and ignored (but kept in the file). Other
        errors (the file exists but cannot be read) propagate: silently disabling
        every plugin would be worse.
        """
        async with self._lock:
            document = await trio.to_thread.run_sync(_load, self.path)
            for plugin_id, value in document["plugins"].items():
                if not isinstance(value, bool):
                    log.warning(
                        "plugin enable state is not true or false; the plugin stays disabled",
                        path=str(self.path),
                        plugin_id=plugin_id,
                        value=value,
                    )
            self._document = document
            return self.snapshot

    def assign(self, plugin_id: str, enabled: bool) -> None:
        """Change the state in memory now; :meth:`save` writes it (what the server obeys is
        memory: a disable must hold even when the disk cannot take it)."""
        self._document = {**self._document, "plugins": {**self._document["plugins"]}}
        self._document["plugins"][plugin_id] = enabled

    async def save(self) -> None:
        """Write the state in memory; returns once the file is durably written.

        Calls are serialised: concurrent calls never interleave their writes, and
        the file always ends up holding the state of the last call to finish.
        Raises :class:`NotSaved` when the file cannot be written (disk full,
        read-only, I/O error): memory keeps the change, and the next successful
        save writes it.
        """
        async with self._lock:
            document = self._document
            try:
                # Not abandoned on cancellation: the file is never left half-decided.
                await trio.to_thread.run_sync(write_atomically, self.path, _render(document))
            except OSError as exc:
                raise NotSaved(
                    f"its state could not be saved to {self.path}: {exc.strerror or exc}; "
                    "fix the disk (free space?) and repeat the change to keep it over a restart"
                ) from exc

    async def set(self, plugin_id: str, enabled: bool) -> None:
        """:meth:`assign` then :meth:`save`."""
        self.assign(plugin_id, enabled)
        await self.save()

    def enabled(self, plugin_id: str) -> bool:
        """Whether *plugin_id* is enabled (from memory); a plugin absent from the file is not."""
        return self._document["plugins"].get(plugin_id) is True

    @property
    def snapshot(self) -> dict[str, bool]:
        """A copy of the state: every plugin id with a boolean value in the file."""
        return {
            plugin_id: value
            for plugin_id, value in self._document["plugins"].items()
            if isinstance(value, bool)
        }
