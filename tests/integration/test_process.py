"""Child processes: they live as long as they should, die with Toru, and are always reaped."""

from __future__ import annotations

import signal
import sys
import textwrap
from pathlib import Path

import trio

from tests.support import alive, eventually
from toru.plugins.process import (
    ChildProcess,
    describe_status,
    plugin_environment,
    spawned,
    stop,
)

PY = sys.executable


async def test_child_outlives_trio_worker_thread_retirement(tmp_path: Path) -> None:
    """A child is still alive 15 s after spawning (the death signal is not tied to a thread)."""
    async with spawned(["sleep", "60"], env=plugin_environment({}), cwd=tmp_path) as child:
        # Make Trio start and then retire worker threads meanwhile, as the server does.
        await trio.to_thread.run_sync(lambda: None)
        await trio.sleep(15)
        assert child.returncode is None
        assert alive(child.pid)
    assert child.returncode == -signal.SIGKILL


async def test_child_dies_when_its_parent_is_sigkilled(tmp_path: Path) -> None:
    """A plugin spawned by a process that is SIGKILLed dies too (PR_SET_PDEATHSIG)."""
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(
        f"""
        import trio
        from pathlib import Path
        from toru.plugins.process import ChildProcess, plugin_environment

        async def main():
            child = ChildProcess.spawn(["sleep", "60"], env=plugin_environment({{}}), cwd=Path("."))
            Path({str(pid_file)!r}).write_text(str(child.pid))
            await trio.sleep_forever()

        trio.run(main)
        """
    )
    parent = await trio.lowlevel.open_process([PY, "-c", script], cwd=str(tmp_path))
    try:
        await eventually(
            lambda: pid_file.exists() and pid_file.read_text() != "", within=10, what="child pid"
        )
        child_pid = int(pid_file.read_text())
        assert alive(child_pid)
        parent.kill()
        await parent.wait()
        await eventually(lambda: not alive(child_pid), within=5, what="child gone")
    finally:
        parent.kill()
        await parent.wait()


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!{PY}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


async def test_ladder_stops_a_cooperative_child_when_asked(tmp_path: Path) -> None:
    """Asked politely, a child that listens exits on the first rung."""
    async with spawned(["sleep", "30"], env=plugin_environment({}), cwd=tmp_path) as child:

        async def ask() -> None:
            child.signal_group(signal.SIGINT)  # stands in for the shutdown message

        report = await stop(child, ask)
    assert report.rung == "asked"
    assert report.seconds < 1
    assert describe_status(report.returncode) == "killed by SIGINT"


async def test_ladder_escalates_to_sigterm_then_sigkill(tmp_path: Path) -> None:
    """A child that ignores shutdown gets SIGTERM; one ignoring SIGTERM too gets SIGKILL."""
    ignores_term = script(
        tmp_path,
        "stubborn",
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
        """,
    )
    async with spawned(["sleep", "30"], env=plugin_environment({}), cwd=tmp_path) as child:
        report = await stop(child, None, ask_grace=0.2, term_grace=0.3)
    assert (report.rung, describe_status(report.returncode)) == ("sigterm", "killed by SIGTERM")

    async with spawned([ignores_term], env=plugin_environment({}), cwd=tmp_path) as child:
        assert await child.stdout.receive_some() == b"ready\n"
        report = await stop(child, None, ask_grace=0.2, term_grace=0.3)
    assert (report.rung, describe_status(report.returncode)) == ("sigkill", "killed by SIGKILL")
    assert 0.3 <= report.seconds < 2


async def test_grandchildren_are_swept_with_the_group(tmp_path: Path) -> None:
    """A grandchild that ignores SIGTERM does not survive its parent's reaping."""
    forker = script(
        tmp_path,
        "forker",
        """
        import os, signal, sys, time
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(60)
            os._exit(0)
        print(pid, flush=True)
        time.sleep(60)
        """,
    )
    async with spawned([forker], env=plugin_environment({}), cwd=tmp_path) as child:
        grandchild = int((await child.stdout.receive_some()).decode())
        assert alive(grandchild)
        await stop(child, None, ask_grace=0.1, term_grace=0.2)
    await eventually(lambda: not alive(grandchild), within=5, what="grandchild gone")


async def test_environment_is_clean(tmp_path: Path) -> None:
    """Plugins get PATH and friends plus what Toru adds: never ADMIN_PASSWORD or other secrets."""
    env = plugin_environment(
        {"TORU_PLUGIN_ID": "p"},
        {"PATH": "/bin", "ADMIN_PASSWORD": "s3cret", "TORU_DATA_DIR": "/d", "LANG": "C.UTF-8"},
    )
    assert env == {"PATH": "/bin", "LANG": "C.UTF-8", "TORU_PLUGIN_ID": "p"}
    async with spawned(["env"], env=env, cwd=tmp_path) as child:
        output = b""
        while chunk := await child.stdout.receive_some():
            output += chunk
        assert await child.wait() == 0
    assert b"ADMIN_PASSWORD" not in output
    assert b"TORU_PLUGIN_ID=p" in output


async def test_many_tasks_may_wait_for_one_child(tmp_path: Path) -> None:
    """Several tasks awaiting the same exit all see it (each on its own pidfd duplicate)."""
    child = ChildProcess.spawn(["sleep", "0.2"], env=plugin_environment({}), cwd=tmp_path)
    codes: list[int] = []
    try:
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(lambda: _append(codes, child))
    finally:
        await child.aclose()
    assert codes == [0, 0, 0]


async def _append(codes: list[int], child: ChildProcess) -> None:
    codes.append(await child.wait())
