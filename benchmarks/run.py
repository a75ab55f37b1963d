"""`make bench` (also `pqproxy bench`): the benchmark harness, in one run on this machine.

1. The engine in process (``engine.py``): server CPU per handshake with no I/O, the crypto floor of a hybrid
   server handshake (the primitives alone, in ``cryptography``), record throughput.
2. pqproxy server against the Node.js 26 sidecar (``sidecars.py``), side by side: server CPU per handshake
   (hybrid and classical) in alternating rounds, each round beside a fresh measure of the crypto floor,
   latency p50/p99 at fixed concurrency, bulk throughput and CPU per GiB, RSS per idle connection,
   connections held. The ratios are medians of the rounds' ratios.
3. Client mode (``client_mode.py``): a ``pqproxy client`` with and without session resumption in front of a
   ``pqproxy server``, CPU per connection of both, in alternating rounds.
4. Inside the sidecar (``inside.py``): a hybrid connection's CPU split into the engine's and the I/O edge's;
   and the edge's pieces each alone (``edge_parts.py``: a task, a nursery, a cancel scope, a trio wake-up, the
   log line, the metrics of a connection); and the bytecodes a server handshake executes (``bytecodes.py``).
5. The ``default`` probe suite against one healthy target (``pqproxy server`` on loopback), timed.
6. The soak (``soak.py``): client and server sidecars under constant load while faults are injected; every
   application connection must end whole or in an error it sees (clean short reads, corrupt and hung: 0).

Writes ``benchmarks/results/bench.json`` and prints the table that ``benchmarks/README.md`` shows, with the
ratios the targets of issue 8 are stated in. Timings live here, never as asserts in tests.
``BENCH_QUICK=1`` runs everything smaller (a smoke run, not for the table).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import engine, sidecars


def probe_suite_seconds() -> float:
    """The ``default`` suite against pqproxy server on loopback (the probe as a user runs it)."""
    from pqproxy.certs import write_dev_pki

    with tempfile.TemporaryDirectory(prefix="pqproxy-bench-probe-") as tmp:
        pki = write_dev_pki(Path(tmp), alg="ecdsa", names=("localhost", "127.0.0.1"))
        with sidecars.pqproxy_on_loopback(pki) as port:
            started = time.monotonic()
            subprocess.run([sys.executable, "-m", "pqproxy", "probe", f"127.0.0.1:{port}", "--sni", "localhost",
                            "--suite", "default", "--no-raw", "-q"], capture_output=True, timeout=300, check=False)
            return round(time.monotonic() - started, 1)


def soak_run(quick: bool) -> dict[str, Any]:
    """``soak.py`` in a process of its own (it needs root for ``ss -K``: without, the reason is recorded)."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.soak", *(["--quick"] if quick else [])],
                          capture_output=True, text=True, timeout=900, check=False)
    lines = done.stdout.strip().splitlines()
    if not lines or not lines[-1].startswith("{"):
        return {"error": (done.stderr or done.stdout).strip()[-500:]}
    result: dict[str, Any] = json.loads(lines[-1])
    print("\n".join(lines[:-1]))  # the soak's table
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _x(a: float | None, b: float | None) -> str:
    ratio = _ratio(a, b)
    return f"{ratio} x" if ratio is not None else ""


