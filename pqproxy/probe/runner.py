"""Runs a suite against targets: probes in order per target, targets side by side (bounded), verdicts.

Per target: a reachability check first (the classical control; a target that refuses, times out or
does not speak TLS is reported unreachable, exit code 2), then the controls, then every probe of the
suite's checks, each ``attempts`` times with a fresh hello. When a probe fails its control is sent
again at once, so the verdict compares the two at the same moment. The size sweep is refined by
binary search. Then: routing (did each answer come from the server the name belongs to), verdicts,
diagnoses, readiness.

Hostile paths are slow to probe only because silence has to be waited out. So the wait is learned: once the
small classical control has answered, an attempt waits at most ``ANSWER_FACTOR`` times the slowest answer seen
on this target so far plus ``ANSWER_SLACK`` (never less than ``MIN_ANSWER_TIMEOUT``, never more than the
suite's ``timeout``), as TCP's retransmission timer and nmap's adaptive timeouts learn from round trips. A
probe's confirming attempt waits twice that. And the probes after the controls run ``parallel`` at a time:
each is its own connection, judged against its own control at its own moment; only the raw-packet probes,
which share the packet filter, take turns.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from .. import __version__
from ..processes import stop_process
from . import checks as catalogue
from . import model
from .campaign import Pacer
from .delivery import parse_shape, wire_bytes
from .engine import Target, run_kernel_attempt, run_raw_attempt
from .model import Outcome, ProbeResult, ProbeSpec, RunReport, TargetReport
from .profiles import build_probe_hello
from .readiness import assess
from .suite import Suite

MAX_TARGETS = 10_000
MIN_ANSWER_TIMEOUT = 1.0  # seconds: below this a busy server or a long path is too easily taken for a silent box
ANSWER_FACTOR = 4.0
ANSWER_SLACK = 0.25  # seconds, for a path whose round trip varies more than its server's answer time
SMALL_WRITE = 400  # bytes per write when a size is re-sent "in pieces": far below any path's MSS
RAW_SPLIT_PROBES = (
    # Exact segment sizes are the point here, not timing: 10 ms apart, so a 2 KB hello takes 0.2 s and no
    # box's preread timeout fires (nginx waited 5 s for the slow version and closed, a true but useless fail).
    ("pq/raw-segments@100", "raw-segments@100/pause=0.01", "the hello in raw TCP segments of exactly 100 bytes"),
    ("pq/raw-reorder@600", "raw-reorder@600/pause=0.01",
     "raw segments of 600 bytes, the second sent before the first"),
)

ProgressHook = Callable[[Target, ProbeSpec, ProbeResult], None]


@dataclass
class RunOptions:
    concurrency: int = 4
    pcap_dir: Path | None = None
    server_name: str | None = None
    on_result: ProgressHook | None = None
    raw_available: bool | None = None  # None: find out (root, nftables, scapy)
    notes: list[str] = field(default_factory=list)
    pacer: Pacer | None = None  # --rate: at most so many new connections a second in this process


def raw_capability() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "raw-packet probes need root"
    if shutil.which("nft") is None:
        return False, "raw-packet probes need nftables (nft) to hold back the kernel's resets"
    try:
        from . import raw  # noqa: F401  (imports scapy)
    except Exception as exc:  # scapy fails to import in odd environments; say so, do not crash
        return False, f"scapy does not load: {exc}"
    return True, ""


def plan(suite: Suite, raw: bool) -> list[ProbeSpec]:
    """Every probe of the suite in run order, controls first, each id once."""
    specs: list[ProbeSpec] = [*catalogue.controls(suite.profile, suite.transport)]
    for check in suite.checks:
        specs.extend(catalogue.probes_for(check, suite.profile, suite.sweep))
        if check == "split-segments" and suite.raw != "no":
            for probe_id, shape, text in RAW_SPLIT_PROBES:
                specs.append(ProbeSpec(id=probe_id, profile=suite.profile, delivery=shape,
                                       control=catalogue.PQ_CONTROL, check=check, description=text))
    specs.extend(suite.probes)
    seen: set[str] = set()
    out = []
    for spec in specs:
        if spec.id not in seen:
            seen.add(spec.id)
            out.append(spec)
    return out


class TargetRun:
    def __init__(self, target: Target, suite: Suite, options: RunOptions, raw_ok: bool, raw_note: str) -> None:
        self.target = target
        self.suite = suite
        self.options = options
        self.raw_ok = raw_ok
        self.raw_note = raw_note
        self.results: dict[str, ProbeResult] = {}
        self.rechecks: dict[str, list[Outcome]] = {}
        self.specs: dict[str, ProbeSpec] = {}
        self.timeout = suite.timeout  # until an answer has been seen: see answer_seen
        self.slowest_answer = 0.0  # seconds, of every answer that met its probe's expectation
        self.learning = False

    def answer_seen(self, outcome: Outcome) -> None:
        """Every answer widens the wait for the next ones (never narrows it): a path that answered once in
        800 ms is given 3.45 s from then on."""
        if outcome.wait_ms <= 0:
            return  # QUIC and raw attempts do not measure it: they keep the suite's timeout
        self.slowest_answer = max(self.slowest_answer, outcome.wait_ms / 1000)
        if self.learning:
            learned = max(MIN_ANSWER_TIMEOUT, ANSWER_FACTOR * self.slowest_answer + ANSWER_SLACK)
            self.timeout = min(self.suite.timeout, learned)

    async def attempt(self, spec: ProbeSpec, patience: float = 1.0) -> tuple[int, int, Outcome]:
        hello = build_probe_hello(spec.profile, self.target.server_name, size=spec.size, options=spec.options)
        shape = parse_shape(spec.delivery)
        if self.options.pacer is not None:
            await self.options.pacer.wait()
        pause = self.suite.pause if shape.pause is None else shape.pause
        timeout = min(self.suite.timeout, self.timeout * patience)
        if shape.quic:
            from ..quic.probe import run_quic_attempt

            outcome = await run_quic_attempt(self.target, hello, shape, size=spec.size, pause=pause,
                                             timeout=timeout)
            size = len(hello.encode())  # as sent: made fit for QUIC
            return size, size, outcome
        encoded = hello.encode()
        if shape.raw:
            outcome, _packets = await run_raw_attempt(self.target, hello, shape, pause=pause, timeout=timeout)
        else:
            outcome = await run_kernel_attempt(self.target, hello, shape, pause=pause, timeout=timeout,
                                               connect_timeout=self.suite.connect_timeout)
        if _meets(spec, outcome):
            self.answer_seen(outcome)
        return len(encoded), len(wire_bytes(encoded, shape)), outcome

    async def run_probe(self, spec: ProbeSpec) -> ProbeResult:
        self.specs[spec.id] = spec
        shape = parse_shape(spec.delivery)
        if (shape.raw and (not self.raw_ok or self.target.proxy is not None)) or (shape.quic and self.target.proxy):
            why = (self.raw_note if shape.raw and not self.raw_ok
                   else f"{'QUIC' if shape.quic else 'raw-packet'} probes cannot go through an HTTP proxy")
            result = ProbeResult(spec, 0, 0, [Outcome(model.TIMEOUT, detail="not run")], passed=False,
                                 verdict=model.SKIPPED, reason=why)
            self.results[spec.id] = result
            return result
        attempts: list[Outcome] = []
        hello_size = wire_size = 0
        for _ in range(self.suite.attempts):
            try:
                hello_size, wire_size, outcome = await self.attempt(spec)
            except ValueError as exc:  # a probe that cannot be built (a size below the hello, ...)
                result = ProbeResult(spec, 0, 0, [Outcome(model.TIMEOUT, detail="not run")], passed=False,
                                     verdict=model.SKIPPED, reason=str(exc))
                self.results[spec.id] = result
                return result
            attempts.append(outcome)
            if outcome.kind in model.TARGET_DOWN:
                break
        result = ProbeResult(spec, hello_size, wire_size, attempts, passed=all(_meets(spec, o) for o in attempts))
        self.results[spec.id] = result
        control = self.results.get(spec.control or "")
        if not result.passed and control is not None and control.passed:
            # The control again now (a target that just went away is not a broken path), and if it still
            # works the probe once more, so one unlucky connection is not a verdict.
            # The control twice (probe, control, control, probe): a path that fails every other connection
            # cannot line its failures up with the probes and its successes with the controls.
            control_spec = self.specs[control.spec.id]
            self.rechecks[spec.id] = []
            for _ in range(2):
                _, _, recheck = await self.attempt(control_spec)
                self.rechecks[spec.id].append(recheck)
                if not _meets(control_spec, recheck):
                    return result
            _, _, confirm = await self.attempt(spec, patience=2.0)
            attempts.append(confirm)
            result.passed = all(_meets(spec, o) for o in attempts)
        return result

    async def run(self) -> TargetReport:
        started = time.monotonic()
        report = TargetReport(str(self.target), self.target.server_name, reachable=True)
        specs = plan(self.suite, self.raw_ok)
        root = specs[0]
        first = await self.run_probe(root)
        down = _unreachable(first)
        if down is not None:
            report.reachable = False
            report.error = down
            first.passed, first.verdict, first.reason = False, model.INCONCLUSIVE, f"target unreachable: {down}"
            report.results = [first]
            report.duration_s = time.monotonic() - started
            return report
        self._notify(root, first)
        self.learning = self.suite.adaptive_timeout
        for attempt in first.attempts:
            if _meets(root, attempt):
                self.answer_seen(attempt)
        rest = specs[1:]
        for spec in [s for s in rest if s.check == "control"]:  # every other probe is judged against these
            self._notify(spec, await self.run_probe(spec))
        await self.run_side_by_side([s for s in rest if s.check != "control"])
        if "size-threshold" in self.suite.checks:
            await self.refine_sweep()
        order = {spec.id: index for index, spec in enumerate(specs)}
        results = sorted(self.results.values(), key=lambda r: order.get(r.spec.id, len(order)))
        judge(results, self.rechecks, self.target.server_name)
        report.results = results
        report.diagnoses = catalogue.diagnose(results, self.suite.checks)
        await self.locate_blackhole(report)
        report.readiness = assess(results)
        report.populations = catalogue.populations(results)
        report.answer_timeout_s = round(self.timeout, 3)
        report.duration_s = time.monotonic() - started
        return report

    async def run_side_by_side(self, specs: list[ProbeSpec]) -> None:
        """``parallel`` probes at a time, each started only once its control (when that is one of them, earlier
        in the plan) has its result; results keep the plan's order in the report, whatever order they end in."""
        finished = {spec.id: trio.Event() for spec in specs}
        position = {spec.id: index for index, spec in enumerate(specs)}
        limiter = trio.CapacityLimiter(max(1, self.suite.parallel))
        packet_filter = trio.Lock()  # raw-packet probes share nftables rules and a sniffer: one at a time

        async def one(spec: ProbeSpec) -> None:
            try:
                control = spec.control or ""
                if control in finished and position[control] < position[spec.id]:
                    await finished[control].wait()
                if parse_shape(spec.delivery).raw:
                    async with packet_filter, limiter:
                        result = await self.run_probe(spec)
                else:
                    async with limiter:
                        result = await self.run_probe(spec)
                self._notify(spec, result)
            finally:
                finished[spec.id].set()

        async with trio.open_nursery() as nursery:
            for spec in specs:
                nursery.start_soon(one, spec)

    def _bracket(self) -> tuple[int, int] | None:
        interim = list(self.results.values())
        judge(interim, self.rechecks, self.target.server_name)
        return catalogue.size_bracket(catalogue.Judged({r.spec.id: r for r in interim}))

    async def refine_sweep(self) -> None:
        """Binary search between the largest passing and the smallest failing sweep size, then the smallest
        failing size once more in small writes: a cap on the hello fails "whatever the split", a path that
        loses large segments does not. If it fails in small writes too, the largest passing size goes in small
        writes as well: a cap lets it through however it is cut, a box that judges the first segment alone
        (early-verdict) does not."""
        if self.suite.refine:
            await self._binary_search()
        bracket = self._bracket()
        if bracket is None:
            return
        ok, bad = bracket
        failing = await self._small_writes(bad, f"the smallest failing size, {bad} bytes, in writes of 400 bytes")
        if failing is not None and failing.verdict == model.FAIL and ok > SMALL_WRITE:
            await self._small_writes(ok, f"the largest passing size, {ok} bytes, in writes of 400 bytes")

    async def _small_writes(self, size: int, description: str) -> ProbeResult | None:
        cuts = ",".join(str(n) for n in range(SMALL_WRITE, size + 5, SMALL_WRITE))
        spec = ProbeSpec(id=catalogue.small_writes_id(size), profile="classical", size=size,
                         delivery=f"split@{cuts}" if cuts else "one-write", control=catalogue.CLASSICAL_CONTROL,
                         check="size-threshold", expect="tls", description=description)
        self._notify(spec, await self.run_probe(spec))
        interim = list(self.results.values())
        judge(interim, self.rechecks, self.target.server_name)
        return self.results.get(spec.id)

    async def _binary_search(self) -> None:
        for _ in range(catalogue.MAX_REFINE_STEPS):
            bracket = self._bracket()
            if bracket is None or bracket[1] - bracket[0] <= catalogue.SWEEP_RESOLUTION:
                return
            middle = (bracket[0] + bracket[1]) // 2
            spec = ProbeSpec(id=f"size/{middle}", profile="classical", size=middle,
                             control=catalogue.CLASSICAL_CONTROL, check="size-threshold",
                             description=f"binary search: a classical hello padded to {middle} bytes")
            self._notify(spec, await self.run_probe(spec))

    async def locate_blackhole(self, report: TargetReport) -> None:
        diagnosis = next((d for d in report.diagnoses if d.id == "pmtu-blackhole"), None)
        if diagnosis is None:
            return
        if not self.raw_ok:
            diagnosis.details["hop_search"] = f"not run: {self.raw_note}"
            return
        from . import raw

        try:
            search = await trio.to_thread.run_sync(
                lambda: raw.find_blackhole_hop(self.target.host, self.target.port)
            )
        except Exception as exc:  # a hop search that cannot run must not hide the diagnosis
            diagnosis.details["hop_search"] = f"failed: {exc}"
            return
        hop = getattr(search, "hop", None)
        if hop:
            diagnosis.hop = str(hop)
            diagnosis.summary += f" Large segments die at hop {hop}."
        diagnosis.details["hop_search"] = _plain(search)

    def _notify(self, spec: ProbeSpec, result: ProbeResult) -> None:
        if self.options.on_result is not None:
            self.options.on_result(self.target, spec, result)


