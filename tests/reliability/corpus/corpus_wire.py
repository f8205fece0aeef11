"""The wire protocol for the bad-plugin corpus: just enough to misbehave precisely.

Standard library only. Every corpus plugin is a small script that imports this
module (the tests copy it beside them into the plugins directory; Python puts
a script's own directory first on ``sys.path``). See ``docs/reliability.md``.
"""

import contextlib
import json
import os
import socket
import struct
import sys
import threading
import time
from datetime import UTC, datetime

MAX_FRAME = 16 * 1024 * 1024
#: Frames are written whole, whichever thread writes them.
_SEND_LOCK = threading.Lock()


def metadata(plugin_id, *, modern=False, **fields):
    """Answer ``--metadata`` (and exit) when asked; return otherwise."""
    if "--metadata" in sys.argv[1:]:
        data = {"id": plugin_id, "name": plugin_id, "version": "1", "route": f"/{plugin_id}"}
        if modern:
            data["protocol"] = 2
        data.update(fields)
        print(json.dumps(data), flush=True)
        sys.exit(0)


def socket_path():
    return os.environ["TORU_PLUGIN_SOCKET"]


def here(name):
    """A file beside the plugin (its working directory is the plugins directory)."""
    return os.path.join(os.getcwd(), name)


def note(name, text):
    """Leave *text* in a file for the test to read (pids of children, progress)."""
    path = here(name)
    with open(path + ".tmp", "w") as out:
        out.write(text)
    os.replace(path + ".tmp", path)


def listen(backlog=16):
    path = socket_path()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(backlog)
    return server


def read_exactly(conn, size):
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_frame(conn):
    """The next message, or None when the peer closed the connection."""
    header = read_exactly(conn, 4)
    if header is None:
        return None
    (size,) = struct.unpack(">I", header)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    body = read_exactly(conn, size)
    return None if body is None else json.loads(body)


def write_raw(conn, body):
    with _SEND_LOCK:
        conn.sendall(struct.pack(">I", len(body)) + body)


def write_frame(conn, message):
    write_raw(conn, json.dumps(message).encode())


def envelope(kind, request_id, payload):
    return {
        "type": kind,
        "timestamp": datetime.now(UTC).isoformat(),
        "request_id": request_id,
        "payload": {"type": kind, **payload},
    }


def http_reply(conn, request_id, status=200, body=None):
    text = json.dumps(body if body is not None else {"ok": True})
    payload = {"status": status, "headers": {"content-type": "application/json"}, "body": text}
    write_frame(conn, envelope("http", request_id, payload))


def action(message):
    return (message.get("payload") or {}).get("action")


def http_path(message):
    return ((message.get("payload") or {}).get("payload") or {}).get("path", "/")


def serve_legacy(server, on_http=None, on_shutdown=None):
    """The old host's way: one connection at a time, frames until it closes.

    *on_http(conn, message)* answers a request (default: 200 ``{"ok": true}``);
    *on_shutdown()* handles the shutdown message (default: exit 0).
    """
    while True:
        conn, _ = server.accept()
        with conn:
            while True:
                message = read_frame(conn)
                if message is None:
                    break
                if message.get("type") == "http":
                    if on_http is None:
                        http_reply(conn, message["request_id"])
                    else:
                        on_http(conn, message)
                elif action(message) == "shutdown":
                    if on_shutdown is None:
                        sys.exit(0)
                    on_shutdown()


def accept_modern(server):
    """Accept Toru's long-lived connection (after its readiness probe) and read ``init``."""
    while True:
        conn, _ = server.accept()
        message = read_frame(conn)
        if message is not None and action(message) == "init":
            return conn
        conn.close()  # the readiness probe: connected and closed at once


def serve_modern(conn, on_http=None):
    """Answer pings and requests on the long-lived connection until it closes; exit on
    shutdown."""
    while True:
        message = read_frame(conn)
        if message is None:
            return
        if message.get("type") == "http":
            if on_http is None:
                http_reply(conn, message["request_id"])
            else:
                on_http(conn, message)
        elif action(message) == "ping":
            write_frame(conn, envelope("lifecycle", message["request_id"], {"action": "pong"}))
        elif action(message) == "shutdown":
            sys.exit(0)


def sleep_forever():
    while True:
        time.sleep(3600)
