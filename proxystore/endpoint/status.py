"""``proxystore-endpoint status``: ask a running endpoint how it is doing.

The status comes from the endpoint's ``GET /endpoint/status``
(`proxystore.endpoint.server`), asked with the endpoint's API token, and is
printed for a person (`format_status`) or as JSON.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from proxystore.endpoint.config import EndpointConfig, endpoint_dir
from proxystore.endpoint.credentials import (
    authorization_header,
    read_api_token,
    token_path,
)

EXIT_RUNNING = 0
"""The endpoint answered; its status was printed."""
EXIT_ERROR = 1
"""No endpoint of that name, or its configuration or token is unreadable."""
EXIT_NOT_RUNNING = 3
"""The endpoint is not running (a stale pid file is removed and said so)."""
EXIT_NO_ANSWER = 4
"""The endpoint runs but did not answer within the timeout."""
EXIT_TOKEN_REFUSED = 5
"""The endpoint refused the token in its ``api-token`` file (rotated since
it started: restart it)."""


class StatusUnavailable(Exception):
    """The endpoint's status could not be read; ``code`` is the exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def fetch_status(config: EndpointConfig, timeout: float) -> dict[str, Any]:
    """Return the running endpoint's ``GET /endpoint/status``.

    Raises:
        ConfigurationError: If the endpoint's API token file is unusable.
        StatusUnavailable: If the endpoint does not answer within
            ``timeout`` seconds, answers as another endpoint, or refuses
            the token.
    """
    path = token_path(endpoint_dir(config.name))
    token = read_api_token(path)
    request = urllib.request.Request(
        f"{config.url}/endpoint/status",
        headers={"Authorization": authorization_header(token)},
    )
    where = f"endpoint {config.name} at {config.url}"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = json.loads(response.read())
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise StatusUnavailable(
                EXIT_TOKEN_REFUSED,
                f"{where} refused the API token in {path} (HTTP {err.code}); "
                "was it rotated since the endpoint started? restart the endpoint",
            ) from None
        raise StatusUnavailable(
            EXIT_NO_ANSWER, f"{where} answered HTTP {err.code} to its status request"
        ) from None
    except TimeoutError:
        raise StatusUnavailable(
            EXIT_NO_ANSWER, f"{where} did not answer within {timeout:g}s"
        ) from None
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, TimeoutError):
            reason = f"no answer within {timeout:g}s"
        raise StatusUnavailable(
            EXIT_NO_ANSWER, f"{where} did not answer: {reason}"
        ) from None
    if not isinstance(data, dict) or data.get("uuid") != config.uuid:
        raise StatusUnavailable(
            EXIT_NO_ANSWER,
            f"{where}: the process answering there is not this endpoint "
            f"(uuid {data.get('uuid') if isinstance(data, dict) else None!r})",
        )
    return data


def _bytes(value: int | None) -> str:
    if value is None:
        return "no limit"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{u}" for n, u in parts if n] or ["0s"]
    return "".join(shown[:2])


def format_status(config: EndpointConfig, pid: int, data: dict[str, Any]) -> str:
    """Return the status ``data`` of ``config``'s endpoint for a person to read."""
    storage = data.get("storage", {})
    lines = [
        f"endpoint {config.name} ({config.uuid}) running, pid {pid}, "
        f"up {_duration(float(data.get('uptime', 0)))}",
        f"  api        {config.url}",
        f"  objects    {storage.get('objects', 0)}",
        f"  memory     {storage.get('memory_objects', 0)} objects, "
        f"{_bytes(storage.get('memory_bytes', 0))} of "
        f"{_bytes(storage.get('max_memory'))}",
    ]
    if storage.get("spill_dir") is None:
        lines.append("  spill      none")
    else:
        lines.append(
            f"  {'disk' if storage.get('persist') else 'spill':<10} "
            f"{storage.get('spill_objects', 0)} objects, "
            f"{_bytes(storage.get('spill_bytes', 0))} of "
            f"{_bytes(storage.get('max_spill'))} in {storage['spill_dir']}"
        )
    if "persist" in storage:
        persist = storage["persist"]
        lines.append(
            "  persist    " + ("on: objects survive a restart" if persist else "off")
        )
    lines.append(
        f"  requests   {data.get('requests_in_flight', 0)} in flight, "
        f"{data.get('waiting', 0)} waiting for an object"
    )
    state = data.get("signaling_state", "off")
    signaling = state if state == "off" else f"{state} ({config.signaling_server})"
    if data.get("signaling_error"):
        signaling += f": {data['signaling_error']}"
    lines.append(f"  signaling  {signaling}")
    fast = data.get("fast_path")
    if fast is not None:
        lines.append(
            f"  fast path  {fast.get('pending_offers', 0)} fetches offered and "
            f"pending, {fast.get('pending_channel_offers', 0)} channel offers "
            f"pending, {fast.get('served', 0)} served, "
            f"{fast.get('refused', 0)} connections refused"
        )
    peers: dict[str, dict[str, Any]] = data.get("peers") or {}
    lines.append(f"  peers      {len(peers)} connected")
    for uuid, stats in sorted(peers.items()):
        channel = "open" if stats.get("request_channel") else "closed"
        lines.append(
            f"    {uuid}  request channel {channel}, requests sent "
            f"{stats.get('requests_over_channel', 0)} over it and "
            f"{stats.get('requests_over_data_channel', 0)} over the data "
            f"channel, served {stats.get('served_over_channel', 0)} + "
            f"{stats.get('served_over_data_channel', 0)}"
        )
    return "\n".join(lines)
