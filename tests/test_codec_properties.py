"""Property tests of the codec and of the engine's promise on hostile bytes.

1. Every handshake message and every typed extension body: ``decode(encode(x)) == x`` and re-encoding gives
   the same bytes.
2. On random bytes and on mutated valid encodings, ``decode`` returns a value or raises ``TLSAlert``
   (decode_error), never anything else; what it returns re-encodes stably.
3. ``RecordLayer.next_record`` (plaintext) splits any byte stream into records exactly, or fails with the
   alert RFC 8446 §5 names.
4. The engine: whatever bytes a server or a client is fed, ``receive_data`` returns events; a failure is
   exactly one ``AlertSent`` with a real alert description (never internal_error, which would mean an
   exception escaped a parser), the wire ends with that alert, and the connection stays silent after.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pqproxy.tls.extensions as extensions_module
from pqproxy.tls.alerts import AlertDescription, TLSAlert
from pqproxy.tls.client import TLSClient
from pqproxy.tls.codepoints import ContentType, ExtensionType, HandshakeType
from pqproxy.tls.events import AlertReceived, AlertSent, Event, HandshakeComplete
from pqproxy.tls.extensions import (
    Cookie,
    ImportedIdentity,
    KeyShareClientHello,
    KeyShareEntry,
    KeyShareHelloRetryRequest,
    KeyShareServerHello,
    NamedGroupList,
    OfferedPsks,
    PreSharedKeyServerHello,
    ProtocolNameList,
    PskIdentity,
    PskKeyExchangeModes,
    RecordSizeLimit,
    ServerNameList,
    SignatureSchemeList,
    SupportedVersionsClient,
    SupportedVersionsServer,
)
from pqproxy.tls.messages import (
    MESSAGE_CLASSES,
    Certificate,
    CertificateEntry,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    EndOfEarlyData,
    Extension,
    Finished,
    KeyUpdate,
    NewSessionTicket,
    ServerHello,
    decode_extensions,
    decode_message,
    encode_extensions,
    frame,
)
from pqproxy.tls.record import HEADER, MAX_CIPHERTEXT, MAX_PLAINTEXT, RecordLayer
from pqproxy.tls.server import TLSServer
from pqproxy.tls.session import TicketSealer, TicketState
from pqproxy.tls.wire import Reader
from tests.tls_helpers import (
    DevPKI,
    client_config,
    handshake_messages,
    parse_records,
    plaintext_alert,
    pump,
    record,
    server_config,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENGINE = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


def blob(min_size: int = 0, max_size: int = 64) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=min_size, max_size=max_size)


# --- strategies: one per message and per typed extension body ------------------------------------------

extension = st.builds(Extension, type=u16, data=blob(0, 40))
extension_list = st.lists(extension, max_size=6)

MESSAGE_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    ClientHello: st.builds(
        ClientHello,
        random=blob(32, 32),
        legacy_session_id=blob(0, 32),
        cipher_suites=st.lists(u16, min_size=1, max_size=20),
        extensions=extension_list,
        legacy_version=u16,
        legacy_compression_methods=blob(1, 8),
    ),
    ServerHello: st.builds(
        ServerHello,
        random=blob(32, 32),
        legacy_session_id_echo=blob(0, 32),
        cipher_suite=u16,
        extensions=extension_list,
        legacy_version=u16,
        legacy_compression_method=u8,
    ),
    EncryptedExtensions: st.builds(EncryptedExtensions, extensions=extension_list),
    CertificateRequest: st.builds(
        CertificateRequest, certificate_request_context=blob(0, 255), extensions=extension_list
    ),
    Certificate: st.builds(
        Certificate,
        certificate_request_context=blob(0, 255),
        certificate_list=st.lists(
            st.builds(CertificateEntry, cert_data=blob(1, 300), extensions=st.lists(extension, max_size=3)),
            max_size=4,
        ),
    ),
    CertificateVerify: st.builds(CertificateVerify, algorithm=u16, signature=blob(1, 300)),
    Finished: st.builds(Finished, verify_data=blob(0, 64)),
    NewSessionTicket: st.builds(
        NewSessionTicket,
        ticket_lifetime=u32,
        ticket_age_add=u32,
        ticket_nonce=blob(0, 255),
        ticket=blob(1, 300),
        extensions=extension_list,
    ),
    KeyUpdate: st.builds(KeyUpdate, request_update=u8),
    EndOfEarlyData: st.just(EndOfEarlyData()),
}

key_share_entry = st.builds(KeyShareEntry, group=u16, key_exchange=blob(1, 200))

EXTENSION_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    ServerNameList: st.builds(ServerNameList, names=st.lists(st.tuples(u8, blob(1, 80)), min_size=1, max_size=4)),
    NamedGroupList: st.builds(NamedGroupList, groups=st.lists(u16, min_size=1, max_size=40)),
    SignatureSchemeList: st.builds(SignatureSchemeList, schemes=st.lists(u16, min_size=1, max_size=40)),
    ProtocolNameList: st.builds(ProtocolNameList, protocols=st.lists(blob(1, 255), min_size=1, max_size=6)),
    SupportedVersionsClient: st.builds(SupportedVersionsClient, versions=st.lists(u16, min_size=1, max_size=127)),
    SupportedVersionsServer: st.builds(SupportedVersionsServer, selected_version=u16),
    KeyShareClientHello: st.builds(KeyShareClientHello, client_shares=st.lists(key_share_entry, max_size=5)),
    KeyShareServerHello: st.builds(KeyShareServerHello, server_share=key_share_entry),
    KeyShareHelloRetryRequest: st.builds(KeyShareHelloRetryRequest, selected_group=u16),
    PskKeyExchangeModes: st.builds(PskKeyExchangeModes, ke_modes=st.lists(u8, min_size=1, max_size=255)),
    OfferedPsks: st.builds(
        OfferedPsks,
        identities=st.lists(
            st.builds(PskIdentity, identity=blob(1, 100), obfuscated_ticket_age=u32), min_size=1, max_size=5
        ),
        binders=st.lists(blob(32, 255), min_size=1, max_size=5),
    ),
    PreSharedKeyServerHello: st.builds(PreSharedKeyServerHello, selected_identity=u16),
    Cookie: st.builds(Cookie, cookie=blob(1, 300)),
    RecordSizeLimit: st.builds(RecordSizeLimit, limit=u16),
    ImportedIdentity: st.builds(
        ImportedIdentity, external_identity=blob(1, 100), context=blob(0, 100), target_protocol=u16, target_kdf=u16
    ),
}


def test_every_message_class_has_a_strategy() -> None:
    assert set(MESSAGE_STRATEGIES) == set(MESSAGE_CLASSES.values())


def test_every_typed_extension_body_has_a_strategy() -> None:
    # Anything in extensions.py with a decode classmethod is an extension body the fuzzing must cover.
    bodies = {
        cls
        for _, cls in inspect.getmembers(extensions_module, inspect.isclass)
        if cls.__module__ == extensions_module.__name__ and hasattr(cls, "decode")
    }
    assert bodies == set(EXTENSION_STRATEGIES)


MESSAGES = sorted(MESSAGE_STRATEGIES.items(), key=lambda kv: kv[0].__name__)
BODIES = sorted(EXTENSION_STRATEGIES.items(), key=lambda kv: kv[0].__name__)
message_ids = [cls.__name__ for cls, _ in MESSAGES]
body_ids = [cls.__name__ for cls, _ in BODIES]


# --- 1. round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "strategy"), MESSAGES, ids=message_ids)
@FAST
@given(data=st.data())
def test_message_round_trip(cls: type, strategy: st.SearchStrategy[Any], data: st.DataObject) -> None:
    message = data.draw(strategy)
    raw = message.encode()
    assert raw[0] == cls.msg_type
    assert int.from_bytes(raw[1:4], "big") == len(raw) - 4
    decoded = cls.decode(raw[4:])
    assert decoded == message
    assert decoded.encode() == raw
    assert decode_message(raw[0], memoryview(raw)[4:]) == message


@pytest.mark.parametrize(("cls", "strategy"), BODIES, ids=body_ids)
@FAST
@given(data=st.data())
def test_extension_body_round_trip(cls: type, strategy: st.SearchStrategy[Any], data: st.DataObject) -> None:
    body = data.draw(strategy)
    raw = body.encode()
    decoded = cls.decode(raw)
    assert decoded == body
    assert decoded.encode() == raw


@FAST
@given(exts=st.lists(extension, max_size=10))
def test_extension_block_round_trip_keeps_order_and_duplicates(exts: list[Extension]) -> None:
    raw = encode_extensions(exts)
    r = Reader(raw)
    assert decode_extensions(r, "test") == exts
    assert r.at_end()


@FAST
@given(psks=EXTENSION_STRATEGIES[OfferedPsks])
def test_offered_psks_binders_length_matches_the_wire(psks: OfferedPsks) -> None:
    # The binder computation truncates the hello by exactly this many bytes (RFC 8446 §4.2.11.2).
    assert psks.encode().endswith(psks.encode_binders())
    assert len(psks.encode_binders()) == psks.binders_length()


# --- 2. decoders on hostile bytes ---------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with a few flips, truncations, extensions, insertions or deletions."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "extend", "insert", "delete"]))
        # A position relative to the current length: the strategy draws the same way whatever the input's size.
        pos = draw(st.integers(0, 1 << 16)) % max(len(data), 1)
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0xFF, 0x01, 0x80, 0x7F]))
        elif op == "truncate":
            del data[pos:]
        elif op == "extend":
            data += draw(blob(1, 8))
        elif op == "insert":
            data[pos:pos] = draw(blob(1, 4))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 4))]
    return bytes(data)


def check_decoder(decode: Callable[[bytes], Any], data: bytes) -> None:
    """``decode`` returns a value that re-encodes stably, or raises TLSAlert(decode_error): nothing else."""
    try:
        value = decode(data)
    except TLSAlert as alert:
        assert alert.description == AlertDescription.decode_error, (data.hex(), alert)
        return
    except Exception as exc:  # the property under test: anything else is a bug
        pytest.fail(f"{decode!r} raised {type(exc).__name__}: {exc} on input {data.hex()}")
    raw = value.encode()
    if isinstance(value, tuple(MESSAGE_CLASSES.values())):
        raw = raw[4:]
    assert decode(raw) == value, data.hex()


def _message_body(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return strategy.map(lambda m: m.encode()[4:])


@pytest.mark.parametrize(("cls", "strategy"), MESSAGES, ids=message_ids)
@FUZZ
@given(data=st.data())
def test_message_decode_on_random_and_mutated_bytes(cls: type, strategy: st.SearchStrategy[Any], data: Any) -> None:
    raw = data.draw(st.one_of(blob(0, 300), mutated(_message_body(strategy))))
    check_decoder(cls.decode, raw)


@pytest.mark.parametrize(("cls", "strategy"), BODIES, ids=body_ids)
@FUZZ
@given(data=st.data())
def test_extension_decode_on_random_and_mutated_bytes(cls: type, strategy: st.SearchStrategy[Any], data: Any) -> None:
    raw = data.draw(st.one_of(blob(0, 300), mutated(strategy.map(lambda b: b.encode()))))
    check_decoder(cls.decode, raw)


@FUZZ
@given(msg_type=u8, body=blob(0, 200))
def test_decode_message_on_any_type_and_body(msg_type: int, body: bytes) -> None:
    try:
        message = decode_message(msg_type, body)
    except TLSAlert as alert:
        assert alert.description == AlertDescription.decode_error
        if msg_type not in MESSAGE_CLASSES:
            return
    except Exception as exc:
        pytest.fail(f"decode_message({msg_type}) raised {type(exc).__name__}: {exc} on {body.hex()}")
    else:
        assert msg_type in MESSAGE_CLASSES and isinstance(message, MESSAGE_CLASSES[msg_type])


# --- 3. the record layer ------------------------------------------------------------------------------

record_strategy = st.tuples(st.sampled_from([int(t) for t in ContentType]), blob(0, 300))


@FAST
@given(records=st.lists(record_strategy, max_size=8), cuts=st.lists(st.integers(0, 3000), max_size=6))
def test_next_record_returns_exactly_the_records_in_any_chunking(
    records: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(record(t, p) for t, p in records)
    layer = RecordLayer()
    got: list[tuple[int, bytes]] = []
    points = sorted({c for c in cuts if c < len(stream)} | {len(stream)})
    start = 0
    for end in points:
        layer.feed(stream[start:end])
        start = end
        while (rec := layer.next_record()) is not None:
            got.append(rec)
    assert got == records
    assert layer.buffered == 0


@FUZZ
@given(
    data=st.one_of(
        blob(0, 400),
        mutated(st.lists(record_strategy, max_size=4).map(lambda rs: b"".join(record(t, p) for t, p in rs))),
    )
)
def test_next_record_on_random_bytes(data: bytes) -> None:
    layer = RecordLayer()
    layer.feed(data)
    consumed = 0
    while True:
        try:
            rec = layer.next_record()
        except TLSAlert as alert:
            # Only the header can be wrong in plaintext mode (RFC 8446 §5, §5.1).
            head = data[consumed : consumed + HEADER]
            length = int.from_bytes(head[3:5], "big")
            if head[0] not in {int(t) for t in ContentType}:
                assert alert.description == AlertDescription.unexpected_message
            else:
                assert alert.description == AlertDescription.record_overflow and length > MAX_PLAINTEXT
            return
        except Exception as exc:
            pytest.fail(f"next_record raised {type(exc).__name__}: {exc} on {data.hex()}")
        if rec is None:
            break
        content_type, payload = rec
        assert data[consumed : consumed + HEADER + len(payload)] == record(
            content_type, payload, data[consumed + 1 : consumed + 3]
        )
        consumed += HEADER + len(payload)
    assert layer.buffered == len(data) - consumed < HEADER + MAX_CIPHERTEXT


# --- 4. the engine on hostile bytes -------------------------------------------------------------------


def check_engine_outcome(conn: Any, events: list[Event], fed: bytes, before: tuple[type, ...] = ()) -> None:
    """The engine's promise for one receive_data call. ``before``: event types that may precede a failure
    (a client can complete its handshake and then fail on garbage appended to the server's flight)."""
    assert isinstance(events, list) and all(isinstance(e, Event) for e in events)
    alerts = [e for e in events if isinstance(e, AlertSent)]
    if not alerts:
        # Random bytes can spell a well-formed alert record from the "peer": that ends the connection too.
        received = [e for e in events if isinstance(e, AlertReceived)]
        assert conn.failed == bool(received) and events[len(events) - len(received) :] == received, events
        return
    assert len(alerts) == 1 and events[-1] is alerts[0], (events, fed.hex())
    assert all(isinstance(e, before) for e in events[:-1]), (events, fed.hex())
    alert = alerts[0]
    description = AlertDescription(alert.description)  # a real alert code
    assert alert.name == description.name
    assert description != AlertDescription.internal_error, f"{alert.reason} on input {fed.hex()}"
    out = conn.data_to_send()
    records = parse_records(out)
    last_type, last_payload = records[-1]
    if last_type == ContentType.alert:
        assert out.endswith(plaintext_alert(description))
    else:
        # The engine had write keys: the alert is protected (2 bytes, the inner type and a 16-byte tag).
        assert last_type == ContentType.application_data and len(last_payload) == 2 + 1 + 16, records
    assert conn.failed
    assert conn.receive_data(fed) == [] and conn.data_to_send() == b""


def _reframe(msg_type: int, body: bytes) -> bytes:
    """A handshake message in one plaintext record, with both length fields made to fit the body."""
    message = frame(msg_type, body[: (1 << 14) - 4])
    return record(ContentType.handshake, message, b"\x03\x01")


@ENGINE
@given(data=st.data())
def test_server_on_random_bytes(pki: DevPKI, data: st.DataObject) -> None:
    fed = data.draw(
        st.one_of(
            blob(0, 300),
            blob(0, 300).map(lambda b: b"\x16\x03\x01" + len(b).to_bytes(2, "big") + b),
            blob(0, 300).map(lambda b: _reframe(HandshakeType.client_hello, b)),
            st.tuples(u8, blob(0, 300)).map(lambda tb: _reframe(*tb)),
        )
    )
    server = TLSServer(server_config(pki))
    check_engine_outcome(server, server.receive_data(fed), fed)


@pytest.fixture(scope="module")
def real_client_hello(pki: DevPKI) -> bytes:
    """A real PQ ClientHello as a client sends it (one record), captured once."""
    return TLSClient(client_config(pki, alpn_protocols=(b"h2", b"http/1.1"))).data_to_send()


@ENGINE
@given(data=st.data())
def test_server_on_mutated_client_hello(pki: DevPKI, real_client_hello: bytes, data: st.DataObject) -> None:
    body = real_client_hello[HEADER + 4 :]
    fed = data.draw(
        st.one_of(
            mutated(st.just(real_client_hello)),  # anywhere, framing included
            mutated(st.just(body)).map(lambda b: _reframe(HandshakeType.client_hello, b)),  # deep in the body
        )
    )
    server = TLSServer(server_config(pki, alpn_protocols=(b"h2",)))
    events = server.receive_data(fed)
    check_engine_outcome(server, events, fed)
    if not server.failed and events == []:
        out = server.data_to_send()
        if out:  # a mutation the server may legitimately accept (a random byte, GREASE...): it answered properly
            (content_type, payload), *_ = parse_records(out)
            assert content_type == ContentType.handshake
            assert handshake_messages(payload)[0][0] == HandshakeType.server_hello


def _fresh_flight(pki: DevPKI) -> tuple[TLSClient, bytes]:
    client = TLSClient(client_config(pki))
    server = TLSServer(server_config(pki, session_tickets=0))
    assert server.receive_data(client.data_to_send()) == []
    return client, server.data_to_send()


@ENGINE
@given(data=st.data())
def test_client_on_mutated_server_flight(pki: DevPKI, data: st.DataObject) -> None:
    client, flight = _fresh_flight(pki)
    sh_record_len = HEADER + int.from_bytes(flight[3:5], "big")
    sh_body = flight[HEADER + 4 : sh_record_len]
    choice = data.draw(st.sampled_from(["anywhere", "server-hello", "server-hello-body"]))
    if choice == "anywhere":
        fed = data.draw(mutated(st.just(flight)))
    elif choice == "server-hello":
        fed = data.draw(mutated(st.just(flight[:sh_record_len]))) + flight[sh_record_len:]
    else:
        body = data.draw(mutated(st.just(sh_body)))
        fed = _reframe(HandshakeType.server_hello, body) + flight[sh_record_len:]
    events = client.receive_data(fed)
    check_engine_outcome(client, events, fed, before=(HandshakeComplete,))
    if not client.failed:
        # Either the mutation was harmless (e.g. legacy_record_version) and the handshake completed,
        # or the client is still waiting for more bytes.
        assert events == [] or [type(e) for e in events] == [HandshakeComplete]


@ENGINE
@given(data=st.data())
def test_client_on_random_bytes_after_its_hello(pki: DevPKI, data: st.DataObject) -> None:
    client = TLSClient(client_config(pki))
    client.data_to_send()
    fed = data.draw(
        st.one_of(
            blob(0, 300),
            st.tuples(u8, blob(0, 300)).map(lambda tb: _reframe(*tb)),
            blob(0, 200).map(lambda b: _reframe(HandshakeType.server_hello, b)),
        )
    )
    check_engine_outcome(client, client.receive_data(fed), fed)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(1, 6000), max_size=8))
