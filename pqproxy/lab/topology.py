"""The lab's network: five namespaces joined by veth links, 198.18.0.0/15 addresses only.

::

    client --- router1 ===== router2 --- middlebox --- server
    .1.1    .1.2   .2.1  wide  .2.2   .3.1   .3.2   .4.1   .4.2  (+ .5.2, .6.2)
                   .12.1 narrow .12.2
                  (MTU 1000)

Every link is a /24 of 198.18.0.0/15 (``198.18.N.0/24``, N as drawn). Between router1 and router2 there
are two links: the *wide* one (MTU 1500) that carries all traffic back to the client and everything to
198.18.3-4.x, and a *narrow* one (MTU 1000, a tunnel in the middle of the path) that carries
client->server traffic to the server's two other addresses:

- 198.18.5.2, the **PMTU black hole**: router1 must drop full-size segments there (they do not fit the
  narrow link, and DF is set) and its ICMP "fragmentation needed" is dropped on the way out, so neither
  end learns the MTU. Both ends advertise MSS 1460; the client's large segments die silently at router1.
- 198.18.6.2, the same tunnel with **MSS clamping** on router1 (the usual fix: SYN and SYN-ACK MSS
  lowered to the tunnel's MTU - 40), so that no segment is too large: a clean path.

The middlebox namespace is a router for traffic to the server (where an NFQUEUE rule feeds the
early-verdict emulator) and the host of the proxying gear (HAProxy, nginx, Squid, socket emulators),
which listens on 198.18.3.2 and connects to the server's backends at 198.18.4.2.

``build`` makes all of it in a ``Lab``; deleting the namespaces removes every link, route and firewall
rule with them (nothing is added to the host's own network).
"""

from __future__ import annotations

from dataclasses import dataclass

from .netns import Lab

ROLES = ("client", "router1", "router2", "middlebox", "server")

CLIENT = "198.18.1.1"
ROUTER1 = "198.18.1.2"  # router1's client side: the first hop, and the hop of the black hole
ROUTER1_WIDE, ROUTER2_WIDE = "198.18.2.1", "198.18.2.2"
ROUTER1_NARROW, ROUTER2_NARROW = "198.18.12.1", "198.18.12.2"
ROUTER2_MIDDLEBOX, MIDDLEBOX = "198.18.3.1", "198.18.3.2"
MIDDLEBOX_SERVER, SERVER = "198.18.4.1", "198.18.4.2"
SERVER_BLACKHOLE = "198.18.5.2"  # reached through the narrow link, ICMP dropped
SERVER_CLAMPED = "198.18.6.2"  # reached through the narrow link, MSS clamped

NARROW_MTU = 1000
CLAMPED_MSS = NARROW_MTU - 40  # IPv4 and TCP headers without options
EARLY_VERDICT_QUEUE = 0


@dataclass(frozen=True)
class Namespaces:
    client: str
    router1: str
    router2: str
    middlebox: str
    server: str

    @classmethod
    def named(cls, prefix: str) -> Namespaces:
        return cls(*(f"{prefix}-{role}" for role in ROLES))

    @property
    def prefix(self) -> str:
        """The lab's name (the namespaces are ``<prefix>-<role>``)."""
        return self.client.removesuffix("-client")

    def all(self) -> tuple[str, ...]:
        return (self.client, self.router1, self.router2, self.middlebox, self.server)


def build(lab: Lab, *, early_verdict_port: int) -> Namespaces:
    """The namespaces, links, addresses, routes and firewall rules of the lab."""
    ns = Namespaces(*(lab.ns(role) for role in ROLES))
    lab.link(ns.client, "c0", f"{CLIENT}/24", ns.router1, "r1c", f"{ROUTER1}/24")
    lab.link(ns.router1, "r1w", f"{ROUTER1_WIDE}/24", ns.router2, "r2w", f"{ROUTER2_WIDE}/24")
    lab.link(ns.router1, "r1n", f"{ROUTER1_NARROW}/24", ns.router2, "r2n", f"{ROUTER2_NARROW}/24", mtu=NARROW_MTU)
    lab.link(ns.router2, "r2m", f"{ROUTER2_MIDDLEBOX}/24", ns.middlebox, "m0", f"{MIDDLEBOX}/24")
    lab.link(ns.middlebox, "m1", f"{MIDDLEBOX_SERVER}/24", ns.server, "s0", f"{SERVER}/24")
    for extra in (SERVER_BLACKHOLE, SERVER_CLAMPED):
        lab.run(ns.server, ["ip", "addr", "add", f"{extra}/32", "dev", "s0"])

    lab.route(ns.client, "default", ROUTER1)
    for dest in ("198.18.3.0/24", "198.18.4.0/24"):
        lab.route(ns.router1, dest, ROUTER2_WIDE)
    for dest in ("198.18.5.0/24", "198.18.6.0/24"):
        lab.route(ns.router1, dest, ROUTER2_NARROW)
    lab.route(ns.router2, "198.18.1.0/24", ROUTER1_WIDE)
    for dest in ("198.18.4.0/24", "198.18.5.0/24", "198.18.6.0/24"):
        lab.route(ns.router2, dest, MIDDLEBOX)
    lab.route(ns.middlebox, "default", ROUTER2_MIDDLEBOX)
    for dest in ("198.18.5.0/24", "198.18.6.0/24"):
        lab.route(ns.middlebox, dest, SERVER)
    lab.route(ns.server, "default", MIDDLEBOX_SERVER)
    for router in (ns.router1, ns.router2, ns.middlebox):
        lab.forward(router)

    # router1: the black hole (its "fragmentation needed" never leaves) and the clamp for the other tunnel.
    lab.nft(ns.router1, f"""add table inet lab
add chain inet lab output {{ type filter hook output priority 0 ; }}
add rule inet lab output icmp type destination-unreachable icmp code frag-needed drop
add chain inet lab forward {{ type filter hook forward priority mangle ; }}
add rule inet lab forward ip daddr {SERVER_CLAMPED} tcp flags syn tcp option maxseg size set {CLAMPED_MSS}
add rule inet lab forward ip saddr {SERVER_CLAMPED} tcp flags syn tcp option maxseg size set {CLAMPED_MSS}
""")
    # middlebox: the forwarded client->server packets of one port go to the early-verdict emulator.
    lab.run(ns.middlebox, ["iptables-legacy", "-A", "FORWARD", "-p", "tcp", "-d", SERVER, "--dport",
                           str(early_verdict_port), "-j", "NFQUEUE", "--queue-num", str(EARLY_VERDICT_QUEUE)])
    return ns
