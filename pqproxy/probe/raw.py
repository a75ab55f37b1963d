"""Raw-packet delivery of a ClientHello (scapy): the segment shapes a kernel socket will not make.

Theory of operation
-------------------

A probe here is one TCP connection that we run ourselves, packet by packet, beside the kernel:

1. **A port of our own.** A kernel TCP socket is bound to port 0 (never connected, never listening) and kept open
   for the whole probe, so the kernel hands that port to nobody else while we use it (``_reserve_port``).
2. **Hold back the kernel's resets.** The kernel has no socket for our connection, so it answers the server's
   SYN-ACK (and every later segment) with a RST. One nftables rule per probe, in table ``inet pqproxy_probe``,
   drops outgoing RSTs from exactly our (source address, source port) unless they carry our packet mark
   ``PACKET_MARK``; our own packets carry it (SO_MARK on the sending socket), so our closing RST still leaves.
   The rule is added before the SYN and deleted in a ``finally`` (``_ResetGuard``); the table goes with the last
   rule. A lock (a thread lock and an flock on a file, for other processes) serialises every change.
3. **Send.** Packets are built with scapy and sent on a raw IPv4 socket (IP_HDRINCL), so the kernel routes them
   (loopback included: an AF_PACKET frame injected on ``lo`` has no route attached and is dropped as a martian)
   and resolves neighbours, but sends each one exactly as built: our sizes, our TTL, DF set, no segmentation
   (IP_PMTUDISC_PROBE: a path MTU the kernel learnt from an earlier ICMP does not stop a large probe segment).
4. **Receive.** One AF_PACKET socket on the route's interface, opened with a BPF filter on the flow before the
   SYN: the server's TCP segments and ICMP errors addressed to us. It keeps incoming packets only, so on
   ``lo`` (where each packet passes twice, out then in) every packet is seen once. The probe's own thread reads
   it (select, then ``recv_raw``: no dissection on the hot path) rather than an AsyncSniffer thread: the probe
   must react to each packet anyway (ACK it, send the next segment), and a socket opened before the SYN cannot
   miss the SYN-ACK the way a sniffer thread that is still starting can.
5. **Run TCP.** SYN with a random ISN and an MSS option; the handshake; the payload in the planned segments (exact
   sizes or cuts, in the planned order, with a pause between them); a bounded retransmission of what the server
   has not acknowledged; every server segment acknowledged and reassembled in sequence order (bounded); stop when
   ``want(response)`` says enough, on FIN, on RST, or at the timeout.
6. **Close with a RST** (as ``SO_LINGER`` 0 would): the probe has what it came for, and a FIN would leave the
   server waiting in FIN_WAIT/LAST_ACK for a closing handshake that our side would have to run too.

``find_blackhole_hop`` uses the same connection to send TTL-limited copies of one LARGE and one SMALL data segment
at the same sequence number (traceroute inside an established connection, so stateful boxes on the path pass
them) and reads the ICMP time-exceeded answers, told apart by the IP id each copy carries.

Only IPv4 targets. Everything is blocking and per call: no shared state but the nftables lock, so several probes
may run at once in threads (``trio.to_thread.run_sync``) or processes, each on its own source port.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import random
import re
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scapy.arch.linux import L2Socket
from scapy.error import Scapy_Exception
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.route import Route
from scapy.utils import checksum

# --- bounds and constants, each with its reason -------------------------------------------------------------------

MAX_RESPONSE = 64 * 1024  # a ServerHello and the server's first flight fit many times over; never buffer more
MAX_OUT_OF_ORDER = 256 * 1024  # server data held ahead of a gap (the server cannot have more than our window)
MAX_PAYLOAD = 1 << 20  # a ClientHello is at most a few tens of KiB; more is a mistake, not a probe
MAX_SEGMENTS = 4096  # a 2 KiB hello in 1-byte segments is 2048; more would be a runaway cut list
MAX_PAUSE = 30.0  # seconds between two segments; longer is beyond any box's reassembly timer worth probing
FULL_TTL = 64  # the copies that must reach the target (Linux's default TTL)
MAX_HOPS = 32  # a TTL search further than this is not a path inside one network
DEFAULT_MSS = 1460  # what a host on a 1500-byte Ethernet path announces
WINDOW = 65535  # no window scaling: 64 KiB in flight is all a handshake needs (and MAX_RESPONSE anyway)
SYN_RTO = 1.0  # first SYN retransmission after 1 s, then doubling, as RFC 6298 §2 and the kernel do
DATA_RTO = 1.0  # retransmission timer for our data (RFC 6298 §2.1 initial value)
MAX_RETRANSMISSIONS = 2  # retransmissions of unacknowledged data, so one lost segment does not fail a probe
NFT_TIMEOUT = 10.0  # one nft command; it normally takes milliseconds
LOCK_TIMEOUT = 20.0  # waiting for another probe's nft change; each holds the lock for milliseconds
RCVBUF = 4 << 20  # the capture socket's buffer: a burst of server segments must not overflow it
PACKET_MARK = 0x70717072  # "pqpr": our own packets' fwmark, so the reset-drop rule lets our closing RST out
IP_MTU_DISCOVER = 10  # linux/in.h (the socket module lacks it)
IP_PMTUDISC_PROBE = 3  # linux/in.h: set DF, ignore the learnt path MTU
SO_RCVBUFFORCE = 33  # asm-generic/socket.h: root may exceed rmem_max

MAX_RECORDS = 10_000  # packets kept for --pcap; a probe has tens, a 1-byte-segment hello a few thousand
IP_TCP_HEADER = 40  # IPv4 + TCP headers without options
TCP_HEADER = 20
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
ETHERTYPE_IPV4 = b"\x08\x00"

NFT_TABLE = "pqproxy_probe"
NFT_CHAIN = "output"
NFT_COMMENT_PREFIX = "pqproxy-probe"
UNAVAILABLE = "raw probes need root and nftables"

_SEQ_MOD = 1 << 32


class RawUnavailable(RuntimeError):
    """Raw probes cannot run here (not root, or no nft)."""


def check_capability() -> None:
    """Raise RawUnavailable unless we are root and ``nft`` is installed."""
    if os.geteuid() != 0:
        raise RawUnavailable(f"{UNAVAILABLE}: not running as root")
    if shutil.which("nft") is None:
        raise RawUnavailable(f"{UNAVAILABLE}: nft (nftables) is not installed")


# --- results ------------------------------------------------------------------------------------------------------


@dataclass
class RawResult:
    """What one raw delivery saw. ``packets`` are scapy IP packets in time order (sent and received)."""

    connected: bool  # SYN / SYN-ACK / ACK done
    response: bytes  # server -> client payload in sequence order (at most MAX_RESPONSE bytes)
    fin: bool
    rst: bool
    icmp: list[tuple[int, int, str]]  # (type, code, source address) of ICMP errors about this flow
    elapsed_ms: float
    packets: list[Any]
    error: str | None  # "connection refused (RST to SYN)", "SYN not answered", "timeout: ...", ...
    timed_out: bool = False  # connected, and neither want(), FIN nor RST ended the wait
    truncated: bool = False  # the server sent more than MAX_RESPONSE bytes
    acked: bool = False  # the server acknowledged every byte of the payload
    icmp_mtu: int | None = None  # next-hop MTU of an ICMP fragmentation-needed, if one came
    source: tuple[str, int] | None = None  # our (address, port)


@dataclass
class HopProbe:
    """One TTL: which address answered time-exceeded for the small and for the large copy (None: silence)."""

    ttl: int
    small: str | None = None
    large: str | None = None


@dataclass
class HopSearch:
    """Where large segments die on the path (pmtu-blackhole).

    ``hop`` is the last hop that answered time-exceeded for the LARGE copies while the SMALL copies get further:
    the large segments reach it and no further, so it (or the link behind it) drops them. A Linux router decrements
    and checks the TTL before it checks the egress MTU, so the router that drops large packets still answers
    time-exceeded for the copies whose TTL ends at it. ``beyond`` is where the small copies get one hop further
    (the next router's address, or "target" when they reach the server), the first place large ones never reach.
    With an ICMP fragmentation-needed, ``hop`` is its source and ``mtu`` its next-hop MTU: no black hole then.
    """

    hop: str | None
    hop_ttl: int | None
    beyond: str | None
    reason: str
    hops: list[HopProbe]
    small_reaches_target: bool
    large_reaches_target: bool
    target_ttl: int | None  # the TTL at which small copies reach the target (its distance in hops)
    mtu: int | None
    frag_needed: list[tuple[str, int]]
    icmp: list[tuple[int, int, str]]
    connected: bool
    error: str | None
    elapsed_ms: float
    large: int
    small: int


# --- segment planning (pure) ----------------------------------------------------------------------------------------


def plan_segments(length: int, *, cuts: Sequence[int] | None = None, segment_size: int | None = None,
                  order: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """The (start, end) stream offsets of each segment, in sending order.

    ``segment_size``: pieces of exactly N bytes (the last one shorter); ``cuts``: cut at these offsets; neither:
    one segment. ``order``: segment indices to send first (e.g. [1, 0] sends the second before the first); the
    ones not named follow in their natural order.
    """
    if length <= 0:
        raise ValueError("nothing to deliver: the payload is empty")
    if length > MAX_PAYLOAD:
        raise ValueError(f"payload of {length} bytes is over the {MAX_PAYLOAD}-byte bound")
    if cuts is not None and segment_size is not None:
        raise ValueError("give cuts or segment_size, not both")
    if segment_size is not None:
        if segment_size <= 0:
            raise ValueError(f"segment_size must be positive, not {segment_size}")
        if -(-length // segment_size) > MAX_SEGMENTS:
            raise ValueError(f"{length} bytes in {segment_size}-byte segments is over {MAX_SEGMENTS} segments")
        bounds = list(range(segment_size, length, segment_size))
    elif cuts is not None:
        bad = [c for c in cuts if not 0 < c < length]
        if bad:
            raise ValueError(f"cuts must lie inside the payload (1..{length - 1}): {bad}")
        bounds = sorted(set(cuts))
        if len(bounds) + 1 > MAX_SEGMENTS:
            raise ValueError(f"more than {MAX_SEGMENTS} segments")
    else:
        bounds = []
    edges = [0, *bounds, length]
    pieces = list(itertools.pairwise(edges))
    if order is None:
        return pieces
    seen: set[int] = set()
    for index in order:
        if not 0 <= index < len(pieces):
            raise ValueError(f"order names segment {index}, but there are {len(pieces)} (0..{len(pieces) - 1})")
        if index in seen:
            raise ValueError(f"order names segment {index} twice")
        seen.add(index)
    return [pieces[i] for i in order] + [p for i, p in enumerate(pieces) if i not in seen]


# --- sequence arithmetic (RFC 9293 §3.4: modulo 2**32) --------------------------------------------------------------


def _seq_add(a: int, n: int) -> int:
    return (a + n) % _SEQ_MOD


def _seq_diff(a: int, b: int) -> int:
    """a - b as a signed distance in sequence space."""
    return (a - b + (1 << 31)) % _SEQ_MOD - (1 << 31)


# --- nftables: hold back the kernel's RSTs for one (address, port) --------------------------------------------------

_THREAD_LOCK = threading.Lock()


def _lock_path() -> Path:
    run_lock = Path("/run/lock")
    base = run_lock if run_lock.is_dir() and os.access(run_lock, os.W_OK) else Path(tempfile.gettempdir())
    return base / "pqproxy-probe-nft.lock"


@contextlib.contextmanager
def _nft_lock() -> Iterator[None]:
    """Serialise ruleset changes between threads (the thread lock) and processes (flock on a shared file)."""
    if not _THREAD_LOCK.acquire(timeout=LOCK_TIMEOUT):
        raise RuntimeError(f"nft lock: another thread held it for {LOCK_TIMEOUT:g} s")
    try:
        fd = os.open(_lock_path(), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"nft lock {_lock_path()}: held by another process for "
                                           f"{LOCK_TIMEOUT:g} s") from None
                    time.sleep(0.01)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    finally:
        _THREAD_LOCK.release()


def _nft(args: Sequence[str], script: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(["nft", *args], input=script, capture_output=True, text=True, timeout=NFT_TIMEOUT)
    except FileNotFoundError:
        raise RawUnavailable(f"{UNAVAILABLE}: nft (nftables) is not installed") from None
    if check and done.returncode != 0:
        raise RuntimeError(f"nft {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _our_rules() -> list[dict[str, Any]]:
    """The rules in our chain (nft JSON), or [] when the table does not exist."""
    done = _nft(["-j", "list", "chain", "inet", NFT_TABLE, NFT_CHAIN], check=False)
    if done.returncode != 0:
        return []
    items = json.loads(done.stdout).get("nftables", [])
    return [item["rule"] for item in items if "rule" in item]


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


class _ResetGuard:
    """Context manager: the nftables rule dropping the kernel's RSTs from (src, sport) while a probe runs."""

    def __init__(self, src: str, sport: int) -> None:
        self.src = src
        self.sport = sport
        token = f"{random.getrandbits(48):012x}"
        self.comment = f"{NFT_COMMENT_PREFIX} pid={os.getpid()} port={sport} token={token}"
        self.handle: int | None = None

    def __enter__(self) -> _ResetGuard:
        rule = (f"add rule inet {NFT_TABLE} {NFT_CHAIN} ip saddr {self.src} tcp sport {self.sport} "
                f"tcp flags & rst == rst meta mark != {PACKET_MARK:#x} counter drop comment \"{self.comment}\"")
        script = "\n".join([
            f"add table inet {NFT_TABLE}",
            f"add chain inet {NFT_TABLE} {NFT_CHAIN} {{ type filter hook output priority 0 ; policy accept ; }}",
            rule,
            "",
        ])
        with _nft_lock():
            self._sweep_stale()
            done = _nft(["--echo", "--handle", "-f", "-"], script)
            for line in done.stdout.splitlines():
                if self.comment in line and (m := re.search(r"# handle (\d+)\s*$", line)):
                    self.handle = int(m.group(1))
            if self.handle is None:  # older nft without --echo: find the rule by its unique comment
                self.handle = next((int(r["handle"]) for r in _our_rules() if r.get("comment") == self.comment), None)
            if self.handle is None:
                raise RuntimeError(f"nft: added the reset-drop rule but cannot find its handle: {done.stdout!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Delete exactly our rule (found again by comment if the handle went stale); the table if it is empty."""
        if self.handle is None:
            return
        with _nft_lock():
            rules = _our_rules()
            mine = [int(r["handle"]) for r in rules if r.get("comment") == self.comment]
            for handle in mine:
                _nft(["delete", "rule", "inet", NFT_TABLE, NFT_CHAIN, "handle", str(handle)])
            if rules and len(rules) == len(mine):
                _nft(["delete", "table", "inet", NFT_TABLE], check=False)
            self.handle = None

    @staticmethod
    def _sweep_stale() -> None:
        """Rules left by a probe process that died before its ``finally`` (SIGKILL): delete them."""
        pattern = re.compile(rf"^{NFT_COMMENT_PREFIX} pid=(\d+) ")
        for rule in _our_rules():
            m = pattern.match(rule.get("comment", ""))
            if m and not _pid_alive(int(m.group(1))):
                _nft(["delete", "rule", "inet", NFT_TABLE, NFT_CHAIN, "handle", str(rule["handle"])], check=False)


# --- routing and the port ---------------------------------------------------------------------------------------------


def _resolve(host: str) -> str:
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host!r} to an IPv4 address (raw probes are IPv4 only): {exc}") from None
    return str(infos[0][4][0])


def _route(dst: str, iface: str | None) -> tuple[str, str]:
    """(source address, interface) the kernel would use towards dst; nothing is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        if iface:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
        probe.connect((dst, 9))  # UDP connect only routes
        src = str(probe.getsockname()[0])
    if iface is None:
        iface = str(Route().route(dst)[0])  # a fresh table: routes may have changed since scapy was imported
    return src, iface


def _reserve_port() -> socket.socket:
    """A kernel TCP socket bound to a free port (not connected, not listening): the port stays ours."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("0.0.0.0", 0))
    return holder


def _ip_bytes(layer: Any, frame: bytes) -> bytes | None:
    """The IPv4 packet in a captured frame: Ethernet (lo and veth too) and raw IP directly, others via scapy."""
    if layer is Ether:
        return frame[14:] if frame[12:14] == ETHERTYPE_IPV4 else None
    if layer is IP:
        return frame
    ip = layer(frame).getlayer(IP)
    return bytes(ip) if ip is not None else None


# --- one raw TCP connection -----------------------------------------------------------------------------------------


class _Flow:
    """Client side of one TCP connection run by hand. Not thread-safe: one thread drives it."""

    def __init__(self, src: str, sport: int, dst: str, dport: int, iface: str, *, bind_iface: bool,
                 mss: int = DEFAULT_MSS) -> None:
        self.src, self.sport, self.dst, self.dport, self.iface = src, sport, dst, dport, iface
        self.mss = mss
        self.iss = random.getrandbits(32)
        self.snd_max = _seq_add(self.iss, 1)  # highest sequence number sent + 1 (after the SYN)
        self.snd_una = self.iss
        self.irs: int | None = None
        self.rcv_nxt = 0
        self.ip_id = random.getrandbits(16)
        self.connected = False
        self.closed = False  # our RST went out
        self.refused = False
        self.fin = False
        self.rst = False
        self.truncated = False
        self.response = bytearray()
        self.ooo: dict[int, bytes] = {}  # server data ahead of a gap, by sequence number
        self.fin_seq: int | None = None
        self.icmp: list[tuple[int, int, str]] = []
        self.icmp_ids: list[tuple[int, int, str, int]] = []  # (type, code, source, quoted IP id)
        self.icmp_mtu: int | None = None
        self._records: list[tuple[float, bytes]] = []
        self._src4, self._dst4 = socket.inet_aton(src), socket.inet_aton(dst)
        self._pseudo = self._src4 + self._dst4 + bytes([0, 6])  # RFC 9293 §3.1 pseudo-header, less the length
        self._template = bytes(IP(src=src, dst=dst, ttl=64, flags="DF") / TCP(
            sport=sport, dport=dport, flags="A", window=WINDOW))
        self.max_ack: int | None = None  # the highest acknowledgement number the server sent
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.rx: Any = None
        try:
            self.tx.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, PACKET_MARK)
            self.tx.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
            if bind_iface:
                self.tx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
            self.rx = self._open_capture()
        except BaseException:
            self.close_sockets()
            raise

    def _open_capture(self) -> Any:
        bpf = (f"(tcp and src host {self.dst} and src port {self.dport} and dst host {self.src} "
               f"and dst port {self.sport}) or (icmp and dst host {self.src})")
        try:
            rx = L2Socket(iface=self.iface, filter=bpf)
        except Scapy_Exception:  # no tcpdump to compile the filter: take everything, _handle filters
            rx = L2Socket(iface=self.iface)
        with contextlib.suppress(OSError):
            rx.ins.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        return rx

    def close_sockets(self) -> None:
        if self.rx is not None:
            self.rx.close()
            self.rx = None
        self.tx.close()

    # -- sending --------------------------------------------------------------------------------------------
    #
    # Scapy builds the SYN and, once, a 40-byte IP+TCP header template; each later segment patches the template's
    # per-packet fields (length, id, TTL, seq, ack, flags) and checksums in place. Building every packet in scapy
    # costs milliseconds, which would put gaps between "back-to-back" segments (a box's reassembly can depend on
    # them) and make a hello in 1-byte segments take many seconds. Records are (time, bytes), turned into scapy
    # packets once, in ``records()``.

    def _emit(self, wire: bytes) -> None:
        stamp = time.time()
        self.tx.sendto(wire, (self.dst, 0))
        self._records.append((stamp, wire))

    def _next_id(self) -> int:
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        return self.ip_id

    def _segment(self, seq: int, flags: int, payload: bytes = b"", *, ttl: int = 64,
                 ip_id: int | None = None) -> bytes:
        header = bytearray(self._template)
        struct.pack_into("!HH", header, 2, IP_TCP_HEADER + len(payload), self._next_id() if ip_id is None else ip_id)
        header[8] = ttl
        struct.pack_into("!H", header, 10, 0)
        struct.pack_into("!H", header, 10, checksum(bytes(header[:20])))
        struct.pack_into("!II", header, 24, seq, self.rcv_nxt)
        header[33] = flags
        struct.pack_into("!H", header, 36, 0)
        pseudo = self._pseudo + struct.pack("!H", TCP_HEADER + len(payload))
        struct.pack_into("!H", header, 36, checksum(pseudo + bytes(header[20:]) + payload))
        return bytes(header) + payload

    def send_syn(self) -> None:
        syn = IP(src=self.src, dst=self.dst, ttl=64, id=self._next_id(), flags="DF") / TCP(
            sport=self.sport, dport=self.dport, seq=self.iss, flags="S", window=WINDOW,
            options=[("MSS", self.mss)])
        self._emit(bytes(syn))

    def send_ack(self) -> None:
        self._emit(self._segment(self.snd_max, TCP_ACK))

    def send_data(self, offset: int, data: bytes, *, ttl: int = 64, ip_id: int | None = None) -> None:
        """Data at stream offset ``offset`` (0 = the first byte after the SYN)."""
        seq = _seq_add(self.iss, 1 + offset)
        self._emit(self._segment(seq, TCP_PSH | TCP_ACK, data, ttl=ttl, ip_id=ip_id))
        end = _seq_add(seq, len(data))
        if _seq_diff(end, self.snd_max) > 0:
            self.snd_max = end

    def send_rst(self) -> None:
        self._emit(self._segment(self.snd_max, TCP_RST | TCP_ACK))

    def acked_offset(self) -> int:
        """How many payload bytes the server has acknowledged."""
        return max(0, _seq_diff(self.snd_una, self.iss) - 1)

    def records(self) -> list[Any]:
        """Every packet sent and received, as scapy IP packets in time order (bounded by MAX_RECORDS)."""
        out = []
        for stamp, wire in sorted(self._records, key=lambda r: r[0])[:MAX_RECORDS]:
            packet = IP(wire)
            packet.time = stamp
            out.append(packet)
        return out

    # -- receiving ------------------------------------------------------------------------------------------

    def poll(self, deadline: float, until: Callable[[], bool] = lambda: False) -> None:
        """Handle incoming packets until ``until()`` holds, the flow ends (RST), or the deadline passes."""
        while not until() and not self.rst and not self.refused:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            readable, _, _ = select.select([self.rx.ins], [], [], remaining)
            if not readable:
                return
            layer, frame, stamp = self.rx.recv_raw()  # outgoing copies come back as (None, None, None)
            if frame is not None:
                wire = _ip_bytes(layer, frame)
                if wire is not None:
                    self._handle(wire, stamp if stamp is not None else time.time())

    def _handle(self, wire: bytes, stamp: float) -> None:
        """One incoming IPv4 packet: our flow's TCP segments and ICMP errors about it; anything else is ignored."""
        if len(wire) < 20 or wire[0] >> 4 != 4 or wire[16:20] != self._src4:
            return
        ihl = (wire[0] & 0x0F) * 4
        total = min(len(wire), struct.unpack_from("!H", wire, 2)[0] or len(wire))  # 0 when TSO left it unset
        wire = wire[:total]  # drop link-layer padding
        proto = wire[9]
        if proto == 6 and wire[12:16] == self._dst4 and total >= ihl + TCP_HEADER:
            sport, dport, seq, ack, offset, flags = struct.unpack_from("!HHIIBB", wire, ihl)
            if sport == self.dport and dport == self.sport:
                self._records.append((stamp, wire))
                self._on_tcp(seq, ack, flags, wire[ihl + (offset >> 4) * 4:])
        elif proto == 1 and total >= ihl + 8 + 20 + 4:
            self._on_icmp(wire, ihl, stamp)

    def _on_tcp(self, seq: int, ack: int, flags: int, data: bytes) -> None:
        if flags & TCP_RST:
            if not self.connected:
                self.refused = True  # a RST to our SYN (RFC 9293 §3.10.7.3, SYN-SENT)
            self.rst = True
            return
        if flags & TCP_SYN and flags & TCP_ACK:
            if ack != _seq_add(self.iss, 1):
                return  # not an answer to our SYN
            if not self.connected:
                self.irs = seq
                self.rcv_nxt = _seq_add(seq, 1)
                self.snd_una = ack
                self.connected = True
            self.send_ack()  # also when our ACK was lost and the SYN-ACK comes again
            return
        if not self.connected:
            return
        if flags & TCP_ACK:
            if self.max_ack is None or _seq_diff(ack, self.max_ack) > 0:
                self.max_ack = ack
            if _seq_diff(ack, self.snd_una) > 0 and _seq_diff(ack, self.snd_max) <= 0:
                self.snd_una = ack
        if flags & TCP_FIN:
            self.fin = True
            self.fin_seq = _seq_add(seq, len(data))
        if data:
            self._on_data(seq, data)
        if self.fin_seq is not None and self.fin_seq == self.rcv_nxt:
            self.rcv_nxt = _seq_add(self.rcv_nxt, 1)  # the FIN takes one sequence number
            self.fin_seq = None
        if data or flags & TCP_FIN:
            self.send_ack()

    def _on_data(self, seq: int, data: bytes) -> None:
        offset = _seq_diff(seq, self.rcv_nxt)
        if offset > 0:  # ahead of a gap: keep it until the gap fills
            if offset < MAX_OUT_OF_ORDER and sum(len(d) for d in self.ooo.values()) < MAX_OUT_OF_ORDER:
                self.ooo[seq] = data
            return
        self._append(data[-offset:])
        progressed = True
        while self.ooo and progressed:  # drain what now fits
            progressed = False
            for held_seq in list(self.ooo):
                offset = _seq_diff(held_seq, self.rcv_nxt)
                if offset <= 0:
                    self._append(self.ooo.pop(held_seq)[-offset:])
                    progressed = True

    def _append(self, data: bytes) -> None:
        if not data:
            return
        room = MAX_RESPONSE - len(self.response)
        if len(data) > room:
            self.truncated = True
        self.response += data[:room]
        self.rcv_nxt = _seq_add(self.rcv_nxt, len(data))

    def _on_icmp(self, wire: bytes, ihl: int, stamp: float) -> None:
        """An ICMP error quoting one of our packets (RFC 792: the IP header and at least 8 bytes of its data)."""
        icmp_type, code = wire[ihl], wire[ihl + 1]
        if icmp_type not in (3, 11):
            return
        quoted = ihl + 8
        quoted_ihl = (wire[quoted] & 0x0F) * 4
        if (wire[quoted + 9] != 6 or wire[quoted + 12:quoted + 16] != self._src4
                or wire[quoted + 16:quoted + 20] != self._dst4 or len(wire) < quoted + quoted_ihl + 4):
            return
        sport, dport = struct.unpack_from("!HH", wire, quoted + quoted_ihl)
        if sport != self.sport or dport != self.dport:
            return
        self._records.append((stamp, wire))
        source = socket.inet_ntoa(wire[12:16])
        self.icmp.append((icmp_type, code, source))
        self.icmp_ids.append((icmp_type, code, source, struct.unpack_from("!H", wire, quoted + 4)[0]))
        if icmp_type == 3 and code == 4:
            mtu = struct.unpack_from("!H", wire, ihl + 6)[0]  # RFC 1191 §4: next-hop MTU
            if mtu:
                self.icmp_mtu = mtu

    # -- phases ---------------------------------------------------------------------------------------------

    def connect(self, timeout: float) -> str | None:
        """The three-way handshake, with SYN retransmissions; None or the reason it failed."""
        deadline = time.monotonic() + timeout
        rto = SYN_RTO
        while True:
            self.send_syn()
            wait_until = min(deadline, time.monotonic() + rto)
            self.poll(wait_until, lambda: self.connected or bool(self.unreachable()))
            if self.connected:
                return None
            if self.refused:
                return "connection refused (RST to SYN)"
            if why := self.unreachable():
                return why
            if time.monotonic() >= deadline:
                return f"SYN not answered within {timeout:g} s"
            rto *= 2

    def unreachable(self) -> str | None:
        for icmp_type, code, source in self.icmp:
            if icmp_type == 3:
                return f"unreachable: ICMP destination-unreachable code {code} from {source}"
        return None


