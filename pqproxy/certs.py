"""A development PKI: one CA, a server certificate and a client certificate, for tests, demos and the lab.

``pqproxy certs --out DIR [--alg ALG] [--name NAME ...]`` writes::

    ca.pem      ca.key       the CA (self-signed, pathLenConstraint 0)
    server.pem  server.key   server leaf: serverAuth, subjectAltName = the --name values (DNS and IP entries)
    client.pem  client.key   client leaf: CN "client", clientAuth, subjectAltName DNS "client"

The certificates carry what both cryptography's CA/B-Forum verifier and OpenSSL 3.5 want to see:
basicConstraints (critical), keyUsage (critical), extendedKeyUsage, subjectAltName, and the subject and
authority key identifiers. Keys are unencrypted PKCS#8 PEM with mode 0600; ML-DSA keys are written in the
seed form (RFC 9881 §6), which is what cryptography emits and OpenSSL 3.5 reads.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .tls.certificates import PrivateKey

ALGORITHMS: tuple[str, ...] = ("ecdsa", "ecdsa384", "ed25519", "rsa", "mldsa44", "mldsa65", "mldsa87")
DEFAULT_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
DEFAULT_DAYS = 365
RSA_BITS = 2048
# Certificates start this long before "now", so that a peer whose clock lags a little still accepts them.
BACKDATE = timedelta(hours=1)

CA_FILES = ("ca.pem", "ca.key")
SERVER_FILES = ("server.pem", "server.key")
CLIENT_FILES = ("client.pem", "client.key")


def generate_key(alg: str) -> PrivateKey:
    """A fresh private key for one of ``ALGORITHMS``."""
    if alg == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "ecdsa384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    if alg == "mldsa44":
        return mldsa.MLDSA44PrivateKey.generate()
    if alg == "mldsa65":
        return mldsa.MLDSA65PrivateKey.generate()
    if alg == "mldsa87":
        return mldsa.MLDSA87PrivateKey.generate()
    raise ValueError(f"unknown key algorithm {alg!r}; choose one of {', '.join(ALGORITHMS)}")


def _signing_hash(issuer_key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | None:
    # EdDSA and ML-DSA sign the message itself: cryptography wants no hash for them.
    if isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        return hashes.SHA384() if issuer_key.curve.key_size >= 384 else hashes.SHA256()
    if isinstance(issuer_key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    return None


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def general_names(names: Sequence[str]) -> list[x509.GeneralName]:
    """subjectAltName entries: an IP literal becomes an iPAddress, anything else a (lower-case, A-label) dNSName."""
    result: list[x509.GeneralName] = []
    for raw in names:
        name = raw.strip()
        if not name:
            raise ValueError("empty certificate name")
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name.strip("[]"))))
            continue
        except ValueError:
            pass
        try:
            dns = name.rstrip(".").encode("idna").decode("ascii").lower()
        except UnicodeError as exc:
            raise ValueError(f"{raw!r} is neither an IP address nor a valid DNS name ({exc})") from None
        result.append(x509.DNSName(dns))
    return result


def build_ca_certificate(
    key: PrivateKey, common_name: str, not_before: datetime, not_after: datetime
) -> x509.Certificate:
    """A self-signed CA certificate that may issue end-entity certificates only (pathLenConstraint 0)."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pqproxy development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
        .sign(key, _signing_hash(key))
    )


