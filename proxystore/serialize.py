"""Turning objects into bytes and back.

A payload starts with a one-byte tag saying how the rest was made:

- ``b"B"``: the object is `bytes`; the payload is the tag and the bytes.
- ``b"S"``: the object is `str`; the tag and its UTF-8 encoding.
- ``b"P"``: pickle protocol 5 with every buffer in band.
- ``b"O"``: pickle protocol 5 with out-of-band buffers (numpy arrays and the
  like): a header of buffer lengths, the pickle stream, then each buffer
  padded to a 64-byte boundary so arrays come back aligned.
- ``b"D"``: `dill`, for what pickle cannot take (lambdas, closures).

`serialize_parts` returns the payload as a list of buffers that a store writes
one after another, so a large array is never copied into one joined bytes
object on its way out. `deserialize` reads buffers in place: arrays rebuilt
from a payload are views of it and read-only, like objects from Ray's store.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Sequence
from typing import Any, TypeAlias

import dill

from proxystore.exceptions import SerializationError

Buffer: TypeAlias = bytes | bytearray | memoryview
"""Any contiguous bytes-like object a store can write or return."""

Payload: TypeAlias = Sequence[Buffer]
"""A serialized object as parts to be written back to back."""

Serializer = Any
"""A callable turning an object into `bytes` (user-supplied)."""

_BYTES = b"B"
_STR = b"S"
_PICKLE = b"P"
_OUT_OF_BAND = b"O"
_DILL = b"D"
_BYTES_TAG, _STR_TAG, _PICKLE_TAG, _OUT_OF_BAND_TAG, _DILL_TAG = b"BSPOD"

_ALIGN = 64
_COUNT = struct.Struct("<I")
_LENGTH = struct.Struct("<Q")
_PADDING = bytes(_ALIGN)


def serialize(obj: Any) -> bytes:
    """Serialize an object into one `bytes` payload.

    Args:
        obj: Any object pickle or dill can take.

    Returns:
        The tagged payload.

    Raises:
        SerializationError: If neither pickle nor dill can serialize `obj`.
    """
    parts = serialize_parts(obj)
    if len(parts) == 1 and type(parts[0]) is bytes:
        return parts[0]
    return b"".join(parts)


def serialize_parts(obj: Any) -> list[Buffer]:
    """Serialize an object into parts to be written back to back.

    Contiguous buffers (numpy arrays, `PickleBuffer` users) stay out of band
    and are returned as views of the original memory, not copies.

    Args:
        obj: Any object pickle or dill can take.

    Returns:
        The payload's parts; concatenated they equal `serialize(obj)`.

    Raises:
        SerializationError: If neither pickle nor dill can serialize `obj`.
    """
    kind = type(obj)
    if kind is bytes:
        return [_BYTES, obj]
    if kind is str:
        return [_STR + obj.encode("utf-8", "surrogatepass")]
    buffers: list[pickle.PickleBuffer] = []
    try:
        stream = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    except Exception as pickle_error:
        return [_DILL + _dill_dumps(obj, pickle_error)]
    if not buffers:
        return [_PICKLE, stream]
    return _out_of_band_parts(stream, [buffer.raw() for buffer in buffers])


def _dill_dumps(obj: Any, pickle_error: Exception) -> bytes:
    try:
        data: bytes = dill.dumps(obj, protocol=5)
    except Exception as dill_error:
        raise SerializationError(
            f"cannot serialize object of type {type(obj).__name__}: "
            f"pickle said {pickle_error!r}; dill said {dill_error!r}"
        ) from dill_error
    return data


def _out_of_band_parts(stream: bytes, views: list[memoryview]) -> list[Buffer]:
    lengths = b"".join(_LENGTH.pack(view.nbytes) for view in views)
    header = _OUT_OF_BAND + _COUNT.pack(len(views)) + _LENGTH.pack(len(stream))
    header += lengths
    parts: list[Buffer] = [header, stream]
    offset = len(header) + len(stream)
    for view in views:
        pad = -offset % _ALIGN
        if pad:
            parts.append(_PADDING[:pad])
            offset += pad
        parts.append(view)
        offset += view.nbytes
    return parts


def deserialize(data: Buffer) -> Any:
    """Rebuild an object from a payload made by `serialize` or `serialize_parts`.

    Args:
        data: The payload, as bytes, bytearray or memoryview.

    Returns:
        The object.

    Raises:
        SerializationError: If the payload is empty, has an unknown tag or is
            corrupt.
    """
    if type(data) is not bytes:
        data = memoryview(data).cast("B")
    if not data:
        raise SerializationError("cannot deserialize an empty payload")
    tag = data[0]
    try:
        if tag == _BYTES_TAG:
            return bytes(data[1:])
        if tag == _STR_TAG:
            return str(data[1:], "utf-8", "surrogatepass")
        if tag == _PICKLE_TAG:
            return pickle.loads(memoryview(data)[1:])
        if tag == _OUT_OF_BAND_TAG:
            return _out_of_band_loads(memoryview(data))
        if tag == _DILL_TAG:
            return dill.loads(bytes(data[1:]))
    except SerializationError:
        raise
    except Exception as err:
        raise SerializationError(
            f"corrupt payload ({len(data)} bytes, tag {bytes([tag])!r}): {err!r}"
        ) from err
    raise SerializationError(
        f"payload has unknown tag {bytes([tag])!r}; it was not written by proxystore"
    )


def _out_of_band_loads(view: memoryview) -> Any:
    readonly = view.toreadonly()
    (count,) = _COUNT.unpack_from(readonly, 1)
    (stream_length,) = _LENGTH.unpack_from(readonly, 1 + _COUNT.size)
    offset = 1 + _COUNT.size + _LENGTH.size
    lengths = [
        _LENGTH.unpack_from(readonly, offset + i * _LENGTH.size)[0]
        for i in range(count)
    ]
    offset += count * _LENGTH.size
    stream = readonly[offset : offset + stream_length]
    offset += stream_length
    buffers = []
    for length in lengths:
        offset += -offset % _ALIGN
        if offset + length > readonly.nbytes:
            raise SerializationError("corrupt payload: buffer runs past its end")
        buffers.append(readonly[offset : offset + length])
        offset += length
    return pickle.loads(stream, buffers=buffers)


def payload_size(payload: Payload) -> int:
    """Return the total number of bytes in a payload's parts (flat byte buffers)."""
    return sum(map(len, payload))


def join(payload: Payload) -> bytes:
    """Concatenate a payload's parts into one `bytes` object."""
    if len(payload) == 1 and type(payload[0]) is bytes:
        return payload[0]
    return b"".join(payload)
