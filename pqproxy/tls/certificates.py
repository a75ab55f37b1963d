"""Certificates: our own chain and key, and CertificateVerify signatures.

Theory of operation
-------------------
Two jobs, each with its failures mapped to the alert RFC 8446 §6.2 names for it:

1. *Our side.* ``CertificateChain`` holds the chain we send (leaf first, RFC 8446 §4.4.2) and the leaf's
   private key. ``signature_schemes_for_key`` says which TLS 1.3 SignatureSchemes that key can sign with,
   ``choose_signature_scheme`` picks one the peer offered and ``sign`` signs the CertificateVerify input
   that ``certificate_verify_input`` builds (RFC 8446 §4.4.3).
2. *The peer's signature.* ``verify_signature`` checks a CertificateVerify: a scheme TLS 1.3 forbids or one
   that does not fit the key is ``illegal_parameter``; a signature that does not verify is ``decrypt_error``.

The peer's chain is ``chain_validation``'s job. Nothing here touches a socket; only ``load`` and
``load_trust_store`` read files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import PublicKeyAlgorithmOID

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
    "is_mldsa_key",
    "is_pss_certificate",
    "key_name",
    "load_trust_store",
    "schemes_for_public_key",
    "sign",
    "signature_schemes_for_key",
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
# hostile peer from making us parse and try hundreds of certificates (ours are held to the same bound).
MAX_CHAIN_LENGTH = 10
# Below 2048 bits RSA is refused both for CertificateVerify and in chains (CA/B Forum BR §6.1.5; it is also
# cryptography's verifier's default minimum, and OpenSSL's at security level 2).
MIN_RSA_BITS = 2048

# --- Signature schemes (RFC 8446 §4.2.3, draft-ietf-tls-mldsa) -----------------------------------------------

_ECDSA_BY_CURVE: dict[str, SignatureScheme] = {
    "secp256r1": SignatureScheme.ecdsa_secp256r1_sha256,
    "secp384r1": SignatureScheme.ecdsa_secp384r1_sha384,
    "secp521r1": SignatureScheme.ecdsa_secp521r1_sha512,
    # RFC 8734: TLS 1.3 names the brainpool curves in the scheme, with their own hash each.
    "brainpoolP256r1": SignatureScheme.ecdsa_brainpoolP256r1tls13_sha256,
    "brainpoolP384r1": SignatureScheme.ecdsa_brainpoolP384r1tls13_sha384,
    "brainpoolP512r1": SignatureScheme.ecdsa_brainpoolP512r1tls13_sha512,
}
_ECDSA_HASH: dict[SignatureScheme, Callable[[], hashes.HashAlgorithm]] = {
    SignatureScheme.ecdsa_secp256r1_sha256: hashes.SHA256,
    SignatureScheme.ecdsa_secp384r1_sha384: hashes.SHA384,
    SignatureScheme.ecdsa_secp521r1_sha512: hashes.SHA512,
    SignatureScheme.ecdsa_brainpoolP256r1tls13_sha256: hashes.SHA256,
    SignatureScheme.ecdsa_brainpoolP384r1tls13_sha384: hashes.SHA384,
    SignatureScheme.ecdsa_brainpoolP512r1tls13_sha512: hashes.SHA512,
}
# TLS 1.3 signs with RSASSA-PSS only (RFC 8446 §4.2.3, §4.4.3): the rsae variants for a key in an
# rsaEncryption certificate (nearly every RSA certificate), the pss variants for a key whose certificate says
# id-RSASSA-PSS (RFC 4055), as `openssl req -newkey rsa-pss` makes them.
_RSA_PSS_HASH: dict[SignatureScheme, Callable[[], hashes.HashAlgorithm]] = {
    SignatureScheme.rsa_pss_rsae_sha256: hashes.SHA256,
    SignatureScheme.rsa_pss_rsae_sha384: hashes.SHA384,
    SignatureScheme.rsa_pss_rsae_sha512: hashes.SHA512,
    SignatureScheme.rsa_pss_pss_sha256: hashes.SHA256,
    SignatureScheme.rsa_pss_pss_sha384: hashes.SHA384,
    SignatureScheme.rsa_pss_pss_sha512: hashes.SHA512,
}
_RSAE = (SignatureScheme.rsa_pss_rsae_sha256, SignatureScheme.rsa_pss_rsae_sha384, SignatureScheme.rsa_pss_rsae_sha512)
_PSS = (SignatureScheme.rsa_pss_pss_sha256, SignatureScheme.rsa_pss_pss_sha384, SignatureScheme.rsa_pss_pss_sha512)
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
    SignatureScheme.rsa_pss_pss_sha256,
    SignatureScheme.rsa_pss_pss_sha384,
    SignatureScheme.rsa_pss_pss_sha512,
    SignatureScheme.ecdsa_brainpoolP256r1tls13_sha256,
    SignatureScheme.ecdsa_brainpoolP384r1tls13_sha384,
    SignatureScheme.ecdsa_brainpoolP512r1tls13_sha512,
)


def _rsa_pss_fits(key_bits: int, scheme: SignatureScheme) -> bool:
    # EMSA-PSS needs emLen >= hLen + sLen + 2 with sLen = hLen (RFC 8017 §9.1.1, RFC 8446 §4.2.3).
    digest = _RSA_PSS_HASH[scheme]().digest_size
    return (key_bits - 1 + 7) // 8 >= 2 * digest + 2


def schemes_for_public_key(public_key: object, pss_certificate: bool = False) -> tuple[SignatureScheme, ...]:
    """The TLS 1.3 schemes a key can sign a CertificateVerify with. ``pss_certificate``: an RSA key whose
    certificate has the id-RSASSA-PSS algorithm (``is_pss_certificate``)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        scheme = _ECDSA_BY_CURVE.get(public_key.curve.name)
        return (scheme,) if scheme is not None else ()
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return (SignatureScheme.ed25519,)
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            return ()
        return tuple(s for s in (_PSS if pss_certificate else _RSAE) if _rsa_pss_fits(public_key.key_size, s))
    for scheme, (_, public_type) in _MLDSA_KEY.items():
        if isinstance(public_key, public_type):
            return (scheme,)
    return ()


