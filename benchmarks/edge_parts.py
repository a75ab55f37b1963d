"""The I/O edge's pieces, each alone: what one sidecar connection pays for trio, logging and metrics.

``inside.py`` says how much of a connection is the edge; this says what the edge is made of, with no load
and no engine, so that no single piece can hide in it. Each figure is CPU µs (``time.process_time``), the
best of three repeats of ``n`` iterations:

- ``task_spawn_us``: ``nursery.start_soon`` of a task that returns at once (the connection's own task);
- ``nursery_with_task_us``: a nursery opened and closed around one such task (the splice's second pump);
- ``cancel_scope_us``: a cancel scope with a deadline, the deadline moved once (handshake, idle);
- ``checkpoint_us``: one trip through trio's scheduler;
- ``wakeup_us``: one trio wake-up on a readable socket: a 1-byte ping-pong over a socketpair under trio, less
  the same ping-pong's syscalls alone, per wake-up (two a round trip); ``bare_epoll_wakeup_us`` is the same with
  a bare ``select.epoll`` loop, for scale;
- ``log_line_us``: a ``ConnectionRecord`` filled as after a handshake and emitted as the worker logs it;
- ``metrics_us``: the multi-process metric writes of one connection (opened, handshake, bytes, closed).

Run as ``python -m benchmarks.edge_parts [n]``: it sets up logging and metrics of its own, which must not leak
into other measurements. Prints one JSON object.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio


def _best(measure: Callable[[], float], repeats: int = 3) -> float:
    return min(measure() for _ in range(repeats))


async def _returns() -> None:
    return None


def _trio(n: int, body: Callable[[int], Any]) -> float:
    async def main() -> float:
        start = time.process_time()
        await body(n)
        return (time.process_time() - start) / n

    return trio.run(main)


async def _spawn(n: int) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(_returns)


async def _nurseries(n: int) -> None:
    for _ in range(n):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_returns)


async def _scopes(n: int) -> None:
    for _ in range(n):
        with trio.CancelScope(deadline=trio.current_time() + 10) as scope:
            scope.deadline = trio.current_time() + 20


async def _checkpoints(n: int) -> None:
    for _ in range(n):
        await trio.lowlevel.checkpoint()


def _socketpair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


async def _receive(sock: socket.socket) -> bytes:
    while True:
        try:
            return sock.recv(16)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)


async def _trio_ping_pong(n: int) -> None:
    a, b = _socketpair()
    try:
        async def echo() -> None:
            for _ in range(n):
                b.send(await _receive(b))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            for _ in range(n):
                a.send(b"x")
                await _receive(a)
    finally:
        a.close()
        b.close()


def _epoll_ping_pong(n: int) -> float:
    a, b = _socketpair()
    epoll = select.epoll()
    try:
        epoll.register(a, select.EPOLLIN)
        epoll.register(b, select.EPOLLIN)
        start = time.process_time()
        for _ in range(n):
            a.send(b"x")
            epoll.poll(1)
            b.send(b.recv(16))
            epoll.poll(1)
            a.recv(16)
        return (time.process_time() - start) / n
    finally:
        epoll.close()
        a.close()
        b.close()


def _syscalls_ping_pong(n: int) -> float:
    a, b = _socketpair()
    try:
        start = time.process_time()
        for _ in range(n):
            a.send(b"x")
            b.send(b.recv(16))
            a.recv(16)
        return (time.process_time() - start) / n
    finally:
        a.close()
        b.close()


def _log_line(n: int) -> float:
    from pqproxy.proxy.sidecar import ConnectionRecord
    from pqproxy.proxy.supervisor import setup_logging

    setup_logging("info")
    handler = logging.getLogger().handlers[0]
    with open(os.devnull, "w") as devnull:
        handler.setStream(devnull)  # type: ignore[attr-defined]
        start = time.process_time()
        for _ in range(n):
            record = ConnectionRecord("server", "default", "127.0.0.1:40000", 0)
            record.version, record.group, record.cipher = "TLSv1.3", "X25519MLKEM768", "TLS_AES_128_GCM_SHA256"
            record.sni, record.client_hello_size, record.hello_retry, record.resumed = "localhost", 1500, False, False
            record.quantum_safe, record.handshake_ms, record.upstream = True, 3.2, "127.0.0.1:9000"
            record.bytes_up = record.bytes_down = 1
            record.emit()
        return (time.process_time() - start) / n


def _metrics(n: int) -> float:
    from pqproxy.proxy.metrics import Metrics

    with tempfile.TemporaryDirectory(prefix="pqproxy-edge-metrics-") as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        try:
            metrics = Metrics()
            start = time.process_time()
            for _ in range(n):
                metrics.connection_opened("default")
                metrics.handshake("ok", "X25519MLKEM768", 0.003, 1500, True)
                metrics.bytes_proxied("upstream", 1)
                metrics.bytes_proxied("downstream", 1)
                metrics.connection_closed("default")
            return (time.process_time() - start) / n
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def measure(n: int = 20000) -> dict[str, float]:
    syscalls = _best(lambda: _syscalls_ping_pong(n))
    out = {
        "task_spawn_us": _best(lambda: _trio(n, _spawn)),
        "nursery_with_task_us": _best(lambda: _trio(n, _nurseries)),
        "cancel_scope_us": _best(lambda: _trio(n, _scopes)),
        "checkpoint_us": _best(lambda: _trio(n, _checkpoints)),
        "wakeup_us": (_best(lambda: _trio(n, _trio_ping_pong)) - syscalls) / 2,
        "bare_epoll_wakeup_us": (_best(lambda: _epoll_ping_pong(n)) - syscalls) / 2,
        "log_line_us": _best(lambda: _log_line(n)),
        "metrics_us": _best(lambda: _metrics(n)),
    }
    return {key: round(value * 1e6, 2) for key, value in out.items()}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)))
