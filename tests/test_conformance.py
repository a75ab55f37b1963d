"""Regression tests for what the outside judge found (CONFORMANCE.md: tlsfuzzer against pqproxy and Node 26).

Each test names the tlsfuzzer script and case it stands for, and checks the behaviour RFC 8446 asks for without
tlsfuzzer (which `make test` never runs: it is fetched, not vendored).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from pqproxy.tls.alerts import AlertDescription as AD
from pqproxy.tls.client import ClientHandshake, TLSClient
from pqproxy.tls.codepoints import ContentType, ExtensionType, NamedGroup
from pqproxy.tls.config import DEFAULT_MAX_CLIENT_HELLO
from pqproxy.tls.events import ApplicationData, HandshakeComplete
from pqproxy.tls.extensions import KeyShareClientHello, KeyShareEntry, NamedGroupList, SignatureSchemeList
from pqproxy.tls.groups import GROUPS
from pqproxy.tls.messages import ClientHello, Extension
from pqproxy.tls.record import RecordCipher, RecordLayer
from pqproxy.tls.server import TLSServer
from tests.tls_helpers import (
    DevPKI,
    assert_fatal,
    assert_plaintext_alert_sent,
    client_config,
    client_hello_of,
    handshake,
    hello_record,
    of_type,
    parse_records,
    pump,
    record,
    replace_extension,
    server_config,
)

UNKNOWN_EC = list(range(34, 255))  # unassigned codepoints of the EC range, as tlsfuzzer sends them


def _hello(pki: DevPKI, **kw: object) -> ClientHello:
    return client_hello_of(TLSClient(client_config(pki, **kw)))[0]


def _with_shares(hello: ClientHello, shares: list[tuple[int, bytes]], groups: list[int]) -> ClientHello:
    entries = KeyShareClientHello([KeyShareEntry(g, s) for g, s in shares]).encode()
    exts = replace_extension(hello.extensions, ExtensionType.key_share, entries)
    hello.extensions = replace_extension(exts, ExtensionType.supported_groups, NamedGroupList(groups).encode())
    return hello


def _serve(pki: DevPKI, hello: ClientHello) -> tuple[TLSServer, list[object]]:
    server = TLSServer(server_config(pki))
    return server, server.receive_data(hello_record(hello))


# --- test-tls13-unrecognised-groups: shares for groups we do not know cost nothing and are ignored ----------------


@pytest.mark.parametrize("size", [64, 256])
def test_many_unknown_key_shares_beside_a_known_group_are_ignored(pki: DevPKI, size: int) -> None:
    """'known group secp256r1 and unknown groups from EC range, key_share of size N': 221 unknown shares (up to
    56 KiB of them) and one real secp256r1 share; the server answers with secp256r1, no HelloRetryRequest."""
    client = TLSClient(client_config(pki, groups=(NamedGroup.secp256r1,)))
    hello, _ = client_hello_of(client)
    real = next(e for e in KeyShareClientHello.decode(
        next(x.data for x in hello.extensions if x.type == ExtensionType.key_share)).client_shares)
    shares = [(g, b"\xab" * size) for g in UNKNOWN_EC] + [(real.group, real.key_exchange)]
    hello = _with_shares(hello, shares, [*UNKNOWN_EC, NamedGroup.secp256r1])
    server = TLSServer(server_config(pki))
    assert server.receive_data(hello_record(hello)) == [] and not server.failed
    assert server.data_to_send()[:1] == bytes((ContentType.handshake,))


def test_unknown_key_shares_then_a_retry_into_the_known_group(pki: DevPKI) -> None:
    """'only unknown key_share from EC range + secp256r1 in supported_groups': a HelloRetryRequest for secp256r1."""
    hello = _with_shares(_hello(pki), [(g, b"\xab" * 64) for g in UNKNOWN_EC],
                         [NamedGroup.secp256r1, *UNKNOWN_EC])
    server, events = _serve(pki, hello)
    assert events == [] and not server.failed
    assert server.handshake.hello_retry and server.handshake.state == "wait_client_hello2"


def test_only_unknown_groups_is_handshake_failure(pki: DevPKI) -> None:
    """'only unknown supported_groups from EC range': no group in common is handshake_failure, not a complaint
    about how many shares there were."""
    hello = _with_shares(_hello(pki), [(g, b"\xab" * 256) for g in UNKNOWN_EC], UNKNOWN_EC)
    server, events = _serve(pki, hello)
    assert_plaintext_alert_sent(server, events, AD.handshake_failure)


# --- test-tls13-obsolete-curves: a share outside supported_groups, even for a group we do not know ----------------


@pytest.mark.parametrize("stray", [NamedGroup.secp521r1, 0x001A, 0xFF01], ids=["known", "brainpool", "unknown"])
def test_a_key_share_outside_supported_groups_is_illegal_parameter(pki: DevPKI, stray: int) -> None:
    """'brainpoolP256r1 in key_share and secp256r1 in supported_groups (inconsistent extensions)' (RFC 8446
    §4.2.8: each KeyShareEntry must be for a group in supported_groups)."""
    hello = _with_shares(_hello(pki), [(stray, b"\x04" * 65)], [NamedGroup.secp256r1])
    server, events = _serve(pki, hello)
    assert_plaintext_alert_sent(server, events, AD.illegal_parameter)


@pytest.mark.parametrize("group", [0xFF01, NamedGroup.secp256r1], ids=["unknown", "known"])
def test_two_shares_for_one_group_are_illegal_parameter(pki: DevPKI, group: int) -> None:
    hello = _with_shares(_hello(pki), [(group, b"\x04" * 65), (group, b"\x04" * 65)], [group])
    server, events = _serve(pki, hello)
    assert_plaintext_alert_sent(server, events, AD.illegal_parameter)


# --- test-tls13-ecdhe-curves, test-tls13-crfg-curves: secp521r1 and X448 -----------------------------------------


@pytest.mark.parametrize("group", [NamedGroup.secp521r1, NamedGroup.x448], ids=["secp521r1", "X448"])
def test_sanity_with_only_one_classical_group(pki: DevPKI, group: int) -> None:
    """'sanity - secp521r1', 'sanity - x448': a client that offers only that group."""
    hs = handshake(client_config(pki, groups=(group,)), server_config(pki))
    assert of_type(hs.server_events, HandshakeComplete)[0].group == GROUPS[group].name


def _bad_shares() -> list[tuple[int, bytes, str]]:
    p521 = GROUPS[NamedGroup.secp521r1].client_generate().key_exchange
    x448_share = GROUPS[NamedGroup.x448].client_generate().key_exchange
    return [
        (NamedGroup.secp521r1, p521[:-1], "right-truncated"),
        (NamedGroup.secp521r1, p521 + b"\x00", "right 0-padded"),
        (NamedGroup.secp521r1, b"\x00", "point at infinity"),
        (NamedGroup.secp521r1, b"\x04" + bytes(132), "x=0, y=0"),
        (NamedGroup.secp521r1, p521[:-1] + bytes((p521[-1] ^ 1,)), "point outside curve"),
        (NamedGroup.secp521r1, GROUPS[NamedGroup.secp384r1].client_generate().key_exchange, "other curve"),
        (NamedGroup.x448, x448_share[:-1], "right-truncated"),
        (NamedGroup.x448, x448_share + b"\x00", "right 0-padded"),
        (NamedGroup.x448, bytes(56), "all zero"),
        (NamedGroup.x448, (1).to_bytes(56, "little"), "x448 key share of 1"),
    ]


def test_an_empty_key_share_is_decode_error(pki: DevPKI) -> None:
    """'empty x25519 key share', 'empty x448 key share' (tlsfuzzer wants illegal_parameter; Node sends neither):
    key_exchange is opaque<1..2^16-1> (RFC 8446 §4.2.8), so an empty one does not decode (§6.2 decode_error)."""
    for group in (NamedGroup.x25519, NamedGroup.x448):
        hello = _with_shares(_hello(pki), [(group, b"")], [group])
        server, events = _serve(pki, hello)
        assert_plaintext_alert_sent(server, events, AD.decode_error)


@pytest.mark.parametrize(("group", "share", "what"), _bad_shares(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_secp521r1_and_x448_shares_are_illegal_parameter(pki: DevPKI, group: int, share: bytes, what: str) -> None:
    hello = _with_shares(_hello(pki), [(group, share)], [group])
    server, events = _serve(pki, hello)
    assert_plaintext_alert_sent(server, events, AD.illegal_parameter)


# --- test-tls13-empty-alert: RFC 8446 §5.4 -------------------------------------------------------------------------


def _empty_alert(suite: Any, secret: bytes, padding: int) -> bytes:
    """An Alert record with no content (RFC 8446 §5.4), sealed under ``secret`` at sequence number 0."""
    layer = RecordLayer()
    layer.write_cipher = RecordCipher(suite, secret)
    layer.padding_block = padding
    return layer.encode(ContentType.alert, b"")


@pytest.mark.parametrize("padding", [0, 2, 30])
@pytest.mark.parametrize("keys", ["handshake", "application"])
def test_an_empty_alert_is_unexpected_message(pki: DevPKI, keys: str, padding: int) -> None:
    """'empty alert with N bytes of padding using handshake/application keys': the client's first record under
    those keys is an Alert whose content is empty (padding or not)."""
    client, server = TLSClient(client_config(pki)), TLSServer(server_config(pki))
    written: list[tuple[Any, bytes]] = []
    set_write_secret = client.set_write_secret

    def spy(suite: Any, secret: bytes) -> None:
        written.append((suite, secret))
        set_write_secret(suite, secret)

    client.set_write_secret = spy  # type: ignore[method-assign]
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    finished = client.data_to_send()  # the client's Finished, sealed under its handshake keys
    if keys == "handshake":  # in place of the Finished
        suite, secret = written[0]
        events = server.receive_data(_empty_alert(suite, secret, padding))
    else:  # right after it
        assert of_type(server.receive_data(finished), HandshakeComplete)
        suite, secret = written[-1]
        events = server.receive_data(_empty_alert(suite, secret, padding))
    assert_fatal(events, AD.unexpected_message)


def test_a_two_byte_alert_is_still_read_and_a_three_byte_one_is_decode_error(pki: DevPKI) -> None:
    hs = handshake(client_config(pki), server_config(pki))
    assert_fatal(hs.server.receive_data(hs.client._records.encode(ContentType.alert, b"\x02\x28\x00")),
                 AD.decode_error)


# --- test-tls13-signature-algorithms: a legal hello bigger than 64 KiB ---------------------------------------------


def test_a_hello_bigger_than_64_kib_is_served(pki: DevPKI) -> None:
    """'32715 invalid schemes' / 'tolerance 32715 methods': signature_algorithms may hold 32,767 schemes (RFC 8446
    §4.2.3) and cipher_suites as many, so a legal ClientHello runs past 64 KiB; OpenSSL takes up to 131,396 bytes,
    and so do we. Unknown schemes and suites are ignored."""
    hello = _hello(pki, groups=(NamedGroup.secp256r1,))
    schemes = [*(0xFE00 | (i % 0x100) for i in range(31000)), 0x0403]
    hello.extensions = replace_extension(hello.extensions, ExtensionType.signature_algorithms,
                                         SignatureSchemeList(schemes).encode())
    hello.cipher_suites = [*range(0xD000, 0xD000 + 2000), *hello.cipher_suites]
    data = hello_record(hello)
    assert 64 * 1024 < len(hello.encode()) <= DEFAULT_MAX_CLIENT_HELLO
    server = TLSServer(server_config(pki))
    assert server.receive_data(data) == [] and not server.failed
    assert server.handshake.signature_scheme == 0x0403


# --- test-tls13-0rtt-garbage: after a HelloRetryRequest, only the records before the second hello are skipped -----


@pytest.fixture
def early_data_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients built inside the test offer early_data in their first hello and, as RFC 8446 §4.2.10 requires,
    not in the second."""
    build, retry = ClientHandshake._extensions, ClientHandshake.process_hello_retry_request

    def with_early_data(self: ClientHandshake) -> list[Extension]:
        return [*build(self), Extension(ExtensionType.early_data, b"")]

    def without_it_after_a_retry(self: ClientHandshake, hello: Any, raw: bytes) -> None:
        assert self.client_hello is not None
        self.client_hello.extensions = [e for e in self.client_hello.extensions
                                        if e.type != ExtensionType.early_data]
        retry(self, hello, raw)

    monkeypatch.setattr(ClientHandshake, "_extensions", with_early_data)
    monkeypatch.setattr(ClientHandshake, "process_hello_retry_request", without_it_after_a_retry)


