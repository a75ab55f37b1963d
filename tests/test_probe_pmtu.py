"""``pqproxy probe`` finds a PMTU black hole and the hop where it is, through real routers in namespaces.

client -- router1 -- router2 -- server (tests/netns.py, 198.18.0.0/15). The router1--router2 link has an
MTU of 1000 and router1 sends no ICMP "fragmentation needed": a tunnel in the middle of the path, so
neither end learns the MTU (both advertise MSS 1460) and the client's full-size segments die silently at
router1 (router2 still reports the server's oversized segments: a one-way black hole).
A ``pqproxy server`` runs in the server namespace; the probe runs in the client namespace, as root, with
its raw-packet hop search. The truth: ``pmtu-blackhole`` at router1 (198.18.1.2), and no
``size-threshold`` (the same bytes in small writes get through).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pqproxy.certs import write_dev_pki
from pqproxy.lab.netns import Chain, Lab, chain, netns_unavailable
from tests.procs import require

PORT = 4433
SUITE = """
name = "pmtu"
checks = ["pmtu-blackhole", "size-threshold", "split-segments"]
attempts = 1
timeout = 2.0
connect_timeout = 3.0
pause = 0.1
[sweep]
sizes = [512, 900, 2048]
refine = false
"""




@pytest.fixture
def tunnel(tmp_path: Path) -> Iterator[tuple[Lab, Chain]]:
    require(netns_unavailable() or (None if os.path.exists("/usr/sbin/nft") else "nftables (nft) missing"))
    pki = write_dev_pki(tmp_path / "pki", alg="ecdsa", names=("pqproxy.test",))
    lab = Lab("pmtu")
    try:
        path = chain(lab)
        lab.run(path.router1, ["ip", "link", "set", "r1b", "mtu", "1000"])
        lab.run(path.router2, ["ip", "link", "set", "r2a", "mtu", "1000"])
        lab.nft(path.router1, "add table inet lab\n"
                              "add chain inet lab output { type filter hook output priority 0 ; }\n"
                              "add rule inet lab output icmp type destination-unreachable drop\n")
        lab.popen(path.server, [sys.executable, "-m", "pqproxy", "server", "--listen", f"{path.server_addr}:{PORT}",
                                "--upstream", f"{path.server_addr}:9", "--cert", str(pki["server"]),
                                "--key", str(pki["server_key"])])
        deadline = time.monotonic() + 20
        while True:  # listening yet? (a small connect from the client namespace, through both routers)
            probe = lab.run(path.client, [sys.executable, "-c", "import socket,sys; socket.create_connection("
                                          f"(sys.argv[1], {PORT}), timeout=1).close()", path.server_addr],
                            check=False)
            if probe.returncode == 0:
                break
            assert time.monotonic() < deadline, probe.stderr
            time.sleep(0.2)
        yield lab, path
    finally:
        lab.close()
        assert lab.existing() == []


def test_probe_finds_the_pmtu_black_hole_and_its_hop(tunnel: tuple[Lab, Chain], tmp_path: Path) -> None:
    lab, path = tunnel
    suite = tmp_path / "pmtu.toml"
    suite.write_text(SUITE)
    out = tmp_path / "r.json"
    done = lab.run(path.client, [sys.executable, "-m", "pqproxy", "probe", f"{path.server_addr}:{PORT}",
                                 "--sni", "pqproxy.test", "--suite", str(suite), "--json", str(out), "--quiet"],
                   timeout=120, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stdout + done.stderr
    (target,) = json.loads(out.read_text())["targets"]
    results = {r["spec"]["id"]: r for r in target["results"]}
    assert results["classical/one-write"]["verdict"] == "pass"
    assert results["pq/one-write"]["verdict"] == "fail"
    assert results["pq/one-write"]["outcome"]["kind"] == "timeout"
    assert results["pq/small-writes"]["verdict"] == "pass"
    assert results["pq/small-writes"]["outcome"]["group"] == "X25519MLKEM768"
    found = {d["id"]: d for d in target["diagnoses"]}
    assert set(found) == {"pmtu-blackhole"}, [d["summary"] for d in target["diagnoses"]]
    diagnosis = found["pmtu-blackhole"]
    assert diagnosis["hop"] == path.router1_client_side, diagnosis["details"]
    assert {"pq/one-write", "pq/small-writes"} <= set(diagnosis["evidence"])
    # Once a handshake with a large server flight got through (pq/small-writes), router2's "fragmentation
    # needed" (it still sends them) taught the *server* the path MTU, and it advertises MSS 960 from then on:
    # later large hellos pass. That is the truth of a one-way black hole, and why the controls run first.
    assert results["pq/split@600"]["verdict"] != "fail"
