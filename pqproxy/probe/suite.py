"""Probe suites: TOML files that say which checks to run and how hard to try.

The shipped suites live in ``probes/`` (installed as ``pqproxy/probe/suites``): ``default`` (the
whole catalogue), ``quick``, ``sweep``, ``readiness`` and ``ci``. A suite is named by its file stem or
given as a path. The format::

    name = "mine"
    description = "what it is for"
    checks = ["split-segments", "multi-record", "readiness"]   # checks.CHECK_IDS
    profile = "chrome"        # the post-quantum hello of the checks: chrome, openssl35, mlkem1024, replay:NAME
    attempts = 2              # per probe; a probe passes only if every attempt does
    timeout = 5.0             # seconds to wait for an answer after the last write, at most (see adaptive_timeout)
    adaptive_timeout = true   # wait 4 x the target's slowest answer + 0.25 s (at least 1 s) once it has answered
    parallel = 4              # probes of one target in flight at once, after the controls (1: one by one)
    connect_timeout = 5.0
    pause = 0.2               # seconds between the writes of a split hello
    raw = "auto"              # raw-packet probes: "auto" (when root and nftables), "yes", "no"
    transport = "tcp"         # "quic": the checks run over QUIC (UDP) and the controls are QUIC Initials

    [sweep]                   # size-threshold
    sizes = [512, 1024, 2048, 4096, 8192]
    refine = true             # binary search between the last passing and first failing size

    [[probe]]                 # probes of your own (model.ProbeSpec fields)
    id = "mine/split@1400"
    profile = "chrome"
    delivery = "split@1400"
    control = "pq/one-write"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .checks import CHECK_IDS, DEFAULT_SWEEP
from .delivery import parse_shape
from .model import ProbeSpec

MAX_ATTEMPTS = 10
MAX_TIMEOUT = 120.0
MAX_SWEEP_SIZE = 65535  # a handshake message longer than this is not a ClientHello any server reads
MAX_PROBES = 500

_SUITE_KEYS = {"name", "description", "checks", "profile", "attempts", "timeout", "connect_timeout", "pause", "raw",
               "sweep", "probe", "transport", "adaptive_timeout", "parallel"}
MAX_PARALLEL = 16
_PROBE_KEYS = {"id", "profile", "delivery", "size", "control", "check", "expect", "description", "options"}


@dataclass
class Suite:
    name: str
    description: str = ""
    checks: list[str] = field(default_factory=list)
    profile: str = "chrome"
    attempts: int = 2
    timeout: float = 5.0
    adaptive_timeout: bool = True
    parallel: int = 4
    connect_timeout: float = 5.0
    pause: float = 0.2
    raw: str = "auto"
    transport: str = "tcp"
    sweep: list[int] = field(default_factory=lambda: list(DEFAULT_SWEEP))
    refine: bool = True
    probes: list[ProbeSpec] = field(default_factory=list)
    source: str = ""


def suites_dir() -> Path:
    return Path(str(resources.files("pqproxy.probe") / "suites"))


def shipped_suites() -> list[str]:
    return sorted(p.stem for p in suites_dir().glob("*.toml"))


def load_suite(name_or_path: str) -> Suite:
    path = Path(name_or_path)
    if not (path.suffix == ".toml" or path.exists()):
        path = suites_dir() / f"{name_or_path}.toml"
        if not path.exists():
            raise ValueError(f"no suite {name_or_path!r}: shipped suites are {', '.join(shipped_suites())}, "
                             "or give a path to a .toml file")
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"suite {path}: {exc}") from None
    return parse_suite(data, str(path))


def parse_suite(data: dict[str, Any], source: str = "<suite>") -> Suite:
    def fail(message: str) -> ValueError:
        return ValueError(f"suite {source}: {message}")

    unknown = set(data) - _SUITE_KEYS
    if unknown:
        raise fail(f"unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_SUITE_KEYS))})")
    suite = Suite(name=str(data.get("name") or Path(source).stem), source=source)
    suite.description = str(data.get("description", ""))
    checks = data.get("checks", [])
    if not isinstance(checks, list) or any(c not in CHECK_IDS for c in checks):
        raise fail(f"checks must be a list of {', '.join(CHECK_IDS)}; got {checks!r}")
    suite.checks = list(checks)
    suite.profile = str(data.get("profile", suite.profile))
    suite.attempts = _number(data, "attempts", suite.attempts, 1, MAX_ATTEMPTS, fail, integer=True)
    suite.timeout = _number(data, "timeout", suite.timeout, 0.1, MAX_TIMEOUT, fail)
    suite.connect_timeout = _number(data, "connect_timeout", suite.connect_timeout, 0.1, MAX_TIMEOUT, fail)
    suite.pause = _number(data, "pause", suite.pause, 0.0, 30.0, fail)
    suite.parallel = _number(data, "parallel", suite.parallel, 1, MAX_PARALLEL, fail, integer=True)
    adaptive = data.get("adaptive_timeout", suite.adaptive_timeout)
    if not isinstance(adaptive, bool):
        raise fail("adaptive_timeout must be true or false")
    suite.adaptive_timeout = adaptive
    suite.raw = str(data.get("raw", suite.raw))
    if suite.raw not in ("auto", "yes", "no"):
        raise fail("raw must be auto, yes or no")
    suite.transport = str(data.get("transport", suite.transport))
    if suite.transport not in ("tcp", "quic"):
        raise fail("transport must be tcp or quic")
    from .checks import QUIC_CHECKS

    wrong = [c for c in suite.checks if (c in QUIC_CHECKS) != (suite.transport == "quic")]
    if wrong:
        raise fail(f"check(s) {', '.join(wrong)} do not run over {suite.transport} (set transport accordingly)")
    sweep = data.get("sweep", {})
    if not isinstance(sweep, dict) or set(sweep) - {"sizes", "refine"}:
        raise fail("[sweep] takes sizes and refine")
    if "sizes" in sweep:
        sizes = sweep["sizes"]
        if not isinstance(sizes, list) or not sizes or any(
            not isinstance(s, int) or not 64 <= s <= MAX_SWEEP_SIZE for s in sizes
        ):
            raise fail(f"sweep.sizes must be integers from 64 to {MAX_SWEEP_SIZE}")
        suite.sweep = sorted(set(sizes))
    suite.refine = bool(sweep.get("refine", True))
    probes = data.get("probe", [])
    if not isinstance(probes, list) or len(probes) > MAX_PROBES:
        raise fail(f"[[probe]] tables: at most {MAX_PROBES}")
    for raw_probe in probes:
        suite.probes.append(_probe(raw_probe, fail))
    if not suite.checks and not suite.probes:
        raise fail("nothing to run: give checks or [[probe]] tables")
    return suite


def _probe(data: Any, fail: Any) -> ProbeSpec:
    if not isinstance(data, dict) or "id" not in data:
        raise fail("each [[probe]] needs an id")
    unknown = set(data) - _PROBE_KEYS
    if unknown:
        raise fail(f"probe {data['id']}: unknown key(s) {', '.join(sorted(unknown))}")
    spec = ProbeSpec(**{k: v for k, v in data.items() if k != "options"}, options=dict(data.get("options", {})))
    try:
        parse_shape(spec.delivery)
    except ValueError as exc:
        raise fail(f"probe {spec.id}: {exc}") from None
    if spec.expect not in ("tls", "server_hello", "answer"):
        raise fail(f"probe {spec.id}: expect must be tls, server_hello or answer")
    if spec.check is None:
        spec.check = "custom"
    return spec


def _number(data: dict[str, Any], key: str, default: Any, low: float, high: float, fail: Any,
            integer: bool = False) -> Any:
    value = data.get(key, default)
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        raise fail(f"{key} must be a number from {low:g} to {high:g}")
    return value
