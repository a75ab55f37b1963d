"""What the sidecar acceptance tests share: plain backends, the sidecar processes, metrics, a TLS engine client.

- ``Backend``: a threaded plain-TCP service on 127.0.0.1 (echo, echo after a greeting tag, or "collect then
  answer" to make half-close observable).
- ``Sidecar``: ``python -m pqproxy server|client ...`` in its own process group, with a free listen port and
  admin port; ``stop()`` sends SIGTERM, waits (bounded), kills the whole group if it must, and checks that no
  process of the group (supervisor, workers, resource tracker) is left.
- ``scrape``/``metric``: the admin endpoint's /metrics parsed with prometheus_client's own parser.
- ``EngineClient``: pqproxy's sans-IO ``TLSClient`` over a blocking socket, reporting what a peer sees
  (alerts, close_notify, EOF, resets) without any of the sidecar code in between.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from pqproxy.tls.client import TLSClient
from pqproxy.tls.config import TLSConfig
from pqproxy.tls.events import AlertReceived, AlertSent, ApplicationData, Event, HandshakeComplete, PeerClosed
from tests.procs import TIMEOUT, Proc, free_port

HOST = "127.0.0.1"
COLLECT = b"COLLECT\n"
STOP_TIMEOUT = 10.0


# --- plain backends --------------------------------------------------------------------------------------


class Backend:
    """A plain TCP service, one thread per connection.

    ``mode``: "echo" echoes as it reads and half-closes after its peer does; "collect" reads to EOF, then
    sends back ``b"got N "`` + the sha256 hex of what it read (only possible if half-close went through).
    An echo backend switches to collect for a connection whose first bytes are ``COLLECT`` (so one sidecar
    pipe can serve both kinds of test). ``tag`` (any mode) is sent first on every connection, so a test can
    tell backends apart.
    """

    def __init__(self, mode: str = "echo", tag: bytes = b"") -> None:
        self.mode = mode
        self.tag = tag
        self.sock = socket.create_server((HOST, 0), backlog=1024)
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"backend-{self.port}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(60)
        try:
            if self.tag:
                conn.sendall(self.tag)
            first = b""
            while len(first) < len(COLLECT) and COLLECT.startswith(first):
                data = conn.recv(1 << 18)
                if not data:
                    break
                first += data
            if self.mode == "collect" or first.startswith(COLLECT):
                digest, n = hashlib.sha256(first), len(first)
                while data := conn.recv(1 << 18):
                    digest.update(data)
                    n += len(data)
                conn.sendall(f"got {n} {digest.hexdigest()}".encode())
            else:
                if first:
                    conn.sendall(first)
                    while data := conn.recv(1 << 18):
                        conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # unblock the serving threads: they close their sockets themselves
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# --- the sidecar processes ---------------------------------------------------------------------------------


class GroupProc(Proc):
    """``Proc`` started in its own session, so the supervisor and its workers can be stopped as one group."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pqproxy", *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


class Sidecar:
    """One ``pqproxy server`` or ``pqproxy client``, ready (every worker listening) when constructed."""

    def __init__(self, mode: str, args: list[str], *, workers: int = 1, admin: bool = True,
                 wait: bool = True) -> None:
        self.mode = mode
        self.port = free_port()
        self.admin_port = free_port() if admin else None
        self.workers = workers
        full = [mode, *args, "--listen", f"{HOST}:{self.port}", "--workers", str(workers)]
        if self.admin_port:
            full += ["--admin", f"{HOST}:{self.admin_port}"]
        self.args = full
        self.proc = GroupProc(full)
        self.pid = self.proc.proc.pid
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop(check=False)
                raise

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        self.proc.wait_for(lambda r: r.get("event") == "admin" if self.admin_port else r.get("event") == "started",
                           timeout)
        while sum(1 for r in self.proc.records() if r.get("event") == "listening") < self.workers:
            assert time.monotonic() < deadline, f"workers did not all listen: {self.proc.lines}"
            time.sleep(0.02)

    # -- logs ---------------------------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        return self.proc.records()

    def connections(self) -> list[dict[str, Any]]:
        """The per-connection log records (they have a "mode"; events do not)."""
        return [r for r in self.records() if "mode" in r and "event" not in r]

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT) -> dict[str, Any]:
        return self.proc.wait_for(predicate, timeout)

    def wait_count(self, predicate: Callable[[dict[str, Any]], bool], n: int, timeout: float = TIMEOUT
                   ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.records() if predicate(r)]
            if len(found) >= n:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {n} matching log lines after {timeout}s; "
                                     f"last lines: {self.proc.lines[-20:]}")
            time.sleep(0.05)

    # -- admin --------------------------------------------------------------------------------------------

    def get(self, path: str) -> tuple[int, str]:
        assert self.admin_port, "started without --admin"
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.admin_port}{path}", timeout=TIMEOUT) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        status, body = self.get("/metrics")
        assert status == 200, body
        return parse_metrics(body)

    def metric(self, name: str, **labels: str) -> float:
        """One sample's value, 0.0 when the series does not exist (yet)."""
        return self.metrics().get((name, frozenset(labels.items())), 0.0)

    def wait_metric(self, name: str, minimum: float, timeout: float = TIMEOUT, **labels: str) -> float:
        deadline = time.monotonic() + timeout
        while True:
            value = self.metric(name, **labels)
            if value >= minimum:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}{labels} = {value} < {minimum} after {timeout}s")
            time.sleep(0.05)

    # -- lifecycle ----------------------------------------------------------------------------------------

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stop(self, *, check: bool = True) -> None:
        """SIGTERM, a bounded wait, then SIGKILL to the whole group; with ``check``, assert nothing is left."""
        popen = self.proc.proc
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while group_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        leftover = group_alive(self.pid)
        if leftover:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if popen.poll() is None:
            popen.kill()
        popen.wait(STOP_TIMEOUT)
        self.proc.close_pipe()
        if check:
            assert not leftover, f"processes of pqproxy {self.mode} (pgid {self.pid}) outlived it"


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return out


