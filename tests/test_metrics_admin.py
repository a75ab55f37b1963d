"""Metrics (in-process and multi-process) and the admin HTTP endpoint over real loopback sockets."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
from prometheus_client import CONTENT_TYPE_LATEST, values
from prometheus_client.parser import text_string_to_metric_families

from pqproxy import __version__
from pqproxy.proxy import admin
from pqproxy.proxy.admin import serve_admin
from pqproxy.proxy.metrics import MAX_LABEL_VALUES, MULTIPROC_ENV, Metrics, clear_multiprocess_dir

# -- helpers -----------------------------------------------------------------------------------------------


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a render, keyed by (sample name, labels)."""
    body, _ = metrics.render()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: Metrics | dict[Any, float], name: str, **labels: str) -> float | None:
    table = samples(metrics) if isinstance(metrics, Metrics) else metrics
    return table.get((name, frozenset(labels.items())))


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    yield


# -- in-process metrics ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("in_process")
def test_connections_and_handshakes() -> None:
    m = Metrics()
    for _ in range(3):
        m.connection_opened("public")
    m.connection_closed("public")
    m.connection_opened("internal")
    m.handshake("ok", "X25519MLKEM768", 0.004, 1442, True)
    m.handshake("ok", "X25519MLKEM768", 0.020, 1500, True)
    m.handshake("ok", "X25519", 0.0009, 300, False)
    m.handshake("tls_error", None, 0.5, None, False)
    m.handshake("timeout", None, None, 2000, False)

    t = samples(m)
    assert value(t, "pqproxy_active_connections", listener="public") == 2
    assert value(t, "pqproxy_active_connections", listener="internal") == 1
    assert value(t, "pqproxy_connections_total", listener="public") == 3
    assert value(t, "pqproxy_handshakes_total", result="ok", group="X25519MLKEM768") == 2
    assert value(t, "pqproxy_handshakes_total", result="ok", group="X25519") == 1
    assert value(t, "pqproxy_handshakes_total", result="tls_error", group="none") == 1
    assert value(t, "pqproxy_handshakes_total", result="timeout", group="none") == 1

    # Duration: observed when given, labelled by group; the timeout (seconds=None) is not observed.
    assert value(t, "pqproxy_handshake_duration_seconds_count", group="X25519MLKEM768") == 2
    assert value(t, "pqproxy_handshake_duration_seconds_sum", group="X25519MLKEM768") == pytest.approx(0.024)
    assert value(t, "pqproxy_handshake_duration_seconds_bucket", group="X25519MLKEM768", le="0.005") == 1
    assert value(t, "pqproxy_handshake_duration_seconds_bucket", group="X25519MLKEM768", le="0.025") == 2
    assert value(t, "pqproxy_handshake_duration_seconds_bucket", group="X25519", le="0.001") == 1
    assert value(t, "pqproxy_handshake_duration_seconds_count", group="none") == 1
    les = {dict(labels)["le"] for (name, labels) in t if name == "pqproxy_handshake_duration_seconds_bucket"}
    assert {"0.001", "10.0", "+Inf"} <= les

    # ClientHello sizes: 300, 1442, 1500, 2000 (the timed-out one still had a ClientHello).
    assert value(t, "pqproxy_client_hello_size_bytes_count") == 4
    assert value(t, "pqproxy_client_hello_size_bytes_sum") == 300 + 1442 + 1500 + 2000
    assert value(t, "pqproxy_client_hello_size_bytes_bucket", le="256.0") == 0
    assert value(t, "pqproxy_client_hello_size_bytes_bucket", le="512.0") == 1
    assert value(t, "pqproxy_client_hello_size_bytes_bucket", le="1500.0") == 3
    assert value(t, "pqproxy_client_hello_size_bytes_bucket", le="2048.0") == 4
    assert value(t, "pqproxy_client_hello_size_bytes_bucket", le="65536.0") == 4

    # Sessions: only established handshakes count, failed ones are no session.
    assert value(t, "pqproxy_quantum_safe_sessions_total", quantum_safe="true") == 2
    assert value(t, "pqproxy_quantum_safe_sessions_total", quantum_safe="false") == 1


