"""A QKD network: key managers at several sites, joined by QKD links, relaying keys through trusted nodes.

QKD links reach about 100 km; a backbone is a chain of them whose intermediate sites are *trusted nodes*
(ITU-T Y.3803 key relay, ETSI GS QKD 020 between key managers). ``pqproxy kme --topology net.toml`` runs one:

- ``[[site]] name, listen, saes``: each site's KME, its own ETSI GS QKD 014 endpoint over mutual TLS at its own
  address, with its own server certificate (``kme-<site>.pem``); an SAE talks only to its site's KME (any other
  answers 401).
- ``[[link]] a, b, length_km`` and the other keys of ``LinkParameters``: a QKD link, modelled as ``link.py`` does,
  whose secret bits fill a pool that both its ends share (``max_key_count`` keys at most).
- ``[[pair]] saes = [x, y], trusted_nodes_excluded = [...]``: sites a pair's keys must never pass through.

A key between SAEs at sites with no direct link is made at the master's site and relayed hop by hop along the
shortest path (by fibre length) over the links that are up: at each hop it travels one-time-pad encrypted with
that link's QKD key (``link_key_size`` bits of the link's pool per key bit: nothing is reused), and the next site
decrypts it: every intermediate site sees it in the clear (``trusted_nodes`` in the key's extension and in
``status``), and no other does. Only the slave's site keeps it, for its slave to fetch. A link whose QBER crosses
the abort threshold (the eavesdropper is set per link) carries nothing: keys take another path if there is one. A
hop without enough key, or no path at all, is 503 with the reason, as a link without key is in ``kme.py``.

One process hosts every site (as ``kme.py`` hosts both ends of one link), but each site keeps its own store of
keys for its own SAEs, and learns a relayed key only from the hop before it. Sans-IO: the caller gives the clock.
"""

from __future__ import annotations

import heapq
import itertools
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from . import etsi014
from .etsi014 import Key, KeyContainer, KeyRequest, Status
from .kme import MAX_KEY_SIZE, MIN_KEY_SIZE, PENDING_TTL, KMEFault, _b64, _Pending, requested_size
from .link import UP, Link, LinkParameters

MAX_SITES = 64
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)  # seconds
DRAW_WINDOW = 60.0  # seconds over which a pair's draw on a link is measured (status: what the route can sustain)
_LINK_KEYS = {f.name for f in fields(LinkParameters)}


class TopologyError(ValueError):
    pass


@dataclass(frozen=True)
class SiteSpec:
    name: str
    listen: tuple[str, int]
    saes: tuple[str, ...]


@dataclass(frozen=True)
class LinkSpec:
    a: str
    b: str
    parameters: LinkParameters

    @property
    def name(self) -> str:
        return f"{self.a}-{self.b}"


@dataclass(frozen=True)
class Topology:
    sites: tuple[SiteSpec, ...]
    links: tuple[LinkSpec, ...]
    excluded: Mapping[frozenset[str], frozenset[str]] = field(default_factory=dict)  # SAE pair -> sites
    key_size: int = 256
    max_key_count: int = 1000