def server_args(pki: dict[str, Path], upstream: str, *extra: str) -> list[str]:
    return ["--upstream", upstream, "--cert", str(pki["server"]), "--key", str(pki["server_key"]), *extra]


def client_args(pki: dict[str, Path], server_port: int, *extra: str) -> list[str]:
    return ["--connect", f"{HOST}:{server_port}", "--sni", "localhost", "--ca", str(pki["ca"]), *extra]


def echo_once(port: int, payload: bytes, timeout: float = 20.0) -> bytes:
    """Send ``payload`` through a client sidecar on ``port`` to an echo service; what comes back: all of it, or
    what came before the sidecar closed or reset the application's connection (b"" when it refused at once)."""
    with socket.create_connection((HOST, port), timeout=timeout) as conn:
        conn.sendall(payload)
        got = b""
        try:
            while len(got) < len(payload) and (data := conn.recv(4096)):
                got += data
        except ConnectionResetError:
            pass
        return got


# --- data --------------------------------------------------------------------------------------------------


def pattern(seed: int, n: int) -> bytes:
    """n bytes that differ for every seed (a counter-mode sha256 stream)."""
    prefix = seed.to_bytes(8, "big")
    blocks = (hashlib.sha256(prefix + i.to_bytes(8, "big")).digest() for i in range((n + 31) // 32))
    return b"".join(blocks)[:n]


# --- a TLS client on our engine over a blocking socket ------------------------------------------------------


class EngineClient:
    """pqproxy's ``TLSClient`` on a plain socket; records every event and how the transport ended."""

    def __init__(self, port: int, config: TLSConfig, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.conn = TLSClient(config)
        self.events: list[Event] = []
        self.received = bytearray()
        self.eof = False  # TCP FIN seen
        self.reset = False  # ECONNRESET seen
        self.info: HandshakeComplete | None = None
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            try:
                self.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                self.reset = True

    def _read_once(self) -> bool:
        try:
            data = self.sock.recv(1 << 16)
        except ConnectionResetError:
            self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        for event in self.conn.receive_data(data):
            self.events.append(event)
            if isinstance(event, HandshakeComplete):
                self.info = event
            elif isinstance(event, ApplicationData):
                self.received += event.data
        self._flush()
        return True

    def pump_until(self, done: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not done() and not self.eof and not self.reset:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self._read_once():
                    return
            except TimeoutError:
                raise AssertionError(f"peer said nothing within {timeout}s; events so far {self.events}") from None

    def handshake(self, timeout: float = TIMEOUT) -> HandshakeComplete | None:
        """The HandshakeComplete, or None when the handshake failed (see ``alerts``)."""
        self.pump_until(lambda: self.info is not None or self.failed, timeout)
        return self.info

    @property
    def failed(self) -> bool:
        return any(isinstance(e, (AlertReceived, AlertSent)) for e in self.events)

    def alerts_received(self) -> list[str]:
        return [e.name for e in self.events if isinstance(e, AlertReceived)]

    @property
    def peer_closed(self) -> bool:
        return any(isinstance(e, PeerClosed) for e in self.events)

    def send(self, data: bytes) -> None:
        self.conn.send_data(data)
        self._flush()

    def close_write(self) -> None:
        """close_notify and a TCP half-close."""
        self.conn.close()
        self._flush()
        self.sock.shutdown(socket.SHUT_WR)

    def read_until(self, n: int, timeout: float = TIMEOUT) -> bytes:
        self.pump_until(lambda: len(self.received) >= n, timeout)
        return bytes(self.received)

    def read_to_end(self, timeout: float = TIMEOUT) -> None:
        """Read until the transport ends (FIN or reset)."""
        self.pump_until(lambda: False, timeout)

    def close(self) -> None:
        """End as Node's and Go's clients do: close_notify first (once the handshake is done), then close. A test
        that wants the connection to end without it (a truncation) calls ``abandon``."""
        if self.info is not None and not self.reset:
            self.conn.close()
            self._flush()
        self.sock.close()

    def abandon(self) -> None:
        """Close the socket without close_notify: TCP FIN (or RST, with unread data) and nothing more."""
        self.sock.close()

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
