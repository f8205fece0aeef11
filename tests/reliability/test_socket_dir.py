"""``toru.plugins.socketdir``: what a start removes of a dead server's leftovers, and what it
must never touch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.helpers import short_tmpdir
from tests.support import alive
from toru.plugins import socketdir


@pytest.fixture
def tmpdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private TMPDIR, so that only directories made by the test are judged."""
    with short_tmpdir() as path:
        monkeypatch.setenv("TMPDIR", str(path))
        monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
        yield path


def dead_pid() -> int:
    """The pid of a process that ran and was reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def owned_by(pid: int, tmpdir: Path, **overrides: object) -> Path:
    """A socket directory whose owner file names *pid* (as a dead server would leave it)."""
    path = socketdir.create()
    owner = json.loads((path / socketdir.OWNER_FILE).read_text())
    owner.update(pid=pid, **overrides)
    (path / socketdir.OWNER_FILE).write_text(json.dumps(owner))
    (path / "left-over.sock").touch()
    return path


def test_the_directory_of_a_dead_server_is_removed_and_its_leftovers_killed(
    tmpdir: Path,
) -> None:
    """Owner gone: the directory goes, and a process whose TORU_PLUGIN_SOCKET lies in it
    (a plugin's child that outlived the server) is SIGKILLed; the current one stays."""
    current = socketdir.create()
    stale = owned_by(dead_pid(), tmpdir)
    env = {**os.environ, "TORU_PLUGIN_SOCKET": str(stale / "x.sock")}
    leftover = subprocess.Popen(["sleep", "300"], env=env)
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        cleaned = socketdir.clean_stale(tmpdir, keep=current)
        assert [(c.path, c.killed) for c in cleaned] == [(stale, [leftover.pid])]
        assert leftover.wait(timeout=5) == -signal.SIGKILL
        assert alive(bystander.pid)
        assert not stale.exists()
        assert current.exists()
    finally:
        for process in (leftover, bystander):
            process.kill()
            process.wait()


def test_a_reused_pid_does_not_keep_a_stale_directory(tmpdir: Path) -> None:
    """The owner's pid now belongs to another process (another start time): stale."""
    stale = owned_by(os.getpid(), tmpdir, start=1)
    assert [c.path for c in socketdir.clean_stale(tmpdir, keep=tmpdir / "none")] == [stale]


@pytest.mark.parametrize(
    "what",
    ["live owner", "no owner file", "garbled owner file", "other pid namespace", "symlink"],
)
def test_what_is_not_ours_to_remove_stays(tmpdir: Path, what: str) -> None:
    """A live server's directory, one without an owner file (an older Toru, another tool),
    one from another pid namespace, and a symlink are all left alone."""
    if what == "live owner":
        path = socketdir.create()
    elif what == "no owner file":
        path = tmpdir / "toru-older"
        path.mkdir()
    elif what == "garbled owner file":
        path = owned_by(dead_pid(), tmpdir)
        (path / socketdir.OWNER_FILE).write_text("{")
    elif what == "other pid namespace":
        path = owned_by(dead_pid(), tmpdir, ns="pid:[1]")
    else:  # a link to a dead server's directory: the link is not a directory of ours
        target = owned_by(dead_pid(), tmpdir).rename(tmpdir / "elsewhere")
        path = tmpdir / "toru-link"
        path.symlink_to(target, target_is_directory=True)
    assert socketdir.clean_stale(tmpdir, keep=tmpdir / "none") == []
    assert path.exists()
