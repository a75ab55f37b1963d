"""Configuration of one side of a TLS connection. Built once, shared by every connection of a listener."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .chain_validation import DEFAULT_VERIFY_PROFILE, VERIFY_PROFILES
from .codepoints import NamedGroup, SignatureScheme
from .groups import DEFAULT_GROUPS, GROUPS
from .key_schedule import DEFAULT_CIPHER_SUITES
from .session import TicketSealer

# The biggest real PQ hellos are ~2.3 KiB, but RFC 8446 lets signature_algorithms alone carry 32,767 schemes
# (64 KiB): OpenSSL's bound (CLIENT_HELLO_MAX_LENGTH) takes every legal hello of that kind, and so does ours.
DEFAULT_MAX_CLIENT_HELLO = 131396
DEFAULT_SIGNATURE_SCHEMES: tuple[int, ...] = (
    SignatureScheme.ecdsa_secp256r1_sha256,
    SignatureScheme.ecdsa_secp384r1_sha384,
    SignatureScheme.ed25519,
    SignatureScheme.rsa_pss_rsae_sha256,
    SignatureScheme.rsa_pss_rsae_sha384,
    SignatureScheme.rsa_pss_rsae_sha512,
    SignatureScheme.mldsa44,
    SignatureScheme.mldsa65,
    SignatureScheme.mldsa87,
    SignatureScheme.ecdsa_secp521r1_sha512,
    SignatureScheme.rsa_pss_pss_sha256,  # RSA keys in id-RSASSA-PSS certificates (RFC 8446 §4.2.3)
    SignatureScheme.rsa_pss_pss_sha384,
    SignatureScheme.rsa_pss_pss_sha512,
    SignatureScheme.ecdsa_brainpoolP256r1tls13_sha256,  # RFC 8734
    SignatureScheme.ecdsa_brainpoolP384r1tls13_sha384,
    SignatureScheme.ecdsa_brainpoolP512r1tls13_sha512,
    SignatureScheme.rsa_pkcs1_sha256,  # for certificate signatures only (signature_algorithms_cert-less peers)
    SignatureScheme.rsa_pkcs1_sha384,
    SignatureScheme.rsa_pkcs1_sha512,
)
MLDSA_SIGNATURE_SCHEMES = frozenset({SignatureScheme.mldsa44, SignatureScheme.mldsa65, SignatureScheme.mldsa87})
# What a ClientHello lists when no ML-DSA key is in sight. In 2026 an IPS threat signature on a widely deployed
# firewall reset every hello naming ML-DSA (Go 1.27 clients: golang/go #79626, #81199): offer those schemes only
# where they can matter, as Go then made possible.
CLASSICAL_SIGNATURE_SCHEMES: tuple[int, ...] = tuple(
    s for s in DEFAULT_SIGNATURE_SCHEMES if s not in MLDSA_SIGNATURE_SCHEMES
)


def parse_signature_scheme_list(text: str) -> tuple[int, ...]:
    """A comma- or colon-separated list of SignatureScheme names (``ecdsa_secp256r1_sha256``, ``mldsa65``, ...),
    each one TLS 1.3 can use: in a CertificateVerify, or (rsa_pkcs1_*) only on certificates."""
    usable = {SignatureScheme(s).name: s for s in DEFAULT_SIGNATURE_SCHEMES}
    out: list[int] = []
    for part in text.replace(":", ",").split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name not in usable:
            raise ValueError(f"unknown or unusable signature scheme {part.strip()!r} (one of: {', '.join(usable)})")
        if usable[name] not in out:
            out.append(usable[name])
    if not out:
        raise ValueError("the signature scheme list is empty")
    return tuple(out)


def signature_schemes_in_sight(trust_store: Sequence[Any] | None, chains: Sequence[Any]) -> tuple[int, ...]:
    """The signature_algorithms to offer: every scheme we verify when a trust anchor or one of our own
    certificates has an ML-DSA key (an ML-DSA PKI), else all but ML-DSA."""
    from .certificates import is_mldsa_key

    anchors = (cert.public_key() for cert in trust_store or ())
    ours = (chain.leaf.public_key() for chain in chains if chain is not None)
    if any(is_mldsa_key(key) for key in (*anchors, *ours)):
        return DEFAULT_SIGNATURE_SCHEMES
    return CLASSICAL_SIGNATURE_SCHEMES


DEFAULT_TICKET_LIFETIME = 7200  # seconds: what a server's tickets say, and how long it opens them


@dataclass(frozen=True)
class ExternalPSK:
    """An out-of-band PSK (RFC 8446 §2.2). ``imported`` offers it through RFC 9258's importer."""

    identity: bytes
    key: bytes
    imported: bool = True
    context: bytes = b""
    hash_name: str = "sha256"  # the target KDF: HKDF-SHA256 or HKDF-SHA384
    with_certificate: bool = True  # RFC 8773 tls_cert_with_extern_psk: the server still proves its certificate

    def __repr__(self) -> str:  # never print key material
        return f"ExternalPSK(identity={self.identity!r}, imported={self.imported}, key=<{len(self.key)} bytes>)"


