"""A proxy is data, not code: crafted proxies build, import and reach nothing.

Every crafted proxy here is unpickled twice: with plain `pickle.loads`, and
with an unpickler that admits only the two globals a store proxy needs
(`Proxy` and the factory's rebuild function) — the receiver that restricts
unpickling and still relied on what the proxy's strings name.
"""

from __future__ import annotations

import io
import os
import pickle
import select
import socket
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import proxystore as ps
from proxystore import aio, policy, registry
from proxystore.aio.local import LocalStore as AsyncLocalStore
from proxystore.exceptions import (
    ConfigurationError,
    InvalidKeyError,
    StoreConnectionError,
    StoreExistsError,
    StoreIdentityError,
    UntrustedProxyError,
)
from proxystore.proxy import Proxy, get_factory, is_resolved
from proxystore.store.factory import StoreFactory
from proxystore.store.file import FileStore
from proxystore.store.local import LocalStore
from proxystore.store.redis import RedisStore
from tests.redis_server import RedisServer

# Refusing a built-in store's configuration may import that store's driver
# (ours): import them all now so "nothing new was imported" is exact.
for _module in ("local", "file", "redis", "globus", "endpoint"):
    __import__(f"proxystore.aio.{_module}")
    __import__(f"proxystore.store.{_module}")

pytestmark = pytest.mark.timeout(60)

KEY = "0123456789abcdef0123456789abcdef"
NO_CONNECTION_WAIT = 1.0
"""Seconds a listening socket waits for a connection that must never come."""


