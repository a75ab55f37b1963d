"""The probe's reports: a terminal table, JSON (also the ``--baseline`` input), JUnit XML and one HTML page.

Everything here reads a :class:`~pqproxy.probe.model.RunReport` and writes; nothing probes. Target
names, SNIs, alert texts and reasons are untrusted (they come from the command line, a targets file, a
baseline file or the network): the terminal gets them as plain :class:`rich.text.Text` (never markup),
the HTML through jinja2 with autoescape on, the XML through ElementTree after dropping the characters
XML 1.0 cannot carry.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import model
from .model import FAIL, INCONCLUSIVE, PASS, SKIPPED, Diagnosis, Outcome, ProbeResult, RunReport, TargetReport

SCHEMA = "pqproxy-probe/1"
REPORT_KEYS = ("suite", "started", "version", "targets")  # what a report without a "schema" key must have

VERDICT_STYLES = {PASS: "green", FAIL: "bold red", INCONCLUSIVE: "yellow", SKIPPED: "dim", "unreachable": "red"}
READINESS_STYLES = {"pq-ready": "bold green", "pq-capable": "yellow", "not-pq-ready": "bold red", "unknown": "dim"}

PathLike = str | Path


# --- shared helpers ----------------------------------------------------------------------------------


def _outcome(r: ProbeResult) -> Outcome | None:
    return r.outcome if r.attempts else None


def _describe(r: ProbeResult) -> str:
    o = _outcome(r)
    return o.describe() if o is not None else "not run"


def _verdict(t: TargetReport, r: ProbeResult) -> str:
    """The verdict to show: on an unreachable target the one probe that ran was never judged, so its
    default "pass" says nothing; it shows as "unreachable"."""
    if not t.reachable and not r.passed and r.verdict in (PASS, FAIL, INCONCLUSIVE):
        return "unreachable"
    return r.verdict


def _counts(t: TargetReport) -> Counter[str]:
    return Counter(_verdict(t, r) for r in t.results)


def _status(t: TargetReport) -> str:
    """One word per target: "unreachable", "broken" (diagnoses or failing probes) or "ok"."""
    if not t.reachable:
        return "unreachable"
    return "broken" if t.diagnoses or t.failed_probes() else "ok"


def _diagnosis_for(t: TargetReport, probe_id: str) -> Diagnosis | None:
    """The first diagnosis that cites this probe as (failing) evidence."""
    return next((d for d in t.diagnoses if probe_id in d.evidence), None)


def populations_text(t: TargetReport) -> str:
    """"Chromium 156 passes; Go 1.27 (ML-DSA) fails: rst": what each client population meets on this path."""
    return "; ".join(f"{label} {said}" for label, said in t.populations.items())


def workaround_text(d: Diagnosis) -> str:
    """What would avoid the breakage, and whether this run showed it does."""
    if not d.workaround:
        return ""
    if d.workaround_checked is True:
        return f"{d.workaround} (checked: {', '.join(d.workaround_evidence)} passed on this path)"
    if d.workaround_checked is False:
        return f"{d.workaround} (tried: {', '.join(d.workaround_evidence)} failed on this path too)"
    return f"{d.workaround} (not checked by this run)"


def _diagnosis_facts(d: Diagnosis) -> list[str]:
    facts = []
    if d.evidence:
        facts.append("evidence: " + ", ".join(d.evidence))
    if d.threshold is not None:
        facts.append(f"threshold: {d.threshold} bytes")
    if d.hop:
        facts.append(f"hop: {d.hop}")
    return facts


def _readiness_facts(t: TargetReport) -> list[str]:
    r = t.readiness
    if r is None:
        return []
    facts = []
    if r.accepted_groups:
        facts.append("accepts " + ", ".join(r.accepted_groups))
    if r.rejected_groups:
        facts.append("rejects " + ", ".join(r.rejected_groups))
    if r.preferred_group:
        facts.append(f"prefers {r.preferred_group}")
    if r.hrr_to_hybrid is not None:
        facts.append("asks for the hybrid share by HRR" if r.hrr_to_hybrid else "no HRR to the hybrid share")
    if r.certificate_signature:
        facts.append(f"certificate signed with {r.certificate_signature}" + (" (PQ)" if r.pq_signature else ""))
    if r.mldsa_signing is not None:
        facts.append(f"signs with ML-DSA ({r.mldsa_scheme})" if r.mldsa_signing else "cannot sign with ML-DSA")
    return facts


def _regression_key(target: str, probe_id: str) -> str:
    return f"{target} {probe_id}"


def _size_label(n: float) -> str:
    whole = round(n)
    if whole >= 1024 and whole % 1024 == 0:
        return f"{whole // 1024}k"
    return str(whole)


# --- terminal ----------------------------------------------------------------------------------------


def render_terminal(report: RunReport, console: Console, baseline: RunReport | None = None) -> None:
    """Print the report: per target a header, the probe table and the diagnoses; then one line per target.

    With ``baseline`` (the report :func:`apply_baseline` compared with), probes that fail now and were
    not in the baseline at all are listed as "new failures" next to the regressions. Without a terminal (a
    pipe, a CI log) a table would be cut at 80 columns and wrap into fragments: ``render_lines`` prints the
    same facts one line each instead.
    """
    if not console.is_terminal:
        render_lines(report, console, baseline)
        return
    console.print(Text.assemble(("pqproxy probe", "bold"), f"  suite {report.suite} · {report.started} · "
                                f"pqproxy {report.version}"), highlight=False)
    regressions = set(report.regressions)
    for t in report.targets:
        console.print()
        _render_target(t, console, regressions)

    console.print()
    console.print(Text("summary", style="bold"))
    for t in report.targets:
        console.print(_summary_line(t), highlight=False)
    if report.regressions:
        console.print(Text(f"{len(report.regressions)} regression(s) against the baseline:", style="bold red"))
        for key in report.regressions:
            console.print(Text("  " + key, style="red"), highlight=False)
    elif baseline is not None:
        console.print(Text("no regressions against the baseline", style="green"))
    if baseline is not None:
        fresh = new_failures(report, baseline)
        if fresh:
            console.print(Text(f"{len(fresh)} new failure(s) (probes not in the baseline):", style="yellow"))
            for key in fresh:
                console.print(Text("  " + key, style="yellow"), highlight=False)


def render_lines(report: RunReport, console: Console, baseline: RunReport | None = None) -> None:
    """The report for logs: one line per probe, per diagnosis and per target, every line whole (never wrapped or
    cut), each led by the target so that ``grep`` finds all of one target's lines. Plain text, no styles."""
    regressions = set(report.regressions)
    say = say_to(console)
    say(f"pqproxy probe suite={report.suite} started={report.started} version={report.version}")
    for t in report.targets:
        target_lines(t, say, regressions)
    for t in report.targets:
        say("SUMMARY " + _summary_line(t).plain)
    for key in report.regressions:
        say(f"REGRESSION {key}")
    if baseline is not None:
        if not report.regressions:
            say("no regressions against the baseline")
        for key in new_failures(report, baseline):
            say(f"NEW FAILURE {key}")


