"""Building a configured endpoint's peer manager from its identity and allowlist."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxystore.endpoint.config import EndpointConfig, endpoint_dir
from proxystore.endpoint.identity import IDENTITY_FILE, Identity, check_identity
from proxystore.endpoint.peers import PEERS_FILE, PeerAllowlist

if TYPE_CHECKING:
    from proxystore.p2p.manager import PeerManager
    from proxystore.p2p.messages import Handler


def endpoint_identity(config: EndpointConfig) -> Identity | None:
    """Return the identity of a configured endpoint, checked against its UUID.

    An endpoint that peers must have one; a standalone endpoint without an
    ``identity.pem`` has none.

    Raises:
        ConfigurationError: If the identity is missing (and the endpoint
            peers), unreadable, too open, or proves another UUID than
            ``config.uuid``.
    """
    directory = endpoint_dir(config.name)
    if config.signaling_server is None and not (directory / IDENTITY_FILE).exists():
        return None
    return check_identity(directory, config.uuid)


def peer_manager(config: EndpointConfig, handler: Handler) -> PeerManager:
    """Return the (unstarted) peer manager of a configured endpoint.

    Raises:
        ConfigurationError: If the endpoint has no signaling server or its
            identity does not check out (`endpoint_identity`).
    """
    from proxystore.exceptions import ConfigurationError
    from proxystore.p2p.manager import PeerManager

    identity = endpoint_identity(config)
    if identity is None or config.signaling_server is None:
        raise ConfigurationError(f"endpoint {config.name!r} does not peer")
    return PeerManager(
        identity,
        config.name,
        config.signaling_server,
        config.secret or "",
        handler,
        allow=PeerAllowlist(endpoint_dir(config.name) / PEERS_FILE),
        timeout=config.peer_timeout,
        fast_path=config.fast_path,
        fast_path_host=config.fast_path_host,
        fast_path_port=config.fast_path_port,
        fast_path_advertised_host=config.fast_path_advertise,
        signaling_ca_file=config.signaling_ca_file,
        max_body=config.max_object_size,
    )
