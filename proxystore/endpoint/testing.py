"""Running real signaling servers and endpoints as processes on this host.

For tests, benchmarks and examples: every process started here is a real
``proxystore-endpoint`` or signaling server, driven through its command line
with ``PROXYSTORE_HOME`` pointing at a directory of the caller's choosing
(one per simulated site), and is stopped by process id.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import proxystore.endpoint
from proxystore.endpoint.config import CONFIG_FILE, EndpointConfig, free_port
from proxystore.endpoint.credentials import (
    authorization_header,
    read_api_token,
    token_path,
)
from proxystore.exceptions import AuthenticationError, StoreTimeoutError

_SOURCE_ROOT = Path(proxystore.endpoint.__file__).resolve().parents[2]
_POLL_INTERVAL = 0.02


def site_env(home: Path | str | None) -> dict[str, str]:
    """Return an environment for a process of the site whose home is ``home``.

    The source tree this module comes from goes first on ``PYTHONPATH`` so
    the child runs the same proxystore as the parent.
    """
    env = dict(os.environ)
    if home is not None:
        env["PROXYSTORE_HOME"] = str(home)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = (
        f"{_SOURCE_ROOT}{os.pathsep}{path}" if path else str(_SOURCE_ROOT)
    )
    return env


def run_cli(
    home: Path | str,
    *args: str,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``proxystore-endpoint ARGS`` to completion and return its result.

    ``env`` adds to the site's environment (secrets go there, never in ARGS).
    """
    return subprocess.run(
        [sys.executable, "-m", "proxystore.endpoint.cli", *args],
        env={**site_env(home), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Return once ``host:port`` accepts TCP connections.

    Raises:
        StoreTimeoutError: If it does not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise StoreTimeoutError(f"{host}:{port}", timeout, "connect") from None
            time.sleep(_POLL_INTERVAL)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop ``process`` with SIGTERM, then SIGKILL if it outlives ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


@dataclasses.dataclass
class SignalingServer:
    """A signaling server process."""

    host: str
    port: int
    secret: str
    process: subprocess.Popen[bytes]
    tls: bool = False

    @property
    def url(self) -> str:
        """WebSocket URL endpoints register at (``wss://`` when serving TLS)."""
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop the process."""
        stop_process(self.process)


def start_signaling_server(
    secret: str,
    port: int | None = None,
    host: str = "127.0.0.1",
    log: Path | None = None,
    wait: float | None = 30.0,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    log_file: Path | None = None,
) -> SignalingServer:
    """Start a signaling server and (unless ``wait`` is None) wait for its port.

    The secret reaches the process through its environment, never its
    command line; ``certfile`` and ``keyfile`` make it serve ``wss://``;
    ``log_file`` is its ``--log-file``.
    """
    from proxystore.p2p.signaling import SECRET_ENV

    port = port or free_port(host)
    command = [
        sys.executable,
        "-c",
        "import sys; from proxystore.p2p.signaling import main; "
        "sys.exit(main(sys.argv[1:]))",
        "--host",
        host,
        "--port",
        str(port),
    ]
    if certfile is not None and keyfile is not None:
        command += ["--certfile", str(certfile), "--keyfile", str(keyfile)]
    if log_file is not None:
        command += ["--log-file", str(log_file)]
    output = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        process = subprocess.Popen(
            command,
            env={**site_env(None), SECRET_ENV: secret},
            stdout=output,
            stderr=output,
        )
    finally:
        if log is not None:
            output.close()  # type: ignore[union-attr]
    server = SignalingServer(host, port, secret, process, certfile is not None)
    if wait is not None:
        try:
            wait_for_port(host, port, wait)
        except BaseException:
            server.stop()
            raise
    return server


@dataclasses.dataclass
class EndpointProcess:
    """An endpoint configured in its own site home and run by ``start``."""

    home: Path
    config: EndpointConfig
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        """The endpoint's name."""
        return self.config.name

    @property
    def uuid(self) -> str:
        """The endpoint's uuid."""
        return self.config.uuid

    @property
    def url(self) -> str:
        """The endpoint's HTTP URL."""
        return self.config.url

    @property
    def token_file(self) -> Path:
        """The endpoint's ``api-token`` file."""
        return token_path(self.home / "endpoints" / self.name)

    @property
    def api_token(self) -> str:
        """The endpoint's API token (read from its file)."""
        return read_api_token(self.token_file)

    @property
    def auth_headers(self) -> dict[str, str]:
        """The ``Authorization`` header every request to the endpoint needs."""
        return {"Authorization": authorization_header(self.api_token)}

    def start(self, wait: float | None = 30.0) -> None:
        """Run ``proxystore-endpoint start NAME`` and wait for its port.

        Args:
            wait: Seconds to wait for the port; ``None`` returns at once
                (then call :meth:`wait_ready`).
        """
        if self.process is not None and self.process.poll() is None:
            return
        log = open(self.home / f"{self.name}.out", "ab")  # noqa: SIM115
        with log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "proxystore.endpoint.cli", "start", self.name],
                env=site_env(self.home),
                stdout=log,
                stderr=log,
            )
        if wait is not None:
            self.wait_ready(wait)

    def wait_ready(self, timeout: float) -> None:
        """Wait for the endpoint's port; stop the process if it never opens."""
        try:
            wait_for_port(self.config.host, self.config.port, timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int | None:
        """Process id of the running endpoint, if started here."""
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        """Stop the endpoint process (SIGTERM, then SIGKILL)."""
        if self.process is not None:
            stop_process(self.process)

    def allow(self, *peers: str) -> None:
        """Run ``proxystore-endpoint peers add NAME PEERS`` for this endpoint.

        Raises:
            RuntimeError: If the command fails.
        """
        result = run_cli(self.home, "peers", "add", self.name, *peers)
        if result.returncode != 0:
            raise RuntimeError(f"peers add failed: {result.stderr}")

    def kill(self) -> None:
        """Kill the endpoint process at once (SIGKILL), as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10.0)


def configure_endpoint(
    home: Path, name: str, *options: str, secret: str | None = None
) -> EndpointProcess:
    """Run ``proxystore-endpoint configure NAME OPTIONS`` in site ``home``.

    Args:
        home: The site's ``PROXYSTORE_HOME``.
        name: The endpoint's name.
        options: Further ``configure`` options.
        secret: The signaling secret, passed in the environment.

    Raises:
        RuntimeError: If the command fails (its stderr is in the message).
    """
    from proxystore.p2p.signaling import SECRET_ENV

    home.mkdir(parents=True, exist_ok=True)
    env = {SECRET_ENV: secret} if secret is not None else {}
    result = run_cli(home, "configure", name, *options, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"configure {name} failed: {result.stderr}")
    path = home / "endpoints" / name / CONFIG_FILE
    return EndpointProcess(home, EndpointConfig.from_json(json.loads(path.read_text())))


def describe_endpoint(url: str, token: str, timeout: float = 5.0) -> dict[str, Any]:
    """Return the endpoint's ``GET /endpoint`` description.

    Raises:
        AuthenticationError: If the endpoint refuses ``token``.
    """
    request = urllib.request.Request(
        f"{url}/endpoint", headers={"Authorization": authorization_header(token)}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise AuthenticationError(f"{url} refused the token: {err}") from err
        raise
    return data


def wait_until_registered(site: EndpointProcess, timeout: float) -> None:
    """Return once ``site`` is registered with its signaling server.

    Raises:
        StoreTimeoutError: If it is not within ``timeout`` seconds.
        AuthenticationError: If the endpoint refuses its own token.
    """
    url, token = site.url, site.api_token
    deadline = time.monotonic() + timeout
    while True:
        try:
            if describe_endpoint(url, token, timeout=1.0).get("signaling"):
                return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise StoreTimeoutError(url, timeout, "signaling registration")
        time.sleep(_POLL_INTERVAL)


def write_test_certificate(directory: Path, address: str) -> tuple[Path, Path, Path]:
    """Write a throwaway CA and a server certificate for ``address`` it signed.

    For tests and benchmarks that need a ``wss://`` signaling server on an
    address other than loopback.

    Returns:
        The CA file (trust it with ``--signaling-ca-file``), the certificate
        file and its private key file (mode 0600).
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("proxystore test CA"))
        .issuer_name(name("proxystore test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        # Python 3.13 verifies strictly (VERIFY_X509_STRICT): a CA needs its
        # key usage and key identifier, a leaf the authority's key identifier.
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(address))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(address))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    directory.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = (
        directory / n for n in ("ca.pem", "cert.pem", "key.pem")
    )
    ca_file.write_bytes(ca_cert.public_bytes(pem))
    cert_file.write_bytes(cert.public_bytes(pem))
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(
            key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return ca_file, cert_file, key_file
