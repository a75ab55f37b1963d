"""Certificates: our own chain and key, CertificateVerify signatures, and X.509 path validation.

Theory of operation
-------------------
Three jobs, each with its failures mapped to the alert RFC 8446 §6.2 names for it:

1. *Our side.* ``CertificateChain`` holds the chain we send (leaf first, RFC 8446 §4.4.2) and the leaf's
   private key. ``signature_schemes_for_key`` says which TLS 1.3 SignatureSchemes that key can sign with,
   ``choose_signature_scheme`` picks one the peer offered and ``sign`` signs the CertificateVerify input
   that ``certificate_verify_input`` builds (RFC 8446 §4.4.3).
2. *The peer's signature.* ``verify_signature`` checks a CertificateVerify: a scheme TLS 1.3 forbids or one
   that does not fit the key is ``illegal_parameter``; a signature that does not verify is ``decrypt_error``.
3. *The peer's chain.* ``verify_server_chain`` and ``verify_client_chain`` build a path from the peer's leaf
   to one of our trust anchors with cryptography's RFC 5280 / CA/Browser-Forum verifier
   (``cryptography.x509.verification``), and turn its failures into alerts.

Which chains the verifier can handle (checked with cryptography 50.0.2):
RSA, ECDSA P-256/P-384/P-521 and ML-DSA-44/65/87 signatures on certificates are accepted, so ML-DSA chains
(RFC 9881) go through the library's verifier like any other. The verifier refuses Ed25519 and Ed448 as the
*signature* on a certificate ("Forbidden public key algorithm"), because the web PKI does not allow them;
TLS 1.3 does, and ``pqproxy certs --alg ed25519`` issues such chains. A chain in which any certificate carries
an EdDSA signature is therefore checked by ``_ManualPathValidator`` below, which applies the same rules
(RFC 5280 §6.1 subset: name chaining to an anchor, every signature, validity, basicConstraints and keyUsage
on issuers, pathLenConstraint, extendedKeyUsage and the subjectAltName match on the leaf, no unknown critical
extension), each with cryptography primitives doing the cryptography. An EdDSA *leaf key* under an
RSA/ECDSA/ML-DSA issuer needs no fallback: the verifier only judges the algorithms of certificate signatures
(so ``_check_leaf_key`` checks that the leaf's key is one we can verify a CertificateVerify with). The fallback
also serves ``verify_server_chain(..., server_name=None)``, because the library verifier always checks a name.

Client certificates need the clientAuth purpose but, unlike the CA/B default, no subjectAltName (see
``verify_client_chain``).

Nothing here touches a socket; only ``load`` and ``load_trust_store`` read files, and ``now`` defaults to the
system clock when the caller does not give the validation time.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeAlias, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, SignatureAlgorithmOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from .alerts import AlertDescription, TLSAlert
from .codepoints import SignatureScheme

__all__ = [
    "MAX_CHAIN_LENGTH",
    "MIN_RSA_BITS",
    "SUPPORTED_SIGNATURE_SCHEMES",
    "CertificateChain",
    "PrivateKey",
    "PublicKey",
    "certificate_verify_input",
    "choose_signature_scheme",
    "load_trust_store",
    "sign",
    "signature_schemes_for_key",
    "verify_client_chain",
    "verify_server_chain",
    "verify_signature",
]

PrivateKey: TypeAlias = (
    ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | rsa.RSAPrivateKey
    | mldsa.MLDSA44PrivateKey
    | mldsa.MLDSA65PrivateKey
    | mldsa.MLDSA87PrivateKey
)
PublicKey: TypeAlias = (
    ec.EllipticCurvePublicKey
    | ed25519.Ed25519PublicKey
    | rsa.RSAPublicKey
    | mldsa.MLDSA44PublicKey
    | mldsa.MLDSA65PublicKey
    | mldsa.MLDSA87PublicKey
)

# A Certificate message can carry up to 2^24 bytes of certificates, and each one in a path costs a signature
# check. Real chains are two to four certificates long; ten leaves room for cross-signed paths while keeping a
# hostile peer from making us parse and try hundreds of certificates.
MAX_CHAIN_LENGTH = 10
# The fallback path builder may try several candidate issuers at each step (same subject name, different keys).
# Every try is a signature check, so the whole search gets a budget, as cryptography's own verifier has.
MAX_SIGNATURE_CHECKS = 64
# Below 2048 bits RSA is refused both for CertificateVerify and in chains (CA/B Forum BR §6.1.5; it is also
# cryptography's verifier's default minimum).
MIN_RSA_BITS = 2048

# --- Signature schemes (RFC 8446 §4.2.3, draft-ietf-tls-mldsa) -----------------------------------------------

_ECDSA_BY_CURVE: dict[str, SignatureScheme] = {
    "secp256r1": SignatureScheme.ecdsa_secp256r1_sha256,
    "secp384r1": SignatureScheme.ecdsa_secp384r1_sha384,
    "secp521r1": SignatureScheme.ecdsa_secp521r1_sha512,
}
_ECDSA_HASH: dict[SignatureScheme, Callable[[], hashes.HashAlgorithm]] = {
    SignatureScheme.ecdsa_secp256r1_sha256: hashes.SHA256,
    SignatureScheme.ecdsa_secp384r1_sha384: hashes.SHA384,
    SignatureScheme.ecdsa_secp521r1_sha512: hashes.SHA512,
}
# TLS 1.3 signs with RSASSA-PSS only (RFC 8446 §4.2.3, §4.4.3); the rsae variants are for keys in
# rsaEncryption certificates, which is what every RSA certificate we issue or meet in practice is.
_RSA_PSS_HASH: dict[SignatureScheme, Callable[[], hashes.HashAlgorithm]] = {
    SignatureScheme.rsa_pss_rsae_sha256: hashes.SHA256,
    SignatureScheme.rsa_pss_rsae_sha384: hashes.SHA384,
    SignatureScheme.rsa_pss_rsae_sha512: hashes.SHA512,
}
_MLDSA_KEY: dict[SignatureScheme, tuple[type, type]] = {
    SignatureScheme.mldsa44: (mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey),
    SignatureScheme.mldsa65: (mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey),
    SignatureScheme.mldsa87: (mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey),
}

# Every scheme this module can check in a CertificateVerify, in the order we prefer them: what the engine puts
# in its signature_algorithms extension. PKCS#1 v1.5, SHA-1 and DSA are absent on purpose (RFC 8446 §4.4.3).
SUPPORTED_SIGNATURE_SCHEMES: tuple[int, ...] = (
    SignatureScheme.mldsa65,
    SignatureScheme.mldsa87,
    SignatureScheme.mldsa44,
    SignatureScheme.ecdsa_secp256r1_sha256,
    SignatureScheme.ecdsa_secp384r1_sha384,
    SignatureScheme.ecdsa_secp521r1_sha512,
    SignatureScheme.ed25519,
    SignatureScheme.rsa_pss_rsae_sha256,
    SignatureScheme.rsa_pss_rsae_sha384,
    SignatureScheme.rsa_pss_rsae_sha512,
)


def _rsa_pss_fits(key_bits: int, scheme: SignatureScheme) -> bool:
    # EMSA-PSS needs emLen >= hLen + sLen + 2 with sLen = hLen (RFC 8017 §9.1.1, RFC 8446 §4.2.3).
    digest = _RSA_PSS_HASH[scheme]().digest_size
    return (key_bits - 1 + 7) // 8 >= 2 * digest + 2


def _schemes_for_public_key(public_key: object) -> tuple[SignatureScheme, ...]:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        scheme = _ECDSA_BY_CURVE.get(public_key.curve.name)
        return (scheme,) if scheme is not None else ()
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return (SignatureScheme.ed25519,)
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            return ()
        return tuple(s for s in _RSA_PSS_HASH if _rsa_pss_fits(public_key.key_size, s))
    for scheme, (_, public_type) in _MLDSA_KEY.items():
        if isinstance(public_key, public_type):
            return (scheme,)
    return ()


def signature_schemes_for_key(private_key: PrivateKey) -> tuple[int, ...]:
    """The TLS 1.3 schemes ``private_key`` can sign a CertificateVerify with, most preferred first."""
    return tuple(_schemes_for_public_key(private_key.public_key()))


def choose_signature_scheme(private_key: PrivateKey, peer_schemes: Sequence[int]) -> int | None:
    """The first of our schemes that the peer offered in signature_algorithms, or None (handshake_failure)."""
    offered = set(peer_schemes)
    for scheme in signature_schemes_for_key(private_key):
        if scheme in offered:
            return scheme
    return None


def certificate_verify_input(is_server: bool, transcript_hash: bytes) -> bytes:
    """The bytes a CertificateVerify signs (RFC 8446 §4.4.3): 64 spaces, a context string, 0x00, the hash."""
    context = b"TLS 1.3, server CertificateVerify" if is_server else b"TLS 1.3, client CertificateVerify"
    return b"\x20" * 64 + context + b"\x00" + transcript_hash


def _pss(hash_algorithm: hashes.HashAlgorithm) -> padding.PSS:
    # RFC 8446 §4.2.3: MGF1 with the same hash, salt as long as the digest.
    return padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size)


def sign(private_key: PrivateKey, scheme: int, data: bytes, schemes: tuple[int, ...] | None = None) -> bytes:
    """Sign ``data`` with ``scheme``. A scheme the key cannot use is our own bug: internal_error.
    ``schemes``: the key's signature_schemes_for_key, when the caller has them already."""
    if scheme not in (schemes if schemes is not None else signature_schemes_for_key(private_key)):
        raise TLSAlert(
            AlertDescription.internal_error,
            f"signature scheme {_scheme_name(scheme)} does not fit our {_key_name(private_key.public_key())} key",
        )
    chosen = SignatureScheme(scheme)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(data, ec.ECDSA(_ECDSA_HASH[chosen]()))
    if isinstance(private_key, rsa.RSAPrivateKey):
        digest = _RSA_PSS_HASH[chosen]()
        return private_key.sign(data, _pss(digest), digest)
    # Ed25519 is PureEdDSA (RFC 8032); ML-DSA is pure ML-DSA with an empty context (draft-ietf-tls-mldsa).
    return private_key.sign(data)