def say_to(console: Console) -> Callable[[str], None]:
    """Print whole lines: never wrapped, cut or styled (a log line each)."""
    def say(text: str) -> None:
        console.print(Text(text), soft_wrap=True, highlight=False, markup=False, crop=False)

    return say


def summary_text(t: TargetReport) -> str:
    return "SUMMARY " + _summary_line(t).plain


def target_lines(t: TargetReport, say: Callable[[str], None], regressions: set[str] | None = None) -> None:
    """One target's lines of the line report (``render_lines``): readiness, clients, a line per probe, per
    diagnosis and workaround, and the verdict."""
    regressions = regressions or set()
    if not t.reachable:
        say(f"{t.target} UNREACHABLE {t.error or ''}".rstrip())
    if t.readiness is not None:
        say(f"{t.target} readiness {t.readiness.verdict}: {t.readiness.summary}")
    if t.populations:
        say(f"{t.target} clients: {populations_text(t)}")
    for r in t.results:
        shown = _verdict(t, r)
        line = (f"{t.target} probe {r.spec.id} {shown.upper()} profile={r.spec.profile} delivery={r.spec.delivery} "
                f"hello={r.hello_size or '-'} outcome={_describe(r)}")
        if r.reason and r.verdict != PASS:
            line += f" reason={r.reason}"
        if _regression_key(t.target, r.spec.id) in regressions:
            line += " REGRESSION"
        say(line)
    for d in t.diagnoses:
        say(f"{t.target} DIAGNOSIS {d.id}: {d.summary}")
        facts = _diagnosis_facts(d)
        if facts:
            say(f"{t.target} DIAGNOSIS {d.id} {'; '.join(facts)}")
        if d.workaround:
            say(f"{t.target} WORKAROUND {d.id}: {workaround_text(d)}")
    if t.reachable and not t.diagnoses:
        say(f"{t.target} " + ("failing probes, but no known breakage pattern matched" if t.failed_probes()
                              else "no breakage found"))


