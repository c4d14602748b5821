# Generated from proxystore/aio/endpoint.py by scripts/generate_sync.py: DO NOT EDIT.
"""`EndpointStore`: objects kept by proxystore endpoints, reachable from any site.

The store talks HTTP to the endpoint running on this host. Objects it sets
are owned by that endpoint; objects owned by another endpoint are fetched by
the local endpoint from its peer, so a proxy made at one site resolves at
another with no shared file system.

Every request carries the endpoint's API token, read from the ``api-token``
file in the endpoint's configuration directory (never from the store's
configuration, so it is never in a proxy).

Large objects from an endpoint on this host come as shared-memory files
rather than in the HTTP response (`proxystore.endpoint.handoff`).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx

from proxystore._clients import ClientsPerLoop, Lease
from proxystore._compat import current_loop, sleep, to_thread
from proxystore._shared import new_object_id
from proxystore._validate import check_seconds
from proxystore.store.base import Store
from proxystore.endpoint.config import (
    endpoint_dir,
    endpoints_dir,
    find_config,
    list_configs,
)
from proxystore.endpoint.credentials import (
    authorization_header,
    read_api_token,
    token_path,
)
from proxystore.endpoint.errors import error_from_json
from proxystore.endpoint.handoff import (
    HANDOFF_HEADER,
    LENGTH_HEADER,
    take_handoff,
    verify_handoff,
)
from proxystore.endpoint.keys import EndpointKey, validate_endpoint_key
from proxystore.endpoint.protocol import (
    MAX_WAIT,
    MISSING_KEY,
    OWNER_PARAM,
    TIMEOUT_HEADER,
    WAIT_PARAM,
    WAIT_SUFFIX,
)
from proxystore.endpoint.streams import PayloadStream
from proxystore.exceptions import (
    AuthenticationError,
    ConfigurationError,
    EndpointStoreError,
    LimitExceededError,
    StoreConnectionError,
    StoreOperationError,
    StoreTimeoutError,
)
from proxystore.frame import Split, Stored, head_size
from proxystore.serialize import Payload
from proxystore.signing import SigningKeysOption

_IS_SYNC = True

__all__ = ["EndpointStore", "EndpointStoreError"]

# The endpoint gives up on a peer a little before we give up on the endpoint,
# so its precise peer error reaches us instead of our own read timeout.
_PEER_TIMEOUT_SHARE = 0.8
# Pauses between retries of a request refused for the endpoint's max_requests.
_FIRST_RETRY_DELAY = 0.005
_MAX_RETRY_DELAY = 0.25


class EndpointStore(Store[EndpointKey]):
    """A store backed by proxystore endpoints.

    Args:
        name: The store's name.
        endpoints: Names or uuids of endpoints this store may use. A process
            uses the first one configured on its host (under
            ``$PROXYSTORE_HOME``) that answers. Give every site's endpoint so
            proxies resolve at each site.
        url: URL of the endpoint to use instead of looking it up, e.g.
            ``http://127.0.0.1:8765``. Proxies carry it, so give it only
            when every consumer can use that endpoint. Its API token is
            read from the endpoint configured on this host with that URL.
        token_file: Path of the endpoint's ``api-token`` file, for a `url`
            whose endpoint is not configured under this process's
            ``$PROXYSTORE_HOME``. Only the path is kept (and carried by
            proxies), never the token.
        timeout: Seconds to wait for each connection, read and write,
            including the endpoint's wait on a peer. A request refused
            because the endpoint serves its ``max_requests`` is retried
            within this time.
        proxystore_dir: Look endpoint configurations up in this
            ``$PROXYSTORE_HOME`` instead of the environment's (ProxyStore
            0.4's option; ``~`` and variables are expanded).
        cache_size: How many deserialized objects to keep.
        metrics: Record per-operation metrics.
        stats: Also record them per key (see `Store.stats`).
        signing_keys: Sign and verify payloads with these keys (see
            `proxystore.store.base.Store`); None reads them from the environment.
        sign_full_data: Sign every byte of a payload, not only the parts
            that can run code.

    Raises:
        ConfigurationError: If neither `endpoints` nor `url` is given.

    Example:
        ```python
        store = EndpointStore("ep", endpoints=["site-a", "site-b"])
        key = store.set(b"data")  # owned by this host's endpoint
        ```
    """

    _IDENTITY = ("endpoints",)
    _USER_KEY_REFUSAL = (
        "a key names the endpoint that owns the object, known only at the write"
    )

    def __init__(
        self,
        name: str,
        endpoints: Sequence[str | uuid.UUID] | str | uuid.UUID = (),
        proxystore_dir: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        token_file: str | None = None,
        timeout: float = 30.0,
        cache_size: int = 16,
        metrics: bool = False,
        stats: bool = False,
        signing_keys: SigningKeysOption = None,
        sign_full_data: bool = False,
    ) -> None:
        super().__init__(name, **self._base_options(locals()))
        if isinstance(endpoints, (str, uuid.UUID)):
            endpoints = [endpoints]
        if not isinstance(endpoints, Iterable):
            raise ConfigurationError(
                f"endpoints of EndpointStore {name!r} must be names or uuids "
                f"(str or uuid.UUID), got {endpoints!r}"
            )
        if url is not None and not isinstance(url, str):
            raise ConfigurationError(
                f"url of EndpointStore {name!r} must be a str, got {url!r}"
            )
        self.endpoints = [_endpoint_name(endpoint) for endpoint in endpoints]
        self.proxystore_dir = (
            None
            if proxystore_dir is None
            else os.path.expandvars(os.path.expanduser(os.fspath(proxystore_dir)))
        )
        if not self.endpoints and url is None:
            raise ConfigurationError(
                f"EndpointStore {name!r} needs endpoints (names or uuids) or a url"
            )
        check_seconds(timeout, "timeout", f"EndpointStore {name!r}")
        self.url = url.rstrip("/") if url is not None else None
        self.token_file = str(token_file) if token_file is not None else None
        self.timeout = timeout
        self._clients: ClientsPerLoop[httpx.Client] = ClientsPerLoop(
            self._new_http_client, _close_http_client, name
        )
        self._endpoint_url = ""
        self._endpoint_uuid = ""
        self._api_token = ""
        self._token_source = ""
        self._max_object_size: int | None = None
        self._handoff: Path | None = None

    def config(self) -> dict[str, Any]:
        """Return the keyword arguments that rebuild this store anywhere."""
        return {
            **super().config(),
            "endpoints": list(self.endpoints),
            "proxystore_dir": self.proxystore_dir,
            "url": self.url,
            "token_file": self.token_file,
            "timeout": self.timeout,
        }

    def _validate_key(self, key: Any) -> EndpointKey:
        return validate_endpoint_key(key)

    @property
    def endpoint_uuid(self) -> str | None:
        """Uuid of the endpoint this store talks to, once connected."""
        return self._endpoint_uuid or None

    def _connected(self, client: httpx.Client) -> None:
        """Find the endpoint (once) with a leased `client` (see `_lease`)."""
        if not self._endpoint_uuid:
            # Concurrent first calls may both look the endpoint up; they find
            # the same one, so no lock is held across the network wait.
            url, description, token = self._find_endpoint(client)
            size = description.get("max_object_size")
            self._max_object_size = size if isinstance(size, int) else None
            self._api_token, self._token_source = token
            self._handoff = verify_handoff(description)
            self._endpoint_url, self._endpoint_uuid = url, description["uuid"]

    def _lease(self) -> Lease[httpx.Client]:
        """This loop's (or the sync face's) HTTP client, held for one request."""
        return self._clients.lease(current_loop())

    def _new_http_client(self) -> httpx.Client:
        return httpx.Client(
            timeout=self.timeout, trust_env=False, follow_redirects=False
        )

    def _find_endpoint(
        self, client: httpx.Client
    ) -> tuple[str, dict[str, Any], tuple[str, str]]:
        if self.url is not None:
            token = self._token_for_url(self.url)
            return self.url, self._describe(client, self.url, None, token), token
        failures = []
        for wanted in self.endpoints:
            try:
                config = find_config(wanted, self.proxystore_dir)
            except ConfigurationError:
                continue
            home = self.proxystore_dir
            token = _read_token(token_path(endpoint_dir(config.name, home)))
            try:
                description = self._describe(
                    client, config.url, config.uuid, token
                )
            except (StoreConnectionError, StoreOperationError) as err:
                failures.append(str(err))
                continue
            return config.url, description, token
        if not failures:
            where = endpoints_dir(self.proxystore_dir)
            raise ConfigurationError(
                f"none of the endpoints {self.endpoints} of store {self.name!r} "
                f"is configured on this host (under {where})"
            )
        raise StoreConnectionError(
            ", ".join(f"endpoint {wanted}" for wanted in self.endpoints),
            "; ".join(failures),
        )

    def _token_for_url(self, url: str) -> tuple[str, str]:
        if self.token_file is not None:
            return _read_token(Path(self.token_file))
        home = self.proxystore_dir
        for config in list_configs(home):
            if config.url == url:
                return _read_token(token_path(endpoint_dir(config.name, home)))
        raise ConfigurationError(
            f"no endpoint configured under {endpoints_dir(home)} listens at {url}, so "
            f"store {self.name!r} has no API token for it; pass token_file= "
            "(the endpoint's api-token file) or name the endpoint in endpoints="
        )

    def _describe(
        self,
        client: httpx.Client,
        url: str,
        expected: str | None,
        token: tuple[str, str],
    ) -> dict[str, Any]:
        response = self._send(
            client, "GET", f"{url}/endpoint", "describe", token=token[0]
        )
        self._raise_for_error(response, url, token[1])
        try:
            description = response.json()
            uuid = description["uuid"]
            if not isinstance(uuid, str):
                raise TypeError(uuid)
        except (ValueError, KeyError, TypeError) as err:
            raise StoreOperationError(
                f"{url} answered GET /endpoint with something that is not an "
                f"endpoint description: {response.text[:200]!r}"
            ) from err
        if expected is not None and uuid != expected:
            raise StoreConnectionError(
                _host_port(url),
                f"it is endpoint {uuid}, not the configured {expected}",
            )
        return dict(description)

    def _send(
        self,
        client: httpx.Client,
        method: str,
        url: str,
        operation: str,
        params: dict[str, str] | None = None,
        stream: PayloadStream | None = None,
        token: str | None = None,
        handoff: bool = False,
    ) -> httpx.Response:
        headers = {
            TIMEOUT_HEADER: f"{self.timeout * _PEER_TIMEOUT_SHARE:g}",
            "Authorization": authorization_header(token or self._api_token),
        }
        if handoff:
            headers[HANDOFF_HEADER] = "1"
        if stream is not None:
            headers["Content-Length"] = str(stream.nbytes)
        deadline = time.monotonic() + self.timeout
        delay = _FIRST_RETRY_DELAY
        # While the endpoint moves an object from a peer no byte reaches us,
        # however long it takes; the endpoint bounds that wait by progress
        # (nothing moved for the timeout it was sent) and always answers.
        owner = (params or {}).get(OWNER_PARAM)
        timeouts = (
            httpx.Timeout(self.timeout, read=None)
            if owner is not None and owner != self._endpoint_uuid
            else httpx.USE_CLIENT_DEFAULT
        )
        while True:
            request = client.build_request(
                method, url, params=params, headers=headers, timeout=timeouts
            )
            if stream is not None:
                request.stream = stream
            response = self._send_once(client, request, url, operation)
            if response.status_code != 429 or time.monotonic() + delay > deadline:
                return response
            sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_DELAY)

    def _send_once(
        self,
        client: httpx.Client,
        request: httpx.Request,
        url: str,
        operation: str,
    ) -> httpx.Response:
        try:
            return client.send(request)
        except httpx.TimeoutException as err:
            raise StoreTimeoutError(
                f"endpoint at {_host_port(url)}", self.timeout, operation
            ) from err
        except httpx.HTTPError as err:
            raise StoreConnectionError(
                f"endpoint at {_host_port(url)}", f"{operation}: {err!r}"
            ) from err

    def _raise_for_error(
        self, response: httpx.Response, url: str, token_source: str = ""
    ) -> None:
        if response.is_success:
            return
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code in (401, 403):
            message = data.get("message") if isinstance(data, dict) else None
            raise AuthenticationError(
                f"endpoint at {_host_port(url)} refused the API token from "
                f"{token_source or self._token_source}: "
                f"{message or response.reason_phrase}"
            )
        if isinstance(data, dict) and "error" in data:
            raise error_from_json(data)
        raise StoreOperationError(
            f"endpoint at {_host_port(url)} answered HTTP {response.status_code}: "
            f"{response.text[:200]!r}"
        )

    def _object_url(self, key: EndpointKey) -> str:
        return f"{self._endpoint_url}/objects/{key.object_id}"

    def _set_bytes(
        self, payload: Payload, key: EndpointKey | None = None
    ) -> EndpointKey:
        with self._lease() as client:
            self._connected(client)
            if key is None:
                key = EndpointKey(new_object_id(), self._endpoint_uuid)
            stream = PayloadStream(payload)
            if (
                self._max_object_size is not None
                and stream.nbytes > self._max_object_size
            ):
                raise LimitExceededError(
                    "max_object_size",
                    f"object of {stream.nbytes} bytes is larger than the "
                    f"max_object_size of {self._max_object_size} bytes of the endpoint "
                    f"at {_host_port(self._endpoint_url)}",
                )
            response = self._send(
                client,
                "PUT",
                self._object_url(key),
                "set",
                params={OWNER_PARAM: key.endpoint_id},
                stream=stream,
            )
            self._raise_for_error(response, self._endpoint_url)
            return key

    def _future_key(self) -> EndpointKey:
        # Minted here as for any write (users never choose endpoint keys);
        # the value goes to this endpoint, which wakes its waiters.
        with self._lease() as client:
            self._connected(client)
        return EndpointKey(new_object_id(), self._endpoint_uuid)

    def _exists_within(self, key: EndpointKey, timeout: float | None) -> bool:
        """Long-poll the endpoint's wait route (`proxystore.endpoint.waiters`).

        Used for objects the endpoint this store talks to owns; objects owned
        by another endpoint are polled with backoff (waits are not forwarded
        to peers), as are all objects while the endpoint refuses waits over
        its cap (429) or is too old to have the route (404).
        """
        with self._lease() as client:
            self._connected(client)
        if key.endpoint_id != self._endpoint_uuid:
            return super()._exists_within(key, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = _FIRST_RETRY_DELAY
        # Each request waits less than our read timeout, so a slow answer
        # is a real failure; the server caps it at its MAX_WAIT too.
        longest = min(MAX_WAIT, self.timeout * _PEER_TIMEOUT_SHARE)
        while True:
            wait = longest
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._exists(key)
                wait = min(wait, remaining)
            # One lease per wait: a store closed meanwhile ends the loop.
            with self._lease() as client:
                request = client.build_request(
                    "GET",
                    self._object_url(key) + WAIT_SUFFIX,
                    params={OWNER_PARAM: key.endpoint_id, WAIT_PARAM: f"{wait:.3f}"},
                    headers={"Authorization": authorization_header(self._api_token)},
                    timeout=httpx.Timeout(self.timeout, read=wait + self.timeout),
                )
                response = self._send_once(
                    client, request, self._endpoint_url, "waiting for a future"
                )
            if response.status_code == 404 and not _is_missing(response):
                # An endpoint without the wait route: poll (the base way).
                rest = None if deadline is None else deadline - time.monotonic()
                return super()._exists_within(
                    key, None if rest is None else max(rest, 0.0)
                )
            if response.status_code == 429:
                # The endpoint holds its cap of waiters: poll until one ends.
                if self._exists(key):
                    return True
                if deadline is not None:
                    delay = min(delay, max(deadline - time.monotonic(), 0.0))
                sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_DELAY)
                continue
            self._raise_for_error(response, self._endpoint_url)
            if bool(response.json().get("exists")):
                return True

    def _get_bytes(self, key: EndpointKey) -> Stored | None:
        with self._lease() as client:
            self._connected(client)
            response = self._send(
                client,
                "GET",
                self._object_url(key),
                "get",
                params={OWNER_PARAM: key.endpoint_id},
                handoff=self._handoff is not None,
            )
            if response.status_code == 404 and _is_missing(response):
                return None
            self._raise_for_error(response, self._endpoint_url)
            name = response.headers.get(HANDOFF_HEADER)
            if name is not None and self._handoff is not None:
                try:
                    length = int(response.headers.get(LENGTH_HEADER, ""))
                except ValueError:
                    raise StoreOperationError(
                        f"endpoint at {_host_port(self._endpoint_url)} handed off "
                        "a body without its length"
                    ) from None
                return self._take_handoff(client, name, length)
            return response.content

    def _take_handoff(
        self, client: httpx.Client, name: str, length: int
    ) -> Stored:
        assert self._handoff is not None
        try:
            return to_thread(_taken, self._handoff, name, length)
        except StoreOperationError:
            # A restarted endpoint hands off from a new directory: look it up.
            description = self._describe(
                client,
                self._endpoint_url,
                self._endpoint_uuid,
                (self._api_token, self._token_source),
            )
            moved = verify_handoff(description)
            if moved is None or moved == self._handoff:
                raise
            self._handoff = moved
            return to_thread(_taken, moved, name, length)

    def _exists(self, key: EndpointKey) -> bool:
        with self._lease() as client:
            self._connected(client)
            response = self._send(
                client,
                "GET",
                f"{self._object_url(key)}/exists",
                "exists",
                params={OWNER_PARAM: key.endpoint_id},
            )
            self._raise_for_error(response, self._endpoint_url)
            return bool(response.json().get("exists"))

    def _evict(self, key: EndpointKey) -> None:
        with self._lease() as client:
            self._connected(client)
            response = self._send(
                client,
                "DELETE",
                self._object_url(key),
                "evict",
                params={OWNER_PARAM: key.endpoint_id},
            )
            self._raise_for_error(response, self._endpoint_url)

    def _close(self) -> None:
        self._clients.close_all(_close_http_client)


def _endpoint_name(endpoint: object) -> str:
    """An endpoint's name or uuid as a str (0.4 also took `uuid.UUID` objects)."""
    if isinstance(endpoint, uuid.UUID):
        return str(endpoint)
    if not isinstance(endpoint, str) or not endpoint:
        raise ConfigurationError(
            f"endpoints are names or uuids (str or uuid.UUID), got {endpoint!r}"
        )
    return endpoint


def _close_http_client(client: httpx.Client) -> None:
    client.close()


def _read_token(path: Path) -> tuple[str, str]:
    """Return the token in ``path`` and the path, for error messages."""
    return read_api_token(path), str(path)


def _host_port(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.host}:{parsed.port}"


def _is_missing(response: httpx.Response) -> bool:
    try:
        data = response.json()
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("error") == MISSING_KEY


def _taken(directory: Path, name: str, length: int) -> Stored:
    """A handed-off body; a large one-part frame as a `Split` (no copy after)."""
    body = take_handoff(directory, name, length, head_size)
    return Split(*body) if isinstance(body, tuple) else body
