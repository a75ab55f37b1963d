"""Hostile input against the engine: each case names the exact alert (event and wire bytes) RFC 8446 asks for.

Bad ClientHellos are built with the codec from a real client's hello, so that each test breaks exactly
one thing. Where the engine has keys, the alert on the wire is protected: the test hands it to the peer
and checks that the peer reads the same alert.
"""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from pqproxy.tls.alerts import AlertDescription as AD
from pqproxy.tls.client import ClientHandshake, TLSClient
from pqproxy.tls.codepoints import (
    HELLO_RETRY_REQUEST_RANDOM,
    TLS12,
    ContentType,
    ExtensionType,
    HandshakeType,
    NamedGroup,
)
from pqproxy.tls.config import DEFAULT_MAX_CLIENT_HELLO
from pqproxy.tls.connection import MAX_EARLY_DATA_SKIP, TLSConnection
from pqproxy.tls.events import AlertReceived, ApplicationData, Event, HandshakeComplete, SessionTicketReceived
from pqproxy.tls.extensions import (
    KeyShareClientHello,
    KeyShareEntry,
    KeyShareServerHello,
    NamedGroupList,
    OfferedPsks,
    PskIdentity,
    SupportedVersionsClient,
)
from pqproxy.tls.groups import GROUPS
from pqproxy.tls.messages import ClientHello, EncryptedExtensions, Extension, ServerHello, frame
from pqproxy.tls.record import MAX_CIPHERTEXT, MAX_PLAINTEXT, split_into_records
from pqproxy.tls.server import TLSServer
from pqproxy.tls.session import SessionTicket, TicketSealer
from tests.tls_helpers import (
    DevPKI,
    assert_dead,
    assert_fatal,
    assert_plaintext_alert_sent,
    client_config,
    client_hello_of,
    handshake,
    handshake_messages,
    hello_record,
    of_type,
    parse_records,
    plaintext_alert,
    pump,
    record,
    replace_extension,
    server_config,
    server_hello_of,
    without_extension,
)

X25519MLKEM768 = NamedGroup.X25519MLKEM768
SECP256R1MLKEM768 = NamedGroup.SecP256r1MLKEM768
SECP384R1MLKEM1024 = NamedGroup.SecP384r1MLKEM1024
ML_KEM_Q = 3329

# X25519 u-coordinates whose shared secret is all zero whatever the private key (RFC 7748 §6.1; small order).
X25519_SMALL_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
]


# --- building blocks ----------------------------------------------------------------------------------


def fresh_hello(pki: DevPKI, **kw: object) -> ClientHello:
    return client_hello_of(TLSClient(client_config(pki, **kw)))[0]


def offering(pki: DevPKI, shares: dict[int, bytes], groups: list[int] | None = None) -> ClientHello:
    """A real client's hello whose key_share and supported_groups are replaced."""
    hello = fresh_hello(pki)
    entries = KeyShareClientHello([KeyShareEntry(g, s) for g, s in shares.items()]).encode()
    exts = replace_extension(hello.extensions, ExtensionType.key_share, entries)
    hello.extensions = replace_extension(
        exts, ExtensionType.supported_groups, NamedGroupList(list(groups or shares)).encode()
    )
    return hello


def serve(pki: DevPKI, data: bytes, **kw: object) -> tuple[TLSServer, list[Event]]:
    server = TLSServer(server_config(pki, **kw))
    return server, server.receive_data(data)


def expect_server_alert(pki: DevPKI, hello: ClientHello | bytes, description: AD, **kw: object) -> None:
    data = hello if isinstance(hello, bytes) else hello_record(hello)
    server, events = serve(pki, data, **kw)
    assert_plaintext_alert_sent(server, events, description)


def expect_server_hello(server: TLSServer, events: list[Event]) -> ServerHello:
    """The server accepted the hello: no event yet, and its flight starts with a real ServerHello."""
    assert events == [] and not server.failed
    hello, _ = server_hello_of(server.data_to_send())
    assert hello.random != HELLO_RETRY_REQUEST_RANDOM
    return hello


def real_share(group: int) -> bytes:
    return GROUPS[group].client_generate().key_exchange


