"""Resumption state: what a client keeps from a NewSessionTicket, and the server's ticket sealing.

Server tickets are self-contained (stateless): the resumption PSK and the session's facts sealed
with AES-256-GCM under a ticket key (RFC 8446 §4.6.1 leaves the format to the server). Keys rotate:
the first key seals, all keys open.

A PSK handshake has no CertificateRequest (RFC 8446 §4.3.2), so a resumed session inherits the client
authentication of the handshake that began its chain of resumptions. The ticket therefore carries that
authentication (the client's certificate, and when it was verified) and the ``context`` it was made under
(the server's client-authentication policy, as the embedding application states it): a ticket is resumed only
under the same context, and never past its first handshake's lifetime.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .wire import Reader, vec8, vec16

MAX_TICKET_LIFETIME = 7 * 24 * 3600  # RFC 8446 §4.6.1: servers MUST NOT use more than 7 days
_TICKET_VERSION = 2  # 2: context, the client certificate, the first handshake's time
_KEY_ID_LEN = 4
_NONCE_LEN = 12


@dataclass
class SessionTicket:
    """A client's resumption state for one server."""

    ticket: bytes
    psk: bytes = field(repr=False)  # key material: never in logs
    cipher_suite: int
    ticket_age_add: int
    lifetime: int
    received_at: float
    server_name: str | None
    alpn_protocol: bytes | None

    def expired(self, now: float) -> bool:
        return now - self.received_at >= min(self.lifetime, MAX_TICKET_LIFETIME)

    def obfuscated_age(self, now: float) -> int:
        age_ms = max(0, int((now - self.received_at) * 1000))
        return (age_ms + self.ticket_age_add) & 0xFFFFFFFF


class TicketStore:
    """A client's tickets for one server, for resuming later connections (as Go's ClientSessionCache and
    nginx's proxy_ssl_session_reuse keep them). Each ticket is used once: RFC 8446 §C.4, a ticket used twice
    links the two connections for an observer. The freshest is taken first; at most ``capacity`` are kept,
    the oldest dropped. Sans-IO: the caller says what time it is."""

    def __init__(self, capacity: int = 32) -> None:
        self._tickets: deque[SessionTicket] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._tickets)

    def add(self, ticket: SessionTicket) -> None:
        self._tickets.append(ticket)

    def take(self, now: float) -> SessionTicket | None:
        while self._tickets:
            ticket = self._tickets.pop()
            if not ticket.expired(now):
                return ticket
        return None


@dataclass
class TicketState:
    """What the server seals into a ticket."""

    cipher_suite: int
    psk: bytes = field(repr=False)
    # When the client last authenticated: the full handshake this chain of resumptions began with. The
    # ticket is good until then + lifetime, however often it was resumed since.
    authenticated_at: float
    lifetime: int
    age_add: int
    server_name: bytes
    alpn_protocol: bytes
    context: bytes = b""  # the server's client-authentication policy it was issued under (a digest)
    client_certificate: bytes = b""  # the client's certificate (DER) from that full handshake; b"": none


class TicketSealer:
    def __init__(self, keys: list[bytes] | None = None) -> None:
        self._keys = [bytes(k) for k in keys] if keys else [os.urandom(32)]
        self._aeads = [(self._key_id(k), AESGCM(k)) for k in self._keys]

    @staticmethod
    def _key_id(key: bytes) -> bytes:
        import hashlib

        return hashlib.sha256(b"pqproxy ticket key id" + key).digest()[:_KEY_ID_LEN]

    def seal(self, state: TicketState) -> bytes:
        key_id, aead = self._aeads[0]
        nonce = os.urandom(_NONCE_LEN)
        plain = (
            struct.pack(">BHdII", _TICKET_VERSION, state.cipher_suite, state.authenticated_at, state.lifetime,
                        state.age_add)
            + vec8(state.psk)
            + vec8(state.server_name)
            + vec8(state.alpn_protocol)
            + vec8(state.context)
            + vec16(state.client_certificate)
        )
        return key_id + nonce + aead.encrypt(nonce, plain, key_id)

    def open(self, ticket: bytes) -> TicketState | None:
        """The ticket's state, or None for a ticket we cannot open (not ours, tampered, old format)."""
        if len(ticket) < _KEY_ID_LEN + _NONCE_LEN + 16:
            return None
        key_id = ticket[:_KEY_ID_LEN]
        for kid, aead in self._aeads:
            if kid != key_id:
                continue
            try:
                nonce = ticket[_KEY_ID_LEN : _KEY_ID_LEN + _NONCE_LEN]
                plain = aead.decrypt(nonce, ticket[_KEY_ID_LEN + _NONCE_LEN :], kid)
            except InvalidTag:
                return None
            try:
                version, suite, created, lifetime, age_add = struct.unpack_from(">BHdII", plain)
                if version != _TICKET_VERSION:
                    return None
                r = Reader(plain[struct.calcsize(">BHdII") :])
                psk = r.vector8()
                sni = r.vector8()
                alpn = r.vector8()
                context = r.vector8()
                client_certificate = r.vector16()
                if not r.at_end():
                    return None
            except Exception:
                return None
            return TicketState(suite, psk, created, lifetime, age_add, sni, alpn, context, client_certificate)
        return None
