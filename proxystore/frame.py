r"""The payload frame (v1): what every store writes around a serialized object.

Layout (all integers little-endian)::

    magic     4   b"\x89PXF"
    version   1   1
    flags     1   bit0 CHECKSUM, bit1 MAC, bit2 MAC_FULL
    tag       1   B | S | P | O | D | C (see `proxystore.serialize`)
    kid_len   1   length of the key id (0 when unsigned)
    count     u32 number of parts (1 to 2**16)
    lengths   count x u64, each at most 2**48
    kid       kid_len ASCII bytes
    checksum  u64 xxh3_64 (only with CHECKSUM)
    mac       32  HMAC-SHA256 (only with MAC)
    parts     part 0 right after the header; each later part at the next
              64-byte boundary from the start of the frame (zero padding)

The checksum covers the header bytes before it and every part (padding
excluded); it catches accidents (truncation, bit flips), not attackers. The
MAC covers the header bytes before it (so the checksum, lengths and key id
too) and, by default, part 0 of the tags whose bytes can run code (P, O, D,
C); with MAC_FULL it covers every part. `decode` checks the length, checksum
and MAC before returning anything that could reach a deserializer.

`encode` returns the frame as parts written back to back: large parts are
passed through by reference, never joined. `decode` returns read-only views
of the buffer it was given. A store may also hold or read a frame as a
`Split`: its header and the rest as separate buffers (a large part 0 read
into, or kept as, a `bytes` object of its own); `decode` checks it exactly
as it checks the joined frame, without joining it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, TypeAlias

import xxhash

from proxystore.exceptions import PayloadSignatureError, SerializationError

if TYPE_CHECKING:
    from proxystore.signing import SigningKeys

Buffer: TypeAlias = bytes | bytearray | memoryview
"""Any contiguous bytes-like object a store can write or return."""

MAGIC = b"\x89PXF"
"""The first four bytes of every frame (0x89 never starts a pre-frame payload)."""

VERSION = 1
"""The frame version this module writes and reads."""

CHECKSUM = 0x01
"""Flag: the header carries an xxh3_64 checksum."""
MAC = 0x02
"""Flag: the header carries an HMAC-SHA256 and a key id."""
MAC_FULL = 0x04
"""Flag: the MAC covers every part, not just part 0 of code-carrying tags."""

TAGS = frozenset(b"BSPODC")
"""Valid tag bytes."""
CODE_TAGS = frozenset(b"PODC")
"""Tags whose part 0 goes to a deserializer that can run code."""

MAX_PARTS = 2**16
"""Most parts a frame may have."""
MAX_PART_LENGTH = 2**48
"""Longest part a frame may have, in bytes."""
ALIGN = 64
"""Parts after the first start on this boundary from the start of the frame."""

_FIXED = struct.Struct("<4sBBBBI")
_ONE_PART = struct.Struct("<4sBBBBIQ")
_ONE_PART_CHECKED = struct.Struct("<4sBBBBIQQ")
_U64 = struct.Struct("<Q")
_MAC_SIZE = 32
HEAD_FIXED_SIZE = _FIXED.size
"""Bytes of a header's fixed fields: what `header_length` reads."""
MAX_ONE_PART_HEAD = _ONE_PART.size + 255 + 8 + _MAC_SIZE
"""Longest header of a one-part frame (a 255-byte key id, checksum, MAC)."""
_PADDING = bytes(ALIGN)
_KNOWN_FLAGS = CHECKSUM | MAC | MAC_FULL
# Below this many bytes, joining a part to the header costs less than a
# second write or a streaming hash.
_JOIN_LIMIT = 64 * 1024
_KID_BYTES = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
)


class Frame(NamedTuple):
    """A decoded, verified frame.

    Attributes:
        tag: The tag byte (an int, e.g. ``ord("P")``).
        flags: The flag bits.
        kid: The id of the key that signed it, or None if unsigned.
        parts: Read-only views of the parts, in order.
    """

    tag: int
    flags: int
    kid: str | None
    parts: list[memoryview]