# --- deliver_segments -------------------------------------------------------------------------------------------------


def deliver_segments(host: str, port: int, payload: bytes, *, cuts: Sequence[int] | None = None,
                     segment_size: int | None = None, order: Sequence[int] | None = None, pause: float = 0.0,
                     ttl: int = 64, timeout: float = 5.0, want: Callable[[bytes], bool] | None = None,
                     iface: str | None = None, mss: int = DEFAULT_MSS,
                     retransmissions: int = MAX_RETRANSMISSIONS) -> RawResult:
    """Open a TCP connection by hand, send ``payload`` in the planned segments, and collect the answer.

    Segments: see ``plan_segments`` (``cuts``, ``segment_size``, ``order``); ``pause`` seconds between two
    segments (the connection is served meanwhile: server data is acknowledged). ``ttl`` is the IP TTL of the data
    segments (the handshake uses 64). ``timeout`` bounds the handshake and, again, the wait for the answer after
    the last segment. ``want(response)`` returns True when enough has arrived; otherwise the wait ends at FIN, RST
    or the timeout. Unacknowledged data is retransmitted (same segments, same order) up to ``retransmissions``
    times, RTO 1 s doubling. The connection ends with a RST. Raises RawUnavailable without root or nft, ValueError
    on a bad shape; network trouble is reported in the result.
    """
    check_capability()
    plan = plan_segments(len(payload), cuts=cuts, segment_size=segment_size, order=order)
    if not 0 <= pause <= MAX_PAUSE:
        raise ValueError(f"pause must be 0..{MAX_PAUSE:g} s, not {pause}")
    if not 1 <= ttl <= 255:
        raise ValueError(f"ttl must be 1..255, not {ttl}")
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    try:
        dst = _resolve(host)
        src, out_iface = _route(dst, iface)
    except OSError as exc:
        return RawResult(False, b"", False, False, [], 0.0, [], str(exc))
    holder = _reserve_port()
    try:
        sport = int(holder.getsockname()[1])
        with _ResetGuard(src, sport):
            flow = _Flow(src, sport, dst, port, out_iface, bind_iface=iface is not None, mss=mss)
            try:
                started = time.monotonic()  # from the SYN: setting up the rule and the capture is not the target's
                error, timed_out = _run_delivery(flow, payload, plan, pause=pause, ttl=ttl, timeout=timeout,
                                                 want=want, retransmissions=retransmissions)
                elapsed_ms = (time.monotonic() - started) * 1000
                _close(flow)
                return RawResult(
                    connected=flow.connected, response=bytes(flow.response), fin=flow.fin, rst=flow.rst,
                    icmp=list(flow.icmp), elapsed_ms=elapsed_ms, packets=flow.records(), error=error,
                    timed_out=timed_out, truncated=flow.truncated, acked=flow.acked_offset() >= len(payload),
                    icmp_mtu=flow.icmp_mtu, source=(flow.src, flow.sport))
            finally:
                _close(flow)
                flow.close_sockets()
    finally:
        holder.close()


