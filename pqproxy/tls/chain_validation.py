"""X.509 path validation of the peer's Certificate message (RFC 5280 §6), under one of two profiles.

Theory of operation
-------------------
``verify_server_chain`` and ``verify_client_chain`` build a path from the peer's leaf to one of our trust
anchors and turn every failure into the alert RFC 8446 §6.2 names for it. Which rules apply is the *profile*:

``rfc5280`` (the default): what OpenSSL and Go check for private trust anchors, the PKIs a sidecar lives in
(corporate CAs, easy-rsa, cfssl, step-ca, kubeadm, ``openssl req -x509`` one-liners). Signatures, validity,
basicConstraints cA on every issuer, pathLenConstraint, name constraints and unknown critical extensions are
checked; keyUsage and extendedKeyUsage are checked *when present* (keyCertSign on issuers, digitalSignature on
the leaf as RFC 8446 §4.4.2.2 asks; the purpose, or anyExtendedKeyUsage, on every certificate that lists
purposes, as Go and OpenSSL nest them). A server leaf must carry its name in subjectAltName (no CN fallback,
RFC 9525 §6.3, as Go since 1.15). A version 1 leaf (no extensions: ``openssl x509 -req`` without ``-extfile``
before OpenSSL 3.2) is accepted where a name is not needed, i.e. as a client certificate.

``webpki``: the CA/Browser Forum Baseline Requirements as cryptography's verifier enforces them
(keyUsage required on CAs, SAN on every leaf, AKI, serial and algorithm rules), for links whose peers hold
public-CA certificates.

Both run cryptography's RFC 5280 verifier (``cryptography.x509.verification``), the second with its own
defaults, the first with extension policies written here. Two kinds of chain go to ``_ManualPathValidator``
instead, which applies the same rules with cryptography primitives doing the cryptography: chains with an EdDSA
*signature* on a certificate (the verifier refuses them: the web PKI forbids EdDSA, TLS 1.3 does not; ``pqproxy
certs --alg ed25519`` issues such chains), checks with no server name (the verifier always holds the leaf to a
name), and version 1 leaves under ``rfc5280``.

Every refusal names the certificate and the rule. The verifier reports a failed issuer search as
"candidates exhausted: <rule>" without saying whose; on that path (a failure, so cost does not matter) the manual
validator walks the same chain and names the certificate that broke the rule.

Nothing here touches a socket or a file; ``now`` defaults to the system clock when the caller gives no time.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Literal, TypeAlias, TypeVar, get_args

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, SignatureAlgorithmOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from .alerts import AlertDescription, TLSAlert
from .certificates import MAX_CHAIN_LENGTH, MIN_RSA_BITS, is_pss_certificate, key_name, schemes_for_public_key

__all__ = [
    "DEFAULT_VERIFY_PROFILE",
    "MAX_SIGNATURE_CHECKS",
    "VERIFY_PROFILES",
    "VerifyProfile",
    "certificate_matches_name",
    "verify_client_chain",
    "verify_server_chain",
]

VerifyProfile: TypeAlias = Literal["rfc5280", "webpki"]
VERIFY_PROFILES: tuple[str, ...] = get_args(VerifyProfile)
DEFAULT_VERIFY_PROFILE: VerifyProfile = "rfc5280"

# The fallback path builder may try several candidate issuers at each step (same subject name, different keys).
# Every try is a signature check, so the whole search gets a budget, as cryptography's own verifier has.
MAX_SIGNATURE_CHECKS = 64

_PURPOSE_NAMES = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}


def _who(cert: x509.Certificate) -> str:
    return repr(cert.subject.rfc4514_string())


# --- The rfc5280 profile's extension policies -------------------------------------------------------------------
# The verifier calls these for every certificate it considers; raising refuses that certificate, and the message
# comes back inside the VerificationError, so each names the certificate itself.


def _issuer_key_usage(_: Policy, cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    # RFC 5280 §4.2.1.3 and §6.1.4 (n): a CA whose keyUsage is present must assert keyCertSign.
    if usage is not None and not usage.key_cert_sign:
        raise ValueError(f"CA {_who(cert)}: keyUsage lacks keyCertSign")


def _leaf_key_usage(_: Policy, cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    # RFC 8446 §4.4.2.2: if keyUsage is present, digitalSignature must be set (CertificateVerify is a signature).
    if usage is not None and not usage.digital_signature:
        raise ValueError(f"leaf {_who(cert)}: keyUsage lacks digitalSignature")


def _purpose_validator(
    purpose: x509.ObjectIdentifier, role: str
) -> Callable[[Policy, x509.Certificate, x509.ExtendedKeyUsage | None], None]:
    # RFC 5280 §4.2.1.12: a certificate that lists purposes may be used only for those. Go and OpenSSL hold every
    # certificate of the path that lists purposes to the one asked for (anyExtendedKeyUsage allows all).
    def check(_: Policy, cert: x509.Certificate, purposes: x509.ExtendedKeyUsage | None) -> None:
        if purposes is None or purpose in purposes or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in purposes:
            return
        raise ValueError(f"{role} {_who(cert)}: extendedKeyUsage lacks {_PURPOSE_NAMES[purpose]}")

    return check


def _rfc5280_policies(purpose: x509.ObjectIdentifier, server: bool) -> tuple[ExtensionPolicy, ExtensionPolicy]:
    # permit_all keeps the verifier's own RFC 5280 rules (cA asserted, path length, name constraints, validity,
    # unknown critical extensions refused) and drops the CA/B Forum's requirements on which extensions exist.
    agnostic = Criticality.AGNOSTIC
    ca = (
        ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, agnostic, None)
        .may_be_present(x509.KeyUsage, agnostic, _issuer_key_usage)
        .may_be_present(x509.ExtendedKeyUsage, agnostic, _purpose_validator(purpose, "CA"))
    )
    ee = (
        ExtensionPolicy.permit_all()
        .may_be_present(x509.KeyUsage, agnostic, _leaf_key_usage)
        .may_be_present(x509.ExtendedKeyUsage, agnostic, _purpose_validator(purpose, "leaf"))
    )
    # A server is held to its name, which only subjectAltName can carry; a client certificate is often CN-only.
    if server:
        ee = ee.require_present(x509.SubjectAlternativeName, agnostic, None)
    else:
        ee = ee.may_be_present(x509.SubjectAlternativeName, agnostic, None)
    return ca, ee


_RFC5280_SERVER = _rfc5280_policies(ExtendedKeyUsageOID.SERVER_AUTH, server=True)
_RFC5280_CLIENT = _rfc5280_policies(ExtendedKeyUsageOID.CLIENT_AUTH, server=False)
# The web PKI's client policy, relaxed only on subjectAltName: mutual TLS peers (an ETSI GS QKD 014 KME's SAEs,
# for one) are often named by their subject CN alone.
_WEBPKI_CLIENT = (
    ExtensionPolicy.webpki_defaults_ca(),
    ExtensionPolicy.webpki_defaults_ee().may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None),
)


# --- Entry points -----------------------------------------------------------------------------------------------


def verify_server_chain(
    chain_der: Sequence[bytes],
    trust: Sequence[x509.Certificate],
    server_name: str | None,
    now: datetime | None = None,
    profile: str = DEFAULT_VERIFY_PROFILE,
) -> x509.Certificate:
    """Validate the server's Certificate message for ``server_name`` (DNS name or IP literal); return the leaf.

    With ``server_name=None`` the chain, validity and serverAuth purpose are checked but no name is: the caller
    must only do that when it has no name to hold the server to.
    """
    _check_profile(profile)
    if not chain_der:
        raise TLSAlert(AlertDescription.decode_error, "the server sent an empty Certificate message")
    leaf, intermediates = _decode_chain(chain_der)
    when = _validation_time(now)
    subject = _server_subject(server_name)
    purpose = ExtendedKeyUsageOID.SERVER_AUTH
    # The library verifier always holds the leaf to a name, so "no name" goes the fallback's way too.
    if subject is None or _needs_manual_path(leaf, intermediates, profile):
        _ManualPathValidator(trust, when, purpose, subject, profile).validate(leaf, intermediates)
    else:
        builder = _policy_builder(trust, when)
        if profile == "rfc5280":
            ca_policy, ee_policy = _RFC5280_SERVER
            builder = builder.extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        try:
            verifier = builder.build_server_verifier(subject)
        except ValueError as exc:  # the name is ours (configuration), not the peer's
            raise TLSAlert(AlertDescription.internal_error, f"server name {server_name!r} unusable: {exc}") from None
        _run_verifier(lambda: verifier.verify(leaf, intermediates),
                      lambda: _ManualPathValidator(trust, when, purpose, subject, profile), leaf, intermediates)
    _check_leaf_key(leaf)
    return leaf


def verify_client_chain(
    chain_der: Sequence[bytes],
    trust: Sequence[x509.Certificate],
    now: datetime | None = None,
    profile: str = DEFAULT_VERIFY_PROFILE,
) -> x509.Certificate:
    """Validate a client's Certificate message against the trust anchors for client auth; return the leaf.

    Client certificates need the clientAuth purpose (when they list purposes) but no subjectAltName.
    """
    _check_profile(profile)
    if not chain_der:
        raise TLSAlert(AlertDescription.certificate_required, "the client sent no certificate")
    leaf, intermediates = _decode_chain(chain_der)
    when = _validation_time(now)
    purpose = ExtendedKeyUsageOID.CLIENT_AUTH
    if _needs_manual_path(leaf, intermediates, profile):
        _ManualPathValidator(trust, when, purpose, None, profile).validate(leaf, intermediates)
    else:
        ca_policy, ee_policy = _RFC5280_CLIENT if profile == "rfc5280" else _WEBPKI_CLIENT
        builder = _policy_builder(trust, when).extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        _run_verifier(lambda: builder.build_client_verifier().verify(leaf, intermediates),
                      lambda: _ManualPathValidator(trust, when, purpose, None, profile), leaf, intermediates)
    _check_leaf_key(leaf)
    return leaf


def _check_profile(profile: str) -> None:
    if profile not in VERIFY_PROFILES:
        raise TLSAlert(AlertDescription.internal_error, f"unknown verify profile {profile!r}")


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


# Algorithms of certificate signatures that cryptography's verifier refuses (see the module docstring).
_VERIFIER_REFUSES = frozenset({SignatureAlgorithmOID.ED25519, SignatureAlgorithmOID.ED448})


def _needs_manual_path(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], profile: str) -> bool:
    # The verifier only refuses EdDSA as a certificate *signature*; every issuer's key shows up as the signature
    # algorithm of a certificate in the peer's chain, except a trust anchor's own self-signature, which is never
    # checked (an anchor is trusted because it is in the store). It also refuses every version 1 certificate.
    if profile == "rfc5280" and leaf.version is x509.Version.v1:
        return True
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


# How the verifier's messages map to alerts, first match wins (RFC 8446 §6.2 meanings; where RFC 8446 leaves a
# choice, what OpenSSL sends for the same X509_V_ERR). The verifier reports a failed issuer search as "candidates
# exhausted: <the last issuer's failure>", so the specific checks come first: an expired CA reads "candidates
# exhausted: cert is not valid at validation time" and is certificate_expired, not unknown_ca.
_VERIFIER_MESSAGE_ALERTS: tuple[tuple[str, AlertDescription], ...] = (
    ("not valid at validation time", AlertDescription.certificate_expired),
    ("subjectAltName", AlertDescription.bad_certificate),
    ("extendedKeyUsage", AlertDescription.unsupported_certificate),
    ("EKU", AlertDescription.unsupported_certificate),
    ("digitalSignature", AlertDescription.unsupported_certificate),
    ("keyCertSign", AlertDescription.bad_certificate),
    ("Forbidden", AlertDescription.unsupported_certificate),
    ("RSA key is too weak", AlertDescription.unsupported_certificate),
    ("X509v3", AlertDescription.unsupported_certificate),
    ("critical extension", AlertDescription.unsupported_certificate),
    ("missing required extension", AlertDescription.bad_certificate),
    ("path length constraint", AlertDescription.bad_certificate),
    ("name constraint", AlertDescription.bad_certificate),
    ("candidates exhausted", AlertDescription.unknown_ca),
)

_T = TypeVar("_T")
# The verifier appends the certificate's repr, which names only its subject, and that in Python's repr syntax.
_ENCOUNTERED = re.compile(r" \(encountered processing <Certificate\(.*?\)>\)")


def _run_verifier(
    run: Callable[[], _T],
    diagnose: Callable[[], _ManualPathValidator],
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
) -> _T:
    try:
        return run()
    except VerificationError as exc:
        raise _refusal(str(exc), diagnose, leaf, intermediates) from None
    except TLSAlert:
        raise
    except Exception as exc:  # e.g. an unsupported key inside a certificate: the certificate is the problem
        raise TLSAlert(AlertDescription.bad_certificate, f"certificate validation failed: {exc}") from None


def _refusal(
    message: str,
    diagnose: Callable[[], _ManualPathValidator],
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
) -> TLSAlert:
    """The alert for a verifier failure, its text naming the certificate and the rule.

    The alert is the one the verifier's rule maps to; the text leads with what the manual validator finds walking
    the same chain, which names the certificate. Where the two disagree (a rule only the verifier knows), the
    verifier's text stands with the path it was given."""
    description = next((d for needle, d in _VERIFIER_MESSAGE_ALERTS if needle in message),
                       AlertDescription.bad_certificate)
    rule = _ENCOUNTERED.sub("", message.removeprefix("validation failed: "))
    try:
        diagnose().validate(leaf, intermediates)
    except TLSAlert as found:
        return TLSAlert(description, f"{found.reason} [verifier: {rule}]")
    except Exception:  # the diagnosis is best effort; the verifier's refusal stands regardless
        pass
    path = " <- ".join(_who(c) for c in (leaf, *intermediates))
    return TLSAlert(description, f"{rule} [chain sent: {path}]")


