"""The TLS 1.2 fallback: classifying first bytes, and serving TLS 1.2-only clients through OpenSSL.

A small trio server reads the first bytes of each connection, lets the engine read the ClientHello as the sidecar
does (``TLSServer(defer_client_hello=True)``: ``is_tls12_only`` below) and serves one without TLS 1.3 with
``LegacyTLSStream`` (an echo through two concurrent pumps, as the sidecar splices). The clients are
Python's ssl (a TLS 1.2-only context) and Node.js 26 (OpenSSL 3.5) with maxVersion TLSv1.2.
"""

from __future__ import annotations

import functools
import hashlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from pqproxy.certs import write_dev_pki
from pqproxy.proxy.legacy import (
    MAX_INITIAL_BYTES,
    LegacyInfo,
    LegacyTLSError,
    LegacyTLSStream,
    legacy_context,
)
from pqproxy.proxy.tlsstream import TLSError
from pqproxy.tls.client import TLSClient
from pqproxy.tls.codepoints import TLS12, TLS13, ContentType, ExtensionType
from pqproxy.tls.config import TLSConfig
from pqproxy.tls.events import AlertReceived, AlertSent, ClientHelloReceived
from pqproxy.tls.extensions import SupportedVersionsClient, ext
from pqproxy.tls.messages import ClientHello
from pqproxy.tls.record import split_into_records
from pqproxy.tls.server import TLSServer
from tests.peers.node import deterministic_bytes, node_binary, only, run_node_client
from tests.tls_helpers import DevPKI, client_config, client_hello_of, hello_record, record, without_extension

HOST = "127.0.0.1"
STEP = 20.0
KIB = 1024


@pytest.fixture(scope="session")
def pki_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_dev_pki(tmp_path_factory.mktemp("legacy-pki"), alg="ecdsa", names=("localhost", HOST))


@pytest.fixture(scope="session")
def pki384_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ECDSA P-384 certificates: in TLS 1.2 the client's supported_groups also bounds the curve of an ECDSA
    certificate (RFC 8422 §5.1), so a client that offers only P-384 needs a P-384 server certificate."""
    return write_dev_pki(tmp_path_factory.mktemp("legacy-pki384"), alg="ecdsa384", names=("localhost", HOST))


def _files(pki_files: dict[str, Path], *names: str) -> list[str]:
    return [str(pki_files[n]) for n in names]


# --- ClientHellos to classify --------------------------------------------------------------------------------


def python_client_hello(max_version: ssl.TLSVersion) -> bytes:
    """The first flight of Python's ssl client (OpenSSL 3) capped at `max_version`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = max_version
    obj = ctx.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


_CLASSIFIER_CONFIG = TLSConfig(session_tickets=0)


def is_tls12_only(data: bytes) -> bool | None:
    """What the sidecar's edge concludes from the first bytes of a connection: None, read more; True, a
    well-formed ClientHello without TLS 1.3 (OpenSSL serves it); False, anything else (our engine answers it, and
    refuses what is malformed with the right alert)."""
    engine = TLSServer(_CLASSIFIER_CONFIG, defer_client_hello=True)
    for event in engine.receive_data(data):
        if isinstance(event, ClientHelloReceived):
            return not event.info.offers_tls13
        if isinstance(event, AlertSent | AlertReceived):
            return False
    return None


def tls12_hello_size(data: bytes) -> int | None:
    engine = TLSServer(_CLASSIFIER_CONFIG, defer_client_hello=True)
    return next((e.info.size for e in engine.receive_data(data) if isinstance(e, ClientHelloReceived)), None)


def engine_client_hello(pki: DevPKI) -> bytes:
    return TLSClient(client_config(pki)).data_to_send()


def test_python_tls12_hello_is_legacy() -> None:
    hello = python_client_hello(ssl.TLSVersion.TLSv1_2)
    assert is_tls12_only(hello) is True
    assert tls12_hello_size(hello) == len(hello) - 5
    for cut in range(len(hello)):
        assert is_tls12_only(hello[:cut]) is None, cut


