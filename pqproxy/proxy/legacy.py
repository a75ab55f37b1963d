"""TLS 1.2 fallback for clients that do not offer TLS 1.3, through Python's ``ssl`` module (OpenSSL).

Our engine speaks only TLS 1.3. A server that must still serve TLS 1.2-only clients lets the engine read the
ClientHello first (``TLSServer(defer_client_hello=True)``: nothing is answered yet) and, when it does not offer
TLS 1.3 (``ClientHelloInfo.offers_tls13``), hands the connection to ``LegacyTLSStream``: OpenSSL does the TLS 1.2
through a pair of ``ssl.MemoryBIO`` (no socket is given to OpenSSL, trio does the I/O), with the bytes already
read fed in first. Such a connection is never quantum
safe: TLS 1.2 has no hybrid key exchange (``LegacyInfo.quantum_safe`` is always False).

The context (``legacy_context``) is TLS 1.2 only, ECDHE with AEAD ciphers only, no compression, no
renegotiation and no session tickets (see ``legacy_context`` for why).

What Python 3.11's ``ssl`` tells about a TLS 1.2 session: ``version()``, ``cipher()`` (OpenSSL name,
protocol, secret bits), ``shared_ciphers()`` (the client's offer intersected with ours), ALPN,
``session_reused``, ``compression()`` and the verified peer certificate (dict or DER); the SNI only
through ``sni_callback``. It does not tell the key-exchange group (no API for it in 3.11; only much newer
CPython adds ``SSLSocket.group()``). We read the group ourselves from the plaintext ServerKeyExchange that
OpenSSL writes into the outgoing BIO (RFC 8422 §5.4: curve_type named_curve, then the NamedGroup), so
``LegacyInfo.group`` is exact (None for a resumed session, which has no key exchange).
"""

from __future__ import annotations

import ssl
import struct
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import trio
from cryptography import x509
from cryptography.x509.oid import NameOID

from ..tls.codepoints import ContentType
from ..tls.groups import group_name
from .tlsstream import TLSError, half_close, reset_transport

RECEIVE_SIZE = 64 * 1024
SEND_CHUNK = 64 * 1024  # plaintext handed to OpenSSL at once: bounds the outgoing BIO
# What the engine read before it showed the ClientHello: the hello (at most the 1 MiB max_client_hello allows, in
# records) and whatever else came in the same reads (at most one more read of the TLSStream's 256 KiB).
MAX_INITIAL_BYTES = (1 << 20) + 2 * 256 * 1024
MAX_OBSERVED_HANDSHAKE = 256 * 1024  # our own first flight (certificate chain included) parsed for the group
LEGACY_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"

_HANDSHAKE = int(ContentType.handshake)
_CHANGE_CIPHER_SPEC = int(ContentType.change_cipher_spec)
_SERVER_KEY_EXCHANGE = 12
_NAMED_CURVE = 3


class LegacyTLSError(TLSError):
    """The TLS 1.2 connection failed; ``alert`` is the alert's name when one is known (sent or received)."""

    def __init__(self, message: str, alert_name: str | None = None, sent: bool = True, code: str | None = None) -> None:
        super().__init__(message, alert_name, sent=sent, code=code)


@dataclass(frozen=True)
class LegacyInfo:
    version: str  # "TLSv1.2"
    cipher: str  # OpenSSL name, e.g. "ECDHE-ECDSA-AES128-GCM-SHA256"
    secret_bits: int
    group: str | None  # IANA name of the ECDHE group (None for a resumed session: no key exchange)
    sni: str | None
    alpn: str | None
    resumed: bool
    client_cert_verified: bool | None  # None: no client certificate; True: presented and verified
    client_cn: str | None
    client_hello_size: int | None  # bytes of the ClientHello handshake message
    quantum_safe: bool = False

    # The names of the engine's HandshakeComplete, so code that logs either kind reads the same fields.
    @property
    def cipher_suite(self) -> str:
        return self.cipher

    @property
    def server_name(self) -> str | None:
        return self.sni

    @property
    def alpn_protocol(self) -> str | None:
        return self.alpn

    @property
    def hello_retry(self) -> bool:
        return False  # TLS 1.2 has no HelloRetryRequest


