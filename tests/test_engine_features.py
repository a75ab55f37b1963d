"""Engine features in memory: external and imported PSKs (RFC 8773, RFC 9258), resumption after a
HelloRetryRequest, record padding and record_size_limit, half-close, every alert, the KEM backends."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from pqproxy.tls import kem
from pqproxy.tls.alerts import AlertDescription
from pqproxy.tls.codepoints import ContentType, NamedGroup
from pqproxy.tls.config import ExternalPSK
from pqproxy.tls.events import (
    AlertReceived,
    AlertSent,
    ApplicationData,
    HandshakeComplete,
    PeerClosed,
    SessionTicketReceived,
)
from pqproxy.tls.groups import group_by_name, parse_group_list
from pqproxy.tls.session import TicketSealer
from tests.tls_helpers import (
    DevPKI,
    assert_fatal,
    client_config,
    handshake,
    of_type,
    parse_records,
    pump,
    server_config,
)

QKD_KEY = bytes(range(32))
IDENTITY = b"sae:alice/key:5f0b8b5e-2f8e-4d3b-9a51-0c1d2e3f4a5b"


def complete(events: list[object]) -> HandshakeComplete:
    (done,) = of_type(events, HandshakeComplete)  # type: ignore[arg-type]
    return done  # type: ignore[no-any-return]


# --- external PSKs -------------------------------------------------------------------------------


@pytest.mark.parametrize("share_groups", [None, (NamedGroup.x25519,)], ids=["first-flight", "after-hrr"])
def test_imported_psk_with_certificate(pki: DevPKI, share_groups: tuple[int, ...] | None) -> None:
    """The QKD binding's shape: imported identity, psk_dhe_ke with the hybrid, and the server's certificate."""
    hs = handshake(
        client_config(pki, external_psk=ExternalPSK(IDENTITY, QKD_KEY), key_share_groups=share_groups),
        server_config(pki, external_psks={IDENTITY: QKD_KEY}),
    )
    for events in (hs.client_events, hs.server_events):
        done = complete(events)
        assert done.psk == "external"
        assert done.psk_identity == IDENTITY
        assert done.group == "X25519MLKEM768"
        assert done.resumed is False
        assert done.signature_scheme == "ecdsa_secp256r1_sha256"  # RFC 8773: the certificate was still proven
        assert done.hello_retry is (share_groups is not None)
    assert complete(hs.client_events).peer_certificate is not None


def test_imported_psk_sha384_selects_a_sha384_suite(pki: DevPKI) -> None:
    hs = handshake(
        client_config(pki, external_psk=ExternalPSK(IDENTITY, QKD_KEY, hash_name="sha384")),
        server_config(pki, external_psks={IDENTITY: QKD_KEY}, cipher_suites=(0x1302, 0x1301)),
    )
    assert complete(hs.server_events).cipher_suite == "TLS_AES_256_GCM_SHA384"
    assert complete(hs.server_events).psk == "external"


def test_plain_external_psk_without_certificate(pki: DevPKI) -> None:
    psk = ExternalPSK(b"static-id", QKD_KEY, imported=False, with_certificate=False)
    hs = handshake(client_config(pki, external_psk=psk), server_config(pki, external_psks={b"static-id": QKD_KEY}))
    done = complete(hs.client_events)
    assert done.psk == "external" and done.peer_certificate is None and done.signature_scheme is None


def test_external_psk_with_the_wrong_key_fails_the_binder(pki: DevPKI) -> None:
    client, server = _pair(pki, client_kw={"external_psk": ExternalPSK(IDENTITY, bytes(32))},
                           server_kw={"external_psks": {IDENTITY: QKD_KEY}})
    _, server_events = pump(client, server)
    assert [(e.description, e.reason) for e in of_type(server_events, AlertSent)] == [
        (AlertDescription.decrypt_error, "PSK binder does not verify")
    ]


def test_required_external_psk_refuses_unknown_identity(pki: DevPKI) -> None:
    client, server = _pair(pki, client_kw={"external_psk": ExternalPSK(b"someone-else", QKD_KEY)},
                           server_kw={"external_psks": {IDENTITY: QKD_KEY}, "require_external_psk": True})
    client_events, server_events = pump(client, server)
    assert of_type(server_events, AlertSent)[0].description == AlertDescription.unknown_psk_identity
    assert of_type(client_events, AlertReceived)[0].name == "unknown_psk_identity"


def test_unknown_external_identity_falls_back_to_certificate(pki: DevPKI) -> None:
    hs = handshake(client_config(pki, external_psk=ExternalPSK(b"unknown", QKD_KEY)),
                   server_config(pki, external_psks={IDENTITY: QKD_KEY}))
    assert complete(hs.server_events).psk is None
    assert complete(hs.client_events).peer_certificate is not None


def _pair(pki: DevPKI, client_kw: dict[str, object], server_kw: dict[str, object]):  # type: ignore[no-untyped-def]
    from pqproxy.tls.client import TLSClient
    from pqproxy.tls.server import TLSServer

    return TLSClient(client_config(pki, **client_kw)), TLSServer(server_config(pki, **server_kw))


# --- resumption --------------------------------------------------------------------------------


def test_resumption_after_hello_retry_keeps_the_hybrid(pki: DevPKI) -> None:
    server_cfg = server_config(pki)
    first = handshake(client_config(pki), server_cfg)
    (ticket_event,) = of_type(first.client_events, SessionTicketReceived)
    again = handshake(client_config(pki, resume_session=ticket_event.ticket, key_share_groups=(NamedGroup.x25519,)),
                      server_cfg)
    done = complete(again.client_events)
    assert done.resumed and done.hello_retry and done.group == "X25519MLKEM768" and done.peer_certificate is None


def test_ticket_from_another_server_is_not_resumed(pki: DevPKI) -> None:
    first = handshake(client_config(pki), server_config(pki))
    (ticket_event,) = of_type(first.client_events, SessionTicketReceived)
    other = handshake(client_config(pki, resume_session=ticket_event.ticket), server_config(pki))
    assert complete(other.server_events).resumed is False


def _resumed(pki: DevPKI, ticket: Any, server_cfg: Any, **client_kw: Any) -> list[Any]:
    """Resume with ``ticket``: the server's events, whether the handshake completes or fails."""
    from pqproxy.tls.client import TLSClient
    from pqproxy.tls.server import TLSServer

    client = TLSClient(client_config(pki, resume_session=ticket, **client_kw))
    return pump(client, TLSServer(server_cfg))[1]


