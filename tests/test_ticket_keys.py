"""Issue 19, part 2: replicas that resume each other's sessions, through a shared ticket key file.

The ratchet from a seed (``TicketKeys.from_seed``), the file's rules (``ticket_keys.py``), a reload that brings a
new seed, ``pqproxy ticket-key``, and the end to end case: two separate ``pqproxy server`` processes (not workers of
one supervisor) sharing the file, with Node 26 as the client resuming on the second the session from the first.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pqproxy.certs import write_dev_pki
from pqproxy.proxy import ticket_keys
from pqproxy.proxy.config import ConfigError, build_server_runtime, server_settings
from pqproxy.proxy.ticket_keys import (
    FILE_SIZE,
    TICKET_KEY_PERIOD,
    TICKET_LIFETIME,
    TicketKeyFileError,
    read_ticket_key_file,
    shared_ticket_keys,
    write_ticket_key_file,
)
from pqproxy.tls.session import TicketKeys, TicketSealer, TicketState
from tests.peers.node import node_binary, only, run_node_client
from tests.sidecar_kit import Backend, Sidecar, server_args

HOUR = TICKET_KEY_PERIOD
NOW = 1_790_000_000.0


def _state() -> TicketState:
    return TicketState(cipher_suite=0x1301, psk=b"p" * 32, authenticated_at=NOW, lifetime=7200, age_add=1,
                       server_name=b"localhost", alpn_protocol=b"", context=b"", client_certificate=b"")


def _keys(seed: bytes, origin: int, now: float) -> TicketKeys:
    return TicketKeys.from_seed(seed, origin, now, HOUR, TICKET_LIFETIME)


def test_replicas_with_one_seed_have_the_same_keys_whenever_they_started() -> None:
    seed, origin = os.urandom(32), int(NOW // HOUR) - 30  # a file made 30 hours ago
    early = _keys(seed, origin, NOW)
    late = _keys(seed, origin, NOW + 1.5 * HOUR)  # a replica started an hour and a half later
    ticket = TicketSealer(early).seal(_state(), NOW + 1.5 * HOUR)
    assert TicketSealer(late).open(ticket, NOW + 1.5 * HOUR) is not None
    assert TicketSealer(late).open(TicketSealer(late).seal(_state(), NOW + 2 * HOUR), NOW + 2 * HOUR) is not None
    # Sealed in one hour, opened in the next by a replica that started after it: the ratchet agrees.
    sealed = TicketSealer(_keys(seed, origin, NOW)).seal(_state(), NOW)
    assert TicketSealer(_keys(seed, origin, NOW + HOUR)).open(sealed, NOW + HOUR) is not None
    # ... and no longer once its key is dropped (the ticket lifetime and a period later).
    assert TicketSealer(_keys(seed, origin, NOW + TICKET_LIFETIME + 2 * HOUR)).open(
        sealed, NOW + TICKET_LIFETIME + 2 * HOUR) is None
    # Another seed opens nothing.
    assert TicketSealer(_keys(os.urandom(32), origin, NOW)).open(sealed, NOW) is None


def test_the_seed_is_not_kept_once_ratcheted_past() -> None:
    seed = os.urandom(32)
    keys = _keys(seed, int(NOW // HOUR) - 5, NOW)
    assert seed not in keys.at(NOW)


def test_a_retired_seed_opens_until_its_time_is_up_and_never_seals() -> None:
    old = _keys(os.urandom(32), int(NOW // HOUR), NOW)
    ticket = TicketSealer(old).seal(_state(), NOW)
    new = _keys(os.urandom(32), int(NOW // HOUR), NOW)
    new.retire(old, NOW + TICKET_LIFETIME)
    sealer = TicketSealer(new)
    assert sealer.open(ticket, NOW + 10) is not None
    fresh = sealer.seal(_state(), NOW + 10)
    assert TicketSealer(new).open(fresh, NOW + 10) is not None
    assert TicketSealer(old).open(fresh, NOW + 10) is None  # sealed under the new seed
    assert sealer.open(ticket, NOW + TICKET_LIFETIME + 1) is None


def test_the_file_is_written_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "ticket.key"
    done = subprocess.run([sys.executable, "-m", "pqproxy", "ticket-key", "--out", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert path.stat().st_size == FILE_SIZE and path.stat().st_mode & 0o777 == 0o600
    hour, seed = read_ticket_key_file(path)
    assert abs(hour - int(os.path.getmtime(path) // HOUR)) <= 1 and len(seed) == 32 and any(seed)
    again = subprocess.run([sys.executable, "-m", "pqproxy", "ticket-key", "--out", str(path)], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 2 and "exists" in again.stderr  # never overwritten


@pytest.mark.parametrize(("content", "mode", "words"), [
    (bytes(FILE_SIZE), 0o644, "readable by every user (mode 0644)"),
    (bytes(32), 0o600, "has 32 bytes, not 40"),
    (bytes(FILE_SIZE + 5), 0o600, "has 41+ bytes, not 40"),
], ids=["world-readable", "short", "long"])
def test_a_bad_file_is_refused_with_what_is_wrong(tmp_path: Path, content: bytes, mode: int, words: str) -> None:
    path = tmp_path / "ticket.key"
    path.write_bytes(content)
    path.chmod(mode)
    with pytest.raises(TicketKeyFileError, match=re.escape(words)):
        read_ticket_key_file(path)
    pki = write_dev_pki(tmp_path / "pki", alg="ecdsa")
    flags = {"listen": "127.0.0.1:1", "upstream": "127.0.0.1:2", "cert": str(pki["server"]),
             "key": str(pki["server_key"])}
    settings = server_settings({"ticket_key_file": str(path)}, flags)
    with pytest.raises(ConfigError, match=re.escape(words)):
        build_server_runtime(settings)


def test_a_reload_with_a_new_seed_keeps_opening_the_old_tickets(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ticket_keys, "_loaded", {})
    path = tmp_path / "ticket.key"
    write_ticket_key_file(path, NOW)
    first = shared_ticket_keys(path, NOW)
    assert shared_ticket_keys(path, NOW + 5) is first  # the same seed: the same keys, same place in the ratchet
    ticket = TicketSealer(first).seal(_state(), NOW)
    path.unlink()
    write_ticket_key_file(path, NOW + 60)  # the Secret rotated
    second = shared_ticket_keys(path, NOW + 60)
    assert second is not first
    sealer = TicketSealer(second)
    assert sealer.open(ticket, NOW + 60) is not None
    assert sealer.open(ticket, NOW + 60 + TICKET_LIFETIME + 1) is None


# --- two processes, Node 26 as the client ----------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("shared", [True, False])
def test_node_resumes_on_a_second_server_process_only_with_the_shared_file(tmp_path: Path, shared: bool) -> None:
    node_binary()
    pki = write_dev_pki(tmp_path / "pki", alg="ecdsa", names=("localhost", "127.0.0.1"))
    key_file = tmp_path / "ticket.key"
    write_ticket_key_file(key_file)
    extra = ["--ticket-key-file", str(key_file)] if shared else []
    echo = Backend("echo")
    servers = [Sidecar("server", server_args(pki, echo.address, *extra, "--drain-timeout", "1"), admin=False)
               for _ in range(2)]
    try:
        events = run_node_client({"port": servers[0].port, "ports": [s.port for s in servers], "reconnect": 1,
                                  "ca": str(pki["ca"]), "servername": "localhost", "send": 64,
                                  "groups": "X25519MLKEM768"}, timeout=30)
        handshakes = only(events, "handshake")
        assert [h["sessionReused"] for h in handshakes] == [False, shared], handshakes
        assert all(h["group"] == "X25519MLKEM768" for h in handshakes)
        assert not only(events, "error"), events
        records = [s.wait_for(lambda r: "mode" in r and "event" not in r) for s in servers]
        assert [r["resumed"] for r in records] == [False, shared], records
    finally:
        for s in servers:
            s.stop()
        echo.close()
