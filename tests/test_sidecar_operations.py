"""The sidecar in operation, as real processes on 127.0.0.1: load, volume, peers, stalls, reload, drain, limits.

Every test runs ``python -m pqproxy server|client`` (supervisor + spawned workers, SO_REUSEPORT), talks to it
over sockets and checks three things: what the peer saw, the JSON log line, and /metrics. Timeouts are
shortened by flags (--handshake-timeout, --idle-timeout, --drain-timeout) so the whole file stays fast;
every wait is bounded; every process is stopped in a ``finally`` and its process group checked empty.
"""

from __future__ import annotations

import hashlib
import itertools
import resource
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from pqproxy.certs import write_dev_pki
from pqproxy.tls.config import TLSConfig
from pqproxy.tls.hello import HelloSpec, build_client_hello
from tests.peers.node import NodeServer, deterministic_bytes, node_binary, only, run_node_client
from tests.procs import free_port
from tests.sidecar_kit import (
    COLLECT,
    HOST,
    TIMEOUT,
    Backend,
    EngineClient,
    Sidecar,
    client_args,
    group_members,
    pattern,
    server_args,
)

HANDSHAKES = "pqproxy_handshakes_total"
REFUSALS = "pqproxy_refusals_total"
RESETS = "pqproxy_resets_propagated_total"
HYBRID = "X25519MLKEM768"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_dev_pki(tmp_path_factory.mktemp("ops-pki"), alg="ecdsa", names=("localhost", HOST))


def ca_of(pki: dict[str, Path]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki["ca"].read_bytes())


def is_connection(record: dict[str, Any]) -> bool:
    """A per-connection log line (events such as "started" also carry a mode)."""
    return "mode" in record and "event" not in record


def engine_config(pki: dict[str, Path], **kw: Any) -> TLSConfig:
    kw.setdefault("server_name", "localhost")
    kw.setdefault("trust_store", [ca_of(pki)])
    return TLSConfig(**kw)


@contextmanager
def running(mode: str, args: list[str], **kw: Any) -> Iterator[Sidecar]:
    sidecar = Sidecar(mode, args, **kw)
    try:
        yield sidecar
    finally:
        sidecar.stop()


@contextmanager
def backend(mode: str = "echo", tag: bytes = b"") -> Iterator[Backend]:
    b = Backend(mode, tag)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def pipe(pki: dict[str, Path]) -> Iterator[tuple[Sidecar, Sidecar, Backend]]:
    """plain app -> pqproxy client -> pqproxy server (2 workers, admin) -> echo backend."""
    with backend() as echo, \
            running("server", server_args(pki, echo.address, "--drain-timeout", "1"), workers=2) as server, \
            running("client", client_args(pki, server.port, "--drain-timeout", "1"), workers=1) as client:
        yield server, client, echo