@pytest.mark.usefixtures("early_data_client")
def test_garbage_after_the_second_hello_is_bad_record_mac(pki: DevPKI) -> None:
    """'handshake with 0-RTT, HRR and early data after 2nd Client Hello'. RFC 8446 §4.2.10: after a
    HelloRetryRequest the server skips application_data records up to the second ClientHello; a record after it
    that does not deprotect under the handshake keys is bad_record_mac, not more skipping (we waited for 64 KiB
    of it before, and the peer timed out)."""
    client = TLSClient(client_config(pki, key_share_groups=(NamedGroup.x25519,)))  # X25519 first: we retry
    server = TLSServer(server_config(pki))
    first = client.data_to_send()
    early = record(ContentType.application_data, os.urandom(300))
    server.receive_data(first + early)  # early data after the first hello: skipped
    assert server.handshake.hello_retry and not server.failed
    client.receive_data(server.data_to_send())
    second = client.data_to_send()  # the second ClientHello (and a ChangeCipherSpec)
    assert server.receive_data(second) == [] and not server.failed
    events = server.receive_data(record(ContentType.application_data, os.urandom(64)))
    assert_fatal(events, AD.bad_record_mac)


@pytest.mark.usefixtures("early_data_client")
def test_early_data_before_the_second_hello_is_still_skipped(pki: DevPKI) -> None:
    """The control: the refused early data itself, between the first hello and the second, is skipped."""
    client = TLSClient(client_config(pki, key_share_groups=(NamedGroup.x25519,)))
    server = TLSServer(server_config(pki))
    server.receive_data(client.data_to_send() + record(ContentType.application_data, os.urandom(300)))
    client.receive_data(server.data_to_send())
    client_events, server_events = pump(client, server)
    assert of_type(server_events, HandshakeComplete) and of_type(client_events, HandshakeComplete)
    client.send_data(b"after")
    assert server.receive_data(client.data_to_send()) == [ApplicationData(b"after")]
    assert parse_records(server.data_to_send()) == []


