"""scripts/conformance.py reads tlsfuzzer's output right (tlsfuzzer itself is never run here: it is fetched for
conformance runs, never part of `make test`). The texts below are the shapes tlsfuzzer prints, cut from real runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "conformance.py"


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conformance", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["conformance"] = module
    spec.loader.exec_module(module)
    return module


FAILING = """\
"sanity" repeat 0...
OK
"After NewSessionTicket" repeat 0...
Error encountered while processing node ExpectNewSessionTicket() (child: <tlsfuzzer.messages.Close object>)
Error while processing
Traceback (most recent call last):
  File "/tmp/tlsf/tlsfuzzer/tlsfuzzer/runner.py", line 235, in run
    raise AssertionError("Unexpected message from peer: " +
AssertionError: Unexpected message from peer: ApplicationData(len=18)
"After NewSessionTicket" repeat 1...
Error encountered while processing node ExpectNewSessionTicket()
Error while processing
Traceback (most recent call last):
  File "/tmp/tlsf/tlsfuzzer/tlsfuzzer/runner.py", line 235, in run
AssertionError: Unexpected message from peer: ApplicationData(len=18)
Test end
====================
version: 3
====================
TOTAL: 3
SKIP: 0
PASS: 1
XFAIL: 0
FAIL: 2
XPASS: 0
====================
FAILED:
\t'After NewSessionTicket'
\t'After NewSessionTicket'
"""


def test_a_failing_run_gives_its_score_cases_and_reasons() -> None:
    result = _harness().parse_output(FAILING, timed_out=False)
    assert (result.status, result.passed, result.total, result.failed) == ("fail", 1, 3, 2)
    assert result.score() == "1/3"
    assert result.failing_cases == ["After NewSessionTicket"]
    assert "ApplicationData(len=18)" in result.reasons["After NewSessionTicket"]


def test_repetitions_are_scored_per_case() -> None:
    """serverhello-random and dhe-shared-secret-padding print TOTAL in cases but PASS in repetitions."""
    text = FAILING.replace("TOTAL: 3", "TOTAL: 8").replace("PASS: 1", "PASS: 501")
    result = _harness().parse_output(text, timed_out=False)
    assert result.total == 8 and result.passed == 7 and result.counted.startswith("per case")


def test_a_run_cut_short_counts_what_finished() -> None:
    cut = FAILING.split("Test end")[0]
    result = _harness().parse_output(cut, timed_out=True)
    assert result.status == "timeout" and result.total is None
    assert result.passed == 1 and result.failed == 2 and result.score() == "1/? (timeout)"
