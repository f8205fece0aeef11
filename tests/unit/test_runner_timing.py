"""The runner's timing rules, deterministic: autojump clock, fake processes, in-memory streams.

No real process, socket or thread is involved (the autojump clock would jump
while one of those is busy); everything else is the real runner.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from toru.plugins.framing import FramedStream
from toru.plugins.metadata import PluginMetadata
from toru.plugins.process import StopReport
from toru.plugins.runner import PluginRunner, State, Timing

METADATA = PluginMetadata(id="fake", name="Fake", version="1", route="/fake", protocol=2)
_pids = itertools.count(1000)


class FakePipe(trio.abc.ReceiveStream):
    def __init__(self) -> None:
        self._closed = trio.Event()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await self._closed.wait()
        return b""

    async def aclose(self) -> None:
        self._closed.set()


class ChannelStream(trio.abc.Stream):
    """One end of an in-memory byte stream built on memory channels (no hooks, no I/O)."""

    def __init__(
        self, send: trio.MemorySendChannel[bytes], receive: trio.MemoryReceiveChannel[bytes]
    ) -> None:
        self._send, self._receive = send, receive

    @classmethod
    def pair(cls) -> tuple[ChannelStream, ChannelStream]:
        a_send, b_receive = trio.open_memory_channel[bytes](float("inf"))
        b_send, a_receive = trio.open_memory_channel[bytes](float("inf"))
        return cls(a_send, a_receive), cls(b_send, b_receive)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._send.send(bytes(data))
        except trio.ClosedResourceError:
            raise
        except trio.BrokenResourceError as exc:
            raise trio.BrokenResourceError("peer closed") from exc

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            return b""

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


@attrs.define(eq=False)
class FakeProcess:
    pid: int = attrs.field(factory=lambda: next(_pids))
    returncode: int | None = None
    stdout: FakePipe = attrs.field(factory=FakePipe)
    stderr: FakePipe = attrs.field(factory=FakePipe)
    #: Its end of the connection: a dead process's socket closes.
    sockets: list[ChannelStream] = attrs.field(factory=list)
    _exited: trio.Event = attrs.field(factory=trio.Event)

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def kill_group(self) -> None:
        self.exit(-9)

    def exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._exited.set()
            # A process's pipes reach end-of-file when it exits; its sockets close.
            self.stdout._closed.set()
            self.stderr._closed.set()
            for socket in self.sockets:
                socket.close()


@attrs.define
class Script:
    """How each fake run behaves; ``lives`` is seconds from ready until it exits with 1."""

    lives: float | None = 0.1
    pongs: int | None = None  # answer this many pings, then go silent (None: always)
    ready: bool = True
    wrong_id: bool = False  # answer pings with a pong for another request id


@attrs.define
class Harness:
    nursery: trio.Nursery
    script: Script = attrs.field(factory=Script)
    events: list[tuple[float, str, dict[str, Any]]] = attrs.field(factory=list)
    processes: list[FakeProcess] = attrs.field(factory=list)

    async def record(self, plugin_id: str, event: str, **details: Any) -> None:
        self.events.append((trio.current_time(), event, details))

    @contextlib.asynccontextmanager
    async def launch(
        self, argv: Sequence[str | Path], env: Any, cwd: Path
    ) -> AsyncIterator[FakeProcess]:
        process = FakeProcess()
        self.processes.append(process)
        try:
            yield process
        finally:
            process.exit(-9)

    async def connect(
        self, path: Path, metadata: PluginMetadata, give_up: Callable[[], bool], timeout: float
    ) -> trio.abc.Stream:
        if not self.script.ready:
            await trio.sleep(timeout)
            raise TimeoutError(f"nothing listened on {path} within {timeout:g} s")
        ours, theirs = ChannelStream.pair()
        self.processes[-1].sockets.append(theirs)
        self.nursery.start_soon(self._plugin, FramedStream(theirs), self.processes[-1])
        return ours

    async def _plugin(self, framed: FramedStream, process: FakeProcess) -> None:
        """The fake plugin: answers pings (per the script) and dies when the script says."""
        lives, pongs = self.script.lives, self.script.pongs
        with (
            trio.move_on_after(lives if lives is not None else float("inf")),
            contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError),
        ):
            while (frame := await framed.receive()) is not None:
                action = frame["payload"].get("action")
                if action == "ping" and (pongs is None or pongs > 0):
                    pongs = None if pongs is None else pongs - 1
                    request_id = (
                        "not-" + frame["request_id"]
                        if self.script.wrong_id
                        else (frame["request_id"])
                    )
                    await framed.send(
                        {"type": "lifecycle", "request_id": request_id,
                         "payload": {"type": "lifecycle", "action": "pong"}}
                    )  # fmt: skip
                elif action == "shutdown":
                    process.exit(0)
                    return
        process.exit(1)

    async def stopper(
        self,
        child: FakeProcess,
        ask: Callable[[], Awaitable[None]] | None,
        grace: float,
        term: float,
    ) -> StopReport:
        """The ladder's first rung for real; a 'SIGTERM' that always works after it."""
        if ask is not None:
            with trio.move_on_after(grace):
                with contextlib.suppress(Exception):
                    await ask()
                await child.wait()
        if child.returncode is not None:
            return StopReport(child.returncode, "asked", 0.0)
        child.exit(-15)
        return StopReport(-15, "sigterm", grace)

    def named(self, event: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, d) for t, e, d in self.events if e == event]


