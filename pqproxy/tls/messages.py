"""Handshake messages of TLS 1.3 (RFC 8446 §4): one dataclass each, ``encode`` and a strict ``decode``.

Extensions stay raw (``Extension(type, data)``) in message order, so a message decodes and
re-encodes to the same bytes even with GREASE, unknown or duplicated extensions: the probes need
that, and the handshake code decides what is legal (``extensions.py`` holds the typed bodies).
``decode`` raises only ``TLSAlert(decode_error)`` on malformed input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from .alerts import decode_error
from .codepoints import HELLO_RETRY_REQUEST_RANDOM, TLS12, HandshakeType
from .wire import Reader, u16, vec8, vec16, vec24


@dataclass(frozen=True)
class Extension:
    type: int
    data: bytes = b""

    def encode(self) -> bytes:
        return self.type.to_bytes(2, "big") + len(self.data).to_bytes(2, "big") + self.data


def encode_extensions(extensions: list[Extension] | tuple[Extension, ...]) -> bytes:
    return vec16(b"".join(e.encode() for e in extensions))


def decode_extensions(r: Reader, what: str) -> list[Extension]:
    # One struct unpack per extension header instead of a Reader call per field: a ClientHello has a dozen
    # or more extensions, and these were the engine's most executed lines.
    label = f"{what} extensions"
    block = r.view(r.uint16(label), label)
    out: list[Extension] = []
    pos, end = 0, len(block)
    while pos < end:
        if end - pos < 4:
            if end - pos < 2:
                raise decode_error("truncated extension type")
            raise decode_error(f"extension 0x{_EXTENSION_TYPE.unpack_from(block, pos)[0]:04x}: truncated extension")
        ext_type, length = _EXTENSION_HEADER.unpack_from(block, pos)
        pos += 4
        if length > end - pos:
            raise decode_error(f"extension 0x{ext_type:04x}: truncated extension: need {length} bytes, "
                               f"have {end - pos}")
        out.append(Extension(ext_type, bytes(block[pos : pos + length])))
        pos += length
    return out


_EXTENSION_HEADER = struct.Struct(">HH")  # extension_type, the length of extension_data (RFC 8446 §4.2)
_EXTENSION_TYPE = struct.Struct(">H")


def find_extension(extensions: list[Extension], ext_type: int) -> Extension | None:
    for ext in extensions:
        if ext.type == ext_type:
            return ext
    return None


def frame(msg_type: int, body: bytes) -> bytes:
    """A Handshake struct: msg_type, uint24 length, body."""
    return bytes((msg_type,)) + len(body).to_bytes(3, "big") + body


@dataclass
class ClientHello:
    random: bytes
    legacy_session_id: bytes = b""
    cipher_suites: list[int] = field(default_factory=list)
    extensions: list[Extension] = field(default_factory=list)
    legacy_version: int = TLS12
    legacy_compression_methods: bytes = b"\x00"

    msg_type = HandshakeType.client_hello

    def encode_body(self) -> bytes:
        return b"".join(
            (
                u16(self.legacy_version),
                self.random,
                vec8(self.legacy_session_id),
                vec16(b"".join(c.to_bytes(2, "big") for c in self.cipher_suites)),
                vec8(self.legacy_compression_methods),
                encode_extensions(self.extensions),
            )
        )

    def encode(self) -> bytes:
        return frame(self.msg_type, self.encode_body())

    @classmethod
    def decode(cls, body: bytes | memoryview) -> ClientHello:
        r = Reader(body)
        legacy_version = r.uint16("legacy_version")
        random = r.take(32, "random")
        session_id = r.vector8("legacy_session_id")
        if len(session_id) > 32:
            raise decode_error("legacy_session_id longer than 32 bytes")
        suites = r.uint16_list("cipher_suites", min_len=2)
        compression = r.vector8("legacy_compression_methods", min_len=1)
        # RFC 8446 §4.1.2: a TLS 1.3 ClientHello always has extensions; earlier versions may omit them.
        extensions = [] if r.at_end() else decode_extensions(r, "ClientHello")
        r.expect_end("ClientHello")
        return cls(random, session_id, suites, extensions, legacy_version, compression)


@dataclass
class ServerHello:
    random: bytes
    legacy_session_id_echo: bytes = b""
    cipher_suite: int = 0
    extensions: list[Extension] = field(default_factory=list)
    legacy_version: int = TLS12
    legacy_compression_method: int = 0

    msg_type = HandshakeType.server_hello

    @property
    def is_hello_retry_request(self) -> bool:
        return self.random == HELLO_RETRY_REQUEST_RANDOM

    def encode_body(self) -> bytes:
        return b"".join(
            (
                u16(self.legacy_version),
                self.random,
                vec8(self.legacy_session_id_echo),
                u16(self.cipher_suite),
                bytes((self.legacy_compression_method,)),
                encode_extensions(self.extensions),
            )
        )

    def encode(self) -> bytes:
        return frame(self.msg_type, self.encode_body())

    @classmethod
    def decode(cls, body: bytes | memoryview) -> ServerHello:
        r = Reader(body)
        legacy_version = r.uint16("legacy_version")
        random = r.take(32, "random")
        session_id = r.vector8("legacy_session_id_echo")
        if len(session_id) > 32:
            raise decode_error("legacy_session_id_echo longer than 32 bytes")
        suite = r.uint16("cipher_suite")
        compression = r.uint8("legacy_compression_method")
        extensions = [] if r.at_end() else decode_extensions(r, "ServerHello")
        r.expect_end("ServerHello")
        return cls(random, session_id, suite, extensions, legacy_version, compression)


@dataclass
class EncryptedExtensions:
    extensions: list[Extension] = field(default_factory=list)

    msg_type = HandshakeType.encrypted_extensions

    def encode(self) -> bytes:
        return frame(self.msg_type, encode_extensions(self.extensions))

    @classmethod
    def decode(cls, body: bytes | memoryview) -> EncryptedExtensions:
        r = Reader(body)
        extensions = decode_extensions(r, "EncryptedExtensions")
        r.expect_end("EncryptedExtensions")
        return cls(extensions)


@dataclass
class CertificateRequest:
    certificate_request_context: bytes = b""
    extensions: list[Extension] = field(default_factory=list)

    msg_type = HandshakeType.certificate_request

    def encode(self) -> bytes:
        return frame(self.msg_type, vec8(self.certificate_request_context) + encode_extensions(self.extensions))

    @classmethod
    def decode(cls, body: bytes | memoryview) -> CertificateRequest:
        r = Reader(body)
        context = r.vector8("certificate_request_context")
        extensions = decode_extensions(r, "CertificateRequest")
        r.expect_end("CertificateRequest")
        return cls(context, extensions)


@dataclass
class CertificateEntry:
    cert_data: bytes
    extensions: list[Extension] = field(default_factory=list)


@dataclass
class Certificate:
    certificate_request_context: bytes = b""
    certificate_list: list[CertificateEntry] = field(default_factory=list)

    msg_type = HandshakeType.certificate

    def encode(self) -> bytes:
        entries = b"".join(vec24(e.cert_data) + encode_extensions(e.extensions) for e in self.certificate_list)
        return frame(self.msg_type, vec8(self.certificate_request_context) + vec24(entries))

    @classmethod
    def decode(cls, body: bytes | memoryview) -> Certificate:
        r = Reader(body)
        context = r.vector8("certificate_request_context")
        entries_reader = r.sub24("certificate_list")
        entries: list[CertificateEntry] = []
        while not entries_reader.at_end():
            cert_data = entries_reader.vector24("cert_data", min_len=1)
            entries.append(CertificateEntry(cert_data, decode_extensions(entries_reader, "CertificateEntry")))
        r.expect_end("Certificate")
        return cls(context, entries)


@dataclass
class CertificateVerify:
    algorithm: int
    signature: bytes

    msg_type = HandshakeType.certificate_verify

    def encode(self) -> bytes:
        return frame(self.msg_type, u16(self.algorithm) + vec16(self.signature))

    @classmethod
    def decode(cls, body: bytes | memoryview) -> CertificateVerify:
        r = Reader(body)
        algorithm = r.uint16("algorithm")
        signature = r.vector16("signature")  # <0..2^16-1> (RFC 8446 §4.4.3): empty decodes, and fails to verify
        r.expect_end("CertificateVerify")
        return cls(algorithm, signature)


@dataclass
class Finished:
    verify_data: bytes

    msg_type = HandshakeType.finished

    def encode(self) -> bytes:
        return frame(self.msg_type, self.verify_data)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> Finished:
        # The length is Hash.length; the handshake checks it against the suite (decode_error if off).
        return cls(bytes(body))


@dataclass
class NewSessionTicket:
    ticket_lifetime: int
    ticket_age_add: int
    ticket_nonce: bytes
    ticket: bytes
    extensions: list[Extension] = field(default_factory=list)

    msg_type = HandshakeType.new_session_ticket

    def encode(self) -> bytes:
        body = b"".join(
            (
                self.ticket_lifetime.to_bytes(4, "big"),
                self.ticket_age_add.to_bytes(4, "big"),
                vec8(self.ticket_nonce),
                vec16(self.ticket),
                encode_extensions(self.extensions),
            )
        )
        return frame(self.msg_type, body)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> NewSessionTicket:
        r = Reader(body)
        lifetime = r.uint32("ticket_lifetime")
        age_add = r.uint32("ticket_age_add")
        nonce = r.vector8("ticket_nonce")
        ticket = r.vector16("ticket", min_len=1)
        extensions = decode_extensions(r, "NewSessionTicket")
        r.expect_end("NewSessionTicket")
        return cls(lifetime, age_add, nonce, ticket, extensions)


@dataclass
class KeyUpdate:
    request_update: int

    msg_type = HandshakeType.key_update

    def encode(self) -> bytes:
        return frame(self.msg_type, bytes((self.request_update,)))

    @classmethod
    def decode(cls, body: bytes | memoryview) -> KeyUpdate:
        r = Reader(body)
        value = r.uint8("request_update")
        r.expect_end("KeyUpdate")
        return cls(value)


@dataclass
class EndOfEarlyData:
    msg_type = HandshakeType.end_of_early_data

    def encode(self) -> bytes:
        return frame(self.msg_type, b"")

    @classmethod
    def decode(cls, body: bytes | memoryview) -> EndOfEarlyData:
        if len(body):
            raise decode_error("EndOfEarlyData has a body")
        return cls()


HandshakeMessage = (
    ClientHello
    | ServerHello
    | EncryptedExtensions
    | CertificateRequest
    | Certificate
    | CertificateVerify
    | Finished
    | NewSessionTicket
    | KeyUpdate
    | EndOfEarlyData
)

MESSAGE_CLASSES: dict[int, Any] = {
    HandshakeType.client_hello: ClientHello,
    HandshakeType.server_hello: ServerHello,
    HandshakeType.encrypted_extensions: EncryptedExtensions,
    HandshakeType.certificate_request: CertificateRequest,
    HandshakeType.certificate: Certificate,
    HandshakeType.certificate_verify: CertificateVerify,
    HandshakeType.finished: Finished,
    HandshakeType.new_session_ticket: NewSessionTicket,
    HandshakeType.key_update: KeyUpdate,
    HandshakeType.end_of_early_data: EndOfEarlyData,
}


def decode_message(msg_type: int, body: bytes | memoryview) -> HandshakeMessage:
    cls = MESSAGE_CLASSES.get(msg_type)
    if cls is None:
        raise decode_error(f"unknown handshake message type {msg_type}")
    message: HandshakeMessage = cls.decode(body)
    return message
