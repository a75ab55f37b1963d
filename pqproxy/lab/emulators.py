"""Middlebox *emulators*: small TCP proxies that each apply one broken policy of REFERENCE.md §3.

No Debian package reproduces these failures, so each emulator imitates the documented behaviour of
real gear, in front of a real ``pqproxy server`` backend. They are emulators, not the gear: they prove
that the probe's *rules* name the failure they are shown, on real TCP and real TLS, and nothing else.
The tests run them on loopback (``tests/test_probe_emulated.py``); ``pqproxy lab`` runs them on its
middlebox hop (``python -m pqproxy.lab.emulators SPEC.json``, see ``main``). The early-verdict DPI of the
lab is a packet-level emulator instead (``pqproxy.lab.nfqueue``); ``EarlyVerdictEmulator`` here is its
socket-level twin for loopback tests.

Every emulator works the same way: accept a connection, read the client's bytes as its policy needs
(``decide``), then reset, close, answer, silently drop, or connect to a backend and forward. While
forwarding, ``upstream`` sees every later client->server chunk and may drop the connection silently.
Server->client bytes are never touched.

===================================  ============================================================
emulator                             imitates (REFERENCE.md §3)
===================================  ============================================================
``SniOffsetEmulator``                an SNI router with a fixed 1024-byte peek buffer
``TinyFirstSegmentEmulator``         a box that needs >= 8 bytes in the first fragment (F5 K53322151)
``SizeThresholdEmulator``            a hard cap on the hello's record (nginx preread / Envoy
                                     tls_inspector buffers, sslsplit), here 3000 bytes
``CodepointEmulator``                a TLS-inspecting firewall (FortiGate flow mode) that answers
                                     0x11EC with alert illegal_parameter
``SigalgCodepointEmulator``          an IPS threat signature that resets hellos naming ML-DSA
                                     signature schemes (0x0904-0x0906; Go 1.27 clients, 2026)
``EarlyVerdictEmulator``             an IPS whose rule fires before reassembly (AWS Network Firewall
                                     on Suricata 6.0.9): a large hello in pieces is dropped silently
``HrrEmulator``                      a box that forwards the first ClientHello and drops a second one
                                     (broken HelloRetryRequest handling)
``PmtuBlackholeEmulator``            a tunnel hop that drops segments above its MTU with no ICMP;
                                     emulated at the application layer: a single read > 1400 bytes
``FlakyEmulator``                    not a catalogue entry: resets every second connection, or resets
                                     or drops connections at random, to show that a flaky path gives
                                     no diagnosis
===================================  ============================================================

Bounded: every wait has a timeout, the inspection buffer has a maximum, a forwarded connection idle
for ``IDLE_TIMEOUT`` is closed, and ``stop()`` wakes and joins every thread. They listen on 127.0.0.1
unless told otherwise (``host``): the lab gives them its middlebox's 198.18.0.0/15 address.
"""

from __future__ import annotations

import random
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

from pqproxy.tls.alerts import TLSAlert
from pqproxy.tls.codepoints import ContentType, ExtensionType, HandshakeType
from pqproxy.tls.extensions import KeyShareClientHello, NamedGroupList, ServerNameList, SignatureSchemeList
from pqproxy.tls.messages import ClientHello, find_extension
from pqproxy.tls.wire import Reader

HOST = "127.0.0.1"
MAX_BUFFER = 64 * 1024  # bytes an emulator holds while it inspects (a hello is far smaller)
READ_TIMEOUT = 5.0  # each wait for more client bytes while inspecting
CONNECT_TIMEOUT = 2.0
IDLE_TIMEOUT = 10.0  # a forwarded or held connection with no traffic for this long is closed
RECV = 65536
RECORD_HEADER = 5
X25519MLKEM768 = 0x11EC
MLDSA_SCHEMES = frozenset({0x0904, 0x0905, 0x0906})  # mldsa44, mldsa65, mldsa87 (draft-ietf-tls-mldsa)
# Alert illegal_parameter (47) in a plaintext TLS 1.2-versioned record, as FortiGate sends it.
ILLEGAL_PARAMETER_ALERT = bytes((0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x2F))

