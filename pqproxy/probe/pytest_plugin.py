"""A pytest plugin (entry point ``pytest11``): assert handshake success of your endpoints in your own suites.

    def test_gateway_survives_pq_hellos(pq_probe):
        result = pq_probe("gateway.internal:443", suite="ci")
        result.assert_no_breakage()          # fails with the diagnoses and failing probes, in words
        result.assert_pq_ready()             # the server prefers a post-quantum group

The fixture runs the probe in-process (trio) and returns a ``ProbeCheck``. Options:
``--pq-probe-report DIR`` writes each call's JSON report there (for a CI artifact), and
``--pq-probe-suite NAME`` changes the default suite (``ci``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .model import FAIL, RunReport, TargetReport


@dataclass
class ProbeCheck:
    report: RunReport
    target: TargetReport

    @property
    def diagnosis_ids(self) -> list[str]:
        return [d.id for d in self.target.diagnoses]

    @property
    def readiness(self) -> Any:
        return self.target.readiness

    def explain(self) -> str:
        t = self.target
        if not t.reachable:
            return f"{t.target}: unreachable: {t.error}"
        lines = [f"{t.target} (SNI {t.server_name or '-'}):"]
        for d in t.diagnoses:
            lines.append(f"  {d.id}: {d.summary}")
            if d.evidence:
                lines.append(f"    evidence: {', '.join(d.evidence)}")
        for r in t.results:
            if r.verdict == FAIL:
                lines.append(f"  probe {r.spec.id} ({r.spec.delivery}, {r.hello_size} bytes) failed: {r.reason}")
        if len(lines) == 1:
            lines.append("  no breakage")
        return "\n".join(lines)

    def assert_no_breakage(self) -> None:
        __tracebackhide__ = True
        if not self.target.reachable or self.target.diagnoses or self.target.failed_probes():
            pytest.fail("post-quantum ClientHellos break on this path:\n" + self.explain(), pytrace=False)

    def assert_pq_ready(self) -> None:
        __tracebackhide__ = True
        readiness = self.target.readiness
        if readiness is None:
            pytest.fail(f"{self.target.target}: no readiness probes ran (use a suite with the readiness check)",
                        pytrace=False)
        if readiness.verdict != "pq-ready":
            pytest.fail(f"{self.target.target} is {readiness.verdict}: {readiness.summary}", pytrace=False)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pqproxy-probe", "pqproxy probe: post-quantum ClientHello checks")
    group.addoption("--pq-probe-suite", default="ci", help="default suite for the pq_probe fixture (ci)")
    group.addoption("--pq-probe-report", default=None, metavar="DIR", help="write each pq_probe report as JSON here")


@pytest.fixture
def pq_probe(request: pytest.FixtureRequest) -> Callable[..., ProbeCheck]:
    """``pq_probe(target, suite=None, sni=None, checks=None, attempts=None, raw=False, proxy=None)``
    -> ``ProbeCheck``; ``proxy`` is an HTTP proxy's host:port to CONNECT through."""
    import trio

    from .engine import Target, parse_target
    from .runner import RunOptions, run_suite
    from .suite import load_suite

    default_suite = request.config.getoption("--pq-probe-suite")
    report_dir = request.config.getoption("--pq-probe-report")

    def run(target: str, suite: str | None = None, sni: str | None = None, checks: list[str] | None = None,
            attempts: int | None = None, raw: bool = False, proxy: str | None = None) -> ProbeCheck:
        loaded = load_suite(suite or default_suite)
        if checks is not None:
            loaded.checks = list(checks)
        if attempts is not None:
            loaded.attempts = attempts
        if not raw:
            loaded.raw = "no"
        parsed = parse_target(target, sni)
        if proxy is not None:
            via = parse_target(proxy)
            parsed = Target(parsed.host, parsed.port, parsed.server_name, (via.host, via.port))
        report = trio.run(run_suite, [parsed], loaded, RunOptions(concurrency=1))
        if report_dir:
            from .report import write_json

            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{request.node.name}-{parsed}")
            Path(report_dir).mkdir(parents=True, exist_ok=True)
            write_json(report, Path(report_dir) / f"{name}.json")
        return ProbeCheck(report, report.targets[0])

    return run
