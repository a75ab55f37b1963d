"""The probe's ClientHello builder: exact sizes, GREASE, shuffled order, opaque codepoints, record splits.

Each built hello is also handed to our server engine, which must answer it as a real server would.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pqproxy.tls.codepoints import ContentType, ExtensionType, HandshakeType, NamedGroup, is_grease
from pqproxy.tls.extensions import KeyShareClientHello, KeyShareHelloRetryRequest, KeyShareServerHello
from pqproxy.tls.hello import HelloSpec, build_client_hello, pad_client_hello
from pqproxy.tls.messages import ClientHello, ServerHello, find_extension
from pqproxy.tls.record import RecordLayer
from pqproxy.tls.server import TLSServer
from tests.tls_helpers import DevPKI, server_config


def server_answer(pki: DevPKI, records: bytes) -> ServerHello:
    server = TLSServer(server_config(pki))
    events = server.receive_data(records)
    assert events == [], events
    layer = RecordLayer()
    layer.feed(server.data_to_send())
    record = layer.next_record()
    assert record is not None and record[0] == ContentType.handshake
    assert record[1][0] == HandshakeType.server_hello
    return ServerHello.decode(record[1][4:])


@settings(max_examples=60, deadline=None)
@given(extra=st.integers(min_value=4, max_value=14000))
def test_pad_to_exact_size(extra: int) -> None:
    base = len(build_client_hello(HelloSpec(server_name="a.test")).encode())
    built = build_client_hello(HelloSpec(server_name="a.test", pad_to=base + extra))
    raw = built.encode()
    assert len(raw) == base + extra
    assert ClientHello.decode(raw[4:]).encode() == raw


def test_pad_refuses_impossible_sizes() -> None:
    built = build_client_hello(HelloSpec())
    size = len(built.encode())
    with pytest.raises(ValueError):
        pad_client_hello(built.hello, size - 1)
    with pytest.raises(ValueError):
        pad_client_hello(built.hello, size + 3)
    pad_client_hello(built.hello, size + 4)
    assert len(built.encode()) == size + 4


def test_chrome_like_hello_is_answered_with_the_hybrid(pki: DevPKI) -> None:
    built = build_client_hello(HelloSpec(server_name="localhost", grease=True, shuffle_extensions=True, pad_to=2004))
    hello = built.hello
    assert len(built.encode()) == 2004
    assert is_grease(hello.cipher_suites[0])
    shares = KeyShareClientHello.decode(find_extension(hello.extensions, ExtensionType.key_share).data)  # type: ignore[union-attr]
    assert is_grease(shares.client_shares[0].group)
    assert [s.group for s in shares.client_shares[1:]] == [NamedGroup.X25519MLKEM768, NamedGroup.x25519]
    assert sum(is_grease(e.type) for e in hello.extensions) == 2
    answer = server_answer(pki, built.records())
    share = KeyShareServerHello.decode(find_extension(answer.extensions, ExtensionType.key_share).data)  # type: ignore[union-attr]
    assert share.server_share.group == NamedGroup.X25519MLKEM768
    assert len(share.server_share.key_exchange) == 1120


@pytest.mark.parametrize("fragments", [[1], [5], [1, 1, 1], [100, 100], [1200], [511, 1, 600]])
def test_hello_split_into_records_is_still_a_hello(pki: DevPKI, fragments: list[int]) -> None:
    built = build_client_hello(HelloSpec(server_name="localhost"))
    records = built.records(fragments)
    assert records.count(b"\x16\x03\x01") >= len(fragments) + 1
    assert server_answer(pki, records).cipher_suite == 0x1301


def test_opaque_obsolete_codepoint_is_ignored_and_hybrid_forced_by_retry(pki: DevPKI) -> None:
    spec = HelloSpec(
        server_name="localhost",
        groups=[NamedGroup.X25519Kyber768Draft00, NamedGroup.X25519MLKEM768, NamedGroup.x25519],
        key_shares=[NamedGroup.X25519Kyber768Draft00],  # opaque bytes: we do not implement Kyber draft 00
        opaque_share_len=32 + 1184,
    )
    answer = server_answer(pki, build_client_hello(spec).records())
    assert answer.is_hello_retry_request
    retry = KeyShareHelloRetryRequest.decode(find_extension(answer.extensions, ExtensionType.key_share).data)  # type: ignore[union-attr]
    assert retry.selected_group == NamedGroup.X25519MLKEM768


def test_explicit_extension_order() -> None:
    order = [ExtensionType.key_share, ExtensionType.server_name]
    built = build_client_hello(HelloSpec(server_name="x.test", extension_order=order))
    assert [e.type for e in built.hello.extensions[:2]] == order