def _check_leaf_key(leaf: x509.Certificate) -> None:
    # The verifier judges the algorithms of certificate signatures, not the leaf's own key; that key must be
    # one we can check a CertificateVerify with.
    try:
        public_key = leaf.public_key()
    except Exception as exc:
        raise TLSAlert(AlertDescription.unsupported_certificate, f"leaf public key unreadable: {exc}") from None
    if not schemes_for_public_key(public_key, is_pss_certificate(leaf)):
        raise TLSAlert(
            AlertDescription.unsupported_certificate,
            f"the leaf's {key_name(public_key)} key has no TLS 1.3 signature scheme we support",
        )


# --- The manual path validator (EdDSA-signed chains, no-name checks, v1 leaves; and diagnosis) -----------------

# Certificate signature algorithms the manual validator accepts: what the library verifier accepts, plus EdDSA.
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
# Extensions whose meaning the manual validator enforces; any other extension marked critical fails closed
# (RFC 5280 §4.2).
_MANUAL_UNDERSTOOD_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.NAME_CONSTRAINTS,
    }
)


class _ManualPathValidator:
    """RFC 5280 §6.1 path validation for chains the library verifier will not take, under either profile.

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
        profile: str = DEFAULT_VERIFY_PROFILE,
    ) -> None:
        if not trust:
            raise TLSAlert(AlertDescription.unknown_ca, "no trust anchors are configured")
        self.trust = list(trust)
        self.when = when
        self.purpose = purpose
        self.subject = subject
        self.webpki = profile == "webpki"
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
        who = f"{role} {_who(cert)}"
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
        if self.webpki and cert.version is not x509.Version.v3:
            raise TLSAlert(AlertDescription.unsupported_certificate, f"{who} is not an X509v3 certificate")
        for extension in cert.extensions:
            if extension.critical and extension.oid not in _MANUAL_UNDERSTOOD_EXTENSIONS:
                raise TLSAlert(
                    AlertDescription.unsupported_certificate,
                    f"{who} has an unhandled critical extension {extension.oid.dotted_string}",
                )

    def _check_leaf(self, leaf: x509.Certificate) -> None:
        who = f"leaf {_who(leaf)}"
        basic = _extension(leaf, x509.BasicConstraints)
        if self.webpki and basic is not None and basic.ca:
            raise TLSAlert(AlertDescription.bad_certificate, f"{who} is a CA certificate")
        if self.subject is not None:
            names = _extension(leaf, x509.SubjectAlternativeName)
            if names is None:
                raise TLSAlert(AlertDescription.bad_certificate, f"{who}: a server certificate without subjectAltName")
            if not _san_matches(names, self.subject):
                raise TLSAlert(
                    AlertDescription.bad_certificate, f"{who}: no subjectAltName matches {self.subject.value}"
                )
        usage = _extension(leaf, x509.KeyUsage)
        if usage is not None and not usage.digital_signature:
            raise TLSAlert(AlertDescription.unsupported_certificate, f"{who}: keyUsage lacks digitalSignature")
        self._check_purpose(leaf, "leaf")

    def _check_purpose(self, cert: x509.Certificate, role: str) -> None:
        purposes = _extension(cert, x509.ExtendedKeyUsage)
        if purposes is None or self.purpose in purposes:
            return
        if not self.webpki and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in purposes:
            return
        raise TLSAlert(
            AlertDescription.unsupported_certificate,
            f"{role} {_who(cert)}: extendedKeyUsage lacks {_PURPOSE_NAMES[self.purpose]}",
        )

    def _check_issuer(self, issuer: x509.Certificate, role: str, below: int) -> None:
        """``below``: CA certificates between this issuer and the leaf (for pathLenConstraint)."""
        self._check_certificate(issuer, role)
        who = f"{role} {_who(issuer)}"
        basic = _extension(issuer, x509.BasicConstraints)
        if basic is None or not basic.ca:
            raise TLSAlert(AlertDescription.bad_certificate, f"{who} issued a certificate but is not a CA "
                                                             "(basicConstraints cA is not asserted)")
        if basic.path_length is not None and below > basic.path_length:
            raise TLSAlert(
                AlertDescription.bad_certificate,
                f"{who} allows {basic.path_length} CAs below it (pathLenConstraint), the path has {below}",
            )
        usage = _extension(issuer, x509.KeyUsage)
        if usage is None and self.webpki:
            raise TLSAlert(AlertDescription.bad_certificate, f"{who} has no keyUsage (required by the web PKI)")
        if usage is not None and not usage.key_cert_sign:
            raise TLSAlert(AlertDescription.bad_certificate, f"{who}: keyUsage lacks keyCertSign")
        self._check_purpose(issuer, role)

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
                    f"{_who(cert)} is not signed by {_who(issuer)}: {exc or type(exc).__name__}",
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
            if (self._issued(current, anchor) and self._may_issue(anchor, "trust anchor", below)
                    and self._names_permitted([*path, anchor])):
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

    def _names_permitted(self, path: list[x509.Certificate]) -> bool:
        # RFC 5280 §4.2.1.10: a CA's name constraints bind the names of every certificate below it in the path.
        for index, ca in enumerate(path[1:], start=1):
            constraints = _extension(ca, x509.NameConstraints)
            if constraints is None:
                continue
            for below in path[:index]:
                failure = _name_constraint_failure(constraints, below)
                if failure is not None:
                    self.failures.append(TLSAlert(
                        AlertDescription.bad_certificate,
                        f"{_who(below)} breaks the name constraints of CA {_who(ca)}: {failure}",
                    ))
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
            f"no trusted issuer {leaf.issuer.rfc4514_string()!r} found for {_who(leaf)}",
        )


_Ext = TypeVar("_Ext", bound=x509.ExtensionType)


def _extension(cert: x509.Certificate, kind: type[_Ext]) -> _Ext | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


# --- Names ------------------------------------------------------------------------------------------------------


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


def _dns_within(name: str, constraint: str) -> bool:
    # RFC 5280 §4.2.1.10: "example.com" covers the host and every name below it; ".example.com" (the OpenSSL and
    # Go reading) only the names below it. An empty constraint covers every name.
    constraint = constraint.lower().rstrip(".")
    if not constraint:
        return True
    if constraint.startswith("."):
        return name.endswith(constraint)
    return name == constraint or name.endswith("." + constraint)


def _name_constraint_failure(constraints: x509.NameConstraints, cert: x509.Certificate) -> str | None:
    """Why ``cert``'s names break ``constraints``, or None. Only dNSName and iPAddress subtrees are evaluated; a
    constraint of another type fails closed, since it could forbid names this validator does not read."""
    subtrees = [*(constraints.permitted_subtrees or ()), *(constraints.excluded_subtrees or ())]
    other = {type(s).__name__ for s in subtrees if not isinstance(s, x509.DNSName | x509.IPAddress)}
    if other:
        return f"{', '.join(sorted(other))} constraints are not evaluated here"
    san = _extension(cert, x509.SubjectAlternativeName)
    dns = [n.lower().rstrip(".") for n in san.get_values_for_type(x509.DNSName)] if san else []
    ips = list(san.get_values_for_type(x509.IPAddress)) if san else []
    permitted = constraints.permitted_subtrees or ()
    excluded = constraints.excluded_subtrees or ()
    for name in dns:
        allowed = [s.value for s in permitted if isinstance(s, x509.DNSName)]
        if allowed and not any(_dns_within(name.removeprefix("*."), c) for c in allowed):
            return f"DNS name {name} is outside the permitted subtrees"
        # A wildcard covers every name one label below its base: any excluded name there is reachable.
        base = name.removeprefix("*.")
        for s in excluded:
            if isinstance(s, x509.DNSName) and (
                _dns_within(base, s.value) or (name.startswith("*.") and _dns_within(s.value.lower().lstrip("."), base))
            ):
                return f"DNS name {name} is in the excluded subtree {s.value}"
    for address in ips:
        allowed_nets = [s.value for s in permitted if isinstance(s, x509.IPAddress)]
        if allowed_nets and not any(_ip_in(address, n) for n in allowed_nets):
            return f"IP address {address} is outside the permitted subtrees"
        for s in excluded:
            if isinstance(s, x509.IPAddress) and _ip_in(address, s.value):
                return f"IP address {address} is in the excluded subtree {s.value}"
    return None


def _ip_in(address: object, network: object) -> bool:
    return (
        isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
        and isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network)
        and address.version == network.version
        and address in network
    )


def certificate_matches_name(cert: x509.Certificate, server_name: str) -> bool:
    """Whether the leaf's subjectAltName covers ``server_name`` (RFC 6125 as verification does it), with
    no path validation: the probe uses it to tell the backend that owns a name from a default one."""
    try:
        subject = _server_subject(server_name)
    except TLSAlert:
        return False
    names = _extension(cert, x509.SubjectAlternativeName)
    return subject is not None and names is not None and _san_matches(names, subject)
