"""The probe's reports: terminal, JSON (and the baseline it becomes), JUnit XML, HTML; hand-built and random."""

from __future__ import annotations

import io
import itertools
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from pqproxy.probe import model
from pqproxy.probe import report as reports
from pqproxy.probe.model import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    SKIPPED,
    Diagnosis,
    IcmpReport,
    Outcome,
    ProbeResult,
    ProbeSpec,
    Readiness,
    RunReport,
    TargetReport,
)

EVIL = "<script>alert(1)</script>"
EVIL_SNI = '"><img src=x onerror=alert(1)>'

# --- hand-built reports ------------------------------------------------------------------------------


def hello(kind: str = model.SERVER_HELLO, **kw: object) -> Outcome:
    if kind == model.SERVER_HELLO:
        kw.setdefault("group", "X25519MLKEM768")
        kw.setdefault("cipher", "TLS_AES_128_GCM_SHA256")
    return Outcome(kind, elapsed_ms=20.0, **kw)  # type: ignore[arg-type]


def probe(probe_id: str, verdict: str = PASS, kind: str = model.SERVER_HELLO, *, delivery: str = "one-write",
          size: int = 1800, profile: str = "chrome", control: str | None = "pq/one-write", reason: str = "",
          **outcome: object) -> ProbeResult:
    attempt = hello(kind, **outcome)
    return ProbeResult(ProbeSpec(probe_id, profile, delivery, control=control), size, size + 5, [attempt, attempt],
                       passed=verdict == PASS, verdict=verdict, reason=reason)


def controls() -> list[ProbeResult]:
    return [probe("classical/one-write", profile="classical", size=512, control=None),
            probe("pq/one-write", control="classical/one-write")]


def broken_target() -> TargetReport:
    """HAProxy-like: a split PQ hello times out while the same hello in one write works."""
    return TargetReport(
        "haproxy.test:443", "haproxy.test", True,
        results=[
            *controls(),
            probe("pq/split@600", FAIL, model.TIMEOUT, delivery="split@600", reason="timeout"),
            probe("classical/split@100", FAIL, model.RST, delivery="split@100", size=512,
                  control="classical/one-write", reason="rst"),
            probe("size/4096", INCONCLUSIVE, model.TIMEOUT, size=4096, control="classical/one-write",
                  reason="timeout; its control classical/one-write failed too"),
            probe("pq/raw-reorder@600", SKIPPED, model.TIMEOUT, delivery="raw-reorder@600", size=0,
                  reason="raw probes need CAP_NET_RAW", detail="not run"),
        ],
        diagnoses=[Diagnosis("split-segments", "The path reads only the first segment of the hello",
                             evidence=["pq/split@600", "pq/one-write"])],
        readiness=Readiness("pq-ready", "X25519MLKEM768 accepted and preferred", ["X25519MLKEM768", "X25519"],
                            preferred_group="X25519MLKEM768", hrr_to_hybrid=True,
                            certificate_signature="ecdsa-with-SHA256"),
        answer_timeout_s=1.25, duration_s=4.5,
    )


def clean_target(name: str = "nginx.test:443", sni: str | None = "nginx.test") -> TargetReport:
    return TargetReport(name, sni, True, results=[*controls(), probe("pq/split@600", delivery="split@600")],
                        readiness=Readiness("not-pq-ready", "only classical groups"), duration_s=1.0)


def unreachable_target() -> TargetReport:
    first = ProbeResult(ProbeSpec("classical/one-write", "classical"), 512, 517,
                        [Outcome(model.REFUSED, detail="connection refused")], passed=False)
    return TargetReport("down.test:443", "down.test", False, error="connection refused", results=[first])


def run(*targets: TargetReport) -> RunReport:
    return RunReport("default", "2025-06-01T12:00:00+00:00", "0.1.0", list(targets))


def full_report() -> RunReport:
    return run(broken_target(), clean_target(), unreachable_target())


# --- JSON and reading it back --------------------------------------------------------------------------


def test_json_round_trips_to_an_equal_dict(tmp_path: Path) -> None:
    original = full_report()
    original.regressions = ["haproxy.test:443 pq/split@600"]
    original.targets[0].results[2].attempts[0].icmp = IcmpReport(3, 4, "192.0.2.1", "destination-unreachable")
    path = tmp_path / "r.json"
    reports.write_json(original, path)
    data = json.loads(path.read_text())
    assert RunReport.from_dict(data).to_dict() == original.to_dict()
    assert reports.read_baseline(path).to_dict() == original.to_dict()