# Actions of a decision
FORWARD = "forward"
RESET = "reset"  # RST (SO_LINGER 0)
CLOSE = "close"  # FIN, without a word
ANSWER = "answer"  # send bytes (an alert), then FIN
DROP = "drop"  # never answer, never forward: the client times out


@dataclass
class Decision:
    action: str
    note: str = ""
    backend: int | None = None  # FORWARD: the port, None for the emulator's main backend
    answer: bytes = b""


@dataclass
class Conn:
    """One client connection as an emulator sees it."""

    sock: socket.socket
    number: int  # 1 for the first connection the emulator accepted
    buffer: bytearray = field(default_factory=bytearray)  # everything read while deciding
    reads: list[int] = field(default_factory=list)  # the size of each read while deciding
    eof: bool = False
    state: dict[str, Any] = field(default_factory=dict)  # for ``upstream``

    def read(self) -> bytes:
        """One recv, appended to ``buffer``. b"" at EOF or on timeout (``eof`` tells which)."""
        if self.eof:
            return b""
        try:
            data = self.sock.recv(RECV)
        except TimeoutError:
            return b""
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return b""
        if len(self.buffer) + len(data) > MAX_BUFFER:
            raise BufferError(f"more than {MAX_BUFFER} bytes while inspecting")
        self.buffer += data
        self.reads.append(len(data))
        return data

    def read_until(self, enough: int, deadline: float) -> bool:
        """Read until ``buffer`` holds ``enough`` bytes; False on EOF or at the deadline."""
        while len(self.buffer) < enough:
            if self.eof or time.monotonic() > deadline:
                return False
            self.read()
        return True


# --- TLS parsing, enough for a middlebox ----------------------------------------------------------------


def record_header(buf: bytes | bytearray, pos: int = 0) -> tuple[int, int] | None:
    """(content type, length) of the record at ``pos``, None if its header is not all there."""
    if len(buf) < pos + RECORD_HEADER:
        return None
    return buf[pos], int.from_bytes(buf[pos + 3 : pos + 5], "big")


def handshake_prefix(buf: bytes | bytearray) -> bytes:
    """The handshake bytes carried by the leading handshake records of ``buf``; a record cut short
    contributes what is there."""
    out = bytearray()
    pos = 0
    while (header := record_header(buf, pos)) is not None and header[0] == ContentType.handshake:
        body = buf[pos + RECORD_HEADER : pos + RECORD_HEADER + header[1]]
        out += body
        if len(body) < header[1]:
            break
        pos += RECORD_HEADER + header[1]
    return bytes(out)


def client_hello_message(buf: bytes | bytearray) -> bytes | None:
    """The whole first handshake message (header included) once reassembled from its records."""
    hs = handshake_prefix(buf)
    if len(hs) < 4:
        return None
    length = int.from_bytes(hs[1:4], "big")
    return hs[: 4 + length] if len(hs) >= 4 + length else None


def not_tls(buf: bytes | bytearray) -> bool:
    return bool(buf) and buf[0] != ContentType.handshake


def server_name_in(hs: bytes) -> str | None:
    """The host name of a server_name extension that lies whole inside ``hs`` (a ClientHello that may
    be cut short, as a fixed peek buffer sees it); None if it is not there or not complete."""
    if len(hs) < 4 or hs[0] != HandshakeType.client_hello:
        return None
    r = Reader(hs[4:])
    try:
        r.take(2 + 32)  # legacy_version, random
        r.vector8("legacy_session_id")
        r.vector16("cipher_suites")
        r.vector8("legacy_compression_methods")
        r.uint16("extensions length")  # the block may run past the peek: read extension by extension
        while True:
            ext_type = r.uint16("extension type")
            data = r.vector16("extension data")
            if ext_type == ExtensionType.server_name:
                return ServerNameList.decode(data).host_name
    except TLSAlert:  # the peek ends before the extension does
        return None


