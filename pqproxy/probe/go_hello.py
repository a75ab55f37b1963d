"""The ClientHello of a default Go 1.26 ``tls.Dial`` client, built from Go's source, not captured.

No Go 1.26 toolchain installs here, so ``captures/go126.pcap`` is made from this module (by
``python -m pqproxy.probe.captures --only go126``) with the project's own codec, as Go 1.26's
``crypto/tls`` would build the message for ``tls.Dial("tcp", host+":443", &tls.Config{ServerName: host})``
on amd64 with AES-NI: no ``ClientSessionCache``, no ``NextProtos``, no GODEBUG settings, ``MinVersion``
and ``MaxVersion`` unset. Every default below is what these Go sources give (read, not copied):

- ``src/crypto/tls/handshake_client.go``, ``(*Conn).makeClientHello`` (Go 1.26.2's, in the
  ``jmhodges/howsmyssl`` vendored fork ``tls1262/``, commit 109497353a9bf11ec4e0e4da7cb5d363e3cebf9d):
  legacy_version 0x0303; one compression method, null; a 32-byte random legacy_session_id (TCP, not
  QUIC); ``extendedMasterSecret``, ``ocspStapling``, ``scts``, ``secureRenegotiationSupported`` all true;
  ``supportedPoints`` = [uncompressed]; ``supportedVersions`` = [TLS 1.3, TLS 1.2] (``supportedVersions``
  in ``common.go`` drops TLS 1.0/1.1 for a client whose MinVersion is 0); the TLS 1.2 suites of
  ``config.cipherSuites(hasAESGCMHardwareSupport)`` then ``defaultCipherSuitesTLS13``; one key
  exchange, ``supportedCurves[0]``, whose ``keyShares`` give two shares for a hybrid; signature_algorithms
  = ``supportedSignatureAlgorithms(minVersion)`` and signature_algorithms_cert =
  ``supportedSignatureAlgorithmsCert()``.
- ``(*Conn).loadSession`` (same file): with ``ClientSessionCache == nil`` it returns before setting
  ``ticketSupported`` and ``pskModes``, so a default client sends neither session_ticket nor
  psk_key_exchange_modes. No ALPN without ``NextProtos``; no ECH without ``EncryptedClientHelloConfigList``.
- ``src/crypto/tls/defaults.go`` (Go 1.26.2, same fork): ``defaultCurvePreferences`` = X25519MLKEM768,
  SecP256r1MLKEM768, SecP384r1MLKEM1024, X25519, P-256, P-384, P-521 (the SecP hybrids are the Go 1.26
  change, GODEBUG ``tlssecpmlkem``); ``defaultSupportedSignatureAlgorithms`` = rsa_pss_rsae_sha256,
  ecdsa_secp256r1_sha256, ed25519, rsa_pss_rsae_sha384, rsa_pss_rsae_sha512, rsa_pkcs1_sha256/384/512,
  ecdsa_secp384r1_sha384, ecdsa_secp521r1_sha512, rsa_pkcs1_sha1, ecdsa_sha1;
  ``defaultCipherSuitesTLS13`` = TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384,
  TLS_CHACHA20_POLY1305_SHA256; ``defaultCipherSuites`` drops ``disabledCipherSuites``, ``rsaKexCiphers``
  and ``tdesCiphers`` from ``cipherSuitesPreferenceOrder``.
- ``src/crypto/tls/common.go`` (same fork): ``supportedSignatureAlgorithms`` and
  ``isDisabledSignatureAlgorithm``: for a minimum of TLS 1.2 only the two SHA-1 schemes go (``tlssha1``,
  Go 1.25); the ``_cert`` list keeps all twelve. ``curvePreferences`` keeps the default order.
- ``src/crypto/tls/cipher_suites.go`` (Go 1.24+; the same lists since Go 1.22/1.23):
  ``cipherSuitesPreferenceOrder`` (AES-GCM first on AES hardware), ``disabledCipherSuites`` (CBC-SHA256,
  RC4), ``rsaKexCiphers`` (GODEBUG ``tlsrsakex``), ``tdesCiphers`` (``tls3des``). What is left: ten
  ECDHE suites, then the three TLS 1.3 suites.
- ``src/crypto/tls/key_schedule.go`` (Go 1.26.2, same fork), ``hybridKeyExchange.keyShares``: the hybrid
  share (ML-KEM-768 encapsulation key, then the X25519 share, for X25519MLKEM768) and then a separate
  X25519 key_share entry that reuses the SAME X25519 key (draft-ietf-tls-hybrid-design §3.2).
- ``src/crypto/tls/handshake_messages.go``, ``(*clientHelloMsg).marshalMsg`` (golang/go commit
  438fc12b95027f2db8a525cf297901b9e66c3290): the fixed extension order server_name, ec_point_formats,
  [session_ticket], renegotiation_info, extended_master_secret, signed_certificate_timestamp,
  status_request, supported_groups, signature_algorithms, signature_algorithms_cert, [ALPN],
  supported_versions, key_share, [psk_key_exchange_modes]. No GREASE anywhere: Go sends none.
- ``src/crypto/tls/conn.go``: the first record carries legacy_record_version 0x0301 (TLS 1.0), as
  ``split_into_records`` writes it, in one record.

ML-DSA: Go 1.26 advertises NO ML-DSA scheme (0x0904-0x0906). ``crypto/mldsa`` and ML-DSA in
``crypto/tls`` are Go 1.27 (proposal golang/go#78888; CL 776709, commit c74ba7d2, "crypto/tls: add ML-DSA
support"); golang/go#81199 bisects a firewall reset to "the only difference between the Go 1.26.3
ClientHello (works) and the Go 1.27.0 ClientHello (reset) is that Go 1.27 adds the ML-DSA signature
schemes", and #79626 is the same reset seen on go1.27-devel with Go 1.26 connecting. So the hello here
names none; REFERENCE.md §4's "Go 1.26 clients" is Go 1.27. The golang/go copies in the index are older
than 1.26 (their ``defaults.go`` lacks the SecP hybrids), hence the vendored Go 1.26.2 files above.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..tls.codepoints import TLS12, TLS13, CipherSuite, ExtensionType, NamedGroup, SignatureScheme
from ..tls.extensions import (
    KeyShareClientHello,
    KeyShareEntry,
    NamedGroupList,
    ProtocolNameList,
    ServerNameList,
    SignatureSchemeList,
    SupportedVersionsClient,
    ext,
)
from ..tls.groups import GROUPS, ClientKeyShare
from ..tls.messages import ClientHello, Extension
from ..tls.record import split_into_records

GO_VERSION = "1.26"
GO_SOURCES = ("jmhodges/howsmyssl tls1262/ (Go 1.26.2 crypto/tls) @ 109497353a9bf11ec4e0e4da7cb5d363e3cebf9d: "
              "handshake_client.go makeClientHello/loadSession, defaults.go, common.go, key_schedule.go; "
              "golang/go src/crypto/tls/handshake_messages.go marshalMsg @ 438fc12b95027f2db8a525cf297901b9e66c3290")

# cipher_suites.go: cipherSuitesPreferenceOrder minus disabledCipherSuites, rsaKexCiphers and tdesCiphers.
TLS12_CIPHER_SUITES: tuple[int, ...] = (
    0xC02B,  # TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    0xC02F,  # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    0xC02C,  # TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    0xC030,  # TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    0xCCA9,  # TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
    0xCCA8,  # TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
    0xC009,  # TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA
    0xC013,  # TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA
    0xC00A,  # TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA
    0xC014,  # TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA
)
# defaults.go: defaultCipherSuitesTLS13 (the AES-hardware order).
TLS13_CIPHER_SUITES: tuple[int, ...] = (
    CipherSuite.TLS_AES_128_GCM_SHA256,
    CipherSuite.TLS_AES_256_GCM_SHA384,
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256,
)
CIPHER_SUITES: tuple[int, ...] = (*TLS12_CIPHER_SUITES, *TLS13_CIPHER_SUITES)

# defaults.go: defaultCurvePreferences (tlsmlkem and tlssecpmlkem unset).
GROUPS_OFFERED: tuple[int, ...] = (
    NamedGroup.X25519MLKEM768,
    NamedGroup.SecP256r1MLKEM768,
    NamedGroup.SecP384r1MLKEM1024,
    NamedGroup.x25519,
    NamedGroup.secp256r1,
    NamedGroup.secp384r1,
    NamedGroup.secp521r1,
)

# defaults.go: defaultSupportedSignatureAlgorithms; common.go drops the SHA-1 pair from signature_algorithms.
SIGNATURE_ALGORITHMS_CERT: tuple[int, ...] = (
    SignatureScheme.rsa_pss_rsae_sha256,
    SignatureScheme.ecdsa_secp256r1_sha256,
    SignatureScheme.ed25519,
    SignatureScheme.rsa_pss_rsae_sha384,
    SignatureScheme.rsa_pss_rsae_sha512,
    SignatureScheme.rsa_pkcs1_sha256,
    SignatureScheme.rsa_pkcs1_sha384,
    SignatureScheme.rsa_pkcs1_sha512,
    SignatureScheme.ecdsa_secp384r1_sha384,
    SignatureScheme.ecdsa_secp521r1_sha512,
    0x0201,  # rsa_pkcs1_sha1
    0x0203,  # ecdsa_sha1
)
SIGNATURE_ALGORITHMS: tuple[int, ...] = SIGNATURE_ALGORITHMS_CERT[:-2]

SUPPORTED_VERSIONS: tuple[int, ...] = (TLS13, TLS12)

# handshake_messages.go marshalMsg, for the extensions a default client sends.
EXTENSION_ORDER: tuple[int, ...] = (
    ExtensionType.server_name,
    ExtensionType.ec_point_formats,
    ExtensionType.renegotiation_info,
    ExtensionType.extended_master_secret,
    ExtensionType.signed_certificate_timestamp,
    ExtensionType.status_request,
    ExtensionType.supported_groups,
    ExtensionType.signature_algorithms,
    ExtensionType.signature_algorithms_cert,
    ExtensionType.supported_versions,
    ExtensionType.key_share,
)

_POINT_FORMATS_UNCOMPRESSED = b"\x01\x00"  # ec_point_format_list<1..2^8-1> = [uncompressed(0)]
_EMPTY_RENEGOTIATION_INFO = b"\x00"  # renegotiated_connection<0..255>, empty on a first handshake
_OCSP_STATUS_REQUEST = b"\x01\x00\x00\x00\x00"  # status_type ocsp, empty responder_id_list and extensions


@dataclass
class GoHello:
    """The hello and the private halves of its two key shares (both share one X25519 key, as in Go)."""

    hello: ClientHello
    key_shares: dict[int, ClientKeyShare] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The handshake message, 4-byte header included."""
        return self.hello.encode()

    def records(self) -> bytes:
        """As Go writes it: one handshake record, legacy_record_version 0x0301."""
        return split_into_records(22, self.encode())