def exchange(port: int, payload: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send everything, half-close, read to EOF (a reader thread, so neither side's buffers can deadlock)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        received = bytearray()

        def reader() -> None:
            while chunk := s.recv(1 << 16):
                received.extend(chunk)

        thread = threading.Thread(target=reader)
        thread.start()
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        thread.join(timeout)
        assert not thread.is_alive(), "no EOF within the timeout"
        return bytes(received)


# --- 1. many concurrent connections over two SO_REUSEPORT workers ------------------------------------------


def test_300_concurrent_connections_each_echoed_intact(pipe: tuple[Sidecar, Sidecar, Backend]) -> None:
    server, client, _ = pipe
    n = 300
    before = server.metric(HANDSHAKES, result="ok", group=HYBRID)
    logged_before = len(server.connections())
    barrier = threading.Barrier(n, timeout=30)
    results: list[tuple[str, str] | BaseException | None] = [None] * n

    def one(i: int) -> None:
        payload = pattern(i, 2000 + 37 * i)  # distinct data and length per connection
        try:
            with socket.create_connection((HOST, client.port), timeout=30) as s:
                barrier.wait()  # all 300 are open before any sends: they really are concurrent
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                digest = hashlib.sha256()
                while chunk := s.recv(1 << 16):
                    digest.update(chunk)
            results[i] = (hashlib.sha256(payload).hexdigest(), digest.hexdigest())
        except BaseException as exc:  # reported below with its index
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    failures = [(i, r) for i, r in enumerate(results) if not isinstance(r, tuple) or r[0] != r[1]]
    assert not failures, failures[:5]

    records = server.wait_count(is_connection, logged_before + n)
    mine = records[logged_before:]
    assert all(r["result"] == "ok" and r["group"] == HYBRID for r in mine), [r for r in mine if r["result"] != "ok"]
    assert {r["worker"] for r in mine} == {0, 1}, "SO_REUSEPORT should spread connections over both workers"
    assert server.wait_metric(HANDSHAKES, before + n, result="ok", group=HYBRID) >= 300


# --- 2. volume -----------------------------------------------------------------------------------------------


def test_256_mib_each_way_by_hash(pipe: tuple[Sidecar, Sidecar, Backend]) -> None:
    _, client, _ = pipe
    chunk, chunks = 1 << 20, 256
    sent, received = hashlib.sha256(), hashlib.sha256()
    got = 0
    error: list[BaseException] = []
    with socket.create_connection((HOST, client.port), timeout=60) as s:

        def reader() -> None:
            nonlocal got
            try:
                while data := s.recv(1 << 18):
                    received.update(data)
                    got += len(data)
            except BaseException as exc:
                error.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        for i in range(chunks):  # generated and hashed on the fly: memory stays at one chunk
            data = hashlib.shake_128(i.to_bytes(4, "big")).digest(chunk)
            sent.update(data)
            s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        thread.join(90)
        assert not thread.is_alive() and not error, error
    assert got == chunk * chunks
    assert received.hexdigest() == sent.hexdigest()


# --- 3. Node.js 26 on either side ---------------------------------------------------------------------------


@pytest.mark.interop
def test_node_client_through_pqproxy_server(pipe: tuple[Sidecar, Sidecar, Backend], pki: dict[str, Path]) -> None:
    node_binary()
    server, _, _ = pipe
    events = run_node_client({"port": server.port, "ca": str(pki["ca"]), "servername": "localhost",
                              "send": 100_000, "groups": "X25519MLKEM768:X25519"}, timeout=30)
    assert not only(events, "error"), events
    handshake = only(events, "handshake")[0]
    assert handshake["group"] == HYBRID
    assert handshake["ephemeralKeyInfo"]["name"] == HYBRID  # Node's own API agrees with its tap
    result = only(events, "result")[0]
    assert result["length"] == 100_000 and result["sha256"] == hashlib.sha256(deterministic_bytes(100_000)).hexdigest()


@pytest.mark.interop
def test_pqproxy_client_to_node_server(pki: dict[str, Path]) -> None:
    node_binary()
    with NodeServer({"cert": str(pki["server"]), "key": str(pki["server_key"]), "groups": "X25519MLKEM768"}) as node, \
            running("client", client_args(pki, node.port, "--drain-timeout", "1"), admin=False) as client:
        payload = pattern(3, 200_000)
        assert exchange(client.port, payload) == payload
        handshake = node.wait_event("handshake", timeout=10)
        assert handshake["group"] == HYBRID and handshake["protocol"] == "TLSv1.3"
        record = client.wait_for(lambda r: is_connection(r) and r.get("result") == "ok")
        assert record["group"] == HYBRID and record["bytes_up"] == len(payload)


RESUMED = "pqproxy_resumed_sessions_total"


def test_the_client_resumes_its_sessions_with_a_pqproxy_server_and_keeps_the_hybrid(pki: dict[str, Path]) -> None:
    with backend() as echo, \
            running("server", server_args(pki, echo.address, "--drain-timeout", "1")) as server, \
            running("client", client_args(pki, server.port, "--drain-timeout", "1")) as client:
        for i in range(4):  # one after the other: each connection resumes the ticket the one before got
            payload = pattern(i, 5000)
            assert exchange(client.port, payload) == payload
        ours = client.wait_count(is_connection, 4)
        theirs = server.wait_count(is_connection, 4)
        assert [r.get("resumed") for r in ours] == [False, True, True, True], ours
        assert [r.get("resumed") for r in theirs] == [False, True, True, True], theirs
        assert all(r["group"] == HYBRID and r["result"] == "ok" and r["bytes_up"] == 5000 for r in ours + theirs)
        assert client.metric(RESUMED) == 3 and server.metric(RESUMED) == 3
        assert client.metric(HANDSHAKES, result="ok", group=HYBRID) == 4


def test_a_ticket_from_one_server_worker_resumes_on_the_other(pki: dict[str, Path]) -> None:
    with backend() as echo, \
            running("server", server_args(pki, echo.address, "--drain-timeout", "1"), workers=2,
                    admin=False) as server, \
            running("client", client_args(pki, server.port, "--drain-timeout", "1"), admin=False) as client:
        for i in range(16):  # one after the other: each resumes the ticket of the one before
            assert exchange(client.port, b"hop %d" % i) == b"hop %d" % i
        served = server.wait_count(is_connection, 16)
        assert all(r.get("resumed") for r in served[1:]), served
        crossed = [b for a, b in itertools.pairwise(served) if a["worker"] != b["worker"]]
        assert crossed, "SO_REUSEPORT sent all 16 to one worker"  # 2 in 2^15 runs
        assert all(r["resumed"] for r in crossed)  # sealed by one worker, opened by the other
        assert len(client.wait_count(is_connection, 16)) == 16


def test_the_client_resumes_against_an_mtls_server_which_still_names_the_client(pki: dict[str, Path]) -> None:
    with backend() as echo, \
            running("server", server_args(pki, echo.address, "--client-ca", str(pki["ca"]), "--drain-timeout", "1"),
                    admin=False) as server, \
            running("client", client_args(pki, server.port, "--cert", str(pki["client"]), "--key",
                                          str(pki["client_key"]), "--drain-timeout", "1"), admin=False) as client:
        for i in range(2):
            assert exchange(client.port, b"who am I %d" % i) == b"who am I %d" % i
        full, resumed = server.wait_count(is_connection, 2)
        assert full.get("resumed") is False and resumed.get("resumed") is True, (full, resumed)
        assert full["client_certificate"] and resumed["client_certificate"] == full["client_certificate"]


@pytest.mark.interop
def test_the_client_resumes_its_sessions_with_node(pki: dict[str, Path]) -> None:
    node_binary()
    with NodeServer({"cert": str(pki["server"]), "key": str(pki["server_key"]), "groups": "X25519MLKEM768"}) as node, \
            running("client", client_args(pki, node.port, "--drain-timeout", "1"), admin=False) as client:
        for i in range(3):
            payload = pattern(10 + i, 3000)
            assert exchange(client.port, payload) == payload
        node.wait_for(lambda e: len(node.events("handshake")) >= 3, timeout=10, what="three handshakes")
        seen = node.events("handshake")
        assert [e["sessionReused"] for e in seen] == [False, True, True], seen  # what Node saw
        assert all(e["group"] == HYBRID for e in seen)
        assert [r.get("resumed") for r in client.wait_count(is_connection, 3)] == [False, True, True]


def test_resume_sessions_off_makes_every_handshake_a_full_one(pki: dict[str, Path]) -> None:
    with backend() as echo, \
            running("server", server_args(pki, echo.address, "--drain-timeout", "1"), admin=False) as server, \
            running("client", client_args(pki, server.port, "--resume-sessions", "off", "--drain-timeout", "1"),
                    admin=False) as client:
        for i in range(3):
            assert exchange(client.port, b"full %d" % i) == b"full %d" % i
        assert [r.get("resumed") for r in server.wait_count(is_connection, 3)] == [False, False, False]


# --- 4. stalled handshakes -------------------------------------------------------------------------------


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def _echo_once(port: int, pki: dict[str, Path], payload: bytes) -> float:
    """A real client: full hybrid handshake and one echo; returns the seconds it took."""
    start = time.monotonic()
    with EngineClient(port, engine_config(pki), timeout=10) as c:
        info = c.handshake()
        assert info is not None and info.group == HYBRID, c.events
        c.send(payload)
        assert c.read_until(len(payload)) == payload
    return time.monotonic() - start


def test_a_thousand_stalled_handshakes_are_cut_and_starve_nobody(pki: dict[str, Path]) -> None:
    stallers_n, real_n, handshake_timeout = 1000, 20, 4.0
    _raise_fd_limit(stallers_n + 500)
    partial_hello = build_client_hello(HelloSpec(server_name="localhost")).records()[:700]
    assert len(partial_hello) == 700
    with backend() as echo, \
            running("server", server_args(pki, echo.address, "--handshake-timeout", str(handshake_timeout),
                                          "--drain-timeout", "1")) as server:
        stallers: list[socket.socket] = []
        try:
            opened = time.monotonic()
            for _ in range(stallers_n):
                s = socket.create_connection((HOST, server.port), timeout=10)
                s.sendall(partial_hello)  # half a ClientHello record, then nothing
                stallers.append(s)
            # While all of them hang, real clients are served promptly.
            with ThreadPoolExecutor(max_workers=real_n) as pool:
                durations = list(pool.map(lambda i: _echo_once(server.port, pki, pattern(i, 4096)), range(real_n)))
            assert max(durations) < 3.0, durations
            assert time.monotonic() - opened < handshake_timeout, "the real clients must run while the stall lasts"
            # Then every staller is cut at the handshake timeout: no earlier, and not much later.
            for s in stallers:
                s.settimeout(max(0.1, opened + handshake_timeout + 6 - time.monotonic()))
                try:
                    assert s.recv(100) == b""
                except ConnectionResetError:
                    pass
            cut = time.monotonic() - opened
            assert handshake_timeout - 0.5 <= cut <= handshake_timeout + 6, cut
        finally:
            for s in stallers:
                s.close()
        timeouts = server.wait_count(lambda r: r.get("result") == "handshake_timeout", stallers_n, timeout=15)
        assert all(r["refusal"] == "handshake_timeout" for r in timeouts)
        assert len([r for r in server.connections() if r["result"] == "ok"]) == real_n
        assert server.wait_metric(REFUSALS, stallers_n, reason="handshake_timeout") == stallers_n


# --- 5. reload -----------------------------------------------------------------------------------------------


def _serial(info: Any) -> int:
    return int(info.peer_certificate.serial_number)


def test_sighup_new_certificate_for_new_connections_open_ones_keep_flowing(
    pki: dict[str, Path], tmp_path: Path
) -> None:
    other = write_dev_pki(tmp_path / "other", alg="ecdsa", names=("localhost", HOST))  # another CA and serial
    cert, key, config = tmp_path / "live.pem", tmp_path / "live.key", tmp_path / "pqproxy.toml"
    cert.write_bytes(pki["server"].read_bytes())
    key.write_bytes(pki["server_key"].read_bytes())
    trust = [ca_of(pki), ca_of(other)]
    first_serial = x509.load_pem_x509_certificate(pki["server"].read_bytes()).serial_number
    second_serial = x509.load_pem_x509_certificate(other["server"].read_bytes()).serial_number
    with backend() as echo:
        config.write_text(f'upstream = "{echo.address}"\ncert = "{cert}"\nkey = "{key}"\n'
                          "[limits]\ndrain_timeout = 1\n")
        with running("server", ["--config", str(config)], workers=2) as server:
            with EngineClient(server.port, engine_config(pki, trust_store=trust)) as long_lived:
                info = long_lived.handshake()
                assert info is not None and _serial(info) == first_serial
                long_lived.send(b"before reload\n")
                assert long_lived.read_until(14) == b"before reload\n"

                # New files in place (another CA, another serial), then SIGHUP.
                key.write_bytes(other["server_key"].read_bytes())
                cert.write_bytes(other["server"].read_bytes())
                server.signal(signal.SIGHUP)
                assert server.wait_metric("pqproxy_config_reloads_total", 1, result="ok") == 1
                server.wait_count(lambda r: r.get("event") == "reloaded", 2)

                with EngineClient(server.port, engine_config(pki, trust_store=trust)) as fresh:
                    info = fresh.handshake()
                    assert info is not None and _serial(info) == second_serial, "the next connection sees the new one"
                # The connection opened before the reload still flows.
                long_lived.send(b"after reload\n")
                assert long_lived.read_until(27) == b"before reload\nafter reload\n"

                # A broken configuration: logged, counted, and the proxy goes on with the last good one.
                config.write_text("upstream = [this is not TOML\n")
                server.signal(signal.SIGHUP)
                failed = server.wait_for(lambda r: r.get("event") == "reload_failed")
                assert "not valid TOML" in failed["error"]
                assert server.wait_metric("pqproxy_config_reloads_total", 1, result="error") == 1
                assert server.metric("pqproxy_config_reloads_total", result="ok") == 1
                with EngineClient(server.port, engine_config(pki, trust_store=trust)) as later:
                    info = later.handshake()
                    assert info is not None and _serial(info) == second_serial
                    later.send(b"still serving\n")
                    assert later.read_until(14) == b"still serving\n"
                long_lived.send(b"!")
                assert long_lived.read_until(28).endswith(b"!")
            assert server.proc.proc.poll() is None


# --- 6. drain ---------------------------------------------------------------------------------------------


def _refused_or_reset(port: int) -> bool:
    """A new connection attempt is turned away: refused, reset, or closed before any ServerHello."""
    try:
        s = socket.create_connection((HOST, port), timeout=5)
    except ConnectionRefusedError:
        return True
    with s:
        try:
            s.sendall(build_client_hello(HelloSpec(server_name="localhost")).records())
            return s.recv(100) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True


def test_sigterm_drains_in_flight_transfer_then_exits_zero(pki: dict[str, Path]) -> None:
    drain_timeout, chunk, chunks, pause = 8.0, 32 * 1024, 20, 0.1  # ~2 s of throttled sending
    with backend("collect") as collect, \
            running("server", server_args(pki, collect.address, "--drain-timeout", str(drain_timeout)),
                    workers=2) as server:
        with EngineClient(server.port, engine_config(pki), timeout=20) as c:
            assert c.handshake() is not None
            digest = hashlib.sha256()
            errors: list[BaseException] = []

            def throttled_sender() -> None:
                try:
                    for i in range(chunks):
                        data = pattern(i, chunk)
                        digest.update(data)
                        c.send(data)
                        time.sleep(pause)
                except BaseException as exc:
                    errors.append(exc)

            sender = threading.Thread(target=throttled_sender)
            sender.start()
            time.sleep(0.5)
            sigterm = time.monotonic()
            server.signal(signal.SIGTERM)
            # Draining: /readyz says so, the workers stop accepting, new connections are turned away.
            deadline = time.monotonic() + 3
            while server.get("/readyz") != (503, "draining\n"):
                assert time.monotonic() < deadline, server.get("/readyz")
                time.sleep(0.02)
            server.wait_count(lambda r: r.get("event") == "draining", 2, timeout=3)
            time.sleep(0.1)
            assert _refused_or_reset(server.port)
            assert sender.is_alive(), "the transfer should still be in flight while we checked"
            assert server.get("/readyz") == (503, "draining\n")
            sender.join(20)
            assert not sender.is_alive() and not errors, errors
            c.close_write()
            reply = f"got {chunk * chunks} {digest.hexdigest()}".encode()
            assert c.read_until(len(reply), timeout=10) == reply  # byte-exact, after SIGTERM
        server.proc.proc.wait(drain_timeout + 5)
        assert server.proc.proc.returncode == 0
        assert time.monotonic() - sigterm < drain_timeout, "nothing was left open: no need to wait the drain out"
        record = server.wait_for(lambda r: is_connection(r) and r.get("bytes_up") == chunk * chunks)
        assert record["result"] == "ok"


def test_drain_timeout_cuts_an_idle_connection(pki: dict[str, Path]) -> None:
    drain_timeout = 1.5
    with backend() as echo, \
            running("server", server_args(pki, echo.address, "--drain-timeout", str(drain_timeout)),
                    workers=1, admin=False) as server:
        with EngineClient(server.port, engine_config(pki), timeout=10) as c:
            assert c.handshake() is not None
            c.send(b"ping")
            assert c.read_until(4) == b"ping"
            sigterm = time.monotonic()
            server.signal(signal.SIGTERM)
            c.read_to_end(timeout=drain_timeout + 5)  # nothing more to say: we sit idle until cut
            cut = time.monotonic() - sigterm
            assert c.reset and not c.peer_closed, "a drain cut is a reset: the client must not take it for an end"
        assert drain_timeout - 0.3 <= cut <= drain_timeout + 2.5, cut
        server.proc.proc.wait(10)
        assert server.proc.proc.returncode == 0
        assert time.monotonic() - sigterm <= drain_timeout + 4
        record = server.wait_for(is_connection)
        assert record["result"] == "drain_timeout" and record["reset"] == "both"
        assert server.wait_for(lambda r: r.get("event") == "drain_timeout")["cancelled"] == 1


def test_sigterm_while_workers_start_still_drains_and_leaves_nothing(pki: dict[str, Path]) -> None:
    server = Sidecar("server", server_args(pki, f"{HOST}:9", "--drain-timeout", "1"), workers=2, admin=False,
                     wait=False)
    try:
        server.wait_for(lambda r: r.get("event") == "listening", timeout=30)  # a worker is up, maybe not both
        server.signal(signal.SIGTERM)
        assert server.proc.proc.wait(15) == 0
    finally:
        server.stop()  # asserts that no worker outlived the supervisor


def test_workers_exit_when_the_supervisor_is_killed(pki: dict[str, Path]) -> None:
    with running("server", server_args(pki, f"{HOST}:9", "--drain-timeout", "1"), workers=2, admin=False) as server:
        server.signal(signal.SIGKILL)  # no drain, no goodbye: the workers must notice by themselves
        server.proc.proc.wait(5)
        deadline = time.monotonic() + 5
        while group_members(server.pid):
            assert time.monotonic() < deadline, "orphaned workers kept running"
            time.sleep(0.05)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, server.port), timeout=2).close()
        assert len([r for r in server.records() if r.get("event") == "supervisor_gone"]) == 2


