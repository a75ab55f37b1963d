"""Where a sidecar connection's CPU goes: the engine's share, measured inside a running sidecar.

The sidecar (``Proxy``, as a worker runs it, multi-process metrics and the JSON log line included) runs in
this process; the Node echo upstream and the Node load generator (``node_load.js``, as in ``sidecars.py``)
run outside it. Every call into the engine (``TLSServer()``, ``receive_data``, ``data_to_send``,
``send_data``, ``close``) is timed with ``time.thread_time``; the rest of the process's CPU (user + system)
is the I/O edge: trio, sockets and the kernel's TCP work, logging, metrics.

Inside the engine's time, the primitives are timed too, where the engine calls them: the ML-KEM
encapsulation (key check included), X25519 key generation and exchange, the ECDSA signature, every HMAC of
the key schedule, and every AES-GCM key set-up, seal and open of the record layer (the session ticket's own
sealing is not among them). ``engine_primitives_us`` is what the crypto floor costs in situ, against
``engine.py``'s floor measured alone; ``engine_python_us`` is the rest of the engine: CPython running the handshake.
Each timed call costs two clock reads (~0.5 µs each here): a primitive's own timing is taken out of the
engine's time, and half of it (one read falls inside its window) out of the primitives'.

Run as a module in a process of its own (``python -m benchmarks.inside N``): it wraps engine methods, which
must not leak into other measurements. Prints one JSON object.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio


def _timed(method: Any, total: list[float]) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return method(*args, **kwargs)
        finally:
            total[0] += time.thread_time() - start
            total[1] += 1

    return timed


def _timing_cost() -> float:
    """CPU seconds of one timed call's own bookkeeping (two clock reads, ~0.5 us each on this VM)."""
    total = [0.0, 0]
    nothing = _timed(lambda: None, total)
    start = time.thread_time()
    for _ in range(20000):
        nothing()
    return (time.thread_time() - start) / 20000


class _TimedAEAD:
    """An AEAD whose set-up, seal and open are timed (the record layer's ``suite.aead(key)``)."""

    __slots__ = ("_aead",)

    def __init__(self, aead: Any) -> None:
        self._aead = aead

    def encrypt(self, nonce: bytes, data: Any, associated: bytes) -> bytes:
        return self._aead.encrypt(nonce, data, associated)  # type: ignore[no-any-return]

    def decrypt(self, nonce: bytes, data: Any, associated: bytes) -> bytes:
        return self._aead.decrypt(nonce, data, associated)  # type: ignore[no-any-return]


def _time_primitives(primitives: list[Any]) -> None:
    """Wrap the primitives where the engine calls them; their CPU seconds and calls go into ``primitives``."""
    from pqproxy.tls import certificates, groups, kem, key_schedule

    for owner, name in ((kem._CryptographyKEM, "encapsulate"), (groups._ECDH, "generate"), (groups._ECDH, "exchange"),
                        (certificates, "sign")):
        setattr(owner, name, _timed(getattr(owner, name), primitives))
    key_schedule._hmac_digest = _timed(key_schedule._hmac_digest, primitives)
    for suite in key_schedule.CIPHER_SUITES.values():
        timed_new = _timed(suite.aead, primitives)

        def aead(key: bytes, timed_new: Any = timed_new) -> _TimedAEAD:
            return _TimedAEAD(timed_new(key))

        object.__setattr__(suite, "aead", aead)  # CipherSuiteInfo is frozen; this process only measures
    _TimedAEAD.encrypt = _timed(_TimedAEAD.encrypt, primitives)  # type: ignore[method-assign]
    _TimedAEAD.decrypt = _timed(_TimedAEAD.decrypt, primitives)  # type: ignore[method-assign]


