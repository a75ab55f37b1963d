"""Interop with an independent TLS 1.3 stack: Node.js 26 (OpenSSL 3.5) against our engine, both directions.

Our side runs in-process on trio (TLSStream over real loopback sockets); Node runs as a subprocess through
tests/peers/node.py. Every test checks what the Node side reports (its record tap sees the negotiated group,
HelloRetryRequest, the peer's CertificateVerify scheme, alerts and KeyUpdates) as well as what our engine reports
(HandshakeComplete), and compares the application data by SHA-256.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.x509.oid import NameOID
from peers.node import Event, NodeServer, deterministic_bytes, node_binary, only, run_node_client

from pqproxy.certs import write_dev_pki
from pqproxy.proxy.tlsstream import TLSError, TLSStream
from pqproxy.tls.certificates import CertificateChain
from pqproxy.tls.client import TLSClient
from pqproxy.tls.codepoints import CipherSuite, NamedGroup
from pqproxy.tls.config import TLSConfig
from pqproxy.tls.events import HandshakeComplete, KeyUpdateReceived, SessionTicketReceived
from pqproxy.tls.groups import GROUPS
from pqproxy.tls.server import TLSServer

pytestmark = pytest.mark.interop

KIB = 1024
MIB = 1024 * KIB
HOST = "127.0.0.1"
STEP_TIMEOUT = 20.0  # one handshake + a little data, or one Node process run
BULK_TIMEOUT = 90.0  # 64 MiB each way


@pytest.fixture(scope="module", autouse=True)
def _node_present() -> None:
    node_binary()  # skips without Node, fails in CI


# --- certificates ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodePKI:
    """A dev PKI both as files (for Node) and as loaded objects (for our engine)."""

    alg: str
    paths: dict[str, Path]
    ca: x509.Certificate
    server_chain: CertificateChain
    client_chain: CertificateChain

    def file(self, name: str) -> str:
        return str(self.paths[name])


@pytest.fixture(scope="session")
def node_pki(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], NodePKI]:
    """A factory: the dev PKI for one key algorithm (ecdsa, ecdsa384, ed25519, rsa, mldsa65, ...), made once."""
    made: dict[str, NodePKI] = {}

    def get(alg: str = "ecdsa") -> NodePKI:
        if alg not in made:
            paths = write_dev_pki(tmp_path_factory.mktemp(f"pki-{alg}"), alg=alg, names=("localhost", HOST))
            made[alg] = NodePKI(
                alg,
                paths,
                x509.load_pem_x509_certificate(paths["ca"].read_bytes()),
                CertificateChain.load(paths["server"], paths["server_key"]),
                CertificateChain.load(paths["client"], paths["client_key"]),
            )
        return made[alg]

    return get


def our_server_config(pki: NodePKI, **kw: Any) -> TLSConfig:
    kw.setdefault("certificate_chain", pki.server_chain)
    return TLSConfig(**kw)


def our_client_config(pki: NodePKI, **kw: Any) -> TLSConfig:
    kw.setdefault("server_name", "localhost")
    kw.setdefault("trust_store", [pki.ca])
    return TLSConfig(**kw)


def node_client_config(port: int, pki: NodePKI, **kw: Any) -> dict[str, Any]:
    return {"port": port, "ca": pki.file("ca"), "servername": "localhost", **kw}


def node_server_config(pki: NodePKI, **kw: Any) -> dict[str, Any]:
    return {"cert": pki.file("server"), "key": pki.file("server_key"), **kw}


def common_name(certificate: x509.Certificate) -> str:
    (attribute,) = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attribute.value)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- our server: trio.serve_tcp + TLSStream, one record per accepted connection -----------------------------------


@dataclass
class ServedConnection:
    info: HandshakeComplete | None = None
    error: BaseException | None = None
    received_length: int = 0
    hash: Any = field(default_factory=hashlib.sha256)
    key_updated: bool = False
    other_events: list[Any] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def received_sha256(self) -> str:
        return str(self.hash.hexdigest())


class OurServer:
    """Echoes every byte back (optionally sending a KeyUpdate once `key_update_after` bytes came in), then, at the
    client's close_notify, sends its own and half-closes."""

    def __init__(self, config: TLSConfig, key_update_after: int | None = None) -> None:
        self.config = config
        self.key_update_after = key_update_after
        self.port = 0
        self.connections: list[ServedConnection] = []
        self._changed = trio.Event()

    async def handle(self, stream: trio.SocketStream) -> None:
        record = ServedConnection()
        self.connections.append(record)
        self._changed.set()
        tls = TLSStream(stream, TLSServer(self.config))
        try:
            with trio.fail_after(BULK_TIMEOUT):
                record.info = await tls.do_handshake()
                while True:
                    data = await tls.receive_some()
                    if not data:
                        break
                    record.hash.update(data)
                    record.received_length += len(data)
                    if (
                        self.key_update_after is not None
                        and not record.key_updated
                        and record.received_length >= self.key_update_after
                    ):
                        tls.conn.update_keys(request_peer_update=True)  # goes out with the echo below
                        record.key_updated = True
                    await tls.send_all(data)
                await tls.send_eof()
        except (TLSError, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            record.error = exc
        finally:
            record.other_events = list(tls.other_events)
            record.done.set()
            with trio.CancelScope(shield=True):
                await tls.aclose()

    async def connection(self, index: int, timeout: float = STEP_TIMEOUT) -> ServedConnection:
        """The `index`-th accepted connection, once it has finished."""
        with trio.fail_after(timeout):
            while len(self.connections) <= index:
                self._changed = trio.Event()
                await self._changed.wait()
            record = self.connections[index]
            await record.done.wait()
        return record


@asynccontextmanager
async def our_server(config: TLSConfig, **kw: Any) -> AsyncIterator[OurServer]:
    server = OurServer(config, **kw)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, server.handle, 0, host=HOST))
        server.port = listeners[0].socket.getsockname()[1]
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


