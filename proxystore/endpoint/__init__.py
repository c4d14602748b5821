"""Endpoints: per-site object servers that peer with each other.

An endpoint keeps objects (raw bytes by id) for the processes of its site and
fetches objects owned by other endpoints from those peers, found through a
signaling server, so a proxy made at one site resolves at another.

Example:
    ```
    $ export PROXYSTORE_SIGNALING_SECRET="$(cat ~/.proxystore-signaling-secret)"
    $ signaling-server --port 8700 &
    $ proxystore-endpoint configure site-a --server ws://127.0.0.1:8700
    $ proxystore-endpoint peers add site-a UUID-OF-SITE-B
    $ proxystore-endpoint start site-a --detach
    ```
    ```python
    from proxystore.store import init_store

    store = init_store("endpoint", name="ep", endpoints=["site-a", "site-b"])
    proxy = store.proxy(data)  # resolves at site-b through its own endpoint
    ```

Modules: `config` (configuration on disk), `cli` (``proxystore-endpoint``),
`server` (HTTP API and lifecycle), `endpoint` (routing by owner, answering
peers), `storage` (memory with a spill directory), `limits` (default limits,
the connection cap), `credentials` (the API token), `keys`, `errors` and
`protocol` (what client and server share), `identity` (the endpoint's
Ed25519 key, its UUID, signed messages), `peers` (the ``peers.allow``
allowlist), `peering` (the peer manager of a configured endpoint), `testing`
(real processes for tests and benchmarks). Importing this package loads no
server dependencies.
"""
