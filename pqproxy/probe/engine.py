"""One probe attempt: connect, deliver a hello in a shape, read what comes back, name it.

The answer is read twice over: a small plaintext parser (``ResponseReader``) sees the first records
and says ServerHello, HelloRetryRequest, alert or "not TLS" for any hello, replayed ones included;
when we hold the hello's private key shares, the project's own TLS client engine (started from the
same prebuilt hello) also decrypts the server's flight, so the outcome carries the certificate that
answered. Two probes that reach different backends behind a router differ there, and only there.
"""

from __future__ import annotations

import errno
import hashlib
import socket
import time
from dataclasses import dataclass

import trio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..tls.alerts import alert_name
from ..tls.chain_validation import certificate_matches_name
from ..tls.client import TLSClient
from ..tls.codepoints import ContentType, HandshakeType
from ..tls.config import TLSConfig
from ..tls.events import AlertReceived, AlertSent, HandshakeComplete
from ..tls.extensions import KeyShareHelloRetryRequest, KeyShareServerHello
from ..tls.groups import GROUPS, group_name
from ..tls.key_schedule import CIPHER_SUITES
from ..tls.messages import ServerHello
from . import model
from .delivery import Shape, wire_bytes, writes
from .profiles import ProbeHello

READ_CHUNK = 65536
MAX_RESPONSE = 256 * 1024  # a server flight is a few KiB; more is not a TLS server talking to us
MAX_FIRST_MESSAGE = 64 * 1024
CLOSE_GRACE = 1.0  # seconds to say goodbye politely after the verdict is in
# After a timeout: a path that swallowed the hello usually swallows our FIN too (an IPS that condemned the
# flow), and waiting a whole grace period on every silent attempt made black-holed paths slow to probe.
SILENT_CLOSE_GRACE = 0.25

