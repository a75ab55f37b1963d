"""A ClientHello built with full control, for probes: the same codec as the handshake, no checks.

``HelloSpec`` says what goes in; ``build_client_hello`` makes the message and keeps the private halves
of any key shares it generated, so a probe can still finish (or at least read) the handshake.
Anything can be set: extension order (or a shuffle, as Chrome does), GREASE (RFC 8701), unknown
codepoints with opaque bodies, key shares of any group (or raw bytes), and the exact encoded size
through the padding extension (RFC 7685). ``client_hello_records`` splits it into records.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .codepoints import GREASE_VALUES, TLS13, ExtensionType, PskKeyExchangeMode
from .config import CLASSICAL_SIGNATURE_SCHEMES
from .extensions import (
    KeyShareClientHello,
    KeyShareEntry,
    NamedGroupList,
    ProtocolNameList,
    PskKeyExchangeModes,
    ServerNameList,
    SignatureSchemeList,
    SupportedVersionsClient,
    ext,
)
from .groups import DEFAULT_GROUPS, GROUPS, ClientKeyShare
from .key_schedule import DEFAULT_CIPHER_SUITES
from .messages import ClientHello, Extension
from .record import split_into_records

PADDING_HEADER = 4  # extension type and length


@dataclass
class HelloSpec:
    server_name: str | None = None
    cipher_suites: Sequence[int] = DEFAULT_CIPHER_SUITES
    groups: Sequence[int] = DEFAULT_GROUPS
    # Groups to send a share for: a group code (generated here when we implement it, otherwise random
    # bytes of ``opaque_share_len``), or (code, raw bytes) for an exact share.
    key_shares: Sequence[int | tuple[int, bytes]] = (0x11EC, 0x001D)
    # No ML-DSA unless asked for: a hello that names nothing post-quantum in its signatures is what the probe's
    # controls need (an IPS keys on ML-DSA codepoints alone: REFERENCE.md §4).
    signature_schemes: Sequence[int] = CLASSICAL_SIGNATURE_SCHEMES
    signature_schemes_cert: Sequence[int] | None = None  # signature_algorithms_cert (RFC 8446 §4.2.3), if any
    alpn: Sequence[bytes] = ()
    versions: Sequence[int] = (TLS13,)
    grease: bool = False
    shuffle_extensions: bool = False
    extension_order: Sequence[int] | None = None  # types in this order first, the rest after
    extra_extensions: Sequence[Extension] = ()
    compatibility_session_id: bool = True
    pad_to: int | None = None  # exact length of the encoded handshake message
    opaque_share_len: int = 1216
    random_source: Callable[[int], bytes] = os.urandom
    shuffle_seed: int | None = None


@dataclass
class BuiltHello:
    hello: ClientHello
    key_shares: dict[int, ClientKeyShare] = field(default_factory=dict)

    def encode(self) -> bytes:
        return self.hello.encode()

    def records(self, fragment_sizes: Sequence[int] | None = None) -> bytes:
        return client_hello_records(self.encode(), fragment_sizes)


def _grease(source: Callable[[int], bytes], avoid: set[int] | None = None) -> int:
    while True:
        value = GREASE_VALUES[source(1)[0] % len(GREASE_VALUES)]
        if not avoid or value not in avoid:
            return value


def build_client_hello(spec: HelloSpec) -> BuiltHello:
    rnd = spec.random_source
    shares: dict[int, ClientKeyShare] = {}
    entries: list[KeyShareEntry] = []
    grease_group = _grease(rnd) if spec.grease else None
    if grease_group is not None:
        entries.append(KeyShareEntry(grease_group, b"\x00"))  # Chrome's GREASE share is one byte
    for item in spec.key_shares:
        if isinstance(item, tuple):
            entries.append(KeyShareEntry(item[0], item[1]))
            continue
        group = GROUPS.get(item)
        if group is not None and group.available():
            share = group.client_generate()
            shares[item] = share
            entries.append(KeyShareEntry(item, share.key_exchange))
        else:
            entries.append(KeyShareEntry(item, rnd(spec.opaque_share_len)))

    groups = list(spec.groups)
    suites = list(spec.cipher_suites)
    versions = list(spec.versions)
    if spec.grease:
        groups.insert(0, grease_group or _grease(rnd))
        suites.insert(0, _grease(rnd))
        versions.insert(0, _grease(rnd))

    extensions: list[Extension] = []
    if spec.server_name:
        extensions.append(ext(ExtensionType.server_name, ServerNameList.for_host(spec.server_name)))
    extensions.append(ext(ExtensionType.supported_groups, NamedGroupList(groups)))
    extensions.append(ext(ExtensionType.signature_algorithms, SignatureSchemeList(list(spec.signature_schemes))))
    if spec.signature_schemes_cert is not None:
        extensions.append(ext(ExtensionType.signature_algorithms_cert,
                              SignatureSchemeList(list(spec.signature_schemes_cert))))
    if spec.alpn:
        extensions.append(ext(ExtensionType.application_layer_protocol_negotiation, ProtocolNameList(list(spec.alpn))))
    extensions.append(ext(ExtensionType.supported_versions, SupportedVersionsClient(versions)))
    extensions.append(ext(ExtensionType.psk_key_exchange_modes, PskKeyExchangeModes([PskKeyExchangeMode.psk_dhe_ke])))
    extensions.append(ext(ExtensionType.key_share, KeyShareClientHello(entries)))
    extensions.extend(spec.extra_extensions)
    if spec.grease:
        used = {e.type for e in extensions}
        first, last = _grease(rnd, used), _grease(rnd, used)
        while last == first:
            last = _grease(rnd, used)
        extensions.insert(0, Extension(first, b""))
        extensions.append(Extension(last, b"\x00"))  # as Chrome: the second GREASE extension has one byte

    if spec.extension_order is not None:
        rank = {t: i for i, t in enumerate(spec.extension_order)}
        extensions.sort(key=lambda e: rank.get(e.type, len(rank)))
    elif spec.shuffle_extensions:
        shuffler = random.Random(spec.shuffle_seed if spec.shuffle_seed is not None else rnd(8))
        shuffler.shuffle(extensions)
    # pre_shared_key, if a probe adds one, must stay last (RFC 8446 §4.2.11).
    extensions.sort(key=lambda e: e.type == ExtensionType.pre_shared_key)

    hello = ClientHello(
        random=rnd(32),
        legacy_session_id=rnd(32) if spec.compatibility_session_id else b"",
        cipher_suites=suites,
        extensions=extensions,
    )
    if spec.pad_to is not None:
        pad_client_hello(hello, spec.pad_to)
    return BuiltHello(hello, shares)


def pad_client_hello(hello: ClientHello, target_len: int) -> None:
    """Grow ``hello`` in place to exactly ``target_len`` encoded bytes (4-byte header included) with
    the padding extension. ValueError if it is already longer, or too close to add an extension."""
    hello.extensions = [e for e in hello.extensions if e.type != ExtensionType.padding]
    current = len(hello.encode())
    missing = target_len - current
    if missing == 0:
        return
    if missing < PADDING_HEADER:
        raise ValueError(
            f"ClientHello is {current} bytes: cannot pad to {target_len} (the padding extension needs 4 bytes)"
        )
    padding = Extension(ExtensionType.padding, bytes(missing - PADDING_HEADER))
    position = len(hello.extensions)
    if hello.extensions and hello.extensions[-1].type == ExtensionType.pre_shared_key:
        position -= 1
    hello.extensions.insert(position, padding)


def client_hello_records(handshake: bytes, fragment_sizes: Sequence[int] | None = None) -> bytes:
    """The hello as TLS records: one record, or fragments of the given sizes then the rest."""
    return split_into_records(22, handshake, list(fragment_sizes) if fragment_sizes else None)
