"""What the engine tells its caller: small frozen dataclasses, returned by ``receive_data``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class Event:
    __slots__ = ()


@dataclass(frozen=True)
class HandshakeComplete(Event):
    group: str | None
    cipher_suite: str
    alpn_protocol: str | None
    server_name: str | None
    resumed: bool
    psk: str | None  # None, "resumption" or "external"
    psk_identity: bytes | None  # the external identity (for imported PSKs, the external_identity)
    peer_certificate: Any  # cryptography x509.Certificate or None
    signature_scheme: str | None
    hello_retry: bool
    client_hello_size: int  # bytes of the (first) ClientHello handshake message


@dataclass(frozen=True)
class ClientHelloReceived(Event):
    """Server, with ``TLSServer(defer_client_hello=True)``: the first ClientHello, read and well-formed. Nothing
    has been answered; the handshake goes on at ``continue_handshake(config)`` (client_hello.py)."""

    info: Any  # pqproxy.tls.client_hello.ClientHelloInfo


@dataclass(frozen=True)
class ApplicationData(Event):
    data: bytes


@dataclass(frozen=True)
class PeerClosed(Event):
    """The peer sent close_notify: it will write no more. We may still write (half-close)."""


@dataclass(frozen=True)
class AlertReceived(Event):
    description: int
    name: str


@dataclass(frozen=True)
class AlertSent(Event):
    """The engine failed the connection; the fatal alert is waiting in ``data_to_send``."""

    description: int
    name: str
    reason: str
    code: str | None = None  # policy refusals: a stable label such as "no_hybrid_group"


@dataclass(frozen=True)
class SessionTicketReceived(Event):
    ticket: Any  # pqproxy.tls.session.SessionTicket


@dataclass(frozen=True)
class KeyUpdateReceived(Event):
    update_requested: bool
