"""``pqproxy probe --quic``: post-quantum ClientHellos over one or several QUIC Initials.

Against aioquic's QUIC server on loopback every probe gets a server Initial with a ServerHello and there is
no diagnosis; through a UDP router that reads only the first Initial (``pqproxy.lab.quic_router``, a
documented emulator) the multi-Initial probes fail while the one-Initial controls pass, and the
diagnosis is ``quic-multi-initial``. A Retry is followed; Version Negotiation, ICMP, garbage and packets
for another connection ID are outcomes, never crashes. The packet layer round-trips (hypothesis).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pqproxy.certs import write_dev_pki
from pqproxy.lab.quic_router import FirstInitialRouter
from pqproxy.quic.initial import (
    MIN_DATAGRAM,
    ServerFlight,
    client_initials,
    contiguous,
    random_cid,
    read_client_initial,
)
from tests.procs import free_port, stop_process

HOST = "127.0.0.1"
SUITE_IDS = {"quic/classical-one-initial", "quic/pq-one-initial", "quic/pq-two-initials",
             "quic/pq-two-initials-reordered", "quic/pq-three-initials", "quic/pq-two-initials-pad1350",
             "quic/pq-two-initials-pad1472", "quic/classical-two-initials", "quic/pq-one-initial-frames-reordered"}


class QuicServer:
    def __init__(self, pki: dict[str, Path], *extra: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "pqproxy.quic.server", "--listen", f"{HOST}:{self.port}",
                                      "--cert", str(pki["server"]), "--key", str(pki["server_key"]), *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert json.loads(line)["event"] == "ready", line + (self.proc.stderr.read() if self.proc.stderr else "")

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_dev_pki(tmp_path_factory.mktemp("quic"), alg="ecdsa", names=("localhost", HOST))


@pytest.fixture(scope="module")
def server(pki: dict[str, Path]) -> Iterator[QuicServer]:
    s = QuicServer(pki)
    yield s
    s.stop()


def probe(port: int, tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / f"quic-{port}.json"
    done = subprocess.run([sys.executable, "-m", "pqproxy", "probe", f"{HOST}:{port}", "--sni", "localhost",
                           "--quic", "--timeout", "2", "--json", str(out), "-q", *extra],
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stderr, done.stderr
    report = json.loads(out.read_text()) if out.exists() else {}
    return done, report


def test_every_quic_probe_gets_a_server_initial_from_aioquic(server: QuicServer, tmp_path: Path) -> None:
    done, report = probe(server.port, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    (target,) = report["targets"]
    results = {r["spec"]["id"]: r for r in target["results"]}
    assert set(results) == SUITE_IDS
    for result in results.values():
        assert result["verdict"] == "pass", result
        for attempt in result["attempts"]:
            assert attempt["kind"] == "server_hello" and attempt["group"] == "X25519"  # aioquic has no ML-KEM
            assert attempt["cipher"].startswith("TLS_")
    assert results["quic/pq-one-initial"]["hello_size"] > 1500  # a post-quantum hello, in one datagram
    assert target["diagnoses"] == []


def test_a_first_initial_only_router_is_diagnosed(server: QuicServer, tmp_path: Path) -> None:
    with FirstInitialRouter((HOST, server.port), ("localhost",)) as router:
        # One attempt (then the runner's probe-control-control-probe recheck): each silent probe costs 2 s.
        done, report = probe(router.port, tmp_path, "--attempts", "1")
        assert done.returncode == 1, done.stdout + done.stderr
        (target,) = report["targets"]
        results = {r["spec"]["id"]: r for r in target["results"]}
        assert results["quic/classical-one-initial"]["verdict"] == "pass"
        assert results["quic/pq-one-initial"]["verdict"] == "pass"
        one = {"quic/classical-one-initial", "quic/pq-one-initial", "quic/pq-one-initial-frames-reordered"}
        assert results["quic/pq-one-initial-frames-reordered"]["verdict"] == "pass"  # it reassembles frames
        multi = SUITE_IDS - one
        for probe_id in multi:
            assert results[probe_id]["verdict"] == "fail", results[probe_id]
            assert {a["kind"] for a in results[probe_id]["attempts"]} == {"timeout"}
        (diagnosis,) = target["diagnoses"]
        assert diagnosis["id"] == "quic-multi-initial"
        assert set(diagnosis["evidence"]) >= multi | {"quic/pq-one-initial"}
        assert router.count("route:") >= 2 and router.count("drop:") >= len(multi)


def test_a_retry_is_followed(pki: dict[str, Path], tmp_path: Path) -> None:
    retrying = QuicServer(pki, "--retry")
    try:
        done, report = probe(retrying.port, tmp_path, "--check", "quic-multi-initial")
        assert done.returncode == 0, done.stdout + done.stderr
        attempts = [a for r in report["targets"][0]["results"] for a in r["attempts"]]
        assert all(a["kind"] == "server_hello" and a["detail"] == "after a Retry" for a in attempts), attempts
    finally:
        retrying.stop()


class _UdpAnswerer:
    """Answers every datagram with ``answer(datagram)`` (a list of datagrams)."""

    def __init__(self, answer: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                data, peer = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            for reply in self.answer(data):
                self.sock.sendto(reply, peer)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()


def _version_negotiation(data: bytes) -> list[bytes]:
    initial = read_client_initial(data)
    if initial is None:
        return []
    return [bytes((0x80,)) + bytes(4) + bytes((len(initial.scid),)) + initial.scid + bytes((len(initial.dcid),))
            + initial.dcid + (0xFF00001D).to_bytes(4, "big")]


def _wrong_cid(data: bytes) -> list[bytes]:
    initial = read_client_initial(data)
    if initial is None:
        return []
    # A well-formed server Initial, but addressed to another connection ID (and keyed for another DCID).
    return client_initials(b"\x02" + bytes(3), random_cid(), random_cid())


@pytest.mark.parametrize("answer, kind", [
    (lambda d: [b"\xff" * 40, b"garbage", bytes(1300)], "timeout"),
    (_wrong_cid, "timeout"),
    (lambda d: [d[:30]], "timeout"),  # our own Initial cut short, echoed
    (_version_negotiation, "version_negotiation"),
])
def test_hostile_or_odd_answers_are_outcomes(answer: Any, kind: str, tmp_path: Path) -> None:
    answerer = _UdpAnswerer(answer)
    try:
        done, report = probe(answerer.port, tmp_path, "--attempts", "1")
        assert done.returncode == 2, done.stdout + done.stderr  # the root control fails: target unusable
        first = report["targets"][0]["results"][0]
        assert first["attempts"][0]["kind"] == kind, first
    finally:
        answerer.stop()


def test_a_closed_udp_port_is_refused_by_icmp(tmp_path: Path) -> None:
    done, report = probe(free_port(), tmp_path, "--attempts", "1")
    assert done.returncode == 2
    attempt = report["targets"][0]["results"][0]["attempts"][0]
    assert attempt["kind"] == "refused" and "port unreachable" in attempt["detail"]


@settings(max_examples=60, deadline=None)
@given(hello=st.binary(min_size=4, max_size=5000), cuts=st.lists(st.integers(1, 4999), max_size=4),
       reorder=st.booleans(), one_packet=st.booleans(), pad=st.integers(MIN_DATAGRAM, 1500))
def test_initials_carry_the_crypto_stream_exactly(hello: bytes, cuts: list[int], reorder: bool, one_packet: bool,
                                                  pad: int) -> None:
    dcid, scid = random_cid(), random_cid()
    datagrams = client_initials(hello, dcid, scid, cuts=cuts, reorder=reorder, one_packet=one_packet,
                                datagram_size=pad)
    if one_packet:
        assert len(datagrams) == 1
    assert all(len(d) >= MIN_DATAGRAM for d in datagrams)
    crypto: dict[int, bytes] = {}
    for datagram in datagrams:
        initial = read_client_initial(datagram)
        assert initial is not None and initial.dcid == dcid and initial.scid == scid
        crypto.update(initial.crypto)
    assert contiguous(crypto) == hello


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1500))
def test_the_server_flight_reader_never_raises(data: bytes) -> None:
    flight = ServerFlight(random_cid(), random_cid())
    flight.feed(data)
    flight.server_hello()
