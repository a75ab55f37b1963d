"""Issue 18: no truncation may look like success. How each end of a proxied connection reaches the other side.

A clean end (close_notify on the TLS side, a FIN on the plain side) is passed on as a clean half-close. Any other
end (TLS without close_notify, a reset, a TLS error, the idle timeout) reaches the other side as a TCP RST, so the
application or upstream behind it reads an error, never an EOF it would take for the end of the data. Each
mapping, in server mode (a TLS client, ``pqproxy server``, a plain upstream) and client mode (an application,
``pqproxy client``, a TLS server), checks what the far side *saw*, the connection's log line and
``pqproxy_resets_propagated_total``. Before issue 18 every unclean end here reached the far side as a FIN.

The peers are threads on 127.0.0.1, one connection each: ``PlainPeer`` (the upstream, or the application) and
``EnginePeer``, a TLS 1.3 server on pqproxy's sans-IO engine (what matters here is TCP, not the TLS stack).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pqproxy.certs import write_dev_pki
from pqproxy.tls.certificates import CertificateChain, load_trust_store
from pqproxy.tls.config import TLSConfig
from pqproxy.tls.events import AlertReceived, ApplicationData, PeerClosed
from pqproxy.tls.server import TLSServer
from tests.sidecar_kit import HOST, EngineClient, Sidecar, client_args, server_args

RESETS = "pqproxy_resets_propagated_total"
WAIT = 10.0  # seconds: every read of a peer is bounded by this


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_dev_pki(tmp_path_factory.mktemp("resets-pki"), alg="ecdsa", names=("localhost", HOST))


def reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_to_end(sock: socket.socket, timeout: float = WAIT) -> tuple[bytes, str]:
    """Everything until the connection ends, and how: "eof" (a FIN), "reset", or "timeout"."""
    sock.settimeout(timeout)
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        return bytes(data), "reset"
    except TimeoutError:
        return bytes(data), "timeout"
    return bytes(data), "eof"


def read_exactly(sock: socket.socket, n: int) -> bytes:
    sock.settimeout(WAIT)
    data = bytearray()
    while len(data) < n and (chunk := sock.recv(n - len(data))):
        data += chunk
    return bytes(data)


class PlainPeer:
    """A loopback listener that runs ``script`` on its one connection, in a thread."""

    def __init__(self, script: Callable[[socket.socket], Any]) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def _run(self, script: Callable[[socket.socket], Any]) -> None:
        self.listener.settimeout(WAIT)
        try:
            conn, _ = self.listener.accept()
            with conn:
                self.result = script(conn)
        except BaseException as exc:  # reported by outcome()
            self.error = exc

    def outcome(self) -> Any:
        self.thread.join(WAIT + 5)
        self.listener.close()
        assert not self.thread.is_alive(), "the peer never finished"
        if self.error is not None:
            raise self.error
        return self.result


class EnginePeer(PlainPeer):
    """A TLS 1.3 server for ``pqproxy client``: after the handshake, ``script(tls)`` runs with a small API."""

    def __init__(self, pki: dict[str, Path], script: Callable[[EnginePeer.Conn], Any]) -> None:
        self.config = TLSConfig(certificate_chain=CertificateChain.load(pki["server"], pki["server_key"]))
        super().__init__(lambda sock: script(EnginePeer.Conn(sock, TLSServer(self.config))))

    class Conn:
        def __init__(self, sock: socket.socket, engine: TLSServer) -> None:
            self.sock, self.engine = sock, engine
            self.data = bytearray()
            self.end: str | None = None  # "close_notify", "eof" (FIN without close_notify), "reset", "alert"
            sock.settimeout(WAIT)
            while not engine.handshake_complete:
                self._read_once()

        def _read_once(self) -> bool:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                self.end = "reset"
                return False
            if not chunk:
                self.end = self.end or "eof"
                return False
            for event in self.engine.receive_data(chunk):
                if isinstance(event, ApplicationData):
                    self.data += event.data
                elif isinstance(event, PeerClosed):
                    self.end = "close_notify"
                elif isinstance(event, AlertReceived):
                    self.end = f"alert {event.name}"
            self.sock.sendall(self.engine.data_to_send())
            return True

        def read(self, n: int) -> bytes:
            while len(self.data) < n and self._read_once():
                pass
            return bytes(self.data)

        def read_to_end(self) -> tuple[bytes, str | None]:
            try:
                while self._read_once():
                    pass
            except TimeoutError:
                self.end = "timeout"
            return bytes(self.data), self.end

        def send(self, data: bytes) -> None:
            self.engine.send_data(data)
            self.sock.sendall(self.engine.data_to_send())


@contextmanager
def sidecar(mode: str, args: list[str]) -> Iterator[Sidecar]:
    s = Sidecar(mode, [*args, "--drain-timeout", "1"], workers=1)
    try:
        yield s
    finally:
        s.stop()


def engine_client(pki: dict[str, Path], port: int) -> EngineClient:
    c = EngineClient(port, TLSConfig(server_name="localhost", trust_store=load_trust_store(pki["ca"])))
    assert c.handshake() is not None
    return c


def log_line(s: Sidecar) -> dict[str, Any]:
    return s.wait_for(lambda r: "mode" in r and "event" not in r)


# --- server mode: TLS client -> pqproxy server -> plain upstream ----------------------------------------------


def _upstream_reads_to_end(conn: socket.socket) -> tuple[bytes, str]:
    return read_to_end(conn)


def test_server_a_client_that_ends_without_close_notify_resets_the_upstream(pki: dict[str, Path]) -> None:
    """TCP FIN without close_notify (RFC 8446 §6.1: a truncation): the upstream must read a reset, not an EOF."""
    upstream = PlainPeer(_upstream_reads_to_end)
    with sidecar("server", server_args(pki, upstream.address)) as server:
        c = engine_client(pki, server.port)
        c.send(b"half a request")
        time.sleep(0.2)
        c.sock.shutdown(socket.SHUT_WR)  # FIN, no close_notify
        data, end = upstream.outcome()
        assert (data, end) == (b"half a request", "reset")
        c.read_to_end()
        assert (c.eof or c.reset) and not c.peer_closed  # the side that ended first gets no close_notify either
        c.abandon()
        record = log_line(server)
        assert record["result"] == "truncated" and record["reset"] == "upstream", record
        assert "without close_notify" in record["error"]
        assert server.wait_metric(RESETS, 1, direction="upstream") == 1
        assert server.metric(RESETS, direction="downstream") == 0


def test_server_a_client_reset_resets_the_upstream(pki: dict[str, Path]) -> None:
    upstream = PlainPeer(_upstream_reads_to_end)
    with sidecar("server", server_args(pki, upstream.address)) as server:
        c = engine_client(pki, server.port)
        c.send(b"request")
        time.sleep(0.2)
        reset(c.sock)
        assert upstream.outcome() == (b"request", "reset")
        record = log_line(server)
        assert record["result"] == "peer_reset" and record["reset"] == "upstream", record
        assert server.wait_metric(RESETS, 1, direction="upstream") == 1


def test_server_a_tls_error_mid_stream_resets_the_upstream(pki: dict[str, Path]) -> None:
    """A record that does not authenticate: the client gets bad_record_mac, the upstream a reset."""
    upstream = PlainPeer(_upstream_reads_to_end)
    with sidecar("server", server_args(pki, upstream.address)) as server:
        c = engine_client(pki, server.port)
        c.send(b"request")
        time.sleep(0.2)
        c.sock.sendall(b"\x17\x03\x03\x00\x20" + bytes(32))  # application_data that no key sealed
        assert upstream.outcome() == (b"request", "reset")
        c.read_to_end()
        assert "bad_record_mac" in c.alerts_received()
        c.abandon()
        record = log_line(server)
        assert record["result"] == "peer_reset" and record["reset"] == "upstream", record
        assert "bad_record_mac" in record["error"]


def test_server_an_upstream_reset_reaches_the_client_as_a_reset(pki: dict[str, Path]) -> None:
    def answer_half_then_reset(conn: socket.socket) -> None:
        read_exactly(conn, 7)
        conn.sendall(b"the first half")
        time.sleep(0.2)
        reset(conn)

    upstream = PlainPeer(answer_half_then_reset)
    with sidecar("server", server_args(pki, upstream.address)) as server:
        c = engine_client(pki, server.port)
        c.send(b"request")
        c.read_to_end()
        upstream.outcome()
        assert bytes(c.received) == b"the first half"
        assert c.reset and not c.peer_closed, "a reset, never close_notify after half an answer"
        c.abandon()
        record = log_line(server)
        assert record["result"] == "peer_reset" and record["reset"] == "downstream", record
        assert record["error"].startswith("upstream:")
        assert server.wait_metric(RESETS, 1, direction="downstream") == 1


def test_server_an_upstream_fin_is_still_a_clean_close_notify(pki: dict[str, Path]) -> None:
    """The clean mapping stays: the upstream's FIN is close_notify, and the client's close_notify a FIN."""
    def answer_then_close(conn: socket.socket) -> tuple[bytes, str]:
        request = read_exactly(conn, 7)
        conn.sendall(b"the whole answer")
        conn.shutdown(socket.SHUT_WR)
        rest, end = read_to_end(conn)
        return request + rest, end

    upstream = PlainPeer(answer_then_close)
    with sidecar("server", server_args(pki, upstream.address)) as server:
        c = engine_client(pki, server.port)
        c.send(b"request")
        c.pump_until(lambda: c.peer_closed)
        assert bytes(c.received) == b"the whole answer" and not c.reset
        c.close_write()
        c.read_to_end()
        assert c.eof and not c.reset
        c.abandon()
        assert upstream.outcome() == (b"request", "eof")
        record = log_line(server)
        assert record["result"] == "ok" and "reset" not in record, record
        assert server.metric(RESETS, direction="upstream") == server.metric(RESETS, direction="downstream") == 0


def test_server_the_idle_timeout_resets_both_sides(pki: dict[str, Path]) -> None:
    """Cut for silence mid-conversation (the upstream may still owe an answer): both sides read a reset."""
    upstream = PlainPeer(_upstream_reads_to_end)
    with sidecar("server", server_args(pki, upstream.address, "--idle-timeout", "0.5")) as server:
        c = engine_client(pki, server.port)
        c.send(b"request")
        c.read_to_end(timeout=5)
        assert c.reset and not c.peer_closed
        assert upstream.outcome() == (b"request", "reset")
        c.abandon()
        record = log_line(server)
        assert record["result"] == "idle_timeout" and record["reset"] == "both", record
        assert server.wait_metric(RESETS, 1, direction="upstream") == 1
        assert server.metric(RESETS, direction="downstream") == 1


# --- client mode: application -> pqproxy client -> TLS server -------------------------------------------------


def _application(port: int, request: bytes) -> tuple[bytes, str]:
    with socket.create_connection((HOST, port), timeout=WAIT) as app:
        app.sendall(request)
        return read_to_end(app)


def test_client_a_server_that_ends_without_close_notify_resets_the_application(pki: dict[str, Path]) -> None:
    """The issue's case: a server worker killed mid-answer (its FIN carries no close_notify) must not reach the
    application as a clean, short response."""
    def half_an_answer_then_fin(tls: EnginePeer.Conn) -> None:
        tls.read(7)
        tls.send(b"the first half")
        time.sleep(0.2)
        tls.sock.shutdown(socket.SHUT_WR)
        tls.read_to_end()

    remote = EnginePeer(pki, half_an_answer_then_fin)
    with sidecar("client", client_args(pki, remote.port)) as client:
        assert _application(client.port, b"request") == (b"the first half", "reset")
        remote.outcome()
        record = log_line(client)
        assert record["result"] == "truncated" and record["reset"] == "downstream", record
        assert record["error"].startswith("upstream: truncated")
        assert client.wait_metric(RESETS, 1, direction="downstream") == 1


def test_client_a_server_reset_resets_the_application(pki: dict[str, Path]) -> None:
    def half_an_answer_then_reset(tls: EnginePeer.Conn) -> None:
        tls.read(7)
        tls.send(b"the first half")
        time.sleep(0.2)
        reset(tls.sock)

    remote = EnginePeer(pki, half_an_answer_then_reset)
    with sidecar("client", client_args(pki, remote.port)) as client:
        assert _application(client.port, b"request") == (b"the first half", "reset")
        remote.outcome()
        record = log_line(client)
        assert record["result"] == "peer_reset" and record["reset"] == "downstream", record


def test_client_a_tls_error_from_the_server_resets_the_application(pki: dict[str, Path]) -> None:
    def garbage_record(tls: EnginePeer.Conn) -> tuple[bytes, str | None]:
        tls.read(7)
        tls.sock.sendall(b"\x17\x03\x03\x00\x20" + bytes(32))
        return tls.read_to_end()

    remote = EnginePeer(pki, garbage_record)
    with sidecar("client", client_args(pki, remote.port)) as client:
        assert _application(client.port, b"request") == (b"", "reset")
        data, end = remote.outcome()
        assert (data, end) == (b"request", "alert bad_record_mac")  # the server is told why, in TLS
        record = log_line(client)
        assert record["result"] == "peer_reset" and record["reset"] == "downstream", record


def test_client_an_application_reset_reaches_the_server_as_a_reset(pki: dict[str, Path]) -> None:
    remote = EnginePeer(pki, lambda tls: tls.read_to_end())
    with sidecar("client", client_args(pki, remote.port)) as client:
        app = socket.create_connection((HOST, client.port), timeout=WAIT)
        app.sendall(b"request")
        time.sleep(0.3)
        reset(app)
        data, end = remote.outcome()
        assert (data, end) == (b"request", "reset"), "no close_notify for an application that reset"
        record = log_line(client)
        assert record["result"] == "peer_reset" and record["reset"] == "upstream", record
        assert client.wait_metric(RESETS, 1, direction="upstream") == 1


def test_client_an_application_fin_is_still_close_notify(pki: dict[str, Path]) -> None:
    def echo_then_close(tls: EnginePeer.Conn) -> tuple[bytes, str | None]:
        data, end = tls.read_to_end()
        tls.send(data)
        tls.engine.close()
        tls.sock.sendall(tls.engine.data_to_send())
        tls.sock.shutdown(socket.SHUT_WR)
        return data, end

    remote = EnginePeer(pki, echo_then_close)
    with sidecar("client", client_args(pki, remote.port)) as client:
        with socket.create_connection((HOST, client.port), timeout=WAIT) as app:
            app.sendall(b"request")
            app.shutdown(socket.SHUT_WR)
            assert read_to_end(app) == (b"request", "eof")
        assert remote.outcome() == (b"request", "close_notify")
        record = log_line(client)
        assert record["result"] == "ok" and "reset" not in record, record


@pytest.mark.interop
def test_server_node_26_reads_an_upstream_reset_mid_answer_as_a_reset(pki: dict[str, Path]) -> None:
    """A real TLS client (Node 26, OpenSSL 3.5): half an answer, then the upstream resets. Node reports
    ECONNRESET after the 40 bytes it got, and never a close_notify: it cannot take the half for the whole."""
    from tests.peers.node import node_binary, only, run_node_client

    node_binary()

    def half_then_reset(conn: socket.socket) -> bytes:
        request = read_exactly(conn, 100)
        conn.sendall(b"h" * 40)
        time.sleep(0.2)
        reset(conn)
        return request

    upstream = PlainPeer(half_then_reset)
    with sidecar("server", server_args(pki, upstream.address)) as server:
        events = run_node_client({"port": server.port, "ca": str(pki["ca"]), "servername": "localhost",
                                  "send": 100, "expect": 100}, timeout=20)
        assert len(upstream.outcome()) == 100
        assert only(events, "handshake")[0]["group"] == "X25519MLKEM768"
        assert [e["code"] for e in only(events, "error")] == ["ECONNRESET"], events
        assert only(events, "result")[0]["length"] == 40
        assert not any(a["name"] == "close_notify" and a["direction"] == "received" for a in only(events, "alert"))
        record = log_line(server)
        assert record["result"] == "peer_reset" and record["reset"] == "downstream", record
