"""Names shared by the endpoint's HTTP server and its clients."""

from __future__ import annotations

TIMEOUT_HEADER = "X-Proxystore-Timeout"
"""Request header: seconds the client waits, bounding the server's peer wait."""

OWNER_PARAM = "endpoint"
"""Query parameter naming the uuid of the endpoint that owns the object."""

MISSING_KEY = "MissingKey"
"""``error`` of the 404 JSON body for an object its owner does not hold."""

WAIT_SUFFIX = "/wait"
"""Long-poll route: an object's URL with this suffix (`proxystore.endpoint.waiters`)."""

WAIT_PARAM = "wait"
"""Query parameter of the wait route: seconds the client wants to wait."""

MAX_WAIT = 10.0
"""Most seconds the server holds one wait request open."""
