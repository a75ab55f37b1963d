"""A real ``pqproxy kme`` process for the QKD tests: its PKI, its API over mutual TLS, its control endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from pqproxy.qkd.client import KMESettings
from tests.procs import free_port, stop_process

START_TIMEOUT = 20.0


class KME:
    def __init__(self, out: Path, saes: tuple[str, ...] = ("alice", "bob"), *extra: str) -> None:
        self.out = out
        self.port = free_port()
        self.control_port = free_port()
        self.log = out.with_suffix(".log")
        out.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "pqproxy", "kme", "--listen", f"127.0.0.1:{self.port}", "--out", str(out),
                "--control", f"127.0.0.1:{self.control_port}", *extra]
        for sae in saes:
            argv += ["--sae", sae]
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._log, text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        line = ""
        while not line.strip().startswith("{"):
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"pqproxy kme exited {self.proc.returncode}: {self.log.read_text()}")
            assert time.monotonic() < deadline, "pqproxy kme did not start"
        self.ready = json.loads(line)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def settings(self, sae: str, **kwargs: Any) -> KMESettings:
        return KMESettings(self.url, str(self.out / f"{sae}.pem"), str(self.out / f"{sae}.key"),
                           str(self.out / "ca.pem"), **kwargs)

    def control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.control_port}{path}", data=data,
                                         method="POST" if data is not None else "GET")
        with urllib.request.urlopen(request, timeout=5) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()

    def __enter__(self) -> KME:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