class _RestrictedUnpickler(pickle.Unpickler):
    ADMITTED = {
        ("proxystore.proxy", "Proxy"),
        ("proxystore.store.factory", "_rebuild"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ADMITTED:
            raise pickle.UnpicklingError(f"{module}.{name} is not admitted")
        return super().find_class(module, name)


def _restricted_loads(blob: bytes) -> Any:
    return _RestrictedUnpickler(io.BytesIO(blob)).load()


LOADERS = pytest.mark.parametrize(
    "loads", [pickle.loads, _restricted_loads], ids=["pickle", "restricted"]
)
PREFETCH = pytest.mark.parametrize("prefetch", [False, True], ids=["lazy", "prefetch"])


class _Crafted:
    """A factory that pickles as whatever `_rebuild` call an attacker writes."""

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __call__(self) -> None:
        raise AssertionError("never called")

    def __reduce__(self) -> tuple[Any, ...]:
        from proxystore.store.factory import _rebuild

        return (_rebuild, self.args)


def crafted(
    kind: str,
    kwargs: Any,
    *,
    key: Any = KEY,
    prefetch: bool = False,
    deserializer: Callable[[bytes], Any] | None = None,
    target_type: str | None = None,
) -> bytes:
    """Return the pickle of a proxy whose factory rebuilds from these values."""
    flags = (False, deserializer, prefetch, target_type)
    return pickle.dumps(Proxy(_Crafted(kind, kwargs, key, flags)))


@pytest.fixture(autouse=True)
def _policy_reset() -> Iterator[None]:
    policy.reset()
    yield
    policy.reset()


@pytest.fixture
def marker_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable module `ps_marker_module` that leaves a file when imported."""
    marker = tmp_path / "imported"
    (tmp_path / "ps_marker_module.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Thing:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("ps_marker_module", None)
    return marker


def _factory(proxy: Any) -> StoreFactory[Any]:
    factory = get_factory(proxy)
    assert isinstance(factory, StoreFactory)
    return factory


def _refused(
    loads: Callable[[bytes], Any], blob: bytes, match: str
) -> UntrustedProxyError:
    names = registry.registered_names()
    modules = set(sys.modules)
    with pytest.raises(UntrustedProxyError, match=match) as info:
        loads(blob)
    assert registry.registered_names() == names
    assert set(sys.modules) - modules == set()
    return info.value


# -- the store class: built in or registered, nothing else ------------------


@LOADERS
@PREFETCH
def test_non_store_class_is_neither_built_nor_imported(
    loads: Callable[[bytes], Any], prefetch: bool, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    blob = crafted(
        "tarfile.TarFile",
        {"name": str(victim), "mode": "w"},
        prefetch=prefetch,
    )
    error = _refused(loads, blob, r"tarfile\.TarFile.*neither a built-in")
    assert "nothing was imported" in str(error)
    assert victim.read_bytes() == b"precious"


@LOADERS
@PREFETCH
def test_class_in_a_never_imported_module_is_not_imported(
    loads: Callable[[bytes], Any], prefetch: bool, marker_module: Path
) -> None:
    blob = crafted("ps_marker_module.Thing", {"name": "marker"}, prefetch=prefetch)
    _refused(loads, blob, r"ps_marker_module\.Thing")
    assert "ps_marker_module" not in sys.modules
    assert not marker_module.exists()


class NeverInstantiatedStore(AsyncLocalStore):
    """A store class this process imported but never used nor registered."""


@LOADERS
def test_user_store_class_needs_registration(
    loads: Callable[[bytes], Any], store_name: str
) -> None:
    kind = f"{__name__}.NeverInstantiatedStore"
    blob = crafted(kind, {"name": store_name})
    _refused(loads, blob, "NeverInstantiatedStore")
    aio.register_store_class(NeverInstantiatedStore)
    try:
        proxy = loads(blob)
        assert _factory(proxy).config.kind == kind
    finally:
        registry._store_classes.pop(kind)


def test_register_store_class_refuses_non_stores() -> None:
    with pytest.raises(ConfigurationError, match="not a Store class"):
        ps.store.register_store_class(tarfile.TarFile)  # type: ignore[arg-type]


# -- the arguments: declared, plain data, no secrets -------------------------


@LOADERS
@pytest.mark.parametrize(
    ("kind", "extra", "match"),
    [
        ("proxystore.aio.file.FileStore", {"evil": 1}, "argument 'evil'"),
        ("proxystore.aio.redis.RedisStore", {"url": "redis://x:1"}, "argument 'url'"),
        ("proxystore.aio.redis.RedisStore", {"password": "pw"}, "secret 'password'"),
        ("proxystore.aio.local.LocalStore", {"signing_keys": "k"}, "may only carry"),
        (
            "proxystore.aio.globus.GlobusStore",
            {"endpoints": {}, "hostname": "h"},
            "argument 'hostname'",
        ),
        (
            "proxystore.aio.file.FileStore",
            {"store_dir": [[[[[[[[[["deep"]]]]]]]]]]},
            "not plain data",
        ),
    ],
)
def test_undeclared_secret_or_nested_arguments_are_refused(
    loads: Callable[[bytes], Any],
    store_name: str,
    kind: str,
    extra: dict[str, Any],
    match: str,
) -> None:
    _refused(loads, crafted(kind, {"name": store_name, **extra}), match)


def test_non_plain_argument_is_refused(store_name: str, tmp_path: Path) -> None:
    # Only plain pickle can even carry an object; it is refused all the same.
    blob = crafted(
        "proxystore.aio.file.FileStore",
        {"name": store_name, "store_dir": tmp_path / "not-a-str"},
    )
    _refused(pickle.loads, blob, "store_dir.*not plain data")
    assert not (tmp_path / "not-a-str").exists()


@LOADERS
@pytest.mark.parametrize(
    ("kind", "kwargs", "flags_match"),
    [
        (42, {"name": "x"}, "not a dotted path"),
        ("proxystore.aio.local.LocalStore", {"nom": "x"}, "str name"),
        ("proxystore.aio.local.LocalStore", ["name"], "str name"),
    ],
)
def test_malformed_configuration_is_refused(
    loads: Callable[[bytes], Any], kind: Any, kwargs: Any, flags_match: str
) -> None:
    _refused(loads, crafted(kind, kwargs), flags_match)


@LOADERS
def test_malformed_flags_are_refused(
    loads: Callable[[bytes], Any], store_name: str
) -> None:
    config = ("proxystore.aio.local.LocalStore", {"name": store_name}, KEY)
    blob = pickle.dumps(Proxy(_Crafted(*config, (1, None, False, None))))
    _refused(loads, blob, "non-bool")
    blob = pickle.dumps(Proxy(_Crafted(*config, "flags")))
    _refused(loads, blob, "malformed flags")


@LOADERS
def test_proxy_inside_a_proxy_is_refused(
    loads: Callable[[bytes], Any], store_name: str
) -> None:
    store = ps.store.init_store("local", store_name)
    inner = store.proxy(b"inner")
    kwargs = store.store_config.kwargs
    as_key = crafted("proxystore.aio.local.LocalStore", kwargs, key=inner)
    _refused(loads, as_key, "key of type Proxy")
    as_deserializer = crafted(
        "proxystore.aio.local.LocalStore", kwargs, deserializer=inner
    )
    _refused(loads, as_deserializer, "deserializer")


@LOADERS
def test_proxy_in_the_configuration_is_refused_unresolved(
    loads: Callable[[bytes], Any], store_name: str
) -> None:
    store = ps.store.init_store("local", store_name, metrics=True, cache_size=0)
    inner = store.proxy("inner")
    # The same arguments as the registered configuration, so that comparing
    # them (were it done before checking them) would resolve `inner`.
    kwargs = {**store.store_config.kwargs, "cache_size": inner}
    blob = crafted("proxystore.aio.local.LocalStore", kwargs)
    _refused(loads, blob, "cache_size.*not plain data")
    assert store.metrics is not None
    assert store.metrics["get"].count == 0


def test_badly_typed_argument_is_a_configuration_error(store_name: str) -> None:
    kwargs = {"name": store_name, "store_dir": 123}
    proxy = pickle.loads(crafted("proxystore.aio.file.FileStore", kwargs))
    with pytest.raises(ConfigurationError, match=f"'{store_name}'"):
        str(proxy)
    assert store_name not in registry.registered_names()


def test_key_from_a_proxy_is_validated_before_any_read(
    store_name: str, tmp_path: Path
) -> None:
    store_dir = tmp_path / "store"
    (tmp_path / "outside").write_bytes(pickle.dumps("outside the store"))
    store = ps.store.init_store("file", store_name, store_dir=store_dir)
    blob = crafted(
        "proxystore.aio.file.FileStore",
        store.store_config.kwargs,
        key="../outside",
    )
    proxy = pickle.loads(blob)
    with pytest.raises(InvalidKeyError, match="outside"):
        str(proxy)


# -- the recorded target type: looked up, never imported ---------------------


@LOADERS
def test_target_type_module_is_never_imported(
    loads: Callable[[bytes], Any], store_name: str, marker_module: Path
) -> None:
    store = ps.store.init_store("local", store_name)
    key = store.set([1, 2])
    blob = crafted(
        "proxystore.aio.local.LocalStore",
        store.store_config.kwargs,
        key=key,
        target_type="ps_marker_module:Thing",
    )
    modules = set(sys.modules)
    proxy = loads(blob)
    assert _factory(proxy).target_class is None
    assert not isinstance(proxy, tuple)  # answered by resolving, not importing
    assert set(sys.modules) - modules == set()
    assert not marker_module.exists()
    # Found once the application imports the module itself.
    import ps_marker_module  # type: ignore[import-not-found]

    assert _factory(proxy).target_class is ps_marker_module.Thing
    assert proxy == [1, 2]


def test_target_type_of_an_imported_module_is_found(store_name: str) -> None:
    store = ps.store.init_store("local", store_name)
    proxy = pickle.loads(pickle.dumps(store.proxy(io.BytesIO(b"x"))))
    assert _factory(proxy).target_class is io.BytesIO
    assert isinstance(proxy, io.BytesIO)
    assert not is_resolved(proxy)  # type: ignore[arg-type]


# -- one owner per store name ------------------------------------------------


@LOADERS
@PREFETCH
def test_proxy_of_another_store_under_a_registered_name_is_refused(
    loads: Callable[[bytes], Any], prefetch: bool, store_name: str, tmp_path: Path
) -> None:
    registered = ps.store.init_store("file", store_name, store_dir=tmp_path / "a")
    other = FileStore(store_name, tmp_path / "b")
    blob = pickle.dumps(other.proxy_from_key(KEY, prefetch=prefetch))
    with pytest.raises(StoreIdentityError) as info:
        loads(blob)
    message = str(info.value)
    assert str(tmp_path / "a") in message
    assert str(tmp_path / "b") in message
    assert ps.store.get_store(store_name) is registered


def test_matching_identity_resolves_through_the_registered_store(
    store_name: str, tmp_path: Path
) -> None:
    producer = FileStore(store_name, tmp_path, cache_size=2)
    blob = pickle.dumps(producer.proxy("hello"))
    registered = ps.store.init_store("file", store_name, store_dir=tmp_path)
    proxy = pickle.loads(blob)
    assert proxy == "hello"
    assert ps.store.get_store(proxy) is registered


def test_identity_checked_again_at_resolve(store_name: str, tmp_path: Path) -> None:
    blob = pickle.dumps(FileStore(store_name, tmp_path / "a").proxy("x"))
    registry.unregister(store_name)
    proxy = pickle.loads(blob)  # unknown name: admitted under the open policy
    ps.store.init_store("file", store_name, store_dir=tmp_path / "b")
    with pytest.raises(StoreIdentityError):
        str(proxy)


async def test_identity_checked_at_async_resolve(
    store_name: str, tmp_path: Path
) -> None:
    blob = pickle.dumps(FileStore(store_name, tmp_path / "a").proxy("x"))
    registry.unregister(store_name)
    proxy = pickle.loads(blob)
    aio.init_store("file", store_name, store_dir=tmp_path / "b")
    with pytest.raises(StoreIdentityError, match="FileStore"):
        await aio.resolve(proxy)
    aio.init_store("file", store_name, store_dir=tmp_path / "a", replace=True)
    assert await aio.resolve(proxy) == "x"


def test_a_name_a_proxy_registered_yields_to_init_store(
    store_name: str, tmp_path: Path
) -> None:
    blob = pickle.dumps(FileStore(store_name, tmp_path / "attacker").proxy("x"))
    registry.unregister(store_name)
    assert pickle.loads(blob) == "x"  # registers the name provisionally
    mine = ps.store.init_store("file", store_name, store_dir=tmp_path / "mine")
    assert ps.store.get_store(store_name) is mine
    with pytest.raises(StoreIdentityError):
        pickle.loads(blob)


# -- init_store on a taken name ------------------------------------------------


@pytest.mark.parametrize("face", ["sync", "async"])
def test_init_store_same_identity_returns_or_retunes_registered(
    face: str, store_name: str, tmp_path: Path
) -> None:
    init = ps.store.init_store if face == "sync" else aio.init_store
    first = init("file", store_name, store_dir=tmp_path)
    assert init("file", store_name, store_dir=tmp_path) is first
    # Other tuning of the same data replaces it, as ProxyStore 0.4 did.
    again = init("file", store_name, store_dir=tmp_path, cache_size=99, metrics=True)
    assert again is not first
    assert again.cache_size == 99
    assert (ps.store if face == "sync" else aio).get_store(store_name) is again


@pytest.mark.parametrize("face", ["sync", "async"])
def test_init_store_other_identity_names_both(
    face: str, store_name: str, tmp_path: Path
) -> None:
    init = ps.store.init_store if face == "sync" else aio.init_store
    first = init("file", store_name, store_dir=tmp_path / "a")
    with pytest.raises(StoreExistsError) as info:
        init("file", store_name, store_dir=tmp_path / "b")
    assert str(tmp_path / "a") in str(info.value)
    assert str(tmp_path / "b") in str(info.value)
    with pytest.raises(StoreExistsError, match="LocalStore"):
        init("local", store_name)
    assert (ps.store if face == "sync" else aio).get_store(store_name) is first
    replaced = init("file", store_name, store_dir=tmp_path / "b", replace=True)
    assert replaced is not first
    assert (ps.store if face == "sync" else aio).get_store(store_name) is replaced


def test_seed_example_twice_in_one_process(redis_server: RedisServer) -> None:
    REDIS_HOST, REDIS_PORT = redis_server.host, redis_server.port
    stores = []
    for _ in range(2):
        store = ps.store.init_store(
            "redis", name="my-store", hostname=REDIS_HOST, port=REDIS_PORT
        )
        store = ps.store.get_store("my-store")
        key = store.set([1, 2, 3])
        assert store.get(key) == [1, 2, 3]
        p = store.proxy([1, 2, 3])
        assert sum(p) == 6
        stores.append(store)
    assert stores[0] is stores[1]
    ps.store.unregister_store("my-store")
    stores[0].close()


def test_register_store_other_identity_names_both(
    store_name: str, tmp_path: Path
) -> None:
    ps.store.init_store("local", store_name)
    with pytest.raises(StoreExistsError, match=r"LocalStore.*FileStore"):
        ps.store.register_store(FileStore(store_name, tmp_path))


# -- the policy ------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening loopback socket that records whether anyone connected."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


def _connected(sock: socket.socket, timeout: float) -> bool:
    readable, _, _ = select.select([sock], [], [], timeout)
    return bool(readable)


def _redis_proxy_to(sock: socket.socket, name: str, prefetch: bool) -> bytes:
    host, port = sock.getsockname()
    store = RedisStore(name, host, port, socket_connect_timeout=2.0, socket_timeout=2.0)
    blob = pickle.dumps(store.proxy_from_key(KEY, prefetch=prefetch))
    registry.unregister(name)
    return blob


@LOADERS
@PREFETCH
def test_strict_policy_opens_no_socket_to_an_unlisted_host(
    loads: Callable[[bytes], Any],
    prefetch: bool,
    store_name: str,
    listener: socket.socket,
) -> None:
    blob = _redis_proxy_to(listener, store_name, prefetch)
    policy.configure("strict", allow=["redis:127.0.0.1:1", "redis:db.example.org"])
    error = _refused(loads, blob, "strict proxy policy")
    assert f"127.0.0.1', port={listener.getsockname()[1]}" in str(error)
    assert not _connected(listener, NO_CONNECTION_WAIT)


def test_open_policy_does_connect(store_name: str, listener: socket.socket) -> None:
    # The control for the test above: the same proxy under the open policy
    # reaches the listener, so "no connection" there is a real observation.
    proxy = pickle.loads(_redis_proxy_to(listener, store_name, prefetch=True))
    assert _connected(listener, 30)
    del proxy


def test_strict_policy_allows_listed_redis(
    store_name: str, redis_server: RedisServer
) -> None:
    store = RedisStore(store_name, redis_server.host, redis_server.port)
    blob = pickle.dumps(store.proxy([1, 2, 3]))
    registry.unregister(store_name)
    policy.configure("strict", allow=[f"redis:{redis_server.host}"])
    assert pickle.loads(blob) == [1, 2, 3]
    ps.store.get_store(store_name).close()
    store.close()


def test_strict_policy_and_file_directories(store_name: str, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    policy.configure("strict", allow=[f"file:{allowed}"])
    inside = FileStore(store_name, allowed / "sub")
    blob = pickle.dumps(inside.proxy("ok"))
    registry.unregister(store_name)
    assert pickle.loads(blob) == "ok"
    registry.unregister(store_name)
    for outside in (tmp_path / "elsewhere", allowed / ".." / "escape"):
        kwargs = {"name": store_name, "store_dir": str(outside)}
        _refused(
            pickle.loads, crafted("proxystore.aio.file.FileStore", kwargs), "strict"
        )
        assert not outside.exists()


def test_strict_policy_refuses_unregistered_local_and_endpoint_urls(
    store_name: str,
) -> None:
    policy.configure("strict", allow=["endpoint:site-a"])
    local = crafted("proxystore.aio.local.LocalStore", {"name": store_name})
    _refused(pickle.loads, local, "strict")
    url = {"name": store_name, "endpoints": ["site-a"], "url": "http://x:1"}
    _refused(
        pickle.loads, crafted("proxystore.aio.endpoint.EndpointStore", url), "strict"
    )
    for endpoints in ([["site-a"]], "site-", ["site-a", 1], []):
        carried = {"name": store_name, "endpoints": endpoints}
        blob = crafted("proxystore.aio.endpoint.EndpointStore", carried)
        _refused(pickle.loads, blob, "strict")
    listed = {"name": store_name, "endpoints": "site-a"}
    proxy = pickle.loads(crafted("proxystore.aio.endpoint.EndpointStore", listed))
    assert _factory(proxy).config.name == store_name


def test_strict_policy_still_serves_registered_names(store_name: str) -> None:
    store = ps.store.init_store("local", store_name)
    policy.configure("strict")
    assert pickle.loads(pickle.dumps(store.proxy("mine"))) == "mine"


def test_strict_policy_and_custom_deserializers(store_name: str) -> None:
    store = ps.store.init_store("local", store_name)
    blob = pickle.dumps(store.proxy(b"raw", serializer=bytes, deserializer=bytes.upper))
    assert pickle.loads(blob) == b"RAW"  # open: any deserializer
    policy.configure("strict")
    _refused(pickle.loads, blob, "deserializer")
    policy.configure(deserializers=[bytes.upper])
    assert pickle.loads(blob) == b"RAW"


def test_policy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(policy.POLICY_ENV, "strict")
    monkeypatch.setenv(policy.ALLOW_ENV, "redis:[::1]:6380, file:/scratch ,")
    current = policy.current()
    assert current.mode == "strict"
    assert current.allows(
        "proxystore.aio.redis.RedisStore", {"hostname": "::1", "port": 6380}
    )
    assert not current.allows(
        "proxystore.aio.redis.RedisStore", {"hostname": "::1", "port": 6379}
    )
    assert current.allows("proxystore.aio.file.FileStore", {"store_dir": "/scratch/x"})
    assert not current.allows(
        "proxystore.aio.file.FileStore", {"store_dir": "/scratchy"}
    )


def test_configure_checks_everything_before_changing_anything() -> None:
    before = policy.configure("strict", allow=["file:/data"])
    bad: dict[str, Any]
    for bad in (
        {"allow": "redis:h"},
        {"allow": ["redis:h", "nfs:/x"]},
        {"deserializers": [42]},
        {"mode": "lenient"},
    ):
        with pytest.raises(ConfigurationError):
            policy.configure(**bad)
        assert policy.current() == before
    assert policy.Policy("strict", ("redis:h:1",)).allows(
        "proxystore.aio.redis.RedisStore", {"hostname": "H", "port": 1}
    )


@pytest.mark.parametrize(
    ("variable", "value", "match"),
    [
        ("PROXYSTORE_PROXY_POLICY", "strcit", "PROXYSTORE_PROXY_POLICY"),
        ("PROXYSTORE_PROXY_ALLOW", "redis:h:99999", "PROXYSTORE_PROXY_ALLOW.*port"),
        ("PROXYSTORE_PROXY_ALLOW", "file:relative", "PROXYSTORE_PROXY_ALLOW"),
        ("PROXYSTORE_PROXY_ALLOW", "ftp:x", "PROXYSTORE_PROXY_ALLOW"),
    ],
)
def test_malformed_policy_environment_fails_closed(
    monkeypatch: pytest.MonkeyPatch,
    store_name: str,
    variable: str,
    value: str,
    match: str,
) -> None:
    monkeypatch.setenv(variable, value)
    blob = crafted("proxystore.aio.local.LocalStore", {"name": store_name})
    with pytest.raises(ConfigurationError, match=match):
        pickle.loads(blob)
    assert store_name not in registry.registered_names()


# -- secrets stay out of proxies -------------------------------------------------

PASSWORD = "pw-8d1b0c7e-never-in-a-proxy"

_CONSUMER = """
import pickle, sys
proxy = pickle.loads(sys.stdin.buffer.read())
try:
    print(sum(proxy))
except Exception as err:
    print(type(err).__name__, err)
"""


def _consume_in_new_process(blob: bytes, password: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYSTORE_")}
    if password is not None:
        env["PROXYSTORE_REDIS_PASSWORD"] = password
    done = subprocess.run(
        [sys.executable, "-c", _CONSUMER],
        input=blob,
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return done.stdout.decode().strip()


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    with RedisServer(password=PASSWORD) as server:
        yield server


def test_proxy_of_a_password_store_carries_no_password(
    store_name: str, password_server: RedisServer
) -> None:
    store = ps.store.init_store(
        "redis",
        store_name,
        hostname=password_server.host,
        port=password_server.port,
        password=PASSWORD,
    )
    for proxy in (store.proxy([1, 2]), store.proxy([1], prefetch=True)):
        assert PASSWORD.encode() not in pickle.dumps(proxy)
        assert PASSWORD not in repr(_factory(proxy).config)
    assert PASSWORD not in repr(store)
    assert "password" not in store.config()
    # The other face is built with the registered store's password.
    assert asyncio_sum(aio.get_store(store_name), store.proxy([2, 3])) == 5
    store.close()


def asyncio_sum(store: Any, proxy: Proxy[list[int]]) -> int:
    import asyncio

    async def main() -> int:
        try:
            values: list[int] = await aio.resolve(proxy)
            return sum(values)
        finally:
            await store.aclose()

    return asyncio.run(main())


def test_password_store_proxy_resolves_with_env_or_registered_store(
    store_name: str, password_server: RedisServer
) -> None:
    producer = RedisStore(
        store_name, password_server.host, password_server.port, password=PASSWORD
    )
    blob = pickle.dumps(producer.proxy([4, 5, 6]))
    assert _consume_in_new_process(blob, PASSWORD) == "15"
    assert _consume_in_new_process(blob, None).startswith("StoreConnectionError")
    # In this process: the registered store of the same identity lends its
    # password to the proxy.
    registry.unregister(store_name)
    consumer = ps.store.init_store(
        "redis",
        store_name,
        hostname=password_server.host,
        port=password_server.port,
        password=PASSWORD,
    )
    proxy = pickle.loads(blob)
    assert proxy == [4, 5, 6]
    assert ps.store.get_store(proxy) is consumer
    registry.unregister(store_name)
    with pytest.raises(StoreConnectionError, match="authentication"):
        list(pickle.loads(blob))
    ps.store.get_store(store_name).close()
    consumer.close()
    producer.close()


# -- size ------------------------------------------------------------------------


def test_pickled_proxies_of_builtin_stores_stay_small(store_name: str) -> None:
    store_dir = tempfile.mkdtemp(prefix="proxystore-")  # a typical path length
    stores = [
        LocalStore(store_name),
        FileStore(store_name, store_dir),
        RedisStore(store_name, "redis.example.org", 6380, password="secret"),
    ]
    try:
        for store in stores:
            factory: StoreFactory[Any] = StoreFactory(
                store.store_config, KEY, target_type="numpy:ndarray"
            )
            size = len(pickle.dumps(Proxy(factory)))
            assert size <= 300, f"{type(store).__name__}: {size} bytes"
    finally:
        os.rmdir(store_dir)
