"""Length-prefixed JSON frames: a 4-byte big-endian length, then that many bytes of JSON.

Shared by Toru and by the plugin SDK, so it depends on the standard library
and Trio only. The size limit is enforced on both sides and checked from the
4-byte header, before a single byte of the body is buffered: a peer that
announces 4 GiB costs us nothing.

A body is decoded by :func:`load_json`, which refuses two things Python's
``json.loads`` lets through: nesting so deep that the parser (or whatever walks
the value next) overflows the stack with ``RecursionError``, and ``\\uD800``-style
escapes that decode to a lone surrogate, a ``str`` that cannot be encoded to
UTF-8 later (in a reply to a browser, in SQLite, in a log line).
"""

from __future__ import annotations

import json
import re
import struct
from itertools import accumulate
from typing import Any

import trio

DEFAULT_MAX_FRAME = 16 * 1024 * 1024
#: How deeply a frame may nest arrays and objects (the outermost object is level 1).
#: The old host read frames with serde_json, whose default limit refuses 128 levels,
#: so no existing plugin sends more than 127; protocol messages themselves use four.
MAX_FRAME_DEPTH = 128
HEADER = struct.Struct(">I")
_READ_CHUNK = 64 * 1024


class ProtocolError(Exception):
    """The peer broke the wire protocol; the message says how."""


class JsonRefused(ValueError):
    """Valid JSON text that :func:`load_json` refuses to decode; subclasses say why."""


class TooDeep(JsonRefused):
    """Arrays and objects nested deeper than *limit* levels."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"nested deeper than {limit} levels")
        self.limit = limit


class LoneSurrogate(JsonRefused):
    """A ``\\uXXXX`` escape (D800-DFFF) that is not half of a surrogate pair."""

    def __init__(self) -> None:
        super().__init__("an invalid Unicode escape (a lone surrogate)")


_NOT_A_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
# Any escape of a surrogate code unit, paired or not: the cheap test before the exact one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def nesting_depth(text: str) -> int:
    """How deeply *text* nests arrays and objects; brackets inside strings do not count.

    Linear, and never recursive. On text that is not JSON the answer is an upper
    bound of how deep ``json.loads`` would get before it stops at the first error.
    """
    # Every step runs in C, none per character in Python. In JSON a backslash only
    # starts an escape: drop the escaped backslashes (pairs, left to right, as a parser
    # reads them), then the escaped quotes, and every quote left opens or closes a
    # string. Text that is not JSON may be misread, but only after its first error,
    # where json.loads stops anyway: the depth it reaches is still counted.
    if "\\" in text:
        text = text.replace("\\\\", "").replace('\\"', "")
    outside = "".join(text.split('"')[::2])
    # UTF-8 never uses an ASCII byte inside a multi-byte character.
    brackets = outside.encode("utf-8", "surrogatepass").translate(None, _NOT_A_BRACKET)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _few_openers(text: str, limit: int) -> bool:
    """True when *text* holds at most *limit* ``[`` and ``{`` in all (strings included),
    so it cannot nest deeper than *limit*: a few ``str.find`` calls (memchr) at most."""
    seen = 0
    for opener in "[{":
        at = text.find(opener)
        while at != -1:
            seen += 1
            if seen > limit:
                return False
            at = text.find(opener, at + 1)
    return True


def load_json(text: str, *, max_depth: int) -> Any:
    """``json.loads(text)``, but never a ``RecursionError`` and never a lone surrogate.

    Raises :class:`TooDeep` for nesting beyond *max_depth* levels (checked before
    parsing), :class:`LoneSurrogate` when a string would decode to an unpaired
    surrogate, and ``json.JSONDecodeError`` (a ``ValueError``) for text that is not
    JSON. Text with few brackets and no backslash (every ordinary API body) costs
    a few ``str.find`` calls more than ``json.loads``; the full checks run only
    when those cannot rule the problem out.
    """
    if not _few_openers(text, max_depth) and nesting_depth(text) > max_depth:
        raise TooDeep(max_depth)
    try:
        value = json.loads(text)
    except RecursionError:  # the scan above is an upper bound; this is belt and braces
        raise TooDeep(max_depth) from None
    # Only a \uD800-\uDFFF escape can produce a surrogate (*text* was decoded strictly,
    # so it holds none itself); a pair of them decodes to one ordinary character.
    # Re-encoding finds the lone ones exactly, keys included, with no Python-level walk.
    if (
        "\\" in text
        and _SURROGATE_ESCAPE.search(text)
        and _SURROGATE.search(json.dumps(value, ensure_ascii=False))
    ):
        raise LoneSurrogate()
    return value


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
    """Parse one frame body; it must be a UTF-8 JSON object.

    Anything else is a :class:`ProtocolError`: bytes that are not UTF-8 (an encoded
    surrogate included), text that is not JSON, nesting deeper than
    :data:`MAX_FRAME_DEPTH` (128) levels, a string escape that decodes to a lone
    surrogate (serde_json, which the old host used, refuses both the same way), and
    a JSON value that is not an object.
    """
    try:
        message = load_json(body.decode("utf-8"), max_depth=MAX_FRAME_DEPTH)
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"frame is not UTF-8 (byte {exc.start})") from None
    except JsonRefused as exc:
        verb = "is" if isinstance(exc, TooDeep) else "has"
        raise ProtocolError(f"frame {verb} {exc}") from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            f"frame is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError as exc:  # an integer of more than 4300 digits, say
        raise ProtocolError(f"frame is not usable JSON: {exc}") from None
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
