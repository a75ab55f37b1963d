"""Policy and refusals of ``pqproxy server``, as real processes: every refusal reason appears in the log line
and in ``pqproxy_refusals_total`` with the right label, and the peer gets the right alert. Then SNI routes
from a TOML file, and configuration errors through the CLI (exit 2, the exact key named).
"""

from __future__ import annotations

import importlib.util
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from pqproxy.certs import write_dev_pki
from pqproxy.proxy.proxy_protocol import decode_v2, v2_header_length
from pqproxy.tls.certificates import CertificateChain
from pqproxy.tls.codepoints import NamedGroup
from pqproxy.tls.config import TLSConfig
from pqproxy.tls.hello import HelloSpec, build_client_hello
from tests.procs import free_port, raw_exchange
from tests.sidecar_kit import HOST, TIMEOUT, Backend, EngineClient, Sidecar, server_args
from tests.tls_helpers import plaintext_alert

REFUSALS = "pqproxy_refusals_total"
HYBRID = "X25519MLKEM768"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_dev_pki(tmp_path_factory.mktemp("policy-pki"), alg="ecdsa", names=("localhost", HOST))


@pytest.fixture(scope="module")
def stranger_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Another CA: its client certificate is valid, but not for our servers."""
    return write_dev_pki(tmp_path_factory.mktemp("stranger-pki"), alg="ecdsa", names=("localhost",))


@pytest.fixture(scope="module")
def echo() -> Iterator[Backend]:
    backend = Backend()
    try:
        yield backend
    finally:
        backend.close()


@contextmanager
def running(args: list[str], **kw: Any) -> Iterator[Sidecar]:
    sidecar = Sidecar("server", [*args, "--drain-timeout", "1"], **kw)
    try:
        yield sidecar
    finally:
        sidecar.stop()


def ca_of(pki: dict[str, Path]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki["ca"].read_bytes())


def engine_config(pki: dict[str, Path], **kw: Any) -> TLSConfig:
    kw.setdefault("server_name", "localhost")
    kw.setdefault("trust_store", [ca_of(pki)])
    return TLSConfig(**kw)


def client_chain(pki: dict[str, Path]) -> CertificateChain:
    return CertificateChain.load(pki["client"], pki["client_key"])


def refused(server: Sidecar, reason: str, attempt: Callable[[], None]) -> dict[str, Any]:
    """Run ``attempt`` and check that it cost exactly one refusal ``reason``: one log line, one count."""
    before_count = server.metric(REFUSALS, reason=reason)
    before_lines = len([r for r in server.records() if r.get("refusal") == reason])
    attempt()
    record = server.wait_count(lambda r: r.get("refusal") == reason, before_lines + 1)[-1]
    assert server.wait_metric(REFUSALS, before_count + 1, reason=reason) == before_count + 1
    assert record["mode"] == "server"
    return record


def refused_by_engine(server: Sidecar, config: TLSConfig) -> EngineClient:
    """Connect with our engine and read until the server ends the connection; returns the finished client."""
    with EngineClient(server.port, config) as c:
        c.handshake()
        c.read_to_end()
        return c


# --- one server for the refusals that need no special flag besides groups and a ClientHello cap ---------------


@pytest.fixture(scope="module")
def strict(pki: dict[str, Path], echo: Backend) -> Iterator[Sidecar]:
    with running(server_args(pki, echo.address, "--groups", HYBRID, "--max-client-hello", "4096",
                             "--handshake-timeout", "5")) as server:
        yield server


@pytest.fixture(scope="module")
def hybrid_only(pki: dict[str, Path], echo: Backend) -> Iterator[Sidecar]:
    with running(server_args(pki, echo.address, "--require-hybrid")) as server:
        yield server


def test_require_hybrid_refuses_an_x25519_only_client(hybrid_only: Sidecar, pki: dict[str, Path]) -> None:
    outcome: list[EngineClient] = []
    record = refused(hybrid_only, "no_hybrid_group", lambda: outcome.append(
        refused_by_engine(hybrid_only, engine_config(pki, groups=(NamedGroup.x25519,)))))
    assert outcome[0].info is None and outcome[0].alerts_received() == ["insufficient_security"]
    assert record["alert"] == "insufficient_security" and record["result"] == "refused"
    # The same server serves a hybrid client.
    with EngineClient(hybrid_only.port, engine_config(pki)) as c:
        info = c.handshake()
        assert info is not None and info.group == HYBRID


def test_tls12_only_client_is_refused_with_protocol_version(strict: Sidecar) -> None:
    errors: list[str] = []

    def attempt() -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection((HOST, strict.port), timeout=TIMEOUT) as raw:
            try:
                with ctx.wrap_socket(raw, server_hostname="localhost"):
                    errors.append("handshake succeeded")
            except ssl.SSLError as exc:
                errors.append(str(exc))

    record = refused(strict, "tls12_refused", attempt)
    assert "PROTOCOL_VERSION" in errors[0].upper(), errors  # OpenSSL names the alert it received
    assert record["alert"] == "protocol_version"


@pytest.mark.skipif(importlib.util.find_spec("pqproxy.proxy.legacy") is None, reason="pqproxy.proxy.legacy absent")
def test_legacy_tls12_serves_the_tls12_client_and_says_it_is_not_quantum_safe(
    pki: dict[str, Path], echo: Backend
) -> None:
    with running(server_args(pki, echo.address, "--legacy-tls12")) as server:
        ctx = ssl.create_default_context(cafile=str(pki["ca"]))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection((HOST, server.port), timeout=TIMEOUT) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() == "TLSv1.2"
            tls.sendall(b"an old client\n")
            got = b""
            while len(got) < 14:
                chunk = tls.recv(100)
                assert chunk
                got += chunk
            assert got == b"an old client\n"
            tls.unwrap()  # close_notify, as curl and NSS send it: a clean end (without it: "truncated")
        record = server.wait_for(lambda r: "mode" in r and "event" not in r)
        assert record["version"] == "TLSv1.2" and record["quantum_safe"] is False and record["result"] == "ok"
        legacy = sum(v for (name, labels), v in server.metrics().items()
                     if name == "pqproxy_handshakes_total" and ("result", "legacy_tls12") in labels)
        assert legacy == 1
        assert server.metric("pqproxy_quantum_safe_sessions_total", quantum_safe="false") == 1
        # A TLS 1.3 client on the same listener still gets the hybrid.
        with EngineClient(server.port, engine_config(pki)) as c:
            info = c.handshake()
            assert info is not None and info.group == HYBRID


# --- mutual TLS --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mtls(pki: dict[str, Path], echo: Backend) -> Iterator[Sidecar]:
    with running(server_args(pki, echo.address, "--client-ca", str(pki["ca"]), "--allowed-name", "client")) as server:
        yield server


def test_mtls_without_a_client_certificate(mtls: Sidecar, pki: dict[str, Path]) -> None:
    outcome: list[EngineClient] = []
    record = refused(mtls, "client_certificate", lambda: outcome.append(refused_by_engine(mtls, engine_config(pki))))
    assert outcome[0].alerts_received() == ["certificate_required"]
    assert record["alert"] == "certificate_required"


def test_mtls_with_a_certificate_from_another_ca(mtls: Sidecar, pki: dict[str, Path],
                                                 stranger_pki: dict[str, Path]) -> None:
    config = engine_config(pki, certificate_chain=client_chain(stranger_pki))
    outcome: list[EngineClient] = []
    record = refused(mtls, "client_certificate", lambda: outcome.append(refused_by_engine(mtls, config)))
    assert outcome[0].alerts_received() == [record["alert"]]
    assert record["alert"] in ("unknown_ca", "bad_certificate")


def test_mtls_name_not_allowed(pki: dict[str, Path], echo: Backend) -> None:
    with running(server_args(pki, echo.address, "--client-ca", str(pki["ca"]),
                             "--allowed-name", "other-name")) as server:
        outcome: list[EngineClient] = []
        config = engine_config(pki, certificate_chain=client_chain(pki))
        record = refused(server, "client_not_allowed", lambda: outcome.append(refused_by_engine(server, config)))
        assert outcome[0].alerts_received() == ["access_denied"]
        assert record["alert"] == "access_denied"


def test_mtls_allowed_client_is_logged_with_its_subject(mtls: Sidecar, pki: dict[str, Path]) -> None:
    with EngineClient(mtls.port, engine_config(pki, certificate_chain=client_chain(pki))) as c:
        assert c.handshake() is not None
        c.send(b"hello from a known client\n")
        assert c.read_until(26) == b"hello from a known client\n"
    record = mtls.wait_for(lambda r: r.get("result") == "ok" and "client_certificate" in r)
    assert "CN=client" in record["client_certificate"]


# --- the other refusals ------------------------------------------------------------------------------------------


def test_client_hello_over_the_cap(strict: Sidecar) -> None:
    hello = build_client_hello(HelloSpec(server_name="localhost", pad_to=5000)).records()
    answers: list[bytes] = []
    record = refused(strict, "client_hello_too_large", lambda: answers.append(raw_exchange(strict.port, hello)))
    assert answers[0] == plaintext_alert(47)  # illegal_parameter
    assert record["alert"] == "illegal_parameter"


def test_no_common_group(strict: Sidecar, pki: dict[str, Path]) -> None:
    outcome: list[EngineClient] = []
    config = engine_config(pki, groups=(NamedGroup.secp384r1,))
    record = refused(strict, "no_common_group", lambda: outcome.append(refused_by_engine(strict, config)))
    assert outcome[0].alerts_received() == ["handshake_failure"]
    assert record["alert"] == "handshake_failure"


def test_garbage_gets_a_generic_alert(strict: Sidecar) -> None:
    answers: list[bytes] = []
    record = refused(strict, "tls_alert",
                     lambda: answers.append(raw_exchange(strict.port, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")))
    assert answers[0] == plaintext_alert(10)  # unexpected_message
    assert record["result"] == "tls_error" and record["alert"] == "unexpected_message"


def test_strict_server_still_serves_a_hybrid_client(strict: Sidecar, pki: dict[str, Path]) -> None:
    with EngineClient(strict.port, engine_config(pki)) as c:
        info = c.handshake()
        assert info is not None and info.group == HYBRID
        c.send(b"ok")
        assert c.read_until(2) == b"ok"


# --- SNI routes from a TOML file --------------------------------------------------------------------------------


def test_sni_routes_each_name_reaches_its_upstream_with_its_certificate(
    pki: dict[str, Path], tmp_path: Path
) -> None:
    alpha_pki = write_dev_pki(tmp_path / "alpha", alg="ecdsa", names=("alpha.test",))
    beta_pki = write_dev_pki(tmp_path / "beta", alg="ecdsa", names=("beta.test",))
    backends = {name: Backend(tag=f"{name}\n".encode()) for name in ("default", "alpha", "beta")}
    try:
        config = tmp_path / "routes.toml"
        config.write_text(
            f'upstream = "{backends["default"].address}"\n'
            f'cert = "{pki["server"]}"\nkey = "{pki["server_key"]}"\n'
            "[limits]\nhandshake_timeout = 5\n"
            f'[[routes]]\nsni = "alpha.test"\nupstream = "{backends["alpha"].address}"\n'
            f'cert = "{alpha_pki["server"]}"\nkey = "{alpha_pki["server_key"]}"\n'
            f'[[routes]]\nsni = "beta.test"\nupstream = "{backends["beta"].address}"\n'
            f'cert = "{beta_pki["server"]}"\nkey = "{beta_pki["server_key"]}"\n'
        )
        with running(["--config", str(config)], admin=False) as server:
            for name, route_pki in (("alpha", alpha_pki), ("beta", beta_pki)):
                # Verified against that route's own CA and name: the route's certificate was presented.
                config_for = engine_config(route_pki, server_name=f"{name}.test")
                with EngineClient(server.port, config_for) as c:
                    info = c.handshake()
                    assert info is not None, c.events
                    assert info.peer_certificate.serial_number == \
                        x509.load_pem_x509_certificate(route_pki["server"].read_bytes()).serial_number
                    assert c.read_until(len(name) + 1) == f"{name}\n".encode()
                    c.send(b"echo?")
                    assert c.read_until(len(name) + 6).endswith(b"echo?")
                record = server.wait_for(lambda r, n=name: r.get("sni") == f"{n}.test")
                assert record["upstream"] == backends[name].address
            # A name with no route: the default upstream (and the default certificate).
            with EngineClient(server.port, engine_config(pki, server_name="gamma.test", verify_peer=False)) as c:
                info = c.handshake()
                assert info is not None
                assert info.peer_certificate.serial_number == \
                    x509.load_pem_x509_certificate(pki["server"].read_bytes()).serial_number
                assert c.read_until(8) == b"default\n"
            record = server.wait_for(lambda r: r.get("sni") == "gamma.test")
            assert record["upstream"] == backends["default"].address
            assert [b.accepted for b in backends.values()] == [1, 1, 1]
    finally:
        for backend in backends.values():
            backend.close()


def test_sni_without_a_route_and_no_default_upstream_is_refused(pki: dict[str, Path], tmp_path: Path) -> None:
    alpha = Backend(tag=b"alpha\n")
    try:
        config = tmp_path / "routes-only.toml"
        config.write_text(f'cert = "{pki["server"]}"\nkey = "{pki["server_key"]}"\n'
                          f'[[routes]]\nsni = "*.test"\nupstream = "{alpha.address}"\n')
        with running(["--config", str(config)]) as server:
            outcome: list[EngineClient] = []
            record = refused(server, "no_route", lambda: outcome.append(
                refused_by_engine(server, engine_config(pki, server_name="localhost"))))
            # Refused before any work, at the ClientHello (RFC 6066 §3), never a handshake then an empty close
            # (which an application reading to EOF would take for an empty answer).
            assert outcome[0].info is None and outcome[0].alerts_received() == ["unrecognized_name"]
            assert record["result"] == "refused" and record["alert"] == "unrecognized_name", record
            assert record["sni"] == "localhost" and record["client_hello_size"] > 0
            with EngineClient(server.port, engine_config(pki, server_name="alpha.test", verify_peer=False)) as c:
                assert c.handshake() is not None
                assert c.read_until(6) == b"alpha\n"  # the wildcard route
    finally:
        alpha.close()


# --- configuration errors through the CLI ---------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pqproxy", *args], capture_output=True, text=True, timeout=30)


def _toml(pki: dict[str, Path], extra: str = "", **overrides: str) -> str:
    keys = {"listen": f'"{HOST}:{free_port()}"', "upstream": f'"{HOST}:9"', "cert": f'"{pki["server"]}"',
            "key": f'"{pki["server_key"]}"', **overrides}
    return "".join(f"{k} = {v}\n" for k, v in keys.items()) + extra


@pytest.mark.parametrize(
    ("top", "extra", "named", "says"),
    [
        ({}, "[limits]\nhandshake_timout = 3\n", "limits.handshake_timout", "unknown key"),
        ({"upsteam": '"127.0.0.1:1"'}, "", "upsteam", "unknown key"),
        ({"upstream": '"no-port-here"'}, "", "upstream", "HOST:PORT"),
        ({}, "[limits]\nhandshake_timeout = \"fast\"\n", "limits.handshake_timeout", "number"),
        ({}, "[limits]\nmax_connections = -1\n", "limits.max_connections", "greater than"),
        ({}, '[[routes]]\nsni = "a.test"\nupstream = "127.0.0.1:1"\n[[routes]]\nsni = "b.test"\nupstream = "b"\n',
         "routes[1].upstream", "HOST:PORT"),
    ],
    ids=["unknown-limits-key", "unknown-top-key", "bad-address", "wrong-type", "out-of-range", "bad-route"],
)
def test_bad_config_exits_2_naming_the_key(pki: dict[str, Path], tmp_path: Path, top: dict[str, str], extra: str,
                                           named: str, says: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(_toml(pki, extra, **top))
    result = run_cli("server", "--config", str(path))
    assert result.returncode == 2, result
    assert f"{path}: {named}:" in result.stderr, result.stderr
    assert says in result.stderr, result.stderr


def test_missing_cert_file_exits_2_with_the_path(pki: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "server.pem"
    path = tmp_path / "missing.toml"
    path.write_text(_toml(pki, cert=f'"{missing}"'))
    result = run_cli("server", "--config", str(path))
    assert result.returncode == 2, result
    assert str(missing) in result.stderr, result.stderr
    # The same through flags only.
    result = run_cli("server", "--listen", f"{HOST}:{free_port()}", "--upstream", f"{HOST}:9",
                     "--cert", str(missing), "--key", str(pki["server_key"]))
    assert result.returncode == 2 and str(missing) in result.stderr, result.stderr


def test_client_config_errors_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text(f'listen = "{HOST}:{free_port()}"\nconnect = "{HOST}:9"\ninsecure = true\n'
                    "[limits]\nidle_timeout = \"never\"\n")
    result = run_cli("client", "--config", str(path))
    assert result.returncode == 2 and f"{path}: limits.idle_timeout:" in result.stderr, result.stderr
    result = run_cli("client", "--listen", f"{HOST}:{free_port()}", "--connect", f"{HOST}:9")
    assert result.returncode == 2 and "ca is required" in result.stderr, result.stderr
    path.write_text(f'listen = "{HOST}:{free_port()}"\nconnect = "{HOST}:9"\ninsecure = true\n'
                    'remote_connect = "later"\n')
    result = run_cli("client", "--config", str(path))
    assert result.returncode == 2 and f"{path}: remote_connect:" in result.stderr, result.stderr


@pytest.mark.skipif(importlib.util.find_spec("pqproxy.proxy.legacy") is None, reason="pqproxy.proxy.legacy absent")
def test_legacy_tls12_with_a_certificate_openssl_cannot_use_exits_2(tmp_path: Path) -> None:
    mldsa = write_dev_pki(tmp_path / "mldsa", alg="mldsa65", names=("localhost",))
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(mldsa["server"], mldsa["server_key"])
    except ssl.SSLError:
        pass
    else:
        pytest.skip(f"this Python's OpenSSL ({ssl.OPENSSL_VERSION}) loads ML-DSA keys")
    result = run_cli("server", "--listen", f"{HOST}:{free_port()}", "--upstream", f"{HOST}:9", "--legacy-tls12",
                     "--cert", str(mldsa["server"]), "--key", str(mldsa["server_key"]))
    assert result.returncode == 2, result
    assert "legacy_tls12" in result.stderr and str(mldsa["server"]) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_broken_toml_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("listen = [\n")
    start = time.monotonic()
    result = run_cli("server", "--config", str(path))
    assert result.returncode == 2 and "not valid TOML" in result.stderr, result.stderr
    assert time.monotonic() - start < 20


class ProxyHeaderBackend:
    """An upstream that expects a PROXY v2 header, decodes it strictly, answers with what it read as JSON."""

    def __init__(self) -> None:
        self.sock = socket.create_server((HOST, 0))
        self.sock.settimeout(0.2)
        self.address = "{}:{}".format(*self.sock.getsockname()[:2])
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while (length := v2_header_length(data)) is None or len(data) < length:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    header = decode_v2(data[: v2_header_length(data) or 0])
                    ssl_info = header.ssl
                    assert ssl_info is not None and header.source is not None
                    conn.sendall(json.dumps({
                        "source_port": header.source[1], "authority": header.authority,
                        "version": ssl_info.version, "cipher": ssl_info.cipher, "group": ssl_info.group,
                    }).encode())
                except (OSError, ValueError, AssertionError) as exc:
                    conn.sendall(json.dumps({"error": repr(exc)}).encode())

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(5)


def test_second_listener_from_toml_sends_proxy_protocol_v2(pki: dict[str, Path], echo: Backend,
                                                           tmp_path: Path) -> None:
    """[[listeners]] inherits the top-level keys and overrides some; its upstream gets a PROXY v2 header
    carrying the client's address and the TLS facts, the key-exchange group included."""
    header_backend = ProxyHeaderBackend()
    second = free_port()
    try:
        config = tmp_path / "listeners.toml"
        config.write_text(
            f'upstream = "{echo.address}"\ncert = "{pki["server"]}"\nkey = "{pki["server_key"]}"\n'
            f'[[listeners]]\nlisten = "{HOST}:{second}"\nupstream = "{header_backend.address}"\n'
            "proxy_protocol = true\n"
        )
        with running(["--config", str(config)], admin=False) as server:
            with EngineClient(server.port, engine_config(pki)) as c:  # the first listener: plain echo
                assert c.handshake() is not None
                c.send(b"plain")
                assert c.read_until(5) == b"plain"
            with EngineClient(second, engine_config(pki)) as c:
                info = c.handshake()
                assert info is not None and info.group == HYBRID
                c.read_to_end()
                facts = json.loads(bytes(c.received))
                local_port = c.sock.getsockname()[1]
            assert facts == {"source_port": local_port, "authority": "localhost", "version": "TLSv1.3",
                             "cipher": "TLS_AES_128_GCM_SHA256", "group": HYBRID}, facts
            record = server.wait_for(lambda r: r.get("listener") == f"{HOST}:{second}")
            assert record["upstream"] == header_backend.address and record["result"] == "ok"
    finally:
        header_backend.close()