# -- the context ---------------------------------------------------------------------------------------------

# SNI per connection: the callback gets the SSLObject; LegacyTLSStream reads the name back after the handshake.
_SNI: weakref.WeakKeyDictionary[ssl.SSLObject, str] = weakref.WeakKeyDictionary()


def _record_sni(sslobj: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _ctx: ssl.SSLContext) -> None:
    if server_name is not None and isinstance(sslobj, ssl.SSLObject):
        _SNI[sslobj] = server_name
    return None


def legacy_context(
    cert_file: str,
    key_file: str,
    client_ca: str | None = None,
    *,
    alpn_protocols: Sequence[str] = (),
) -> ssl.SSLContext:
    """A server context for TLS 1.2 only: ECDHE key exchange, AEAD ciphers (AES-GCM, ChaCha20-Poly1305).

    - minimum_version = maximum_version = TLSv1_2: TLS 1.3 goes to our engine, older versions are refused
      by OpenSSL with protocol_version.
    - OP_NO_COMPRESSION (CRIME), OP_NO_RENEGOTIATION (no client- or server-initiated renegotiation: one
      handshake per connection, as in TLS 1.3), OP_CIPHER_SERVER_PREFERENCE.
    - OP_NO_TICKET: TLS 1.2 tickets are sealed under one key OpenSSL makes per context and never rotates,
      so a stolen key opens every ticketed session's master secret, and a resumed TLS 1.2 session skips
      ECDHE altogether (no forward secrecy for it). The fallback is for a few old clients; a full
      handshake each time costs little. (OpenSSL's server-side session-ID cache stays: bounded, in memory,
      entries expire after 300 s, and Python 3.11 has no switch for it.)
    - ``client_ca``: client certificates are required and verified against it (mutual TLS), as the TLS 1.3
      path's ``--client-ca`` does.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(LEGACY_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_TICKET
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca is not None:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if alpn_protocols:
        ctx.set_alpn_protocols(list(alpn_protocols))
    ctx.sni_callback = _record_sni
    return ctx


# -- errors --------------------------------------------------------------------------------------------------

# OpenSSL reasons for failures found locally -> the alert OpenSSL sends for them.
_LOCAL_REASON_ALERTS = {
    "NO_SHARED_CIPHER": "handshake_failure",
    "NO_SHARED_GROUP": "handshake_failure",
    "NO_SUITABLE_KEY_SHARE": "handshake_failure",
    "UNSUPPORTED_PROTOCOL": "protocol_version",
    "WRONG_VERSION_NUMBER": "protocol_version",
    "VERSION_TOO_LOW": "protocol_version",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "handshake_failure",
    "CERTIFICATE_VERIFY_FAILED": "unknown_ca",
    "NO_RENEGOTIATION": "no_renegotiation",
    "UNSAFE_LEGACY_RENEGOTIATION_DISABLED": "handshake_failure",
    "DECRYPTION_FAILED_OR_BAD_RECORD_MAC": "bad_record_mac",
    "RECORD_LENGTH_MISMATCH": "decode_error",
    "LENGTH_MISMATCH": "decode_error",
    "PACKET_LENGTH_TOO_LONG": "record_overflow",
    "ENCRYPTED_LENGTH_TOO_LONG": "record_overflow",
    "UNEXPECTED_MESSAGE": "unexpected_message",
    "UNEXPECTED_RECORD": "unexpected_message",
    "BAD_EXTENSION": "illegal_parameter",
    "BAD_ECPOINT": "illegal_parameter",
    "HTTP_REQUEST": "protocol_version",
}


def _error(exc: ssl.SSLError, phase: str) -> LegacyTLSError:
    reason = getattr(exc, "reason", None) or ""
    message = f"TLS 1.2 {phase} failed: {exc}"
    for prefix in ("SSLV3_ALERT_", "TLSV1_ALERT_", "TLSV13_ALERT_"):
        if reason.startswith(prefix):
            return LegacyTLSError(message, reason[len(prefix) :].lower(), sent=False, code=reason)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return LegacyTLSError(
            message,
            "unknown_ca" if exc.verify_code in (19, 20, 21) else "bad_certificate",
            sent=True,
            code=reason or "CERTIFICATE_VERIFY_FAILED",
        )
    return LegacyTLSError(message, _LOCAL_REASON_ALERTS.get(reason), sent=True, code=reason or None)


# -- watching our own handshake flight for the ECDHE group ---------------------------------------------------


class _FlightObserver:
    """Parses the plaintext records OpenSSL sends until ChangeCipherSpec, for ServerKeyExchange's group."""

    def __init__(self) -> None:
        self.active = True
        self.group: int | None = None
        self._records = bytearray()
        self._handshake = bytearray()
        self._seen = 0

    def feed(self, data: bytes) -> None:
        if not self.active:
            return
        self._seen += len(data)
        if self._seen > MAX_OBSERVED_HANDSHAKE:
            self.active = False
            return
        self._records += data
        while self.active and len(self._records) >= 5:
            content_type = self._records[0]
            length = struct.unpack_from("!H", self._records, 3)[0]
            if len(self._records) < 5 + length:
                return
            payload = bytes(self._records[5 : 5 + length])
            del self._records[: 5 + length]
            if content_type == _CHANGE_CIPHER_SPEC:
                self.active = False
            elif content_type == _HANDSHAKE:
                self._handshake += payload
                self._messages()

    def _messages(self) -> None:
        buf = self._handshake
        while self.active and len(buf) >= 4:
            length = int.from_bytes(buf[1:4], "big")
            if len(buf) < 4 + length:
                return
            msg_type, body = buf[0], bytes(buf[4 : 4 + length])
            del buf[: 4 + length]
            if msg_type == _SERVER_KEY_EXCHANGE:
                if len(body) >= 3 and body[0] == _NAMED_CURVE:
                    self.group = struct.unpack_from("!H", body, 1)[0]
                self.active = False