def is_pss_certificate(certificate: x509.Certificate) -> bool:
    """An RSA key in an id-RSASSA-PSS certificate: it signs with the rsa_pss_pss schemes (RFC 8446 §4.2.3)."""
    return certificate.public_key_algorithm_oid == PublicKeyAlgorithmOID.RSASSA_PSS


def is_mldsa_key(public_key: object) -> bool:
    return isinstance(public_key, mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey)


def signature_schemes_for_key(private_key: PrivateKey) -> tuple[int, ...]:
    """The TLS 1.3 schemes ``private_key`` can sign a CertificateVerify with, most preferred first."""
    return tuple(schemes_for_public_key(private_key.public_key()))


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
            f"signature scheme {_scheme_name(scheme)} does not fit our {key_name(private_key.public_key())} key",
        )
    chosen = SignatureScheme(scheme)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(data, ec.ECDSA(_ECDSA_HASH[chosen]()))
    if isinstance(private_key, rsa.RSAPrivateKey):
        digest = _RSA_PSS_HASH[chosen]()
        return private_key.sign(data, _pss(digest), digest)
    # Ed25519 is PureEdDSA (RFC 8032); ML-DSA is pure ML-DSA with an empty context (draft-ietf-tls-mldsa).
    return private_key.sign(data)


def verify_signature(public_key: CertificatePublicKeyTypes, scheme: int, signature: bytes, data: bytes,
                     pss_certificate: bool = False) -> None:
    """Check a peer's CertificateVerify signature; raise TLSAlert, never anything else. ``pss_certificate``: the
    key came in an id-RSASSA-PSS certificate (``is_pss_certificate``).

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
    if chosen not in schemes_for_public_key(public_key, pss_certificate):
        raise TLSAlert(
            AlertDescription.illegal_parameter,
            f"{chosen.name} does not match the certificate's {key_name(public_key)} key",
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
        else:  # pragma: no cover - schemes_for_public_key returned () for every other key type
            raise TLSAlert(AlertDescription.illegal_parameter, f"cannot verify with a {key_name(public_key)} key")
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


def key_name(public_key: object) -> str:
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
        self.signature_schemes = tuple(
            schemes_for_public_key(self.private_key.public_key(), is_pss_certificate(self.certificates[0])))
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
                f"{key_label}: a {key_name(private_key.public_key())} key has no TLS 1.3 signature scheme "
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