def _close(flow: _Flow) -> None:
    """End the connection with a RST (once), unless it never opened or the server reset it already."""
    if flow.connected and not flow.rst and not flow.closed:
        flow.closed = True
        with contextlib.suppress(OSError):
            flow.send_rst()


def _run_delivery(flow: _Flow, payload: bytes, plan: list[tuple[int, int]], *, pause: float, ttl: int,
                  timeout: float, want: Callable[[bytes], bool] | None,
                  retransmissions: int) -> tuple[str | None, bool]:
    """Connect, send the plan, wait for the answer: (error, timed out)."""
    checked = -1  # response length when want() was last asked
    enough = False

    def satisfied() -> bool:
        nonlocal checked, enough
        if enough or want is None or len(flow.response) == checked:
            return enough
        checked = len(flow.response)
        enough = bool(want(bytes(flow.response)))
        return enough

    def ended() -> bool:
        return flow.fin or flow.rst or flow.truncated or satisfied()

    def all_acked() -> bool:
        return flow.acked_offset() >= len(payload)

    try:
        error = flow.connect(timeout)
        if error is not None:
            return error, False
        for i, (start, end) in enumerate(plan):
            if i and pause:
                flow.poll(time.monotonic() + pause, ended)
            if ended():
                return None, False
            flow.send_data(start, payload[start:end], ttl=ttl)
        deadline = time.monotonic() + timeout
        rto, resent = DATA_RTO, 0
        while not ended():
            now = time.monotonic()
            if now >= deadline:
                return f"timeout: no answer within {timeout:g} s", True
            if all_acked() or resent >= retransmissions:
                flow.poll(deadline, ended)  # nothing more to send: wait for the answer
                continue
            flow.poll(min(deadline, now + rto), lambda: ended() or all_acked())
            if ended() or all_acked() or time.monotonic() >= deadline:
                continue
            acked = flow.acked_offset()  # RTO expired: resend what is unacknowledged, same segments and order
            for start, end in plan:
                if end > acked:
                    flow.send_data(start, payload[start:end], ttl=ttl)
            resent += 1
            rto *= 2
    except OSError as exc:  # e.g. EMSGSIZE: a segment larger than our own interface's MTU; ENETUNREACH
        return f"send failed: {exc}", False
    return None, False