_ML_DSA_OIDS = {
    "2.16.840.1.101.3.4.3.17": "ML-DSA-44",
    "2.16.840.1.101.3.4.3.18": "ML-DSA-65",
    "2.16.840.1.101.3.4.3.19": "ML-DSA-87",
}


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    server_name: str | None = None
    proxy: tuple[str, int] | None = None  # an HTTP proxy to go through with CONNECT (corporate egress, Squid)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_target(text: str, server_name: str | None = None) -> Target:
    """``host:port``, ``[v6]:port`` or ``host`` (port 443). The SNI defaults to a host name target."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.lstrip(":") or "443"
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, "443"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"target {text!r}: the port must be a number") from None
    if not host or not 0 < port < 65536:
        raise ValueError(f"target {text!r}: want host:port")
    if server_name is None and not _is_ip(host):
        server_name = host
    return Target(host, port, server_name)


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def certificate_signature_name(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    return _ML_DSA_OIDS.get(oid.dotted_string) or getattr(oid, "_name", None) or oid.dotted_string


class ResponseReader:
    """Classifies the server's answer to one hello; feed it bytes until ``done``."""

    def __init__(self, hello: ProbeHello, decrypt: bool = True) -> None:
        self.hello = hello
        self.buffer = bytearray()
        self.received = 0
        self.outcome: model.Outcome | None = None
        self.first: ServerHello | None = None
        self.client: TLSClient | None = None
        if hello.readable and decrypt:
            groups = tuple(g for g in hello.groups if g in GROUPS)  # the rest we can offer, not compute
            config = TLSConfig(groups=groups or (0x001D,), cipher_suites=hello.cipher_suites,
                               signature_schemes=hello.signature_schemes, verify_peer=False,
                               server_name=hello.server_name, session_tickets=0)
            self.client = TLSClient(config, hello.hello, hello.key_shares)
            self.client.data_to_send()  # the hello itself: the probe delivers it in its own shape

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def to_send(self) -> bytes:
        """What our side must write now (a second ClientHello after HRR, our Finished)."""
        return self.client.data_to_send() if self.client is not None else b""

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        self.received += len(data)
        if len(self.buffer) < MAX_FIRST_MESSAGE:
            self.buffer += data
        if self.first is None and not self._read_first():
            return
        if self.client is None:
            return
        for event in self.client.receive_data(data):
            if isinstance(event, HandshakeComplete):
                cert = event.peer_certificate
                self.outcome = self._server_hello(
                    hello_retry=event.hello_retry,
                    certificate_sha256=hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest() if cert else None,
                    certificate_signature=certificate_signature_name(cert) if cert else None,
                    certificate_matches_name=(certificate_matches_name(cert, self.hello.server_name)
                                              if cert is not None and self.hello.server_name else None),
                    signature_scheme=event.signature_scheme,
                    group=event.group,
                    cipher=event.cipher_suite,
                )
                return
            if isinstance(event, AlertReceived):
                retried = bool(self.first and self.first.is_hello_retry_request)
                self.outcome = model.Outcome(model.ALERT, alert=event.name, hello_retry=retried,
                                             detail="encrypted" + (" after HelloRetryRequest" if retried else ""))
                return
            if isinstance(event, AlertSent):
                # Our engine refused something in the server's answer; the path itself delivered it.
                first = self.first
                if first is not None and first.is_hello_retry_request and self.client.handshake.group is None:
                    self.outcome = model.Outcome(model.HELLO_RETRY_REQUEST, group=_hrr_group(first),
                                                 cipher=_suite_name(first.cipher_suite),
                                                 detail=f"not followed: {event.reason}")
                else:
                    self.outcome = self._server_hello(detail=f"our check failed: {event.reason}")
                return

    def _read_first(self) -> bool:
        """Parse the first plaintext records. True once the first ServerHello is in hand."""
        buf = self.buffer
        if len(buf) >= 1 and buf[0] not in (ContentType.handshake, ContentType.alert,
                                            ContentType.change_cipher_spec):
            self.outcome = model.Outcome(model.NOT_TLS, detail=_preview(buf))
            return False
        if len(buf) >= 2 and buf[1] != 3:
            self.outcome = model.Outcome(model.NOT_TLS, detail=_preview(buf))
            return False
        handshake = bytearray()
        pos = 0
        while pos + 5 <= len(buf):
            ctype, length = buf[pos], int.from_bytes(buf[pos + 3 : pos + 5], "big")
            if length > 16384 + 256:
                self.outcome = model.Outcome(model.NOT_TLS, detail=f"record of {length} bytes")
                return False
            if pos + 5 + length > len(buf):
                break
            body = buf[pos + 5 : pos + 5 + length]
            pos += 5 + length
            if ctype == ContentType.alert:
                if len(body) != 2:
                    self.outcome = model.Outcome(model.NOT_TLS, detail="malformed alert record")
                else:
                    self.outcome = model.Outcome(model.ALERT, alert=alert_name(body[1]))
                return False
            if ctype == ContentType.handshake:
                handshake += body
                if len(handshake) >= 4:
                    msg_len = int.from_bytes(handshake[1:4], "big")
                    if handshake[0] != HandshakeType.server_hello:
                        self.outcome = model.Outcome(model.NOT_TLS, detail=f"handshake type {handshake[0]} first")
                        return False
                    if len(handshake) >= 4 + msg_len:
                        return self._on_server_hello(bytes(handshake[4 : 4 + msg_len]))
            elif ctype != ContentType.change_cipher_spec:
                self.outcome = model.Outcome(model.NOT_TLS, detail=f"record type {ctype} before ServerHello")
                return False
        return False

    def _on_server_hello(self, body: bytes) -> bool:
        try:
            hello = ServerHello.decode(body)
        except Exception as exc:  # the codec raises TLSAlert (and only that) on bad input
            self.outcome = model.Outcome(model.NOT_TLS, detail=f"ServerHello does not parse: {exc}")
            return False
        self.first = hello
        if hello.is_hello_retry_request and self.client is None:
            self.outcome = model.Outcome(model.HELLO_RETRY_REQUEST, group=_hrr_group(hello),
                                         cipher=_suite_name(hello.cipher_suite))
            return True
        if self.client is None:
            self.outcome = self._server_hello()
        return True

    def _server_hello(self, **fields: object) -> model.Outcome:
        first = self.first
        assert first is not None
        base: dict[str, object] = {"cipher": _suite_name(first.cipher_suite)}
        if first.is_hello_retry_request:
            base["hello_retry"] = True
        else:
            base["group"] = _server_group(first)
        base.update({k: v for k, v in fields.items() if v is not None})
        return model.Outcome(model.SERVER_HELLO, **base)  # type: ignore[arg-type]

    def finish(self, kind: str, detail: str = "") -> model.Outcome:
        """The outcome once the connection ended (FIN, RST, timeout) before ``done``."""
        if self.outcome is not None:
            return self.outcome
        if self.first is not None:
            if self.first.is_hello_retry_request:
                detail = f"after HelloRetryRequest for {_hrr_group(self.first)}" + (f"; {detail}" if detail else "")
                return model.Outcome(kind, group=_hrr_group(self.first), detail=detail, hello_retry=True)
            # A ServerHello came, then the flight stopped: the path delivered the hello.
            return self._server_hello(detail=f"{kind} during the server's flight")
        if self.received and kind == model.TIMEOUT:
            detail = (detail + "; " if detail else "") + f"{self.received} bytes, no complete ServerHello"
        return model.Outcome(kind, detail=detail)


def _preview(buf: bytes | bytearray) -> str:
    head = bytes(buf[:24])
    text = head.decode("ascii", "replace") if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else head.hex()
    return f"not a TLS record: {text!r}"


