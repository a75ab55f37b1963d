"""Two ``pqproxy`` sidecars keyed by QKD through a real KME simulator (``pqproxy kme``, ETSI 014 over mTLS).

``require`` on both sides carries data with one fresh key per connection (both logs name the same key_ID;
the KME handed each out once); with the KME down, ``require`` refuses with a log line and a metric while
``prefer`` carries the data and counts ``pqproxy_qkd_degraded_total``; a replayed key_ID is refused with an
alert; a KME that stalls costs a bounded wait, then the policy; the link's QBER and state reach
``/metrics``, and an eavesdropper shows there as the link going down. A reload (SIGHUP) keeps the replay
guard, watches the link with the new configuration and closes the old KME client once nothing can use it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from pqproxy.certs import write_dev_pki
from pqproxy.qkd.binding import QKDIdentity
from pqproxy.qkd.client import ETSI014Client
from pqproxy.tls.alerts import AlertDescription
from pqproxy.tls.certificates import load_trust_store
from pqproxy.tls.config import ExternalPSK, TLSConfig
from tests.procs import free_port
from tests.qkd_kit import KME
from tests.sidecar_kit import HOST, Backend, EngineClient, Sidecar, client_args, server_args

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_dev_pki(tmp_path_factory.mktemp("tls"), alg="ecdsa")


@pytest.fixture(scope="module")
def kme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KME]:
    with KME(tmp_path_factory.mktemp("kme") / "pki", ("alice", "bob")) as k:
        yield k


@pytest.fixture(scope="module")
def upstream() -> Iterator[Backend]:
    backend = Backend("echo")
    yield backend
    backend.close()


def qkd(kme: KME, sae: str, mode: str, peer: str | None = None, url: str | None = None) -> list[str]:
    args = ["--qkd", mode, "--qkd-kme", url or kme.url, "--qkd-sae-id", sae, "--qkd-cert", str(kme.out / f"{sae}.pem"),
            "--qkd-key", str(kme.out / f"{sae}.key"), "--qkd-ca", str(kme.out / "ca.pem")]
    return args + (["--qkd-peer", peer] if peer else [])


def conn(mode: str):  # type: ignore[no-untyped-def]
    """A predicate for the per-connection log lines of one mode (events have an "event" key)."""
    return lambda r: r.get("mode") == mode and "event" not in r


def roundtrip(port: int, data: bytes) -> bytes:
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = bytearray()
        while chunk := s.recv(65536):
            out += chunk
        return bytes(out)


@pytest.fixture
def pair(pki: dict[str, Path], kme: KME, upstream: Backend,
         request: pytest.FixtureRequest) -> Iterator[tuple[Sidecar, Sidecar]]:
    server_mode, client_mode = getattr(request, "param", ("require", "require"))
    server = Sidecar("server", server_args(pki, upstream.address, *qkd(kme, "bob", server_mode)))
    try:
        client = Sidecar("client", client_args(pki, server.port, *qkd(kme, "alice", client_mode, "bob")))
    except BaseException:
        server.stop(check=False)
        raise
    yield server, client
    client.stop()
    server.stop()


def test_require_keys_every_connection_with_its_own_key(pair: tuple[Sidecar, Sidecar], kme: KME) -> None:
    server, client = pair
    delivered = kme.control("/link")["keys_delivered"]
    for i in range(3):
        data = f"connection {i} ".encode() * 100
        assert roundtrip(client.port, data) == data
    ours = client.wait_count(conn("client"), 3)
    theirs = server.wait_count(conn("server"), 3)
    assert [r["qkd"] for r in ours + theirs] == ["keyed"] * 6, ours + theirs
    assert all(r["group"] == "X25519MLKEM768" and r["result"] == "ok" for r in ours + theirs)
    key_ids = [r["qkd_key_id"] for r in ours]
    assert len(set(key_ids)) == 3 and sorted(key_ids) == sorted(r["qkd_key_id"] for r in theirs)
    assert kme.control("/link")["keys_delivered"] == delivered + 3  # dec_keys once per connection
    assert client.metric("pqproxy_qkd_keys_total", result="ok") == 3
    assert server.metric("pqproxy_qkd_keys_total", result="ok") == 3
    assert server.metric("pqproxy_qkd_kme_request_duration_seconds_count", operation="dec_keys") == 3
    for line in client.proc.lines + server.proc.lines:  # key_IDs, never keys
        assert '"key"' not in line and "material" not in line


def test_a_first_data_client_takes_no_key_for_a_connection_that_stays_idle(pki: dict[str, Path], kme: KME,
                                                                            upstream: Backend) -> None:
    server = Sidecar("server", server_args(pki, upstream.address, *qkd(kme, "bob", "require")))
    client = Sidecar("client", client_args(pki, server.port, "--remote-connect", "first-data",
                                           *qkd(kme, "alice", "require", "bob")))
    try:
        with socket.create_connection((HOST, client.port), timeout=TIMEOUT) as idle:
            time.sleep(0.3)
            assert client.metric("pqproxy_qkd_kme_request_duration_seconds_count", operation="enc_keys") == 0
            assert roundtrip(client.port, b"a pooled connection in use") == b"a pooled connection in use"
            idle.shutdown(socket.SHUT_WR)  # and the idle one leaves without a word
            assert idle.recv(64) == b""
        used, left = sorted(client.wait_count(conn("client"), 2), key=lambda r: "qkd" in r, reverse=True)
        assert used["qkd"] == "keyed" and used["result"] == "ok" and used["bytes_up"] == 26, used
        assert left["result"] == "ok" and "qkd" not in left and "upstream" not in left, left
        assert client.metric("pqproxy_qkd_kme_request_duration_seconds_count", operation="enc_keys") == 1
        assert server.metric("pqproxy_qkd_keys_total", result="ok") == 1
    finally:
        client.stop(check=False)
        server.stop(check=False)


def test_kme_down_require_refuses_prefer_degrades(pki: dict[str, Path], kme: KME, upstream: Backend) -> None:
    dead = f"https://127.0.0.1:{free_port()}"
    server = Sidecar("server", server_args(pki, upstream.address, *qkd(kme, "bob", "prefer", url=dead)))
    strict = Sidecar("client", client_args(pki, server.port, *qkd(kme, "alice", "require", "bob", url=dead)))
    lenient = Sidecar("client", client_args(pki, server.port, *qkd(kme, "alice", "prefer", "bob", url=dead)))
    try:
        with pytest.raises(ConnectionResetError):  # refused: the application reads an error, not an empty answer
            roundtrip(strict.port, b"secret")
        refused = strict.wait_for(conn("client"))
        assert refused["result"] == "refused" and refused["refusal"] == "qkd_required" and refused["qkd"] == "refused"
        assert "kme_connect" in refused["qkd_error"], refused
        assert strict.metric("pqproxy_refusals_total", reason="qkd_required") == 1
        assert strict.metric("pqproxy_qkd_kme_errors_total", kind="connect") >= 1

        assert roundtrip(lenient.port, b"still carried") == b"still carried"
        degraded = lenient.wait_for(conn("client"))
        assert degraded["result"] == "ok" and degraded["qkd"] == "degraded" and degraded["group"] == "X25519MLKEM768"
        assert lenient.metric("pqproxy_qkd_degraded_total") == 1
        assert server.wait_for(conn("server"))["qkd"] == "degraded"
        assert server.metric("pqproxy_qkd_degraded_total") == 1
        assert server.metric("pqproxy_qkd_keys_total", result="not_offered") == 1
    finally:
        for sidecar in (strict, lenient, server):
            sidecar.stop(check=False)


def test_a_require_server_refuses_a_client_without_a_key(pki: dict[str, Path], kme: KME, upstream: Backend) -> None:
    server = Sidecar("server", server_args(pki, upstream.address, *qkd(kme, "bob", "require")))
    try:
        config = TLSConfig(server_name="localhost", trust_store=load_trust_store(str(pki["ca"])))
        peer = EngineClient(server.port, config)
        assert peer.handshake() is None
        assert "unknown_psk_identity" in peer.alerts_received()
        peer.sock.close()
        record = server.wait_for(conn("server"))
        assert record["refusal"] == "qkd_required" and record["qkd"] == "refused"
        assert record["qkd_error"].startswith("not_offered")
        assert server.metric("pqproxy_refusals_total", reason="qkd_required") == 1
    finally:
        server.stop()


def _fresh_key(kme: KME) -> tuple[str, bytes]:
    async def enc_keys() -> tuple[str, bytes]:
        alice = ETSI014Client(kme.settings("alice"))
        try:
            (key,) = (await alice.enc_keys("bob")).keys
            return key.key_ID, bytes(key.material())
        finally:
            await alice.aclose()

    return trio.run(enc_keys)


def _keyed_roundtrip(port: int, pki: dict[str, Path], key_id: str, material: bytes) -> tuple[bool, EngineClient]:
    """One connection offering this key as alice would: (did it carry data keyed by it, the client)."""
    psk = ExternalPSK(QKDIdentity("alice", key_id).encode(), material)
    client = EngineClient(port, TLSConfig(server_name="localhost", trust_store=load_trust_store(str(pki["ca"])),
                                          external_psk=psk))
    info = client.handshake()
    if info is not None:
        client.send(b"ping")
        assert client.read_until(4) == b"ping"
        client.close_write()
        client.read_to_end()
    client.sock.close()
    return info is not None and info.psk == "external", client


def test_a_replayed_key_id_is_refused(pki: dict[str, Path], kme: KME, upstream: Backend) -> None:
    server = Sidecar("server", server_args(pki, upstream.address, *qkd(kme, "bob", "require")))
    try:
        key_id, material = _fresh_key(kme)
        keyed, first = _keyed_roundtrip(server.port, pki, key_id, material)
        assert keyed, first.events
        # The same ClientHello PSK, key_ID and key again.
        keyed, again = _keyed_roundtrip(server.port, pki, key_id, material)
        assert not keyed and "unknown_psk_identity" in again.alerts_received()
        records = server.wait_count(conn("server"), 2)
        assert records[0]["qkd"] == "keyed" and records[0]["qkd_key_id"] == key_id
        assert records[1]["qkd"] == "refused" and records[1]["qkd_error"].startswith("replayed")
        assert server.metric("pqproxy_qkd_keys_total", result="replayed") == 1
        assert int(AlertDescription.unknown_psk_identity) == 115
    finally:
        server.stop()


def test_a_reload_keeps_the_replay_guard_watches_the_link_and_closes_the_old_kme_client(
        pki: dict[str, Path], upstream: Backend, tmp_path: Path) -> None:
    with KME(tmp_path / "kme", ("alice", "bob")) as kme:
        config = tmp_path / "server.toml"
        # Short limits: the old edge is closed budget + 1 + connect + handshake timeouts after the reload.
        settings = "[limits]\nhandshake_timeout = 1\nconnect_timeout = 1\n[qkd]\nbudget = 1\ntimeout = 0.5\n"
        config.write_text(settings + "status_interval = 0.5\n")
        server = Sidecar("server", ["--config", str(config),
                                    *server_args(pki, upstream.address, *qkd(kme, "bob", "require", "alice"))])
        try:
            server.wait_metric("pqproxy_qkd_link_up", 1, peer="alice", state="up")
            key_id, material = _fresh_key(kme)
            assert _keyed_roundtrip(server.port, pki, key_id, material)[0]
            config.write_text(settings + "status_interval = 0.6\n")
            server.signal(signal.SIGHUP)
            server.wait_for(lambda r: r.get("event") == "reloaded")

            keyed, replayed = _keyed_roundtrip(server.port, pki, key_id, material)
            assert not keyed and "unknown_psk_identity" in replayed.alerts_received()
            first, second = server.wait_count(conn("server"), 2)
            assert first["qkd"] == "keyed" and first["qkd_key_id"] == key_id, first
            assert second["qkd"] == "refused" and second["qkd_error"].startswith("replayed"), second

            # The link is watched under the new configuration: Eve shows up in the metrics.
            kme.control("/eavesdropper", {"fraction": 0.5})
            server.wait_metric("pqproxy_qkd_link_qber", 0.11, peer="alice")
            closed = server.wait_for(lambda r: r.get("event") == "qkd_edge_closed", timeout=15)
            assert closed["kme"] == kme.url
            # The new edge serves on: a fresh key still keys a connection.
            kme.control("/eavesdropper", {"fraction": 0.0})
            key_id, material = _fresh_key(kme)
            assert _keyed_roundtrip(server.port, pki, key_id, material)[0]
            assert server.wait_count(conn("server"), 3)[2]["qkd"] == "keyed"
        finally:
            server.stop()


def test_a_kme_answering_garbage_is_refused_or_degraded_never_trusted(pki: dict[str, Path], kme: KME,
                                                                       upstream: Backend) -> None:
    """The KME answers 200 with a body that is not a key container (``POST /misbehave``): require refuses (the
    application reads a reset), prefer goes on without QKD; both name the bad answer."""
    server = Sidecar("server", server_args(pki, upstream.address, *qkd(kme, "bob", "prefer")))
    strict = Sidecar("client", client_args(pki, server.port, *qkd(kme, "alice", "require", "bob")))
    lenient = Sidecar("client", client_args(pki, server.port, *qkd(kme, "alice", "prefer", "bob")))
    kme.control("/misbehave", {"answer": "garbage"})
    try:
        with pytest.raises(ConnectionResetError):
            roundtrip(strict.port, b"secret")
        refused = strict.wait_for(conn("client"))
        assert refused["refusal"] == "qkd_required" and refused["reset"] == "downstream", refused
        assert "bad_response" in refused["qkd_error"], refused
        assert roundtrip(lenient.port, b"still carried") == b"still carried"
        degraded = lenient.wait_for(conn("client"))
        assert degraded["qkd"] == "degraded" and "bad_response" in degraded["qkd_error"], degraded
        assert lenient.metric("pqproxy_qkd_kme_errors_total", kind="bad_response") >= 1
    finally:
        kme.control("/misbehave", {"answer": "normal"})
        for sidecar in (strict, lenient, server):
            sidecar.stop(check=False)
    assert kme.control("/link")["answer"] == "normal"


def test_a_stalled_kme_costs_a_bounded_wait_then_the_policy(pki: dict[str, Path], kme: KME,
                                                              upstream: Backend, tmp_path: Path) -> None:
    listener = socket.create_server((HOST, 0))  # accepts (the kernel does), never answers
    try:
        stalled = f"https://127.0.0.1:{listener.getsockname()[1]}"
        server = Sidecar("server", server_args(pki, upstream.address))
        client = Sidecar("client", client_args(pki, server.port, *qkd(kme, "alice", "prefer", "bob", url=stalled)))
        try:
            assert roundtrip(client.port, b"carried after the wait") == b"carried after the wait"
            record = client.wait_for(conn("client"))
            assert record["qkd"] == "degraded" and "timeout" in record["qkd_error"], record
            assert client.metric("pqproxy_qkd_kme_errors_total", kind="timeout") >= 1
        finally:
            client.stop()
            server.stop()
    finally:
        listener.close()


def test_the_link_reaches_metrics_and_an_eavesdropper_takes_it_down(pki: dict[str, Path], upstream: Backend,
                                                                      tmp_path: Path) -> None:
    with KME(tmp_path / "kme", ("alice", "bob"), "--max-key-count", "3", "--pulse-rate", "1e3") as kme:
        config = tmp_path / "client.toml"
        config.write_text('''listen = "127.0.0.1:0"
connect = "127.0.0.1:1"
insecure = true

[qkd]
status_interval = 0.5
''')
        server = Sidecar("server", server_args(pki, upstream.address, *qkd(kme, "bob", "prefer")))
        client = Sidecar("client", ["--config", str(config), *client_args(pki, server.port,
                                                                           *qkd(kme, "alice", "prefer", "bob"))])
        try:
            client.wait_metric("pqproxy_qkd_link_up", 1, peer="bob", state="up")
            assert 0.01 < client.metric("pqproxy_qkd_link_qber", peer="bob") < 0.02
            assert client.metric("pqproxy_qkd_link_key_rate_bits_per_second", peer="bob") > 0
            kme.control("/eavesdropper", {"fraction": 0.5})
            client.wait_metric("pqproxy_qkd_link_qber", 0.11, peer="bob")
            assert client.metric("pqproxy_qkd_link_up", peer="bob", state="aborted") == 0
            assert client.metric("pqproxy_qkd_link_up", peer="bob", state="up") == 0
            assert client.metric("pqproxy_qkd_link_key_rate_bits_per_second", peer="bob") == 0
            assert client.metric("pqproxy_qkd_link_disturbances", peer="bob") == 1
            # The three stored keys still key connections (made before Eve came); then there are none.
            for i in range(5):
                assert roundtrip(client.port, b"x%d" % i) == b"x%d" % i
            records = client.wait_count(conn("client"), 5)
            assert [r["qkd"] for r in records] == ["keyed"] * 3 + ["degraded"] * 2, records
            assert "no keys available" in records[-1]["qkd_error"]
        finally:
            client.stop()
            server.stop()


def test_qkd_settings_are_checked(pki: dict[str, Path], tmp_path: Path) -> None:
    def start(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pqproxy", *args], capture_output=True, text=True, timeout=30)

    done = start("client", "--listen", "127.0.0.1:0", "--connect", "127.0.0.1:1", "--insecure", "--qkd", "require",
                 "--qkd-sae-id", "alice")
    assert done.returncode == 2 and "qkd" in done.stderr and "Traceback" not in done.stderr, done.stderr
    done = start("server", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--cert", str(pki["server"]),
                 "--key", str(pki["server_key"]), "--qkd", "prefer", "--qkd-sae-id", "bob", "--qkd-kme",
                 "http://kme", "--qkd-cert", "c", "--qkd-key", "k", "--qkd-ca", "a")
    assert done.returncode == 2 and "https://" in done.stderr, done.stderr


def test_a_static_key_file_is_a_key_source_too(pki: dict[str, Path], upstream: Backend, tmp_path: Path) -> None:
    """The key-source interface: the same binding from a shared key file instead of a KME."""
    import base64
    import json
    import os

    keys = {f"k{i}": base64.b64encode(os.urandom(32)).decode() for i in range(2)}
    (tmp_path / "keys.json").write_text(json.dumps({"keys": keys}))
    file_args = ["--qkd", "require", "--qkd-sae-id", "{sae}"]
    config = tmp_path / "qkd.toml"
    config.write_text(f'[qkd]\nkey_file = "{tmp_path / "keys.json"}"\n')
    server = Sidecar("server", ["--config", str(config), *server_args(pki, upstream.address),
                                *[a.format(sae="bob") for a in file_args]])
    client = Sidecar("client", ["--config", str(config), *client_args(pki, server.port), "--qkd-peer", "bob",
                                *[a.format(sae="alice") for a in file_args]])
    try:
        for i in range(2):
            assert roundtrip(client.port, b"static %d" % i) == b"static %d" % i
        assert [r["qkd_key_id"] for r in server.wait_count(conn("server"), 2)] == ["k0", "k1"]
        with pytest.raises(ConnectionResetError):  # the file has no unused key: require refuses
            roundtrip(client.port, b"no key left")
        assert client.wait_count(conn("client"), 3)[-1]["refusal"] == "qkd_required"
    finally:
        client.stop()
        server.stop()


def test_a_qkd_server_answers_a_malformed_hello_at_once(pki: dict[str, Path], kme: KME, upstream: Backend) -> None:
    """The QKD server peeks the whole ClientHello before the engine sees it; bytes that cannot be one must
    still get the engine's alert at once, not a wait for more bytes."""
    server = Sidecar("server", server_args(pki, upstream.address, *qkd(kme, "bob", "prefer")))
    try:
        for garbage in (bytes.fromhex("1603010005" "0100000100"),  # a ClientHello whose body is cut short
                        bytes.fromhex("1603010004" "02000000")):  # a ServerHello where the hello should be
            with socket.create_connection((HOST, server.port), timeout=TIMEOUT) as s:
                s.sendall(garbage)
                answer = s.recv(64)
            assert answer[:1] == b"\x15", answer  # an alert record, before any timeout
        records = server.wait_count(conn("server"), 2)
        assert all(r["result"] in ("tls_error", "refused") and r.get("alert") for r in records), records
    finally:
        server.stop()
