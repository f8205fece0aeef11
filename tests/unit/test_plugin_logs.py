"""Per-plugin log files: record shapes, flood limiting, rotation without split lines, paging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toru.plugins import logs
from toru.plugins.logs import PluginLog, read_page


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_json_and_plain_lines_become_records(tmp_path: Path) -> None:
    """A JSON object keeps its fields; other lines are wrapped; Toru's fields are added."""
    log = PluginLog("p", tmp_path / "p.log")
    log.line("stderr", '{"level": "warn", "message": "disk low", "free": 3}', 42, 2)
    log.line("stdout", "plain text", 42, 2)
    log.line("stderr", "Traceback (most recent call last):", 42, 2)
    log.line("stdout", '["not", "an", "object"]', 42, 2)
    log.lifecycle("crashed", {"exit": "exited 1"})
    log.close()
    first, plain, error, array, crash = records(tmp_path / "p.log")
    assert (first["level"], first["free"], first["message"]) == ("warn", 3, "disk low")
    assert (first["plugin_id"], first["pid"], first["generation"], first["stream"]) == (
        "p",
        42,
        2,
        "stderr",
    )
    assert str(first["timestamp"]).endswith("Z")
    assert (plain["message"], plain["level"]) == ("plain text", "info")
    assert error["level"] == "error"
    assert array["message"] == '["not", "an", "object"]'
    assert (crash["event"], crash["level"], crash["source"], crash["exit"]) == (
        "crashed", "error", "toru", "exited 1"
    )  # fmt: skip


def test_a_flood_is_rate_limited_with_a_count(tmp_path: Path) -> None:
    """Past the burst, lines are dropped; the next allowed line is preceded by the count."""
    clock = Clock()
    log = PluginLog("p", tmp_path / "p.log", clock=clock)
    for i in range(10_000):
        log.line("stdout", f"line {i}", 1, 1)
    clock.now += 1  # a second later: 2 000 more lines allowed
    log.line("stdout", "after the flood", 1, 1)
    log.close()
    written = records(tmp_path / "p.log")
    assert len(written) == int(logs.BURST) + 2
    assert written[-2]["message"] == f"rate limit: dropped {10_000 - int(logs.BURST)} lines"
    assert written[-1]["message"] == "after the flood"


def test_rotation_never_splits_lines_and_paging_crosses_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rotated files hold whole JSON lines; pages run newest first across them; level filters."""
    monkeypatch.setattr(logs, "ROTATE_BYTES", 2000)
    log = PluginLog("p", tmp_path / "p.log")
    for i in range(100):
        log.line(
            "stdout",
            json.dumps({"message": f"m{i}", "level": "error" if i % 10 == 0 else "info"}),
            1,
            1,
        )
    log.close()
    files = sorted(tmp_path.glob("p.log*"))
    assert len(files) > 2
    for file in files:
        for line in file.read_text().splitlines():
            json.loads(line)
    page, more = read_page(tmp_path / "p.log", page=0, page_size=5, level=None)
    assert [r["message"] for r in page] == ["m99", "m98", "m97", "m96", "m95"]
    assert more
    errors, _ = read_page(tmp_path / "p.log", page=0, page_size=3, level="error")
    assert [r["message"] for r in errors] == ["m90", "m80", "m70"]
    second, _ = read_page(tmp_path / "p.log", page=1, page_size=5, level=None)
    assert [r["message"] for r in second] == ["m94", "m93", "m92", "m91", "m90"]