class Split(NamedTuple):
    """A frame held as two buffers: its header, then everything after it.

    The bytes are the frame's, byte for byte (``head + body``); only the
    buffers differ. Stores return one where part 0 is an object of its own
    (`FileStore` reads a large part 0 straight into a `bytes`; `LocalStore`
    keeps a caller's `bytes` by reference), so a ``B`` payload comes back as
    that very object, with no copy.

    Attributes:
        head: The header: every byte before part 0, exactly.
        body: The rest of the frame (part 0; in a frame of several parts,
            the padding and the later parts too).
    """

    head: bytes
    body: Buffer


Stored: TypeAlias = Buffer | Split
"""What a store's driver returns for a key: the frame (or a pre-frame or
unframed payload) in one buffer, or a framed payload as a `Split`."""


def stored_size(data: Stored) -> int:
    """The number of bytes of a stored payload."""
    if isinstance(data, Split):
        return len(data.head) + memoryview(data.body).nbytes
    return memoryview(data).nbytes


def stored_bytes(data: Stored) -> bytes:
    """A stored payload as one `bytes` object (joined, if a `Split`)."""
    if isinstance(data, Split):
        return data.head + bytes(data.body)
    return bytes(data)


def header_length(fixed: Buffer) -> int | None:
    """How long the header of a one-part frame is, from its fixed fields alone.

    `fixed` starts with the header's first `HEAD_FIXED_SIZE` bytes (magic,
    version, flags, tag, key id length, part count); nothing after them is
    read, so a reader can size its next read from them; `decode` checks
    the rest.

    Returns:
        The header's length, or None if `fixed` is shorter than the fixed
        fields or does not start a one-part frame.
    """
    if memoryview(fixed).nbytes < _FIXED.size:
        return None
    magic, version, flags, _tag, kid_len, count = _FIXED.unpack_from(fixed)
    if magic != MAGIC or version != VERSION or count != 1:
        return None
    size: int = (
        _ONE_PART.size
        + kid_len
        + (8 if flags & CHECKSUM else 0)
        + (_MAC_SIZE if flags & MAC else 0)
    )
    return size


def head_size(data: Buffer) -> int | None:
    """How long the header of the one-part frame that `data` starts with is.

    Returns:
        The header's length, or None if `data` does not start with the whole
        header of a one-part frame (not a frame, several parts, cut short).
    """
    size = header_length(data)
    return size if size is not None and size <= memoryview(data).nbytes else None


def split(payload: Sequence[Buffer]) -> Split | None:
    """`payload` as a `Split` if it is a one-part frame with a `bytes` part.

    That is what `encode` returns for a large `bytes` part: ``[header,
    part]``. The part is kept by reference, which is safe only because a
    `bytes` object cannot change; a part in any other buffer (bytearray,
    memoryview, an array) is never taken.

    Returns:
        The split frame, or None if `payload` is anything else.
    """
    if len(payload) != 2:
        return None
    head, body = payload
    if type(head) is not bytes or type(body) is not bytes:
        return None
    if head_size(head) != len(head):
        return None
    (length,) = _U64.unpack_from(head, _FIXED.size)
    return Split(head, body) if length == len(body) else None


def _nbytes(part: Buffer) -> int:
    return len(part) if type(part) is bytes else memoryview(part).nbytes