# --- test-tls13-keyupdate: "N/M fragmented keyupdate msg, appdata between" (RFC 8446 §5.1) --------------------------


@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_application_data_inside_a_split_keyupdate_is_unexpected_message(pki: DevPKI, cut: int) -> None:
    hs = handshake(client_config(pki), server_config(pki))
    client, server = hs.client, hs.server
    key_update = bytes((24, 0, 0, 1, 0))  # KeyUpdate(update_not_requested)
    first = client._records.encode(ContentType.handshake, key_update[:cut])
    between = client._records.encode(ContentType.application_data, b"between")
    assert server.receive_data(first) == []
    assert_fatal(server.receive_data(between), AD.unexpected_message)


def test_a_split_keyupdate_with_nothing_between_is_read(pki: DevPKI) -> None:
    """The control: the same pieces back to back are one KeyUpdate."""
    hs = handshake(client_config(pki), server_config(pki))
    client, server = hs.client, hs.server
    key_update = bytes((24, 0, 0, 1, 0))
    pieces = [client._records.encode(ContentType.handshake, key_update[i : i + 2]) for i in (0, 2, 4)]
    events = [e for p in pieces for e in server.receive_data(p)]
    assert [type(e).__name__ for e in events] == ["KeyUpdateReceived"]


# --- test-tls13-eddsa-in-certificate-verify / mldsa-in-certificate-verify: "empty signature field" -----------------


