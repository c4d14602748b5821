"""Endpoints on two "hosts": network namespaces joined by a veth pair.

Each namespace has only loopback and its own address on the link, like two
machines on one LAN. A signaling server (``wss://``) runs in namespace A, one
endpoint runs in each namespace with DEFAULT settings (API on loopback, fast
path on the address the peer connection uses), and a proxy made by a process
in A resolves in a process in B. Needs root; without root the test skips,
unless ``CI`` is set, where it fails.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from proxystore.endpoint.netns import NamespacePair, TwoSites, start_two_sites
from proxystore.endpoint.testing import describe_endpoint

pytestmark = pytest.mark.timeout(300)

READY = 60.0

# Made in A, resolved in B; both print sha256 and length of what they hold.
_PRODUCE = """
import hashlib, pickle, sys
from proxystore.store import init_store
kind = sys.argv[1]
small = {"answer": 42, "crosses": "hosts"}
obj = small if kind == "dict" else (bytes(range(256)) * (10**9 // 256 + 1))[: 10**9]
store = init_store("endpoint", name="crosshost", endpoints=["site-a", "site-b"])
proxy = store.proxy(obj)
data = obj if isinstance(obj, bytes) else repr(sorted(obj.items())).encode()
sys.stdout.buffer.write(pickle.dumps(proxy))
sys.stderr.write(hashlib.sha256(data).hexdigest() + " " + str(len(data)) + "\\n")
"""
_CONSUME = """
import hashlib, pickle, sys
from proxystore.store import init_store
init_store("endpoint", name="crosshost", endpoints=["site-a", "site-b"])
proxy = pickle.loads(sys.stdin.buffer.read())
obj = proxy
data = bytes(obj) if isinstance(obj, bytes) else repr(sorted(obj.items())).encode()
print(hashlib.sha256(data).hexdigest(), len(data))
"""


def _require_root() -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        pytest.fail("the cross-host test needs root (network namespaces) in CI")
    pytest.skip("network namespaces need root")


@pytest.fixture(scope="module")
def crosshost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoSites]:
    _require_root()
    root = tmp_path_factory.mktemp("crosshost")
    pid = os.getpid()
    pair = NamespacePair(str(pid % 100000), 20 + pid % 200)
    try:
        yield start_two_sites(pair, root, ready=READY)
    finally:
        pair.close()


def _cross(hosts: TwoSites, kind: str) -> None:
    made = hosts.python("site-a", _PRODUCE, kind)
    expected = made.stderr.decode().strip().splitlines()[-1]
    got = hosts.python("site-b", _CONSUME, stdin=made.stdout)
    assert got.stdout.decode().strip() == expected


def test_small_object_crosses_hosts(crosshost: TwoSites) -> None:
    _cross(crosshost, "dict")
    # One INFO line per object operation, naming the owner it went to.
    owner = crosshost.sites["site-a"].uuid
    log = crosshost.root / "site-b" / "endpoints" / "site-b" / "endpoint.log"
    assert re.search(
        rf" GET \S+ 200 \d+ bytes [\d.]+ ms owner={owner}", log.read_text()
    )


def test_requests_cross_over_the_request_channel(crosshost: TwoSites) -> None:
    a, b = crosshost.sites["site-a"], crosshost.sites["site-b"]

    def stats() -> tuple[dict[str, Any], dict[str, Any]]:
        at_a = crosshost.pair.a.run(lambda: describe_endpoint(a.url, a.api_token))
        at_b = crosshost.pair.b.run(lambda: describe_endpoint(b.url, b.api_token))
        return at_a["peers"][b.uuid], at_b["peers"][a.uuid]

    # The first request to a peer goes over the data channel while B dials A.
    for _ in range(5):
        _cross(crosshost, "dict")
        of_a, of_b = stats()
        if of_b["requests_over_channel"]:
            break
    assert of_b["request_channel"]
    assert of_a["request_channel"]
    assert of_a["served_over_channel"] == of_b["requests_over_channel"] >= 1
    log = crosshost.root / "site-b" / "endpoints" / "site-b" / "endpoint.log"
    assert f"request channel to {a.uuid} open (dialed)" in log.read_text()


def test_only_configured_addresses_listen(crosshost: TwoSites) -> None:
    a, b = crosshost.pair.a, crosshost.pair.b
    # Peering has happened (the fast path opens per address on connection).
    _cross(crosshost, "dict")
    for ns, site in ((a, "site-a"), (b, "site-b")):
        api = crosshost.sites[site].config
        listening = ns.listening()
        assert f"127.0.0.1:{api.port}" in listening
        allowed = {"127.0.0.1", ns.address}
        for address in listening:
            host = address.rsplit(":", 1)[0]
            assert host in allowed, f"{ns.name} listens on {address}: {listening}"
        # The endpoint's fast path listens on the link address it peers over.
        assert any(x.startswith(f"{ns.address}:") for x in listening), listening
    assert f"{a.address}:{crosshost.signaling_port}" in a.listening()


@pytest.mark.heavy
def test_one_gigabyte_crosses_hosts_with_default_settings(
    crosshost: TwoSites,
) -> None:
    _cross(crosshost, "gigabyte")
    log = crosshost.root / "site-a" / "endpoints" / "site-a" / "endpoint.log"
    # The body took the fast path on the link address, not loopback.
    assert f"fast path listening on {crosshost.pair.a.address}:" in log.read_text()
