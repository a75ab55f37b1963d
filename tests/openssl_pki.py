"""A private PKI made the way users make theirs: with the ``openssl`` command line, not with our own code.

Every certificate here comes from ``openssl req -x509`` / ``openssl x509 -req`` / ``openssl ca`` with the recipes of
tutorials, easy-rsa style one-liners and OpenSSL's default ``v3_ca`` section (basicConstraints CA:TRUE, SKI, AKI, no
keyUsage), so the tests judge pqproxy's path validation by chains nobody here designed. Two roots share one trust
bundle (``ca.pem``): ``root`` without keyUsage, ``root-ku`` with keyCertSign.

``SCENARIOS`` names each chain and what a verifier following RFC 5280 (as OpenSSL and Go do) must conclude about it,
as a server certificate for ``localhost`` and as a client certificate; ``NODE_DIFFERS`` lists where Node 26 (OpenSSL
3.5) concludes otherwise, and why pqproxy keeps its answer.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVER_NAME = "localhost"


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str  # how it was made, for the README's matrix
    chain: tuple[str, ...]  # PEM files, leaf first, as the peer sends them
    server_ok: bool  # accepted as a server certificate for SERVER_NAME
    client_ok: bool  # accepted as a client certificate (mTLS)
    refusal: str = ""  # the rule a refusal names (a substring of the log line's reason)
    culprit: str = ""  # the CN of the certificate a refusal names


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("recipe", "openssl req -x509 CA (no keyUsage), leaf by openssl x509 -req (SAN, EKU, no keyUsage)",
             ("recipe.pem",), True, True),
    Scenario("ca-no-keyusage", "CA without keyUsage, leaf with keyUsage digitalSignature", ("ca-no-ku.pem",),
             True, True),
    Scenario("leaf-no-keyusage", "CA with keyUsage keyCertSign, leaf without keyUsage", ("leaf-no-ku.pem",),
             True, True),
    Scenario("intermediate", "root -> intermediate (CA:TRUE, no keyUsage) -> leaf",
             ("via-intermediate.pem", "intermediate.pem"), True, True),
    Scenario("cn-only", "leaf named by its subject CN only, no subjectAltName", ("cn-only.pem",), False, True,
             "subjectAltName", "localhost"),
    Scenario("v1-leaf", "version 1 leaf (openssl x509 -req without -extfile, OpenSSL < 3.2)", ("v1-leaf.pem",),
             False, True, "subjectAltName", "localhost"),
    Scenario("expired-intermediate", "intermediate valid 2020-01-01 to 2020-02-01 (openssl ca -enddate)",
             ("via-expired.pem", "expired-intermediate.pem"), False, False, "not valid at", "expired intermediate"),
    Scenario("ca-false-issuer", "issuer with basicConstraints CA:FALSE", ("via-not-ca.pem", "not-ca.pem"),
             False, False, "not a CA", "not a ca"),
    Scenario("name-constraints", "intermediate permitted only DNS:example.com, leaf for localhost",
             ("via-constrained.pem", "constrained.pem"), False, False, "name constraints", "localhost"),
    Scenario("eku-email-only", "leaf whose extendedKeyUsage is emailProtection only", ("email-only.pem",),
             False, False, "extendedKeyUsage", "localhost"),
)
BY_NAME = {s.name: s for s in SCENARIOS}

# Where Node 26 answers otherwise. Its tls.checkServerIdentity falls back to the subject CN when a certificate has
# no DNS or IP subjectAltName; RFC 9525 §6.3 (which replaced RFC 6125) removed that fallback, Go dropped it in 1.15,
# and the CA/B Forum forbids relying on it. pqproxy holds a server to subjectAltName.
NODE_DIFFERS: dict[tuple[str, str], bool] = {("cn-only", "server"): True, ("v1-leaf", "server"): True}

_LEAF = "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"


class OpenSSLPKI:
    """The scenarios' files in ``directory``; ``path(name)`` is one file, ``chain(scenario)`` the PEM chain."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = directory / "ca.pem"
        self.key = directory / "leaf.key"

    def path(self, name: str) -> Path:
        return self.dir / name

    def chain_file(self, scenario: Scenario) -> Path:
        """The scenario's chain as one PEM file, leaf first (what a server or client is configured with)."""
        target = self.dir / f"chain-{scenario.name}.pem"
        if not target.exists():
            target.write_bytes(b"".join((self.dir / f).read_bytes() for f in scenario.chain))
        return target

    def chain_der(self, scenario: Scenario) -> list[bytes]:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        return [x509.load_pem_x509_certificate((self.dir / f).read_bytes()).public_bytes(Encoding.DER)
                for f in scenario.chain]


def openssl_binary() -> str | None:
    return shutil.which("openssl")


