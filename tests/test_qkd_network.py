"""Issue 20, part 1: a QKD network of key managers relaying keys through trusted nodes (``pqproxy/qkd/network.py``).

The network alone (a fake clock): routes, the hop-by-hop relay (the key is the same at both ends, the
intermediate sites saw it, each hop spent link key), a pair's excluded trusted nodes, a hop without key, a
disturbed link routed around. Then ``pqproxy kme --topology`` as a process with real sidecars keying real
handshakes through it: a three-site chain (alice at A, carol at C, through B) and a four-site ring in which an
eavesdropper on one hop is routed around while connections keep being keyed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pqproxy.certs import write_dev_pki
from pqproxy.qkd.etsi014 import KeyRequest
from pqproxy.qkd.kme import KMEFault
from pqproxy.qkd.network import Network, TopologyError, parse_topology
from tests.procs import free_port, stop_process
from tests.sidecar_kit import Backend, Sidecar, client_args, server_args
from tests.test_qkd_sidecars import roundtrip

CHAIN = {
    "site": [{"name": "A", "listen": "127.0.0.1:0", "saes": ["alice"]},
             {"name": "B", "listen": "127.0.0.1:0", "saes": ["bob"]},
             {"name": "C", "listen": "127.0.0.1:0", "saes": ["carol"]}],
    "link": [{"a": "A", "b": "B", "length_km": 40}, {"a": "B", "b": "C", "length_km": 60}],
}
RING = {
    "site": [{"name": n, "listen": "127.0.0.1:0", "saes": [sae]}
             for n, sae in (("A", "alice"), ("B", "bob"), ("C", "carol"), ("D", "dave"))],
    "link": [{"a": "A", "b": "B", "length_km": 20}, {"a": "B", "b": "C", "length_km": 20},
             {"a": "C", "b": "D", "length_km": 30}, {"a": "D", "b": "A", "length_km": 30}],
}

# A three-site ring: the chain A-B-C and a long direct fibre A-C (the demo's network).
TRIANGLE = {"site": CHAIN["site"], "link": [*CHAIN["link"], {"a": "A", "b": "C", "length_km": 120}]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def network(data: dict[str, Any], **extra: Any) -> tuple[Network, Clock]:
    clock = Clock()
    return Network(parse_topology({**data, **extra}), clock=clock), clock


def test_a_key_is_relayed_through_the_chain_and_only_the_trusted_node_sees_it() -> None:
    net, _ = network(CHAIN)
    assert net.route("alice", "carol") == ["A", "B", "C"]
    before = {name: ln.pool for name, ln in ((ln.spec.name, ln) for ln in net.links.values())}
    (key,) = net.enc_keys("alice", "carol", KeyRequest(number=1)).keys
    assert key.key_extension == {"route": ["A", "B", "C"], "trusted_nodes": ["B"]}
    (fetched,) = net.dec_keys("carol", "alice", [key.key_ID]).keys
    assert fetched.key == key.key  # the same key at both ends
    assert [net.sites[s].relayed for s in "ABC"] == [0, 1, 0]  # B saw it in the clear; nobody else but the ends
    assert key.key_ID not in net.sites["A"].pending and key.key_ID not in net.sites["B"].pending
    for ln in net.links.values():  # every hop spent 256 bits of its own key on it
        assert before[ln.spec.name] - ln.pool == 256
    with pytest.raises(KMEFault) as again:
        net.dec_keys("carol", "alice", [key.key_ID])
    assert again.value.status == 400
    status = net.status("alice", "carol")
    assert status.status_extension is not None
    assert status.status_extension["route"] == ["A", "B", "C"] and status.status_extension["trusted_nodes"] == ["B"]
    assert status.status_extension["route_key_rate_bps"] > 0
    # neighbours need no trusted node
    (direct,) = net.enc_keys("alice", "bob", KeyRequest()).keys
    assert direct.key_extension == {"route": ["A", "B"], "trusted_nodes": []}


def test_a_pair_that_excludes_the_only_trusted_node_gets_503_with_the_reason() -> None:
    net, _ = network(CHAIN, pair=[{"saes": ["alice", "carol"], "trusted_nodes_excluded": ["B"]}])
    with pytest.raises(KMEFault) as refused:
        net.enc_keys("alice", "carol", KeyRequest())
    assert refused.value.status == 503 and "avoiding B" in str(refused.value)
    assert net.pairs[frozenset(("alice", "carol"))].refused == 1
    ring, _ = network(RING, pair=[{"saes": ["alice", "carol"], "trusted_nodes_excluded": ["B"]}])
    assert ring.route("alice", "carol") == ["A", "D", "C"]  # the longer way, around B


def test_a_hop_without_key_refuses_the_whole_relay() -> None:
    net, _ = network(CHAIN, max_key_count=2)
    net.enc_keys("bob", "carol", KeyRequest(number=2))  # B-C is empty now (A-B is not)
    pools = {ln.spec.name: ln.pool for ln in net.links.values()}
    with pytest.raises(KMEFault) as refused:
        net.enc_keys("alice", "carol", KeyRequest())
    assert refused.value.status == 503 and "hop B-C" in str(refused.value)
    assert {ln.spec.name: ln.pool for ln in net.links.values()} == pools  # nothing spent on a half relay


def test_a_disturbed_link_is_routed_around_in_a_ring_and_ends_the_chain() -> None:
    ring, clock = network(RING)
    assert ring.route("alice", "carol") == ["A", "B", "C"]
    ring.link("A-B").model.set_eavesdropper(0.5, clock.now)
    assert ring.route("alice", "carol") == ["A", "D", "C"]
    (key,) = ring.enc_keys("alice", "carol", KeyRequest()).keys
    assert key.key_extension == {"route": ["A", "D", "C"], "trusted_nodes": ["D"]}
    chain, clock = network(CHAIN)
    chain.link("A-B").model.set_eavesdropper(0.5, clock.now)
    with pytest.raises(KMEFault) as refused:
        chain.enc_keys("alice", "carol", KeyRequest())
    assert refused.value.status == 503 and "down: A-B" in str(refused.value)
    chain.link("A-B").model.set_eavesdropper(0.0, clock.now)
    clock.now += 60  # past the link's recovery
    assert chain.route("alice", "carol") == ["A", "B", "C"]


@pytest.mark.parametrize(("change", "words"), [
    ({"site": CHAIN["site"][:1]}, "2 to 64 sites"),
    ({"link": [{"a": "A", "b": "Z"}]}, "two different sites"),
    ({"link": [{"a": "A", "b": "B", "colour": 1}]}, "link[0]"),
    ({"pair": [{"saes": ["alice", "zed"]}]}, "pair[0]"),
    ({"key_size": 100}, "key_size"),
])
def test_bad_topologies_say_what_is_wrong(change: dict[str, Any], words: str) -> None:
    with pytest.raises(TopologyError, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_topology({**CHAIN, **change})


# --- pqproxy kme --topology, with sidecars keying real handshakes through it -----------------------------------


def _toml(data: dict[str, Any], ports: dict[str, int]) -> str:
    out = []
    for s in data["site"]:
        out.append(f'[[site]]\nname = "{s["name"]}"\nlisten = "127.0.0.1:{ports[s["name"]]}"\n'
                   f'saes = {json.dumps(s["saes"])}\n')
    for ln in data["link"]:
        out.append("[[link]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in ln.items()))
    return "\n".join(out)


class NetworkKME:
    def __init__(self, work: Path, data: dict[str, Any]) -> None:
        self.ports = {s["name"]: free_port() for s in data["site"]}
        self.control = free_port()
        self.out = work / "pki"
        (topology := work / "net.toml").write_text(_toml(data, self.ports))
        self.proc = subprocess.Popen([sys.executable, "-m", "pqproxy", "kme", "--topology", str(topology), "--out",
                                      str(self.out), "--control", f"127.0.0.1:{self.control}"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("{"), self.proc.stderr.read() if self.proc.stderr else line
        self.ready = json.loads(line)

    def url(self, site: str) -> str:
        return f"https://127.0.0.1:{self.ports[site]}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control}{path}", timeout=5) as r:
            body = r.read()
        return body.decode() if path == "/metrics" else json.loads(body)

    def eavesdrop(self, link: str, fraction: float) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.control}/eavesdropper", method="POST",
                                         data=json.dumps({"link": link, "fraction": fraction}).encode())
        with urllib.request.urlopen(request, timeout=5) as r:
            r.read()

    def qkd(self, sae: str, site: str, mode: str, peer: str | None = None) -> list[str]:
        args = ["--qkd", mode, "--qkd-kme", self.url(site), "--qkd-sae-id", sae, "--qkd-cert",
                str(self.out / f"{sae}.pem"), "--qkd-key", str(self.out / f"{sae}.key"), "--qkd-ca",
                str(self.out / "ca.pem")]
        return args + (["--qkd-peer", peer] if peer else [])

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_dev_pki(tmp_path_factory.mktemp("tls"), alg="ecdsa")


@pytest.fixture(scope="module")
def upstream() -> Iterator[Backend]:
    backend = Backend("echo")
    yield backend
    backend.close()


def keyed(sidecar: Sidecar, n: int) -> list[dict[str, Any]]:
    return sidecar.wait_count(lambda r: r.get("mode") == "server" and "event" not in r, n)


@pytest.mark.parametrize("shape", ["chain", "triangle", "ring"])
def test_sidecars_key_handshakes_through_trusted_nodes(pki: dict[str, Path], upstream: Backend, tmp_path: Path,
                                                       shape: str) -> None:
    """alice's client sidecar asks site A's KME, carol's server sidecar site C's; neither knows about B (or D)."""
    kme = NetworkKME(tmp_path, {"chain": CHAIN, "triangle": TRIANGLE, "ring": RING}[shape])
    server = client = None
    try:
        server = Sidecar("server", server_args(pki, upstream.address, *kme.qkd("carol", "C", "require")))
        client = Sidecar("client", client_args(pki, server.port, *kme.qkd("alice", "A", "require", "carol")))
        assert roundtrip(client.port, b"keyed through B") == b"keyed through B"
        (record,) = keyed(server, 1)
        assert record["qkd"] == "keyed" and record["group"] == "X25519MLKEM768", record
        status = kme.get("/status?master=alice&slave=carol")
        assert status["status_extension"]["route"] == ["A", "B", "C"]
        assert status["status_extension"]["trusted_nodes"] == ["B"]
        metrics = kme.get("/metrics")
        assert 'pqproxy_qkd_network_trusted_node_keys_total{site="B"} 1.0' in metrics
        assert 'pqproxy_qkd_network_pair_keys_total{pair="alice-carol"} 1.0' in metrics
        if shape != "chain":
            kme.eavesdrop("A-B", 0.5)  # the QBER crosses the abort threshold: A-B makes no key
            around = ["A", "D", "C"] if shape == "ring" else ["A", "C"]
            assert kme.get("/status?master=alice&slave=carol")["status_extension"]["route"] == around
            for i in range(5):  # connections keep being keyed, the other way round the ring
                assert roundtrip(client.port, b"around %d" % i) == b"around %d" % i
            records = keyed(server, 6)
            assert all(r["qkd"] == "keyed" for r in records), records
            if shape == "ring":
                assert 'pqproxy_qkd_network_trusted_node_keys_total{site="D"} 5.0' in kme.get("/metrics")
            else:  # the direct fibre: no trusted node saw those keys
                assert 'pqproxy_qkd_network_trusted_node_keys_total{site="B"} 1.0' in kme.get("/metrics")
            links = {ln["link"]: ln for ln in kme.get("/links")}
            assert links["A-B"]["link_state"] == "aborted" and links["A-B"]["disturbances"] == 1
    finally:
        for sidecar in (client, server):
            if sidecar is not None:
                sidecar.stop()
        kme.stop()


def test_a_sae_can_only_ask_its_own_sites_kme(pki: dict[str, Path], tmp_path: Path) -> None:
    import trio

    from pqproxy.qkd.client import ETSI014Client, KMEError, KMESettings

    kme = NetworkKME(tmp_path, CHAIN)
    try:
        async def ask(site: str) -> Any:
            client = ETSI014Client(KMESettings(kme.url(site), str(kme.out / "alice.pem"), str(kme.out / "alice.key"),
                                               str(kme.out / "ca.pem")))
            try:
                return await client.enc_keys("carol")
            finally:
                await client.aclose()

        assert len(trio.run(ask, "A").keys) == 1
        with pytest.raises(KMEError) as refused:
            trio.run(ask, "B")
        assert refused.value.status == 401
    finally:
        kme.stop()
    assert os.path.exists(kme.out / "kme-B.pem")
    time.sleep(0)