# --- find_blackhole_hop -------------------------------------------------------------------------------------------


def _default_hop_payload(size: int, server_name: str | None) -> bytes:
    """A real post-quantum ClientHello (records) of at least ``size`` bytes: what reaches the server is a hello."""
    from ..tls.hello import HelloSpec, build_client_hello

    wire = build_client_hello(HelloSpec(server_name=server_name)).records()
    if len(wire) < size:
        wire = build_client_hello(HelloSpec(server_name=server_name, pad_to=size)).records()
    return wire


def find_blackhole_hop(host: str, port: int, *, large: int = 1400, small: int = 200, max_hops: int = 8,
                       timeout: float = 5.0, wait: float = 1.0, rounds: int = 2, payload: bytes | None = None,
                       server_name: str | None = None, iface: str | None = None) -> HopSearch:
    """TTL-limited copies of a LARGE and a SMALL data segment inside an established connection: which hops see them.

    For ttl = 1..max_hops one copy of each (``large``/``small`` payload bytes, same sequence number: the start of
    ``payload``, by default a real PQ ClientHello, so a server that gets them sees the start of a hello), plus one
    full-TTL copy of each (does the server acknowledge it?), are sent back to back; the ICMP time-exceeded answers
    (matched to their copy by the quoted IP id) are collected for up to ``wait`` seconds. Copies still owed an
    answer are sent again, ``rounds`` rounds in all; the search stops early once every answer is in or an ICMP
    fragmentation-needed names the hop. ``timeout`` bounds the handshake. See HopSearch for how the hop is read.
    In the worst case (a black hole) it takes ``rounds * wait`` seconds after the handshake.
    """
    check_capability()
    if not 1 <= max_hops <= MAX_HOPS:
        raise ValueError(f"max_hops must be 1..{MAX_HOPS}, not {max_hops}")
    if not 0 < small < large <= 65000:
        raise ValueError(f"need 0 < small < large <= 65000, not small={small} large={large}")
    if not 1 <= rounds <= 5 or not 0 < wait <= 10:
        raise ValueError("rounds must be 1..5 and wait 0..10 s")
    data = payload if payload is not None else _default_hop_payload(large, server_name)
    if len(data) < large:
        raise ValueError(f"payload has {len(data)} bytes, fewer than large={large}")
    started = time.monotonic()

    def failed(error: str, flow: _Flow | None = None) -> HopSearch:
        return HopSearch(None, None, None, error, [], False, False, None, None, [], list(flow.icmp) if flow else [],
                         bool(flow and flow.connected), error, (time.monotonic() - started) * 1000, large, small)

    try:
        dst = _resolve(host)
        src, out_iface = _route(dst, iface)
    except OSError as exc:
        return failed(str(exc))
    holder = _reserve_port()
    try:
        sport = int(holder.getsockname()[1])
        with _ResetGuard(src, sport):
            flow = _Flow(src, sport, dst, port, out_iface, bind_iface=iface is not None)
            started = time.monotonic()  # from the SYN, as deliver_segments counts
            try:
                error = flow.connect(timeout)
                if error is not None:
                    return failed(error, flow)
                return _search(flow, data, large, small, max_hops, wait, rounds, started)
            except OSError as exc:
                return failed(f"send failed: {exc}", flow)
            finally:
                _close(flow)
                flow.close_sockets()
    finally:
        holder.close()