def encode(
    tag: int,
    parts: Sequence[Buffer],
    *,
    checksum: bool = True,
    keys: SigningKeys | None = None,
    mac_full: bool = False,
) -> list[Buffer]:
    """Frame parts; return the frame as buffers to write back to back.

    Args:
        tag: The tag byte (one of `TAGS`).
        parts: Flat byte buffers (bytes, bytearray, or memoryviews of format
            ``B``); large ones are returned by reference, not copied.
        checksum: Add an xxh3_64 checksum.
        keys: Sign with the first of these keys.
        mac_full: Sign every part, not just part 0 of code-carrying tags.

    Returns:
        The header (joined with part 0 when that is small), the parts and
        the zero padding between them.

    Raises:
        SerializationError: If the tag, part count or a part length is
            outside what a frame can carry.
    """
    count = len(parts)
    if count == 1 and keys is None:
        return _encode_one_part(tag, parts[0], checksum)
    if tag not in TAGS:
        raise SerializationError(f"cannot frame unknown tag {tag!r}")
    if not 1 <= count <= MAX_PARTS:
        raise SerializationError(f"a frame has 1 to {MAX_PARTS} parts, got {count}")
    flags = CHECKSUM if checksum else 0
    kid = b""
    if keys is not None:
        flags |= MAC | (MAC_FULL if mac_full else 0)
        kid = keys.signing_kid.encode("ascii")
    part0 = parts[0]
    if count == 1:
        length0 = _nbytes(part0)
        lengths: Sequence[int] = (length0,)
        header = _ONE_PART.pack(MAGIC, VERSION, flags, tag, len(kid), 1, length0)
    else:
        lengths = [_nbytes(part) for part in parts]
        header = _FIXED.pack(MAGIC, VERSION, flags, tag, len(kid), count)
        header += struct.pack(f"<{count}Q", *lengths)
    if max(lengths) > MAX_PART_LENGTH:
        raise SerializationError(
            f"a frame part is at most {MAX_PART_LENGTH} bytes, got {max(lengths)}"
        )
    if kid:
        header += kid
    small0 = type(part0) is bytes and lengths[0] <= _JOIN_LIMIT
    if checksum:
        if count == 1 and small0:
            digest = xxhash.xxh3_64_intdigest(header + part0)
        else:
            hasher = xxhash.xxh3_64(header)
            for part in parts:
                hasher.update(part)
            digest = hasher.intdigest()
        header += _U64.pack(digest)
    if keys is not None:
        header += _mac(keys.signing_key, header, tag, parts, mac_full)
    out: list[Buffer] = [header + part0 if small0 else header]
    if not small0 and lengths[0]:
        out.append(part0)
    offset = len(header) + lengths[0]
    for part, length in zip(parts[1:], lengths[1:], strict=True):
        pad = -offset % ALIGN
        if pad:
            out.append(_PADDING[:pad])
        out.append(part)
        offset += pad + length
    return out


def _encode_one_part(tag: int, part: Buffer, checksum: bool) -> list[Buffer]:
    """`encode` of one unsigned part: the common case, in fewer steps."""
    if tag not in TAGS:
        raise SerializationError(f"cannot frame unknown tag {tag!r}")
    small = type(part) is bytes
    length = len(part) if small else memoryview(part).nbytes
    if length > MAX_PART_LENGTH:
        raise SerializationError(
            f"a frame part is at most {MAX_PART_LENGTH} bytes, got {length}"
        )
    small = small and length <= _JOIN_LIMIT
    if not checksum:
        header = _ONE_PART.pack(MAGIC, VERSION, 0, tag, 0, 1, length)
    else:
        header = _ONE_PART.pack(MAGIC, VERSION, CHECKSUM, tag, 0, 1, length)
        if small:
            digest = xxhash.xxh3_64_intdigest(header + part)
        else:
            hasher = xxhash.xxh3_64(header)
            hasher.update(part)
            digest = hasher.intdigest()
        header += _U64.pack(digest)
    if small:
        return [header + part]
    return [header, part] if length else [header]


def _mac(
    key: bytes, header: bytes, tag: int, parts: Sequence[Buffer], full: bool
) -> bytes:
    # Imported here: loading OpenSSL's hashes costs milliseconds that
    # unsigned stores never need.
    import hashlib
    import hmac

    if full:
        covered: Sequence[Buffer] = parts
    elif tag in CODE_TAGS:
        covered = parts[:1]
    else:
        covered = ()
    if not covered:
        return hmac.digest(key, header, "sha256")
    if len(covered) == 1 and _nbytes(covered[0]) <= _JOIN_LIMIT:
        return hmac.digest(key, header + covered[0], "sha256")
    mac = hmac.new(key, header, hashlib.sha256)
    for part in covered:
        mac.update(part)
    return mac.digest()


def is_frame(data: Buffer) -> bool:
    """Return whether `data` starts like a frame (its magic, nothing checked)."""
    return bytes(memoryview(data)[:4]) == MAGIC


