"""The sidecar: terminate TLS in front of a plain upstream (server mode), or originate it beside a
plain client (client mode), moving bytes both ways with half-close carried through.

Each connection is one nursery with two pumps; every wait has a deadline (handshake, connect).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from ..tls.client import TLSClient
from ..tls.config import TLSConfig
from ..tls.server import TLSServer
from .tlsstream import TLSError, TLSStream

log = logging.getLogger("pqproxy")
PUMP_CHUNK = 64 * 1024


class ByteStream(Protocol):
    async def receive_some(self) -> bytes: ...
    async def send_all(self, data: bytes) -> None: ...
    async def send_eof(self) -> None: ...


class PlainStream:
    """A trio SocketStream with the same face as TLSStream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream

    async def receive_some(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(PUMP_CHUNK))
        except (trio.BrokenResourceError, OSError):
            return b""

    async def send_all(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_eof(self) -> None:
        try:
            await self.stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


@dataclass
class ConnectionRecord:
    """The facts of one proxied connection; logged as one JSON line at its end."""

    mode: str
    peer: str
    started: float = field(default_factory=time.monotonic)
    result: str = "ok"
    group: str | None = None
    cipher: str | None = None
    sni: str | None = None
    alpn: str | None = None
    client_hello_size: int | None = None
    hello_retry: bool | None = None
    resumed: bool | None = None
    handshake_ms: float | None = None
    alert: str | None = None
    error: str | None = None
    bytes_up: int = 0
    bytes_down: int = 0

    def fill_from_handshake(self, stream: TLSStream, started: float) -> None:
        info = stream.info
        assert info is not None
        self.group, self.cipher = info.group, info.cipher_suite
        self.sni, self.alpn = info.server_name, info.alpn_protocol
        self.client_hello_size, self.hello_retry, self.resumed = (
            info.client_hello_size, info.hello_retry, info.resumed)
        self.handshake_ms = round((time.monotonic() - started) * 1000, 3)

    def emit(self) -> None:
        record = {k: v for k, v in self.__dict__.items() if v is not None and k != "started"}
        record["duration_ms"] = round((time.monotonic() - self.started) * 1000, 3)
        log.info(json.dumps(record, sort_keys=True))


async def pump(source: ByteStream, sink: ByteStream, count: Callable[[int], None]) -> None:
    """Copy until EOF, then pass the EOF on (half-close). trio's send_all gives backpressure."""
    while True:
        data = await source.receive_some()
        if not data:
            await sink.send_eof()
            return
        count(len(data))
        await sink.send_all(data)


async def splice(a: ByteStream, b: ByteStream, record: ConnectionRecord) -> None:
    """Both directions at once; the connection ends when both have seen EOF."""

    def up(n: int) -> None:
        record.bytes_up += n

    def down(n: int) -> None:
        record.bytes_down += n

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, a, b, up)
        nursery.start_soon(pump, b, a, down)


@dataclass
class SidecarSettings:
    listen: tuple[str, int]
    target: tuple[str, int]  # upstream (server mode) or remote TLS server (client mode)
    tls: TLSConfig
    handshake_timeout: float = 10.0
    connect_timeout: float = 5.0


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


async def _close_all(*streams: Any) -> None:
    for s in streams:
        if s is not None:
            with trio.CancelScope(shield=True):
                try:
                    await s.aclose()
                except (trio.BrokenResourceError, OSError):
                    pass


async def handle_server_connection(client: trio.SocketStream, settings: SidecarSettings) -> None:
    """Server mode: TLS from the client, plain TCP to the upstream."""
    record = ConnectionRecord("server", _peer(client))
    tls = TLSStream(client, TLSServer(settings.tls))
    upstream: trio.SocketStream | None = None
    try:
        started = time.monotonic()
        with trio.fail_after(settings.handshake_timeout):
            await tls.do_handshake()
        record.fill_from_handshake(tls, started)
        with trio.fail_after(settings.connect_timeout):
            upstream = await trio.open_tcp_stream(*settings.target)
        await splice(tls, PlainStream(upstream), record)
    except TLSError as exc:
        record.result, record.alert, record.error = "tls_error", exc.alert, str(exc)
    except trio.TooSlowError:
        record.result = "handshake_timeout" if record.group is None else "upstream_timeout"
    except OSError as exc:
        record.result, record.error = "upstream_error", str(exc)
    except trio.BrokenResourceError as exc:
        record.result, record.error = "peer_reset", str(exc) or "connection reset"
    finally:
        await _close_all(upstream, client)
        record.emit()


async def handle_client_connection(app: trio.SocketStream, settings: SidecarSettings) -> None:
    """Client mode: plain TCP from the local application, TLS to the remote sidecar or server."""
    record = ConnectionRecord("client", _peer(app))
    remote: trio.SocketStream | None = None
    try:
        with trio.fail_after(settings.connect_timeout):
            remote = await trio.open_tcp_stream(*settings.target)
        tls = TLSStream(remote, TLSClient(settings.tls))
        started = time.monotonic()
        with trio.fail_after(settings.handshake_timeout):
            await tls.do_handshake()
        record.fill_from_handshake(tls, started)
        await splice(PlainStream(app), tls, record)
    except TLSError as exc:
        record.result, record.alert, record.error = "tls_error", exc.alert, str(exc)
    except trio.TooSlowError:
        record.result = "timeout"
    except OSError as exc:
        record.result, record.error = "connect_error", str(exc)
    except trio.BrokenResourceError as exc:
        record.result, record.error = "peer_reset", str(exc) or "connection reset"
    finally:
        await _close_all(remote, app)
        record.emit()


async def serve(
    settings: SidecarSettings,
    handler: Callable[[trio.SocketStream, SidecarSettings], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    host, port = settings.listen
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners)
    bound = ", ".join("{}:{}".format(*x.socket.getsockname()[:2]) for x in listeners)
    log.info(json.dumps({"event": "listening", "address": bound}))

    async def run(stream: trio.SocketStream) -> None:
        await handler(stream, settings)

    await trio.serve_listeners(run, listeners)
