"""ClientHello profiles: the hellos real clients send, built with the shared codec (``tls.hello``).

A profile gives a ``HelloSpec``; ``build_probe_hello`` turns it into bytes, pads it to an exact size,
moves the server_name extension to an exact byte offset when asked (``sni_end``), and keeps the
private halves of the key shares so the probe can read the server's encrypted flight (its certificate
tells a misrouted connection from a good one).

- ``chrome``: the layout of a current Chromium hello (checked against ``captures/chromium.pcap``):
  GREASE everywhere, X25519MLKEM768 + X25519 shares, a GREASE ECH extension, extensions shuffled
  between a leading and a trailing GREASE extension, TLS 1.2 suites still offered.
- ``openssl35``: OpenSSL 3.5's default client (Node 26): X25519MLKEM768 + X25519 shares, no GREASE.
- ``classical``: an X25519 share only; the control for codepoint and size questions.
- ``mlkem1024``: the largest standard shares: MLKEM1024 (1568 bytes) and SecP384r1MLKEM1024.
- ``go127``: a Go 1.27 client's hello: Go 1.26's (``go_hello``) with the ML-DSA schemes Go 1.27 added.
- ``replay:NAME``: the hello captured in ``captures/NAME.pcap`` (or any pcap path), byte for byte but for the
  server_name, which becomes the target's (the capture's own would be routed elsewhere). Its private keys are
  unknown, so the probe reads the ServerHello but not the certificate.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from ..tls.codepoints import (
    GREASE_VALUES,
    TLS12,
    TLS13,
    ExtensionType,
    NamedGroup,
    SignatureScheme,
    is_grease,
)
from ..tls.config import CLASSICAL_SIGNATURE_SCHEMES, DEFAULT_SIGNATURE_SCHEMES
from ..tls.groups import ClientKeyShare, group_by_name
from ..tls.hello import HelloSpec, build_client_hello, pad_client_hello
from ..tls.key_schedule import CIPHER_SUITES, DEFAULT_CIPHER_SUITES
from ..tls.messages import ClientHello, Extension

PROFILES = ("chrome", "openssl35", "classical", "mlkem1024", "go127", "replay")
# captures/ ships inside the package as pqproxy/probe/pcaps (a link in a checkout, files in a wheel).
CAPTURES_DIR = Path(str(resources.files("pqproxy.probe") / "pcaps"))

# Offsets in the TCP stream of one hello in one record: record header, handshake header, then the body.
RECORD_HEADER = 5
HANDSHAKE_HEADER = 4

_TLS12_SUITES = (0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035)
# Chromium 156 (captures/chromium.pcap): GREASE, ML-DSA first, then the classical list.
_CHROME_SIGNATURES = (0x0904, 0x0905, 0x0906, 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)
_TRUST_ANCHORS = 0xCA34  # draft-ietf-tls-trust-anchor-ids, as Chromium 156 sends it
# Node 26 with OpenSSL 3.5 (captures/node26-openssl35.pcap): its 52 suites, 26 schemes, 8 groups.
_NODE_SUITES = (
    0x1302, 0x1303, 0x1301, 0xC02F, 0xC02B, 0xC030, 0xC02C, 0x009E, 0xC027, 0x0067, 0xC028, 0x006B, 0x00A3,
    0x009F, 0xCCA9, 0xCCA8, 0xCCAA, 0xC0AD, 0xC09F, 0xC05D, 0xC061, 0xC057, 0xC053, 0x00A2, 0xC0AC, 0xC09E,
    0xC05C, 0xC060, 0xC056, 0xC052, 0xC024, 0x006A, 0xC023, 0x0040, 0xC00A, 0xC014, 0x0039, 0x0038, 0xC009,
    0xC013, 0x0033, 0x0032, 0x009D, 0xC09D, 0xC051, 0x009C, 0xC09C, 0xC050, 0x003D, 0x003C, 0x0035, 0x002F,
)
_OPENSSL_SIGNATURES = (
    SignatureScheme.mldsa65, SignatureScheme.mldsa87, SignatureScheme.mldsa44,
    0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x081A, 0x081B, 0x081C, 0x0809, 0x080A, 0x080B,
    0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0303, 0x0301, 0x0302, 0x0402, 0x0502, 0x0602,
)
_OPENSSL_ORDER = (
    ExtensionType.renegotiation_info, ExtensionType.server_name, ExtensionType.ec_point_formats,
    ExtensionType.supported_groups, ExtensionType.session_ticket, ExtensionType.encrypt_then_mac,
    ExtensionType.extended_master_secret, ExtensionType.signature_algorithms, ExtensionType.supported_versions,
    ExtensionType.psk_key_exchange_modes, ExtensionType.key_share,
)


@dataclass
class ProbeHello:
    """A hello ready to send, and what the probe's client engine must know to read the answer."""

    hello: ClientHello
    key_shares: dict[int, ClientKeyShare] = field(default_factory=dict)
    groups: tuple[int, ...] = ()
    cipher_suites: tuple[int, ...] = DEFAULT_CIPHER_SUITES
    signature_schemes: tuple[int, ...] = CLASSICAL_SIGNATURE_SCHEMES
    server_name: str | None = None
    readable: bool = True  # we hold the private keys: the server's flight can be decrypted
    raw: bytes | None = None  # replay: the exact captured bytes

    def encode(self) -> bytes:
        return self.raw if self.raw is not None else self.hello.encode()