def test_python_tls13_hello_is_not_legacy() -> None:
    assert is_tls12_only(python_client_hello(ssl.TLSVersion.TLSv1_3)) is False


def test_our_engine_hello_is_not_legacy(pki: DevPKI) -> None:
    data = engine_client_hello(pki)
    assert is_tls12_only(data) is False
    assert is_tls12_only(data + b"trailing bytes do not matter") is False
    for cut in range(0, len(data), 7):
        assert is_tls12_only(data[:cut]) is None, cut
    hello, _ = client_hello_of(TLSClient(client_config(pki)))
    split = hello_record(hello, [1, 3, 50, 200])  # a ClientHello spread over five records
    assert is_tls12_only(split) is False
    assert is_tls12_only(split[:-1]) is None


def _variant(pki: DevPKI, versions: list[int] | None, legacy_version: int = TLS12) -> bytes:
    hello, _ = client_hello_of(TLSClient(client_config(pki)))
    exts = without_extension(hello.extensions, ExtensionType.supported_versions)
    if versions is not None:
        exts.append(ext(ExtensionType.supported_versions, SupportedVersionsClient(versions)))
    hello.extensions = exts
    hello.legacy_version = legacy_version
    return hello_record(hello)


def test_supported_versions_decides(pki: DevPKI) -> None:
    assert is_tls12_only(_variant(pki, None)) is True
    assert is_tls12_only(_variant(pki, [TLS12])) is True
    assert is_tls12_only(_variant(pki, [0x0A0A, TLS12, 0x0302])) is True  # GREASE is not 1.3
    assert is_tls12_only(_variant(pki, [TLS13, TLS12])) is False
    assert is_tls12_only(_variant(pki, [0x0A0A, TLS13])) is False
    # A TLS 1.0/1.1-only client is handed to OpenSSL too, which answers protocol_version.
    assert is_tls12_only(_variant(pki, None, legacy_version=0x0301)) is True


def test_no_extensions_at_all() -> None:
    hello = ClientHello(random=bytes(32), cipher_suites=[0xC02B], extensions=[])
    body = hello.encode_body()
    assert body.endswith(b"\x00\x00")  # an empty extensions block; TLS 1.2 also allows none
    no_block = bytes((1,)) + (len(body) - 2).to_bytes(3, "big") + body[:-2]
    assert is_tls12_only(split_into_records(ContentType.handshake, no_block)) is True


GARBAGE = {
    "http": b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
    "sslv2 hello": bytes.fromhex("802b0103010012000000100700c0030080010080060040040080020080") + bytes(16),
    "alert first": record(ContentType.alert, b"\x02\x28"),
    "ccs first": record(ContentType.change_cipher_spec, b"\x01"),
    "server hello type": record(ContentType.handshake, b"\x02\x00\x00\x04" + bytes(4)),
    "empty handshake record": record(ContentType.handshake, b""),
    "record too long": b"\x16\x03\x01\xff\xff",
    "hello too long": record(ContentType.handshake, b"\x01\x03\x00\x00"),  # 192 KiB: over the bound
    "malformed hello body": record(ContentType.handshake, b"\x01\x00\x00\x04\x03\x03\x00\x00"),
    "unknown content type": b"\x63\x03\x03\x00\x01\x00",
    "handshake then alert": record(ContentType.handshake, b"\x01\x00\x00\x30") + record(ContentType.alert, b"\x02\x28"),
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_is_not_legacy(name: str) -> None:
    assert is_tls12_only(GARBAGE[name]) is False


def test_malformed_supported_versions(pki: DevPKI) -> None:
    hello, _ = client_hello_of(TLSClient(client_config(pki)))
    hello.extensions = without_extension(hello.extensions, ExtensionType.supported_versions)
    hello.extensions.append(ext(ExtensionType.supported_versions, b"\x03\x03\x04"))  # odd length
    assert is_tls12_only(hello_record(hello)) is False


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(blob: bytes) -> None:
    assert is_tls12_only(blob) in (None, True, False)
    assert is_tls12_only(b"\x16\x03\x01" + blob) in (None, True, False)


# --- the context ---------------------------------------------------------------------------------------------


def test_legacy_context(pki_files: dict[str, Path]) -> None:
    ctx = legacy_context(*_files(pki_files, "server", "server_key"))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2 and ctx.maximum_version == ssl.TLSVersion.TLSv1_2
    for option in (ssl.OP_NO_COMPRESSION, ssl.OP_NO_RENEGOTIATION, ssl.OP_NO_TICKET, ssl.OP_CIPHER_SERVER_PREFERENCE):
        assert ctx.options & option
    tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    for cipher in tls12:
        assert cipher["kea"] == "kx-ecdhe" and cipher["aead"], cipher["name"]
    assert ctx.verify_mode == ssl.CERT_NONE
    mtls = legacy_context(*_files(pki_files, "server", "server_key", "ca"))
    assert mtls.verify_mode == ssl.CERT_REQUIRED


def test_error_type_and_bounds(pki_files: dict[str, Path]) -> None:
    assert issubclass(LegacyTLSError, TLSError)
    ctx = legacy_context(*_files(pki_files, "server", "server_key"))
    a, _b = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError):
        LegacyTLSStream(a, ctx, bytes(MAX_INITIAL_BYTES + 1))


