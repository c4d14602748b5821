"""Validation of object ids and endpoint uuids as they appear on the wire."""

from __future__ import annotations

import re
import uuid
from typing import NamedTuple

from proxystore.exceptions import InvalidKeyError

MAX_OBJECT_ID_LENGTH = 128
_OBJECT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")


def validate_object_id(object_id: object) -> str:
    """Return ``object_id`` if it is safe to use in URLs and file names.

    Raises:
        InvalidKeyError: If it is not a string of 1 to 128 characters from
            ``A-Z a-z 0-9 _ . -``, or is ``.`` or ``..``.
    """
    if not isinstance(object_id, str):
        raise InvalidKeyError(object_id, "object id must be a str")
    if not 0 < len(object_id) <= MAX_OBJECT_ID_LENGTH:
        raise InvalidKeyError(
            object_id, f"object id must be 1-{MAX_OBJECT_ID_LENGTH} characters long"
        )
    if not _OBJECT_ID_PATTERN.fullmatch(object_id) or object_id in {".", ".."}:
        raise InvalidKeyError(
            object_id, "object id may only use characters A-Z a-z 0-9 _ . -"
        )
    return object_id


def validate_endpoint_uuid(endpoint_uuid: object) -> str:
    """Return ``endpoint_uuid`` in canonical form if it is a valid UUID string.

    Raises:
        InvalidKeyError: If it is not a string holding a UUID.
    """
    if not isinstance(endpoint_uuid, str):
        raise InvalidKeyError(endpoint_uuid, "endpoint uuid must be a str")
    try:
        return str(uuid.UUID(endpoint_uuid))
    except ValueError as err:
        raise InvalidKeyError(endpoint_uuid, "endpoint uuid is not a UUID") from err


class EndpointKey(NamedTuple):
    """Key of an object in an endpoint store.

    One class for both store faces, so a key made by either resolves in the
    other.

    Attributes:
        object_id: Id of the object at its endpoint.
        endpoint_id: Uuid of the endpoint that owns (stores) the object.
    """

    object_id: str
    endpoint_id: str


def validate_endpoint_key(key: object) -> EndpointKey:
    """Return ``key`` as an `EndpointKey` if it is a well-formed one.

    Accepts any 2-tuple of strings (a key that went through a format that
    does not keep the class) and returns it as an `EndpointKey`.

    Raises:
        InvalidKeyError: If it is not a pair of a valid object id and a
            valid endpoint uuid.
    """
    if not isinstance(key, tuple) or len(key) != 2:
        raise InvalidKeyError(key, "endpoint keys are (object_id, endpoint_id) pairs")
    object_id, endpoint_id = key
    validate_object_id(object_id)
    if validate_endpoint_uuid(endpoint_id) != endpoint_id:
        raise InvalidKeyError(key, "endpoint_id must be a canonical lower-case UUID")
    return key if isinstance(key, EndpointKey) else EndpointKey(object_id, endpoint_id)