async def node_client(config: dict[str, Any], timeout: float = STEP_TIMEOUT) -> list[Event]:
    """Run the Node client in a worker thread (its own timeout bounds it) while our server serves it."""
    return await trio.to_thread.run_sync(functools.partial(run_node_client, config, timeout=timeout))


# --- our client ----------------------------------------------------------------------------------------------


@dataclass
class ClientRun:
    info: HandshakeComplete
    received_sha256: str
    received_length: int
    other_events: list[Any]


@asynccontextmanager
async def our_tls_client(port: int, config: TLSConfig) -> AsyncIterator[TLSStream]:
    """A connected TLSStream after its handshake; the socket is closed on exit."""
    with trio.fail_after(STEP_TIMEOUT):
        stream = await trio.open_tcp_stream(HOST, port)
    tls = TLSStream(stream, TLSClient(config))
    try:
        with trio.fail_after(STEP_TIMEOUT):
            await tls.do_handshake()
        yield tls
    finally:
        with trio.CancelScope(shield=True):
            await tls.aclose()


async def exchange(tls: TLSStream, payload: bytes, chunk: int = MIB, timeout: float = STEP_TIMEOUT) -> tuple[str, int]:
    """Send `payload` in `chunk`-sized writes, then close_notify + half-close, while reading to EOF; returns the
    (sha256, length) of what came back."""
    received = hashlib.sha256()
    length = 0
    view = memoryview(payload)

    async def sender() -> None:
        for offset in range(0, len(payload), chunk):
            await tls.send_all(view[offset : offset + chunk])
        await tls.send_eof()

    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            while True:
                data = await tls.receive_some()
                if not data:
                    break
                received.update(data)
                length += len(data)
    assert not tls.truncated, "the peer ended the TCP stream without close_notify"
    return received.hexdigest(), length