# --- a legacy echo server ------------------------------------------------------------------------------------


@dataclass
class Served:
    classified: bool | None = None
    info: LegacyInfo | None = None
    error: BaseException | None = None
    received: int = 0
    truncated: bool = False
    done: trio.Event = field(default_factory=trio.Event)


class LegacyEchoServer:
    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.port = 0
        self.connections: list[Served] = []
        self._changed = trio.Event()

    async def handle(self, stream: trio.SocketStream) -> None:
        served = Served()
        self.connections.append(served)
        self._changed.set()
        try:
            with trio.fail_after(STEP):
                first = b""
                while (verdict := is_tls12_only(first)) is None:
                    data = await stream.receive_some(64 * KIB)
                    if not data:
                        raise EOFError("EOF before a whole ClientHello")
                    first += data
            served.classified = verdict
            if not verdict:
                return
            tls = LegacyTLSStream(stream, self.context, first, tls12_hello_size(first))
            with trio.fail_after(STEP * 3):
                served.info = await tls.do_handshake()
                await self._echo(tls, served)
            served.truncated = tls.truncated
        except (TLSError, EOFError, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            served.error = exc
        finally:
            served.done.set()
            with trio.CancelScope(shield=True):
                await stream.aclose()

    @staticmethod
    async def _echo(tls: LegacyTLSStream, served: Served) -> None:
        """Receive and send in two tasks at once (as the sidecar's pumps do), then pass the EOF on."""
        send_channel, receive_channel = trio.open_memory_channel[bytes](4)

        async def reader() -> None:
            async with send_channel:
                while data := await tls.receive_some():
                    served.received += len(data)
                    await send_channel.send(data)

        async def writer() -> None:
            async with receive_channel:
                async for data in receive_channel:
                    await tls.send_all(data)
            await tls.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            nursery.start_soon(writer)

    async def connection(self, index: int = 0) -> Served:
        with trio.fail_after(STEP * 3):
            while len(self.connections) <= index:
                self._changed = trio.Event()
                await self._changed.wait()
            await self.connections[index].done.wait()
        return self.connections[index]


@asynccontextmanager
async def legacy_server(context: ssl.SSLContext) -> AsyncIterator[LegacyEchoServer]:
    server = LegacyEchoServer(context)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, server.handle, 0, host=HOST))
        server.port = listeners[0].socket.getsockname()[1]
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


# --- Python's ssl as a TLS 1.2-only client -------------------------------------------------------------------


@dataclass
class PyResult:
    version: str | None = None
    cipher: tuple[str, str, int] | None = None
    echoed: bytes = b""
    error: BaseException | None = None


def py_client_context(pki_files: dict[str, Path], *, cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki_files["ca"]))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(*_files(pki_files, "client", "client_key"))
    return ctx


