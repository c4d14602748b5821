"""Stream events: what a `StreamProducer` writes to a broker and how it is read.

Face-neutral and hand-written (both faces of `proxystore.aio.stream` use it).
An event is a small map of ASCII field names to bytes (a Redis Streams entry
as it is; packed by `pack_fields` for brokers that carry one message):

- ``v``: the format version, ``b"1"``.
- ``t``: the kind: ``b"o"`` an object in a store, ``b"i"`` an object inline,
  ``b"e"`` the end of the topic.
- ``s``, ``k``: (kind ``o``) the store's name and the object's key, ASCII.
  The consumer reads only from stores registered in its own process under
  that name: an event never carries a store configuration or a pickle.
- ``d``: (kind ``i``) the object as one payload frame (`proxystore.frame`),
  with its checksum and, when signing keys are configured, its MAC: a writer
  of the stream without the key cannot make a consumer unpickle anything.
- ``m``: optional metadata, a JSON object (UTF-8).
- ``g``: optional fan-out: how many consumer groups must acknowledge the
  item before it is finished (absent: brokers without acknowledgements).
  Redis Streams consumers do not trust the number: an item is finished
  when every consumer group of the stream (``XINFO GROUPS``) acknowledged
  it; only whether ``g`` is there (acknowledgements count at all) matters.
- ``x``: ``b"1"`` to evict the item's object from its store once it is
  finished (absent: the object stays, e.g. until a lifetime ends).
- ``a``: (when the producer has signing keys) ``<kid>:<hex HMAC-SHA256>``
  over the topic and every other field (`sign_event`). A consumer with
  signing keys refuses an event without a valid one before acting on it,
  so a writer of the stream without the key can neither name keys for
  consumers to fetch or evict nor end a topic early (it can still replay a
  signed event of the same topic).

Nothing in an event is trusted: `parse` checks the field names, counts,
lengths and values against caps before anything else reads them, and a bad
event raises `MalformedEventError` naming the stream and the entry id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import struct
from collections.abc import Mapping
from typing import Any, NamedTuple

from proxystore.exceptions import ConfigurationError, MalformedEventError
from proxystore.signing import SigningKeys

VERSION = b"1"
"""The event format version this module writes and reads."""

KIND_STORED = b"o"
KIND_INLINE = b"i"
KIND_END = b"e"
_KINDS = frozenset((KIND_STORED, KIND_INLINE, KIND_END))

TOPIC_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
"""Topic names: 1-200 of ``[A-Za-z0-9._-]``, not starting with a dot."""

MAX_FIELDS = 9
"""Most fields an event may have."""
MAX_NAME = 200
"""Longest store name or key in an event, in bytes."""
MAX_METADATA = 64 * 1024
"""Longest metadata in an event, in bytes of JSON."""
DEFAULT_MAX_INLINE = 1024 * 1024
"""Longest inline frame a consumer accepts unless told otherwise."""
MAX_FAN_OUT = 1024
"""Most consumer groups an item may wait for."""

_FIELDS = frozenset((b"v", b"t", b"s", b"k", b"d", b"m", b"g", b"x", b"a"))
_AUTH = b"a"
_AUTH_VALUE = re.compile(rb"([A-Za-z0-9._-]{1,64}):([0-9a-f]{64})")
_NAME = re.compile(rb"[A-Za-z0-9._:/@+=-]{1,%d}" % MAX_NAME)
_FAN_OUT = re.compile(rb"[1-9][0-9]{0,3}")
_FIELD_COUNT = struct.Struct("<B")
_FIELD_NAME = struct.Struct("<B")
_FIELD_VALUE = struct.Struct("<I")

Fields = dict[bytes, bytes]
"""An event as field name -> value."""


class Event(NamedTuple):
    """An event as a broker delivered it.

    Attributes:
        topic: The topic it was published to.
        id: The broker's id of the entry (a Redis Streams id, or a counter).
        fields: The event's fields, unchecked.
    """

    topic: str
    id: str
    fields: Mapping[bytes, bytes]


class Parsed(NamedTuple):
    """A checked event.

    Attributes:
        kind: `KIND_STORED`, `KIND_INLINE` or `KIND_END`.
        store: The store name (stored objects).
        key: The object's key (stored objects).
        inline: The object's frame (inline objects).
        metadata: The metadata (an empty dict if none).
        fan_out: Consumer groups that must acknowledge it (0: none do).
        evict: Evict the object once every group has acknowledged it.
    """

    kind: bytes
    store: str | None
    key: str | None
    inline: bytes | None
    metadata: dict[str, Any]
    fan_out: int
    evict: bool


def check_topic(topic: Any) -> str:
    """Return `topic` if it is a valid topic name.

    Raises:
        ConfigurationError: If it is not a str of 1-200 ``[A-Za-z0-9._-]``
            (not starting with a dot).
    """
    if type(topic) is not str or TOPIC_PATTERN.fullmatch(topic) is None:
        raise ConfigurationError(
            f"a stream topic is 1-200 of [A-Za-z0-9._-], not starting with '.', "
            f"got {topic!r}"
        )
    return topic


def encode_metadata(metadata: Mapping[str, Any] | None, topic: str) -> bytes | None:
    """Return metadata as the JSON an event carries (None when there is none).

    Raises:
        ConfigurationError: If it is not a mapping of str keys, is not JSON
            serializable, or its JSON is over `MAX_METADATA` bytes.
    """
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping) or not all(
        type(key) is str for key in metadata
    ):
        raise ConfigurationError(
            f"metadata for topic {topic!r} must be a mapping with str keys, "
            f"got {type(metadata).__name__}"
        )
    try:
        text = json.dumps(dict(metadata), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigurationError(
            f"metadata for topic {topic!r} must be JSON serializable: {err}"
        ) from None
    data = text.encode("utf-8")
    if len(data) > MAX_METADATA:
        raise ConfigurationError(
            f"metadata for topic {topic!r} is {len(data)} bytes of JSON, "
            f"at most {MAX_METADATA}"
        )
    return data


def stored_event(
    store: str, key: str, metadata: bytes | None, fan_out: int, evict: bool
) -> Fields:
    """Return the fields of an event for an object in a store."""
    fields = {b"v": VERSION, b"t": KIND_STORED}
    fields[b"s"] = store.encode("ascii")
    fields[b"k"] = key.encode("ascii")
    fields = _common(fields, metadata, fan_out)
    if evict and fan_out:
        fields[b"x"] = b"1"
    return fields


def inline_event(frame: bytes, metadata: bytes | None, fan_out: int) -> Fields:
    """Return the fields of an event carrying its object's frame."""
    fields = {b"v": VERSION, b"t": KIND_INLINE, b"d": frame}
    return _common(fields, metadata, fan_out)


