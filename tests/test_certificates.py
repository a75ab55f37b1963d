"""Certificates: CertificateVerify signatures (RFC 8446 §4.4.3) and chain validation, for every dev-PKI algorithm.

Every failure case asserts the exact alert the engine would send.
"""

from __future__ import annotations

import ipaddress
import json
import os
import stat
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from pqproxy.certs import (
    ALGORITHMS,
    add_certs_subparser,
    build_ca_certificate,
    build_leaf_certificate,
    generate_key,
    write_dev_pki,
)
from pqproxy.tls.alerts import AlertDescription, TLSAlert
from pqproxy.tls.certificates import (
    MAX_CHAIN_LENGTH,
    SUPPORTED_SIGNATURE_SCHEMES,
    CertificateChain,
    PrivateKey,
    certificate_verify_input,
    choose_signature_scheme,
    load_trust_store,
    sign,
    signature_schemes_for_key,
    verify_signature,
)
from pqproxy.tls.chain_validation import verify_client_chain, verify_server_chain
from pqproxy.tls.codepoints import SignatureScheme as S
from tests.peers.node import node_binary

EXPECTED_SCHEMES: dict[str, tuple[int, ...]] = {
    "ecdsa": (S.ecdsa_secp256r1_sha256,),
    "ecdsa384": (S.ecdsa_secp384r1_sha384,),
    "ed25519": (S.ed25519,),
    "rsa": (S.rsa_pss_rsae_sha256, S.rsa_pss_rsae_sha384, S.rsa_pss_rsae_sha512),
    "mldsa44": (S.mldsa44,),
    "mldsa65": (S.mldsa65,),
    "mldsa87": (S.mldsa87,),
}
TRANSCRIPT_HASH = bytes(range(32))


@dataclass
class PKI:
    alg: str
    paths: dict[str, Path]
    server: CertificateChain
    client: CertificateChain
    trust: list[x509.Certificate]
    ca: x509.Certificate
    ca_key: PrivateKey


