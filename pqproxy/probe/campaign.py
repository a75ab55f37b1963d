"""Probe campaigns past one machine: targets read as a stream, split into shards, paced, and merged back.

A network team probes thousands of endpoints from several vantage points, as ZMap and zgrab2 users shard scans
across machines; pqproxy leaves the scheduling to Kubernetes (an Indexed Job: ``deploy/kubernetes/
probe-campaign.yaml``) and gives each process:

- ``shard_of``: which of N shards a target belongs to, from a hash of the target alone, so every target lands in
  exactly one shard whatever the order of the file, and every pod of the Job computes the same split;
- ``read_targets``: the targets of a file one at a time (with their line's position, which orders the reports), so
  100,000 lines never become 100,000 objects before the first is probed;
- ``Pacer``: at most R new connections a second in this process, so a campaign does not look like an attack;
- ``JSONStream``: the JSON report written target by target, the same document ``report.write_json`` writes;
- ``merge``: the shards' reports as one, equal to what one process probing every target reports.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import trio

from .engine import Target, parse_target
from .model import RunReport, TargetReport

MAX_TARGET_LINE = 1024
MAX_SHARDS = 100_000
MAX_RATE = 100_000.0


def shard_key(target: Target) -> bytes:
    proxy = "{}:{}".format(*target.proxy) if target.proxy else ""
    return f"{target.host}\x00{target.port}\x00{target.server_name or ''}\x00{proxy}".encode()


def shard_of(target: Target, shards: int) -> int:
    """The shard (0..shards-1) of a target: the first 8 bytes of SHA-256 of the target, modulo ``shards``."""
    return int.from_bytes(hashlib.sha256(shard_key(target)).digest()[:8], "big") % shards


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``I/N`` (shard I of N, 0-based) or ``auto/N``, I from ``JOB_COMPLETION_INDEX`` (a Kubernetes Indexed Job)."""
    environ = os.environ if environ is None else environ
    index_text, slash, count_text = text.partition("/")
    if not slash:
        raise ValueError(f"--shard {text!r}: want I/N or auto/N")
    try:
        count = int(count_text)
    except ValueError:
        raise ValueError(f"--shard {text!r}: N must be a number") from None
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"--shard {text!r}: N must be from 1 to {MAX_SHARDS}")
    if index_text == "auto":
        index_text = environ.get("JOB_COMPLETION_INDEX", "")
        if not index_text:
            raise ValueError("--shard auto/N: JOB_COMPLETION_INDEX is not set (it is in a Kubernetes Indexed Job)")
    try:
        index = int(index_text)
    except ValueError:
        raise ValueError(f"--shard {text!r}: I must be a number, got {index_text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: I must be from 0 to {count - 1}")
    return index, count


def read_targets(lines: Iterable[str], source: str, server_name: str | None = None,
                 shard: tuple[int, int] | None = None) -> Iterator[tuple[int, Target]]:
    """(position, target) for each target line of ``lines`` ('host:port [sni]', # comments), lazily; with
    ``shard`` = (I, N), only those of shard I. The position counts every target line, whatever the shard, so
    the shards' reports merge into the order of the file. ValueError names the line of a bad one."""
    position = 0
    for number, raw in enumerate(lines, 1):
        if len(raw) > MAX_TARGET_LINE:
            raise ValueError(f"{source}:{number}: line too long")
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        text, _, name = line.partition(" ")
        try:
            target = parse_target(text, name.strip() or server_name)
        except ValueError as exc:
            raise ValueError(f"{source}:{number}: {exc}") from None
        if shard is None or shard_of(target, shard[1]) == shard[0]:
            yield position, target
        position += 1


def file_lines(path: Path) -> Iterator[str]:
    """The lines of a targets file, read as they are needed (the file stays open until the last)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        yield from f


class Pacer:
    """At most ``rate`` connections a second, for every task of one trio run: each ``wait`` takes the next slot,
    1/rate after the last one handed out (or now, when the line is empty)."""

    def __init__(self, rate: float) -> None:
        if not 0 < rate <= MAX_RATE:
            raise ValueError(f"--rate must be above 0 and at most {MAX_RATE:g} connections a second")
        self.interval = 1.0 / rate
        self._next = -float("inf")

    async def wait(self) -> None:
        now = trio.current_time()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await trio.sleep_until(slot)


class JSONStream:
    """The JSON report of ``report.write_json``, written as targets finish: the head at once, a target at a time,
    and the tail (``regressions``) at ``close``. Holds one target at a time, never the run."""

    def __init__(self, path: Path, head: RunReport) -> None:
        from .report import SCHEMA

        self._file: IO[str] = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._first = True
        fields = {"schema": SCHEMA, **{k: v for k, v in head.to_dict().items() if k not in ("targets", "regressions")}}
        text = json.dumps(fields, indent=2, ensure_ascii=True, default=str)
        self._file.write(text[:-2] + ',\n  "targets": [')

    def add(self, target: TargetReport) -> None:
        one = RunReport(suite="", started="", version="", targets=[target]).to_dict()["targets"][0]
        text = json.dumps(one, indent=2, ensure_ascii=True, default=str).replace("\n", "\n    ")
        self._file.write(("\n    " if self._first else ",\n    ") + text)
        self._first = False

    def close(self, regressions: list[str]) -> None:
        self._file.write(("\n  ]" if not self._first else "]") + ',\n  "regressions": '
                         + json.dumps(regressions, ensure_ascii=True) + "\n}\n")
        self._file.close()


def merge(reports: list[tuple[str, RunReport]]) -> RunReport:
    """One report from the shards' (name, report): the targets of all, in the order of the targets file (their
    position), checked to come from one campaign (same suite and version) with no target twice."""
    if not reports:
        raise ValueError("probe merge: no reports given")
    first_name, first = reports[0]
    seen: dict[tuple[int | None, str, str | None], str] = {}
    targets: list[TargetReport] = []
    for name, report in reports:
        if (report.suite, report.version) != (first.suite, first.version):
            raise ValueError(f"probe merge: {name} is suite {report.suite} of pqproxy {report.version}, "
                             f"{first_name} is suite {first.suite} of pqproxy {first.version}: not one campaign")
        for t in report.targets:
            key = (t.index, t.target, t.server_name)
            if key in seen:
                raise ValueError(f"probe merge: target {t.target} (SNI {t.server_name}, position {t.index}) is in "
                                 f"both {seen[key]} and {name}: shards of one campaign never share a target")
            seen[key] = name
            targets.append(t)
    targets.sort(key=lambda t: (t.index is None, t.index or 0, t.target, t.server_name or ""))
    started = min(r.started for _, r in reports)
    regressions = sorted({key for _, r in reports for key in r.regressions})
    return RunReport(suite=first.suite, started=started, version=first.version, targets=targets,
                     regressions=regressions)


def read_report(path: Path) -> RunReport:
    from .report import report_from_dict

    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return report_from_dict(data, str(path))