def verify_signature(public_key: CertificatePublicKeyTypes, scheme: int, signature: bytes, data: bytes) -> None:
    """Check a peer's CertificateVerify signature; raise TLSAlert, never anything else.

    illegal_parameter: the scheme is not one TLS 1.3 allows in CertificateVerify (RFC 8446 §4.4.3 rules out
    PKCS#1 v1.5 and SHA-1), or it does not match the certificate's key type, curve or size.
    decrypt_error: the signature does not verify (RFC 8446 §4.4.3).
    """
    try:
        chosen = SignatureScheme(scheme)
    except ValueError:
        raise TLSAlert(AlertDescription.illegal_parameter, f"unknown signature scheme 0x{scheme:04x}") from None
    if chosen not in SUPPORTED_SIGNATURE_SCHEMES:
        raise TLSAlert(
            AlertDescription.illegal_parameter, f"{chosen.name} is not allowed in a TLS 1.3 CertificateVerify"
        )
    if chosen not in _schemes_for_public_key(public_key):
        raise TLSAlert(
            AlertDescription.illegal_parameter,
            f"{chosen.name} does not match the certificate's {_key_name(public_key)} key",
        )
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(_ECDSA_HASH[chosen]()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            digest = _RSA_PSS_HASH[chosen]()
            public_key.verify(signature, data, _pss(digest), digest)
        elif isinstance(
            public_key,
            ed25519.Ed25519PublicKey | mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey,
        ):
            public_key.verify(signature, data)
        else:  # pragma: no cover - _schemes_for_public_key returned () for every other key type
            raise TLSAlert(AlertDescription.illegal_parameter, f"cannot verify with a {_key_name(public_key)} key")
    except InvalidSignature:
        raise TLSAlert(AlertDescription.decrypt_error, f"{chosen.name} CertificateVerify signature is wrong") from None
    except TLSAlert:
        raise
    except Exception as exc:  # a malformed signature may surface as ValueError/OverflowError: still a bad one
        raise TLSAlert(
            AlertDescription.decrypt_error, f"{chosen.name} CertificateVerify signature is malformed: {exc}"
        ) from None


def _scheme_name(scheme: int) -> str:
    try:
        return SignatureScheme(scheme).name
    except ValueError:
        return f"0x{scheme:04x}"


def _key_name(public_key: object) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"ECDSA {public_key.curve.name}"
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA-{public_key.key_size}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    for scheme, (_, public_type) in _MLDSA_KEY.items():
        if isinstance(public_key, public_type):
            return f"ML-DSA-{scheme.name[5:]}"
    return type(public_key).__name__


# --- Our chain -------------------------------------------------------------------------------------------------


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class CertificateChain:
    """The chain we present (leaf first, then intermediates) and the leaf's private key."""

    certificates: list[x509.Certificate]
    der: list[bytes] = field(repr=False)
    private_key: PrivateKey = field(repr=False)
    # Worked out once, not per handshake: what the key signs with, and the encoded Certificate message.
    signature_schemes: tuple[int, ...] = field(init=False, repr=False)
    certificate_message: bytes | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.signature_schemes = signature_schemes_for_key(self.private_key)
        self.certificate_message = None  # set here, not as a field default: mypyc leaves those unset

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]

    def choose_signature_scheme(self, peer_schemes: Sequence[int]) -> int | None:
        """The first scheme of ours that the peer offered, or None (handshake_failure)."""
        offered = set(peer_schemes)
        for scheme in self.signature_schemes:
            if scheme in offered:
                return scheme
        return None

    def sign(self, scheme: int, data: bytes) -> bytes:
        return sign(self.private_key, scheme, data, self.signature_schemes)

    @classmethod
    def load(cls, cert_path: str | Path, key_path: str | Path) -> CertificateChain:
        """Read a PEM chain (leaf first) and a PEM private key (PKCS#8 or traditional, unencrypted)."""
        cert_pem = _read(cert_path, "certificate")
        key_pem = _read(key_path, "private key")
        return cls._from_pem(cert_pem, key_pem, f"certificate file {cert_path}", f"key file {key_path}")

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> CertificateChain:
        return cls._from_pem(cert_pem, key_pem, "certificate PEM", "private key PEM")

    @classmethod
    def _from_pem(cls, cert_pem: bytes, key_pem: bytes, cert_label: str, key_label: str) -> CertificateChain:
        try:
            certificates = x509.load_pem_x509_certificates(cert_pem)
        except ValueError as exc:
            raise ValueError(f"{cert_label}: no readable PEM certificate ({exc})") from None
        if len(certificates) > MAX_CHAIN_LENGTH:
            raise ValueError(f"{cert_label}: {len(certificates)} certificates, more than {MAX_CHAIN_LENGTH}")
        try:
            private_key = serialization.load_pem_private_key(key_pem, password=None)
        except TypeError:
            raise ValueError(f"{key_label}: the key is encrypted; give an unencrypted PKCS#8 key") from None
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"{key_label}: not a readable PEM private key ({exc})") from None
        if not isinstance(
            private_key,
            ec.EllipticCurvePrivateKey
            | ed25519.Ed25519PrivateKey
            | rsa.RSAPrivateKey
            | mldsa.MLDSA44PrivateKey
            | mldsa.MLDSA65PrivateKey
            | mldsa.MLDSA87PrivateKey,
        ):
            raise ValueError(f"{key_label}: {type(private_key).__name__} keys cannot sign a TLS 1.3 CertificateVerify")
        if not signature_schemes_for_key(private_key):
            raise ValueError(
                f"{key_label}: a {_key_name(private_key.public_key())} key has no TLS 1.3 signature scheme "
                f"(ECDSA needs P-256/P-384/P-521, RSA needs at least {MIN_RSA_BITS} bits)"
            )
        try:
            leaf_spki = _spki(certificates[0].public_key())
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"{cert_label}: the leaf certificate's public key is unreadable ({exc})") from None
        if leaf_spki != _spki(private_key.public_key()):
            raise ValueError(
                f"{key_label} does not match the leaf certificate in {cert_label} "
                f"(subject {certificates[0].subject.rfc4514_string()!r})"
            )
        return cls(
            certificates=certificates,
            der=[c.public_bytes(serialization.Encoding.DER) for c in certificates],
            private_key=private_key,
        )


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None