def _load_pki(alg: str, out: Path) -> PKI:
    paths = write_dev_pki(out, alg)
    ca_key = serialization.load_pem_private_key(paths["ca_key"].read_bytes(), password=None)
    trust = load_trust_store(paths["ca"])
    return PKI(
        alg=alg,
        paths=paths,
        server=CertificateChain.load(paths["server"], paths["server_key"]),
        client=CertificateChain.load(paths["client"], paths["client_key"]),
        trust=trust,
        ca=trust[0],
        ca_key=ca_key,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module", params=ALGORITHMS)
def pki(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return _load_pki(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def other_pki(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """An unrelated CA of the same algorithm (and, as it happens, the same subject name)."""
    return _load_pki(pki.alg, tmp_path_factory.mktemp(f"other-{pki.alg}"))


def _alert(excinfo: pytest.ExceptionInfo[TLSAlert]) -> AlertDescription:
    return excinfo.value.description


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def _leaf(pki: PKI, *, not_before: datetime, not_after: datetime, names: tuple[str, ...] = ("localhost",)) -> bytes:
    key = generate_key(pki.alg)
    cert = build_leaf_certificate(
        key.public_key(),
        pki.ca,
        pki.ca_key,
        common_name="leaf",
        names=names,
        purpose=ExtendedKeyUsageOID.SERVER_AUTH,
        not_before=not_before,
        not_after=not_after,
    )
    return _der(cert)


# --- Our chain and keys -----------------------------------------------------------------------------------------


def test_dev_pki_files_and_modes(pki: PKI) -> None:
    assert sorted(p.name for p in pki.paths.values()) == sorted(
        ["ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key"]
    )
    for key in ("ca_key", "server_key", "client_key"):
        assert stat.S_IMODE(os.stat(pki.paths[key]).st_mode) == 0o600
        assert pki.paths[key].read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert len(pki.server.certificates) == 1
    assert pki.server.der == [_der(pki.server.leaf)]
    san = pki.server.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert _cn(pki.client.leaf) == "client"
    eku = pki.client.leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_schemes_for_key(pki: PKI) -> None:
    assert signature_schemes_for_key(pki.server.private_key) == EXPECTED_SCHEMES[pki.alg]
    assert pki.server.signature_schemes == EXPECTED_SCHEMES[pki.alg]


def test_choose_signature_scheme(pki: PKI) -> None:
    ours = EXPECTED_SCHEMES[pki.alg]
    # The peer's order does not matter: the first of *ours* that the peer offered wins.
    assert choose_signature_scheme(pki.server.private_key, [0x0A0A, *reversed(ours)]) == ours[0]
    assert choose_signature_scheme(pki.server.private_key, [ours[-1]]) == ours[-1]
    others = [s for s in SUPPORTED_SIGNATURE_SCHEMES if s not in ours] + [S.rsa_pkcs1_sha256]
    assert choose_signature_scheme(pki.server.private_key, others) is None


def test_chain_refuses_key_of_another_certificate(pki: PKI) -> None:
    with pytest.raises(ValueError, match=r"client\.key.*does not match the leaf certificate") as excinfo:
        CertificateChain.load(pki.paths["server"], pki.paths["client_key"])
    assert str(pki.paths["server"]) in str(excinfo.value)


def test_chain_bad_files_are_named(pki: PKI, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a certificate")
    with pytest.raises(ValueError, match=r"garbage\.pem"):
        CertificateChain.load(garbage, pki.paths["server_key"])
    with pytest.raises(ValueError, match=r"key file .*garbage\.pem"):
        CertificateChain.load(pki.paths["server"], garbage)
    with pytest.raises(ValueError, match=r"missing\.pem"):
        CertificateChain.load(tmp_path / "missing.pem", pki.paths["server_key"])
    with pytest.raises(ValueError, match=r"trust store file .*garbage\.pem"):
        load_trust_store(garbage)


def test_chain_from_pem_keeps_intermediates_in_order(pki: PKI) -> None:
    pem = pki.paths["server"].read_bytes() + pki.paths["ca"].read_bytes()
    chain = CertificateChain.from_pem(pem, pki.paths["server_key"].read_bytes())
    assert chain.certificates == [pki.server.leaf, pki.ca]
    assert chain.der == [_der(pki.server.leaf), _der(pki.ca)]


def test_encrypted_key_is_refused(tmp_path: Path) -> None:
    paths = write_dev_pki(tmp_path, "ecdsa")
    key = serialization.load_pem_private_key(paths["server_key"].read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ValueError, match=r"encrypted\.key.*encrypted"):
        CertificateChain.load(paths["server"], encrypted)


def test_write_dev_pki_does_not_overwrite(tmp_path: Path) -> None:
    first = write_dev_pki(tmp_path, "ed25519")
    before = first["ca_key"].read_bytes()
    with pytest.raises(FileExistsError, match=r"ca\.pem"):
        write_dev_pki(tmp_path, "ed25519")
    assert first["ca_key"].read_bytes() == before
    second = write_dev_pki(tmp_path, "ed25519", force=True)
    assert second["ca_key"].read_bytes() != before
    assert stat.S_IMODE(os.stat(second["ca_key"]).st_mode) == 0o600


def test_write_dev_pki_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown key algorithm"):
        write_dev_pki(tmp_path, "dsa")
    with pytest.raises(ValueError, match="neither an IP address nor a valid DNS name"):
        write_dev_pki(tmp_path, "ecdsa", names=("bad..name",))
    assert list(tmp_path.iterdir()) == []


def test_certs_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="pqproxy")
    add_certs_subparser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["certs", "--out", str(tmp_path), "--alg", "mldsa65", "--name", "proxy.test"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    for name in ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key"):
        assert str(tmp_path / name) in printed
    chain = CertificateChain.load(tmp_path / "server.pem", tmp_path / "server.key")
    assert chain.signature_schemes == (S.mldsa65,)
    trust = load_trust_store(tmp_path / "ca.pem")
    assert verify_server_chain(chain.der, trust, "proxy.test") == chain.leaf
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain(chain.der, trust, "localhost")
    assert _alert(excinfo) is AlertDescription.bad_certificate
    # A second run refuses to overwrite and says so with exit code 1.
    assert args.func(args) == 1
    assert "refusing to overwrite" in capsys.readouterr().err


# --- CertificateVerify signatures -------------------------------------------------------------------------------


def test_certificate_verify_input_layout() -> None:
    server = certificate_verify_input(True, TRANSCRIPT_HASH)
    client = certificate_verify_input(False, TRANSCRIPT_HASH)
    assert server == b" " * 64 + b"TLS 1.3, server CertificateVerify" + b"\x00" + TRANSCRIPT_HASH
    assert client == b" " * 64 + b"TLS 1.3, client CertificateVerify" + b"\x00" + TRANSCRIPT_HASH
    assert len(server) == 64 + 33 + 1 + 32


def test_sign_verify_roundtrip(pki: PKI) -> None:
    key = pki.server.private_key
    public_key = pki.server.leaf.public_key()
    data = certificate_verify_input(True, TRANSCRIPT_HASH)
    for scheme in EXPECTED_SCHEMES[pki.alg]:
        signature = sign(key, scheme, data)
        verify_signature(public_key, scheme, signature, data)  # returns None when the signature is good
        # The same signature must not pass as the client's, nor over another transcript.
        for other in (certificate_verify_input(False, TRANSCRIPT_HASH), certificate_verify_input(True, bytes(32))):
            with pytest.raises(TLSAlert) as excinfo:
                verify_signature(public_key, scheme, signature, other)
            assert _alert(excinfo) is AlertDescription.decrypt_error


def test_wrong_signature_is_decrypt_error(pki: PKI) -> None:
    key = pki.server.private_key
    public_key = pki.server.leaf.public_key()
    data = certificate_verify_input(True, TRANSCRIPT_HASH)
    for scheme in EXPECTED_SCHEMES[pki.alg]:
        good = sign(key, scheme, data)
        flipped = bytearray(good)
        flipped[len(flipped) // 2] ^= 0x01
        wrong_key_sig = sign(pki.client.private_key, scheme, data)  # right scheme, another key
        for bad in (bytes(flipped), good[:-1], b"", b"\x00" * len(good), wrong_key_sig):
            with pytest.raises(TLSAlert) as excinfo:
                verify_signature(public_key, scheme, bad, data)
            assert _alert(excinfo) is AlertDescription.decrypt_error, bad[:8]


def test_mismatched_scheme_is_illegal_parameter(pki: PKI) -> None:
    public_key = pki.server.leaf.public_key()
    data = certificate_verify_input(True, TRANSCRIPT_HASH)
    signature = sign(pki.server.private_key, EXPECTED_SCHEMES[pki.alg][0], data)
    wrong = [s for s in SUPPORTED_SIGNATURE_SCHEMES if s not in EXPECTED_SCHEMES[pki.alg]]
    # PKCS#1 v1.5 and SHA-1 are never valid in a TLS 1.3 CertificateVerify; 0x1234 is no scheme at all.
    wrong += [S.rsa_pkcs1_sha256, S.rsa_pkcs1_sha384, S.rsa_pkcs1_sha512, 0x0201, 0x0203, S.ed448, 0x1234]
    for scheme in wrong:
        with pytest.raises(TLSAlert) as excinfo:
            verify_signature(public_key, scheme, signature, data)
        assert _alert(excinfo) is AlertDescription.illegal_parameter, hex(scheme)


def test_sign_with_foreign_scheme_is_internal_error(pki: PKI) -> None:
    scheme = S.ed25519 if pki.alg != "ed25519" else S.ecdsa_secp256r1_sha256
    with pytest.raises(TLSAlert) as excinfo:
        sign(pki.server.private_key, scheme, b"data")
    assert _alert(excinfo) is AlertDescription.internal_error


def test_mldsa_signs_with_empty_context() -> None:
    for alg, scheme in (("mldsa44", S.mldsa44), ("mldsa65", S.mldsa65), ("mldsa87", S.mldsa87)):
        key = generate_key(alg)
        assert isinstance(key, mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey)
        signature = sign(key, scheme, b"message")
        key.public_key().verify(signature, b"message", b"")  # an explicit empty context verifies it
        with_context = key.sign(b"message", b"tls")
        with pytest.raises(TLSAlert) as excinfo:
            verify_signature(key.public_key(), scheme, with_context, b"message")
        assert _alert(excinfo) is AlertDescription.decrypt_error


def test_rsa_pss_salt_must_equal_hash_length() -> None:
    key = generate_key("rsa")
    assert isinstance(key, rsa.RSAPrivateKey)
    data = b"transcript"
    digest = hashes.SHA256()
    good = key.sign(data, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)
    verify_signature(key.public_key(), S.rsa_pss_rsae_sha256, good, data)
    for salt in (0, 20, 64):
        odd = key.sign(data, padding.PSS(padding.MGF1(digest), salt), digest)
        with pytest.raises(TLSAlert) as excinfo:
            verify_signature(key.public_key(), S.rsa_pss_rsae_sha256, odd, data)
        assert _alert(excinfo) is AlertDescription.decrypt_error
    pkcs1 = key.sign(data, padding.PKCS1v15(), digest)
    with pytest.raises(TLSAlert) as excinfo:
        verify_signature(key.public_key(), S.rsa_pss_rsae_sha256, pkcs1, data)
    assert _alert(excinfo) is AlertDescription.decrypt_error


def test_ecdsa_hash_must_match_scheme() -> None:
    key = generate_key("ecdsa")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = key.sign(b"data", ec.ECDSA(hashes.SHA384()))
    with pytest.raises(TLSAlert) as excinfo:
        verify_signature(key.public_key(), S.ecdsa_secp256r1_sha256, signature, b"data")
    assert _alert(excinfo) is AlertDescription.decrypt_error


_FUZZ_KEYS = {alg: generate_key(alg).public_key() for alg in ("ecdsa", "ed25519", "mldsa44")}


@settings(max_examples=200, deadline=None)
@given(
    alg=st.sampled_from(sorted(_FUZZ_KEYS)),
    scheme=st.one_of(st.sampled_from([*SUPPORTED_SIGNATURE_SCHEMES, *S]), st.integers(0, 0xFFFF)),
    signature=st.binary(max_size=3000),
    data=st.binary(max_size=200),
)
def test_verify_signature_only_raises_alerts(alg: str, scheme: int, signature: bytes, data: bytes) -> None:
    with pytest.raises(TLSAlert) as excinfo:
        verify_signature(_FUZZ_KEYS[alg], scheme, signature, data)
    assert _alert(excinfo) in (AlertDescription.illegal_parameter, AlertDescription.decrypt_error)


# --- Server chains ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["localhost", "LOCALHOST", "localhost.", "127.0.0.1", "::1", "[::1]"])
def test_server_chain_verifies(pki: PKI, name: str) -> None:
    assert verify_server_chain(pki.server.der, pki.trust, name) == pki.server.leaf


@pytest.mark.parametrize("name", ["example.com", "127.0.0.2", "::2", "sub.localhost", "client"])
def test_server_chain_name_mismatch_is_bad_certificate(pki: PKI, name: str) -> None:
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain(pki.server.der, pki.trust, name)
    assert _alert(excinfo) is AlertDescription.bad_certificate
    assert name.lower().strip("[]") in excinfo.value.reason or "subjectAltName" in excinfo.value.reason


def test_server_chain_without_name_checks_the_rest(pki: PKI, other_pki: PKI) -> None:
    assert verify_server_chain(pki.server.der, pki.trust, None) == pki.server.leaf
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain(pki.server.der, other_pki.trust, None)
    assert _alert(excinfo) is AlertDescription.unknown_ca
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain(pki.client.der, pki.trust, None)
    assert _alert(excinfo) is AlertDescription.unsupported_certificate


def test_server_chain_with_root_included_verifies(pki: PKI) -> None:
    assert verify_server_chain([*pki.server.der, _der(pki.ca)], pki.trust, "localhost") == pki.server.leaf


def test_unrelated_ca_is_unknown_ca(pki: PKI, other_pki: PKI) -> None:
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain(pki.server.der, other_pki.trust, "localhost")
    assert _alert(excinfo) is AlertDescription.unknown_ca
    with pytest.raises(TLSAlert) as excinfo:
        verify_client_chain(pki.client.der, other_pki.trust)
    assert _alert(excinfo) is AlertDescription.unknown_ca
    # Sending the right root along does not help: trust comes from the store, not from the peer.
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain([*pki.server.der, _der(pki.ca)], other_pki.trust, "localhost")
    assert _alert(excinfo) is AlertDescription.unknown_ca


def test_self_signed_leaf_is_not_its_own_anchor(pki: PKI) -> None:
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain([_der(pki.ca)], pki.trust, "localhost")
    assert _alert(excinfo) is AlertDescription.bad_certificate


def test_expired_certificate(pki: PKI) -> None:
    now = datetime.now(UTC)
    # Inside the dev CA's lifetime (it starts an hour ago), but over ten minutes ago.
    expired = _leaf(pki, not_before=now - timedelta(minutes=50), not_after=now - timedelta(minutes=10))
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain([expired], pki.trust, "localhost")
    assert _alert(excinfo) is AlertDescription.certificate_expired
    not_yet = _leaf(pki, not_before=now + timedelta(days=1), not_after=now + timedelta(days=30))
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain([not_yet], pki.trust, "localhost")
    assert _alert(excinfo) is AlertDescription.certificate_expired
    # The caller's clock decides: the same chain, judged at a time it was valid, passes.
    then = now - timedelta(minutes=30)
    assert verify_server_chain([expired], pki.trust, "localhost", now=then).not_valid_after_utc < now


def test_validation_time_beyond_the_ca(pki: PKI) -> None:
    later = datetime.now(UTC) + timedelta(days=400)
    for verify in (
        lambda: verify_server_chain(pki.server.der, pki.trust, "localhost", now=later),
        lambda: verify_client_chain(pki.client.der, pki.trust, now=later),
    ):
        with pytest.raises(TLSAlert) as excinfo:
            verify()
        assert _alert(excinfo) is AlertDescription.certificate_expired


def test_expired_trust_anchor(pki: PKI) -> None:
    now = datetime.now(UTC)
    old_ca = build_ca_certificate(pki.ca_key, "pqproxy dev CA (" + pki.alg + ")", now - timedelta(days=30), now)
    assert old_ca.subject == pki.ca.subject
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain(pki.server.der, [old_ca], "localhost", now=now + timedelta(days=1))
    assert _alert(excinfo) is AlertDescription.certificate_expired


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00", b"\x30\x03\x02\x01\x01", b"-----BEGIN CERTIFICATE-----", bytes(range(256))],
)
def test_garbage_der_is_bad_certificate(pki: PKI, garbage: bytes) -> None:
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain([garbage], pki.trust, "localhost")
    assert _alert(excinfo) is AlertDescription.bad_certificate
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain([*pki.server.der, garbage], pki.trust, "localhost")
    assert _alert(excinfo) is AlertDescription.bad_certificate
    with pytest.raises(TLSAlert) as excinfo:
        verify_client_chain([garbage], pki.trust)
    assert _alert(excinfo) is AlertDescription.bad_certificate


def test_truncated_der_is_bad_certificate(pki: PKI) -> None:
    der = pki.server.der[0]
    for cut in (1, len(der) // 2, len(der) - 1):
        with pytest.raises(TLSAlert) as excinfo:
            verify_server_chain([der[:cut]], pki.trust, "localhost")
        assert _alert(excinfo) is AlertDescription.bad_certificate


def test_tampered_certificate_is_rejected(pki: PKI) -> None:
    # Flip a bit inside the signature: the leaf decodes but its issuer never signed it.
    der = bytearray(pki.server.der[0])
    der[-5] ^= 0x01
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain([bytes(der)], pki.trust, "localhost")
    assert _alert(excinfo) is AlertDescription.unknown_ca


def test_empty_chains() -> None:
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain([], [], "localhost")
    assert _alert(excinfo) is AlertDescription.decode_error
    with pytest.raises(TLSAlert) as excinfo:
        verify_client_chain([], [])
    assert _alert(excinfo) is AlertDescription.certificate_required


def test_chain_length_is_bounded(pki: PKI) -> None:
    too_long = [*pki.server.der] * (MAX_CHAIN_LENGTH + 1)
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain(too_long, pki.trust, "localhost")
    assert _alert(excinfo) is AlertDescription.bad_certificate
    assert str(MAX_CHAIN_LENGTH) in excinfo.value.reason


def test_client_certificate_is_not_a_server_certificate(pki: PKI) -> None:
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain(pki.client.der, pki.trust, "client")
    assert _alert(excinfo) is AlertDescription.unsupported_certificate


def test_leaf_without_san_is_bad_server_certificate(pki: PKI) -> None:
    now = datetime.now(UTC)
    no_san = _leaf(pki, not_before=now - timedelta(hours=1), not_after=now + timedelta(days=1), names=())
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain([no_san], pki.trust, "localhost")
    assert _alert(excinfo) is AlertDescription.bad_certificate


def test_wildcard_san(pki: PKI) -> None:
    now = datetime.now(UTC)
    wildcard = _leaf(pki, not_before=now - timedelta(hours=1), not_after=now + timedelta(days=1), names=("*.lab.test",))
    assert _cn(verify_server_chain([wildcard], pki.trust, "node1.lab.test")) == "leaf"
    for name in ("lab.test", "a.b.lab.test", "nodelab.test"):
        with pytest.raises(TLSAlert) as excinfo:
            verify_server_chain([wildcard], pki.trust, name)
        assert _alert(excinfo) is AlertDescription.bad_certificate, name


# --- Paths through an intermediate --------------------------------------------------------------------------------


def _three_level(alg: str) -> tuple[x509.Certificate, bytes, bytes, PrivateKey]:
    """A root without pathLenConstraint, an intermediate, and a server leaf under it."""
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(days=30)
    root_key, intermediate_key, leaf_key = generate_key(alg), generate_key(alg), generate_key(alg)
    root = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string(f"CN=root {alg}"))
        .issuer_name(x509.Name.from_rfc4514_string(f"CN=root {alg}"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, _hash(root_key))
    )
    intermediate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string(f"CN=intermediate {alg}"))
        .issuer_name(root.subject)
        .public_key(intermediate_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(intermediate_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, _hash(root_key))
    )
    leaf = build_leaf_certificate(
        leaf_key.public_key(),
        intermediate,
        intermediate_key,
        common_name="deep",
        names=("deep.test",),
        purpose=ExtendedKeyUsageOID.SERVER_AUTH,
        not_before=start,
        not_after=end,
    )
    return root, _der(leaf), _der(intermediate), intermediate_key


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(False, False, False, False, False, True, True, False, False)


def _hash(key: PrivateKey) -> hashes.SHA256 | None:
    return hashes.SHA256() if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) else None


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_path_through_intermediate(alg: str) -> None:
    root, leaf, intermediate, _ = _three_level(alg)
    assert _cn(verify_server_chain([leaf, intermediate], [root], "deep.test")) == "deep"
    with pytest.raises(TLSAlert) as excinfo:  # the intermediate is missing: no path to the root
        verify_server_chain([leaf], [root], "deep.test")
    assert _alert(excinfo) is AlertDescription.unknown_ca


@pytest.mark.parametrize("alg", ["ecdsa", "ed25519", "mldsa44"])
def test_dev_ca_may_not_sign_intermediates(alg: str, tmp_path: Path) -> None:
    """The dev CA has pathLenConstraint 0: a CA certificate it issued may not issue in turn."""
    pki = _load_pki(alg, tmp_path)
    now = datetime.now(UTC)
    sub_key = generate_key(alg)
    sub_ca = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=sub"))
        .issuer_name(pki.ca.subject)
        .public_key(sub_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(sub_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.ca_key.public_key()), critical=False)
        .sign(pki.ca_key, _hash(pki.ca_key))
    )
    leaf = build_leaf_certificate(
        generate_key(alg).public_key(),
        sub_ca,
        sub_key,
        common_name="deep",
        names=("localhost",),
        purpose=ExtendedKeyUsageOID.SERVER_AUTH,
        not_before=now - timedelta(hours=1),
        not_after=now + timedelta(days=1),
    )
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain([_der(leaf), _der(sub_ca)], pki.trust, "localhost")
    assert _alert(excinfo) is AlertDescription.bad_certificate


# --- Client chains ----------------------------------------------------------------------------------------------


def test_client_chain_verifies(pki: PKI) -> None:
    assert verify_client_chain(pki.client.der, pki.trust) == pki.client.leaf


def test_server_certificate_is_not_a_client_certificate(pki: PKI) -> None:
    with pytest.raises(TLSAlert) as excinfo:
        verify_client_chain(pki.server.der, pki.trust)
    assert _alert(excinfo) is AlertDescription.unsupported_certificate


def test_client_certificate_without_san_is_accepted(pki: PKI) -> None:
    now = datetime.now(UTC)
    key = generate_key(pki.alg)
    cn_only = build_leaf_certificate(
        key.public_key(),
        pki.ca,
        pki.ca_key,
        common_name="sae-1",
        names=(),
        purpose=ExtendedKeyUsageOID.CLIENT_AUTH,
        not_before=now - timedelta(hours=1),
        not_after=now + timedelta(days=1),
    )
    assert verify_client_chain([_der(cn_only)], pki.trust) == cn_only


# --- Interop: OpenSSL 3.5 (inside Node 26) accepts the dev PKI -----------------------------------------------------

_NODE_SCRIPT = r"""
const tls = require('tls'); const fs = require('fs'); const path = require('path');
const dir = process.argv[1];
const rd = f => fs.readFileSync(path.join(dir, f));
const results = [];
const server = tls.createServer({cert: rd('server.pem'), key: rd('server.key'), ca: rd('ca.pem'),
                                 requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3'},
  s => s.end(s.authorized ? 'client:' + s.getPeerCertificate().subject.CN : 'client-refused'));
server.on('tlsClientError', () => {});
function attempt(label, opts) {
  return new Promise(done => {
    const c = tls.connect(Object.assign({port: server.address().port, ca: rd('ca.pem'),
                                         cert: rd('client.pem'), key: rd('client.key')}, opts), () => {
      let body = ''; c.on('data', d => body += d);
      c.on('end', () => { results.push({label, ok: c.authorized, protocol: c.getProtocol(), body}); done(); });
    });
    c.on('error', e => { results.push({label, ok: false, error: e.code || e.message}); done(); });
  });
}
server.listen(0, '127.0.0.1', async () => {
  await attempt('dns', {host: '127.0.0.1', servername: 'localhost'});
  await attempt('ip', {host: '127.0.0.1'});
  await attempt('mismatch', {host: '127.0.0.1', servername: 'example.com'});
  server.close();
  console.log(JSON.stringify(results));
});
setTimeout(() => { console.log(JSON.stringify(results)); process.exit(2); }, 10000).unref();
"""


@pytest.mark.interop
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_openssl_accepts_dev_pki(alg: str, tmp_path: Path) -> None:
    node = str(node_binary())  # Node 26 with OpenSSL 3.5: a missing peer fails in CI, skips elsewhere
    write_dev_pki(tmp_path, alg)
    run = subprocess.run(
        [node, "-e", _NODE_SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=30, check=False
    )
    assert run.returncode == 0, run.stderr
    results = {r["label"]: r for r in json.loads(run.stdout)}
    for label in ("dns", "ip"):
        assert results[label] == {"label": label, "ok": True, "protocol": "TLSv1.3", "body": "client:client"}
    assert results["mismatch"]["ok"] is False
    assert results["mismatch"]["error"] == "ERR_TLS_CERT_ALTNAME_INVALID"


def test_no_trust_anchors_is_unknown_ca(pki: PKI) -> None:
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain(pki.server.der, [], "localhost")
    assert _alert(excinfo) is AlertDescription.unknown_ca
    with pytest.raises(TLSAlert) as excinfo:
        verify_client_chain(pki.client.der, [])
    assert _alert(excinfo) is AlertDescription.unknown_ca


@pytest.fixture(scope="module")
def mutation_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PKI]:
    """One chain validated by cryptography's verifier (ECDSA) and one by the EdDSA fallback."""
    return {alg: _load_pki(alg, tmp_path_factory.mktemp(f"mutation-{alg}")) for alg in ("ecdsa", "ed25519")}


@settings(max_examples=300, deadline=None)
@given(alg=st.sampled_from(["ecdsa", "ed25519"]), data=st.data())
def test_mutated_certificate_only_raises_alerts(mutation_pki: dict[str, PKI], alg: str, data: st.DataObject) -> None:
    """Hostile input: a one-byte change to a valid leaf gives an alert, and no other exception escapes.

    The one change that may pass is one the CA's signature does not cover and that leaves the signed content intact
    (e.g. the unused-bits count of the signature BIT STRING when the padding bits happen to be zero).
    """
    pki = mutation_pki[alg]
    original = pki.server.leaf
    der = bytearray(pki.server.der[0])
    position = data.draw(st.integers(0, len(der) - 1), label="position")
    der[position] ^= data.draw(st.integers(1, 255), label="xor")
    try:
        accepted = verify_server_chain([bytes(der)], pki.trust, "localhost")
    except TLSAlert as alert:
        assert alert.description in (
            AlertDescription.bad_certificate,
            AlertDescription.unknown_ca,
            AlertDescription.unsupported_certificate,
            AlertDescription.certificate_expired,
        )
    else:
        assert accepted.tbs_certificate_bytes == original.tbs_certificate_bytes
        assert accepted.signature == original.signature


@settings(max_examples=200, deadline=None)
@given(chain=st.lists(st.binary(max_size=300), min_size=1, max_size=MAX_CHAIN_LENGTH + 2))
def test_random_chains_are_bad_certificate(mutation_pki: dict[str, PKI], chain: list[bytes]) -> None:
    pki = mutation_pki["ecdsa"]
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain(chain, pki.trust, "localhost")
    assert _alert(excinfo) is AlertDescription.bad_certificate


# --- Name constraints: the manual validator (EdDSA chains) agrees with cryptography's verifier (ECDSA chains) --------


def _constrained_chain(alg: str, constraints: x509.NameConstraints, names: tuple[str, ...]
                       ) -> tuple[x509.Certificate, list[bytes]]:
    """root -> intermediate with ``constraints`` -> a server leaf for ``names`` (DNS names or IP literals)."""
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(days=3)
    root_key, ca_key, leaf_key = generate_key(alg), generate_key(alg), generate_key(alg)
    root = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=nc root"))
            .issuer_name(x509.Name.from_rfc4514_string("CN=nc root")).public_key(root_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, _hash(root_key)))
    ca = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=nc intermediate"))
          .issuer_name(root.subject).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_ca_usage(), critical=True)
          .add_extension(constraints, critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
          .sign(root_key, _hash(root_key)))
    leaf = build_leaf_certificate(leaf_key.public_key(), ca, ca_key, common_name="nc leaf", names=names,
                                  purpose=ExtendedKeyUsageOID.SERVER_AUTH, not_before=start, not_after=end)
    return root, [_der(leaf), _der(ca)]