def _ticket(client: EngineClient) -> Any:
    from pqproxy.tls.events import SessionTicketReceived

    client.pump_until(lambda: any(isinstance(e, SessionTicketReceived) for e in client.events))
    return next(e.ticket for e in client.events if isinstance(e, SessionTicketReceived))


def test_a_ticket_from_a_listener_without_mtls_does_not_skip_the_client_certificate_on_another(
        pki: dict[str, Path], echo: Backend, tmp_path: Path) -> None:
    """Both listeners seal tickets with the workers' one key. A client without a certificate that resumed its
    ticket from the open listener at the mTLS one would skip CertificateRequest (RFC 8446 §4.3.2): an
    authentication bypass this test caught. It must get a full handshake there, and be refused."""
    second = free_port()
    config = tmp_path / "two-policies.toml"
    config.write_text(
        f'upstream = "{echo.address}"\ncert = "{pki["server"]}"\nkey = "{pki["server_key"]}"\n'
        f'[[listeners]]\nlisten = "{HOST}:{second}"\nclient_ca = "{pki["ca"]}"\n'
    )
    with running(["--config", str(config)], admin=False) as server:
        with EngineClient(server.port, engine_config(pki)) as c:
            assert c.handshake() is not None
            ticket = _ticket(c)
        with EngineClient(server.port, engine_config(pki, resume_session=ticket)) as c:  # the control
            info = c.handshake()
            assert info is not None and info.resumed, c.events
            c.send(b"again")
            assert c.read_until(5) == b"again"
        with EngineClient(second, engine_config(pki, resume_session=ticket)) as c:
            info = c.handshake()  # a TLS 1.3 client is done before the server has judged its empty Certificate
            assert info is not None and not info.resumed, c.events
            c.read_to_end()
            assert c.alerts_received() == ["certificate_required"], c.events
        record = server.wait_for(lambda r: r.get("listener") == f"{HOST}:{second}")
        assert record["result"] == "refused" and record["refusal"] == "client_certificate", record
        assert record.get("resumed") is not True


