"""Plugin discovery: every ``*.binary`` in the plugins directory, accepted or rejected.

A scan lists the directory, runs ``BINARY --metadata`` for each candidate
(concurrently, each bounded by :func:`~toru.plugins.metadata.read_metadata`'s
5 s timeout and 64 KiB cap) and returns one :class:`Discovered` per file, in
file-name order. Nothing is dropped silently: a binary that cannot be used is
listed with the precise reason, the same words ``toru plugin check`` prints.

Rescans are cheap: a file whose :class:`Fingerprint` (size, mtime, inode) did
not change since the previous scan is not run again; its earlier result is
reused. Conflicts (a duplicate id or route) are decided afresh on every scan,
in file-name order, so removing the first of two duplicates frees the second.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs
import structlog
import trio

from toru.plugins.metadata import (
    MetadataError,
    MetadataUnavailable,
    PluginMetadata,
    check_binary,
    read_metadata,
)

log = structlog.get_logger("toru.plugins")

SUFFIX = ".binary"
DIRECTORY_MODE = 0o755


@attrs.frozen
class Fingerprint:
    """What identifies one version of a binary, for change detection (hot reload)."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, stat: os.stat_result) -> Fingerprint:
        return cls(stat.st_size, stat.st_mtime_ns, stat.st_ino)


@attrs.frozen
class Discovered:
    """One ``*.binary`` file found in the plugins directory: accepted or rejected, and why."""

    file_name: str
    #: ``PLUGINS_DIR / file_name``, as found (a symlink is not resolved).
    path: Path
    #: ``None`` when the file (or a symlink's target) could not be stat'ed.
    fingerprint: Fingerprint | None
    #: ``None`` when rejected.
    metadata: PluginMetadata | None
    #: The precise rejection reason; ``None`` when accepted.
    error: str | None
    #: What running ``--metadata`` gave (metadata, or the reason), before conflicts were
    #: decided; ``None`` when it was not run. A rescan reuses it while the fingerprint holds,
    #: so a duplicate is accepted without re-running once the first claimant is gone.
    _ran: PluginMetadata | str | None = attrs.field(default=None, repr=False, eq=False, alias="ran")

    @property
    def plugin_id(self) -> str | None:
        """The plugin's id when accepted, else ``None``."""
        return self.metadata.id if self.metadata is not None else None


def accepted(found: Iterable[Discovered]) -> dict[str, Discovered]:
    """The accepted plugins among *found*, keyed by plugin id."""
    return {item.metadata.id: item for item in found if item.metadata is not None}


@attrs.frozen
class _Candidate:
    """A directory entry that may be a plugin, as the listing saw it."""

    file_name: str
    fingerprint: Fingerprint | None
    refusal: str | None  # decided from the path alone (a symlink out of the directory)
    #: A regular file (or a symlink to one) that we may execute. Only the outcome of a run is
    #: reused: ``chmod +x`` changes no fingerprint field, yet must be noticed at once.
    runnable: bool


def _list_candidates(plugins_dir: Path) -> list[_Candidate]:
    """Create the directory if missing, then list ``*.binary`` files and symlinks (blocking)."""
    try:
        plugins_dir.mkdir(mode=DIRECTORY_MODE, parents=True)
    except FileExistsError:
        pass
    else:
        plugins_dir.chmod(DIRECTORY_MODE)  # exactly 0755, whatever the umask
    root = Path(os.path.realpath(plugins_dir))
    candidates = []
    with os.scandir(plugins_dir) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not name.endswith(SUFFIX):
                continue
            if not (entry.is_symlink() or entry.is_file(follow_symlinks=False)):
                continue  # a directory, FIFO, socket or device named like a plugin
            refusal = None
            if entry.is_symlink():
                # realpath (unlike Path.resolve on 3.11) never raises, even on a loop.
                target = Path(os.path.realpath(entry.path))
                if not target.is_relative_to(root):
                    refusal = f"symlink points outside the plugins directory (-> {target})"
            try:
                fingerprint: Fingerprint | None = Fingerprint.of(os.stat(entry.path))
            except OSError:
                fingerprint = None  # a broken symlink, or the file just went away
            runnable = os.path.isfile(entry.path) and os.access(entry.path, os.X_OK)
            candidates.append(_Candidate(name, fingerprint, refusal, runnable))
    candidates.sort(key=lambda candidate: candidate.file_name)
    return candidates