def _render_target(t: TargetReport, console: Console, regressions: set[str]) -> None:
    head = Text.assemble(("▌ ", "bold"), (t.target, "bold"))
    if t.server_name:
        head.append(f"  SNI {t.server_name}")
    if t.reachable:
        head.append("  reachable", style="green")
    else:
        head.append("  UNREACHABLE", style="bold red")
        if t.error:
            head.append(f": {t.error}", style="red")
    if t.readiness is not None:
        head.append("  readiness ")
        head.append(t.readiness.verdict, style=READINESS_STYLES.get(t.readiness.verdict, ""))
    console.print(head, highlight=False)
    if t.readiness is not None:
        said = t.readiness.summary or "; ".join(_readiness_facts(t))
        if said:
            console.print(Text("  " + said, style="dim"), highlight=False)
    if t.populations:
        console.print(Text("  clients: " + populations_text(t)), highlight=False)

    if t.results:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False, collapse_padding=True)
        wide = console.width >= 140
        table.add_column("probe", overflow="fold", max_width=None if wide else 26)
        table.add_column("profile", overflow="fold", max_width=None if wide else 10)
        table.add_column("delivery", overflow="fold", max_width=None if wide else 18)
        table.add_column("hello", justify="right", no_wrap=True)
        table.add_column("outcome", overflow="fold", ratio=1)
        table.add_column("verdict", no_wrap=True)
        for r in t.results:
            outcome = Text(_describe(r))
            if r.reason and r.reason != outcome.plain and r.verdict != PASS:
                outcome.append("\n" + r.reason, style="dim")
            shown = _verdict(t, r)
            verdict = Text(shown, style=VERDICT_STYLES.get(shown, ""))
            if _regression_key(t.target, r.spec.id) in regressions:
                verdict.append(" (regression)", style="bold red")
            table.add_row(Text(r.spec.id), Text(r.spec.profile), Text(r.spec.delivery),
                          Text(str(r.hello_size) if r.hello_size else "-"), outcome, verdict)
        console.print(table)

    if not t.reachable:
        console.print(Text("  not probed: the target did not answer the first probe", style="red"))
    elif t.diagnoses:
        for d in t.diagnoses:
            line = Text.assemble("  ", (d.id, "bold red"), "  ", d.summary)
            console.print(line, highlight=False)
            facts = _diagnosis_facts(d)
            if facts:
                console.print(Text("    " + "; ".join(facts), style="dim"), highlight=False)
            if d.workaround:
                console.print(Text("    workaround: " + workaround_text(d), style="cyan"), highlight=False)
    elif t.failed_probes():
        console.print(Text("  failing probes, but no known breakage pattern matched", style="yellow"))
    else:
        console.print(Text("  no breakage found", style="green"))


def _summary_line(t: TargetReport) -> Text:
    status = _status(t)
    style = {"ok": "bold green", "broken": "bold red", "unreachable": "bold red"}[status]
    line = Text.assemble((status.upper().ljust(11), style), " ", t.target)
    if not t.reachable:
        line.append(f"  not probed: {t.error or 'unreachable'}", style="red")
        return line
    counts = _counts(t)
    line.append(f"  {len(t.results)} probes: ")
    line.append_text(Text(", ").join(
        Text(f"{counts[v]} {v}", style=VERDICT_STYLES[v]) for v in (PASS, FAIL, INCONCLUSIVE, SKIPPED)
        if counts[v] or v == PASS
    ))
    if t.diagnoses:
        line.append("  diagnoses: " + ", ".join(d.id for d in t.diagnoses), style="red")
    if t.readiness is not None:
        line.append("  readiness ")
        line.append(t.readiness.verdict, style=READINESS_STYLES.get(t.readiness.verdict, ""))
    line.append(_timing(t), style="dim")
    return line