def make_openssl_pki(directory: Path) -> OpenSSLPKI:
    """Run the openssl recipes into ``directory`` (about a second)."""
    directory.mkdir(parents=True, exist_ok=True)
    run = _Runner(directory)
    # Roots: OpenSSL's default v3_ca (no keyUsage), and one with keyUsage as careful CAs have.
    run.key("root")
    run("req", "-x509", "-key", "root.key", "-subj", "/CN=root", "-days", "30", "-out", "root.pem")
    run.key("root-ku")
    run("req", "-x509", "-key", "root-ku.key", "-subj", "/CN=root with keyUsage", "-days", "30",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "root-ku.pem")
    (directory / "ca.pem").write_bytes((directory / "root.pem").read_bytes() + (directory / "root-ku.pem").read_bytes())
    run.key("leaf")
    run("req", "-new", "-key", "leaf.key", "-subj", f"/CN={SERVER_NAME}", "-out", "leaf.csr")
    # Issuers below the root.
    run.ca("intermediate", "root", "basicConstraints=critical,CA:TRUE\n")
    run.ca("not-ca", "root", "basicConstraints=critical,CA:FALSE\n", cn="not a ca")
    run.ca("constrained", "root",
           "basicConstraints=critical,CA:TRUE\nnameConstraints=critical,permitted;DNS:example.com\n")
    run.expired_ca("expired-intermediate", "root")
    # Leaves (all with the one leaf key).
    run.leaf("recipe", "root", _LEAF)
    run.leaf("ca-no-ku", "root", _LEAF + "keyUsage=critical,digitalSignature\n")
    run.leaf("leaf-no-ku", "root-ku", _LEAF)
    run.leaf("via-intermediate", "intermediate", _LEAF)
    run.leaf("via-expired", "expired-intermediate", _LEAF, issuer_key="expired-intermediate")
    run.leaf("via-not-ca", "not-ca", _LEAF)
    run.leaf("via-constrained", "constrained", _LEAF)
    run.leaf("cn-only", "root", "extendedKeyUsage=serverAuth,clientAuth\n")
    run.leaf("email-only", "root", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=emailProtection\n")
    run.leaf("v1-leaf", "root", None)
    # Other key types OpenSSL makes: an RSA key in an id-RSASSA-PSS certificate, and a brainpool ECDSA key.
    run.other_key_leaf("pss-leaf", ["-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048"], _LEAF)
    run.other_key_leaf("brainpool-leaf", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:brainpoolP256r1"],
                       _LEAF)
    return OpenSSLPKI(directory)


class _Runner:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        binary = openssl_binary()
        if binary is None:
            raise RuntimeError("the openssl command is not installed (make system)")
        self.binary = binary

    def __call__(self, *args: str) -> None:
        done = subprocess.run([self.binary, *args], cwd=self.dir, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)}: {done.stderr.strip()}")

    def key(self, name: str) -> None:
        self("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{name}.key")

    def ca(self, name: str, issuer: str, extensions: str, cn: str | None = None) -> None:
        self.key(name)
        self("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={cn or name}", "-out", f"{name}.csr")
        (self.dir / f"{name}.ext").write_text(extensions)
        self("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key",
             "-CAcreateserial", "-days", "20", "-extfile", f"{name}.ext", "-out", f"{name}.pem")

    def expired_ca(self, name: str, issuer: str) -> None:
        """``openssl x509`` cannot date a certificate in the past; ``openssl ca`` can (-startdate/-enddate)."""
        self.key(name)
        self("req", "-new", "-key", f"{name}.key", "-subj", "/CN=expired intermediate", "-out", f"{name}.csr")
        db = self.dir / "ca-db"
        db.mkdir(exist_ok=True)
        (db / "index.txt").write_text("")
        (db / "serial").write_text("1000\n")
        (self.dir / "ca.cnf").write_text(
            "[ca]\ndefault_ca = root\n[root]\n"
            f"dir = {db}\ndatabase = $dir/index.txt\nserial = $dir/serial\nnew_certs_dir = $dir\n"
            f"certificate = {self.dir / (issuer + '.pem')}\nprivate_key = {self.dir / (issuer + '.key')}\n"
            "default_md = sha256\npolicy = anything\nx509_extensions = v3_intermediate\nunique_subject = no\n"
            "[anything]\ncommonName = supplied\n"
            "[v3_intermediate]\nbasicConstraints = critical,CA:TRUE\nsubjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid\n")
        self("ca", "-batch", "-config", "ca.cnf", "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
             "-in", f"{name}.csr", "-out", f"{name}.pem", "-notext")

    def other_key_leaf(self, name: str, genpkey: list[str], extensions: str) -> None:
        """A leaf for SERVER_NAME with a key of its own kind (``name``.key), issued by the root."""
        self("genpkey", *genpkey, "-out", f"{name}.key")
        self("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={SERVER_NAME}", "-out", f"{name}.csr")
        (self.dir / f"{name}.ext").write_text(extensions)
        self("x509", "-req", "-in", f"{name}.csr", "-CA", "root.pem", "-CAkey", "root.key", "-CAcreateserial",
             "-days", "10", "-extfile", f"{name}.ext", "-out", f"{name}.pem")

    def leaf(self, name: str, issuer: str, extensions: str | None, issuer_key: str | None = None) -> None:
        args = ["x509", "-req", "-in", "leaf.csr", "-CA", f"{issuer}.pem", "-CAkey", f"{issuer_key or issuer}.key",
                "-CAcreateserial", "-days", "10", "-out", f"{name}.pem"]
        if extensions is not None:
            (self.dir / f"{name}.ext").write_text(extensions)
            args += ["-extfile", f"{name}.ext"]
        self(*args)