def _search(flow: _Flow, data: bytes, large: int, small: int, max_hops: int, wait: float, rounds: int,
            started: float) -> HopSearch:
    sizes = {"large": large, "small": small}
    ids: dict[int, tuple[int, str]] = {}  # IP id -> (ttl, kind)
    next_id = random.getrandbits(16)
    hops = {ttl: HopProbe(ttl) for ttl in range(1, max_hops + 1)}

    def reached(kind: str) -> bool:
        """Has the target acknowledged a copy of this size (all its bytes)?"""
        return flow.max_ack is not None and _seq_diff(flow.max_ack, _seq_add(flow.iss, 1 + sizes[kind])) >= 0

    def target_ttl() -> int | None:
        """The TTL at which small copies reach the target: one past the last hop that answered for them."""
        if not reached("small"):
            return None
        return max([t for t, h in hops.items() if h.small], default=0) + 1

    def pending() -> list[tuple[int, str]]:
        """(ttl, kind) still unanswered where an answer is due: up to the target, or every TTL until it is found."""
        for icmp_type, _code, source, quoted_id in flow.icmp_ids:
            if icmp_type == 11 and quoted_id in ids:
                ttl, kind = ids[quoted_id]
                setattr(hops[ttl], kind, source)
        target = target_ttl()
        todo = []
        for ttl, probe in hops.items():
            for kind in ("small", "large"):
                if getattr(probe, kind) is not None or (target is not None and ttl > target):
                    continue
                if target is not None and ttl == target and reached(kind):
                    continue  # a copy with this TTL reaches the target: silence is its answer
                todo.append((ttl, kind))
        todo += [(FULL_TTL, kind) for kind in ("small", "large") if not reached(kind)]
        return todo

    def send_copy(ttl: int, kind: str) -> None:
        nonlocal next_id
        next_id = (next_id + 1) & 0xFFFF
        ids[next_id] = (ttl, kind)
        flow.send_data(0, data[: sizes[kind]], ttl=ttl, ip_id=next_id)

    def frag_needed() -> bool:  # the path says where and how big: nothing left to search for
        return any(t == 3 and c == 4 for t, c, _ in flow.icmp)

    for _round in range(rounds):
        todo = pending()
        if not todo or flow.rst or frag_needed():
            break
        # Back to back, no pacing: each hop expires only the two copies whose TTL ends at it per round, well inside
        # the ICMP rate limits routers apply (RFC 1812 §4.3.2.8; Linux lets a burst of 6 through per destination).
        for ttl, kind in todo:
            send_copy(ttl, kind)
        flow.poll(time.monotonic() + wait, lambda: flow.rst or frag_needed() or not pending())
    pending()
    return _read_hops(flow, list(hops.values()), reached("small"), reached("large"), target_ttl(), large, small,
                      started)


