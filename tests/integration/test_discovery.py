"""Discovery on a real plugins directory: the rejected-binary corpus, conflicts, rescans."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import attrs
import pytest
import trio

from tests.support import leftover_processes
from toru.plugins.discovery import Discovered, Fingerprint, accepted, scan


def metadata(plugin_id: str, route: str | None = None, **extra: object) -> str:
    fields = [f'"id": "{plugin_id}"', '"name": "N"', '"version": "1"']
    fields.append(f'"route": "{route or "/" + plugin_id}"')
    fields += [f'"{key}": {value}' for key, value in extra.items()]
    return "{" + ", ".join(fields) + "}"


def script(
    directory: Path, name: str, body: str, *, mode: int = 0o755, shebang: str = "#!/bin/sh\n"
) -> Path:
    """An executable (by default) shell script *name* in *directory*."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(shebang + body)
    path.chmod(mode)
    return path


def prints(text: str, *, counter: Path | None = None) -> str:
    """A plugin body that prints *text* for --metadata, logging each run to *counter*."""
    count = f"echo run >> '{counter}'\n" if counter else ""
    return f"{count}cat <<'EOF'\n{text}\nEOF\n"


def runs(counter: Path) -> int:
    """How many times a counting plugin's --metadata ran."""
    return len(counter.read_text().splitlines()) if counter.exists() else 0


#: file name -> the exact reason it is rejected with.
CORPUS: dict[str, str] = {
    "not-executable.binary": "not executable (chmod +x it)",
    "not-a-program.binary": "not a program (the kernel cannot execute it)",
    "exits-1.binary": "--metadata exited 1: cannot find my config file",
    "segfaults.binary": "--metadata killed by SIGSEGV",
    "hangs.binary": "--metadata timed out after 5 s",
    "hangs-too.binary": "--metadata timed out after 5 s",
    "hangs-after-output.binary": "--metadata timed out after 5 s",
    "too-much-output.binary": "--metadata printed more than 64 KiB",
    "silent.binary": "printed nothing; expected one JSON object",
    "invalid-json.binary": "invalid JSON at line 2 column 1: Expecting value",
    "not-an-object.binary": "expected a JSON object, got a JSON list",
    "missing-field.binary": "missing field 'route'",
    "id-space.binary": "id 'a b' has a space",
    "id-dot.binary": "id 'a.b' has a dot",
    "id-slash.binary": "id 'a/b' has a slash",
    "route-two-segments.binary": "route '/a/b' must be a single segment, like '/two'",
    "route-reserved.binary": "route '/api' is reserved for Toru's own pages",
    "protocol-3.binary": "protocol 3 is not supported; use 2 (or leave it out)",
    "dup-id.binary": "duplicate id 'good' (also in a-good.binary)",
    "dup-route.binary": "route '/good' is already used by plugin 'good'",
    "inside-alias.binary": "duplicate id 'good' (also in a-good.binary)",
    "broken-symlink.binary": "broken symlink",
    # "outside.binary": its reason names the resolved target; see corpus_reason().
}
ACCEPTED = {"a-good.binary": "good", "linked.binary": "linked", "python.binary": "python"}


@attrs.frozen
class Corpus:
    plugins_dir: Path
    outside_target: Path
    hang_counter: Path
    found: list[Discovered]
    seconds: float
    rescanned: list[Discovered]
    leftovers: list[str]

    def by_name(self) -> dict[str, Discovered]:
        return {item.file_name: item for item in self.found}


