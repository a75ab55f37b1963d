"""`make demo`: a quantum-safe pipe on loopback, end to end, on embedded defaults.

    plain client -> pqproxy client (TLS 1.3 origin) -> pqproxy server (TLS 1.3 termination) -> echo backend

Everything runs in this process on 127.0.0.1 with a throwaway development PKI, through the same code as
``pqproxy client`` and ``pqproxy server``; the report says what was negotiated and at what sizes.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from functools import partial
from pathlib import Path

import trio

from .certs import write_dev_pki
from .proxy.sidecar import SidecarSettings, handle_client_connection, handle_server_connection, serve
from .tls.certificates import CertificateChain, load_trust_store
from .tls.config import TLSConfig

REQUEST = b"GET / HTTP/1.0\r\nHost: demo\r\n\r\nhello through a post-quantum pipe\n"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append(json.loads(record.getMessage()))
        except ValueError:
            pass


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
        await stream.send_eof()


def _port(listeners: list[trio.SocketListener]) -> int:
    return int(listeners[0].socket.getsockname()[1])


async def run_demo(workdir: Path) -> dict[str, object]:
    paths = write_dev_pki(workdir, alg="ecdsa", names=("localhost", "127.0.0.1"))
    collect = _Collect()
    logging.getLogger("pqproxy").addHandler(collect)
    logging.getLogger("pqproxy").setLevel(logging.INFO)
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(partial(trio.serve_tcp, _echo, 0, host="127.0.0.1"))
        backend_port = _port(backend)
        server_cfg = TLSConfig(certificate_chain=CertificateChain.load(paths["server"], paths["server_key"]))
        server = await nursery.start(serve, SidecarSettings(("127.0.0.1", 0), ("127.0.0.1", backend_port), server_cfg),
                                     handle_server_connection)
        client_cfg = TLSConfig(server_name="localhost", trust_store=load_trust_store(paths["ca"]))
        server_port = _port(server)
        client = await nursery.start(serve, SidecarSettings(("127.0.0.1", 0), ("127.0.0.1", server_port), client_cfg),
                                     handle_client_connection)
        client_port = _port(client)
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream("127.0.0.1", client_port)
            await stream.send_all(REQUEST)
            await stream.send_eof()
            reply = b""
            while chunk := await stream.receive_some(65536):
                reply += chunk
            await stream.aclose()
            while len([r for r in collect.records if "mode" in r]) < 2:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    logging.getLogger("pqproxy").removeHandler(collect)
    by_mode = {str(r["mode"]): r for r in collect.records if "mode" in r}
    return {"echoed": reply == REQUEST, "server": by_mode.get("server", {}), "client": by_mode.get("client", {}),
            "ports": {"backend": backend_port, "server": server_port, "client": client_port}}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pqproxy-demo-") as tmp:
        result = trio.run(run_demo, Path(tmp))
    server, client = result["server"], result["client"]
    assert isinstance(server, dict) and isinstance(client, dict)
    print("pqproxy demo: plain client -> pqproxy client -> [TLS 1.3, post-quantum] -> pqproxy server -> echo\n")
    rows = [
        ("request echoed intact", "yes" if result["echoed"] else "NO"),
        ("key exchange group", server.get("group")),
        ("cipher suite", server.get("cipher")),
        ("ClientHello size", f"{server.get('client_hello_size')} bytes (a classical one is ~250-600)"),
        ("HelloRetryRequest", "yes" if server.get("hello_retry") else "no"),
        ("handshake time", f"{server.get('handshake_ms')} ms (server side)"),
        ("bytes through the pipe", f"{server.get('bytes_up')} up, {server.get('bytes_down')} down"),
        ("server log result", server.get("result")),
        ("client log result", client.get("result")),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    print("\nThe same pipe by hand (two terminals, after `pqproxy certs --out pki`):")
    print("  pqproxy server --listen 127.0.0.1:8443 --upstream 127.0.0.1:8080 \\\n"
          "                 --cert pki/server.pem --key pki/server.key")
    print("  pqproxy client --listen 127.0.0.1:9000 --connect 127.0.0.1:8443 --sni localhost --ca pki/ca.pem")
    print("Each connection is logged as one JSON line on stderr (group, cipher, SNI, sizes, result).")
    ok = result["echoed"] and server.get("group") == "X25519MLKEM768" and server.get("result") == "ok"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
