"""QUIC v1 Initial packets for the probe, sans-IO: a ClientHello cut into Initials, and the server's answers.

RFC 9000 §17.2.2 (the Initial packet), §19.6 (CRYPTO frames), §14.1 (a client's Initial datagrams are at
least 1200 bytes); RFC 9001 §5 (Initial packet protection, keys derived from the client's first
Destination Connection ID). aioquic does the packet protection (``CryptoPair``) and header parsing; the
ClientHello comes from pqproxy's own codec, so QUIC and TCP probes send the same hellos.

``client_initials`` lays the CRYPTO stream (the ClientHello) over one or more Initial packets, one per
datagram, each padded to ``datagram_size``, optionally sent out of order: what Chrome does with a
post-quantum hello (two Initials, the first CRYPTO frame about 1200 bytes) and what breaks parsers that read
only the first one. ``ServerFlight`` reads what comes back: Initial packets (decrypted with the Initial
keys, their CRYPTO frames reassembled into the ServerHello, whose group it reads), Retry, Version
Negotiation, and CONNECTION_CLOSE; anything it cannot parse is counted and ignored, never raised.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from aioquic._buffer import Buffer, BufferReadError
from aioquic.quic.crypto import CryptoError, CryptoPair
from aioquic.quic.packet import (
    QuicPacketType,
    QuicProtocolVersion,
    QuicTransportParameters,
    pull_quic_header,
    push_quic_transport_parameters,
)

QUIC_V1 = int(QuicProtocolVersion.VERSION_1)
MIN_DATAGRAM = 1200  # RFC 9000 §14.1
MAX_DATAGRAM = 16384  # our bound: a probe never sends more in one datagram
CID_LENGTH = 8
PN_LENGTH = 2
AEAD_TAG = 16
MAX_CRYPTO = 64 * 1024  # bytes of an Initial CRYPTO stream we keep
MAX_CRYPTO_FRAMES = 256  # CRYPTO frames we keep per stream (a flight has a handful)
ALPN_H3 = b"h3"

# Frame types that may appear in Initial packets (RFC 9000 §12.4, Table 3).
PADDING, PING, ACK, ACK_ECN, CRYPTO, CONNECTION_CLOSE = 0x00, 0x01, 0x02, 0x03, 0x06, 0x1C


def random_cid() -> bytes:
    return os.urandom(CID_LENGTH)


def transport_parameters(scid: bytes) -> bytes:
    """The client's quic_transport_parameters (RFC 9000 §18): what a client must send for a server to go on."""
    buf = Buffer(capacity=512)
    push_quic_transport_parameters(buf, QuicTransportParameters(
        initial_source_connection_id=scid, max_idle_timeout=10_000, max_udp_payload_size=65527,
        initial_max_data=1 << 20, initial_max_stream_data_bidi_local=1 << 18,
        initial_max_stream_data_bidi_remote=1 << 18, initial_max_stream_data_uni=1 << 18,
        initial_max_streams_bidi=16, initial_max_streams_uni=16, active_connection_id_limit=2))
    return buf.data


def _varint(value: int) -> bytes:
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 0x40000000:
        return (value | 0x80000000).to_bytes(4, "big")
    return (value | 0xC000000000000000).to_bytes(8, "big")


def _initial_header(dcid: bytes, scid: bytes, token: bytes, length: int, packet_number: int) -> bytes:
    first = 0xC0 | (PN_LENGTH - 1)  # long header, fixed bit, type Initial (0), 2-byte packet number
    return (bytes((first,)) + QUIC_V1.to_bytes(4, "big") + bytes((len(dcid),)) + dcid + bytes((len(scid),)) + scid
            + _varint(len(token)) + token + (length | 0x4000).to_bytes(2, "big")
            + packet_number.to_bytes(PN_LENGTH, "big"))


def protect_initial(pair: CryptoPair, dcid: bytes, scid: bytes, frames: bytes, packet_number: int, *,
                    datagram_size: int, token: bytes = b"") -> bytes:
    """One client Initial packet carrying ``frames``, padded with PADDING frames to ``datagram_size``."""
    overhead = len(_initial_header(dcid, scid, token, 0, packet_number)) + AEAD_TAG
    payload = frames + bytes(max(0, datagram_size - overhead - len(frames)))
    if len(payload) < 4:  # header protection samples 16 bytes from 4 bytes past the packet number
        payload += bytes(4 - len(payload))
    header = _initial_header(dcid, scid, token, PN_LENGTH + len(payload) + AEAD_TAG, packet_number)
    return pair.encrypt_packet(header, payload, packet_number)


