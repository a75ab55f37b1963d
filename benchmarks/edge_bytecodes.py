"""Bytecodes pqproxy executes per server handshake at the edge and in the engine together: a count, not a timing.

``bytecodes.py`` counts the engine alone. The edge in front of it also reads the ClientHello when a listener
needs it before the handshake: to hand a TLS 1.2-only client to OpenSSL (``legacy_tls12``), to find the QKD key's
identity (``--qkd``), to route by SNI. This harness drives ``Proxy._server_handshake`` (the edge's handshake
step, the same in every version of the sidecar) in trio over a socket pair, for a plain listener, one with
``legacy_tls12`` and one with QKD keying from a static key file, and counts the bytecodes executed in pqproxy's own
code (``sys.settrace`` with opcode events on the trio thread; trio's and the standard library's frames are not
counted, the ``__init__`` of our dataclasses is, and the client, which runs in another thread, is not traced). How
often a read finds the socket empty depends on the client thread's timing: counts vary by a few dozen.

Run as ``python -m benchmarks.edge_bytecodes [handshakes] [top]`` (``top``: the functions that execute most).
Prints one JSON object.
"""

from __future__ import annotations

import base64
import collections
import json
import socket
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

_PACKAGE = str(Path(__file__).resolve().parents[1] / "pqproxy")


def count(handshakes: int = 20, top: int = 0) -> dict[str, Any]:
    from pqproxy.certs import write_dev_pki

    results: dict[str, Any] = {"handshakes": handshakes}
    with tempfile.TemporaryDirectory(prefix="pqproxy-edge-bytecodes-") as tmp:
        pki = write_dev_pki(Path(tmp), alg="ecdsa", names=("localhost", "127.0.0.1"))
        key_ids = [str(uuid.UUID(int=i + 1)) for i in range(handshakes + 3)]
        key_file = Path(tmp) / "keys.json"
        key_file.write_text(json.dumps({"keys": {k: base64.b64encode(bytes(32)).decode() for k in key_ids}}))
        for kind in ("plain", "legacy_tls12", "qkd"):
            total, by_function = _count_kind(kind, pki, key_file, handshakes)
            results[kind] = total
            if top:
                results[f"{kind}_top"] = [{"function": name, "per_handshake": round(n / handshakes)}
                                          for name, n in by_function.most_common(top)]
    return results


def _count_kind(kind: str, pki: dict[str, Path], key_file: Path, handshakes: int
                ) -> tuple[int, collections.Counter[str]]:
    import trio

    from pqproxy.proxy.config import build_server_runtime, server_settings
    from pqproxy.proxy.sidecar import ConnectionRecord, Proxy
    from pqproxy.proxy.transport import TCPTransport

    flags: dict[str, Any] = {"listen": "127.0.0.1:0", "upstream": "127.0.0.1:9", "cert": str(pki["server"]),
                             "key": str(pki["server_key"])}
    if kind == "legacy_tls12":
        flags["legacy_tls12"] = True
    if kind == "qkd":
        flags.update(qkd="prefer", qkd_sae_id="server", qkd_key_file=str(key_file))
    runtime = build_server_runtime(server_settings(None, flags))
    sidecar = Proxy(runtime)
    listener = runtime.listeners[0]
    qkd = sidecar.qkd_edge(runtime)
    client_qkd = _client_qkd(key_file) if kind == "qkd" else None
    by_function: collections.Counter[str] = collections.Counter()

    def trace(frame: FrameType, event: str, arg: Any) -> Callable[..., Any] | None:
        code = frame.f_code
        if not (code.co_filename.startswith(_PACKAGE) or code.co_filename == "<string>"):
            return trace  # trio's frames: look inside them for ours, count nothing (a dataclass's __init__ is ours)
        frame.f_trace_opcodes = True
        if event == "opcode":
            by_function[f"{Path(code.co_filename).name}:{code.co_firstlineno} {code.co_name}"] += 1
        return trace

    async def main() -> None:
        for i in range(handshakes + 3):  # three uncounted first: imports and caches
            ours, theirs = socket.socketpair()
            client = threading.Thread(target=_client, args=(theirs, pki, client_qkd), daemon=True)
            client.start()
            sys.settrace(trace)
            try:
                tls = await sidecar._server_handshake(TCPTransport(ours), listener, qkd,
                                                      ConnectionRecord("server", "bench", "peer"))
            finally:
                sys.settrace(None)
            if i < 3:
                by_function.clear()
            if tls.info is None:
                raise RuntimeError(f"{kind}: the handshake did not complete")
            await tls.send_eof()
            client.join(10)
            ours.close()

    trio.run(main)
    return round(sum(by_function.values()) / handshakes), by_function


def _client_qkd(key_file: Path) -> Any:
    from pqproxy.qkd.binding import QKDIdentity
    from pqproxy.tls.config import ExternalPSK

    keys = json.loads(key_file.read_text())["keys"]
    return iter([ExternalPSK(identity=QKDIdentity("client", key_id).encode(), key=base64.b64decode(material))
                 for key_id, material in keys.items()])


def _client(sock: socket.socket, pki: dict[str, Path], qkd: Any) -> None:
    from pqproxy.tls.certificates import load_trust_store
    from pqproxy.tls.client import TLSClient
    from pqproxy.tls.config import TLSConfig
    from pqproxy.tls.events import HandshakeComplete, PeerClosed

    config = TLSConfig(server_name="localhost", trust_store=load_trust_store(pki["ca"]),
                       external_psk=next(qkd) if qkd is not None else None)
    client = TLSClient(config)
    sock.settimeout(10)
    with sock:
        sock.sendall(client.data_to_send())
        done = False
        while not done:
            data = sock.recv(65536)
            if not data:
                return
            for event in client.receive_data(data):
                if isinstance(event, PeerClosed):
                    done = True
                elif isinstance(event, HandshakeComplete):
                    sock.sendall(client.data_to_send())
            sock.sendall(client.data_to_send())


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    print(json.dumps(count(*(int(a) for a in sys.argv[1:3]))))
