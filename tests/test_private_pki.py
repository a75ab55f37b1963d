"""Private PKIs made with ``openssl``, judged by pqproxy (both modes) and by Node 26 (OpenSSL 3.5) side by side.

The chains (tests/openssl_pki.py) are what users bring: a ``openssl req -x509`` CA without keyUsage, leaves without
keyUsage, an intermediate, a CN-only leaf, an expired intermediate, a CA:FALSE issuer, name constraints, a wrong
extendedKeyUsage, a version 1 leaf. Each one goes:

- to ``pqproxy client --ca ca.pem`` from a Node 26 server that presents it (what the pqproxy client concludes),
- to ``pqproxy server --client-ca ca.pem`` from a Node 26 client that presents it for mTLS,
- between two Node 26 peers, for the reference answer,

and the test checks all three answers against the scenario's expectation, the bytes echoed through on success,
and, on a refusal, that pqproxy's log line names the certificate and the rule.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pqproxy.tls.alerts import TLSAlert
from pqproxy.tls.certificates import load_trust_store
from pqproxy.tls.chain_validation import verify_client_chain, verify_server_chain
from tests.openssl_pki import (
    BY_NAME,
    NODE_DIFFERS,
    SCENARIOS,
    SERVER_NAME,
    OpenSSLPKI,
    Scenario,
    make_openssl_pki,
    openssl_binary,
)
from tests.peers.node import NodeServer, only, run_node_client
from tests.sidecar_kit import HOST, Backend, Sidecar, echo_once

IDS = [s.name for s in SCENARIOS]
PAYLOAD = b"private pki says hello\n"


@pytest.fixture(scope="module")
def openssl_pki(tmp_path_factory: pytest.TempPathFactory) -> OpenSSLPKI:
    if openssl_binary() is None:
        message = "the openssl command is missing (scripts/install-system.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return make_openssl_pki(tmp_path_factory.mktemp("openssl-pki"))


# --- The verdicts, in process (both profiles) -------------------------------------------------------------------


def _verdict(run: Any) -> tuple[bool, str]:
    try:
        run()
    except TLSAlert as alert:
        return False, f"{alert.description.name}: {alert.reason}"
    return True, ""


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_rfc5280_profile_verdicts(openssl_pki: OpenSSLPKI, scenario: Scenario) -> None:
    trust = load_trust_store(openssl_pki.ca)
    chain = openssl_pki.chain_der(scenario)
    server_ok, server_why = _verdict(lambda: verify_server_chain(chain, trust, SERVER_NAME))
    client_ok, client_why = _verdict(lambda: verify_client_chain(chain, trust))
    assert (server_ok, client_ok) == (scenario.server_ok, scenario.client_ok), (server_why, client_why)
    for ok, why in ((server_ok, server_why), (client_ok, client_why)):
        if not ok:  # every refusal names the certificate and the rule
            assert scenario.culprit in why and scenario.refusal in why, why


def test_the_v1_scenario_is_a_version_1_certificate(openssl_pki: OpenSSLPKI) -> None:
    from cryptography import x509

    leaf = x509.load_pem_x509_certificate(openssl_pki.path("v1-leaf.pem").read_bytes())
    assert leaf.version is x509.Version.v1 and len(leaf.extensions) == 0


@pytest.mark.parametrize("name", ["recipe", "ca-no-keyusage", "intermediate"])
def test_webpki_profile_still_requires_key_usage_on_cas(openssl_pki: OpenSSLPKI, name: str) -> None:
    trust = load_trust_store(openssl_pki.ca)
    chain = openssl_pki.chain_der(BY_NAME[name])
    ok, why = _verdict(lambda: verify_server_chain(chain, trust, SERVER_NAME, profile="webpki"))
    assert not ok and "keyUsage" in why and ("'CN=root'" in why or "'CN=intermediate'" in why), why
    ok, why = _verdict(lambda: verify_client_chain(chain, trust, profile="webpki"))
    assert not ok and "keyUsage" in why, why


def test_webpki_profile_accepts_a_careful_ca(openssl_pki: OpenSSLPKI) -> None:
    trust = load_trust_store(openssl_pki.ca)
    chain = openssl_pki.chain_der(BY_NAME["leaf-no-keyusage"])
    assert _verdict(lambda: verify_server_chain(chain, trust, SERVER_NAME, profile="webpki")) == (True, "")


# --- The same chains over the wire: pqproxy client and server against Node 26 -----------------------------------


def _node_reference_server_verdict(pki: OpenSSLPKI, scenario: Scenario) -> bool:
    """Node 26 as the client, verifying a Node 26 server that presents the chain."""
    with NodeServer({"cert": str(pki.chain_file(scenario)), "key": str(pki.key)}) as server:
        events = run_node_client({"port": server.port, "ca": str(pki.ca), "servername": SERVER_NAME,
                                  "send": len(PAYLOAD)})
    return bool(only(events, "result")) and not only(events, "error")


@pytest.mark.interop
@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_pqproxy_client_and_node_judge_a_server_chain(openssl_pki: OpenSSLPKI, scenario: Scenario) -> None:
    with NodeServer({"cert": str(openssl_pki.chain_file(scenario)), "key": str(openssl_pki.key)}) as server:
        client = Sidecar("client", ["--connect", f"{HOST}:{server.port}", "--sni", SERVER_NAME,
                                    "--ca", str(openssl_pki.ca)], admin=False)
        try:
            echoed = echo_once(client.port, PAYLOAD)
            record = client.wait_for(lambda r: r.get("mode") == "client" and "result" in r)
        finally:
            client.stop()
    if scenario.server_ok:
        assert echoed == PAYLOAD and record["result"] == "ok", record
        assert record.get("group") == "X25519MLKEM768", record
    else:
        assert echoed == b"" and record["result"] != "ok", record
        reason = str(record.get("reason") or record.get("error"))
        assert scenario.culprit in reason and scenario.refusal in reason, record
    node_ok = _node_reference_server_verdict(openssl_pki, scenario)
    assert node_ok == NODE_DIFFERS.get((scenario.name, "server"), scenario.server_ok)


@pytest.fixture(scope="module")
def mtls_server(openssl_pki: OpenSSLPKI) -> Iterator[Sidecar]:
    backend = Backend()
    good = openssl_pki.chain_file(BY_NAME["leaf-no-keyusage"])
    server = Sidecar("server", ["--upstream", backend.address, "--cert", str(good), "--key", str(openssl_pki.key),
                                "--client-ca", str(openssl_pki.ca)], admin=False)
    try:
        yield server
    finally:
        server.stop()
        backend.close()


def _node_reference_client_verdict(pki: OpenSSLPKI, scenario: Scenario) -> bool:
    """Node 26 as an mTLS server (requestCert, rejectUnauthorized) judging a Node 26 client's chain."""
    good = pki.chain_file(BY_NAME["leaf-no-keyusage"])
    with NodeServer({"cert": str(good), "key": str(pki.key), "ca": str(pki.ca), "requestCert": True,
                     "rejectUnauthorized": True}) as server:
        events = run_node_client({"port": server.port, "ca": str(pki.ca), "servername": SERVER_NAME,
                                  "cert": str(pki.chain_file(scenario)), "key": str(pki.key), "send": len(PAYLOAD)})
    results = only(events, "result")
    return bool(results) and results[0]["length"] == len(PAYLOAD) and not only(events, "error")