def _read_hops(flow: _Flow, hops: list[HopProbe], small_reaches: bool, large_reaches: bool, target: int | None,
               large: int, small: int, started: float) -> HopSearch:
    frag = [(source, flow.icmp_mtu or 0) for icmp_type, code, source in flow.icmp if icmp_type == 3 and code == 4]
    large_ttls = [h.ttl for h in hops if h.large]
    small_ttls = [h.ttl for h in hops if h.small]
    last_large = max(large_ttls, default=0)
    hop = next((h.large for h in hops if h.ttl == last_large), None)
    beyond_small = [t for t in small_ttls if t > last_large]
    beyond: str | None = None
    if beyond_small:
        beyond = next(h.small for h in hops if h.ttl == min(beyond_small))
    elif small_reaches:
        beyond = "target"

    def out(hop_found: str | None, reason: str, mtu: int | None = None) -> HopSearch:
        return HopSearch(hop_found, last_large if hop_found and not frag else None, beyond, reason, hops,
                         small_reaches, large_reaches, target, mtu, frag, list(flow.icmp), True, None,
                         (time.monotonic() - started) * 1000, large, small)

    if frag:
        source, mtu = frag[0]
        return out(source, f"ICMP fragmentation-needed from {source} (next-hop MTU {mtu}): no black hole", mtu)
    if large_reaches:
        return out(None, f"large ({large}-byte) segments reach the target: no black hole")
    if beyond is None:
        return out(None, f"small ({small}-byte) segments get no further than large ones: the path, not the size, "
                         "is the trouble (or the hops are silent)")
    if last_large == 0:
        return out(None, f"no hop answered for large ({large}-byte) segments while small ones reach {beyond}: "
                         "they die before the first hop that answers")
    first_beyond = min(beyond_small) if beyond_small else (target or last_large + 1)
    gap = first_beyond - last_large - 1
    note = f" ({gap} silent hop(s) in between: the drop may be there)" if gap > 0 else ""
    return out(hop, f"large ({large}-byte) segments are last seen at hop {last_large} ({hop}); small ones reach "
                    f"{beyond}{note}")
