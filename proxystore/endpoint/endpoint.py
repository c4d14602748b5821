"""The endpoint: local object storage plus requests to peers for their objects.

Every object belongs to one endpoint, named by the endpoint's uuid. An
operation on an object owned by this endpoint touches the local storage; one
on an object owned by another endpoint becomes a request to that peer over
the peer manager (JSON header + raw bytes body), which the peer answers from
its own storage with :meth:`Endpoint.handle_peer_request`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from proxystore.endpoint.errors import error_from_json, error_to_json
from proxystore.endpoint.keys import validate_endpoint_uuid, validate_object_id
from proxystore.endpoint.limits import RateLimitedLog
from proxystore.endpoint.storage import Data, ObjectStorage
from proxystore.exceptions import (
    LimitExceededError,
    PeerConnectionError,
    ProxyStoreError,
    StoreOperationError,
)

if TYPE_CHECKING:
    from proxystore.p2p.fastpath import Allocate
    from proxystore.p2p.messages import PeerMessage

logger = logging.getLogger(__name__)

OPERATIONS = ("get", "set", "exists", "evict")


class PeerRequester(Protocol):
    """The part of `proxystore.p2p.manager.PeerManager` an endpoint uses."""

    async def request(
        self,
        peer_uuid: str,
        message: PeerMessage,
        timeout: float | None = ...,
        deadline: float | None = ...,
        allocate: Allocate | None = ...,
    ) -> PeerMessage:
        """Send ``message`` to ``peer_uuid`` and return its answer."""
        ...


class Endpoint:
    """Objects stored here, and the way to reach objects stored at peers.

    Args:
        uuid: This endpoint's uuid; objects owned by it are served locally.
        name: This endpoint's name, for messages.
        storage: Where this endpoint's own objects live.
        peers: How to reach other endpoints, or ``None`` for a standalone
            endpoint (requests for other owners then fail with
            `PeerConnectionError`).
        peer_timeout: Default seconds to wait to connect to a peer, and the
            longest a transfer with it may go without a byte moving.
        peer_deadline: Optional total seconds for one request to a peer
            (``None``: a transfer that keeps moving is never cut off).
        max_object_size: Largest object a peer may store here (``None``: no
            limit). Writes from local clients are checked by the HTTP server
            before their body is read.
    """

    def __init__(
        self,
        uuid: str,
        name: str,
        storage: ObjectStorage,
        peers: PeerRequester | None = None,
        peer_timeout: float = 30.0,
        max_object_size: int | None = None,
        peer_deadline: float | None = None,
    ) -> None:
        self.uuid = validate_endpoint_uuid(uuid)
        self.name = name
        self.storage = storage
        self.peers = peers
        self.peer_timeout = peer_timeout
        self.peer_deadline = peer_deadline
        self.max_object_size = max_object_size
        self._refusals = RateLimitedLog(logger)

    def is_local(self, owner: str | None) -> bool:
        """Return whether objects owned by ``owner`` live here.

        Raises:
            InvalidKeyError: If ``owner`` is not a UUID.
        """
        return owner is None or validate_endpoint_uuid(owner) == self.uuid

    async def get(
        self,
        object_id: str,
        owner: str | None = None,
        timeout: float | None = None,
        allocate: Allocate | None = None,
    ) -> Data | None:
        """Return the object, or ``None`` if its owner does not have it.

        ``allocate`` makes the buffer an object fetched from a peer over the
        fast path is received into (default: a new bytearray).
        """
        validate_object_id(object_id)
        if self.is_local(owner):
            return await self.storage.get(object_id)
        assert owner is not None
        header, body = await self._request_peer(
            owner, "get", object_id, timeout, allocate=allocate
        )
        return body if header.get("found") else None

    async def set(
        self,
        object_id: str,
        data: Data,
        owner: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Store ``data`` under ``object_id`` at its owner."""
        validate_object_id(object_id)
        if self.is_local(owner):
            await self.storage.set(object_id, data)
            return
        assert owner is not None
        await self._request_peer(owner, "set", object_id, timeout, data)

    async def exists(
        self, object_id: str, owner: str | None = None, timeout: float | None = None
    ) -> bool:
        """Return whether the owner holds an object under ``object_id``."""
        validate_object_id(object_id)
        if self.is_local(owner):
            return await self.storage.exists(object_id)
        assert owner is not None
        header, _ = await self._request_peer(owner, "exists", object_id, timeout)
        return bool(header.get("exists"))

    async def evict(
        self, object_id: str, owner: str | None = None, timeout: float | None = None
    ) -> None:
        """Remove the object from its owner; a missing object is no error."""
        validate_object_id(object_id)
        if self.is_local(owner):
            await self.storage.evict(object_id)
            return
        assert owner is not None
        await self._request_peer(owner, "evict", object_id, timeout)

    async def handle_peer_request(
        self, peer_uuid: str, request: PeerMessage
    ) -> PeerMessage:
        """Answer a peer's request for an object this endpoint owns.

        Peers only ever ask about our own objects, so a request is served
        from local storage and never forwarded (no request loops).
        """
        from proxystore.p2p.messages import PeerMessage

        op = request.header.get("op")
        object_id = request.header.get("key")
        try:
            if op not in OPERATIONS:
                raise StoreOperationError(f"unknown peer operation {op!r}")
            object_id = validate_object_id(object_id)
            if op == "get":
                data = await self.storage.get(object_id)
                if data is None:
                    return PeerMessage({"ok": True, "found": False})
                return PeerMessage({"ok": True, "found": True}, data)
            if op == "set":
                self._check_size(len(request.body), peer_uuid)
                await self.storage.set(object_id, request.body)
                return PeerMessage({"ok": True})
            if op == "exists":
                found = await self.storage.exists(object_id)
                return PeerMessage({"ok": True, "exists": found})
            await self.storage.evict(object_id)
            return PeerMessage({"ok": True})
        except ProxyStoreError as err:
            # Bounded: a peer sending bad or refused requests cannot flood the log.
            self._refusals.warning(
                f"peer-{type(err).__name__}",
                "peer %s: %s %r refused: %s",
                peer_uuid,
                op,
                object_id,
                err,
            )
            return PeerMessage({"ok": False, "error": error_to_json(err)})
        except Exception as err:
            logger.exception("peer %s: %s %r failed", peer_uuid, op, object_id)
            failure = StoreOperationError(
                f"endpoint {self.name!r} failed {op} of {object_id!r}: {err!r}"
            )
            return PeerMessage({"ok": False, "error": error_to_json(failure)})

    def _check_size(self, size: int, peer_uuid: str) -> None:
        limit = self.max_object_size
        if limit is not None and size > limit:
            raise LimitExceededError(
                "max_object_size",
                f"object of {size} bytes from peer {peer_uuid} is larger than "
                f"endpoint {self.name!r}'s max_object_size of {limit} bytes",
            )

    async def _request_peer(
        self,
        owner: str,
        op: str,
        object_id: str,
        timeout: float | None,
        body: Data = b"",
        *,
        allocate: Allocate | None = None,
    ) -> tuple[dict[str, Any], Data]:
        owner = validate_endpoint_uuid(owner)
        if self.peers is None:
            raise PeerConnectionError(
                owner,
                f"endpoint {self.name!r} has no signaling server configured, "
                "so it cannot reach other endpoints",
            )
        from proxystore.p2p.messages import PeerMessage

        wait = self.peer_timeout if timeout is None else min(timeout, self.peer_timeout)
        message = PeerMessage({"op": op, "key": object_id}, body)
        try:
            response = await self.peers.request(
                owner,
                message,
                timeout=wait,
                deadline=self.peer_deadline,
                allocate=allocate,
            )
        except ProxyStoreError:
            raise
        except Exception as err:
            raise PeerConnectionError(owner, f"{op} {object_id!r}: {err!r}") from err
        header = response.header
        if not header.get("ok"):
            error = header.get("error")
            raise error_from_json(error if isinstance(error, dict) else {})
        return header, response.body
