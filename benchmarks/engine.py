"""In-process engine measurements: server CPU per handshake, the crypto floor under it, record throughput.

CPU time (``time.process_time``) of this process only, so other load on the machine matters less than
with wall-clock timing. The side-by-side comparison with a Node 26 sidecar is issue 8's harness.
"""

from __future__ import annotations

import hmac
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pqproxy.certs import write_dev_pki
from pqproxy.tls.certificates import CertificateChain, load_trust_store
from pqproxy.tls.client import TLSClient
from pqproxy.tls.codepoints import NamedGroup
from pqproxy.tls.config import TLSConfig
from pqproxy.tls.server import TLSServer


def crypto_floor_us(rounds: int) -> float:
    """What an X25519MLKEM768 + ECDSA P-256 server handshake cannot avoid doing, in cryptography alone."""
    client_ek = mlkem.MLKEM768PrivateKey.generate().public_key().public_bytes_raw()
    client_x = x25519.X25519PrivateKey.generate().public_key()
    signing_key = ec.generate_private_key(ec.SECP256R1())
    aead = AESGCM(bytes(16))
    start = time.process_time()
    for _ in range(rounds):
        mlkem.MLKEM768PublicKey.from_public_bytes(client_ek).encapsulate()
        ephemeral = x25519.X25519PrivateKey.generate()
        ephemeral.public_key().public_bytes_raw()
        ephemeral.exchange(client_x)
        signing_key.sign(b"\x20" * 64 + b"TLS 1.3, server CertificateVerify\x00" + bytes(32), ec.ECDSA(hashes.SHA256()))
        for _ in range(17):  # the key schedule's HKDF-Expand-Label calls on the server
            hmac.digest(bytes(32), b"tls13 label", "sha256")
        for _ in range(4):
            AESGCM(bytes(16))
        aead.encrypt(bytes(12), bytes(1400), b"hdr")
        aead.decrypt(bytes(12), aead.encrypt(bytes(12), bytes(40), b"hdr"), b"hdr")
    return (time.process_time() - start) / rounds * 1e6


def server_handshake_us(client_cfg: TLSConfig, server_cfg: TLSConfig, rounds: int) -> float:
    total = 0.0
    for _ in range(rounds):
        client = TLSClient(client_cfg)
        hello = client.data_to_send()
        start = time.process_time()
        server = TLSServer(server_cfg)
        server.receive_data(hello)
        flight = server.data_to_send()
        total += time.process_time() - start
        client.receive_data(flight)
        finished = client.data_to_send()
        start = time.process_time()
        server.receive_data(finished)
        total += time.process_time() - start
        assert server.handshake_complete
    return total / rounds * 1e6


def record_throughput_mib_s(client_cfg: TLSConfig, server_cfg: TLSConfig, mib: int) -> tuple[float, float]:
    client, server = TLSClient(client_cfg), TLSServer(server_cfg)
    for _ in range(4):
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
    chunk = os.urandom(1 << 20)
    seal = open_ = 0.0
    for _ in range(mib):
        start = time.process_time()
        client.send_data(chunk)
        wire = client.data_to_send()
        seal += time.process_time() - start
        start = time.process_time()
        server.receive_data(wire)
        open_ += time.process_time() - start
    return mib / seal, mib / open_


def run(rounds: int = 300, mib: int = 128) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_dev_pki(Path(tmp))
        chain = CertificateChain.load(paths["server"], paths["server_key"])
        trust = load_trust_store(paths["ca"])
    server_cfg = TLSConfig(certificate_chain=chain, session_tickets=0)
    hybrid = TLSConfig(server_name="localhost", trust_store=trust)
    classical = TLSConfig(server_name="localhost", trust_store=trust, groups=(NamedGroup.x25519,))
    floor = crypto_floor_us(rounds)
    hybrid_us = server_handshake_us(hybrid, server_cfg, rounds)
    classical_us = server_handshake_us(classical, server_cfg, rounds)
    seal, open_ = record_throughput_mib_s(hybrid, server_cfg, mib)
    return {
        "crypto_floor_hybrid_server_us": round(floor, 1),
        "server_cpu_per_handshake_us": {"X25519MLKEM768": round(hybrid_us, 1), "X25519": round(classical_us, 1)},
        "hybrid_handshake_over_floor": round(hybrid_us / floor, 2),
        "records_seal_mib_s": round(seal, 1),
        "records_open_mib_s": round(open_, 1),
        "rounds": rounds,
        "mib": mib,
    }
