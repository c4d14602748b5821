"""Two Linux network namespaces joined by a veth pair: "hosts" for tests.

Endpoints that really cross hosts need addresses other than loopback and a
link between them. `NamespacePair` makes two network namespaces, each with
``lo`` up and one end of a veth pair holding its own address
(``10.251.<subnet>.1/24`` and ``.2/24``), runs commands in them with
``ip netns exec``, and removes everything it made (processes by PID, then the
namespaces by name) on `close`, whatever happened before. Root only.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from proxystore.endpoint.config import free_port
from proxystore.endpoint.testing import (
    EndpointProcess,
    configure_endpoint,
    site_env,
    wait_for_port,
    wait_until_registered,
    write_test_certificate,
)
from proxystore.exceptions import ConfigurationError
from proxystore.p2p.ice import ICE_ADDRESSES_ENV
from proxystore.p2p.signaling import SECRET_ENV

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
_COMMAND_TIMEOUT = 30.0


def _ip(*args: str) -> None:
    result = subprocess.run(
        ["ip", *args],
        capture_output=True,
        text=True,
        timeout=_COMMAND_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise ConfigurationError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


@dataclasses.dataclass(frozen=True)
class Namespace:
    """One network namespace and its address on the veth link."""

    name: str
    address: str

    def command(self, *args: str) -> list[str]:
        """Return ``args`` as a command run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, function: Callable[[], T]) -> T:
        """Call ``function`` in a thread that joined the namespace; return its result.

        Sockets it opens live in the namespace (only that thread moves).
        """
        outcome: list[T] = []
        errors: list[BaseException] = []

        def target() -> None:
            try:
                _enter(self.name)
                outcome.append(function())
            except BaseException as err:
                errors.append(err)

        thread = threading.Thread(target=target, name=f"netns-{self.name}")
        thread.start()
        thread.join()
        if errors:
            raise errors[0]
        return outcome[0]

    def listening(self) -> list[str]:
        """Return the ``address:port`` of every listening TCP socket inside."""
        result = subprocess.run(
            self.command("ss", "-Hltn"),
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT,
            check=True,
        )
        return [line.split()[3] for line in result.stdout.splitlines() if line.strip()]


