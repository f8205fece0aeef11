"""Structured logs: JSON lines in ``LOG_DIR/toru.log``, a readable console on stdout.

Toru's own code logs through structlog (sync methods only: the async ones need
asyncio); libraries that use the standard ``logging`` module, Hypercorn above
all, go through the same processors, so every line in the file is one JSON
object with ``timestamp`` (ISO 8601, UTC), ``level``, ``logger`` and ``event``.
The file rotates by size between records, so a tailing agent never sees a
split line.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LOG_FILE_NAME = "toru.log"
SUPERVISOR_LOG_NAME = "plugin-supervisor.log"
#: Plugin lifecycle events also go to their own file, for agents that tail only those.
SUPERVISOR_LOGGER = "toru.plugins.events"
ROTATE_BYTES = 20 * 1024 * 1024
ROTATE_KEEP = 5

_SECRET_KEY = re.compile(
    r"password|passwd|secret|token|cookie|authorization|api_?key|session", re.IGNORECASE
)
_installed: list[logging.Handler] = []


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Replace the value of any field whose name looks secret, wherever it came from."""
    for key in event_dict:
        if _SECRET_KEY.search(key) and event_dict[key] is not None:
            event_dict[key] = "[redacted]"
    return event_dict


def redact_query(query: str) -> str:
    """A query string with the values of secret-looking parameters replaced."""
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    if not any(_SECRET_KEY.search(name) for name, _ in pairs):
        return query
    return urllib.parse.urlencode(
        [(name, "[redacted]" if _SECRET_KEY.search(name) else value) for name, value in pairs]
    )


class HypercornAccessFilter(logging.Filter):
    """Turn Hypercorn's access-log atoms into fields instead of one formatted string.

    A filter on the ``hypercorn.access`` logger runs once per record, before any
    handler formats it (the formatters clear ``record.args``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args if isinstance(record.args, Mapping) else {}
        fields: dict[str, Any] = {
            "method": atoms.get("m"),
            "path": atoms.get("U"),
            "status": _int_or_none(atoms.get("s")),
            "duration_ms": round((_int_or_none(atoms.get("D")) or 0) / 1000, 3),
            "bytes": _int_or_none(atoms.get("b")),
            "remote": atoms.get("h"),
        }
        if query := atoms.get("q"):
            fields["query"] = redact_query(str(query))
        request_id = atoms.get("{x-request-id}o")
        if request_id and request_id != "-":
            fields["request_id"] = request_id
        record.toru_fields = fields
        record.msg, record.args = "http request", ()
        return True


class LossCountingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating JSON-lines file that says what it lost instead of flooding stderr.

    The stdlib handler prints a traceback to stderr for every record it cannot
    write (a full disk: dozens a second). This one counts them, says so once per
    failure streak on stderr, and writes a warning with the count before the
    next record it manages to write.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lost = 0
        self._lost_error = ""
        self._failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.lost:
            notice = logging.LogRecord(
                record.name, logging.WARNING, __file__, 0,
                f"{self.lost} log records could not be written to this file ({self._lost_error})",
                None, None,
            )  # fmt: skip
            self._failed = False
            super().emit(notice)
            if self._failed:  # still failing: this record is lost too
                self.lost += 1
                return
            self.lost = 0
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)
            return
        self._failed = True
        if self.lost == 0:
            sys.stderr.write(
                f"toru: cannot write the log file {self.baseFilename}: {error}; counting the "
                "records lost until it works again\n"
            )
            self.lost = 1
        elif record.levelno != logging.WARNING or record.pathname != __file__:
            self.lost += 1  # (the notice itself is not counted)
        self._lost_error = str(error)


class OncePerInterval(logging.Filter):
    """Lets one record through per *interval* seconds, without its traceback.

    For Trio's ``accept returned EMFILE ... retrying`` error, which it logs with a
    traceback ten times a second while the server is out of file descriptors.
    """

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self._last = -interval
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._last < self.interval:
            self._suppressed += 1
            return False
        self._last = now
        if self._suppressed:
            record.msg = f"{record.msg} ({self._suppressed} more like it not logged)"
            self._suppressed = 0
        record.exc_info, record.exc_text = None, None
        return True


def _record_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    if record is not None and (fields := getattr(record, "toru_fields", None)):
        event_dict.update(fields)
    return event_dict


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _drop_record(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("_record", None)
    event_dict.pop("_from_structlog", None)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        redact_secrets,
    ]


def configure_logging(log_dir: Path, level: str = "info", *, console: bool = True) -> Path:
    """Send every log record to ``log_dir/toru.log`` (JSON) and, optionally, the console.

    Safe to call again (tests do): the handlers it installed before are replaced.
    Returns the path of the JSON log file.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / LOG_FILE_NAME
    numeric_level = logging.getLevelNamesMapping()[level.upper()]

    foreign_chain: list[Processor] = [*_shared_processors(), _record_fields]

    def json_file(file: Path) -> logging.Handler:
        handler = LossCountingFileHandler(
            file, maxBytes=ROTATE_BYTES, backupCount=ROTATE_KEEP, encoding="utf-8"
        )
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=foreign_chain,
                processors=[
                    _drop_record,
                    # Tracebacks without local variables: a frame's locals can hold a password.
                    structlog.processors.ExceptionRenderer(
                        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
                    ),
                    structlog.processors.JSONRenderer(ensure_ascii=False, default=str),
                ],
            )
        )
        return handler

    handlers: list[logging.Handler] = [json_file(path)]
    supervisor_handler = json_file(log_dir / SUPERVISOR_LOG_NAME)
    if console:
        stream = sys.stdout
        console_handler = logging.StreamHandler(stream)
        console_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=foreign_chain,
                processors=[
                    _drop_record,
                    structlog.dev.ConsoleRenderer(
                        colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
                    ),
                ],
            )
        )
        handlers.append(console_handler)

    root = logging.getLogger()
    supervisor = logging.getLogger(SUPERVISOR_LOGGER)
    for old in _installed:
        root.removeHandler(old)
        supervisor.removeHandler(old)
        old.close()
    _installed[:] = [*handlers, supervisor_handler]
    for handler in handlers:
        root.addHandler(handler)
    supervisor.addHandler(supervisor_handler)
    root.setLevel(numeric_level)
    # Hypercorn's loggers keep their names but write through our handlers.
    for name in ("hypercorn.access", "hypercorn.error"):
        hyper = logging.getLogger(name)
        hyper.handlers.clear()
        hyper.propagate = True
        hyper.setLevel(numeric_level)
        for old_filter in [f for f in hyper.filters if isinstance(f, HypercornAccessFilter)]:
            hyper.removeFilter(old_filter)
    logging.getLogger("hypercorn.access").addFilter(HypercornAccessFilter())
    accept = logging.getLogger("trio.serve_listeners")
    for stale in [f for f in accept.filters if isinstance(f, OncePerInterval)]:
        accept.removeFilter(stale)
    accept.addFilter(OncePerInterval())

    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        cache_logger_on_first_use=False,
    )
    return path


def close_logging() -> None:
    """Flush and detach the handlers :func:`configure_logging` installed."""
    root = logging.getLogger()
    supervisor = logging.getLogger(SUPERVISOR_LOGGER)
    for handler in _installed:
        root.removeHandler(handler)
        supervisor.removeHandler(handler)
        handler.close()
    _installed.clear()