def offered_groups(message: bytes) -> set[int]:
    """supported_groups and key_share groups of a whole ClientHello message (header included)."""
    hello = ClientHello.decode(message[4:])
    groups: set[int] = set()
    listed = find_extension(hello.extensions, ExtensionType.supported_groups)
    if listed is not None:
        groups.update(NamedGroupList.decode(listed.data).groups)
    shares = find_extension(hello.extensions, ExtensionType.key_share)
    if shares is not None:
        groups.update(e.group for e in KeyShareClientHello.decode(shares.data).client_shares)
    return groups


def offered_signature_schemes(message: bytes) -> dict[str, set[int]]:
    """signature_algorithms and signature_algorithms_cert of a whole ClientHello message, by extension name."""
    hello = ClientHello.decode(message[4:])
    found: dict[str, set[int]] = {}
    for ext_type in (ExtensionType.signature_algorithms, ExtensionType.signature_algorithms_cert):
        listed = find_extension(hello.extensions, ext_type)
        if listed is not None:
            found[ext_type.name] = set(SignatureSchemeList.decode(listed.data).schemes)
    return found


# --- the proxy -------------------------------------------------------------------------------------------


class Emulator:
    """A loopback TCP proxy with one policy; subclasses override ``decide`` and/or ``upstream``.

    ``backend``: the port of the real server; ``default_backend``: where a router sends what it cannot
    place. ``decisions`` records what happened to each connection, in order, for the tests.
    """

    name = "emulator"
    imitates = ""

    def __init__(self, backend: int, default_backend: int | None = None, *, host: str = HOST, port: int = 0,
                 upstream_host: str = HOST) -> None:
        self.backend = backend
        self.default_backend = default_backend
        self.upstream_host = upstream_host
        self.decisions: list[str] = []
        self._listener = socket.create_server((host, port), backlog=64)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._accepted = 0
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"{self.name}-{self.port}", daemon=True)
        self._acceptor.start()

    # -- policy ---------------------------------------------------------------------------------------------

    def decide(self, c: Conn) -> Decision:
        """Read what the policy needs from ``c`` and decide. Default: one read, then forward."""
        c.read()
        return Decision(FORWARD)

    def upstream(self, c: Conn, data: bytes) -> bool:
        """Every client->server chunk once forwarding (the decided-on bytes first). False: drop the
        connection silently from here on."""
        return True

    # -- lifecycle ------------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._acceptor.join(5)
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
            threads = list(self._threads)
        for s in socks:  # wake the connection threads; each closes its own sockets
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(5)

    def note(self, text: str) -> None:
        with self._lock:
            self.decisions.append(text)

    def count(self, prefix: str) -> int:
        with self._lock:
            return sum(1 for d in self.decisions if d.startswith(prefix))

    # -- machinery ------------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._accepted += 1
                number = self._accepted
                self._socks.add(sock)
                self._threads = [t for t in self._threads if t.is_alive()]
                thread = threading.Thread(target=self._serve, args=(sock, number), daemon=True,
                                          name=f"{self.name}-conn-{number}")
                self._threads.append(thread)
            thread.start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.add(sock)

    def _close(self, sock: socket.socket, reset: bool = False) -> None:
        with self._lock:
            self._socks.discard(sock)
        try:
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        except OSError:
            pass

    def _serve(self, sock: socket.socket, number: int) -> None:
        sock.settimeout(READ_TIMEOUT)
        c = Conn(sock, number)
        backend: socket.socket | None = None
        reset = False
        try:
            try:
                decision = self.decide(c)
            except BufferError as exc:
                decision = Decision(RESET, str(exc))
            self.note(f"{decision.action}: {decision.note}".rstrip(": "))
            if decision.action == RESET:
                reset = True
            elif decision.action == ANSWER:
                sock.sendall(decision.answer)
                sock.shutdown(socket.SHUT_WR)
                self._drain(c)
            elif decision.action == DROP:
                self._drain(c)
            elif decision.action == FORWARD:
                port = decision.backend or self.backend
                try:
                    backend = socket.create_connection((self.upstream_host, port), timeout=CONNECT_TIMEOUT)
                except OSError as exc:
                    self.note(f"reset: backend {port}: {exc}")
                    reset = True
                    return
                self._track(backend)
                backend.settimeout(IDLE_TIMEOUT)
                if not self.upstream(c, bytes(c.buffer)):  # the policy noted why
                    self._close(backend)
                    backend = None
                    self._drain(c)
                    return
                if c.buffer:
                    backend.sendall(c.buffer)
                reset = self._pump(c, backend)
        except OSError:
            reset = True
        finally:
            if backend is not None:
                self._close(backend, reset)
            self._close(sock, reset)

    def _drain(self, c: Conn) -> None:
        """Hold the connection, read and discard, never answer; until the client leaves or idles out."""
        c.sock.settimeout(0.2)
        last = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - last < IDLE_TIMEOUT:
            try:
                data = c.sock.recv(RECV)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            last = time.monotonic()

    def _pump(self, c: Conn, backend: socket.socket) -> bool:
        """Forward both ways until both sides are done. True when it ended by a reset."""
        with selectors.DefaultSelector() as sel:
            sel.register(c.sock, selectors.EVENT_READ, "client")
            sel.register(backend, selectors.EVENT_READ, "server")
            open_sides = 2
            last = time.monotonic()
            while open_sides and not self._stop.is_set():
                if time.monotonic() - last > IDLE_TIMEOUT:
                    return False
                for key, _ in sel.select(timeout=0.2):
                    last = time.monotonic()
                    source = c.sock if key.data == "client" else backend
                    sink = backend if key.data == "client" else c.sock
                    try:
                        data = source.recv(RECV)
                    except OSError:
                        return True
                    if not data:
                        sel.unregister(source)
                        open_sides -= 1
                        try:
                            sink.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        continue
                    if key.data == "client" and not self.upstream(c, data):  # the policy noted why
                        sel.unregister(c.sock)
                        sel.unregister(backend)
                        self._drain(c)
                        return False
                    sink.sendall(data)
        return False