def build_go126_client_hello(server_name: str, *, alpn: Sequence[str] = (),
                             random_source: Callable[[int], bytes] = os.urandom) -> GoHello:
    """The first ClientHello of a Go 1.26 client with a default ``tls.Config`` (plus ``ServerName``).

    ``alpn`` is ``Config.NextProtos`` (empty for ``tls.Dial``; ``net/http`` sets ``h2``, ``http/1.1``);
    it goes between signature_algorithms_cert and supported_versions, where Go marshals it. The key shares
    are real (``pqproxy.tls.groups``), so a server can answer the hello and the answer can be read.
    """
    hybrid = GROUPS[NamedGroup.X25519MLKEM768].client_generate()
    x25519 = GROUPS[NamedGroup.x25519]
    x25519_public = hybrid.key_exchange[-x25519.client_share_len :]  # ML-KEM-768 ek || X25519
    # hybridKeyExchange.keyShares: the fallback X25519 entry is the hybrid's own X25519 key.
    classical = ClientKeyShare(x25519, x25519_public, hybrid._ecdh_private, None)
    shares = [KeyShareEntry(NamedGroup.X25519MLKEM768, hybrid.key_exchange),
              KeyShareEntry(NamedGroup.x25519, x25519_public)]

    extensions: list[Extension] = [
        ext(ExtensionType.server_name, ServerNameList.for_host(server_name)),
        ext(ExtensionType.ec_point_formats, _POINT_FORMATS_UNCOMPRESSED),
        ext(ExtensionType.renegotiation_info, _EMPTY_RENEGOTIATION_INFO),
        ext(ExtensionType.extended_master_secret),
        ext(ExtensionType.signed_certificate_timestamp),
        ext(ExtensionType.status_request, _OCSP_STATUS_REQUEST),
        ext(ExtensionType.supported_groups, NamedGroupList([int(g) for g in GROUPS_OFFERED])),
        ext(ExtensionType.signature_algorithms, SignatureSchemeList([int(s) for s in SIGNATURE_ALGORITHMS])),
        ext(ExtensionType.signature_algorithms_cert,
            SignatureSchemeList([int(s) for s in SIGNATURE_ALGORITHMS_CERT])),
    ]
    if alpn:
        extensions.append(ext(ExtensionType.application_layer_protocol_negotiation,
                              ProtocolNameList([p.encode("ascii") for p in alpn])))
    extensions += [
        ext(ExtensionType.supported_versions, SupportedVersionsClient([int(v) for v in SUPPORTED_VERSIONS])),
        ext(ExtensionType.key_share, KeyShareClientHello(shares)),
    ]
    hello = ClientHello(
        random=random_source(32),
        legacy_session_id=random_source(32),
        cipher_suites=[int(s) for s in CIPHER_SUITES],
        extensions=extensions,
        legacy_version=TLS12,
        legacy_compression_methods=b"\x00",
    )
    return GoHello(hello, {int(NamedGroup.X25519MLKEM768): hybrid, int(NamedGroup.x25519): classical})


