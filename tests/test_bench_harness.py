"""The benchmark harness still runs (``make bench`` is not part of CI: these are its parts, small).

No timing is asserted: only that each part measures what it says (every connection done, the groups the
client negotiated, the CPU split adding up, idle connections really held).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import sidecars
from pqproxy.certs import write_dev_pki
from tests.peers.node import node_binary

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.interop  # Node 26 is the load generator, the upstream and one of the sidecars


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    node_binary()  # skips, or fails in CI, without Node 26
    return write_dev_pki(tmp_path_factory.mktemp("bench-pki"), alg="ecdsa", names=("localhost", "127.0.0.1"))


def test_inside_splits_a_connection_into_engine_and_edge() -> None:
    node_binary()
    done = subprocess.run([sys.executable, "-m", "benchmarks.inside", "60"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["n"] == 60
    assert result["engine_us"] > 0 and result["edge_us"] > 0
    assert abs(result["engine_us"] + result["edge_us"] - result["total_us"]) < 1
    assert result["engine_calls_per_connection"] >= 5  # TLSServer(), the hello, the flight, Finished, ...
    # ML-KEM, X25519 twice, ECDSA, the key schedule's HMACs, the AES-GCM keys and records: timed where called.
    assert result["primitive_calls_per_connection"] >= 30  # 21 of them HMAC: none may go untimed
    assert result["engine_primitives_us"] > 0 and result["engine_python_us"] > 0
    assert abs(result["engine_primitives_us"] + result["engine_python_us"] - result["engine_us"]) < 1


def test_edge_parts_are_each_measured() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.edge_parts", "300"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    parts = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(parts) == {"task_spawn_us", "nursery_with_task_us", "cancel_scope_us", "checkpoint_us", "wakeup_us",
                          "bare_epoll_wakeup_us", "log_line_us", "metrics_us"}
    assert all(parts[k] > 0 for k in parts if k not in ("wakeup_us", "bare_epoll_wakeup_us")), parts
    assert parts["nursery_with_task_us"] > parts["task_spawn_us"]  # a nursery is a task and more


def test_the_bytecode_count_is_the_same_twice() -> None:
    """A count, not a timing: the same engine executes the same bytecodes for the same handshake."""
    from benchmarks import bytecodes

    first, second = bytecodes.count(3, 5), bytecodes.count(3, 5)
    assert first["bytecodes_per_handshake"] > 1000, first
    assert first["bytecodes_per_handshake"] == second["bytecodes_per_handshake"]
    assert len(first["top"]) == 5 and all(f["per_handshake"] > 0 for f in first["top"])


def test_the_edge_bytecodes_cover_three_listeners_and_see_the_edge_read_the_hello() -> None:
    """The edge harness runs in a process of its own (it traces a trio run): three listeners counted, each a real
    handshake; legacy_tls12 and QKD listeners make the edge look at the ClientHello (more bytecodes than plain),
    and the functions that execute most are pqproxy's own."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.edge_bytecodes", "3", "8"], capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["plain"] > 1000 and counts["legacy_tls12"] > counts["plain"] and counts["qkd"] > counts["plain"]
    for kind in ("plain", "legacy_tls12", "qkd"):
        names = [f["function"] for f in counts[f"{kind}_top"]]
        assert len(names) == 8 and not any("trio" in n for n in names), names


@pytest.mark.parametrize("kind", ["pqproxy", "node"])
@pytest.mark.parametrize("connect", ["handshake", "first-data"])
def test_both_sidecars_hold_idle_connections_and_still_echo(pki: dict[str, Path], kind: str, connect: str) -> None:
    upstream_port, port = sidecars._free_port(), sidecars._free_port()
    upstream = sidecars._echo_upstream(upstream_port)
    try:
        server = sidecars._server(kind, port, upstream_port, pki, connect=connect)
        try:
            base = {"port": port, "ca": str(pki["ca"]), "servername": "localhost"}
            idle = sidecars._idle(server, base, 40)
            assert (idle["held"], idle["closed_by_server"], idle["errors"]) == (40, 0, 0), idle
            result = sidecars._load({**base, "mode": "handshakes", "n": 10, "concurrency": 2,
                                     "groups": "X25519MLKEM768"})
            assert result["errors"] == 0 and result["groups"] == {"X25519MLKEM768": 10}, result
        finally:
            server.stop()
    finally:
        upstream.stop()