def _timing(t: TargetReport) -> str:
    """How long the target took and how long an attempt waited for an answer at the end (learned from its
    answers: a silent path costs that wait per probe, not the suite's timeout)."""
    seconds = t.duration_s if isinstance(t.duration_s, int | float) and math.isfinite(t.duration_s) else 0.0
    text = f"  {seconds:.1f} s"
    if isinstance(t.answer_timeout_s, int | float):
        text += f", answers awaited {t.answer_timeout_s:g} s"
    return text


# --- JSON and the baseline ---------------------------------------------------------------------------


def report_dict(report: RunReport) -> dict[str, Any]:
    """``report.to_dict()`` behind a ``"schema"`` key: the JSON report's content."""
    return {"schema": SCHEMA, **report.to_dict()}


def write_json(report: RunReport, path: PathLike) -> None:
    """The report as JSON: ``{"schema": "pqproxy-probe/1", **report.to_dict()}``, keys in the model's field
    order (stable from run to run), two-space indent, ASCII only. Readable back with :func:`read_baseline`."""
    text = json.dumps(report_dict(report), indent=2, ensure_ascii=True, default=str)
    Path(path).write_text(text + "\n", encoding="utf-8")


def report_from_dict(data: Any, source: str = "report") -> RunReport:
    """A RunReport from parsed JSON; ValueError (saying what is wrong) on anything not a probe report."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: not a pqproxy probe report (a JSON object is expected)")
    schema = data.get("schema")
    if schema is None:
        missing = [k for k in REPORT_KEYS if k not in data]
        if missing:
            raise ValueError(f"{source}: not a pqproxy probe report (no 'schema', and no {', '.join(missing)})")
    elif schema != SCHEMA:
        if isinstance(schema, str) and schema.startswith("pqproxy-probe/"):
            raise ValueError(f"{source}: probe report schema {schema!r} is not supported (this pqproxy reads "
                             f"{SCHEMA!r})")
        raise ValueError(f"{source}: not a pqproxy probe report (schema {schema!r})")
    if not isinstance(data.get("targets", []), list):
        raise ValueError(f"{source}: malformed probe report: 'targets' is not a list")
    try:
        report = RunReport.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{source}: malformed probe report ({type(exc).__name__}: {exc})") from None
    _check_types(report, source)
    return report


def _check_types(report: RunReport, source: str) -> None:
    """The fields the comparison and the renderers rely on have the types the model says."""
    def bad(what: str) -> ValueError:
        return ValueError(f"{source}: malformed probe report ({what})")

    for name in ("suite", "started", "version"):
        if not isinstance(getattr(report, name), str):
            raise bad(f"{name!r} is not a string")
    if not all(isinstance(r, str) for r in report.regressions):
        raise bad("'regressions' is not a list of strings")
    for t in report.targets:
        if not isinstance(t.target, str) or not isinstance(t.reachable, bool):
            raise bad("a target without a name or a reachable flag")
        for r in t.results:
            if not isinstance(r.spec.id, str) or not isinstance(r.verdict, str):
                raise bad(f"a probe of {t.target} without an id or a verdict")
        for d in t.diagnoses:
            if not isinstance(d.id, str) or not isinstance(d.evidence, list):
                raise bad(f"a diagnosis of {t.target} without an id or evidence")


def read_baseline(path: PathLike) -> RunReport:
    """An earlier ``--json`` report. ValueError, naming the file, when it is not one (OSError if unreadable)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a pqproxy probe report (not UTF-8 text)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a pqproxy probe report (not JSON: {exc})") from None
    return report_from_dict(data, source=str(path))


def _pair_targets(report: RunReport, baseline: RunReport) -> list[tuple[TargetReport, TargetReport | None]]:
    """Each target of the run with its baseline twin: same ``target`` and ``server_name`` (the n-th time a
    pair appears in the run matches the n-th time it appears in the baseline)."""
    index: dict[tuple[str, str | None], list[TargetReport]] = {}
    for b in baseline.targets:
        index.setdefault((b.target, b.server_name), []).append(b)
    seen: Counter[tuple[str, str | None]] = Counter()
    pairs: list[tuple[TargetReport, TargetReport | None]] = []
    for t in report.targets:
        key = (t.target, t.server_name)
        twins = index.get(key, [])
        pairs.append((t, twins[seen[key]] if seen[key] < len(twins) else None))
        seen[key] += 1
    return pairs


