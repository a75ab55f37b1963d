"""Helpers shared by the engine tests: configs, an in-memory pump, record parsing and alert checks.

Import them as ``from tests.tls_helpers import ...``; the ``pki`` fixture itself lives in conftest.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509

from pqproxy.tls.alerts import AlertDescription
from pqproxy.tls.certificates import CertificateChain
from pqproxy.tls.client import TLSClient
from pqproxy.tls.codepoints import ContentType, HandshakeType
from pqproxy.tls.config import TLSConfig
from pqproxy.tls.connection import TLSConnection
from pqproxy.tls.events import AlertSent, Event, HandshakeComplete
from pqproxy.tls.messages import ClientHello, Extension, ServerHello
from pqproxy.tls.record import HEADER, split_into_records
from pqproxy.tls.server import TLSServer


@dataclass(frozen=True)
class DevPKI:
    """A CA, a server chain (DNS localhost) and a client chain, all ECDSA P-256."""

    ca: x509.Certificate
    server_chain: CertificateChain
    client_chain: CertificateChain


def client_config(pki: DevPKI, **kw: Any) -> TLSConfig:
    kw.setdefault("server_name", "localhost")
    kw.setdefault("trust_store", [pki.ca])
    return TLSConfig(**kw)


def server_config(pki: DevPKI, **kw: Any) -> TLSConfig:
    kw.setdefault("certificate_chain", pki.server_chain)
    return TLSConfig(**kw)


def pump(client: TLSConnection, server: TLSConnection, max_rounds: int = 20) -> tuple[list[Event], list[Event]]:
    """Move bytes both ways until neither side has anything to send; return (client events, server events)."""
    client_events: list[Event] = []
    server_events: list[Event] = []
    for _ in range(max_rounds):
        to_server = client.data_to_send()
        if to_server:
            server_events += server.receive_data(to_server)
        to_client = server.data_to_send()
        if to_client:
            client_events += client.receive_data(to_client)
        if not to_server and not to_client:
            break
    else:
        raise AssertionError(f"connections still talking after {max_rounds} rounds")
    return client_events, server_events


@dataclass
class Handshake:
    client: TLSClient
    server: TLSServer
    client_events: list[Event]
    server_events: list[Event]


def handshake(client_cfg: TLSConfig, server_cfg: TLSConfig) -> Handshake:
    """Run a full in-memory handshake and check that both sides report it complete."""
    client, server = TLSClient(client_cfg), TLSServer(server_cfg)
    client_events, server_events = pump(client, server)
    assert any(isinstance(e, HandshakeComplete) for e in client_events), client_events
    assert any(isinstance(e, HandshakeComplete) for e in server_events), server_events
    assert client.handshake_complete and server.handshake_complete
    return Handshake(client, server, client_events, server_events)


def of_type(events: list[Event], cls: type) -> list[Any]:
    return [e for e in events if isinstance(e, cls)]


# --- records and messages on the wire ---------------------------------------------------------------


def parse_records(data: bytes) -> list[tuple[int, bytes]]:
    """Split a byte stream into (content type, payload) records; it must end on a record boundary."""
    out = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= HEADER, f"truncated record header at {pos}"
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        assert len(data) - pos - HEADER >= length, f"truncated record at {pos}"
        out.append((data[pos], data[pos + HEADER : pos + HEADER + length]))
        pos += HEADER + length
    return out


def record(content_type: int, payload: bytes, version: bytes = b"\x03\x03") -> bytes:
    return bytes((content_type,)) + version + len(payload).to_bytes(2, "big") + payload


def plaintext_alert(description: int) -> bytes:
    """A fatal alert as it goes on the wire before any keys are set."""
    return record(ContentType.alert, bytes((2, description)))


def handshake_messages(payload: bytes) -> list[tuple[int, bytes]]:
    """(msg_type, body) for each whole handshake message in a reassembled handshake payload."""
    out = []
    pos = 0
    while pos < len(payload):
        length = int.from_bytes(payload[pos + 1 : pos + 4], "big")
        out.append((payload[pos], payload[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    return out


def client_hello_of(client: TLSClient) -> tuple[ClientHello, bytes]:
    """The first ClientHello a fresh client sends, decoded, and the raw bytes it sent."""
    data = client.data_to_send()
    payload = b"".join(p for t, p in parse_records(data) if t == ContentType.handshake)
    msgs = handshake_messages(payload)
    assert msgs[0][0] == HandshakeType.client_hello
    return ClientHello.decode(msgs[0][1]), data


def hello_record(hello: ClientHello, sizes: list[int] | None = None) -> bytes:
    return split_into_records(ContentType.handshake, hello.encode(), sizes)


def server_hello_of(flight: bytes) -> tuple[ServerHello, int]:
    """The ServerHello in a server's first flight and the byte length of the record carrying it."""
    content_type, payload = parse_records(flight)[0]
    assert content_type == ContentType.handshake
    (msg_type, body), *_ = handshake_messages(payload)
    assert msg_type == HandshakeType.server_hello
    return ServerHello.decode(body), HEADER + len(payload)


def replace_extension(extensions: list[Extension], ext_type: int, data: bytes) -> list[Extension]:
    """The list with the body of ``ext_type`` replaced (it must be present), order kept."""
    assert any(e.type == ext_type for e in extensions), f"no extension {ext_type}"
    return [Extension(e.type, data) if e.type == ext_type else e for e in extensions]


def without_extension(extensions: list[Extension], ext_type: int) -> list[Extension]:
    return [e for e in extensions if e.type != ext_type]


# --- alert checks -----------------------------------------------------------------------------------


def assert_fatal(events: list[Event], description: AlertDescription) -> AlertSent:
    """Exactly one event, an AlertSent with this description."""
    assert len(events) == 1 and isinstance(events[0], AlertSent), events
    alert = events[0]
    assert alert.description == description, f"expected {description.name}, got {alert.name}: {alert.reason}"
    assert alert.name == description.name
    return alert


def assert_plaintext_alert_sent(conn: TLSConnection, events: list[Event], description: AlertDescription) -> None:
    """The connection failed with ``description`` and the wire ends with that alert in the clear."""
    assert_fatal(events, description)
    out = conn.data_to_send()
    assert out.endswith(plaintext_alert(description)), out[-16:].hex()
    assert_dead(conn)


def assert_dead(conn: TLSConnection) -> None:
    """A failed connection ignores whatever comes next and has nothing more to send."""
    assert conn.failed
    assert conn.receive_data(b"\x16\x03\x03\x00\x01\x01") == []
    assert conn.receive_data(record(ContentType.alert, b"\x02\x28")) == []
    assert conn.data_to_send() == b""