# --- 7. upstream down ---------------------------------------------------------------------------------------


def test_upstream_down_after_the_handshake_is_a_reset_not_an_empty_answer(pki: dict[str, Path]) -> None:
    """Issue 18: a close_notify here read, to a client reading to EOF, as a service that answered nothing. A
    client of the service itself would have read an error (ECONNREFUSED): through the sidecar it reads a reset."""
    dead = f"{HOST}:{free_port()}"  # nothing listens there
    with running("server", server_args(pki, dead, "--drain-timeout", "1")) as server:
        with EngineClient(server.port, engine_config(pki)) as c:
            info = c.handshake()
            assert info is not None and info.group == HYBRID
            c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")  # a client speaks at once, as real ones do
            c.read_to_end()
            assert c.reset and not c.peer_closed, f"a reset, no close_notify: {c.events}"
            assert not c.alerts_received()
        record = server.wait_for(is_connection)
        assert record["result"] == "upstream_error" and record["error"].startswith("connect_refused")
        assert record["reset"] == "downstream"
        assert server.wait_metric("pqproxy_upstream_errors_total", 1, kind="connect_refused") == 1
        assert server.metric(RESETS, direction="downstream") == 1


@pytest.mark.interop
def test_upstream_down_node_client_sees_a_reset(pki: dict[str, Path]) -> None:
    node_binary()
    with running("server", server_args(pki, f"{HOST}:{free_port()}", "--drain-timeout", "1")) as server:
        events = run_node_client({"port": server.port, "ca": str(pki["ca"]), "servername": "localhost",
                                  "send": 100, "expect": 100}, timeout=20)
        assert only(events, "handshake")[0]["group"] == HYBRID
        assert [e["code"] for e in only(events, "error")] == ["ECONNRESET"], events
        assert not any(a["name"] == "close_notify" and a["direction"] == "received" for a in only(events, "alert"))
        server.wait_for(lambda r: r.get("result") == "upstream_error")


