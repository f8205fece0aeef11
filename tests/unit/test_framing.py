"""Length-prefixed frames: round trips, arbitrary chunking, limits and garbage."""

from __future__ import annotations

import contextlib
import itertools
import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toru.plugins.framing import (
    DEFAULT_MAX_FRAME,
    FrameDecoder,
    ProtocolError,
    describe_size,
    encode_frame,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
messages = st.dictionaries(st.text(max_size=12), json_values, max_size=6)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(st.lists(messages, min_size=1, max_size=5), st.lists(st.integers(0, 10_000), max_size=20))
@settings(max_examples=200, deadline=None)
def test_concatenated_frames_survive_any_chunking(
    batch: list[dict[str, Any]], cuts: list[int]
) -> None:
    """Frames sent back to back come out whole and in order, however the bytes are split."""
    stream = b"".join(encode_frame(message) for message in batch)
    decoder = FrameDecoder()
    received = []
    for piece in chunked(stream, cuts):
        received.extend(decoder.feed(piece))
    assert received == batch
    assert decoder.buffered == 0


@given(messages)
@settings(max_examples=50, deadline=None)
def test_split_at_every_byte_boundary(message: dict[str, Any]) -> None:
    """A frame fed in two parts, at every possible split point, decodes the same."""
    frame = encode_frame(message)
    for cut in range(len(frame) + 1):
        decoder = FrameDecoder()
        assert decoder.feed(frame[:cut]) + decoder.feed(frame[cut:]) == [message]


def test_byte_by_byte() -> None:
    """One byte at a time is still one message, delivered with its last byte."""
    frame = encode_frame({"type": "lifecycle", "payload": {"action": "ping", "ü": "✓"}})
    decoder = FrameDecoder()
    out = [decoder.feed(frame[i : i + 1]) for i in range(len(frame))]
    assert out[:-1] == [[]] * (len(frame) - 1)
    assert out[-1] == [{"type": "lifecycle", "payload": {"action": "ping", "ü": "✓"}}]


def test_oversize_header_is_refused_before_any_body_arrives() -> None:
    """A 4 GiB announcement fails on the 4 header bytes alone: nothing is allocated for it."""
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match="frame of 4294967295 bytes exceeds the 16 MiB limit"):
        decoder.feed(struct.pack(">I", 0xFFFFFFFF))


def test_limit_is_configurable_and_inclusive() -> None:
    """A frame of exactly the limit passes; one byte more fails, on read and on write."""
    body = json.dumps({"k": "x" * 100}, separators=(",", ":")).encode()
    limit = len(body)
    assert FrameDecoder(limit=limit).feed(struct.pack(">I", limit) + body) == [{"k": "x" * 100}]
    with pytest.raises(
        ProtocolError, match=f"frame of {limit + 1} bytes exceeds the {limit} bytes limit"
    ):
        FrameDecoder(limit=limit).feed(struct.pack(">I", limit + 1))
    encode_frame({"k": "x" * 100}, limit=limit)
    with pytest.raises(ProtocolError, match="exceeds"):
        encode_frame({"k": "x" * 101}, limit=limit)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1, 2]", "frame holds a JSON list, not an object"),
        (b'"text"', "frame holds a JSON str, not an object"),
        (b"null", "frame holds a JSON NoneType, not an object"),
        (b"{not json", "frame is not JSON: Expecting property name"),
        (b"\xff\xfe{}", "frame is not UTF-8 (byte 0)"),
        (b"", "frame is not JSON: Expecting value"),
    ],
)
def test_bad_bodies_say_what_is_wrong(body: bytes, reason: str) -> None:
    """Garbage and non-object JSON are protocol errors with a precise reason."""
    with pytest.raises(ProtocolError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        FrameDecoder().feed(struct.pack(">I", len(body)) + body)


@given(st.binary(min_size=4, max_size=200))
@settings(max_examples=300, deadline=None)
def test_random_bytes_never_crash_the_decoder(garbage: bytes) -> None:
    """Arbitrary bytes either decode, wait for more, or raise ProtocolError — nothing else."""
    with contextlib.suppress(ProtocolError):
        FrameDecoder(limit=1024).feed(garbage)


def test_describe_size() -> None:
    """Limits read naturally in messages."""
    assert describe_size(DEFAULT_MAX_FRAME) == "16 MiB"
    assert describe_size(64 * 1024) == "64 KiB"
    assert describe_size(1000) == "1000 bytes"
