"""`make bench`: the benchmark harness. Prints a table and writes benchmarks/results/engine.json."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

from benchmarks import engine


def main() -> int:
    rounds = int(os.environ.get("BENCH_ROUNDS", "300"))
    result = engine.run(rounds=rounds)
    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "engine.json").write_text(json.dumps(result, indent=2) + "\n")
    hs = result["server_cpu_per_handshake_us"]
    rows = [
        ("server CPU / X25519MLKEM768 handshake", f"{hs['X25519MLKEM768']} us"),
        ("server CPU / X25519 handshake", f"{hs['X25519']} us"),
        ("crypto floor (hybrid server handshake)", f"{result['crypto_floor_hybrid_server_us']} us"),
        ("hybrid handshake / crypto floor", f"{result['hybrid_handshake_over_floor']} x"),
        ("records sealed (AES-128-GCM, 1 MiB writes)", f"{result['records_seal_mib_s']} MiB/s"),
        ("records opened", f"{result['records_open_mib_s']} MiB/s"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(f"\nwritten: {out / 'engine.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
