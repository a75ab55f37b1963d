"""An *emulator* of a UDP middlebox that routes QUIC on the SNI of the first Initial only (``quic-multi-initial``).

What it imitates: QUIC-aware load balancers and firewalls whose parser reads the ClientHello out of the
first Initial packet of a flow (RFC 9001 §5.2 lets anyone derive the Initial keys), as deployed before
browsers split post-quantum hellos over two Initials. When the first datagram holds the whole ClientHello
with a known server_name, the flow is routed to the backend and every later datagram, both ways, is
relayed; when it does not (a hello split over two Initials, or the second one arriving first), the flow
is dropped without a word, and the client, a browser, falls back to TCP.

A flow is the client's address and port. Bounded: at most ``MAX_FLOWS`` flows (the oldest forgotten), a
flow quiet for ``FLOW_IDLE`` seconds is forgotten, datagrams up to 64 KiB. ``stop()`` joins its thread.
``python -m pqproxy.lab.quic_router --listen H:P --backend H:P --name good.test`` runs it as a process.
"""

from __future__ import annotations

import argparse
import json
import selectors
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from ..quic.initial import contiguous, read_client_initial
from .emulators import server_name_in

MAX_FLOWS = 1024
FLOW_IDLE = 30.0
RECEIVE = 65536


@dataclass
class _Flow:
    client: tuple[str, int]
    upstream: socket.socket | None  # None: dropped
    last: float


class FirstInitialRouter:
    name = "quic-first-initial"
    imitates = "a UDP load balancer that reads the ClientHello from the first QUIC Initial only"

    def __init__(self, backend: tuple[str, int], names: tuple[str, ...], *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.backend = backend
        self.names = names
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.port: int = self.sock.getsockname()[1]
        self.flows: OrderedDict[tuple[str, int], _Flow] = OrderedDict()
        self.decisions: list[str] = []
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.sock, selectors.EVENT_READ, None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-{self.port}", daemon=True)
        self._thread.start()

    def __enter__(self) -> FirstInitialRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for flow in self.flows.values():
            if flow.upstream is not None:
                flow.upstream.close()
        self._selector.close()
        self.sock.close()

    def count(self, prefix: str) -> int:
        with self._lock:
            return sum(1 for d in self.decisions if d.startswith(prefix))

    def _note(self, text: str) -> None:
        with self._lock:
            self.decisions.append(text)
            del self.decisions[:-1000]

    def decide(self, datagram: bytes) -> tuple[bool, str]:
        """Route this flow? Judged on its first datagram alone."""
        initial = read_client_initial(datagram)
        if initial is None:
            return False, "drop: the first datagram is no readable QUIC Initial"
        hello = contiguous(initial.crypto)
        if len(hello) < 4 or len(hello) < 4 + int.from_bytes(hello[1:4], "big"):
            return False, f"drop: the first Initial holds {len(hello)} bytes of the ClientHello, not all of it"
        name = server_name_in(hello)
        if name not in self.names:
            return False, f"drop: server_name {name!r} is not routed here"
        return True, f"route: server_name {name} in the first Initial"

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                try:
                    if key.data is None:
                        data, client = self.sock.recvfrom(RECEIVE)
                        self._from_client(data, client)
                    else:
                        flow: _Flow = key.data
                        data = key.fileobj.recv(RECEIVE)  # type: ignore[union-attr]
                        flow.last = time.monotonic()
                        self.sock.sendto(data, flow.client)
                except OSError:
                    continue
            self._expire()

    def _from_client(self, data: bytes, client: tuple[str, int]) -> None:
        flow = self.flows.get(client)
        now = time.monotonic()
        if flow is None:
            route, why = self.decide(data)
            self._note(why)
            upstream = None
            if route:
                upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                upstream.connect(self.backend)
            flow = self.flows[client] = _Flow(client, upstream, now)
            if upstream is not None:
                self._selector.register(upstream, selectors.EVENT_READ, flow)
            while len(self.flows) > MAX_FLOWS:
                self._forget(next(iter(self.flows)))
        flow.last = now
        self.flows.move_to_end(client)
        if flow.upstream is not None:
            flow.upstream.send(data)

    def _forget(self, client: tuple[str, int]) -> None:
        flow = self.flows.pop(client)
        if flow.upstream is not None:
            self._selector.unregister(flow.upstream)
            flow.upstream.close()

    def _expire(self) -> None:
        now = time.monotonic()
        for client in [c for c, f in self.flows.items() if now - f.last > FLOW_IDLE]:
            self._forget(client)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pqproxy.lab.quic_router", description=__doc__.splitlines()[0])
    p.add_argument("--listen", required=True)
    p.add_argument("--backend", required=True)
    p.add_argument("--name", action="append", required=True, help="a server_name routed to the backend")
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    bhost, _, bport = args.backend.rpartition(":")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    router = FirstInitialRouter((bhost, int(bport)), tuple(args.name), host=host, port=int(port))
    print(json.dumps({"event": "ready", "emulator": router.name, "listen": args.listen}), flush=True)
    seen = 0
    try:
        while not stop.wait(0.5):
            with router._lock:
                new = router.decisions[seen:] if seen <= len(router.decisions) else router.decisions[:]
                seen = len(router.decisions)
            for decision in new:
                print(json.dumps({"event": "decision", "emulator": router.name, "decision": decision}), flush=True)
    finally:
        router.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