def test_tickets_are_bound_to_the_client_authentication_policy(pki: dict[str, Path], stranger_pki: dict[str, Path],
                                                               echo: Backend) -> None:
    """The same policy gives the same ticket context (tickets survive a reload that leaves it alone); a new CA,
    allow-list or QKD mode gives another (a reload that tightens it does not let old tickets in)."""
    from pqproxy.proxy.config import build_server_runtime, server_settings

    base = {"listen": f"{HOST}:1", "upstream": echo.address, "cert": str(pki["server"]), "key": str(pki["server_key"])}

    def context(**changes: Any) -> bytes:
        runtime = build_server_runtime(server_settings({**base, **changes}, {}), [bytes(32)])
        return runtime.listeners[0].tls.ticket_context

    assert context() == context() and context(client_ca=str(pki["ca"])) == context(client_ca=str(pki["ca"]))
    contexts = [context(), context(client_ca=str(pki["ca"])), context(client_ca=str(stranger_pki["ca"])),
                context(client_ca=str(pki["ca"]), allowed_names=["alice"]),
                context(client_ca=str(pki["ca"]), allowed_names=["bob"])]
    assert len(set(contexts)) == len(contexts)
    assert context(client_ca=str(pki["ca"]), allowed_names=["a", "b"]) == context(client_ca=str(pki["ca"]),
                                                                                allowed_names=["b", "a"])
