"""``pqproxy lab run``: the probe suite through every scenario, expected against found.

Each scenario's probe is a real ``pqproxy probe`` process in the client namespace (as a user would run it,
raw-packet probes included, as root), writing its JSON report into the lab's directory; the diagnoses it
names are compared with the scenario's, exactly, and so is the black hole's hop. Scenarios run a few at
a time (each probe waits on the network far more than it computes); each is bounded by
``SCENARIO_TIMEOUT``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

from .gear import GOOD_NAME
from .scenarios import Scenario

SCENARIO_TIMEOUT = 300.0  # one probe run; the default suite takes 5-40 s on the lab's paths
DEFAULT_TIMEOUT = 1.0  # the probe's wait for an answer: the lab's paths answer in milliseconds
DEFAULT_CONCURRENCY = 4
SCHEMA = "pqproxy-lab/1"


@dataclass
class ScenarioResult:
    id: str
    kind: str
    gear: str
    target: str
    expected: list[str]
    found: list[str] = field(default_factory=list)
    expected_hop: str | None = None
    found_hop: str | None = None
    ok: bool = False
    exit_code: int | None = None
    seconds: float = 0.0
    error: str | None = None  # the probe could not be run, or did not report
    summaries: list[str] = field(default_factory=list)  # the probe's own words for each diagnosis
    report: str | None = None  # the probe's JSON report
    # A mismatch is probed once more, with twice the timeout: a control that timed out on a loaded machine
    # (CI runs the lab beside other tests on two cores) is not a wrong diagnosis. What the first run found
    # stays in the result.
    rechecked: bool = False
    first_found: list[str] | None = None


def _probe_argv(scenario: Scenario, client_ns: str, suite: str, timeout: float, report: Path) -> list[str]:
    argv = ["ip", "netns", "exec", client_ns, sys.executable, "-m", "pqproxy", "probe", scenario.target,
            "--sni", GOOD_NAME, "--timeout", str(timeout), "--json", str(report), "--quiet"]
    argv += ["--quic"] if scenario.quic else ["--suite", suite]
    if scenario.proxy:
        argv += ["--proxy", scenario.proxy]
    return argv


def judge(scenario: Scenario, report: dict[str, Any]) -> tuple[list[str], str | None, list[str]]:
    """The diagnoses (ids), the pmtu-blackhole hop, and the summaries a probe report names."""
    (target,) = report["targets"]
    diagnoses = target.get("diagnoses", [])
    found = sorted({d["id"] for d in diagnoses})
    hop = next((d.get("hop") for d in diagnoses if d["id"] == "pmtu-blackhole"), None)
    return found, hop, [f"{d['id']}: {d.get('summary', '')}" for d in diagnoses]


async def _run_one(scenario: Scenario, client_ns: str, suite: str, timeout: float, out: Path,
                   unavailable: str | None) -> ScenarioResult:
    result = await _attempt(scenario, client_ns, suite, timeout, out, unavailable)
    if result.ok or result.error is not None:
        return result
    again = await _attempt(scenario, client_ns, suite, timeout * 2, out, unavailable)
    again.rechecked, again.first_found = True, result.found
    again.seconds = round(result.seconds + again.seconds, 1)
    return again


async def _attempt(scenario: Scenario, client_ns: str, suite: str, timeout: float, out: Path,
                   unavailable: str | None) -> ScenarioResult:
    result = ScenarioResult(scenario.id, scenario.kind, scenario.gear, scenario.target, sorted(scenario.expected),
                            expected_hop=scenario.hop)
    if unavailable:
        result.error = f"not run: {unavailable}"
        return result
    report = out / f"{scenario.id}.json"
    report.unlink(missing_ok=True)
    started = time.monotonic()
    with trio.move_on_after(SCENARIO_TIMEOUT) as scope:
        done = await trio.run_process(_probe_argv(scenario, client_ns, suite, timeout, report), check=False,
                                      capture_stdout=True, capture_stderr=True)
    result.seconds = round(time.monotonic() - started, 1)
    if scope.cancelled_caught:
        result.error = f"the probe did not finish in {SCENARIO_TIMEOUT:.0f} s"
        return result
    result.exit_code = done.returncode
    try:
        found, hop, summaries = judge(scenario, json.loads(report.read_text()))
    except (OSError, ValueError, KeyError) as exc:
        stderr = done.stderr.decode(errors="replace").strip()[-800:]
        result.error = f"no report from the probe (exit {done.returncode}: {stderr or exc})"
        return result
    result.found, result.found_hop, result.summaries, result.report = found, hop, summaries, str(report)
    result.ok = set(found) == scenario.expected and (scenario.hop is None or hop == scenario.hop)
    return result


async def run_scenarios(scenarios: Sequence[Scenario], client_ns: str, out: Path, *, unavailable: dict[str, str],
                        suite: str = "default", timeout: float = DEFAULT_TIMEOUT,
                        concurrency: int = DEFAULT_CONCURRENCY, on_result: Any = None) -> list[ScenarioResult]:
    results: dict[str, ScenarioResult] = {}
    limiter = trio.CapacityLimiter(max(1, concurrency))

    async def one(scenario: Scenario) -> None:
        async with limiter:
            results[scenario.id] = await _run_one(scenario, client_ns, suite, timeout, out,
                                                  unavailable.get(scenario.service))
        if on_result is not None:
            on_result(results[scenario.id])

    async with trio.open_nursery() as nursery:
        for scenario in sorted(scenarios, key=lambda sc: not sc.slow):  # the slow ones bound the run: first
            nursery.start_soon(one, scenario)
            await trio.sleep(0)  # start in this order (the limiter is FIFO)
    return [results[s.id] for s in scenarios]


def to_json(results: Sequence[ScenarioResult], lab: str) -> dict[str, Any]:
    return {"schema": SCHEMA, "lab": lab, "ok": all(r.ok for r in results),
            "scenarios": [asdict(r) for r in results]}
