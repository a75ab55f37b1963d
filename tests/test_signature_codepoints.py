"""ML-DSA signature codepoints (0x0904-0x0906) in the ClientHello only when they can matter.

In 2026 an IPS threat signature on a widely deployed firewall reset every ClientHello that named ML-DSA in
signature_algorithms (Go 1.27 clients; golang/go #79626, #81199). The client now offers ML-DSA only when a trust
anchor or its own certificate has an ML-DSA key, or when the configuration names the schemes. Checked on the
engine's hello, on the configuration, and end to end through ``SigalgCodepointEmulator`` (an emulator of that
IPS, documented in pqproxy/lab/emulators.py) in front of a real ``pqproxy server``, beside Node 26 through the
same relay.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from pqproxy.certs import write_dev_pki
from pqproxy.lab.emulators import MLDSA_SCHEMES, SigalgCodepointEmulator, offered_signature_schemes
from pqproxy.proxy.config import ConfigError, build_client_runtime, client_settings
from pqproxy.tls.certificates import CertificateChain
from pqproxy.tls.client import TLSClient
from pqproxy.tls.config import CLASSICAL_SIGNATURE_SCHEMES, DEFAULT_SIGNATURE_SCHEMES, TLSConfig
from tests.peers.node import only, run_node_client
from tests.sidecar_kit import Backend, Sidecar, client_args, echo_once, server_args

PAYLOAD = b"through the IPS\n"


@pytest.fixture(scope="module")
def ecdsa_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_dev_pki(tmp_path_factory.mktemp("ecdsa"), alg="ecdsa", names=("localhost", "127.0.0.1"))


@pytest.fixture(scope="module")
def mldsa_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_dev_pki(tmp_path_factory.mktemp("mldsa"), alg="mldsa65", names=("localhost", "127.0.0.1"))


def _anchors(pki: dict[str, Path]) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(pki["ca"].read_bytes())]


def _hello_schemes(config: TLSConfig) -> dict[str, set[int]]:
    client = TLSClient(config)
    record = client.data_to_send()
    return offered_signature_schemes(record[5:])


def test_no_mldsa_in_the_hello_with_a_classical_ca(ecdsa_pki: dict[str, Path]) -> None:
    schemes = _hello_schemes(TLSConfig(server_name="localhost", trust_store=_anchors(ecdsa_pki)))
    assert schemes == {"signature_algorithms": set(CLASSICAL_SIGNATURE_SCHEMES)}
    assert not schemes["signature_algorithms"] & MLDSA_SCHEMES


def test_mldsa_in_the_hello_with_an_mldsa_ca(mldsa_pki: dict[str, Path]) -> None:
    schemes = _hello_schemes(TLSConfig(server_name="localhost", trust_store=_anchors(mldsa_pki)))
    assert schemes["signature_algorithms"] == set(DEFAULT_SIGNATURE_SCHEMES)


def test_mldsa_in_the_hello_with_our_own_mldsa_certificate(
    ecdsa_pki: dict[str, Path], mldsa_pki: dict[str, Path]
) -> None:
    ours = CertificateChain.load(mldsa_pki["client"], mldsa_pki["client_key"])
    schemes = _hello_schemes(TLSConfig(server_name="localhost", trust_store=_anchors(ecdsa_pki),
                                       certificate_chain=ours))
    assert schemes["signature_algorithms"] >= MLDSA_SCHEMES


def test_configured_schemes_are_sent_as_given(ecdsa_pki: dict[str, Path]) -> None:
    settings = client_settings({"listen": "127.0.0.1:1", "connect": "127.0.0.1:2", "ca": str(ecdsa_pki["ca"]),
                                "signature_algorithms": ["ecdsa_secp256r1_sha256", "mldsa65"]}, {})
    runtime = build_client_runtime(settings)
    assert runtime.tls.signature_schemes == (0x0403, 0x0905)
    assert _hello_schemes(runtime.tls)["signature_algorithms"] == {0x0403, 0x0905}


def test_the_flag_takes_a_comma_list(ecdsa_pki: dict[str, Path]) -> None:
    settings = client_settings({}, {"listen": "127.0.0.1:1", "connect": "127.0.0.1:2", "ca": str(ecdsa_pki["ca"]),
                                    "signature_algorithms": "mldsa44, rsa_pss_rsae_sha256"})
    assert settings.signature_algorithms == (0x0904, 0x0804)


@pytest.mark.parametrize("bad", ["ecdsa_sha1", "rsa_pkcs1_sha1", "nonsense", ""])
def test_unknown_schemes_are_a_config_error(ecdsa_pki: dict[str, Path], bad: str) -> None:
    with pytest.raises(ConfigError, match="signature_algorithms"):
        client_settings({"listen": "127.0.0.1:1", "connect": "127.0.0.1:2", "ca": str(ecdsa_pki["ca"]),
                         "signature_algorithms": bad}, {})


def test_real_clients_default_hellos_name_mldsa(ecdsa_pki: dict[str, Path]) -> None:
    """What the emulator keys on is in real hellos: Node 26's (OpenSSL 3.5) and Chromium's captured defaults name
    ML-DSA, so both are reset by such an IPS."""
    from pqproxy.probe.pcap import load_client_hello

    captures = Path(__file__).resolve().parents[1] / "captures"
    for name in ("node26-openssl35", "chromium"):
        listed = offered_signature_schemes(load_client_hello(captures / f"{name}.pcap"))
        assert listed["signature_algorithms"] & MLDSA_SCHEMES, name


@pytest.mark.interop
def test_pqproxy_client_passes_an_mldsa_resetting_ips_where_node_is_reset(ecdsa_pki: dict[str, Path]) -> None:
    backend = Backend()
    server = Sidecar("server", server_args(ecdsa_pki, backend.address), admin=False)
    try:
        with SigalgCodepointEmulator(server.port) as ips:
            # The default client: an ECDSA CA, so no ML-DSA scheme in its hello; the IPS forwards it.
            client = Sidecar("client", client_args(ecdsa_pki, ips.port), admin=False)
            try:
                assert echo_once(client.port, PAYLOAD) == PAYLOAD
                record = client.wait_for(lambda r: r.get("mode") == "client" and "result" in r)
                assert record["result"] == "ok" and record["group"] == "X25519MLKEM768", record
            finally:
                client.stop()
            assert ips.decisions == ["forward: no ML-DSA scheme"]
            # Naming ML-DSA in the configuration brings the reset back: the emulator does what it says.
            named = Sidecar("client", client_args(ecdsa_pki, ips.port, "--signature-algorithms",
                                                  "ecdsa_secp256r1_sha256,mldsa65"), admin=False)
            try:
                assert echo_once(named.port, PAYLOAD) == b""
                record = named.wait_for(lambda r: r.get("mode") == "client" and "result" in r)
                assert record["result"] != "ok", record
            finally:
                named.stop()
            assert ips.decisions[1].startswith("reset: ML-DSA named (signature_algorithms:0x0905")
            # Node 26 (OpenSSL 3.5) with its default signature algorithms is reset by the same IPS.
            events = run_node_client({"port": ips.port, "ca": str(ecdsa_pki["ca"]), "servername": "localhost",
                                      "send": len(PAYLOAD)})
            assert only(events, "error") and not any(r.get("length") for r in only(events, "result")), events
            assert ips.decisions[2].startswith("reset: ML-DSA named")
    finally:
        server.stop()
        backend.close()


@pytest.mark.interop
def test_an_mldsa_server_is_still_reached_with_an_mldsa_ca(mldsa_pki: dict[str, Path]) -> None:
    backend = Backend()
    server = Sidecar("server", server_args(mldsa_pki, backend.address), admin=False)
    client = Sidecar("client", client_args(mldsa_pki, server.port), admin=False)
    try:
        assert echo_once(client.port, PAYLOAD) == PAYLOAD
    finally:
        client.stop()
        server.stop()
        backend.close()