def test_json_has_the_schema_first_and_diagnosis_ids(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    reports.write_json(full_report(), path)
    text = path.read_text()
    data = json.loads(text)
    assert next(iter(data)) == "schema" and data["schema"] == "pqproxy-probe/1"
    assert [[d["id"] for d in t["diagnoses"]] for t in data["targets"]] == [["split-segments"], [], []]
    assert data["targets"][0]["results"][2]["outcome"]["kind"] == model.TIMEOUT
    again = tmp_path / "again.json"
    reports.write_json(full_report(), again)
    assert again.read_text() == text  # stable: same report, same bytes


@pytest.mark.parametrize(("content", "says"), [
    (b"not json at all", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"hello": "world"}', "no 'schema'"),
    (b'{"schema": "something-else/1"}', "not a pqproxy probe report"),
    (b'{"schema": "pqproxy-probe/9", "suite": "x", "started": "", "version": "", "targets": []}', "not supported"),
    (b'{"schema": "pqproxy-probe/1", "suite": "x", "started": "", "version": "", "targets": "no"}', "malformed"),
    (b'{"schema": "pqproxy-probe/1", "suite": "x", "started": "", "version": "", "targets": [{"x": 1}]}',
     "malformed"),
    (b'{"schema": "pqproxy-probe/1", "suite": "x", "started": "", "version": "", "targets": [1]}', "malformed"),
    (b'{"schema": "pqproxy-probe/1", "started": "", "version": "", "targets": []}', "malformed"),
    (b'{"schema": "pqproxy-probe/1", "suite": "x", "started": "", "version": "",'
     b' "targets": [{"target": ["a"], "reachable": true}]}', "malformed"),
    (b"\xff\xfe\x00garbage", "UTF-8"),
])
def test_a_file_that_is_not_a_report_is_a_clear_value_error(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "baseline.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(says)) as info:
        reports.read_baseline(path)
    assert str(path) in str(info.value)


def test_a_report_without_schema_but_with_the_fields_is_read(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps(full_report().to_dict()))
    assert reports.read_baseline(path).to_dict() == full_report().to_dict()


# --- JUnit -------------------------------------------------------------------------------------------


def junit(report: RunReport, tmp_path: Path) -> ET.Element:
    path = tmp_path / "junit.xml"
    reports.write_junit(report, path)
    assert path.read_bytes().startswith(b"<?xml")
    return ET.parse(path).getroot()


def check_counts(suite: ET.Element) -> None:
    cases = suite.findall("testcase")
    assert int(suite.get("tests", "-1")) == len(cases)
    assert int(suite.get("failures", "-1")) == sum(1 for c in cases if c.find("failure") is not None)
    assert int(suite.get("skipped", "-1")) == sum(1 for c in cases if c.find("skipped") is not None)
    assert suite.get("errors") == "0"
    assert float(suite.get("time", "x")) >= 0
    for case in cases:
        assert case.get("name") and case.get("classname") == f"pqproxy.probe.{suite.get('name')}"
        assert float(case.get("time", "x")) >= 0


def test_junit_has_a_suite_per_target_with_the_right_counts(tmp_path: Path) -> None:
    root = junit(full_report(), tmp_path)
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["haproxy.test:443", "nginx.test:443", "down.test:443"]
    for suite in suites:
        check_counts(suite)
    assert int(root.get("tests", "0")) == sum(int(s.get("tests", "0")) for s in suites)
    assert int(root.get("failures", "0")) == sum(int(s.get("failures", "0")) for s in suites)

    broken, clean, down = suites
    # 6 probes + 1 diagnosis + readiness; 2 failing probes + the diagnosis; inconclusive and skipped
    assert (broken.get("tests"), broken.get("failures"), broken.get("skipped")) == ("8", "3", "2")
    cases = {c.get("name"): c for c in broken.findall("testcase")}
    split = cases["pq/split@600"].find("failure")
    assert split is not None and split.get("type") == "split-segments"  # the diagnosis that cites it
    assert "timeout" in (split.text or "") and "control: pq/one-write (pass" in (split.text or "")
    small = cases["classical/split@100"].find("failure")
    assert small is not None and small.get("type") == model.RST  # cited by no diagnosis: the outcome kind
    diag = cases["diagnosis:split-segments"].find("failure")
    assert diag is not None and diag.get("type") == "split-segments" and "evidence" in (diag.text or "")
    assert cases["size/4096"].find("skipped") is not None
    assert cases["pq/raw-reorder@600"].find("skipped") is not None
    assert cases["readiness"].find("failure") is None and cases["readiness"].find("skipped") is None

    # the clean target: 3 passing probes, no diagnosis, readiness not-pq-ready fails
    assert (clean.get("tests"), clean.get("failures"), clean.get("skipped")) == ("4", "1", "0")
    ready = clean.find("testcase[@name='readiness']/failure")
    assert ready is not None and ready.get("type") == "not-pq-ready"

    # unreachable: one failing testcase, reachability
    assert [c.get("name") for c in down.findall("testcase")] == ["reachability"]
    failure = down.find("testcase/failure")
    assert failure is not None and failure.get("type") == model.REFUSED
    assert failure.get("message") == "connection refused"


def test_junit_a_regression_always_fails(tmp_path: Path) -> None:
    report = run(broken_target())
    report.regressions = ["haproxy.test:443 size/4096"]
    case = junit(report, tmp_path).find("testsuite/testcase[@name='size/4096']")
    assert case is not None
    failure = case.find("failure")
    assert failure is not None and failure.get("type") == "regression" and case.find("skipped") is None


def test_junit_survives_characters_xml_cannot_carry(tmp_path: Path) -> None:
    target = clean_target("bad\x00\x1b[31m\ufffe\ud800:443", "sni\x01")
    target.results[0].reason = "x\x07y"
    target.results[0].verdict = FAIL
    report = run(target)
    suite = junit(report, tmp_path).find("testsuite")
    assert suite is not None and suite.get("name") == "bad\\x00\\x1b[31m\\ufffe\\ud800:443"
    assert suite.get("timestamp") == "2025-06-01T12:00:00"  # UTC, no zone: what the JUnit schema wants
    # and the other writers, with a lone surrogate too
    reports.write_json(report, tmp_path / "r.json")
    assert reports.read_baseline(tmp_path / "r.json").to_dict() == report.to_dict()
    reports.write_html(report, tmp_path / "r.html")
    parse_html((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert "bad" in terminal(report)


# --- HTML --------------------------------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class StrictParser(HTMLParser):
    """html.parser plus what it does not check: every element closed, in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: Counter[str] = Counter()
        self.attrs: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.attrs.extend((tag, k, v) for k, v in attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.attrs.extend((tag, k, v) for k, v in attrs)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()


def parse_html(text: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(text)
    parser.close()
    assert not parser.errors, parser.errors[:5]
    assert parser.stack == [], parser.stack
    return parser


def assert_self_contained(text: str, parser: StrictParser) -> None:
    assert parser.tags["script"] == 0 and parser.tags["link"] == 0 and parser.tags["img"] == 0
    assert parser.tags["iframe"] == 0 and parser.tags["object"] == 0
    for tag, name, value in parser.attrs:
        assert name not in ("src", "href", "xlink:href", "srcset", "action") or (value or "").startswith("#"), (
            tag, name, value)
        assert not name.startswith("on"), (tag, name)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert "@import" not in text and "url(" not in text


def test_html_is_one_self_contained_escaped_page(tmp_path: Path) -> None:
    report = run(broken_target(), clean_target(EVIL, EVIL_SNI), unreachable_target())
    path = tmp_path / "report.html"
    reports.write_html(report, path)
    text = path.read_text(encoding="utf-8")
    parser = parse_html(text)
    assert_self_contained(text, parser)
    assert EVIL not in text and EVIL_SNI not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    # the matrix: a row per probe, a column per target, verdict-coloured cells with the outcome as title
    assert 'class="matrix"' in text
    assert re.search(r'<td class="v fail" title="haproxy\.test:443 pq/split@600: timeout[^"]*">fail</td>', text)
    assert re.search(r'<td class="v pass" title="[^"]*pq/split@600: ServerHello X25519MLKEM768[^"]*">pass</td>',
                     text)
    assert re.search(r'<td class="v fail" title="down\.test:443 classical/one-write: refused[^"]*">unreachable', text)
    assert re.search(r'<td class="v inconclusive" title="[^"]*size/4096', text)
    # the charts: one inline SVG per reachable target, dots coloured by verdict
    assert parser.tags["svg"] == 2
    assert '<circle class="fail"' in text and '<circle class="pass"' in text
    assert '<circle class="inconclusive"' in text
    assert "split-segments" in text and "no breakage found" in text and "connection refused" in text
    assert "4.5 s · answers awaited 1.25 s" in text


def test_the_chart_puts_sizes_on_a_log_axis_and_shapes_in_rows() -> None:
    target = TargetReport("t:443", None, True, results=[
        probe(f"size/{n}", PASS if n < 8192 else FAIL, size=n, control="classical/one-write")
        for n in (512, 1024, 2048, 4096, 8192, 16384)
    ] + [probe("pq/split@600", FAIL, model.TIMEOUT, delivery="split@600")],
        diagnoses=[Diagnosis("size-threshold", "a cap on hello size", threshold=8192)])
    chart = reports.chart_for(target)
    assert chart is not None and chart.scale == "log"
    assert [r.label for r in chart.rows] == ["one-write", "split@600"]
    assert [t.label for t in chart.ticks][:3] == ["512", "1k", "2k"]
    xs = [d.x for d in chart.dots[:6]]
    assert xs == sorted(xs) and all(chart.left <= x <= chart.right for x in xs)
    steps = [round(b - a, 1) for a, b in itertools.pairwise(xs)]
    assert max(steps) - min(steps) <= 0.2  # doubling sizes, equal steps: a log axis
    assert [d.verdict for d in chart.dots] == [PASS] * 4 + [FAIL, FAIL, FAIL]
    assert chart.dots[-1].y > chart.dots[0].y  # its own row
    assert [m.label for m in chart.marks] == ["threshold 8192"]
    assert reports.chart_for(unreachable_target()) is not None
    assert reports.chart_for(TargetReport("t", None, True)) is None


def test_the_template_ships_as_package_data() -> None:
    from importlib import resources

    assert (resources.files("pqproxy.probe") / "templates" / "report.html.j2").is_file()


# --- terminal ----------------------------------------------------------------------------------------


def terminal(report: RunReport, baseline: RunReport | None = None) -> str:
    console = Console(file=io.StringIO(), width=120, force_terminal=True, color_system=None)
    reports.render_terminal(report, console, baseline=baseline)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def test_terminal_shows_targets_probes_verdicts_and_diagnoses() -> None:
    out = terminal(run(broken_target(), clean_target("[bold]markup[/bold]:443"), unreachable_target()))
    assert "haproxy.test:443" in out and "SNI haproxy.test" in out
    assert "split-segments" in out and "evidence: pq/split@600, pq/one-write" in out
    for word in ("pass", "fail", "inconclusive", "skipped", "unreachable", "pq-ready", "not-pq-ready"):
        assert word in out
    assert "pq/split@600" in out and "split@600" in out and "ServerHello X25519MLKEM768" in out
    assert "no breakage found" in out
    assert "UNREACHABLE" in out and "connection refused" in out
    assert "[bold]markup[/bold]:443" in out  # untrusted text is text, never rich markup
    summary = out.split("\nsummary\n", 1)[1]
    assert re.search(r"BROKEN\s+haproxy\.test:443 .*split-segments", summary)
    assert re.search(r"OK\s+\[bold\]markup", summary)
    assert re.search(r"UNREACHABLE\s+down\.test:443", summary)


def test_terminal_without_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    console = Console(file=io.StringIO(), width=120, force_terminal=True)
    reports.render_terminal(full_report(), console)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "split-segments" in out
    assert not re.search(r"\x1b\[(?:\d+;)*(?:3\d|9[0-7]|4\d)(?:;\d+)*m", out)  # styles maybe, colours never


def test_without_a_terminal_every_fact_is_one_whole_line() -> None:
    """A pipe or a CI log at 80 columns: no table to wrap into fragments, one line per probe, per diagnosis and
    per target, each starting with its target, none cut or wrapped however long."""
    report = run(broken_target(), clean_target("[bold]markup[/bold]:443"), unreachable_target())
    report.targets[0].diagnoses[0].workaround = "advertise the hybrid group without its share"
    report.targets[0].diagnoses[0].workaround_checked = True
    report.targets[0].diagnoses[0].workaround_evidence = ["hrr/classical-first"]
    console = Console(file=io.StringIO(), width=80)  # not a terminal
    reports.render_terminal(report, console)
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    broken = report.targets[0]
    probe_lines = [line for line in lines if line.startswith(f"{broken.target} probe ")]
    assert len(probe_lines) == len(broken.results)  # one line per probe: none wrapped into two
    assert any(line.startswith("haproxy.test:443 probe pq/split@600 FAIL ") and "outcome=" in line
               for line in probe_lines)
    assert any(len(line) > 80 for line in lines)  # long lines stay whole
    assert any(line.startswith("haproxy.test:443 DIAGNOSIS split-segments: ") for line in lines)
    assert ("haproxy.test:443 WORKAROUND split-segments: advertise the hybrid group without its share "
            "(checked: hrr/classical-first passed on this path)") in lines
    assert any(line.startswith("down.test:443 UNREACHABLE") for line in lines)
    assert any(line.startswith("SUMMARY BROKEN") and "haproxy.test:443" in line
               and line.endswith("4.5 s, answers awaited 1.25 s") for line in lines)
    assert "[bold]markup[/bold]:443 no breakage found" in lines  # untrusted text stays text
    assert not any("\x1b[" in line for line in lines)


# --- the baseline ------------------------------------------------------------------------------------


def test_baseline_regressions_and_what_is_not_one(tmp_path: Path) -> None:
    before = run(
        TargetReport("haproxy.test:443", "haproxy.test", True, results=[
            *controls(),
            probe("pq/split@600", delivery="split@600"),  # passed: fails now -> regression
            probe("classical/split@100", FAIL, model.RST, delivery="split@100"),  # failed in both -> known
            probe("size/4096", size=4096),  # passed: inconclusive now -> regression
            probe("pq/raw-reorder@600", delivery="raw-reorder@600"),  # passed: skipped now -> not run here
            probe("pq/gone", delivery="split@3"),  # not in this run: the suite changed
        ]),
        clean_target(),
        clean_target("down.test:443", "down.test"),  # reachable then, unreachable now
        clean_target("other.test:443", "other.test"),  # not in this run at all
    )
    path = tmp_path / "baseline.json"
    reports.write_json(before, path)
    baseline = reports.read_baseline(path)

    now = run(broken_target(), clean_target(), unreachable_target(), clean_target("new.test:443", "new.test"))
    now.targets[0].results.append(probe("pq/new", FAIL, model.FIN, delivery="records@64"))
    now.targets[3].results[2] = probe("pq/split@600", FAIL, model.TIMEOUT, delivery="split@600")
    got = reports.apply_baseline(now, baseline)
    assert got is now.regressions
    assert got == [
        "haproxy.test:443 pq/split@600", "haproxy.test:443 size/4096",
        "down.test:443 classical/one-write", "down.test:443 pq/one-write", "down.test:443 pq/split@600",
    ]
    assert reports.new_failures(now, baseline) == ["haproxy.test:443 pq/new", "new.test:443 pq/split@600"]
    out = terminal(now, baseline)
    assert "5 regression(s) against the baseline" in out and "haproxy.test:443 pq/split@600" in out
    assert "2 new failure(s)" in out and "haproxy.test:443 pq/new" in out
    assert "(regression)" in out
    html = reports.render_html(now)
    assert "Regressions against the baseline (5)" in html and "v fail regression" in html


def test_a_different_sni_is_a_different_target() -> None:
    baseline = run(clean_target("a.test:443", "a.test"))
    now = run(broken_target())
    now.targets[0].target = "a.test:443"
    now.targets[0].server_name = "b.test"
    assert reports.apply_baseline(now, baseline) == []
    now.targets[0].server_name = "a.test"
    assert reports.apply_baseline(now, baseline) == ["a.test:443 pq/split@600"]


def test_exit_codes() -> None:
    clean = run(clean_target())
    assert clean.exit_code() == 0 and clean.exit_code(baseline=True) == 0
    broken = run(broken_target(), clean_target())
    assert broken.exit_code() == 1
    reports.apply_baseline(broken, run(broken_target(), clean_target()))  # the same breakage as before
    assert broken.regressions == [] and broken.exit_code(baseline=True) == 0
    reports.apply_baseline(broken, run(clean_target("haproxy.test:443", "haproxy.test")))
    assert broken.regressions == ["haproxy.test:443 pq/split@600"] and broken.exit_code(baseline=True) == 1
    down = run(clean_target(), unreachable_target())
    assert down.exit_code() == 2 and down.exit_code(baseline=True) == 2


# --- random reports ----------------------------------------------------------------------------------

texts = st.text(max_size=30)
names = st.one_of(texts, st.sampled_from([EVIL, EVIL_SNI, "a.test:443", "[red]x[/red]", "]]>", "&amp;", "--"]))
finite = st.floats(min_value=0, max_value=1e6, allow_nan=False)
json_values = st.one_of(st.integers(-10**6, 10**6), texts, st.lists(texts, max_size=3), st.none())

icmps = st.builds(IcmpReport, type=st.integers(0, 255), code=st.integers(0, 255), source=texts, name=texts)
outcomes = st.builds(
    Outcome, kind=st.one_of(st.sampled_from(model.OUTCOME_KINDS), texts), group=st.none() | texts,
    cipher=st.none() | texts, alert=st.none() | texts, certificate_sha256=st.none() | texts,
    certificate_matches_name=st.none() | st.booleans(), certificate_signature=st.none() | texts,
    signature_scheme=st.none() | texts, hello_retry=st.booleans(), icmp=st.none() | icmps, elapsed_ms=finite,
    bytes_received=st.integers(0, 10**6), local_port=st.none() | st.integers(1, 65535), detail=texts,
)
specs = st.builds(
    ProbeSpec, id=names, profile=texts, delivery=st.one_of(texts, st.sampled_from(["one-write", "split@600"])),
    size=st.none() | st.integers(0, 70000), control=st.none() | names, check=st.none() | texts,
    expect=texts, description=texts, options=st.dictionaries(texts, json_values, max_size=3),
)
results = st.builds(
    ProbeResult, spec=specs, hello_size=st.integers(0, 70000), wire_size=st.integers(0, 70000),
    attempts=st.lists(outcomes, min_size=1, max_size=3), passed=st.booleans(),
    verdict=st.one_of(st.sampled_from([PASS, FAIL, INCONCLUSIVE, SKIPPED]), texts), reason=texts,
)
diagnoses = st.builds(
    Diagnosis, id=st.one_of(st.sampled_from(model.DIAGNOSIS_IDS), texts), summary=texts,
    evidence=st.lists(names, max_size=3), threshold=st.none() | st.integers(0, 70000), hop=st.none() | texts,
    details=st.dictionaries(texts, json_values, max_size=3),
)
readinesses = st.builds(
    Readiness, verdict=st.one_of(st.sampled_from(["pq-ready", "pq-capable", "not-pq-ready", "unknown"]), texts),
    summary=texts, accepted_groups=st.lists(texts, max_size=3), rejected_groups=st.lists(texts, max_size=3),
    preferred_group=st.none() | texts, hrr_to_hybrid=st.none() | st.booleans(),
    certificate_signature=st.none() | texts, signature_scheme=st.none() | texts, pq_signature=st.booleans(),
)
targets = st.builds(
    TargetReport, target=names, server_name=st.none() | names, reachable=st.booleans(), error=st.none() | texts,
    results=st.lists(results, max_size=6), diagnoses=st.lists(diagnoses, max_size=3),
    readiness=st.none() | readinesses, answer_timeout_s=st.none() | finite, duration_s=finite,
)
run_reports = st.builds(RunReport, suite=texts, started=texts, version=texts, targets=st.lists(targets, max_size=3),
                        regressions=st.lists(texts, max_size=3))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(report=run_reports, baseline=run_reports)
def test_random_reports_write_and_read_back(tmp_path: Path, report: RunReport, baseline: RunReport) -> None:
    before = report.to_dict()

    path = tmp_path / "r.json"
    reports.write_json(report, path)
    assert reports.read_baseline(path).to_dict() == before

    reports.write_junit(report, tmp_path / "r.xml")
    root = ET.parse(tmp_path / "r.xml").getroot()
    assert len(root.findall("testsuite")) == len(report.targets)
    for suite in root.findall("testsuite"):
        check_counts(suite)

    reports.write_html(report, tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert_self_contained(text, parse_html(text))

    terminal(report)
    assert report.to_dict() == before  # writing changes nothing

    keys = {f"{t.target} {r.spec.id}" for t in report.targets for r in t.results}
    keys |= {f"{t.target} {r.spec.id}" for t in baseline.targets for r in t.results}
    regressions = reports.apply_baseline(report, baseline)
    assert set(regressions) <= keys and len(set(regressions)) == len(regressions)
    assert report.exit_code(baseline=True) in (0, 1, 2)
    terminal(report, baseline)
    reports.write_junit(report, tmp_path / "r.xml")
    ET.parse(tmp_path / "r.xml")


@settings(max_examples=40, deadline=None)
@given(report=run_reports)
def test_a_report_is_no_regression_of_itself(report: RunReport) -> None:
    assert reports.apply_baseline(report, RunReport.from_dict(reports.report_dict(report))) == []
