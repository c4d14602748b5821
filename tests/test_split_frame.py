"""Frames held as a header and a body (`frame.Split`): decoding, and the stores
that read (`FileStore`) or keep (`LocalStore`) a large part as its own object."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import xxhash

from proxystore import frame
from proxystore.exceptions import PayloadSignatureError, SerializationError
from proxystore.serialize import (
    deserialize,
    deserialize_custom,
    frame_custom,
    join,
    plain_frame,
    serialize,
    serialize_parts,
)
from proxystore.signing import SigningKeys
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore

KEYS = SigningKeys([("k1", bytes(range(32)))])
OTHER_KEYS = SigningKeys([("k1", bytes(range(1, 33)))])
BIG = 200_000  # over both stores' by-reference / split-read limits


def _split(data: bytes) -> frame.Split:
    size = frame.head_size(data)
    assert size is not None
    return frame.Split(data[:size], data[size:])


@pytest.mark.parametrize(
    ("obj", "checksum", "keys", "full"),
    [
        (b"x" * 100, True, None, False),
        (b"y" * BIG, False, None, False),
        (os.urandom(BIG), True, KEYS, False),
        (os.urandom(BIG), True, KEYS, True),
        ("text \u00e9" * 1000, True, None, False),
        ({"a": list(range(1000))}, True, KEYS, False),
    ],
)
def test_split_decodes_as_the_joined_frame(
    obj: object, checksum: bool, keys: SigningKeys | None, full: bool
) -> None:
    data = join(serialize_parts(obj, checksum=checksum, keys=keys, sign_full_data=full))
    split = _split(data)
    assert split.head + split.body == data
    joined = frame.decode(data, keys=keys, require_checksum=checksum)
    parted = frame.decode(split, keys=keys, require_checksum=checksum)
    assert (parted.tag, parted.flags, parted.kid) == (
        joined.tag,
        joined.flags,
        joined.kid,
    )
    assert [bytes(p) for p in parted.parts] == [bytes(p) for p in joined.parts]
    assert all(p.readonly for p in parted.parts)
    assert deserialize(split, keys=keys, require_checksum=checksum) == obj
    assert frame.stored_size(split) == len(data)
    assert frame.stored_bytes(split) == data


def test_a_bytes_body_comes_back_as_itself_other_buffers_as_copies() -> None:
    body = os.urandom(BIG)
    data = join(frame.encode(ord("B"), [body]))
    head = data[: frame.head_size(data)]
    assert deserialize(frame.Split(head, body), require_checksum=True) is body
    mutable = bytearray(body)
    out = deserialize(frame.Split(head, mutable), require_checksum=True)
    assert type(out) is bytes
    assert out == body
    mutable[0] ^= 1
    assert out == body
    custom = join(frame_custom(body))
    got = deserialize_custom(_split(custom), lambda b: b, require_checksum=True)
    assert got == body


def test_split_of_a_several_part_frame_decodes_its_parts() -> None:
    array = np.arange(10_000, dtype=np.float64)
    data = join(serialize_parts(array))
    (count,) = struct.unpack_from("<I", data, 8)
    assert count == 2
    assert frame.head_size(data) is None
    size = 12 + 8 * count + 8
    out = deserialize(frame.Split(data[:size], data[size:]), require_checksum=True)
    assert np.array_equal(out, array)


@pytest.mark.parametrize("where", ["body", "head", "checksum"])
def test_a_flipped_byte_anywhere_is_caught(where: str) -> None:
    data = bytearray(join(serialize_parts(os.urandom(BIG))))
    index = {"body": len(data) - 7, "head": 19, "checksum": 21}[where]
    data[index] ^= 0x10
    with pytest.raises(SerializationError):
        deserialize(_split(bytes(data)), require_checksum=True)


def test_truncated_trailing_and_misplaced_splits_are_refused() -> None:
    data = join(serialize_parts(os.urandom(BIG)))
    split = _split(data)
    with pytest.raises(SerializationError, match="truncated"):
        frame.decode(frame.Split(split.head, data[len(split.head) : -1]))
    with pytest.raises(SerializationError, match="trailing"):
        frame.decode(frame.Split(split.head, data[len(split.head) :] + b"\x00"))
    with pytest.raises(SerializationError, match="split frame"):
        frame.decode(frame.Split(data[:40], data[40:]))  # head too long
    with pytest.raises(SerializationError, match="split frame"):
        frame.decode(frame.Split(data[:24], data[24:]))  # head too short
    with pytest.raises(SerializationError, match="split frame"):
        frame.decode(frame.Split(data[:8], data[8:]))  # not even the fixed part
    with pytest.raises(SerializationError, match="checksum"):
        frame.decode(frame.Split(split.head, bytes(len(split.body))))


def test_signatures_are_checked_on_a_split() -> None:
    data = join(serialize_parts({"x": 1}, keys=KEYS, sign_full_data=True))
    split = _split(data)
    with pytest.raises(PayloadSignatureError):
        deserialize(split, keys=OTHER_KEYS)
    with pytest.raises(PayloadSignatureError):
        deserialize(split)  # signed, and no keys to check it
    # The body changed and the checksum resealed: the MAC still refuses it.
    body = bytearray(split.body)
    body[-1] ^= 1
    head = bytearray(split.head)
    struct.pack_into(
        "<Q", head, 20 + 2, xxhash.xxh3_64_intdigest(bytes(head[:22]) + body)
    )
    with pytest.raises(PayloadSignatureError):
        deserialize(frame.Split(bytes(head), bytes(body)), keys=KEYS)


def test_head_size_and_split_take_only_one_part_frames_with_bytes_parts() -> None:
    assert frame.head_size(b"short") is None
    assert frame.head_size(b"not a frame, but long enough") is None
    header, body = frame.encode(ord("B"), [b"z" * BIG])
    assert frame.head_size(header) == len(header) == 28
    assert frame.head_size(header[:27]) is None  # cut short
    assert frame.split([header, body]) == frame.Split(header, body)
    assert frame.split([header, bytearray(body)]) is None
    assert frame.split([header, memoryview(body)]) is None
    assert frame.split([header, body[:-1]]) is None
    assert frame.split([header]) is None
    assert frame.split(serialize_parts(np.zeros(BIG, dtype=np.uint8))) is None


# -- FileStore: a large one-part frame is read as a header and a part ---------


def test_file_store_reads_a_large_bytes_part_into_its_own_object(
    tmp_path: Path, store_name: str
) -> None:
    store = FileStore(store_name, tmp_path)
    obj = os.urandom(BIG)
    key = store.set(obj)
    found = store._get_versioned(key)
    assert found is not None
    data = found[0]
    assert isinstance(data, frame.Split)
    assert data.body == obj
    assert len(data.head) == 28
    assert store.get(key) == obj
    # The raw read is the file, byte for byte.
    raw = store.get(key, deserialize=False)
    assert raw == (tmp_path / key).read_bytes()
    # Small files and frames of several parts are read whole.
    small = store.set(b"small")
    array = store.set(np.arange(BIG, dtype=np.int64))
    for other in (small, array):
        found = store._get_versioned(other)
        assert found is not None
        assert type(found[0]) is bytes
    assert np.array_equal(store.get(array), np.arange(BIG, dtype=np.int64))
    store.close()


@pytest.mark.parametrize("damage", ["flip", "truncate", "append", "head"])
def test_file_store_split_read_catches_damage(
    tmp_path: Path, store_name: str, damage: str
) -> None:
    store = FileStore(store_name, tmp_path, cache_size=0)
    key = store.set(os.urandom(BIG))
    path = tmp_path / key
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[BIG // 2] ^= 1
    elif damage == "truncate":
        del data[-1]
    elif damage == "append":
        data += b"junk"
    else:
        data[12] ^= 1  # the part's length
    path.write_bytes(bytes(data))
    with pytest.raises(SerializationError, match=key):
        store.get(key)
    store.close()


def test_file_store_split_read_of_a_signed_frame(
    tmp_path: Path, store_name: str
) -> None:
    store = FileStore(store_name, tmp_path, signing_keys=KEYS, cache_size=0)
    obj = os.urandom(BIG)
    key = store.set(obj)
    assert store.get(key) == obj
    other = FileStore(store_name + "-other", tmp_path, signing_keys=OTHER_KEYS)
    with pytest.raises(PayloadSignatureError):
        other.get(key)
    store.close()
    other.close()


def test_file_store_unframed_large_bytes_read_whole(
    tmp_path: Path, store_name: str
) -> None:
    store = FileStore(store_name, tmp_path)
    obj = b"\x89PXF" + os.urandom(BIG)  # starts like a frame, is not one
    key = store.set(obj, serialize=False)
    assert store.get(key, deserialize=False) == obj
    store.close()


# -- LocalStore: a large bytes part is kept by reference ----------------------


def test_local_store_returns_a_large_bytes_object_itself(store_name: str) -> None:
    store = LocalStore(store_name, cache_size=0)
    obj = os.urandom(BIG)
    key = store.set(obj)
    stored = store._objects[key]
    assert isinstance(stored, frame.Split)
    assert stored.body is obj
    assert store.get(key) is obj
    raw = store.get(key, deserialize=False)
    assert type(raw) is bytes
    assert raw == stored.head + obj
    keyed = store.set(obj, key="mine")
    assert store.get(keyed) is obj
    store.close()


def test_local_store_signed_split_verifies(store_name: str) -> None:
    store = LocalStore(store_name, signing_keys=KEYS, cache_size=0)
    obj = os.urandom(BIG)
    key = store.set(obj)
    assert store.get(key) is obj
    other = LocalStore(store_name + "-other", signing_keys=OTHER_KEYS)
    other._objects[key] = store._objects[key]
    with pytest.raises(PayloadSignatureError):
        other.get(key)
    store.close()
    other.close()


def test_local_store_copies_every_mutable_buffer(store_name: str) -> None:
    store = LocalStore(store_name, cache_size=0)
    data = bytearray(os.urandom(BIG))
    original = bytes(data)
    array = np.frombuffer(os.urandom(BIG), dtype=np.uint8).copy()
    array_copy = array.copy()
    keys = {
        "bytearray": store.set(data),
        "array": store.set(array),
        "raw bytearray": store.set(data, serialize=False),
        "raw view": store.set(memoryview(data), serialize=False),
    }
    for key in keys.values():
        assert type(store._objects[key]) is bytes  # joined: a copy
    # The caller changes its buffers after the set: the store is unchanged.
    data[:] = bytes(len(data))
    array[:] = 0
    got = store.get(keys["bytearray"])
    assert got == original
    got[0] ^= 1  # a consumer changes what it got: the next get is unchanged
    assert store.get(keys["bytearray"]) == original
    out = store.get(keys["array"])
    assert np.array_equal(out, array_copy)
    with pytest.raises(ValueError):
        out[0] = 1  # read-only: a view of the stored frame
    assert store.get(keys["raw bytearray"], deserialize=False) == original
    assert store.get(keys["raw view"], deserialize=False) == original
    store.close()


def test_plain_frame_leaves_large_bytes_to_the_frame_that_keeps_them() -> None:
    limit = 64 * 1024
    assert plain_frame(b"x" * limit) == join(
        serialize_parts(b"x" * limit, checksum=False)
    )
    assert plain_frame(b"x" * (limit + 1)) is None
    assert frame.split(serialize_parts(b"x" * (limit + 1), checksum=False)) is not None


def test_header_length_needs_only_the_fixed_fields() -> None:
    framed = serialize(b"x" * 100_000)
    size = frame.head_size(framed)
    assert size is not None
    assert size <= frame.MAX_ONE_PART_HEAD
    assert frame.header_length(framed[: frame.HEAD_FIXED_SIZE]) == size
    assert frame.header_length(framed[: frame.HEAD_FIXED_SIZE - 1]) is None
    # The whole header is not there: head_size says so, header_length need not.
    assert frame.head_size(framed[: frame.HEAD_FIXED_SIZE]) is None
