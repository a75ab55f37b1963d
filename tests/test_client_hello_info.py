"""The ClientHello read once (pqproxy/tls/client_hello.py): ``TLSServer(defer_client_hello=True)`` shows the first
hello as ``ClientHelloReceived(info)`` before answering anything, and ``continue_handshake(config)`` goes on, as Go's
``GetConfigForClient``. The edge (legacy TLS 1.2, QKD, SNI routes) uses that one reading instead of its own.

Deferring must change nothing but the pause: hypothesis holds a deferred server to an undeferred one on mutated
hellos (the same alert, or both answering).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pqproxy.tls.alerts import AlertDescription
from pqproxy.tls.client import TLSClient
from pqproxy.tls.codepoints import TLS12, TLS13, ContentType, ExtensionType
from pqproxy.tls.events import AlertSent, ClientHelloReceived, Event, HandshakeComplete
from pqproxy.tls.extensions import SupportedVersionsClient, ext
from pqproxy.tls.server import TLSServer
from tests.tls_helpers import (
    DevPKI,
    assert_fatal,
    client_config,
    client_hello_of,
    hello_record,
    of_type,
    pump,
    record,
    server_config,
    without_extension,
)


def _deferred(pki: DevPKI, hello: bytes, **server: object) -> tuple[TLSServer, ClientHelloReceived]:
    engine = TLSServer(server_config(pki, **server), defer_client_hello=True)
    events = engine.receive_data(hello)
    assert [type(e) for e in events] == [ClientHelloReceived], events
    assert engine.data_to_send() == b""  # nothing answered yet
    return engine, events[0]  # type: ignore[return-value]


def test_the_hello_is_shown_before_anything_is_answered(pki: DevPKI) -> None:
    client = TLSClient(client_config(pki, alpn_protocols=(b"h2",)))
    hello = client.data_to_send()
    engine, shown = _deferred(pki, hello)
    info = shown.info
    assert info.server_name == "localhost" and info.offers_tls13 and info.alpn == [b"h2"]
    assert info.size == len(hello) - 5 and info.raw[0] == 1
    assert 0x11EC in info.shares and 0x11EC in info.groups
    # Bytes that arrive meanwhile wait; nothing moves until continue_handshake.
    assert engine.receive_data(b"") == [] and engine.data_to_send() == b""
    assert engine.continue_handshake() == []
    flight = engine.data_to_send()
    assert flight[:1] == bytes((ContentType.handshake,))
    client.receive_data(flight)
    assert client.data_to_send()  # the client's Finished: the deferred server's flight was a good one


def test_a_deferred_handshake_completes_under_the_config_given(pki: DevPKI) -> None:
    client = TLSClient(client_config(pki, alpn_protocols=(b"h2", b"http/1.1")))
    engine, _ = _deferred(pki, client.data_to_send(), alpn_protocols=(b"h2",))
    engine.continue_handshake(server_config(pki, alpn_protocols=(b"http/1.1",)))
    client_events, server_events = pump(client, engine)
    (done,) = of_type(server_events, HandshakeComplete)
    assert done.alpn_protocol == "http/1.1" and done.group == "X25519MLKEM768"
    assert of_type(client_events, HandshakeComplete)[0].alpn_protocol == "http/1.1"


def test_records_that_arrive_while_paused_are_read_after(pki: DevPKI) -> None:
    client = TLSClient(client_config(pki))
    hello = client.data_to_send()
    ccs = record(ContentType.change_cipher_spec, b"\x01")
    engine = TLSServer(server_config(pki), defer_client_hello=True)
    assert [type(e) for e in engine.receive_data(hello + ccs + ccs + ccs)] == [ClientHelloReceived]
    # Three ChangeCipherSpec records are one too many (MAX_CHANGE_CIPHER_SPEC): found once the handshake goes on.
    assert_fatal(engine.continue_handshake(), AlertDescription.unexpected_message)


def test_a_tls12_hello_is_shown_then_refused_if_the_caller_goes_on(pki: DevPKI) -> None:
    hello, _ = client_hello_of(TLSClient(client_config(pki)))
    hello.extensions = [*without_extension(hello.extensions, ExtensionType.supported_versions),
                        ext(ExtensionType.supported_versions, SupportedVersionsClient([TLS12]))]
    engine, shown = _deferred(pki, hello_record(hello))
    assert shown.info.offers_tls13 is False and shown.info.versions == [TLS12]
    alert = assert_fatal(engine.continue_handshake(), AlertDescription.protocol_version)
    assert alert.code == "tls12_only_client"


def test_a_malformed_hello_is_refused_without_being_shown(pki: DevPKI) -> None:
    hello, _ = client_hello_of(TLSClient(client_config(pki)))
    hello.extensions = [*hello.extensions, hello.extensions[0]]  # a duplicate extension
    engine = TLSServer(server_config(pki), defer_client_hello=True)
    assert_fatal(engine.receive_data(hello_record(hello)), AlertDescription.illegal_parameter)


def test_the_caller_may_refuse_instead(pki: DevPKI) -> None:
    engine, _ = _deferred(pki, TLSClient(client_config(pki)).data_to_send())
    engine.abort(AlertDescription.unrecognized_name, "no route", "no_route")
    assert_fatal(engine.events(), AlertDescription.unrecognized_name)
    assert engine.data_to_send() == record(ContentType.alert, bytes((2, AlertDescription.unrecognized_name)))


def test_continue_without_a_pause_is_a_programming_error(pki: DevPKI) -> None:
    engine = TLSServer(server_config(pki), defer_client_hello=True)
    with pytest.raises(RuntimeError):
        engine.continue_handshake()


def test_after_a_hello_retry_the_second_hello_is_not_shown(pki: DevPKI) -> None:
    client = TLSClient(client_config(pki, key_share_groups=(0x001D,)))  # X25519 only: the server retries
    engine, _ = _deferred(pki, client.data_to_send())
    engine.continue_handshake()
    _, server_events = pump(client, engine)
    assert not of_type(server_events, ClientHelloReceived)
    assert of_type(server_events, HandshakeComplete)[0].hello_retry is True


def _outcome(events: list[Event]) -> str:
    alerts = [e for e in events if isinstance(e, AlertSent)]
    return alerts[0].name if alerts else "answered"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_deferring_changes_nothing_but_the_pause(pki: DevPKI, data: st.DataObject) -> None:
    hello = bytearray(TLSClient(client_config(pki)).data_to_send())
    for _ in range(data.draw(st.integers(0, 4))):
        position = data.draw(st.integers(5, len(hello) - 1))
        hello[position] = data.draw(st.integers(0, 255))
    straight = TLSServer(server_config(pki))
    expected = _outcome(straight.receive_data(bytes(hello)))
    deferred = TLSServer(server_config(pki), defer_client_hello=True)
    events = deferred.receive_data(bytes(hello))
    shown = of_type(events, ClientHelloReceived)
    if shown:
        assert events == shown
        events = deferred.continue_handshake()
    assert _outcome(events) == expected
    assert bool(deferred.data_to_send()) == bool(straight.data_to_send())


def test_versions_as_the_edge_reads_them(pki: DevPKI) -> None:
    hello, _ = client_hello_of(TLSClient(client_config(pki)))
    for versions, tls13 in (([TLS13, TLS12], True), ([0x0A0A, TLS13], True), ([TLS12, 0x0302], False)):
        hello.extensions = [*without_extension(hello.extensions, ExtensionType.supported_versions),
                            ext(ExtensionType.supported_versions, SupportedVersionsClient(versions))]
        _, shown = _deferred(pki, hello_record(hello))
        assert shown.info.offers_tls13 is tls13, versions
