"""Bytecodes the server engine executes per X25519MLKEM768 handshake: a count, not a timing.

This VM's timings drift by tens of percent; the number of bytecodes CPython executes for the same handshake
does not (``sys.settrace`` with opcode events, on the server's calls only: ``TLSServer()``, the ClientHello,
the client's Finished, one byte each way, close). It says whether a change to the engine made it do less,
and which functions do the most.

Run as ``python -m benchmarks.bytecodes [handshakes] [top]``: it installs a trace function, which must not
leak into other measurements. Prints one JSON object.
"""

from __future__ import annotations

import collections
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

_HERE = __file__


def count(handshakes: int = 20, top: int = 15) -> dict[str, Any]:
    from pqproxy.certs import write_dev_pki
    from pqproxy.tls.certificates import CertificateChain, load_trust_store
    from pqproxy.tls.client import TLSClient
    from pqproxy.tls.config import TLSConfig
    from pqproxy.tls.server import TLSServer

    with tempfile.TemporaryDirectory(prefix="pqproxy-bytecodes-") as tmp:
        pki = write_dev_pki(Path(tmp), alg="ecdsa", names=("localhost", "127.0.0.1"))
        chain = CertificateChain.load(pki["server"], pki["server_key"])
        trust = load_trust_store(pki["ca"])
    server_config = TLSConfig(certificate_chain=chain, session_tickets=1)
    client_config = TLSConfig(server_name="localhost", trust_store=trust)
    by_function: collections.Counter[str] = collections.Counter()

    def trace(frame: FrameType, event: str, arg: Any) -> Callable[..., Any]:
        frame.f_trace_opcodes = True
        if event == "opcode" and frame.f_code.co_filename != _HERE:  # the harness's own lines are not counted
            code = frame.f_code
            by_function[f"{Path(code.co_filename).name}:{code.co_firstlineno} {code.co_name}"] += 1
        return trace

    def traced(call: Callable[..., Any], *args: Any) -> Any:
        sys.settrace(trace)
        try:
            return call(*args)
        finally:
            sys.settrace(None)

    for i in range(handshakes + 3):  # three untraced first: imports and caches
        if i == 3:
            by_function.clear()
        client = TLSClient(client_config)
        hello = client.data_to_send()
        server = traced(TLSServer, server_config)
        client.receive_data(traced(_hello_in_flight_out, server, hello))
        client.send_data(b"x")
        client.receive_data(traced(_finished_in_byte_out_close, server, client.data_to_send()))
        if not client.handshake_complete:
            raise RuntimeError("the traced handshake did not complete")
    total = sum(by_function.values())
    return {"handshakes": handshakes, "bytecodes_per_handshake": round(total / handshakes),
            "top": [{"function": name, "per_handshake": round(n / handshakes)}
                    for name, n in by_function.most_common(top)]}


def _hello_in_flight_out(server: Any, hello: bytes) -> bytes:
    server.receive_data(hello)
    return bytes(server.data_to_send())


def _finished_in_byte_out_close(server: Any, finished: bytes) -> bytes:
    server.receive_data(finished)
    server.data_to_send()
    server.send_data(b"x")
    out = server.data_to_send()
    server.close()
    return bytes(out + server.data_to_send())


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    print(json.dumps(count(*(int(a) for a in sys.argv[1:3]))))
