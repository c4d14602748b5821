"""A ProxyStore 0.4 user's script, unchanged: ``python script_0_4.py TYPE [JSON]``.

Written against 0.4's documented API only (`key=`, `serialize=False`,
`deserialize=False`, `strict=True`, `stats=True`, `get_store(...) is None`,
`proxystore.proxy.get_key`/`resolve_async`, 0.4's exception names).
"""

import json
import pickle
import sys

import numpy as np

import proxystore as ps
from proxystore.store import STORES, ProxyStoreFactoryError, StoreError
from proxystore.store.exceptions import ProxyResolveMissingKey

store_type = sys.argv[1]
kwargs = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}

# Submodules reached as attributes, as 0.4 imported them all.
assert ps.serialize.deserialize(ps.serialize.serialize([1])) == [1]
assert issubclass(ps.store.local.LocalStore, ps.store.base.Store)

assert ps.store.get_store("script-store") is None
store = ps.store.init_store(store_type, "script-store", stats=True, **kwargs)
assert ps.store.get_store("script-store") is store
assert STORES[STORES.get_str_by_type(type(store))].name == store_type.upper()

# Keys chosen by the user, and overwrites.
key = store.set(np.arange(5), key="weights")
assert key == "weights"
assert np.array_equal(store.get("weights"), np.arange(5))
store.set(np.arange(3), key="weights")
assert np.array_equal(store.get("weights", strict=True), np.arange(3))
assert store.is_cached("weights", strict=True)
assert isinstance(store.get_timestamp("weights"), float)

# Bytes the user serialized.
raw_key = store.set(b"\x00custom-bytes", serialize=False)
assert store.get(raw_key, deserialize=False) == b"\x00custom-bytes"

# Proxies by object and by key.
p = store.proxy({"lr": 0.1}, key="config")
assert ps.proxy.get_key(p) == "config"
consumer = pickle.loads(pickle.dumps(p))
ps.proxy.resolve_async(consumer)
assert consumer["lr"] == 0.1
assert store.proxy(key="config") == {"lr": 0.1}
batch = store.proxy_batch([b"a", b"b"], serialize=False)
assert [bytes(x) for x in batch] == [b"a", b"b"]

# Stats per key and per proxy.
stats = store.stats("weights")
assert stats["set"].calls == 2
assert stats["get"].calls >= 1
assert store.stats(consumer)["resolve"].calls == 1
assert store.stats("never-used") == {}

# 0.4's errors.
missing = store.proxy(key="not-there")
try:
    missing.keys()
except ProxyResolveMissingKey as err:
    assert "not-there" in str(err)  # noqa: PT017 - a script, not a pytest test
else:
    raise AssertionError("a missing key must raise ProxyResolveMissingKey")
try:
    ps.store.get_store(ps.proxy.Proxy(lambda: 1))
except ProxyStoreFactoryError:
    pass
else:
    raise AssertionError("a proxy made without a store has no store")
assert issubclass(ProxyStoreFactoryError, StoreError)

store.evict("weights")
assert not store.exists("weights")
assert ps.proxy.get_key(ps.proxy.Proxy(lambda: 1)) is None
ps.store.unregister_store("script-store")
assert ps.store.get_store("script-store") is None
store.close()
print("ok")
