"""The plugin's log: one JSON object per line on stderr, which Toru files under the plugin.

Every line has ``timestamp`` (RFC 3339, UTC, ``Z``), ``level`` and ``message``,
then the caller's fields. Lines are pure ASCII (non-ASCII is JSON-escaped), so
they survive any locale; a traceback goes in one ``exception`` field, its
newlines escaped, so one record is always one line.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any, TextIO

from toru.plugins.envelope import utc_timestamp

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_RESERVED = ("timestamp", "level", "message")


class Logger:
    """JSON-lines logger for plugin code: ``plugin.log.info("saved", key="counter")``.

    Records below ``level`` (``"info"`` by default; one of ``LEVELS``) are
    dropped. Writing never raises: a log line is not worth a failed request.
    """

    def __init__(self, *, level: str = "info", stream: TextIO | None = None) -> None:
        self.level = level
        # None means "sys.stderr at the time of writing", so redirection keeps working.
        self._stream = stream

    @property
    def level(self) -> str:
        return self._level

    @level.setter
    def level(self, value: str) -> None:
        if value not in LEVELS:
            raise ValueError(f"log level {value!r} is invalid: use one of {', '.join(LEVELS)}")
        self._level = value

    def debug(self, message: str, **fields: Any) -> None:
        self._write("debug", message, fields)

    def info(self, message: str, **fields: Any) -> None:
        self._write("info", message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._write("warning", message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._write("error", message, fields)

    def exception(self, message: str, exc: BaseException | None = None, **fields: Any) -> None:
        """An error with the traceback of *exc* (default: the current one) in ``exception``."""
        exc = exc if exc is not None else sys.exception()
        if exc is not None:
            fields["exception"] = "".join(traceback.format_exception(exc)).rstrip()
        self._write("error", message, fields)

    def _write(self, level: str, message: str, fields: dict[str, Any]) -> None:
        if LEVELS[level] < LEVELS[self._level]:
            return
        record: dict[str, Any] = {
            "timestamp": utc_timestamp(),
            "level": level,
            "message": message,
        }
        for key, value in fields.items():
            # A field may not overwrite the three that every reader relies on.
            record[f"field_{key}" if key in _RESERVED else key] = value
        line = json.dumps(record, ensure_ascii=True, default=str, separators=(",", ":"))
        stream = self._stream if self._stream is not None else sys.stderr
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed or its reader gone: nothing useful left to do with the line
