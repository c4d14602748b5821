"""An endpoint's peer manager in its own process, driven by test_killed_peer.py.

Prints READY once registered and SENDING when it starts answering a "big"
request, then serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from proxystore.p2p import PeerManager, PeerMessage


async def handler(peer: str, request: PeerMessage) -> PeerMessage:
    if request.header.get("op") == "big":
        print("SENDING", flush=True)
        return PeerMessage({"op": "big"}, bytes(request.header["size"]))
    return PeerMessage({"pong": request.header, "pid": os.getpid()}, request.body)


async def run(args: argparse.Namespace) -> None:
    manager = PeerManager(
        args.uuid,
        "child",
        args.url,
        args.secret,
        handler,
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
    parser.add_argument("--uuid", required=True)
    parser.add_argument("--secret", required=True)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