def _default_key_share_groups(groups: tuple[int, ...]) -> tuple[int, ...]:
    """Like Chrome, OpenSSL 3.5 and Go: one share for the first post-quantum group and one classical."""
    first_pq = next((g for g in groups if GROUPS.get(g) is not None and GROUPS[g].post_quantum), None)
    first_classical = next((g for g in groups if GROUPS.get(g) is not None and not GROUPS[g].post_quantum), None)
    return tuple(g for g in (first_pq, first_classical) if g is not None) or groups[:1]


@dataclass
class TLSConfig:
    groups: tuple[int, ...] = DEFAULT_GROUPS
    # Client: groups to send a key share for in the first ClientHello (None: first PQ + first classical).
    key_share_groups: tuple[int, ...] | None = None
    cipher_suites: tuple[int, ...] = DEFAULT_CIPHER_SUITES
    # signature_algorithms (RFC 8446 §4.2.3), ours to offer and to accept. () picks them from the keys in sight
    # (signature_schemes_in_sight): ML-DSA only with an ML-DSA trust anchor or certificate of our own.
    signature_schemes: tuple[int, ...] = ()
    alpn_protocols: tuple[bytes, ...] = ()
    # Our certificate: the server's, or the client's for mutual TLS (a CertificateChain).
    certificate_chain: Any = None
    # Server: certificates by SNI host name (exact or "*.example.com"); falls back to certificate_chain.
    sni_certificates: Mapping[str, Any] = field(default_factory=dict)
    # Trust anchors: the client's for servers, the server's for client certificates (x509.Certificate list).
    trust_store: list[Any] | None = None
    verify_peer: bool = True  # client: validate the server's chain and name
    # Which rules a peer's chain is held to (chain_validation): "rfc5280" as OpenSSL and Go for private trust
    # anchors, or "webpki" for the CA/Browser Forum's profile.
    verify_profile: str = DEFAULT_VERIFY_PROFILE
    require_client_certificate: bool = False
    # Server: after the client's chain validates, a policy on its names (mTLS allow-list); False is access_denied.
    client_certificate_allowed: Callable[[Any], bool] | None = None
    server_name: str | None = None  # client: SNI and the name to verify
    # Server policy.
    require_post_quantum: bool = False  # refuse clients that offer no hybrid or ML-KEM group
    group_selection: str = "pq-first"  # "pq-first" or "server-preference"
    max_client_hello_size: int = DEFAULT_MAX_CLIENT_HELLO
    session_tickets: int = 1  # tickets a server sends after the handshake (0: none)
    ticket_lifetime: int = DEFAULT_TICKET_LIFETIME
    ticket_sealer: TicketSealer | None = None
    # Server: what its tickets are bound to. A ticket is resumed only under the context it was issued under;
    # set it to a digest of everything that decides client authentication (CAs, allowed names, PSK policy),
    # so that a ticket from a listener or configuration with a weaker policy is never resumed under a
    # stronger one (a resumed session skips CertificateRequest: RFC 8446 §4.3.2).
    ticket_context: bytes = b""
    # Client resumption and external PSKs.
    resume_session: Any = None  # SessionTicket
    external_psk: ExternalPSK | None = None
    # Server: external identity -> key; imported identities are looked up by their external_identity.
    external_psks: Mapping[bytes, bytes] = field(default_factory=dict)
    require_external_psk: bool = False
    # Record layer.
    record_size_limit: int | None = 16385  # RFC 8449, counts the inner content type
    record_padding_block: int = 0
    compatibility_mode: bool = True  # RFC 8446 Appendix D.4 (client: session id + ChangeCipherSpec)
    clock: Callable[[], float] = time.time
    entropy: Callable[[int], bytes] = os.urandom
    post_quantum_groups: tuple[int, ...] = field(init=False, repr=False)  # ``groups``' hybrid and ML-KEM ones


    def __post_init__(self) -> None:
        self.groups = tuple(int(g) for g in self.groups)
        unknown = [g for g in self.groups if g not in GROUPS]
        if unknown:
            raise ValueError(f"groups not implemented: {', '.join(hex(g) for g in unknown)}")
        if not self.signature_schemes:
            self.signature_schemes = signature_schemes_in_sight(
                self.trust_store, [self.certificate_chain, *self.sni_certificates.values()])
        self.post_quantum_groups = tuple(g for g in self.groups if GROUPS[g].post_quantum)
        if self.key_share_groups is None:
            self.key_share_groups = _default_key_share_groups(self.groups)
        if self.record_size_limit is not None and not 64 <= self.record_size_limit <= 16385:
            raise ValueError("record_size_limit must be between 64 and 16385 (RFC 8449)")
        if self.verify_profile not in VERIFY_PROFILES:
            raise ValueError(f"verify_profile is one of {', '.join(VERIFY_PROFILES)}")
        if self.group_selection not in ("pq-first", "server-preference"):
            raise ValueError("group_selection is pq-first or server-preference")
        if self.ticket_sealer is None and self.session_tickets:
            self.ticket_sealer = TicketSealer()
        if not 0 <= self.ticket_lifetime <= 7 * 24 * 3600:
            raise ValueError("ticket_lifetime is at most 7 days (RFC 8446 §4.6.1)")

    def offers_post_quantum(self) -> bool:
        return any(GROUPS[g].post_quantum for g in self.groups)


HYBRID_DEFAULT = NamedGroup.X25519MLKEM768
