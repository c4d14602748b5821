"""The ``proxystore-endpoint`` command: configure, start, stop, status, list...

Example:
    ```
    $ export PROXYSTORE_SIGNALING_SECRET="$(cat ~/.signaling-secret)"
    $ proxystore-endpoint configure site-a --server wss://signal.example.org:8700
    $ proxystore-endpoint peers add site-a 5d3c...-site-b-uuid
    $ proxystore-endpoint start site-a --detach
    $ proxystore-endpoint list
    $ proxystore-endpoint status site-a        # --json for scripts
    $ proxystore-endpoint stop site-a
    $ proxystore-endpoint rotate-token site-a   # then restart it
    ```
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import proxystore
from proxystore.endpoint.config import (
    CONFIG_FILE,
    LOG_FILE,
    EndpointConfig,
    check_local_address,
    endpoint_dir,
    list_configs,
    new_config,
    read_config,
    remove_config,
    write_config,
)
from proxystore.endpoint.credentials import (
    authorization_header,
    create_api_token,
    read_api_token,
    token_path,
)
from proxystore.endpoint.peers import PEERS_FILE, parse_peer, read_peers, write_peers
from proxystore.endpoint.process import (
    check_pid_file,
    claim_pid_file,
    is_alive,
    read_pid,
    release_pid_file,
    terminate,
)
from proxystore.exceptions import ConfigurationError

logger = logging.getLogger("proxystore.endpoint")


def _size(text: str) -> int:
    """Parse a byte count such as ``1048576``, ``512K``, ``64MiB`` or ``2G``."""
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = cleaned, ""
    if cleaned and cleaned[-1] in units:
        number, unit = cleaned[:-1], cleaned[-1]
    try:
        value = int(float(number) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a byte size: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"byte size must not be negative: {text!r}")
    return value


def _timeout_option(parser: argparse.ArgumentParser, default: float, text: str) -> None:
    parser.add_argument(
        "--timeout", type=float, default=default, help=f"{text} (default {default:g})"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proxystore-endpoint",
        description="Manage proxystore endpoints on this host.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {proxystore.__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    # What `help <command>` looks commands up in.
    parser.set_defaults(commands=commands.choices)

    help_command = commands.add_parser("help", help="show help for a command")
    help_command.add_argument("topic", nargs="?", help="the command to explain")

    configure = commands.add_parser("configure", help="create a new endpoint")
    configure.add_argument("name")
    configure.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the HTTP API listens on (default 127.0.0.1: local clients only)",
    )
    configure.add_argument(
        "--port", type=int, default=0, help="port to listen on (default: a free one)"
    )
    configure.add_argument(
        "--server", default=None, help="signaling server URL (wss://host:port)"
    )
    configure.add_argument(
        "--secret-file",
        default=None,
        help="file holding the signaling secret shared by peers (mode 0600; "
        "default: $PROXYSTORE_SIGNALING_SECRET)",
    )
    configure.add_argument(
        "--secret",
        default=None,
        help="removed: use --secret-file or $PROXYSTORE_SIGNALING_SECRET",
    )
    configure.add_argument(
        "--signaling-ca-file",
        default=None,
        help="CA certificates (PEM) trusted for a wss:// signaling server "
        "(default: the system trust store)",
    )
    configure.add_argument(
        "--max-memory", type=_size, default=None, help="bytes kept in memory"
    )
    configure.add_argument(
        "--spill-dir", default=None, help="where objects beyond --max-memory go"
    )
    configure.add_argument(
        "--persist",
        action="store_true",
        help="keep objects across stops, restarts and crashes, in objects/ of "
        "the endpoint's directory (default: objects go with the process)",
    )
    configure.add_argument(
        "--max-object-size",
        type=_size,
        default=None,
        help="largest object accepted (default 1G)",
    )
    configure.add_argument(
        "--peer-timeout",
        type=float,
        default=None,
        help="seconds to connect to a peer, and the longest a transfer may go "
        "without a byte moving (default 30)",
    )
    configure.add_argument(
        "--peer-deadline",
        type=float,
        default=None,
        help="optional total seconds for one request to a peer (default: none)",
    )
    configure.add_argument(
        "--no-fast-path",
        action="store_true",
        help="always use WebRTC data channels between peers, never direct TCP",
    )
    configure.add_argument(
        "--fast-path-host",
        default=None,
        help="address the fast-path listener binds (default: the local address "
        "of each peer connection's selected ICE pair; 0.0.0.0 for every "
        "interface)",
    )
    configure.add_argument(
        "--fast-path-port",
        type=int,
        default=0,
        help="port of the fast-path listener (default: a free one)",
    )
    configure.add_argument(
        "--fast-path-advertise",
        default=None,
        help="address peers are told to fetch from (default: --fast-path-host, "
        "or the local address of the selected ICE pair; NAT, containers)",
    )
    configure.add_argument(
        "--max-spill",
        type=_size,
        default=None,
        help="bytes kept in the spill directory (default: half its free space)",
    )
    configure.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="most HTTP connections at once (default 256)",
    )
    configure.add_argument(
        "--max-requests",
        type=int,
        default=None,
        help="most HTTP requests served at once (default 128)",
    )

    start = commands.add_parser("start", help="run an endpoint")
    start.add_argument("name")
    start.add_argument(
        "--detach", action="store_true", help="run in the background and return"
    )
    _timeout_option(
        start, 30.0, "with --detach: seconds to wait for the endpoint to answer"
    )
    start.add_argument("--log-level", default="INFO")

    stop = commands.add_parser("stop", help="stop a running endpoint")
    stop.add_argument("name")
    _timeout_option(stop, 10.0, "seconds to wait for exit")

    status = commands.add_parser(
        "status",
        help="show a running endpoint's objects, peers, transfers and signaling",
        description="Ask a running endpoint for its live status. Exit codes: "
        "0 running, 1 no such endpoint (or unreadable configuration or token), "
        "3 not running, 4 no answer within --timeout, 5 API token refused.",
    )
    status.add_argument("name")
    status.add_argument(
        "--json", action="store_true", help="print the status as one JSON object"
    )
    _timeout_option(status, 5.0, "seconds to wait for the endpoint to answer")

    commands.add_parser("list", help="list configured endpoints")

    rotate = commands.add_parser(
        "rotate-token",
        help="replace an endpoint's API token (restart the endpoint to use it)",
    )
    rotate.add_argument("name")

    remove = commands.add_parser("remove", help="delete an endpoint's configuration")
    remove.add_argument("name")
    remove.add_argument(
        "--force", action="store_true", help="stop the endpoint first if it runs"
    )

    peers = commands.add_parser(
        "peers", help="manage which endpoints this one peers with (peers.allow)"
    )
    peer_commands = peers.add_subparsers(dest="peers_command", required=True)
    for action, text in (("add", "allow"), ("remove", "stop allowing")):
        sub = peer_commands.add_parser(action, help=f"{text} peer endpoints")
        sub.add_argument("name")
        sub.add_argument("peer", nargs="+", help="endpoint uuid, or '*' for any")
    peer_list = peer_commands.add_parser("list", help="list allowed peers")
    peer_list.add_argument("name")
    return parser


def _help(parser: argparse.ArgumentParser, topic: str | None) -> int:
    """Print the help of `topic` (a command), or of the whole program."""
    if topic is None:
        parser.print_help()
        return 0
    command = parser.get_default("commands").get(topic)
    if command is not None:
        command.print_help()
        return 0
    print(f"error: no command {topic!r}; see proxystore-endpoint help", file=sys.stderr)
    return 1


def _configure(args: argparse.Namespace) -> int:
    from proxystore.endpoint.identity import Identity, write_identity

    if args.secret is not None:
        raise ConfigurationError(
            "--secret is no longer accepted (command lines are visible to every "
            "local user): use --secret-file PATH or set PROXYSTORE_SIGNALING_SECRET"
        )
    directory = endpoint_dir(args.name)
    if (directory / CONFIG_FILE).exists():
        raise ConfigurationError(
            f"endpoint {args.name!r} is already configured; "
            f"remove it first with: proxystore-endpoint remove {args.name}"
        )
    secret = None
    if args.server is not None:
        from proxystore.p2p.signaling import read_secret

        secret = read_secret(args.secret_file)
    ca_file = args.signaling_ca_file
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "signaling_server": args.server,
        "secret": secret,
        "signaling_ca_file": os.path.abspath(ca_file) if ca_file else None,
        "max_memory": args.max_memory,
        # Relative to where `configure` ran, not to where `start` will run.
        "spill_dir": os.path.abspath(
            args.spill_dir or endpoint_dir(args.name) / "spill"
        ),
        "fast_path": not args.no_fast_path,
        "max_spill": args.max_spill,
        "fast_path_host": args.fast_path_host,
        "fast_path_port": args.fast_path_port,
        "fast_path_advertise": args.fast_path_advertise,
        "persist": args.persist,
    }
    check_local_address(args.host, "--host")
    if args.fast_path_host is not None:
        check_local_address(args.fast_path_host, "--fast-path-host")
    if args.max_object_size is not None:
        options["max_object_size"] = args.max_object_size
    if args.peer_timeout is not None:
        options["peer_timeout"] = args.peer_timeout
    if args.peer_deadline is not None:
        options["peer_deadline"] = args.peer_deadline
    if args.max_connections is not None:
        options["max_connections"] = args.max_connections
    if args.max_requests is not None:
        options["max_requests"] = args.max_requests
    identity = Identity.generate()
    config = new_config(args.name, uuid=identity.uuid, **options)
    (directory / "identity.pem").unlink(missing_ok=True)  # left by a failed run
    write_identity(directory, identity)
    create_api_token(endpoint_dir(config.name))
    path = write_config(config)
    print(
        f"configured endpoint {config.name} ({config.uuid}) "
        f"at {config.host}:{config.port}; config in {path}"
    )
    if config.signaling_server is not None:
        print(
            "it peers with no endpoint yet: allow peers with "
            f"proxystore-endpoint peers add {config.name} UUID"
        )
    return 0


def _peers(args: argparse.Namespace) -> int:
    config = read_config(args.name)
    path = endpoint_dir(config.name) / PEERS_FILE
    current = read_peers(path)
    if args.peers_command == "list":
        if not current:
            print(f"endpoint {config.name} peers with no endpoint")
        for peer in current:
            print(peer)
        return 0
    given = [parse_peer(peer) for peer in args.peer]
    if args.peers_command == "add":
        updated = current + [p for p in given if p not in current]
    else:
        updated = [p for p in current if p not in given]
    write_peers(path, updated)
    print(f"endpoint {config.name} peers with {len(updated)} entries in {path}")
    return 0


def _setup_logging(name: str, level: str) -> None:
    from proxystore.endpoint.logs import setup_logging

    setup_logging(level, endpoint_dir(name) / LOG_FILE)


async def _run(config: EndpointConfig, api_token: str) -> None:
    from proxystore.endpoint.server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(config, stop, api_token)


def _start(args: argparse.Namespace) -> int:
    from proxystore.endpoint.logs import parse_level
    from proxystore.endpoint.peering import endpoint_identity

    parse_level(args.log_level)
    config = read_config(args.name)
    # Refuse at once, before any pid file or log, when the token is unusable.
    token = read_api_token(token_path(endpoint_dir(config.name)))
    endpoint_identity(config)  # refuse a missing or mismatched identity now
    if args.detach:
        return _start_detached(config, args.timeout, args.log_level)
    if not claim_pid_file(config.name):
        print(
            f"endpoint {config.name} is already running (pid {read_pid(config.name)})",
            file=sys.stderr,
        )
        return 1
    try:
        _setup_logging(config.name, args.log_level)
        asyncio.run(_run(config, token))
    except (OSError, ConfigurationError) as err:
        logger.error("endpoint %s could not start: %s", config.name, err)
        return 1
    finally:
        release_pid_file(config.name)
    logger.info("endpoint %s stopped", config.name)
    return 0


def _describe(config: EndpointConfig, timeout: float) -> dict[str, Any] | None:
    """Return the endpoint's ``GET /endpoint``, or None if it does not answer."""
    token = read_api_token(token_path(endpoint_dir(config.name)))
    request = urllib.request.Request(
        f"{config.url}/endpoint",
        headers={"Authorization": authorization_header(token)},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            data = json.loads(r.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    if isinstance(data, dict) and data.get("uuid") == config.uuid:
        return data
    return None


def _start_detached(config: EndpointConfig, timeout: float, log_level: str) -> int:
    if read_pid(config.name) is not None:
        print(f"endpoint {config.name} is already running", file=sys.stderr)
        return 1
    command = [sys.executable, "-m", "proxystore.endpoint.cli", "start", config.name]
    log = endpoint_dir(config.name) / LOG_FILE
    log_start = log.stat().st_size if log.exists() else 0
    process = subprocess.Popen(
        [*command, "--log-level", log_level],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            print(
                f"endpoint {config.name} exited with code {process.returncode}"
                f"{_last_error(log, log_start)}; see {log}",
                file=sys.stderr,
            )
            return 1
        data = _describe(config, timeout=1.0)
        # Peering endpoints: wait for the first registration's outcome too, so
        # a wrong secret or a refused identity fails here, not silently later.
        if data is not None and (
            config.signaling_server is None
            or data.get("signaling")
            or data.get("signaling_error")
            or data.get("signaling_attempted")
        ):
            refused = data.get("signaling_error")
            if refused:
                _stop_child(process)
                print(
                    f"endpoint {config.name} stopped: the signaling server "
                    f"{config.signaling_server} refused it: {refused} (check that "
                    "its shared secret is the server's)",
                    file=sys.stderr,
                )
                return 1
            print(f"endpoint {config.name} running at {config.url} (pid {process.pid})")
            if config.signaling_server is not None and not data.get("signaling"):
                print(
                    f"warning: signaling server {config.signaling_server} not "
                    f"reached yet; the endpoint keeps trying (see {log})",
                    file=sys.stderr,
                )
            return 0
        time.sleep(0.05)
    _stop_child(process)
    print(
        f"endpoint {config.name} did not answer at {config.url} within "
        f"{timeout:g}s; stopped it (see {log})",
        file=sys.stderr,
    )
    return 1


def _last_error(log: Path, start: int) -> str:
    """Return ``: <message>`` of the last ERROR the log got since ``start``."""
    try:
        with open(log, "rb") as file:
            file.seek(start)
            lines = file.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if " ERROR " in line]
    return f": {errors[-1].split(': ', 1)[-1]}" if errors else ""


def _stop_child(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10.0)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10.0)


def _stop(args: argparse.Namespace) -> int:
    config = read_config(args.name)
    check = check_pid_file(config.name)
    if check.other is not None:
        print(
            f"endpoint {config.name} is not running: its pid file named process "
            f"{check.other}, which is not the endpoint ({check.stale}); refusing "
            "to signal it, removed the stale pid file",
            file=sys.stderr,
        )
        return 1
    if check.stale is not None:
        print(f"endpoint {config.name}: removed a stale pid file ({check.stale})")
    pid = check.pid
    if pid is None:
        print(f"endpoint {config.name} is not running")
        return 0
    if not terminate(pid, args.timeout):
        print(
            f"endpoint {config.name} (pid {pid}) did not exit within "
            f"{args.timeout:g}s of SIGTERM",
            file=sys.stderr,
        )
        return 1
    print(f"endpoint {config.name} stopped")
    return 0


def _status(args: argparse.Namespace) -> int:
    from proxystore.endpoint.status import (
        EXIT_NOT_RUNNING,
        StatusUnavailable,
        fetch_status,
        format_status,
    )

    config = read_config(args.name)
    check = check_pid_file(config.name)
    if check.pid is None:
        stale = f" (removed a stale pid file: {check.stale})" if check.stale else ""
        print(f"endpoint {config.name} is not running{stale}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    try:
        data = fetch_status(config, args.timeout)
    except StatusUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return err.code
    if args.json:
        print(json.dumps({"name": config.name, "pid": check.pid, **data}))
    else:
        print(format_status(config, check.pid, data))
    return 0


def _rotate_token(args: argparse.Namespace) -> int:
    config = read_config(args.name)
    path = create_api_token(endpoint_dir(config.name))
    running = read_pid(config.name) is not None
    print(
        f"new API token for endpoint {config.name} in {path}"
        + ("; restart the endpoint to use it" if running else "")
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    configs = list_configs()
    if not configs:
        print("no endpoints configured")
        return 0
    rows = [("NAME", "UUID", "ADDRESS", "PERSIST", "STATUS")]
    for config in configs:
        pid = read_pid(config.name)
        status = f"running (pid {pid})" if pid is not None else "stopped"
        address = f"{config.host}:{config.port}"
        persist = "yes" if config.persist else "no"
        rows.append((config.name, config.uuid, address, persist, status))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        print("  ".join([*cells, row[4]]))
    return 0


def _remove(args: argparse.Namespace) -> int:
    config = read_config(args.name)
    pid = read_pid(config.name)
    if pid is not None and is_alive(pid):
        if not args.force:
            print(
                f"endpoint {config.name} is running (pid {pid}); stop it first "
                "or pass --force",
                file=sys.stderr,
            )
            return 1
        if not terminate(pid, 10.0):
            print(f"endpoint {config.name} (pid {pid}) did not stop", file=sys.stderr)
            return 1
    remove_config(config.name)
    print(f"removed endpoint {config.name}")
    return 0


_COMMANDS = {
    "configure": _configure,
    "start": _start,
    "stop": _stop,
    "status": _status,
    "list": _list,
    "rotate-token": _rotate_token,
    "remove": _remove,
    "peers": _peers,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``proxystore-endpoint`` command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit code: 0 on success, 1 on a reported failure, 2 on
        a usage error (from argparse). ``status`` also returns 3 (not
        running), 4 (no answer in time) and 5 (API token refused); see
        `proxystore.endpoint.status`.
    """
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        return _help(parser, None)
    args = parser.parse_args(argv)
    if args.command == "help":
        return _help(parser, args.topic)
    try:
        return _COMMANDS[args.command](args)
    except ConfigurationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
