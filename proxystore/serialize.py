"""Turning objects into framed payloads and back.

Every payload is one frame (`proxystore.frame`): a header with the lengths,
an xxh3 checksum and, when signing keys are given, an HMAC-SHA256, then the
parts. The frame's tag says how part 0 was made:

- ``B``: the object is `bytes`; part 0 is the bytes.
- ``S``: the object is `str`; part 0 is its UTF-8 encoding.
- ``P``: pickle protocol 5 with every buffer in band.
- ``O``: pickle protocol 5 with out-of-band buffers (numpy arrays and the
  like): part 0 is the pickle stream, parts 1.. the buffers, each on a
  64-byte boundary so arrays come back aligned.
- ``D``: `dill`, for what pickle cannot take (lambdas, closures).
- ``C``: the bytes of a user's custom serializer (`frame_custom`), opaque to
  proxystore and handed back to the matching deserializer.

`serialize_parts` returns the frame as a list of buffers that a store writes
one after another, so a large array is never copied into one joined bytes
object on its way out. `deserialize` checks the frame (length, checksum,
signature) before any byte reaches pickle or dill, then reads it in place:
arrays rebuilt from a payload are views of it and read-only, like objects
from Ray's store.

Payloads written before the frame existed (one tag byte, then the body) are
still read, but only when no signing keys are given: they carry no
signature, so a reader that requires one refuses them.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from proxystore import frame
from proxystore.exceptions import (
    NotAPayloadError,
    PayloadSignatureError,
    SerializationError,
)

if TYPE_CHECKING:
    from proxystore.signing import SigningKeys

Buffer: TypeAlias = bytes | bytearray | memoryview
"""Any contiguous bytes-like object a store can write or return."""

Payload: TypeAlias = Sequence[Buffer]
"""A serialized object as parts to be written back to back."""

_BYTES, _STR, _PICKLE, _OUT_OF_BAND, _DILL, _CUSTOM = b"BSPODC"
_LEGACY_TAGS = frozenset(b"BSPOD")

_SLICE_LIMIT = 4096
# `plain_frame` leaves `bytes` over this size to `serialize_parts`, whose
# frame keeps them by reference (see `LocalStore`).
_BY_REFERENCE = 64 * 1024
_COUNT = struct.Struct("<I")
_LENGTH = struct.Struct("<Q")


def serialize(
    obj: Any,
    *,
    checksum: bool = True,
    keys: SigningKeys | None = None,
    sign_full_data: bool = False,
) -> bytes:
    """Serialize an object into one `bytes` payload (a frame).

    Args:
        obj: Any object pickle or dill can take.
        checksum: Add an xxh3_64 checksum (catches corruption).
        keys: Sign with the first of these keys (HMAC-SHA256).
        sign_full_data: Make the signature cover every byte, not just the
            parts that can run code when deserialized.

    Returns:
        The framed payload.

    Raises:
        SerializationError: If neither pickle nor dill can serialize `obj`.
    """
    return join(
        serialize_parts(
            obj, checksum=checksum, keys=keys, sign_full_data=sign_full_data
        )
    )


def serialize_parts(
    obj: Any,
    *,
    checksum: bool = True,
    keys: SigningKeys | None = None,
    sign_full_data: bool = False,
) -> list[Buffer]:
    """Serialize an object into parts to be written back to back.

    Contiguous buffers (numpy arrays, `PickleBuffer` users) stay out of band
    and are returned as views of the original memory, not copies.

    Args:
        obj: Any object pickle or dill can take.
        checksum: Add an xxh3_64 checksum (catches corruption).
        keys: Sign with the first of these keys (HMAC-SHA256).
        sign_full_data: Make the signature cover every byte.

    Returns:
        The frame's parts; concatenated they equal `serialize(obj)`.

    Raises:
        SerializationError: If neither pickle nor dill can serialize `obj`.
    """
    kind = type(obj)
    parts: list[Buffer]
    if kind is bytes:
        tag, parts = _BYTES, [obj]
    elif kind is str:
        tag, parts = _STR, [obj.encode("utf-8", "surrogatepass")]
    else:
        buffers: list[pickle.PickleBuffer] = []
        try:
            stream = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        except Exception as pickle_error:
            tag, parts = _DILL, [_dill_dumps(obj, pickle_error)]
        else:
            if len(buffers) >= frame.MAX_PARTS:
                # More buffers than a frame has parts: keep them in band.
                tag, parts = _PICKLE, [pickle.dumps(obj, protocol=5)]
            elif buffers:
                tag, parts = _OUT_OF_BAND, [stream]
                parts += [_flat(buffer.raw()) for buffer in buffers]
            else:
                tag, parts = _PICKLE, [stream]
    return frame.encode(
        tag, parts, checksum=checksum, keys=keys, mac_full=sign_full_data
    )


def frame_custom(
    data: Any,
    *,
    checksum: bool = True,
    keys: SigningKeys | None = None,
    sign_full_data: bool = False,
) -> list[Buffer]:
    """Frame the bytes a custom serializer made (tag ``C``).

    Args:
        data: What the serializer returned: bytes, bytearray or memoryview.
        checksum: Add an xxh3_64 checksum.
        keys: Sign with the first of these keys (the signature always covers
            custom bytes: their deserializer may run code).
        sign_full_data: Accepted for symmetry; custom bytes are one part,
            always covered by the signature.

    Raises:
        SerializationError: If `data` is not a bytes-like object.
    """
    if isinstance(data, memoryview):
        part: Buffer = _flat(data)
    elif isinstance(data, (bytes, bytearray)):
        part = data
    else:
        raise SerializationError(
            f"custom serializer returned {type(data).__name__}, expected bytes"
        )
    return frame.encode(
        _CUSTOM, [part], checksum=checksum, keys=keys, mac_full=sign_full_data
    )


def _flat(view: memoryview) -> memoryview:
    if not view.c_contiguous:
        raise SerializationError(
            f"cannot frame a non-contiguous buffer ({view.format!r}, "
            f"shape {view.shape})"
        )
    if view.format == "B" and view.ndim == 1:
        return view
    return view.cast("B")


def _dill_loads(data: Buffer) -> Any:
    # dill costs tens of milliseconds to import: only payloads that need it
    # (lambdas, closures) pay for it.
    import dill

    return dill.loads(bytes(data))


def _dill_dumps(obj: Any, pickle_error: Exception) -> bytes:
    import dill

    try:
        data: bytes = dill.dumps(obj, protocol=5)
    except Exception as dill_error:
        raise SerializationError(
            f"cannot serialize object of type {type(obj).__name__}: "
            f"pickle said {pickle_error!r}; dill said {dill_error!r}"
        ) from dill_error
    return data


def deserialize(
    data: Buffer | frame.Split,
    *,
    keys: SigningKeys | None = None,
    require_checksum: bool = False,
) -> Any:
    """Rebuild an object from a payload made by `serialize` or `serialize_parts`.

    The frame's length, checksum and signature are checked before anything
    is unpickled.

    Args:
        data: The payload, as bytes, bytearray or memoryview, or a
            `proxystore.frame.Split` (a ``B`` payload whose body is a `bytes`
            object then comes back as that object, not a copy).
        keys: The reader's signing keys: with keys, only payloads signed by
            one of them are deserialized; without, signed payloads are
            refused (their signature cannot be checked).
        require_checksum: Refuse a frame without a checksum.

    Returns:
        The object.

    Raises:
        PayloadSignatureError: If the signature is missing, unknown or wrong
            (see `proxystore.frame.decode`).
        SerializationError: If `data` is not a bytes-like object, is empty,
            truncated, has trailing bytes, fails its checksum, or is corrupt.
    """
    if keys is None and type(data) is bytes:
        found = frame.decode_one(data, require_checksum)
        if found is not None:
            return _loads_one(data, found[0], found[2])
    if isinstance(data, frame.Split):
        payload = frame.decode(data, keys=keys, require_checksum=require_checksum)
        if payload.tag == _BYTES and type(data.body) is bytes:
            # One part (decode checked), which is the whole body: bytes
            # cannot change, so the body itself is the object.
            return data.body
        size = frame.stored_size(data)
    else:
        view = _as_view(data)
        if _is_legacy(view):
            if keys is not None:
                raise PayloadSignatureError(
                    f"payload is in the pre-frame format (tag {bytes(view[:1])!r}), "
                    "which carries no signature; this store has signing keys"
                )
            return _legacy_loads(view)
        payload = frame.decode(
            data if type(data) is bytes else view,
            keys=keys,
            require_checksum=require_checksum,
        )
        size = view.nbytes
    tag = payload.tag
    if tag == _CUSTOM:
        raise SerializationError(
            "payload was stored with a custom serializer; read it with its deserializer"
        )
    part0 = payload.parts[0]
    try:
        if tag == _BYTES:
            return bytes(part0)
        if tag == _STR:
            return str(part0, "utf-8", "surrogatepass")
        if tag == _PICKLE:
            return pickle.loads(part0)
        if tag == _OUT_OF_BAND:
            return pickle.loads(part0, buffers=payload.parts[1:])
        return _dill_loads(part0)
    except Exception as err:
        raise SerializationError(
            f"corrupt payload ({size} bytes, tag {bytes([tag])!r}): {err!r}"
        ) from err


def _loads_one(data: bytes, tag: int, start: int) -> Any:
    """Deserialize the part of a verified one-part frame held in `data`."""
    # Small parts are sliced (one short copy costs less than a view);
    # large ones are read in place.
    part: Buffer = (
        data[start:] if len(data) <= _SLICE_LIMIT else memoryview(data)[start:]
    )
    try:
        if tag == _BYTES:
            return bytes(part)
        if tag == _PICKLE:
            return pickle.loads(part)
        if tag == _STR:
            return str(part, "utf-8", "surrogatepass")
        if tag == _OUT_OF_BAND:
            return pickle.loads(part, buffers=())
        if tag == _DILL:
            return _dill_loads(part)
    except Exception as err:
        raise SerializationError(
            f"corrupt payload ({len(data)} bytes, tag {bytes([tag])!r}): {err!r}"
        ) from err
    raise SerializationError(
        "payload was stored with a custom serializer; read it with its deserializer"
    )


def plain_frame(obj: Any) -> bytes | None:
    """Serialize into an unsigned one-part frame without a checksum, joined.

    What `LocalStore` writes when it has no signing keys, in fewer steps
    than ``join(serialize_parts(obj, checksum=False))``, which it equals.
    None when the object needs more than that (out-of-band buffers, dill,
    a part longer than a frame takes) or is a `bytes` object over 64 KiB,
    which `LocalStore` keeps by reference instead of copying it into a
    frame (`proxystore.frame.split`): serialize it with `serialize_parts`.
    """
    kind = type(obj)
    if kind is bytes:
        if len(obj) > _BY_REFERENCE:
            return None
        tag, part = _BYTES, obj
    elif kind is str:
        tag, part = _STR, obj.encode("utf-8", "surrogatepass")
    else:
        buffers: list[pickle.PickleBuffer] = []
        try:
            part = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        except Exception:
            return None
        if buffers:
            return None
        tag = _PICKLE
    return b"".join((_PLAIN_HEAD[tag], _LENGTH.pack(len(part)), part))


_PLAIN_HEAD = {tag: head for head, tag in frame.PLAIN_HEADS.items()}


def plain_loads(data: bytes) -> Any:
    """Deserialize a `plain_frame` payload; `NOT_PLAIN` if it is not one.

    The checks are `frame.decode_one`'s for an unsigned frame without a
    checksum (magic, version, flags, tag, key id, part count, exact
    length); anything else, valid or not, is `NOT_PLAIN`, for `deserialize`
    to check in full.

    Raises:
        SerializationError: If the part is corrupt or was made by a custom
            serializer (the errors `deserialize` raises for it).
    """
    tag = _plain_heads.get(data[:12])
    if tag is None:
        return NOT_PLAIN
    size = len(data)
    if size < _PLAIN_START or size != _PLAIN_START + _unpack_length(data, 12)[0]:
        return NOT_PLAIN
    if tag == _BYTES:
        return data[_PLAIN_START:]
    if tag == _PICKLE and size <= _SLICE_LIMIT:
        try:
            return pickle.loads(data[_PLAIN_START:])
        except Exception as err:
            raise SerializationError(
                f"corrupt payload ({size} bytes, tag {bytes([tag])!r}): {err!r}"
            ) from err
    return _loads_one(data, tag, _PLAIN_START)


_plain_heads = frame.PLAIN_HEADS
_unpack_length = _LENGTH.unpack_from
_PLAIN_START = frame.PLAIN_HEADER_SIZE

NOT_PLAIN: Any = object()
"""Returned by `plain_loads` for a payload it does not read."""


def deserialize_custom(
    data: Buffer | frame.Split,
    deserializer: Callable[[bytes], Any],
    *,
    keys: SigningKeys | None = None,
    require_checksum: bool = False,
) -> Any:
    """Check a payload made by `frame_custom` and hand its bytes to `deserializer`.

    A ``B`` frame (bytes stored without a serializer) hands over its bytes
    too. A pre-frame payload (the serializer's bytes as they were stored
    before frames existed) is handed over whole, unless `keys` are given.

    Raises:
        PayloadSignatureError: As `deserialize`.
        SerializationError: If the payload is corrupt, was made by the
            default serializer, or `deserializer` raises.
    """
    framed: memoryview | frame.Split | None
    if isinstance(data, frame.Split):
        framed = data
    else:
        view = _as_view(data)
        framed = view if frame.is_frame(view) else None
    if framed is None:
        if keys is not None:
            raise PayloadSignatureError(
                "payload is in the pre-frame format, which carries no "
                "signature; this store has signing keys"
            )
        body = bytes(view)
    else:
        payload = frame.decode(framed, keys=keys, require_checksum=require_checksum)
        if payload.tag not in (_CUSTOM, _BYTES):
            raise SerializationError(
                f"payload was stored by proxystore's serializer (tag "
                f"{bytes([payload.tag])!r}), not a custom one; read it without "
                "a deserializer"
            )
        if isinstance(framed, frame.Split) and type(framed.body) is bytes:
            body = framed.body  # the one part, whole: no copy
        else:
            body = bytes(payload.parts[0])
    try:
        return deserializer(body)
    except Exception as err:
        raise SerializationError(
            f"custom deserializer {getattr(deserializer, '__name__', deserializer)!r} "
            f"failed: {err!r}"
        ) from err


def _as_view(data: Any) -> memoryview:
    if type(data) is bytes:  # flat, contiguous, read-only
        if not data:
            raise SerializationError("cannot deserialize an empty payload")
        return memoryview(data)
    try:
        view = memoryview(data)
    except TypeError:
        raise NotAPayloadError(
            f"cannot deserialize a {type(data).__name__}: a payload is bytes, "
            "bytearray or memoryview"
        ) from None
    if not view.c_contiguous:
        raise SerializationError("cannot deserialize a non-contiguous buffer")
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    if not view.nbytes:
        raise SerializationError("cannot deserialize an empty payload")
    return view


def _is_legacy(view: memoryview) -> bool:
    # A frame whose first byte was corrupted into a tag still reads as a
    # (corrupt) frame: bytes 1-4 are the rest of its magic and its version.
    return view[0] in _LEGACY_TAGS and not (
        view.nbytes >= 5 and view[1:4] == frame.MAGIC[1:] and view[4] == frame.VERSION
    )


def _legacy_loads(view: memoryview) -> Any:
    tag = view[0]
    try:
        if tag == _BYTES:
            return bytes(view[1:])
        if tag == _STR:
            return str(view[1:], "utf-8", "surrogatepass")
        if tag == _PICKLE:
            return pickle.loads(view[1:])
        if tag == _OUT_OF_BAND:
            return _legacy_out_of_band_loads(view.toreadonly())
        return _dill_loads(view[1:])
    except SerializationError:
        raise
    except Exception as err:
        raise SerializationError(
            f"corrupt pre-frame payload ({view.nbytes} bytes, tag "
            f"{bytes([tag])!r}): {err!r}"
        ) from err


def _legacy_out_of_band_loads(view: memoryview) -> Any:
    (count,) = _COUNT.unpack_from(view, 1)
    (stream_length,) = _LENGTH.unpack_from(view, 1 + _COUNT.size)
    offset = 1 + _COUNT.size + _LENGTH.size
    if count > frame.MAX_PARTS or offset + count * _LENGTH.size > view.nbytes:
        raise SerializationError("corrupt pre-frame payload: bad buffer count")
    lengths = struct.unpack_from(f"<{count}Q", view, offset)
    offset += count * _LENGTH.size
    stream = view[offset : offset + stream_length]
    offset += stream_length
    buffers = []
    for length in lengths:
        offset += -offset % frame.ALIGN
        if offset + length > view.nbytes:
            raise SerializationError(
                "corrupt pre-frame payload: buffer runs past its end"
            )
        buffers.append(view[offset : offset + length])
        offset += length
    return pickle.loads(stream, buffers=buffers)


def join(payload: Payload) -> bytes:
    """Concatenate a payload's parts into one `bytes` object."""
    if len(payload) == 1 and type(payload[0]) is bytes:
        return payload[0]
    return b"".join(payload)
