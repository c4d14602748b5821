"""Names shared by the endpoint's HTTP server and its clients."""

from __future__ import annotations

TIMEOUT_HEADER = "X-Proxystore-Timeout"
"""Request header: seconds the client waits, bounding the server's peer wait."""

OWNER_PARAM = "endpoint"
"""Query parameter naming the uuid of the endpoint that owns the object."""

MISSING_KEY = "MissingKey"
"""``error`` of the 404 JSON body for an object its owner does not hold."""
