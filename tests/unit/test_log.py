"""JSON log file: one object per line, secrets redacted, Hypercorn's records folded in."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import hypercorn.config
import hypercorn.logging
import pytest
import structlog
import trio

from toru.log import (
    LOG_FILE_NAME,
    LossCountingFileHandler,
    OncePerInterval,
    close_logging,
    configure_logging,
)

HYPERCORN_LOGGERS = ("hypercorn.access", "hypercorn.error")


def parse(text: str) -> list[dict[str, Any]]:
    """Every line of a log file's text, each of which must be one JSON object."""
    parsed = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(record, dict) for record in parsed)
    return parsed


def records(path: Path) -> list[dict[str, Any]]:
    return parse(path.read_text(encoding="utf-8"))


def events(path: Path, event: str) -> list[dict[str, Any]]:
    return [record for record in records(path) if record.get("event") == event]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put back every piece of global logging state configure_logging touches."""
    root = logging.getLogger()
    root_level = root.level
    saved = {}
    for name in HYPERCORN_LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = (logger.level, logger.propagate, list(logger.handlers), list(logger.filters))
    try:
        yield
    finally:
        close_logging()
        structlog.reset_defaults()
        root.setLevel(root_level)
        for name, (level, propagate, handlers, filters) in saved.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.propagate = propagate
            logger.handlers[:] = handlers
            logger.filters[:] = filters


@pytest.fixture
def log_file(tmp_path: Path, restore_logging: None) -> Path:
    return configure_logging(tmp_path, "info", console=False)


def test_log_file_path(tmp_path: Path, log_file: Path) -> None:
    """configure_logging returns LOG_DIR/toru.log."""
    assert log_file == tmp_path / LOG_FILE_NAME


def test_structlog_line_is_one_json_object(log_file: Path) -> None:
    """A structlog call becomes one JSON line with timestamp, level, logger, event and fields."""
    structlog.get_logger("toru.test").info("something happened", plugin_id="hello", count=3)

    (record,) = records(log_file)
    assert record["event"] == "something happened"
    assert record["level"] == "info"
    assert record["logger"] == "toru.test"
    assert record["plugin_id"] == "hello"
    assert record["count"] == 3
    timestamp = record["timestamp"]
    assert timestamp.endswith("Z")
    assert datetime.fromisoformat(timestamp).utcoffset() == timedelta(0)


def test_secret_fields_are_redacted(log_file: Path) -> None:
    """Fields whose names look secret are logged as "[redacted]"; others are left alone."""
    structlog.get_logger("toru.test").warning(
        "login",
        password="pw-value-1",
        token="tok-value-2",
        secret="sec-value-3",
        cookie="cookie-value-4",
        session_token="tok-value-5",
        username="alice",
    )

    (record,) = records(log_file)
    for key in ("password", "token", "secret", "cookie", "session_token"):
        assert record[key] == "[redacted]"
    assert record["username"] == "alice"
    text = log_file.read_text()
    for value in ("pw-value-1", "tok-value-2", "sec-value-3", "cookie-value-4", "tok-value-5"):
        assert value not in text


def test_stdlib_hypercorn_error_line(log_file: Path) -> None:
    """A stdlib record on hypercorn.error is written as the same kind of JSON line."""
    logging.getLogger("hypercorn.error").warning("Running on %s", "http://127.0.0.1:1")

    (record,) = records(log_file)
    assert record["event"] == "Running on http://127.0.0.1:1"
    assert record["level"] == "warning"
    assert record["logger"] == "hypercorn.error"
    assert record["timestamp"].endswith("Z")


async def test_hypercorn_access_record(
    tmp_path: Path, log_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hypercorn's access record becomes "http request" with fields and no environment values."""
    monkeypatch.setenv("TORU_TEST_FAKE_SECRET", "env-secret-must-not-leak")
    config = hypercorn.config.Config()
    config.accesslog = logging.getLogger("hypercorn.access")
    config.errorlog = logging.getLogger("hypercorn.error")
    scope: Any = {
        "type": "http",
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
        "method": "POST",
        "scheme": "http",
        "path": "/api/auth/login",
        "raw_path": b"/api/auth/login",
        "query_string": b"next=%2F",
        "root_path": "",
        "headers": [(b"user-agent", b"test-agent"), (b"authorization", b"Bearer hdr-secret")],
        "client": ("203.0.113.7", 51234),
        "server": ("127.0.0.1", 3000),
        "extensions": {},
    }
    response: Any = {
        "status": 201,
        "headers": [(b"x-request-id", b"req-123"), (b"content-length", b"42")],
    }
    await hypercorn.logging.Logger(config).access(scope, response, 0.0123)

    text = await trio.Path(log_file).read_text(encoding="utf-8")
    (record,) = parse(text)
    assert record["event"] == "http request"
    assert record["logger"] == "hypercorn.access"
    assert record["level"] == "info"
    assert record["method"] == "POST"
    assert record["path"] == "/api/auth/login"
    assert record["query"] == "next=%2F"
    assert record["status"] == 201
    assert record["duration_ms"] == 12.3
    assert record["bytes"] == 42
    assert record["remote"] == "203.0.113.7:51234"
    assert record["request_id"] == "req-123"
    assert "env-secret-must-not-leak" not in text
    assert "hdr-secret" not in text


