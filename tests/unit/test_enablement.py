"""The enable state in config.json: format, operator edits, corruption, concurrency, crashes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import structlog
import trio

from tests.support import eventually
from toru.plugins.enablement import EnableState

ROOT = Path(__file__).parent.parent.parent


def config_of(plugins_dir: Path) -> Path:
    return plugins_dir / ".metadata" / "config.json"


def write(path: Path, raw: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)


async def test_round_trip(tmp_path: Path) -> None:
    """What set() records, a fresh EnableState loads back from the file."""
    state = EnableState.for_plugins_dir(tmp_path)
    assert state.path == config_of(tmp_path)
    await state.set("hello", True)
    await state.set("notes", False)
    assert state.enabled("hello")
    assert not state.enabled("notes")

    again = EnableState.for_plugins_dir(tmp_path)
    assert await again.load() == {"hello": True, "notes": False}
    assert again.snapshot == {"hello": True, "notes": False}
    assert again.enabled("hello")
    assert not again.enabled("notes")


async def test_missing_file_means_everything_disabled(tmp_path: Path) -> None:
    """No config.json: load() is empty, any id is disabled, and nothing is written."""
    state = EnableState.for_plugins_dir(tmp_path)
    assert await state.load() == {}
    assert not state.enabled("hello")
    assert not await trio.Path(state.path).exists()


async def test_absent_id_is_disabled(tmp_path: Path) -> None:
    """A plugin the file does not mention is disabled until someone enables it."""
    write(config_of(tmp_path), b'{"plugins": {"hello": true}}')
    state = EnableState.for_plugins_dir(tmp_path)
    await state.load()
    assert state.enabled("hello")
    assert not state.enabled("stranger")


async def test_file_format_is_pretty_sorted_with_trailing_newline(tmp_path: Path) -> None:
    """The file is exactly {"plugins": {...}}: indented, keys sorted, ending in a newline."""
    state = EnableState.for_plugins_dir(tmp_path)
    await state.set("zeta", True)
    await state.set("alpha", False)
    text = await trio.Path(state.path).read_text()
    assert text == '{\n  "plugins": {\n    "alpha": false,\n    "zeta": true\n  }\n}\n'


async def test_unknown_keys_and_ids_are_kept(tmp_path: Path) -> None:
    """Keys and plugin ids an operator put in the file survive Toru's writes."""
    write(
        config_of(tmp_path),
        b'{"note": "edited by hand", "plugins": {"retired": true}, "version": 3}',
    )
    state = EnableState.for_plugins_dir(tmp_path)
    assert await state.load() == {"retired": True}
    await state.set("hello", True)
    document = json.loads(await trio.Path(state.path).read_text())
    assert document == {
        "note": "edited by hand",
        "plugins": {"hello": True, "retired": True},
        "version": 3,
    }


async def test_values_that_are_not_booleans_are_ignored_and_kept(tmp_path: Path) -> None:
    """A non-boolean value is warned about, leaves the plugin disabled, and stays in the file."""
    write(config_of(tmp_path), b'{"plugins": {"hello": "yes", "notes": true}}')
    state = EnableState.for_plugins_dir(tmp_path)
    with structlog.testing.capture_logs() as logs:
        assert await state.load() == {"notes": True}
    assert not state.enabled("hello")
    assert [(entry["log_level"], entry["plugin_id"]) for entry in logs] == [("warning", "hello")]
    await state.set("other", False)
    document = json.loads(await trio.Path(state.path).read_text())
    assert document["plugins"] == {"hello": "yes", "notes": True, "other": False}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"plugins": {"hello": tru',
        b"[true]",
        b'{"plugins": ["hello"]}',
        b'{"plugins": {"hello": true}}\xff',
        b"",
    ],
    ids=["truncated", "not-an-object", "plugins-not-an-object", "not-utf8", "empty"],
)
async def test_corrupt_file_is_backed_up_and_everything_disabled(
    tmp_path: Path, raw: bytes
) -> None:
    """A corrupt file does not stop start-up: all disabled, warning, backup with the same bytes."""
    write(config_of(tmp_path), raw)
    state = EnableState.for_plugins_dir(tmp_path)
    with structlog.testing.capture_logs() as logs:
        assert await state.load() == {}
    assert not state.enabled("hello")
    backups = list(config_of(tmp_path).parent.glob("config.json.corrupt-*"))
    assert len(backups) == 1
    assert backups[0].read_bytes() == raw
    assert [entry["log_level"] for entry in logs] == ["warning"]
    assert logs[0]["backup"] == str(backups[0])

    await state.set("hello", True)  # the next write replaces the corrupt file; the copy remains
    assert json.loads(await trio.Path(state.path).read_text()) == {"plugins": {"hello": True}}
    assert backups[0].read_bytes() == raw


async def test_repeated_loads_of_one_corrupt_file_keep_one_backup(tmp_path: Path) -> None:
    """A restart loop on the same corrupt file does not fill the directory with copies."""
    write(config_of(tmp_path), b"{oops")
    for _ in range(3):
        assert await EnableState.for_plugins_dir(tmp_path).load() == {}
    assert len(list(config_of(tmp_path).parent.glob("config.json.corrupt-*"))) == 1