def test_paired_rounds_measure_both_servers_and_pair_their_ratios(pki: dict[str, Path]) -> None:
    settings = sidecars.Settings(handshakes=90, rounds=3, concurrency=2, bulk_mib=24)
    result = sidecars.paired_rounds(pki, settings, floor=lambda: 100.0)
    for kind in ("pqproxy", "node"):
        for group in ("X25519MLKEM768", "X25519"):
            measured = result[kind][group]
            assert measured["n"] == 90 and len(measured["rounds_us"]) == 3, measured
            assert measured["server_cpu_us"] > 0 and measured["p50_ms"] > 0
    for group in ("X25519MLKEM768", "X25519"):
        ours, theirs = result["pqproxy"][group]["rounds_us"], result["node"][group]["rounds_us"]
        assert result["paired_ratios"][group] == [round(a / b, 3) for a, b in zip(ours, theirs, strict=True) if b]
    for kind in ("pqproxy", "node"):
        bulk = result[kind]["bulk"]
        assert bulk["mib_s"] > 0 and len(bulk["rounds_s_per_gib"]) == 3, bulk  # 8 MiB each way a round
    assert len(result["paired_bulk_ratios"]) <= 3
    assert result["floor_rounds_us"] == [100.0] * 3
    for kind in ("pqproxy", "node"):
        hybrid = result[kind]["X25519MLKEM768"]["rounds_us"]
        assert result["floor_ratios"][kind] == [round(us / 100.0, 3) for us in hybrid if us]
    assert sidecars._median([3.0, 1.0, 2.0]) == 2.0 and sidecars._median([4.0, 1.0, 2.0, 3.0]) == 2.5


def test_two_interpreters_are_measured_in_alternating_rounds(pki: dict[str, Path]) -> None:
    from benchmarks import interpreters

    result = interpreters.compare(sys.executable, rounds=2, per_round=60, warm_up=10)
    interpreter = str(Path(sys.executable).resolve())
    assert result["executables"] == {"this": interpreter, "other": interpreter}, result
    assert result["versions"]["this"] == result["versions"]["other"] == sys.version.split()[0]
    this, other = result["rounds_us"]["this"], result["rounds_us"]["other"]
    assert len(this) == len(other) == 2 and all(us > 0 for us in this + other), result
    assert result["ratios"] == [round(b / a, 3) for a, b in zip(this, other, strict=True)]


def test_client_mode_measures_a_resuming_and_a_full_handshake_client(pki: dict[str, Path]) -> None:
    from benchmarks import client_mode

    result = client_mode.run(rounds=2, per_round=60, warm_up=10)
    total = result["connections_per_client"]
    assert total == 130
    # Only the first connections of the resuming client, the ones open at once before any ticket came, are full.
    assert total - 2 * client_mode.CONCURRENCY <= result["resumed"]["on"] < total and result["resumed"]["off"] == 0
    for side in ("client", "server"):
        measured = result[side]
        assert all(len(measured["rounds_us"][mode]) == 2 for mode in ("on", "off")), measured
        expected = [a / b for a, b in zip(measured["rounds_us"]["on"], measured["rounds_us"]["off"], strict=True) if b]
        assert measured["ratios"] == pytest.approx(expected, abs=0.002)


@pytest.mark.parametrize(("answer", "expected"), [
    ("echo", "ok"),
    ("half then fin", "short"),  # the clean short read the soak exists to catch
    ("half then reset", "error"),
    ("other bytes", "corrupt"),
])
def test_the_soak_classifies_how_a_connection_ended(answer: str, expected: str) -> None:
    """``soak.exchange`` against a loopback peer that ends each way: the soak's verdicts are only as good as this."""
    import socket
    import struct
    import threading

    from benchmarks.soak import exchange

    payload = bytes(range(256)) * 64
    listener = socket.create_server(("127.0.0.1", 0))

    def peer() -> None:
        conn, _ = listener.accept()
        with conn:
            data = bytearray()
            while chunk := conn.recv(65536):
                data += chunk
            if answer == "echo":
                conn.sendall(data)
            elif answer == "other bytes":
                conn.sendall(bytes(len(data)))
            else:
                conn.sendall(data[: len(data) // 2])
                if answer == "half then reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    try:
        outcome, _received, _error = exchange(listener.getsockname()[1], payload, deadline=10)
    finally:
        thread.join(10)
        listener.close()
    assert outcome == expected
