"""``toru plugin build``: one self-contained executable that passes the checker anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import run_toru

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello-plugin-python"


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything pointing at this repository or its venv."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "VIRTUAL_ENV"} and not key.startswith(("TORU_", "ADMIN_"))
    }
    env["PATH"] = os.pathsep.join(
        part for part in env.get("PATH", "").split(os.pathsep) if ".venv" not in part
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plugins")
    result = subprocess.run(
        [sys.executable, "-m", "toru", "plugin", "build", str(EXAMPLE), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"built {out / 'hello-plugin-python.binary'}" in result.stdout
    return out


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python 3.11 with nothing installed: a fresh venv without pip, nor system packages."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    probe = subprocess.run(
        [venv / "bin" / "python3", "-c", "import trio"], capture_output=True, check=False
    )
    assert probe.returncode != 0, "the bare Python must not have trio"
    return venv / "bin"


def test_output_layout(built: Path) -> None:
    """ID.binary is an executable zipapp (python3 shebang, bytecode inside); bundle.js in ID/."""
    binary = built / "hello-plugin-python.binary"
    assert os.access(binary, os.X_OK)
    assert binary.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    names = set(zipfile.ZipFile(binary).namelist())
    assert {"__main__.py", "plugin.py", "toru/sdk/__init__.py", "toru/plugins/framing.py"} <= names
    assert "trio/__init__.py" in names
    assert "attr/__init__.py" in names
    assert not any(n.startswith(("toru/api", "toru/auth", "toru/db")) for n in names)
    assert "trio/__init__.pyc" in names  # bytecode beside the sources: no compiling at start
    assert not any("__pycache__" in n or n.endswith("bundle.js") for n in names)
    assert (built / "hello-plugin-python" / "bundle.js").read_bytes() == (
        EXAMPLE / "bundle.js"
    ).read_bytes()


def test_metadata_runs_on_a_bare_python_outside_the_repo(
    built: Path, bare_python: Path, tmp_path: Path
) -> None:
    """The binary needs nothing installed: --metadata works from elsewhere on a bare Python."""
    result = subprocess.run(
        [bare_python / "python3", built / "hello-plugin-python.binary", "--metadata"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "id": "hello-plugin-python",
        "name": "Hello World (Python)",
        "version": "0.1.0",
        "route": "/hello-python",
        "icon": "🐍",
        "author": "The Toru developers",
        "protocol": 2,
    }


async def test_built_plugin_passes_the_checker_on_a_bare_python(
    built: Path, bare_python: Path
) -> None:
    """`toru plugin check` on the built example (bare python3 first on PATH): usable, pong."""
    env = clean_env(PATH=f"{bare_python}{os.pathsep}{clean_env()['PATH']}")
    status, stdout, stderr = await run_toru(
        "plugin", "check", str(built / "hello-plugin-python.binary"), env=env
    )
    assert status == 0, stdout + stderr
    lines = stdout.splitlines()
    assert "protocol 2 (modern, pings)" in lines[0]
    assert any(line.startswith("✔ ping      pong in") for line in lines), lines
    assert any(line.startswith("✔ GET /     200 in") for line in lines), lines
    assert any(line.startswith("✔ shutdown  exited 0") for line in lines), lines
    assert lines[-1] == "the plugin is usable"


def plugin_dir(tmp_path: Path, code: str, **files: str) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    (source / "plugin.py").write_text(code)
    for name, text in files.items():
        (source / name.replace("_txt", ".txt")).write_text(text)
    return source


SIX_PLUGIN = """\
import six
from toru.sdk import Plugin

plugin = Plugin(id="uses-six", name="Six", version="1.0", route="/six")

@plugin.get("/")
async def index(request):
    return {"six": six.__version__}

if __name__ == "__main__":
    plugin.run()
"""


async def test_pure_python_requirements_are_bundled(tmp_path: Path, bare_python: Path) -> None:
    """A package named in requirements.txt travels inside the binary."""
    source = plugin_dir(tmp_path, SIX_PLUGIN, requirements_txt="six\n")
    out = tmp_path / "out"
    status, stdout, stderr = await run_toru(
        "plugin", "build", str(source), "-o", str(out), env=clean_env()
    )
    assert status == 0, stderr
    assert "six.py" in zipfile.ZipFile(out / "uses-six.binary").namelist()
    env = clean_env(PATH=f"{bare_python}{os.pathsep}{clean_env()['PATH']}")
    status, stdout, _ = await run_toru("plugin", "check", str(out / "uses-six.binary"), env=env)
    assert status == 0, stdout


async def test_compiled_requirements_are_refused(tmp_path: Path) -> None:
    """A requirement with compiled code is refused: the binary must run on any Python."""
    source = plugin_dir(tmp_path, SIX_PLUGIN, requirements_txt="markupsafe\n")
    status, _, stderr = await run_toru(
        "plugin", "build", str(source), "-o", str(tmp_path / "out"), env=clean_env()
    )
    assert status == 1
    assert stderr.startswith("toru: error: requirements.txt must name pure-Python packages only;")
    assert "markupsafe ships compiled code" in stderr
    assert not (tmp_path / "out" / "uses-six.binary").exists()


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (None, "has neither plugin.py nor __main__.py"),
        ("import sys\nsys.exit(5)\n", "the built plugin's --metadata exited 5"),
        (
            'print(\'{"id": "a.b", "name": "x", "version": "1", "route": "/a"}\')\n',
            "the built plugin's metadata is invalid: id 'a.b' has a dot",
        ),
    ],
)
async def test_build_errors_are_one_clear_line(
    tmp_path: Path, code: str | None, reason: str
) -> None:
    """A directory that cannot become a plugin says why, in one line, exit 1."""
    source = tmp_path / "src"
    source.mkdir()
    if code is not None:
        (source / "plugin.py").write_text(code)
    status, _, stderr = await run_toru(
        "plugin", "build", str(source), "-o", str(tmp_path / "out"), env=clean_env()
    )
    assert status == 1
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert reason in stderr


async def test_default_output_is_the_plugins_directory(tmp_path: Path) -> None:
    """Without -o, the binary lands in TORU_PLUGINS_DIR."""
    plugins = tmp_path / "plugins"
    status, _, stderr = await run_toru(
        "plugin", "build", str(EXAMPLE), env=clean_env(TORU_PLUGINS_DIR=str(plugins))
    )
    assert status == 0, stderr
    assert (plugins / "hello-plugin-python.binary").is_file()
    assert (plugins / "hello-plugin-python" / "bundle.js").is_file()