def _enter(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {name}: {os.strerror(errno)}")
    finally:
        os.close(fd)


class NamespacePair:
    """Two namespaces ``a`` and ``b`` joined by a veth pair.

    Args:
        tag: Short unique tag (e.g. the pid) in the namespace and link names.
        subnet: Third octet of the ``10.251.<subnet>.0/24`` link.

    Raises:
        ConfigurationError: If a namespace or the link cannot be made (then
            whatever was made is removed).
    """

    def __init__(self, tag: str, subnet: int) -> None:
        self.a = Namespace(f"ps-{tag}-a", f"10.251.{subnet}.1")
        self.b = Namespace(f"ps-{tag}-b", f"10.251.{subnet}.2")
        self._processes: list[subprocess.Popen[bytes]] = []
        self._made: list[str] = []
        try:
            for ns in (self.a, self.b):
                _ip("netns", "add", ns.name)
                self._made.append(ns.name)
            link_a, link_b = f"ps{tag}a"[:15], f"ps{tag}b"[:15]
            _ip(
                "link", "add", link_a, "netns", self.a.name,
                "type", "veth", "peer", "name", link_b, "netns", self.b.name,
            )  # fmt: skip
            for ns, link in ((self.a, link_a), (self.b, link_b)):
                _ip("-n", ns.name, "link", "set", "lo", "up")
                _ip("-n", ns.name, "addr", "add", f"{ns.address}/24", "dev", link)
                _ip("-n", ns.name, "link", "set", link, "up")
        except BaseException:
            self.close()
            raise

    def popen(
        self,
        ns: Namespace,
        args: list[str],
        env: dict[str, str],
        log: str | os.PathLike[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` in ``ns``; `close` stops it by PID."""
        output = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            process = subprocess.Popen(
                ns.command(*args), env=env, stdout=output, stderr=output
            )
        finally:
            if log is not None:
                output.close()  # type: ignore[union-attr]
        self._processes.append(process)
        return process

    def close(self) -> None:
        """Stop every process started here, then delete both namespaces."""
        for process in reversed(self._processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self._processes):
            try:
                process.wait(10.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10.0)
        self._processes.clear()
        for name in reversed(self._made):
            # Deleting a namespace deletes the veth end inside it, and with it
            # the other end.
            subprocess.run(
                ["ip", "netns", "del", name],
                capture_output=True,
                timeout=_COMMAND_TIMEOUT,
                check=False,
            )
        self._made.clear()


@dataclasses.dataclass
class TwoSites:
    """A signaling server in ``pair.a`` and endpoints ``site-a``/``site-b``."""

    pair: NamespacePair
    root: Path
    signaling_port: int
    sites: dict[str, EndpointProcess]

    def env(self, home: Path | None) -> dict[str, str]:
        """Return the environment of a process of the site whose home is ``home``.

        ICE gathers every interface address, as on real hosts.
        """
        env = site_env(home)
        env.pop(ICE_ADDRESSES_ENV, None)
        return env

    def python(
        self,
        site: str,
        script: str,
        *args: str,
        stdin: bytes = b"",
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a Python ``script`` in the namespace of ``site`` as one of its clients.

        Raises:
            RuntimeError: If it exits non-zero (with the end of its stderr).
        """
        ns = self.pair.a if site == "site-a" else self.pair.b
        result = subprocess.run(
            ns.command(sys.executable, "-c", script, *args),
            input=stdin,
            env=self.env(self.sites[site].home),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr.decode(errors="replace")[-3000:])
        return result


def start_two_sites(
    pair: NamespacePair, root: Path, *options: str, ready: float = 60.0
) -> TwoSites:
    """Start a ``wss://`` signaling server in A and one endpoint per namespace.

    Every process is started through ``pair``, so ``pair.close()`` stops
    them. The endpoints use default settings plus ``options`` for
    ``configure``, allow each other, and are registered on return.
    """
    secret = secrets.token_hex(32)
    a, b = pair.a, pair.b
    ca, cert, key = write_test_certificate(root / "tls", a.address)
    port = free_port()
    sites = TwoSites(pair, root, port, {})
    pair.popen(
        a,
        [
            sys.executable,
            "-c",
            "import sys; from proxystore.p2p.signaling import main; "
            "sys.exit(main(sys.argv[1:]))",
            "--host",
            a.address,
            "--port",
            str(port),
            "--certfile",
            str(cert),
            "--keyfile",
            str(key),
        ],
        {**sites.env(None), SECRET_ENV: secret},
        root / "signaling.log",
    )
    # Reachable from B: the endpoint there registers through the link.
    b.run(lambda: wait_for_port(a.address, port, ready))
    server = f"wss://{a.address}:{port}"
    for site in ("site-a", "site-b"):
        sites.sites[site] = configure_endpoint(
            root / site,
            site,
            "--server",
            server,
            "--signaling-ca-file",
            str(ca),
            *options,
            secret=secret,
        )
    sites.sites["site-a"].allow(sites.sites["site-b"].uuid)
    sites.sites["site-b"].allow(sites.sites["site-a"].uuid)
    for ns, site in ((a, "site-a"), (b, "site-b")):
        endpoint = sites.sites[site]
        pair.popen(
            ns,
            [sys.executable, "-m", "proxystore.endpoint.cli", "start", site],
            sites.env(endpoint.home),
            root / f"{site}.out",
        )
    for ns, site in ((a, "site-a"), (b, "site-b")):
        endpoint = sites.sites[site]
        ns.run(lambda e=endpoint: wait_until_registered(e, ready))  # type: ignore[misc]
    return sites