def _passed(t: TargetReport) -> list[str]:
    """The probes that passed on a reachable target (every result of that id has verdict pass); an
    unreachable target has no judged verdicts."""
    if not t.reachable:
        return []
    verdicts: dict[str, set[str]] = {}
    for r in t.results:
        verdicts.setdefault(r.spec.id, set()).add(r.verdict)
    return [probe_id for probe_id, seen in verdicts.items() if seen == {PASS}]


def apply_baseline(report: RunReport, baseline: RunReport) -> list[str]:
    """Compare with an earlier report; set and return ``report.regressions`` ("target probe-id" strings).

    Targets are matched by ``target`` *and* ``server_name`` (a different SNI is a different test), probes
    by id. A *regression* is a probe that passed in the baseline (verdict pass, on a reachable target)
    and now:

    * has verdict ``fail`` (its control passed: the path or server broke), or
    * has verdict ``inconclusive`` (it fails now, and so does its control), or
    * cannot run because the target is unreachable now: then every probe that passed before is a
      regression, whether the run got to it or not.

    Not regressions: probes now ``skipped`` (not run here, for example raw probes without privileges),
    probes that did not pass in the baseline (failing in both is known breakage), probes new in this
    run, probes of the baseline this run does not have (the suite changed), and targets not in the
    baseline. :func:`new_failures` lists failing probes the baseline cannot speak for.

    With a baseline, ``report.exit_code(baseline=True)`` is 1 only on regressions (2 if a target is
    unreachable).
    """
    regressions: list[str] = []
    for t, before in _pair_targets(report, baseline):
        if before is None:
            continue
        passed_before = _passed(before)
        if not t.reachable:
            candidates = passed_before
        else:
            was_ok = set(passed_before)
            candidates = [r.spec.id for r in t.results if r.spec.id in was_ok and r.verdict in (FAIL, INCONCLUSIVE)]
        for probe_id in candidates:
            key = _regression_key(t.target, probe_id)
            if key not in regressions:
                regressions.append(key)
    report.regressions = regressions
    return regressions


def new_failures(report: RunReport, baseline: RunReport) -> list[str]:
    """Probes that fail now (verdict ``fail``) and that the baseline does not have (or whose target it does
    not have): breakage the baseline cannot call old or new."""
    fresh: list[str] = []
    for t, before in _pair_targets(report, baseline):
        known = {r.spec.id for r in before.results} if before is not None else set()
        fresh.extend(_regression_key(t.target, r.spec.id) for r in t.failed_probes() if r.spec.id not in known)
    return fresh


# --- JUnit -------------------------------------------------------------------------------------------

_XML_BAD = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(text: object) -> str:
    """Text XML 1.0 can carry: other characters (NUL, controls, lone surrogates) as \\xNN / \\uNNNN."""
    s = str(text)
    return _XML_BAD.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else
                        f"\\u{ord(m.group()):04x}", s)


@dataclass
class _Suite:
    element: ET.Element
    tests: int = 0
    failures: int = 0
    skipped: int = 0

    def case(self, classname: str, name: str, seconds: float = 0.0) -> ET.Element:
        self.tests += 1
        return ET.SubElement(self.element, "testcase", classname=_x(classname), name=_x(name or "(no id)"),
                             time=f"{max(seconds, 0.0) if math.isfinite(seconds) else 0.0:.3f}")

    def fail(self, case: ET.Element, message: str, type_: str, text: str) -> None:
        self.failures += 1
        node = ET.SubElement(case, "failure", message=_x(message), type=_x(type_))
        node.text = _x(text)

    def skip(self, case: ET.Element, message: str) -> None:
        self.skipped += 1
        ET.SubElement(case, "skipped", message=_x(message))


def _junit_timestamp(started: str) -> str | None:
    """JUnit's timestamp is an ISO 8601 time without a zone: the run's start in UTC (None if unreadable)."""
    try:
        when = datetime.datetime.fromisoformat(started)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is not None:
        when = when.astimezone(datetime.UTC).replace(tzinfo=None)
    return when.isoformat(timespec="seconds")