def test_handshake_completes_whatever_the_chunking(pki: DevPKI, cuts: list[int]) -> None:
    # The positive counterpart: a real handshake, bytes delivered in arbitrary pieces, still completes.
    client = TLSClient(client_config(pki))
    server = TLSServer(server_config(pki))

    def deliver(data: bytes, to: Any) -> list[Event]:
        events: list[Event] = []
        start = 0
        for end in sorted({c for c in cuts if c < len(data)} | {len(data)}):
            events += to.receive_data(data[start:end])
            start = end
        return events

    server_events = deliver(client.data_to_send(), server)
    client_events = deliver(server.data_to_send(), client)
    server_events += deliver(client.data_to_send(), server)
    more_client, more_server = pump(client, server)
    done = [e for e in client_events + more_client + server_events + more_server if isinstance(e, HandshakeComplete)]
    assert len(done) == 2 and all(d.group == "X25519MLKEM768" for d in done)


def test_dataclass_equality_is_what_round_trips_compare() -> None:
    # The round-trip assertions compare dataclasses: make sure a changed field really makes them unequal.
    a = ClientHello(random=bytes(32), cipher_suites=[0x1301], extensions=[Extension(ExtensionType.key_share, b"x")])
    b = dataclasses.replace(a, extensions=[Extension(ExtensionType.key_share, b"y")])
    assert a != b and ClientHello.decode(a.encode()[4:]) != b