def test_upstream_that_never_answers_the_syn_is_a_connect_timeout_and_a_reset(pki: dict[str, Path]) -> None:
    # A listener whose accept queue is full: Linux drops the SYNs of further connects, which then hang.
    with socket.socket() as full:
        full.bind((HOST, 0))
        full.listen(0)
        fillers = [socket.socket() for _ in range(3)]
        for f in fillers:
            f.setblocking(False)
            f.connect_ex(full.getsockname())
        try:
            upstream = "{}:{}".format(*full.getsockname())
            with running("server", server_args(pki, upstream, "--connect-timeout", "0.5",
                                               "--drain-timeout", "1")) as server:
                with EngineClient(server.port, engine_config(pki)) as c:
                    assert c.handshake() is not None
                    c.send(b"hello")
                    began = time.monotonic()
                    c.read_to_end(timeout=5)
                    waited = time.monotonic() - began
                    assert c.reset and not c.peer_closed, c.events
                assert 0.3 <= waited <= 3.0, waited
                record = server.wait_for(is_connection)
                assert record["result"] == "upstream_error" and record["error"].startswith("connect_timeout")
                assert server.wait_metric("pqproxy_upstream_errors_total", 1, kind="connect_timeout") == 1
        finally:
            for f in fillers:
                f.close()