def py_client(port: int, ctx: ssl.SSLContext, payload: bytes, *, close_notify: bool = True) -> PyResult:
    result = PyResult()
    try:
        raw = socket.create_connection((HOST, port), timeout=STEP)
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:  # takes over raw's descriptor
            result.version, result.cipher = tls.version(), tls.cipher()
            tls.sendall(payload)
            while len(result.echoed) < len(payload):
                chunk = tls.recv(64 * KIB)
                if not chunk:
                    break
                result.echoed += chunk
            if close_notify:
                tls.unwrap()  # our close_notify, then the server's (it half-closes after echoing)
            else:
                tls.shutdown(socket.SHUT_RDWR)  # TCP FIN without close_notify: a truncation
    except (OSError, ssl.SSLError) as exc:
        result.error = exc
    return result


async def run_py_client(port: int, ctx: ssl.SSLContext, payload: bytes, **kw: Any) -> PyResult:
    return await trio.to_thread.run_sync(functools.partial(py_client, port, ctx, payload, **kw))


async def test_python_tls12_client_echo(pki_files: dict[str, Path]) -> None:
    payload = deterministic_bytes(48 * KIB)
    async with legacy_server(legacy_context(*_files(pki_files, "server", "server_key"))) as server:
        result = await run_py_client(server.port, py_client_context(pki_files), payload)
        served = await server.connection()
    assert result.error is None, result.error
    assert result.version == "TLSv1.2" and result.echoed == payload
    assert served.error is None and served.classified is True and not served.truncated
    info = served.info
    assert info is not None and result.cipher is not None
    assert info.version == "TLSv1.2" and info.cipher == result.cipher[0] and info.secret_bits == result.cipher[2]
    assert info.cipher.startswith("ECDHE-ECDSA-")
    assert info.group == "X25519"  # OpenSSL 3's first group
    assert info.sni == "localhost" and info.alpn is None and info.resumed is False
    assert info.client_cert_verified is None and info.client_cn is None
    assert info.quantum_safe is False and info.client_hello_size is not None


async def test_python_group_and_alpn(pki384_files: dict[str, Path]) -> None:
    ctx = legacy_context(*_files(pki384_files, "server", "server_key"), alpn_protocols=["h2", "http/1.1"])
    client = py_client_context(pki384_files)
    client.set_ecdh_curve("secp384r1")  # the client then offers only P-384
    client.set_alpn_protocols(["http/1.1"])
    async with legacy_server(ctx) as server:
        result = await run_py_client(server.port, client, b"x")
        served = await server.connection()
    assert result.error is None and served.info is not None
    assert served.info.group == "secp384r1" and served.info.alpn == "http/1.1"


async def test_python_mutual_tls(pki_files: dict[str, Path]) -> None:
    ctx = legacy_context(*_files(pki_files, "server", "server_key", "ca"))
    async with legacy_server(ctx) as server:
        result = await run_py_client(server.port, py_client_context(pki_files, cert=True), b"hello")
        served = await server.connection()
        refused = await run_py_client(server.port, py_client_context(pki_files), b"hello")
        no_cert = await server.connection(1)
    assert result.error is None and result.echoed == b"hello"
    assert served.info is not None
    assert served.info.client_cert_verified is True and served.info.client_cn == "client"
    assert refused.error is not None
    assert isinstance(no_cert.error, LegacyTLSError)
    assert no_cert.error.alert == "handshake_failure" and no_cert.error.sent is True


async def test_client_certificate_from_another_ca(pki_files: dict[str, Path], pki384_files: dict[str, Path]) -> None:
    ctx = legacy_context(*_files(pki_files, "server", "server_key", "ca"))
    client = py_client_context(pki_files)
    client.load_cert_chain(*_files(pki384_files, "client", "client_key"))  # issued by the other dev CA
    async with legacy_server(ctx) as server:
        result = await run_py_client(server.port, client, b"x")
        served = await server.connection()
    assert isinstance(result.error, ssl.SSLError)
    assert isinstance(served.error, LegacyTLSError) and served.error.sent is True
    assert served.error.alert == "unknown_ca" and served.error.code == "CERTIFICATE_VERIFY_FAILED"


