"""The endpoint's API authentication and resource limits, against real processes.

A signaling server and two peering endpoints (each in its own
PROXYSTORE_HOME, as if on its own host) are started once for the module
through the CLIs; tests that need other settings configure their own.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxystore.aio.endpoint import EndpointStore
from proxystore.endpoint.credentials import create_api_token, read_api_token
from proxystore.endpoint.keys import EndpointKey
from proxystore.endpoint.limits import physical_memory
from proxystore.endpoint.testing import (
    EndpointProcess,
    SignalingServer,
    configure_endpoint,
    run_cli,
    start_signaling_server,
    wait_until_registered,
)
from proxystore.exceptions import (
    AuthenticationError,
    ConfigurationError,
    LimitExceededError,
)
from proxystore.store.endpoint import EndpointStore as SyncEndpointStore

pytestmark = pytest.mark.timeout(90)

SECRET = "security-test-secret"
READY = 30.0
WAIT = 20.0
OWNER_LIMIT = 1024 * 1024


@dataclasses.dataclass
class Pair:
    signaling: SignalingServer
    a: EndpointProcess  # max_object_size OWNER_LIMIT
    b: EndpointProcess


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("secure-sites")
    signaling = start_signaling_server(SECRET, log=root / "signaling.log")
    common = ["--server", signaling.url]
    sites: list[EndpointProcess] = []
    try:
        sites.append(
            configure_endpoint(
                root / "a",
                "sec-a",
                *common,
                "--max-object-size",
                str(OWNER_LIMIT),
                secret=SECRET,
            )
        )
        sites.append(configure_endpoint(root / "b", "sec-b", *common, secret=SECRET))
        sites[0].allow(sites[1].uuid)
        sites[1].allow(sites[0].uuid)
        for site in sites:
            site.start(wait=None)
        for site in sites:
            site.wait_ready(READY)
            wait_until_registered(site, READY)
        yield Pair(signaling, *sites)
    finally:
        for site in sites:
            site.stop()
        signaling.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=WAIT, trust_env=False) as client:
        yield client


def _log(site: EndpointProcess) -> str:
    return (site.home / "endpoints" / site.name / "endpoint.log").read_text()


# --- authentication ---------------------------------------------------------------

ROUTES = [
    ("GET", "/endpoint"),
    ("GET", "/endpoint/status"),
    ("PUT", "/objects/{key}"),
    ("GET", "/objects/{key}"),
    ("GET", "/objects/{key}/exists"),
    ("DELETE", "/objects/{key}"),
]
SECRET_DATA = b"only for token holders"


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("forwarded", [False, True], ids=["direct", "via-peer"])
def test_every_route_refuses_missing_and_wrong_tokens(
    pair: Pair, http: httpx.Client, method: str, path: str, forwarded: bool
) -> None:
    owner = pair.a
    key = f"guarded-{uuid.uuid4().hex}"
    stored = http.put(
        f"{owner.url}/objects/{key}", content=SECRET_DATA, headers=owner.auth_headers
    )
    assert stored.status_code == 204
    # Through the peer, the request goes to b naming a as the object's owner.
    via = pair.b if forwarded else owner
    url = f"{via.url}{path.format(key=key)}"
    params = {"endpoint": owner.uuid}
    attempts = {
        "missing": ({}, 401),
        "not bearer": ({"Authorization": f"Basic {owner.api_token}"}, 401),
        "wrong": ({"Authorization": "Bearer " + "0" * 64}, 403),
        # Tokens are per endpoint: a's token is no good at b, and b's not at a.
        "other endpoint's": (
            (owner if forwarded else pair.b).auth_headers,
            403,
        ),
    }
    for what, (headers, status) in attempts.items():
        content = b"overwritten" if method == "PUT" else None
        response = http.request(
            method, url, params=params, headers=headers, content=content
        )
        assert response.status_code == status, what
        body = response.json()
        assert body["error"] == "AuthenticationError", what
        assert SECRET_DATA not in response.content
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # Nothing the refused requests asked for happened.
    got = http.get(f"{owner.url}/objects/{key}", headers=owner.auth_headers)
    assert got.content == SECRET_DATA


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("POST", "/objects/k")])
def test_unknown_routes_are_refused_before_routing(
    pair: Pair, http: httpx.Client, method: str, path: str
) -> None:
    assert http.request(method, f"{pair.a.url}{path}").status_code == 401
    authorized = http.request(
        method, f"{pair.a.url}{path}", headers=pair.a.auth_headers
    )
    assert authorized.status_code in (404, 405)


def test_store_finds_the_token_without_being_given_it(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXYSTORE_HOME", str(pair.b.home))
    with SyncEndpointStore("by-name", endpoints=["sec-a", "sec-b"]) as store:
        key = store.set(b"hello")
        assert key.endpoint_id == pair.b.uuid
        assert store.get(key) == b"hello"
        token = pair.b.api_token
        assert token not in repr(store.config())
        assert token.encode() not in pickle.dumps(store.proxy(b"carried"))
    with SyncEndpointStore("by-url", url=pair.b.url) as store:
        assert store.get(key) == b"hello"


async def test_async_store_with_the_wrong_token_file_names_it(
    pair: Pair, tmp_path: Path
) -> None:
    wrong = create_api_token(tmp_path)
    store = EndpointStore("wrong", url=pair.a.url, token_file=str(wrong))
    with pytest.raises(AuthenticationError, match=re.escape(str(wrong))):
        await store.aget(EndpointKey("k", pair.a.uuid))
    await store.aclose()
    stranger = EndpointStore("stranger", url=pair.a.url)
    with pytest.raises(ConfigurationError, match="no API token"):
        await stranger.aget(EndpointKey("k", pair.a.uuid))
    await stranger.aclose()


def test_configure_writes_a_private_random_token(tmp_path: Path) -> None:
    site = configure_endpoint(tmp_path, "fresh")
    info = site.token_file.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    text = site.token_file.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}\n", text)
    other = configure_endpoint(tmp_path, "other")
    assert other.api_token != site.api_token
    rotated = run_cli(tmp_path, "rotate-token", "fresh")
    assert rotated.returncode == 0, rotated.stderr
    assert site.api_token != text.strip()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_token_readable_by_others_refuses_start(tmp_path: Path, mode: int) -> None:
    site = configure_endpoint(tmp_path, "leaky")
    os.chmod(site.token_file, mode)
    for extra in ([], ["--detach"]):
        result = run_cli(tmp_path, "start", "leaky", *extra, timeout=30)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert f"has mode {mode:04o}" in lines[0]
        assert "chmod 600" in lines[0]
    assert not (tmp_path / "endpoints" / "leaky" / "endpoint.pid").exists()
    with pytest.raises(ConfigurationError, match="group or others"):
        read_api_token(site.token_file)


def test_missing_token_refuses_start(tmp_path: Path) -> None:
    site = configure_endpoint(tmp_path, "tokenless")
    site.token_file.unlink()
    result = run_cli(tmp_path, "start", "tokenless", timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: no API token file {site.token_file}; create one with "
        "`proxystore-endpoint rotate-token tokenless`"
    ]


def test_refused_requests_log_a_bounded_number_of_lines(
    tmp_path: Path, http: httpx.Client
) -> None:
    site = configure_endpoint(tmp_path, "noisy")
    site.start()
    start = time.monotonic()
    try:
        for _ in range(200):
            assert http.get(f"{site.url}/objects/k").status_code == 401
            wrong = {"Authorization": "Bearer nope"}
            assert http.get(f"{site.url}/endpoint", headers=wrong).status_code == 403
        ok = http.get(f"{site.url}/endpoint", headers=site.auth_headers)
        assert ok.status_code == 200
    finally:
        site.stop()
    periods = int((time.monotonic() - start) // 10) + 1
    refusals = [line for line in _log(site).splitlines() if "WARNING" in line]
    assert all(": refused GET " in line for line in refusals), refusals
    # At most one line per kind (missing, wrong token) per 10 s.
    assert 2 <= len(refusals) <= 2 * periods, refusals


# --- limits --------------------------------------------------------------------------


def test_owner_applies_its_object_size_to_writes_from_peers(
    pair: Pair, http: httpx.Client
) -> None:
    big = os.urandom(20 * OWNER_LIMIT)
    # b accepts 20 MB itself, but the object would belong to a.
    refused = http.put(
        f"{pair.b.url}/objects/too-big",
        params={"endpoint": pair.a.uuid},
        content=big,
        headers=pair.b.auth_headers,
    )
    assert refused.status_code == 413
    body = refused.json()
    assert body["error"] == "LimitExceededError"
    assert body["limit"] == "max_object_size"
    assert f"max_object_size of {OWNER_LIMIT} bytes" in body["message"]
    exists = http.get(
        f"{pair.a.url}/objects/too-big/exists", headers=pair.a.auth_headers
    )
    assert exists.json() == {"exists": False}
    # Both keep serving, through the peer too.
    fits = http.put(
        f"{pair.b.url}/objects/fits",
        params={"endpoint": pair.a.uuid},
        content=big[:OWNER_LIMIT],
        headers=pair.b.auth_headers,
    )
    assert fits.status_code == 204
    got = http.get(f"{pair.a.url}/objects/fits", headers=pair.a.auth_headers)
    assert got.content == big[:OWNER_LIMIT]


def test_memory_and_spill_limits_refuse_with_503(
    pair: Pair, tmp_path: Path, http: httpx.Client
) -> None:
    options = ["--max-memory", "1K", "--max-spill", "4K"]
    peering = ["--server", pair.signaling.url]
    site = configure_endpoint(tmp_path, "tight", *options, *peering, secret=SECRET)
    site.allow(pair.b.uuid)
    pair.b.allow(site.uuid)
    site.start()
    try:
        wait_until_registered(site, READY)
        put = f"{site.url}/objects/{{}}"
        auth = site.auth_headers
        assert http.put(put.format("m"), content=b"m" * 1024, headers=auth).is_success
        assert http.put(put.format("s"), content=b"s" * 3000, headers=auth).is_success
        full = http.put(put.format("x"), content=b"x" * 2000, headers=auth)
        assert full.status_code == 503
        assert full.json()["limit"] == "max_spill"
        assert "max_spill of 4096 bytes (3000 in use)" in full.json()["message"]
        # The owner's limits hold for writes forwarded by a peer too.
        forwarded = http.put(
            f"{pair.b.url}/objects/x",
            params={"endpoint": site.uuid},
            content=b"x" * 2000,
            headers=pair.b.auth_headers,
        )
        assert forwarded.status_code == 503
        assert forwarded.json()["limit"] == "max_spill"
        # Everyone else is still served; evicting frees room.
        assert http.get(put.format("s"), headers=auth).content == b"s" * 3000
        assert http.delete(put.format("s"), headers=auth).is_success
        assert http.put(put.format("x"), content=b"x" * 2000, headers=auth).is_success
    finally:
        site.stop()
    spill = tmp_path / "endpoints" / "tight" / "spill"
    assert spill.is_dir()


def test_default_memory_limit_is_a_quarter_of_physical_memory(
    tmp_path: Path, http: httpx.Client
) -> None:
    site = configure_endpoint(tmp_path, "defaults")
    site.start()
    try:
        assert http.get(f"{site.url}/endpoint", headers=site.auth_headers).is_success
    finally:
        site.stop()
    total = physical_memory()
    assert total is not None
    limits = next(line for line in _log(site).splitlines() if "limits:" in line)
    assert f"max_memory={total // 4} " in limits
    assert "max_spill=None" not in limits
    assert "max_connections=256 max_requests=128" in limits


async def test_store_gets_a_clear_error_for_a_full_endpoint(tmp_path: Path) -> None:
    site = configure_endpoint(
        tmp_path, "full", "--max-memory", "1K", "--max-spill", "0"
    )
    site.start()
    try:
        store = EndpointStore("full", url=site.url, token_file=str(site.token_file))
        try:
            with pytest.raises(LimitExceededError, match="max_spill of 0") as info:
                await store.aset(b"x" * 4096)
            assert info.value.limit == "max_spill"
            key = await store.aset(b"small")
            assert await store.aget(key) == b"small"
        finally:
            await store.aclose()
    finally:
        site.stop()


def _stall(site: EndpointProcess, length: int = 100) -> socket.socket:
    """Start an authenticated PUT whose body never finishes (a busy request)."""
    sock = socket.create_connection((site.config.host, site.config.port), timeout=WAIT)
    sock.sendall(
        b"PUT /objects/stalled HTTP/1.1\r\nHost: x\r\n"
        + f"Content-Length: {length}\r\n".encode()
        + f"Authorization: Bearer {site.api_token}\r\n\r\n".encode()
        + b"x"
    )
    return sock


def test_bodies_in_flight_are_capped(tmp_path: Path, http: httpx.Client) -> None:
    options = ["--max-memory", "1M", "--max-object-size", "1M"]
    site = configure_endpoint(tmp_path, "uploads", *options)
    site.start()
    body = b"u" * 700_000
    url, auth = f"{site.url}/objects/upload", site.auth_headers
    stalled = _stall(site, len(body))
    try:
        deadline = time.monotonic() + WAIT
        while True:  # until the stalled upload holds its share
            response = http.put(url, content=body, headers=auth)
            if response.status_code == 503 or time.monotonic() > deadline:
                break
            http.delete(url, headers=auth)
        assert response.status_code == 503
        assert response.json()["limit"] == "max_memory"
        assert (
            "1048576 bytes this endpoint allows in flight"
            in (response.json()["message"])
        )
        assert http.put(url, content=b"small", headers=auth).status_code == 204
        stalled.close()
        deadline = time.monotonic() + WAIT
        while http.put(url, content=body, headers=auth).status_code == 503:
            assert time.monotonic() < deadline, "the stalled upload was never released"
        assert http.get(url, headers=auth).content == body
    finally:
        stalled.close()
        site.stop()
    # The abandoned upload stored nothing and is no server error.
    assert "Traceback" not in _log(site)
    assert "ERROR" not in _log(site)


def test_request_limit_answers_429_and_store_retries(
    tmp_path: Path, http: httpx.Client
) -> None:
    site = configure_endpoint(
        tmp_path, "busy", "--max-requests", "2", "--max-connections", "8"
    )
    site.start()
    stalled = [_stall(site), _stall(site)]
    try:
        deadline = time.monotonic() + WAIT
        while True:
            response = http.get(f"{site.url}/endpoint", headers=site.auth_headers)
            if response.status_code == 429 or time.monotonic() > deadline:
                break
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"
        assert response.json()["limit"] == "max_requests"
        assert "max_requests of 2" in response.json()["message"]

        store = SyncEndpointStore(
            "patient", url=site.url, token_file=str(site.token_file), timeout=WAIT
        )
        results: list[object] = []

        def set_and_get() -> None:
            try:
                key = store.set(b"after the wait")
                results.append(store.get(key))
            except Exception as err:
                results.append(err)

        with store:
            worker = threading.Thread(target=set_and_get)
            worker.start()
            # Refused at once, a store that did not retry would be done by now.
            worker.join(1.0)
            assert worker.is_alive(), results
            stalled.pop().close()  # a slot frees: the next retry gets in
            worker.join(WAIT)
            assert results == [b"after the wait"]
    finally:
        for sock in stalled:
            sock.close()
        site.stop()


def _open_sockets(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in fds.iterdir() if os.readlink(fd).startswith("socket:"))


def test_idle_sockets_cannot_lock_clients_out(
    tmp_path: Path, http: httpx.Client
) -> None:
    site = configure_endpoint(
        tmp_path, "crowded", "--max-connections", "64", "--max-requests", "8"
    )
    site.start()
    idle: list[socket.socket] = []
    begin = time.monotonic()
    try:
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", site.config.port)))
        idle[-1].sendall(b"GET /endpoint HTTP/1.1\r\nHost: x\r\n")  # never finished
        start = time.monotonic()
        response = http.get(
            f"{site.url}/endpoint", headers=site.auth_headers, timeout=5
        )
        assert response.status_code == 200
        assert time.monotonic() - start < 5
        assert site.pid is not None
        # The endpoint holds at most max_connections of them (plus its own
        # listener and peer sockets); the oldest idle ones were closed.
        assert _open_sockets(site.pid) <= 64 + 8
        idle[0].settimeout(WAIT)
        assert idle[0].recv(1) == b""
    finally:
        for sock in idle:
            sock.close()
        site.stop()
    periods = int((time.monotonic() - begin) // 10) + 1
    warnings = [line for line in _log(site).splitlines() if "WARNING" in line]
    evictions = [line for line in warnings if "closed an idle connection" in line]
    assert evictions == warnings
    # 137 evictions, at most one line per 10 s.
    assert 1 <= len(evictions) <= periods, evictions
