"""Settings: one frozen value built from command-line flags and the environment.

Precedence is flag, then environment variable, then default. Every check that
can fail does so here, before anything starts, with a :class:`ConfigError` that
names the setting and says how to fix it; the CLI prints it as one line and
exits with status 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000
DEFAULT_PLUGINS_DIR = Path("plugins")
DEFAULT_DATA_DIR = Path("data")
DEFAULT_LOG_DIR = Path("/var/log/toru")
DEFAULT_ADMIN_USERNAME = "admin"
DEFAULT_MAX_REQUEST_BODY_MB = 10
MAX_REQUEST_BODY_MB_LIMIT = 1024
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_PING_INTERVAL = 5.0
DEFAULT_PING_TIMEOUT = 5.0
DEFAULT_PLUGIN_REQUEST_TIMEOUT = 30.0
#: Bounds of the seconds settings: from a tenth of a second to an hour.
SECONDS_RANGE = (0.1, 3600.0)

# Shared with database users: lower-case, starts with a letter or digit.
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 1024

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(Exception):
    """A setting has a value Toru cannot start with; the message says which and how to fix it."""


@attrs.frozen
class Settings:
    """Everything Toru's server reads from its flags and environment."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    plugins_dir: Path = DEFAULT_PLUGINS_DIR
    data_dir: Path = DEFAULT_DATA_DIR
    log_dir: Path = DEFAULT_LOG_DIR
    #: Why the default log directory could not be used (logged once logging is up).
    log_dir_fallback_reason: str | None = None
    log_level: str = "info"
    admin_username: str = DEFAULT_ADMIN_USERNAME
    #: The environment admin's password; never shown by ``repr`` and never logged.
    admin_password: str = attrs.field(default="", repr=False)
    production: bool = False
    trust_proxy: bool = False
    #: The largest request body forwarded to a plugin's route; larger ones get 413.
    max_request_body: int = DEFAULT_MAX_REQUEST_BODY_MB * 1024 * 1024
    #: Modern plugins are pinged this often (seconds) ...
    ping_interval: float = DEFAULT_PING_INTERVAL
    #: ... and a ping without a pong within this long is a miss (3 in a row: restart).
    ping_timeout: float = DEFAULT_PING_TIMEOUT
    #: How long a plugin has to answer a web request (504 after that).
    plugin_request_timeout: float = DEFAULT_PLUGIN_REQUEST_TIMEOUT

    @property
    def database_path(self) -> Path:
        return self.data_dir / "toru.db"


@attrs.frozen
class _Source:
    """Where one setting's value came from, so errors can name it."""

    name: str
    value: str | None


def _pick(flag_name: str, flag_value: Any, env_name: str, env: Mapping[str, str]) -> _Source:
    if flag_value is not None:
        return _Source(flag_name, str(flag_value))
    raw = env.get(env_name)
    if raw is not None and raw.strip() != "":
        return _Source(env_name, raw.strip())
    return _Source(env_name, None)


def _port(src: _Source) -> int:
    if src.value is None:
        return DEFAULT_PORT
    try:
        port = int(src.value, 10)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(
            f"{src.name}={src.value!r} is not a port number; use an integer from 1 to 65535 "
            "(0 picks a free port)"
        )
    return port


def _bool(src: _Source, default: bool = False) -> bool:
    if src.value is None:
        return default
    lowered = src.value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{src.name}={src.value!r} is not a boolean; use true or false (or 1 / 0)")


def _megabytes(src: _Source, default: int) -> int:
    if src.value is None:
        return default * 1024 * 1024
    try:
        value = int(src.value, 10)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_REQUEST_BODY_MB_LIMIT:
        raise ConfigError(
            f"{src.name}={src.value!r} is not a size in MiB; use a whole number from 1 to "
            f"{MAX_REQUEST_BODY_MB_LIMIT}"
        )
    return value * 1024 * 1024


def _seconds(src: _Source, default: float) -> float:
    if src.value is None:
        return default
    low, high = SECONDS_RANGE
    try:
        value = float(src.value)
    except ValueError:
        value = -1.0
    if not low <= value <= high:
        raise ConfigError(
            f"{src.name}={src.value!r} is not a duration in seconds; use a number from "
            f"{low:g} to {high:g}"
        )
    return value


