"""A small bounded HTTP/1.1 server on trio and h11: the admin endpoint's and the KME simulator's.

Theory of operation
-------------------
One task per connection parses requests with h11 (python-hyper's sans-IO HTTP/1.1 parser, the one
hypercorn and httpx use underneath) and hands each whole request (head and body) to ``respond``, which a
subclass implements. Keep-alive works. Every wait is bounded, so no client can hold a task or the
shutdown:

- the request head is at most ``max_head`` bytes (h11 answers 431 past it), a body at most ``max_body``
  (413);
- a whole request must arrive within ``read_timeout`` seconds of the connection opening or of the previous
  response: one deadline for all of it, so a slow-loris client trickling a byte at a time is cut as surely
  as a silent one;
- a response must be written within ``send_timeout`` seconds (a client that stops reading is cut);
- at most ``max_connections`` connections at once; past that a new one is closed at once.

``wrap`` may turn the accepted TCP stream into another (the KME puts TLS with client certificates
there); its handshake counts against ``read_timeout``. Cancelling the enclosing scope stops everything at
once: nothing here is shielded.

Why h11 rather than hypercorn: hypercorn's trio worker writes responses inside a shielded cancel scope,
so one client that does not read its answer keeps the server from ever finishing when cancelled; it
does not hand the client certificate to the application (no ASGI ``tls`` extension), which the KME
needs to know which SAE is calling; and it brings h2, hpack, hyperframe and wsproto along.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import h11
import trio

log = logging.getLogger("pqproxy.http")

RECV_CHUNK = 4 * 1024
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()
    close: bool = False  # end the connection after this response (the request was not read whole)


class _TooLarge(Exception):
    pass


class HTTPServer:
    """The per-connection loop; a subclass answers in ``respond``."""

    def __init__(self, *, read_timeout: float, send_timeout: float, max_connections: int, max_head: int,
                 max_body: int, wrap: Callable[[trio.SocketStream], Awaitable[Any]] | None = None) -> None:
        self.read_timeout = read_timeout
        self.send_timeout = send_timeout
        self.max_connections = max_connections
        self.max_head = max_head
        self.max_body = max_body
        self.wrap = wrap
        self.connections = 0

    async def respond(self, request: h11.Request, body: bytes, stream: Any) -> Response:
        raise NotImplementedError

    async def _respond_safely(self, request: h11.Request, body: bytes, stream: Any) -> Response:
        try:
            return await self.respond(request, body, stream)
        except Exception:
            log.exception("http: %s failed", request.target.decode("ascii", "replace")[:200])
            return Response(500, b"internal error\n")

    async def handle(self, tcp: trio.SocketStream) -> None:
        if self.connections >= self.max_connections:
            await tcp.aclose()
            return
        self.connections += 1
        stream: Any = tcp
        try:
            if self.wrap is not None:
                with trio.move_on_after(self.read_timeout) as handshake:
                    stream = await self.wrap(tcp)
                if handshake.cancelled_caught:
                    return
            async with stream:
                await self._serve(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError):
            pass  # the client went away, failed its TLS handshake, or was too slow: nothing to answer
        except Exception:  # a bug here must cost one connection, never the server
            log.exception("http: connection failed")
        finally:
            self.connections -= 1
            await tcp.aclose()

    async def _serve(self, stream: Any) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head)
        while True:
            request: tuple[h11.Request, bytes] | None = None
            response: Response | None = None
            # One deadline for the whole request, from the connection opening or the previous response.
            with trio.move_on_after(self.read_timeout) as deadline:
                try:
                    request = await self._read_request(conn, stream)
                except h11.RemoteProtocolError as exc:  # malformed, or a head over max_head (431)
                    response = Response(exc.error_status_hint, b"bad request\n", close=True)
                except _TooLarge:
                    response = Response(413, b"request too large\n", close=True)
            if deadline.cancelled_caught:
                return  # never came whole: close without a word (h11 cannot answer a half request line)
            if response is None:
                if request is None:
                    return  # the client closed between requests
                response = await self._respond_safely(request[0], request[1], stream)
            head = request is not None and request[0].method == b"HEAD"
            await self._send(conn, stream, response, head=head)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # an error, "Connection: close", or HTTP/1.0: h11 says this connection ends here
            conn.start_next_cycle()

    async def _read_request(self, conn: h11.Connection, stream: Any) -> tuple[h11.Request, bytes] | None:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(RECV_CHUNK))  # b"" is EOF, which h11 takes too
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                if len(body) + len(event.data) > self.max_body:
                    raise _TooLarge
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return (request, bytes(body)) if request is not None else None
            else:  # ConnectionClosed; PAUSED cannot happen (we answer before reading on)
                return None

    async def _send(self, conn: h11.Connection, stream: Any, response: Response, *, head: bool) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # h11 cannot answer in this state (e.g. the error came mid-response); just close
        headers = [
            (b"content-type", response.content_type.encode("ascii")),
            (b"content-length", str(len(response.body)).encode("ascii")),
            (b"cache-control", b"no-store"),
            *response.extra_headers,
        ]
        if response.close:
            headers.append((b"connection", b"close"))
        data = conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
        if not head:  # HEAD: the same headers (content-length included), no body (RFC 9110 9.3.2)
            data += conn.send(h11.Data(data=response.body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        with trio.fail_after(self.send_timeout):
            await stream.send_all(data)


async def open_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """Listeners for ``host:port``; with port 0 only the first address (each would get another port)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    if port == 0 and len(listeners) > 1:
        for extra in listeners[1:]:
            await extra.aclose()
        listeners = listeners[:1]
    return listeners