def build_leaf_certificate(
    public_key: CertificatePublicKeyTypes,
    ca_certificate: x509.Certificate,
    ca_key: PrivateKey,
    *,
    common_name: str,
    names: Sequence[str],
    purpose: x509.ObjectIdentifier,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """An end-entity certificate for ``public_key`` issued by the CA, for ``purpose`` (an EKU OID)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pqproxy development"),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .issuer_name(ca_certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names(names)), critical=False)
    return builder.sign(ca_key, _signing_hash(ca_key))


def _cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    # Write beside the target with the final mode from the start, then rename: a key is never readable by others,
    # not even for a moment, and a reader never sees half a file.
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; a leftover temporary may have another mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


def write_dev_pki(
    out_dir: Path,
    alg: str = "ecdsa",
    names: Sequence[str] = DEFAULT_NAMES,
    days: int = DEFAULT_DAYS,
    *,
    force: bool = False,
) -> dict[str, Path]:
    """Write the CA, server and client certificates and keys into ``out_dir``; return what went where.

    Keys of the result: ``ca``, ``ca_key``, ``server``, ``server_key``, ``client``, ``client_key``.
    Existing files are only replaced with ``force=True`` (a CA key is not something to lose by accident).
    """
    if alg not in ALGORITHMS:
        raise ValueError(f"unknown key algorithm {alg!r}; choose one of {', '.join(ALGORITHMS)}")
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    if not names:
        raise ValueError("the server certificate needs at least one name")
    general_names(names)  # fail on a bad name before any key is generated or file written

    out_dir = Path(out_dir)
    paths = {
        "ca": out_dir / CA_FILES[0],
        "ca_key": out_dir / CA_FILES[1],
        "server": out_dir / SERVER_FILES[0],
        "server_key": out_dir / SERVER_FILES[1],
        "client": out_dir / CLIENT_FILES[0],
        "client_key": out_dir / CLIENT_FILES[1],
    }
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not force:
        raise FileExistsError(f"refusing to overwrite {', '.join(existing)} (use --force)")

    not_before = datetime.now(UTC) - BACKDATE
    not_after = not_before + BACKDATE + timedelta(days=days)

    ca_key = generate_key(alg)
    ca = build_ca_certificate(ca_key, f"pqproxy dev CA ({alg})", not_before, not_after)
    server_key = generate_key(alg)
    server = build_leaf_certificate(
        server_key.public_key(),
        ca,
        ca_key,
        common_name=_common_name(names),
        names=names,
        purpose=ExtendedKeyUsageOID.SERVER_AUTH,
        not_before=not_before,
        not_after=not_after,
    )
    client_key = generate_key(alg)
    client = build_leaf_certificate(
        client_key.public_key(),
        ca,
        ca_key,
        common_name="client",
        names=["client"],
        purpose=ExtendedKeyUsageOID.CLIENT_AUTH,
        not_before=not_before,
        not_after=not_after,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    _write(paths["ca"], _cert_pem(ca), 0o644)
    _write(paths["ca_key"], _key_pem(ca_key), 0o600)
    _write(paths["server"], _cert_pem(server), 0o644)
    _write(paths["server_key"], _key_pem(server_key), 0o600)
    _write(paths["client"], _cert_pem(client), 0o644)
    _write(paths["client_key"], _key_pem(client_key), 0o600)
    return paths


def write_kme_pki(out_dir: Path, saes: Sequence[str], server_names: Sequence[str] = ("localhost", "127.0.0.1"),
                  alg: str = "ecdsa", days: int = DEFAULT_DAYS,
                  sites: Mapping[str, Sequence[str]] | None = None) -> dict[str, Path]:
    """The PKI of an ETSI GS QKD 014 deployment: a CA, the KME's server certificate (``kme.pem``/``kme.key``)
    and one client certificate per SAE whose CN is the SAE ID (``<sae>.pem``/``<sae>.key``): the KME knows
    which SAE calls from its certificate. With ``sites`` (a network's site -> its KME's names), a server
    certificate per site too, ``kme-<site>.pem``/``.key``, from the same CA. Returns the paths by name (``ca``,
    ``ca_key``, ``kme``, ``kme_key``,
    and each SAE ID with ``<sae>_key``). Existing files are replaced (a simulator's PKI is disposable)."""
    general_names(server_names)
    not_before = datetime.now(UTC) - BACKDATE
    not_after = not_before + BACKDATE + timedelta(days=days)
    ca_key = generate_key(alg)
    ca = build_ca_certificate(ca_key, "pqproxy KME simulator CA", not_before, not_after)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"ca": out_dir / "ca.pem", "ca_key": out_dir / "ca.key"}
    _write(paths["ca"], _cert_pem(ca), 0o644)
    _write(paths["ca_key"], _key_pem(ca_key), 0o600)
    leaves = [("kme", "kme", list(server_names), ExtendedKeyUsageOID.SERVER_AUTH)]
    leaves += [(f"kme-{site}", f"kme {site}", list(names), ExtendedKeyUsageOID.SERVER_AUTH)
               for site, names in (sites or {}).items()]
    leaves += [(sae, sae, [], ExtendedKeyUsageOID.CLIENT_AUTH) for sae in saes]
    for name, common_name, names, purpose in leaves:
        key = generate_key(alg)
        cert = build_leaf_certificate(key.public_key(), ca, ca_key, common_name=common_name, names=names,
                                      purpose=purpose, not_before=not_before, not_after=not_after)
        paths[name], paths[f"{name}_key"] = out_dir / f"{name}.pem", out_dir / f"{name}.key"
        _write(paths[name], _cert_pem(cert), 0o644)
        _write(paths[f"{name}_key"], _key_pem(key), 0o600)
    return paths


def _common_name(names: Sequence[str]) -> str:
    # The CN is informational (clients match subjectAltName); X.520 caps it at 64 characters.
    first = names[0].strip()
    return first if 0 < len(first) <= 64 else "pqproxy server"


# --- CLI -------------------------------------------------------------------------------------------------------

_DESCRIPTIONS = {
    "ca": "CA certificate (trust anchor: --ca / --client-ca)",
    "ca_key": "CA private key",
    "server": "server certificate (--cert)",
    "server_key": "server private key (--key)",
    "client": "client certificate",
    "client_key": "client private key",
}


def add_certs_subparser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``certs`` on an ``argparse`` subparsers object; ``args.func(args)`` returns the exit code."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "certs",
        help="write a development PKI (CA, server and client certificates)",
        description="Write a development CA with a server and a client certificate, as PEM files.",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write into")
    parser.add_argument("--alg", choices=ALGORITHMS, default="ecdsa", help="key algorithm (default: %(default)s)")
    parser.add_argument(
        "--name",
        dest="names",
        action="append",
        metavar="NAME",
        help=f"DNS name or IP address for the server certificate; repeat for more (default: {' '.join(DEFAULT_NAMES)})",
    )
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="validity in days (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.set_defaults(func=run_certs)
    return parser


def run_certs(args: argparse.Namespace) -> int:
    names = tuple(args.names) if args.names else DEFAULT_NAMES
    try:
        paths = write_dev_pki(args.out, alg=args.alg, names=names, days=args.days, force=args.force)
    except (ValueError, OSError) as exc:  # FileExistsError is an OSError
        print(f"pqproxy certs: {exc}", file=sys.stderr)
        return 1
    print(f"{args.alg} development PKI for {', '.join(names)}, valid {args.days} days:")
    for key, path in paths.items():
        print(f"  {path}  {_DESCRIPTIONS[key]}")
    return 0