def _writable_dir(path: Path) -> str | None:
    """Create *path* if needed and prove it is writable; return a reason if not."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".toru-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _directory(src: _Source, default: Path, fix: str) -> Path:
    path = Path(src.value).expanduser() if src.value is not None else default
    reason = _writable_dir(path)
    if reason is not None:
        raise ConfigError(
            f"{src.name}={str(path)!r}: cannot create or write the directory ({reason}); {fix}"
        )
    return path.resolve()


def plugins_dir_setting(flags: Mapping[str, Any], env: Mapping[str, str]) -> Path:
    """The plugins directory alone (for tools that need nothing else)."""
    src = _pick("--plugins-dir", flags.get("plugins_dir"), "TORU_PLUGINS_DIR", env)
    return Path(src.value).expanduser() if src.value else DEFAULT_PLUGINS_DIR


def check_password_policy(password: str, username: str) -> str | None:
    """Return why *password* is not acceptable for *username*, or None when it is."""
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"password must be at least {PASSWORD_MIN_LENGTH} characters"
    if len(password) > PASSWORD_MAX_LENGTH:
        return f"password must be at most {PASSWORD_MAX_LENGTH} characters"
    if password.casefold() == username.casefold():
        return "password must not be the same as the username"
    return None


def normalize_username(raw: str) -> str:
    return raw.strip().lower()


def check_username(username: str) -> str | None:
    """Return why *username* (already normalized) is not acceptable, or None."""
    if not USERNAME_PATTERN.fullmatch(username):
        return (
            "username must be 1 to 64 characters of a-z, 0-9, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return None


def load_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    require_admin_password: bool = True,
    default_log_dir: Path = DEFAULT_LOG_DIR,
) -> Settings:
    """Build :class:`Settings` from parsed CLI *flags* and *env*, checking every value.

    *flags* maps ``host, port, plugins_dir, data_dir, log_dir, log_level`` to a
    value or None (not given). Directories are created when missing. Raises
    :class:`ConfigError` naming the first bad setting.
    """
    host_src = _pick("-H/--host", flags.get("host"), "STEERING_HOST", env)
    host = host_src.value if host_src.value is not None else DEFAULT_HOST
    if any(c.isspace() for c in host) or "/" in host:
        raise ConfigError(f"{host_src.name}={host!r} is not a host name or IP address")
    port = _port(_pick("-p/--port", flags.get("port"), "STEERING_PORT", env))

    data_dir = _directory(
        _pick("--data-dir", flags.get("data_dir"), "TORU_DATA_DIR", env),
        DEFAULT_DATA_DIR,
        "choose a writable directory with --data-dir or TORU_DATA_DIR",
    )
    plugins_dir = plugins_dir_setting(flags, env)
    if plugins_dir.exists() and not plugins_dir.is_dir():
        name = "--plugins-dir" if flags.get("plugins_dir") is not None else "TORU_PLUGINS_DIR"
        raise ConfigError(
            f"{name}={str(plugins_dir)!r} is not a directory; "
            "point --plugins-dir or TORU_PLUGINS_DIR at the directory that holds *.binary files"
        )
    plugins_dir = plugins_dir.resolve()

    log_src = _pick("--log-dir", flags.get("log_dir"), "TORU_LOG_DIR", env)
    fallback_reason = None
    if log_src.value is not None:
        log_dir = _directory(
            log_src, default_log_dir, "choose a writable directory with --log-dir or TORU_LOG_DIR"
        )
    else:
        reason = _writable_dir(default_log_dir)
        if reason is None:
            log_dir = default_log_dir.resolve()
        else:
            # A fresh non-root machine cannot create /var/log/toru: start anyway, and say so.
            log_dir = _directory(
                _Source("TORU_LOG_DIR", str(data_dir / "logs")),
                data_dir / "logs",
                "choose a writable directory with --log-dir or TORU_LOG_DIR",
            )
            fallback_reason = (
                f"cannot use {default_log_dir} ({reason}); logging to {log_dir} instead; "
                "set TORU_LOG_DIR or --log-dir to choose"
            )

    level_src = _pick("--log-level", flags.get("log_level"), "TORU_LOG_LEVEL", env)
    log_level = (level_src.value or "info").lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError(
            f"{level_src.name}={level_src.value!r} is not a log level; use one of "
            + ", ".join(LOG_LEVELS)
        )

    admin_username = normalize_username(env.get("ADMIN_USERNAME", "")) or DEFAULT_ADMIN_USERNAME
    if (why := check_username(admin_username)) is not None:
        raise ConfigError(f"ADMIN_USERNAME={env.get('ADMIN_USERNAME')!r} is not valid: {why}")
    admin_password = env.get("ADMIN_PASSWORD", "")
    if require_admin_password:
        if admin_password == "":
            raise ConfigError(
                "ADMIN_PASSWORD is not set; export ADMIN_PASSWORD=<a password of 8 or more "
                "characters> so the administrator can log in"
            )
        if (why := check_password_policy(admin_password, admin_username)) is not None:
            raise ConfigError(f"ADMIN_PASSWORD is not acceptable: {why}")

    body_src = _pick(
        "--max-request-body-mb", flags.get("max_request_body_mb"), "TORU_MAX_REQUEST_BODY_MB", env
    )
    return Settings(
        host=host,
        port=port,
        plugins_dir=plugins_dir,
        data_dir=data_dir,
        log_dir=log_dir,
        log_dir_fallback_reason=fallback_reason,
        log_level=log_level,
        admin_username=admin_username,
        admin_password=admin_password,
        production=_bool(_pick("PRODUCTION", None, "PRODUCTION", env)),
        trust_proxy=_bool(_pick("TRUST_PROXY", None, "TRUST_PROXY", env)),
        max_request_body=_megabytes(body_src, DEFAULT_MAX_REQUEST_BODY_MB),
        ping_interval=_seconds(
            _pick("TORU_PING_INTERVAL", None, "TORU_PING_INTERVAL", env), DEFAULT_PING_INTERVAL
        ),
        ping_timeout=_seconds(
            _pick("TORU_PING_TIMEOUT", None, "TORU_PING_TIMEOUT", env), DEFAULT_PING_TIMEOUT
        ),
        plugin_request_timeout=_seconds(
            _pick("TORU_PLUGIN_REQUEST_TIMEOUT", None, "TORU_PLUGIN_REQUEST_TIMEOUT", env),
            DEFAULT_PLUGIN_REQUEST_TIMEOUT,
        ),
    )
