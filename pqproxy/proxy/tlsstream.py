"""A trio stream that speaks TLS through the sans-IO engine: the engine's I/O edge.

The engine gives bytes to send and events; this class moves the bytes over a trio stream and turns
events into return values and exceptions. Every wait is bounded by the caller's cancel scopes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from ..tls.connection import TLSConnection
from ..tls.events import (
    AlertReceived,
    AlertSent,
    ApplicationData,
    ClientHelloReceived,
    Event,
    HandshakeComplete,
    PeerClosed,
    SessionTicketReceived,
)

RECEIVE_SIZE = 256 * 1024


async def half_close(transport: trio.abc.Stream) -> None:
    """Shut our write side (TCP FIN) if the transport can; a peer that is already gone is not an error."""
    send_eof = getattr(transport, "send_eof", None)
    if send_eof is not None:
        try:
            await send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


def reset_transport(transport: Any) -> None:
    """Abortive close (RST) of a transport that can; a plain close of one that cannot."""
    close = getattr(transport, "reset", None) or getattr(transport, "close", None)
    if close is not None:
        close()


class TLSError(Exception):
    """The TLS connection failed: we sent or received a fatal alert, or the peer vanished mid-handshake."""

    def __init__(self, message: str, alert: str | None = None, sent: bool = True, code: str | None = None) -> None:
        super().__init__(message)
        self.alert = alert
        self.sent = sent
        self.code = code


class TLSStream:
    # read_client_hello(keep_received=True): every byte read until the ClientHello was shown, for a hand-over to
    # another TLS stack (bounded: the engine refuses a hello above max_client_hello_size, and anything but a
    # hello first). Class attributes: most connections never set them.
    received: bytearray | None = None
    client_hello: Any = None  # ClientHelloInfo, once the engine shows it (defer_client_hello)

    def __init__(self, transport: trio.abc.Stream, conn: TLSConnection, initial: bytes = b"",
                 on_ticket: Callable[[Any], None] | None = None) -> None:
        self.transport = transport
        self.conn = conn
        self._initial = initial  # bytes already read from the transport
        self._on_ticket = on_ticket  # client: where a NewSessionTicket's SessionTicket goes (else: other_events)
        self.info: HandshakeComplete | None = None
        self._plain: list[bytes] = []
        self._eof = False
        self.other_events: list[Event] = []

    async def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.transport.send_all(data)

    async def _flush_quietly(self) -> None:
        """Send what the engine has (e.g. a fatal alert) without letting a dead socket raise."""
        try:
            with trio.move_on_after(1):
                await self._flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    def _take(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, ApplicationData):
                self._plain.append(event.data)
            elif isinstance(event, HandshakeComplete):
                self.info = event
            elif isinstance(event, ClientHelloReceived):
                self.client_hello = event.info
            elif isinstance(event, PeerClosed):
                self._eof = True
            elif isinstance(event, AlertSent):
                raise TLSError(f"we sent {event.name}: {event.reason}", event.name, sent=True, code=event.code)
            elif isinstance(event, AlertReceived):
                raise TLSError(f"peer sent {event.name}", event.name, sent=False)
            elif self._on_ticket is not None and isinstance(event, SessionTicketReceived):
                self._on_ticket(event.ticket)
            else:
                self.other_events.append(event)

    async def _receive_into_engine(self) -> bool:
        """Read once from the transport into the engine; False at transport EOF."""
        try:
            data = await self.transport.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, OSError) as exc:
            raise TLSError(f"transport failed: {exc}", None, sent=False) from None
        if not data:
            return False
        events = self.conn.receive_data(data)
        try:
            self._take(events)
        except TLSError:
            await self._flush_quietly()
            raise
        await self._flush()
        return True

    async def read_client_hello(self, *, keep_received: bool = False) -> Any:
        """Server engine with ``defer_client_hello``: read until it shows the first ClientHello, and return its
        ClientHelloInfo. Nothing has been answered yet: ``continue_handshake`` goes on. ``keep_received``: keep
        the bytes read in ``received``."""
        if keep_received:
            self.received = bytearray()
        while self.client_hello is None:
            try:
                data = await self.transport.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, OSError) as exc:
                raise TLSError(f"transport failed: {exc}", None, sent=False) from None
            if not data:
                raise TLSError("peer closed the connection during the handshake", None, sent=False)
            if self.received is not None:
                self.received += data
            try:
                self._take(self.conn.receive_data(data))
            except TLSError:
                await self._flush_quietly()
                raise
        return self.client_hello

    async def continue_handshake(self, config: Any = None) -> None:
        """Answer the ClientHello under ``config`` (the listener's, or one made for this client)."""
        self.received = None
        try:
            self._take(self.conn.continue_handshake(config))  # type: ignore[attr-defined]
        except TLSError:
            await self._flush_quietly()
            raise
        await self._flush()

    async def refuse(self, description: Any, reason: str, code: str) -> None:
        """Fail the handshake from outside (a policy of the edge): the alert goes out and TLSError is raised."""
        self.conn.abort(description, reason, code)
        await self._flush_quietly()
        self._take(self.conn.events())

    async def do_handshake(self) -> HandshakeComplete:
        await self._flush()
        if self._initial:
            initial, self._initial = self._initial, b""
            try:
                self._take(self.conn.receive_data(initial))
            except TLSError:
                await self._flush_quietly()
                raise
            await self._flush()
        while self.info is None:
            if not await self._receive_into_engine():
                raise TLSError("peer closed the connection during the handshake", None, sent=False)
        return self.info

    async def receive_some(self) -> bytes:
        """Application data; b"" once the peer sent close_notify (or the transport ended)."""
        while not self._plain:
            if self._eof:
                return b""
            if not await self._receive_into_engine():
                # TCP FIN without close_notify: a truncation, which a proxy passes on as EOF (and logs).
                self._eof = True
                self.truncated = True
                return b""
        if len(self._plain) == 1:
            return self._plain.pop()
        data = b"".join(self._plain)
        self._plain.clear()
        return data

    truncated = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.conn.send_data(data)
        await self._flush()

    async def send_eof(self) -> None:
        """close_notify, then half-close the transport (RFC 8446 §6.1 allows the peer to go on writing)."""
        self.conn.close()
        await self._flush()
        await half_close(self.transport)

    async def aclose(self) -> None:
        await self.transport.aclose()

    def reset(self) -> None:
        """End the connection with a TCP RST, no close_notify: its peer must not take it for a clean end."""
        reset_transport(self.transport)