def _mtls_server(pki: DevPKI, sealer: TicketSealer, **kw: Any) -> Any:
    return server_config(pki, ticket_sealer=sealer, trust_store=[pki.ca], require_client_certificate=True, **kw)


def test_a_ticket_from_a_server_without_client_auth_is_not_resumed_where_a_certificate_is_required(
        pki: DevPKI) -> None:
    # Two listeners share a ticket key (as a sidecar's do); the client has no certificate at all. Resumed, it
    # would skip CertificateRequest (RFC 8446 §4.3.2): here it must do a full handshake, and be refused.
    sealer = TicketSealer()
    first = handshake(client_config(pki), server_config(pki, ticket_sealer=sealer))
    (ticket_event,) = of_type(first.client_events, SessionTicketReceived)
    server_events = _resumed(pki, ticket_event.ticket, _mtls_server(pki, sealer))
    assert not of_type(server_events, HandshakeComplete), server_events
    assert assert_fatal(server_events, AlertDescription.certificate_required).code == "client_certificate_missing"


def test_a_ticket_is_resumed_only_under_the_context_it_was_issued_under(pki: DevPKI) -> None:
    sealer = TicketSealer()
    first = handshake(client_config(pki), server_config(pki, ticket_sealer=sealer, ticket_context=b"policy A"))
    (ticket_event,) = of_type(first.client_events, SessionTicketReceived)
    same = handshake(client_config(pki, resume_session=ticket_event.ticket),
                     server_config(pki, ticket_sealer=sealer, ticket_context=b"policy A"))
    assert complete(same.server_events).resumed is True
    other = handshake(client_config(pki, resume_session=ticket_event.ticket),
                      server_config(pki, ticket_sealer=sealer, ticket_context=b"policy B"))
    assert complete(other.server_events).resumed is False