def build_corpus(root: Path) -> tuple[Path, Path, Path]:
    """Broken binaries of every kind, beside good ones and files that are not candidates."""
    plugins = root / "plugins"
    hang_counter = root / "hang-counter"
    script(plugins, "not-executable.binary", prints(metadata("ne")), mode=0o644)
    script(plugins, "not-a-program.binary", "just some notes, marked executable\n", shebang="")
    script(plugins, "exits-1.binary", "echo >&2\necho 'cannot find my config file' >&2\nexit 1\n")
    script(plugins, "segfaults.binary", "kill -SEGV $$\n")
    script(plugins, "hangs.binary", f"echo run >> '{hang_counter}'\nexec sleep 300 # {root}\n")
    script(plugins, "hangs-too.binary", f"exec sleep 300 # {root}\n")
    script(
        plugins,
        "hangs-after-output.binary",
        prints(metadata("late")) + f"exec sleep 300 # {root}\n",
    )
    script(plugins, "too-much-output.binary", "exec yes\n")
    script(plugins, "silent.binary", "exit 0\n")
    script(plugins, "invalid-json.binary", prints('{"id": '))
    script(plugins, "not-an-object.binary", prints("[1]"))
    script(plugins, "missing-field.binary", prints('{"id": "x", "name": "X", "version": "1"}'))
    script(plugins, "id-space.binary", prints(metadata("a b", "/space")))
    script(plugins, "id-dot.binary", prints(metadata("a.b", "/dot")))
    script(plugins, "id-slash.binary", prints(metadata("a/b", "/slash")))
    script(plugins, "route-two-segments.binary", prints(metadata("two", "/a/b")))
    script(plugins, "route-reserved.binary", prints(metadata("reserved", "/api")))
    script(plugins, "protocol-3.binary", prints(metadata("future", protocol=3)))
    script(plugins, "a-good.binary", prints(metadata("good", icon='"star"')))
    script(plugins, "dup-id.binary", prints(metadata("good", "/other")))
    script(plugins, "dup-route.binary", prints(metadata("other", "/good")))
    (plugins / "inside-alias.binary").symlink_to("a-good.binary")  # inside: run, not refused
    script(plugins, "lib/linked-impl", prints(metadata("linked")))
    (plugins / "linked.binary").symlink_to(plugins / "lib" / "linked-impl")
    script(
        plugins,
        "python.binary",
        f"print({metadata('python')!r})\n",
        shebang=f"#!{sys.executable}\n",
    )
    (plugins / "broken-symlink.binary").symlink_to("no-such-file")
    outside = script(root / "elsewhere", "outside.binary", prints(metadata("outside")))
    (plugins / "outside.binary").symlink_to(outside)
    # Not candidates: hidden, wrong suffix, a directory named like a plugin.
    script(plugins, ".hidden.binary", prints(metadata("hidden")))
    script(plugins, "readme.txt", prints(metadata("readme")))
    script(plugins, "a-good.binary.bak", prints(metadata("backup")))
    (plugins / "folder.binary").mkdir()
    return plugins, Path(os.path.realpath(outside)), hang_counter


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """One scan of the whole corpus (hanging binaries included), then a rescan."""
    root = tmp_path_factory.mktemp("corpus")
    plugins, outside, hang_counter = build_corpus(root)

    async def scan_twice() -> Corpus:
        started = time.monotonic()
        found = await scan(plugins)
        seconds = time.monotonic() - started
        rescanned = await scan(plugins, {item.file_name: item for item in found})
        return Corpus(
            plugins,
            outside,
            hang_counter,
            found,
            seconds,
            rescanned,
            leftover_processes(str(root)),
        )

    return trio.run(scan_twice)


def corpus_reason(corpus: Corpus, file_name: str) -> str:
    if file_name == "outside.binary":
        return f"symlink points outside the plugins directory (-> {corpus.outside_target})"
    return CORPUS[file_name]


@pytest.mark.parametrize("file_name", [*CORPUS, "outside.binary"])
def test_rejected_binary_has_its_precise_reason(corpus: Corpus, file_name: str) -> None:
    """Each kind of broken binary is listed, rejected, with its own exact reason."""
    item = corpus.by_name()[file_name]
    assert item.error == corpus_reason(corpus, file_name)
    assert item.metadata is None
    assert item.plugin_id is None
    assert item.path == corpus.plugins_dir / file_name


def test_corpus_has_at_least_twelve_kinds_of_rejection(corpus: Corpus) -> None:
    """The corpus covers at least 12 distinct reasons, and every entry is accounted for."""
    reasons = {item.error for item in corpus.found if item.error is not None}
    assert len(reasons) >= 12
    assert {item.file_name for item in corpus.found} == {*CORPUS, "outside.binary", *ACCEPTED}


def test_good_plugins_beside_broken_ones_are_accepted(corpus: Corpus) -> None:
    """Good plugins are accepted with their metadata, whatever else is in the directory."""
    by_name = corpus.by_name()
    for file_name, plugin_id in ACCEPTED.items():
        item = by_name[file_name]
        assert item.error is None, item.error
        assert item.metadata is not None
        assert item.plugin_id == plugin_id
        assert item.fingerprint is not None
    good = by_name["a-good.binary"].metadata
    assert good is not None
    assert (good.route, good.icon) == ("/good", "star")


def test_entries_are_sorted_and_non_candidates_ignored(corpus: Corpus) -> None:
    """Results come in file-name order; hidden files, other suffixes and directories are skipped."""
    names = [item.file_name for item in corpus.found]
    assert names == sorted(names)
    for ignored in (".hidden.binary", "readme.txt", "a-good.binary.bak", "folder.binary"):
        assert ignored not in names


def test_slow_binaries_are_run_concurrently(corpus: Corpus) -> None:
    """Three hanging binaries among twenty others cost one 5 s timeout, not one each."""
    assert corpus.seconds < 7