def _suite_name(code: int) -> str:
    info = CIPHER_SUITES.get(code)
    return info.name if info is not None else f"0x{code:04x}"


def _server_group(hello: ServerHello) -> str | None:
    for e in hello.extensions:
        if e.type == 51:
            try:
                return group_name(KeyShareServerHello.decode(e.data).server_share.group)
            except Exception:
                return None
    return None


def _hrr_group(hello: ServerHello) -> str | None:
    for e in hello.extensions:
        if e.type == 51:
            try:
                return group_name(KeyShareHelloRetryRequest.decode(e.data).selected_group)
            except Exception:
                return None
    return None


# --- kernel delivery ------------------------------------------------------------------------------


def _connect_and_send(target: Target, first: bytes, connect_timeout: float) -> socket.socket:
    """Connect and write the first piece at once, as a browser does: a box that decides on the first
    bytes it sees must see the hello, not an empty buffer because the probe was slow to write."""
    host, port = target.proxy or (target.host, target.port)
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.settimeout(connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # On a connecting socket Linux then holds back the handshake's final ACK until our first write
        # carries it: the server's kernel has the hello queued before its application accepts the
        # connection, as it would from a client that writes at once over a real network.
        if hasattr(socket, "TCP_DEFER_ACCEPT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
        sock.connect(address)
        if target.proxy is not None:
            _http_connect(sock, target)
        sock.sendall(first)
    except BaseException:
        sock.close()
        raise
    return sock


MAX_PROXY_RESPONSE = 8192


class ProxyRefused(OSError):
    """The HTTP proxy did not open the tunnel."""


def _http_connect(sock: socket.socket, target: Target) -> None:
    """RFC 9110 §9.3.6 CONNECT through an HTTP proxy; the socket's timeout bounds the wait."""
    authority = f"[{target.host}]:{target.port}" if ":" in target.host else f"{target.host}:{target.port}"
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode("ascii"))
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(1024)  # small reads: nothing past the proxy's headers is taken from the tunnel
        if not chunk:
            raise ProxyRefused(f"the proxy closed before answering CONNECT {authority}")
        response += chunk
        if len(response) > MAX_PROXY_RESPONSE:
            raise ProxyRefused("the proxy's answer to CONNECT is over 8 KiB of headers")
    head, _, rest = response.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or parts[1] != "200":
        raise ProxyRefused(f"the proxy refused CONNECT {authority}: {status[:120]}")
    if rest:
        raise ProxyRefused("the proxy sent bytes into the tunnel before the hello")


async def run_kernel_attempt(target: Target, hello: ProbeHello, shape: Shape, *, pause: float,
                             timeout: float, connect_timeout: float) -> model.Outcome:
    """Deliver ``hello`` over a kernel TCP socket in ``shape`` and classify the answer."""
    started = time.monotonic()
    pieces = writes(hello.encode(), shape)
    reader = ResponseReader(hello)
    try:
        sock = await trio.to_thread.run_sync(_connect_and_send, target, pieces[0], connect_timeout)
    except TimeoutError:
        return model.Outcome(model.UNREACHABLE, detail=f"TCP handshake timed out after {connect_timeout:g}s",
                             elapsed_ms=(time.monotonic() - started) * 1000)
    except ProxyRefused as exc:
        return model.Outcome(model.UNREACHABLE, detail=str(exc), elapsed_ms=(time.monotonic() - started) * 1000)
    except (ConnectionResetError, BrokenPipeError) as exc:
        return model.Outcome(model.RST, detail=f"while sending: {exc}", elapsed_ms=(time.monotonic() - started) * 1000)
    except OSError as exc:
        outcome = _connect_error(exc)
        outcome.elapsed_ms = (time.monotonic() - started) * 1000
        return outcome
    local_port = sock.getsockname()[1]
    sock.setblocking(False)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    said: model.Outcome | None = None
    try:
        said = await _converse(stream, reader, pieces[1:], pause=pause, timeout=timeout)
    finally:
        silent = said is not None and said.kind == model.TIMEOUT
        with trio.move_on_after(SILENT_CLOSE_GRACE if silent else CLOSE_GRACE) as close_scope:
            close_scope.shield = True
            await _goodbye(stream, reader)
    outcome = said
    outcome.elapsed_ms = (time.monotonic() - started) * 1000
    outcome.bytes_received = reader.received
    outcome.local_port = local_port
    return outcome


async def _converse(stream: trio.SocketStream, reader: ResponseReader, pieces: list[bytes], *,
                    pause: float, timeout: float) -> model.Outcome:
    try:
        for piece in pieces:  # the rest, after the first piece went out with the connection
            await trio.sleep(pause)
            await stream.send_all(piece)
    except trio.BrokenResourceError as exc:
        return reader.finish(model.RST, f"while sending: {_cause(exc)}")
    sent = time.monotonic()
    outcome = await _await_answer(stream, reader, timeout)
    outcome.wait_ms = (time.monotonic() - sent) * 1000
    return outcome


async def _await_answer(stream: trio.SocketStream, reader: ResponseReader, timeout: float) -> model.Outcome:
    with trio.move_on_after(timeout):
        try:
            while not reader.done:
                data = await stream.receive_some(READ_CHUNK)
                if not data:
                    return reader.finish(model.FIN)
                reader.feed(data)
                if reader.received > MAX_RESPONSE and not reader.done:
                    return reader.finish(model.NOT_TLS, f"over {MAX_RESPONSE} bytes without a handshake")
                out = reader.to_send()
                if out:
                    await stream.send_all(out)
            return reader.finish(model.SERVER_HELLO)
        except trio.BrokenResourceError as exc:
            return reader.finish(model.RST, _cause(exc))
    return reader.finish(model.TIMEOUT, f"no answer within {timeout:g}s")


async def _goodbye(stream: trio.SocketStream, reader: ResponseReader) -> None:
    """Finish politely: our Finished and close_notify when the handshake completed, then FIN."""
    try:
        client = reader.client
        if client is not None and reader.outcome is not None and reader.outcome.kind == model.SERVER_HELLO:
            client.close()
            out = client.data_to_send()
            if out:
                await stream.send_all(out)
        await stream.send_eof()
        # Read to the server's FIN (bounded by the caller's grace period), so neither side sees a reset:
        # closing with unread data (its session ticket, its close_notify) would make our kernel send RST.
        drained = 0
        while drained < MAX_RESPONSE:
            data = await stream.receive_some(READ_CHUNK)
            if not data:
                break
            drained += len(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        await stream.aclose()


def _connect_error(exc: OSError) -> model.Outcome:
    code = getattr(exc, "errno", None)
    if code is None and isinstance(exc, OSError) and exc.__cause__ is not None:
        code = getattr(exc.__cause__, "errno", None)
    text = str(exc)
    if code == errno.ECONNREFUSED or "refused" in text.lower():
        return model.Outcome(model.REFUSED, detail="connection refused")
    return model.Outcome(model.UNREACHABLE, detail=text)


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return str(cause or exc) or type(exc).__name__


# --- raw delivery ---------------------------------------------------------------------------------


async def run_raw_attempt(target: Target, hello: ProbeHello, shape: Shape, *, pause: float,
                          timeout: float) -> tuple[model.Outcome, list[object]]:
    """Deliver in raw segments (scapy, root). Returns the outcome and the flow's packets."""
    from . import raw

    wire = wire_bytes(hello.encode(), shape)
    reader = ResponseReader(hello)

    # Enough has come once the ServerHello is in; the raw sender hands us everything so far each time.
    light = ResponseReader(hello, decrypt=False)

    def want(response: bytes) -> bool:
        light.feed(response[light.received:])
        return light.done

    cuts: list[int] | None = None
    segment_size: int | None = None
    order: list[int] | None = None
    if shape.kind == "raw-segments":
        segment_size = shape.numbers[0]
    elif shape.kind == "raw-cuts":
        cuts = list(shape.numbers)
    else:  # raw-reorder: the second segment first
        segment_size = shape.numbers[0]
        count = -(-len(wire) // segment_size)
        order = [1, 0, *range(2, count)] if count > 1 else [0]

    def deliver() -> raw.RawResult:
        return raw.deliver_segments(target.host, target.port, wire, cuts=cuts, segment_size=segment_size,
                                    order=order, pause=pause, timeout=timeout, want=want)

    started = time.monotonic()
    result = await trio.to_thread.run_sync(deliver)
    if not result.connected:
        error = result.error or "no connection"
        kind = model.REFUSED if "refused" in error else model.UNREACHABLE
        return model.Outcome(kind, detail=error, elapsed_ms=(time.monotonic() - started) * 1000), result.packets
    reader.feed(bytes(result.response))
    if reader.done:
        outcome = reader.finish(model.SERVER_HELLO)
    elif result.icmp:
        icmp_type, icmp_code, source = result.icmp[0]
        outcome = model.Outcome(model.ICMP, icmp=model.IcmpReport(icmp_type, icmp_code, source))
    elif result.rst:
        outcome = reader.finish(model.RST)
    elif result.fin:
        outcome = reader.finish(model.FIN)
    else:
        outcome = reader.finish(model.TIMEOUT, f"no answer within {timeout:g}s")
    outcome.elapsed_ms = result.elapsed_ms
    outcome.bytes_received = len(result.response)
    return outcome, result.packets
