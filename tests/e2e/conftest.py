"""The browser tests' world: a real ``toru serve`` with both examples, and Debian's Chromium.

The tests are plain (not async) functions using Playwright's sync API, which runs its own
asyncio loop inside Playwright calls; the server is driven by ``tests.support.ServerProcess``
in short ``trio.run`` calls between them. Each test gets a fresh server (its own data,
plugins and log directories in ``tmp_path``) on a free port that stays the same across a
restart, so an open page can simply be reloaded. Every page a test opens is photographed
into ``test-artifacts/`` when the test ends, pass or fail.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.support import ADMIN_PASSWORD, JSON, ServerProcess, leftover_processes
from toru import webui

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
RUST_EXAMPLE = REPO / "examples" / "hello-plugin-rust"
PYTHON_ID = "hello-plugin-python"
RUST_ID = "hello-plugin-rust"
#: build.sh's status when the crates cannot be obtained (no crates.io, no Debian crates).
NO_CRATES = 3
CLIENT_USER = "carol"
CLIENT_PASSWORD = "client password 1"
#: Playwright waits this long (ms) for what a test expects to see.
EXPECT_TIMEOUT = 15_000

expect.set_options(timeout=EXPECT_TIMEOUT)


@pytest.fixture(scope="session")
def built_rust(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """examples/hello-plugin-rust built by its build.sh once per run, or None (with why, below).

    CI exports TORU_CARGO_DEBIAN_REGISTRY=1, so cargo works offline from Debian's crates.
    """
    if shutil.which("cargo") is None:
        return None
    out = tmp_path_factory.mktemp("built-rust")
    result = subprocess.run(
        ["bash", str(RUST_EXAMPLE / "build.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if result.returncode == NO_CRATES:
        return None
    if result.returncode != 0:
        pytest.fail(f"hello-plugin-rust/build.sh exited {result.returncode}:\n{result.stderr}")
    return out


def free_port() -> int:
    """A port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Toru:
    """A real ``toru serve`` child process, driven from synchronous tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.plugins = root / "plugins"
        self.port = free_port()
        self.server = ServerProcess(root, {"STEERING_PORT": str(self.port)})
        self.url = ""
        self._admin: httpx.Client | None = None

    def start(self) -> None:
        self.url = trio.run(self.server.start)

    def stop(self) -> None:
        """SIGTERM, and wait for the graceful stop (plugins included) to finish."""
        self._forget_admin()

        async def stop() -> int:
            self.server.send(signal.SIGTERM)
            return await self.server.wait(30)

        status = trio.run(stop)
        assert status == 0, self.server.stderr_file.read_text()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop gracefully if still running (so plugins are stopped too); kill after 15 s."""
        self._forget_admin()

        # trio.Process notices an exit only inside trio.run, so the whole check runs there.
        async def close() -> None:
            process = self.server.process
            if process is not None and process.poll() is None:
                self.server.send(signal.SIGTERM)
                with trio.move_on_after(15):
                    await process.wait()
            await self.server.close()

        trio.run(close)
        left = leftover_processes(str(self.plugins))
        assert not left, f"plugin processes outlived toru serve: {left}"

    def _forget_admin(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def client(self, username: str, password: str) -> httpx.Client:
        """A logged-in API client (JSON by default, as the web UI sends)."""
        http = httpx.Client(base_url=self.url, headers=JSON, timeout=30)
        response = http.post("/api/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        return http

    @property
    def admin(self) -> httpx.Client:
        if self._admin is None:
            self._admin = self.client("admin", ADMIN_PASSWORD)
        return self._admin

    def status(self, plugin_id: str) -> dict[str, Any]:
        response = self.admin.get(f"/api/plugins/{plugin_id}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def wait_healthy(self, plugin_id: str) -> None:
        wait_for(
            lambda: self.status(plugin_id)["health"] == "healthy",
            what=f"{plugin_id} to be healthy",
        )

    def add_client_user(self) -> None:
        created = self.admin.post(
            "/api/users",
            json={"username": CLIENT_USER, "password": CLIENT_PASSWORD, "role": "client"},
        )
        assert created.status_code == 201, created.text


@pytest.fixture
def toru(tmp_path: Path, built_example: Path, built_rust: Path | None) -> Iterator[Toru]:
    """Toru serving both examples, enabled and healthy (only the Python one without cargo)."""
    if not (webui.WEB_DIST / "index.html").is_file():
        pytest.skip("the web UI is not built: run `make web` (make test does)")
    server = Toru(tmp_path)
    shutil.copytree(built_example, server.plugins)
    enabled = {PYTHON_ID: True}
    if built_rust is not None:
        shutil.copytree(built_rust, server.plugins, dirs_exist_ok=True)
        enabled[RUST_ID] = True
    (server.plugins / ".metadata").mkdir()
    (server.plugins / ".metadata" / "config.json").write_text(json.dumps({"plugins": enabled}))
    try:
        server.start()
        for plugin_id in enabled:
            server.wait_healthy(plugin_id)
        yield server
    finally:
        server.close()


def wait_for(predicate: Callable[[], bool], *, what: str, within: float = 15) -> None:
    """Poll *predicate* (state in another process: no event to wait on) under a deadline."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {within} s for {what}; it did not happen")
        time.sleep(0.05)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, shared by the browser tests (each gets its own contexts)."""
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


NewPage = Callable[[], Page]
#: A CSP refusal in the console (whatever Chromium's wording of the day) that is not about
#: styles: the examples set inline ``style`` attributes, which the policy ignores on purpose.
CSP_REFUSAL = re.compile(r"Content Security Policy directive:? *['\"](?!style-src)", re.IGNORECASE)


@pytest.fixture
def new_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[NewPage]:
    """Pages, each in its own browser context (its own cookies: one user each).

    When the test ends, each page is saved as test-artifacts/<test>[-<n>].png with its
    console next to it (<test>[-<n>].console.txt), and the test fails if the
    Content-Security-Policy refused a script, a connection or a frame on any of them.
    """
    opened: list[tuple[BrowserContext, Page, list[str]]] = []

    def new() -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(EXPECT_TIMEOUT)
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        opened.append((context, page, console))
        return page

    yield new
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    ARTIFACTS.mkdir(exist_ok=True)
    refused = []
    for index, (context, page, console) in enumerate(opened):
        stem = f"{name}-{index + 1}" if len(opened) > 1 else name
        if not page.is_closed():
            page.evaluate("window.scrollTo(0, 0)")  # fixed header and sidebar where they belong
            page.screenshot(path=ARTIFACTS / f"{stem}.png", full_page=True, animations="disabled")
        (ARTIFACTS / f"{stem}.console.txt").write_text("\n".join(console) + "\n")
        refused += [line for line in console if CSP_REFUSAL.search(line)]
        context.close()
    assert not refused, "the Content-Security-Policy refused:\n" + "\n".join(refused)


def screenshot(page: Page, name: str) -> None:
    """Save what *page* shows now as test-artifacts/<name>.png (the shots named in the issue)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", animations="disabled")


def log_in(page: Page, url: str, username: str, password: str) -> None:
    """Sign in through the login page and wait for the app's main navigation."""
    page.goto(f"{url}/login")
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
