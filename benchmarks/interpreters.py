"""pqproxy server under two CPython builds, side by side: server CPU per hybrid connection.

    python -m benchmarks.interpreters OTHER_PYTHON [ROUNDS] [CONNECTIONS_PER_ROUND]

Both sidecars run at once, each under its interpreter (this one, and ``OTHER_PYTHON``, which must have
pqproxy installed: a venv's ``bin/python``), in front of the same echo upstream, and take the same Node load
in alternating rounds, as ``sidecars.py`` pits pqproxy against Node. Printed: each round's server CPU per
connection, and the median of the rounds' ratios (other / this). Not part of ``make bench``, which has one
interpreter: this is how "The interpreter" in ``benchmarks/README.md`` was measured.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import sidecars
from pqproxy.certs import write_dev_pki


def compare(other: str, rounds: int = 8, per_round: int = 600, warm_up: int = sidecars.WARM_UP) -> dict[str, Any]:
    pythons = {"this": sys.executable, "other": other}
    settings = sidecars.Settings(handshakes=rounds * per_round, rounds=rounds)
    with tempfile.TemporaryDirectory(prefix="pqproxy-bench-interp-") as tmp:
        pki = write_dev_pki(Path(tmp), alg="ecdsa", names=("localhost", "127.0.0.1"))
        upstream_port = sidecars._free_port()
        upstream = sidecars._echo_upstream(upstream_port)
        servers: dict[str, tuple[sidecars._Process, dict[str, Any]]] = {}
        running: dict[str, str] = {}  # the executable each server's process runs: what was measured
        try:
            for name, python in pythons.items():
                port = sidecars._free_port()
                base = {"port": port, "ca": str(pki["ca"]), "servername": "localhost"}
                servers[name] = (sidecars._server("pqproxy", port, upstream_port, pki, python=python), base)
                running[name] = os.readlink(f"/proc/{servers[name][0].proc.pid}/exe")
                sidecars._load({**base, "mode": "handshakes", "n": warm_up, "concurrency": settings.concurrency,
                                "groups": "X25519MLKEM768"})
            per_connection: dict[str, list[float]] = {name: [] for name in pythons}
            for r in range(rounds):
                for name in sidecars.in_turn(tuple(pythons), r):
                    done = sidecars._handshake_round(*servers[name], "X25519MLKEM768", settings)
                    per_connection[name].append(done["cpu_s"] / done["n"] * 1e6)
        finally:
            for server, _ in servers.values():
                server.stop()
            upstream.stop()
    ratios = [b / a for a, b in zip(per_connection["this"], per_connection["other"], strict=True) if a > 0]
    return {"this": sys.executable, "other": other, "executables": running,
            "versions": {name: _version(p) for name, p in pythons.items()},
            "rounds_us": {name: [round(v, 1) for v in values] for name, values in per_connection.items()},
            "ratios": [round(r, 3) for r in ratios], "median_ratio": round(statistics.median(ratios), 3)}


def _version(python: str) -> str:
    return subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                          text=True, check=True).stdout.strip()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(json.dumps(compare(sys.argv[1], *(int(a) for a in sys.argv[2:4])), indent=2))
