"""The server's own stop is bounded, whatever its plugins and browsers do.

A real ``toru serve`` with a plugin that ignores both ``shutdown`` and SIGTERM
(only SIGKILL ends it), a well-behaved SDK plugin, a browser's open status
stream and a plugin request in flight: SIGTERM must bring the server down
within the ladder's bound plus a small margin (the HTTP drain runs beside the
ladders, not before them), and a second SIGTERM must make it immediate.
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import httpx
import trio

from tests.reliability.helpers import running_toru
from tests.support import alive, sdk_plugin, write_stubborn_plugin
from toru.plugins.runner import Timing
from toru.server import stop_bound

#: Room for a busy CI machine on top of the bound; the numbers printed are what count.
MARGIN = 6.0


async def _prepare(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    plugins = root / "plugins"
    plugins.mkdir(parents=True)
    write_stubborn_plugin(plugins)
    sdk_plugin(
        plugins,
        "slowpoke",
        """
        import trio
        @plugin.get("/slow")
        async def slow(request):
            await trio.sleep(60)
            return {"late": True}
        """,
    )
    (plugins / ".metadata").mkdir()
    (plugins / ".metadata" / "config.json").write_text(
        '{"plugins": {"stubborn": true, "slowpoke": true}}'
    )
    return root


async def _stop_time(tmp_path: Path, *, signals: int) -> tuple[float, list[int]]:
    root = await _prepare(tmp_path)
    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    async with running_toru(root, tmpdir=tmpdir) as toru, trio.open_nursery() as nursery:
        pids = [(await toru.status(p))["pid"] for p in ("stubborn", "slowpoke")]
        assert all(alive(pid) for pid in pids)
        opened = trio.Event()

        async def browser() -> None:
            # An open live stream and an in-flight plugin request, as a browser would hold.
            with trio.move_on_after(60):
                async with toru.http.stream("GET", "/api/stream") as stream:
                    opened.set()
                    try:
                        async for _ in stream.aiter_bytes():
                            pass
                    except httpx.HTTPError:
                        pass

        async def slow_request() -> None:
            with contextlib.suppress(httpx.HTTPError):
                await toru.http.get("/api/plugins/route/slowpoke/slow")

        nursery.start_soon(browser)
        nursery.start_soon(slow_request)
        await opened.wait()
        process = toru.server.process
        assert process is not None
        started = trio.current_time()
        for _ in range(signals):
            toru.server.send(signal.SIGTERM)
            await trio.sleep(0.2)  # a person pressing Ctrl+C twice, not one syscall twice
        with trio.fail_after(stop_bound(Timing()) + MARGIN + 20):
            await process.wait()
        took = trio.current_time() - started
        nursery.cancel_scope.cancel()
    assert process.returncode == 0
    return took, pids


async def test_sigterm_stops_the_server_within_the_ladder_bound(tmp_path: Path) -> None:
    """SIGTERM with a plugin that only SIGKILL ends and a browser open: down within ~7 s."""
    took, pids = await _stop_time(tmp_path, signals=1)
    print(f"stop with a hung plugin and a browser open: {took:.2f} s")
    assert took <= stop_bound(Timing()) + MARGIN
    assert not any(alive(pid) for pid in pids)


async def test_a_second_sigterm_stops_at_once(tmp_path: Path) -> None:
    """Two SIGTERMs: the stubborn plugin is SIGKILLed without waiting for its ladder."""
    took, pids = await _stop_time(tmp_path, signals=2)
    print(f"stop after a second SIGTERM: {took:.2f} s")
    assert took <= 2 + MARGIN
    assert not any(alive(pid) for pid in pids)
