"""The lab's scenarios: one path each, the gear on it, and the diagnoses ``pqproxy probe`` must give.

A scenario is what a user would point the probe at: a target (and, for Squid, an HTTP proxy), and the
truth about that path. ``kind`` says how trustworthy the truth is: ``real`` gear (its behaviour is the
product's own, found by the probe), an ``emulator`` of a reported behaviour (REFERENCE.md §3), or a
``path`` property built from kernel routing and firewall rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import services as s
from .topology import MIDDLEBOX, ROUTER1, SERVER, SERVER_BLACKHOLE, SERVER_CLAMPED


@dataclass(frozen=True)
class Scenario:
    id: str
    kind: str  # "real", "emulator", "path"
    gear: str  # what is on the path, in words
    target: str  # host:port the probe connects to
    expected: frozenset[str]  # the diagnoses, exactly
    service: str  # the lab service it needs
    hop: str | None = None  # pmtu-blackhole: the last hop that still passed the large segment
    proxy: str | None = None  # HTTP CONNECT proxy in front of the target
    slow: bool = False  # many probes die silently (each waits for the timeout): start these first
    quic: bool = False  # probe with --quic (the quic suite) instead of the TCP suite


def _s(*ids: str) -> frozenset[str]:
    return frozenset(ids)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("clean-pqproxy", "real", "pqproxy server, no middlebox", f"{SERVER}:{s.GOOD}", _s(), "pqproxy-server"),
    Scenario("clean-node", "real", "Node.js 26 (OpenSSL 3.5) server, no middlebox", f"{SERVER}:{s.NODE}", _s(),
             "node"),
    Scenario("haproxy-sni", "real", "HAProxy 2.6 req.ssl_sni routing, no tcp-request content rule",
             f"{MIDDLEBOX}:{s.HAPROXY}", _s("split-segments", "multi-record"), "haproxy"),
    Scenario("haproxy-inspect", "real", "HAProxy 2.6 req.ssl_sni with inspect-delay + req.ssl_hello_type",
             f"{MIDDLEBOX}:{s.HAPROXY_INSPECT}", _s("multi-record"), "haproxy-inspect"),
    Scenario("nginx-preread", "real", "nginx 1.22 stream ssl_preread SNI routing", f"{MIDDLEBOX}:{s.NGINX}", _s(),
             "nginx"),
    Scenario("squid-peek-splice", "real", "Squid 5.7 ssl_bump peek at step 1, then splice (HTTP CONNECT)",
             f"{SERVER}:{s.GOOD}", _s("multi-record"), "squid", proxy=f"{MIDDLEBOX}:{s.SQUID}"),
    Scenario("early-verdict", "emulator", "IPS judging the first segment (NFQUEUE; AWS NFW on Suricata 6.0.9)",
             f"{SERVER}:{s.EARLY_VERDICT}", _s("early-verdict"), "early-verdict", slow=True),
    Scenario("sni-offset", "emulator", "SNI router with a 1024-byte peek buffer", f"{MIDDLEBOX}:{s.SNI_OFFSET}",
             _s("sni-offset"), "emulators"),
    Scenario("tiny-first-segment", "emulator", "box needing 8 bytes in the first fragment (F5 K53322151)",
             f"{MIDDLEBOX}:{s.TINY_FIRST}", _s("tiny-first-segment"), "emulators"),
    Scenario("codepoint", "emulator", "TLS interceptor answering 0x11EC with illegal_parameter (FortiGate flow mode)",
             f"{MIDDLEBOX}:{s.CODEPOINT}", _s("codepoint"), "emulators"),
    Scenario("sigalg-codepoint", "emulator", "IPS resetting hellos that name ML-DSA signature schemes (Go 1.27, 2026)",
             f"{MIDDLEBOX}:{s.SIGALG}", _s("sigalg-codepoint"), "emulators"),
    Scenario("size-threshold", "emulator", f"hard cap of {s.SIZE_LIMIT} bytes on the hello's record",
             f"{MIDDLEBOX}:{s.SIZE_THRESHOLD}", _s("size-threshold"), "emulators"),
    Scenario("size-threshold-silent", "emulator",
             f"the same cap at {s.SILENT_LIMIT} bytes, holding larger hellos silently (no answer, no close)",
             f"{MIDDLEBOX}:{s.SIZE_SILENT}", _s("size-threshold"), "emulators", slow=True),
    Scenario("lossy", "emulator", f"a box dropping {s.LOSS:.0%} of connections silently, whatever they carry",
             f"{MIDDLEBOX}:{s.LOSSY}", _s(), "emulators", slow=True),
    Scenario("hrr", "emulator", "box dropping the second ClientHello after a HelloRetryRequest",
             f"{MIDDLEBOX}:{s.HRR}", _s("hrr"), "emulators", slow=True),
    Scenario("pmtu-blackhole", "path", "MTU 1000 tunnel between router1 and router2, ICMP frag-needed dropped",
             f"{SERVER_BLACKHOLE}:{s.GOOD}", _s("pmtu-blackhole"), "pqproxy-server", hop=ROUTER1, slow=True),
    Scenario("pmtu-clamped", "path", "the same tunnel with MSS clamping on router1", f"{SERVER_CLAMPED}:{s.GOOD}",
             _s(), "pqproxy-server"),
    Scenario("quic-clean", "real", "aioquic's QUIC server, no middlebox (UDP)", f"{SERVER}:{s.QUIC_SERVER}", _s(),
             "quic-server", quic=True),
    Scenario("quic-first-initial", "emulator", "UDP router reading the ClientHello from the first Initial only",
             f"{MIDDLEBOX}:{s.QUIC_ROUTER}", _s("quic-multi-initial"), "quic-router", quic=True, slow=True),
)

BY_ID = {scenario.id: scenario for scenario in SCENARIOS}
