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
    MAX_FRAME_DEPTH,
    FrameDecoder,
    LoneSurrogate,
    ProtocolError,
    TooDeep,
    decode_body,
    describe_size,
    encode_frame,
    load_json,
    nesting_depth,
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


# -- nesting depth and lone surrogates (issue I2, item 5) ---------------------------------

DEEP = 100_000


def depth_of(value: Any) -> int:
    """The nesting depth of a decoded value, the obvious recursive way (for the oracle)."""
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


def nested(depth: int) -> bytes:
    """An object whose value nests arrays so that the whole frame is *depth* levels deep."""
    return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP,
        b"{" * DEEP,
        b'{"a":' * DEEP,
        nested(DEEP),
        b"[" * DEEP + b"]" * DEEP,
        nested(MAX_FRAME_DEPTH + 1),
    ],
    ids=["open-arrays", "open-objects", "open-keys", "closed-object", "closed-array", "limit+1"],
)
def test_a_frame_nested_too_deep_is_a_protocol_error(body: bytes) -> None:
    """100 000 nested brackets, or one past the limit, is a ProtocolError, no RecursionError."""
    with pytest.raises(
        ProtocolError, match=f"^frame is nested deeper than {MAX_FRAME_DEPTH} levels$"
    ):
        decode_body(body)


def test_a_frame_at_the_depth_limit_decodes() -> None:
    """Exactly MAX_FRAME_DEPTH levels is allowed: more than the old host let through."""
    message = decode_body(nested(MAX_FRAME_DEPTH))
    assert depth_of(message) == MAX_FRAME_DEPTH == 128


def test_brackets_inside_strings_do_not_count() -> None:
    """A string holding 100 000 brackets (escaped quotes around them) is just a string."""
    text = '\\"' + "[{" * DEEP + '\\"'
    message = {"payload": text, "key": "]" * DEEP}
    assert decode_body(json.dumps(message).encode()) == message


def test_a_deep_frame_fails_the_stream_decoder_too() -> None:
    """FrameDecoder.feed raises the ProtocolError (what the connection's reader catches)."""
    body = nested(DEEP)
    with pytest.raises(ProtocolError, match="nested deeper than 128 levels"):
        FrameDecoder().feed(struct.pack(">I", len(body)) + body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":"\\ud800"}',
        b'{"a":"x\\uDBFFy"}',
        b'{"a":"\\udc00"}',
        b'{"\\ud800":1}',
        b'{"a":["\\ud83d\\ud83d\\ude00"]}',
        b'{"a":"\\ude00\\ud83d"}',
        b'{"a":"\\\\\\ud800"}',
    ],
    ids=[
        "high",
        "high-upper-case",
        "low",
        "in-a-key",
        "high-then-pair",
        "reversed-pair",
        "after-an-escaped-backslash",
    ],
)
def test_a_lone_surrogate_escape_is_a_protocol_error(body: bytes) -> None:
    """An escape that decodes to an unpaired surrogate (in a value or a key) is refused."""
    with pytest.raises(
        ProtocolError, match=r"^frame has an invalid Unicode escape \(a lone surrogate\)$"
    ):
        decode_body(body)


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b'{"a":"\\ud83d\\ude00"}', "\U0001f600"),
        (b'{"a":"\\uD83D\\uDE00!"}', "\U0001f600!"),
        (b'{"a":"\\\\ud800"}', "\\ud800"),
        (b'{"a":"\\ud7ff\\ue000"}', "\ud7ff\ue000"),
    ],
    ids=["pair", "pair-upper-case", "escaped-backslash-then-text", "around-the-range"],
)
def test_pairs_and_look_alikes_decode(body: bytes, value: str) -> None:
    """A surrogate pair is one character; a backslash escaped before 'ud800' is just text."""
    assert decode_body(body) == {"a": value}


def test_an_encoded_surrogate_is_not_utf8() -> None:
    """A surrogate encoded as UTF-8 bytes (ED A0 80) is refused as not UTF-8."""
    with pytest.raises(ProtocolError, match=r"frame is not UTF-8 \(byte 6\)"):
        decode_body(b'{"a":"\xed\xa0\x80"}')


def test_an_integer_past_pythons_digit_limit_is_a_protocol_error() -> None:
    """5000 digits (over int_max_str_digits) is a ProtocolError, not a stray ValueError."""
    with pytest.raises(ProtocolError, match="frame is not usable JSON: Exceeds the limit"):
        decode_body(b'{"a":' + b"1" * 5000 + b"}")


def test_load_json_raises_its_own_errors() -> None:
    """load_json raises TooDeep and LoneSurrogate (ValueErrors) and JSONDecodeError."""
    with pytest.raises(TooDeep) as deep:
        load_json("[" * 65, max_depth=64)
    assert deep.value.limit == 64
    assert load_json("[" * 64 + "]" * 64, max_depth=64) == json.loads("[" * 64 + "]" * 64)
    with pytest.raises(LoneSurrogate):
        load_json('"\\ud800"', max_depth=64)
    with pytest.raises(json.JSONDecodeError):
        load_json("[1,", max_depth=64)
    assert issubclass(TooDeep, ValueError)
    assert issubclass(LoneSurrogate, ValueError)


@pytest.mark.parametrize(
    ("text", "depth", "error"),
    [
        ('"' + '\\"' * 50_000, 0, json.JSONDecodeError),
        ('"' + "\\" * 50_001, 0, json.JSONDecodeError),
        ('"\\' + "[" * 50_000, 0, json.JSONDecodeError),
        ('["' * 50_000, 25_000, TooDeep),
        ("[" * 10 + "\\" + '"' + "[" * 50_000, 50_010, TooDeep),
    ],
    ids=[
        "escaped-quotes-unterminated",
        "backslashes-unterminated",
        "bad-escape",
        "open-strings",
        "stray-backslash-then-brackets",
    ],
)
def test_the_depth_scan_reads_text_that_is_not_json(
    text: str, depth: int, error: type[Exception]
) -> None:
    """Broken strings and stray backslashes scan to an upper bound; load_json refuses them."""
    assert nesting_depth(text) == depth
    with pytest.raises(error):
        load_json(text, max_depth=MAX_FRAME_DEPTH)


#: Strings made of what the depth scan must read right: quotes, backslashes, brackets.
tricky_text = st.text() | st.text(alphabet='"\\[]{}ud8\n\U0001f600', max_size=12)
json_texts = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | tricky_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(tricky_text, children, max_size=3)
    ),
    max_leaves=30,
)


@given(json_texts, st.booleans())
@settings(max_examples=300, deadline=None)
def test_nesting_depth_matches_the_decoded_value(value: Any, ascii_only: bool) -> None:
    """For any JSON text the scan gives the value's depth, and load_json equals json.loads."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert nesting_depth(text) == depth_of(value)
    assert load_json(text, max_depth=MAX_FRAME_DEPTH) == json.loads(text)


@given(st.text(st.characters(codec=None, categories=["Cs", "Ll", "So"]), min_size=1))
@settings(max_examples=200, deadline=None)
def test_any_lone_surrogate_is_found(text: str) -> None:
    """Refused exactly when json.loads would return a lone surrogate (key or value)."""
    encoded = json.dumps({"k": 1, text: [text]})  # ensure_ascii: surrogates as \uXXXX
    decoded = json.loads(encoded)
    lone = any("\ud800" <= char <= "\udfff" for key in decoded for char in key)
    if lone:
        with pytest.raises(LoneSurrogate):
            load_json(encoded, max_depth=MAX_FRAME_DEPTH)
    else:
        assert load_json(encoded, max_depth=MAX_FRAME_DEPTH) == decoded
