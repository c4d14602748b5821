from __future__ import annotations

import os
import random

import pytest

from proxystore.exceptions import SerializationError
from proxystore.p2p.framing import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MAX_FRAME_SIZE,
    FRAME_HEADER,
    MAX_ENVELOPE_SIZE,
    START_HEADER,
    FrameFlag,
    FrameType,
    FramingError,
    Reassembler,
    encode_abort,
    encode_frames,
)

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("size", [0, 1, 100, 1000, 65536, 300_001])
@pytest.mark.parametrize("chunk_size", [64, 1024, 65536])
def test_round_trip(size: int, chunk_size: int) -> None:
    body = os.urandom(size)
    fields = {"header": {"key": "k" * 200, "n": size}}
    frames = list(
        encode_frames(
            7, is_response=True, fields=fields, body=body, chunk_size=chunk_size
        )
    )
    assert all(len(frame) <= chunk_size for frame in frames)
    reassembler = Reassembler()
    results = [reassembler.feed(frame) for frame in frames]
    assert results[:-1] == [None] * (len(frames) - 1)
    message = results[-1]
    assert message is not None
    assert (message.message_id, message.is_response) == (7, True)
    assert message.fields == fields
    assert bytes(message.body) == body
    assert reassembler.in_progress == 0


def test_interleaved_messages_and_aborts() -> None:
    bodies = {i: os.urandom(5000 * i) for i in range(1, 6)}
    streams = {
        i: list(
            encode_frames(i, is_response=False, fields={"i": i}, body=b, chunk_size=512)
        )
        for i, b in bodies.items()
    }
    # Message 3 is abandoned halfway.
    streams[3] = [
        *streams[3][: len(streams[3]) // 2],
        encode_abort(3, is_response=False),
    ]
    rng = random.Random(1)
    reassembler = Reassembler()
    done = {}
    while streams:
        i = rng.choice(list(streams))
        message = reassembler.feed(streams[i].pop(0))
        if not streams[i]:
            del streams[i]
        if message is not None:
            done[message.message_id] = bytes(message.body)
    assert done == {i: b for i, b in bodies.items() if i != 3}
    assert reassembler.in_progress == 0


def test_request_and_response_with_same_id_do_not_mix() -> None:
    reassembler = Reassembler()
    request = list(
        encode_frames(1, is_response=False, fields={}, body=b"q" * 300, chunk_size=100)
    )
    response = list(
        encode_frames(1, is_response=True, fields={}, body=b"r" * 300, chunk_size=100)
    )
    for frame in request[:-1] + response[:-1]:
        assert reassembler.feed(frame) is None
    first = reassembler.feed(response[-1])
    second = reassembler.feed(request[-1])
    assert first is not None
    assert bytes(first.body) == b"r" * 300
    assert second is not None
    assert bytes(second.body) == b"q" * 300


def test_body_views_are_accepted() -> None:
    data = bytearray(os.urandom(1000))
    frames = list(
        encode_frames(1, is_response=False, fields={}, body=memoryview(data)[10:])
    )
    message = Reassembler().feed(frames[0])
    assert message is not None
    assert bytes(message.body) == bytes(data[10:])


def test_header_must_be_json() -> None:
    with pytest.raises(SerializationError, match="JSON"):
        list(encode_frames(1, is_response=False, fields={"x": object()}))


@pytest.mark.parametrize(
    "frame",
    [
        b"\x01",
        FRAME_HEADER.pack(9, 0, 1),
        FRAME_HEADER.pack(FrameType.DATA, 2, 1) + b"orphan",
        FRAME_HEADER.pack(FrameType.START, 2, 1) + b"\x00",
    ],
    ids=["short", "unknown-type", "orphan-data", "short-start"],
)
def test_malformed_frames_are_rejected(frame: bytes) -> None:
    with pytest.raises(FramingError):
        Reassembler().feed(frame)


def test_length_mismatch_and_corrupt_envelope_are_rejected() -> None:
    (frame,) = encode_frames(1, is_response=False, fields={"a": 1}, body=b"abc")
    with pytest.raises(FramingError, match="overran"):
        Reassembler().feed(frame + b"extra")
    with pytest.raises(FramingError, match="ended before"):
        Reassembler().feed(frame[:-1])
    (frame,) = encode_frames(1, is_response=False, fields={"a": 1})
    corrupt = frame[:-2] + b"\xff\xff"
    with pytest.raises(FramingError, match="corrupt"):
        Reassembler().feed(corrupt)
    reassembler = Reassembler()
    (first,) = encode_frames(1, is_response=False, fields={}, body=b"")
    partial = list(
        encode_frames(2, is_response=False, fields={}, body=b"x" * 500, chunk_size=100)
    )
    reassembler.feed(partial[0])
    with pytest.raises(FramingError, match="started twice"):
        reassembler.feed(partial[0])
    assert reassembler.feed(first) is not None


def _start(message_id: int, envelope_length: int, body_length: int) -> bytes:
    return FRAME_HEADER.pack(FrameType.START, 0, message_id) + START_HEADER.pack(
        envelope_length, body_length
    )


def test_declared_lengths_beyond_the_caps_are_refused_before_buffering() -> None:
    reassembler = Reassembler(max_body_size=1000)
    with pytest.raises(FramingError, match="body of 1001 bytes; the limit is 1000"):
        reassembler.feed(_start(1, 2, 1001))
    with pytest.raises(FramingError, match="body of 18446744073709551615"):
        Reassembler().feed(_start(1, 2, 2**64 - 1))
    with pytest.raises(FramingError, match="envelope of"):
        Reassembler().feed(_start(1, MAX_ENVELOPE_SIZE + 1, 0))
    assert reassembler.in_progress == 0
    assert reassembler.buffered == 0


def test_oversized_frame_is_refused() -> None:
    reassembler = Reassembler(max_frame_size=1024)
    frames = list(
        encode_frames(
            1, is_response=False, fields={}, body=b"x" * 5000, chunk_size=2048
        )
    )
    with pytest.raises(FramingError, match="frame of 2048 bytes is larger than"):
        reassembler.feed(frames[0])
    small = list(
        encode_frames(
            1, is_response=False, fields={}, body=b"x" * 5000, chunk_size=1024
        )
    )
    assert [reassembler.feed(frame) for frame in small][-1] is not None
    assert Reassembler().max_frame_size == DEFAULT_MAX_FRAME_SIZE > DEFAULT_CHUNK_SIZE


def test_messages_in_progress_and_their_bytes_are_capped() -> None:
    reassembler = Reassembler(max_in_progress=3, max_buffered=250)
    for message_id in range(3):
        assert reassembler.feed(_start(message_id, 2, 1000) + b"{}" + b"x" * 50) is None
    assert reassembler.buffered == 3 * 52
    with pytest.raises(FramingError, match="more than 3 messages in progress"):
        reassembler.feed(_start(3, 2, 10))
    reassembler.feed(encode_abort(0, is_response=False))
    assert reassembler.buffered == 2 * 52
    data = FRAME_HEADER.pack(FrameType.DATA, 0, 1) + b"x" * 200
    with pytest.raises(FramingError, match="would hold more than 250 bytes"):
        reassembler.feed(data)
    # A finished message releases what it held.
    done = FRAME_HEADER.pack(FrameType.DATA, FrameFlag.END, 2) + b"x" * 950
    fresh = Reassembler(max_buffered=2000)
    fresh.feed(_start(2, 2, 1000) + b"{}" + b"x" * 50)
    assert fresh.feed(done) is not None
    assert fresh.buffered == 0
    assert fresh.in_progress == 0


def test_sender_refuses_a_body_the_receiver_would_refuse() -> None:
    frames = encode_frames(
        1, is_response=False, fields={}, body=b"x" * 11, max_body_size=10
    )
    with pytest.raises(SerializationError, match="11 bytes is larger than the 10"):
        next(frames)
    (frame,) = encode_frames(
        1, is_response=False, fields={}, body=b"x" * 10, max_body_size=10
    )
    assert Reassembler(max_body_size=10).feed(frame) is not None
