"""``toru plugin build DIR``: one executable file from a Python plugin directory.

The result is a zipapp, ``ID.binary``, starting with ``#!/usr/bin/env python3``.
It carries the plugin's code, the SDK (``toru/sdk`` and the framing module it
uses), the SDK's pure-Python dependencies (Trio, attrs and theirs) and the
pure-Python packages named in the plugin's ``requirements.txt``, so it runs on
any Python 3.11+ without Toru's virtual environment. Their bytecode, compiled by
the Python that builds, is packed beside the sources, so a start does not
compile Trio again. ``bundle.js``, the
plugin's front end, is placed next to it at ``OUT/ID/bundle.js``.
"""

from __future__ import annotations

import compileall
import importlib
import os
import py_compile
import shutil
import stat
import subprocess
import sys
import tempfile
import zipapp
from pathlib import Path

import attrs

import toru
from toru.plugins.metadata import METADATA_TIMEOUT, MetadataError, PluginMetadata, parse_metadata
from toru.plugins.process import plugin_environment

#: What the SDK imports at run time: trio and its dependencies, attrs (both import names).
RUNTIME_PACKAGES = ("trio", "outcome", "sniffio", "sortedcontainers", "idna", "attr", "attrs")
#: The parts of Toru a packaged plugin carries: nothing of the server.
TORU_FILES = (
    "__init__.py", "plugins/__init__.py", "plugins/envelope.py", "plugins/framing.py",
    "plugins/naming.py", "sdk",
)  # fmt: skip
SKIPPED = shutil.ignore_patterns(
    "__pycache__", "*.pyc", ".*", "node_modules", "bundle.js", "requirements.txt", "*.binary"
)
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib")
ENTRY_WRAPPER = """\
import sys

if sys.version_info < (3, 11):
    sys.exit(
        "this Toru plugin needs Python 3.11 or newer; found %d.%d" % sys.version_info[:2]
    )

import runpy

runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
"""


class BuildError(Exception):
    """The plugin cannot be built; the message says why and what to change."""


@attrs.frozen
class BuildResult:
    binary: Path
    bundle: Path | None
    metadata: PluginMetadata
    size: int


def _entry_module(source: Path, staging: Path) -> str:
    if (source / "plugin.py").is_file():
        return "plugin"
    if (source / "__main__.py").is_file():
        # The wrapper takes __main__.py's place; the author's code runs under another name.
        shutil.move(staging / "__main__.py", staging / "toru_plugin_main.py")
        return "toru_plugin_main"
    raise BuildError(f"{source} has neither plugin.py nor __main__.py; write one of them")


def _copy_package(name: str, staging: Path) -> None:
    module = importlib.import_module(name)
    origin = Path(module.__file__ or "")
    if origin.name == "__init__.py":
        shutil.copytree(origin.parent, staging / name, ignore=SKIPPED, dirs_exist_ok=True)
    else:
        shutil.copy2(origin, staging / origin.name)


def _copy_toru(staging: Path) -> None:
    package = Path(toru.__file__).parent
    for relative in TORU_FILES:
        source, target = package / relative, staging / "toru" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=SKIPPED)
        else:
            shutil.copy2(source, target)


def _install_requirements(requirements: Path, staging: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-compile", "--target", str(staging), "-r", str(requirements),
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise BuildError(f"cannot install {requirements.name}: {last}")
    compiled = sorted(
        path.relative_to(staging)
        for path in staging.rglob("*")
        if path.suffix in COMPILED_SUFFIXES or ".so." in path.name
    )
    if compiled:
        raise BuildError(
            f"{requirements.name} must name pure-Python packages only; "
            f"{compiled[0].parts[0]} ships compiled code ({compiled[0]})"
        )
    shutil.rmtree(staging / "bin", ignore_errors=True)


def _read_metadata(binary: Path) -> PluginMetadata:
    try:
        result = subprocess.run(
            [str(binary), "--metadata"],
            capture_output=True,
            timeout=METADATA_TIMEOUT,
            env=plugin_environment({}),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BuildError(
            f"the built plugin's --metadata timed out after {METADATA_TIMEOUT:g} s"
        ) from None
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        raise BuildError(
            f"the built plugin's --metadata exited {result.returncode}: "
            + (lines[-1] if lines else "no output")
        )
    try:
        return parse_metadata(result.stdout)
    except MetadataError as exc:
        raise BuildError(f"the built plugin's metadata is invalid: {exc}") from None


def build_plugin(source: Path, out_dir: Path) -> BuildResult:
    """Package the plugin in *source* as ``out_dir/ID.binary`` (+ ``out_dir/ID/bundle.js``)."""
    if not source.is_dir():
        raise BuildError(f"{source} is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="toru-build-") as temp:
        staging = Path(temp) / "app"
        shutil.copytree(source, staging, ignore=SKIPPED)
        module = _entry_module(source, staging)
        (staging / "__main__.py").write_text(ENTRY_WRAPPER.format(module=module))
        _copy_toru(staging)
        for name in RUNTIME_PACKAGES:
            _copy_package(name, staging)
        if (requirements := source / "requirements.txt").is_file():
            _install_requirements(requirements, staging)
        # Bytecode next to each source (the legacy .pyc place, the one zipimport reads):
        # without it every start of the plugin compiles Trio anew, about half of its
        # start-up time (tests/bench: 0.8 s -> 0.4 s). The archive never changes, hence
        # unchecked hashes. Another Python version refuses them by their magic number and
        # compiles the sources, as before. Errors are left to the import, as before.
        compileall.compile_dir(
            staging,
            quiet=2,
            legacy=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        built = Path(temp) / "plugin.binary"
        zipapp.create_archive(
            staging, target=built, interpreter="/usr/bin/env python3", compressed=True
        )
        built.chmod(built.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        metadata = _read_metadata(built)
        binary = out_dir / f"{metadata.id}.binary"
        # Same directory, then rename: a running scan never sees half a file.
        partial = out_dir / f".{metadata.id}.binary.partial"
        shutil.copy2(built, partial)
        os.replace(partial, binary)
    bundle = None
    if (bundle_source := source / "bundle.js").is_file():
        bundle = out_dir / metadata.id / "bundle.js"
        bundle.parent.mkdir(exist_ok=True)
        shutil.copy2(bundle_source, bundle)
    return BuildResult(binary, bundle, metadata, binary.stat().st_size)


def main(source: Path, out_dir: Path) -> int:
    try:
        result = build_plugin(source, out_dir)
    except (BuildError, OSError) as exc:
        print(f"toru: error: {exc}", file=sys.stderr)
        return 1
    print(f"built {result.binary} ({result.size / 1024:.0f} KiB): {result.metadata.id} "
          f"{result.metadata.version}, route {result.metadata.route}")  # fmt: skip
    if result.bundle:
        print(f"front end: {result.bundle}")
    return 0
