"""The bad-plugin corpus as a table: each file, the kind of fault it is, and what Toru must
show for it. ``docs/reliability.md`` prints the same table; a test keeps the two in step.

Rejected at discovery (``GET /api/plugins`` → ``rejected``, exact reason), run by
``test_corpus.py::test_every_bad_binary_is_rejected_with_its_reason``; the runtime faults
by ``test_corpus.py::test_runtime_faults_leave_the_server_and_other_plugins_unharmed``,
whose checks per file are written out there.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Case:
    file: str
    kind: str
    #: What the API shows: the exact ``rejected`` reason, or a summary of the runtime check.
    expect: str


REJECTED = [
    Case("not_executable.binary", "not executable (mode 0644)", "not executable (chmod +x it)"),
    Case(
        "not_a_program.binary",
        "not a program (no #!, junk bytes: exec format error)",
        "not a program (the kernel cannot execute it)",
    ),
    Case(
        "metadata_fails.binary",
        "--metadata exits 1",
        "--metadata exited 1: metadata store is corrupt",
    ),
    Case("metadata_hangs.binary", "--metadata hangs", "--metadata timed out after 5 s"),
    Case("metadata_huge.binary", "--metadata prints 16 MiB", "--metadata printed more than 64 KiB"),
    Case(
        "metadata_not_json.binary",
        "--metadata is not JSON",
        "invalid JSON at line 1 column 1: Expecting value",
    ),
    Case("metadata_not_utf8.binary", "--metadata is not UTF-8", "output is not UTF-8 (byte 0)"),
    Case(
        "metadata_array.binary",
        "--metadata is JSON but not an object",
        "expected a JSON object, got a JSON list",
    ),
    Case(
        "metadata_empty.binary",
        "--metadata prints nothing",
        "printed nothing; expected one JSON object",
    ),
    Case("metadata_missing_field.binary", "missing field", "missing field 'route'"),
    Case("metadata_invalid_id.binary", "invalid id", "id 'bad id' has a space"),
    Case(
        "metadata_wrong_type.binary",
        "field of the wrong type",
        "field 'version' must be a string, not int",
    ),
    Case(
        "metadata_bad_protocol.binary",
        "unknown protocol version",
        "protocol 3 is not supported; use 2 (or leave it out)",
    ),
    Case(
        "twin_id.binary",
        "duplicate id",
        "duplicate id 'legacy-python' (also in legacy_python.binary)",
    ),
    Case(
        "twin_route.binary",
        "duplicate route",
        "route '/legacy-python' is already used by plugin 'legacy-python'",
    ),
    Case(
        "core_route.binary",
        "route shadowing a core path",
        "route '/api' is reserved for Toru's own pages",
    ),
]

#: Accepted at discovery, but its ``--metadata`` run leaves a child behind.
METADATA_LEAVES_CHILD = Case(
    "metadata_leaves_child.binary",
    "--metadata leaves a child holding stdout",
    "accepted; the child is killed with the process group",
)

RUNTIME = [
    Case(
        "never_listens.binary",
        "never creates the socket",
        "enable 409; last_error 'not ready: nothing listened on <socket> within 5 s'; "
        "stopped by SIGTERM; backoff",
    ),
    Case(
        "binds_never_listens.binary",
        "creates the socket file, never listens",
        "as above; the socket file is removed",
    ),
    Case(
        "exits_at_once.binary",
        "exits at once",
        "enable 409; last_error 'exited 3 before it was ready'; stderr line in the crashed event",
    ),
    Case(
        "crashes_after_init.binary",
        "crashes after init (SIGSEGV)",
        "last_error 'killed by SIGSEGV while running'; restarted",
    ),
    Case(
        "closes_socket.binary",
        "closes the socket, keeps running",
        "last_error 'connection lost: plugin 'closes-socket': the plugin closed the "
        "connection'; SIGTERM; restarted",
    ),
    Case(
        "garbage_frames.binary",
        "garbage frame",
        "last_error 'connection lost: … protocol error: frame is not JSON: Expecting value at "
        "line 1 column 1'",
    ),
    Case(
        "huge_frame.binary",
        "announces a 4 GiB frame",
        "last_error 'connection lost: … protocol error: frame of 4294967295 bytes exceeds the "
        "16 MiB limit'",
    ),
    Case(
        "unknown_request_id.binary",
        "reply for an unknown request id",
        "200 with the real reply; toru.log 'reply for unknown request_id 'no-such-request''",
    ),
    Case(
        "late_reply.binary",
        "replies after the timeout",
        "504 after 30 s; the late reply logged and dropped; other paths 200; not restarted",
    ),
    Case(
        "never_replies.binary",
        "never replies",
        "504 'did not answer within 30 s'; not restarted",
    ),
    Case(
        "holds_socket.binary",
        "holds the socket open, reads nothing",
        "no pong: a request in flight is 502 when the ping rule ends the run (last_error "
        "'unhealthy: missed 3 pings in a row', rule pings); restarted; disable: SIGTERM",
    ),
    Case(
        "stalls_mid_request.binary",
        "stops reading while a 4 MiB request is being written",
        "502: the ping rule ends the run before the 30 s timeout, the half-written frame "
        "goes with the connection; last_error 'unhealthy: missed 3 pings in a row'; "
        "restarted, answers 200 again",
    ),
    Case(
        "kv_flood.binary",
        "floods storage requests, reads no reply",
        "at most 64 served at once, the rest backs up in the plugin's socket: its sends "
        "stall, the server's memory stays flat; disable: SIGTERM",
    ),
    Case(
        "stray_flood.binary",
        "floods replies to requests never made",
        "all ignored; toru.log: 10 lines, then one per 10 000 with the count; not "
        "restarted, answers 200",
    ),
    Case(
        "stdout_flood.binary",
        "floods stdout with 100 MB",
        "log files ≤ 6 × 10 MiB; 'rate limit: dropped N lines'; still answering",
    ),
    Case(
        "long_lines.binary",
        "prints 1 MiB lines",
        "one record per line, cut at 64 KiB with '[line truncated]'",
    ),
    Case(
        "ignores_shutdown.binary",
        "ignores the shutdown message",
        "disable: stopped how 'SIGTERM', exit 'killed by SIGTERM'",
    ),
    Case(
        "ignores_sigterm.binary",
        "ignores shutdown and SIGTERM",
        "disable: stopped how 'SIGKILL', exit 'killed by SIGKILL'",
    ),
    Case(
        "forks_grandchildren.binary",
        "forks grandchildren that ignore SIGTERM",
        "disable: stopped how 'shutdown message'; the grandchildren are killed",
    ),
    Case(
        "legacy_garbage_reply.binary",
        "legacy reply that is not JSON",
        "502 '… protocol error: frame is not JSON …'; not restarted",
    ),
    Case(
        "bad_reply_shape.binary",
        "reply of no known shape",
        "502 '… http reply has neither payload.status nor …'; not restarted",
    ),
    Case(
        "stops_answering_pings.binary",
        "stops answering pings",
        "unhealthy events 1, 2, 3; last_error 'unhealthy: missed 3 pings in a row'; restarted",
    ),
    Case(
        "crash_loop.binary",
        "crash loop (exit 70 within 1.5 s of ready)",
        "last_error 'exited 70 while running'; restarted again and again",
    ),
]

ALL = [*REJECTED, METADATA_LEAVES_CHILD, *RUNTIME]