def _seconds(r: ProbeResult) -> float:
    total = sum(o.elapsed_ms for o in r.attempts if isinstance(o.elapsed_ms, int | float)) / 1000
    return total if math.isfinite(total) else 0.0


def junit_tree(report: RunReport) -> ET.ElementTree:
    """The report as JUnit XML (the Ant/Jenkins/GitLab dialect).

    One ``<testsuite>`` per target; one ``<testcase classname="pqproxy.probe.<target>" name="<probe id>">``
    per probe: a ``fail`` verdict is a ``<failure>`` whose type is the diagnosis citing the probe (or the
    outcome kind), ``skipped`` and ``inconclusive`` are ``<skipped>`` -- except a regression against the
    baseline, which is always a ``<failure type="regression">``. Then one failing testcase per diagnosis
    (``diagnosis:<id>``) and one for readiness (fails on ``not-pq-ready``, skipped when unknown). An
    unreachable target is a single failing testcase, ``reachability``.
    """
    root = ET.Element("testsuites", name=_x(f"pqproxy probe {report.suite}"))
    timestamp = _junit_timestamp(report.started)
    totals = Counter[str]()
    total_time = 0.0
    regressions = set(report.regressions)
    for index, t in enumerate(report.targets):
        element = ET.SubElement(root, "testsuite", name=_x(t.target), id=str(index))
        if timestamp:
            element.set("timestamp", timestamp)
        props = ET.SubElement(element, "properties")
        for key, value in (("server_name", t.server_name), ("suite", report.suite), ("pqproxy", report.version),
                           ("readiness", t.readiness.verdict if t.readiness else None)):
            if value is not None:
                ET.SubElement(props, "property", name=key, value=_x(value))
        suite = _Suite(element)
        classname = f"pqproxy.probe.{t.target}"
        if not t.reachable:
            case = suite.case(classname, "reachability", sum(_seconds(r) for r in t.results))
            first = _outcome(t.results[0]) if t.results else None
            kind = first.kind if first is not None else model.UNREACHABLE
            text = "\n".join(f"{r.spec.id}: {_describe(r)}" for r in t.results)
            suite.fail(case, t.error or "the target could not be probed", kind, text)
        else:
            for r in t.results:
                _junit_probe(suite, classname, t, r, _regression_key(t.target, r.spec.id) in regressions)
            for d in t.diagnoses:
                case = suite.case(classname, f"diagnosis:{d.id}")
                suite.fail(case, d.summary, d.id, "\n".join([d.summary, *_diagnosis_facts(d),
                                                             *(["workaround: " + workaround_text(d)] if d.workaround
                                                               else [])]))
            _junit_readiness(suite, classname, t)
        seconds = t.duration_s if isinstance(t.duration_s, int | float) and math.isfinite(t.duration_s) else 0.0
        element.set("tests", str(suite.tests))
        element.set("failures", str(suite.failures))
        element.set("errors", "0")
        element.set("skipped", str(suite.skipped))
        element.set("time", f"{max(seconds, 0.0):.3f}")
        totals.update(tests=suite.tests, failures=suite.failures, skipped=suite.skipped)
        total_time += max(seconds, 0.0)
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("skipped", str(totals["skipped"]))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return ET.ElementTree(root)


def _junit_probe(suite: _Suite, classname: str, t: TargetReport, r: ProbeResult, regression: bool) -> None:
    case = suite.case(classname, r.spec.id, _seconds(r))
    o = _outcome(r)
    if r.verdict == PASS:
        return
    if r.verdict == FAIL or regression:
        control = next((c for c in t.results if c.spec.id == r.spec.control), None)
        lines = [f"outcome: {_describe(r)}"]
        if r.spec.control:
            said = f"{control.verdict}: {_describe(control)}" if control is not None else "not run"
            lines.append(f"control: {r.spec.control} ({said})")
        if r.reason:
            lines.append(f"reason: {r.reason}")
        lines.append(f"probe: profile {r.spec.profile}, delivery {r.spec.delivery}, hello {r.hello_size} bytes"
                     f" ({r.wire_size} on the wire), {len(r.attempts)} attempt(s)")
        if r.spec.description:
            lines.append(r.spec.description)
        if regression:
            type_ = "regression"
            message = f"regression: passed in the baseline, {r.verdict} now: {r.reason or _describe(r)}"
        else:
            d = _diagnosis_for(t, r.spec.id)
            type_ = d.id if d is not None else (o.kind if o is not None else FAIL)
            message = r.reason or _describe(r)
        suite.fail(case, message, type_, "\n".join(lines))
    else:
        suite.skip(case, f"{r.verdict}: {r.reason}" if r.reason else r.verdict)