def test_upstream_connect_first_data_connects_only_when_the_client_speaks(pki: dict[str, Path]) -> None:
    with backend() as echo, \
            running("server", server_args(pki, echo.address, "--upstream-connect", "first-data",
                                          "--drain-timeout", "1")) as server:
        with EngineClient(server.port, engine_config(pki)) as c:
            assert c.handshake() is not None
            time.sleep(0.3)
            assert echo.accepted == 0, "no upstream connection before the client's first bytes"
            c.send(b"first words")
            assert c.read_until(11) == b"first words"
            assert echo.accepted == 1
        record = server.wait_for(is_connection)
        assert record["result"] == "ok" and record["bytes_up"] == 11 and record["bytes_down"] == 11
        assert record["upstream"] == echo.address
        # A client that handshakes and leaves without a word never costs the upstream a connection.
        with EngineClient(server.port, engine_config(pki)) as c:
            assert c.handshake() is not None
            c.close_write()
            c.read_to_end()
            assert c.peer_closed and c.eof and not c.reset
        record = server.wait_count(is_connection, 2)[-1]
        assert record["result"] == "ok" and "upstream" not in record and record["bytes_up"] == 0
        assert echo.accepted == 1


def test_upstream_connect_first_data_silent_client_is_an_idle_timeout(pki: dict[str, Path]) -> None:
    with backend() as echo, \
            running("server", server_args(pki, echo.address, "--upstream-connect", "first-data",
                                          "--idle-timeout", "0.5", "--drain-timeout", "1")) as server:
        with EngineClient(server.port, engine_config(pki)) as c:
            assert c.handshake() is not None
            began = time.monotonic()
            c.read_to_end(timeout=5)
            assert c.peer_closed and c.eof and not c.reset
            assert 0.4 <= time.monotonic() - began <= 2.5
        record = server.wait_for(is_connection)
        assert record["result"] == "idle_timeout" and "upstream" not in record
        assert echo.accepted == 0