def crypto_frame(offset: int, data: bytes) -> bytes:
    return bytes((CRYPTO,)) + _varint(offset) + _varint(len(data)) + data


def client_initials(client_hello: bytes, dcid: bytes, scid: bytes, *, cuts: Sequence[int] = (),
                    reorder: bool = False, one_packet: bool = False, datagram_size: int = MIN_DATAGRAM,
                    token: bytes = b"", first_packet_number: int = 0) -> list[bytes]:
    """The datagrams that carry ``client_hello`` (a handshake message): one Initial per piece of the CRYPTO
    stream (cut at the offsets ``cuts``), each padded to ``datagram_size``; ``reorder`` sends them last first.
    ``one_packet``: all the pieces in one Initial instead, as CRYPTO frames last first (Chrome scrambles its
    CRYPTO frames too). A datagram is never smaller than its content needs, so an uncut large hello makes
    one large datagram."""
    if not MIN_DATAGRAM <= datagram_size <= MAX_DATAGRAM:
        raise ValueError(f"datagram_size must be {MIN_DATAGRAM}..{MAX_DATAGRAM}")
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < len(client_hello)), len(client_hello)]
    pair = CryptoPair()
    pair.setup_initial(dcid, is_client=True, version=QUIC_V1)
    if one_packet:
        frames = b"".join(crypto_frame(start, client_hello[start:end])
                          for start, end in reversed(list(itertools.pairwise(bounds))))
        return [protect_initial(pair, dcid, scid, frames, first_packet_number, datagram_size=datagram_size,
                                token=token)]
    datagrams = []
    for number, (start, end) in enumerate(itertools.pairwise(bounds)):
        frames = crypto_frame(start, client_hello[start:end])
        datagrams.append(protect_initial(pair, dcid, scid, frames, first_packet_number + number,
                                         datagram_size=datagram_size, token=token))
    return datagrams[::-1] if reorder else datagrams


def connection_close(dcid_original: bytes, dcid: bytes, scid: bytes, packet_number: int) -> bytes:
    """A client Initial with CONNECTION_CLOSE (no error): we are done, the server need not retransmit."""
    pair = CryptoPair()
    pair.setup_initial(dcid_original, is_client=True, version=QUIC_V1)
    frame = bytes((CONNECTION_CLOSE,)) + _varint(0) + _varint(0) + _varint(0)
    return protect_initial(pair, dcid, scid, frame, packet_number, datagram_size=MIN_DATAGRAM)


@dataclass
class ServerFlight:
    """What the server said, datagram by datagram (``feed``). ``original_dcid`` keys the Initial packets."""

    original_dcid: bytes
    scid: bytes  # ours: the server's packets are addressed to it
    server_cid: bytes | None = None
    retry_token: bytes | None = None
    retry_scid: bytes | None = None
    versions: list[int] | None = None  # Version Negotiation
    close_error: int | None = None  # the server's CONNECTION_CLOSE error code (0x100 + a TLS alert: crypto)
    malformed: int = 0  # datagrams or packets that did not parse or decrypt
    initial_packets: int = 0
    other_packets: int = 0  # Handshake, 0-RTT, 1-RTT: proof the server went on, unread
    crypto: dict[int, bytes] = field(default_factory=dict)
    _pair: CryptoPair | None = None

    def _keys(self) -> CryptoPair:
        if self._pair is None:
            self._pair = CryptoPair()
            self._pair.setup_initial(self.original_dcid, is_client=True, version=QUIC_V1)
        return self._pair

    def feed(self, datagram: bytes) -> None:
        buf = Buffer(data=datagram)
        while not buf.eof():
            start = buf.tell()
            if not any(datagram[start:]):
                return  # trailing zero bytes pad the datagram; they are no packet
            try:
                header = pull_quic_header(buf, host_cid_length=len(self.scid))
            except (ValueError, BufferReadError):
                self.malformed += 1
                return
            if header.version is None:  # a short header: 1-RTT, the rest of the datagram
                self.other_packets += 1
                return
            end = start + header.packet_length
            if header.packet_type == QuicPacketType.VERSION_NEGOTIATION:
                self.versions = list(header.supported_versions)
                return
            if header.destination_cid != self.scid:
                self.malformed += 1  # not for this connection
                return
            if header.packet_type == QuicPacketType.RETRY:
                self.retry_token, self.retry_scid = header.token, header.source_cid
                return
            if header.packet_type == QuicPacketType.INITIAL:
                self.server_cid = header.source_cid
                self._initial(datagram[start:end], buf.tell() - start)
            else:
                self.other_packets += 1
            buf.seek(end)

    def _initial(self, packet: bytes, encrypted_offset: int) -> None:
        try:
            _header, payload, _number = self._keys().decrypt_packet(packet, encrypted_offset, 0)
        except (CryptoError, ValueError, BufferReadError):
            self.malformed += 1
            return
        self.initial_packets += 1
        try:
            close = read_frames(payload, self.crypto)
        except (BufferReadError, ValueError):
            self.malformed += 1
            return
        if close is not None:
            self.close_error = close

    def crypto_stream(self) -> bytes:
        """The server's Initial CRYPTO stream, as far as it is contiguous from offset 0."""
        return contiguous(self.crypto)

    def server_hello(self) -> bytes | None:
        """The ServerHello handshake message (header included) once it is all there."""
        stream = self.crypto_stream()
        if len(stream) < 4 or stream[0] != 2:
            return None
        length = int.from_bytes(stream[1:4], "big")
        return stream[:4 + length] if len(stream) >= 4 + length else None