def end_event(fan_out: int = 0) -> Fields:
    """Return the fields of the event that ends a topic."""
    return _common({b"v": VERSION, b"t": KIND_END}, None, fan_out)


def _common(fields: Fields, metadata: bytes | None, fan_out: int) -> Fields:
    if metadata is not None:
        fields[b"m"] = metadata
    if fan_out:
        fields[b"g"] = str(fan_out).encode("ascii")
    return fields


def check_name(value: str, what: str) -> str:
    """Return a store name or key if an event can carry it.

    Raises:
        ConfigurationError: If it is not ASCII or longer than `MAX_NAME`.
    """
    if type(value) is not str or _NAME.fullmatch(value.encode("utf-8")) is None:
        raise ConfigurationError(
            f"a stream event carries {what}s of 1-{MAX_NAME} of "
            f"[A-Za-z0-9._:/@+=-], got {value!r}"
        )
    return value


def _event_mac(key: bytes, topic: str, fields: Mapping[bytes, bytes]) -> str:
    signed = {name: value for name, value in fields.items() if name != _AUTH}
    message = topic.encode() + b"\0" + pack_fields(dict(sorted(signed.items())))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign_event(topic: str, fields: Fields, keys: SigningKeys) -> Fields:
    """Return the event's fields with its MAC (field ``a``) under `keys`."""
    mac = _event_mac(keys.signing_key, topic, fields)
    return {**fields, _AUTH: f"{keys.signing_kid}:{mac}".encode("ascii")}


def _check_mac(
    event: Event, fields: Mapping[bytes, bytes], keys: SigningKeys, bad: Any
) -> None:
    raw = fields.get(_AUTH)
    if raw is None:
        raise bad("unsigned event (this consumer has signing keys)")
    found = _AUTH_VALUE.fullmatch(raw)
    if found is None:
        raise bad(f"malformed event MAC {raw[:40]!r}")
    kid, mac = found.group(1).decode(), found.group(2).decode()
    key = keys.key_for(kid)
    if key is None:
        raise bad(f"event signed with unknown key id {kid!r}")
    if not hmac.compare_digest(mac, _event_mac(key, event.topic, fields)):
        raise bad(f"event MAC does not verify under key id {kid!r}")