def load_trust_store(path: str | Path) -> list[x509.Certificate]:
    """The trust anchors in a PEM bundle."""
    data = _read(path, "trust store")
    try:
        anchors = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ValueError(f"trust store file {path}: no readable PEM certificate ({exc})") from None
    return anchors


# --- The peer's chain ------------------------------------------------------------------------------------------

# How the library verifier's messages map to alerts, first match wins (RFC 8446 §6.2 meanings; where RFC 8446 leaves
# a choice, what OpenSSL sends for the same X509_V_ERR). The verifier reports a failed issuer search as "candidates
# exhausted: <the last issuer's failure>", so the specific checks come first: an expired CA reads "candidates
# exhausted: cert is not valid at validation time" and is certificate_expired, not unknown_ca.
_VERIFIER_MESSAGE_ALERTS: tuple[tuple[str, AlertDescription], ...] = (
    ("not valid at validation time", AlertDescription.certificate_expired),
    ("subjectAltName", AlertDescription.bad_certificate),
    ("EKU", AlertDescription.unsupported_certificate),
    ("Forbidden", AlertDescription.unsupported_certificate),
    ("RSA key is too weak", AlertDescription.unsupported_certificate),
    ("path length constraint", AlertDescription.bad_certificate),
    ("candidates exhausted", AlertDescription.unknown_ca),
)

