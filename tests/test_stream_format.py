"""Stream events: encoding, packing and defensive parsing."""

from __future__ import annotations

import pytest

from proxystore.exceptions import ConfigurationError, MalformedEventError
from proxystore.stream_format import (
    KIND_INLINE,
    KIND_STORED,
    MAX_FIELDS,
    Event,
    check_topic,
    encode_metadata,
    end_event,
    inline_event,
    pack_fields,
    parse,
    stored_event,
    unpack_fields,
)


def test_stored_event_round_trip() -> None:
    fields = stored_event("store", "abc", encode_metadata({"a": 1}, "t"), 2, True)
    parsed = parse(Event("t", "1-0", fields))
    assert parsed.kind == KIND_STORED
    assert (parsed.store, parsed.key, parsed.metadata) == ("store", "abc", {"a": 1})
    assert (parsed.fan_out, parsed.evict) == (2, True)


def test_inline_event_round_trip_through_packing() -> None:
    fields = inline_event(b"frame", None, 1)
    packed = pack_fields(fields)
    parsed = parse(Event("t", "7", unpack_fields(packed, "t", "7")))
    assert (parsed.kind, parsed.inline, parsed.metadata) == (KIND_INLINE, b"frame", {})


@pytest.mark.parametrize(
    "data",
    [b"", b"\x09", b"\x01\x05ab", b"\x01\x01v\xff\x00\x00\x00x", b"\x00extra"],
)
def test_unpack_refuses_malformed_messages(data: bytes) -> None:
    with pytest.raises(MalformedEventError, match="'t' entry '3'"):
        unpack_fields(data, "t", "3")


def test_parse_caps() -> None:
    many = {bytes([65 + i]): b"x" for i in range(MAX_FIELDS + 1)}
    with pytest.raises(MalformedEventError, match="fields"):
        parse(Event("t", "1", many))
    with pytest.raises(MalformedEventError, match="at most 4"):
        parse(Event("t", "1", inline_event(b"12345", None, 1)), max_inline=4)
    with pytest.raises(MalformedEventError, match="end event"):
        parse(Event("t", "1", {**end_event(), b"m": b"{}"}))
    with pytest.raises(MalformedEventError, match="evict flag"):
        parse(Event("t", "1", {**stored_event("s", "k", None, 0, False), b"x": b"1"}))


def test_bad_topics_and_metadata() -> None:
    for topic in ("", ".hidden", "a b", "x" * 201, 3):
        with pytest.raises(ConfigurationError):
            check_topic(topic)
    with pytest.raises(ConfigurationError, match="str keys"):
        encode_metadata({1: 2}, "t")  # type: ignore[dict-item]
    with pytest.raises(ConfigurationError, match="at most"):
        encode_metadata({"a": "x" * 70_000}, "t")
