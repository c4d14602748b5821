from __future__ import annotations

import pickle

import numpy as np
import pytest

from proxystore import frame
from proxystore.exceptions import SerializationError
from proxystore.serialize import deserialize, join, serialize, serialize_parts


@pytest.mark.parametrize(
    "obj",
    [
        b"",
        b"raw bytes",
        "",
        "text \u2603",
        0,
        1.5,
        None,
        [1, "a"],
        {"k": (1, 2)},
        {1, 2},
    ],
)
def test_round_trip(obj: object) -> None:
    assert deserialize(serialize(obj)) == obj
    assert type(deserialize(serialize(obj))) is type(obj)


def test_bytes_and_str_are_framed_as_their_bytes() -> None:
    assert frame.decode(serialize(b"abc")).tag == ord("B")
    assert frame.decode(serialize(b"abc")).parts[0] == b"abc"
    assert frame.decode(serialize("abc\u2603")).tag == ord("S")
    assert frame.decode(serialize("abc\u2603")).parts[0] == "abc\u2603".encode()


def test_lambda_and_closure_fall_back_to_dill() -> None:
    offset = 3
    fn = deserialize(serialize(lambda x: x + offset))
    assert fn(1) == 4


def test_unserializable_object_raises_serialization_error() -> None:
    generator = (i for i in range(3))
    with pytest.raises(SerializationError, match="generator"):
        serialize(generator)


def test_large_array_stays_out_of_band_without_copies() -> None:
    array = np.arange(1_000_000, dtype=np.float64)
    parts = serialize_parts(array)
    views = [part for part in parts if isinstance(part, memoryview)]
    assert len(views) == 1
    assert np.shares_memory(np.frombuffer(views[0], dtype=np.float64), array)
    restored = deserialize(join(parts))
    np.testing.assert_array_equal(restored, array)


def test_out_of_band_arrays_come_back_aligned_and_read_only() -> None:
    arrays = [np.ones(100_001, dtype=np.uint8), np.arange(50_000, dtype=np.int64)]
    restored = deserialize(bytearray(serialize(arrays)))
    for original, copy in zip(arrays, restored, strict=True):
        np.testing.assert_array_equal(original, copy)
        assert copy.flags.aligned
        assert not copy.flags.writeable


def test_arrays_of_any_size_go_out_of_band_and_read_only() -> None:
    small = np.arange(10)
    assert frame.decode(serialize(small)).tag == ord("O")
    restored = deserialize(serialize(small))
    np.testing.assert_array_equal(restored, small)
    assert not restored.flags.writeable


def test_plain_pickle_stream_is_a_separate_part() -> None:
    obj = {"k": list(range(100))}
    decoded = frame.decode(join(serialize_parts(obj)))
    assert decoded.tag == ord("P")
    assert decoded.parts == [pickle.dumps(obj, protocol=5)]


@pytest.mark.parametrize(
    "payload",
    [b"", b"Z123", b"P" + b"not a pickle", b"O\x01\x00", b"D\x00\x01"],
    ids=["empty", "unknown-tag", "bad-pickle", "truncated-oob", "bad-dill"],
)
def test_corrupt_payload_raises_serialization_error(payload: bytes) -> None:
    with pytest.raises(SerializationError):
        deserialize(payload)


def test_truncated_array_payload_is_detected() -> None:
    data = serialize(np.arange(100_000))
    with pytest.raises(SerializationError):
        deserialize(data[: len(data) // 2])


def test_foreign_pickle_is_rejected_as_not_a_frame() -> None:
    with pytest.raises(SerializationError, match="not a proxystore frame"):
        deserialize(pickle.dumps([1, 2]))


def test_more_buffers_than_a_frame_has_parts_go_in_band() -> None:
    arrays = [np.full(2, i, dtype=np.int32) for i in range(frame.MAX_PARTS + 5)]
    data = serialize(arrays)
    assert frame.decode(data).tag == ord("P")
    restored = deserialize(data)
    assert len(restored) == len(arrays)
    assert restored[-1][0] == frame.MAX_PARTS + 4


def test_non_contiguous_buffers_are_refused_clearly() -> None:
    from proxystore.serialize import frame_custom

    with pytest.raises(SerializationError, match="non-contiguous"):
        frame_custom(memoryview(np.arange(10)[::2]))
    with pytest.raises(SerializationError, match="non-contiguous"):
        deserialize(memoryview(np.arange(10, dtype=np.uint8)[::2]))
