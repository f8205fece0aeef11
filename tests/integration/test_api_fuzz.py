"""Schemathesis against a real server, as a client user and as the administrator: no answer
is a 500, and every answer matches the OpenAPI document (status, content type, schema).

The seed is fixed so that a failure reproduces; set ``TORU_FUZZ_SEED`` to explore others
(``TORU_FUZZ_EXAMPLES`` raises the number of cases per operation).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.conftest import CLIENT_PASSWORD
from tests.support import ADMIN_PASSWORD, client, install_plugins, login, server_process

REPO = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


async def fuzz(url: str, cookie: str, out: Path) -> tuple[int, str]:
    command = [
        str(SCHEMATHESIS), "run", f"{url}/api/openapi.json",
        "--checks", CHECKS,
        "--header", f"Cookie: session_id={cookie}",
        # Streams never end, and logging out would end the session the run relies on.
        "--exclude-path-regex", "stream$",
        "--exclude-path", "/api/auth/logout",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", os.environ.get("TORU_FUZZ_EXAMPLES", "10"),
        "--seed", os.environ.get("TORU_FUZZ_SEED", "20261126"),
        "--workers", "2",
        "--request-timeout", "40",
        "--no-color",
    ]  # fmt: skip
    result = await trio.run_process(
        command, capture_stdout=True, stderr=subprocess.STDOUT, check=False, cwd=out.parent,
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    report = result.stdout.decode(errors="replace")
    await trio.Path(out).write_text(report)
    return result.returncode, report


@pytest.mark.slow
async def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    tmp_path: Path, built_example: Path
) -> None:
    install_plugins(
        tmp_path / "plugins",
        built_example,
        REPO / "tests" / "fixtures" / "legacy_python.binary",
        enabled=["hello-plugin-python", "legacy-python"],
    )
    async with server_process(tmp_path) as server:
        url = await server.start()
        async with client(url) as admin, client(url) as carol:
            await login(admin, "admin", ADMIN_PASSWORD)
            made = await admin.post(
                "/api/users", json={"username": "carol", "password": CLIENT_PASSWORD}
            )
            assert made.status_code == 201
            # Both log in before any fuzzing: random failed logins may lock the address.
            await login(carol, "carol", CLIENT_PASSWORD)
            # The client first: the admin's run may delete or deactivate carol.
            for who, http in (("client", carol), ("admin", admin)):
                status, report = await fuzz(
                    url, http.cookies["session_id"], tmp_path / f"schemathesis-{who}.txt"
                )
                assert status == 0, f"schemathesis as {who}:\n{report[-6000:]}"
                assert "401 Unauthorized" not in report, f"{who}'s session was lost:\n{report}"
            assert (await admin.get("/api/health")).status_code == 200