# Algorithms of certificate signatures that cryptography's verifier refuses (see the module docstring).
_VERIFIER_REFUSES = frozenset({SignatureAlgorithmOID.ED25519, SignatureAlgorithmOID.ED448})


def verify_server_chain(
    chain_der: Sequence[bytes],
    trust: Sequence[x509.Certificate],
    server_name: str | None,
    now: datetime | None = None,
) -> x509.Certificate:
    """Validate the server's Certificate message for ``server_name`` (DNS name or IP literal); return the leaf.

    With ``server_name=None`` the chain, validity and serverAuth purpose are checked but no name is: the caller
    must only do that when it has no name to hold the server to.
    """
    if not chain_der:
        raise TLSAlert(AlertDescription.decode_error, "the server sent an empty Certificate message")
    leaf, intermediates = _decode_chain(chain_der)
    when = _validation_time(now)
    subject = _server_subject(server_name)
    # The library verifier always holds the leaf to a name, so "no name" goes the fallback's way too.
    if subject is None or _needs_manual_path(leaf, intermediates, trust):
        _ManualPathValidator(trust, when, ExtendedKeyUsageOID.SERVER_AUTH, subject).validate(leaf, intermediates)
    else:
        try:
            verifier = _policy_builder(trust, when).build_server_verifier(subject)
        except ValueError as exc:  # the name is ours (configuration), not the peer's
            raise TLSAlert(AlertDescription.internal_error, f"server name {server_name!r} unusable: {exc}") from None
        _run_verifier(lambda: verifier.verify(leaf, intermediates))
    _check_leaf_key(leaf)
    return leaf


