"""The ``toru`` command: ``serve``, and ``user`` for recovery work on the database.

Errors a user can fix end in one line on stderr: exit status 2 for a bad
setting, 1 for anything else that stopped Toru from doing its job.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import structlog
import trio

from toru import __version__
from toru.config import LOG_LEVELS, ConfigError, Settings, load_settings

T = TypeVar("T")

EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toru", description="Toru: a self-hosted control panel built around plugins."
    )
    parser.add_argument("--version", action="version", version=f"toru {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_paths(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--data-dir", metavar="DIR", help="database and state (TORU_DATA_DIR)")
        sub.add_argument("--log-dir", metavar="DIR", help="JSON log files (TORU_LOG_DIR)")
        sub.add_argument(
            "--plugins-dir", metavar="DIR", help="where *.binary plugins live (TORU_PLUGINS_DIR)"
        )

    serve = commands.add_parser("serve", help="run the server")
    # Port is parsed by load_settings, so a bad value gets the same one-line error as the env.
    serve.add_argument("-p", "--port", metavar="PORT", help="port to listen on (STEERING_PORT)")
    serve.add_argument("-H", "--host", metavar="HOST", help="address to bind (STEERING_HOST)")
    add_paths(serve)
    serve.add_argument(
        "--log-level", metavar="LEVEL", help=f"one of {', '.join(LOG_LEVELS)} (TORU_LOG_LEVEL)"
    )
    serve.add_argument(
        "--max-request-body-mb",
        metavar="MIB",
        help="largest request body forwarded to a plugin, default 10 (TORU_MAX_REQUEST_BODY_MB)",
    )

    user = commands.add_parser("user", help="manage database users directly (recovery)")
    user_commands = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    listing = user_commands.add_parser("list", help="list users")
    add_paths(listing)
    add = user_commands.add_parser("add", help="create a user (asks for the password)")
    add.add_argument("username")
    add.add_argument("--role", choices=["client", "admin"], default="client")
    add.add_argument("--display-name", default="")
    add_paths(add)
    passwd = user_commands.add_parser(
        "passwd", help="set a user's password; ends their sessions and clears their login lock"
    )
    passwd.add_argument("username")
    add_paths(passwd)
    delete = user_commands.add_parser("delete", help="delete a user and end their sessions")
    delete.add_argument("username")
    add_paths(delete)
    plugin = commands.add_parser("plugin", help="tools for plugin authors")
    plugin_commands = plugin.add_subparsers(dest="plugin_command", metavar="ACTION", required=True)
    check = plugin_commands.add_parser(
        "check", help="run the protocol end to end against a plugin binary"
    )
    check.add_argument("binary", type=Path, help="the plugin executable (*.binary)")
    build = plugin_commands.add_parser(
        "build", help="package a Python plugin directory as one executable ID.binary"
    )
    build.add_argument("directory", type=Path, help="holds plugin.py (or __main__.py)")
    build.add_argument(
        "-o", "--out", type=Path, metavar="DIR",
        help="where to write ID.binary and ID/bundle.js (default: the plugins directory)",
    )  # fmt: skip
    build.add_argument("--plugins-dir", metavar="DIR", help=argparse.SUPPRESS)
    tasks = commands.add_parser(
        "tasks",
        help="print a running server's live task tree (logs in as the environment admin)",
    )
    tasks.add_argument(
        "--url", metavar="URL", help="the server (default: http://STEERING_HOST:STEERING_PORT)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return EXIT_CONFIG
    if args.command == "plugin":
        return _plugin(args)
    if args.command == "tasks":
        return _tasks(args)
    try:
        settings = load_settings(
            vars(args), os.environ, require_admin_password=args.command == "serve"
        )
    except ConfigError as error:
        return _fail(str(error), EXIT_CONFIG)
    try:
        if args.command == "serve":
            return _serve(settings)
        return _user(settings, args)
    except KeyboardInterrupt:
        return 130


def _plugin(args: argparse.Namespace) -> int:
    from toru.config import plugins_dir_setting

    if args.plugin_command == "check":
        from toru.plugins.check import main as check_main

        return check_main(args.binary)
    from toru.plugins.build import main as build_main

    return build_main(args.directory, args.out or plugins_dir_setting(vars(args), os.environ))


def _tasks(args: argparse.Namespace) -> int:
    """Log in as the environment admin, print ``GET /api/system/tasks``'s text, log out.

    Standard library only. Connects directly (no HTTP proxy): the server usually
    listens on loopback. The session cookie is carried by hand rather than by
    ``http.cookiejar``, which withholds a ``Secure`` cookie (``PRODUCTION=1``)
    from a plain-HTTP loopback URL.
    """
    import contextlib
    import http.client
    import json
    import urllib.error
    import urllib.request
    from http.cookies import SimpleCookie

    from toru.config import DEFAULT_ADMIN_USERNAME, DEFAULT_HOST, DEFAULT_PORT, normalize_username

    password = os.environ.get("ADMIN_PASSWORD", "")
    if password == "":
        return _fail(
            "ADMIN_PASSWORD is not set; toru tasks logs in as the environment admin, so export "
            "the server's ADMIN_PASSWORD (and ADMIN_USERNAME if it is not admin)",
            EXIT_CONFIG,
        )
    username = normalize_username(os.environ.get("ADMIN_USERNAME", "")) or DEFAULT_ADMIN_USERNAME
    if args.url is not None:
        url = args.url.strip().rstrip("/")
        url = url if "://" in url else f"http://{url}"
        if not url.startswith(("http://", "https://")):
            return _fail(f"--url {args.url!r} is not an http:// or https:// URL", EXIT_CONFIG)
    else:
        host = os.environ.get("STEERING_HOST", "").strip() or DEFAULT_HOST
        port = os.environ.get("STEERING_PORT", "").strip() or str(DEFAULT_PORT)
        if not port.isdigit() or not 0 < int(port) <= 65535:
            return _fail(
                f"STEERING_PORT={port!r} is not a port number; use 1 to 65535 or pass --url",
                EXIT_CONFIG,
            )
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}"

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    cookies: SimpleCookie = SimpleCookie()

    class Refused(Exception):
        """The server answered, but not with what we asked for."""

    def call(method: str, path: str, body: object = None) -> Any:
        """One JSON exchange; raises :class:`Refused` on an error status, OSError-likes else."""
        request = urllib.request.Request(  # noqa: S310 - scheme checked: http(s) only
            url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        if cookies:
            request.add_header("Cookie", "; ".join(f"{k}={m.value}" for k, m in cookies.items()))
        try:
            with opener.open(request, timeout=30) as response:
                for header in response.headers.get_all("Set-Cookie") or []:
                    cookies.load(header)
                raw = response.read()
        except urllib.error.HTTPError as error:
            try:
                reason = str(json.loads(error.read())["error"])
            except (ValueError, KeyError, TypeError, OSError):
                reason = f"{error.reason}"
            raise Refused(f"{reason} (HTTP {error.code})") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise Refused(f"{method} {path} did not answer JSON; is {url} Toru?") from None

    try:
        try:
            call("POST", "/api/auth/login", {"username": username, "password": password})
        except Refused as error:
            return _fail(f"login as {username!r} at {url} refused: {error}", EXIT_FAILURE)
        try:
            answer = call("GET", "/api/system/tasks")
        except Refused as error:
            return _fail(f"GET {url}/api/system/tasks failed: {error}", EXIT_FAILURE)
        finally:
            # Best effort: the session would expire anyway, and the answer is already here.
            with contextlib.suppress(Refused, OSError, http.client.HTTPException):
                call("POST", "/api/auth/logout", {})
    except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        return _fail(f"cannot reach Toru at {url}: {reason}; is it running?", EXIT_FAILURE)
    if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
        return _fail(f"{url}/api/system/tasks answered without a text tree", EXIT_FAILURE)
    print(answer["text"])
    return 0


def _fail(message: str, status: int) -> int:
    print(f"toru: error: {message}", file=sys.stderr)
    return status


def _serve(settings: Settings) -> int:
    from toru.db import DatabaseError
    from toru.log import configure_logging
    from toru.server import StartupError, first_leaf, serve

    try:
        log_file = configure_logging(settings.log_dir, settings.log_level)
    except OSError as error:
        return _fail(f"cannot write logs in {settings.log_dir}: {error}", EXIT_CONFIG)
    log = structlog.get_logger("toru")
    if settings.log_dir_fallback_reason:
        log.warning(settings.log_dir_fallback_reason)
    log.info("logging to file", path=str(log_file))
    problem: BaseException | None = None
    interrupted = False
    try:
        trio.run(serve, settings)
    except* (StartupError, DatabaseError) as group:
        problem = first_leaf(group, StartupError) or first_leaf(group, DatabaseError)
    except* KeyboardInterrupt:
        interrupted = True
    except* BaseException as group:
        log.critical("toru stopped on an unexpected error", exc_info=group)
        raise
    if problem is not None:
        log.error("toru could not start", reason=str(problem))
        return _fail(str(problem), EXIT_FAILURE)
    return 130 if interrupted else 0


def _read_password(prompt: str) -> str:
    """Ask twice on a terminal; otherwise read one line from stdin (for scripts)."""
    if sys.stdin.isatty():
        first = getpass.getpass(f"{prompt}: ")
        if getpass.getpass(f"{prompt} (again): ") != first:
            raise _UserCommandError("the two passwords differ; nothing was changed")
        return first
    return sys.stdin.readline().rstrip("\r\n")


class _UserCommandError(Exception):
    pass


def _user(settings: Settings, args: argparse.Namespace) -> int:
    from toru.auth.service import AuthService
    from toru.auth.users import UserError
    from toru.db import Database, DatabaseError

    # stdout carries only the result; warnings go to stderr. The file log is the server's:
    # two processes rotating one file would step on each other. The login history records
    # password resets made here.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    # Without the server's ADMIN_PASSWORD here, the stored fingerprint must not be touched.
    settings = attrs.evolve(settings, admin_password="")
    if args.user_command != "add" and not settings.database_path.exists():
        return _fail(
            f"no database at {settings.database_path}; point --data-dir or TORU_DATA_DIR at "
            "the server's data directory",
            EXIT_FAILURE,
        )

    async def with_auth(job: Callable[[AuthService], Awaitable[T]]) -> T:
        async with Database.open(settings.database_path) as db:
            return await job(await AuthService.create(db, settings))

    async def find(auth: AuthService, username: str) -> Any:
        user = await auth.users.find(username)
        if user is None:
            raise UserError(f"no user named {username!r}", status=404)
        return user

    async def run(auth: AuthService) -> str:
        action = args.user_command
        if action == "list":
            users = await auth.users.list()
            if not users:
                return "no database users (the environment admin is not stored)"
            lines = [f"{'ID':>4}  {'USERNAME':<24} {'ROLE':<7} {'ACTIVE':<6} DISPLAY NAME"]
            lines += [
                f"{u.id:>4}  {u.username:<24} {u.role.value:<7} {'yes' if u.is_active else 'no':<6}"
                f" {u.display_name}"
                for u in users
            ]
            return "\n".join(lines)
        if action == "add":
            if await auth.users.find(args.username) is not None:
                raise UserError(f"a user named {args.username!r} already exists")
            password = _read_password(f"password for {args.username}")
            user = await auth.users.create(
                args.username, password, role=args.role, display_name=args.display_name
            )
            return f"created {user.role.value} {user.username!r} (id {user.id})"
        if action == "passwd":
            user = await find(auth, args.username)
            password = _read_password(f"new password for {user.username}")
            await auth.update_user(user.id, by="toru user passwd", password=password)
            return f"password of {user.username!r} changed; their sessions ended"
        user = await find(auth, args.username)
        await auth.users.delete(user.id)
        return f"deleted {user.username!r}; their sessions ended"

    try:
        print(trio.run(with_auth, run))
    except (UserError, DatabaseError, _UserCommandError) as error:
        return _fail(str(error), EXIT_FAILURE)
    return 0
