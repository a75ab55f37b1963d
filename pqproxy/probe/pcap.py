"""ClientHellos out of packet captures: TCP reassembly, TLS record reassembly, a summary.

Theory of operation: scapy reads the capture (pcap or pcapng, any link type it knows: Ethernet, Linux
cooked, loopback, raw IP) and dissects it down to TCP. Each direction of each connection is a *flow*,
keyed by (src, sport, dst, dport). Its segments are kept with their sequence offsets and reassembled
into the byte stream the receiving application would read: out-of-order segments are placed by
sequence number, retransmitted and overlapping bytes are taken once (from the segment that starts
first in the stream; at one position, from the copy captured first), and the stream ends at the
first hole. A stream that starts with a handshake record (RFC 8446 §5.1) whose
first message is a ClientHello (§4.1.2) gives one ``CapturedHello``; the message may span several
records and the records several segments, which is exactly what middleboxes get wrong (REFERENCE.md §3).

Everything is bounded (a capture is input from elsewhere): ``MAX_PACKETS`` packets are read at most
and ``MAX_STREAM_BYTES`` of each flow are kept. Bytes are handled as slices, never one at a time.
The hello is parsed with the project's own codec (``tls.messages``, ``tls.extensions``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..tls.alerts import TLSAlert
from ..tls.codepoints import TLS12, TLS13, ContentType, ExtensionType, HandshakeType, is_grease
from ..tls.extensions import (
    KeyShareClientHello,
    NamedGroupList,
    ProtocolNameList,
    ServerNameList,
    SupportedVersionsClient,
)
from ..tls.groups import group_name
from ..tls.messages import ClientHello

PathLike = str | os.PathLike[str]

# Bounds, with their reasons.
MAX_PACKETS = 10_000  # a capture of a few handshakes has tens of packets; never read a huge file to the end
MAX_STREAM_BYTES = 64 * 1024  # a ClientHello is at most a few records; 64 KiB holds any real one many times over
MAX_FLOW_BUFFER = 4 * MAX_STREAM_BYTES  # captured bytes kept per flow, retransmitted copies included
RECORD_HEADER = 5  # ContentType, legacy_record_version, uint16 length (RFC 8446 §5.1)
HANDSHAKE_HEADER = 4  # HandshakeType, uint24 length (RFC 8446 §4)
MAX_RECORD_FRAGMENT = 1 << 14  # TLSPlaintext.length limit (RFC 8446 §5.1): a longer "record" is not TLS
_SEQ_MOD = 1 << 32  # TCP sequence numbers wrap (RFC 9293 §3.4)
_SEQ_HALF = 1 << 31
_SYN = 0x02
_DLT_EN10MB = 1  # the link type of an empty capture (scapy takes it from the first packet otherwise)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class CapturedHello:
    """One ClientHello found in a capture: the handshake message and where it travelled."""

    client: Endpoint
    server: Endpoint
    message: bytes  # the Handshake struct: 4-byte header, then the ClientHello body
    records: int  # TLS records that carried it
    record_bytes: int  # those records on the wire, headers included
    segments: int  # TCP segments (first copies) that carried those records
    timestamp: float  # capture time of the flow's first packet

    @property
    def body(self) -> bytes:
        return self.message[HANDSHAKE_HEADER:]

    def decode(self) -> ClientHello:
        return ClientHello.decode(self.body)


@dataclass
class _Flow:
    key: tuple[str, int, str, int]
    order: int
    timestamp: float
    base: int | None = None  # sequence number of the first stream byte (after the SYN), when the SYN was seen
    first_seq: int | None = None  # otherwise: the first data segment's sequence number, as a provisional origin
    segments: list[tuple[int, bytes]] = field(default_factory=list)  # (sequence number, payload) as captured
    stored: int = 0

    def add(self, seq: int, flags: int, payload: bytes) -> None:
        if flags & _SYN:
            seq = (seq + 1) % _SEQ_MOD  # the SYN takes one sequence number; data (TCP Fast Open) follows it
            if self.base is None:
                self.base = seq
        if not payload:
            return
        if self.first_seq is None:
            self.first_seq = seq
        origin = self.base if self.base is not None else self.first_seq
        offset = (seq - origin) % _SEQ_MOD
        if offset >= _SEQ_HALF:
            offset -= _SEQ_MOD
        # Keep only what can fall inside the first MAX_STREAM_BYTES of the stream, and a bounded total
        # (retransmissions repeat bytes): the rest can never be part of the reassembled prefix.
        if offset >= MAX_STREAM_BYTES or offset + len(payload) <= -MAX_STREAM_BYTES:
            return
        if self.stored >= MAX_FLOW_BUFFER:
            return
        if offset >= 0:
            payload = payload[: MAX_STREAM_BYTES - offset]
        self.stored += len(payload)
        self.segments.append((seq, payload))

    def stream(self) -> tuple[bytes, list[int]]:
        """The reassembled bytes up to the first hole (at most MAX_STREAM_BYTES), and the stream offset at
        which each contributing segment starts (to count the segments that carried a given prefix)."""
        origin = self.base if self.base is not None else self.first_seq
        if origin is None:
            return b"", []
        placed: list[tuple[int, int, bytes]] = []
        for order, (seq, payload) in enumerate(self.segments):
            offset = (seq - origin) % _SEQ_MOD
            if offset >= _SEQ_HALF:  # before the origin: an earlier segment captured later (no SYN seen)
                offset -= _SEQ_MOD
            placed.append((offset, order, payload))
        # Without the SYN the stream starts at the lowest offset seen; with it, exactly at the origin.
        start = 0 if self.base is not None else min(p[0] for p in placed)
        placed.sort(key=lambda p: (p[0], p[1]))  # by position; at one position the first captured copy first
        out = bytearray()
        starts: list[int] = []
        cursor = start
        limit = start + MAX_STREAM_BYTES
        for offset, _, payload in placed:
            end = offset + len(payload)
            if end <= cursor:
                continue  # a retransmission of bytes we already have
            if offset > cursor or cursor >= limit:
                break  # a hole (a lost segment), or enough
            starts.append(cursor - start)
            out += payload[cursor - offset : limit - offset]
            cursor = min(end, limit)
        return bytes(out), starts


def _load_scapy() -> None:
    """Import the link and network layers, so that scapy's readers know the link types (Ethernet, Linux
    cooked, loopback, raw IP) before the first packet is read. Imported lazily: scapy takes a while."""
    import scapy.layers.inet
    import scapy.layers.inet6
    import scapy.layers.l2  # noqa: F401


def _tcp_segment(pkt: Any) -> tuple[tuple[str, int, str, int], int, int, bytes] | None:
    """(flow key, sequence number, flags, payload) of a TCP packet, or None for anything else."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    if TCP not in pkt:
        return None
    tcp = pkt[TCP]
    raw = bytes(tcp)
    header = tcp.dataofs * 4 if tcp.dataofs else 20
    end = len(raw)
    if IP in pkt:
        ip = pkt[IP]
        # The IP total length bounds the payload: Ethernet pads short frames, and scapy keeps the padding.
        declared = ip.len - ip.ihl * 4 if ip.len else 0
        if 0 < declared <= end:
            end = declared
        net = (str(ip.src), str(ip.dst))
    elif IPv6 in pkt:
        ip6 = pkt[IPv6]
        net = (str(ip6.src), str(ip6.dst))
    else:
        return None
    key = (net[0], int(tcp.sport), net[1], int(tcp.dport))
    return key, int(tcp.seq), int(tcp.flags), raw[header:end]