@pytest.mark.usefixtures("in_process")
def test_refusals_bytes_upstream_errors_reloads_build_info() -> None:
    m = Metrics()
    for reason in ("no_hybrid_group", "tls12_refused", "client_certificate", "client_hello_too_large",
                   "handshake_timeout", "max_connections", "tls_alert", "tls_alert"):
        m.refusal(reason)
    m.bytes_proxied("upstream", 100)
    m.bytes_proxied("upstream", 23)
    m.bytes_proxied("downstream", 65536)
    m.upstream_error("connect_refused")
    m.upstream_error("connect_timeout")
    m.upstream_error("connect_refused")
    m.reload("ok")
    m.reload("error")
    m.reload("ok")

    t = samples(m)
    assert value(t, "pqproxy_refusals_total", reason="tls_alert") == 2
    assert value(t, "pqproxy_refusals_total", reason="no_hybrid_group") == 1
    assert value(t, "pqproxy_refusals_total", reason="client_hello_too_large") == 1
    assert value(t, "pqproxy_bytes_proxied_total", direction="upstream") == 123
    assert value(t, "pqproxy_bytes_proxied_total", direction="downstream") == 65536
    assert value(t, "pqproxy_upstream_errors_total", kind="connect_refused") == 2
    assert value(t, "pqproxy_upstream_errors_total", kind="connect_timeout") == 1
    assert value(t, "pqproxy_config_reloads_total", result="ok") == 2
    assert value(t, "pqproxy_config_reloads_total", result="error") == 1
    assert value(t, "pqproxy_build_info", version=__version__) == 1
    assert value(Metrics(version="9.9.9"), "pqproxy_build_info", version="9.9.9") == 1

    # Every name is ours, and nothing carries an address or a name from the wire.
    assert all(name.startswith("pqproxy_") for name, _ in t)
    label_names = {k for _, labels in t for k, _ in labels}
    assert label_names <= {"listener", "result", "group", "le", "quantum_safe", "reason", "direction", "kind",
                           "version"}

    body, content_type = m.render()
    assert content_type == CONTENT_TYPE_LATEST
    assert b"# TYPE pqproxy_handshakes_total counter" in body


@pytest.mark.usefixtures("in_process")
def test_instances_are_independent() -> None:
    a, b = Metrics(), Metrics()
    a.connection_opened("x")
    a.refusal("max_connections")
    assert value(a, "pqproxy_connections_total", listener="x") == 1
    assert value(b, "pqproxy_connections_total", listener="x") is None
    assert value(b, "pqproxy_refusals_total", reason="max_connections") is None


@pytest.mark.usefixtures("in_process")
def test_label_values_are_capped() -> None:
    """A bug that labels with unbounded values cannot grow the series count without bound."""
    m = Metrics()
    for i in range(MAX_LABEL_VALUES + 50):
        m.upstream_error(f"kind{i}")
    t = samples(m)
    kinds = {dict(labels)["kind"] for name, labels in t if name == "pqproxy_upstream_errors_total"}
    assert len(kinds) == MAX_LABEL_VALUES + 1
    assert value(t, "pqproxy_upstream_errors_total", kind="other") == 50
    assert value(t, "pqproxy_upstream_errors_total", kind="kind0") == 1
    m.upstream_error("kind0")  # values seen before the cap keep their own series
    assert value(m, "pqproxy_upstream_errors_total", kind="kind0") == 2


@pytest.mark.usefixtures("in_process")
def test_hot_path_is_cheap() -> None:
    m = Metrics()
    m.bytes_proxied("upstream", 1)
    n = 20_000
    started = time.perf_counter()
    for _ in range(n):
        m.bytes_proxied("upstream", 16384)
    per_call = (time.perf_counter() - started) / n
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} us per bytes_proxied"


# -- multi-process mode ------------------------------------------------------------------------------------


def test_env_set_after_import_still_selects_multiprocess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """prometheus_client is imported (by this module) before the variable is set; Metrics copes."""
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    Metrics()
    assert values.ValueClass is values.MutexValue  # in-memory values, as after an import without the variable
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    worker = Metrics()
    worker.connection_opened("main")
    worker.handshake("ok", "X25519MLKEM768", 0.003, 1442, True)
    assert list(tmp_path.glob("*.db")), "no metric files were written"

    supervisor = Metrics()
    t = samples(supervisor)
    assert value(t, "pqproxy_connections_total", listener="main") == 1
    assert value(t, "pqproxy_active_connections", listener="main") == 1
    assert value(t, "pqproxy_handshakes_total", result="ok", group="X25519MLKEM768") == 1

    # Back to in-process once the variable is gone: nothing more is written to the directory.
    monkeypatch.delenv(MULTIPROC_ENV)
    before = {p: p.stat().st_size for p in tmp_path.glob("*.db")}
    local = Metrics()
    local.upstream_error("reset")
    assert values.ValueClass is values.MutexValue
    assert value(local, "pqproxy_upstream_errors_total", kind="reset") == 1
    assert {p: p.stat().st_size for p in tmp_path.glob("*.db")} == before


