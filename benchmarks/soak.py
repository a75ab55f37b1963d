"""The soak: applications under constant load through ``pqproxy client`` -> ``pqproxy server`` -> an echo service,
while faults are injected on a schedule; every application connection must end in exactly one of: all bytes
right, or an error the application sees.

Three pipelines run side by side on loopback, each a client and a server sidecar in front of one Node echo service:
``plain`` (server ``--workers 2``), ``qkd-prefer`` and ``qkd-require`` (both sides keyed by a ``pqproxy kme``, the
ETSI GS QKD 014 API over mutual TLS). Application threads (``concurrency`` per pipeline) each loop: connect to the
client sidecar, send a random payload (1 KiB to ``max_payload``), half-close, read to the end, and compare. Every
connection is classified:

- ``ok``: every byte came back, in order, then EOF;
- ``error``: the application saw an error (a reset, a refused connect, a broken pipe): it knows;
- ``short``: EOF after a strict prefix of the payload, with no error: a **clean short read** (must be 0);
- ``corrupt``: bytes that are not the payload's (must be 0);
- ``hung``: nothing ended within ``deadline`` seconds (must be 0: every wait in pqproxy is bounded).

The faults, one after the other, each in a window of its own with quiet time between (``schedule``): SIGKILL of a
server worker (plain); a SIGHUP storm on both plain sidecars; SIGTERM of the plain server (drain) and its restart;
the echo service killed (SIGKILL) and restarted; every connection between the plain sidecars reset mid-stream
(``ss -K``: the kernel aborts the client sidecar's sockets and sends RST to the server's); the KME stalled (SIGSTOP,
then SIGCONT), down (SIGKILL, then restarted) and answering garbage (its control endpoint's ``/misbehave``). For
each fault and pipeline: the connections that overlapped the window, how each ended, and the time to recover (from
the end of the fault to the first connection that started after it and came back whole).

Run as ``python -m benchmarks.soak [--quick]`` (root for ``ss -K``; ``make bench`` runs it). Prints the table and
one JSON object; exits 1 if any connection ended short, corrupt or hung.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import sidecars

OUTCOMES = ("ok", "error", "short", "corrupt", "hung")
MUST_BE_ZERO = ("short", "corrupt", "hung")
PIPELINES = ("plain", "qkd-prefer", "qkd-require")


@dataclass
class Settings:
    concurrency: int = 3  # application threads per pipeline
    max_payload: int = 256 * 1024
    deadline: float = 30.0  # seconds an application waits for its connection to end, at most
    fault_s: float = 6.0  # how long a fault lasts (stall, garbage, down)
    quiet_s: float = 4.0  # between faults: the pipelines recover
    baseline_s: float = 6.0


@dataclass
class Connection:
    pipeline: str
    started: float
    ended: float = 0.0
    outcome: str = ""
    sent: int = 0
    received: int = 0
    error: str = ""


@dataclass
class Fault:
    name: str
    pipelines: tuple[str, ...]  # the ones it acts on
    started: float = 0.0
    ended: float = 0.0
    notes: list[str] = field(default_factory=list)


def exchange(port: int, payload: bytes, deadline: float) -> tuple[str, int, str]:
    """One application connection: (outcome, bytes received, error). Sends and reads at once (selectors), so a
    payload larger than the path's buffers cannot deadlock; half-closes after the last byte."""
    received = bytearray()
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError as exc:
        return "error", 0, f"connect: {exc}"
    sock.setblocking(False)
    view = memoryview(payload)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    end = time.monotonic() + deadline
    error = ""
    try:
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return "hung", len(received), "no end within the deadline"
            for _, mask in selector.select(min(left, 1.0)):
                if mask & selectors.EVENT_WRITE and view:
                    try:
                        view = view[sock.send(view[:65536]):]
                    except BlockingIOError:
                        pass
                    if not view:
                        sock.shutdown(socket.SHUT_WR)
                        selector.modify(sock, selectors.EVENT_READ)
                if mask & selectors.EVENT_READ:
                    try:
                        chunk = sock.recv(65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        got = bytes(received)
                        if got == payload:
                            return "ok", len(got), ""
                        if payload.startswith(got) and view:  # ended before we finished sending: it knows
                            return "error", len(got), "EOF while still sending"
                        return ("short" if payload.startswith(got) else "corrupt"), len(got), ""
                    received += chunk
                    if len(received) > len(payload) or payload[len(received) - len(chunk): len(received)] != chunk:
                        return "corrupt", len(received), "bytes that were not sent"
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
        got = bytes(received)
        return ("error" if payload.startswith(got) else "corrupt"), len(got), error
    finally:
        selector.close()
        sock.close()


class Load:
    """``concurrency`` application threads per pipeline, until stopped."""

    def __init__(self, ports: dict[str, int], settings: Settings) -> None:
        self.ports, self.settings = ports, settings
        self.connections: list[Connection] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(name, i), daemon=True)
                        for name in ports for i in range(settings.concurrency)]

    def _run(self, pipeline: str, index: int) -> None:
        rng = random.Random(f"{pipeline}:{index}")
        while not self.stop.is_set():
            payload = os.urandom(rng.randint(1024, self.settings.max_payload))
            c = Connection(pipeline, time.monotonic(), sent=len(payload))
            c.outcome, c.received, c.error = exchange(self.ports[pipeline], payload, self.settings.deadline)
            c.ended = time.monotonic()
            with self.lock:
                self.connections.append(c)
            if c.outcome != "ok":
                self.stop.wait(0.05)  # a refused connect must not spin

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(self.settings.deadline + 10)