def test_a_resumed_mtls_session_keeps_its_client_certificate_and_the_allow_list_still_applies(pki: DevPKI) -> None:
    sealer = TicketSealer()
    with_certificate = {"certificate_chain": pki.client_chain}
    first = handshake(client_config(pki, **with_certificate), _mtls_server(pki, sealer))
    leaf = complete(first.server_events).peer_certificate
    assert leaf is not None
    (ticket_event,) = of_type(first.client_events, SessionTicketReceived)
    again = handshake(client_config(pki, resume_session=ticket_event.ticket, **with_certificate),
                      _mtls_server(pki, sealer))
    done = complete(again.server_events)
    assert done.resumed and done.peer_certificate == leaf  # logs and PROXY headers still name the client
    (second_ticket,) = of_type(again.client_events, SessionTicketReceived)
    third = handshake(client_config(pki, resume_session=second_ticket.ticket, **with_certificate),
                      _mtls_server(pki, sealer))
    assert complete(third.server_events).resumed and complete(third.server_events).peer_certificate == leaf
    # An allow-list that no longer takes this client: no resumption, and the full handshake says why.
    refused = _mtls_server(pki, sealer, client_certificate_allowed=lambda cert: False)
    server_events = _resumed(pki, second_ticket.ticket, refused, **with_certificate)
    assert not of_type(server_events, HandshakeComplete)
    assert assert_fatal(server_events, AlertDescription.access_denied).code == "client_not_allowed"


def test_a_ticket_is_not_resumed_once_its_client_certificate_has_expired(pki: DevPKI) -> None:
    sealer = TicketSealer()
    not_after = pki.client_chain.certificates[0].not_valid_after_utc.timestamp()
    with_certificate = {"certificate_chain": pki.client_chain}
    before = handshake(client_config(pki, clock=lambda: not_after - 60, **with_certificate),
                       _mtls_server(pki, sealer, clock=lambda: not_after - 60))
    (ticket_event,) = of_type(before.client_events, SessionTicketReceived)
    after = _mtls_server(pki, sealer, clock=lambda: not_after + 60)  # well within the ticket's lifetime
    server_events = _resumed(pki, ticket_event.ticket, after, clock=lambda: not_after + 60,
                                             **with_certificate)
    assert not any(getattr(e, "resumed", False) for e in of_type(server_events, HandshakeComplete))


def test_resuming_never_extends_the_first_handshakes_lifetime(pki: DevPKI) -> None:
    sealer, now = TicketSealer(), [1_800_000_000.0]
    server_cfg = server_config(pki, ticket_sealer=sealer, ticket_lifetime=3600, clock=lambda: now[0])
    first = handshake(client_config(pki, clock=lambda: now[0]), server_cfg)
    (ticket_event,) = of_type(first.client_events, SessionTicketReceived)
    assert ticket_event.ticket.lifetime == 3600
    now[0] += 3000
    again = handshake(client_config(pki, resume_session=ticket_event.ticket, clock=lambda: now[0]), server_cfg)
    assert complete(again.server_events).resumed
    (second,) = of_type(again.client_events, SessionTicketReceived)
    assert second.ticket.lifetime == 600  # what is left of the first handshake's hour
    now[0] += 601
    late = handshake(client_config(pki, resume_session=second.ticket, clock=lambda: now[0]), server_cfg)
    assert complete(late.server_events).resumed is False


