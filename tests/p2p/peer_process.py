"""An endpoint's peer manager in its own process, driven by test_killed_peer.py.

Its identity is read from ``--identity-dir`` and the signaling secret from
``$PROXYSTORE_SIGNALING_SECRET``. Prints READY once registered and SENDING
when it starts answering a "big" request, then serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from proxystore.endpoint.identity import read_identity
from proxystore.endpoint.peers import PeerAllowlist
from proxystore.p2p import PeerManager, PeerMessage
from proxystore.p2p.signaling import read_secret


async def handler(peer: str, request: PeerMessage) -> PeerMessage:
    if request.header.get("op") == "big":
        print("SENDING", flush=True)
        return PeerMessage({"op": "big"}, bytes(request.header["size"]))
    return PeerMessage({"pong": request.header, "pid": os.getpid()}, request.body)


async def run(args: argparse.Namespace) -> None:
    manager = PeerManager(
        read_identity(Path(args.identity_dir)),
        "child",
        args.url,
        read_secret(None),
        handler,
        allow=PeerAllowlist.any(),
        timeout=10.0,
        fast_path=False,
        reconnect_max_delay=0.5,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with manager:
        if not await manager.wait_for_signaling(10.0):
            raise SystemExit("could not register with the signaling server")
        print("READY", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--identity-dir", required=True)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