_NC = x509.NameConstraints(
    permitted_subtrees=[x509.DNSName("example.com"), x509.IPAddress(ipaddress.ip_network("127.0.0.0/8"))],
    excluded_subtrees=[x509.DNSName("secret.example.com")],
)
_NC_CASES = [
    (("www.example.com",), "www.example.com", True),
    (("example.com",), "example.com", True),
    (("127.0.0.1",), "127.0.0.1", True),
    (("www.example.org",), "www.example.org", False),  # outside the permitted DNS subtree
    (("secret.example.com",), "secret.example.com", False),  # in the excluded subtree
    (("a.secret.example.com",), "a.secret.example.com", False),  # below the excluded subtree
    (("www.example.com", "10.0.0.1"), "www.example.com", False),  # an IP SAN outside the permitted range
    (("*.example.com",), "a.example.com", False),  # the wildcard also covers the excluded name
]


@pytest.mark.parametrize("alg", ["ecdsa", "ed25519"])
@pytest.mark.parametrize(("names", "server_name", "accepted"), _NC_CASES)
def test_name_constraints(alg: str, names: tuple[str, ...], server_name: str, accepted: bool) -> None:
    root, chain = _constrained_chain(alg, _NC, names)
    if accepted:
        assert _cn(verify_server_chain(chain, [root], server_name)) == "nc leaf"
        return
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain(chain, [root], server_name)
    assert _alert(excinfo) in (AlertDescription.bad_certificate, AlertDescription.unknown_ca), excinfo.value
    assert "nc intermediate" in excinfo.value.reason and "name constraint" in excinfo.value.reason, excinfo.value


def test_name_constraints_of_a_type_the_manual_validator_does_not_read_fail_closed() -> None:
    constraints = x509.NameConstraints(
        permitted_subtrees=[x509.DirectoryName(x509.Name.from_rfc4514_string("O=Example"))], excluded_subtrees=None)
    root, chain = _constrained_chain("ed25519", constraints, ("www.example.com",))
    with pytest.raises(TLSAlert) as excinfo:
        verify_server_chain(chain, [root], "www.example.com")
    assert "DirectoryName constraints are not evaluated" in excinfo.value.reason
