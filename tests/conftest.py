"""Shared fixtures: one development PKI for the whole session (helpers are in tests/tls_helpers.py)."""

from __future__ import annotations

import pytest
from cryptography import x509

from pqproxy.certs import write_dev_pki
from pqproxy.tls.certificates import CertificateChain
from tests.tls_helpers import DevPKI


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPKI:
    """ECDSA P-256: a CA, a server certificate for DNS localhost and a client certificate."""
    paths = write_dev_pki(tmp_path_factory.mktemp("dev-pki"), alg="ecdsa", names=("localhost",))
    return DevPKI(
        ca=x509.load_pem_x509_certificate(paths["ca"].read_bytes()),
        server_chain=CertificateChain.load(paths["server"], paths["server_key"]),
        client_chain=CertificateChain.load(paths["client"], paths["client_key"]),
    )