def profile_spec(name: str, server_name: str | None, options: dict[str, Any] | None = None) -> HelloSpec:
    """The HelloSpec of a named profile; ``options`` may override groups, key shares and more."""
    opts = dict(options or {})
    if name == "chrome":
        spec = HelloSpec(
            server_name=server_name,
            cipher_suites=(*DEFAULT_CIPHER_SUITES, *_TLS12_SUITES),
            groups=(NamedGroup.X25519MLKEM768, NamedGroup.x25519, NamedGroup.secp256r1, NamedGroup.secp384r1),
            key_shares=(NamedGroup.X25519MLKEM768, NamedGroup.x25519),
            signature_schemes=(GREASE_VALUES[os.urandom(1)[0] % 16], *_CHROME_SIGNATURES),
            alpn=(b"h2", b"http/1.1"),
            versions=(TLS13, TLS12),
            grease=True,
            shuffle_extensions=True,
            extra_extensions=_chrome_extras(),
        )
    elif name == "openssl35":
        spec = HelloSpec(
            server_name=server_name,
            cipher_suites=_NODE_SUITES,
            groups=(NamedGroup.X25519MLKEM768, NamedGroup.x25519, NamedGroup.secp256r1, NamedGroup.x448,
                    NamedGroup.secp384r1, NamedGroup.secp521r1, NamedGroup.ffdhe2048, 0x0101),
            key_shares=(NamedGroup.X25519MLKEM768, NamedGroup.x25519),
            signature_schemes=_OPENSSL_SIGNATURES,
            versions=(TLS13, TLS12),
            extension_order=_OPENSSL_ORDER,
            extra_extensions=(
                Extension(ExtensionType.renegotiation_info, b"\x00"),
                Extension(ExtensionType.ec_point_formats, b"\x03\x00\x01\x02"),
                Extension(ExtensionType.session_ticket, b""),
                Extension(ExtensionType.encrypt_then_mac, b""),
                Extension(ExtensionType.extended_master_secret, b""),
            ),
        )
    elif name == "classical":
        spec = HelloSpec(
            server_name=server_name,
            groups=(NamedGroup.x25519, NamedGroup.secp256r1, NamedGroup.secp384r1),
            key_shares=(NamedGroup.x25519,),
        )
    elif name == "mlkem1024":
        spec = HelloSpec(
            server_name=server_name,
            groups=(NamedGroup.MLKEM1024, NamedGroup.SecP384r1MLKEM1024, NamedGroup.X25519MLKEM768,
                    NamedGroup.x25519),
            key_shares=(NamedGroup.MLKEM1024, NamedGroup.SecP384r1MLKEM1024),
        )
    else:
        raise ValueError(f"unknown profile {name!r} (known: {', '.join(PROFILES)}, replay:NAME)")
    if "groups" in opts:
        spec = replace(spec, groups=tuple(_group(g) for g in opts.pop("groups")))
    if "key_shares" in opts:
        spec = replace(spec, key_shares=tuple(_group(g) for g in opts.pop("key_shares")))
    if "alpn" in opts:
        spec = replace(spec, alpn=tuple(a.encode() for a in opts.pop("alpn")))
    if "seed" in opts:
        spec = replace(spec, shuffle_seed=int(opts.pop("seed")))
    if "signature_schemes" in opts:
        spec = replace(spec, signature_schemes=tuple(_scheme(s) for s in opts.pop("signature_schemes")))
    if "signature_schemes_cert" in opts:
        spec = replace(spec, signature_schemes_cert=tuple(_scheme(s) for s in opts.pop("signature_schemes_cert")))
    if "without_signature_schemes" in opts:
        dropped = {_scheme(s) for s in opts.pop("without_signature_schemes")}
        spec = replace(spec, signature_schemes=tuple(s for s in spec.signature_schemes if s not in dropped))
    if opts:
        raise ValueError(f"profile {name}: unknown option(s) {', '.join(sorted(opts))} (known: groups, key_shares, "
                         "alpn, seed, signature_schemes, signature_schemes_cert, without_signature_schemes, sni_end, "
                         "sni_position)")
    return spec