def _common_name(der: bytes) -> str | None:
    try:
        names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return None
    if not names:
        return None
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


# -- the stream ----------------------------------------------------------------------------------------------


class LegacyTLSStream:
    """A server-side TLS 1.2 connection over a trio stream; the same face as ``TLSStream``.

    One task may receive while another sends (as the sidecar's two pumps do): outgoing bytes are taken
    from the BIO and written to the transport under one lock, so records leave in order.
    """

    def __init__(self, transport: trio.abc.Stream, context: ssl.SSLContext, initial_bytes: bytes = b"",
                 client_hello_size: int | None = None) -> None:
        if len(initial_bytes) > MAX_INITIAL_BYTES:
            raise ValueError(f"{len(initial_bytes)} initial bytes exceed {MAX_INITIAL_BYTES}")
        self.transport = transport
        self.context = context
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._incoming.write(initial_bytes)
        self._client_hello_size = client_hello_size
        self._observer = _FlightObserver()
        self._send_lock = trio.Lock()
        self._receive_guard = trio.Lock()
        self.info: LegacyInfo | None = None
        self._eof = False
        self.truncated = False  # the transport ended without close_notify

    # -- transport edge ----------------------------------------------------------------------------------

    async def _flush(self) -> None:
        async with self._send_lock:
            data = self._outgoing.read()
            if not data:
                return
            if self._observer.active:
                self._observer.feed(data)
            try:
                await self.transport.send_all(data)
            except (trio.BrokenResourceError, OSError) as exc:
                raise LegacyTLSError(f"transport failed: {exc}", None, sent=False) from None

    async def _flush_quietly(self) -> None:
        """Send what OpenSSL has (e.g. its fatal alert) without letting a dead socket raise."""
        try:
            with trio.move_on_after(1):
                await self._flush()
        except (LegacyTLSError, trio.ClosedResourceError):
            pass

    async def _read_more(self) -> bool:
        """One read from the transport into the incoming BIO; False at transport EOF."""
        try:
            data = await self.transport.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, OSError) as exc:
            raise LegacyTLSError(f"transport failed: {exc}", None, sent=False) from None
        if not data:
            return False
        self._incoming.write(data)
        return True

    # -- handshake ---------------------------------------------------------------------------------------

    async def do_handshake(self) -> LegacyInfo:
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                if not await self._read_more():
                    raise LegacyTLSError("peer closed the connection during the handshake", None, sent=False) from None
            except ssl.SSLWantWriteError:
                await self._flush()  # a memory BIO never fills, but the contract says flush and retry
            except ssl.SSLError as exc:
                await self._flush_quietly()
                raise _error(exc, "handshake") from None
        await self._flush()
        self.info = self._collect_info()
        return self.info

    def _collect_info(self) -> LegacyInfo:
        obj = self._ssl
        cipher = obj.cipher()
        name, bits = (cipher[0], cipher[2]) if cipher else ("", 0)
        client_cn: str | None = None
        verified: bool | None = None
        if self.context.verify_mode != ssl.CERT_NONE:
            der = obj.getpeercert(binary_form=True)
            if der:
                verified = True  # OpenSSL refuses the handshake when CERT_REQUIRED/OPTIONAL fails to verify
                client_cn = _common_name(der)
        group = self._observer.group
        return LegacyInfo(
            version=obj.version() or "",
            cipher=name,
            secret_bits=bits or 0,
            group=group_name(group) if group is not None else None,
            sni=_SNI.get(obj),
            alpn=obj.selected_alpn_protocol(),
            resumed=bool(obj.session_reused),
            client_cert_verified=verified,
            client_cn=client_cn,
            client_hello_size=self._client_hello_size,
        )

    # -- data --------------------------------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Application data; b"" once the peer sent close_notify (or the transport ended: ``truncated``)."""
        size = RECEIVE_SIZE if max_bytes is None else max(1, min(max_bytes, RECEIVE_SIZE))
        async with self._receive_guard:
            while True:
                if self._eof:
                    return b""
                try:
                    data = self._ssl.read(size)
                except ssl.SSLWantReadError:
                    await self._flush()  # e.g. OpenSSL's no_renegotiation warning
                    if not await self._read_more():
                        self._eof = True
                        self.truncated = True
                        return b""
                    continue
                except ssl.SSLZeroReturnError:
                    self._eof = True
                    return b""
                except ssl.SSLError as exc:
                    await self._flush_quietly()
                    raise _error(exc, "read") from None
                if not data:  # close_notify
                    self._eof = True
                    return b""
                return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        for start in range(0, len(view), SEND_CHUNK):
            try:
                self._ssl.write(view[start : start + SEND_CHUNK])
            except ssl.SSLError as exc:
                await self._flush_quietly()
                raise _error(exc, "write") from None
            await self._flush()

    async def send_eof(self) -> None:
        """close_notify, then half-close the transport; the peer may go on writing and we go on reading."""
        try:
            self._ssl.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass  # close_notify is written; the peer's comes later (or never, which is fine for us)
        except ssl.SSLError as exc:
            await self._flush_quietly()
            raise _error(exc, "shutdown") from None
        await self._flush()
        await half_close(self.transport)

    async def aclose(self) -> None:
        await self.transport.aclose()

    def reset(self) -> None:
        """End the connection with a TCP RST, no close_notify (see ``TLSStream.reset``)."""
        reset_transport(self.transport)
