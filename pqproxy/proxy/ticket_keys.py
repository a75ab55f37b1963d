"""Session-ticket keys shared by replicas: the ticket key file (``ticket_key_file``, ``--ticket-key-file``).

Without it a supervisor makes a random seed at start and its workers share it (``TicketKeys``): a ticket from one
pod does not resume on another. With it, every process that reads the same file (the replicas of a service behind
one load balancer, each mounting the same Kubernetes Secret) seals and opens the same tickets, as nginx's
``ssl_session_ticket_key`` and Envoy's ``session_ticket_keys`` do. The hourly rotation and the drop of old keys are
unchanged: the file holds the seed of the ratchet and the hour it belongs to, each process ratchets from there to
the present and keeps only the keys a live ticket can need (the seed is gone from memory once ratcheted past).

The file: exactly ``FILE_SIZE`` bytes, an 8-byte big-endian hour (hours since 1970, ``TICKET_KEY_PERIOD``) and a
32-byte random seed, never readable by every user. ``pqproxy ticket-key --out FILE`` writes one. Re-read on SIGHUP:
a new seed seals from then on, and the old one's keys keep opening the tickets they sealed for their lifetime.
"""

from __future__ import annotations

import hmac
import os
import stat
import time
from pathlib import Path

from ..tls.config import DEFAULT_TICKET_LIFETIME
from ..tls.session import TicketKeys

TICKET_KEY_PERIOD = 3600.0  # seconds a ticket key seals before the ratchet moves on
TICKET_LIFETIME = DEFAULT_TICKET_LIFETIME
SEED_SIZE = 32
FILE_SIZE = 8 + SEED_SIZE


class TicketKeyFileError(ValueError):
    pass


def write_ticket_key_file(path: str | Path, now: float | None = None) -> None:
    """A new ticket key file, mode 0600, never over an existing file."""
    hour = int((time.time() if now is None else now) // TICKET_KEY_PERIOD)
    data = hour.to_bytes(8, "big") + os.urandom(SEED_SIZE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_ticket_key_file(path: str | Path) -> tuple[int, bytearray]:
    """(the seed's hour, the seed); TicketKeyFileError names what is wrong with the file."""
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if info.st_mode & stat.S_IROTH:
                raise TicketKeyFileError(f"ticket_key_file {path} is readable by every user (mode "
                                         f"{stat.S_IMODE(info.st_mode):04o}): chmod 600, or defaultMode 0400 for a "
                                         "Kubernetes Secret")
            data = bytearray(f.read(FILE_SIZE + 1))
    except OSError as exc:
        raise TicketKeyFileError(f"ticket_key_file {path}: {exc.strerror or exc}") from None
    if len(data) != FILE_SIZE:
        size = len(data)
        data[:] = bytes(len(data))
        raise TicketKeyFileError(f"ticket_key_file {path} has {size}{'+' if size > FILE_SIZE else ''} bytes, not "
                                 f"{FILE_SIZE} (pqproxy ticket-key --out FILE makes one)")
    hour = int.from_bytes(data[:8], "big")
    seed = data[8:]
    data[:] = bytes(FILE_SIZE)
    return hour, seed


# This process's keys per file, and a digest of the seed they came from: a reload that finds the same seed keeps
# them (and their place in the ratchet), one that finds another retires them.
_loaded: dict[str, tuple[bytes, TicketKeys]] = {}


def shared_ticket_keys(path: str | Path, now: float | None = None) -> TicketKeys:
    """The ticket keys of the file at ``path``, at ``now``; a changed file retires the keys of the old seed."""
    now = time.time() if now is None else now
    hour, seed = read_ticket_key_file(path)
    try:
        fingerprint = hmac.digest(b"pqproxy ticket key file", bytes(seed), "sha256")
        key = str(Path(path).resolve())
        previous = _loaded.get(key)
        if previous is not None and hmac.compare_digest(previous[0], fingerprint):
            return previous[1]
        keys = TicketKeys.from_seed(bytes(seed), hour, now, TICKET_KEY_PERIOD, TICKET_LIFETIME)
    finally:
        seed[:] = bytes(len(seed))
    if previous is not None:
        keys.retire(previous[1], now + TICKET_LIFETIME)
    _loaded[key] = (fingerprint, keys)
    return keys