def _worker(opened: int, closed: int, group: str, pids: Any, leave: Any) -> None:
    """One spawned worker process: record some traffic, report, stay alive until told to leave."""
    m = Metrics()
    for _ in range(opened):
        m.connection_opened("main")
    for _ in range(closed):
        m.connection_closed("main")
    m.handshake("ok", group, 0.002, 1442, True)
    m.bytes_proxied("upstream", 1000 * opened)
    m.refusal("tls12_refused")
    pids.put(os.getpid())
    leave.wait(60)


def test_multiprocess_aggregation_across_real_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    (tmp_path / "counter_999999.db").write_bytes(b"stale")  # a file of an earlier run, cleared below
    clear_multiprocess_dir(tmp_path)
    assert not list(tmp_path.iterdir())

    ctx = multiprocessing.get_context("spawn")
    pids, leave_a, leave_b = ctx.Queue(), ctx.Event(), ctx.Event()
    a = ctx.Process(target=_worker, args=(5, 2, "X25519MLKEM768", pids, leave_a))
    b = ctx.Process(target=_worker, args=(4, 0, "SecP256r1MLKEM768", pids, leave_b))
    a.start()
    b.start()
    try:
        reported = {pids.get(timeout=60), pids.get(timeout=60)}
        assert reported == {a.pid, b.pid}
        supervisor = Metrics()
        t = samples(supervisor)
        assert value(t, "pqproxy_connections_total", listener="main") == 9
        assert value(t, "pqproxy_active_connections", listener="main") == 3 + 4  # livesum over live workers
        assert value(t, "pqproxy_bytes_proxied_total", direction="upstream") == 9000
        assert value(t, "pqproxy_refusals_total", reason="tls12_refused") == 2
        assert value(t, "pqproxy_handshakes_total", result="ok", group="X25519MLKEM768") == 1
        assert value(t, "pqproxy_handshakes_total", result="ok", group="SecP256r1MLKEM768") == 1
        assert value(t, "pqproxy_handshake_duration_seconds_count", group="X25519MLKEM768") == 1
        assert value(t, "pqproxy_client_hello_size_bytes_count") == 2
        assert value(t, "pqproxy_client_hello_size_bytes_bucket", le="1500.0") == 2
        assert value(t, "pqproxy_quantum_safe_sessions_total", quantum_safe="true") == 2
        assert value(t, "pqproxy_build_info", version=__version__) == 1  # max, not a sum per process
        assert not any("pid" in dict(labels) for _, labels in t)

        # Worker a exits; the supervisor marks it dead: its open connections leave the gauge, its counts stay.
        leave_a.set()
        a.join(30)
        assert a.exitcode == 0
        assert a.pid is not None
        supervisor.mark_process_dead(a.pid)
        t = samples(supervisor)
        assert value(t, "pqproxy_active_connections", listener="main") == 4
        assert value(t, "pqproxy_connections_total", listener="main") == 9
    finally:
        leave_a.set()
        leave_b.set()
        for p in (a, b):
            p.join(30)
            if p.is_alive():
                p.kill()
    assert b.exitcode == 0


def test_multiprocess_dir_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="not a directory"):
        Metrics()


