from __future__ import annotations

import uuid

import pytest

from proxystore.endpoint.keys import (
    MAX_OBJECT_ID_LENGTH,
    validate_endpoint_uuid,
    validate_object_id,
)
from proxystore.exceptions import InvalidKeyError


@pytest.mark.parametrize("object_id", ["a", "abc-DEF_0.9", "x" * MAX_OBJECT_ID_LENGTH])
def test_valid_object_ids_pass(object_id: str) -> None:
    assert validate_object_id(object_id) == object_id


@pytest.mark.parametrize(
    ("object_id", "reason"),
    [
        ("", "1-128 characters"),
        ("x" * (MAX_OBJECT_ID_LENGTH + 1), "1-128 characters"),
        ("../etc/passwd", "may only use"),
        ("a/b", "may only use"),
        ("a b", "may only use"),
        ("..", "may only use"),
        (b"abc", "must be a str"),
        (None, "must be a str"),
    ],
)
def test_bad_object_ids_name_the_problem(object_id: object, reason: str) -> None:
    with pytest.raises(InvalidKeyError, match=reason):
        validate_object_id(object_id)


def test_endpoint_uuid_is_canonicalised() -> None:
    value = uuid.uuid4()
    assert validate_endpoint_uuid(value.hex.upper()) == str(value)


@pytest.mark.parametrize("bad", ["not-a-uuid", "", 42])
def test_bad_endpoint_uuid_is_rejected(bad: object) -> None:
    with pytest.raises(InvalidKeyError, match="uuid"):
        validate_endpoint_uuid(bad)
