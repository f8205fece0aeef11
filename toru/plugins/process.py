"""Plugin child processes: spawned on the event-loop thread, awaited without polling.

Why not ``trio.lowlevel.open_process``: it forks from a worker thread, and a
parent-death signal (``PR_SET_PDEATHSIG``) belongs to the thread that forked.
Trio retires idle worker threads after ~10 s, and the child would be killed
with it (DESIGN.md, known trap 1). So we fork here, on the event-loop thread
(a few milliseconds), and learn of the exit through a pidfd.

Every child gets its own session (so its own process group, and no terminal
signals), the death signal SIGKILL (it dies with Toru, even if Toru is
SIGKILLed), stdin from /dev/null, and stdout/stderr pipes that the owner must
drain. :func:`spawned` owns a child for the duration of a block and reaps it
(and sweeps its group) whatever happens: on the way out it SIGKILLs the group
first (a synchronous system call, so no cancellation or failing write can skip
it) and only then waits, within a deadline, for the exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

#: Variables passed through from Toru's own environment; nothing else (no secrets).
PASSED_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "TMPDIR")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
#: How long reaping a SIGKILLed child may take before Toru stops waiting (it is in the
#: kernel's hands then: an uninterruptible sleep on a dead disk, say).
REAP_GRACE = 2.0


def plugin_environment(
    extra: Mapping[str, str], base: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """A clean environment: a few harmless variables from *base*, then *extra*."""
    env = {name: base[name] for name in PASSED_ENVIRONMENT if name in base}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(extra)
    return env


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def setup() -> None:  # runs in the child, between fork and exec
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return setup


def describe_status(returncode: int) -> str:
    """``0`` -> ``'exited 0'``; ``-9`` -> ``'killed by SIGKILL'``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited {returncode}"


@attrs.define(eq=False)
class ChildProcess:
    """A running child, its pidfd and its output pipes (read ends, non-blocking)."""

    popen: subprocess.Popen[bytes]
    stdout: trio.lowlevel.FdStream
    stderr: trio.lowlevel.FdStream
    _pidfd: int
    returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @classmethod
    def spawn(
        cls, argv: Sequence[str | Path], *, env: Mapping[str, str], cwd: Path
    ) -> ChildProcess:
        """Start *argv* now, on this thread. ``OSError`` if it cannot be executed at all."""
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            popen = subprocess.Popen(  # must fork on this thread: see the module doc
                [str(arg) for arg in argv],
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out_write,
                stderr=err_write,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
                close_fds=True,
            )
        except BaseException:
            for fd in (out_read, err_read):
                os.close(fd)
            raise
        finally:
            os.close(out_write)
            os.close(err_write)
        return cls(
            popen,
            trio.lowlevel.FdStream(out_read),
            trio.lowlevel.FdStream(err_read),
            os.pidfd_open(popen.pid),
        )

    async def wait(self) -> int:
        """Wait for the exit (event-driven, through the pidfd) and reap it.

        Any number of tasks may wait at once: each waits on its own duplicate
        of the pidfd (Trio allows one waiter per file descriptor).
        """
        if self.returncode is None:
            fd = os.dup(self._pidfd)
            try:
                await trio.lowlevel.wait_readable(fd)
            finally:
                trio.lowlevel.notify_closing(fd)
                os.close(fd)
            self.returncode = self.popen.wait()  # exited already: waitpid returns at once
        return self.returncode

    def signal_group(self, signum: signal.Signals) -> None:
        """Signal the child's whole process group (its own children too)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def kill_group(self) -> None:
        """SIGKILL the child's whole group now: synchronous, so nothing can come between."""
        self.signal_group(signal.SIGKILL)

    async def aclose(self) -> None:
        """Kill what is left, reap, sweep the group, close the pipes and the pidfd.

        The kill comes first and is synchronous; the wait for the exit is bounded
        (:data:`REAP_GRACE`) and shielded, so it completes under cancellation too.
        """
        # Grandchildren that ignored SIGTERM would otherwise outlive their parent; a child
        # still running is killed with them.
        self.kill_group()
        with trio.move_on_after(REAP_GRACE, shield=True):
            if self.returncode is None:
                await self.wait()
            self.kill_group()  # anything the child forked while it died
            await self.stdout.aclose()
            await self.stderr.aclose()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


@asynccontextmanager
async def spawned(
    argv: Sequence[str | Path], *, env: Mapping[str, str], cwd: Path
) -> AsyncIterator[ChildProcess]:
    """Own a child for the block: it is killed (if still running) and reaped on the way out."""
    child = ChildProcess.spawn(argv, env=env, cwd=cwd)
    try:
        yield child
    finally:
        await child.aclose()


@attrs.frozen
class StopReport:
    """How a child ended: which rung of the ladder did it, and how long it took."""

    returncode: int
    rung: str  # "asked", "sigterm" or "sigkill"
    seconds: float


async def stop(
    child: ChildProcess,
    ask: Callable[[], Awaitable[None]] | None,
    *,
    ask_grace: float = 5.0,
    term_grace: float = 2.0,
) -> StopReport:
    """The shutdown ladder: *ask* (send ``shutdown``), wait; SIGTERM the group, wait; SIGKILL.

    It opens no shield of its own: the caller owns the stop's time budget (the
    runner runs this inside ``move_on_after(budget, shield=True)``, so it also
    completes while its task is being cancelled). After SIGKILL it waits for the
    reap; a caller whose budget runs out kills the group again and reaps later.
    """
    start = trio.current_time()

    def report(rung: str) -> StopReport:
        # Not reaped even after SIGKILL (should not happen): say SIGKILL, never "exited 0".
        code = child.returncode if child.returncode is not None else -signal.SIGKILL
        return StopReport(code, rung, trio.current_time() - start)

    if child.returncode is None and ask is not None:
        with trio.move_on_after(ask_grace):
            try:
                await ask()
                asked = True
            except Exception:  # the polite rung failed (socket gone): escalate at once
                asked = False
            if asked:
                await child.wait()
    if child.returncode is not None:
        return report("asked")
    child.signal_group(signal.SIGTERM)
    with trio.move_on_after(term_grace):
        await child.wait()
    if child.returncode is not None:
        return report("sigterm")
    child.kill_group()
    await child.wait()
    return report("sigkill")