def parse_topology(data: Mapping[str, Any], source: str = "topology") -> Topology:
    """A parsed TOML topology; TopologyError names what is wrong."""
    def fail(message: str) -> TopologyError:
        return TopologyError(f"{source}: {message}")

    unknown = set(data) - {"site", "link", "pair", "key_size", "max_key_count"}
    if unknown:
        raise fail(f"unknown key(s) {', '.join(sorted(unknown))}")
    sites: list[SiteSpec] = []
    for i, s in enumerate(data.get("site", [])):
        if not isinstance(s, dict) or set(s) - {"name", "listen", "saes"} or not {"name", "listen", "saes"} <= set(s):
            raise fail(f"site[{i}]: name, listen and saes are required, nothing else")
        host, _, port = str(s["listen"]).rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise fail(f"site {s['name']}: listen must be host:port")
        saes = s["saes"]
        if not isinstance(saes, list) or not all(isinstance(x, str) and x for x in saes):
            raise fail(f"site {s['name']}: saes must be a list of SAE IDs")
        sites.append(SiteSpec(str(s["name"]), (host.strip("[]"), int(port)), tuple(saes)))
    names = [s.name for s in sites]
    if not 2 <= len(sites) <= MAX_SITES or len(set(names)) != len(names):
        raise fail(f"2 to {MAX_SITES} sites with distinct names are needed")
    every_sae = [x for s in sites for x in s.saes]
    if len(set(every_sae)) != len(every_sae):
        raise fail("an SAE belongs to one site only")
    links: list[LinkSpec] = []
    for i, ln in enumerate(data.get("link", [])):
        if not isinstance(ln, dict) or not {"a", "b"} <= set(ln) or set(ln) - {"a", "b"} - _LINK_KEYS:
            raise fail(f"link[{i}]: a and b are required; the others are LinkParameters' "
                       f"({', '.join(sorted(_LINK_KEYS))})")
        if ln["a"] not in names or ln["b"] not in names or ln["a"] == ln["b"]:
            raise fail(f"link[{i}]: a and b must be two different sites")
        parameters = LinkParameters(**{k: float(v) for k, v in ln.items() if k in _LINK_KEYS})
        try:
            parameters.check()
        except ValueError as exc:
            raise fail(f"link {ln['a']}-{ln['b']}: {exc}") from None
        links.append(LinkSpec(ln["a"], ln["b"], parameters))
    if len({frozenset((ln.a, ln.b)) for ln in links}) != len(links):
        raise fail("two links join the same sites")
    excluded: dict[frozenset[str], frozenset[str]] = {}
    for i, p in enumerate(data.get("pair", [])):
        pair = p.get("saes") if isinstance(p, dict) else None
        if not isinstance(pair, list) or len(set(pair)) != 2 or not set(pair) <= set(every_sae) \
                or set(p) - {"saes", "trusted_nodes_excluded"}:
            raise fail(f"pair[{i}]: saes = [two SAEs of the sites], and trusted_nodes_excluded")
        out = p.get("trusted_nodes_excluded", [])
        if not isinstance(out, list) or not set(out) <= set(names):
            raise fail(f"pair[{i}]: trusted_nodes_excluded must name sites")
        excluded[frozenset(pair)] = frozenset(out)
    key_size = data.get("key_size", 256)
    if not isinstance(key_size, int) or key_size % 8 or not MIN_KEY_SIZE <= key_size <= MAX_KEY_SIZE:
        raise fail(f"key_size must be a multiple of 8 from {MIN_KEY_SIZE} to {MAX_KEY_SIZE}")
    max_key_count = data.get("max_key_count", 1000)
    if not isinstance(max_key_count, int) or not 1 <= max_key_count <= 10_000_000:
        raise fail("max_key_count must be 1..10000000")
    return Topology(tuple(sites), tuple(links), excluded, key_size, max_key_count)


class QKDLink:
    """One link's state: its physics (``Link``), its pool of secret bits, and who drew on it lately."""

    def __init__(self, spec: LinkSpec, now: float, cap_bits: float) -> None:
        self.spec = spec
        self.model = Link(spec.parameters, now)
        self.cap = cap_bits
        self.pool = cap_bits  # a link that has been running: full
        self.draws: deque[tuple[float, frozenset[str], int]] = deque()  # (when, SAE pair, bits)
        self.bits_used = 0

    def refill(self, now: float) -> None:
        self.pool = min(self.cap, self.pool + self.model.accrue(now))
        while self.draws and now - self.draws[0][0] > DRAW_WINDOW:
            self.draws.popleft()

    def up(self, now: float) -> bool:
        return self.model.read(now).state == UP

    def draw_bps(self, now: float, other_than: frozenset[str] | None = None) -> float:
        return sum(bits for when, pair, bits in self.draws if pair != other_than) / DRAW_WINDOW

    def take(self, bits: int, pair: frozenset[str], now: float) -> None:
        self.pool -= bits
        self.bits_used += bits
        self.draws.append((now, pair, bits))


@dataclass
class Site:
    spec: SiteSpec
    pending: OrderedDict[str, _Pending] = field(default_factory=OrderedDict)  # keys for this site's slaves
    relayed: int = 0  # keys this site saw in the clear as a trusted node (neither end)
    routes: dict[str, list[str]] = field(default_factory=dict)  # key_ID -> the route it came by (pending ones)


@dataclass
class PairStats:
    keys: int = 0  # delivered to masters
    bits: int = 0
    refused: int = 0  # 503s
    requests: int = 0


