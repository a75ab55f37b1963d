"""A TLS 1.3 connection, sans-IO: bytes in, events and bytes out.

Theory of operation
-------------------
The caller feeds whatever arrived from the peer to ``receive_data`` and gets back a list of events;
whatever the engine wants to send accumulates and is taken with ``data_to_send``. The engine owns no
socket, clock (``TLSConfig.clock``) or task.

Records are read by ``RecordLayer``; ChangeCipherSpec and alerts are handled here; handshake bytes are
reassembled into messages and given to the role's handshake object (``ClientHandshake`` in
client.py, ``ServerHandshake`` in server.py), which moves through the RFC 8446 §A state machine and
calls back into the connection to send messages and install keys. After the handshake the connection
itself handles application data, KeyUpdate, NewSessionTicket and closure.

Any protocol failure is a ``TLSAlert`` raised from wherever it is found; ``receive_data`` turns it into
a fatal alert on the wire and an ``AlertSent`` event, and the connection is dead from then on. No
other exception leaves ``receive_data``: an unexpected one becomes ``internal_error`` the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .alerts import AlertDescription, TLSAlert, alert_name, unexpected_message
from .codepoints import ContentType, HandshakeType, KeyUpdateRequest
from .config import TLSConfig
from .events import AlertReceived, AlertSent, ApplicationData, Event, KeyUpdateReceived, PeerClosed
from .key_schedule import CipherSuiteInfo, next_traffic_secret
from .messages import KeyUpdate, frame
from .record import RecordCipher, RecordLayer

# A Certificate with a chain of ML-DSA-87 certificates is ~25 KiB; leave headroom but stay bounded.
MAX_CERTIFICATE_MESSAGE = 256 * 1024
MAX_HANDSHAKE_MESSAGE = 64 * 1024
# RFC 8446 §D.4 allows ChangeCipherSpec records during the handshake; a client sends at most one per hello.
MAX_CHANGE_CIPHER_SPEC = 2
# OpenSSL's limit: a run of empty records is a cheap way to keep a peer busy.
MAX_EMPTY_RECORDS = 32
# KeyUpdates with no data between them cost us key derivations for free; bound the run.
MAX_KEY_UPDATES_IN_A_ROW = 32
# Bytes of refused 0-RTT data we skip before giving up (RFC 8446 §4.2.10 "max_early_data_size").
MAX_EARLY_DATA_SKIP = 64 * 1024


class _Paused(Exception):
    """The handshake waits for its caller (``pause``): the record loop stops here, nothing is wrong."""


class Handshake(Protocol):
    done: bool

    def handle(self, msg_type: int, body: bytes, raw: bytes) -> None: ...


class TLSConnection:
    def __init__(self, config: TLSConfig, is_client: bool) -> None:
        self.config = config
        self.is_client = is_client
        self._records = RecordLayer()
        self._out: list[bytes] = []
        self._events: list[Event] = []
        self._hs_buf = bytearray()
        self._pending_handshake: list[bytes] = []
        self._handshake: Handshake | None = None
        self.handshake_complete = False
        self.peer_closed = False
        self.local_closed = False
        self.failed = False
        self._paused = False  # the handshake waits for its caller (server: defer_client_hello)
        self.ccs_seen = 0
        self._hello_received = False  # server: the first ClientHello has arrived (RFC 8446 §5 for CCS)
        self._empty_records = 0
        self._key_updates_in_a_row = 0
        self._key_update_owed = False
        self.early_data_skip = 0  # set by the server when it refuses offered 0-RTT
        self._suite: CipherSuiteInfo | None = None
        self._read_secret = b""
        self._write_secret = b""
        if config.record_size_limit is not None:
            self._records.read_limit = min(self._records.read_limit, config.record_size_limit - 1)
        self._records.padding_block = config.record_padding_block

    # --- the caller's API ---------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        self._flush_handshake()
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        if self.failed:
            return []
        self._records.feed(data)
        try:
            self._process_records()
        except _Paused:
            pass
        except TLSAlert as alert:
            self._fail(alert.description, alert.reason, alert.code)
        except Exception as exc:  # the engine's promise: never an exception, always an alert
            self._fail(AlertDescription.internal_error, f"internal error: {type(exc).__name__}: {exc}")
        self._flush_handshake()
        events, self._events = self._events, []
        return events

    def resume(self, step: Callable[[], None]) -> list[Event]:
        """Run ``step`` (the handshake's next move, decided by the caller), then the records that waited."""
        if self.failed:
            return []
        if not self._paused:
            raise RuntimeError("the handshake is not waiting for its caller")
        self._paused = False
        self._apply_record_settings()  # the caller may have given another configuration
        # receive_data's guard, written out again: a shared helper cost every receive_data call a frame.
        try:
            step()
            self._process_records()
        except TLSAlert as alert:
            self._fail(alert.description, alert.reason, alert.code)
        except Exception as exc:  # the engine's promise: never an exception, always an alert
            self._fail(AlertDescription.internal_error, f"internal error: {type(exc).__name__}: {exc}")
        self._flush_handshake()
        events, self._events = self._events, []
        return events

    def send_data(self, data: bytes | bytearray | memoryview) -> None:
        """Queue application data (after the handshake, before our close_notify)."""
        if not self.handshake_complete or self.failed:
            raise RuntimeError("application data can only be sent on an established connection")
        if self.local_closed:
            raise RuntimeError("application data after close_notify")
        if self._key_update_owed:
            self._send_key_update(KeyUpdateRequest.update_not_requested)
        if len(data):
            self._out.append(self._records.encode(ContentType.application_data, data))

    def close(self) -> None:
        """Send close_notify: we write no more; the peer may go on writing (RFC 8446 §6.1)."""
        if self.local_closed or self.failed:
            return
        self.local_closed = True
        self._flush_handshake()
        self._out.append(self._records.encode(ContentType.alert, b"\x01\x00"))

    def update_keys(self, request_peer_update: bool = True) -> None:
        """Send KeyUpdate (RFC 8446 §4.6.3) and switch our write key; optionally ask the peer to follow."""
        if not self.handshake_complete or self.local_closed or self.failed:
            raise RuntimeError("KeyUpdate needs an established connection that is open for writing")
        self._send_key_update(
            KeyUpdateRequest.update_requested if request_peer_update else KeyUpdateRequest.update_not_requested
        )

    def abort(self, description: AlertDescription, reason: str = "", code: str | None = None) -> None:
        """Fail the connection from outside (policy refusal): a fatal alert and an AlertSent event."""
        if not self.failed:
            self._fail(description, reason, code)

    def events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # --- for the handshake objects --------------------------------------------------------------

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def pause(self) -> None:
        """Stop reading records until the caller resumes (``resume``); what arrives meanwhile waits. Raised
        through the record loop rather than checked on every turn of it: the loop is on every connection's path,
        a pause on few."""
        self._paused = True
        raise _Paused

    def send_handshake(self, raw: bytes) -> None:
        self._pending_handshake.append(raw)

    def send_change_cipher_spec(self) -> None:
        self._flush_handshake()
        self._out.append(b"\x14\x03\x03\x00\x01\x01")

    def set_read_secret(self, suite: CipherSuiteInfo, secret: bytes) -> None:
        # RFC 8446 §5.1: handshake messages must not span a key change.
        if self._hs_buf:
            raise unexpected_message("handshake message spans a change of keys")
        self._records.read_cipher = RecordCipher(suite, secret)
        self._suite = suite
        self._read_secret = secret

    def set_write_secret(self, suite: CipherSuiteInfo, secret: bytes) -> None:
        self._flush_handshake()
        self._records.write_cipher = RecordCipher(suite, secret)
        self._suite = suite
        self._write_secret = secret

    def set_peer_record_size_limit(self, limit: int) -> None:
        self._records.write_fragment = min(self._records.write_fragment, limit - 1)

    def finish_handshake(self) -> None:
        self.handshake_complete = True

    # --- internals --------------------------------------------------------------------------------

    def _flush_handshake(self) -> None:
        if self._pending_handshake:
            data = b"".join(self._pending_handshake)
            self._pending_handshake.clear()
            self._out.append(self._records.encode(ContentType.handshake, data))

    def _fail(self, description: AlertDescription, reason: str, code: str | None = None) -> None:
        self.failed = True
        self._pending_handshake.clear()
        try:
            self._out.append(self._records.encode(ContentType.alert, bytes((2, int(description)))))
        except TLSAlert:  # e.g. sequence numbers exhausted: nothing sensible can be sent
            pass
        self._events.append(AlertSent(int(description), description.name, reason, code))
        self._wipe()

    def _wipe(self) -> None:
        self._read_secret = self._write_secret = b""
        self._records.read_cipher = self._records.write_cipher = None
        self._hs_buf.clear()

    def _apply_record_settings(self) -> None:
        config = self.config
        if config.record_size_limit is not None:
            self._records.read_limit = min(self._records.read_limit, config.record_size_limit - 1)
        self._records.padding_block = config.record_padding_block

    def _process_records(self) -> None:
        records = self._records
        while not self.failed:
            cipher = records.read_cipher
            seq = cipher.seq if cipher is not None else 0
            try:
                record = records.next_record()
            except TLSAlert as alert:
                if self.early_data_skip and alert.description == AlertDescription.bad_record_mac:
                    self._skip_early_record()
                    continue
                raise
            if record is None:
                return
            if self.early_data_skip and cipher is not None and cipher.seq != seq:
                # RFC 8446 §4.2.10: the first record that deprotects starts the client's second flight;
                # from there on a record that fails is bad_record_mac, not more refused 0-RTT data.
                self.early_data_skip = 0
            content_type, payload = record
            if content_type == ContentType.application_data:
                if records.read_cipher is None and self.early_data_skip:
                    # After a HelloRetryRequest the refused early data arrives as opaque records.
                    self._count_skipped(len(payload))
                    continue
                self._on_application_data(payload)
            elif content_type == ContentType.handshake:
                self._on_handshake_bytes(payload)
            elif content_type == ContentType.alert:
                self._on_alert(payload)
            elif content_type == ContentType.change_cipher_spec:
                self._on_change_cipher_spec(payload)

    def _skip_early_record(self) -> None:
        skipped = self._records.try_skip_protected()
        if skipped is None:
            raise TLSAlert(AlertDescription.bad_record_mac, "record failed authentication")
        self._count_skipped(skipped)

    def _count_skipped(self, n: int) -> None:
        self.early_data_skip -= n
        if self.early_data_skip < 0:
            raise TLSAlert(AlertDescription.unexpected_message, "more refused 0-RTT data than we skip")

    def _on_change_cipher_spec(self, payload: bytes) -> None:
        # RFC 8446 §5: one byte 0x01, only during the handshake, never protected.
        if payload != b"\x01" or self.handshake_complete or self._handshake is None:
            raise unexpected_message("ChangeCipherSpec outside the handshake or malformed")
        if self._hs_buf:  # RFC 8446 §5.1: no other record type inside a split handshake message
            raise unexpected_message("ChangeCipherSpec inside a handshake message split over records")
        if not self.is_client and not self._hello_received:
            # Dropped only "after the first ClientHello message has been sent or received" (RFC 8446 §5).
            raise unexpected_message("ChangeCipherSpec before the ClientHello")
        self.ccs_seen += 1
        if self.ccs_seen > MAX_CHANGE_CIPHER_SPEC:
            raise unexpected_message("too many ChangeCipherSpec records")

    def _on_alert(self, payload: bytes) -> None:
        if not payload:
            # RFC 8446 §5.4: an Alert record with no content (padding or not) is unexpected_message.
            raise unexpected_message("empty alert record")
        if len(payload) != 2:
            raise TLSAlert(AlertDescription.decode_error, "alert record is not 2 bytes")
        description = payload[1]
        if description == AlertDescription.close_notify:
            if not self.peer_closed:
                self.peer_closed = True
                self._events.append(PeerClosed())
            return
        if description == AlertDescription.user_canceled:
            return  # RFC 8446 §6.1: a warning; close_notify follows
        # Every other alert is fatal in TLS 1.3 whatever level it claims (RFC 8446 §6.2).
        self.failed = True
        self._events.append(AlertReceived(description, alert_name(description)))
        self._wipe()

    def _on_application_data(self, payload: bytes) -> None:
        if not self.handshake_complete or self._records.read_cipher is None:
            raise unexpected_message("application data before the handshake completed")
        if self._hs_buf:
            # RFC 8446 §5.1: a handshake message split over records (a KeyUpdate, a NewSessionTicket) may have
            # no record of another type between its pieces.
            raise unexpected_message("application data inside a handshake message split over records")
        if self.peer_closed:
            return  # RFC 8446 §6.1: data after close_notify is ignored
        if not payload:
            self._empty_records += 1
            if self._empty_records > MAX_EMPTY_RECORDS:
                raise unexpected_message("too many empty records in a row")
            return
        self._empty_records = 0
        self._key_updates_in_a_row = 0
        self._events.append(ApplicationData(payload))

    def _on_handshake_bytes(self, payload: bytes) -> None:
        if not payload:
            raise unexpected_message("empty handshake record")
        buf = self._hs_buf
        buf += payload
        while len(buf) >= 4:
            msg_type = buf[0]
            length = (buf[1] << 16) | (buf[2] << 8) | buf[3]
            limit = self._message_limit(msg_type)
            if length > limit:
                raise TLSAlert(
                    AlertDescription.illegal_parameter,
                    f"handshake message type {msg_type} of {length} bytes exceeds the {limit}-byte limit",
                    "client_hello_too_large" if msg_type == HandshakeType.client_hello else "message_too_large",
                )
            if len(buf) < 4 + length:
                return
            raw = bytes(buf[: 4 + length])
            del buf[: 4 + length]
            self._dispatch(msg_type, raw)
            if self.failed:
                return

    def _message_limit(self, msg_type: int) -> int:
        if msg_type == HandshakeType.client_hello:
            return self.config.max_client_hello_size
        if msg_type == HandshakeType.certificate:
            return MAX_CERTIFICATE_MESSAGE
        return MAX_HANDSHAKE_MESSAGE

    def _dispatch(self, msg_type: int, raw: bytes) -> None:
        body = raw[4:]
        if self.handshake_complete:
            self._on_post_handshake(msg_type, body, raw)
            return
        if self._handshake is None:
            raise unexpected_message("handshake message before the handshake started")
        if msg_type == HandshakeType.client_hello:
            self._hello_received = True
        self._handshake.handle(msg_type, body, raw)

    def _on_post_handshake(self, msg_type: int, body: bytes, raw: bytes) -> None:
        if msg_type == HandshakeType.key_update:
            self._on_key_update(body)
        elif msg_type == HandshakeType.new_session_ticket and self.is_client and self._handshake is not None:
            self._handshake.handle(msg_type, body, raw)
        else:
            raise unexpected_message(f"handshake message type {msg_type} after the handshake")

    def _on_key_update(self, body: bytes) -> None:
        request = KeyUpdate.decode(body).request_update
        if request not in (KeyUpdateRequest.update_not_requested, KeyUpdateRequest.update_requested):
            raise TLSAlert(AlertDescription.illegal_parameter, f"KeyUpdate request_update {request}")
        self._key_updates_in_a_row += 1
        if self._key_updates_in_a_row > MAX_KEY_UPDATES_IN_A_ROW:
            raise unexpected_message("too many KeyUpdates without data")
        assert self._suite is not None
        self.set_read_secret(self._suite, next_traffic_secret(self._suite, self._read_secret))
        self._events.append(KeyUpdateReceived(request == KeyUpdateRequest.update_requested))
        if request == KeyUpdateRequest.update_requested and not self.local_closed:
            # RFC 8446 §4.6.3: answer before our next application data; we answer at once.
            self._send_key_update(KeyUpdateRequest.update_not_requested)

    def _send_key_update(self, request: int) -> None:
        assert self._suite is not None
        self._key_update_owed = False
        self._out.append(self._records.encode(ContentType.handshake, KeyUpdate(request).encode()))
        self.set_write_secret(self._suite, next_traffic_secret(self._suite, self._write_secret))


def handshake_frame(msg_type: int, body: bytes) -> bytes:
    return frame(msg_type, body)
