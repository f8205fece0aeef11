"""Plugin metadata: what ``BINARY --metadata`` prints, checked with precise reasons.

Discovery and ``toru plugin check`` use the same code, so a plugin that passes
the checker is accepted by the server and the reasons read the same in both.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path
from typing import Any

import attrs
import trio

from toru.plugins.framing import MAX_FRAME_DEPTH, JsonRefused, TooDeep, load_json
from toru.plugins.naming import ID_PATTERN, RESERVED_ROUTES
from toru.plugins.process import describe_status, plugin_environment, spawned

METADATA_TIMEOUT = 5.0
METADATA_CAP = 64 * 1024
REQUIRED = ("id", "name", "version", "route")
KNOWN = (*REQUIRED, "icon", "author", "protocol")
MODERN_PROTOCOL = 2


class MetadataError(Exception):
    """Metadata is missing or invalid; the message is the reason shown to the operator."""


class MetadataUnavailable(MetadataError):
    """``--metadata`` could not be run for a reason of the moment (too many open files,
    no memory): discovery tries again at the next scan instead of keeping the verdict."""


@attrs.frozen
class PluginMetadata:
    id: str
    name: str
    version: str
    route: str
    icon: str | None = None
    author: str | None = None
    #: 2 for plugins speaking the modern protocol; 1 (absent) for plugins of the old host.
    protocol: int = 1
    #: Fields Toru does not know, kept as the plugin sent them.
    extra: dict[str, Any] = attrs.field(factory=dict)

    @property
    def modern(self) -> bool:
        return self.protocol >= MODERN_PROTOCOL

    @property
    def route_segment(self) -> str:
        return self.route.removeprefix("/")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "route": self.route,
            "icon": self.icon,
            "author": self.author,
            "protocol": self.protocol,
            **({"extra": self.extra} if self.extra else {}),
        }


def check_id(value: str, what: str = "id") -> None:
    """Raise :class:`MetadataError` saying exactly what is wrong with an id-like name."""
    if ID_PATTERN.fullmatch(value):
        return
    shown = f"{what} {value!r}"
    if value == "":
        raise MetadataError(f"{what} is empty")
    for char, name in ((" ", "a space"), (".", "a dot"), ("/", "a slash"), ("\\", "a backslash")):
        if char in value:
            raise MetadataError(f"{shown} has {name}")
    if len(value) > 64:
        raise MetadataError(f"{shown} is longer than 64 characters")
    if not value[0].isascii() or not value[0].isalnum():
        raise MetadataError(f"{shown} must start with a letter or digit")
    bad = next(c for c in value if not (c.isascii() and (c.isalnum() or c in "-_")))
    raise MetadataError(f"{shown} has the character {bad!r}; use letters, digits, '-' and '_'")


def _string(data: dict[str, Any], field: str, *, required: bool) -> str | None:
    value = data.get(field)
    if value is None:
        if required:
            raise MetadataError(f"missing field {field!r}")
        return None
    if not isinstance(value, str):
        raise MetadataError(f"field {field!r} must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise MetadataError(f"field {field!r} is empty")
    return value


def parse_metadata(raw: bytes | str) -> PluginMetadata:
    """Check the text a plugin printed for ``--metadata`` and return its metadata."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MetadataError(f"output is not UTF-8 (byte {exc.start})") from None
    if not raw.strip():
        raise MetadataError("printed nothing; expected one JSON object")
    try:
        data = load_json(raw, max_depth=MAX_FRAME_DEPTH)
    except JsonRefused as exc:
        verb = "is" if isinstance(exc, TooDeep) else "has"
        raise MetadataError(f"output {verb} {exc}") from None
    except json.JSONDecodeError as exc:
        raise MetadataError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise MetadataError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MetadataError(f"expected a JSON object, got a JSON {type(data).__name__}")

    fields = {name: _string(data, name, required=True) for name in REQUIRED}
    plugin_id, route = str(fields["id"]), str(fields["route"])
    check_id(plugin_id)
    if not route.startswith("/"):
        raise MetadataError(f"route {route!r} must start with '/'")
    if "/" in route[1:]:
        raise MetadataError(f"route {route!r} must be a single segment, like '/{plugin_id}'")
    check_id(route[1:], "route segment")
    if route[1:].lower() in RESERVED_ROUTES:
        raise MetadataError(f"route {route!r} is reserved for Toru's own pages")
    protocol = data.get("protocol", 1)
    if isinstance(protocol, bool) or not isinstance(protocol, int) or protocol not in (1, 2):
        raise MetadataError(f"protocol {protocol!r} is not supported; use 2 (or leave it out)")
    return PluginMetadata(
        id=plugin_id,
        name=str(fields["name"]).strip(),
        version=str(fields["version"]).strip(),
        route=route,
        icon=_string(data, "icon", required=False),
        author=_string(data, "author", required=False),
        protocol=protocol,
        extra={key: value for key, value in data.items() if key not in KNOWN},
    )


def check_binary(binary: Path) -> Path:
    """Refuse what cannot be a plugin before running anything; return its resolved path."""
    if binary.is_symlink() and not binary.exists():
        raise MetadataError("broken symlink")
    if not binary.exists():
        raise MetadataError("no such file")
    if not binary.is_file():
        raise MetadataError("not a regular file")
    if not os.access(binary, os.X_OK):
        raise MetadataError("not executable (chmod +x it)")
    return binary.resolve()


async def read_metadata(
    binary: Path,
    *,
    timeout: float = METADATA_TIMEOUT,
    cap: int = METADATA_CAP,
) -> PluginMetadata:
    """Run ``BINARY --metadata`` (bounded in time and output) and parse what it prints."""
    program = await trio.to_thread.run_sync(check_binary, binary)
    stdout, stderr = bytearray(), bytearray()
    too_much = False
    try:
        async with spawned(
            [program, "--metadata"], env=plugin_environment({}), cwd=binary.parent
        ) as child:

            async def drain(stream: trio.lowlevel.FdStream, into: bytearray) -> None:
                nonlocal too_much
                while chunk := await stream.receive_some(65536):
                    if len(into) + len(chunk) > cap:
                        too_much = True
                        child.signal_group(signal.SIGKILL)
                        return
                    into += chunk

            with trio.move_on_after(timeout) as deadline:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(drain, child.stdout, stdout)
                    nursery.start_soon(drain, child.stderr, stderr)
                    await child.wait()
                    # What it wrote before exiting is in the pipes; a grandchild holding
                    # them open must not keep us here.
                    nursery.cancel_scope.deadline = trio.current_time() + 0.5
            if deadline.cancelled_caught:
                raise MetadataError(f"--metadata timed out after {timeout:g} s")
    except OSError as exc:
        if exc.errno == errno.ENOEXEC:
            raise MetadataError("not a program (the kernel cannot execute it)") from None
        if exc.errno in (errno.EACCES, errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise MetadataError(f"cannot run it: {exc.strerror or exc}") from None
        raise MetadataUnavailable(f"cannot run it now: {exc.strerror or exc}") from None
    if too_much:
        raise MetadataError(f"--metadata printed more than {cap // 1024} KiB")
    returncode = child.returncode
    assert returncode is not None
    if returncode != 0:
        lines = stderr.decode(errors="replace").splitlines()
        first = next((line.strip() for line in lines if line.strip()), "")
        reason = f"--metadata {describe_status(returncode)}"
        raise MetadataError(f"{reason}: {first[:200]}" if first else reason)
    return parse_metadata(bytes(stdout))
