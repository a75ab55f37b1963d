"""HAProxy PROXY protocol version 2: tell the upstream who the client was and what TLS it spoke.

The binary header (haproxy ``doc/proxy-protocol.txt`` §2.2) is prepended to the upstream connection::

    signature (12) | ver_cmd (1) | fam (1) | len (2, big-endian) | addresses | TLVs

``encode_v2`` writes a PROXY command for TCP over IPv4 or IPv6, ``encode_local`` a LOCAL command (health
checks, connections of our own). ``tls_tlvs`` builds the TLS-related TLVs a TLS terminator sends (ALPN,
AUTHORITY = SNI, and PP2_TYPE_SSL with its sub-TLVs), and ``decode_v2`` is a strict parser for tests and for
a future ingress that accepts the protocol: every malformed, truncated, oversized or inconsistent header is
a ``ValueError``, never another exception.

The key-exchange group travels in PP2_SUBTYPE_SSL_GROUP (0x26): the revision of the specification that
haproxy 3.x ships added three sub-types after PP2_SUBTYPE_SSL_KEY_ALG (0x25), namely
PP2_SUBTYPE_SSL_GROUP 0x26 ("the US-ASCII string name of the key exchange algorithm used for the frontend
TLS connection", e.g. "secp256r1"), PP2_SUBTYPE_SSL_SIG_SCHEME 0x27 and PP2_SUBTYPE_SSL_CLIENT_CERT 0x28.
The 2020/03/05 text (the one Debian's haproxy 2.6 carries) stops at 0x25; older receivers skip unknown
sub-TLVs, so the group needs no application-specific type (0xE0-0xEF). We write IANA group names, e.g.
"X25519MLKEM768".
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
FIXED_HEADER = 16  # signature, ver_cmd, fam, len
VERSION_2 = 0x2


class Command(enum.IntEnum):
    LOCAL = 0x0
    PROXY = 0x1


class Family(enum.IntEnum):
    UNSPEC = 0x0
    INET = 0x1
    INET6 = 0x2
    UNIX = 0x3


class Transport(enum.IntEnum):
    UNSPEC = 0x0
    STREAM = 0x1
    DGRAM = 0x2


# Address block length by the 14th byte (family << 4 | transport); the only combinations the spec lists.
ADDRESS_LENGTHS = {0x00: 0, 0x11: 12, 0x12: 12, 0x21: 36, 0x22: 36, 0x31: 216, 0x32: 216}
UNIX_PATH = 108

# Top-level TLV types (§2.2).
PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_TYPE_NETNS = 0x30
PP2_TYPE_MIN_CUSTOM = 0xE0  # application-specific range (§2.2.8)
PP2_TYPE_MAX_CUSTOM = 0xEF
# Sub-TLVs of PP2_TYPE_SSL (§2.2.6).
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_SUBTYPE_SSL_CN = 0x22
PP2_SUBTYPE_SSL_CIPHER = 0x23
PP2_SUBTYPE_SSL_SIG_ALG = 0x24
PP2_SUBTYPE_SSL_KEY_ALG = 0x25
PP2_SUBTYPE_SSL_GROUP = 0x26  # haproxy 3.x revision of the spec; see the module docstring
PP2_SUBTYPE_SSL_SIG_SCHEME = 0x27
PP2_SUBTYPE_SSL_CLIENT_CERT = 0x28
# Bits of pp2_tlv_ssl.client.
PP2_CLIENT_SSL = 0x01
PP2_CLIENT_CERT_CONN = 0x02
PP2_CLIENT_CERT_SESS = 0x04

# Bounds. The length field allows 64 KiB; a receiver should not buffer that much for one header. 16 KiB
# leaves room for a PP2_SUBTYPE_SSL_CLIENT_CERT carrying an ML-DSA-87 certificate (~7.5 KB DER).
DEFAULT_MAX_HEADER = 16 * 1024
MAX_TLV_VALUE = 0xFFFF
MAX_AUTHORITY = 255  # a DNS name; haproxy refuses longer authorities too
MAX_UNIQUE_ID = 128  # §2.2.5
_ASCII_SUBTYPES = frozenset(
    {
        PP2_SUBTYPE_SSL_VERSION,
        PP2_SUBTYPE_SSL_CIPHER,
        PP2_SUBTYPE_SSL_SIG_ALG,
        PP2_SUBTYPE_SSL_KEY_ALG,
        PP2_SUBTYPE_SSL_GROUP,
        PP2_SUBTYPE_SSL_SIG_SCHEME,
    }
)

Address = tuple[str, int]
TLV = tuple[int, bytes]


# -- CRC32c (Castagnoli, RFC 4960 Appendix B: reflected polynomial 0x82F63B78) ------------------------------


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes | bytearray | memoryview) -> int:
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# -- encoding ------------------------------------------------------------------------------------------------


def encode_tlv(tlv_type: int, value: bytes) -> bytes:
    if not 0 <= tlv_type <= 0xFF:
        raise ValueError(f"TLV type {tlv_type} is not one byte")
    if len(value) > MAX_TLV_VALUE:
        raise ValueError(f"TLV 0x{tlv_type:02x} value of {len(value)} bytes exceeds 65535")
    return struct.pack("!BH", tlv_type, len(value)) + bytes(value)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"not an IP address: {host!r}") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return address


def _port(port: int) -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port!r} is not in 0..65535")
    return port


def _assemble(command: Command, fam: int, addresses: bytes, tlvs: Iterable[TLV], crc: bool) -> bytes:
    body = bytearray(addresses)
    for tlv_type, value in tlvs:
        if tlv_type == PP2_TYPE_CRC32C:
            raise ValueError("pass crc32c=True instead of a PP2_TYPE_CRC32C TLV")
        body += encode_tlv(tlv_type, value)
    crc_at = -1
    if crc:
        crc_at = FIXED_HEADER + len(body) + 3
        body += encode_tlv(PP2_TYPE_CRC32C, bytes(4))
    if len(body) > 0xFFFF:
        raise ValueError(f"PROXY header body of {len(body)} bytes exceeds 65535")
    header = bytearray(SIGNATURE + bytes(((VERSION_2 << 4) | command, fam)) + struct.pack("!H", len(body)))
    header += body
    if crc:
        # §2.2.3: computed over the whole header with the checksum field zeroed, then written in place.
        header[crc_at : crc_at + 4] = struct.pack("!I", crc32c(header))
    return bytes(header)


def encode_v2(
    source: Address,
    destination: Address,
    tlvs: Sequence[TLV] = (),
    *,
    crc32c: bool = False,
) -> bytes:
    """A PROXY command for a TCP connection from ``source`` to ``destination`` (IP string, port).

    IPv4-mapped IPv6 addresses are written as IPv4; if one end is IPv4 and the other IPv6, the IPv4 one is
    mapped into IPv6 (one header has one family). ``crc32c=True`` appends a PP2_TYPE_CRC32C TLV.
    """
    src, dst = _ip(source[0]), _ip(destination[0])
    sport, dport = _port(source[1]), _port(destination[1])
    if src.version != dst.version:
        src, dst = (ipaddress.IPv6Address(f"::ffff:{a}") if a.version == 4 else a for a in (src, dst))
    if src.version == 4:
        fam = (Family.INET << 4) | Transport.STREAM
    else:
        fam = (Family.INET6 << 4) | Transport.STREAM
    addresses = src.packed + dst.packed + struct.pack("!HH", sport, dport)
    return _assemble(Command.PROXY, fam, addresses, tlvs, crc32c)


def encode_local(tlvs: Sequence[TLV] = (), *, crc32c: bool = False) -> bytes:
    """A LOCAL command (AF_UNSPEC, no addresses): a connection the proxy makes on its own, e.g. a health check."""
    return _assemble(Command.LOCAL, 0x00, b"", tlvs, crc32c)


def _ascii(text: str, what: str) -> bytes:
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {text!r} is not US-ASCII") from None


def tls_tlvs(
    version: str,
    cipher: str,
    group: str | None,
    sni: str | None,
    alpn: str | None,
    client_cert_verified: bool | None,
    client_cn: str | None,
    *,
    resumed: bool = False,
) -> list[TLV]:
    """The TLVs describing a terminated TLS connection, in the form haproxy's ``send-proxy-v2-ssl`` uses.

    - PP2_TYPE_ALPN: the negotiated protocol name (as haproxy sends it), when there is one.
    - PP2_TYPE_AUTHORITY: the SNI host name, when the client sent one.
    - PP2_TYPE_SSL: ``client`` = PP2_CLIENT_SSL, plus PP2_CLIENT_CERT_CONN and PP2_CLIENT_CERT_SESS when a
      client certificate was presented in this handshake (only CERT_SESS when ``resumed``: the certificate
      was presented in the session's original handshake); ``verify`` = 0 when it was presented and verified,
      1 otherwise (no certificate or not verified, "non-zero otherwise" in §2.2.6). Sub-TLVs:
      PP2_SUBTYPE_SSL_VERSION (e.g. "TLSv1.3"), PP2_SUBTYPE_SSL_CN (client certificate's CN),
      PP2_SUBTYPE_SSL_CIPHER (e.g. "TLS_AES_128_GCM_SHA256"), PP2_SUBTYPE_SSL_GROUP (e.g. "X25519MLKEM768").

    ``client_cert_verified``: None when no client certificate was presented, else whether it verified.
    """
    out: list[TLV] = []
    if alpn:
        out.append((PP2_TYPE_ALPN, alpn.encode("utf-8")))
    if sni:
        authority = sni.encode("utf-8")
        if len(authority) > MAX_AUTHORITY:
            raise ValueError(f"SNI of {len(authority)} bytes exceeds {MAX_AUTHORITY}")
        out.append((PP2_TYPE_AUTHORITY, authority))
    client = PP2_CLIENT_SSL
    if client_cert_verified is not None:
        client |= PP2_CLIENT_CERT_SESS if resumed else PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
    verify = 0 if client_cert_verified else 1
    subs = [encode_tlv(PP2_SUBTYPE_SSL_VERSION, _ascii(version, "TLS version"))]
    if client_cn is not None and client_cert_verified is not None:
        subs.append(encode_tlv(PP2_SUBTYPE_SSL_CN, client_cn.encode("utf-8")))
    subs.append(encode_tlv(PP2_SUBTYPE_SSL_CIPHER, _ascii(cipher, "cipher")))
    if group:
        subs.append(encode_tlv(PP2_SUBTYPE_SSL_GROUP, _ascii(group, "group")))
    value = struct.pack("!BI", client, verify) + b"".join(subs)
    if len(value) > MAX_TLV_VALUE:
        raise ValueError("PP2_TYPE_SSL value exceeds 65535 bytes")
    out.append((PP2_TYPE_SSL, value))
    return out


# -- decoding ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SSLInfo:
    """A decoded PP2_TYPE_SSL value."""

    client: int
    verify: int
    subtlvs: list[TLV] = field(default_factory=list)

    def sub(self, subtype: int) -> bytes | None:
        for t, v in self.subtlvs:
            if t == subtype:
                return v
        return None

    def _text(self, subtype: int) -> str | None:
        value = self.sub(subtype)
        return None if value is None else value.decode("utf-8")

    @property
    def version(self) -> str | None:
        return self._text(PP2_SUBTYPE_SSL_VERSION)

    @property
    def cipher(self) -> str | None:
        return self._text(PP2_SUBTYPE_SSL_CIPHER)

    @property
    def group(self) -> str | None:
        return self._text(PP2_SUBTYPE_SSL_GROUP)

    @property
    def cn(self) -> str | None:
        return self._text(PP2_SUBTYPE_SSL_CN)

    @property
    def client_cert_verified(self) -> bool | None:
        if not self.client & (PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS):
            return None
        return self.verify == 0


@dataclass(frozen=True)
class ProxyHeader:
    command: Command
    family: Family
    transport: Transport
    source: Address | None  # None for LOCAL, AF_UNSPEC and AF_UNIX
    destination: Address | None
    tlvs: list[TLV] = field(default_factory=list)  # top level, in order, PP2_TYPE_CRC32C included
    unix_source: bytes | None = None  # AF_UNIX paths (up to the first NUL)
    unix_destination: bytes | None = None
    crc_verified: bool | None = None  # None: no PP2_TYPE_CRC32C in the header
    length: int = 0  # bytes of the whole header

    def tlv(self, tlv_type: int) -> bytes | None:
        for t, v in self.tlvs:
            if t == tlv_type:
                return v
        return None

    @property
    def authority(self) -> str | None:
        value = self.tlv(PP2_TYPE_AUTHORITY)
        return None if value is None else value.decode("utf-8")

    @property
    def alpn(self) -> bytes | None:
        return self.tlv(PP2_TYPE_ALPN)

    @property
    def ssl(self) -> SSLInfo | None:
        value = self.tlv(PP2_TYPE_SSL)
        return None if value is None else parse_ssl_tlv(value)


def _split_tlvs(data: bytes, what: str) -> list[TLV]:
    out: list[TLV] = []
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 3:
            raise ValueError(f"truncated {what} TLV header at offset {pos}")
        tlv_type, length = struct.unpack_from("!BH", data, pos)
        pos += 3
        if length > end - pos:
            raise ValueError(f"{what} TLV 0x{tlv_type:02x} claims {length} bytes, {end - pos} remain")
        out.append((tlv_type, data[pos : pos + length]))
        pos += length
    return out


def _check_text(value: bytes, what: str, *, ascii_only: bool) -> None:
    try:
        text = value.decode("ascii" if ascii_only else "utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{what} is not {'US-ASCII' if ascii_only else 'UTF-8'}") from None
    if not text or "\x00" in text:
        raise ValueError(f"{what} is empty or contains NUL")


def parse_ssl_tlv(value: bytes) -> SSLInfo:
    """Strictly decode a PP2_TYPE_SSL value (§2.2.6): client, verify and well-formed sub-TLVs."""
    if len(value) < 5:
        raise ValueError(f"PP2_TYPE_SSL value of {len(value)} bytes is shorter than client + verify")
    client, verify = struct.unpack_from("!BI", value, 0)
    if client & ~(PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS):
        raise ValueError(f"PP2_TYPE_SSL client field 0x{client:02x} has undefined bits")
    subs = _split_tlvs(value[5:], "PP2_TYPE_SSL sub")
    seen: set[int] = set()
    for t, v in subs:
        if t in seen and t != PP2_TYPE_NOOP:
            raise ValueError(f"duplicate PP2_TYPE_SSL sub-TLV 0x{t:02x}")
        seen.add(t)
        if t in _ASCII_SUBTYPES:
            _check_text(v, f"PP2_TYPE_SSL sub-TLV 0x{t:02x}", ascii_only=True)
        elif t == PP2_SUBTYPE_SSL_CN:
            _check_text(v, "PP2_SUBTYPE_SSL_CN", ascii_only=False)
    if client & PP2_CLIENT_SSL and PP2_SUBTYPE_SSL_VERSION not in seen:
        raise ValueError("PP2_CLIENT_SSL is set but PP2_SUBTYPE_SSL_VERSION is missing")
    return SSLInfo(client, verify, subs)


def v2_header_length(prefix: bytes | bytearray | memoryview, max_length: int = DEFAULT_MAX_HEADER) -> int | None:
    """The length of the v2 header that ``prefix`` starts with; None until its first 16 bytes are there.

    Raises ValueError as soon as the bytes cannot start a valid header (wrong signature or version, a length
    above ``max_length``), so an ingress can drop a bad connection without waiting for more.
    """
    head = bytes(prefix[:FIXED_HEADER])
    if head[: len(SIGNATURE)] != SIGNATURE[: len(head)]:
        raise ValueError("not a PROXY protocol v2 signature")
    if len(head) < FIXED_HEADER:
        return None
    if head[12] >> 4 != VERSION_2:
        raise ValueError(f"PROXY protocol version {head[12] >> 4}, expected 2")
    total = FIXED_HEADER + struct.unpack_from("!H", head, 14)[0]
    if total > max_length:
        raise ValueError(f"PROXY header of {total} bytes exceeds the {max_length}-byte limit")
    return total


def decode_v2(
    data: bytes | bytearray | memoryview,
    *,
    max_length: int = DEFAULT_MAX_HEADER,
    verify_crc: bool = True,
) -> ProxyHeader:
    """Decode exactly one v2 header (``data`` must be the whole header and nothing else).

    Strict: signature, version 2, command LOCAL or PROXY, one of the spec's family/transport bytes, an
    address block of the exact size for that family, TLVs that end exactly at the header's end, at most one
    PP2_TYPE_CRC32C (4 bytes, checked unless ``verify_crc=False``), a well-formed PP2_TYPE_SSL, a UTF-8
    AUTHORITY of at most 255 bytes, a UNIQUE_ID of at most 128 bytes. Anything else: ValueError.
    """
    raw = bytes(data)
    total = v2_header_length(raw, max_length)
    if total is None:
        raise ValueError(f"truncated PROXY header: {len(raw)} bytes")
    if len(raw) < total:
        raise ValueError(f"truncated PROXY header: {len(raw)} of {total} bytes")
    if len(raw) > total:
        raise ValueError(f"{len(raw) - total} bytes after the PROXY header")
    ver_cmd, fam = raw[12], raw[13]
    command_value = ver_cmd & 0x0F
    if command_value not in (Command.LOCAL, Command.PROXY):
        raise ValueError(f"PROXY command 0x{command_value:x} is not LOCAL or PROXY")
    command = Command(command_value)
    if fam not in ADDRESS_LENGTHS:
        raise ValueError(f"family/transport byte 0x{fam:02x} is not defined")
    family, transport = Family(fam >> 4), Transport(fam & 0x0F)
    address_length = ADDRESS_LENGTHS[fam]
    body = raw[FIXED_HEADER:]
    if len(body) < address_length:
        raise ValueError(f"address block of {len(body)} bytes, family needs {address_length}")
    addresses, tlv_bytes = body[:address_length], body[address_length:]

    source = destination = None
    unix_source = unix_destination = None
    if family in (Family.INET, Family.INET6):
        size = 4 if family == Family.INET else 16
        ip_type = ipaddress.IPv4Address if family == Family.INET else ipaddress.IPv6Address
        sport, dport = struct.unpack_from("!HH", addresses, 2 * size)
        source = (str(ip_type(addresses[:size])), sport)
        destination = (str(ip_type(addresses[size : 2 * size])), dport)
    elif family == Family.UNIX:
        unix_source = addresses[:UNIX_PATH].split(b"\x00", 1)[0]
        unix_destination = addresses[UNIX_PATH:].split(b"\x00", 1)[0]
    if command == Command.LOCAL:
        # §2.2: for LOCAL the receiver uses the real endpoints; the address block is skipped.
        source = destination = None
        unix_source = unix_destination = None

    tlvs = _split_tlvs(tlv_bytes, "PROXY")
    crc_verified: bool | None = None
    offset = FIXED_HEADER + address_length
    crc_offset = -1
    seen_once: set[int] = set()
    for tlv_type, value in tlvs:
        if tlv_type in (PP2_TYPE_CRC32C, PP2_TYPE_SSL, PP2_TYPE_AUTHORITY, PP2_TYPE_ALPN, PP2_TYPE_UNIQUE_ID):
            if tlv_type in seen_once:
                raise ValueError(f"duplicate PROXY TLV 0x{tlv_type:02x}")
            seen_once.add(tlv_type)
        if tlv_type == PP2_TYPE_CRC32C:
            if len(value) != 4:
                raise ValueError(f"PP2_TYPE_CRC32C of {len(value)} bytes, expected 4")
            crc_offset = offset + 3
        elif tlv_type == PP2_TYPE_SSL:
            parse_ssl_tlv(value)
        elif tlv_type == PP2_TYPE_AUTHORITY:
            if len(value) > MAX_AUTHORITY:
                raise ValueError(f"PP2_TYPE_AUTHORITY of {len(value)} bytes exceeds {MAX_AUTHORITY}")
            _check_text(value, "PP2_TYPE_AUTHORITY", ascii_only=False)
        elif tlv_type == PP2_TYPE_ALPN:
            if not value:
                raise ValueError("empty PP2_TYPE_ALPN")
        elif tlv_type == PP2_TYPE_UNIQUE_ID and len(value) > MAX_UNIQUE_ID:
            raise ValueError(f"PP2_TYPE_UNIQUE_ID of {len(value)} bytes exceeds {MAX_UNIQUE_ID}")
        offset += 3 + len(value)
    if crc_offset >= 0:
        received = struct.unpack_from("!I", raw, crc_offset)[0]
        zeroed = raw[:crc_offset] + bytes(4) + raw[crc_offset + 4 :]
        crc_verified = crc32c(zeroed) == received
        if verify_crc and not crc_verified:
            raise ValueError("PP2_TYPE_CRC32C does not match the header")
    return ProxyHeader(
        command,
        family,
        transport,
        source,
        destination,
        tlvs,
        unix_source,
        unix_destination,
        crc_verified,
        total,
    )
