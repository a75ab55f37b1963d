"""The TLS 1.3 key schedule (RFC 8446 §7.1) and the cipher suites that parameterise it (§B.4).

All primitives come from ``cryptography``; this module only arranges them as the RFC's diagram says.
Secrets are held as ``bytes`` for the shortest time possible; callers drop references as soon as
traffic keys are installed.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import constant_time, hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from .codepoints import CipherSuite

try:  # OpenSSL's one-shot HMAC, which hmac.digest calls, without that wrapper's Python (~20 bytecodes a call)
    from _hashlib import hmac_digest as _hmac_digest
except ImportError:  # pragma: no cover - a CPython built without OpenSSL's hashlib
    _hmac_digest = hmac.digest  # type: ignore[assignment]


@dataclass(frozen=True)
class CipherSuiteInfo:
    code: int
    name: str
    hash_name: str
    hash_len: int
    key_len: int
    aead: Any  # AESGCM or ChaCha20Poly1305 class

    def hash_algorithm(self) -> hashes.HashAlgorithm:
        return hashes.SHA256() if self.hash_name == "sha256" else hashes.SHA384()

    @property
    def empty_hash(self) -> bytes:
        return _EMPTY_HASH[self.hash_name]


_EMPTY_HASH = {"sha256": hashlib.sha256().digest(), "sha384": hashlib.sha384().digest()}

CIPHER_SUITES: dict[int, CipherSuiteInfo] = {
    CipherSuite.TLS_AES_128_GCM_SHA256: CipherSuiteInfo(
        0x1301, "TLS_AES_128_GCM_SHA256", "sha256", 32, 16, AESGCM
    ),
    CipherSuite.TLS_AES_256_GCM_SHA384: CipherSuiteInfo(
        0x1302, "TLS_AES_256_GCM_SHA384", "sha384", 48, 32, AESGCM
    ),
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256: CipherSuiteInfo(
        0x1303, "TLS_CHACHA20_POLY1305_SHA256", "sha256", 32, 32, ChaCha20Poly1305
    ),
}

# Go and OpenSSL prefer AES-GCM where AES-NI exists, which it does on every machine we target.
DEFAULT_CIPHER_SUITES: tuple[int, ...] = (0x1301, 0x1302, 0x1303)
IV_LEN = 12


def cipher_suite_by_name(name: str) -> CipherSuiteInfo:
    for suite in CIPHER_SUITES.values():
        if suite.name.lower() == name.strip().lower():
            return suite
    raise ValueError(f"unknown cipher suite {name!r}; known: {', '.join(s.name for s in CIPHER_SUITES.values())}")


_HASHES = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384()}
_DIGEST_LEN = {"sha256": 32, "sha384": 48}


def hkdf_extract(hash_name: str, salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869 §2.2): HMAC-Hash(salt, IKM), OpenSSL's HMAC."""
    return _hmac_digest(salt, ikm, hash_name)