def test_the_ticket_store_gives_each_ticket_once_freshest_first_and_never_an_expired_one() -> None:
    from pqproxy.tls.session import SessionTicket, TicketStore

    def ticket(name: bytes, received_at: float, lifetime: int = 100) -> SessionTicket:
        return SessionTicket(name, bytes(32), 0x1301, 0, lifetime, received_at, "localhost", None)

    store = TicketStore(capacity=3)
    for name, at in ((b"a", 0.0), (b"b", 10.0), (b"c", 20.0), (b"d", 30.0)):  # "a" is dropped: capacity 3
        store.add(ticket(name, at))
    assert len(store) == 3
    taken = [store.take(50.0), store.take(50.0)]
    assert [t.ticket for t in taken if t] == [b"d", b"c"]  # RFC 8446 §C.4: once each, the freshest first
    assert store.take(115.0) is None and len(store) == 0  # "b" expired at 110: dropped, not given
    store.add(ticket(b"e", 200.0, lifetime=10**7))  # a lifetime over 7 days counts as 7 days
    assert store.take(200.0 + 7 * 24 * 3600) is None


def _state(at: float) -> Any:
    from pqproxy.tls.session import TicketState

    return TicketState(0x1301, bytes(32), at, 7200, 0, b"localhost", b"")


def test_rotating_ticket_keys_agree_across_processes_and_a_dropped_key_is_gone() -> None:
    import pickle

    from pqproxy.tls.session import TicketKeys

    period, start = 3600.0, 1_800_000_000.0
    keys = TicketKeys.fresh(start, period, lifetime=7200)
    assert keys.keep == 3  # sealed at the end of one hour, a two-hour ticket lives into the third
    worker_a, worker_b = pickle.loads(pickle.dumps(keys)), pickle.loads(pickle.dumps(keys))  # as spawn hands them
    sealed_end = start - start % period + period - 1  # the last second of the first key's hour
    ticket = TicketSealer(worker_a).seal(_state(sealed_end), sealed_end)
    sealer_b = TicketSealer(worker_b)  # the other worker ratchets on its own clock, and still opens it
    assert sealer_b.open(ticket, sealed_end + 7199) == _state(sealed_end)
    assert sealer_b.open(ticket, sealed_end + 2 * period + 1) is None  # three keys on: its key is dropped
    first_key = keys.at(start)[0]
    assert first_key not in worker_b.at(sealed_end + 2 * period + 1)
    assert first_key not in worker_b.at(start)  # a clock that goes back brings no key back
    assert TicketSealer(worker_b).open(ticket, start) is None
    assert worker_a.at(sealed_end + 2 * period + 1) == worker_b.at(sealed_end + 2 * period + 1)


def test_a_ticket_resumes_across_a_key_rotation(pki: DevPKI) -> None:
    from pqproxy.tls.session import TicketKeys

    now = [1_800_000_000.0 + 3599.0]
    sealer = TicketSealer(TicketKeys.fresh(now[0], 3600.0, lifetime=7200))
    server_cfg = server_config(pki, ticket_sealer=sealer, clock=lambda: now[0])
    first = handshake(client_config(pki, clock=lambda: now[0]), server_cfg)
    (ticket_event,) = of_type(first.client_events, SessionTicketReceived)
    now[0] += 3600.0 + 1800.0  # two rotations later, within the ticket's two hours
    again = handshake(client_config(pki, resume_session=ticket_event.ticket, clock=lambda: now[0]), server_cfg)
    assert complete(again.server_events).resumed


# --- record layer: padding, record_size_limit ----------------------------------------------------