# Go 1.27 (crypto/tls gained ML-DSA: golang/go #78888, CL 776709) advertises mldsa44, mldsa65 and mldsa87, and that is
# the only difference from Go 1.26's hello that golang/go #81199 found behind a firewall's resets. Their place in
# Go 1.27's lists is not in the sources read here; they are appended to both lists, which is all an inspection
# signature that matches the codepoints can see.
GO127_MLDSA = (SignatureScheme.mldsa44, SignatureScheme.mldsa65, SignatureScheme.mldsa87)


def build_go127_client_hello(server_name: str, *, alpn: Sequence[str] = (),
                             random_source: Callable[[int], bytes] = os.urandom) -> GoHello:
    """Go 1.26's hello (``build_go126_client_hello``) with the ML-DSA schemes Go 1.27 added, in
    signature_algorithms and signature_algorithms_cert. A variant built from the reports, not from Go 1.27's
    source: the population the 2026 firewall resets hit."""
    built = build_go126_client_hello(server_name, alpn=alpn, random_source=random_source)
    lists = {int(ExtensionType.signature_algorithms), int(ExtensionType.signature_algorithms_cert)}
    built.hello.extensions = [
        ext(e.type, SignatureSchemeList([*SignatureSchemeList.decode(e.data).schemes, *map(int, GO127_MLDSA)]))
        if e.type in lists else e
        for e in built.hello.extensions
    ]
    return built