def authentic(event: Event, keys: SigningKeys | None) -> bool:
    """Whether `event` carries a valid MAC under `keys` (always, without keys)."""
    if keys is None:
        return True
    try:
        _check_mac(event, event.fields, keys, lambda problem: ValueError(problem))
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def parse(
    event: Event,
    *,
    max_inline: int = DEFAULT_MAX_INLINE,
    keys: SigningKeys | None = None,
) -> Parsed:
    """Check an event's fields (and, given `keys`, its MAC); return what they say.

    Raises:
        MalformedEventError: If a field is unknown, missing, too long or
            malformed, or (with `keys`) the event's MAC is missing or wrong;
            names the topic and the entry id.
    """
    fields = event.fields

    def bad(problem: str) -> MalformedEventError:
        return MalformedEventError(event.topic, event.id, problem)

    if not isinstance(fields, Mapping):
        raise bad(f"an event is a map of fields, got {type(fields).__name__}")
    if len(fields) > MAX_FIELDS:
        raise bad(f"{len(fields)} fields, at most {MAX_FIELDS}")
    unknown = [name for name in fields if name not in _FIELDS]
    if unknown:
        raise bad(f"unknown fields {sorted(map(repr, unknown))[:4]}")
    for name, value in fields.items():
        if type(value) is not bytes:
            raise bad(f"field {name!r} is {type(value).__name__}, not bytes")
    if fields.get(b"v") != VERSION:
        raise bad(f"format version {fields.get(b'v')!r}, this proxystore reads 1")
    kind = fields.get(b"t")
    if kind not in _KINDS:
        raise bad(f"unknown kind {kind!r}")
    assert kind is not None
    metadata: dict[str, Any] = {}
    raw = fields.get(b"m")
    if raw is not None:
        if len(raw) > MAX_METADATA:
            raise bad(f"metadata of {len(raw)} bytes, at most {MAX_METADATA}")
        try:
            loaded = json.loads(raw)
        except (ValueError, RecursionError) as err:
            raise bad(f"metadata is not JSON: {err}") from None
        if not isinstance(loaded, dict):
            raise bad(f"metadata is a JSON {type(loaded).__name__}, not an object")
        metadata = loaded
    fan_out = 0
    raw = fields.get(b"g")
    if raw is not None:
        if _FAN_OUT.fullmatch(raw) is None or int(raw) > MAX_FAN_OUT:
            raise bad(f"fan-out {raw[:16]!r} is not 1-{MAX_FAN_OUT}")
        fan_out = int(raw)
    evict = False
    raw = fields.get(b"x")
    if raw is not None:
        if raw != b"1" or not fan_out:
            raise bad(f"evict flag {raw[:16]!r} (it is b'1', with a fan-out)")
        evict = True
    store = key = None
    inline = None
    if kind == KIND_STORED:
        store = _name(fields, b"s", "store name", bad)
        key = _name(fields, b"k", "key", bad)
        if b"d" in fields:
            raise bad("an object in a store carries no inline data")
    elif kind == KIND_INLINE:
        inline = fields.get(b"d")
        if inline is None:
            raise bad("an inline object carries no data")
        if len(inline) > max_inline:
            raise bad(
                f"inline data of {len(inline)} bytes, this consumer takes at "
                f"most {max_inline}"
            )
        if b"s" in fields or b"k" in fields or evict:
            raise bad("an inline object names no store or key to evict")
    elif not fields.keys() <= {b"v", b"t", b"g", _AUTH}:
        raise bad("an end event carries only its version, kind and fan-out")
    if keys is not None:
        # Last, so a malformed event says what is wrong with it; nothing
        # parsed is returned unless the MAC verifies.
        _check_mac(event, fields, keys, bad)
    return Parsed(kind, store, key, inline, metadata, fan_out, evict)


def _name(fields: Mapping[bytes, bytes], field: bytes, what: str, bad: Any) -> str:
    raw = fields.get(field)
    if raw is None:
        raise bad(f"missing {what}")
    if _NAME.fullmatch(raw) is None:
        raise bad(f"{what} {raw[:40]!r} is not 1-{MAX_NAME} of [A-Za-z0-9._:/@+=-]")
    return raw.decode("ascii")


def pack_fields(fields: Mapping[bytes, bytes]) -> bytes:
    """Pack an event into one message (brokers without field maps).

    Layout: u8 count, then per field u8 name length, name, u32 value length,
    value (little-endian).
    """
    out = [_FIELD_COUNT.pack(len(fields))]
    for name, value in fields.items():
        out += [_FIELD_NAME.pack(len(name)), name, _FIELD_VALUE.pack(len(value)), value]
    return b"".join(out)


def unpack_fields(data: bytes, topic: str, entry: str) -> Fields:
    """Unpack a message made by `pack_fields`, checking every length.

    Raises:
        MalformedEventError: If the message is truncated, has trailing bytes
            or more than `MAX_FIELDS` fields.
    """
    view = memoryview(data)
    size = len(view)

    def bad(problem: str) -> MalformedEventError:
        return MalformedEventError(topic, entry, problem)

    if size < 1:
        raise bad("empty message")
    (count,) = _FIELD_COUNT.unpack_from(view)
    if count > MAX_FIELDS:
        raise bad(f"{count} fields, at most {MAX_FIELDS}")
    offset = 1
    fields: Fields = {}
    for _ in range(count):
        if offset + 1 > size:
            raise bad("truncated message")
        (name_length,) = _FIELD_NAME.unpack_from(view, offset)
        offset += 1
        if offset + name_length + 4 > size:
            raise bad("truncated message")
        name = bytes(view[offset : offset + name_length])
        offset += name_length
        (value_length,) = _FIELD_VALUE.unpack_from(view, offset)
        offset += 4
        if offset + value_length > size:
            raise bad("truncated message")
        fields[name] = bytes(view[offset : offset + value_length])
        offset += value_length
    if offset != size:
        raise bad(f"{size - offset} trailing bytes")
    return fields


def redis_keys(topic: str) -> tuple[str, str, str]:
    """Return the Redis keys of a topic: (stream, acknowledgements, end marker).

    The topic sits in braces so all three hash to one cluster slot.
    """
    base = f"proxystore:stream:{{{topic}}}"
    return base, f"{base}:acks", f"{base}:end"
