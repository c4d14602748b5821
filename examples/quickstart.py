"""The getting-started example on the embedded stores: no server needed.

Run: python examples/quickstart.py

It stores an object in a LocalStore (this process's memory) and in a
FileStore (a temporary directory), makes proxies, sends one through pickle
as another process would receive it, and shows when it resolves.
"""

from __future__ import annotations

import pickle
import tempfile
from dataclasses import dataclass

import proxystore as ps
from proxystore.proxy import is_resolved


@dataclass
class Measurement:
    sensor: str
    readings: list[float]

    def mean(self) -> float:
        return sum(self.readings) / len(self.readings)


def consumer(data: Measurement) -> float:
    """Code that never knows whether it got the object or a proxy of it."""
    assert isinstance(data, Measurement)
    return data.mean()


def demo(store_type: str, **options: str) -> None:
    my_object = Measurement("thermo-1", [20.5, 21.0, 22.5] * 1000)
    print(f"--- {store_type} store ---")

    store = ps.store.init_store(store_type, name=f"quickstart-{store_type}", **options)
    # An already initialized store can be retrieved by name.
    store = ps.store.get_store(f"quickstart-{store_type}")

    key = store.set(my_object)
    assert my_object == store.get(key)
    print(f"set/get round trip ok (key {key})")

    p = store.proxy(my_object)
    wire = pickle.dumps(p)
    print(f"pickled object: {len(pickle.dumps(my_object)):>6} bytes")
    print(f"pickled proxy:  {len(wire):>6} bytes")

    received = pickle.loads(wire)
    print(f"received proxy resolved yet? {is_resolved(received)}")
    print(f"consumer computed mean {consumer(received):.2f}")
    print(f"received proxy resolved now? {is_resolved(received)}")
    assert isinstance(received, Measurement)

    store.close()
    ps.store.unregister_store(f"quickstart-{store_type}")


def main() -> None:
    demo("local")
    with tempfile.TemporaryDirectory() as store_dir:
        demo("file", store_dir=store_dir)


if __name__ == "__main__":
    main()