# -- the admin endpoint ------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class Client:
    """A minimal keep-alive HTTP/1.1 client on h11 (the other end of the one under test)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def request(self, method: str, path: str, *headers: tuple[str, str]) -> Reply:
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        data = self.conn.send(h11.Request(method=method, target=path, headers=[("Host", "test"), *headers])) or b""
        data += self.conn.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(data)
        response: h11.Response | None = None
        body = b""
        with trio.fail_after(5):
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    self.conn.receive_data(await self.stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    raise AssertionError(f"unexpected {event!r}")
        assert response is not None
        headers_out = {k.decode(): v.decode() for k, v in response.headers}
        return Reply(response.status_code, headers_out, body)


async def get(port: int, path: str, method: str = "GET") -> Reply:
    client = await Client.connect(port)
    async with client.stream:
        return await client.request(method, path, ("Connection", "close"))


async def read_until_eof(stream: trio.SocketStream, limit: float) -> bytes:
    """What the server sends before it closes, failing if it has not closed within ``limit`` seconds."""
    received = b""
    with trio.fail_after(limit):
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:  # reset: closed too
                return received
            if not chunk:
                return received
            received += chunk


class State:
    def __init__(self) -> None:
        self.ready = True
        self.draining = False


@pytest.fixture
def state() -> State:
    return State()


async def start(nursery: trio.Nursery, state: State, render: Any = None, **kwargs: Any) -> int:
    if render is None:
        render = Metrics().render
    host, port = await nursery.start(partial(serve_admin, "127.0.0.1", 0, render, lambda: state.ready,
                                             draining=lambda: state.draining, **kwargs))
    assert host == "127.0.0.1"
    assert port > 0
    return int(port)


@pytest.mark.usefixtures("in_process")
async def test_admin_routes(state: State) -> None:
    metrics = Metrics()
    metrics.handshake("ok", "X25519MLKEM768", 0.003, 1442, True)
    async with trio.open_nursery() as nursery:
        port = await start(nursery, state, metrics.render)

        r = await get(port, "/metrics")
        assert r.status == 200
        assert r.headers["content-type"] == CONTENT_TYPE_LATEST
        assert int(r.headers["content-length"]) == len(r.body)
        names = {f.name for f in text_string_to_metric_families(r.body.decode())}
        assert {"pqproxy_handshakes", "pqproxy_build_info", "pqproxy_active_connections"} <= names

        r = await get(port, "/metrics?name[]=pqproxy_handshakes_total")  # query strings are ignored
        assert r.status == 200

        r = await get(port, "/healthz")
        assert (r.status, r.body, r.headers["content-type"]) == (200, b"ok\n", "text/plain; charset=utf-8")

        r = await get(port, "/readyz")
        assert (r.status, r.body) == (200, b"ready\n")
        state.ready = False
        r = await get(port, "/readyz")
        assert (r.status, r.body, r.headers["content-type"]) == (503, b"not ready\n", "text/plain; charset=utf-8")
        state.draining = True
        r = await get(port, "/readyz")
        assert (r.status, r.body) == (503, b"draining\n")
        r = await get(port, "/healthz")  # alive while draining
        assert r.status == 200

        r = await get(port, "/nope")
        assert r.status == 404
        r = await get(port, "/metrics/extra")
        assert r.status == 404
        for method in ("POST", "PUT", "DELETE"):
            r = await get(port, "/metrics", method)
            assert r.status == 405
            assert r.headers["allow"] == "GET, HEAD"

        r = await get(port, "/healthz", "HEAD")
        assert (r.status, r.body, r.headers["content-length"]) == (200, b"", "3")
        nursery.cancel_scope.cancel()


async def test_admin_keep_alive_serves_several_requests(state: State) -> None:
    async with trio.open_nursery() as nursery:
        port = await start(nursery, state)
        client = await Client.connect(port)
        async with client.stream:
            assert (await client.request("GET", "/healthz")).status == 200
            assert (await client.request("GET", "/nope")).status == 404  # a 404 keeps the connection
            assert (await client.request("GET", "/metrics")).status == 200
            assert (await client.request("GET", "/readyz")).status == 200
        nursery.cancel_scope.cancel()


async def test_admin_render_failure_is_a_500_not_a_crash(state: State) -> None:
    def broken() -> tuple[bytes, str]:
        raise RuntimeError("boom")

    async with trio.open_nursery() as nursery:
        port = await start(nursery, state, broken)
        assert (await get(port, "/metrics")).status == 500
        assert (await get(port, "/healthz")).status == 200
        nursery.cancel_scope.cancel()


async def test_admin_oversized_or_malformed_request(state: State) -> None:
    async with trio.open_nursery() as nursery:
        port = await start(nursery, state)

        # A head over the bound gets 431 and the connection closes. The size is a whole number of the
        # server's reads so that it has read every byte when it closes (else the kernel sends a reset).
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: "
            await stream.send_all(head + b"a" * (admin.MAX_REQUEST_HEAD + admin.RECV_CHUNK - len(head)))
            reply = await read_until_eof(stream, 5)
        assert reply.startswith(b"HTTP/1.1 431 "), reply[:80]
        assert b"connection: close" in reply.lower()

        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
            reply = await read_until_eof(stream, 5)
        assert reply.startswith(b"HTTP/1.1 400 "), reply[:80]

        # A body over the bound: 413.
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            body = b"x" * (admin.MAX_REQUEST_BODY + 1)
            await stream.send_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            reply = await read_until_eof(stream, 5)
        assert reply.startswith(b"HTTP/1.1 413 "), reply[:80]

        assert (await get(port, "/healthz")).status == 200
        nursery.cancel_scope.cancel()


async def test_admin_slow_loris_is_cut_and_blocks_nobody(state: State) -> None:
    read_timeout = 0.5
    async with trio.open_nursery() as nursery:
        port = await start(nursery, state, read_timeout=read_timeout)

        silent = await trio.open_tcp_stream("127.0.0.1", port)
        await silent.send_all(b"GET /metr")  # half a request line, then nothing
        trickler = await trio.open_tcp_stream("127.0.0.1", port)

        async def trickle() -> None:
            # Always sending, never finishing: the deadline is for the whole request, not per read.
            try:
                for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 100:
                    await trickler.send_all(bytes([byte]))
                    await trio.sleep(0.05)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        nursery.start_soon(trickle)

        # Meanwhile another client is served at once.
        started = trio.current_time()
        r = await get(port, "/healthz")
        assert r.status == 200
        assert trio.current_time() - started < read_timeout / 2

        async with silent:
            assert await read_until_eof(silent, read_timeout + 2) == b""
        cut_after = trio.current_time() - started
        async with trickler:
            assert await read_until_eof(trickler, read_timeout + 2) == b""
        assert cut_after >= read_timeout * 0.8
        assert trio.current_time() - started < read_timeout + 2

        assert (await get(port, "/readyz")).status == 200
        nursery.cancel_scope.cancel()


async def test_admin_connection_limit(state: State) -> None:
    async with trio.open_nursery() as nursery:
        port = await start(nursery, state, max_connections=2, read_timeout=2)
        holders = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
        await trio.sleep(0.1)  # let the server accept both
        extra = await trio.open_tcp_stream("127.0.0.1", port)
        async with extra:
            assert await read_until_eof(extra, 1) == b""  # closed at once
        for h in holders:
            await h.aclose()
        await trio.sleep(0.1)
        assert (await get(port, "/healthz")).status == 200
        nursery.cancel_scope.cancel()


async def test_admin_cancel_is_prompt_even_with_a_client_that_does_not_read(state: State) -> None:
    """The failure that ruled out hypercorn: a response stuck in a full socket must not hold the shutdown."""
    big = b"# " + b"x" * (16 * 1024 * 1024) + b"\n"
    idle = stalled = None
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await start(nursery, state, lambda: (big, "text/plain"))
            idle = await trio.open_tcp_stream("127.0.0.1", port)  # a keep-alive connection between requests
            stalled = await trio.open_tcp_stream("127.0.0.1", port)
            await stalled.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # ... and never read
            await trio.sleep(0.3)
            cancelled_at = trio.current_time()
            nursery.cancel_scope.cancel()
    assert trio.current_time() - cancelled_at < 1
    # ... and the listener is gone.
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)
    for s in (idle, stalled):
        if s is not None:
            await s.aclose()


async def test_admin_rejects_a_bad_timeout(state: State) -> None:
    with pytest.raises(ValueError):
        await serve_admin("127.0.0.1", 0, Metrics().render, lambda: True, read_timeout=0)


def test_orphaned_metrics_dirs_of_dead_supervisors_are_removed_and_nothing_else(tmp_path: Path) -> None:
    import subprocess

    from pqproxy.proxy.supervisor import METRICS_DIR_PREFIX, remove_orphaned_metrics_dirs

    finished = subprocess.Popen(["true"])
    finished.wait()  # a pid that was alive a moment ago and is gone now (as after a SIGKILL)
    dead = tmp_path / f"{METRICS_DIR_PREFIX}{finished.pid}-abc123"
    alive = tmp_path / f"{METRICS_DIR_PREFIX}{os.getpid()}-def456"
    old_style = tmp_path / f"{METRICS_DIR_PREFIX}x7k2m9q1"  # before directories carried the pid: not ours to judge
    for d in (dead, alive, old_style):
        d.mkdir()
        (d / "counter_1.db").write_bytes(b"\0" * 16)
    not_a_dir = tmp_path / f"{METRICS_DIR_PREFIX}{finished.pid}-file"
    not_a_dir.write_text("x")

    assert remove_orphaned_metrics_dirs(str(tmp_path)) == [str(dead)]
    assert not dead.exists()
    assert alive.exists() and old_style.exists() and not_a_dir.exists()
