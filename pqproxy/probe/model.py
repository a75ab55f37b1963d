"""What a probe run finds, as plain data: outcomes, probe results, diagnoses, readiness, reports.

Everything here is a dataclass that turns into JSON with ``to_dict`` and back with ``from_dict`` (the
``--baseline`` file is an earlier ``--json`` report). Reports read these; nothing here does I/O.

Theory of operation: a *probe* sends one ClientHello (a profile, a size) in one delivery shape and
records the *outcome* (what the server or the path answered). A probe that fails is judged against its
*control* (the same hello unsplit, or small, or classical) sent to the same target at the same moment,
so a target that is down or flaky is reported as such, never as a post-quantum breakage. Rules over the
judged probes give *diagnoses*, named with the stable ids of REFERENCE.md §3.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# --- outcomes ------------------------------------------------------------------------------------

SERVER_HELLO = "server_hello"
HELLO_RETRY_REQUEST = "hello_retry_request"
ALERT = "alert"
FIN = "fin"  # the peer closed without a word
RST = "rst"
TIMEOUT = "timeout"  # nothing (or not enough) came back in time
ICMP = "icmp"
NOT_TLS = "not_tls"  # bytes came back, but not a TLS record
REFUSED = "refused"  # the TCP connection was refused (RST to our SYN)
UNREACHABLE = "unreachable"  # no route, or the TCP handshake itself timed out
RETRY = "retry"  # QUIC: the server asked for address validation (followed once; this is what came then)
VERSION_NEGOTIATION = "version_negotiation"  # QUIC: the server does not speak QUIC v1

OUTCOME_KINDS = (SERVER_HELLO, HELLO_RETRY_REQUEST, ALERT, FIN, RST, TIMEOUT, ICMP, NOT_TLS, REFUSED, UNREACHABLE,
                 RETRY, VERSION_NEGOTIATION)
TLS_ANSWERS = frozenset({SERVER_HELLO, HELLO_RETRY_REQUEST})
# Outcomes that say the target itself is not there, whatever we send.
TARGET_DOWN = frozenset({REFUSED, UNREACHABLE})

# Probe verdicts
PASS = "pass"
FAIL = "fail"  # failed while its control passed: evidence against the path or server
INCONCLUSIVE = "inconclusive"  # failed, but so did its control (or the control is missing)
SKIPPED = "skipped"


@dataclass
class IcmpReport:
    type: int
    code: int
    source: str  # the hop (or host) that sent it
    name: str = ""  # "time-exceeded", "destination-unreachable/frag-needed", ...


@dataclass
class Outcome:
    kind: str
    group: str | None = None  # ServerHello: the selected group; HelloRetryRequest: the group asked for
    cipher: str | None = None
    alert: str | None = None  # the alert's RFC name, "handshake_failure"
    certificate_sha256: str | None = None  # the leaf the server proved, when the handshake could be read
    certificate_matches_name: bool | None = None  # the leaf covers the SNI we sent (None: not known)
    certificate_signature: str | None = None  # the leaf's signature algorithm, "ecdsa-with-SHA256", "ML-DSA-65"
    signature_scheme: str | None = None  # CertificateVerify's scheme
    hello_retry: bool = False  # a HelloRetryRequest came first (then this ServerHello, or this failure)
    icmp: IcmpReport | None = None
    elapsed_ms: float = 0.0
    wait_ms: float = 0.0  # from the hello's last byte to the answer: what a timeout has to cover on this path
    bytes_received: int = 0
    local_port: int | None = None  # our side of the connection: finds the probe in a --pcap capture
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.kind in TLS_ANSWERS

    def describe(self) -> str:
        if self.kind == SERVER_HELLO:
            text = f"ServerHello {self.group or '?'} {self.cipher or ''}".rstrip()
            return text + (" after HRR" if self.hello_retry else "")
        if self.kind == HELLO_RETRY_REQUEST:
            return f"HelloRetryRequest for {self.group or '?'}"
        if self.kind == ALERT:
            return f"alert {self.alert}"
        if self.kind == ICMP and self.icmp is not None:
            return f"ICMP {self.icmp.name or f'{self.icmp.type}/{self.icmp.code}'} from {self.icmp.source}"
        return self.kind + (f" ({self.detail})" if self.detail else "")


# --- probes --------------------------------------------------------------------------------------


@dataclass
class ProbeSpec:
    """One probe as a suite declares it; ``delivery`` uses the shape syntax of ``delivery.parse_shape``."""

    id: str
    profile: str = "chrome"  # chrome, openssl35, classical, mlkem1024, replay:NAME
    delivery: str = "one-write"
    size: int | None = None  # pad the handshake message to exactly this many bytes
    control: str | None = None  # the id of the probe this one is judged against
    check: str | None = None  # the diagnosis family this probe serves ("split-segments", ...)
    expect: str = "tls"  # "tls": ServerHello or HRR is a pass; "server_hello": HRR alone is not
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # profile knobs: sni_end, groups, key_shares...


@dataclass
class ProbeResult:
    spec: ProbeSpec
    hello_size: int  # bytes of the handshake message
    wire_size: int  # bytes on the wire with record headers
    attempts: list[Outcome]
    passed: bool  # every attempt answered as expected (and reached the control's backend)
    verdict: str = PASS  # PASS, FAIL, INCONCLUSIVE, SKIPPED: set once controls are compared
    reason: str = ""  # why it failed, in words

    @property
    def outcome(self) -> Outcome:
        """The attempt that decides: the first failure, else the last success."""
        if not self.attempts:  # only in a hand-edited file: the runner always records one
            return Outcome(TIMEOUT, detail="no attempt recorded")
        for o in self.attempts:
            if not self.passed and not o.ok:
                return o
        return self.attempts[-1]


@dataclass
class Diagnosis:
    id: str  # a REFERENCE.md §3 id: "split-segments", "size-threshold", ...
    summary: str
    evidence: list[str] = field(default_factory=list)  # ids of the probes that prove it (failing and control)
    threshold: int | None = None  # size-threshold: the smallest failing handshake size found
    hop: str | None = None  # pmtu-blackhole: the address of the hop where large segments die
    details: dict[str, Any] = field(default_factory=dict)
    # What would avoid it, and whether a probe of this run showed that it does: True (the probe in
    # workaround_evidence passed), False (it failed too), None (no probe of this run tells).
    workaround: str = ""
    workaround_checked: bool | None = None
    workaround_evidence: list[str] = field(default_factory=list)


@dataclass
class Readiness:
    verdict: str  # "pq-ready", "pq-capable", "not-pq-ready", "unknown"
    summary: str
    accepted_groups: list[str] = field(default_factory=list)
    rejected_groups: list[str] = field(default_factory=list)
    preferred_group: str | None = None  # chosen when offered every group with a share each
    hrr_to_hybrid: bool | None = None  # offered only a classical share: did it ask for the hybrid one?
    certificate_signature: str | None = None
    signature_scheme: str | None = None
    pq_signature: bool = False
    # Offered only ML-DSA signature schemes: True, it signed with one (mldsa_scheme); False, it refused
    # (handshake_failure); None, no answer to tell.
    mldsa_signing: bool | None = None
    mldsa_scheme: str | None = None


@dataclass
class TargetReport:
    target: str  # host:port as given
    server_name: str | None
    reachable: bool
    error: str | None = None  # why the target could not be probed at all
    results: list[ProbeResult] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    readiness: Readiness | None = None
    # Client population ("Chromium 156") -> "passes", "fails: rst", "unknown: ..." (checks.populations)
    populations: dict[str, str] = field(default_factory=dict)
    # Seconds an attempt waited for an answer at the end: learned from the target's answers (runner.py)
    answer_timeout_s: float | None = None
    duration_s: float = 0.0
    index: int | None = None  # the target's position among those given (the file's order): orders merged shards

    def failed_probes(self) -> list[ProbeResult]:
        return [r for r in self.results if r.verdict == FAIL]


@dataclass
class RunReport:
    suite: str
    started: str  # ISO 8601, UTC
    version: str
    targets: list[TargetReport] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)  # "target probe-id", set by --baseline

    def exit_code(self, baseline: bool = False) -> int:
        """0: nothing broke; 1: breakage found (with a baseline: only regressions count); 2: a target
        could not be probed at all."""
        if any(not t.reachable for t in self.targets):
            return 2
        if baseline:
            return 1 if self.regressions else 0
        broke = any(t.diagnoses or t.failed_probes() for t in self.targets)
        return 1 if broke else 0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for target, raw in zip(self.targets, out["targets"], strict=True):
            for result, raw_result in zip(target.results, raw["results"], strict=True):
                raw_result["outcome"] = dataclasses.asdict(result.outcome)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunReport:
        def outcome(d: dict[str, Any]) -> Outcome:
            d = dict(d)
            icmp = d.pop("icmp", None)
            return Outcome(**d, icmp=IcmpReport(**icmp) if icmp else None)

        targets = []
        for t in data.get("targets", []):
            results = [
                ProbeResult(
                    spec=ProbeSpec(**r["spec"]),
                    hello_size=r["hello_size"],
                    wire_size=r["wire_size"],
                    attempts=[outcome(a) for a in r["attempts"]],
                    passed=r["passed"],
                    verdict=r.get("verdict", PASS),
                    reason=r.get("reason", ""),
                )
                for r in t.get("results", [])
            ]
            readiness = Readiness(**t["readiness"]) if t.get("readiness") else None
            targets.append(TargetReport(
                target=t["target"], server_name=t.get("server_name"), reachable=t["reachable"],
                error=t.get("error"), results=results,
                diagnoses=[Diagnosis(**d) for d in t.get("diagnoses", [])],
                readiness=readiness, populations=dict(t.get("populations", {})),
                answer_timeout_s=t.get("answer_timeout_s"), duration_s=t.get("duration_s", 0.0),
                index=t.get("index"),
            ))
        return cls(suite=data["suite"], started=data["started"], version=data["version"], targets=targets,
                   regressions=list(data.get("regressions", [])))


# The catalogue's ids (REFERENCE.md §3), in the order reports list them.
DIAGNOSIS_IDS = (
    "split-segments", "sni-offset", "tiny-first-segment", "multi-record", "early-verdict", "codepoint",
    "sigalg-codepoint", "size-threshold", "pmtu-blackhole", "hrr", "quic-multi-initial",
)
