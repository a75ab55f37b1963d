"""Raw-segment delivery (pqproxy/probe/raw.py) against real TCP stacks and TLS servers.

- Shapes: a post-quantum ClientHello (X25519MLKEM768 share, ~1.4 KB) in exact 100-byte segments, cut inside the
  5-byte record header, with a 1-byte first segment, with the second segment sent before the first, and in two
  segments with a pause. For each, the packets we sent are checked against the plan (offsets and sizes, in order),
  the answer must be a ServerHello (not an HRR) whose key share is X25519MLKEM768 (the server parsed the whole
  share), and the peer must report what it received: ``pqproxy server`` logs the connection from our raw source
  port, and Node 26's record tap reports the ClientHello it reassembled (length, one record, SNI, key shares).
- The firewall: the nft rule exists while a probe runs and is gone after it, after a timeout, after a refusal and
  after an exception raised in the middle of a probe; two probes in parallel threads both work.
- Failures: a closed port is "connection refused"; a port that accepts but never answers is a timeout with
  connected=True and no response.
- The hop search: client -- router1 -- router2 -- server in network namespaces, the router2--server link at MTU 1000
  and router2 dropping its own ICMP destination-unreachable, so 1400-byte segments die silently at router2;
  ``find_blackhole_hop`` must name router2's client-side address, and a 900-byte control must find no black hole;
  1400-byte deliveries are never acknowledged, 900-byte ones are. Without the ICMP filter, router2's
  fragmentation-needed (next-hop MTU 1000) is reported by both functions.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from peers.node import NodeServer, node_binary

from pqproxy.certs import write_dev_pki
from pqproxy.lab.netns import Chain, Lab, chain, netns_unavailable
from pqproxy.probe import raw
from pqproxy.probe.raw import RawResult, RawUnavailable, deliver_segments, plan_segments
from pqproxy.tls.codepoints import HELLO_RETRY_REQUEST_RANDOM
from pqproxy.tls.hello import HelloSpec, build_client_hello
from pqproxy.tls.messages import ServerHello
from tests.procs import ScriptedServer, free_port, require
from tests.sidecar_kit import Backend, Sidecar, server_args

HOST = "127.0.0.1"
SERVER_NAME = "localhost"
X25519MLKEM768 = 0x11EC
KEY_SHARE = 51
PROBE_TIMEOUT = 5.0  # one handshake on loopback takes milliseconds; this is only the bound
SILENT_TIMEOUT = 1.0  # how long the "never answers" probe waits


# --- environment ------------------------------------------------------------------------------------------------




@pytest.fixture
def raw_ok() -> None:
    if os.geteuid() != 0:
        require("raw probes need root (raw sockets and nftables); run the tests as root")
    elif shutil.which("nft") is None:
        require("raw probes need nftables (nft)")
    elif shutil.which("tcpdump") is None:
        require("raw probes need tcpdump (scapy compiles the capture filter with it)")


def our_rules() -> list[dict[str, Any]]:
    """nftables rules that this test process's probes created (other test workers may be probing meanwhile)."""
    out = raw._nft(["-j", "list", "ruleset"]).stdout
    rules = [item["rule"] for item in json.loads(out)["nftables"] if "rule" in item]
    return [r for r in rules if f"{raw.NFT_COMMENT_PREFIX} pid={os.getpid()} " in r.get("comment", "")]


def assert_rules_gone() -> None:
    assert our_rules() == [], "a probe left its reset-drop rule behind"


# --- what we send, what comes back ---------------------------------------------------------------------------------


def pq_hello() -> bytes:
    return build_client_hello(HelloSpec(server_name=SERVER_NAME)).records()


def first_record_complete(response: bytes) -> bool:
    """``want``: stop once the first TLS record (the ServerHello) is complete."""
    return len(response) >= 5 and len(response) >= 5 + int.from_bytes(response[3:5], "big")


def server_hello(response: bytes) -> ServerHello:
    """The ServerHello in the first record; asserts the record and message framing on the way."""
    assert len(response) >= 9, f"no TLS record in the answer: {response[:32].hex()}"
    assert response[0] == 22, f"first record is content type {response[0]}, not handshake (22)"
    length = int.from_bytes(response[3:5], "big")
    record = response[5 : 5 + length]
    assert record[0] == 2, f"first handshake message is type {record[0]}, not ServerHello (2)"
    body_length = int.from_bytes(record[1:4], "big")
    return ServerHello.decode(record[4 : 4 + body_length])