def set_coefficient(ek: bytearray, offset: int, index: int, value: int) -> None:
    """Write the 12-bit coefficient ``index`` of the ByteEncode12 vector starting at ``offset`` (FIPS 203 §4.2.1)."""
    pos = offset + 3 * (index // 2)
    if index % 2 == 0:
        ek[pos] = value & 0xFF
        ek[pos + 1] = (ek[pos + 1] & 0xF0) | (value >> 8)
    else:
        ek[pos + 1] = (ek[pos + 1] & 0x0F) | ((value & 0x0F) << 4)
        ek[pos + 2] = value >> 4


def get_coefficient(ek: bytes, offset: int, index: int) -> int:
    pos = offset + 3 * (index // 2)
    if index % 2 == 0:
        return ek[pos] | ((ek[pos + 1] & 0x0F) << 8)
    return (ek[pos + 1] >> 4) | (ek[pos + 2] << 4)


def established(pki: DevPKI) -> tuple[TLSClient, TLSServer]:
    hs = handshake(client_config(pki), server_config(pki, session_tickets=0))
    return hs.client, hs.server


def assert_peer_reads_alert(out: bytes, peer: TLSConnection, description: AD) -> None:
    """A protected alert: one application_data record (2 bytes, type, tag) that the peer reads as ``description``."""
    records = parse_records(out)
    assert records[-1][0] == ContentType.application_data and len(records[-1][1]) == 2 + 1 + 16, records
    events = peer.receive_data(out)
    assert of_type(events, AlertReceived) == [AlertReceived(int(description), description.name)], events
    assert peer.failed


# --- framing: short input waits, long records and unknown types fail -------------------------------------


@pytest.mark.parametrize("cut", [1, 4, 5, 8, 9, 200, -1])
def test_truncated_input_waits_without_events_or_output(pki: DevPKI, cut: int) -> None:
    # Cuts inside the record header (1, 4), right after it (5), inside the handshake header (8),
    # after it (9), inside the body (200) and one byte short of the whole hello (-1).
    data = hello_record(fresh_hello(pki))
    server = TLSServer(server_config(pki))
    assert server.receive_data(data[:cut]) == []
    assert server.data_to_send() == b""
    assert not server.failed
    # Nothing was lost: the rest completes the hello and the server answers.
    expect_server_hello(server, server.receive_data(data[cut:]))


def test_hello_split_over_records_and_bytes_is_reassembled(pki: DevPKI) -> None:
    data = hello_record(fresh_hello(pki), sizes=[1, 2, 3, 500])
    assert len(parse_records(data)) == 5
    server = TLSServer(server_config(pki))
    for i in range(len(data) - 1):
        assert server.receive_data(data[i : i + 1]) == []
    assert server.data_to_send() == b""
    expect_server_hello(server, server.receive_data(data[-1:]))


def test_truncated_handshake_message_waits(pki: DevPKI) -> None:
    # A whole record that holds only part of a handshake message: the engine waits for the next record.
    body = fresh_hello(pki).encode()
    server = TLSServer(server_config(pki))
    assert server.receive_data(record(ContentType.handshake, body[:3])) == []
    assert server.receive_data(record(ContentType.handshake, body[3:700])) == []
    assert server.data_to_send() == b"" and not server.failed
    expect_server_hello(server, server.receive_data(record(ContentType.handshake, body[700:])))


@pytest.mark.parametrize("length", [MAX_CIPHERTEXT + 1, 0xFFFF])
def test_record_longer_than_limit_is_record_overflow_from_the_header(pki: DevPKI, length: int) -> None:
    # Refused from the 5-byte header alone: the engine never buffers an oversized record.
    expect_server_alert(pki, b"\x16\x03\x01" + length.to_bytes(2, "big"), AD.record_overflow)


def test_plaintext_record_over_2_14_is_record_overflow(pki: DevPKI) -> None:
    expect_server_alert(pki, record(ContentType.handshake, bytes(MAX_PLAINTEXT + 1)), AD.record_overflow)


def test_protected_record_over_limit_is_record_overflow(pki: DevPKI) -> None:
    client, server = established(pki)
    events = server.receive_data(b"\x17\x03\x03" + (MAX_CIPHERTEXT + 1).to_bytes(2, "big"))
    assert_fatal(events, AD.record_overflow)
    assert_peer_reads_alert(server.data_to_send(), client, AD.record_overflow)
    assert_dead(server)


@pytest.mark.parametrize("content_type", [0, 19, 24, 25, 0x80, 0xFF])
def test_unknown_content_type_is_unexpected_message(pki: DevPKI, content_type: int) -> None:
    expect_server_alert(pki, record(content_type, b"\x01\x00\x00\x00"), AD.unexpected_message)


def test_empty_handshake_record_is_unexpected_message(pki: DevPKI) -> None:
    expect_server_alert(pki, record(ContentType.handshake, b""), AD.unexpected_message)


def test_unknown_handshake_type_first_is_unexpected_message(pki: DevPKI) -> None:
    expect_server_alert(
        pki, record(ContentType.handshake, frame(HandshakeType.finished, bytes(32))), AD.unexpected_message
    )


def test_malformed_alert_record_is_decode_error(pki: DevPKI) -> None:
    expect_server_alert(pki, record(ContentType.alert, b"\x02\x28\x00"), AD.decode_error)


# --- key shares (REFERENCE.md §1 mandatory checks) ----------------------------------------------------


@pytest.mark.parametrize(
    ("group", "length"),
    [
        (X25519MLKEM768, 1215),
        (X25519MLKEM768, 1217),
        (X25519MLKEM768, 1184),  # the ML-KEM part alone
        (X25519MLKEM768, 32),  # the X25519 part alone
        (SECP256R1MLKEM768, 1248),
        (SECP256R1MLKEM768, 1250),
        (SECP384R1MLKEM1024, 1664),
        (NamedGroup.MLKEM768, 1183),
        (NamedGroup.MLKEM1024, 1569),
        (NamedGroup.x25519, 31),
        (NamedGroup.x25519, 33),
        (NamedGroup.secp256r1, 64),
    ],
)
def test_key_share_of_wrong_length_is_illegal_parameter(pki: DevPKI, group: int, length: int) -> None:
    share = real_share(group)
    share = share[:length] if length <= len(share) else share + os.urandom(length - len(share))
    expect_server_alert(pki, offering(pki, {group: share}), AD.illegal_parameter)


def test_wrong_length_hybrid_next_to_a_good_x25519_share_is_still_illegal_parameter(pki: DevPKI) -> None:
    # The server picks the hybrid (PQ first) and must not quietly fall back to the classical share.
    hello = offering(
        pki, {X25519MLKEM768: real_share(X25519MLKEM768)[:1215], NamedGroup.x25519: real_share(NamedGroup.x25519)}
    )
    expect_server_alert(pki, hello, AD.illegal_parameter)


# (group, offset of the ML-KEM ek inside the share, k): X25519MLKEM768 puts ML-KEM first, the NIST hybrids after ECDH.
EK_LAYOUT = [
    (X25519MLKEM768, 0, 3),
    (SECP256R1MLKEM768, 65, 3),
    (SECP384R1MLKEM1024, 97, 4),
    (NamedGroup.MLKEM768, 0, 3),
    (NamedGroup.MLKEM1024, 0, 4),
]


@pytest.mark.parametrize(("group", "offset", "k"), EK_LAYOUT)
@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("value", [ML_KEM_Q, 0xFFF])
def test_encapsulation_key_failing_the_modulus_check_is_illegal_parameter(
    pki: DevPKI, group: int, offset: int, k: int, where: str, value: int
) -> None:
    share = bytearray(real_share(group))
    index = 0 if where == "first" else 256 * k - 1
    set_coefficient(share, offset, index, value)
    assert get_coefficient(bytes(share), offset, index) == value
    expect_server_alert(pki, offering(pki, {group: bytes(share)}), AD.illegal_parameter)


@pytest.mark.parametrize(("group", "offset", "k"), EK_LAYOUT)
def test_encapsulation_key_with_coefficient_q_minus_1_is_accepted(pki: DevPKI, group: int, offset: int, k: int) -> None:
    # The control for the test above: the largest legal coefficient, at both ends, passes.
    share = bytearray(real_share(group))
    set_coefficient(share, offset, 0, ML_KEM_Q - 1)
    set_coefficient(share, offset, 256 * k - 1, ML_KEM_Q - 1)
    server, events = serve(pki, hello_record(offering(pki, {group: bytes(share)})))
    hello = expect_server_hello(server, events)
    ks = KeyShareServerHello.decode(next(e.data for e in hello.extensions if e.type == ExtensionType.key_share))
    assert ks.server_share.group == group
    assert len(ks.server_share.key_exchange) == GROUPS[group].server_share_len


@pytest.mark.parametrize("point", X25519_SMALL_ORDER, ids=["zero", "one", "order8"])
def test_x25519_share_giving_all_zero_secret_is_illegal_parameter(pki: DevPKI, point: bytes) -> None:
    expect_server_alert(pki, offering(pki, {NamedGroup.x25519: point}), AD.illegal_parameter)


@pytest.mark.parametrize("point", X25519_SMALL_ORDER, ids=["zero", "one", "order8"])
def test_hybrid_with_all_zero_x25519_part_is_illegal_parameter(pki: DevPKI, point: bytes) -> None:
    ek = real_share(X25519MLKEM768)[:1184]
    expect_server_alert(pki, offering(pki, {X25519MLKEM768: ek + point}), AD.illegal_parameter)


def _p256_point() -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return (
        ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )


P256_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF


def _bad_p256_points() -> dict[str, bytes]:
    good = _p256_point()
    off_curve = good[:-1] + bytes((good[-1] ^ 1,))
    x_too_big = b"\x04" + P256_P.to_bytes(32, "big") + good[33:]
    return {
        "off-curve": off_curve,
        "compressed": bytes((2 + (good[-1] & 1),)) + good[1:33],
        "compressed-prefix-65-bytes": b"\x02" + good[1:],
        "hybrid-prefix": b"\x06" + good[1:],
        "x-not-reduced": x_too_big,
        "infinity": b"\x00",
        "zeros": bytes(65),
    }


@pytest.mark.parametrize("kind", list(_bad_p256_points()))
def test_bad_p256_share_is_illegal_parameter(pki: DevPKI, kind: str) -> None:
    point = _bad_p256_points()[kind]
    expect_server_alert(pki, offering(pki, {NamedGroup.secp256r1: point}), AD.illegal_parameter)


@pytest.mark.parametrize("kind", ["off-curve", "compressed-prefix-65-bytes", "zeros"])
def test_hybrid_with_bad_p256_part_is_illegal_parameter(pki: DevPKI, kind: str) -> None:
    point = _bad_p256_points()[kind]
    share = point + real_share(SECP256R1MLKEM768)[65:]
    expect_server_alert(pki, offering(pki, {SECP256R1MLKEM768: share}), AD.illegal_parameter)


def test_p384_share_off_curve_is_illegal_parameter(pki: DevPKI) -> None:
    good = real_share(NamedGroup.secp384r1)
    bad = good[:-1] + bytes((good[-1] ^ 1,))
    expect_server_alert(pki, offering(pki, {NamedGroup.secp384r1: bad}), AD.illegal_parameter)


def test_two_shares_for_one_group_is_illegal_parameter(pki: DevPKI) -> None:
    share = real_share(NamedGroup.x25519)
    hello = fresh_hello(pki, groups=(NamedGroup.x25519,))
    entries = KeyShareClientHello([KeyShareEntry(NamedGroup.x25519, share)] * 2).encode()
    hello.extensions = replace_extension(hello.extensions, ExtensionType.key_share, entries)
    expect_server_alert(pki, hello, AD.illegal_parameter)


def test_key_share_for_group_not_in_supported_groups_is_illegal_parameter(pki: DevPKI) -> None:
    hello = offering(pki, {NamedGroup.x25519: real_share(NamedGroup.x25519)}, groups=[NamedGroup.secp256r1])
    expect_server_alert(pki, hello, AD.illegal_parameter)


# --- ClientHello size ---------------------------------------------------------------------------------


def padded(hello: ClientHello, body_len: int) -> ClientHello:
    """The hello with a padding extension (RFC 7685) that makes its body exactly ``body_len`` bytes."""
    missing = body_len - (len(hello.encode()) - 4) - 4
    assert missing >= 0
    hello.extensions = [*hello.extensions, Extension(ExtensionType.padding, bytes(missing))]
    assert len(hello.encode()) - 4 == body_len
    return hello


def test_client_hello_over_configured_cap_is_illegal_parameter(pki: DevPKI) -> None:
    expect_server_alert(pki, padded(fresh_hello(pki), 4097), AD.illegal_parameter, max_client_hello_size=4096)


def test_client_hello_at_configured_cap_is_accepted(pki: DevPKI) -> None:
    server, events = serve(pki, hello_record(padded(fresh_hello(pki), 4096)), max_client_hello_size=4096)
    expect_server_hello(server, events)


def test_140k_client_hello_is_refused_from_its_first_record(pki: DevPKI) -> None:
    # Built by hand: a legal hello is at most ~128 KiB (a 64 KiB extension block beside 64 KiB of cipher suites,
    # hence OpenSSL's and our 131,396-byte bound), so only the length field says 140 KiB.
    body = fresh_hello(pki).encode()[4:]
    message = frame(HandshakeType.client_hello, body + bytes(140 * 1024 - len(body)))
    data = split_into_records(ContentType.handshake, message)
    first = parse_records(data)[0]
    assert len(parse_records(data)) == 9 and DEFAULT_MAX_CLIENT_HELLO < 140 * 1024
    server = TLSServer(server_config(pki))
    events = server.receive_data(record(first[0], first[1], b"\x03\x01"))
    assert_plaintext_alert_sent(server, events, AD.illegal_parameter)


def test_real_large_pq_client_hello_under_default_cap_succeeds(pki: DevPKI) -> None:
    cfg = client_config(pki, key_share_groups=(X25519MLKEM768, SECP256R1MLKEM768, NamedGroup.x25519))
    hs = handshake(cfg, server_config(pki))
    done = of_type(hs.server_events, HandshakeComplete)[0]
    assert done.client_hello_size > 2300
    assert done.group == "X25519MLKEM768" and not done.hello_retry


# --- extension rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ext_type",
    [
        ExtensionType.supported_groups,
        ExtensionType.key_share,
        ExtensionType.server_name,
        ExtensionType.supported_versions,
        0x1234,
        0x0A0A,
    ],
)
def test_duplicate_extension_is_illegal_parameter(pki: DevPKI, ext_type: int) -> None:
    hello = fresh_hello(pki)
    existing = next((e for e in hello.extensions if e.type == ext_type), Extension(ext_type, b""))
    if existing not in hello.extensions:
        hello.extensions.insert(0, existing)
    hello.extensions.insert(1, existing)
    expect_server_alert(pki, hello, AD.illegal_parameter)


def _psk_extension() -> Extension:
    return Extension(ExtensionType.pre_shared_key, OfferedPsks([PskIdentity(b"ticket", 0)], [bytes(32)]).encode())


def test_pre_shared_key_not_last_is_illegal_parameter(pki: DevPKI) -> None:
    hello = fresh_hello(pki)
    hello.extensions.insert(len(hello.extensions) - 1, _psk_extension())
    assert hello.extensions[-1].type != ExtensionType.pre_shared_key
    expect_server_alert(pki, hello, AD.illegal_parameter)


def test_unknown_psk_last_is_ignored_and_full_handshake_follows(pki: DevPKI) -> None:
    # The control for the test above: the same PSK, last, is simply not found.
    hello = fresh_hello(pki)
    hello.extensions.append(_psk_extension())
    expect_server_hello(*serve(pki, hello_record(hello)))


def test_tls12_only_client_hello_is_protocol_version(pki: DevPKI) -> None:
    hello = fresh_hello(pki)
    hello.extensions = without_extension(hello.extensions, ExtensionType.supported_versions)
    expect_server_alert(pki, hello, AD.protocol_version)


def test_supported_versions_without_tls13_is_protocol_version(pki: DevPKI) -> None:
    hello = fresh_hello(pki)
    hello.extensions = replace_extension(
        hello.extensions, ExtensionType.supported_versions, SupportedVersionsClient([TLS12, 0x0302, 0x7F1C]).encode()
    )
    expect_server_alert(pki, hello, AD.protocol_version)


def test_classical_only_client_to_pq_required_server_is_insufficient_security(pki: DevPKI) -> None:
    client = TLSClient(client_config(pki, groups=(NamedGroup.x25519, NamedGroup.secp256r1)))
    server = TLSServer(server_config(pki, require_post_quantum=True))
    events = server.receive_data(client.data_to_send())
    assert_fatal(events, AD.insufficient_security)
    out = server.data_to_send()
    assert out == plaintext_alert(AD.insufficient_security)
    assert client.receive_data(out) == [AlertReceived(int(AD.insufficient_security), "insufficient_security")]
    assert_dead(server)


def test_pq_client_to_pq_required_server_succeeds_even_through_hello_retry(pki: DevPKI) -> None:
    # Offers a hybrid group but sends only an X25519 share: the server must HRR into the hybrid, not refuse.
    hs = handshake(
        client_config(pki, key_share_groups=(NamedGroup.x25519,)), server_config(pki, require_post_quantum=True)
    )
    done = of_type(hs.client_events, HandshakeComplete)[0]
    assert done.hello_retry and done.group == "X25519MLKEM768"


def test_no_common_group_is_handshake_failure(pki: DevPKI) -> None:
    client = TLSClient(client_config(pki, groups=(NamedGroup.x25519,)))
    server = TLSServer(server_config(pki, groups=(NamedGroup.secp256r1,)))
    events = server.receive_data(client.data_to_send())
    assert_fatal(events, AD.handshake_failure)
    out = server.data_to_send()
    assert out == plaintext_alert(AD.handshake_failure)
    assert client.receive_data(out) == [AlertReceived(int(AD.handshake_failure), "handshake_failure")]
    assert_dead(server)


# --- the server's flight, at the client ---------------------------------------------------------------


def first_flight(pki: DevPKI, **client_kw: object) -> tuple[TLSClient, TLSServer, bytes]:
    client = TLSClient(client_config(pki, **client_kw))
    server = TLSServer(server_config(pki))
    assert server.receive_data(client.data_to_send()) == []
    return client, server, server.data_to_send()


def with_server_share(flight: bytes, key_exchange: bytes) -> bytes:
    """The flight with the ServerHello's key share replaced (the record re-framed, the rest untouched)."""
    hello, sh_len = server_hello_of(flight)
    ks = KeyShareServerHello.decode(next(e.data for e in hello.extensions if e.type == ExtensionType.key_share))
    share = KeyShareServerHello(KeyShareEntry(ks.server_share.group, key_exchange)).encode()
    hello.extensions = replace_extension(hello.extensions, ExtensionType.key_share, share)
    return record(ContentType.handshake, hello.encode()) + flight[sh_len:]


def server_share_of(flight: bytes) -> KeyShareEntry:
    hello, _ = server_hello_of(flight)
    return KeyShareServerHello.decode(
        next(e.data for e in hello.extensions if e.type == ExtensionType.key_share)
    ).server_share


@pytest.mark.parametrize("length", [1119, 1121, 1088, 32])
def test_server_hybrid_ciphertext_of_wrong_length_is_illegal_parameter(pki: DevPKI, length: int) -> None:
    client, _server, flight = first_flight(pki)
    share = server_share_of(flight)
    assert share.group == X25519MLKEM768 and len(share.key_exchange) == 1120
    bad = share.key_exchange[:length] if length < 1120 else share.key_exchange + b"\x00" * (length - 1120)
    assert_plaintext_alert_sent(client, client.receive_data(with_server_share(flight, bad)), AD.illegal_parameter)


@pytest.mark.parametrize("point", X25519_SMALL_ORDER, ids=["zero", "one", "order8"])
def test_server_hybrid_with_all_zero_x25519_part_is_illegal_parameter(pki: DevPKI, point: bytes) -> None:
    client, _server, flight = first_flight(pki)
    ct = server_share_of(flight).key_exchange[:1088]
    assert_plaintext_alert_sent(
        client, client.receive_data(with_server_share(flight, ct + point)), AD.illegal_parameter
    )


def test_server_hybrid_with_corrupted_ciphertext_fails_on_the_first_protected_record(pki: DevPKI) -> None:
    # Right length, wrong ML-KEM ciphertext: decapsulation implicitly rejects (FIPS 203), the keys differ and
    # EncryptedExtensions does not authenticate.
    client, _server, flight = first_flight(pki)
    share = bytearray(server_share_of(flight).key_exchange)
    share[100] ^= 0x01
    assert_plaintext_alert_sent(client, client.receive_data(with_server_share(flight, bytes(share))), AD.bad_record_mac)


def test_server_choosing_a_group_without_client_share_is_illegal_parameter(pki: DevPKI) -> None:
    client, _server, flight = first_flight(pki)
    hello, sh_len = server_hello_of(flight)
    share = KeyShareServerHello(KeyShareEntry(NamedGroup.secp256r1, _p256_point())).encode()
    hello.extensions = replace_extension(hello.extensions, ExtensionType.key_share, share)
    data = record(ContentType.handshake, hello.encode()) + flight[sh_len:]
    assert_plaintext_alert_sent(client, client.receive_data(data), AD.illegal_parameter)


def test_tampered_server_finished_is_decrypt_error(pki: DevPKI) -> None:
    client = TLSClient(client_config(pki))
    server = TLSServer(server_config(pki))
    send = server.send_handshake

    def tamper(raw: bytes) -> None:  # after the server hashed it: only the client sees the change
        if raw[0] == HandshakeType.finished:
            raw = raw[:-1] + bytes((raw[-1] ^ 0x80,))
        send(raw)

    server.send_handshake = tamper  # type: ignore[method-assign]
    assert server.receive_data(client.data_to_send()) == []
    events = client.receive_data(server.data_to_send())
    # The client has no handshake write key before the server's Finished verifies: the alert goes in the clear,
    # which the server accepts while it waits for the client's flight.
    assert_fatal(events, AD.decrypt_error)
    out = client.data_to_send()
    assert out == plaintext_alert(AD.decrypt_error)
    assert server.receive_data(out) == [AlertReceived(int(AD.decrypt_error), "decrypt_error")]
    assert_dead(client)


def test_server_finished_of_wrong_length_is_decode_error(pki: DevPKI) -> None:
    client = TLSClient(client_config(pki))
    server = TLSServer(server_config(pki))
    send = server.send_handshake

    def shorten(raw: bytes) -> None:
        send(frame(HandshakeType.finished, raw[4:-1]) if raw[0] == HandshakeType.finished else raw)

    server.send_handshake = shorten  # type: ignore[method-assign]
    server.receive_data(client.data_to_send())
    assert_plaintext_alert_sent(client, client.receive_data(server.data_to_send()), AD.decode_error)


# --- records after the handshake ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["first-ciphertext-byte", "last-tag-byte", "header-version", "middle"])
def test_flipped_application_record_byte_is_bad_record_mac(pki: DevPKI, where: str) -> None:
    client, server = established(pki)
    client.send_data(b"attack at dawn" * 10)
    data = bytearray(client.data_to_send())
    pos = {"first-ciphertext-byte": 5, "last-tag-byte": len(data) - 1, "header-version": 2, "middle": len(data) // 2}[
        where
    ]
    data[pos] ^= 0x01
    events = server.receive_data(bytes(data))
    assert_fatal(events, AD.bad_record_mac)
    assert_peer_reads_alert(server.data_to_send(), client, AD.bad_record_mac)
    assert_dead(server)


def test_unflipped_application_record_is_delivered(pki: DevPKI) -> None:
    # The control for the test above.
    client, server = established(pki)
    client.send_data(b"attack at dawn" * 10)
    assert server.receive_data(client.data_to_send()) == [ApplicationData(b"attack at dawn" * 10)]


def test_application_data_before_the_handshake_is_unexpected_message(pki: DevPKI) -> None:
    expect_server_alert(pki, record(ContentType.application_data, b"GET / HTTP/1.1\r\n"), AD.unexpected_message)


def test_application_data_at_client_before_server_hello_is_unexpected_message(pki: DevPKI) -> None:
    client = TLSClient(client_config(pki))
    client.data_to_send()
    events = client.receive_data(record(ContentType.application_data, b"HTTP/1.1 200 OK\r\n"))
    assert_plaintext_alert_sent(client, events, AD.unexpected_message)


def test_protected_garbage_without_early_data_is_bad_record_mac(pki: DevPKI) -> None:
    # Between ClientHello and the client's Finished, with no early_data offered, nothing is skipped.
    client = TLSClient(client_config(pki))
    server = TLSServer(server_config(pki))
    assert server.receive_data(client.data_to_send()) == []
    client.receive_data(server.data_to_send())
    events = server.receive_data(record(ContentType.application_data, os.urandom(100)))
    assert_fatal(events, AD.bad_record_mac)
    assert_peer_reads_alert(server.data_to_send(), client, AD.bad_record_mac)


# --- ChangeCipherSpec ---------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"\x02", b"\x00", b"\x01\x01", b""])
def test_malformed_change_cipher_spec_is_unexpected_message(pki: DevPKI, payload: bytes) -> None:
    client = TLSClient(client_config(pki))
    server = TLSServer(server_config(pki))
    assert server.receive_data(client.data_to_send()) == []
    client.receive_data(server.data_to_send())  # the client now reads with the server's application keys
    events = server.receive_data(record(ContentType.change_cipher_spec, payload))
    assert_fatal(events, AD.unexpected_message)
    assert_peer_reads_alert(server.data_to_send(), client, AD.unexpected_message)
    assert_dead(server)


def test_change_cipher_spec_0x01_after_client_hello_is_ignored(pki: DevPKI) -> None:
    client = TLSClient(client_config(pki))
    server = TLSServer(server_config(pki))
    hello = client.data_to_send()
    events = server.receive_data(hello + record(ContentType.change_cipher_spec, b"\x01"))
    expect_server_hello(server, events)


def test_change_cipher_spec_before_client_hello_is_unexpected_message(pki: DevPKI) -> None:
    # RFC 8446 §5: a ChangeCipherSpec is dropped only "after the first ClientHello message has been sent or
    # received"; before it, it is an unexpected record.
    expect_server_alert(pki, record(ContentType.change_cipher_spec, b"\x01"), AD.unexpected_message)


def test_change_cipher_spec_after_the_handshake_is_unexpected_message(pki: DevPKI) -> None:
    client, server = established(pki)
    events = server.receive_data(record(ContentType.change_cipher_spec, b"\x01"))
    assert_fatal(events, AD.unexpected_message)
    assert_peer_reads_alert(server.data_to_send(), client, AD.unexpected_message)


# --- refused 0-RTT ------------------------------------------------------------------------------------


@pytest.fixture
def early_data_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients built inside the test offer early_data (just before pre_shared_key, which stays last)."""
    build = ClientHandshake._extensions

    def with_early_data(self: ClientHandshake) -> list[Extension]:
        exts = build(self)
        at = len(exts) - 1 if exts and exts[-1].type == ExtensionType.pre_shared_key else len(exts)
        exts.insert(at, Extension(ExtensionType.early_data, b""))
        return exts

    monkeypatch.setattr(ClientHandshake, "_extensions", with_early_data)


def _resumable(pki: DevPKI) -> tuple[SessionTicket, TicketSealer]:
    """A ticket from a first connection and the sealer that opens it."""
    scfg = server_config(pki)
    hs = handshake(client_config(pki), scfg)
    ticket = of_type(hs.client_events, SessionTicketReceived)[0].ticket
    assert scfg.ticket_sealer is not None
    return ticket, scfg.ticket_sealer


def early_data_records(sizes: list[int]) -> bytes:
    """Opaque 0-RTT records as the server sees them: application_data, not decryptable with handshake keys."""
    return b"".join(record(ContentType.application_data, os.urandom(n)) for n in sizes)


@pytest.mark.usefixtures("early_data_client")
@pytest.mark.parametrize("resume", [True, False], ids=["resumption", "full"])
def test_refused_early_data_is_skipped_and_the_handshake_completes(pki: DevPKI, resume: bool) -> None:
    ticket, sealer = _resumable(pki) if resume else (None, None)
    client = TLSClient(client_config(pki, resume_session=ticket))
    server = TLSServer(server_config(pki, **({"ticket_sealer": sealer} if sealer else {})))
    hello_bytes = client.data_to_send()
    hello = ClientHello.decode(handshake_messages(parse_records(hello_bytes)[0][1])[0][1])
    tail = [ExtensionType.early_data, ExtensionType.pre_shared_key] if resume else [ExtensionType.early_data]
    assert [e.type for e in hello.extensions][-len(tail) :] == tail
    first = hello_bytes + early_data_records([1000, 16401, 17, 5000])
    server_events = server.receive_data(first)
    assert server_events == [] and not server.failed
    # Our client refuses an EncryptedExtensions with early_data (unsupported_extension): completing proves the
    # server did not accept it.
    client_events = client.receive_data(server.data_to_send())
    more_client, more_server = pump(client, server)
    done_c = of_type(client_events + more_client, HandshakeComplete)
    done_s = of_type(server_events + more_server, HandshakeComplete)
    assert len(done_c) == len(done_s) == 1
    assert done_s[0].resumed is resume
    # The refused data never surfaces, and the connection carries data afterwards.
    assert not of_type(more_server, ApplicationData)
    client.send_data(b"1-RTT")
    assert server.receive_data(client.data_to_send()) == [ApplicationData(b"1-RTT")]


@pytest.mark.usefixtures("early_data_client")
def test_encrypted_extensions_never_accepts_early_data(pki: DevPKI) -> None:
    ticket, sealer = _resumable(pki)
    client = TLSClient(client_config(pki, resume_session=ticket))
    server = TLSServer(server_config(pki, ticket_sealer=sealer))
    server.receive_data(client.data_to_send())
    sent: list[bytes] = []
    # Read the server's EncryptedExtensions through the client's handshake: record what it decodes.
    handle = client.handshake.handle

    def spy(msg_type: int, body: bytes, raw: bytes) -> None:
        sent.append(raw)
        handle(msg_type, body, raw)

    client.handshake.handle = spy  # type: ignore[method-assign]
    client.receive_data(server.data_to_send())
    ee = [m for m in sent if m[0] == HandshakeType.encrypted_extensions]
    assert len(ee) == 1
    assert all(e.type != ExtensionType.early_data for e in EncryptedExtensions.decode(ee[0][4:]).extensions)


@pytest.mark.usefixtures("early_data_client")
def test_refused_early_data_over_the_budget_is_unexpected_message(pki: DevPKI) -> None:
    client = TLSClient(client_config(pki))
    server = TLSServer(server_config(pki))
    sizes = [MAX_CIPHERTEXT] * (MAX_EARLY_DATA_SKIP // MAX_CIPHERTEXT + 1)
    assert sum(5 + n for n in sizes) > MAX_EARLY_DATA_SKIP
    events = server.receive_data(client.data_to_send() + early_data_records(sizes))
    assert_fatal(events, AD.unexpected_message)
    out = server.data_to_send()
    client.receive_data(out[: len(out) - 24])  # the server's flight: now the client can read the alert
    assert_peer_reads_alert(out[len(out) - 24 :], client, AD.unexpected_message)
    assert_dead(server)


@pytest.mark.usefixtures("early_data_client")
def test_garbage_after_the_first_deprotected_record_is_bad_record_mac(pki: DevPKI) -> None:
    # RFC 8446 §4.2.10: once a record deprotects, it "is treated as the start of the client's second flight";
    # skipping stops there. A client certificate and the server's small record_size_limit make the client's
    # second flight several records.
    client = TLSClient(client_config(pki, certificate_chain=pki.client_chain))
    server = TLSServer(server_config(pki, record_size_limit=64, trust_store=[pki.ca]))
    server.receive_data(client.data_to_send() + early_data_records([300]))
    client.receive_data(server.data_to_send())
    flight = parse_records(client.data_to_send())
    protected = [record(t, p) for t, p in flight if t == ContentType.application_data]
    assert len(protected) >= 2
    assert server.receive_data(protected[0]) == []
    events = server.receive_data(early_data_records([300]))
    assert_fatal(events, AD.bad_record_mac)
    assert_peer_reads_alert(server.data_to_send(), client, AD.bad_record_mac)


@pytest.mark.usefixtures("early_data_client")
def test_second_flight_in_several_records_after_refused_early_data_completes(pki: DevPKI) -> None:
    # The control for the test above: the same flight without garbage inside it.
    client = TLSClient(client_config(pki, certificate_chain=pki.client_chain))
    server = TLSServer(server_config(pki, record_size_limit=64, trust_store=[pki.ca]))
    server.receive_data(client.data_to_send() + early_data_records([300]))
    client.receive_data(server.data_to_send())
    events: list[Event] = []
    for content_type, payload in parse_records(client.data_to_send()):
        events += server.receive_data(record(content_type, payload))
    done = of_type(events, HandshakeComplete)
    assert len(done) == 1 and done[0].peer_certificate is not None


# --- after a fatal alert ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        record(ContentType.application_data, b"x"),
        record(0x63, b"x"),
        b"\x16\x03\x03\xff\xff",
        record(ContentType.change_cipher_spec, b"\x02"),
    ],
)
def test_a_failed_connection_stays_silent(pki: DevPKI, bad: bytes) -> None:
    client = TLSClient(client_config(pki))
    server = TLSServer(server_config(pki))
    events = server.receive_data(bad)
    assert len(events) == 1 and server.failed
    assert server.data_to_send()[:1] == bytes((ContentType.alert,))
    # A perfectly good ClientHello afterwards: nothing happens, nothing is sent.
    assert server.receive_data(client.data_to_send()) == []
    assert server.data_to_send() == b""
    with pytest.raises(RuntimeError):
        server.send_data(b"x")
    assert_dead(server)


def test_a_failed_client_ignores_the_rest_of_the_flight(pki: DevPKI) -> None:
    client, _server, flight = first_flight(pki)
    bad = with_server_share(flight, server_share_of(flight).key_exchange[:1119])
    hello_len = server_hello_of(bad)[1]
    assert_fatal(client.receive_data(bad[:hello_len]), AD.illegal_parameter)
    client.data_to_send()
    assert client.receive_data(bad[hello_len:]) == []
    assert client.data_to_send() == b""