def hkdf_expand_label(hash_name: str, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """HKDF-Expand-Label (RFC 8446 §7.1).

    TLS 1.3 never asks for more than one hash block, and for L <= HashLen RFC 5869 §2.3's HKDF-Expand is
    exactly T(1) = HMAC-Hash(PRK, info | 0x01): one OpenSSL HMAC call, about ten times cheaper than building a
    ``cryptography`` HKDFExpand object for each of the ~17 derivations a handshake makes. Longer outputs (never
    used by TLS 1.3) go to ``cryptography``'s HKDFExpand. tests/test_key_schedule.py checks both agree.
    """
    prefix = _LABEL_PREFIX.get((label, length))
    if prefix is None:
        full_label = b"tls13 " + label
        prefix = length.to_bytes(2, "big") + bytes((len(full_label),)) + full_label
        if len(_LABEL_PREFIX) < 64:  # the RFC's labels, a handful of lengths: bounded all the same
            _LABEL_PREFIX[(label, length)] = prefix
    if length <= _DIGEST_LEN[hash_name]:
        return _hmac_digest(secret, prefix + _LENGTH_BYTE[len(context)] + context + b"\x01", hash_name)[:length]
    return HKDFExpand(_HASHES[hash_name], length, prefix + _LENGTH_BYTE[len(context)] + context).derive(secret)


# HkdfLabel's length and label fields, which depend only on the call site (RFC 8446 §7.1).
_LABEL_PREFIX: dict[tuple[bytes, int], bytes] = {}
_LENGTH_BYTE = tuple(bytes((n,)) for n in range(256))  # the context's one-byte length prefix


def hmac_digest(hash_name: str, key: bytes, data: bytes) -> bytes:
    return _hmac_digest(key, data, hash_name)


def secrets_equal(a: bytes, b: bytes) -> bool:
    return constant_time.bytes_eq(a, b)


def _without_psk(hash_name: str) -> tuple[bytes, bytes]:
    """Without a PSK the Early Secret and Derive-Secret(Early Secret, "derived", "") are constants (§7.1)."""
    zeros = bytes(_DIGEST_LEN[hash_name])
    early = hkdf_extract(hash_name, zeros, zeros)
    return early, hkdf_expand_label(hash_name, early, b"derived", _EMPTY_HASH[hash_name], len(zeros))


_WITHOUT_PSK = {name: _without_psk(name) for name in _DIGEST_LEN}


class KeySchedule:
    """One handshake's walk down the RFC 8446 §7.1 diagram: early, handshake, then master secret."""

    __slots__ = ("_no_psk", "_secret", "hash_len", "hash_name", "stage")

    def __init__(self, hash_name: str, psk: bytes | None = None) -> None:
        self.hash_name = hash_name
        self.hash_len = 32 if hash_name == "sha256" else 48
        self._no_psk = psk is None
        if psk is None:
            self._secret = _WITHOUT_PSK[hash_name][0]
        else:
            self._secret = hkdf_extract(hash_name, bytes(self.hash_len), psk)
        self.stage = "early"

    def _advance(self, ikm: bytes | None) -> None:
        if self._no_psk and self.stage == "early":
            derived = _WITHOUT_PSK[self.hash_name][1]
        else:
            derived = self.derive_secret(b"derived", _EMPTY_HASH[self.hash_name])
        self._secret = hkdf_extract(self.hash_name, derived, ikm if ikm is not None else bytes(self.hash_len))

    @property
    def secret(self) -> bytes:
        return self._secret

    def derive_secret(self, label: bytes, transcript_hash: bytes) -> bytes:
        return hkdf_expand_label(self.hash_name, self._secret, label, transcript_hash, self.hash_len)

    def binder_key(self, imported: bool = False, resumption: bool = False) -> bytes:
        # RFC 8446 §7.1 "ext binder"/"res binder"; RFC 9258 §5 "imp binder" for imported identities.
        label = b"res binder" if resumption else (b"imp binder" if imported else b"ext binder")
        return self.derive_secret(label, _EMPTY_HASH[self.hash_name])

    def enter_handshake(self, shared_secret: bytes) -> None:
        assert self.stage == "early"
        self._advance(shared_secret)
        self.stage = "handshake"

    def enter_master(self) -> None:
        assert self.stage == "handshake"
        self._advance(None)
        self.stage = "master"

    def wipe(self) -> None:
        self._secret = b""
        self.stage = "wiped"


def finished_key(hash_name: str, base_key: bytes) -> bytes:
    return hkdf_expand_label(hash_name, base_key, b"finished", b"", 32 if hash_name == "sha256" else 48)


def finished_verify_data(hash_name: str, base_key: bytes, transcript_hash: bytes) -> bytes:
    """RFC 8446 §4.4.4: HMAC(finished_key, Transcript-Hash(...))."""
    return hmac_digest(hash_name, finished_key(hash_name, base_key), transcript_hash)


def traffic_key_iv(suite: CipherSuiteInfo, traffic_secret: bytes) -> tuple[bytes, bytes]:
    """RFC 8446 §7.3: [sender]_write_key and [sender]_write_iv."""
    key = hkdf_expand_label(suite.hash_name, traffic_secret, b"key", b"", suite.key_len)
    iv = hkdf_expand_label(suite.hash_name, traffic_secret, b"iv", b"", IV_LEN)
    return key, iv


def next_traffic_secret(suite: CipherSuiteInfo, traffic_secret: bytes) -> bytes:
    """RFC 8446 §7.2: application_traffic_secret_N+1."""
    return hkdf_expand_label(suite.hash_name, traffic_secret, b"traffic upd", b"", suite.hash_len)


def resumption_psk(suite: CipherSuiteInfo, resumption_master_secret: bytes, ticket_nonce: bytes) -> bytes:
    """RFC 8446 §4.6.1."""
    return hkdf_expand_label(suite.hash_name, resumption_master_secret, b"resumption", ticket_nonce, suite.hash_len)


class Transcript:
    """The running transcript hash (RFC 8446 §4.4.1).

    Messages arrive before the cipher suite (and so the hash) is known; they are kept until
    ``set_hash`` and then fed in. A HelloRetryRequest replaces ClientHello1 by a message_hash.
    """

    __slots__ = ("_hash", "_pending")

    def __init__(self) -> None:
        self._hash: Any = None
        self._pending: list[bytes] = []

    def set_hash(self, hash_name: str) -> None:
        self._hash = hashlib.new(hash_name)
        for message in self._pending:
            self._hash.update(message)
        self._pending.clear()

    def update(self, message: bytes | memoryview) -> None:
        if self._hash is None:
            self._pending.append(bytes(message))
        else:
            self._hash.update(message)

    def digest(self) -> bytes:
        assert self._hash is not None
        return bytes(self._hash.copy().digest())

    def digest_with(self, partial: bytes | memoryview) -> bytes:
        """The hash as if ``partial`` had been appended (for PSK binders)."""
        h = self._hash.copy()
        h.update(partial)
        return bytes(h.digest())

    def restart_after_hello_retry(self) -> None:
        """Replace ClientHello1 with message_hash (RFC 8446 §4.4.1)."""
        digest = self._hash.digest()
        self._hash = hashlib.new(self._hash.name)
        self._hash.update(bytes((254, 0, 0, len(digest))) + digest)