def verify_client_chain(
    chain_der: Sequence[bytes],
    trust: Sequence[x509.Certificate],
    now: datetime | None = None,
) -> x509.Certificate:
    """Validate a client's Certificate message against the trust anchors for client auth; return the leaf.

    Client certificates need the clientAuth purpose but no subjectAltName: mutual TLS peers (an ETSI GS QKD 014
    KME's SAEs, for one) are often named by their subject CN only, so the CA/B default that requires a SAN on
    every end-entity certificate is relaxed to "may be present".
    """
    if not chain_der:
        raise TLSAlert(AlertDescription.certificate_required, "the client sent no certificate")
    leaf, intermediates = _decode_chain(chain_der)
    when = _validation_time(now)
    if _needs_manual_path(leaf, intermediates, trust):
        _ManualPathValidator(trust, when, ExtendedKeyUsageOID.CLIENT_AUTH, None).validate(leaf, intermediates)
    else:
        ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
            x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
        )
        builder = _policy_builder(trust, when).extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy
        )
        _run_verifier(lambda: builder.build_client_verifier().verify(leaf, intermediates))
    _check_leaf_key(leaf)
    return leaf


def _decode_chain(chain_der: Sequence[bytes]) -> tuple[x509.Certificate, list[x509.Certificate]]:
    if len(chain_der) > MAX_CHAIN_LENGTH:
        raise TLSAlert(
            AlertDescription.bad_certificate,
            f"{len(chain_der)} certificates in the chain, more than {MAX_CHAIN_LENGTH}",
        )
    certificates = []
    for index, der in enumerate(chain_der):
        try:
            certificate = x509.load_der_x509_certificate(bytes(der))
            # cryptography decodes some fields only when asked: ask now, so that a malformed one fails here.
            _ = (
                certificate.subject,
                certificate.issuer,
                certificate.not_valid_before_utc,
                certificate.not_valid_after_utc,
                certificate.extensions,
                certificate.signature_algorithm_oid,
            )
        except Exception as exc:  # ValueError in practice; any parse failure is the peer's bad DER
            raise TLSAlert(
                AlertDescription.bad_certificate, f"certificate {index} in the chain does not decode: {exc}"
            ) from None
        certificates.append(certificate)
    return certificates[0], certificates[1:]