def read_frames(payload: bytes, crypto: dict[int, bytes]) -> int | None:
    """The frames of an Initial packet's payload: CRYPTO data into ``crypto`` (by offset, bounded), and the
    error code of a CONNECTION_CLOSE if there is one. ValueError for a frame an Initial may not carry."""
    buf = Buffer(data=payload)
    while not buf.eof():
        kind = buf.pull_uint_var()
        if kind in (PADDING, PING):
            continue
        if kind in (ACK, ACK_ECN):
            buf.pull_uint_var()  # largest acknowledged
            buf.pull_uint_var()  # ack delay
            for _ in range(buf.pull_uint_var() * 2 + 1):  # first range, then (gap, range) pairs
                buf.pull_uint_var()
            if kind == ACK_ECN:
                for _ in range(3):
                    buf.pull_uint_var()
        elif kind == CRYPTO:
            offset, length = buf.pull_uint_var(), buf.pull_uint_var()
            data = buf.pull_bytes(length)
            if offset + length <= MAX_CRYPTO and len(crypto) < MAX_CRYPTO_FRAMES:
                crypto[offset] = data
        elif kind in (CONNECTION_CLOSE, CONNECTION_CLOSE + 1):
            return int(buf.pull_uint_var())
        else:
            raise ValueError(f"frame type {kind:#x} is not allowed in an Initial packet")
    return None


def contiguous(crypto: dict[int, bytes]) -> bytes:
    """A CRYPTO stream as far as it is contiguous from offset 0."""
    out = bytearray()
    for offset in sorted(crypto):
        data = crypto[offset]
        if offset > len(out):
            break
        out += data[len(out) - offset:]
    return bytes(out)


@dataclass(frozen=True)
class ClientInitial:
    """The first Initial packet of a client datagram, as a middlebox reads it (RFC 9001 §5.2: anyone can)."""

    dcid: bytes
    scid: bytes
    crypto: dict[int, bytes]


def read_client_initial(datagram: bytes) -> ClientInitial | None:
    """The client Initial at the start of ``datagram``, decrypted with the keys of its DCID; None if it is
    not one, or does not decrypt or parse."""
    buf = Buffer(data=datagram)
    try:
        header = pull_quic_header(buf)
        if header.version != QUIC_V1 or header.packet_type != QuicPacketType.INITIAL:
            return None
        pair = CryptoPair()
        pair.setup_initial(header.destination_cid, is_client=False, version=QUIC_V1)
        _h, payload, _n = pair.decrypt_packet(datagram[:header.packet_length], buf.tell(), 0)
        crypto: dict[int, bytes] = {}
        read_frames(payload, crypto)
    except (ValueError, BufferReadError, CryptoError):
        return None
    return ClientInitial(header.destination_cid, header.source_cid, crypto)
