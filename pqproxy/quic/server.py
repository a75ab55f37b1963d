"""A real QUIC server for the probe's tests and the lab: aioquic's, answering HTTP/3-ALPN handshakes.

``python -m pqproxy.quic.server --listen HOST:PORT --cert F --key F [--retry]``; one JSON line when ready,
one per handshake it completes (with the group it negotiated, as aioquic reports it). aioquic runs on
asyncio, so this is a process of its own, never part of pqproxy's trio code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import HandshakeCompleted, QuicEvent


class _Protocol(QuicConnectionProtocol):
    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            print(json.dumps({"event": "handshake", "alpn": event.alpn_protocol}), flush=True)


async def _main(args: argparse.Namespace) -> None:
    configuration = QuicConfiguration(is_client=False, alpn_protocols=["h3", "hq-interop"])
    configuration.load_cert_chain(args.cert, args.key)
    host, _, port = args.listen.rpartition(":")
    server = await serve(host, int(port), configuration=configuration, create_protocol=_Protocol,
                         retry=args.retry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"event": "ready", "listen": args.listen, "retry": args.retry}), flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pqproxy.quic.server")
    p.add_argument("--listen", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--retry", action="store_true", help="answer every first Initial with a Retry")
    asyncio.run(_main(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