def _validation_time(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def _server_subject(server_name: str | None) -> x509.DNSName | x509.IPAddress | None:
    """The name the leaf must carry: an IP address for an IP literal, else an A-label DNS name."""
    if server_name is None:
        return None
    name = server_name.strip()
    if name.startswith("[") and name.endswith("]"):  # an IPv6 literal as written in URLs
        name = name[1:-1]
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        ascii_name = name.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise TLSAlert(
            AlertDescription.internal_error, f"server name {server_name!r} is not a valid DNS name"
        ) from None
    if not ascii_name:
        raise TLSAlert(AlertDescription.internal_error, "empty server name")
    return x509.DNSName(ascii_name)


def _needs_manual_path(
    leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], trust: Sequence[x509.Certificate]
) -> bool:
    # The verifier only refuses EdDSA as a certificate *signature*; every issuer's key shows up as the signature
    # algorithm of a certificate in the peer's chain, except a trust anchor's own self-signature, which is never
    # checked (an anchor is trusted because it is in the store).
    return any(c.signature_algorithm_oid in _VERIFIER_REFUSES for c in (leaf, *intermediates))


def _policy_builder(trust: Sequence[x509.Certificate], when: datetime) -> PolicyBuilder:
    if not trust:
        raise TLSAlert(AlertDescription.unknown_ca, "no trust anchors are configured")
    try:
        store = Store(list(trust))
    except Exception as exc:  # the anchors are ours, so a failure here is not the peer's fault
        raise TLSAlert(AlertDescription.internal_error, f"trust store unusable: {exc}") from None
    # max_chain_depth counts intermediates; our bound counts every certificate in the path.
    return PolicyBuilder().store(store).time(when).max_chain_depth(MAX_CHAIN_LENGTH - 1)


_T = TypeVar("_T")


def _run_verifier(run: Callable[[], _T]) -> _T:
    try:
        return run()
    except VerificationError as exc:
        raise _alert_for_verifier_error(str(exc)) from None
    except TLSAlert:
        raise
    except Exception as exc:  # e.g. an unsupported key inside a certificate: the certificate is the problem
        raise TLSAlert(AlertDescription.bad_certificate, f"certificate validation failed: {exc}") from None


def _alert_for_verifier_error(message: str) -> TLSAlert:
    for needle, description in _VERIFIER_MESSAGE_ALERTS:
        if needle in message:
            return TLSAlert(description, message)
    return TLSAlert(AlertDescription.bad_certificate, message)


def _check_leaf_key(leaf: x509.Certificate) -> None:
    # The verifier judges the algorithms of certificate signatures, not the leaf's own key; that key must be
    # one we can check a CertificateVerify with.
    try:
        public_key = leaf.public_key()
    except Exception as exc:
        raise TLSAlert(AlertDescription.unsupported_certificate, f"leaf public key unreadable: {exc}") from None
    if not _schemes_for_public_key(public_key):
        raise TLSAlert(
            AlertDescription.unsupported_certificate,
            f"the leaf's {_key_name(public_key)} key has no TLS 1.3 signature scheme we support",
        )


# --- The fallback path validator (EdDSA-signed chains only; see the module docstring) ---------------------------

# Certificate signature algorithms the fallback accepts: what the library verifier accepts, plus EdDSA.
_MANUAL_SIGNATURE_ALGORITHMS = frozenset(
    {
        SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        SignatureAlgorithmOID.ECDSA_WITH_SHA512,
        SignatureAlgorithmOID.RSA_WITH_SHA256,
        SignatureAlgorithmOID.RSA_WITH_SHA384,
        SignatureAlgorithmOID.RSA_WITH_SHA512,
        SignatureAlgorithmOID.RSASSA_PSS,
        SignatureAlgorithmOID.ED25519,
        SignatureAlgorithmOID.ED448,
        SignatureAlgorithmOID.ML_DSA_44,
        SignatureAlgorithmOID.ML_DSA_65,
        SignatureAlgorithmOID.ML_DSA_87,
    }
)
# Extensions whose meaning the fallback enforces; any other extension marked critical fails closed
# (RFC 5280 §4.2), name constraints included, since the fallback does not evaluate them.
_MANUAL_UNDERSTOOD_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    }
)


_PURPOSE_NAMES = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}