@pytest.fixture
def harness(nursery: trio.Nursery) -> Harness:
    return Harness(nursery)


def runner(harness: Harness, tmp_path: Path, **timing: Any) -> PluginRunner:
    return PluginRunner(
        metadata=METADATA,
        binary=tmp_path / "fake.binary",
        socket_dir=tmp_path,
        instance_id="i",
        events=harness,  # type: ignore[arg-type]
        timing=Timing(**timing),
        launch=harness.launch,
        connect=harness.connect,
        stopper=harness.stopper,
    )


async def test_backoff_doubles_to_16_s_and_gives_up_after_10(
    autojump_clock: trio.testing.MockClock, harness: Harness, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Crash after crash: waits of 1, 2, 4, 8, 16, 16... s; the 10th failure gives up."""
    plugin = runner(harness, tmp_path)
    await nursery.start(plugin.run)
    await plugin.finished.wait()
    delays = [details["delay"] for _, details in harness.named("backoff")]
    assert delays == [1, 2, 4, 8, 16, 16, 16, 16, 16]
    assert plugin.state is State.FAILED
    assert plugin.last_error == "failed 10 times in a row: exited 1 while running"
    assert len(harness.named("crashed")) == 10
    starts = [t for t, _ in harness.named("started")]
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(starts)]
    assert gaps == [1.1, 2.1, 4.1, 8.1, 16.1, 16.1, 16.1, 16.1, 16.1]


async def test_a_run_healthy_for_60_s_resets_the_count(
    autojump_clock: trio.testing.MockClock, harness: Harness, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A plugin that crashes only after a minute of good health is never given up on."""
    harness.script.lives = 61
    plugin = runner(harness, tmp_path)
    await nursery.start(plugin.run)
    await trio.sleep(20 * 62)
    assert plugin.state is not State.FAILED
    assert len(harness.named("crashed")) >= 15
    assert {details["delay"] for _, details in harness.named("backoff")} == {1}
    plugin.cancel()
    await plugin.finished.wait()


async def test_just_under_60_s_does_not_reset(
    autojump_clock: trio.testing.MockClock, harness: Harness, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """59 s of health is not enough: the failures keep counting up to the give-up."""
    harness.script.lives = 59
    plugin = runner(harness, tmp_path)
    await nursery.start(plugin.run)
    await plugin.finished.wait()
    assert plugin.state is State.FAILED


async def test_three_missed_pings_restart_a_plugin_that_used_to_answer(
    autojump_clock: trio.testing.MockClock, harness: Harness, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Pinged every 5 s: two pongs, then silence; each later ping misses 5 s after it is sent."""
    harness.script.lives = None
    harness.script.pongs = 2
    plugin = runner(harness, tmp_path)
    start = trio.current_time()
    await nursery.start(plugin.run)
    await trio.sleep(60)
    # Pings at 5 and 10 s answered; at 15, 20, 25 s unanswered, each a miss 5 s later.
    unhealthy = [round(t - start) for t, _ in harness.named("unhealthy")]
    assert unhealthy[:3] == [20, 25, 30]
    assert harness.named("unhealthy")[0][1]["rule"] == "pings"
    stopping = harness.named("stopping")
    assert stopping[0][1]["reason"] == "unhealthy: missed 3 pings in a row"
    assert round(stopping[0][0] - start) == 30
    assert len(harness.processes) >= 2
    plugin.cancel()
    await plugin.finished.wait()


@pytest.mark.parametrize(
    ("script", "problem"),
    [
        (Script(lives=None, pongs=0), "no pong within 5 s"),
        (Script(lives=None, wrong_id=True), "no pong within 5 s"),
    ],
    ids=["never-answers", "wrong-request-id"],
)
async def test_a_plugin_that_never_gives_a_valid_pong_is_judged_from_the_first_ping(
    autojump_clock: trio.testing.MockClock,
    harness: Harness,
    tmp_path: Path,
    nursery: trio.Nursery,
    script: Script,
    problem: str,
) -> None:
    """No valid pong ever: the first ping (5 s after init) already counts; restarted at 20 s."""
    harness.script = script
    plugin = runner(harness, tmp_path)
    start = trio.current_time()
    await nursery.start(plugin.run)
    ready = trio.current_time()
    await trio.sleep(22)
    misses = harness.named("unhealthy")
    assert [round(t - ready) for t, _ in misses] == [10, 15, 20]
    assert [d["missed_pings"] for _, d in misses] == [1, 2, 3]
    assert {d["reason"] for _, d in misses} == {problem}
    stopping = harness.named("stopping")
    assert stopping[0][1]["reason"] == "unhealthy: missed 3 pings in a row"
    # The documented bound: interval * misses + timeout after the plugin stopped answering.
    assert round(stopping[0][0] - start) == Timing().ping_detection == 20
    assert len(harness.processes) >= 2
    plugin.cancel()
    await plugin.finished.wait()


async def test_not_ready_within_5_s_is_a_failed_start(
    autojump_clock: trio.testing.MockClock, harness: Harness, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A plugin that never listens: the first start fails after 5 s, and enable learns why."""
    harness.script.ready = False
    plugin = runner(harness, tmp_path)
    start = trio.current_time()
    await nursery.start(plugin.run)
    assert trio.current_time() - start == pytest.approx(5.0)
    assert plugin.last_error is not None
    assert plugin.last_error.startswith("not ready: nothing listened on")
    assert plugin.state in {State.BACKOFF, State.STARTING}
    plugin.cancel()
    await plugin.finished.wait()
    assert plugin.state is State.STOPPED


async def test_cancel_runs_the_ladder_and_reaps(
    autojump_clock: trio.testing.MockClock, harness: Harness, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Cancelling a running plugin asks it to shut down; when finished is set, it has exited."""
    harness.script.lives = None
    plugin = runner(harness, tmp_path)
    await nursery.start(plugin.run)
    assert plugin.state is State.RUNNING
    plugin.cancel()
    await plugin.finished.wait()
    assert harness.processes[0].returncode == 0  # it got the shutdown message
    assert plugin.state is State.STOPPED
    assert [e for _, e, _ in harness.events][-2:] == ["stopping", "stopped"]