def decode(
    data: Buffer | Split,
    *,
    keys: SigningKeys | None = None,
    require_checksum: bool = False,
) -> Frame:
    """Check a frame and return views of its parts.

    Nothing in the frame is trusted before it is checked: the header's
    counts and lengths are capped, the total length must match the buffer
    exactly, then the checksum and the MAC are verified.

    Args:
        data: The whole frame, in one buffer or as a `Split`.
        keys: The reader's signing keys. With keys, a frame must be signed by
            one of them; without, a signed frame is refused (its signature
            cannot be checked).
        require_checksum: Refuse a frame without a checksum.

    Returns:
        The verified frame.

    Raises:
        PayloadSignatureError: If the frame's signature is missing, made with
            an unknown key or wrong, or the frame is signed and there are no
            keys to check it with.
        SerializationError: If the frame is truncated, has trailing bytes, a
            malformed header or a wrong checksum.
    """
    body: memoryview | None = None
    if isinstance(data, Split):
        # The header in `view`, the rest in `body`, starting at frame
        # offset `base`: checked and hashed in place, never joined.
        view = memoryview(data.head)
        body = _readonly(data.body)
        base = view.nbytes
        size = base + body.nbytes
        if base < _FIXED.size:
            raise SerializationError(
                f"split frame: a {base}-byte head cannot hold a frame header"
            )
    else:
        view = memoryview(data)
        if type(data) is not bytes:  # a bytes object's view is flat, read-only
            view = _readonly(data)
        size = view.nbytes
    if keys is None and type(data) is bytes:
        found = decode_one(data, require_checksum)
        if found is not None:
            return Frame(found[0], found[1], None, [view[found[2] :]])
    if size < _FIXED.size:
        raise SerializationError(
            f"truncated payload: {size} bytes, a frame header needs {_FIXED.size}"
        )
    magic, version, flags, tag, kid_len, count = _FIXED.unpack_from(view)
    if magic != MAGIC:
        raise SerializationError("payload is not a proxystore frame (bad magic)")
    if version != VERSION:
        raise SerializationError(
            f"frame version {version} is not supported (this proxystore reads "
            f"version {VERSION})"
        )
    if flags & ~_KNOWN_FLAGS:
        raise SerializationError(f"frame has unknown flags 0x{flags:02x}")
    signed = bool(flags & MAC)
    if flags & MAC_FULL and not signed:
        raise SerializationError("frame has MAC_FULL without MAC")
    if signed != (kid_len > 0):
        raise SerializationError(
            f"frame header is inconsistent: MAC flag {signed}, key id length {kid_len}"
        )
    if tag not in TAGS:
        raise SerializationError(f"frame has unknown tag {bytes([tag])!r}")
    if not 1 <= count <= MAX_PARTS:
        raise SerializationError(f"frame claims {count} parts (1 to {MAX_PARTS})")
    if count > 1 and tag != ord("O"):
        raise SerializationError(
            f"frame with tag {bytes([tag])!r} claims {count} parts; only tag "
            "'O' carries out-of-band parts"
        )
    has_checksum = bool(flags & CHECKSUM)
    kid_start = _FIXED.size + 8 * count
    checksum_start = kid_start + kid_len
    mac_start = checksum_start + (8 if has_checksum else 0)
    header_size = mac_start + (_MAC_SIZE if signed else 0)
    if size < header_size:
        raise SerializationError(
            f"truncated payload: {size} bytes, its frame header needs {header_size}"
        )
    if body is not None and base != header_size:
        raise SerializationError(
            f"split frame: the head is {base} bytes, the frame header {header_size}"
        )
    if count == 1:
        lengths: tuple[int, ...] = _U64.unpack_from(view, _FIXED.size)
    else:
        lengths = struct.unpack_from(f"<{count}Q", view, _FIXED.size)
    offsets = []
    end = header_size
    for index, length in enumerate(lengths):
        if length > MAX_PART_LENGTH:
            raise SerializationError(
                f"frame part {index} claims {length} bytes (at most {MAX_PART_LENGTH})"
            )
        if index:
            end += -end % ALIGN
        offsets.append(end)
        end += length
    if size != end:
        problem = "truncated payload" if size < end else "trailing bytes after payload"
        raise SerializationError(
            f"{problem}: {size} bytes, its frame header says {end}"
        )
    kid = None
    if signed:
        kid_raw = bytes(view[kid_start:checksum_start])
        if not _KID_BYTES.issuperset(kid_raw):
            raise SerializationError("frame key id is not [A-Za-z0-9_.-]")
        kid = kid_raw.decode("ascii")
    if body is None:
        parts = [
            view[offset : offset + length]
            for offset, length in zip(offsets, lengths, strict=True)
        ]
    else:
        parts = [
            body[offset - base : offset - base + length]
            for offset, length in zip(offsets, lengths, strict=True)
        ]
    key = _verifying_key(kid, keys)
    if has_checksum:
        hasher = xxhash.xxh3_64(view[:checksum_start])
        for part in parts:
            hasher.update(part)
        (stored,) = _U64.unpack_from(view, checksum_start)
        if hasher.intdigest() != stored:
            raise SerializationError(
                "payload checksum mismatch: the bytes were corrupted "
                "(truncated, bit flips or overwritten)"
            )
    elif require_checksum:
        raise SerializationError("payload frame has no checksum; this store adds one")
    if key is not None:
        header = bytes(view[:mac_start])
        expected = _mac(key, header, tag, parts, bool(flags & MAC_FULL))
        import hmac

        if not hmac.compare_digest(expected, bytes(view[mac_start:header_size])):
            raise PayloadSignatureError(
                f"payload signature (key id {kid!r}) does not verify: the payload "
                "was altered or signed with another key of the same id"
            )
    return Frame(tag, flags, kid, parts)