# --- the extension block: the fast decoder against the plain reading of RFC 8446 §4.2 --------------------


def _extensions_by_reader(r: Reader, what: str) -> list[Extension]:
    """extension_type and vector<0..2^16-1> of extension_data, field by field with ``Reader``."""
    block = r.sub16(f"{what} extensions")
    out = []
    while not block.at_end():
        ext_type = block.uint16("extension type")
        try:
            data = block.vector16("extension")
        except TLSAlert as exc:
            raise TLSAlert(AlertDescription.decode_error, f"extension 0x{ext_type:04x}: {exc.reason}") from None
        out.append(Extension(ext_type, data))
    return out


def _outcome(decode: Callable[[Reader, str], list[Extension]], data: bytes) -> tuple[str, Any]:
    reader = Reader(data)
    try:
        extensions = decode(reader, "ClientHello")
    except TLSAlert as exc:
        return "alert", (exc.description, exc.reason)
    return "ok", (extensions, reader.remaining)


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.binary(max_size=64),
    st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40)), max_size=8).flatmap(
        lambda exts: st.sampled_from([0, 1, 2, 3, 5]).map(lambda cut: _cut_block(exts, cut))),
))
def test_extension_block_decodes_as_the_field_by_field_reading_does(data: bytes) -> None:
    """Same extensions, same bytes left, or the same decode_error with the same reason."""
    assert _outcome(decode_extensions, data) == _outcome(_extensions_by_reader, data)


