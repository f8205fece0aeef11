"""``GET /api/stream`` shows a non-admin only what the API shows them: enabled plugins."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import RunningServer
from tests.support import EventStream, install_plugins, make_settings
from toru.config import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
#: Plugin A, enabled and disabled by the tests.
LEGACY_PYTHON = FIXTURES / "legacy_python.binary"
#: Plugin B, never enabled.
LEGACY_RUST = FIXTURES / "legacy_rust_dialect.binary"

Event = tuple[str, dict[str, Any]]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Plugin A (``legacy-python``) installed and not enabled."""
    settings = make_settings(tmp_path)
    install_plugins(settings.plugins_dir, LEGACY_PYTHON, enabled=[])
    return settings


async def open_stream(server: RunningServer, http: httpx.AsyncClient) -> EventStream:
    return await EventStream.open(server.url, http.cookies["session_id"])


async def read_until(stream: EventStream, last: Callable[[Event], bool]) -> list[Event]:
    """Every event up to and including the first one *last* accepts."""
    events = []
    while True:
        events.append(await stream.next_event())
        if last(events[-1]):
            return events


def about(plugin_id: str) -> Callable[[Event], bool]:
    return lambda event: event[1].get("id") == plugin_id


def running(plugin_id: str) -> Callable[[Event], bool]:
    return lambda event: event[1].get("id") == plugin_id and event[1].get("state") == "running"


def not_an_enabled_status(event: Event) -> bool:
    return not (event[0] == "plugin" and event[1]["enabled"])


async def test_a_disabled_plugin_is_removed_from_a_client_stream(
    server: RunningServer, admin: httpx.AsyncClient, client_user: httpx.AsyncClient
) -> None:
    """Enabling A sends a client its public status; disabling it sends ``removed`` and no
    status with ``enabled: false``, while an admin's stream gets the disabled status."""
    with trio.fail_after(20):
        admin_stream = await open_stream(server, admin)
        user_stream = await open_stream(server, client_user)
        async with admin_stream.stream, user_stream.stream:
            assert (await admin_stream.next_event())[0] == "snapshot"
            assert await user_stream.next_event() == ("snapshot", {"plugins": []})

            assert (await admin.post("/api/plugins/legacy-python/enable")).status_code == 200
            enabled = await read_until(user_stream, running("legacy-python"))
            assert all(event == "plugin" and data["enabled"] for event, data in enabled)
            assert "pid" not in enabled[-1][1]  # the public view

            assert (await admin.post("/api/plugins/legacy-python/disable")).status_code == 200
            disabled = await read_until(user_stream, not_an_enabled_status)
            assert disabled[-1] == ("removed", {"id": "legacy-python"})
            full = await read_until(admin_stream, lambda event: not event[1].get("enabled"))
            assert full[-1][0] == "plugin"
            assert full[-1][1]["enabled"] is False
            assert "pid" in full[-1][1]  # the full view

            # Enabled again: the next thing the client hears is A's status, so nothing
            # about A (an `enabled: false` status) came between `removed` and now.
            assert (await admin.post("/api/plugins/legacy-python/enable")).status_code == 200
            again = await user_stream.next_event()
            assert again[0] == "plugin"
            assert again[1]["id"] == "legacy-python"
            assert again[1]["enabled"] is True


async def test_a_plugin_never_enabled_is_never_mentioned_to_a_client(
    server: RunningServer, admin: httpx.AsyncClient, client_user: httpx.AsyncClient
) -> None:
    """B appearing, changing and going (rescans) reaches an admin's stream each time and
    a client's not at all, not even as ``removed``."""
    plugins = server.settings.plugins_dir
    binary = plugins / LEGACY_RUST.name

    async def rescan_until_admin_hears(admin_stream: EventStream) -> Event:
        assert (await admin.post("/api/plugins/rescan")).status_code == 200
        return (await read_until(admin_stream, about("legacy-rust-dialect")))[-1]

    with trio.fail_after(20):
        admin_stream = await open_stream(server, admin)
        user_stream = await open_stream(server, client_user)
        async with admin_stream.stream, user_stream.stream:
            assert (await admin_stream.next_event())[0] == "snapshot"
            assert await user_stream.next_event() == ("snapshot", {"plugins": []})

            shutil.copy2(LEGACY_RUST, binary)
            appeared = await rescan_until_admin_hears(admin_stream)
            assert appeared[0] == "plugin"
            assert appeared[1]["enabled"] is False
            with binary.open("a") as file:
                file.write("# changed\n")
            changed = await rescan_until_admin_hears(admin_stream)
            assert changed[0] == "plugin"
            binary.unlink()
            assert await rescan_until_admin_hears(admin_stream) == (
                "removed",
                {"id": "legacy-rust-dialect"},
            )

            # The streams are ordered: the client's first event after B's changes is A's
            # status once A is enabled, so nothing about B came before it.
            assert (await admin.post("/api/plugins/legacy-python/enable")).status_code == 200
            first = await user_stream.next_event()
            assert first[0] == "plugin"
            assert first[1]["id"] == "legacy-python"


async def test_a_plugin_in_the_snapshot_is_removed_when_its_binary_goes(
    server: RunningServer, admin: httpx.AsyncClient, client_user: httpx.AsyncClient
) -> None:
    """A client shown A in its snapshot gets ``removed`` when A's binary is deleted."""
    assert (await admin.post("/api/plugins/legacy-python/enable")).status_code == 200
    with trio.fail_after(20):
        user_stream = await open_stream(server, client_user)
        async with user_stream.stream:
            event, data = await user_stream.next_event()
            assert event == "snapshot"
            assert [plugin["id"] for plugin in data["plugins"]] == ["legacy-python"]

            (server.settings.plugins_dir / LEGACY_PYTHON.name).unlink()
            assert (await admin.post("/api/plugins/rescan")).status_code == 200
            gone = await read_until(user_stream, not_an_enabled_status)
            assert gone[-1] == ("removed", {"id": "legacy-python"})