def test_level_filtering(log_file: Path) -> None:
    """At level info, debug records from structlog and from stdlib loggers are dropped."""
    structlog.get_logger("toru.test").debug("structlog debug")
    logging.getLogger("hypercorn.error").debug("stdlib debug")
    structlog.get_logger("toru.test").info("structlog info")
    logging.getLogger("hypercorn.error").info("stdlib info")

    assert [record["event"] for record in records(log_file)] == ["structlog info", "stdlib info"]


def test_debug_level_keeps_debug(tmp_path: Path, restore_logging: None) -> None:
    """At level debug, debug records are written."""
    path = configure_logging(tmp_path, "debug", console=False)
    structlog.get_logger("toru.test").debug("structlog debug")
    logging.getLogger("hypercorn.error").debug("stdlib debug")

    assert [record["event"] for record in records(path)] == ["structlog debug", "stdlib debug"]


def test_configuring_twice_does_not_duplicate(tmp_path: Path, log_file: Path) -> None:
    """A second configure_logging replaces the handlers, so each record is written once."""
    assert configure_logging(tmp_path, "info", console=False) == log_file
    structlog.get_logger("toru.test").info("once")
    logging.getLogger("hypercorn.error").info("once too")

    assert len(events(log_file, "once")) == 1
    assert len(events(log_file, "once too")) == 1


def test_reconfiguring_moves_to_the_new_directory(tmp_path: Path, restore_logging: None) -> None:
    """After configuring a new directory, records go there and no longer to the old file."""
    old = configure_logging(tmp_path / "old", "info", console=False)
    new = configure_logging(tmp_path / "new", "info", console=False)
    structlog.get_logger("toru.test").info("moved")

    assert len(events(new, "moved")) == 1
    assert events(old, "moved") == []


def test_close_logging_detaches_the_file(log_file: Path) -> None:
    """After close_logging, records no longer reach the file."""
    structlog.get_logger("toru.test").info("before")
    close_logging()
    logging.getLogger("hypercorn.error").warning("after")

    assert [record["event"] for record in records(log_file)] == ["before"]


def check_login(username: str, password: str) -> None:
    """Stands in for any frame that holds a password when something below it fails."""
    raise RuntimeError(f"database is locked while checking {username}")


def test_exception_is_structured_in_one_line(log_file: Path) -> None:
    """An exception logged with its traceback stays one JSON line with a structured exception."""
    try:
        check_login("alice", "irrelevant")
    except RuntimeError:
        structlog.get_logger("toru.test").exception("login crashed")

    (record,) = records(log_file)
    assert record["event"] == "login crashed"
    (exception,) = record["exception"]
    assert exception["exc_type"] == "RuntimeError"
    assert exception["exc_value"] == "database is locked while checking alice"


@pytest.mark.parametrize("via", ["structlog", "stdlib"])
def test_traceback_does_not_log_local_variables(log_file: Path, via: str) -> None:
    """A logged traceback never contains the values of the failing frames' local variables."""
    try:
        check_login("alice", "local-password-must-not-leak")
    except RuntimeError:
        if via == "structlog":
            structlog.get_logger("toru.test").exception("login crashed")
        else:
            logging.getLogger("quart.app").exception("Exception on request POST /api/auth/login")

    (record,) = records(log_file)
    assert record["exception"][0]["exc_type"] == "RuntimeError"
    assert "local-password-must-not-leak" not in log_file.read_text()


def test_a_full_disk_is_counted_not_sprayed_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Records the file cannot take are counted: one stderr line, then a warning with the count."""
    path = tmp_path / "toru.log"
    handler = LossCountingFileHandler(path, encoding="utf-8")
    logger = logging.Logger("full-disk-test")
    logger.addHandler(handler)
    logger.warning("before")
    assert handler.stream is not None
    real_write = handler.stream.write

    def full(text: str) -> int:
        raise OSError(28, "No space left on device")

    handler.stream.write = full  # type: ignore[method-assign]
    for number in range(5):
        logger.warning("lost %d", number)
    assert handler.lost == 5
    assert capsys.readouterr().err.count("cannot write the log file") == 1
    handler.stream.write = real_write  # type: ignore[method-assign]
    logger.warning("after")
    handler.close()
    assert path.read_text().splitlines() == [
        "before",
        "5 log records could not be written to this file ([Errno 28] No space left on device)",
        "after",
    ]


def test_a_repeated_error_is_logged_once_per_interval_without_its_traceback() -> None:
    """Trio's EMFILE retry error, ten a second: one record a minute, with the count skipped."""
    once = OncePerInterval(interval=60)
    made = [
        logging.LogRecord("trio.serve_listeners", logging.ERROR, __file__, 1, "accept %s", ("x",),
                          (OSError, OSError(24, "Too many open files"), None))
        for _ in range(12)
    ]  # fmt: skip
    passed = [record for record in made if once.filter(record)]
    assert passed == [made[0]]
    assert passed[0].exc_info is None
    once._last -= 61  # a minute later
    late = logging.LogRecord("trio.serve_listeners", logging.ERROR, __file__, 1, "accept %s",
                             ("x",), None)  # fmt: skip
    assert once.filter(late)
    assert late.getMessage() == "accept x (11 more like it not logged)"