def _junit_readiness(suite: _Suite, classname: str, t: TargetReport) -> None:
    case = suite.case(classname, "readiness")
    r = t.readiness
    if r is None or r.verdict == "unknown":
        suite.skip(case, r.summary if r is not None else "readiness not assessed by this suite")
        return
    text = "\n".join([f"{r.verdict}: {r.summary}", *_readiness_facts(t)])
    if r.verdict == "not-pq-ready":
        suite.fail(case, r.summary, r.verdict, text)
    else:
        ET.SubElement(case, "system-out").text = _x(text)


def write_junit(report: RunReport, path: PathLike) -> None:
    """JUnit XML (see :func:`junit_tree`), UTF-8 with an XML declaration."""
    junit_tree(report).write(str(path), encoding="utf-8", xml_declaration=True)


# --- HTML --------------------------------------------------------------------------------------------

# The chart's geometry, in SVG user units (the SVG scales to the page width).
CHART_WIDTH = 860
CHART_LEFT = 200  # room for the delivery labels
CHART_RIGHT = 24
CHART_TOP = 14
CHART_ROW = 28
CHART_BOTTOM = 44
LABEL_CHARS = 28
VERDICT_OFFSET = {PASS: -5.0, FAIL: 5.0, INCONCLUSIVE: 0.0, SKIPPED: 0.0}


@dataclass
class Dot:
    x: float
    y: float
    verdict: str
    title: str


@dataclass
class Tick:
    x: float
    label: str


@dataclass
class Row:
    y: float
    label: str
    full: str


@dataclass
class Chart:
    """An SVG strip chart of one target: x the hello size, one row per delivery shape, a dot per probe."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int  # the y of the x axis
    scale: str  # "log" or "linear"
    rows: list[Row] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    dots: list[Dot] = field(default_factory=list)
    marks: list[Tick] = field(default_factory=list)  # vertical markers: a size-threshold diagnosis


def _log_ticks(lo: float, hi: float) -> list[float]:
    powers = [2.0**k for k in range(math.floor(math.log2(lo)), math.ceil(math.log2(hi)) + 1)]
    inside = [p for p in powers if lo <= p <= hi]
    step = 1
    while len(inside[::step]) > 9:
        step += 1
    return inside[::step]


def _linear_ticks(lo: float, hi: float) -> list[float]:
    span = hi - lo
    raw = span / 6
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def chart_for(t: TargetReport) -> Chart | None:
    """The strip chart of a target's probes, or None when no probe has a size to plot."""
    plotted = [r for r in t.results if isinstance(r.hello_size, int) and r.hello_size > 0]
    if not plotted:
        return None
    shapes: list[str] = []
    for r in plotted:
        if r.spec.delivery not in shapes:
            shapes.append(r.spec.delivery)
    sizes = [r.hello_size for r in plotted]
    lo, hi = min(sizes), max(sizes)
    log = hi / lo > 4
    if log:
        lo_d, hi_d = lo / 1.25, hi * 1.25
    else:
        pad = max((hi - lo) * 0.08, 16.0)
        lo_d, hi_d = max(lo - pad, 0.0), hi + pad

    def fwd(v: float) -> float:
        return math.log2(v) if log else v

    left, right = CHART_LEFT, CHART_WIDTH - CHART_RIGHT
    top = CHART_TOP
    bottom = top + CHART_ROW * len(shapes)

    def x_of(v: float) -> float:
        return round(left + (fwd(v) - fwd(lo_d)) / (fwd(hi_d) - fwd(lo_d)) * (right - left), 1)

    chart = Chart(width=CHART_WIDTH, height=bottom + CHART_BOTTOM, left=left, right=right, top=top, bottom=bottom,
                  scale="log" if log else "linear")
    row_y = {}
    for i, shape in enumerate(shapes):
        y = top + CHART_ROW * i + CHART_ROW / 2
        row_y[shape] = y
        label = shape if len(shape) <= LABEL_CHARS else shape[: LABEL_CHARS - 1] + "…"
        chart.rows.append(Row(y=y, label=label, full=shape))
    ticks = _log_ticks(lo_d, hi_d) if log else _linear_ticks(lo_d, hi_d)
    chart.ticks = [Tick(x=x_of(v), label=_size_label(v)) for v in ticks]
    for r in plotted:
        chart.dots.append(Dot(
            x=x_of(r.hello_size), y=row_y[r.spec.delivery] + VERDICT_OFFSET.get(r.verdict, 0.0),
            verdict=r.verdict if r.verdict in VERDICT_OFFSET else INCONCLUSIVE,
            title=f"{r.spec.id}: {r.hello_size} bytes, {r.spec.profile}, {r.spec.delivery}: {r.verdict} "
                  f"({_describe(r)})" + (f" {r.reason}" if r.reason and r.verdict != PASS else ""),
        ))
    for d in t.diagnoses:
        if d.id == "size-threshold" and isinstance(d.threshold, int) and lo_d <= d.threshold <= hi_d:
            chart.marks.append(Tick(x=x_of(d.threshold), label=f"threshold {d.threshold}"))
    return chart


