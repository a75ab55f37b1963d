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

import hashlib
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


class TicketKeys:
    """A server's ticket keys over time: a new one every ``period`` seconds, from the last by a one-way ratchet
    (key n+1 = SHA-256(label, key n)). Every process that holds the same state has the same keys at the same
    time without talking to the others (a sidecar's workers and their supervisor), and a key once dropped
    cannot be worked out again from those kept: the tickets sealed under it can no longer be opened, nor
    forged, by anyone who later reads this process's memory. The newest ``keep`` keys are kept (the newest
    seals, all of them open): enough for a ticket sealed at the end of one period to live out its lifetime.

    Sans-IO: the caller says what time it is. A clock that goes back never brings a key back."""

    _LABEL = b"pqproxy ticket key ratchet"

    def __init__(self, key: bytes, epoch: int, period: float, keep: int) -> None:
        if period <= 0 or keep < 1:
            raise ValueError("period must be positive and at least one key kept")
        self.period, self.keep = period, keep
        self.epoch = epoch  # the newest key's
        self._keys: deque[bytes] = deque([bytes(key)], maxlen=keep)  # the newest last
        self.version = 0  # moves whenever the keys do
        # Keys of a seed replaced on reload (``retire``): they still open, never seal, until ``until``.
        self._retired: list[tuple[TicketKeys, float]] = []

    @classmethod
    def fresh(cls, now: float, period: float, lifetime: int) -> TicketKeys:
        return cls(os.urandom(32), int(now // period), period, keep=-(-lifetime // int(period)) + 1)

    @classmethod
    def from_seed(cls, seed: bytes, origin: int, now: float, period: float, lifetime: int) -> TicketKeys:
        """The keys of every process that holds ``seed`` (a ticket key file shared by replicas): the seed is the key
        of period ``origin``, ratcheted to ``now``'s, so replicas agree without talking, as a sidecar's workers do.
        Once ratcheted past it the seed is no longer among the keys kept."""
        keys = cls(seed, origin, period, keep=-(-lifetime // int(period)) + 1)
        keys.advance(now)
        return keys

    def retire(self, old: TicketKeys, until: float) -> None:
        """``old`` (another seed's keys) goes on opening tickets until ``until``, and seals none."""
        self._retired.append((old, until))
        self.version += 1

    def advance(self, now: float) -> None:
        """Ratchet to ``now``'s key, if its period has begun; drop retired keys whose time is up."""
        epoch = int(now // self.period)
        if epoch > self.epoch:
            key = self._keys[-1]
            for _ in range(epoch - self.epoch):
                key = hashlib.sha256(self._LABEL + key).digest()
                self._keys.append(key)  # maxlen: the oldest goes
            self.epoch = epoch
            self.version += 1
        if self._retired:
            kept = [(old, until) for old, until in self._retired if until > now]
            if len(kept) != len(self._retired):
                self._retired = kept
                self.version += 1
            for old, _ in kept:
                before = old.version
                old.advance(now)
                if old.version != before:
                    self.version += 1

    def at(self, now: float) -> list[bytes]:
        """The keys at ``now``, the sealing one first (then a retired seed's, which only open)."""
        self.advance(now)
        return [*reversed(self._keys), *(k for old, _ in self._retired for k in reversed(old._keys))]


class TicketSealer:
    """Seals and opens tickets. ``keys``: a fixed list (the first seals, all open), or ``TicketKeys`` that rotate;
    none: one random key."""

    def __init__(self, keys: list[bytes] | TicketKeys | None = None) -> None:
        self._rotating = keys if isinstance(keys, TicketKeys) else None
        self._version = -1
        fixed = [bytes(k) for k in keys] if isinstance(keys, list) and keys else [os.urandom(32)]
        self._aeads = [(self._key_id(k), AESGCM(k)) for k in fixed]

    def _current(self, now: float | None) -> list[tuple[bytes, AESGCM]]:
        rotating = self._rotating
        if rotating is not None and now is not None:
            rotating.advance(now)
            if rotating.version != self._version:  # once an hour: the AEADs are made for new keys only then
                self._aeads = [(self._key_id(k), AESGCM(k)) for k in rotating.at(now)]
                self._version = rotating.version
        return self._aeads

    @staticmethod
    def _key_id(key: bytes) -> bytes:
        return hashlib.sha256(b"pqproxy ticket key id" + key).digest()[:_KEY_ID_LEN]

    def seal(self, state: TicketState, now: float | None = None) -> bytes:
        key_id, aead = self._current(now)[0]
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

    def open(self, ticket: bytes, now: float | None = None) -> TicketState | None:
        """The ticket's state, or None for a ticket we cannot open (not ours, tampered, old format, its key
        dropped)."""
        if len(ticket) < _KEY_ID_LEN + _NONCE_LEN + 16:
            return None
        key_id = ticket[:_KEY_ID_LEN]
        for kid, aead in self._current(now):
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
