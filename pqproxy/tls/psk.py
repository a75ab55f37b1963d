"""External PSKs imported through RFC 9258, and the message_hash that stands for ClientHello1 after a
HelloRetryRequest (RFC 8446 §4.4.1): shared by the client's and the server's binder computations."""

from __future__ import annotations

import hashlib

from .codepoints import TLS13, HandshakeType
from .extensions import ImportedIdentity
from .key_schedule import hkdf_expand_label, hkdf_extract


def import_external_psk(identity: bytes, key: bytes, context: bytes, hash_name: str) -> tuple[bytes, bytes]:
    """RFC 9258 §4.2: (ImportedIdentity on the wire, ipskx) for TLS 1.3 and the given KDF."""
    imported = ImportedIdentity(identity, context, TLS13, 0x0001 if hash_name == "sha256" else 0x0002)
    wire = imported.encode()
    hash_len = 32 if hash_name == "sha256" else 48
    epskx = hkdf_extract(hash_name, bytes(hash_len), key)
    ipskx = hkdf_expand_label(hash_name, epskx, b"derived psk", hashlib.new(hash_name, wire).digest(), hash_len)
    return wire, ipskx


def message_hash(hash_name: str, client_hello1: bytes) -> bytes:
    digest = hashlib.new(hash_name, client_hello1).digest()
    return bytes((HandshakeType.message_hash, 0, 0, len(digest))) + digest