def _module(name: str, *args: str) -> dict[str, Any]:
    """A benchmark module in a process of its own (``inside`` wraps engine methods, ``edge_parts`` sets up
    logging and metrics: neither may leak into the other measurements); its one line of JSON."""
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *args], capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.{name} failed: {done.stderr[-800:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def inside_sidecar(n: int) -> dict[str, Any]:
    return _module("inside", str(n))


def edge_parts(n: int) -> dict[str, Any]:
    return _module("edge_parts", str(n))


def bytecodes() -> dict[str, Any]:
    return _module("bytecodes", "20", "10")


def edge_bytecodes() -> dict[str, Any]:
    return _module("edge_bytecodes", "20")


def client_mode(rounds: int, per_round: int) -> dict[str, Any]:
    return _module("client_mode", str(rounds), str(per_round))


def _range(ratios: list[float]) -> str:
    return f" (rounds {min(ratios):.2f}-{max(ratios):.2f})" if ratios else ""


def _median_ratio(ratios: list[float]) -> float | None:
    return round(sidecars._median(ratios), 2) if ratios else None


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    p = result["pqproxy"]
    paired = result["paired_ratios"]
    return {
        # The median of the rounds' ratios (sidecars.py): what the drift of this VM leaves alone.
        "hybrid_cpu_vs_node": _median_ratio(paired["X25519MLKEM768"]),
        # Each round's server CPU over the floor measured just before that round: the median of those.
        "hybrid_cpu_vs_floor": _median_ratio(result["floor_ratios"]["pqproxy"]),
        "node_hybrid_cpu_vs_floor": _median_ratio(result["floor_ratios"]["node"]),
        "classical_cpu_vs_node": _median_ratio(paired["X25519"]),
        "cpu_per_gib_vs_node": _median_ratio(result["paired_bulk_ratios"]),
        "idle_rss_kib_per_connection": p["idle"]["rss_kib_per_connection"],
        "idle_connections_held": p["idle"]["held"],
        "idle_first_data_rss_kib_per_connection": p["idle_first_data"]["rss_kib_per_connection"],
        "idle_first_data_connections_held": p["idle_first_data"]["held"],
        "engine_share_inside_sidecar": _ratio(result["inside"]["engine_us"], result["inside"]["total_us"]),
        "probe_default_suite_s": result["probe_default_suite_s"],
        "client_resumed_cpu_vs_full": result["client_mode"]["client"]["median_ratio"],
    }


def table(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    p, n, e, s = result["pqproxy"], result["node"], result["engine"], result["summary"]
    rows = []
    for group, key in (("X25519MLKEM768", "hybrid_cpu_vs_node"), ("X25519", "classical_cpu_vs_node")):
        ours, theirs, ratios = p[group]["server_cpu_us"], n[group]["server_cpu_us"], result["paired_ratios"][group]
        rows.append((f"server CPU / {group} handshake", f"{ours} us", f"{theirs} us",
                     f"{s[key]} x" + _range(ratios)))
    for group in ("X25519MLKEM768", "X25519"):
        ours = f"{p[group]['p50_ms']} / {p[group]['p99_ms']} ms"
        theirs = f"{n[group]['p50_ms']} / {n[group]['p99_ms']} ms"
        rows.append((f"latency p50 / p99, {group}, {result['settings']['concurrency']} at once", ours, theirs, ""))
    bulk_p, bulk_n = p["bulk"], n["bulk"]
    rows.append(("bulk throughput (both directions)", f"{bulk_p['mib_s']} MiB/s", f"{bulk_n['mib_s']} MiB/s",
                 f"{_ratio(bulk_p['mib_s'], bulk_n['mib_s'])} x"))
    rows.append(("server CPU per GiB proxied", f"{bulk_p['server_cpu_s_per_gib']} s",
                 f"{bulk_n['server_cpu_s_per_gib']} s",
                 f"{s['cpu_per_gib_vs_node']} x" + _range(result["paired_bulk_ratios"])))
    for key, label in (("idle", "upstream connected at handshake"), ("idle_first_data", "upstream on first data")):
        rows.append((f"RSS per idle established connection, {label}", f"{p[key]['rss_kib_per_connection']} KiB",
                     f"{n[key]['rss_kib_per_connection']} KiB", _x(p[key]["rss_kib_per_connection"],
                                                                   n[key]["rss_kib_per_connection"])))
        rows.append((f"idle connections held by one process, {label}", f"{p[key]['held']} of {p[key]['asked']}",
                     f"{n[key]['held']} of {n[key]['asked']}", ""))
    inside = result["inside"]
    rows.append(("inside the sidecar, per hybrid connection: engine (primitives + Python) / I/O edge",
                 f"{inside['engine_us']} ({inside['engine_primitives_us']} + {inside['engine_python_us']}) / "
                 f"{inside['edge_us']} us", "", ""))
    parts = result["edge_parts"]
    rows.append(("I/O edge pieces alone: task / nursery / scope / wake-up / log line / metrics",
                 " / ".join(f"{parts[k]:.1f}" for k in ("task_spawn_us", "nursery_with_task_us", "cancel_scope_us",
                                                        "wakeup_us", "log_line_us", "metrics_us")) + " us", "", ""))
    engine_us = e["server_cpu_per_handshake_us"]["X25519MLKEM768"]
    rows.append(("engine alone: server CPU / hybrid handshake", f"{engine_us} us", "", ""))
    rows.append(("engine alone: bytecodes / server hybrid handshake (a count: no noise)",
                 f"{result['bytecodes']['bytecodes_per_handshake']:,}", "", ""))
    eb = result["edge_bytecodes"]
    rows.append(("edge + engine: bytecodes / server hybrid handshake, plain / legacy_tls12 / QKD listener",
                 f"{eb['plain']:,} / {eb['legacy_tls12']:,} / {eb['qkd']:,}", "", ""))
    floor = sidecars._median(result["floor_rounds_us"])
    rows.append(("crypto floor of a hybrid server handshake, beside the rounds", f"{floor:.1f} us", "",
                 f"pqproxy {s['hybrid_cpu_vs_floor']} x, Node {s['node_hybrid_cpu_vs_floor']} x floor"))
    cm = result["client_mode"]
    for side, label in (("client", "client sidecar CPU / connection"), ("server", "server CPU / connection from it")):
        rows.append((f"{label}, resumed / full handshake (pqproxy client -> server)",
                     f"{cm[side]['resumed_us']} / {cm[side]['full_us']} us", "",
                     f"{cm[side]['median_ratio']} x" + _range(cm[side]["ratios"])))
    records = f"{e['records_seal_mib_s']} / {e['records_open_mib_s']} MiB/s"
    rows.append(("engine records sealed / opened", records, "", ""))
    rows.append(("`default` probe suite, one healthy target", f"{result['probe_default_suite_s']} s", "", ""))
    soak = result.get("soak") or {}
    if "totals" in soak:
        t = soak["totals"]
        rows.append(("soak: connections / errors seen / short / corrupt / hung",
                     f"{soak['connections']} / {t['error']} / {t['short']} / {t['corrupt']} / {t['hung']}", "", ""))
    return rows


def main() -> int:
    quick = os.environ.get("BENCH_QUICK") == "1"
    settings = (sidecars.Settings(handshakes=300, rounds=2, concurrency=8, bulk_mib=32, idle=500, idle_first_data=500)
                if quick
                else sidecars.Settings())
    result: dict[str, Any] = {"engine": engine.run(rounds=100 if quick else int(os.environ.get("BENCH_ROUNDS", "300")))}
    result.update(sidecars.run(settings, floor=lambda: engine.crypto_floor_us(100 if quick else 200)))
    result["inside"] = inside_sidecar(settings.handshakes)
    result["edge_parts"] = edge_parts(2000 if quick else 20000)
    result["bytecodes"] = bytecodes()
    result["edge_bytecodes"] = edge_bytecodes()
    result["client_mode"] = client_mode(2, 100) if quick else client_mode(4, 300)
    result["probe_default_suite_s"] = probe_suite_seconds()
    result["soak"] = soak_run(quick)
    result["summary"] = summarize(result)
    node_version = subprocess.run([str(sidecars.NODE), "-p", "process.versions.node + ' / OpenSSL ' + "
                                   "process.versions.openssl"], capture_output=True, text=True).stdout.strip()
    result["machine"] = {"python": platform.python_version(), "python_executable": os.path.realpath(sys.executable),
                         "cpus": os.cpu_count(), "platform": platform.platform(),
                         "node": node_version, "command": "make bench", "quick": quick,
                         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = table(result)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"{'measure':<{widths[0]}}  {'pqproxy':<{widths[1]}}  {'node 26':<{widths[2]}}  ratio")
    for row in rows:
        print("  ".join(f"{cell:<{widths[i]}}" for i, cell in enumerate(row)).rstrip())
    for kind in ("pqproxy", "node"):
        for stall in result[kind]["bulk"]["stalled_and_retried"]:
            print(f"\nnote: a {kind} bulk transfer stalled and was run again: {stall}")
    machine = result["machine"]
    print(f"\npython {machine['python']} ({machine['python_executable']}); node {machine['node']}")
    print(f"summary: {json.dumps(result['summary'])}")
    print(f"written: {out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