def _scheme(value: int | str) -> int:
    """A SignatureScheme by its IANA name ("mldsa65") or number ("0x0905", 2309)."""
    if isinstance(value, int):
        return value
    if value.lower().startswith("0x"):
        return int(value, 16)
    try:
        return int(SignatureScheme[value])
    except KeyError:
        raise ValueError(f"unknown signature scheme {value!r}") from None


def _group(value: int | str) -> int:
    if isinstance(value, int):
        return value
    if value.lower().startswith("0x"):
        return int(value, 16)
    try:
        return int(group_by_name(value).code)
    except ValueError:
        named = {g.name.lower(): int(g) for g in NamedGroup}
        if value.lower() in named:  # codepoints we can offer but not compute, X25519Kyber768Draft00
            return named[value.lower()]
        raise


def _chrome_extras() -> tuple[Extension, ...]:
    rnd = os.urandom
    # GREASE ECH (draft-ietf-tls-esni §6.2): outer type, HPKE suite, a random config id, a 32-byte enc and
    # a payload whose length Chrome picks from a small set.
    payload = rnd(random.choice((144, 176, 208, 240)))
    # Trust anchor IDs: relative OIDs under a CA's arc; 184 bytes as in the capture.
    anchors = b"".join(b"\x05\x82\xdf\x13" + i.to_bytes(2, "big") for i in range(30)) + b"\x03\x82\xdf\x14"
    ech = b"\x00\x00\x01\x00\x01" + rnd(1) + b"\x00\x20" + rnd(32) + len(payload).to_bytes(2, "big") + payload
    return (
        Extension(ExtensionType.extended_master_secret, b""),
        Extension(ExtensionType.renegotiation_info, b"\x00"),
        Extension(ExtensionType.ec_point_formats, b"\x01\x00"),
        Extension(ExtensionType.session_ticket, b""),
        Extension(ExtensionType.status_request, b"\x01\x00\x00\x00\x00"),
        Extension(ExtensionType.signed_certificate_timestamp, b""),
        Extension(ExtensionType.compress_certificate, b"\x02\x00\x02"),  # brotli
        Extension(ExtensionType.application_settings, b"\x00\x03\x02h2"),
        Extension(ExtensionType.encrypted_client_hello, ech),
        Extension(_TRUST_ANCHORS, len(anchors).to_bytes(2, "big") + anchors),
    )


def build_probe_hello(profile: str, server_name: str | None, *, size: int | None = None,
                      sni_end: int | None = None, options: dict[str, Any] | None = None) -> ProbeHello:
    """Build one hello. ``size``: the exact handshake message length. ``sni_end``: place server_name so
    that it ends at this byte offset of the TCP stream (one record), keeping ``size`` if given."""
    opts = dict(options or {})
    sni_end = opts.pop("sni_end", sni_end)
    sni_position = opts.pop("sni_position", None)
    if profile.startswith("replay"):
        if opts:
            raise ValueError(f"the replay profile takes no options but sni_end and sni_position, not {sorted(opts)}")
        return _replay(profile, server_name, size, sni_end, sni_position)
    if profile == "go127":
        if opts or size is not None or sni_end is not None or sni_position is not None:
            raise ValueError("the go127 profile is Go's hello as it is: no options, no size")
        from .go_hello import build_go127_client_hello

        go = build_go127_client_hello(server_name or "localhost")
        return ProbeHello(hello=go.hello, key_shares=go.key_shares,
                          groups=_offered_groups(go.hello),
                          cipher_suites=tuple(s for s in go.hello.cipher_suites if s in CIPHER_SUITES),
                          signature_schemes=tuple(DEFAULT_SIGNATURE_SCHEMES), server_name=server_name,
                          readable=False)
    spec = profile_spec(profile, server_name, opts)
    built = build_client_hello(spec)
    hello = built.hello
    if profile == "chrome":
        _grease_at_the_ends(hello)
    _place(hello, sni_end, sni_position)
    if size is not None:
        pad_client_hello(hello, size)
    return ProbeHello(
        hello=hello,
        key_shares=built.key_shares,
        groups=tuple(g for g in spec.groups),
        cipher_suites=tuple(s for s in spec.cipher_suites if s in CIPHER_SUITES),
        signature_schemes=tuple(spec.signature_schemes),
        server_name=server_name,
        readable=True,  # shares we could not compute are opaque; the server choosing one fails the read
    )