class _ManualPathValidator:
    """RFC 5280 §6.1 path validation for chains the library verifier will not take.

    Depth-first search from the leaf: at each step try a trust anchor that issued the current certificate, else an
    unused intermediate from the peer's list that did. Every failure is kept, and when the search runs dry the most
    telling one becomes the alert (an expired or non-CA issuer says more than "no issuer found").
    """

    def __init__(
        self,
        trust: Sequence[x509.Certificate],
        when: datetime,
        purpose: x509.ObjectIdentifier,
        subject: x509.DNSName | x509.IPAddress | None,
    ) -> None:
        if not trust:
            raise TLSAlert(AlertDescription.unknown_ca, "no trust anchors are configured")
        self.trust = list(trust)
        self.when = when
        self.purpose = purpose
        self.subject = subject
        self.signature_checks = 0
        self.failures: list[TLSAlert] = []

    def validate(self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate]) -> list[x509.Certificate]:
        try:
            self._check_certificate(leaf, "leaf")
            self._check_leaf(leaf)
            path = self._extend([leaf], list(intermediates))
        except TLSAlert:
            raise
        except Exception as exc:  # a field cryptography could not decode: the certificate is malformed
            raise TLSAlert(AlertDescription.bad_certificate, f"certificate validation failed: {exc}") from None
        if path is None:
            raise self._best_failure(leaf)
        return path

    # Checks on one certificate

    def _check_certificate(self, cert: x509.Certificate, role: str) -> None:
        who = f"{role} {cert.subject.rfc4514_string()!r}"
        if not cert.not_valid_before_utc <= self.when <= cert.not_valid_after_utc:
            raise TLSAlert(
                AlertDescription.certificate_expired,
                f"{who} is not valid at {self.when.isoformat()} "
                f"(valid {cert.not_valid_before_utc.isoformat()} to {cert.not_valid_after_utc.isoformat()})",
            )
        if cert.signature_algorithm_oid not in _MANUAL_SIGNATURE_ALGORITHMS:
            raise TLSAlert(
                AlertDescription.unsupported_certificate,
                f"{who} is signed with {cert.signature_algorithm_oid.dotted_string}, which we do not accept",
            )
        for extension in cert.extensions:
            if extension.critical and extension.oid not in _MANUAL_UNDERSTOOD_EXTENSIONS:
                raise TLSAlert(
                    AlertDescription.unsupported_certificate,
                    f"{who} has an unhandled critical extension {extension.oid.dotted_string}",
                )

    def _check_leaf(self, leaf: x509.Certificate) -> None:
        basic = _extension(leaf, x509.BasicConstraints)
        if basic is not None and basic.ca:
            raise TLSAlert(AlertDescription.bad_certificate, "the leaf certificate is a CA certificate")
        usage = _extension(leaf, x509.KeyUsage)
        if usage is not None and not usage.digital_signature:
            raise TLSAlert(AlertDescription.unsupported_certificate, "the leaf's keyUsage lacks digitalSignature")
        purposes = _extension(leaf, x509.ExtendedKeyUsage)
        if purposes is not None and self.purpose not in purposes:
            raise TLSAlert(
                AlertDescription.unsupported_certificate,
                f"the leaf's extendedKeyUsage lacks {_PURPOSE_NAMES[self.purpose]}",
            )
        if self.subject is not None:
            names = _extension(leaf, x509.SubjectAlternativeName)
            if names is None:
                raise TLSAlert(AlertDescription.bad_certificate, "the leaf server certificate has no subjectAltName")
            if not _san_matches(names, self.subject):
                raise TLSAlert(
                    AlertDescription.bad_certificate,
                    f"the leaf certificate has no subjectAltName matching {self.subject.value}",
                )

    def _check_issuer(self, issuer: x509.Certificate, role: str, below: int) -> None:
        """``below``: CA certificates between this issuer and the leaf (for pathLenConstraint)."""
        self._check_certificate(issuer, role)
        who = f"{role} {issuer.subject.rfc4514_string()!r}"
        basic = _extension(issuer, x509.BasicConstraints)
        if basic is None or not basic.ca:
            raise TLSAlert(AlertDescription.bad_certificate, f"{who} issued a certificate but is not a CA")
        if basic.path_length is not None and below > basic.path_length:
            raise TLSAlert(
                AlertDescription.bad_certificate, f"{who} allows {basic.path_length} CAs below it, the path has {below}"
            )
        usage = _extension(issuer, x509.KeyUsage)
        if usage is not None and not usage.key_cert_sign:
            raise TLSAlert(AlertDescription.bad_certificate, f"{who} keyUsage lacks keyCertSign")
        purposes = _extension(issuer, x509.ExtendedKeyUsage)
        if purposes is not None and self.purpose not in purposes:
            raise TLSAlert(
                AlertDescription.unsupported_certificate,
                f"{who} extendedKeyUsage does not allow {_PURPOSE_NAMES[self.purpose]}",
            )

    def _issued(self, cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        if cert.issuer != issuer.subject:
            return False
        if self.signature_checks >= MAX_SIGNATURE_CHECKS:
            raise TLSAlert(
                AlertDescription.bad_certificate, f"gave up after {MAX_SIGNATURE_CHECKS} certificate signature checks"
            )
        self.signature_checks += 1
        try:
            # The issuer's key must be acceptable before we let it vouch for anything.
            key = issuer.public_key()
            if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
                raise ValueError(f"RSA-{key.key_size} issuer key is below {MIN_RSA_BITS} bits")
            cert.verify_directly_issued_by(issuer)
        except Exception as exc:  # InvalidSignature, or ValueError/TypeError/UnsupportedAlgorithm from the key
            self.failures.append(
                TLSAlert(
                    AlertDescription.unknown_ca,
                    f"{cert.subject.rfc4514_string()!r} is not signed by {issuer.subject.rfc4514_string()!r}: "
                    f"{exc or type(exc).__name__}",
                )
            )
            return False
        return True

    # The search

    def _extend(self, path: list[x509.Certificate], unused: list[x509.Certificate]) -> list[x509.Certificate] | None:
        current = path[-1]
        # RFC 5280 §4.2.1.9: pathLenConstraint counts the non-self-issued CA certificates below the issuer.
        below = sum(1 for c in path[1:] if c.subject != c.issuer)
        # A candidate's own constraints are judged only once its signature shows it really is the issuer, so that
        # an unrelated certificate that merely shares the name cannot turn "unknown CA" into another verdict.
        for anchor in self.trust:
            if self._issued(current, anchor) and self._may_issue(anchor, "trust anchor", below):
                return [*path, anchor]
        if len(path) >= MAX_CHAIN_LENGTH - 1:
            self.failures.append(
                TLSAlert(AlertDescription.bad_certificate, f"no path within {MAX_CHAIN_LENGTH} certificates")
            )
            return None
        for candidate in unused:
            if candidate in path or not self._issued(current, candidate):
                continue
            if self._may_issue(candidate, "intermediate", below):
                found = self._extend([*path, candidate], [c for c in unused if c is not candidate])
                if found is not None:
                    return found
        return None

    def _may_issue(self, issuer: x509.Certificate, role: str, below: int) -> bool:
        try:
            self._check_issuer(issuer, role, below)
        except TLSAlert as failure:
            self.failures.append(failure)
            return False
        return True

    def _best_failure(self, leaf: x509.Certificate) -> TLSAlert:
        for failure in self.failures:
            if failure.description != AlertDescription.unknown_ca:
                return failure
        if self.failures:
            return self.failures[0]
        return TLSAlert(
            AlertDescription.unknown_ca,
            f"no trusted issuer {leaf.issuer.rfc4514_string()!r} found for {leaf.subject.rfc4514_string()!r}",
        )


_Ext = TypeVar("_Ext", bound=x509.ExtensionType)


def _extension(cert: x509.Certificate, kind: type[_Ext]) -> _Ext | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _san_matches(names: x509.SubjectAlternativeName, subject: x509.DNSName | x509.IPAddress) -> bool:
    if isinstance(subject, x509.IPAddress):
        return subject.value in names.get_values_for_type(x509.IPAddress)
    wanted = subject.value.lower()
    for pattern in names.get_values_for_type(x509.DNSName):
        pattern = pattern.lower().rstrip(".")
        if pattern == wanted:
            return True
        # RFC 6125 §6.4.3 as the CA/B Forum narrows it: "*" only as the whole left-most label, matching one label.
        if pattern.startswith("*.") and "." in wanted:
            head, rest = wanted.split(".", 1)
            if head and rest == pattern[2:] and "*" not in rest:
                return True
    return False


def certificate_matches_name(cert: x509.Certificate, server_name: str) -> bool:
    """Whether the leaf's subjectAltName covers ``server_name`` (RFC 6125 as verification does it), with
    no path validation: the probe uses it to tell the backend that owns a name from a default one."""
    try:
        subject = _server_subject(server_name)
    except TLSAlert:
        return False
    names = _extension(cert, x509.SubjectAlternativeName)
    return subject is not None and names is not None and _san_matches(names, subject)
