"""Self-test of the Node.js 26 peer harness: Node talks to Node, our engine is not involved."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.peers.node import NodeServer, deterministic_bytes, node_binary, only, run_node_client

pytestmark = pytest.mark.interop

MIB = 1024 * 1024


@pytest.fixture(scope="module", autouse=True)
def _node_present() -> None:
    node_binary()


@pytest.fixture
def cert_pair(tmp_path: Path) -> tuple[str, str]:
    """A self-signed P-256 certificate for localhost (CA:TRUE so that Node accepts it as its own anchor)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp_path / "cert.pem"
    key_path = tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def _client(port: int, cert: str, **extra: object) -> dict[str, object]:
    return {"port": port, "ca": cert, "servername": "localhost", **extra}


def _no_errors(events: list[dict[str, object]]) -> None:
    errors = only(events, "error") + only(events, "tap_error")
    assert not errors, errors


def test_hybrid_echo_1mib(cert_pair: tuple[str, str]) -> None:
    cert, key = cert_pair
    with NodeServer({"cert": cert, "key": key, "groups": "X25519MLKEM768", "echo": True}) as server:
        events = run_node_client(_client(server.port, cert, groups="X25519MLKEM768:X25519", send=MIB), timeout=60)
        _no_errors(events)
        (hs,) = only(events, "handshake")
        assert hs["protocol"] == "TLSv1.3"
        assert hs["group"] == "X25519MLKEM768"
        assert hs["ephemeralKeyInfo"] == {"type": "TLSGroup", "name": "X25519MLKEM768"}
        assert hs["serverKeyShareLength"] == 1120  # ML-KEM-768 ciphertext (1088) || X25519 (32)
        assert hs["hrr"] is False
        assert hs["authorized"] is True
        assert hs["peerCertificate"]["subjectCN"] == "localhost"
        assert hs["peerSigalg"] == "ecdsa_secp256r1_sha256"
        assert hs["clientHello"]["keyShares"][0] == {"group": "X25519MLKEM768", "length": 1216}

        (result,) = only(events, "result")
        expected = hashlib.sha256(deterministic_bytes(MIB)).hexdigest()
        assert result["sent_sha256"] == expected
        assert result["length"] == MIB
        assert result["sha256"] == expected

        server_hs = server.wait_event("handshake", timeout=10)
        assert server_hs["group"] == "X25519MLKEM768"
        assert server_hs["servername"] == "localhost"
        assert server_hs["clientHello"]["groups"] == ["X25519MLKEM768", "X25519"]
        server_result = server.wait_event("result", timeout=10)
        assert server_result["length"] == MIB
        assert server_result["sha256"] == expected
        server.wait_event("closed", timeout=10)
        assert not server.events("error")


def test_classical_x25519(cert_pair: tuple[str, str]) -> None:
    cert, key = cert_pair
    with NodeServer({"cert": cert, "key": key, "groups": "X25519"}) as server:
        events = run_node_client(_client(server.port, cert, groups="X25519", send=4096), timeout=30)
        _no_errors(events)
        (hs,) = only(events, "handshake")
        assert hs["group"] == "X25519"
        assert hs["ephemeralKeyInfo"]["name"] == "X25519"
        assert hs["serverKeyShareLength"] == 32
        (result,) = only(events, "result")
        assert result["sha256"] == result["sent_sha256"]
        assert server.wait_event("handshake", timeout=10)["group"] == "X25519"


def test_hello_retry_into_hybrid(cert_pair: tuple[str, str]) -> None:
    """A client whose only key share is X25519 is sent a HelloRetryRequest for X25519MLKEM768."""
    cert, key = cert_pair
    with NodeServer({"cert": cert, "key": key, "groups": "X25519MLKEM768"}) as server:
        events = run_node_client(_client(server.port, cert, groups="X25519:X25519MLKEM768", send=100), timeout=30)
        _no_errors(events)
        (hs,) = only(events, "handshake")
        assert hs["hrr"] is True
        assert hs["hrrGroup"] == "X25519MLKEM768"
        assert hs["group"] == "X25519MLKEM768"
        assert [s["group"] for s in hs["clientHello"]["keyShares"]] == ["X25519"]
        assert [s["group"] for s in hs["clientHelloRetry"]["keyShares"]] == ["X25519MLKEM768"]
        server_hs = server.wait_event("handshake", timeout=10)
        assert server_hs["hrr"] is True
        assert server_hs["group"] == "X25519MLKEM768"


def test_resumption(cert_pair: tuple[str, str]) -> None:
    cert, key = cert_pair
    with NodeServer({"cert": cert, "key": key}) as server:
        events = run_node_client(_client(server.port, cert, reconnect=1, send=1000), timeout=30)
        _no_errors(events)
        first, second = only(events, "handshake")
        assert first["sessionReused"] is False
        assert second["sessionReused"] is True
        assert second["pskAccepted"] is True
        assert second["clientHello"]["psk"] is True
        assert second["peerCertificate"] is None  # no Certificate message on a resumed handshake
        assert [r["sha256"] == r["sent_sha256"] for r in only(events, "result")] == [True, True]
        server.wait_event("handshake", timeout=10, conn=2)
        assert [e["sessionReused"] for e in server.events("handshake")] == [False, True]


def test_half_close_hash_only(cert_pair: tuple[str, str]) -> None:
    cert, key = cert_pair
    with NodeServer({"cert": cert, "key": key, "hashOnly": True}) as server:
        events = run_node_client(_client(server.port, cert, sendThenHash=300_000), timeout=30)
        _no_errors(events)
        (result,) = only(events, "result")
        reply = result["text"]
        assert isinstance(reply, str)
        assert reply.endswith("\n")
        assert reply.strip() == (
            f'{{"sha256":"{hashlib.sha256(deterministic_bytes(300_000)).hexdigest()}","length":300000}}'
        )


def test_group_mismatch_reports_alert(cert_pair: tuple[str, str]) -> None:
    cert, key = cert_pair
    with NodeServer({"cert": cert, "key": key, "groups": "X25519MLKEM768"}) as server:
        events = run_node_client(_client(server.port, cert, groups="P-256"), timeout=30)
        assert not only(events, "handshake")
        (error,) = only(events, "error")
        assert error["alert"] == 40
        assert error["alertName"] == "handshake_failure"
        assert {"event": "alert", "direction": "received", "name": "handshake_failure"}.items() <= only(
            events, "alert"
        )[0].items()
        server_error = server.wait_event("error", timeout=10)
        assert server_error["phase"] == "handshake"
        sent = server.wait_event("alert", timeout=10)
        assert sent["direction"] == "sent"
        assert sent["description"] == 40