@dataclass
class Cell:
    verdict: str  # a verdict, or "none" when the target has no such probe
    text: str
    title: str
    regression: bool = False


@dataclass
class MatrixRow:
    probe: str
    cells: list[Cell]


def verdict_matrix(report: RunReport) -> list[MatrixRow]:
    """Rows = every probe id of the run (first seen first), columns = the report's targets."""
    ids = list(dict.fromkeys(r.spec.id for t in report.targets for r in t.results))
    regressions = set(report.regressions)
    by_target = [{r.spec.id: r for r in t.results} for t in report.targets]
    rows = []
    for probe_id in ids:
        cells = []
        for t, results in zip(report.targets, by_target, strict=True):
            found = results.get(probe_id)
            if found is None:
                cells.append(Cell("none", "-", "not run" + ("" if t.reachable else ": target unreachable")))
                continue
            shown = _verdict(t, found)
            css = FAIL if shown == "unreachable" else shown if shown in VERDICT_OFFSET else INCONCLUSIVE
            title = f"{t.target} {probe_id}: {_describe(found)}" + (f" - {found.reason}" if found.reason else "")
            regression = _regression_key(t.target, probe_id) in regressions
            cells.append(Cell(css, shown, title, regression))
        rows.append(MatrixRow(probe_id, cells))
    return rows


@dataclass
class TargetView:
    target: TargetReport
    status: str
    counts: dict[str, int]
    readiness_facts: list[str]
    chart: Chart | None
    probes: list[tuple[ProbeResult, str, str]]  # each probe with its outcome described and its verdict shown


def _views(report: RunReport) -> list[TargetView]:
    views = []
    for t in report.targets:
        counts = _counts(t)
        views.append(TargetView(
            target=t, status=_status(t), counts={v: counts[v] for v in (PASS, FAIL, INCONCLUSIVE, SKIPPED)},
            readiness_facts=_readiness_facts(t), chart=chart_for(t) if t.reachable else None,
            probes=[(r, _describe(r), _verdict(t, r)) for r in t.results],
        ))
    return views


def _template_text() -> str:
    return (resources.files("pqproxy.probe") / "templates" / "report.html.j2").read_text(encoding="utf-8")


def render_html(report: RunReport) -> str:
    """The HTML page as a string (see :func:`write_html`)."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    template = env.from_string(_template_text())
    views = _views(report)
    status_counts = Counter(v.status for v in views)
    return template.render(
        report=report, views=views, matrix=verdict_matrix(report), status_counts=status_counts,
        verdicts=(PASS, FAIL, INCONCLUSIVE, SKIPPED), schema=SCHEMA,
    )


def write_html(report: RunReport, path: PathLike) -> None:
    """One self-contained HTML page (inline CSS and SVG, no script, nothing fetched): a summary per target,
    the verdict matrix (probes x targets, the outcome as each cell's tooltip) and per target a chart of
    success by hello size and delivery shape."""
    Path(path).write_text(render_html(report), encoding="utf-8", errors="backslashreplace")