async def _read(binary: Path) -> tuple[PluginMetadata | str, bool]:
    """The plugin's metadata or the reason it cannot be used, and whether it was run.

    Only the outcome of a run is worth reusing; a refusal before running (not
    executable, broken symlink) is cheap to decide again and may change without
    the fingerprint changing (``chmod``). Never raises but ``Cancelled``.
    """
    try:
        await trio.to_thread.run_sync(check_binary, binary)
    except MetadataError as exc:
        return str(exc), False
    except OSError as exc:  # e.g. a directory on the way is not readable
        return f"cannot read it: {exc.strerror or exc}", False
    try:
        return await read_metadata(binary), True
    except MetadataUnavailable as exc:
        return str(exc), False  # of the moment (EMFILE, ENOMEM): decided again next scan
    except MetadataError as exc:
        return str(exc), True
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}", True
    except Exception as exc:
        # One odd binary must not stop the scan of the others; the log keeps the details.
        log.warning("reading plugin metadata failed", binary=str(binary), exc_info=True)
        return f"cannot read it: {type(exc).__name__}: {exc}", False


def _previous_outcome(
    previous: Mapping[str, Discovered], candidate: _Candidate
) -> PluginMetadata | str | None:
    """What running this unchanged file gave in the previous scan; ``None``: run it again."""
    before = previous.get(candidate.file_name)
    if before is None or not candidate.runnable or candidate.fingerprint is None:
        return None
    if before.fingerprint != candidate.fingerprint:
        return None
    return before._ran


async def scan(
    plugins_dir: Path,
    previous: Mapping[str, Discovered] | None = None,
    *,
    concurrency: int = 8,
) -> list[Discovered]:
    """Discover every ``*.binary`` in *plugins_dir* (created, 0755, if missing).

    Returns one :class:`Discovered` per regular file or symlink named
    ``*.binary`` (hidden names and anything else are skipped), sorted by file
    name. At most *concurrency* ``--metadata`` runs happen at once. A file whose
    fingerprint is unchanged since *previous* (keyed by file name) reuses that
    result instead of being run again. A symlink whose target resolves outside
    the directory is refused without being run. Then, in file-name order, a
    binary whose id or route is already taken is rejected. Rejections never
    raise; only cancellation propagates (and ``OSError`` when the plugins
    directory itself cannot be created or listed).
    """
    previous = previous or {}
    candidates = await trio.to_thread.run_sync(_list_candidates, plugins_dir)
    outcomes: dict[str, PluginMetadata | str] = {}
    ran: dict[str, PluginMetadata | str] = {}
    limiter = trio.CapacityLimiter(concurrency)

    async def read_one(file_name: str) -> None:
        async with limiter:
            outcome, was_run = await _read(plugins_dir / file_name)
        outcomes[file_name] = outcome
        if was_run:
            ran[file_name] = outcome

    async with trio.open_nursery() as nursery:
        for candidate in candidates:
            if candidate.refusal is not None:
                outcomes[candidate.file_name] = candidate.refusal
            elif (reused := _previous_outcome(previous, candidate)) is not None:
                outcomes[candidate.file_name] = ran[candidate.file_name] = reused
            else:
                nursery.start_soon(read_one, candidate.file_name)

    return _decide_conflicts(plugins_dir, candidates, outcomes, ran)


def _decide_conflicts(
    plugins_dir: Path,
    candidates: list[_Candidate],
    outcomes: Mapping[str, PluginMetadata | str],
    ran: Mapping[str, PluginMetadata | str],
) -> list[Discovered]:
    """Accept or reject each candidate in file-name order: first to claim an id or route wins."""
    id_owner: dict[str, str] = {}  # plugin id -> file name
    route_owner: dict[str, str] = {}  # route -> plugin id
    found = []
    for candidate in candidates:
        name = candidate.file_name
        outcome = outcomes[name]
        read = outcome if isinstance(outcome, PluginMetadata) else None
        error = outcome if isinstance(outcome, str) else None
        if read is not None:
            if read.id in id_owner:
                error = f"duplicate id {read.id!r} (also in {id_owner[read.id]})"
            elif read.route in route_owner:
                error = (
                    f"route {read.route!r} is already used by plugin {route_owner[read.route]!r}"
                )
            else:
                id_owner[read.id] = name
                route_owner[read.route] = read.id
        found.append(
            Discovered(
                file_name=name,
                path=plugins_dir / name,
                fingerprint=candidate.fingerprint,
                metadata=read if error is None else None,
                error=error,
                ran=ran.get(name),
            )
        )
    return found