async def test_stale_temp_files_are_removed_at_load(tmp_path: Path) -> None:
    """Temp files left by a killed writer are cleaned up when old, never read as config."""
    write(config_of(tmp_path), b'{"plugins": {"hello": true}}')
    directory = config_of(tmp_path).parent
    stale, fresh = directory / ".config.json.dead1.tmp", directory / ".config.json.live2.tmp"
    stale.write_text('{"plugins": {"hello": fa')
    fresh.write_text('{"plugins": {"hello": fa')
    long_ago = time.time() - 3600
    os.utime(stale, (long_ago, long_ago))
    assert await EnableState.for_plugins_dir(tmp_path).load() == {"hello": True}
    assert not stale.exists()
    assert fresh.exists()  # may belong to a writer still at work


async def test_fifty_concurrent_sets_leave_the_last_state(tmp_path: Path) -> None:
    """50 concurrent set() calls lose no update, and the file equals the final state."""
    state = EnableState.for_plugins_dir(tmp_path)
    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(state.set, f"plugin-{i}", i % 3 == 0)
            nursery.start_soon(state.set, "contended", i % 2 == 0)
    expected = {f"plugin-{i}": i % 3 == 0 for i in range(50)}
    on_disk = json.loads(await trio.Path(state.path).read_text())
    assert on_disk == {"plugins": state.snapshot}
    assert {k: v for k, v in state.snapshot.items() if k != "contended"} == expected
    assert await EnableState.for_plugins_dir(tmp_path).load() == state.snapshot
    leftovers = [p.name for p in state.path.parent.iterdir() if p.name != "config.json"]
    assert leftovers == []


WRITER = textwrap.dedent(
    """\
    import sys
    from pathlib import Path

    import trio

    from toru.plugins.enablement import EnableState

    async def main() -> None:
        state = EnableState(Path(sys.argv[1]))
        current = await state.load()
        n = sum(1 for plugin_id in current if plugin_id.startswith("gen-"))
        while True:
            await state.set(f"gen-{n:05d}", True)
            print(n, flush=True)  # acknowledged: durably written
            n += 1

    trio.run(main)
    """
)
PADDING = 2_000  # plugin ids already in the file, kept on every write
BLOB = "x" * 4_000_000  # an operator's top-level key, kept too: every write is ~4 MB


def write_signs(config: Path) -> tuple[frozenset[str], tuple[int, int, int]]:
    """What a write changes in the directory: temporary files, or config.json itself."""
    temps = frozenset(p.name for p in config.parent.iterdir() if p.name != config.name)
    stat = config.stat()
    return temps, (stat.st_ino, stat.st_size, stat.st_mtime_ns)


async def run_writer_and_kill(config: Path, delay: float | None) -> list[int]:
    """Run the writer and SIGKILL it after its first write; return its acknowledgements.

    The kill comes *delay* seconds later, or (``None``) as soon as the directory
    shows that the next write is under way.
    """
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", WRITER, str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    output = b""
    try:
        with trio.fail_after(20):
            while b"\n" not in output:
                chunk = await process.stdout.receive_some()
                assert chunk, "the writer exited before its first write"
                output += chunk
            if delay is None:
                before = write_signs(config)
                await eventually(
                    lambda: write_signs(config) != before,
                    within=10,
                    what="the writer to start a write",
                    poll=0.001,
                )
            else:
                await trio.sleep(delay)  # the random moment is the point here
            process.kill()
            await process.wait()
            while chunk := await process.stdout.receive_some():
                output += chunk
    finally:
        with trio.move_on_after(5, shield=True):
            process.kill()
            await process.wait()
            await process.stdout.aclose()
    return [int(line) for line in output.decode().split()]


async def test_survives_sigkill_mid_write(tmp_path: Path) -> None:
    """SIGKILLed 20 times while writing, the file is always the old or the new state, whole."""
    config = config_of(tmp_path)
    padding = {f"pad-{i:05d}": i % 2 == 0 for i in range(PADDING)}
    write(config, json.dumps({"blob": BLOB, "plugins": padding}).encode())
    rng = random.Random(4)
    acknowledged = 0
    for round_ in range(20):
        # Half the kills at a random moment, half while a temporary file is being written.
        delay = rng.uniform(0, 0.1) if round_ % 2 == 0 else None
        acks = await run_writer_and_kill(config, delay)
        assert acks == list(range(acknowledged, acknowledged + len(acks)))
        acknowledged += len(acks)

        document = json.loads(await trio.Path(config).read_text())  # whole, valid JSON
        plugins = document["plugins"]
        generations = sorted(k for k in plugins if k.startswith("gen-"))
        # Every acknowledged write is there; at most one more (written, not yet acknowledged).
        assert len(generations) in (acknowledged, acknowledged + 1)
        assert generations == [f"gen-{n:05d}" for n in range(len(generations))]
        assert {k: v for k, v in plugins.items() if k.startswith("pad-")} == padding
        assert document["blob"] == BLOB
        acknowledged = len(generations)

    directory = config.parent
    assert list(directory.glob("config.json.corrupt-*")) == []  # never judged corrupt
    # Killed writers left their temporary files (so kills did land mid-write); none of
    # them is read as the config: a fresh load sees exactly the last whole state.
    strays = [p.name for p in directory.iterdir() if p.name != "config.json"]
    assert all(name.startswith(".config.json.") and name.endswith(".tmp") for name in strays)
    assert len(strays) >= 5
    state = EnableState(config)
    assert await state.load() == {
        **padding,
        **{f"gen-{n:05d}": True for n in range(acknowledged)},
    }