def test_client_remote_connect_first_data_connects_only_when_the_application_speaks(pki: dict[str, Path]) -> None:
    with backend() as echo, \
            running("server", server_args(pki, echo.address, "--drain-timeout", "1")) as server, \
            running("client", client_args(pki, server.port, "--remote-connect", "first-data",
                                          "--drain-timeout", "1"), admin=False) as client:
        with socket.create_connection((HOST, client.port), timeout=TIMEOUT) as app:
            time.sleep(0.3)
            assert server.metric(HANDSHAKES, result="ok", group=HYBRID) == 0, "no handshake before the first bytes"
            assert not server.connections() and echo.accepted == 0
            app.sendall(b"first words")
            received = b""
            while len(received) < 11 and (chunk := app.recv(64)):
                received += chunk
            assert received == b"first words"
            assert server.metric(HANDSHAKES, result="ok", group=HYBRID) == 1 and echo.accepted == 1
        record = client.wait_for(is_connection)
        assert record["result"] == "ok" and record["group"] == HYBRID, record
        assert record["bytes_up"] == 11 and record["bytes_down"] == 11 and record["upstream"] == f"{HOST}:{server.port}"
        # An application that connects and leaves without a word never costs the remote a connection.
        with socket.create_connection((HOST, client.port), timeout=TIMEOUT) as app:
            app.shutdown(socket.SHUT_WR)
            assert app.recv(64) == b""
        record = client.wait_count(is_connection, 2)[-1]
        assert record["result"] == "ok" and "upstream" not in record and "group" not in record, record
        assert server.metric(HANDSHAKES, result="ok", group=HYBRID) == 1 and echo.accepted == 1


