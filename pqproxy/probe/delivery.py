"""Delivery shapes: how a hello's bytes reach the wire, written as short strings in suites and reports.

Kernel shapes (a TCP socket with TCP_NODELAY, so each write leaves as its own segment; a pause between
writes so a box that reads once sees only the first):

    one-write                the hello in one record, one write
    split@N[,M...]           one record, written in pieces cut at stream offsets N, M (the 5-byte record
                             header counts: split@3 cuts inside it)
    tiny-first@N             split@N with N <= 8: the tiny first fragment some boxes cannot classify
    records@A[,B...]         the handshake message in records of A, B bytes (the rest in one more), one write
    records-writes@A[,B...]  the same records, one write each

Raw shapes (scapy segments the kernel would never send; see ``raw.py``):

    raw-segments@N           segments of exactly N bytes
    raw-cuts@N[,M...]        segments cut at these stream offsets
    raw-reorder@N            segments of N bytes, the second sent before the first

QUIC shapes (UDP datagrams, one Initial packet each; see ``pqproxy/quic``):

    quic-one                 the whole hello in one Initial (a large datagram if need be)
    quic-split@N[,M...]      Initials cut at CRYPTO stream offsets N, M, sent in order (Chrome: about 1200)
    quic-reorder@N[,M...]    the same Initials, sent last first
    quic-frames@N[,M...]     one Initial, the hello in CRYPTO frames cut there, last frame first

A shape may end with ``/pause=SECONDS`` to override the suite's pause between writes or segments; a QUIC
shape also with ``/pad=BYTES``, the size every datagram is padded to (default 1200, the least RFC 9000
allows), e.g. ``quic-split@1100/pad=1350``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..tls.hello import client_hello_records

KERNEL_KINDS = ("one-write", "split", "tiny-first", "records", "records-writes")
RAW_KINDS = ("raw-segments", "raw-cuts", "raw-reorder")
QUIC_KINDS = ("quic-one", "quic-split", "quic-reorder", "quic-frames")
QUIC_PAD = (1200, 16384)  # RFC 9000 §14.1's minimum; our bound
MAX_PIECES = 64  # a shape with more pieces is a typo, not a probe
MAX_TINY = 8  # F5 K53322151: boxes that need 8 bytes in the first fragment


@dataclass(frozen=True)
class Shape:
    kind: str
    numbers: tuple[int, ...] = ()
    pause: float | None = None  # None: the suite's default
    pad: int | None = None  # QUIC: the datagram size (None: 1200)

    @property
    def raw(self) -> bool:
        return self.kind in RAW_KINDS

    @property
    def quic(self) -> bool:
        return self.kind in QUIC_KINDS

    @property
    def split(self) -> bool:
        """More than one write or segment, so a box reading once sees a part."""
        return self.kind not in ("one-write", "records", "quic-one", "quic-frames")

    def __str__(self) -> str:
        text = self.kind
        if self.numbers:
            text += "@" + ",".join(str(n) for n in self.numbers)
        if self.pause is not None:
            text += f"/pause={self.pause:g}"
        if self.pad is not None:
            text += f"/pad={self.pad}"
        return text


def parse_shape(text: str) -> Shape:
    """Parse ``split@600/pause=0.3``; ValueError with the accepted syntax on anything else."""
    body, *options = text.strip().split("/")
    kind, _, numbers_text = body.partition("@")
    known = KERNEL_KINDS + RAW_KINDS + QUIC_KINDS
    if kind not in known:
        raise ValueError(f"unknown delivery {text!r}: use one of {', '.join(known)}")
    try:
        numbers = tuple(int(n) for n in numbers_text.split(",")) if numbers_text else ()
    except ValueError:
        raise ValueError(f"delivery {text!r}: the numbers after @ must be integers") from None
    pause: float | None = None
    pad: int | None = None
    for option in options:
        key, _, value = option.partition("=")
        try:
            if key == "pause" and pause is None:
                pause = float(value)
            elif key == "pad" and pad is None and kind in QUIC_KINDS:
                pad = int(value)
            else:
                raise ValueError
        except ValueError:
            allowed = "/pause=SECONDS and /pad=BYTES" if kind in QUIC_KINDS else "/pause=SECONDS"
            raise ValueError(f"delivery {text!r}: only {allowed} may follow") from None
    if pause is not None and not 0 <= pause <= 30:
        raise ValueError(f"delivery {text!r}: pause must be 0..30 seconds")
    if pad is not None and not QUIC_PAD[0] <= pad <= QUIC_PAD[1]:
        raise ValueError(f"delivery {text!r}: pad must be {QUIC_PAD[0]}..{QUIC_PAD[1]} bytes")
    if kind in ("one-write", "quic-one") and numbers:
        raise ValueError(f"{kind} takes no numbers")
    if kind not in ("one-write", "quic-one") and not numbers:
        raise ValueError(f"delivery {kind} needs numbers: {kind}@N")
    if any(n <= 0 for n in numbers) or len(numbers) > MAX_PIECES:
        raise ValueError(f"delivery {text!r}: numbers must be positive, at most {MAX_PIECES} of them")
    if kind == "tiny-first" and (len(numbers) != 1 or numbers[0] > MAX_TINY):
        raise ValueError(f"tiny-first@N takes one N from 1 to {MAX_TINY}")
    if kind in ("raw-segments", "raw-reorder") and len(numbers) != 1:
        raise ValueError(f"{kind}@N takes one segment size")
    return Shape(kind, numbers, pause, pad)


def wire_bytes(handshake: bytes, shape: Shape) -> bytes:
    """The records on the wire for this shape: one record, or fragments for records shapes."""
    if shape.kind in ("records", "records-writes"):
        return client_hello_records(handshake, list(shape.numbers))
    return client_hello_records(handshake)


def writes(handshake: bytes, shape: Shape) -> list[bytes]:
    """The kernel writes, in order. Cuts past the end are ignored (a small hello split at 1024 is one
    write), so callers check ``len(result)`` when the split itself is the point."""
    wire = wire_bytes(handshake, shape)
    if shape.kind in ("one-write", "records"):
        return [wire]
    if shape.kind == "records-writes":
        return _record_pieces(wire)
    if shape.kind in ("split", "tiny-first"):
        return cut(wire, shape.numbers)
    raise ValueError(f"{shape} is a raw shape: it needs raw.deliver_segments")


def cut(data: bytes, offsets: tuple[int, ...]) -> list[bytes]:
    view = memoryview(data)
    points = sorted({o for o in offsets if 0 < o < len(data)})
    pieces = []
    start = 0
    for point in [*points, len(data)]:
        pieces.append(bytes(view[start:point]))
        start = point
    return pieces


def _record_pieces(wire: bytes) -> list[bytes]:
    pieces = []
    pos = 0
    while pos < len(wire):
        length = int.from_bytes(wire[pos + 3 : pos + 5], "big")
        pieces.append(wire[pos : pos + 5 + length])
        pos += 5 + length
    return pieces