# --- the catalogue -------------------------------------------------------------------------------------------


class SniOffsetEmulator(Emulator):
    """``sni-offset``: an SNI router that peeks a fixed 1024 bytes of the stream (waiting for them, across
    segments and records) and looks for server_name only there. A name it finds and knows goes to the
    backend; anything else to the default backend (a server whose certificate does not cover the name),
    or, without one, the connection is closed with a FIN."""

    name = "sni-offset"
    imitates = "SNI routers with a fixed peek buffer (often 1024 bytes)"

    def __init__(self, backend: int, default_backend: int | None = None, *, names: tuple[str, ...],
                 peek: int = 1024, **where: Any) -> None:
        self.names = tuple(names)
        self.peek = peek
        super().__init__(backend, default_backend, **where)

    def decide(self, c: Conn) -> Decision:
        deadline = time.monotonic() + READ_TIMEOUT
        while len(c.buffer) < self.peek and client_hello_message(c.buffer) is None and not not_tls(c.buffer):
            if c.eof or time.monotonic() > deadline:
                break
            c.read()
        name = server_name_in(handshake_prefix(c.buffer[: self.peek]))
        if name in self.names:
            return Decision(FORWARD, f"server_name {name} in the first {self.peek} bytes")
        if self.default_backend is None:
            return Decision(CLOSE, f"no server_name in the first {self.peek} bytes")
        return Decision(FORWARD, f"default backend: server_name {name!r} in the first {self.peek} bytes",
                        backend=self.default_backend)