async def receive_exactly(tls: TLSStream, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    with trio.fail_after(STEP_TIMEOUT):
        while got < n:
            data = await tls.receive_some()
            assert data, f"EOF after {got} of {n} bytes"
            parts.append(data)
            got += len(data)
    data = b"".join(parts)
    assert len(data) == n
    return data


async def run_our_client(port: int, config: TLSConfig, payload: bytes, timeout: float = STEP_TIMEOUT) -> ClientRun:
    async with our_tls_client(port, config) as tls:
        digest, length = await exchange(tls, payload, timeout=timeout)
        assert tls.info is not None
        return ClientRun(tls.info, digest, length, list(tls.other_events))


# --- checks of the Node side's report ---------------------------------------------------------------------------


def assert_clean(events: list[Event]) -> None:
    problems = only(events, "error") + only(events, "tap_error")
    assert not problems, problems


def assert_node_echo_ok(events: list[Event], sent: bytes | None = None, connections: int = 1) -> None:
    """The Node client got back exactly what it sent, on every connection."""
    assert_clean(events)
    results = only(events, "result")
    assert len(results) == connections, events
    for result in results:
        assert result["length"] == result["sent_length"]
        assert result["sha256"] == result["sent_sha256"]
        if sent is not None:
            assert result["sent_sha256"] == sha256(sent)


def wait_node_server(server: NodeServer, conn: int = 1) -> tuple[Event, Event]:
    """(handshake, result) events of the Node server's connection `conn`, once it has closed."""
    handshake = server.wait_event("handshake", timeout=STEP_TIMEOUT, conn=conn)
    result = server.wait_event("result", timeout=STEP_TIMEOUT, conn=conn)
    server.wait_event("closed", timeout=STEP_TIMEOUT, conn=conn)
    problems = [e for e in server.events("error") + server.events("tap_error") if e.get("conn") == conn]
    assert not problems, problems
    return handshake, result


def assert_served_ok(record: ServedConnection, sent: bytes) -> HandshakeComplete:
    assert record.error is None, record.error
    assert record.info is not None
    assert record.received_length == len(sent)
    assert record.received_sha256 == sha256(sent)
    return record.info


# --- 1, 2: every group Node 26 and we both implement -------------------------------------------------------------


@dataclass(frozen=True)
class GroupCase:
    code: int
    node: str  # the name OpenSSL's group list takes
    name: str  # IANA name: what our engine and the Node tap report

    def __str__(self) -> str:
        return self.name


GROUP_CASES = [
    GroupCase(NamedGroup.X25519MLKEM768, "X25519MLKEM768", "X25519MLKEM768"),
    GroupCase(NamedGroup.SecP256r1MLKEM768, "SecP256r1MLKEM768", "SecP256r1MLKEM768"),
    GroupCase(NamedGroup.SecP384r1MLKEM1024, "SecP384r1MLKEM1024", "SecP384r1MLKEM1024"),
    GroupCase(NamedGroup.MLKEM768, "MLKEM768", "MLKEM768"),
    GroupCase(NamedGroup.MLKEM1024, "MLKEM1024", "MLKEM1024"),
    GroupCase(NamedGroup.x25519, "X25519", "X25519"),
    GroupCase(NamedGroup.secp256r1, "P-256", "secp256r1"),
    GroupCase(NamedGroup.secp384r1, "P-384", "secp384r1"),
    GroupCase(NamedGroup.secp521r1, "P-521", "secp521r1"),
    GroupCase(NamedGroup.x448, "X448", "X448"),
]


@pytest.mark.parametrize("group", GROUP_CASES, ids=str)
async def test_node_client_to_our_server_group(node_pki: Callable[[str], NodePKI], group: GroupCase) -> None:
    pki = node_pki("ecdsa")
    payload = deterministic_bytes(10_000)
    async with our_server(our_server_config(pki)) as server:
        events = await node_client(node_client_config(server.port, pki, groups=group.node, send=len(payload)))
        record = await server.connection(0)
    assert_node_echo_ok(events, payload)
    (hs,) = only(events, "handshake")
    assert hs["protocol"] == "TLSv1.3"
    assert hs["group"] == group.name
    assert hs["hrr"] is False
    assert hs["clientHello"]["keyShares"] == [{"group": group.name, "length": GROUPS[group.code].client_share_len}]
    assert hs["serverKeyShareLength"] == GROUPS[group.code].server_share_len
    assert hs["authorized"] is True
    info = assert_served_ok(record, payload)
    assert info.group == group.name
    assert info.hello_retry is False
    assert info.server_name == "localhost"
    assert info.resumed is False


@pytest.mark.parametrize("group", GROUP_CASES, ids=str)
async def test_our_client_to_node_server_group(node_pki: Callable[[str], NodePKI], group: GroupCase) -> None:
    pki = node_pki("ecdsa")
    payload = deterministic_bytes(10_000)
    with NodeServer(node_server_config(pki, groups=group.node)) as node:
        run = await run_our_client(node.port, our_client_config(pki, groups=(group.code,)), payload)
        hs, result = wait_node_server(node)
    assert run.info.group == group.name
    assert run.info.hello_retry is False
    assert common_name(run.info.peer_certificate) == "localhost"
    assert (run.received_sha256, run.received_length) == (sha256(payload), len(payload))
    assert hs["group"] == group.name
    assert hs["hrr"] is False
    assert hs["servername"] == "localhost"
    assert hs["clientHello"]["keyShares"] == [{"group": group.name, "length": GROUPS[group.code].client_share_len}]
    assert hs["serverKeyShareLength"] == GROUPS[group.code].server_share_len
    assert (result["sha256"], result["length"]) == (sha256(payload), len(payload))


# --- 3: every cipher suite, both directions -----------------------------------------------------------------------

SUITES = [
    CipherSuite.TLS_AES_128_GCM_SHA256,
    CipherSuite.TLS_AES_256_GCM_SHA384,
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256,
]


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
async def test_node_client_to_our_server_cipher_suite(node_pki: Callable[[str], NodePKI], suite: CipherSuite) -> None:
    pki = node_pki("ecdsa")
    payload = deterministic_bytes(100_000)
    async with our_server(our_server_config(pki)) as server:
        events = await node_client(node_client_config(server.port, pki, ciphers=suite.name, send=len(payload)))
        record = await server.connection(0)
    assert_node_echo_ok(events, payload)
    (hs,) = only(events, "handshake")
    assert hs["cipher"] == suite.name
    assert hs["clientHello"]["cipherSuites"] == [suite.name]
    assert assert_served_ok(record, payload).cipher_suite == suite.name


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
async def test_our_client_to_node_server_cipher_suite(node_pki: Callable[[str], NodePKI], suite: CipherSuite) -> None:
    pki = node_pki("ecdsa")
    payload = deterministic_bytes(100_000)
    with NodeServer(node_server_config(pki, ciphers=suite.name)) as node:
        run = await run_our_client(node.port, our_client_config(pki, cipher_suites=(suite,)), payload)
        hs, result = wait_node_server(node)
    assert run.info.cipher_suite == suite.name
    assert run.received_sha256 == sha256(payload)
    assert hs["cipher"] == suite.name
    assert hs["clientHello"]["cipherSuites"] == [suite.name]
    assert result["sha256"] == sha256(payload)


# --- 4: HelloRetryRequest into X25519MLKEM768, both directions ---------------------------------------------------


async def test_node_client_classical_share_our_server_retries_into_hybrid(
    node_pki: Callable[[str], NodePKI],
) -> None:
    pki = node_pki("ecdsa")
    payload = deterministic_bytes(5000)
    async with our_server(our_server_config(pki)) as server:
        # OpenSSL sends a key share only for the first group of this list (no "*" markers).
        events = await node_client(node_client_config(server.port, pki, groups="X25519:X25519MLKEM768", send=5000))
        record = await server.connection(0)
    assert_node_echo_ok(events, payload)
    (hs,) = only(events, "handshake")
    assert [s["group"] for s in hs["clientHello"]["keyShares"]] == ["X25519"]
    assert hs["clientHello"]["groups"] == ["X25519", "X25519MLKEM768"]
    assert hs["hrr"] is True
    assert hs["hrrGroup"] == "X25519MLKEM768"
    assert hs["clientHelloRetry"]["keyShares"] == [{"group": "X25519MLKEM768", "length": 1216}]
    assert hs["group"] == "X25519MLKEM768"
    info = assert_served_ok(record, payload)
    assert info.hello_retry is True
    assert info.group == "X25519MLKEM768"


async def test_our_client_classical_share_node_server_retries_into_hybrid(
    node_pki: Callable[[str], NodePKI],
) -> None:
    pki = node_pki("ecdsa")
    payload = deterministic_bytes(5000)
    config = our_client_config(
        pki, groups=(NamedGroup.X25519MLKEM768, NamedGroup.x25519), key_share_groups=(NamedGroup.x25519,)
    )
    # Two OpenSSL preference tuples: X25519MLKEM768 first, even though that costs a HelloRetryRequest.
    with NodeServer(node_server_config(pki, groups="X25519MLKEM768/X25519")) as node:
        run = await run_our_client(node.port, config, payload)
        hs, result = wait_node_server(node)
    assert run.info.hello_retry is True
    assert run.info.group == "X25519MLKEM768"
    assert run.received_sha256 == sha256(payload)
    assert [s["group"] for s in hs["clientHello"]["keyShares"]] == ["X25519"]
    assert hs["hrr"] is True
    assert hs["hrrGroup"] == "X25519MLKEM768"
    assert hs["clientHelloRetry"]["keyShares"] == [{"group": "X25519MLKEM768", "length": 1216}]
    assert hs["group"] == "X25519MLKEM768"
    assert result["sha256"] == sha256(payload)


# --- 5: resumption, both directions -------------------------------------------------------------------------------


async def test_node_client_resumes_with_our_server(node_pki: Callable[[str], NodePKI]) -> None:
    pki = node_pki("ecdsa")
    payload = deterministic_bytes(3000)
    async with our_server(our_server_config(pki)) as server:
        events = await node_client(node_client_config(server.port, pki, reconnect=1, send=len(payload)))
        first = await server.connection(0)
        second = await server.connection(1)
    assert_node_echo_ok(events, payload, connections=2)
    hs1, hs2 = only(events, "handshake")
    assert hs1["sessionReused"] is False
    assert hs2["sessionReused"] is True
    assert hs2["clientHello"]["psk"] is True
    assert hs2["pskAccepted"] is True
    assert hs2["peerCertificate"] is None  # no Certificate on a resumed handshake
    assert hs2["group"] == "X25519MLKEM768"  # psk_dhe_ke: the resumed session still has a fresh hybrid exchange
    info1 = assert_served_ok(first, payload)
    info2 = assert_served_ok(second, payload)
    assert (info1.resumed, info1.psk) == (False, None)
    assert (info2.resumed, info2.psk) == (True, "resumption")
    assert info2.group == "X25519MLKEM768"
    assert info2.signature_scheme is None


async def test_our_client_resumes_with_node_server(node_pki: Callable[[str], NodePKI]) -> None:
    pki = node_pki("ecdsa")
    payload = deterministic_bytes(3000)
    with NodeServer(node_server_config(pki)) as node:
        first = await run_our_client(node.port, our_client_config(pki), payload)
        tickets = [e.ticket for e in first.other_events if isinstance(e, SessionTicketReceived)]
        assert tickets, first.other_events
        second = await run_our_client(node.port, our_client_config(pki, resume_session=tickets[0]), payload)
        hs1, result1 = wait_node_server(node, conn=1)
        hs2, result2 = wait_node_server(node, conn=2)
    assert (first.info.resumed, first.info.psk) == (False, None)
    assert (second.info.resumed, second.info.psk) == (True, "resumption")
    assert second.info.group == "X25519MLKEM768"
    assert second.info.peer_certificate is None
    assert first.received_sha256 == second.received_sha256 == sha256(payload)
    assert hs1["sessionReused"] is False
    assert hs2["sessionReused"] is True
    assert hs2["clientHello"]["psk"] is True
    assert hs2["pskAccepted"] is True
    assert result1["sha256"] == result2["sha256"] == sha256(payload)


# --- 6: mutual TLS, both directions -------------------------------------------------------------------------------


async def test_node_client_certificate_accepted_by_our_server(node_pki: Callable[[str], NodePKI]) -> None:
    pki = node_pki("ecdsa")
    payload = deterministic_bytes(2000)
    config = our_server_config(pki, trust_store=[pki.ca], require_client_certificate=True)
    async with our_server(config) as server:
        events = await node_client(
            node_client_config(server.port, pki, cert=pki.file("client"), key=pki.file("client_key"), send=len(payload))
        )
        record = await server.connection(0)
    assert_node_echo_ok(events, payload)
    (hs,) = only(events, "handshake")
    assert hs["certRequested"] is True
    assert hs["authorized"] is True
    info = assert_served_ok(record, payload)
    assert info.peer_certificate is not None
    assert info.peer_certificate.subject == pki.client_chain.leaf.subject
    assert common_name(info.peer_certificate) == "client"


async def test_node_client_without_certificate_gets_certificate_required(
    node_pki: Callable[[str], NodePKI],
) -> None:
    pki = node_pki("ecdsa")
    config = our_server_config(pki, trust_store=[pki.ca], require_client_certificate=True)
    async with our_server(config) as server:
        events = await node_client(node_client_config(server.port, pki, send=100))
        record = await server.connection(0)
    assert isinstance(record.error, TLSError), record.error
    assert record.error.alert == "certificate_required"
    assert record.error.sent is True
    assert record.info is None
    errors = only(events, "error")
    assert errors, events
    assert errors[0]["alert"] == 116
    assert errors[0]["alertName"] == "certificate_required"
    received = [e for e in only(events, "alert") if e["direction"] == "received"]
    assert [(e["level"], e["description"]) for e in received] == [(2, 116)]
    assert not only(events, "result") or only(events, "result")[0]["length"] == 0


async def test_our_client_certificate_accepted_by_node_server(node_pki: Callable[[str], NodePKI]) -> None:
    pki = node_pki("ecdsa")
    payload = deterministic_bytes(2000)
    node_config = node_server_config(pki, ca=pki.file("ca"), requestCert=True, rejectUnauthorized=True)
    with NodeServer(node_config) as node:
        run = await run_our_client(node.port, our_client_config(pki, certificate_chain=pki.client_chain), payload)
        hs, result = wait_node_server(node)
    assert run.received_sha256 == sha256(payload)
    assert hs["authorized"] is True
    assert hs["authorizationError"] is None
    assert hs["peerCertificate"]["subjectCN"] == "client"
    assert hs["peerCertificate"]["issuerCN"] == common_name(pki.ca)
    assert hs["peerSigalg"] == "ecdsa_secp256r1_sha256"  # our client's CertificateVerify
    assert result["sha256"] == sha256(payload)


async def test_our_client_without_certificate_refused_by_node_server(node_pki: Callable[[str], NodePKI]) -> None:
    pki = node_pki("ecdsa")
    node_config = node_server_config(pki, ca=pki.file("ca"), requestCert=True, rejectUnauthorized=True)
    with NodeServer(node_config) as node:
        async with our_tls_client(node.port, our_client_config(pki)) as tls:
            # TLS 1.3: our handshake is complete once our (empty) Certificate and Finished are out; the refusal
            # arrives afterwards.
            with pytest.raises(TLSError) as caught, trio.fail_after(STEP_TIMEOUT):
                await tls.receive_some()
        node.wait_event("closed", timeout=STEP_TIMEOUT)
        node_error = node.wait_event("error", timeout=STEP_TIMEOUT)
        sent = [e for e in node.events("alert") if e["direction"] == "sent"]
    assert caught.value.alert == "certificate_required"
    assert caught.value.sent is False
    assert node_error["phase"] == "handshake"
    assert [e["description"] for e in sent] == [116]


# --- 7: KeyUpdate, both directions --------------------------------------------------------------------------------


async def test_our_client_key_update_with_node_server(node_pki: Callable[[str], NodePKI]) -> None:
    pki = node_pki("ecdsa")
    parts = [deterministic_bytes(64 * KIB, seed=f"part{i}") for i in range(3)]
    with NodeServer(node_server_config(pki)) as node:
        async with our_tls_client(node.port, our_client_config(pki)) as tls:
            await tls.send_all(parts[0])
            assert await receive_exactly(tls, len(parts[0])) == parts[0]
            tls.conn.update_keys(request_peer_update=True)
            await tls.send_all(parts[1])  # the KeyUpdate goes out first, then data under the new key
            assert await receive_exactly(tls, len(parts[1])) == parts[1]  # Node answered before echoing
            updates = [e for e in tls.other_events if isinstance(e, KeyUpdateReceived)]
            assert updates == [KeyUpdateReceived(update_requested=False)]
            digest, length = await exchange(tls, parts[2])
        hs, result = wait_node_server(node)
    assert (digest, length) == (sha256(parts[2]), len(parts[2]))
    assert hs["group"] == "X25519MLKEM768"
    assert result["sha256"] == sha256(b"".join(parts))
    node_updates = [(e["sender"], e["direction"], e["requestUpdate"]) for e in node.events("keyupdate")]
    assert node_updates == [("client", "received", True), ("server", "sent", False)]


async def test_our_server_key_update_with_node_client(node_pki: Callable[[str], NodePKI]) -> None:
    pki = node_pki("ecdsa")
    chunk = 64 * KIB
    payload = deterministic_bytes(4 * chunk)
    async with our_server(our_server_config(pki), key_update_after=chunk) as server:
        # Ping-pong: Node writes each chunk after the previous one came back, so chunks 2-4 go out after Node has
        # read our KeyUpdate (sent just before the end of chunk 1's echo) and answered it.
        events = await node_client(node_client_config(server.port, pki, send=len(payload), chunk=chunk))
        record = await server.connection(0)
    assert_node_echo_ok(events, payload)
    updates = [(e["sender"], e["direction"], e["requestUpdate"]) for e in only(events, "keyupdate")]
    assert updates == [("server", "received", True), ("client", "sent", False)]
    assert_served_ok(record, payload)
    assert record.key_updated
    assert [e for e in record.other_events if isinstance(e, KeyUpdateReceived)] == [
        KeyUpdateReceived(update_requested=False)
    ]


# --- 8: ALPN ------------------------------------------------------------------------------------------------------


async def test_node_client_alpn_our_server_preference(node_pki: Callable[[str], NodePKI]) -> None:
    pki = node_pki("ecdsa")
    payload = deterministic_bytes(1000)
    config = our_server_config(pki, alpn_protocols=(b"http/1.1", b"h2"))
    async with our_server(config) as server:
        events = await node_client(node_client_config(server.port, pki, alpn=["h2", "http/1.1"], send=1000))
        record = await server.connection(0)
    assert_node_echo_ok(events, payload)
    (hs,) = only(events, "handshake")
    assert hs["clientHello"]["alpn"] == ["h2", "http/1.1"]
    assert hs["alpn"] == "http/1.1"
    assert assert_served_ok(record, payload).alpn_protocol == "http/1.1"


async def test_our_client_alpn_node_server_preference(node_pki: Callable[[str], NodePKI]) -> None:
    pki = node_pki("ecdsa")
    payload = deterministic_bytes(1000)
    with NodeServer(node_server_config(pki, alpn=["http/1.1", "h2"])) as node:
        run = await run_our_client(node.port, our_client_config(pki, alpn_protocols=(b"h2", b"http/1.1")), payload)
        hs, result = wait_node_server(node)
    assert run.info.alpn_protocol == "http/1.1"
    assert run.received_sha256 == sha256(payload)
    assert hs["clientHello"]["alpn"] == ["h2", "http/1.1"]
    assert hs["alpn"] == "http/1.1"
    assert result["sha256"] == sha256(payload)


async def test_node_client_alpn_no_overlap_our_server_refuses(node_pki: Callable[[str], NodePKI]) -> None:
    pki = node_pki("ecdsa")
    async with our_server(our_server_config(pki, alpn_protocols=(b"http/1.1",))) as server:
        events = await node_client(node_client_config(server.port, pki, alpn=["h2"], send=100))
        record = await server.connection(0)
    assert isinstance(record.error, TLSError), record.error
    assert record.error.alert == "no_application_protocol"
    assert record.error.sent is True
    assert not only(events, "handshake")
    (error,) = only(events, "error")
    assert error["phase"] == "handshake"
    assert error["alert"] == 120
    assert error["alertName"] == "no_application_protocol"


# --- 9: 64 MiB each way -------------------------------------------------------------------------------------------

BULK = 64 * MIB


@pytest.fixture(scope="module")
def bulk_payload(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    data = os.urandom(BULK)
    path = tmp_path_factory.mktemp("bulk") / "payload.bin"
    path.write_bytes(data)
    return path, data


async def test_node_client_64mib_echo_through_our_server(
    node_pki: Callable[[str], NodePKI], bulk_payload: tuple[Path, bytes]
) -> None:
    pki = node_pki("ecdsa")
    path, data = bulk_payload
    async with our_server(our_server_config(pki)) as server:
        events = await node_client(node_client_config(server.port, pki, sendFile=str(path)), timeout=BULK_TIMEOUT)
        record = await server.connection(0, timeout=BULK_TIMEOUT)
    assert_node_echo_ok(events, data)
    (result,) = only(events, "result")
    assert result["length"] == BULK
    assert_served_ok(record, data)


async def test_our_client_64mib_echo_through_node_server(
    node_pki: Callable[[str], NodePKI], bulk_payload: tuple[Path, bytes]
) -> None:
    pki = node_pki("ecdsa")
    _, data = bulk_payload
    with NodeServer(node_server_config(pki)) as node:
        async with our_tls_client(node.port, our_client_config(pki)) as tls:
            digest, length = await exchange(tls, data, chunk=MIB, timeout=BULK_TIMEOUT)
        hs, result = wait_node_server(node)
    assert (digest, length) == (sha256(data), BULK)
    assert hs["group"] == "X25519MLKEM768"
    assert (result["sha256"], result["length"]) == (sha256(data), BULK)


# --- 10: signature algorithms -------------------------------------------------------------------------------------

SIGNATURE_CASES = [
    ("ed25519", "ed25519"),
    ("rsa", "rsa_pss_rsae_sha256"),
    ("ecdsa384", "ecdsa_secp384r1_sha384"),
    ("mldsa65", "mldsa65"),
]


@pytest.mark.parametrize(("alg", "scheme"), SIGNATURE_CASES, ids=[a for a, _ in SIGNATURE_CASES])
async def test_node_client_verifies_our_server_signature(
    node_pki: Callable[[str], NodePKI], alg: str, scheme: str
) -> None:
    pki = node_pki(alg)
    payload = deterministic_bytes(1000)
    async with our_server(our_server_config(pki)) as server:
        events = await node_client(node_client_config(server.port, pki, send=len(payload)))
        record = await server.connection(0)
    assert_node_echo_ok(events, payload)
    (hs,) = only(events, "handshake")
    assert hs["authorized"] is True
    assert hs["peerSigalg"] == scheme
    assert hs["peerCertificate"]["subjectCN"] == "localhost"
    assert assert_served_ok(record, payload).signature_scheme == scheme


@pytest.mark.parametrize(("alg", "scheme"), SIGNATURE_CASES, ids=[a for a, _ in SIGNATURE_CASES])
async def test_our_client_verifies_node_server_signature(
    node_pki: Callable[[str], NodePKI], alg: str, scheme: str
) -> None:
    pki = node_pki(alg)
    payload = deterministic_bytes(1000)
    with NodeServer(node_server_config(pki)) as node:
        run = await run_our_client(node.port, our_client_config(pki), payload)
        hs, result = wait_node_server(node)
    assert run.info.signature_scheme == scheme
    assert run.info.peer_certificate.subject == pki.server_chain.leaf.subject
    assert run.received_sha256 == result["sha256"] == sha256(payload)
    assert scheme in hs["clientHello"]["sigalgs"]