class Stack:
    """The processes: KME, echo, and the three pipelines' sidecars. Restartable one by one."""

    def __init__(self, work: Path) -> None:
        from pqproxy.certs import write_dev_pki

        self.work = work
        self.pki = write_dev_pki(work / "pki", alg="ecdsa", names=("localhost", "127.0.0.1"))
        names = ("echo", "kme", "control", *[f"{p}-server" for p in PIPELINES], *[f"{p}-client" for p in PIPELINES])
        self.ports = {name: sidecars._free_port() for name in names}
        self.procs: dict[str, sidecars._Process] = {}

    def _qkd(self, sae: str, mode: str, peer: str | None) -> list[str]:
        kme = self.work / "kme"
        args = ["--qkd", mode, "--qkd-kme", f"https://127.0.0.1:{self.ports['kme']}", "--qkd-sae-id", sae,
                "--qkd-cert", str(kme / f"{sae}.pem"), "--qkd-key", str(kme / f"{sae}.key"), "--qkd-ca",
                str(kme / "ca.pem")]
        return args + (["--qkd-peer", peer] if peer else [])

    def start_kme(self) -> None:
        self.procs["kme"] = sidecars._Process(
            [sys.executable, "-m", "pqproxy", "kme", "--listen", f"127.0.0.1:{self.ports['kme']}", "--out",
             str(self.work / "kme"), "--control", f"127.0.0.1:{self.ports['control']}", "--sae", "alice", "--sae",
             "bob", "--length-km", "2", "--max-key-count", "100000"], '"kme_ready"')

    def start_echo(self) -> None:
        self.procs["echo"] = sidecars._echo_upstream(self.ports["echo"])

    def start_server(self, pipeline: str) -> None:
        mode = {"plain": None, "qkd-prefer": "prefer", "qkd-require": "require"}[pipeline]
        argv = [sys.executable, "-m", "pqproxy", "server", "--listen", f"127.0.0.1:{self.ports[pipeline + '-server']}",
                "--upstream", f"127.0.0.1:{self.ports['echo']}", "--cert", str(self.pki["server"]), "--key",
                str(self.pki["server_key"]), "--workers", "2" if pipeline == "plain" else "1", "--drain-timeout", "2"]
        argv += self._qkd("bob", mode, None) if mode else []
        self.procs[pipeline + "-server"] = sidecars._Process(argv, '"started"', on_stderr=True)

    def start_client(self, pipeline: str) -> None:
        mode = {"plain": None, "qkd-prefer": "prefer", "qkd-require": "require"}[pipeline]
        argv = [sys.executable, "-m", "pqproxy", "client", "--listen", f"127.0.0.1:{self.ports[pipeline + '-client']}",
                "--connect", f"127.0.0.1:{self.ports[pipeline + '-server']}", "--sni", "localhost", "--ca",
                str(self.pki["ca"]), "--workers", "1", "--drain-timeout", "2"]
        argv += self._qkd("alice", mode, "bob") if mode else []
        self.procs[pipeline + "-client"] = sidecars._Process(argv, '"started"', on_stderr=True)

    def start(self) -> None:
        self.start_kme()
        self.start_echo()
        for pipeline in PIPELINES:
            self.start_server(pipeline)
            self.start_client(pipeline)
        for name in [*(f"{p}-server" for p in PIPELINES), *(f"{p}-client" for p in PIPELINES)]:
            _wait_listening(self.ports[name])

    def stop(self) -> None:
        for proc in self.procs.values():
            try:
                os.kill(proc.pgid, signal.SIGCONT)  # a stalled KME must be able to die
            except ProcessLookupError:
                pass
            proc.stop()

    def control(self, path: str, body: dict[str, Any]) -> None:
        import urllib.request

        request = urllib.request.Request(f"http://127.0.0.1:{self.ports['control']}{path}",
                                         data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()


def _wait_listening(port: int, timeout: float = 30.0) -> float:
    started = time.monotonic()
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return time.monotonic() - started
        except OSError:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"nothing listens on {port}") from None
            time.sleep(0.05)