def test_client_remote_connect_first_data_silent_application_is_an_idle_timeout(pki: dict[str, Path]) -> None:
    with backend() as echo, \
            running("server", server_args(pki, echo.address, "--drain-timeout", "1")) as server, \
            running("client", client_args(pki, server.port, "--remote-connect", "first-data", "--idle-timeout", "0.5",
                                          "--drain-timeout", "1"), admin=False) as client:
        with socket.create_connection((HOST, client.port), timeout=TIMEOUT) as app:
            began = time.monotonic()
            assert app.recv(64) == b""  # closed by the client sidecar: FIN, not a reset
            assert 0.4 <= time.monotonic() - began <= 2.5
        record = client.wait_for(is_connection)
        assert record["result"] == "idle_timeout" and "upstream" not in record, record
        assert server.metric(HANDSHAKES, result="ok", group=HYBRID) == 0 and not server.connections()


# --- 8. idle timeout ----------------------------------------------------------------------------------------


def test_idle_connection_is_closed_after_idle_timeout(pki: dict[str, Path]) -> None:
    with backend() as echo, \
            running("server", server_args(pki, echo.address, "--idle-timeout", "1", "--drain-timeout", "1"),
                    admin=False) as server:
        with EngineClient(server.port, engine_config(pki)) as c:
            assert c.handshake() is not None
            c.send(b"one byte then silence")
            assert c.read_until(21) == b"one byte then silence"
            quiet = time.monotonic()
            c.read_to_end(timeout=5)  # we send nothing for longer than the idle timeout
            closed = time.monotonic() - quiet
            assert c.eof or c.reset
        assert 0.7 <= closed <= 2.0, closed
        record = server.wait_for(is_connection)
        assert record["result"] == "idle_timeout"