def test_record_padding_hides_lengths(pki: DevPKI) -> None:
    hs = handshake(client_config(pki, record_padding_block=256), server_config(pki))
    hs.client.send_data(b"x" * 10)
    hs.client.send_data(b"y" * 300)
    wire = hs.client.data_to_send()
    lengths = [len(payload) for t, payload in parse_records(wire)]
    assert lengths == [256 + 16, 512 + 16]  # inner plaintext padded to the block, plus the AEAD tag
    assert [e.data for e in of_type(hs.server.receive_data(wire), ApplicationData)] == [b"x" * 10, b"y" * 300]


def test_record_size_limit_is_honoured(pki: DevPKI) -> None:
    hs = handshake(client_config(pki, record_size_limit=512), server_config(pki))
    payload = bytes(range(256)) * 40
    hs.server.send_data(payload)
    wire = hs.server.data_to_send()
    records = parse_records(wire)
    assert all(len(p) <= 512 + 16 for _, p in records) and len(records) == 21
    assert b"".join(e.data for e in of_type(hs.client.receive_data(wire), ApplicationData)) == payload


# --- closure -------------------------------------------------------------------------------------


def test_half_close_both_ways(pki: DevPKI) -> None:
    hs = handshake(client_config(pki), server_config(pki))
    hs.client.send_data(b"request")
    hs.client.close()
    events = hs.server.receive_data(hs.client.data_to_send())
    assert [type(e) for e in events] == [ApplicationData, PeerClosed]
    with pytest.raises(RuntimeError):
        hs.client.send_data(b"after close_notify")
    hs.server.send_data(b"response after the client's close_notify")  # the other direction stays open
    hs.server.close()
    events = hs.client.receive_data(hs.server.data_to_send())
    assert [type(e) for e in events] == [ApplicationData, PeerClosed]
    assert events[0].data == b"response after the client's close_notify"  # type: ignore[attr-defined]


def test_user_canceled_is_a_warning_then_close_notify(pki: DevPKI) -> None:
    hs = handshake(client_config(pki), server_config(pki))
    wire = hs.server._records.encode(ContentType.alert, bytes((1, AlertDescription.user_canceled)))
    assert hs.client.receive_data(wire) == []
    hs.server.close()
    assert [type(e) for e in hs.client.receive_data(hs.server.data_to_send())] == [PeerClosed]


_FATAL = [a for a in AlertDescription if a not in (AlertDescription.close_notify, AlertDescription.user_canceled)]


@pytest.mark.parametrize("alert", _FATAL, ids=[a.name for a in _FATAL])
def test_every_alert_is_received_and_named(pki: DevPKI, alert: AlertDescription) -> None:
    hs = handshake(client_config(pki), server_config(pki))
    # TLS 1.3 treats every alert but close_notify and user_canceled as fatal whatever its level.
    wire = hs.server._records.encode(ContentType.alert, bytes((1, alert)))
    assert hs.client.receive_data(wire) == [AlertReceived(int(alert), alert.name)]
    assert hs.client.failed
    assert hs.client.receive_data(b"\x17\x03\x03\x00\x10" + bytes(16)) == []


# --- KEM backends ----------------------------------------------------------------------------------


def test_liboqs_backend_is_never_imported_or_fetched_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OQS_INSTALL_PATH", raising=False)
    monkeypatch.setattr(kem.ctypes.util, "find_library", lambda name: None)
    sys.modules.pop("oqs", None)
    with pytest.raises(kem.KEMUnavailable, match="does not download or build it"):
        kem.get_backend("oqs")
    assert "oqs" not in sys.modules  # liboqs-python's import would try to download and build liboqs


def test_mlkem512_needs_the_optional_backend() -> None:
    assert group_by_name("MLKEM512").available() is False
    with pytest.raises(ValueError, match="MLKEM512 needs a KEM backend"):
        parse_group_list("X25519MLKEM768,MLKEM512")
    assert parse_group_list("x25519mlkem768, X25519") == (NamedGroup.X25519MLKEM768, NamedGroup.x25519)


def test_unknown_group_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known groups: X25519MLKEM768"):
        parse_group_list("Kyber768")
