"""The admin endpoint: ``GET /metrics``, ``/healthz`` and ``/readyz`` over HTTP/1.1 on trio.

A three-entry route table on ``pqproxy.http11.HTTPServer`` (bounded h11 connections: head, body, the
whole request's deadline, the response's, the number of connections). Keep-alive works, so a Prometheus
scraper can reuse its connection. Cancelling the enclosing scope stops everything at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import h11
import trio

from ..http11 import RECV_CHUNK, TEXT, HTTPServer, Response, open_listeners

__all__ = ["RECV_CHUNK", "TEXT", "AdminServer", "Response", "serve_admin"]

# Bounds. A scrape request is one short line and a few headers; nothing legitimate comes near these.
MAX_REQUEST_HEAD = 8 * 1024
MAX_REQUEST_BODY = 4 * 1024
# Seconds for a whole request to arrive (also the keep-alive idle limit); Prometheus scrapes send at once.
READ_TIMEOUT = 5.0
# Seconds to write one response; a /metrics body is tens of KB.
SEND_TIMEOUT = 10.0
# Concurrent admin connections; scrapers and probes need a handful.
MAX_CONNECTIONS = 64
ALLOWED_METHODS = (b"GET", b"HEAD")


class AdminServer(HTTPServer):
    """The routes; ``serve_admin`` is the entry point."""

    def __init__(self, render: Callable[[], tuple[bytes, str]], ready: Callable[[], bool],
                 draining: Callable[[], bool] | None = None, *, read_timeout: float = READ_TIMEOUT,
                 send_timeout: float = SEND_TIMEOUT, max_connections: int = MAX_CONNECTIONS) -> None:
        super().__init__(read_timeout=read_timeout, send_timeout=send_timeout, max_connections=max_connections,
                         max_head=MAX_REQUEST_HEAD, max_body=MAX_REQUEST_BODY)
        self.render = render
        self.ready = ready
        self.draining = draining
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

    async def respond(self, request: h11.Request, body: bytes, stream: Any) -> Response:
        path = request.target.split(b"?", 1)[0]
        route = self.routes.get(path)
        if route is None:
            return Response(404, b"not found\n")
        if request.method not in ALLOWED_METHODS:
            return Response(405, b"method not allowed\n", extra_headers=((b"allow", b", ".join(ALLOWED_METHODS)),))
        return route()


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
    listeners = await open_listeners(host, port)
    bound_host, bound_port = listeners[0].socket.getsockname()[:2]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, server.handle, listeners)
        task_status.started((bound_host, bound_port))