# --- 9. max_connections ---------------------------------------------------------------------------------------


def test_max_connections_refuses_the_sixth(pki: dict[str, Path]) -> None:
    with backend() as echo, \
            running("server", server_args(pki, echo.address, "--max-connections", "5", "--drain-timeout", "1"),
                    workers=1) as server:
        clients = [EngineClient(server.port, engine_config(pki)) for _ in range(5)]
        try:
            for c in clients:
                assert c.handshake() is not None
            assert server.metric("pqproxy_active_connections", listener=f"{HOST}:{server.port}") == 5
            assert _refused_or_reset(server.port), "the sixth concurrent connection must be closed"
            assert server.wait_metric(REFUSALS, 1, reason="max_connections") == 1
            server.wait_for(lambda r: r.get("event") == "refused" and r.get("refusal") == "max_connections")
            # One leaves: there is room again.
            clients.pop().close()
            server.wait_for(is_connection)
            deadline = time.monotonic() + 5
            while server.metric("pqproxy_active_connections", listener=f"{HOST}:{server.port}") > 4:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            with EngineClient(server.port, engine_config(pki)) as again:
                assert again.handshake() is not None
            assert server.metric(REFUSALS, reason="max_connections") == 1
        finally:
            for c in clients:
                c.close()


# --- 10. half-close ---------------------------------------------------------------------------------------


def test_half_close_through_the_pipe(pipe: tuple[Sidecar, Sidecar, Backend]) -> None:
    _, client, _ = pipe
    # The backend answers only after it has seen EOF: the answer proves the half-close went all the way
    # through both sidecars while the way back stayed open.
    body = pattern(10, 1_000_000)
    answer = exchange(client.port, COLLECT + body)
    assert answer == f"got {len(COLLECT) + len(body)} {hashlib.sha256(COLLECT + body).hexdigest()}".encode()
    # And a plain echo of 3 MiB after our shutdown(SHUT_WR) comes back whole.
    payload = pattern(11, 3 * 1024 * 1024 + 5)
    assert hashlib.sha256(exchange(client.port, payload)).digest() == hashlib.sha256(payload).digest()