def _grease_at_the_ends(hello: ClientHello) -> None:
    """Chrome permutes its extensions but keeps one GREASE extension first and one last."""
    grease = [e for e in hello.extensions if is_grease(e.type)]
    rest = [e for e in hello.extensions if not is_grease(e.type)]
    hello.extensions = grease[:1] + rest + grease[1:]


def extensions_start(hello: ClientHello) -> int:
    """Stream offset of the first extension of ``hello`` sent in one record."""
    return (RECORD_HEADER + HANDSHAKE_HEADER + 2 + 32 + 1 + len(hello.legacy_session_id)
            + 2 + 2 * len(hello.cipher_suites) + 1 + len(hello.legacy_compression_methods) + 2)


def server_name_end(hello: ClientHello) -> int | None:
    """Stream offset just past the server_name extension (one record), None if there is none."""
    offset = extensions_start(hello)
    for e in hello.extensions:
        offset += 4 + len(e.data)
        if e.type == ExtensionType.server_name:
            return offset
    return None


# A filler before server_name: a GREASE extension type, which servers must ignore (RFC 8701 §3.1).
_FILLER_TYPE = 0x3A3A


def place_server_name(hello: ClientHello, end: int) -> None:
    """Move server_name early and put a filler extension before it so that it ends at ``end``."""
    sni = next((e for e in hello.extensions if e.type == ExtensionType.server_name), None)
    if sni is None:
        raise ValueError("the hello has no server_name to place")
    others = [e for e in hello.extensions if e.type not in (ExtensionType.server_name, _FILLER_TYPE)]
    filler_body = end - extensions_start(hello) - (4 + len(sni.data)) - 4
    if filler_body < 0:
        raise ValueError(f"server_name cannot end at byte {end}: the extensions start too late")
    hello.extensions = [Extension(_FILLER_TYPE, bytes(filler_body)), sni, *others]


def _place(hello: ClientHello, sni_end: int | None, sni_position: str | None) -> None:
    if sni_end is not None:
        place_server_name(hello, int(sni_end))
    elif sni_position is not None:
        if sni_position not in ("first", "last"):
            raise ValueError(f"sni_position must be first or last, not {sni_position!r}")
        sni = [e for e in hello.extensions if e.type == ExtensionType.server_name]
        rest = [e for e in hello.extensions if e.type != ExtensionType.server_name]
        hello.extensions = sni + rest if sni_position == "first" else rest + sni


def _replay(profile: str, server_name: str | None, size: int | None, sni_end: int | None,
            sni_position: str | None) -> ProbeHello:
    from .pcap import load_client_hello

    _, _, name = profile.partition(":")
    if not name:
        raise ValueError("the replay profile needs a capture: replay:chromium or replay:/path/to/file.pcap")
    path = Path(name)
    if not path.suffix:
        path = CAPTURES_DIR / f"{name}.pcap"
    raw = load_client_hello(path)
    hello = ClientHello.decode(raw[HANDSHAKE_HEADER:])
    if server_name and _rename(hello, server_name):
        raw = hello.encode()  # the capture's own name (pqproxy.test) would be routed elsewhere by a real path
    if size is not None or sni_end is not None or sni_position is not None:
        _place(hello, sni_end, sni_position)
        if size is not None:
            pad_client_hello(hello, size)
        raw = hello.encode()
    groups = _offered_groups(hello)
    return ProbeHello(hello=hello, groups=groups,
                      cipher_suites=tuple(s for s in hello.cipher_suites if s in CIPHER_SUITES),
                      signature_schemes=tuple(DEFAULT_SIGNATURE_SCHEMES), server_name=None, readable=False, raw=raw)


def _rename(hello: ClientHello, server_name: str) -> bool:
    """Put ``server_name`` in the captured hello's server_name extension, where it was; False if it has none."""
    from ..tls.extensions import ServerNameList

    for index, e in enumerate(hello.extensions):
        if e.type == ExtensionType.server_name:
            hello.extensions[index] = Extension(e.type, ServerNameList.for_host(server_name).encode())
            return True
    return False


def _offered_groups(hello: ClientHello) -> tuple[int, ...]:
    from ..tls.extensions import NamedGroupList

    for e in hello.extensions:
        if e.type == ExtensionType.supported_groups:
            return tuple(NamedGroupList.decode(e.data).groups)
    return ()


