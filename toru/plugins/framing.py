"""Length-prefixed JSON frames: a 4-byte big-endian length, then that many bytes of JSON.

Shared by Toru and by the plugin SDK, so it depends on the standard library
and Trio only. The size limit is enforced on both sides and checked from the
4-byte header, before a single byte of the body is buffered: a peer that
announces 4 GiB costs us nothing.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import trio

DEFAULT_MAX_FRAME = 16 * 1024 * 1024
HEADER = struct.Struct(">I")
_READ_CHUNK = 64 * 1024


class ProtocolError(Exception):
    """The peer broke the wire protocol; the message says how."""


class FrameTooLarge(ProtocolError):
    """A message to send would not fit in one frame; nothing was sent."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


def describe_size(size: int) -> str:
    """``16777216`` -> ``'16 MiB'``; other sizes in bytes."""
    if size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MiB"
    if size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} bytes"


def encode_frame(message: dict[str, Any], *, limit: int = DEFAULT_MAX_FRAME) -> bytes:
    """One frame holding *message* as compact UTF-8 JSON; refuses to exceed *limit*."""
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(body) > limit:
        raise FrameTooLarge(
            f"frame of {len(body)} bytes exceeds the {describe_size(limit)} limit", len(body)
        )
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    """Parse one frame body; it must be a UTF-8 JSON object."""
    try:
        message = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"frame is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            f"frame is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(message, dict):
        raise ProtocolError(f"frame holds a JSON {type(message).__name__}, not an object")
    return message


class FrameDecoder:
    """Turns a byte stream, fed in chunks of any size, into messages."""

    def __init__(self, *, limit: int = DEFAULT_MAX_FRAME) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._expected: int | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame (header included)."""
        return len(self._buffer) + (HEADER.size if self._expected is not None else 0)

    def feed(self, data: bytes | bytearray) -> list[dict[str, Any]]:
        """Add *data*; return every message it completes, in order.

        Raises :class:`ProtocolError` as soon as a header announces more than
        the limit, or a body is not a JSON object; the decoder is then unusable.
        """
        self._buffer += data
        messages: list[dict[str, Any]] = []
        while True:
            if self._expected is None:
                if len(self._buffer) < HEADER.size:
                    return messages
                (size,) = HEADER.unpack_from(self._buffer)
                if size > self.limit:
                    raise ProtocolError(
                        f"frame of {size} bytes exceeds the {describe_size(self.limit)} limit"
                    )
                del self._buffer[: HEADER.size]
                self._expected = size
            if len(self._buffer) < self._expected:
                return messages
            body = bytes(self._buffer[: self._expected])
            del self._buffer[: self._expected]
            self._expected = None
            messages.append(decode_body(body))


class FramedStream:
    """Messages over a Trio stream: one sender at a time, one reader at a time."""

    def __init__(self, stream: trio.abc.Stream, *, limit: int = DEFAULT_MAX_FRAME) -> None:
        self.stream = stream
        self.limit = limit
        self._decoder = FrameDecoder(limit=limit)
        self._ready: list[dict[str, Any]] = []
        self._send_lock = trio.Lock()
        #: A write was interrupted (cancelled, or failed) inside a frame: the peer may hold
        #: the first part of it, and would read whatever follows as the rest. Nothing more
        #: can be sent (``BrokenResourceError``); the owner should close the connection.
        self.cut_off = False

    async def send(self, message: dict[str, Any]) -> None:
        """Write one message; concurrent senders are serialised, frames never interleave."""
        frame = encode_frame(message, limit=self.limit)
        async with self._send_lock:
            if self.cut_off:
                raise trio.BrokenResourceError("an earlier frame was cut off part-way")
            try:
                await self.stream.send_all(frame)
            except BaseException:
                self.cut_off = True
                raise

    async def receive(self) -> dict[str, Any] | None:
        """The next message, or None at a clean end of stream (between frames)."""
        while not self._ready:
            chunk = await self.stream.receive_some(_READ_CHUNK)
            if not chunk:
                if self._decoder.buffered:
                    raise ProtocolError(
                        f"connection closed in the middle of a frame "
                        f"({self._decoder.buffered} bytes unread)"
                    )
                return None
            self._ready.extend(self._decoder.feed(chunk))
        return self._ready.pop(0)

    async def aclose(self) -> None:
        await self.stream.aclose()
