"""An *emulator* of an IPS whose rule fires before TCP reassembly (``early-verdict``, REFERENCE.md §3).

What it imitates: AWS Network Firewall on Suricata 6.0.9, which judged a TLS flow on its first data
segment. A ClientHello that does not fit in that segment (every post-quantum hello on a 1500-byte path)
left the rule without an SNI to match, and the flow was dropped silently: no RST, no alert, the client
times out. A classical hello fits in one segment and passes; if the server then asks for a post-quantum
share (HelloRetryRequest), the second, large hello passes too, because the flow was already judged.

How: the lab's middlebox namespace is a router, and an iptables rule sends the forwarded client->server
packets of one port to NFQUEUE (nf_tables' own ``queue`` expression is not in every kernel; the xtables
NFQUEUE target is, and ``iptables-legacy`` reaches it). This process takes each packet from the queue
with ``fnfqueue`` and gives the verdict:

- packets without payload (SYN, ACK, FIN) of a flow not condemned: accept;
- the first payload of a flow is judged: if it starts a TLS handshake record that announces at least
  ``large`` bytes and does not hold the whole record, the flow is condemned; otherwise it passes for good;
- what is judged is at most ``segment`` bytes of that payload, the first segment as an Ethernet path carries
  it (1500 - 20 IP - 20 TCP - 12 timestamps = 1448). The lab's veths pass the sender's GSO super-packets
  unsplit, so the queue can hold a whole 1.6 KB hello in one "packet" that the wire would have cut: judging
  it whole let every post-quantum hello through now and then, when the sender's TCP built one such packet;
- every packet of a condemned flow is dropped, retransmissions included.

Bounded: at most ``MAX_FLOWS`` flows are remembered (the oldest are forgotten first) and a flow idle for
``FLOW_IDLE`` seconds is forgotten. Only IPv4 TCP is judged; anything else is accepted.
"""

from __future__ import annotations

import argparse
import json
import signal
import struct
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

MAX_FLOWS = 4096  # flows remembered at once; a lab probe run opens a few hundred
FLOW_IDLE = 120.0  # seconds after which a quiet flow is forgotten
LARGE = 1024  # a handshake record at least this long, cut by the segment end, is "suspicious"
SEGMENT = 1448  # the first segment on an Ethernet (MTU 1500) path with TCP timestamps
RECORD_HEADER = 5
HANDSHAKE = 22
PASS = "pass"
CONDEMNED = "condemned"

Flow = tuple[bytes, int, bytes, int]  # source address, source port, destination address, destination port


@dataclass
class Verdict:
    accept: bool
    flow: Flow | None = None
    note: str = ""  # set when the verdict is news (a flow judged), for the log


def _ip(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


class EarlyVerdict:
    """The policy, sans-IO: ``judge(packet)`` for one IPv4 packet, with the clock given by the caller."""

    def __init__(self, large: int = LARGE, segment: int = SEGMENT) -> None:
        self.large = large
        self.segment = segment
        self.flows: OrderedDict[Flow, tuple[str, float]] = OrderedDict()
        self.judged = {PASS: 0, CONDEMNED: 0}

    def judge(self, packet: bytes, now: float) -> Verdict:
        view = memoryview(packet)
        if len(view) < 20 or view[0] >> 4 != 4 or view[9] != 6:  # not IPv4 TCP
            return Verdict(True)
        ihl = (view[0] & 0x0F) * 4
        total = min(struct.unpack_from("!H", view, 2)[0], len(view))
        if total < ihl + 20:
            return Verdict(True)
        sport, dport = struct.unpack_from("!HH", view, ihl)
        data_offset = (view[ihl + 12] >> 4) * 4
        flow: Flow = (bytes(view[12:16]), sport, bytes(view[16:20]), dport)
        payload = view[ihl + data_offset : total]
        state = self._state(flow, now)
        if state == CONDEMNED:
            return Verdict(False, flow)
        if state == PASS or not len(payload):
            return Verdict(True, flow)
        return self._first_payload(flow, payload, now)

    def _state(self, flow: Flow, now: float) -> str | None:
        entry = self.flows.get(flow)
        if entry is None:
            return None
        if now - entry[1] > FLOW_IDLE:
            del self.flows[flow]
            return None
        self.flows[flow] = (entry[0], now)
        self.flows.move_to_end(flow)
        return entry[0]

    def _first_payload(self, flow: Flow, payload: memoryview, now: float) -> Verdict:
        carried = len(payload)
        payload = payload[: self.segment]  # the first wire segment, even of a GSO super-packet
        cut = f" (of a {carried}-byte payload)" if carried > len(payload) else ""
        state, note = PASS, f"first segment of {len(payload)} bytes{cut}: nothing to judge"
        if len(payload) >= RECORD_HEADER and payload[0] == HANDSHAKE:
            length = struct.unpack_from("!H", payload, 3)[0]
            whole = len(payload) >= RECORD_HEADER + length
            note = f"first segment of {len(payload)} bytes{cut} of a {length}-byte handshake record"
            if not whole and length >= self.large:
                state = CONDEMNED
        self.flows[flow] = (state, now)
        while len(self.flows) > MAX_FLOWS:
            self.flows.popitem(last=False)
        self.judged[state] += 1
        return Verdict(state == PASS, flow, f"{'drop' if state == CONDEMNED else 'accept'}: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pqproxy.lab.nfqueue",
                                     description="early-verdict IPS emulator on an NFQUEUE (root, in a namespace)")
    parser.add_argument("--queue", type=int, default=0, help="NFQUEUE number the iptables rule sends to")
    parser.add_argument("--large", type=int, default=LARGE, help="record length that makes a cut hello suspicious")
    parser.add_argument("--segment", type=int, default=SEGMENT,
                        help="bytes of the first payload judged: the first segment on the emulated path")
    args = parser.parse_args(argv)
    try:
        import fnfqueue
    except ImportError:
        print("the early-verdict emulator needs fnfqueue (pip install fnfqueue)", file=sys.stderr)
        return 2
    policy = EarlyVerdict(args.large, args.segment)
    try:
        conn = fnfqueue.Connection()
        queue = conn.bind(args.queue)
        queue.set_mode(0xFFFF, fnfqueue.COPY_PACKET)
    except OSError as exc:
        print(f"cannot bind NFQUEUE {args.queue}: {exc} (root, and a kernel with nfnetlink_queue, are needed)",
              file=sys.stderr)
        return 2
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()
        conn.close()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    print(json.dumps({"event": "ready", "queue": args.queue, "large": args.large, "segment": args.segment}),
          flush=True)
    for packet in conn:
        verdict = policy.judge(packet.payload, time.monotonic())
        if verdict.accept:
            packet.accept()
        else:
            packet.drop()
        if verdict.note and verdict.flow is not None:
            src, sport, dst, dport = verdict.flow
            print(json.dumps({"event": "verdict", "flow": f"{_ip(src)}:{sport}->{_ip(dst)}:{dport}",
                              "decision": verdict.note}), flush=True)
        if stopping.is_set():
            break
    print(json.dumps({"event": "stopped", **policy.judged}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
