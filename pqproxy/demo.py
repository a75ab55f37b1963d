"""`make demo`: a quantum-safe pipe on loopback, end to end, on embedded defaults.

    plain client -> pqproxy client (TLS 1.3 origin) -> pqproxy server (TLS 1.3 termination) -> echo backend

The two sidecars run as real ``pqproxy`` processes, exactly as printed, with a throwaway development PKI.
The report says what was negotiated, at what sizes, and what the server's /metrics endpoint counted.

Then the same pipe keyed by QKD: a KME simulator (``pqproxy kme``, two sites joined by a 20 km BB84
link) serves the sidecars over ETSI GS QKD 014; every connection gets its own QKD key. An eavesdropper
is switched on: the QBER rises past the abort threshold and the link stops making keys; once the keys
stored before the attack are used up, the ``prefer`` sidecar carries on hybrid-only (degraded) and the
``require`` one refuses. The eavesdropper leaves, the link recovers, and keyed connections resume.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .certs import write_dev_pki
from .processes import stop_process

REQUEST = b"GET / HTTP/1.0\r\nHost: demo\r\n\r\nhello through a post-quantum pipe\n"
TIMEOUT = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Echo:
    """The 'service' behind the server sidecar: a plain TCP echo on loopback."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(TIMEOUT)
                try:
                    while data := conn.recv(65536):
                        conn.sendall(data)
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass


class _Sidecar:
    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.proc = subprocess.Popen([sys.executable, "-m", "pqproxy", *args], stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True)
        self.records: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                record = json.loads(line)
            except ValueError:
                print(f"  [pqproxy] {line.rstrip()}", file=sys.stderr)
                continue
            if isinstance(record, dict):
                self.records.append(record)

    def wait_for(self, key: str, value: Any) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for record in list(self.records):
                if record.get(key) == value:
                    return record
            if self.proc.poll() is not None:
                raise RuntimeError(f"pqproxy {self.args[0]} exited with {self.proc.returncode}")
            time.sleep(0.02)
        raise RuntimeError(f"pqproxy {self.args[0]}: no {key}={value} log line within {TIMEOUT}s")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # drain, as systemd and Kubernetes stop it
        try:
            return self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def _exchange(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(REQUEST)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
        return reply


def _metrics(port: int, names: tuple[str, ...]) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=TIMEOUT) as response:
        text = response.read().decode()
    return [line for line in text.splitlines()
            if line.startswith(names) and not line.startswith("#") and not line.rstrip().endswith(" 0.0")]


