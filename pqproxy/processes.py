"""Stopping a child process we started: SIGTERM, a bounded wait, then SIGKILL (lab, demo, probe, tests)."""

from __future__ import annotations

import subprocess
from typing import Any


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """SIGTERM, a bounded wait, then SIGKILL: a process we started is gone afterwards, whatever it did."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