@pytest.mark.interop
@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_pqproxy_server_and_node_judge_a_client_chain(
    openssl_pki: OpenSSLPKI, mtls_server: Sidecar, scenario: Scenario
) -> None:
    before = len(mtls_server.connections())
    events = run_node_client({"port": mtls_server.port, "ca": str(openssl_pki.ca), "servername": SERVER_NAME,
                              "cert": str(openssl_pki.chain_file(scenario)), "key": str(openssl_pki.key),
                              "send": len(PAYLOAD)})
    record = mtls_server.wait_count(lambda r: "mode" in r and "event" not in r, before + 1)[before]
    results = only(events, "result")
    if scenario.client_ok:
        assert results and results[0]["length"] == len(PAYLOAD) and not only(events, "error"), events
        assert record["result"] == "ok" and record.get("group") == "X25519MLKEM768", record
    else:
        assert not results or results[0]["length"] == 0, events
        assert record["result"] != "ok", record
        reason = str(record.get("reason") or record.get("error"))
        assert scenario.culprit in reason and scenario.refusal in reason, record
    node_ok = _node_reference_client_verdict(openssl_pki, scenario)
    assert node_ok == NODE_DIFFERS.get((scenario.name, "client"), scenario.client_ok)


def test_scenarios_have_distinct_files() -> None:
    leaves = [s.chain[0] for s in SCENARIOS]
    assert len(set(leaves)) == len(leaves)
    assert all(Path(f).suffix == ".pem" for s in SCENARIOS for f in s.chain)