def _cut_block(exts: list[tuple[int, bytes]], cut: int) -> bytes:
    """An extension block (with trailing bytes after it), its last ``cut`` bytes missing from inside it."""
    body = b"".join(Extension(t, d).encode() for t, d in exts)
    block = len(body).to_bytes(2, "big") + body
    return (block[: len(block) - cut] if cut else block + b"\x00\x01") if body else block


@pytest.mark.parametrize(("block", "reason"), [
    (b"\x00\x01\x00", "truncated extension type"),
    (b"\x00\x03\x00\x2b\x00", "extension 0x002b: truncated extension"),
    (b"\x00\x06\x00\x2b\x00\x05\x03\x04", "extension 0x002b: truncated extension: need 5 bytes, have 2"),
    (b"\x00\x09\x00\x2b", "truncated ClientHello extensions: need 9 bytes, have 2"),
])
def test_a_truncated_extension_is_named_in_the_alert(block: bytes, reason: str) -> None:
    with pytest.raises(TLSAlert) as caught:
        decode_extensions(Reader(block), "ClientHello")
    assert caught.value.description == AlertDescription.decode_error and caught.value.reason == reason


# --- session tickets: what the server seals is what it opens, and nothing else opens --------------------------

ticket_states = st.builds(
    TicketState, cipher_suite=u16, psk=st.binary(min_size=32, max_size=48),
    authenticated_at=st.floats(min_value=0, max_value=4e9), lifetime=st.integers(0, 7 * 24 * 3600),
    age_add=st.integers(0, 2**32 - 1), server_name=st.binary(max_size=255), alpn_protocol=st.binary(max_size=255),
    context=st.binary(max_size=32), client_certificate=st.binary(max_size=3000),
)


@given(state=ticket_states, cut=st.integers(min_value=1), flip=st.integers(min_value=0))
def test_a_sealed_ticket_opens_to_its_state_and_a_damaged_one_to_none(state: TicketState, cut: int, flip: int) -> None:
    sealer = TicketSealer([bytes(range(32))])
    ticket = sealer.seal(state)
    assert sealer.open(ticket) == state
    assert TicketSealer([bytes(32)]).open(ticket) is None  # another server's key
    assert sealer.open(ticket[: len(ticket) - 1 - cut % len(ticket)]) is None  # truncated
    damaged = bytearray(ticket)
    damaged[flip % len(damaged)] ^= 0x01
    assert sealer.open(bytes(damaged)) is None


@given(junk=st.binary(max_size=400))
def test_any_bytes_as_a_ticket_open_to_none_without_raising(junk: bytes) -> None:
    assert TicketSealer([bytes(range(32))]).open(junk) is None