class TinyFirstSegmentEmulator(Emulator):
    """``tiny-first-segment``: resets the connection when the first read brings fewer than 8 bytes
    (F5 K53322151); otherwise forwards everything."""

    name = "tiny-first-segment"
    imitates = "F5 BIG-IP (K53322151): needs >= 8 bytes in the first fragment"

    def __init__(self, backend: int, *, minimum: int = 8, **where: Any) -> None:
        self.minimum = minimum
        super().__init__(backend, **where)

    def decide(self, c: Conn) -> Decision:
        first = c.read()
        if len(first) < self.minimum:
            return Decision(RESET, f"first read of {len(first)} byte(s)")
        return Decision(FORWARD)


class SizeThresholdEmulator(Emulator):
    """``size-threshold``: reassembles the first record (whatever the TCP split), then resets the
    connection if that record is more than ``limit`` bytes on the wire, its 5-byte header included. A
    hello of ``limit - 5`` bytes (the probe's ``size``) still passes; ``limit - 4`` fails. With ``silent``
    it holds such a connection instead, never answering or closing it (the slowest path to probe)."""

    name = "size-threshold"
    imitates = "a hard cap on the hello (nginx preread / Envoy tls_inspector buffers, sslsplit)"

    def __init__(self, backend: int, *, limit: int = 3000, silent: bool = False, **where: Any) -> None:
        self.limit = limit
        self.silent = silent
        super().__init__(backend, **where)

    @property
    def first_failing_size(self) -> int:
        """The smallest handshake message (the probe's ``size``) that this emulator refuses."""
        return self.limit - RECORD_HEADER + 1

    def decide(self, c: Conn) -> Decision:
        deadline = time.monotonic() + READ_TIMEOUT
        c.read_until(RECORD_HEADER, deadline)
        header = record_header(c.buffer)
        if header is None or header[0] != ContentType.handshake:
            return Decision(FORWARD, "not a handshake record")
        wire = RECORD_HEADER + header[1]
        if not c.read_until(wire, deadline):
            return Decision(CLOSE, "the first record never completed")
        if wire > self.limit:
            return Decision(DROP if self.silent else RESET, f"first record of {wire} bytes > {self.limit}")
        return Decision(FORWARD, f"first record of {wire} bytes")


def whole_client_hello(c: Conn) -> bytes | Decision:
    """Read until the first ClientHello is whole (as a box that reassembles and parses it does): the message, or
    the decision when it never comes (not TLS: forward; an end or a stall: close)."""
    deadline = time.monotonic() + READ_TIMEOUT
    while (message := client_hello_message(c.buffer)) is None:
        if not_tls(c.buffer):
            return Decision(FORWARD, "not TLS")
        if c.eof or time.monotonic() > deadline:
            return Decision(CLOSE, "the ClientHello never completed")
        c.read()
    return message


class CodepointEmulator(Emulator):
    """``codepoint``: a TLS-inspecting firewall that reassembles and parses the ClientHello and, when
    supported_groups or key_share has X25519MLKEM768 (0x11EC), answers a plaintext alert
    illegal_parameter and closes. Anything else is forwarded. Only the first ClientHello is inspected."""

    name = "codepoint"
    imitates = "FortiGate in flow mode: alert illegal_parameter on 0x11EC"

    def decide(self, c: Conn) -> Decision:
        message = whole_client_hello(c)
        if isinstance(message, Decision):
            return message
        try:
            groups = offered_groups(message)
        except TLSAlert as exc:  # fail open, as such boxes do on what they cannot parse
            return Decision(FORWARD, f"unparsed: {exc}")
        if X25519MLKEM768 in groups:
            return Decision(ANSWER, "0x11EC offered", answer=ILLEGAL_PARAMETER_ALERT)
        return Decision(FORWARD, "no 0x11EC")


