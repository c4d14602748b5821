"""Binary framing of peer messages over a data channel.

A message is a JSON *envelope* (the user's header plus transport fields) and
a raw body. Both are written as one payload stream split into frames of at
most ``chunk_size`` bytes, so messages of any size fit the data channel's
message limit and frames of different messages can interleave::

    frame  = type:u8 | flags:u8 | message_id:u64 | rest
    START  rest = envelope_length:u32 | body_length:u64 | payload...
    DATA   rest = payload...
    ABORT  rest = (empty)  the sender gave up on this message

The payload is the UTF-8 JSON envelope followed by the body. The last frame
of a message carries the END flag. Nothing here is ever unpickled.

Every length a peer sends is capped before anything is buffered for it (see
`Reassembler`): a frame's size, a message's declared envelope and body
lengths, the messages in progress at once and the bytes they hold. A peer
that passes a cap is a protocol error (the connection is closed).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import struct
from collections.abc import Iterator
from typing import Any

from proxystore.exceptions import PeerError, SerializationError

FRAME_HEADER = struct.Struct("!BBQ")
START_HEADER = struct.Struct("!IQ")
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_ENVELOPE_SIZE = 16 * 1024 * 1024
DEFAULT_MAX_FRAME_SIZE = 1024 * 1024
"""Largest frame accepted (senders use `DEFAULT_CHUNK_SIZE`, far below)."""
DEFAULT_MAX_BODY_SIZE = 1024**3
"""Largest body sent inline (an endpoint's default ``max_object_size``)."""
DEFAULT_MAX_IN_PROGRESS = 64
"""Most messages started and not finished at once."""
DEFAULT_MAX_BUFFERED = 2 * DEFAULT_MAX_BODY_SIZE
"""Most bytes held at once by messages in progress."""


class FrameType(enum.IntEnum):
    """The kind of a frame."""

    START = 1
    DATA = 2
    ABORT = 3


class FrameFlag(enum.IntFlag):
    """Bits of a frame's flags byte."""

    RESPONSE = 0x01
    END = 0x02


class FramingError(PeerError):
    """A peer sent a frame that does not follow the framing protocol."""


@dataclasses.dataclass
class Envelope:
    """A message as decoded from frames.

    Attributes:
        message_id: Id the requester chose; a response carries its request's id.
        is_response: Whether this answers one of our requests.
        fields: The decoded JSON envelope.
        body: The body received inline (empty when it travels another way).
    """

    message_id: int
    is_response: bool
    fields: dict[str, Any]
    body: bytearray


def encode_frames(
    message_id: int,
    *,
    is_response: bool,
    fields: dict[str, Any],
    body: bytes | bytearray | memoryview = b"",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
) -> Iterator[bytes]:
    """Yield the frames of one message, each at most ``chunk_size`` bytes.

    Args:
        message_id: Id of the request (or of the request being answered).
        is_response: Whether the message is a response.
        fields: JSON-serializable envelope.
        body: Raw body sent inline after the envelope.
        chunk_size: Largest frame, headers included.
        max_body_size: Largest body sent; the receiver refuses larger ones
            (`Reassembler`), so they fail here, before anything is sent.

    Raises:
        SerializationError: If ``fields`` is not JSON-serializable or too
            large, or ``body`` is larger than ``max_body_size``.
        ValueError: If ``chunk_size`` cannot hold a frame header.
    """
    if chunk_size <= FRAME_HEADER.size + START_HEADER.size:
        raise ValueError(f"chunk_size {chunk_size} is too small for a frame header")
    try:
        envelope = json.dumps(fields, separators=(",", ":")).encode()
    except (TypeError, ValueError) as err:
        raise SerializationError(
            f"message header is not JSON-serializable: {err}"
        ) from err
    if len(envelope) > MAX_ENVELOPE_SIZE:
        raise SerializationError(
            f"message header is {len(envelope)} bytes once encoded; "
            f"the limit is {MAX_ENVELOPE_SIZE}"
        )
    body_view = memoryview(body).cast("B")
    if len(body_view) > max_body_size:
        raise SerializationError(
            f"message body of {len(body_view)} bytes is larger than the "
            f"{max_body_size} bytes a peer accepts inline"
        )
    total = len(envelope) + len(body_view)
    base_flags = FrameFlag.RESPONSE if is_response else FrameFlag(0)

    first_room = chunk_size - FRAME_HEADER.size - START_HEADER.size
    room = chunk_size - FRAME_HEADER.size
    position = 0
    frame_type = FrameType.START
    while True:
        space = first_room if frame_type is FrameType.START else room
        end = min(total, position + space)
        flags = base_flags | (FrameFlag.END if end == total else 0)
        parts: list[bytes | memoryview] = [
            FRAME_HEADER.pack(frame_type, flags, message_id)
        ]
        if frame_type is FrameType.START:
            parts.append(START_HEADER.pack(len(envelope), len(body_view)))
        if position < len(envelope):
            parts.append(envelope[position : min(end, len(envelope))])
        if end > len(envelope):
            start = max(position, len(envelope)) - len(envelope)
            parts.append(body_view[start : end - len(envelope)])
        yield b"".join(parts)
        if end == total:
            return
        position = end
        frame_type = FrameType.DATA


def encode_abort(message_id: int, *, is_response: bool) -> bytes:
    """Return the frame telling the receiver to drop a partly sent message."""
    flags = FrameFlag.END | (FrameFlag.RESPONSE if is_response else 0)
    return FRAME_HEADER.pack(FrameType.ABORT, flags, message_id)


@dataclasses.dataclass
class _Partial:
    envelope_length: int
    body_length: int
    envelope: bytearray
    body: bytearray


class Reassembler:
    """Rebuilds messages from the frames of one data channel.

    Frames of one message arrive in order (the channel is ordered) but may
    interleave with frames of other messages.

    Args:
        max_frame_size: Largest frame accepted.
        max_body_size: Largest body a START frame may declare.
        max_in_progress: Most messages started and not finished at once.
        max_buffered: Most bytes held by unfinished messages at once.

    Nothing is allocated from a declared length: buffers grow only with
    bytes actually received, so a lying header costs the receiver nothing.
    """

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_in_progress: int = DEFAULT_MAX_IN_PROGRESS,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        self._partials: dict[tuple[bool, int], _Partial] = {}
        self.max_frame_size = max_frame_size
        self.max_body_size = max_body_size
        self.max_in_progress = max_in_progress
        self.max_buffered = max_buffered
        self._buffered = 0

    @property
    def buffered(self) -> int:
        """Bytes held by messages started but not finished."""
        return self._buffered

    @property
    def in_progress(self) -> int:
        """Number of messages started but not finished."""
        return len(self._partials)

    def feed(self, frame: bytes) -> Envelope | None:
        """Consume one frame; return the message it completes, if any.

        Raises:
            FramingError: If the frame is malformed or out of sequence.
        """
        if len(frame) < FRAME_HEADER.size:
            raise FramingError(f"frame of {len(frame)} bytes is shorter than a header")
        if len(frame) > self.max_frame_size:
            raise FramingError(
                f"frame of {len(frame)} bytes is larger than the limit of "
                f"{self.max_frame_size}"
            )
        raw_type, raw_flags, message_id = FRAME_HEADER.unpack_from(frame)
        try:
            frame_type = FrameType(raw_type)
        except ValueError as err:
            raise FramingError(f"unknown frame type {raw_type}") from err
        flags = FrameFlag(raw_flags & (FrameFlag.RESPONSE | FrameFlag.END))
        is_response = bool(flags & FrameFlag.RESPONSE)
        key = (is_response, message_id)
        offset = FRAME_HEADER.size

        if frame_type is FrameType.ABORT:
            self._drop(key)
            return None
        if frame_type is FrameType.START:
            if key in self._partials:
                raise FramingError(f"message {message_id} started twice")
            if len(frame) < offset + START_HEADER.size:
                raise FramingError("START frame is shorter than its header")
            envelope_length, body_length = START_HEADER.unpack_from(frame, offset)
            if envelope_length > MAX_ENVELOPE_SIZE:
                raise FramingError(f"envelope of {envelope_length} bytes is too large")
            if body_length > self.max_body_size:
                raise FramingError(
                    f"message {message_id} declares a body of {body_length} bytes; "
                    f"the limit is {self.max_body_size}"
                )
            if len(self._partials) >= self.max_in_progress:
                raise FramingError(
                    f"more than {self.max_in_progress} messages in progress at once"
                )
            offset += START_HEADER.size
            partial = _Partial(envelope_length, body_length, bytearray(), bytearray())
            self._partials[key] = partial
        else:
            found = self._partials.get(key)
            if found is None:
                raise FramingError(f"DATA frame for unknown message {message_id}")
            partial = found

        payload = memoryview(frame)[offset:]
        if self._buffered + len(payload) > self.max_buffered:
            raise FramingError(
                f"messages in progress would hold more than {self.max_buffered} bytes"
            )
        self._buffered += len(payload)
        missing_envelope = partial.envelope_length - len(partial.envelope)
        if missing_envelope > 0:
            partial.envelope += payload[:missing_envelope]
            payload = payload[missing_envelope:]
        partial.body += payload
        if len(partial.body) > partial.body_length:
            self._drop(key)
            raise FramingError(f"message {message_id} overran its declared length")

        if not flags & FrameFlag.END:
            return None
        self._drop(key)
        if (
            len(partial.envelope) != partial.envelope_length
            or len(partial.body) != partial.body_length
        ):
            raise FramingError(f"message {message_id} ended before its declared length")
        try:
            fields = json.loads(partial.envelope)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise FramingError(f"message {message_id} has a corrupt envelope") from err
        if not isinstance(fields, dict):
            raise FramingError(f"message {message_id} envelope is not a JSON object")
        return Envelope(message_id, is_response, fields, partial.body)

    def _drop(self, key: tuple[bool, int]) -> None:
        partial = self._partials.pop(key, None)
        if partial is not None:
            self._buffered -= len(partial.envelope) + len(partial.body)