def test_timed_out_binaries_leave_no_process(corpus: Corpus) -> None:
    """Every --metadata run is reaped, hanging ones included (their process group is killed)."""
    assert corpus.leftovers == []


def test_rescan_reuses_unchanged_results(corpus: Corpus) -> None:
    """A rescan of an unchanged directory gives the same answer without re-running hangers."""
    assert corpus.rescanned == corpus.found
    assert runs(corpus.hang_counter) == 1


def test_accepted_maps_plugin_ids(corpus: Corpus) -> None:
    """accepted() keys the accepted plugins by id and leaves out every rejected one."""
    by_id = accepted(corpus.found)
    assert {plugin_id: item.file_name for plugin_id, item in by_id.items()} == {
        plugin_id: file_name for file_name, plugin_id in ACCEPTED.items()
    }


async def test_directory_is_created_when_missing(tmp_path: Path) -> None:
    """Scanning a plugins directory that does not exist creates it (0755) and finds nothing."""
    plugins = tmp_path / "deep" / "plugins"
    assert await scan(plugins) == []
    stat = await trio.Path(plugins).stat()
    assert stat.st_mode & 0o777 == 0o755


async def test_rescan_runs_only_changed_binaries(tmp_path: Path) -> None:
    """An unchanged binary is not run again; touching or rewriting it is, and is re-read."""
    plugins, counter = tmp_path / "plugins", tmp_path / "counter"
    binary = script(plugins, "hello.binary", prints(metadata("hello"), counter=counter))
    first = await scan(plugins)
    assert runs(counter) == 1

    second = await scan(plugins, {item.file_name: item for item in first})
    assert runs(counter) == 1
    assert second == first

    later = time.time() + 10
    os.utime(binary, (later, later))
    third = await scan(plugins, {item.file_name: item for item in second})
    assert runs(counter) == 2
    assert third[0].fingerprint != second[0].fingerprint

    script(plugins, "hello.binary", prints(metadata("hello", "/greetings"), counter=counter))
    fourth = await scan(plugins, {item.file_name: item for item in third})
    assert runs(counter) == 3
    assert fourth[0].metadata is not None
    assert fourth[0].metadata.route == "/greetings"

    await scan(plugins)  # no previous scan: everything is run
    assert runs(counter) == 4


async def test_freed_id_accepts_the_duplicate_without_rerunning_it(tmp_path: Path) -> None:
    """When the first of two duplicates goes away, the second is accepted from its earlier read."""
    plugins, counter = tmp_path / "plugins", tmp_path / "counter"
    first = script(plugins, "a.binary", prints(metadata("twin")))
    script(plugins, "b.binary", prints(metadata("twin", "/twin2"), counter=counter))
    before = await scan(plugins)
    assert [item.error for item in before] == [None, "duplicate id 'twin' (also in a.binary)"]

    await trio.Path(first).unlink()
    after = await scan(plugins, {item.file_name: item for item in before})
    assert runs(counter) == 1
    assert [(item.file_name, item.plugin_id, item.error) for item in after] == [
        ("b.binary", "twin", None)
    ]


async def test_chmod_is_noticed_on_rescan(tmp_path: Path) -> None:
    """chmod changes no fingerprint field, yet the next scan sees +x (accepted) and -x (refused)."""
    plugins = tmp_path / "plugins"
    binary = script(plugins, "hello.binary", prints(metadata("hello")), mode=0o644)
    before = await scan(plugins)
    assert before[0].error == "not executable (chmod +x it)"
    binary.chmod(0o755)
    after = await scan(plugins, {item.file_name: item for item in before})
    assert after[0].fingerprint == before[0].fingerprint
    assert after[0].plugin_id == "hello"
    binary.chmod(0o644)
    again = await scan(plugins, {item.file_name: item for item in after})
    assert again[0].error == "not executable (chmod +x it)"


async def test_fingerprint_follows_the_symlink_target(tmp_path: Path) -> None:
    """A symlinked plugin's fingerprint is its target's, and a broken symlink has none."""
    plugins = tmp_path / "plugins"
    target = script(plugins, "lib/impl", prints(metadata("hello")))
    (plugins / "hello.binary").symlink_to(target)
    (plugins / "gone.binary").symlink_to("lib/missing")
    found = {item.file_name: item for item in await scan(plugins)}
    stat = await trio.Path(target).stat()
    assert found["hello.binary"].fingerprint == Fingerprint(
        stat.st_size, stat.st_mtime_ns, stat.st_ino
    )
    assert found["gone.binary"].fingerprint is None
    assert found["gone.binary"].error == "broken symlink"
