"""Settings from flags and environment: precedence, defaults, and one clear error per bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

import toru
from toru.config import (
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    ConfigError,
    Settings,
    check_password_policy,
    check_username,
    load_settings,
)

PASSWORD = "correct horse battery"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The defaults (./data, ./plugins) are relative: keep them inside tmp_path.
    monkeypatch.chdir(tmp_path)


def load(
    tmp_path: Path,
    flags: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    **kwargs: Any,
) -> Settings:
    """load_settings with a valid admin password and a default log dir inside tmp_path."""
    kwargs.setdefault("default_log_dir", tmp_path / "default-logs")
    return load_settings(flags or {}, {"ADMIN_PASSWORD": PASSWORD, **(env or {})}, **kwargs)


def regular_file(tmp_path: Path) -> Path:
    path = tmp_path / "file"
    path.write_text("not a directory\n")
    return path


def test_defaults(tmp_path: Path) -> None:
    """With no flags and no environment, every setting takes its documented default."""
    settings = load(tmp_path)

    assert settings.host == "127.0.0.1"
    assert settings.port == 3000
    assert settings.data_dir == (tmp_path / "data").resolve()
    assert settings.data_dir.is_dir()
    assert settings.plugins_dir == (tmp_path / "plugins").resolve()
    assert settings.log_dir == (tmp_path / "default-logs").resolve()
    assert settings.log_dir_fallback_reason is None
    assert settings.log_level == "info"
    assert settings.admin_username == "admin"
    assert settings.admin_password == PASSWORD
    assert settings.production is False
    assert settings.trust_proxy is False
    assert settings.max_request_body == 10 * 1024 * 1024
    assert settings.database_path == settings.data_dir / "toru.db"


# (flag key, flag value, env name, env value, expected value of the flag, of the env)
SCALARS = [
    ("port", "8001", "STEERING_PORT", "8002", 8001, 8002),
    ("host", "192.0.2.1", "STEERING_HOST", "::1", "192.0.2.1", "::1"),
    ("log_level", "debug", "TORU_LOG_LEVEL", "ERROR", "debug", "error"),
    ("max_request_body_mb", "1", "TORU_MAX_REQUEST_BODY_MB", "64", 2**20, 64 * 2**20),
]
DIRECTORIES = [
    ("data_dir", "TORU_DATA_DIR"),
    ("plugins_dir", "TORU_PLUGINS_DIR"),
    ("log_dir", "TORU_LOG_DIR"),
]


#: Flags whose Settings field has another name (the flag is in MiB, the field in bytes).
FIELD = {"max_request_body_mb": "max_request_body"}
SCALAR_FIELDS = ("key", "flag", "env_name", "env_value", "from_flag", "from_env")


@pytest.mark.parametrize(SCALAR_FIELDS, SCALARS)
def test_flag_beats_environment(
    tmp_path: Path,
    key: str,
    flag: str,
    env_name: str,
    env_value: str,
    from_flag: object,
    from_env: object,
) -> None:
    """A command-line flag wins over the environment variable for the same setting."""
    field = FIELD.get(key, key)
    assert getattr(load(tmp_path, {}, {env_name: env_value}), field) == from_env
    assert getattr(load(tmp_path, {key: flag}, {env_name: env_value}), field) == from_flag


@pytest.mark.parametrize(SCALAR_FIELDS, SCALARS)
def test_environment_beats_default(
    tmp_path: Path,
    key: str,
    flag: str,
    env_name: str,
    env_value: str,
    from_flag: object,
    from_env: object,
) -> None:
    """An environment variable wins over the default when the flag is not given."""
    field = FIELD.get(key, key)
    assert getattr(load(tmp_path, {key: None}, {env_name: env_value}), field) == from_env
    assert getattr(load(tmp_path), field) != from_env


@pytest.mark.parametrize(("key", "env_name"), DIRECTORIES)
def test_directory_flag_beats_environment(tmp_path: Path, key: str, env_name: str) -> None:
    """A directory flag wins over its environment variable, and the path comes back absolute."""
    settings = load(tmp_path, {key: str(tmp_path / "flag")}, {env_name: str(tmp_path / "env")})
    assert getattr(settings, key) == (tmp_path / "flag").resolve()


@pytest.mark.parametrize(("key", "env_name"), DIRECTORIES)
def test_directory_environment_beats_default(tmp_path: Path, key: str, env_name: str) -> None:
    """A directory environment variable wins over the default when no flag is given."""
    settings = load(tmp_path, {}, {env_name: str(tmp_path / "env")})
    assert getattr(settings, key) == (tmp_path / "env").resolve()


def test_data_and_log_directories_are_created(tmp_path: Path) -> None:
    """Missing data and log directories are created (nested ones too)."""
    settings = load(
        tmp_path,
        {"data_dir": str(tmp_path / "a" / "data"), "log_dir": str(tmp_path / "b" / "logs")},
    )
    assert settings.data_dir.is_dir()
    assert settings.log_dir.is_dir()


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_environment_variable_counts_as_unset(tmp_path: Path, blank: str) -> None:
    """An empty (or blank) environment variable is ignored and the default applies."""
    env = {
        name: blank
        for name in (
            "STEERING_PORT",
            "STEERING_HOST",
            "TORU_DATA_DIR",
            "TORU_PLUGINS_DIR",
            "TORU_LOG_DIR",
            "TORU_LOG_LEVEL",
            "PRODUCTION",
            "TRUST_PROXY",
        )
    }
    env["ADMIN_USERNAME"] = ""
    assert load(tmp_path, {}, env) == load(tmp_path)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PRODUCTION": "true", "TRUST_PROXY": "1"}, (True, True)),
        ({"PRODUCTION": "Yes", "TRUST_PROXY": "on"}, (True, True)),
        ({"PRODUCTION": "0", "TRUST_PROXY": "off"}, (False, False)),
        ({"PRODUCTION": "FALSE", "TRUST_PROXY": "no"}, (False, False)),
    ],
)
def test_boolean_spellings(
    tmp_path: Path, env: dict[str, str], expected: tuple[bool, bool]
) -> None:
    """PRODUCTION and TRUST_PROXY accept true/false, 1/0, yes/no, on/off in any case."""
    settings = load(tmp_path, {}, env)
    assert (settings.production, settings.trust_proxy) == expected


def test_port_zero_is_accepted(tmp_path: Path) -> None:
    """Port 0 (pick a free port) is a valid setting, used by the test suite."""
    assert load(tmp_path, {}, {"STEERING_PORT": "0"}).port == 0


@pytest.mark.parametrize(
    ("flags", "env", "name", "shown"),
    [
        ({}, {"STEERING_PORT": "abc"}, "STEERING_PORT", "abc"),
        ({}, {"STEERING_PORT": "-1"}, "STEERING_PORT", "-1"),
        ({}, {"STEERING_PORT": "70000"}, "STEERING_PORT", "70000"),
        ({"port": "abc"}, {"STEERING_PORT": "3000"}, "-p/--port", "abc"),
        ({"port": "-1"}, {}, "-p/--port", "-1"),
        ({"port": "70000"}, {}, "-p/--port", "70000"),
        ({}, {"STEERING_HOST": "a b"}, "STEERING_HOST", "a b"),
        ({"host": "http://x"}, {}, "-H/--host", "http://x"),
        ({}, {"PRODUCTION": "maybe"}, "PRODUCTION", "maybe"),
        ({}, {"TRUST_PROXY": "maybe"}, "TRUST_PROXY", "maybe"),
        ({}, {"TORU_LOG_LEVEL": "loud"}, "TORU_LOG_LEVEL", "loud"),
        ({"log_level": "loud"}, {"TORU_LOG_LEVEL": "info"}, "--log-level", "loud"),
        ({}, {"ADMIN_USERNAME": "a b"}, "ADMIN_USERNAME", "a b"),
        ({}, {"TORU_MAX_REQUEST_BODY_MB": "0"}, "TORU_MAX_REQUEST_BODY_MB", "0"),
        ({}, {"TORU_MAX_REQUEST_BODY_MB": "1.5"}, "TORU_MAX_REQUEST_BODY_MB", "1.5"),
        ({"max_request_body_mb": "2000"}, {}, "--max-request-body-mb", "2000"),
    ],
)
def test_bad_value_names_the_setting_the_user_used(
    tmp_path: Path, flags: dict[str, Any], env: dict[str, str], name: str, shown: str
) -> None:
    """A bad value raises ConfigError that starts with the flag or variable the user set."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, flags, env)
    message = str(caught.value)
    assert message.startswith(f"{name}="), message
    assert repr(shown) in message


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"ADMIN_PASSWORD": ""}, "ADMIN_PASSWORD is not set"),
        ({"ADMIN_PASSWORD": "7chars!"}, "at least 8 characters"),
        (
            {"ADMIN_USERNAME": "Operator1", "ADMIN_PASSWORD": "oPERATOR1"},
            "must not be the same as the username",
        ),
    ],
)
def test_bad_admin_password_is_refused_without_echoing_it(
    tmp_path: Path, env: dict[str, str], reason: str
) -> None:
    """An empty, short or username-equal ADMIN_PASSWORD is refused; the message hides it."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {}, env)
    message = str(caught.value)
    assert message.startswith("ADMIN_PASSWORD"), message
    assert reason in message
    if env["ADMIN_PASSWORD"]:
        assert env["ADMIN_PASSWORD"] not in message


def test_missing_admin_password_is_refused(tmp_path: Path) -> None:
    """ADMIN_PASSWORD absent from the environment stops start-up, naming the variable."""
    with pytest.raises(ConfigError, match=r"^ADMIN_PASSWORD is not set"):
        load_settings({}, {}, default_log_dir=tmp_path / "default-logs")


def test_admin_password_optional_when_not_required(tmp_path: Path) -> None:
    """require_admin_password=False (the user commands) accepts a missing password."""
    settings = load_settings(
        {}, {}, require_admin_password=False, default_log_dir=tmp_path / "default-logs"
    )
    assert settings.admin_password == ""


def test_repr_never_shows_the_admin_password(tmp_path: Path) -> None:
    """repr() and str() of Settings leave the admin password out."""
    settings = load(tmp_path, {}, {"ADMIN_PASSWORD": "s3cret-Horse-battery"})
    assert settings.admin_password == "s3cret-Horse-battery"
    assert "s3cret-Horse-battery" not in repr(settings)
    assert "s3cret-Horse-battery" not in str(settings)


@pytest.mark.parametrize("raw", ["Operator", "  OPERATOR  "])
def test_admin_username_is_normalized(tmp_path: Path, raw: str) -> None:
    """ADMIN_USERNAME is stripped and lower-cased."""
    assert load(tmp_path, {}, {"ADMIN_USERNAME": raw}).admin_username == "operator"


@pytest.mark.parametrize(("key", "name"), [(None, "TORU_DATA_DIR"), ("data_dir", "--data-dir")])
def test_data_dir_not_creatable(tmp_path: Path, key: str | None, name: str) -> None:
    """A data directory that cannot be created is refused, naming the flag or variable used."""
    bad = str(regular_file(tmp_path) / "sub")
    flags, env = ({key: bad}, {}) if key else ({}, {"TORU_DATA_DIR": bad})
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, flags, env)
    assert str(caught.value).startswith(f"{name}={bad!r}"), str(caught.value)


@pytest.mark.parametrize(
    ("key", "name"), [(None, "TORU_PLUGINS_DIR"), ("plugins_dir", "--plugins-dir")]
)
def test_plugins_dir_that_is_a_file(tmp_path: Path, key: str | None, name: str) -> None:
    """A plugins path naming a regular file is refused, naming the flag or variable used."""
    bad = str(regular_file(tmp_path))
    flags, env = ({key: bad}, {}) if key else ({}, {"TORU_PLUGINS_DIR": bad})
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, flags, env)
    message = str(caught.value)
    assert message.startswith(f"{name}={bad!r}"), message
    assert "is not a directory" in message


def test_missing_plugins_dir_is_accepted_and_not_created(tmp_path: Path) -> None:
    """A plugins directory that does not exist yet is fine (nothing to discover)."""
    settings = load(tmp_path, {}, {"TORU_PLUGINS_DIR": str(tmp_path / "none")})
    assert settings.plugins_dir == (tmp_path / "none").resolve()
    assert not settings.plugins_dir.exists()


@pytest.mark.parametrize(("key", "name"), [(None, "TORU_LOG_DIR"), ("log_dir", "--log-dir")])
def test_explicit_log_dir_not_creatable(tmp_path: Path, key: str | None, name: str) -> None:
    """An explicit log directory that cannot be created is an error, never a fallback."""
    bad = str(regular_file(tmp_path) / "logs")
    flags, env = ({key: bad}, {}) if key else ({}, {"TORU_LOG_DIR": bad})
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, flags, env)
    assert str(caught.value).startswith(f"{name}={bad!r}"), str(caught.value)


def test_default_log_dir_not_creatable_falls_back(tmp_path: Path) -> None:
    """An unusable default log directory falls back to DATA_DIR/logs and records why."""
    default = regular_file(tmp_path) / "toru"
    settings = load(tmp_path, {}, {}, default_log_dir=default)

    assert settings.log_dir == settings.data_dir / "logs"
    assert settings.log_dir.is_dir()
    reason = settings.log_dir_fallback_reason
    assert reason is not None
    assert str(default) in reason
    assert str(settings.log_dir) in reason
    assert "TORU_LOG_DIR" in reason


@pytest.mark.parametrize(
    ("password", "acceptable"),
    [
        ("x" * (PASSWORD_MIN_LENGTH - 1), False),
        ("x" * PASSWORD_MIN_LENGTH, True),
        ("x" * PASSWORD_MAX_LENGTH, True),
        ("x" * (PASSWORD_MAX_LENGTH + 1), False),
        ("ALICE-SMITH", False),
        ("alice-smith2", True),
    ],
)
def test_password_policy(password: str, acceptable: bool) -> None:
    """Passwords of 8 to 1024 characters pass unless they equal the username (any case)."""
    assert (check_password_policy(password, "alice-smith") is None) is acceptable


def test_password_policy_reasons_say_what_is_wrong() -> None:
    """Each refusal explains itself: too short, too long, same as the username."""
    assert check_password_policy("short", "bob") == "password must be at least 8 characters"
    too_long = check_password_policy("x" * 1025, "bob")
    assert too_long == "password must be at most 1024 characters"
    assert check_password_policy("BOBBOBBOB", "bobbobbob") == (
        "password must not be the same as the username"
    )


@pytest.mark.parametrize(
    ("username", "acceptable"),
    [
        ("a", True),
        ("7", True),
        ("a" * 64, True),
        ("alice.smith_2@example-host", True),
        ("", False),
        ("a" * 65, False),
        ("a b", False),
        ("Alice", False),
        (".alice", False),
        ("-alice", False),
        ("alice/bob", False),
    ],
)
def test_username_rules(username: str, acceptable: bool) -> None:
    """Usernames are 1-64 chars of a-z0-9._@-, starting with a letter or digit."""
    assert (check_username(username) is None) is acceptable


# --- the real command ---------------------------------------------------------------------


async def run_toru(
    tmp_path: Path, *args: str, env: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m toru ARGS`` in tmp_path with only the settings this test chooses."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TORU_", "STEERING_", "ADMIN_"))
        and key not in ("PRODUCTION", "TRUST_PROXY")
    }
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), base.get("PYTHONPATH")]))
    base.update(
        TORU_DATA_DIR=str(tmp_path / "data"),
        TORU_LOG_DIR=str(tmp_path / "logs"),
        TORU_PLUGINS_DIR=str(tmp_path / "plugins"),
        ADMIN_PASSWORD=PASSWORD,
    )
    for key, value in (env or {}).items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    # A config that wrongly passes would start a server: the deadline turns that into a failure.
    with trio.fail_after(30):
        return await trio.run_process(
            [sys.executable, "-m", "toru", *args],
            cwd=tmp_path,
            env=base,
            stdin=b"",
            check=False,
            capture_stdout=True,
            capture_stderr=True,
        )


@pytest.mark.parametrize(
    ("args", "env", "starts"),
    [
        ((), {"STEERING_PORT": "abc"}, "toru: error: STEERING_PORT='abc'"),
        (("-p", "abc"), {}, "toru: error: -p/--port='abc'"),
        (("--port", "abc"), {"STEERING_PORT": "3000"}, "toru: error: -p/--port='abc'"),
        ((), {"ADMIN_PASSWORD": None}, "toru: error: ADMIN_PASSWORD is not set"),
        ((), {"TORU_DATA_DIR": "{file}/sub"}, "toru: error: TORU_DATA_DIR="),
    ],
)
async def test_serve_with_bad_setting_exits_2_with_one_line(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str | None], starts: str
) -> None:
    """`toru serve` with a bad setting exits 2 with one line on stderr naming it, no traceback."""
    file = regular_file(tmp_path)
    env = {k: v.format(file=file) if v else v for k, v in env.items()}
    result = await run_toru(tmp_path, "serve", *args, env=env)

    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith(starts), stderr
    assert "Traceback" not in stderr


async def test_version(tmp_path: Path) -> None:
    """`toru --version` prints the package version and exits 0."""
    result = await run_toru(tmp_path, "--version")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == f"toru {toru.__version__}\n"
    assert toru.__version__ == "0.1.0"
