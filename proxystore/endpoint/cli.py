"""The ``proxystore-endpoint`` command: configure, start, stop, list, remove.

Example:
    ```
    $ proxystore-endpoint configure site-a --server ws://127.0.0.1:8700 --secret s
    $ proxystore-endpoint start site-a --detach
    $ proxystore-endpoint list
    $ proxystore-endpoint stop site-a
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
from typing import Any

import proxystore
from proxystore.endpoint.config import (
    CONFIG_FILE,
    LOG_FILE,
    EndpointConfig,
    endpoint_dir,
    list_configs,
    new_config,
    read_config,
    remove_config,
    write_config,
)
from proxystore.endpoint.process import (
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
    configure.add_argument("--host", default="127.0.0.1", help="address to listen on")
    configure.add_argument(
        "--port", type=int, default=0, help="port to listen on (default: a free one)"
    )
    configure.add_argument(
        "--server", default=None, help="signaling server URL (ws://host:port)"
    )
    configure.add_argument("--secret", default=None, help="secret shared by peers")
    configure.add_argument(
        "--max-memory", type=_size, default=None, help="bytes kept in memory"
    )
    configure.add_argument(
        "--spill-dir", default=None, help="where objects beyond --max-memory go"
    )
    configure.add_argument(
        "--max-object-size",
        type=_size,
        default=None,
        help="largest object accepted (default 1G)",
    )
    configure.add_argument(
        "--peer-timeout", type=float, default=None, help="seconds to wait on a peer"
    )
    configure.add_argument(
        "--no-fast-path",
        action="store_true",
        help="always use WebRTC data channels between peers, never direct TCP",
    )

    start = commands.add_parser("start", help="run an endpoint")
    start.add_argument("name")
    start.add_argument(
        "--detach", action="store_true", help="run in the background and return"
    )
    start.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="with --detach: seconds to wait for the endpoint to answer",
    )
    start.add_argument("--log-level", default="INFO")

    stop = commands.add_parser("stop", help="stop a running endpoint")
    stop.add_argument("name")
    stop.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for exit"
    )

    commands.add_parser("list", help="list configured endpoints")

    remove = commands.add_parser("remove", help="delete an endpoint's configuration")
    remove.add_argument("name")
    remove.add_argument(
        "--force", action="store_true", help="stop the endpoint first if it runs"
    )
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
    if (endpoint_dir(args.name) / CONFIG_FILE).exists():
        raise ConfigurationError(
            f"endpoint {args.name!r} is already configured; "
            f"remove it first with: proxystore-endpoint remove {args.name}"
        )
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "signaling_server": args.server,
        "secret": args.secret,
        "max_memory": args.max_memory,
        # Relative to where `configure` ran, not to where `start` will run.
        "spill_dir": os.path.abspath(args.spill_dir) if args.spill_dir else None,
        "fast_path": not args.no_fast_path,
    }
    if args.max_object_size is not None:
        options["max_object_size"] = args.max_object_size
    if args.peer_timeout is not None:
        options["peer_timeout"] = args.peer_timeout
    config = new_config(args.name, **options)
    path = write_config(config)
    print(
        f"configured endpoint {config.name} ({config.uuid}) "
        f"at {config.host}:{config.port}; config in {path}"
    )
    return 0


def _setup_logging(name: str, level: str) -> None:
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    file_handler = logging.FileHandler(endpoint_dir(name) / LOG_FILE)
    stream_handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    for handler in (file_handler, stream_handler):
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level.upper())


async def _run(config: EndpointConfig) -> None:
    from proxystore.endpoint.server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(config, stop)


def _start(args: argparse.Namespace) -> int:
    config = read_config(args.name)
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
        asyncio.run(_run(config))
    except OSError as err:
        logger.error("endpoint %s could not start: %s", config.name, err)
        return 1
    finally:
        release_pid_file(config.name)
    logger.info("endpoint %s stopped", config.name)
    return 0


def _answers(config: EndpointConfig, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(f"{config.url}/endpoint", timeout=timeout) as r:
            data = json.loads(r.read())
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return isinstance(data, dict) and data.get("uuid") == config.uuid


def _start_detached(config: EndpointConfig, timeout: float, log_level: str) -> int:
    if read_pid(config.name) is not None:
        print(f"endpoint {config.name} is already running", file=sys.stderr)
        return 1
    command = [sys.executable, "-m", "proxystore.endpoint.cli", "start", config.name]
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
                f"endpoint {config.name} exited with code {process.returncode}; "
                f"see {endpoint_dir(config.name) / LOG_FILE}",
                file=sys.stderr,
            )
            return 1
        if _answers(config, timeout=1.0):
            print(f"endpoint {config.name} running at {config.url} (pid {process.pid})")
            return 0
        time.sleep(0.05)
    print(
        f"endpoint {config.name} did not answer at {config.url} within {timeout:g}s",
        file=sys.stderr,
    )
    return 1


def _stop(args: argparse.Namespace) -> int:
    config = read_config(args.name)
    pid = read_pid(config.name)
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


def _list(args: argparse.Namespace) -> int:
    configs = list_configs()
    if not configs:
        print("no endpoints configured")
        return 0
    rows = [("NAME", "UUID", "ADDRESS", "STATUS")]
    for config in configs:
        pid = read_pid(config.name)
        status = f"running (pid {pid})" if pid is not None else "stopped"
        rows.append((config.name, config.uuid, f"{config.host}:{config.port}", status))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(3)]
        print("  ".join([*cells, row[3]]))
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
    "list": _list,
    "remove": _remove,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``proxystore-endpoint`` command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit code: 0 on success, 1 on a reported failure.
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