# --- Other key types OpenSSL makes: an RSA key in an id-RSASSA-PSS certificate, a brainpool ECDSA key --------------
# (tlsfuzzer's test-tls13-rsapss-signatures and test-tls13-ecdsa-brainpool-in-certificate-verify found both
# missing: an RSA-PSS certificate signs with rsa_pss_pss_* only, RFC 8446 §4.2.3; brainpool is RFC 8734.)

OTHER_KEYS = [("pss-leaf", "rsa_pss_pss_sha256"), ("brainpool-leaf", "ecdsa_brainpoolP256r1tls13_sha256")]


@pytest.mark.parametrize(("leaf", "scheme"), OTHER_KEYS, ids=[k for k, _ in OTHER_KEYS])
def test_other_key_types_in_memory_both_ways(openssl_pki: OpenSSLPKI, leaf: str, scheme: str) -> None:
    from pqproxy.tls.certificates import CertificateChain
    from pqproxy.tls.config import TLSConfig
    from tests.tls_helpers import handshake

    chain = CertificateChain.load(openssl_pki.path(f"{leaf}.pem"), openssl_pki.path(f"{leaf}.key"))
    trust = load_trust_store(openssl_pki.ca)
    hs = handshake(TLSConfig(server_name=SERVER_NAME, trust_store=trust),
                   TLSConfig(certificate_chain=chain))  # as the server's certificate
    client_done = next(e for e in hs.client_events if type(e).__name__ == "HandshakeComplete")
    assert client_done.signature_scheme == scheme
    hs = handshake(TLSConfig(server_name=SERVER_NAME, trust_store=trust, certificate_chain=chain),
                   TLSConfig(certificate_chain=chain, trust_store=trust, require_client_certificate=True))
    server_done = next(e for e in hs.server_events if type(e).__name__ == "HandshakeComplete")
    assert server_done.peer_certificate is not None  # and as a client certificate


@pytest.mark.interop
@pytest.mark.parametrize(("leaf", "scheme"), OTHER_KEYS, ids=[k for k, _ in OTHER_KEYS])
def test_other_key_types_against_node(openssl_pki: OpenSSLPKI, leaf: str, scheme: str) -> None:
    cert, key = str(openssl_pki.path(f"{leaf}.pem")), str(openssl_pki.path(f"{leaf}.key"))
    # Node 26 verifies pqproxy server's signature with this key.
    backend = Backend()
    server = Sidecar("server", ["--upstream", backend.address, "--cert", cert, "--key", key,
                                "--client-ca", str(openssl_pki.ca)], admin=False)
    try:
        events = run_node_client({"port": server.port, "ca": str(openssl_pki.ca), "servername": SERVER_NAME,
                                  "cert": cert, "key": key, "send": len(PAYLOAD)})
        (hs,) = only(events, "handshake")
        assert hs["authorized"] is True and hs["peerSigalg"] == scheme, hs
        assert only(events, "result")[0]["length"] == len(PAYLOAD)
        record = server.wait_for(lambda r: r.get("mode") == "server" and "result" in r)
        assert record["result"] == "ok" and record["client_certificate"] == f"CN={SERVER_NAME}", record
    finally:
        server.stop()
        backend.close()
    # pqproxy client verifies Node 26's signature with this key.
    with NodeServer({"cert": cert, "key": key}) as node:
        client = Sidecar("client", ["--connect", f"{HOST}:{node.port}", "--sni", SERVER_NAME,
                                    "--ca", str(openssl_pki.ca)], admin=False)
        try:
            assert echo_once(client.port, PAYLOAD) == PAYLOAD
        finally:
            client.stop()
        (hs,) = only(node.events(), "handshake")
        assert hs["group"] == "X25519MLKEM768"
