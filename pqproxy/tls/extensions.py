"""Typed bodies of the extensions the engine understands (RFC 8446 §4.2, RFC 6066, 7301, 8449, 8773, 9258).

Each is a small dataclass with ``encode() -> bytes`` (the extension_data) and a strict ``decode``
that raises only ``TLSAlert(decode_error)``. Where the same extension has another body in another
message (key_share, supported_versions, pre_shared_key), there is one class per body, named after
the RFC's struct.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .alerts import decode_error, illegal_parameter
from .codepoints import ExtensionType
from .messages import Extension
from .wire import Reader, u16, u16_list, vec8, vec16


@dataclass
class ServerNameList:
    """RFC 6066 §3. Only host_name (0) is defined; other types are kept opaque."""

    names: list[tuple[int, bytes]] = field(default_factory=list)

    @classmethod
    def for_host(cls, host: str) -> ServerNameList:
        return cls([(0, host.encode("ascii"))])

    @property
    def host_name(self) -> str | None:
        for name_type, name in self.names:
            if name_type == 0:
                try:
                    return name.decode("ascii")
                except UnicodeDecodeError:
                    return None
        return None

    def encode(self) -> bytes:
        return vec16(b"".join(bytes((t,)) + vec16(n) for t, n in self.names))

    @classmethod
    def decode(cls, data: bytes) -> ServerNameList:
        r = Reader(data)
        lst = r.sub16("server_name_list", min_len=1)
        names: list[tuple[int, bytes]] = []
        while not lst.at_end():
            name_type = lst.uint8("name_type")
            names.append((name_type, lst.vector16("host_name", min_len=1)))
        r.expect_end("server_name")
        return cls(names)


@dataclass
class NamedGroupList:
    groups: list[int] = field(default_factory=list)

    def encode(self) -> bytes:
        return u16_list(self.groups)

    @classmethod
    def decode(cls, data: bytes) -> NamedGroupList:
        r = Reader(data)
        groups = r.uint16_list("named_group_list", min_len=2)
        r.expect_end("supported_groups")
        return cls(groups)


@dataclass
class SignatureSchemeList:
    schemes: list[int] = field(default_factory=list)

    def encode(self) -> bytes:
        return u16_list(self.schemes)

    @classmethod
    def decode(cls, data: bytes) -> SignatureSchemeList:
        r = Reader(data)
        schemes = r.uint16_list("supported_signature_algorithms", min_len=2)
        r.expect_end("signature_algorithms")
        return cls(schemes)


@dataclass
class ProtocolNameList:
    """RFC 7301 ALPN."""

    protocols: list[bytes] = field(default_factory=list)

    def encode(self) -> bytes:
        return vec16(b"".join(vec8(p) for p in self.protocols))

    @classmethod
    def decode(cls, data: bytes) -> ProtocolNameList:
        r = Reader(data)
        lst = r.sub16("protocol_name_list", min_len=2)
        protocols = []
        while not lst.at_end():
            protocols.append(lst.vector8("protocol_name", min_len=1))
        r.expect_end("application_layer_protocol_negotiation")
        return cls(protocols)


@dataclass
class SupportedVersionsClient:
    versions: list[int] = field(default_factory=list)

    def encode(self) -> bytes:
        return vec8(b"".join(v.to_bytes(2, "big") for v in self.versions))

    @classmethod
    def decode(cls, data: bytes) -> SupportedVersionsClient:
        r = Reader(data)
        raw = r.vector8("versions", min_len=2)
        if len(raw) & 1:
            raise decode_error("odd supported_versions length")
        r.expect_end("supported_versions")
        return cls([int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)])


@dataclass
class SupportedVersionsServer:
    selected_version: int

    def encode(self) -> bytes:
        return u16(self.selected_version)

    @classmethod
    def decode(cls, data: bytes) -> SupportedVersionsServer:
        r = Reader(data)
        version = r.uint16("selected_version")
        r.expect_end("supported_versions")
        return cls(version)


@dataclass
class KeyShareEntry:
    group: int
    key_exchange: bytes

    def encode(self) -> bytes:
        return u16(self.group) + vec16(self.key_exchange)


def _read_entry(r: Reader) -> KeyShareEntry:
    group = r.uint16("key_share group")
    return KeyShareEntry(group, r.vector16("key_exchange", min_len=1))


@dataclass
class KeyShareClientHello:
    client_shares: list[KeyShareEntry] = field(default_factory=list)

    def encode(self) -> bytes:
        return vec16(b"".join(e.encode() for e in self.client_shares))

    @classmethod
    def decode(cls, data: bytes) -> KeyShareClientHello:
        r = Reader(data)
        lst = r.sub16("client_shares")
        shares = []
        while not lst.at_end():
            shares.append(_read_entry(lst))
        r.expect_end("key_share")
        return cls(shares)


@dataclass
class KeyShareServerHello:
    server_share: KeyShareEntry

    def encode(self) -> bytes:
        return self.server_share.encode()

    @classmethod
    def decode(cls, data: bytes) -> KeyShareServerHello:
        r = Reader(data)
        entry = _read_entry(r)
        r.expect_end("key_share")
        return cls(entry)


@dataclass
class KeyShareHelloRetryRequest:
    selected_group: int

    def encode(self) -> bytes:
        return u16(self.selected_group)

    @classmethod
    def decode(cls, data: bytes) -> KeyShareHelloRetryRequest:
        r = Reader(data)
        group = r.uint16("selected_group")
        r.expect_end("key_share")
        return cls(group)


@dataclass
class PskKeyExchangeModes:
    ke_modes: list[int] = field(default_factory=list)

    def encode(self) -> bytes:
        return vec8(bytes(self.ke_modes))

    @classmethod
    def decode(cls, data: bytes) -> PskKeyExchangeModes:
        r = Reader(data)
        modes: list[int] = list(r.vector8("ke_modes", min_len=1))
        r.expect_end("psk_key_exchange_modes")
        return cls(modes)


@dataclass
class PskIdentity:
    identity: bytes
    obfuscated_ticket_age: int


@dataclass
class OfferedPsks:
    """RFC 8446 §4.2.11: identities then binders; binders are computed over the hello without them."""

    identities: list[PskIdentity] = field(default_factory=list)
    binders: list[bytes] = field(default_factory=list)

    def encode_identities(self) -> bytes:
        return vec16(
            b"".join(vec16(i.identity) + i.obfuscated_ticket_age.to_bytes(4, "big") for i in self.identities)
        )

    def encode_binders(self) -> bytes:
        return vec16(b"".join(vec8(b) for b in self.binders))

    def encode(self) -> bytes:
        return self.encode_identities() + self.encode_binders()

    def binders_length(self) -> int:
        """Bytes of the binders list on the wire (its 2-byte length included)."""
        return 2 + sum(1 + len(b) for b in self.binders)

    @classmethod
    def decode(cls, data: bytes) -> OfferedPsks:
        r = Reader(data)
        ids = r.sub16("identities", min_len=7)
        identities = []
        while not ids.at_end():
            identity = ids.vector16("identity", min_len=1)
            identities.append(PskIdentity(identity, ids.uint32("obfuscated_ticket_age")))
        bnd = r.sub16("binders", min_len=33)
        binders = []
        while not bnd.at_end():
            binders.append(bnd.vector8("binder", min_len=32))
        r.expect_end("pre_shared_key")
        return cls(identities, binders)


@dataclass
class PreSharedKeyServerHello:
    selected_identity: int

    def encode(self) -> bytes:
        return u16(self.selected_identity)

    @classmethod
    def decode(cls, data: bytes) -> PreSharedKeyServerHello:
        r = Reader(data)
        selected = r.uint16("selected_identity")
        r.expect_end("pre_shared_key")
        return cls(selected)


@dataclass
class Cookie:
    cookie: bytes

    def encode(self) -> bytes:
        return vec16(self.cookie)

    @classmethod
    def decode(cls, data: bytes) -> Cookie:
        r = Reader(data)
        cookie = r.vector16("cookie", min_len=1)
        r.expect_end("cookie")
        return cls(cookie)


@dataclass
class RecordSizeLimit:
    """RFC 8449. In TLS 1.3 the limit counts the inner content type byte."""

    limit: int

    def encode(self) -> bytes:
        return u16(self.limit)

    @classmethod
    def decode(cls, data: bytes) -> RecordSizeLimit:
        r = Reader(data)
        limit = r.uint16("record_size_limit")
        r.expect_end("record_size_limit")
        return cls(limit)


@dataclass
class ImportedIdentity:
    """RFC 9258 §5.1: the PSK identity of an imported external PSK."""

    external_identity: bytes
    context: bytes = b""
    target_protocol: int = 0x0304
    target_kdf: int = 0x0001  # HKDF_SHA256; 0x0002 is HKDF_SHA384

    def encode(self) -> bytes:
        return vec16(self.external_identity) + vec16(self.context) + u16(self.target_protocol) + u16(self.target_kdf)

    @classmethod
    def decode(cls, data: bytes) -> ImportedIdentity:
        r = Reader(data)
        external = r.vector16("external_identity", min_len=1)
        context = r.vector16("context")
        protocol = r.uint16("target_protocol")
        kdf = r.uint16("target_kdf")
        r.expect_end("ImportedIdentity")
        return cls(external, context, protocol, kdf)


def empty_extension(data: bytes, name: str) -> None:
    if data:
        raise decode_error(f"{name} extension must be empty")


def ext(ext_type: ExtensionType | int, body: object | bytes = b"") -> Extension:
    """Build an Extension from a typed body (anything with ``encode``) or raw bytes."""
    data = body if isinstance(body, bytes) else body.encode()  # type: ignore[attr-defined]
    return Extension(int(ext_type), data)


def check_extension_block(extensions: list[Extension], where: str) -> set[int]:
    """RFC 8446 §4.2: at most one extension of a type per block."""
    types = [e.type for e in extensions]
    seen = set(types)
    if len(seen) != len(types):
        first: set[int] = set()
        for t in types:
            if t in first:
                raise illegal_parameter(f"duplicate extension 0x{t:04x} in {where}")
            first.add(t)
    return seen