def _plain(value: object) -> object:
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}  # type: ignore[call-overload]
    return value


def _meets(spec: ProbeSpec, o: Outcome) -> bool:
    if spec.expect == "server_hello":
        return o.kind == model.SERVER_HELLO
    if spec.expect == "answer":
        return o.kind in (model.SERVER_HELLO, model.HELLO_RETRY_REQUEST, model.ALERT)
    return o.ok


def _unreachable(first: ProbeResult) -> str | None:
    kinds = [o.kind for o in first.attempts]
    if all(k in model.TARGET_DOWN for k in kinds):
        return f"{first.attempts[-1].describe()}"
    if all(k == model.NOT_TLS for k in kinds):
        return f"does not speak TLS: {first.attempts[-1].detail}"
    if all(k == model.VERSION_NEGOTIATION for k in kinds):
        return f"does not speak QUIC v1: {first.attempts[-1].detail}"
    if all(k in (model.TIMEOUT, model.FIN, model.RST, model.RETRY) for k in kinds):
        return f"no TLS answer to a small classical hello ({first.attempts[-1].describe()})"
    return None


def judge(results: list[ProbeResult], rechecks: dict[str, list[Outcome]], server_name: str | None) -> None:
    """Routing, pass/fail, and verdicts against controls, in place."""
    by_id = {r.spec.id: r for r in results}
    name_mode = bool(server_name) and any(o.certificate_matches_name for r in results for o in r.attempts)

    def misrouted(r: ProbeResult, o: Outcome) -> str | None:
        if o.kind != model.SERVER_HELLO or o.certificate_sha256 is None:
            return None
        if name_mode:
            if o.certificate_matches_name is False:
                return f"answered with a certificate that is not for {server_name} (another backend)"
            return None
        control = by_id.get(r.spec.control or "")
        if control is None:
            return None
        seen = Counter(c.certificate_sha256 for c in control.attempts if c.certificate_sha256)
        if seen and o.certificate_sha256 not in seen:
            return f"answered by another server than the control (certificate {o.certificate_sha256[:16]}...)"
        return None

    for r in results:
        if r.verdict == model.SKIPPED:
            continue
        reasons = []
        for o in r.attempts:
            if not _meets(r.spec, o):
                reasons.append(o.describe())
            elif (why := misrouted(r, o)) is not None:
                reasons.append(why)
        r.passed = not reasons
        r.reason = reasons[0] if reasons else ""
        if len(reasons) > 1 and len(set(reasons)) > 1:
            r.reason += f" (and {len(reasons) - 1} more)"
    unstable = [k for k, outs in rechecks.items() for o in outs
                if k in by_id and not _control_ok(by_id, k, o, misrouted)]
    for r in results:
        if r.verdict == model.SKIPPED:
            continue
        if r.passed:
            r.verdict = model.PASS
            continue
        good = [o for o in r.attempts if _meets(r.spec, o) and misrouted(r, o) is None]
        if good:
            # A breakage fails every time; a probe that also passed is an unreliable path or target.
            r.verdict = model.INCONCLUSIVE
            r.reason += f"; intermittent: {len(good)} of {len(r.attempts)} attempts passed"
            continue
        control = by_id.get(r.spec.control or "")
        if control is None:
            r.verdict = model.INCONCLUSIVE
            r.reason = (r.reason + "; " if r.reason else "") + "no control to compare with"
            continue
        recheck_ok = all(_meets(control.spec, o) and misrouted(control, o) is None for o in rechecks.get(r.spec.id, []))
        if control.passed and recheck_ok and unstable:
            r.verdict = model.INCONCLUSIVE
            r.reason += (f"; the target failed its own controls {len(unstable)} time(s) during the run "
                         "(unstable: nothing is blamed on the path)")
        elif control.passed and recheck_ok:
            r.verdict = model.FAIL
        else:
            r.verdict = model.INCONCLUSIVE
            r.reason += f"; its control {control.spec.id} failed too"