async def test_no_shared_cipher(pki_files: dict[str, Path]) -> None:
    client = py_client_context(pki_files)
    client.set_ciphers("AES128-GCM-SHA256")  # RSA key exchange: no forward secrecy, not served
    async with legacy_server(legacy_context(*_files(pki_files, "server", "server_key"))) as server:
        result = await run_py_client(server.port, client, b"x")
        served = await server.connection()
    assert isinstance(result.error, ssl.SSLError)
    assert served.classified is True and isinstance(served.error, LegacyTLSError)
    assert served.error.alert == "handshake_failure" and served.error.code == "NO_SHARED_CIPHER"


async def test_eof_mid_handshake(pki_files: dict[str, Path]) -> None:
    hello = python_client_hello(ssl.TLSVersion.TLSv1_2)
    async with legacy_server(legacy_context(*_files(pki_files, "server", "server_key"))) as server:
        stream = await trio.open_tcp_stream(HOST, server.port)
        await stream.send_all(hello)
        await stream.send_eof()
        with trio.fail_after(STEP):
            while await stream.receive_some(64 * KIB):
                pass  # ServerHello .. ServerHelloDone, then the server closes
        await stream.aclose()
        served = await server.connection()
    assert served.classified is True and isinstance(served.error, LegacyTLSError)
    assert "during the handshake" in str(served.error) and served.error.alert is None


async def test_truncation_is_reported(pki_files: dict[str, Path]) -> None:
    async with legacy_server(legacy_context(*_files(pki_files, "server", "server_key"))) as server:
        result = await run_py_client(server.port, py_client_context(pki_files), b"abc", close_notify=False)
        served = await server.connection()
    assert result.error is None and result.echoed == b"abc"
    assert served.error is None and served.truncated is True and served.received == 3


async def test_server_half_closes_first(pki_files: dict[str, Path]) -> None:
    """Our close_notify + FIN first; the client can still write, and we still read, until its close_notify."""
    ctx = legacy_context(*_files(pki_files, "server", "server_key"))
    late: list[bytes] = []
    done = trio.Event()

    async def handle(stream: trio.SocketStream) -> None:
        first = b""
        while is_tls12_only(first) is None:
            first += await stream.receive_some(64 * KIB)
        tls = LegacyTLSStream(stream, ctx, first)
        try:
            with trio.fail_after(STEP):
                info = await tls.do_handshake()
                assert (info.cipher_suite, info.server_name, info.hello_retry) == (info.cipher, "localhost", False)
                await tls.send_all(b"bye")
                await tls.send_eof()
                while data := await tls.receive_some():
                    late.append(data)
                assert not tls.truncated
        finally:
            done.set()
            await tls.aclose()

    def client(port: int) -> list[bytes]:
        raw = socket.create_connection((HOST, port), timeout=STEP)
        with py_client_context(pki_files).wrap_socket(raw, server_hostname="localhost") as tls:
            seen = [tls.recv(100), tls.recv(100)]  # b"bye", then b"" at the server's close_notify
            tls.sendall(b"late data")
            tls.unwrap()
        return seen

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, 0, host=HOST))
        seen = await trio.to_thread.run_sync(client, listeners[0].socket.getsockname()[1])
        with trio.fail_after(STEP):
            await done.wait()
        nursery.cancel_scope.cancel()
    assert seen == [b"bye", b""] and b"".join(late) == b"late data"


async def test_tls13_client_goes_to_the_normal_path(pki_files: dict[str, Path]) -> None:
    client = ssl.create_default_context(cafile=str(pki_files["ca"]))
    async with legacy_server(legacy_context(*_files(pki_files, "server", "server_key"))) as server:
        result = await run_py_client(server.port, client, b"x")
        served = await server.connection()
    assert served.classified is False and served.info is None
    assert result.error is not None  # this test server has no TLS 1.3 path: it just closes


