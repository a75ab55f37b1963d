"""End to end with a real browser: headless Chromium -> ``pqproxy server`` -> a plain HTTP/1.1 backend.

What a person would do: put pqproxy in front of a web service and open the page in Chromium. The page
must render (its script ran, so the bytes went through intact), and the proxy's log line for Chromium's
connection must say it negotiated X25519MLKEM768 with Chromium's own, large, post-quantum ClientHello.
"""

from __future__ import annotations

import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pqproxy.certs import write_dev_pki
from tests.browser import chromium_binary, fetch_with_chromium, spki_sha256_b64
from tests.procs import Proc, free_port

pytestmark = pytest.mark.e2e

HOST = "pqproxy.test"  # RFC 6761 reserved; mapped to 127.0.0.1 inside Chromium, never looked up
PQ_GROUP = "X25519MLKEM768"


class Backend:
    """A plain HTTP/1.1 server on 127.0.0.1 with keep-alive (Content-Length on every answer).

    ``/`` is an HTML page whose script writes ``js-<marker>`` into the DOM (the raw HTML never contains that
    string, so finding it proves the page was parsed and run); anything else is a 404.
    """

    def __init__(self) -> None:
        self.marker = uuid.uuid4().hex
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Host header)
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30  # an idle keep-alive connection is closed after this

            def do_GET(self) -> None:
                backend.requests.append((self.command, self.path, self.headers.get("Host")))
                if self.path == "/":
                    body = backend.page().encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                else:
                    body = b"not found\n"
                    self.send_response(404)
                    self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def page(self) -> str:
        return (
            "<!doctype html><html><head><title>pqproxy e2e</title><link rel=icon href=data:,></head><body>"
            f"<p id=static>static-{self.marker}</p>"
            f"<script>const p = document.createElement('p'); p.id = 'js'; p.textContent = 'js-' + '{self.marker}';"
            "document.body.appendChild(p);</script></body></html>"
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@dataclass
class Stack:
    backend: Backend
    proxy: Proc
    port: int
    spki: str
    admin: int


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    chromium_binary()  # skip (or, in CI, fail) before starting anything
    pki = tmp_path_factory.mktemp("browser-pki")
    paths = write_dev_pki(pki, alg="ecdsa", names=(HOST, "127.0.0.1"))
    backend = Backend()
    port, admin = free_port(), free_port()
    proxy = Proc(["server", "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{backend.port}",
                  "--cert", str(paths["server"]), "--key", str(paths["server_key"]),
                  "--admin", f"127.0.0.1:{admin}", "--workers", "1"])
    try:
        proxy.wait_for(lambda r: r.get("event") == "started")
        yield Stack(backend, proxy, port, spki_sha256_b64(paths["server"]), admin)
    finally:
        proxy.stop()
        backend.close()


def _load(stack: Stack, *, trusted: bool = True) -> str:
    return fetch_with_chromium(f"https://{HOST}:{stack.port}/", spki_hashes=[stack.spki] if trusted else [],
                               resolve={HOST: "127.0.0.1"}, timeout=60)


def _is_connection(record: dict[str, Any]) -> bool:
    """A per-connection log line (not an ``{"event": ...}`` line such as listening or started)."""
    return "event" not in record and record.get("mode") == "server" and "peer" in record


def _chromium_connections(proxy: Proc) -> list[dict[str, Any]]:
    return [r for r in proxy.records() if _is_connection(r)]


def test_chromium_loads_page_through_pqproxy_with_x25519mlkem768(stack: Stack) -> None:
    before = len(_chromium_connections(stack.proxy))
    dom = _load(stack)
    marker = stack.backend.marker
    assert f"static-{marker}" in dom, f"page not rendered; DOM was: {dom[:500]!r}"
    assert f"js-{marker}" in dom, "the page's script did not run"
    assert ("GET", "/", f"{HOST}:{stack.port}") in stack.backend.requests

    # Chromium has exited, so every connection it opened is closed and logged (give the proxy a moment to
    # see the EOF). The one that carried the page moved its bytes downstream.
    page_bytes = len(stack.backend.page())
    carried = stack.proxy.wait_for(lambda r: _is_connection(r) and int(r.get("bytes_down") or 0) > page_bytes,
                                   timeout=15)
    for record in [carried, *_chromium_connections(stack.proxy)[before:]]:
        # A browser that exits closes its kept-alive connections without close_notify: pqproxy logs that as
        # "truncated" and resets the upstream (README, "Resets and truncations"); nothing else may go wrong.
        assert record["result"] in ("ok", "truncated"), record
        assert record["result"] == "ok" or (record["reset"] == "upstream" and "close_notify" in record["error"])
        assert record["group"] == PQ_GROUP, record
        assert record["sni"] == HOST, record
        assert record["hello_retry"] is False, record  # Chromium sent an X25519MLKEM768 share up front
        assert int(record["client_hello_size"]) > 1500, record  # 1184-byte ML-KEM key inside; classical ~500
    # ... and /metrics says the same.
    samples = _metric_samples(stack.admin)
    ok_hybrid = samples.get(("pqproxy_handshakes_total", (("group", PQ_GROUP), ("result", "ok"))), 0)
    assert ok_hybrid >= len(_chromium_connections(stack.proxy)[before:]) >= 1, samples
    assert samples.get(("pqproxy_quantum_safe_sessions_total", (("quantum_safe", "true"),)), 0) >= 1
    assert samples.get(("pqproxy_client_hello_size_bytes_count", ()), 0) >= 1


def _metric_samples(admin_port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_proxy_survives_chromium_rejecting_the_certificate(stack: Stack) -> None:
    """Without the SPKI pin Chromium refuses the development certificate mid-handshake: the proxy logs a
    failed handshake (never "ok": the client's Finished never came), does not crash, and serves the next load."""
    marker = stack.backend.marker
    before = len(_chromium_connections(stack.proxy))
    dom = _load(stack, trusted=False)
    assert marker not in dom  # an interstitial (or nothing), never the page
    rejected = stack.proxy.wait_for(lambda r: _is_connection(r) and r.get("result") != "ok", timeout=15)
    assert rejected.get("sni") in (None, HOST), rejected
    assert not any("Traceback" in line for line in stack.proxy.lines), "\n".join(stack.proxy.lines[-40:])
    assert stack.proxy.proc.poll() is None, "pqproxy died after a client rejected its certificate"
    assert f"js-{marker}" in _load(stack), "pqproxy stopped serving after a client rejected its certificate"
    assert len(_chromium_connections(stack.proxy)) > before
