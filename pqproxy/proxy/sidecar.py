"""The sidecar of one worker process: listeners, one task per connection, reload and drain.

Server mode terminates TLS 1.3 in front of a plain upstream (routed by SNI); client mode accepts plain
TCP beside an application and originates TLS 1.3. Each connection's task pumps one direction and a task
of its own the other (one nursery), half-close carried through; every wait has a deadline (handshake,
first data, connect, idle). Sockets are ``transport.TCPTransport``, not trio's streams. A new runtime
(SIGHUP) is seen by the next connection, while open ones keep the one they started with. Draining
stops accepting, lets connections finish for ``drain_timeout`` seconds, then cancels the rest.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import trio

from ..tls.alerts import AlertDescription
from ..tls.client import TLSClient
from ..tls.server import TLSServer
from .config import ClientRuntime, ListenerRuntime, ServerRuntime
from .qkd import QKDEdge, QKDEdges, QKDRefused
from .tlsstream import TLSError, TLSStream, half_close, reset_transport
from .transport import TCPTransport, accept, listening_socket
from .transport import connect as connect_tcp

log = logging.getLogger("pqproxy")
PUMP_CHUNK = 256 * 1024
METRIC_BATCH_BYTES = 1 << 20  # proxied bytes are added to pqproxy_bytes_proxied_total at least every MiB
LISTEN_BACKLOG = 4096


class ByteStream(Protocol):
    truncated: bool  # the stream ended without its protocol's clean end (TLS: no close_notify)

    async def receive_some(self) -> bytes: ...
    async def send_all(self, data: bytes) -> None: ...
    async def send_eof(self) -> None: ...
    def reset(self) -> None: ...


class MetricsSink(Protocol):
    def connection_opened(self, listener: str) -> None: ...
    def connection_closed(self, listener: str) -> None: ...
    def handshake(self, result: str, group: str | None, seconds: float | None, client_hello_size: int | None,
                  quantum_safe: bool) -> None: ...
    def refusal(self, reason: str) -> None: ...
    def bytes_proxied(self, direction: str, n: int) -> None: ...
    def upstream_error(self, kind: str) -> None: ...
    def reset_propagated(self, direction: str) -> None: ...
    def resumed(self) -> None: ...


class NullMetrics:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class PlainStream:
    """A TCP connection with the same face as TLSStream. A reset is an error, never an end: it reaches the pump."""

    truncated = False  # a FIN is the only end plain TCP has: never a truncation we could see

    def __init__(self, stream: TCPTransport) -> None:
        self.stream = stream

    async def receive_some(self) -> bytes:
        return bytes(await self.stream.receive_some(PUMP_CHUNK))

    async def send_all(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_eof(self) -> None:
        await half_close(self.stream)

    def reset(self) -> None:
        self.stream.reset()


@dataclass
class ConnectionRecord:
    """The facts of one proxied connection; logged as one JSON line at its end. Never key material."""

    mode: str
    listener: str
    peer: str
    # Which worker process served it (its index under the supervisor): shows the SO_REUSEPORT spread.
    worker: int | None = None
    started: float = field(default_factory=time.monotonic)
    result: str = "ok"
    version: str | None = None
    group: str | None = None
    cipher: str | None = None
    sni: str | None = None
    alpn: str | None = None
    client_hello_size: int | None = None
    hello_retry: bool | None = None
    resumed: bool | None = None
    quantum_safe: bool | None = None
    client_certificate: str | None = None
    handshake_ms: float | None = None
    upstream: str | None = None
    alert: str | None = None
    refusal: str | None = None
    error: str | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    # The side(s) we closed with a TCP RST because the connection did not end cleanly: "upstream",
    # "downstream" or "both" (README, "Resets and truncations").
    reset: str | None = None
    qkd: str | None = None  # keyed, degraded or refused (qkd = prefer/require only)
    qkd_key_id: str | None = None  # the key_ID, never the key
    qkd_error: str | None = None  # why there was no QKD key

    def note_qkd(self, outcome: Any) -> None:
        self.qkd, self.qkd_error = outcome.state, outcome.error
        self.qkd_key_id = outcome.key_id or self.qkd_key_id

    def fill_from_handshake(self, stream: Any, started: float) -> None:
        info = stream.info
        self.version = "TLSv1.3"
        self.group, self.cipher = info.group, info.cipher_suite
        self.sni, self.alpn = info.server_name, info.alpn_protocol
        self.client_hello_size, self.hello_retry, self.resumed = info.client_hello_size, info.hello_retry, info.resumed
        self.quantum_safe = info.group in _QUANTUM_SAFE
        # A TLS 1.2 (legacy) session's LegacyInfo has no peer_certificate, only the verified client's CN:
        # reading info.peer_certificate crashed every --legacy-tls12 connection right after its handshake.
        peer_certificate = getattr(info, "peer_certificate", None)
        if peer_certificate is not None and self.mode == "server":
            self.client_certificate = peer_certificate.subject.rfc4514_string()
        elif getattr(info, "client_cn", None) and self.mode == "server":
            self.client_certificate = f"CN={info.client_cn}"
        self.handshake_ms = round((time.monotonic() - started) * 1000, 3)

    def emit(self) -> None:
        record = {k: v for k, v in self.__dict__.items() if v is not None and k != "started"}
        record["duration_ms"] = round((time.monotonic() - self.started) * 1000, 3)
        log.info(json.dumps(record))  # in field order: mode, listener, peer, ... as the dataclass lists them


_QUANTUM_SAFE = {"X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024", "MLKEM512", "MLKEM768", "MLKEM1024"}


def _peer(stream: TCPTransport) -> str:
    return "{}:{}".format(*stream.peer) if stream.peer else "?"


async def _close_quietly(*streams: Any) -> None:
    for s in streams:
        if isinstance(s, TCPTransport):
            s.close()  # no await: nothing to wait for, and so nothing a cancellation could interrupt
        elif s is not None:
            with trio.CancelScope(shield=True):
                try:
                    await s.aclose()
                except (trio.BrokenResourceError, OSError):
                    pass


_BROKEN = (TLSError, trio.BrokenResourceError, trio.ClosedResourceError, OSError)
UPSTREAM, DOWNSTREAM = "upstream", "downstream"  # the sides of a connection, as pqproxy_bytes_proxied names them


def _failed(failures: list[tuple[str, str]], side: str, exc: BaseException, connection: trio.CancelScope) -> None:
    failures.append((side, str(exc) or type(exc).__name__))
    connection.cancel()


async def pump(source: ByteStream, sink: ByteStream, count: Any, touch: Any, failures: list[tuple[str, str]],
               connection: trio.CancelScope, source_side: str, sink_side: str) -> None:
    """Copy until EOF, then pass the EOF on (half-close). trio's send_all gives backpressure.

    Only a clean end is passed on as one: a TLS stream that ended without close_notify (``truncated``), a
    reset or a TLS failure on either side is recorded with the side it happened on, and the whole connection
    is cancelled here (so nothing escapes as an ExceptionGroup from the splice's nursery); ``splice`` then
    resets the other side.
    """
    while True:
        try:
            data = await source.receive_some()
        except _BROKEN as exc:
            return _failed(failures, source_side, exc, connection)
        if not data:
            if source.truncated:  # RFC 8446 §6.1: a truncation must never pass for the end of the data
                failures.append((source_side, "truncated: the TCP connection ended without close_notify"))
                connection.cancel()
                return
            try:
                await sink.send_eof()
            except _BROKEN as exc:
                _failed(failures, sink_side, exc, connection)
            return
        touch()
        count(len(data))
        try:
            await sink.send_all(data)
        except _BROKEN as exc:
            return _failed(failures, sink_side, exc, connection)


async def splice(client_side: ByteStream, upstream_side: ByteStream, record: ConnectionRecord,
                 metrics: MetricsSink, idle_timeout: float) -> bool:
    """Both directions at once until both have seen EOF, or nothing moved for ``idle_timeout``. True when
    the connection ended cleanly; otherwise the side that did not end cleanly is in the record, and the
    caller resets the other one (``reset_sides``)."""
    failures: list[tuple[str, str]] = []
    # Moving a deadline costs trio a heap push: it moves only when that gains more than ``slack``, so the
    # connection is cut between idle_timeout and idle_timeout + slack after the last byte, never before.
    slack = idle_timeout / 16

    def touch() -> None:
        deadline = trio.current_time() + idle_timeout
        if deadline - scope.deadline > 0:
            scope.deadline = deadline + slack

    # Bytes reach the counter in batches: a prometheus_client increment in multi-process mode checks the pid
    # and writes an mmap each time, which was 9% of a worker's CPU in bulk transfers when done per chunk.
    pending = {"upstream": 0, "downstream": 0}

    def flush(direction: str) -> None:
        if pending[direction]:
            metrics.bytes_proxied(direction, pending[direction])
            pending[direction] = 0

    def up(n: int) -> None:
        record.bytes_up += n
        pending["upstream"] += n
        if pending["upstream"] >= METRIC_BATCH_BYTES:
            flush("upstream")

    def down(n: int) -> None:
        record.bytes_down += n
        pending["downstream"] += n
        if pending["downstream"] >= METRIC_BATCH_BYTES:
            flush("downstream")

    try:
        async with trio.open_nursery() as nursery:
            scope = nursery.cancel_scope  # the idle deadline, and what a failing pump cancels
            scope.deadline = trio.current_time() + idle_timeout + slack
            # The connection's own task carries one direction; only the other needs a task of its own.
            nursery.start_soon(pump, upstream_side, client_side, down, touch, failures, scope, UPSTREAM, DOWNSTREAM)
            await pump(client_side, upstream_side, up, touch, failures, scope, DOWNSTREAM, UPSTREAM)
    finally:
        flush("upstream")
        flush("downstream")
    if failures:
        side, error = failures[0]
        record.result = "truncated" if error.startswith("truncated") else "peer_reset"
        record.error = f"{side}: {error}"
        record.reset = DOWNSTREAM if side == UPSTREAM else UPSTREAM
        return False
    if scope.cancelled_caught:
        record.result, record.reset = "idle_timeout", "both"
        return False
    return True


def reset_sides(record: ConnectionRecord, metrics: MetricsSink, downstream: Any, upstream: Any) -> None:
    """Close the side(s) ``record.reset`` names with a TCP RST, and count each (the caller closes the rest): the
    application or upstream behind them then reads an error, never a clean end of a connection that had none."""
    for side, stream in ((DOWNSTREAM, downstream), (UPSTREAM, upstream)):
        if stream is not None and record.reset in (side, "both"):
            reset_transport(stream)
            metrics.reset_propagated(side)


def _upstream_error_kind(exc: BaseException) -> str:
    # trio.open_tcp_stream raises a plain OSError (errno None) "all attempts to connect ... failed" whose
    # __cause__ is an ExceptionGroup of the per-address errors: classify by those, or a refused connection
    # would be counted as "connect_error" instead of "connect_refused".
    cause = exc.__cause__
    if isinstance(exc, OSError) and exc.errno is None and isinstance(cause, BaseExceptionGroup):
        kinds = {_upstream_error_kind(inner) for inner in cause.exceptions}
        return kinds.pop() if len(kinds) == 1 else "connect_error"
    if isinstance(exc, trio.TooSlowError):
        return "connect_timeout"
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return "connect_refused"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable"
    return "connect_error"


class Proxy:
    """One worker's proxy. ``runtime`` may be replaced at any time (reload)."""

    def __init__(self, runtime: ServerRuntime | ClientRuntime, metrics: MetricsSink | None = None,
                 worker: int | None = None) -> None:
        self.worker = worker
        self.metrics: MetricsSink = metrics or NullMetrics()
        self._qkd = QKDEdges(self.metrics)
        self._runtime = runtime
        self.active = 0
        self.draining = False
        self.bound: list[tuple[str, int]] = []
        self._accepting: trio.CancelScope | None = None
        self._connections: trio.Nursery | None = None
        self._idle = trio.Event()

    @property
    def runtime(self) -> ServerRuntime | ClientRuntime:
        return self._runtime

    @runtime.setter
    def runtime(self, runtime: ServerRuntime | ClientRuntime) -> None:
        """A reload: the next connection takes this runtime; the QKD edge of the one before is retired."""
        self._runtime = runtime
        self._qkd.runtime_changed()

    def qkd_edge(self, runtime: ServerRuntime | ClientRuntime) -> QKDEdge | None:
        """This runtime's QKD edge, or None when its QKD is off."""
        return self._qkd.for_runtime(runtime)

    # --- lifecycle --------------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED) -> None:
        runtime = self.runtime
        if isinstance(runtime, ServerRuntime):
            addresses = [(i, listener.address) for i, listener in enumerate(runtime.listeners)]
        else:
            addresses = [(0, runtime.address)]
        listeners = []
        try:
            for index, (host, port) in addresses:
                listeners.append((index, listening_socket(host, port, LISTEN_BACKLOG)))
        except OSError:
            for _, listener in listeners:
                listener.close()
            raise
        self.bound = [listener.getsockname()[:2] for _, listener in listeners]
        for address in self.bound:
            log.info(json.dumps({"event": "listening", "address": "{}:{}".format(*address)}))
        async with trio.open_nursery() as connections:
            self._connections = connections
            with trio.CancelScope() as accepting:
                self._accepting = accepting
                async with trio.open_nursery() as acceptors:
                    for index, listener in listeners:
                        acceptors.start_soon(self._accept_loop, listener, index, connections)
                    acceptors.start_soon(self._qkd.run, lambda: self._runtime)
                    task_status.started(self.bound)
            for _, listener in listeners:
                trio.lowlevel.notify_closing(listener)
                listener.close()
        await self._qkd.aclose()  # the connections have ended (drain): no handshake asks a KME any more

    async def drain(self, timeout: float) -> None:
        """Stop accepting; give open connections ``timeout`` seconds; then cancel them."""
        self.draining = True
        log.info(json.dumps({"event": "draining", "active": self.active, "timeout_s": timeout}))
        if self._accepting is not None:
            self._accepting.cancel()
        with trio.move_on_after(timeout):
            while self.active:
                await trio.sleep(0.05)
        if self._connections is not None and self.active:
            log.info(json.dumps({"event": "drain_timeout", "cancelled": self.active}))
            self._connections.cancel_scope.cancel()

    def _note_drain_cut(self, record: ConnectionRecord) -> bool:
        """A connection still open when drain_timeout expired was cancelled: say so in its log line.

        (Checked here rather than with ``except trio.Cancelled``: the cancellation leaves the splice nursery
        wrapped in an exception group, so such a clause never ran and the line said "ok".)
        """
        if self._connections is not None and self._connections.cancel_scope.cancel_called and record.result == "ok":
            record.result = "drain_timeout"
            return True
        return False

    async def _accept_loop(self, listener: socket.socket, index: int, connections: trio.Nursery) -> None:
        accepted = 0
        while True:
            try:
                stream = await accept(listener)
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning(json.dumps({"event": "accept_error", "error": exc.strerror}))
                    await trio.sleep(0.1)
                    continue
                raise
            if self.active >= self.runtime.limits.max_connections:
                self.metrics.refusal("max_connections")
                log.info(json.dumps({"event": "refused", "refusal": "max_connections", "peer": _peer(stream)}))
                await _close_quietly(stream)
                continue
            self.active += 1
            connections.start_soon(self._run_connection, stream, index)
            accepted += 1
            if accepted % 16 == 0:  # a backlog that never empties must not keep the connections from running
                await trio.lowlevel.checkpoint()

    async def _run_connection(self, stream: TCPTransport, index: int) -> None:
        try:
            runtime = self.runtime  # this connection keeps this runtime even if a reload swaps it
            if isinstance(runtime, ServerRuntime):
                listener = runtime.listeners[min(index, len(runtime.listeners) - 1)]
                await self.handle_server_connection(stream, listener, runtime)
            else:
                await self.handle_client_connection(stream, runtime)
        except Exception as exc:  # a bug must cost this connection only, never the worker and its others
            log.error(json.dumps({"event": "connection_crashed", "error": f"{type(exc).__name__}: {exc}"}))
            await _close_quietly(stream)
        finally:
            self.active -= 1

    # --- server mode ------------------------------------------------------------------------------

    async def handle_server_connection(self, client: TCPTransport, listener: ListenerRuntime,
                                       runtime: ServerRuntime) -> None:
        limits = runtime.limits
        record = ConnectionRecord("server", listener.name, _peer(client), self.worker)
        metrics = self.metrics
        metrics.connection_opened(listener.name)
        upstream: TCPTransport | None = None
        tls: Any = None
        started = time.monotonic()
        # One cancel scope bounds the handshake, the wait for the client's first bytes (upstream_connect =
        # "first-data") and the upstream connect (a scope each cost ~1% of a worker's CPU per connection);
        # ``phase`` says which ran out of time.
        deadline = trio.CancelScope(deadline=trio.current_time() + limits.handshake_timeout)
        phase = "handshake"
        first = b""
        try:
            with deadline:
                tls = await self._server_handshake(client, listener, self.qkd_edge(runtime), record)
                record.fill_from_handshake(tls, started)
                if getattr(tls, "legacy", False):
                    record.version, record.quantum_safe = "TLSv1.2", False
                metrics.handshake("legacy_tls12" if record.version == "TLSv1.2" else "ok", record.group,
                                  time.monotonic() - started, record.client_hello_size, bool(record.quantum_safe))
                if record.resumed:
                    metrics.resumed()
                target = listener.upstream_for(record.sni)
                if target is None:
                    record.result, record.refusal = "no_route", "no_route"
                    metrics.refusal("no_route")
                    record.reset = DOWNSTREAM  # an empty answer must not pass for the service's
                    return
                record.upstream = "{}:{}".format(*target)
                if listener.connect_on_first_data:
                    phase = "first-data"
                    deadline.deadline = trio.current_time() + limits.idle_timeout
                    first = await tls.receive_some()
                    if not first:  # the client left without a word: it never needed an upstream
                        record.upstream = None
                        if not tls.truncated:
                            await tls.send_eof()
                        return
                phase = "connect"
                deadline.deadline = trio.current_time() + limits.connect_timeout
                try:
                    upstream = await connect_tcp(*target)
                except OSError as exc:
                    self._upstream_failed(record, exc)
                    record.reset = DOWNSTREAM  # as a client of the service itself would read: an error
                    return
                phase = "proxy"
            if deadline.cancelled_caught:
                if phase == "handshake":
                    raise trio.TooSlowError
                if phase == "first-data":  # nothing was asked: a clean close, as an idle keep-alive gets
                    record.result, record.upstream = "idle_timeout", None
                    await tls.send_eof()
                else:
                    self._upstream_failed(record, trio.TooSlowError())
                    record.reset = DOWNSTREAM
                return
            assert upstream is not None
            if listener.proxy_protocol:
                from .proxy_protocol import encode_v2, tls_tlvs

                header = encode_v2(_address_of(client, peer=True), _address_of(client, peer=False),
                                   tls_tlvs(record.version or "TLSv1.3", record.cipher or "", record.group,
                                            record.sni, record.alpn, record.client_certificate is not None,
                                            _cn(tls)))
                await upstream.send_all(header)
            if first:
                record.bytes_up += len(first)
                metrics.bytes_proxied("upstream", len(first))
                await upstream.send_all(first)
            await splice(tls, PlainStream(upstream), record, metrics, limits.idle_timeout)
        except TLSError as exc:
            self._record_tls_failure(record, exc, started)
            if upstream is not None:
                record.reset = UPSTREAM
        except trio.TooSlowError:
            record.result, record.refusal = "handshake_timeout", "handshake_timeout"
            metrics.refusal("handshake_timeout")
            metrics.handshake("timeout", None, None, record.client_hello_size, False)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            record.result, record.error = "peer_reset", str(exc) or "connection reset"
            record.reset = "both" if upstream is not None else None
        finally:
            if self._note_drain_cut(record):
                record.reset = "both"
            reset_sides(record, metrics, tls if tls is not None else client, upstream)
            await _close_quietly(upstream, client)
            metrics.connection_closed(listener.name)
            record.emit()

    async def _server_handshake(self, client: TCPTransport, listener: ListenerRuntime, qkd: Any,
                                record: ConnectionRecord) -> Any:
        if qkd is not None or listener.reads_client_hello_first:
            return await self._server_handshake_looking_first(client, listener, qkd, record)
        engine = TLSServer(listener.tls)
        tls = TLSStream(client, engine)
        try:
            await tls.do_handshake()
        except TLSError as exc:
            exc.client_hello_size = engine.handshake.client_hello_size or None  # type: ignore[attr-defined]
            raise
        return tls

    async def _server_handshake_looking_first(self, client: TCPTransport, listener: ListenerRuntime, qkd: Any,
                                              record: ConnectionRecord) -> Any:
        """The edge reads the ClientHello before the engine answers it (as Go's GetConfigForClient): to hand a TLS
        1.2 client to OpenSSL, to take the QKD key its PSK identity names, to refuse a name no route serves. The
        engine reads the hello once, for all of them and for itself."""
        engine = TLSServer(listener.tls, defer_client_hello=True)
        tls = TLSStream(client, engine)
        outcome = None
        try:
            info = await tls.read_client_hello(keep_received=listener.legacy_context is not None)
            record.sni, record.client_hello_size = info.server_name, info.size
            if listener.legacy_context is not None and not info.offers_tls13:
                return await self._legacy_handshake(client, listener, tls, info)
            config = listener.tls
            if qkd is not None:
                config, outcome = await qkd.server_config(config, info)
                record.note_qkd(outcome)
            if listener.upstream_for(info.server_name) is None:
                # RFC 6066 §3: a name the server does not serve may end the handshake with unrecognized_name.
                await tls.refuse(AlertDescription.unrecognized_name,
                                 f"no route for server name {info.server_name!r}", "no_route")
            await tls.continue_handshake(config)
            await tls.do_handshake()
        except TLSError as exc:
            exc.client_hello_size = engine.handshake.client_hello_size or None  # type: ignore[attr-defined]
            raise
        if outcome is not None:
            record.note_qkd(qkd.after_handshake(outcome, tls.info.psk if tls.info else None))
        return tls

    async def _legacy_handshake(self, client: TCPTransport, listener: ListenerRuntime, tls: TLSStream,
                                info: Any) -> Any:
        """A ClientHello without TLS 1.3 on a legacy_tls12 listener: OpenSSL takes the connection from its
        first byte (the bytes read so far are handed over; our engine has answered nothing)."""
        from .legacy import LegacyTLSStream

        assert tls.received is not None
        legacy = LegacyTLSStream(client, listener.legacy_context, bytes(tls.received), info.size)
        tls.received = None
        await legacy.do_handshake()
        legacy.legacy = True  # type: ignore[attr-defined]
        return legacy

    def _upstream_failed(self, record: ConnectionRecord, exc: BaseException) -> None:
        kind = _upstream_error_kind(exc)
        record.result, record.error = "upstream_error", f"{kind}: {exc}"
        self.metrics.upstream_error(kind)

    def _record_tls_failure(self, record: ConnectionRecord, exc: TLSError, started: float) -> None:
        metrics = self.metrics
        record.alert, record.error = exc.alert, str(exc)
        if record.group is None:  # failed during the handshake
            size = getattr(exc, "client_hello_size", None)
            if exc.code:
                record.result, record.refusal = "refused", _REFUSAL_LABELS.get(exc.code, exc.code)
                if exc.code == "psk_required" and record.qkd == "refused":
                    record.refusal = "qkd_required"  # qkd = require and no key: qkd_error says why
                metrics.refusal(record.refusal)
            elif exc.sent and exc.alert:
                record.result, record.refusal = "tls_error", "tls_alert"
                metrics.refusal("tls_alert")
            else:
                record.result = "peer_alert" if exc.alert else "peer_closed"
            metrics.handshake(record.result, None, time.monotonic() - started, size, False)
        else:
            record.result = "tls_error"

    # --- client mode ------------------------------------------------------------------------------

    async def handle_client_connection(self, app: TCPTransport, runtime: ClientRuntime) -> None:
        limits = runtime.limits
        record = ConnectionRecord("client", "{}:{}".format(*runtime.address), _peer(app), self.worker)
        metrics = self.metrics
        metrics.connection_opened(record.listener)
        remote: TCPTransport | None = None
        started = time.monotonic()
        first = b""
        try:
            if runtime.connect_on_first_data:
                with trio.move_on_after(limits.idle_timeout) as waiting:
                    first = await app.receive_some(PUMP_CHUNK)
                if waiting.cancelled_caught:
                    record.result = "idle_timeout"
                    return
                if not first:  # the application left without a word: it never needed the remote
                    return
            config, outcome = runtime.tls, None
            qkd = self.qkd_edge(runtime)
            if qkd is not None:
                try:
                    config, outcome = await qkd.client_config(runtime.tls)
                except QKDRefused as exc:
                    self._refuse_qkd(record, exc)
                    record.reset = DOWNSTREAM  # the application reads an error, not an empty answer
                    return
                record.note_qkd(outcome)
            try:
                with trio.fail_after(limits.connect_timeout):
                    remote = await connect_tcp(*runtime.target)
            except (OSError, trio.TooSlowError) as exc:
                self._upstream_failed(record, exc)
                record.reset = DOWNSTREAM
                return
            record.upstream = "{}:{}".format(*runtime.target)
            tickets = runtime.tickets  # None with QKD: every connection takes a fresh key
            if tickets is not None and (ticket := tickets.take(time.time())) is not None:
                config = replace(config, resume_session=ticket)
            tls = TLSStream(remote, TLSClient(config), on_ticket=tickets.add if tickets is not None else None)
            started = time.monotonic()
            with trio.fail_after(limits.handshake_timeout):
                await tls.do_handshake()
            record.fill_from_handshake(tls, started)
            if qkd is not None and outcome is not None:
                try:
                    record.note_qkd(qkd.after_handshake(outcome, tls.info.psk if tls.info else None))
                except QKDRefused as exc:
                    self._refuse_qkd(record, exc)
                    record.reset = DOWNSTREAM
                    await tls.send_eof()
                    return
            metrics.handshake("ok", record.group, time.monotonic() - started, record.client_hello_size,
                              bool(record.quantum_safe))
            if record.resumed:
                metrics.resumed()
            if first:
                record.bytes_up += len(first)
                metrics.bytes_proxied("upstream", len(first))
                await tls.send_all(first)
            await splice(PlainStream(app), tls, record, metrics, limits.idle_timeout)
        except TLSError as exc:
            record.alert, record.error = exc.alert, str(exc)
            record.result = "tls_error" if exc.sent else ("peer_alert" if exc.alert else "peer_closed")
            metrics.handshake(record.result, None, time.monotonic() - started, None, False)
            record.reset = DOWNSTREAM
        except trio.TooSlowError:
            record.result = "handshake_timeout"
            metrics.handshake("timeout", None, None, None, False)
            record.reset = DOWNSTREAM
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            record.result, record.error = "peer_reset", str(exc) or "connection reset"
            record.reset = "both"
        finally:
            if self._note_drain_cut(record):
                record.reset = "both"
            reset_sides(record, metrics, app, remote)
            await _close_quietly(remote, app)
            metrics.connection_closed(record.listener)
            record.emit()

    def _refuse_qkd(self, record: ConnectionRecord, exc: Any) -> None:
        record.result, record.refusal = "refused", "qkd_required"
        record.qkd, record.qkd_error = "refused", f"{exc.reason}: {exc}"
        self.metrics.refusal("qkd_required")


# Engine refusal codes -> the refusal reasons of metrics and logs.
_REFUSAL_LABELS = {
    "tls12_only_client": "tls12_refused",
    "no_hybrid_group": "no_hybrid_group",
    "no_common_group": "no_common_group",
    "client_hello_too_large": "client_hello_too_large",
    "client_certificate_missing": "client_certificate",
    "client_certificate_invalid": "client_certificate",
    "client_not_allowed": "client_not_allowed",
    "psk_required": "psk_required",
}


def _address_of(stream: TCPTransport, peer: bool) -> tuple[str, int]:
    try:
        address = stream.socket.getpeername() if peer else stream.socket.getsockname()
        return str(address[0]), int(address[1])
    except OSError:
        return ("0.0.0.0", 0)


def _cn(tls: Any) -> str | None:
    info = getattr(tls, "info", None)
    cert = getattr(info, "peer_certificate", None)
    if cert is None:
        return None
    from cryptography.x509.oid import NameOID

    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None