def _readonly(data: Buffer) -> memoryview:
    """A flat, read-only byte view of a contiguous buffer."""
    view = memoryview(data)
    if not view.c_contiguous:
        raise SerializationError("cannot decode a non-contiguous buffer")
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view.toreadonly()


def decode_one(
    data: bytes, require_checksum: bool = False
) -> tuple[int, int, int] | None:
    """Check an unsigned one-part frame held in `bytes`: the common case, fast.

    Returns:
        ``(tag, flags, offset of the part)`` if `data` is a valid unsigned
        frame of one part (with its checksum verified, if it has one); None
        for anything else, valid or not: `decode` then checks it in full
        (and raises what is wrong with it).
    """
    size = len(data)
    if size < _ONE_PART_CHECKED.size:
        if size != _ONE_PART.size or require_checksum:
            return None
        # An empty part without a checksum: the header alone.
        magic, version, flags, tag, kid_len, count, length = _ONE_PART.unpack(data)
        stored = 0
    else:
        magic, version, flags, tag, kid_len, count, length, stored = (
            _ONE_PART_CHECKED.unpack_from(data)
        )
    if (
        count != 1
        or magic != MAGIC
        or version != VERSION
        or kid_len != 0
        or tag not in TAGS
    ):
        return None
    if flags == CHECKSUM:
        start = _ONE_PART_CHECKED.size
        if size != start + length:
            return None
        if length <= _JOIN_LIMIT:
            digest = xxhash.xxh3_64_intdigest(data[: _ONE_PART.size] + data[start:])
        else:
            hasher = xxhash.xxh3_64(data[: _ONE_PART.size])
            hasher.update(memoryview(data)[start:])
            digest = hasher.intdigest()
        return (tag, flags, start) if digest == stored else None
    if flags == 0 and not require_checksum and size == _ONE_PART.size + length:
        return tag, flags, _ONE_PART.size
    return None


def _verifying_key(kid: str | None, keys: SigningKeys | None) -> bytes | None:
    """Return the key that verifies a frame signed with `kid` (None: unsigned)."""
    if keys is None:
        if kid is not None:
            raise PayloadSignatureError(
                f"payload is signed with key id {kid!r} and this store has no "
                "signing keys to verify it; configure PROXYSTORE_SIGNING_KEYS "
                "(or signing_keys=)"
            )
        return None
    if kid is None:
        raise PayloadSignatureError(
            "payload is not signed and this store has signing keys: it only "
            "deserializes payloads signed by one of them"
        )
    key = keys.key_for(kid)
    if key is None:
        raise PayloadSignatureError(
            f"payload is signed with key id {kid!r}, which is not one of this "
            f"store's signing keys {list(keys.kids)!r}"
        )
    return key


PLAIN_HEADS: dict[bytes, int] = {
    _FIXED.pack(MAGIC, VERSION, 0, tag, 0, 1): tag for tag in TAGS
}
"""The first 12 header bytes of every unsigned one-part frame without a
checksum (what `LocalStore` writes), mapped to its tag: one slice and one
dict look-up check magic, version, flags, tag, key id and part count at once
(`decode_one` with ``flags == 0``, in fewer steps)."""

PLAIN_HEADER_SIZE = _ONE_PART.size
"""Where the part of such a frame starts: the 12 bytes above and its length."""