class Network:
    """Every site's key manager and every link, in one process, each site with its own store."""

    def __init__(self, topology: Topology, clock: Callable[[], float] = time.monotonic,
                 entropy: Callable[[int], bytes] | None = None) -> None:
        import os

        self.topology = topology
        self.clock = clock
        self.entropy = entropy or os.urandom
        now = clock()
        self.sites = {s.name: Site(s) for s in topology.sites}
        self.site_of = {sae: s.name for s in topology.sites for sae in s.saes}
        cap = float(topology.max_key_count * topology.key_size)
        self.links = {frozenset((ln.a, ln.b)): QKDLink(ln, now, cap) for ln in topology.links}
        self.pairs: dict[frozenset[str], PairStats] = {}
        # enc_keys served, by time taken: a histogram over LATENCY_BUCKETS (the metrics' key delivery latency)
        self.latency_counts = [0] * len(LATENCY_BUCKETS)
        self.latency_sum, self.latency_count = 0.0, 0

    # -- routing ------------------------------------------------------------------------------------------------

    def link(self, name: str) -> QKDLink:
        a, _, b = name.partition("-")
        found = self.links.get(frozenset((a, b)))
        if found is None:
            raise KeyError(f"no link {name!r}")
        return found

    def route(self, master: str, slave: str) -> list[str]:
        """The sites a key between these SAEs goes through, master's first: the shortest path by fibre length over
        the links that are up, avoiding the pair's excluded trusted nodes. KMEFault 503 when there is none."""
        now = self.clock()
        start, goal = self.site_of[master], self.site_of[slave]
        excluded = self.topology.excluded.get(frozenset((master, slave)), frozenset())
        if start in excluded or goal in excluded:
            raise KMEFault(503, f"the pair excludes its own site ({', '.join(sorted(excluded & {start, goal}))})")
        if start == goal:
            return [start]
        best: dict[str, float] = {start: 0.0}
        before: dict[str, str] = {}
        queue = [(0.0, start)]
        while queue:
            cost, site = heapq.heappop(queue)
            if site == goal:
                break
            if cost > best.get(site, float("inf")):
                continue
            for pair, ln in self.links.items():
                if site not in pair or not ln.up(now):
                    continue
                (other,) = pair - {site}
                if other in excluded:
                    continue
                step = cost + ln.spec.parameters.length_km
                if step < best.get(other, float("inf")):
                    best[other], before[other] = step, site
                    heapq.heappush(queue, (step, other))
        if goal not in best:
            down = sorted(ln.spec.name for ln in self.links.values() if not ln.up(now))
            why = f"no route from {start} to {goal} over links that are up"
            if excluded:
                why += f" avoiding {', '.join(sorted(excluded))}"
            if down:
                why += f" (down: {', '.join(down)})"
            raise KMEFault(503, why)
        path = [goal]
        while path[-1] != start:
            path.append(before[path[-1]])
        return path[::-1]

    def hops(self, path: Sequence[str]) -> list[QKDLink]:
        return [self.links[frozenset(h)] for h in itertools.pairwise(path)]

    # -- the ETSI GS QKD 014 operations, as the site of the caller runs them ---------------------------------

    def _check(self, caller: str, other: str) -> frozenset[str]:
        if other not in self.site_of:
            raise KMEFault(400, f"unknown SAE {other!r}")
        if caller == other:
            raise KMEFault(400, "an SAE cannot share keys with itself")
        return frozenset((caller, other))

    def _refill(self) -> float:
        now = self.clock()
        for ln in self.links.values():
            ln.refill(now)
        for site in self.sites.values():
            while site.pending:
                key_id, oldest = next(iter(site.pending.items()))
                if now - oldest.created <= PENDING_TTL:
                    break
                self._forget(site, key_id)
        return now

    @staticmethod
    def _forget(site: Site, key_id: str) -> None:
        entry = site.pending.pop(key_id)
        entry.material[:] = bytes(len(entry.material))
        site.routes.pop(key_id, None)

    def status(self, master: str, slave: str) -> Status:
        pair = self._check(master, slave)
        now = self._refill()
        size = self.topology.key_size
        try:
            path = self.route(master, slave)
            hops = self.hops(path)
            rate = min((max(0.0, ln.model.read(now).key_rate_bps - ln.draw_bps(now, pair)) for ln in hops),
                       default=float("inf"))
            stored = min((int(ln.pool // size) for ln in hops), default=self.topology.max_key_count)
            extension: dict[str, Any] = {
                "route": path, "trusted_nodes": path[1:-1],
                "route_key_rate_bps": round(rate, 1) if hops else None,
                "hops": [self._hop(ln, now) for ln in hops],
            }
        except KMEFault as fault:
            stored, extension = 0, {"route": None, "reason": str(fault)}
        return Status(
            source_KME_ID=f"KME_{self.site_of[master]}", target_KME_ID=f"KME_{self.site_of[slave]}",
            master_SAE_ID=master, slave_SAE_ID=slave, key_size=size, stored_key_count=stored,
            max_key_count=self.topology.max_key_count, max_key_per_request=etsi014.MAX_KEYS_PER_REQUEST,
            max_key_size=MAX_KEY_SIZE, min_key_size=MIN_KEY_SIZE, max_SAE_ID_count=0, status_extension=extension)

    @staticmethod
    def _hop(ln: QKDLink, now: float) -> dict[str, Any]:
        reading = ln.model.read(now)
        return {"link": ln.spec.name, "length_km": ln.spec.parameters.length_km, "qber": round(reading.qber, 6),
                "key_rate_bps": round(reading.key_rate_bps, 1), "link_state": reading.state,
                "eavesdropper": ln.model.eavesdropper, "stored_bits": int(ln.pool)}

    def enc_keys(self, master: str, slave: str, request: KeyRequest) -> KeyContainer:
        started = time.perf_counter()
        pair = self._check(master, slave)
        stats = self.pairs.setdefault(pair, PairStats())
        stats.requests += 1
        size = requested_size(request, self.topology.key_size)
        now = self._refill()
        try:
            path = self.route(master, slave)
            hops = self.hops(path)
            need = size * request.number
            for ln in hops:  # all or nothing: a key is never half relayed
                if ln.pool < need:
                    reading = ln.model.read(now)
                    raise KMEFault(503, f"no keys available on hop {ln.spec.name}", link_state=reading.state,
                                   qber=round(reading.qber, 6), stored_bits=int(ln.pool), route=path)
        except KMEFault:
            stats.refused += 1
            raise
        for ln in hops:
            ln.take(need, pair, now)
        keys = []
        for _ in range(request.number):
            key_id = str(uuid.UUID(bytes=self.entropy(16), version=4))
            material = bytearray(self.entropy(size // 8))
            self._relay(path, key_id, master, slave, material)
            keys.append(Key(key_ID=key_id, key=_b64(material),
                            key_extension={"route": path, "trusted_nodes": path[1:-1]}))
            material[:] = bytes(len(material))
        stats.keys += request.number
        stats.bits += need
        self._took(time.perf_counter() - started)
        return KeyContainer(keys=keys)

    def _took(self, seconds: float) -> None:
        self.latency_sum += seconds
        self.latency_count += 1
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.latency_counts[i] += 1
                break

    def _relay(self, path: list[str], key_id: str, master: str, slave: str, material: bytearray) -> None:
        """Hand the key from site to site: one-time-pad encrypted with each hop's link key (fresh bits of the
        link's pool, made here as QKD makes them: random), decrypted by the next site, which sees it; the last
        site keeps it for its slave. The pads are destroyed after their hop."""
        n = len(material)
        held = bytearray(material)
        for _here, there in itertools.pairwise(path):
            pad = bytearray(self.entropy(n))  # the link's QKD key for this hop, both ends have it
            wire = _xor(held, pad)  # what crosses the hop: ciphertext
            held[:] = bytes(n)
            held = bytearray(_xor(wire, pad))  # the next site decrypts
            pad[:] = bytes(n)
            if there != path[-1]:
                self.sites[there].relayed += 1  # a trusted node: it saw the key
        site = self.sites[path[-1]]
        site.pending[key_id] = _Pending(master, slave, held, self.clock())
        site.routes[key_id] = path
        while len(site.pending) > self.topology.max_key_count * max(1, len(self.site_of)):
            self._forget(site, next(iter(site.pending)))

    def dec_keys(self, slave: str, master: str, ids: Sequence[str]) -> KeyContainer:
        self._check(slave, master)
        self._refill()
        site = self.sites[self.site_of[slave]]
        for key_id in ids:
            entry = site.pending.get(key_id)
            if entry is None:
                raise KMEFault(400, "key_ID not found (unknown, expired, already delivered, or at another site)",
                               key_ID=key_id)
            if entry.slave != slave or entry.master != master:
                raise KMEFault(401, "this key_ID is not meant for this SAE", key_ID=key_id)
        keys = [Key(key_ID=key_id, key=_b64(site.pending[key_id].material),
                    key_extension={"route": site.routes.get(key_id)}) for key_id in ids]
        for key_id in ids:
            self._forget(site, key_id)
        return KeyContainer(keys=keys)


def _xor(a: bytes | bytearray, b: bytes | bytearray) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


class SiteStore:
    """One site's face of the network for ``kme.KMEServer``: its SAEs are the callers it accepts."""

    def __init__(self, network: Network, site: str) -> None:
        self.network = network
        self.site = site
        self.saes = network.sites[site].spec.saes
        self.misbehaving = "normal"

    def status(self, master: str, slave: str) -> Status:
        return self.network.status(master, slave)

    def enc_keys(self, master: str, slave: str, request: KeyRequest) -> KeyContainer:
        return self.network.enc_keys(master, slave, request)

    def dec_keys(self, slave: str, master: str, ids: Sequence[str]) -> KeyContainer:
        return self.network.dec_keys(slave, master, ids)
