"""The admin endpoint: ``GET /metrics``, ``/healthz`` and ``/readyz`` over HTTP/1.1 on trio.

Theory of operation
-------------------
One task per connection parses requests with h11 (python-hyper's sans-IO HTTP/1.1 parser, the one
hypercorn and httpx use underneath) and answers from a three-entry route table. Keep-alive works, so a
Prometheus scraper can reuse its connection.

Every wait is bounded, so no client can hold a task or the shutdown:

- the request head is at most ``MAX_REQUEST_HEAD`` bytes (h11 answers 431 past it), a body at most
  ``MAX_REQUEST_BODY`` (413);
- a whole request must arrive within ``read_timeout`` seconds of the connection opening or of the previous
  response: one deadline for all of it, so a slow-loris client trickling a byte at a time is cut as surely
  as a silent one;
- a response must be written within ``SEND_TIMEOUT`` seconds (a client that stops reading is cut);
- at most ``MAX_CONNECTIONS`` connections at once; past that a new one is closed at once.

Cancelling the enclosing scope stops everything at once: nothing here is shielded.

Why h11 rather than hypercorn: hypercorn's trio worker was tried first. It works, but it writes responses
inside a shielded cancel scope (``TCPServer.protocol_send``), so one client that requests ``/metrics`` and
does not read the answer (anything past the socket buffers, ~1 MB on loopback) keeps the server from ever
finishing when its cancel scope is cancelled (measured with a 1 MB body: still hung after 10 s). It also
brings h2, hpack, hyperframe, priority and wsproto along for three GET routes, and its request deadline is
its keep-alive idle timer. With h11 the server is one small dependency and this one short module, whose
every deadline and bound is visible here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import h11
import trio

log = logging.getLogger("pqproxy.admin")

# Bounds. A scrape request is one short line and a few headers; nothing legitimate comes near these.
MAX_REQUEST_HEAD = 8 * 1024
MAX_REQUEST_BODY = 4 * 1024
RECV_CHUNK = 4 * 1024
# Seconds for a whole request to arrive (also the keep-alive idle limit); Prometheus scrapes send at once.
READ_TIMEOUT = 5.0
# Seconds to write one response; a /metrics body is tens of KB.
SEND_TIMEOUT = 10.0
# Concurrent admin connections; scrapers and probes need a handful.
MAX_CONNECTIONS = 64

TEXT = "text/plain; charset=utf-8"
ALLOWED_METHODS = (b"GET", b"HEAD")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()
    close: bool = False  # end the connection after this response (the request was not read whole)


class _TooLarge(Exception):
    pass


class AdminServer:
    """The routes and the per-connection loop; ``serve_admin`` is the entry point."""

    def __init__(self, render: Callable[[], tuple[bytes, str]], ready: Callable[[], bool],
                 draining: Callable[[], bool] | None = None, *, read_timeout: float = READ_TIMEOUT,
                 send_timeout: float = SEND_TIMEOUT, max_connections: int = MAX_CONNECTIONS) -> None:
        self.render = render
        self.ready = ready
        self.draining = draining
        self.read_timeout = read_timeout
        self.send_timeout = send_timeout
        self.max_connections = max_connections
        self.connections = 0
        self.routes: dict[bytes, Callable[[], Response]] = {
            b"/metrics": self.metrics,
            b"/healthz": self.healthz,
            b"/readyz": self.readyz,
        }

    # -- routes --------------------------------------------------------------------------------------

    def metrics(self) -> Response:
        body, content_type = self.render()
        return Response(200, body, content_type)

    def healthz(self) -> Response:
        return Response(200, b"ok\n")

    def readyz(self) -> Response:
        if self.ready():
            return Response(200, b"ready\n")
        if self.draining is not None and self.draining():
            return Response(503, b"draining\n")
        return Response(503, b"not ready\n")

    def respond(self, request: h11.Request) -> Response:
        path = request.target.split(b"?", 1)[0]
        route = self.routes.get(path)
        if route is None:
            return Response(404, b"not found\n")
        if request.method not in ALLOWED_METHODS:
            return Response(405, b"method not allowed\n", extra_headers=((b"allow", b", ".join(ALLOWED_METHODS)),))
        try:
            return route()
        except Exception:
            log.exception("admin: %s failed", path.decode("ascii", "replace"))
            return Response(500, b"internal error\n")

    # -- connections ---------------------------------------------------------------------------------

    async def handle(self, stream: trio.SocketStream) -> None:
        if self.connections >= self.max_connections:
            await stream.aclose()
            return
        self.connections += 1
        try:
            async with stream:
                await self._serve(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError):
            pass  # the client went away or was too slow; nothing to answer
        except Exception:  # a bug here must cost one connection, never the admin server
            log.exception("admin: connection failed")
        finally:
            self.connections -= 1

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        while True:
            request: h11.Request | None = None
            response: Response | None = None
            # One deadline for the whole request, from the connection opening or the previous response.
            with trio.move_on_after(self.read_timeout) as deadline:
                try:
                    request = await self._read_request(conn, stream)
                except h11.RemoteProtocolError as exc:  # malformed, or a head over MAX_REQUEST_HEAD (431)
                    response = Response(exc.error_status_hint, b"bad request\n", close=True)
                except _TooLarge:
                    response = Response(413, b"request too large\n", close=True)
            if deadline.cancelled_caught:
                return  # never came whole: close without a word (h11 cannot answer a half request line)
            if response is None:
                if request is None:
                    return  # the client closed between requests
                response = self.respond(request)
            await self._send(conn, stream, response, head=request is not None and request.method == b"HEAD")
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # an error, "Connection: close", or HTTP/1.0: h11 says this connection ends here
            conn.start_next_cycle()

    async def _read_request(self, conn: h11.Connection, stream: trio.SocketStream) -> h11.Request | None:
        request: h11.Request | None = None
        body = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(RECV_CHUNK))  # b"" is EOF, which h11 takes too
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += len(event.data)
                if body > MAX_REQUEST_BODY:
                    raise _TooLarge
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed):
                return None
            else:  # PAUSED cannot happen (we answer before reading on); anything else ends the connection
                return None

    async def _send(self, conn: h11.Connection, stream: trio.SocketStream, response: Response, *,
                    head: bool) -> None:
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


async def serve_admin(host: str, port: int, render: Callable[[], tuple[bytes, str]], ready: Callable[[], bool], *,
                      draining: Callable[[], bool] | None = None, read_timeout: float = READ_TIMEOUT,
                      send_timeout: float = SEND_TIMEOUT, max_connections: int = MAX_CONNECTIONS,
                      task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the admin endpoint on ``host:port`` until cancelled.

    ``render()`` gives the /metrics body and content type; ``ready()`` decides /readyz (200 "ready" or 503);
    ``draining()``, when given and true, makes a 503 say "draining" rather than "not ready". Both are called on
    the event loop, per request. ``task_status.started((host, port))`` reports the bound address (port 0
    picks a free port).
    """
    if not (read_timeout > 0 and math.isfinite(read_timeout)):
        raise ValueError("read_timeout must be a positive number of seconds")
    server = AdminServer(render, ready, draining, read_timeout=read_timeout, send_timeout=send_timeout,
                         max_connections=max_connections)
    listeners = await trio.open_tcp_listeners(port, host=host)
    if port == 0 and len(listeners) > 1:
        # A name with several addresses would get a different free port on each; serve one address.
        for extra in listeners[1:]:
            await extra.aclose()
        listeners = listeners[:1]
    bound_host, bound_port = listeners[0].socket.getsockname()[:2]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, server.handle, listeners)
        task_status.started((bound_host, bound_port))
