"""Memory of a probe campaign against its number of targets: streamed, and with the whole report held.

A targets file of N lines on loopback: one in 100 a ``pqproxy server`` (a healthy target, ~20 results in its
report), the others closed ports (unreachable at once: a small report). ``pqproxy probe --targets FILE --suite
quick --concurrency 64 --quiet --json out.json`` streams (each target's line and JSON written as it finishes);
the same with ``--junit`` holds every target's report until the end (JUnit needs the whole run; at most 10,000
targets). For each: the process's peak RSS (its own ``ru_maxrss``, from ``wait4``), the seconds to the first report line
and to the end.

Run as ``python -m benchmarks.probe_campaign [N ...]`` (default 1000 10000 100000). Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import sidecars

HEALTHY_EVERY = 100
MAX_HELD = 10_000  # the probe's cap on targets held in one report


def _measure(argv: list[str], cwd: Path) -> dict[str, Any]:
    """Run one probe process: its peak RSS (MiB), seconds to its first line of output and to its end."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    first_s = time.monotonic() - started
    lines = 1 if first else 0
    for _ in proc.stdout:
        lines += 1
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak (RUSAGE_CHILDREN is the largest of all)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "first_line_s": round(first_s, 2),
            "total_s": round(time.monotonic() - started, 1), "lines": lines, "exit": proc.returncode}


def run(counts: list[int]) -> dict[str, Any]:
    from pqproxy.certs import write_dev_pki

    results: dict[str, Any] = {"healthy_every": HEALTHY_EVERY, "streamed": {}, "held": {}}
    with tempfile.TemporaryDirectory(prefix="pqproxy-bench-campaign-") as tmp:
        work = Path(tmp)
        pki = write_dev_pki(work / "pki", alg="ecdsa", names=("localhost", "127.0.0.1"))
        with sidecars.pqproxy_on_loopback(pki) as port:
            closed = sidecars._free_port()
            for count in sorted(counts):
                listing = work / f"targets-{count}.txt"
                with listing.open("w") as f:
                    for i in range(count):  # distinct targets: the SNI differs
                        target = port if i % HEALTHY_EVERY == 0 else closed
                        f.write(f"127.0.0.1:{target} t{i}.localhost\n")
                base = [sys.executable, "-m", "pqproxy", "probe", "--targets", str(listing), "--suite", "quick",
                        "--concurrency", "64", "--no-raw", "--quiet", "--json", str(work / "out.json")]
                results["streamed"][count] = _measure(base, work)
                print(f"streamed {count}: {results['streamed'][count]}", file=sys.stderr, flush=True)
                if count <= MAX_HELD:
                    results["held"][count] = _measure([*base, "--junit", str(work / "out.xml")], work)
                    print(f"held {count}: {results['held'][count]}", file=sys.stderr, flush=True)
    return results


if __name__ == "__main__":
    wanted = [int(a) for a in sys.argv[1:]] or [1000, 10000, 100000]
    print(json.dumps(run(wanted), indent=1))