class _KME:
    def __init__(self, out: Path, port: int, control: int) -> None:
        self.control_port = control
        self.args = ["kme", "--listen", f"127.0.0.1:{port}", "--sae", "alice", "--sae", "bob", "--out", str(out),
                     "--control", f"127.0.0.1:{control}", "--max-key-count", "2", "--recovery-s", "1"]
        self.proc = subprocess.Popen([sys.executable, "-m", "pqproxy", *self.args], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"pqproxy kme exited with {self.proc.wait(TIMEOUT)}")
        self.ready = json.loads(line)

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return _control(self.control_port, path, body)

    def stop(self) -> None:
        stop_process(self.proc, TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _control(port: int, path: str, body: dict[str, Any] | None = None) -> Any:
    """A KME simulator's control endpoint: GET, or POST ``body`` as JSON; the JSON answer."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     data=json.dumps(body).encode() if body is not None else None,
                                     method="POST" if body is not None else "GET")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return json.loads(response.read())


def _table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in (*rows, headers)) for i in range(len(headers))]
    for row in (headers, *rows):
        print("  " + "  ".join(f"{cell:<{widths[i]}}" for i, cell in enumerate(row)).rstrip())


def _through(sidecar: _Sidecar, port: int) -> tuple[bool, dict[str, Any]]:
    """One request through a client sidecar: (echoed intact, its connection log line)."""
    before = sum(1 for r in sidecar.records if r.get("mode") == "client")
    try:
        intact = _exchange(port) == REQUEST
    except OSError:
        intact = False
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        lines = [r for r in sidecar.records if r.get("mode") == "client"]
        if len(lines) > before:
            return intact, lines[before]
        time.sleep(0.02)
    raise RuntimeError("no log line for the connection")


def _said(intact: bool, record: dict[str, Any]) -> str:
    qkd = record.get("qkd")
    if qkd == "keyed":
        return f"keyed, key_ID {str(record.get('qkd_key_id'))[:8]}..., {record.get('group')}"
    if qkd == "degraded":
        return f"{'carried' if intact else 'LOST'}, hybrid only ({record.get('group')}), degraded"
    return f"refused ({record.get('refusal')}): {str(record.get('qkd_error'))[:48]}"


def qkd_demo(pki: Path, echo_port: int) -> bool:
    """The QKD part of the demo; True when every phase did what it should."""
    tmp = pki / "kme"
    ports = {name: _free_port() for name in ("kme", "control", "server", "prefer", "require", "admin")}
    kme = _KME(tmp, ports["kme"], ports["control"])
    q = ["--qkd-kme", f"https://127.0.0.1:{ports['kme']}", "--qkd-ca", str(tmp / "ca.pem")]
    bob = [*q, "--qkd-sae-id", "bob", "--qkd-cert", str(tmp / "bob.pem"), "--qkd-key", str(tmp / "bob.key")]
    alice = [*q, "--qkd-sae-id", "alice", "--qkd-peer", "bob", "--qkd-cert", str(tmp / "alice.pem"),
             "--qkd-key", str(tmp / "alice.key")]
    server = _Sidecar(["server", "--listen", f"127.0.0.1:{ports['server']}", "--upstream", f"127.0.0.1:{echo_port}",
                       "--cert", str(pki / "server.pem"), "--key", str(pki / "server.key"), "--workers", "1",
                       "--qkd", "prefer", *bob])
    clients = {mode: _Sidecar(["client", "--listen", f"127.0.0.1:{ports[mode]}", "--connect",
                               f"127.0.0.1:{ports['server']}", "--sni", "localhost", "--ca", str(pki / "ca.pem"),
                               "--workers", "1", "--qkd", mode, *alice,
                               *(["--admin", f"127.0.0.1:{ports['admin']}"] if mode == "prefer" else [])])
               for mode in ("prefer", "require")}
    rows: list[tuple[str, str, str, str]] = []
    ok = True
    try:
        for sidecar in (server, *clients.values()):
            sidecar.wait_for("event", "started")

        def phase(name: str, expect: dict[str, str]) -> None:
            nonlocal ok
            link = kme.control("/link")
            said = {}
            for mode, sidecar in clients.items():
                intact, record = _through(sidecar, ports[mode])
                said[mode] = _said(intact, record)
                ok &= record.get("qkd") == expect[mode] and (intact or expect[mode] == "refused")
            rows.append((name, f"{link['link_state']}, QBER {link['qber'] * 100:.1f}%", said["prefer"],
                         said["require"]))

        phase("QKD link up (20 km)", {"prefer": "keyed", "require": "keyed"})
        kme.control("/eavesdropper", {"fraction": 0.5})
        phase("eavesdropper on: stored keys", {"prefer": "keyed", "require": "keyed"})
        phase("eavesdropper on: none left", {"prefer": "degraded", "require": "refused"})
        kme.control("/eavesdropper", {"fraction": 0.0})
        left = time.monotonic()
        while kme.control("/link")["link_state"] != "up" and time.monotonic() - left < TIMEOUT:
            time.sleep(0.05)
        recovered = time.monotonic() - left
        time.sleep(0.1)  # the link refills the pool at its key rate
        phase(f"eavesdropper gone: up in {recovered:.1f} s", {"prefer": "keyed", "require": "keyed"})
        metrics = _metrics(ports["admin"], ("pqproxy_qkd_keys_total", "pqproxy_qkd_degraded_total",
                                            "pqproxy_qkd_link_qber", "pqproxy_qkd_link_key_rate"))
    finally:
        for sidecar in (*clients.values(), server):
            sidecar.stop()
        kme.stop()
    print("\nQKD-keyed pipe: two sidecars, a KME simulator (ETSI GS QKD 014 over mTLS) and a simulated BB84 link\n")
    _table(("phase", "link", "client --qkd prefer", "client --qkd require"), rows)
    print("\nThe prefer client's metrics:")
    for line in metrics:
        print(f"  {line}")
    print(f"\n  pqproxy {' '.join(kme.args)}")
    return ok


NETWORK = """[[site]]
name = "A"
listen = "127.0.0.1:{A}"
saes = ["alice"]
[[site]]
name = "B"
listen = "127.0.0.1:{B}"
saes = []
[[site]]
name = "C"
listen = "127.0.0.1:{C}"
saes = ["carol"]
[[link]]
a = "A"
b = "B"
length_km = 40
recovery_s = 1
[[link]]
a = "B"
b = "C"
length_km = 40
recovery_s = 1
[[link]]
a = "A"
b = "C"
length_km = 95
recovery_s = 1
"""


def network_demo(pki: Path, echo_port: int) -> bool:
    """A QKD network: alice at site A, carol at site C, keys relayed through the trusted node B; an eavesdropper
    on A-B and the reroute over the long direct fibre A-C. True when every phase did what it should."""
    work = pki / "network"
    work.mkdir()
    ports = {name: _free_port() for name in ("A", "B", "C", "control", "server", "client")}
    (work / "net.toml").write_text(NETWORK.format(**ports))
    args = ["kme", "--topology", str(work / "net.toml"), "--out", str(work / "pki"), "--control",
            f"127.0.0.1:{ports['control']}"]
    kme = subprocess.Popen([sys.executable, "-m", "pqproxy", *args], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    assert kme.stdout is not None
    if not kme.stdout.readline():
        raise RuntimeError(f"pqproxy kme --topology exited with {kme.wait(TIMEOUT)}")

    def qkd(sae: str, site: str) -> list[str]:
        return ["--qkd", "require", "--qkd-kme", f"https://127.0.0.1:{ports[site]}", "--qkd-sae-id", sae,
                "--qkd-cert", str(work / "pki" / f"{sae}.pem"), "--qkd-key", str(work / "pki" / f"{sae}.key"),
                "--qkd-ca", str(work / "pki" / "ca.pem")]

    def control(path: str, body: dict[str, Any] | None = None) -> Any:
        return _control(ports["control"], path, body)

    server = _Sidecar(["server", "--listen", f"127.0.0.1:{ports['server']}", "--upstream", f"127.0.0.1:{echo_port}",
                       "--cert", str(pki / "server.pem"), "--key", str(pki / "server.key"), "--workers", "1",
                       *qkd("carol", "C")])
    client = _Sidecar(["client", "--listen", f"127.0.0.1:{ports['client']}", "--connect",
                       f"127.0.0.1:{ports['server']}", "--sni", "localhost", "--ca", str(pki / "ca.pem"),
                       "--workers", "1", *qkd("alice", "A"), "--qkd-peer", "carol"])
    rows: list[tuple[str, str, str, str]] = []
    ok = True
    try:
        for sidecar in (server, client):
            sidecar.wait_for("event", "started")

        def phase(name: str, route: list[str]) -> None:
            nonlocal ok
            links = {ln["link"]: ln for ln in control("/links")}
            status = control("/status?master=alice&slave=carol")["status_extension"]
            intact, record = _through(client, ports["client"])
            ok &= intact and record.get("qkd") == "keyed" and status["route"] == route
            ab = links["A-B"]
            rows.append((name, f"{ab['link_state']}, QBER {ab['qber'] * 100:.1f}%", " -> ".join(status["route"]),
                         f"{', '.join(status['trusted_nodes']) or 'none'}; {_said(intact, record)}"))

        phase("all links up", ["A", "B", "C"])
        control("/eavesdropper", {"link": "A-B", "fraction": 0.5})
        phase("eavesdropper on A-B", ["A", "C"])
        control("/eavesdropper", {"link": "A-B", "fraction": 0.0})
        left = time.monotonic()
        while control("/links")[0]["link_state"] != "up" and time.monotonic() - left < TIMEOUT:
            time.sleep(0.05)
        phase(f"eavesdropper gone: A-B up in {time.monotonic() - left:.1f} s", ["A", "B", "C"])
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['control']}/metrics", timeout=TIMEOUT) as response:
            kpis = [line for line in response.read().decode().splitlines()
                    if line.startswith(("pqproxy_qkd_network_link_disturbances_total",
                                        "pqproxy_qkd_network_trusted_node_keys_total",
                                        "pqproxy_qkd_network_pair_keys_total"))]
    finally:
        for sidecar in (client, server):
            sidecar.stop()
        stop_process(kme, TIMEOUT)
        kme.stdout.close()
    print("\nA QKD network: alice at site A, carol at site C; keys relayed through the trusted node B (A-B 40 km, "
          "B-C 40 km),\nor over the direct 95 km fibre A-C when A-B is down (pqproxy kme --topology)\n")
    _table(("phase", "link A-B", "route of alice-carol's keys", "trusted nodes; the connection"), rows)
    print("\nThe network's KPIs (GET /metrics on its control endpoint; deploy/monitoring has rules and a dashboard):")
    for line in kpis:
        print(f"  {line}")
    print(f"\n  pqproxy {' '.join(args)}")
    return ok


def main() -> int:
    echo = _Echo()
    ports = {name: _free_port() for name in ("server", "client", "admin")}
    with tempfile.TemporaryDirectory(prefix="pqproxy-demo-") as tmp:
        pki = Path(tmp)
        write_dev_pki(pki, alg="ecdsa", names=("localhost", "127.0.0.1"))
        server = _Sidecar(["server", "--listen", f"127.0.0.1:{ports['server']}", "--upstream",
                           f"127.0.0.1:{echo.port}", "--cert", str(pki / "server.pem"), "--key",
                           str(pki / "server.key"), "--admin", f"127.0.0.1:{ports['admin']}", "--workers", "2"])
        client = _Sidecar(["client", "--listen", f"127.0.0.1:{ports['client']}", "--connect",
                           f"127.0.0.1:{ports['server']}", "--sni", "localhost", "--ca", str(pki / "ca.pem"),
                           "--workers", "1"])
        try:
            server.wait_for("event", "started")
            client.wait_for("event", "started")
            reply = _exchange(ports["client"])
            logged = server.wait_for("result", "ok")  # the connection's JSON log line
            client.wait_for("result", "ok")
            metrics = _metrics(ports["admin"], ("pqproxy_handshakes_total", "pqproxy_quantum_safe_sessions_total",
                                                "pqproxy_bytes_proxied_total", "pqproxy_client_hello_size_bytes_sum"))
        finally:
            codes = (server.stop(), client.stop())
        report(reply, logged, codes, metrics, ports, server, client)
        try:
            keyed = qkd_demo(pki, echo.port)
            relayed = network_demo(pki, echo.port)
        finally:
            echo.stop.set()
    ok = reply == REQUEST and logged.get("group") == "X25519MLKEM768" and codes == (0, 0)
    if not keyed:
        print("\nthe QKD demo did not go as expected (see the table)")
    if not relayed:
        print("\nthe QKD network demo did not go as expected (see the table)")
    return 0 if ok and keyed and relayed else 1


def report(reply: bytes, logged: dict[str, Any], codes: tuple[int, int], metrics: list[str], ports: dict[str, int],
           server: _Sidecar, client: _Sidecar) -> None:
    print("pqproxy demo: plain client -> pqproxy client -> [TLS 1.3, post-quantum] -> pqproxy server -> echo\n")
    rows = [
        ("request echoed intact", "yes" if reply == REQUEST else "NO"),
        ("key exchange group", logged.get("group")),
        ("cipher suite", logged.get("cipher")),
        ("quantum-safe", "yes" if logged.get("quantum_safe") else "no"),
        ("ClientHello size", f"{logged.get('client_hello_size')} bytes (a classical one is ~250-600)"),
        ("HelloRetryRequest", "yes" if logged.get("hello_retry") else "no"),
        ("handshake time", f"{logged.get('handshake_ms')} ms (server side)"),
        ("bytes through the pipe", f"{logged.get('bytes_up')} up, {logged.get('bytes_down')} down"),
        ("sidecars stopped cleanly (SIGTERM drain)", "yes" if codes == (0, 0) else f"NO {codes}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    print(f"\nThe server's metrics were at http://127.0.0.1:{ports['admin']}/metrics (also /healthz, /readyz):")
    for line in metrics:
        print(f"  {line}")
    print("\nThe commands (after `pqproxy certs --out pki`):")
    print(f"  pqproxy {' '.join(a if '/' not in a else 'pki/' + Path(a).name for a in server.args)}")
    print(f"  pqproxy {' '.join(a if '/' not in a else 'pki/' + Path(a).name for a in client.args)}")
    print("Each connection is logged as one JSON line on stderr (group, cipher, SNI, sizes, result).")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
