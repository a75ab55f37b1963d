"""The TLS presentation language (RFC 8446 §3): a bounds-checked reader and length-prefixed writers.

Every read checks its bound and raises ``decode_error``; nothing here can raise anything else on
hostile input. Readers work on a ``memoryview`` so that slicing a vector never copies the record.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from .alerts import decode_error


class Reader:
    __slots__ = ("_end", "_pos", "_view")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data) if not isinstance(data, memoryview) else data
        self._pos = 0
        self._end = len(self._view)

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def at_end(self) -> bool:
        return self._pos >= self._end

    def expect_end(self, what: str) -> None:
        if self._pos != self._end:
            raise decode_error(f"{self._end - self._pos} trailing bytes after {what}")

    def take(self, n: int, what: str = "field") -> bytes:
        pos = self._pos
        if n > self._end - pos:
            raise decode_error(f"truncated {what}: need {n} bytes, have {self._end - pos}")
        self._pos = pos + n
        return bytes(self._view[pos : pos + n])

    def view(self, n: int, what: str = "field") -> memoryview:
        pos = self._pos
        if n > self._end - pos:
            raise decode_error(f"truncated {what}: need {n} bytes, have {self._end - pos}")
        self._pos = pos + n
        return self._view[pos : pos + n]

    def uint8(self, what: str = "uint8") -> int:
        pos = self._pos
        if pos >= self._end:
            raise decode_error(f"truncated {what}")
        self._pos = pos + 1
        return self._view[pos]

    def uint16(self, what: str = "uint16") -> int:
        pos = self._pos
        if pos + 2 > self._end:
            raise decode_error(f"truncated {what}")
        self._pos = pos + 2
        v = self._view
        return (v[pos] << 8) | v[pos + 1]

    def uint24(self, what: str = "uint24") -> int:
        pos = self._pos
        if pos + 3 > self._end:
            raise decode_error(f"truncated {what}")
        self._pos = pos + 3
        v = self._view
        return (v[pos] << 16) | (v[pos + 1] << 8) | v[pos + 2]

    def uint32(self, what: str = "uint32") -> int:
        pos = self._pos
        if pos + 4 > self._end:
            raise decode_error(f"truncated {what}")
        self._pos = pos + 4
        return int.from_bytes(self._view[pos : pos + 4], "big")

    def vector8(self, what: str = "vector", min_len: int = 0) -> bytes:
        n = self.uint8(what)
        if n < min_len:
            raise decode_error(f"{what} shorter than {min_len}")
        return self.take(n, what)

    def vector16(self, what: str = "vector", min_len: int = 0) -> bytes:
        n = self.uint16(what)
        if n < min_len:
            raise decode_error(f"{what} shorter than {min_len}")
        return self.take(n, what)

    def vector24(self, what: str = "vector", min_len: int = 0) -> bytes:
        n = self.uint24(what)
        if n < min_len:
            raise decode_error(f"{what} shorter than {min_len}")
        return self.take(n, what)

    def sub16(self, what: str = "vector", min_len: int = 0) -> Reader:
        n = self.uint16(what)
        if n < min_len:
            raise decode_error(f"{what} shorter than {min_len}")
        return Reader(self.view(n, what))

    def sub8(self, what: str = "vector", min_len: int = 0) -> Reader:
        n = self.uint8(what)
        if n < min_len:
            raise decode_error(f"{what} shorter than {min_len}")
        return Reader(self.view(n, what))

    def sub24(self, what: str = "vector", min_len: int = 0) -> Reader:
        n = self.uint24(what)
        if n < min_len:
            raise decode_error(f"{what} shorter than {min_len}")
        return Reader(self.view(n, what))

    def uint16_list(self, what: str, min_len: int = 0) -> list[int]:
        """A vector<2..2^16-2> of uint16, as in supported_groups and signature_algorithms."""
        n = self.uint16(what)
        if n & 1 or n < min_len:
            raise decode_error(f"bad {what} length {n}")
        return list(struct.unpack(f">{n >> 1}H", self.view(n, what)))


def u8(v: int) -> bytes:
    return v.to_bytes(1, "big")


def u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


def u24(v: int) -> bytes:
    return v.to_bytes(3, "big")


def u32(v: int) -> bytes:
    return v.to_bytes(4, "big")


def vec8(data: bytes) -> bytes:
    return len(data).to_bytes(1, "big") + data


def vec16(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def vec24(data: bytes) -> bytes:
    return len(data).to_bytes(3, "big") + data


def u16_list(values: Iterable[int]) -> bytes:
    body = b"".join(v.to_bytes(2, "big") for v in values)
    return vec16(body)
