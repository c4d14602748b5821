"""The payload frame (v1) byte for byte, and what `decode` refuses."""

from __future__ import annotations

import hashlib
import hmac
import struct

import numpy as np
import pytest
import xxhash

from proxystore import frame
from proxystore.exceptions import PayloadSignatureError, SerializationError
from proxystore.serialize import deserialize, join, serialize, serialize_parts
from proxystore.signing import SigningKeys

KEY = bytes(range(32))
KEYS = SigningKeys([("k1", KEY)])


def test_unsigned_header_is_laid_out_as_specified() -> None:
    data = join(frame.encode(ord("B"), [b"hello"]))
    magic, version, flags, tag, kid_len, count, length = struct.unpack_from(
        "<4sBBBBIQ", data
    )
    assert (magic, version, flags, tag, kid_len, count, length) == (
        b"\x89PXF",
        1,
        frame.CHECKSUM,
        ord("B"),
        0,
        1,
        5,
    )
    (checksum,) = struct.unpack_from("<Q", data, 20)
    assert checksum == xxhash.xxh3_64_intdigest(data[:20] + b"hello")
    assert data[28:] == b"hello"


def test_signed_header_carries_kid_checksum_and_mac_over_part_0() -> None:
    data = join(frame.encode(ord("P"), [b"stream"], keys=KEYS))
    assert data[5] == frame.CHECKSUM | frame.MAC
    assert data[7] == 2
    assert data[20:22] == b"k1"
    (checksum,) = struct.unpack_from("<Q", data, 22)
    assert checksum == xxhash.xxh3_64_intdigest(data[:22] + b"stream")
    mac = hmac.new(KEY, data[:30] + b"stream", hashlib.sha256).digest()
    assert data[30:62] == mac
    assert data[62:] == b"stream"


def test_default_mac_does_not_cover_bytes_bodies_but_full_mac_does() -> None:
    data = join(frame.encode(ord("B"), [b"body"], keys=KEYS))
    assert data[30:62] == hmac.new(KEY, data[:30], hashlib.sha256).digest()
    full = join(frame.encode(ord("B"), [b"body"], keys=KEYS, mac_full=True))
    assert full[5] == frame.CHECKSUM | frame.MAC | frame.MAC_FULL
    assert full[30:62] == hmac.new(KEY, full[:30] + b"body", hashlib.sha256).digest()


def test_out_of_band_parts_are_64_byte_aligned_views_not_copies() -> None:
    arrays = [np.arange(1000, dtype=np.uint8), np.arange(77, dtype=np.float64)]
    parts = serialize_parts(arrays)
    views = [part for part in parts if isinstance(part, memoryview)]
    assert len(views) == 2
    assert np.shares_memory(np.frombuffer(views[0], dtype=np.uint8), arrays[0])
    data = join(parts)
    decoded = frame.decode(data)
    assert len(decoded.parts) == 3
    base = memoryview(data)
    for part in decoded.parts[1:]:
        offset = np.frombuffer(part, np.uint8).ctypes.data
        assert (offset - np.frombuffer(base, np.uint8).ctypes.data) % 64 == 0
        assert part.readonly


def test_decode_returns_views_of_the_buffer() -> None:
    data = bytearray(serialize(np.arange(1000)))
    decoded = frame.decode(data)
    array = np.frombuffer(decoded.parts[1], dtype=np.int64)
    data[-8:] = bytes(8)
    assert array[-1] == 0


@pytest.mark.parametrize("cut", [1, 7, 12, 20, 27, 28, 40])
def test_truncation_at_any_point_is_refused(cut: int) -> None:
    data = serialize(list(range(20)))
    with pytest.raises(SerializationError, match="truncated"):
        frame.decode(data[:cut])


@pytest.mark.parametrize("junk", [b"\x00", b"junk" * 100])
def test_trailing_bytes_are_refused(junk: bytes) -> None:
    for obj in ([1, 2], np.arange(100), b"bytes"):
        with pytest.raises(SerializationError, match="trailing bytes"):
            deserialize(serialize(obj) + junk)


def _header(count: int, lengths: list[int]) -> bytes:
    fixed = struct.pack("<4sBBBBI", frame.MAGIC, 1, 0, ord("O"), 0, count)
    return fixed + struct.pack(f"<{len(lengths)}Q", *lengths)


def test_part_count_over_the_cap_is_refused_before_reading_lengths() -> None:
    with pytest.raises(SerializationError, match="parts"):
        frame.decode(_header(2**16 + 1, []) + bytes(64))
    with pytest.raises(SerializationError, match="parts"):
        frame.decode(_header(0, []))


def test_part_length_over_the_cap_is_refused() -> None:
    with pytest.raises(SerializationError, match="claims"):
        frame.decode(_header(2, [1, 2**48 + 1]) + bytes(64))


