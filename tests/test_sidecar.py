"""The minimal sidecar as a user runs it: `pqproxy server` and `pqproxy client` processes on loopback.

Bytes go both ways and half-close is carried through; hostile ClientHellos get the right alert, a log
line, and the proxy keeps serving real clients.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pqproxy.certs import write_dev_pki
from pqproxy.tls.alerts import AlertDescription
from pqproxy.tls.codepoints import ExtensionType, NamedGroup
from pqproxy.tls.extensions import KeyShareServerHello
from pqproxy.tls.hello import HelloSpec, build_client_hello
from pqproxy.tls.messages import Extension, ServerHello, find_extension
from tests.procs import TIMEOUT, Proc, free_port, raw_exchange
from tests.tls_helpers import plaintext_alert


class EchoBackend:
    """A plain TCP echo server that half-closes after its peer does (so half-close is observable)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT)
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sidecar-pki")
    write_dev_pki(out, alg="ecdsa", names=("localhost", "127.0.0.1"))
    return out


@pytest.fixture(scope="module")
def pipe(pki_dir: Path) -> Iterator[tuple[int, int, Proc, Proc]]:
    """(server port, client port, server proc, client proc) around an echo backend."""
    backend = EchoBackend()
    server_port, client_port = free_port(), free_port()
    server = Proc(["server", "--listen", f"127.0.0.1:{server_port}", "--upstream", f"127.0.0.1:{backend.port}",
                   "--cert", str(pki_dir / "server.pem"), "--key", str(pki_dir / "server.key"),
                   "--max-client-hello", "8192", "--handshake-timeout", "3"])
    client = Proc(["client", "--listen", f"127.0.0.1:{client_port}", "--connect", f"127.0.0.1:{server_port}",
                   "--sni", "localhost", "--ca", str(pki_dir / "ca.pem")])
    try:
        server.wait_for(lambda r: r.get("event") == "listening")
        client.wait_for(lambda r: r.get("event") == "listening")
        yield server_port, client_port, server, client
    finally:
        client.stop()
        server.stop()
        backend.close()


def exchange(port: int, payload: bytes) -> bytes:
    """Send everything, half-close, read the echo to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        received = bytearray()

        def reader() -> None:
            while chunk := s.recv(1 << 16):
                received.extend(chunk)

        thread = threading.Thread(target=reader)
        thread.start()
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "echo did not finish"
        return bytes(received)


def test_pipe_carries_bytes_and_half_close(pipe: tuple[int, int, Proc, Proc]) -> None:
    _, client_port, server, _client = pipe
    payload = os.urandom(3 * 1024 * 1024 + 17)
    echoed = exchange(client_port, payload)
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
    record = server.wait_for(lambda r: r.get("mode") == "server" and r.get("bytes_up") == len(payload))
    assert record["group"] == "X25519MLKEM768"
    assert record["result"] == "ok"
    assert record["bytes_down"] == len(payload)
    assert record["client_hello_size"] and 1200 < int(record["client_hello_size"]) < 2400  # type: ignore[arg-type]


def _wrong_length_hybrid() -> bytes:
    return build_client_hello(HelloSpec(server_name="localhost", key_shares=[(NamedGroup.X25519MLKEM768, bytes(1215))],
                                        groups=[NamedGroup.X25519MLKEM768])).records()


def _invalid_mlkem_key() -> bytes:
    ek = bytearray(os.urandom(1184))
    ek[0], ek[1] = 0xFF, 0x0F  # first coefficient 4095 >= q: fails the FIPS 203 modulus check
    share = bytes(ek) + os.urandom(32)  # X25519MLKEM768: ML-KEM first
    return build_client_hello(HelloSpec(server_name="localhost", key_shares=[(NamedGroup.X25519MLKEM768, share)],
                                        groups=[NamedGroup.X25519MLKEM768])).records()


def _zero_x25519() -> bytes:
    return build_client_hello(HelloSpec(server_name="localhost", key_shares=[(NamedGroup.x25519, bytes(32))],
                                        groups=[NamedGroup.x25519])).records()


def _over_the_cap() -> bytes:
    return build_client_hello(HelloSpec(server_name="localhost", pad_to=9000)).records()


def _truncated_record() -> bytes:
    return build_client_hello(HelloSpec(server_name="localhost")).records()[:700]


def _garbage() -> bytes:
    return b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


@pytest.mark.parametrize(
    ("make", "alert"),
    [
        (_wrong_length_hybrid, AlertDescription.illegal_parameter),
        (_invalid_mlkem_key, AlertDescription.illegal_parameter),
        (_zero_x25519, AlertDescription.illegal_parameter),
        (_over_the_cap, AlertDescription.illegal_parameter),
        (_garbage, AlertDescription.unexpected_message),
        (_truncated_record, None),  # nothing to answer: cut at the handshake timeout
    ],
    ids=["hybrid-share-1215-bytes", "mlkem-ek-modulus", "x25519-all-zero", "hello-over-cap", "http-not-tls",
         "truncated-then-stall"],
)
def test_hostile_hello_gets_alert_and_proxy_stays_up(
    pipe: tuple[int, int, Proc, Proc], make: object, alert: AlertDescription | None
) -> None:
    server_port, client_port, server, _ = pipe
    assert callable(make)
    start = time.monotonic()
    answer = raw_exchange(server_port, make())
    if alert is None:
        assert answer == b""
        assert time.monotonic() - start >= 2.5  # held until --handshake-timeout 3, not closed at once
        server.wait_for(lambda r: r.get("result") == "handshake_timeout")
    else:
        assert answer == plaintext_alert(alert)
        server.wait_for(lambda r: r.get("result") == "tls_error" and r.get("alert") == alert.name)
    payload = b"still serving after hostile input\n"
    assert exchange(client_port, payload) == payload


def test_unknown_extension_in_hello_is_ignored(pipe: tuple[int, int, Proc, Proc]) -> None:
    server_port = pipe[0]
    records = build_client_hello(HelloSpec(server_name="localhost", extra_extensions=[Extension(0xFFAA, b"xyz")],
                                           grease=True)).records()
    answer = raw_hello_exchange_first(server_port, records)
    assert answer[:1] == b"\x16" and answer[5] == 2  # a ServerHello record
    length = int.from_bytes(answer[3:5], "big")
    hello = ServerHello.decode(answer[9 : 5 + length])
    share = find_extension(hello.extensions, ExtensionType.key_share)
    assert share is not None and KeyShareServerHello.decode(share.data).server_share.group == NamedGroup.X25519MLKEM768


def raw_hello_exchange_first(port: int, records: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(records)
        return s.recv(65536)
