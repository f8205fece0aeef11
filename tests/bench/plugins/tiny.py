#!/usr/bin/env python3
"""A tiny modern plugin in the standard library, parametrised by its file name.

Install it as ``PLUGINS_DIR/<id>.binary``: its id is the file name without
``.binary`` and its route ``/<id>``, so a hundred copies under a hundred names
are a hundred distinct plugins that each start in a few milliseconds (no Trio
to import). It declares ``"protocol": 2``: Toru keeps one connection to it,
pings it (it answers ``pong``) and sends it HTTP requests (``GET`` anything
answers ``{"ok": true, "id": ...}``).

Two names change how it stops, for the disable benchmark:

- ``...-ignore-shutdown``: reads the ``shutdown`` message and carries on, so Toru
  must send SIGTERM (which ends it);
- ``...-ignore-sigterm``: ignores the message and SIGTERM too; only SIGKILL ends it.
"""

import json
import os
import signal
import socket
import struct
import sys
from datetime import UTC, datetime

PLUGIN_ID = os.path.basename(sys.argv[0]).removesuffix(".binary")
IGNORE_SIGTERM = PLUGIN_ID.endswith("-ignore-sigterm")
IGNORE_SHUTDOWN = IGNORE_SIGTERM or PLUGIN_ID.endswith("-ignore-shutdown")
HEADER = struct.Struct(">I")


def read_exactly(conn, size):
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def write(conn, kind, request_id, payload):
    message = {
        "type": kind,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "request_id": request_id,
        "payload": {"type": kind, **payload},
    }
    body = json.dumps(message).encode()
    conn.sendall(HEADER.pack(len(body)) + body)


def handle(conn, message):
    kind = message.get("type")
    payload = message.get("payload") or {}
    request_id = message.get("request_id")
    if kind == "lifecycle":
        action = payload.get("action")
        if action == "ping":
            write(conn, "lifecycle", request_id, {"action": "pong"})
        elif action == "shutdown" and not IGNORE_SHUTDOWN:
            sys.exit(0)
    elif kind == "http":
        body = json.dumps({"ok": True, "id": PLUGIN_ID})
        reply = {"status": 200, "headers": {"content-type": "application/json"}, "body": body}
        write(conn, "http", request_id, reply)


def main():
    if sys.argv[1:] == ["--metadata"]:
        metadata = {"id": PLUGIN_ID, "name": PLUGIN_ID, "version": "1.0.0"}
        print(json.dumps({**metadata, "route": f"/{PLUGIN_ID}", "protocol": 2}))
        return
    if IGNORE_SIGTERM:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    path = os.environ["TORU_PLUGIN_SOCKET"]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    while True:  # Toru's readiness probe, then its one long-lived connection
        conn, _ = server.accept()
        with conn:
            while (header := read_exactly(conn, 4)) is not None:
                body = read_exactly(conn, HEADER.unpack(header)[0])
                if body is None:
                    break
                handle(conn, json.loads(body))


if __name__ == "__main__":
    main()
