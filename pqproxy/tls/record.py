"""The TLS 1.3 record layer (RFC 8446 §5): framing, AEAD protection, padding, fragment limits.

Input is appended to one ``bytearray`` and consumed from its front (CPython makes that O(1)), and
records are decrypted straight from a ``memoryview`` of it. Output is built as a list of byte
strings joined once. Nonces are ``iv XOR seq`` computed on ints, never per byte.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidTag

from .alerts import AlertDescription, TLSAlert
from .codepoints import ContentType, HandshakeType
from .key_schedule import CipherSuiteInfo, traffic_key_iv

MAX_PLAINTEXT = 1 << 14  # RFC 8446 §5.1
MAX_CIPHERTEXT = MAX_PLAINTEXT + 256  # RFC 8446 §5.2
AEAD_TAG = 16
HEADER = 5
MAX_SEQUENCE = (1 << 64) - 1
_VALID_TYPES = frozenset(int(t) for t in ContentType)
_APP = int(ContentType.application_data)
_HANDSHAKE = int(ContentType.handshake)
_APP_HEADER_PREFIX = b"\x17\x03\x03"


class RecordCipher:
    """One direction's AEAD state: key, IV and sequence number (RFC 8446 §5.3)."""

    __slots__ = ("_aead", "_iv", "seq", "suite")

    def __init__(self, suite: CipherSuiteInfo, traffic_secret: bytes) -> None:
        key, iv = traffic_key_iv(suite, traffic_secret)
        self.suite = suite
        self._aead: Any = suite.aead(key)
        self._iv = int.from_bytes(iv, "big")
        self.seq = 0

    def _nonce(self) -> bytes:
        seq = self.seq
        if seq >= MAX_SEQUENCE:
            # Wrapping is forbidden; long before this the sender must KeyUpdate (RFC 8446 §5.3, §5.5).
            raise TLSAlert(AlertDescription.internal_error, "record sequence number exhausted")
        return (self._iv ^ seq).to_bytes(12, "big")

    def seal(self, inner: bytes, header: bytes) -> bytes:
        sealed = self._aead.encrypt(self._nonce(), inner, header)
        self.seq += 1
        return bytes(sealed)

    def open(self, ciphertext: memoryview, header: bytes) -> bytes:
        """Decrypt; the sequence number moves only on success, so a refused 0-RTT record can be skipped."""
        try:
            plain = self._aead.decrypt(self._nonce(), ciphertext, header)
        except InvalidTag:
            raise TLSAlert(AlertDescription.bad_record_mac, "record failed authentication") from None
        self.seq += 1
        return bytes(plain)