# --- Node.js 26 (OpenSSL 3.5) with maxVersion TLSv1.2 --------------------------------------------------------

NODE_GROUP_NAMES = {"X25519": "X25519", "prime256v1": "secp256r1", "secp384r1": "secp384r1"}


async def node_client(config: dict[str, Any], timeout: float = STEP * 2) -> list[dict[str, Any]]:
    return await trio.to_thread.run_sync(functools.partial(run_node_client, config, timeout=timeout))


def node_tls12(port: int, pki_files: dict[str, Path], **kw: Any) -> dict[str, Any]:
    return {
        "port": port,
        "ca": str(pki_files["ca"]),
        "servername": "localhost",
        "minVersion": "TLSv1.2",
        "maxVersion": "TLSv1.2",
        "tap": False,  # the peer's record tap follows TLS 1.3 only
        **kw,
    }


@pytest.mark.interop
@pytest.mark.parametrize(
    ("groups", "alg", "expected_group"),
    [(None, "ecdsa", "X25519"), ("P-256", "ecdsa", "secp256r1"), ("P-384", "ecdsa384", "secp384r1")],
)
async def test_node_tls12_client(
    request: pytest.FixtureRequest, groups: str | None, alg: str, expected_group: str
) -> None:
    node_binary()
    pki_files = request.getfixturevalue("pki_files" if alg == "ecdsa" else "pki384_files")
    size = 2 * 1024 * KIB
    extra: dict[str, Any] = {"sendThenHash": size}
    if groups:
        extra["groups"] = groups
    async with legacy_server(legacy_context(*_files(pki_files, "server", "server_key"))) as server:
        events = await node_client(node_tls12(server.port, pki_files, **extra))
        served = await server.connection()
    assert not only(events, "error"), events
    (handshake,) = only(events, "handshake")
    assert handshake["protocol"] == "TLSv1.2"
    eph = handshake["ephemeralKeyInfo"]
    assert eph["type"] == "ECDH" and NODE_GROUP_NAMES[eph["name"]] == expected_group
    (result,) = only(events, "result")
    assert result["length"] == size and result["sha256"] == hashlib.sha256(deterministic_bytes(size)).hexdigest()
    assert served.error is None and not served.truncated and served.received == size
    info = served.info
    assert info is not None and info.version == "TLSv1.2" and info.group == expected_group
    assert info.sni == "localhost" and info.quantum_safe is False
    assert handshake["cipher"].startswith("TLS_ECDHE_ECDSA_WITH_")


@pytest.mark.interop
async def test_node_tls12_mutual_tls(pki_files: dict[str, Path]) -> None:
    node_binary()
    ctx = legacy_context(*_files(pki_files, "server", "server_key", "ca"))
    config = node_tls12(0, pki_files, cert=str(pki_files["client"]), key=str(pki_files["client_key"]), send=1000)
    async with legacy_server(ctx) as server:
        config["port"] = server.port
        events = await node_client(config)
        served = await server.connection()
    assert not only(events, "error"), events
    (result,) = only(events, "result")
    assert result["length"] == 1000
    assert served.info is not None and served.info.client_cn == "client" and served.info.client_cert_verified


@pytest.mark.interop
async def test_node_tls13_client_is_not_legacy(pki_files: dict[str, Path]) -> None:
    node_binary()
    config = {"port": 0, "ca": str(pki_files["ca"]), "servername": "localhost", "send": 10, "tap": False}
    async with legacy_server(legacy_context(*_files(pki_files, "server", "server_key"))) as server:
        config["port"] = server.port
        events = await node_client(config)
        served = await server.connection()
    assert served.classified is False
    assert only(events, "error")


def test_hello_header_sanity() -> None:
    """The record framing assumption the classifier relies on (a TLS 1.2 hello record is type 22)."""
    hello = python_client_hello(ssl.TLSVersion.TLSv1_2)
    assert hello[0] == ContentType.handshake and struct.unpack("!H", hello[3:5])[0] == len(hello) - 5