def _control_ok(by_id: dict[str, ProbeResult], probe_id: str, recheck: Outcome,
                misrouted: Callable[[ProbeResult, Outcome], str | None]) -> bool:
    control = by_id.get(by_id[probe_id].spec.control or "")
    return control is None or (_meets(control.spec, recheck) and misrouted(control, recheck) is None)


def _resolve(host: str) -> str:
    try:
        return str(socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0])
    except OSError:
        return host


class Capture:
    """``tcpdump`` for one target for the whole run: every probe's packets in ``DIR/<target>.pcap``."""

    def __init__(self, directory: Path, target: Target) -> None:
        self.path = directory / (str(target).replace(":", "_").replace("/", "_").strip("[]") + ".pcap")
        host, port = target.proxy or (target.host, target.port)  # through a proxy, its leg is what we see
        address = _resolve(host)
        interface = "lo" if address.startswith("127.") or address == "::1" else "any"
        # --immediate-mode: without it a short probe's packets can still sit in libpcap's buffer at stop.
        self.argv = ["tcpdump", "-i", interface, "-U", "--immediate-mode", "-n", "-s", "0", "-w", str(self.path),
                     f"host {address} and tcp port {port}"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if shutil.which("tcpdump") is None:
            raise RuntimeError("--pcap needs tcpdump (apt-get install tcpdump)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 5
        line = b""
        while time.monotonic() < deadline:  # tcpdump says "listening on" once its filter is in place
            line = self.proc.stderr.readline()
            if b"listening on" in line or not line:
                break
        if self.proc.poll() is not None:
            raise RuntimeError(f"tcpdump could not capture: {line.decode(errors='replace').strip()} "
                               "(it needs root or CAP_NET_RAW)")

    def stop(self) -> None:
        if self.proc is None:
            return
        time.sleep(0.2)  # let the last packets reach the file
        stop_process(self.proc)


async def probe_target(target: Target, suite: Suite, options: RunOptions) -> TargetReport:
    raw_ok, raw_note = _raw_decision(suite, options)
    capture = Capture(options.pcap_dir, target) if options.pcap_dir else None
    if capture is not None:
        await trio.to_thread.run_sync(capture.start)
    try:
        return await TargetRun(target, suite, options, raw_ok, raw_note).run()
    finally:
        if capture is not None:
            await trio.to_thread.run_sync(capture.stop)


def _raw_decision(suite: Suite, options: RunOptions) -> tuple[bool, str]:
    if suite.raw == "no":
        return False, "raw-packet probes are off in this suite"
    if options.raw_available is not None:
        ok, note = options.raw_available, "" if options.raw_available else "raw-packet probes are off"
    else:
        ok, note = raw_capability()
    if suite.raw == "yes" and not ok:
        raise RuntimeError(f"the suite needs raw-packet probes: {note}")
    return ok, note


def new_report(suite: Suite) -> RunReport:
    return RunReport(suite=suite.name, started=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                     version=__version__)


async def run_stream(targets: Iterable[tuple[int, Target]], suite: Suite, options: RunOptions,
                     done: Callable[[TargetReport], None]) -> None:
    """Probe ``targets`` ((position, target), read one at a time), ``concurrency`` at once, handing each report
    to ``done`` as it finishes: memory holds the targets in flight, never the run."""
    slots = trio.Semaphore(max(1, options.concurrency))

    async def one(index: int, target: Target) -> None:
        try:
            report = await probe_target(target, suite, options)
            report.index = index
            done(report)
        finally:
            slots.release()

    async with trio.open_nursery() as nursery:
        for index, target in targets:
            await slots.acquire()
            nursery.start_soon(one, index, target)


async def run_suite(targets: list[Target], suite: Suite, options: RunOptions) -> RunReport:
    if len(targets) > MAX_TARGETS:
        raise ValueError(f"at most {MAX_TARGETS} targets in one report (stream them: --json and the line report, "
                         "or shards and probe merge)")
    report = new_report(suite)
    await run_stream(enumerate(targets), suite, options, report.targets.append)
    report.targets.sort(key=lambda t: t.index or 0)
    return report


def count_probes(suite: Suite) -> int:
    return len(plan(suite, True))
