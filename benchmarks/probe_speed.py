"""Time per target of the ``default`` probe suite on a clean path, a resetting path and two silent ones.

The paths are the lab's emulators (``pqproxy/lab/emulators.py``) in front of ``pqproxy server`` on loopback:

- ``clean``: the server itself;
- ``resetting``: ``SizeThresholdEmulator(limit=1500)``, a reset for every hello over 1,500 bytes on the wire;
- ``silent-hold``: the same with ``silent``: such a connection is held, never answered or closed;
- ``silent-split-drop``: ``EarlyVerdictEmulator``, a large hello in pieces is dropped silently.

Each path is probed with the suite as shipped (waits learned from the target's answers, ``parallel`` probes at a
time) and, with ``--baseline``, as the probe did before both (``adaptive_timeout = false``, ``parallel = 1``:
every wait the suite's 5 s, one probe at a time; about 8 minutes in all). Raw-packet probes are off (``raw =
"no"``), as in ``make bench``. For each run: seconds, diagnoses, and the probes that did not pass; with the
baseline, whether both runs gave each probe the same verdict.

Run as ``python -m benchmarks.probe_speed [--baseline]``. Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from benchmarks import sidecars
from pqproxy.lab.emulators import EarlyVerdictEmulator, Emulator, SizeThresholdEmulator
from pqproxy.probe.engine import Target
from pqproxy.probe.model import PASS, TargetReport
from pqproxy.probe.runner import RunOptions, run_suite
from pqproxy.probe.suite import load_suite

PATHS = ("clean", "resetting", "silent-hold", "silent-split-drop")


def _emulator(path: str, server_port: int) -> Emulator | None:
    if path == "resetting":
        return SizeThresholdEmulator(server_port, limit=1500)
    if path == "silent-hold":
        return SizeThresholdEmulator(server_port, limit=1500, silent=True)
    if path == "silent-split-drop":
        return EarlyVerdictEmulator(server_port)
    return None


def _probe(port: int, *, baseline: bool) -> tuple[float, TargetReport]:
    suite = load_suite("default")
    suite.raw = "no"
    if baseline:
        suite.adaptive_timeout, suite.parallel = False, 1
    started = time.monotonic()
    report = trio.run(run_suite, [Target("127.0.0.1", port, "localhost")], suite, RunOptions())
    return round(time.monotonic() - started, 1), report.targets[0]


def _summary(seconds: float, target: TargetReport) -> dict[str, Any]:
    return {"seconds": seconds, "diagnoses": [d.id for d in target.diagnoses],
            "not_passed": sorted(r.spec.id for r in target.results if r.verdict != PASS),
            "answer_timeout_s": target.answer_timeout_s, "probes": len(target.results)}


def measure(baseline: bool = False) -> dict[str, Any]:
    from pqproxy.certs import write_dev_pki

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pqproxy-bench-probe-speed-") as tmp:
        pki = write_dev_pki(Path(tmp), alg="ecdsa", names=("localhost", "127.0.0.1"))
        with sidecars.pqproxy_on_loopback(pki) as port:
            for path in PATHS:
                box = _emulator(path, port)
                try:
                    target_port = box.port if box else port
                    seconds, target = _probe(target_port, baseline=False)
                    row: dict[str, Any] = {"learned_parallel": _summary(seconds, target)}
                    if baseline:
                        seconds, before = _probe(target_port, baseline=True)
                        row["fixed_sequential"] = _summary(seconds, before)
                        verdicts = {r.spec.id: r.verdict for r in target.results}
                        row["same_verdicts"] = verdicts == {r.spec.id: r.verdict for r in before.results}
                finally:
                    if box is not None:
                        box.stop()
                results[path] = row
                print(f"{path}: {json.dumps(row)}", file=sys.stderr, flush=True)
    return results


if __name__ == "__main__":
    print(json.dumps(measure(baseline="--baseline" in sys.argv[1:]), indent=1))