def _flows(path: PathLike) -> list[_Flow]:
    from scapy.utils import PcapReader

    _load_scapy()
    flows: dict[tuple[str, int, str, int], _Flow] = {}
    try:
        reader = PcapReader(os.fspath(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # scapy says Scapy_Exception for a file that is not a capture
        raise ValueError(f"{path}: not a pcap or pcapng file ({exc})") from None
    with reader:
        for count, pkt in enumerate(reader):
            if count >= MAX_PACKETS:
                break
            segment = _tcp_segment(pkt)
            if segment is None:
                continue
            key, seq, flags, payload = segment
            flow = flows.get(key)
            if flow is None:
                flow = flows[key] = _Flow(key, len(flows), float(pkt.time))
            flow.add(seq, flags, payload)
    return sorted(flows.values(), key=lambda f: f.order)


@dataclass
class _HelloInStream:
    message: bytes
    records: int
    record_bytes: int


def client_hello_from_stream(stream: bytes) -> _HelloInStream | None:
    """The first handshake message of a TLS byte stream, if it is a complete ClientHello.

    The message is put together from as many handshake records as it takes (RFC 8446 §5.1 lets a
    message span records). Anything else (not TLS, a ServerHello, a stream cut short) gives None.
    """
    view = memoryview(stream)
    fragments: list[bytes] = []
    have = 0
    need: int | None = None
    pos = 0
    records = 0
    while need is None or have < need:
        if pos + RECORD_HEADER > len(view):
            return None
        content_type = view[pos]
        length = int.from_bytes(view[pos + 3 : pos + 5], "big")
        if content_type != ContentType.handshake or view[pos + 1] != 3 or length == 0 or length > MAX_RECORD_FRAGMENT:
            return None
        if pos + RECORD_HEADER + length > len(view):
            return None
        fragments.append(bytes(view[pos + RECORD_HEADER : pos + RECORD_HEADER + length]))
        have += length
        pos += RECORD_HEADER + length
        records += 1
        if need is None and have >= HANDSHAKE_HEADER:
            head = b"".join(fragments)[:HANDSHAKE_HEADER]
            if head[0] != HandshakeType.client_hello:
                return None
            need = HANDSHAKE_HEADER + int.from_bytes(head[1:4], "big")
    message = b"".join(fragments)[:need]
    return _HelloInStream(message, records, pos)


def read_client_hellos(path: PathLike) -> list[CapturedHello]:
    """Every ClientHello in a capture, one per client-to-server flow that starts with one, in capture order."""
    found: list[CapturedHello] = []
    for flow in _flows(path):
        stream, starts = flow.stream()
        hello = client_hello_from_stream(stream)
        if hello is None:
            continue
        src, sport, dst, dport = flow.key
        segments = sum(1 for s in starts if s < hello.record_bytes)
        found.append(
            CapturedHello(
                client=Endpoint(src, sport),
                server=Endpoint(dst, dport),
                message=hello.message,
                records=hello.records,
                record_bytes=hello.record_bytes,
                segments=segments,
                timestamp=flow.timestamp,
            )
        )
    return found


def load_client_hello(path: PathLike) -> bytes:
    """The first ClientHello handshake message (4-byte header included) in a capture; ValueError if none."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such capture file")
    hellos = read_client_hellos(path)
    if not hellos:
        raise ValueError(
            f"{path}: no TLS ClientHello found (no TCP stream in the first {MAX_PACKETS} packets starts with "
            "a complete handshake record carrying a ClientHello)"
        )
    return hellos[0].message


# -- the summary -------------------------------------------------------------------------------------------

_VERSION_NAMES = {TLS13: "TLS1.3", TLS12: "TLS1.2", 0x0302: "TLS1.1", 0x0301: "TLS1.0"}


def extension_name(ext_type: int) -> str:
    if is_grease(ext_type):
        return "GREASE"
    try:
        return ExtensionType(ext_type).name
    except ValueError:
        return f"0x{ext_type:04x}"


def _group(code: int) -> str:
    if is_grease(code):
        return "GREASE"
    return group_name(code)


def summarise(hello: bytes | CapturedHello) -> dict[str, Any]:
    """The facts of a ClientHello that matter to a middlebox, as plain data (JSON-ready).

    ``hello`` is the handshake message (4-byte header included), or a ``CapturedHello``, whose record
    layout on the wire is then reported as captured; for bare bytes it is the minimum (full records).
    """
    if isinstance(hello, CapturedHello):
        message, records, record_bytes = hello.message, hello.records, hello.record_bytes
    else:
        message = bytes(hello)
        records = max(1, -(-(len(message)) // MAX_RECORD_FRAGMENT))
        record_bytes = len(message) + RECORD_HEADER * records
    if len(message) < HANDSHAKE_HEADER or message[0] != HandshakeType.client_hello:
        raise ValueError("not a ClientHello handshake message")
    if int.from_bytes(message[1:4], "big") != len(message) - HANDSHAKE_HEADER:
        raise ValueError("ClientHello length field does not match the message")
    try:
        ch = ClientHello.decode(message[HANDSHAKE_HEADER:])
        by_type = {e.type: e.data for e in ch.extensions}
        groups = NamedGroupList.decode(by_type[ExtensionType.supported_groups]).groups if (
            ExtensionType.supported_groups in by_type) else []
        shares = KeyShareClientHello.decode(by_type[ExtensionType.key_share]).client_shares if (
            ExtensionType.key_share in by_type) else []
        versions = SupportedVersionsClient.decode(by_type[ExtensionType.supported_versions]).versions if (
            ExtensionType.supported_versions in by_type) else []
        server_name = ServerNameList.decode(by_type[ExtensionType.server_name]).host_name if (
            ExtensionType.server_name in by_type) else None
        alpn = ProtocolNameList.decode(by_type[ExtensionType.application_layer_protocol_negotiation]).protocols if (
            ExtensionType.application_layer_protocol_negotiation in by_type) else []
    except TLSAlert as exc:
        raise ValueError(f"malformed ClientHello: {exc}") from None
    grease = any(is_grease(v) for v in (*ch.cipher_suites, *groups, *versions, *(e.type for e in ch.extensions)))
    return {
        "size": len(message),
        "records": records,
        "record_bytes": record_bytes,
        "cipher_suites": len(ch.cipher_suites),
        "supported_versions": [
            "GREASE" if is_grease(v) else _VERSION_NAMES.get(v, f"0x{v:04x}") for v in versions
        ],
        "supported_groups": [_group(g) for g in groups],
        "key_shares": [(_group(s.group), len(s.key_exchange)) for s in shares],
        "extensions": [extension_name(e.type) for e in ch.extensions],
        "server_name": server_name,
        "alpn": [p.decode("ascii", "replace") for p in alpn],
        "grease": grease,
    }


# -- writing -----------------------------------------------------------------------------------------------


def write_pcap(path: PathLike, packets: Iterable[Any]) -> Path:
    """Write scapy packets to a pcap file (parent directories created); returns the path."""
    from scapy.utils import wrpcap

    _load_scapy()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    items = list(packets)
    wrpcap(str(out), items, linktype=None if items else _DLT_EN10MB)
    return out


def first_connection(packets: Sequence[Any]) -> list[Any]:
    """The packets of the first TCP connection (both directions) that opens with a SYN in ``packets``;
    all of them if none does. Used to trim a capture to one handshake."""
    first: tuple[str, int, str, int] | None = None
    for pkt in packets:
        segment = _tcp_segment(pkt)
        if segment is not None and segment[2] & _SYN:
            first = segment[0]
            break
    if first is None:
        return list(packets)
    src, sport, dst, dport = first
    wanted = {first, (dst, dport, src, sport)}
    out = []
    for pkt in packets:
        segment = _tcp_segment(pkt)
        if segment is not None and segment[0] in wanted:
            out.append(pkt)
    return out


def trim_to_first_connection(source: PathLike, dest: PathLike | None = None) -> int:
    """Rewrite a capture (in place unless ``dest``) with only its first connection; returns the packet count."""
    from scapy.utils import rdpcap

    _load_scapy()
    packets = list(rdpcap(os.fspath(source), count=MAX_PACKETS))
    if not packets:
        raise ValueError(f"{source}: the capture holds no packets")
    kept = first_connection(packets)
    write_pcap(dest if dest is not None else source, kept)
    return len(kept)
