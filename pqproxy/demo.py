"""`make demo`: a quantum-safe pipe on loopback, end to end, on embedded defaults.

    plain client -> pqproxy client (TLS 1.3 origin) -> pqproxy server (TLS 1.3 termination) -> echo backend

The two sidecars run as real ``pqproxy`` processes, exactly as printed, with a throwaway development PKI.
The report says what was negotiated, at what sizes, and what the server's /metrics endpoint counted.
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
from pathlib import Path
from typing import Any

from .certs import write_dev_pki

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
            echo.stop.set()
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
    ok = reply == REQUEST and logged.get("group") == "X25519MLKEM768" and codes == (0, 0)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