def assert_pq_server_hello(result: RawResult) -> None:
    assert result.connected and result.error is None, result.error
    hello = server_hello(result.response)
    assert hello.random != HELLO_RETRY_REQUEST_RANDOM, "got a HelloRetryRequest, not a ServerHello"
    (share,) = [e for e in hello.extensions if e.type == KEY_SHARE]
    assert int.from_bytes(share.data[:2], "big") == X25519MLKEM768
    assert len(share.data) == 2 + 2 + 1120, "X25519MLKEM768 server share is 1088 + 32 bytes"


def sent_segments(result: RawResult) -> list[tuple[int, int]]:
    """(stream offset, length) of every data segment we sent, in sending order (retransmissions included)."""
    assert result.source is not None
    _, sport = result.source
    ours = [p for p in result.packets if p.haslayer("TCP") and p["TCP"].sport == sport]
    isn = next(p["TCP"].seq for p in ours if p["TCP"].flags == "S")
    out = []
    for p in ours:
        data = bytes(p["TCP"].payload)
        if data:
            out.append(((p["TCP"].seq - isn - 1) % (1 << 32), len(data)))
    return out


# --- servers ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_dev_pki(tmp_path_factory.mktemp("raw-pki"), alg="ecdsa", names=(SERVER_NAME, HOST))


@pytest.fixture(scope="module")
def pq_server(pki_files: dict[str, Path]) -> Iterator[Sidecar]:
    backend = Backend()
    sidecar = Sidecar("server", server_args(pki_files, backend.address), admin=False)
    try:
        yield sidecar
    finally:
        sidecar.stop()
        backend.close()


@pytest.fixture(scope="module")
def node_server(pki_files: dict[str, Path]) -> Iterator[NodeServer]:
    node_binary()  # skips without Node, fails in CI
    config = {"cert": str(pki_files["server"]), "key": str(pki_files["server_key"]),
              "groups": "X25519MLKEM768:X25519"}
    with NodeServer(config) as server:
        yield server


@pytest.fixture
def silent_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer(listen=True)
    yield server
    server.close()


# --- segment planning (pure, no root needed) ----------------------------------------------------------------------


def test_plan_exact_sizes_cuts_and_order() -> None:
    assert plan_segments(250, segment_size=100) == [(0, 100), (100, 200), (200, 250)]
    assert plan_segments(250, cuts=[3]) == [(0, 3), (3, 250)]
    assert plan_segments(250, cuts=[200, 1, 200]) == [(0, 1), (1, 200), (200, 250)]
    assert plan_segments(250) == [(0, 250)]
    assert plan_segments(250, segment_size=100, order=[1, 0]) == [(100, 200), (0, 100), (200, 250)]
    assert plan_segments(250, segment_size=100, order=[2, 1, 0]) == [(200, 250), (100, 200), (0, 100)]


