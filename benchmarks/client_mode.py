"""pqproxy client with and without session resumption, side by side: CPU per connection of the client sidecar
and of the pqproxy server it talks to.

    python -m benchmarks.client_mode [ROUNDS] [CONNECTIONS_PER_ROUND]

An application (``node_plain_load.js``: plain TCP, one byte echoed, close; 8 at once) connects to a
``pqproxy client``, which originates TLS 1.3 to a ``pqproxy server`` in front of a Node echo upstream. Two
clients run at once, ``--resume-sessions on`` and ``off``, and take the load in alternating rounds; each
round's CPU of the client's process group and of the server's over its connections. A resumed handshake is
still X25519MLKEM768 (psk_dhe_ke) but has no certificate chain to verify. Printed: one line of JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from benchmarks import sidecars
from pqproxy.certs import write_dev_pki

MODES = ("on", "off")
CONCURRENCY = 8


def _plain_load(port: int, n: int) -> None:
    done = subprocess.run([str(sidecars.NODE), str(sidecars.HERE / "node_plain_load.js"), str(port), str(n),
                           str(CONCURRENCY)], capture_output=True, text=True, timeout=300,
                          preexec_fn=sidecars._child_setup())
    result = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else None
    if done.returncode != 0 or result is None or result["errors"]:
        raise RuntimeError(f"plain load failed: {done.stdout[-300:]} {done.stderr[-300:]}")


def _resumed_sessions(admin_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as response:
        body = response.read().decode()
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "pqproxy_resumed_sessions_total":
                return int(sample.value)
    return 0


def run(rounds: int = 4, per_round: int = 300, warm_up: int = 200) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pqproxy-bench-client-") as tmp:
        pki = write_dev_pki(Path(tmp), alg="ecdsa", names=("localhost", "127.0.0.1"))
        upstream_port, server_port = sidecars._free_port(), sidecars._free_port()
        upstream = sidecars._echo_upstream(upstream_port)
        processes = [upstream]
        try:
            server = sidecars._server("pqproxy", server_port, upstream_port, pki)
            processes.append(server)
            clients: dict[str, tuple[sidecars._Process, int, int]] = {}
            for mode in MODES:
                port, admin = sidecars._free_port(), sidecars._free_port()
                client = sidecars._Process(
                    [sys.executable, "-m", "pqproxy", "client", "--listen", f"127.0.0.1:{port}", "--connect",
                     f"127.0.0.1:{server_port}", "--sni", "localhost", "--ca", str(pki["ca"]), "--workers", "1",
                     "--admin", f"127.0.0.1:{admin}", "--resume-sessions", mode], '"listening"', on_stderr=True)
                processes.append(client)
                clients[mode] = (client, port, admin)
                _plain_load(port, warm_up)
            cpu: dict[str, dict[str, list[float]]] = {mode: {"client": [], "server": []} for mode in MODES}
            for r in range(rounds):
                for mode in sidecars.in_turn(MODES, r):
                    client, port, _ = clients[mode]
                    client0, _ = client.stats()
                    server0, _ = server.stats()
                    _plain_load(port, per_round)
                    client1, _ = client.stats()
                    server1, _ = server.stats()
                    cpu[mode]["client"].append((client1 - client0) / per_round * 1e6)
                    cpu[mode]["server"].append((server1 - server0) / per_round * 1e6)
            resumed = {mode: _resumed_sessions(admin) for mode, (_, _, admin) in clients.items()}
        finally:
            for process in reversed(processes):
                process.stop()
    out: dict[str, Any] = {"connections_per_client": warm_up + rounds * per_round, "resumed": resumed}
    for side in ("client", "server"):
        ratios = [a / b for a, b in zip(cpu["on"][side], cpu["off"][side], strict=True) if b > 0]
        out[side] = {
            "resumed_us": round(sidecars._median(cpu["on"][side]), 1),
            "full_us": round(sidecars._median(cpu["off"][side]), 1),
            "rounds_us": {mode: [round(v, 1) for v in cpu[mode][side]] for mode in MODES},
            "ratios": [round(x, 3) for x in ratios],
            "median_ratio": round(sidecars._median(ratios), 3) if ratios else None,
        }
    return out


if __name__ == "__main__":
    print(json.dumps(run(*(int(a) for a in sys.argv[1:3]))))
