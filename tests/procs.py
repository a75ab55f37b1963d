"""Running ``pqproxy`` as a user does, as a subprocess, and reading its JSON log lines (shared by the tests)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pqproxy.processes import stop_process

TIMEOUT = 10.0


def require(reason: str | None) -> None:
    """Skip with the reason outside CI; in CI (root, everything installed) a missing piece is a failure."""
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def wait_listening(port: int, proc: subprocess.Popen[Any], log: Path, host: str = "127.0.0.1",
                   timeout: float = 15.0) -> None:
    """Wait (bounded) until something accepts on host:port; fail with the process's log if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text(errors='replace')}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}: {log.read_text(errors='replace')}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """``python -m pqproxy ARGS``; stderr (one JSON object a line, or anything else) is collected in ``lines``."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pqproxy", *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def records(self) -> list[dict[str, Any]]:
        """Every log line so far that is a JSON object."""
        out = []
        for line in list(self.lines):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.records():
                if predicate(record):
                    return record
            if self.proc.poll() is not None:
                raise AssertionError(f"pqproxy exited with {self.proc.returncode}: {self.lines}")
            time.sleep(0.02)
        raise AssertionError(f"no matching log line within {timeout}s: {self.lines}")

    def stop(self) -> None:
        stop_process(self.proc)
        self.close_pipe()

    def close_pipe(self) -> None:
        """After the process is gone: let the reader reach EOF (bounded), then close stderr (no ResourceWarning)."""
        self._reader.join(timeout=5)
        if self.proc.stderr is not None and not self._reader.is_alive():
            self.proc.stderr.close()


def raw_exchange(port: int, data: bytes, host: str = "127.0.0.1", timeout: float = TIMEOUT) -> bytes:
    """Send raw bytes as a TLS client would, then read what the server answers until it closes."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        answer = bytearray()
        try:
            while chunk := s.recv(65536):
                answer.extend(chunk)
        except ConnectionResetError:
            pass
        return bytes(answer)


class ScriptedServer:
    """A loopback TCP server that is not a TLS server, with one script for every connection: send ``greeting``
    on accept; then, by default, read once, answer ``reply`` (``None``: nothing) and close; or, with
    ``listen=True``, read to the end without a word and keep what came in ``received``. Every wait is
    bounded; ``close()`` stops it."""

    def __init__(self, reply: bytes | None = None, *, greeting: bytes = b"", listen: bool = False) -> None:
        self.reply, self.greeting, self.listen = reply, greeting, listen
        self.received: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # the accept timeout, or the socket closed
                continue
            with conn:
                conn.settimeout(0.2)
                try:
                    if self.greeting:
                        conn.sendall(self.greeting)
                    if self.listen:
                        self.received.append(self._read_to_end(conn))
                    else:
                        conn.settimeout(2)
                        conn.recv(65536)
                        if self.reply is not None:
                            conn.sendall(self.reply)
                except OSError:
                    pass

    def _read_to_end(self, conn: socket.socket) -> bytes:
        data = bytearray()
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # a reset ends the connection as surely as a FIN
                break
            if not chunk:
                break
            data += chunk
        return bytes(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