@pytest.mark.parametrize("kwargs, message", [
    ({"cuts": [0]}, "inside the payload"),
    ({"cuts": [250]}, "inside the payload"),
    ({"cuts": [3], "segment_size": 10}, "not both"),
    ({"segment_size": 0}, "positive"),
    ({"segment_size": 100, "order": [3]}, "there are 3"),
    ({"segment_size": 100, "order": [1, 1]}, "twice"),
])
def test_plan_rejects_bad_shapes(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_segments(250, **kwargs)


def test_plan_bounds() -> None:
    with pytest.raises(ValueError, match="empty"):
        plan_segments(0)
    with pytest.raises(ValueError, match="segments"):
        plan_segments(raw.MAX_SEGMENTS + 1, segment_size=1)


def test_unavailable_without_root_or_nft(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(raw.os, "geteuid", lambda: 1000)
    with pytest.raises(RawUnavailable, match="raw probes need root and nftables"):
        deliver_segments(HOST, 1, b"x")
    monkeypatch.setattr(raw.os, "geteuid", lambda: 0)
    monkeypatch.setattr(raw.shutil, "which", lambda name: None)
    with pytest.raises(RawUnavailable, match="raw probes need root and nftables: nft"):
        raw.find_blackhole_hop(HOST, 1)


# --- shapes against real TLS servers ---------------------------------------------------------------------------------

SHAPES: dict[str, dict[str, Any]] = {
    "100-byte-segments": {"segment_size": 100},
    "cut-in-record-header": {"cuts": [3]},
    "1-byte-first-segment": {"cuts": [1]},
    "second-segment-first": {"segment_size": 500, "order": [1, 0, 2]},
    "two-segments-paused": {"cuts": [700], "pause": 0.3},
}


def deliver(port: int, hello: bytes, shape: dict[str, Any], **kw: Any) -> RawResult:
    return deliver_segments(HOST, port, hello, timeout=PROBE_TIMEOUT, want=first_record_complete, **shape, **kw)


def check_delivery(result: RawResult, hello: bytes, shape: dict[str, Any]) -> None:
    """The answer is a PQ ServerHello, and we sent exactly the planned segments, in the planned order."""
    assert_pq_server_hello(result)
    plan = plan_segments(len(hello), cuts=shape.get("cuts"), segment_size=shape.get("segment_size"),
                         order=shape.get("order"))
    sent = sent_segments(result)
    assert sent[: len(plan)] == [(start, end - start) for start, end in plan]
    if shape.get("pause"):
        assert result.elapsed_ms >= shape["pause"] * 1000


@pytest.mark.usefixtures("raw_ok")
@pytest.mark.parametrize("name", list(SHAPES))
def test_shapes_pqproxy_server(name: str, pq_server: Sidecar) -> None:
    hello = pq_hello()
    shape = SHAPES[name]
    result = deliver(pq_server.port, hello, shape)
    check_delivery(result, hello, shape)
    assert result.source is not None
    # What the peer saw: one connection from our raw source port, ended by our RST after its ServerHello.
    peer = f"{HOST}:{result.source[1]}"
    record = pq_server.wait_for(lambda r: r.get("peer") == peer and "result" in r)
    assert record["result"] == "peer_closed", record
    assert_rules_gone()


@pytest.mark.interop
@pytest.mark.usefixtures("raw_ok")
@pytest.mark.parametrize("name", list(SHAPES))
def test_shapes_node(name: str, node_server: NodeServer) -> None:
    built = build_client_hello(HelloSpec(server_name=SERVER_NAME))
    hello = built.records()
    shape = SHAPES[name]
    conns_before = max([int(e.get("conn") or 0) for e in node_server.events()], default=0)
    result = deliver(node_server.port, hello, shape)
    check_delivery(result, hello, shape)
    # What Node saw: its record tap reassembled our ClientHello (reported with the handshake error that our RST
    # causes) - the whole message, in one record, with the SNI and both key shares intact.
    seen = node_server.wait_for(lambda e: e.get("event") == "error" and int(e.get("conn") or 0) > conns_before,
                                timeout=5, what="handshake error after our RST")
    assert seen["code"] == "ECONNRESET", seen
    client_hello = seen["clientHello"]
    assert client_hello["length"] == len(built.encode()) - 4
    assert client_hello["records"] == 1
    assert client_hello["sni"] == SERVER_NAME
    assert client_hello["keyShares"] == [{"group": "X25519MLKEM768", "length": 1216},
                                         {"group": "X25519", "length": 32}]
    assert_rules_gone()


# --- the firewall rule, failures, concurrency ---------------------------------------------------------------------


@pytest.mark.usefixtures("raw_ok")
def test_rule_exists_during_probe_and_goes_after(pq_server: Sidecar) -> None:
    during: list[list[dict[str, Any]]] = []

    def want(response: bytes) -> bool:
        during.append(our_rules())
        return first_record_complete(response)

    result = deliver_segments(HOST, pq_server.port, pq_hello(), timeout=PROBE_TIMEOUT, want=want)
    assert_pq_server_hello(result)
    assert result.source is not None
    rule = during[0]
    assert len(rule) == 1 and f"port={result.source[1]} " in rule[0]["comment"], rule
    assert_rules_gone()


@pytest.mark.usefixtures("raw_ok")
def test_rule_goes_after_an_exception() -> None:
    server = ScriptedServer(greeting=b"hello from a server that talks first\n", listen=True)
    during: list[list[dict[str, Any]]] = []

    def want(response: bytes) -> bool:
        during.append(our_rules())
        raise RuntimeError("boom in the middle of a probe")

    try:
        with pytest.raises(RuntimeError, match="boom"):
            deliver_segments(HOST, server.port, b"x" * 50, timeout=PROBE_TIMEOUT, want=want)
    finally:
        server.close()
    assert len(during) == 1 and len(during[0]) == 1, during
    assert_rules_gone()


@pytest.mark.usefixtures("raw_ok")
def test_closed_port_is_refused() -> None:
    result = deliver_segments(HOST, free_port(), pq_hello(), timeout=PROBE_TIMEOUT)
    assert not result.connected
    assert result.error is not None and "connection refused" in result.error
    assert result.rst and result.response == b""
    assert result.elapsed_ms < 1000  # a RST, not a timeout
    assert_rules_gone()


@pytest.mark.usefixtures("raw_ok")
def test_silent_server_times_out(silent_server: ScriptedServer) -> None:
    hello = pq_hello()
    started = time.monotonic()
    result = deliver_segments(HOST, silent_server.port, hello, segment_size=500, timeout=SILENT_TIMEOUT,
                              want=first_record_complete)
    took = time.monotonic() - started
    assert result.connected and result.timed_out
    assert result.error is not None and result.error.startswith("timeout")
    assert result.response == b"" and not result.fin and not result.rst
    assert result.acked, "the server's TCP acknowledged the whole hello"
    assert took >= SILENT_TIMEOUT  # it waited; the upper bound is only "no hang" (timing asserts flake under load)
    assert took < SILENT_TIMEOUT + 30
    assert_rules_gone()
    deadline = time.monotonic() + 2  # our RST closes the server's side: it saw exactly our bytes
    while not silent_server.received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert silent_server.received == [hello]


@pytest.mark.usefixtures("raw_ok")
def test_two_probes_in_parallel_threads(pq_server: Sidecar) -> None:
    """Both probes are in flight at once (a barrier inside ``want``), each with its own port and rule."""
    barrier = threading.Barrier(2, timeout=PROBE_TIMEOUT)
    rules_seen: list[int] = []

    def make_want() -> Callable[[bytes], bool]:
        met = False

        def want(response: bytes) -> bool:
            nonlocal met
            if not met:
                barrier.wait()  # the other probe is connected and answered too
                rules_seen.append(len(our_rules()))
                met = True
            return first_record_complete(response)

        return want

    hello = pq_hello()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(deliver_segments, HOST, pq_server.port, hello, segment_size=size,
                               timeout=PROBE_TIMEOUT, want=make_want()) for size in (100, 600)]
        results = [f.result(timeout=3 * PROBE_TIMEOUT) for f in futures]
    for result in results:
        assert_pq_server_hello(result)
    assert results[0].source != results[1].source
    assert rules_seen and max(rules_seen) == 2, rules_seen
    assert_rules_gone()


# --- the hop where large segments die, in namespaces -------------------------------------------------------------

LISTENER = r"""
import select, socket, time
server = socket.create_server(("0.0.0.0", 4433))
print("ready", flush=True)
conns, deadline = [], time.monotonic() + 60
while time.monotonic() < deadline:  # accept and discard; never answer
    readable, _, _ = select.select([server, *conns], [], [], 0.5)
    for s in readable:
        if s is server:
            conns.append(server.accept()[0])
            continue
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:
            conns.remove(s)
            s.close()
"""

HOP_JOBS = r"""
import dataclasses, json, sys
from pqproxy.probe.raw import deliver_segments, find_blackhole_hop
target, jobs = sys.argv[1], json.loads(sys.argv[2])
out = []
for kind, kwargs in jobs:
    if kind == "search":
        out.append(dataclasses.asdict(find_blackhole_hop(target, 4433, **kwargs)))
    else:  # "deliver": 3000 bytes in segments of kwargs["segment_size"]; the listener never answers
        r = deliver_segments(target, 4433, bytes(3000), timeout=1.0, retransmissions=0, **kwargs)
        out.append({"connected": r.connected, "acked": r.acked, "timed_out": r.timed_out, "error": r.error,
                    "icmp": r.icmp, "icmp_mtu": r.icmp_mtu})
print(json.dumps(out))
"""
HOP_HARD_LIMIT = 40.0  # the client subprocess (about 6 s on an idle machine, half of it imports)
SEARCH_WAIT, SEARCH_ROUNDS = 1.0, 2  # find_blackhole_hop's defaults: a black hole costs rounds * wait


def _hop_lab(drop_icmp: bool) -> Iterator[tuple[Lab, Chain]]:
    require(netns_unavailable())
    lab = Lab("raw")
    try:
        path = chain(lab, server_mtu=1000)
        if drop_icmp:  # router2 sends no "fragmentation needed": large segments die silently (a PMTU black hole)
            lab.nft(path.router2, "add table inet lab\n"
                                  "add chain inet lab output { type filter hook output priority 0 ; }\n"
                                  "add rule inet lab output icmp type destination-unreachable drop\n")
        listener = lab.popen(path.server, [sys.executable, "-c", LISTENER])
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        yield lab, path
    finally:
        lab.close()
        assert lab.existing() == []


@pytest.fixture
def blackhole_lab() -> Iterator[tuple[Lab, Chain]]:
    yield from _hop_lab(drop_icmp=True)


@pytest.fixture
def frag_needed_lab() -> Iterator[tuple[Lab, Chain]]:
    yield from _hop_lab(drop_icmp=False)


def run_in_client(lab: Lab, path: Chain, jobs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run probes inside the client namespace (a fresh interpreter there: its routes, its nftables)."""
    done = lab.run(path.client, [sys.executable, "-c", HOP_JOBS, path.server_addr, json.dumps(jobs)],
                   timeout=HOP_HARD_LIMIT, check=False)
    assert done.returncode == 0, done.stderr
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


@pytest.mark.usefixtures("raw_ok")
def test_find_blackhole_hop_in_namespaces(blackhole_lab: tuple[Lab, Chain]) -> None:
    lab, path = blackhole_lab
    search, control, large, small = run_in_client(lab, path, [
        ("search", {"max_hops": 6}),
        ("search", {"max_hops": 6, "large": 900}),  # 900-byte segments fit the 1000-byte link
        ("deliver", {"segment_size": 1400}),
        ("deliver", {"segment_size": 900}),
    ])

    assert search["error"] is None and search["connected"], search
    assert search["hop"] == path.router2_client_side, search["reason"]
    assert search["hop_ttl"] == 2
    assert search["beyond"] == "target"
    assert search["target_ttl"] == 3
    assert search["small_reaches_target"] and not search["large_reaches_target"]
    assert search["frag_needed"] == [] and search["mtu"] is None
    hops = {h["ttl"]: h for h in search["hops"]}
    assert hops[1] == {"ttl": 1, "small": path.router1_client_side, "large": path.router1_client_side}
    assert hops[2] == {"ttl": 2, "small": path.router2_client_side, "large": path.router2_client_side}

    assert control["large_reaches_target"] and control["hop"] is None, control["reason"]

    # The symptom the hop search explains: full-size segments are never acknowledged, and nothing says why.
    assert large["connected"] and not large["acked"] and large["timed_out"] and large["icmp"] == []
    assert small["connected"] and small["acked"]
    # The search is bounded by its rounds (the run's start-up, mostly imports, varies with the machine's load).
    assert search["elapsed_ms"] < (SEARCH_ROUNDS * SEARCH_WAIT + 30) * 1000, search["elapsed_ms"]  # bounded, no hang


@pytest.mark.usefixtures("raw_ok")
def test_fragmentation_needed_is_reported(frag_needed_lab: tuple[Lab, Chain]) -> None:
    """Without the ICMP filter router2 says "fragmentation needed, next-hop MTU 1000": no black hole, and the MTU."""
    lab, path = frag_needed_lab
    search, large = run_in_client(lab, path, [("search", {"max_hops": 6}), ("deliver", {"segment_size": 1400})])
    assert search["hop"] == path.router2_client_side and search["mtu"] == 1000, search["reason"]
    assert [path.router2_client_side, 1000] in search["frag_needed"]
    assert "no black hole" in search["reason"]
    assert [3, 4, path.router2_client_side] in large["icmp"] and large["icmp_mtu"] == 1000
    assert not large["acked"]