class SigalgCodepointEmulator(Emulator):
    """``sigalg-codepoint``: an IPS whose threat signature matches ML-DSA signature schemes (0x0904-0x0906) in
    signature_algorithms or signature_algorithms_cert of a ClientHello and resets the connection, whatever the
    hello's size (a firewall did this to Go 1.27 clients in 2026: golang/go #79626, #81199). Anything else is
    forwarded. Only the first ClientHello is inspected."""

    name = "sigalg-codepoint"
    imitates = "an IPS signature that resets hellos naming ML-DSA signature schemes"

    def decide(self, c: Conn) -> Decision:
        message = whole_client_hello(c)
        if isinstance(message, Decision):
            return message
        try:
            schemes = offered_signature_schemes(message)
        except TLSAlert as exc:  # fail open, as such boxes do on what they cannot parse
            return Decision(FORWARD, f"unparsed: {exc}")
        hits = sorted(f"{name}:0x{s:04x}" for name, listed in schemes.items() for s in listed & MLDSA_SCHEMES)
        if hits:
            return Decision(RESET, f"ML-DSA named ({', '.join(hits)})")
        return Decision(FORWARD, "no ML-DSA scheme")


class EarlyVerdictEmulator(Emulator):
    """``early-verdict``: an IPS that judges the first read alone. When it holds a record header that
    announces a *large* hello (``large`` bytes or more) but not the whole record, its rule fires before
    reassembly and the connection is dropped silently (never forwarded, never answered). A small hello
    split in two (``classical/split@100``: a ~200-byte record) passes, and so does a small one-segment
    hello even when a HelloRetryRequest then brings a large second ClientHello: only the first read of a
    connection is judged. A first read too short for a record header is let through."""

    name = "early-verdict"
    imitates = "AWS Network Firewall on Suricata 6.0.9: a rule fires before reassembly"

    def __init__(self, backend: int, *, large: int = 1024, **where: Any) -> None:
        self.large = large
        super().__init__(backend, **where)

    def decide(self, c: Conn) -> Decision:
        first = c.read()
        header = record_header(first)
        if header is None or header[0] != ContentType.handshake:
            return Decision(FORWARD, f"first read of {len(first)} byte(s): nothing to judge")
        complete = len(first) >= RECORD_HEADER + header[1]
        if not complete and header[1] >= self.large:
            return Decision(DROP, f"first read of {len(first)} bytes of a {header[1]}-byte record")
        return Decision(FORWARD, f"first read of {len(first)} bytes of a {header[1]}-byte record")


class HrrEmulator(Emulator):
    """``hrr``: forwards the first ClientHello (in however many records and segments), then drops the
    connection silently at the first plaintext handshake record that follows it: the second
    ClientHello after a HelloRetryRequest. (The client's later handshake messages are encrypted, so
    they travel in application_data records.)"""

    name = "hrr"
    imitates = "a box that mishandles HelloRetryRequest (drops the second ClientHello)"

    def upstream(self, c: Conn, data: bytes) -> bool:
        s = c.state
        if s.get("tracking") is False:
            return True
        pending: bytearray = s.setdefault("pending", bytearray())
        first: bytearray = s.setdefault("first", bytearray())
        pending += data
        while (header := record_header(pending)) is not None:
            kind, length = header
            done = len(first) >= 4 and len(first) >= 4 + int.from_bytes(first[1:4], "big")
            if done and kind == ContentType.handshake:
                self.note("drop: a second ClientHello")
                return False
            if len(pending) < RECORD_HEADER + length:
                break
            if kind == ContentType.handshake:
                first += pending[RECORD_HEADER : RECORD_HEADER + length]
            del pending[: RECORD_HEADER + length]
        if len(pending) > MAX_BUFFER:
            s["tracking"] = False  # not TLS as we know it: stop looking
        return True


class PmtuBlackholeEmulator(Emulator):
    """``pmtu-blackhole``, at the application layer: a single read of more than ``mtu`` bytes stands for
    a segment above the path MTU, which the hop drops without an ICMP "fragmentation needed". From then
    on nothing is forwarded and nothing answered (the client's retransmits would die the same way), so
    the client times out. Small writes, with pauses between them, arrive as small reads and pass."""

    name = "pmtu-blackhole"
    imitates = "a tunnel hop that drops full-size segments, ICMP filtered"

    def __init__(self, backend: int, *, mtu: int = 1400, **where: Any) -> None:
        self.mtu = mtu
        super().__init__(backend, **where)

    def upstream(self, c: Conn, data: bytes) -> bool:
        if len(data) > self.mtu:
            self.note(f"drop: a {len(data)}-byte segment")
            return False
        return True