def test_huge_claimed_length_is_truncation_not_an_allocation() -> None:
    with pytest.raises(SerializationError, match="truncated"):
        frame.decode(_header(1, [2**40]) + b"x")


def test_unknown_version_flags_and_tag_are_refused() -> None:
    data = bytearray(serialize([1]))
    for index, value, message in (
        (4, 2, "version 2"),
        (5, 0x81, "unknown flags"),
        (6, ord("Z"), "unknown tag"),
        (5, frame.CHECKSUM | frame.MAC_FULL, "MAC_FULL without MAC"),
    ):
        bad = bytearray(data)
        bad[index] = value
        with pytest.raises(SerializationError, match=message):
            frame.decode(bad)


def test_only_out_of_band_frames_have_several_parts() -> None:
    with pytest.raises(SerializationError, match="only tag 'O'"):
        frame.decode(join(frame.encode(ord("P"), [b"a", b"b"], checksum=False)))


def test_checksum_catches_a_flip_in_every_covered_byte() -> None:
    data = serialize({"key": "value", "n": 12345})
    # Byte 5 is the flags: clearing CHECKSUM changes the header length.
    for index in range(len(data)):
        bad = bytearray(data)
        bad[index] ^= 0x01
        with pytest.raises(SerializationError):
            frame.decode(bad, require_checksum=True)


def test_frame_without_checksum_is_refused_when_one_is_required() -> None:
    data = join(frame.encode(ord("B"), [b"x"], checksum=False))
    assert frame.decode(data).parts == [b"x"]
    with pytest.raises(SerializationError, match="no checksum"):
        frame.decode(data, require_checksum=True)


def test_signature_policy() -> None:
    signed = join(frame.encode(ord("P"), [b"s"], keys=KEYS))
    unsigned = join(frame.encode(ord("P"), [b"s"]))
    assert frame.decode(signed, keys=KEYS).kid == "k1"
    with pytest.raises(PayloadSignatureError, match=r"'k1'.*PROXYSTORE_SIGNING_KEYS"):
        frame.decode(signed)
    with pytest.raises(PayloadSignatureError, match="not signed"):
        frame.decode(unsigned, keys=KEYS)
    other = SigningKeys([("k2", KEY)])
    with pytest.raises(PayloadSignatureError, match="'k1', which is not one"):
        frame.decode(signed, keys=other)
    impostor = SigningKeys([("k1", bytes(32))])
    with pytest.raises(PayloadSignatureError, match="does not verify"):
        frame.decode(join(frame.encode(ord("P"), [b"s"], keys=impostor)), keys=KEYS)


def test_altered_body_with_resealed_checksum_fails_the_mac() -> None:
    # The default MAC covers the checksum, so bytes bodies are bound to the
    # signature through it (forging needs an xxh3 collision, see the docs).
    for tag, full in (("P", False), ("C", False), ("B", False), ("S", False)):
        for tag_full in (full, True):
            data = bytearray(
                join(frame.encode(ord(tag), [b"body"], keys=KEYS, mac_full=tag_full))
            )
            data[-1] ^= 0xFF
            checksum = xxhash.xxh3_64_intdigest(bytes(data[:22]) + bytes(data[62:]))
            data[22:30] = struct.pack("<Q", checksum)
            with pytest.raises(PayloadSignatureError, match="does not verify"):
                frame.decode(data, keys=KEYS)


def test_without_checksum_the_default_mac_leaves_bytes_bodies_open() -> None:
    data = bytearray(join(frame.encode(ord("B"), [b"body"], checksum=False, keys=KEYS)))
    data[-1] ^= 0xFF
    assert frame.decode(data, keys=KEYS).parts[0] == b"bod\x86"
    full = frame.encode(ord("B"), [b"body"], checksum=False, keys=KEYS, mac_full=True)
    data = bytearray(join(full))
    data[-1] ^= 0xFF
    with pytest.raises(PayloadSignatureError):
        frame.decode(data, keys=KEYS)


def test_altered_out_of_band_buffer_is_refused_with_either_coverage() -> None:
    array = np.arange(100, dtype=np.uint8)
    for full in (False, True):
        data = bytearray(serialize(array, keys=KEYS, sign_full_data=full))
        # Two parts: 12 fixed + 16 lengths + kid "k1", then checksum and MAC.
        length0, length1 = struct.unpack_from("<2Q", data, 12)
        start0 = 30 + 8 + 32
        start1 = start0 + length0 + (-(start0 + length0) % 64)
        assert len(data) == start1 + length1
        data[-1] ^= 0xFF
        hasher = xxhash.xxh3_64(bytes(data[:30]))
        hasher.update(bytes(data[start0 : start0 + length0]))
        hasher.update(bytes(data[start1:]))
        data[30:38] = struct.pack("<Q", hasher.intdigest())
        with pytest.raises(PayloadSignatureError):
            deserialize(data, keys=KEYS)
