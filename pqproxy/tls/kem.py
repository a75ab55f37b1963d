"""ML-KEM backends: ``cryptography`` by default, liboqs (``pqproxy[oqs]``) when it is really installed.

A backend turns an algorithm name into a ``KEM`` with three operations. Failures are ``ValueError``
(a malformed or invalid key or ciphertext); the group layer maps them to the RFC's alerts.
The FIPS 203 §7.2 encapsulation-key check (modulus check) happens inside ``encapsulate``: OpenSSL
performs it when the key is imported, and liboqs's ML-KEM does it in ``encaps``.
"""

from __future__ import annotations

import ctypes.util
import importlib
import os
from dataclasses import dataclass
from typing import Any, Protocol


class KEMUnavailable(RuntimeError):
    """The algorithm or backend asked for cannot be used on this machine."""


class KEM(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def encapsulation_key_len(self) -> int: ...
    @property
    def ciphertext_len(self) -> int: ...

    def generate(self) -> tuple[Any, bytes]:
        """A fresh (decapsulation key object, encapsulation key bytes)."""
        ...

    def encapsulate(self, encapsulation_key: bytes) -> tuple[bytes, bytes]:
        """(ciphertext, shared secret); ValueError if the key fails the FIPS 203 checks."""
        ...

    def decapsulate(self, decapsulation_key: Any, ciphertext: bytes) -> bytes: ...


@dataclass(frozen=True)
class _CryptographyKEM:
    name: str
    encapsulation_key_len: int
    ciphertext_len: int
    _private_cls: Any
    _public_cls: Any

    def generate(self) -> tuple[Any, bytes]:
        dk = self._private_cls.generate()
        return dk, dk.public_key().public_bytes_raw()

    def encapsulate(self, encapsulation_key: bytes) -> tuple[bytes, bytes]:
        if len(encapsulation_key) != self.encapsulation_key_len:
            raise ValueError(f"{self.name} encapsulation key must be {self.encapsulation_key_len} bytes")
        ek = self._public_cls.from_public_bytes(encapsulation_key)
        shared_secret, ciphertext = ek.encapsulate()
        return ciphertext, shared_secret

    def decapsulate(self, decapsulation_key: Any, ciphertext: bytes) -> bytes:
        if len(ciphertext) != self.ciphertext_len:
            raise ValueError(f"{self.name} ciphertext must be {self.ciphertext_len} bytes")
        return bytes(decapsulation_key.decapsulate(ciphertext))


_SIZES = {  # FIPS 203 Table 3: (encapsulation key, ciphertext) bytes
    "ML-KEM-512": (800, 768),
    "ML-KEM-768": (1184, 1088),
    "ML-KEM-1024": (1568, 1568),
}


class CryptographyBackend:
    name = "cryptography"

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import mlkem

        self._kems: dict[str, KEM] = {
            "ML-KEM-768": _CryptographyKEM(
                "ML-KEM-768", *_SIZES["ML-KEM-768"], mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey
            ),
            "ML-KEM-1024": _CryptographyKEM(
                "ML-KEM-1024", *_SIZES["ML-KEM-1024"], mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey
            ),
        }

    def kem(self, algorithm: str) -> KEM:
        try:
            return self._kems[algorithm]
        except KeyError:
            raise KEMUnavailable(
                f"{algorithm} is not provided by the cryptography backend; install liboqs and pqproxy[oqs]"
            ) from None


@dataclass(frozen=True)
class _OQSKEM:
    name: str
    encapsulation_key_len: int
    ciphertext_len: int
    _oqs: Any

    def generate(self) -> tuple[Any, bytes]:
        kem = self._oqs.KeyEncapsulation(self.name)
        ek = kem.generate_keypair()
        return kem, bytes(ek)

    def encapsulate(self, encapsulation_key: bytes) -> tuple[bytes, bytes]:
        if len(encapsulation_key) != self.encapsulation_key_len:
            raise ValueError(f"{self.name} encapsulation key must be {self.encapsulation_key_len} bytes")
        with self._oqs.KeyEncapsulation(self.name) as kem:
            try:
                ct, ss = kem.encap_secret(encapsulation_key)
            except RuntimeError as exc:  # liboqs reports a failed check as an error status
                raise ValueError(str(exc)) from None
        return bytes(ct), bytes(ss)

    def decapsulate(self, decapsulation_key: Any, ciphertext: bytes) -> bytes:
        if len(ciphertext) != self.ciphertext_len:
            raise ValueError(f"{self.name} ciphertext must be {self.ciphertext_len} bytes")
        try:
            return bytes(decapsulation_key.decap_secret(ciphertext))
        finally:
            decapsulation_key.free()


def find_liboqs() -> str | None:
    """The path of the liboqs shared library, or None. Never triggers liboqs-python's auto-install."""
    explicit = os.environ.get("OQS_INSTALL_PATH")
    if explicit:
        for sub in ("lib", "lib64"):
            for name in ("liboqs.so", "liboqs.dylib"):
                path = os.path.join(explicit, sub, name)
                if os.path.exists(path):
                    return path
    return ctypes.util.find_library("oqs")


class OQSBackend:
    name = "oqs"

    def __init__(self) -> None:
        path = find_liboqs()
        if path is None:
            raise KEMUnavailable(
                "the liboqs backend needs the liboqs shared library (set OQS_INSTALL_PATH or install liboqs); "
                "pqproxy does not download or build it"
            )
        # liboqs-python's import would try to fetch and build liboqs when it cannot find it; we only import
        # it after finding the library ourselves, and point it at that library.
        os.environ.setdefault("OQS_INSTALL_PATH", os.path.dirname(os.path.dirname(path)))
        try:
            self._oqs = importlib.import_module("oqs")
        except ImportError as exc:
            raise KEMUnavailable(f"liboqs found at {path} but liboqs-python is not installed: {exc}") from None
        self._enabled = set(self._oqs.get_enabled_kem_mechanisms())

    def kem(self, algorithm: str) -> KEM:
        if algorithm not in self._enabled or algorithm not in _SIZES:
            raise KEMUnavailable(f"{algorithm} is not enabled in this liboqs build")
        return _OQSKEM(algorithm, *_SIZES[algorithm], self._oqs)


_default_backend: CryptographyBackend | None = None


def get_backend(name: str | None = None) -> CryptographyBackend | OQSBackend:
    """The KEM backend by name (``cryptography`` or ``oqs``); the default is cryptography."""
    global _default_backend
    if name is None or name == "cryptography":
        if _default_backend is None:
            _default_backend = CryptographyBackend()
        return _default_backend
    if name == "oqs":
        return OQSBackend()
    raise KEMUnavailable(f"unknown KEM backend {name!r} (choose cryptography or oqs)")