def _workers(supervisor: int) -> list[int]:
    """The supervisor's worker processes (multiprocessing spawn children; not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == supervisor and b"spawn_main" in command:
            found.append(int(entry.name))
    return sorted(found)


# --- the faults ---------------------------------------------------------------------------------------------


def kill_worker(stack: Stack, fault: Fault, s: Settings) -> None:
    workers = _workers(stack.procs["plain-server"].proc.pid)
    os.kill(workers[0], signal.SIGKILL)
    fault.notes.append(f"SIGKILL worker {workers[0]} of {len(workers)}")
    time.sleep(s.fault_s / 2)


def sighup_storm(stack: Stack, fault: Fault, s: Settings) -> None:
    for _ in range(10):
        for name in ("plain-server", "plain-client"):
            os.kill(stack.procs[name].proc.pid, signal.SIGHUP)
        time.sleep(0.2)
    fault.notes.append("10 SIGHUPs to each plain sidecar, 0.2 s apart")


def drain_and_restart(stack: Stack, fault: Fault, s: Settings) -> None:
    proc = stack.procs["plain-server"]
    os.kill(proc.proc.pid, signal.SIGTERM)
    proc.proc.wait(15)
    stack.start_server("plain")
    fault.notes.append(f"SIGTERM (drain 2 s), exit {proc.proc.returncode}, restarted")


def upstream_restart(stack: Stack, fault: Fault, s: Settings) -> None:
    proc = stack.procs["echo"]
    os.killpg(proc.pgid, signal.SIGKILL)
    proc.proc.wait(5)
    time.sleep(1.0)
    stack.start_echo()
    fault.notes.append("echo SIGKILL, down 1 s, restarted")


def reset_mid_stream(stack: Stack, fault: Fault, s: Settings) -> None:
    killed = 0
    for _ in range(int(s.fault_s / 0.5)):
        done = subprocess.run(["ss", "-K", "-t", "dst", "127.0.0.1", "dport", "=", f":{stack.ports['plain-server']}"],
                              capture_output=True, text=True, timeout=10)
        killed += max(0, len(done.stdout.splitlines()) - 1)
        time.sleep(0.5)
    fault.notes.append(f"ss -K every 0.5 s: {killed} sockets of the client sidecar aborted (RST to the server)")


def kme_stall(stack: Stack, fault: Fault, s: Settings) -> None:
    proc = stack.procs["kme"]
    os.kill(proc.proc.pid, signal.SIGSTOP)
    time.sleep(s.fault_s)
    os.kill(proc.proc.pid, signal.SIGCONT)
    fault.notes.append(f"KME SIGSTOP for {s.fault_s:g} s")


def kme_down(stack: Stack, fault: Fault, s: Settings) -> None:
    proc = stack.procs["kme"]
    os.killpg(proc.pgid, signal.SIGKILL)
    proc.proc.wait(5)
    time.sleep(s.fault_s)
    stack.start_kme()
    fault.notes.append(f"KME SIGKILL, down {s.fault_s:g} s, restarted (its unfetched keys are lost)")


def kme_garbage(stack: Stack, fault: Fault, s: Settings) -> None:
    stack.control("/misbehave", {"answer": "garbage"})
    time.sleep(s.fault_s)
    stack.control("/misbehave", {"answer": "normal"})
    fault.notes.append(f"KME answering 200 with a body that is not JSON for {s.fault_s:g} s")


SCHEDULE: tuple[tuple[str, tuple[str, ...], Callable[[Stack, Fault, Settings], None]], ...] = (
    ("worker SIGKILL", ("plain",), kill_worker),
    ("SIGHUP storm", ("plain",), sighup_storm),
    ("SIGTERM drain + restart", ("plain",), drain_and_restart),
    ("upstream killed + restarted", PIPELINES, upstream_restart),
    ("connections reset mid-stream", ("plain",), reset_mid_stream),
    ("KME stalled", ("qkd-prefer", "qkd-require"), kme_stall),
    ("KME down + restarted", ("qkd-prefer", "qkd-require"), kme_down),
    ("KME answering garbage", ("qkd-prefer", "qkd-require"), kme_garbage),
)


def summarize(connections: list[Connection], faults: list[Fault], baseline: tuple[float, float],
              grace: float) -> list[dict[str, Any]]:
    """One row per (fault, pipeline): the connections that overlapped the fault's window (its span plus
    ``grace``; for the baseline, those wholly inside it), how they ended, and the time to recover."""
    rows = []
    windows = [("baseline (no fault)", PIPELINES, *baseline, 0.0)] + [(f.name, f.pipelines, f.started, f.ended, grace)
                                                                      for f in faults]
    for name, pipelines, start, end, extra in windows:
        for pipeline in pipelines:
            ours = [c for c in connections if c.pipeline == pipeline]
            if name.startswith("baseline"):  # wholly inside: the first fault's victims are the fault's
                mine = [c for c in ours if c.started >= start and c.ended <= end]
            else:
                mine = [c for c in ours if c.ended >= start and c.started <= end + extra]
            counts = Counter(c.outcome for c in mine)
            after = sorted((c for c in ours if c.started >= end and c.outcome == "ok"), key=lambda c: c.ended)
            rows.append({
                "fault": name, "pipeline": pipeline, "connections": len(mine),
                "affected": sum(counts[o] for o in OUTCOMES if o != "ok"),
                **{o: counts[o] for o in OUTCOMES},
                "recover_s": round(after[0].ended - end, 2) if after else None,
                "errors_seen": sorted({c.error.split(":")[0] for c in mine if c.outcome == "error"})[:4],
            })
    return rows


def run(settings: Settings) -> dict[str, Any]:
    if shutil.which("ss") is None or os.geteuid() != 0:
        raise SystemExit("benchmarks.soak: needs root and ss (iproute2) for the mid-stream resets")
    with tempfile.TemporaryDirectory(prefix="pqproxy-soak-") as tmp:
        stack = Stack(Path(tmp))
        stack.start()
        load = Load({p: stack.ports[p + "-client"] for p in PIPELINES}, settings)
        faults: list[Fault] = []
        try:
            load.start()
            began = time.monotonic()
            time.sleep(settings.baseline_s)
            baseline = (began, time.monotonic())
            for name, pipelines, inject in SCHEDULE:
                fault = Fault(name, pipelines, started=time.monotonic())
                print(f"soak: {name} ...", file=sys.stderr, flush=True)
                inject(stack, fault, settings)
                fault.ended = time.monotonic()
                faults.append(fault)
                time.sleep(settings.quiet_s)
        finally:
            load.finish()
            stack.stop()
    rows = summarize(load.connections, faults, baseline, grace=settings.quiet_s / 2)
    totals = Counter(c.outcome for c in load.connections)
    return {"settings": settings.__dict__, "connections": len(load.connections),
            "totals": {o: totals[o] for o in OUTCOMES}, "rows": rows,
            "faults": [{"name": f.name, "seconds": round(f.ended - f.started, 2), "notes": f.notes} for f in faults],
            "clean": all(totals[o] == 0 for o in MUST_BE_ZERO),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def table(result: dict[str, Any]) -> str:
    head = ("| fault | pipeline | connections | affected | errors seen by the application | clean short reads | "
            "corrupt | hung | time to recover |")
    lines = [head, "|" + "---|" * 9]
    for r in result["rows"]:
        recover = f"{r['recover_s']} s" if r["recover_s"] is not None else "-"
        lines.append(f"| {r['fault']} | {r['pipeline']} | {r['connections']} | {r['affected']} | {r['error']} | "
                     f"**{r['short']}** | **{r['corrupt']}** | {r['hung']} | {recover} |")
    return "\n".join(lines)


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    settings = Settings(fault_s=3.0, quiet_s=3.0, baseline_s=3.0) if quick else Settings()
    result = run(settings)
    print(table(result))
    print(json.dumps(result))
    return 0 if result["clean"] else 1


if __name__ == "__main__":
    sys.exit(main())