class FlakyEmulator(Emulator):
    """Not a catalogue entry: resets every ``every``-th connection after its first read, whatever it
    carries, and forwards the others. With ``chance`` it fails connections at random instead (a seeded
    draw per connection number), and with ``silent`` a failed connection is held, never answered, instead of reset:
    a lossy path. A path that fails at random must give no diagnosis."""

    name = "flaky"
    imitates = "an overloaded box that resets or drops connections regardless of content"

    def __init__(self, backend: int, *, every: int = 2, chance: float | None = None, seed: int = 0,
                 silent: bool = False, **where: Any) -> None:
        self.every = every
        self.chance = chance
        self.seed = seed
        self.silent = silent
        super().__init__(backend, **where)

    def decide(self, c: Conn) -> Decision:
        c.read()
        if self.chance is not None:  # drawn from the connection's number: the same run fails the same connections
            failed = random.Random(f"{self.seed}:{c.number}").random() < self.chance
        else:
            failed = c.number % self.every == 0
        if failed:
            return Decision(DROP if self.silent else RESET, f"connection {c.number}")
        return Decision(FORWARD, f"connection {c.number}")


class SilentEmulator(Emulator):
    """Accepts and never answers: a target that is there at the TCP level only."""

    name = "silent"
    imitates = "a dead service behind a live load balancer"

    def decide(self, c: Conn) -> Decision:
        return Decision(DROP)


# --- running emulators as a process (the lab's middlebox hop) ----------------------------------------------

EMULATORS: dict[str, type[Emulator]] = {
    cls.name: cls
    for cls in (SniOffsetEmulator, TinyFirstSegmentEmulator, SizeThresholdEmulator, CodepointEmulator,
                SigalgCodepointEmulator, EarlyVerdictEmulator, HrrEmulator, PmtuBlackholeEmulator, FlakyEmulator,
                SilentEmulator)
}


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def start_from_spec(spec: dict[str, Any]) -> Emulator:
    """One emulator from a spec entry: ``{"emulator": NAME, "listen": "H:P", "backend": "H:P",
    "default_backend": "H:P" (optional, same host as backend), "options": {...}}``."""
    cls = EMULATORS[spec["emulator"]]
    host, port = _host_port(spec["listen"])
    upstream_host, backend = _host_port(spec["backend"])
    default = _host_port(spec["default_backend"])[1] if spec.get("default_backend") else None
    options = dict(spec.get("options", {}))
    if default is not None:
        options["default_backend"] = default
    return cls(backend, host=host, port=port, upstream_host=upstream_host, **options)


def main(argv: list[str] | None = None) -> int:
    """``python -m pqproxy.lab.emulators SPEC.json``: run the emulators a JSON list describes until SIGTERM
    or SIGINT, printing one JSON line per decision (what each connection met, for ``pqproxy lab`` logs)."""
    import json
    import signal
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m pqproxy.lab.emulators SPEC.json", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        specs = json.load(f)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    running: list[Emulator] = []
    try:
        for spec in specs:
            running.append(start_from_spec(spec))
        print(json.dumps({"event": "ready", "emulators": [f"{e.name}@{e.port}" for e in running]}), flush=True)
        seen = [0] * len(running)
        while not stop.wait(0.5):
            for i, emulator in enumerate(running):
                with emulator._lock:
                    new = emulator.decisions[seen[i]:]
                seen[i] += len(new)
                for decision in new:
                    print(json.dumps({"event": "decision", "emulator": emulator.name, "port": emulator.port,
                                      "decision": decision}), flush=True)
    finally:
        for emulator in running:
            emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