def _with_empty_certificate_verify(conn: TLSClient | TLSServer) -> None:
    """Make ``conn`` read the peer's CertificateVerify with its signature emptied."""
    from pqproxy.tls.messages import CertificateVerify

    handle = conn.handshake.handle

    def spy(msg_type: int, body: bytes, raw: bytes) -> None:
        if msg_type == 15:  # certificate_verify
            raw = CertificateVerify(int.from_bytes(body[:2], "big"), b"").encode()
            body = raw[4:]
        handle(msg_type, body, raw)

    conn.handshake.handle = spy  # type: ignore[method-assign]


@pytest.mark.parametrize("which", ["server", "client"])
def test_an_empty_certificate_verify_signature_is_decrypt_error(pki: DevPKI, which: str) -> None:
    """RFC 8446 §4.4.3: signature is opaque<0..2^16-1>, so an empty one decodes and then fails to verify:
    decrypt_error (§6.2), not decode_error."""
    if which == "server":  # the server's CertificateVerify, judged by our client
        client, server = TLSClient(client_config(pki)), TLSServer(server_config(pki))
        _with_empty_certificate_verify(client)
        server.receive_data(client.data_to_send())
        assert_fatal(client.receive_data(server.data_to_send()), AD.decrypt_error)
    else:  # a client's CertificateVerify, judged by our server
        client = TLSClient(client_config(pki, certificate_chain=pki.client_chain))
        server = TLSServer(server_config(pki, trust_store=[pki.ca], require_client_certificate=True))
        _with_empty_certificate_verify(server)
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
        assert_fatal(server.receive_data(client.data_to_send()), AD.decrypt_error)


def test_an_empty_signature_decodes() -> None:
    from pqproxy.tls.messages import CertificateVerify

    assert CertificateVerify.decode(b"\x04\x03\x00\x00") == CertificateVerify(0x0403, b"")
