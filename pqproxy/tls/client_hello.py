"""The ClientHello, read once: ``ClientHelloInfo`` is what the server and the edge in front of it need from it.

Theory of operation
-------------------
``read_client_hello`` decodes a ClientHello handshake message and its extensions, and checks their *form*
(RFC 8446 §4.1.2 and §4.2: each extension once, pre_shared_key last, well-formed bodies, bounded counts). What
the client asks for is judged later, by the handshake (server.py ``check_client_hello``): a TLS 1.2-only client,
say, reads fine here and is refused there with protocol_version.

The split lets the edge look at a hello before the handshake answers it, as Go hands ``ClientHelloInfo`` to
``GetConfigForClient``: ``TLSServer(config, defer_client_hello=True)`` stops after reading the first ClientHello
and emits ``ClientHelloReceived(info)``; the edge hands a TLS 1.2-only client to OpenSSL, fetches the QKD key the
PSK identity names, picks the SNI route, then ``continue_handshake(config)``. One decode serves them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from .alerts import decode_error, illegal_parameter
from .codepoints import TLS13, ExtensionType
from .extensions import (
    KeyShareClientHello,
    KeyShareEntry,
    NamedGroupList,
    OfferedPsks,
    ProtocolNameList,
    PskKeyExchangeModes,
    RecordSizeLimit,
    ServerNameList,
    SignatureSchemeList,
    SupportedVersionsClient,
    check_extension_block,
    empty_extension,
)
from .groups import GROUPS, group_name
from .messages import ClientHello

__all__ = ["MAX_HOST_NAME", "ClientHelloInfo", "read_client_hello"]

MAX_HOST_NAME = 255  # RFC 1035 name length

# The extension loop compares each extension with these: as plain ints, not IntEnum members (an attribute of an
# IntEnum class is ~5 times slower to look up), ~10 us less per ClientHello.
_SUPPORTED_VERSIONS = int(ExtensionType.supported_versions)
_SUPPORTED_GROUPS = int(ExtensionType.supported_groups)
_KEY_SHARE = int(ExtensionType.key_share)
_SIGNATURE_ALGORITHMS = int(ExtensionType.signature_algorithms)
_SERVER_NAME = int(ExtensionType.server_name)
_APPLICATION_LAYER_PROTOCOL_NEGOTIATION = int(ExtensionType.application_layer_protocol_negotiation)
_PSK_KEY_EXCHANGE_MODES = int(ExtensionType.psk_key_exchange_modes)
_PRE_SHARED_KEY = int(ExtensionType.pre_shared_key)
_EARLY_DATA = int(ExtensionType.early_data)
_RECORD_SIZE_LIMIT = int(ExtensionType.record_size_limit)
_TLS_CERT_WITH_EXTERN_PSK = int(ExtensionType.tls_cert_with_extern_psk)
_COOKIE = int(ExtensionType.cookie)


_NO_SHARES: Mapping[int, bytes] = MappingProxyType({})


class ClientHelloInfo:
    """One ClientHello, decoded once: the message, its raw bytes (header included) and its extensions' values.
    An absent extension leaves its empty default (immutable and shared: one of these is made on every
    connection's path, and a fresh empty list per field would cost more than the fields)."""

    __slots__ = ("alpn", "cert_with_extern_psk", "cookie", "early_data", "groups", "hello", "key_share_groups",
                 "offered_psks", "psk_modes", "raw", "record_size_limit", "seen", "server_name", "shares",
                 "signature_schemes", "versions")

    def __init__(self, hello: ClientHello, raw: bytes, seen: set[int]) -> None:
        self.hello = hello
        self.raw = raw
        self.seen = seen  # the extension types present
        self.versions: Sequence[int] = ()  # supported_versions
        self.groups: Sequence[int] = ()
        self.shares: Mapping[int, bytes] = _NO_SHARES  # the shares for groups we implement
        self.key_share_groups: Sequence[int] = ()  # the group of every share offered, in order
        self.signature_schemes: Sequence[int] = ()
        self.server_name: str | None = None
        self.alpn: Sequence[bytes] = ()
        self.psk_modes: Sequence[int] = ()
        self.offered_psks: OfferedPsks | None = None
        self.early_data = False
        self.record_size_limit: int | None = None
        self.cert_with_extern_psk = False
        self.cookie: bytes | None = None

    def __repr__(self) -> str:
        return f"ClientHelloInfo(server_name={self.server_name!r}, size={self.size}, versions={self.versions!r})"

    @property
    def offers_tls13(self) -> bool:
        """supported_versions lists TLS 1.3 (without it, a client speaks TLS 1.2 or older: RFC 8446 §4.2.1)."""
        return TLS13 in self.versions

    @property
    def size(self) -> int:
        """Bytes of the handshake message, header included (what logs and metrics call the hello's size)."""
        return len(self.raw)


def read_client_hello(body: bytes, raw: bytes) -> ClientHelloInfo:
    """Decode a ClientHello (``body``: the message without its 4-byte header, ``raw``: with it) and check its
    form. Malformed input raises the TLSAlert RFC 8446 §6.2 names; every unknown extension, GREASE included, is
    ignored (RFC 8446 §4.2)."""
    hello = ClientHello.decode(body)
    seen = check_extension_block(hello.extensions, "ClientHello")
    info = ClientHelloInfo(hello, raw, seen)
    if hello.extensions and ExtensionType.pre_shared_key in seen \
            and hello.extensions[-1].type != ExtensionType.pre_shared_key:
        raise illegal_parameter("pre_shared_key is not the last extension")
    for e in hello.extensions:
        t, data = e.type, e.data
        if t == _SUPPORTED_VERSIONS:
            info.versions = SupportedVersionsClient.decode(data).versions
        elif t == _SUPPORTED_GROUPS:
            info.groups = NamedGroupList.decode(data).groups
        elif t == _KEY_SHARE:
            entries = KeyShareClientHello.decode(data).client_shares
            info.key_share_groups = [e.group for e in entries]
            info.shares = _key_shares(entries)
        elif t == _SIGNATURE_ALGORITHMS:
            info.signature_schemes = SignatureSchemeList.decode(data).schemes
        elif t == _SERVER_NAME:
            info.server_name = _host_name(ServerNameList.decode(data))
        elif t == _APPLICATION_LAYER_PROTOCOL_NEGOTIATION:
            info.alpn = ProtocolNameList.decode(data).protocols
        elif t == _PSK_KEY_EXCHANGE_MODES:
            info.psk_modes = PskKeyExchangeModes.decode(data).ke_modes
        elif t == _PRE_SHARED_KEY:
            info.offered_psks = OfferedPsks.decode(data)
        elif t == _EARLY_DATA:
            empty_extension(data, "early_data")
            info.early_data = True
        elif t == _RECORD_SIZE_LIMIT:
            limit = RecordSizeLimit.decode(data).limit
            if limit < 64:
                raise illegal_parameter(f"record_size_limit {limit} below 64")
            info.record_size_limit = limit
        elif t == _TLS_CERT_WITH_EXTERN_PSK:
            empty_extension(data, "tls_cert_with_extern_psk")
            info.cert_with_extern_psk = True
        elif t == _COOKIE:
            info.cookie = data
    return info


def _key_shares(entries: list[KeyShareEntry]) -> dict[int, bytes]:
    """The shares for groups we implement. A share for a group we do not know costs nothing and is kept out
    (RFC 8446 §4.2.8: the server picks among the groups it supports), however many there are: the bound is the
    ClientHello's size. Only the shares kept can ever cost a computation, and there is one per group at most."""
    shares: dict[int, bytes] = {}
    for entry in entries:
        group = entry.group
        if group in GROUPS:
            if group in shares:
                raise illegal_parameter(f"two key shares for {group_name(group)}")  # RFC 8446 §4.2.8
            shares[group] = entry.key_exchange
    return shares


def _host_name(names: ServerNameList) -> str | None:
    """RFC 6066 §3: one host_name, ASCII, no trailing dot. Anything else is a decode_error."""
    host_names = [n for t, n in names.names if t == 0]
    if len(host_names) > 1:
        raise illegal_parameter("more than one host_name in server_name")
    if not host_names:
        return None
    raw = host_names[0]
    if len(raw) > MAX_HOST_NAME or raw.endswith(b".") or b"\x00" in raw:
        raise decode_error("malformed host_name")
    try:
        return raw.decode("ascii").lower()
    except UnicodeDecodeError:
        raise decode_error("host_name is not ASCII") from None