def measure(n: int, concurrency: int = 16, group: str = "X25519MLKEM768") -> dict[str, Any]:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir = tempfile.mkdtemp(prefix="pqproxy-bench-metrics-")
    from benchmarks import sidecars
    from pqproxy.certs import write_dev_pki
    from pqproxy.proxy.config import build_server_runtime, server_settings
    from pqproxy.proxy.metrics import Metrics
    from pqproxy.proxy.sidecar import Proxy
    from pqproxy.proxy.supervisor import setup_logging
    from pqproxy.tls.connection import TLSConnection
    from pqproxy.tls.server import TLSServer

    engine: list[Any] = [0.0, 0]  # CPU seconds in the engine, timed calls
    primitives: list[Any] = [0.0, 0]  # CPU seconds in the primitives (inside the engine's), timed calls
    cost = _timing_cost()
    _time_primitives(primitives)
    for name in ("receive_data", "data_to_send", "send_data", "close"):
        setattr(TLSConnection, name, _timed(getattr(TLSConnection, name), engine))
    TLSServer.__init__ = _timed(TLSServer.__init__, engine)  # type: ignore[method-assign]

    with tempfile.TemporaryDirectory(prefix="pqproxy-bench-inside-") as tmp:
        pki = write_dev_pki(Path(tmp), alg="ecdsa", names=("localhost", "127.0.0.1"))
        port, upstream_port = sidecars._free_port(), sidecars._free_port()
        upstream = sidecars._echo_upstream(upstream_port)
        settings = server_settings(None, {"listen": f"127.0.0.1:{port}", "upstream": f"127.0.0.1:{upstream_port}",
                                          "cert": str(pki["server"]), "key": str(pki["server_key"])})
        runtime = build_server_runtime(settings, [os.urandom(32)])
        setup_logging("info")
        devnull = open(os.devnull, "w")  # noqa: SIM115 - the log lines are written, as a worker writes them
        logging.getLogger().handlers[0].setStream(devnull)  # type: ignore[attr-defined]
        base = {"port": port, "ca": str(pki["ca"]), "servername": "localhost", "mode": "handshakes",
                "concurrency": concurrency, "groups": group}
        out: dict[str, Any] = {}

        async def main() -> None:
            proxy = Proxy(runtime, Metrics(), 0)
            async with trio.open_nursery() as nursery:
                await nursery.start(proxy.serve)
                await trio.to_thread.run_sync(sidecars._load, {**base, "n": 200})  # warm-up
                engine[0], engine[1] = 0.0, 0
                primitives[0], primitives[1] = 0.0, 0
                before = os.times()
                result = await trio.to_thread.run_sync(sidecars._load, {**base, "n": n})
                after = os.times()
                if result["errors"] or result["groups"] != {group: n}:
                    raise RuntimeError(f"inside: {result}")
                # The timing's own cost is taken out of the total (it would otherwise count as edge).
                timing = (engine[1] + primitives[1]) * cost
                user, system = after.user - before.user - timing, after.system - before.system
                engine_s = engine[0] - primitives[1] * cost
                primitives_s = primitives[0] - primitives[1] * cost / 2
                out.update({
                    "n": n,
                    "total_us": round((user + system) / n * 1e6, 1),
                    "user_us": round(user / n * 1e6, 1),
                    "system_us": round(system / n * 1e6, 1),
                    "engine_us": round(engine_s / n * 1e6, 1),
                    "engine_primitives_us": round(primitives_s / n * 1e6, 1),
                    "engine_python_us": round((engine_s - primitives_s) / n * 1e6, 1),
                    "edge_us": round((user + system - engine_s) / n * 1e6, 1),
                    "engine_calls_per_connection": round(engine[1] / n, 1),
                    "primitive_calls_per_connection": round(primitives[1] / n, 1),
                    "timing_cost_us_per_connection": round(timing / n * 1e6, 1),
                })
                nursery.cancel_scope.cancel()

        try:
            trio.run(main)
        finally:
            upstream.stop()
            devnull.close()
            for entry in Path(metrics_dir).glob("*"):
                entry.unlink()
            os.rmdir(metrics_dir)
    return out


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)))