class RecordLayer:
    """Both directions of the record layer. Keys are installed by the handshake as it proceeds."""

    __slots__ = (
        "_in",
        "padding_block",
        "read_cipher",
        "read_limit",
        "write_cipher",
        "write_fragment",
    )

    def __init__(self) -> None:
        self._in = bytearray()
        self.read_cipher: RecordCipher | None = None
        self.write_cipher: RecordCipher | None = None
        # Largest inner plaintext we accept / send (record_size_limit, RFC 8449 §4).
        self.read_limit = MAX_PLAINTEXT
        self.write_fragment = MAX_PLAINTEXT
        self.padding_block = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._in += data

    @property
    def buffered(self) -> int:
        return len(self._in)

    def next_record(self) -> tuple[int, bytes] | None:
        """The next whole record as (content type, plaintext), or None until more bytes come."""
        buf = self._in
        if len(buf) < HEADER:
            return None
        content_type = buf[0]
        length = (buf[3] << 8) | buf[4]
        if content_type not in _VALID_TYPES:
            raise TLSAlert(AlertDescription.unexpected_message, f"record of unknown content type {content_type}")
        if length > MAX_CIPHERTEXT:
            raise TLSAlert(AlertDescription.record_overflow, f"record of {length} bytes exceeds 2^14+256")
        end = HEADER + length
        if len(buf) < end:
            return None
        cipher = self.read_cipher
        if cipher is not None and content_type == _HANDSHAKE:
            raise TLSAlert(AlertDescription.unexpected_message, "unprotected handshake record after keys were set")
        if cipher is None or content_type != _APP:
            # Unprotected: before keys, or ChangeCipherSpec / a plaintext alert (checked by the caller).
            if length > MAX_PLAINTEXT:
                raise TLSAlert(AlertDescription.record_overflow, f"plaintext record of {length} bytes")
            payload = bytes(buf[HEADER:end])
            del buf[:end]
            return content_type, payload
        header = bytes(buf[:HEADER])
        # Both views are released even when authentication fails: a live export would make the
        # ``del buf[...]`` of a skipped (refused 0-RTT) record raise BufferError.
        with memoryview(buf) as view, view[HEADER:end] as ciphertext:
            inner = cipher.open(ciphertext, header)
        del buf[:end]
        # Strip the zero padding; the last non-zero byte is the real content type (RFC 8446 §5.4).
        stripped = inner.rstrip(b"\x00")
        if not stripped:
            raise TLSAlert(AlertDescription.unexpected_message, "protected record with no content type")
        if len(stripped) - 1 > self.read_limit:
            raise TLSAlert(AlertDescription.record_overflow, f"record plaintext of {len(stripped) - 1} bytes")
        real_type = stripped[-1]
        if real_type not in _VALID_TYPES or real_type == ContentType.change_cipher_spec:
            raise TLSAlert(AlertDescription.unexpected_message, f"protected record of content type {real_type}")
        return real_type, stripped[:-1]

    def try_skip_protected(self) -> int | None:
        """Length of the next whole protected record, dropping it (skipping refused 0-RTT data)."""
        buf = self._in
        if len(buf) < HEADER:
            return None
        end = HEADER + ((buf[3] << 8) | buf[4])
        if len(buf) < end or buf[0] != _APP:
            return None
        del buf[:end]
        return end

    def encode(self, content_type: int, data: bytes | bytearray | memoryview) -> bytes:
        """``data`` as one or more records of ``content_type``, protected if write keys are set."""
        cipher = self.write_cipher
        total = len(data)
        if cipher is None:
            out = []
            ct = bytes((content_type,))
            for start in range(0, max(total, 1), MAX_PLAINTEXT):
                chunk = data[start : start + MAX_PLAINTEXT]
                out.append(ct + b"\x03\x03" + len(chunk).to_bytes(2, "big") + bytes(chunk))
            return b"".join(out)
        fragment = self.write_fragment
        ct_byte = bytes((content_type,))
        block = self.padding_block
        if total <= fragment and not block:  # one record, no padding: every handshake flight, most writes
            header = _APP_HEADER_PREFIX + (total + 1 + AEAD_TAG).to_bytes(2, "big")
            return header + cipher.seal(bytes(data) + ct_byte, header)
        parts: list[bytes] = []
        view = memoryview(data)
        for start in range(0, max(total, 1), fragment):
            chunk = view[start : start + fragment]
            inner = bytes(chunk) + ct_byte
            if block:
                # Pad the inner plaintext to a multiple of the block, within the limit (RFC 8446 §5.4).
                pad = -len(inner) % block
                pad = min(pad, fragment + 1 - len(inner))
                if pad > 0:
                    inner += bytes(pad)
            sealed_len = len(inner) + AEAD_TAG
            header = _APP_HEADER_PREFIX + sealed_len.to_bytes(2, "big")
            parts.append(header)
            parts.append(cipher.seal(inner, header))
        return b"".join(parts)


def split_into_records(content_type: int, payload: bytes, sizes: list[int] | None = None) -> bytes:
    """Unprotected records carrying ``payload`` in fragments of the given sizes (the rest in one more).

    For probes: a ClientHello spread over several records is legal TLS (RFC 8446 §5.1) that some
    middleboxes cannot parse. Zero-length fragments are not produced.
    """
    out = []
    pos = 0
    for size in sizes or []:
        if size <= 0 or pos >= len(payload):
            continue
        size = min(size, MAX_PLAINTEXT)
        chunk = payload[pos : pos + size]
        out.append(bytes((content_type,)) + b"\x03\x01" + len(chunk).to_bytes(2, "big") + chunk)
        pos += len(chunk)
    while pos < len(payload):
        chunk = payload[pos : pos + MAX_PLAINTEXT]
        out.append(bytes((content_type,)) + b"\x03\x01" + len(chunk).to_bytes(2, "big") + chunk)
        pos += len(chunk)
    return b"".join(out)


class NotAClientHello(ValueError):
    """The bytes that open a connection are not the start of a TLS ClientHello."""


def leading_client_hello(records: bytes, max_size: int) -> tuple[bytes, int] | None:
    """The ClientHello body reassembled from the leading handshake records, and its message length.

    None while incomplete; NotAClientHello for anything that is not the start of a TLS ClientHello.
    """
    layer = RecordLayer()
    layer.feed(records)
    message = bytearray()
    try:
        while True:
            record = layer.next_record()
            if record is None:
                return None
            content_type, payload = record
            if content_type != ContentType.handshake:
                raise NotAClientHello(f"record of content type {content_type} before the ClientHello")
            if not payload:
                raise NotAClientHello("empty handshake record")  # RFC 8446 §5.1
            message += payload
            if len(message) >= 4:
                if message[0] != HandshakeType.client_hello:
                    raise NotAClientHello(f"first handshake message is of type {message[0]}")
                length = int.from_bytes(message[1:4], "big")
                if length > max_size:
                    raise NotAClientHello(f"ClientHello of {length} bytes exceeds {max_size}")
                if len(message) >= 4 + length:
                    return bytes(message[4 : 4 + length]), 4 + length
    except TLSAlert as exc:
        raise NotAClientHello(str(exc)) from None
