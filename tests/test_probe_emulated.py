"""The probe's rules, proven on real traffic through middlebox *emulators* (``tests/emulators.py``).

For every diagnosis of REFERENCE.md §3 that no Debian package reproduces, an emulator applies that one
broken policy between the probe and a real ``pqproxy server``; the probe (``run_suite``, in process) must
name that diagnosis with the right evidence, and must *not* name diagnoses that are not true on that
path. The other checks whose probes the broken policy also hits run alongside, to prove their rules
stay quiet. A target that is down, and a path that resets every second connection, give no diagnosis.

The last group of tests pins weaknesses this file found in the rules and the runner, each fixed since:
the docstrings say what went wrong, and the asserts keep it from coming back.

Raw-packet probes are tested elsewhere (``raw = "no"``); one attempt per probe keeps each test a few
seconds; the timeout is far above a loopback handshake (~20 ms) so a busy machine does not look broken.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from pqproxy.certs import write_dev_pki
from pqproxy.lab.emulators import (
    CodepointEmulator,
    EarlyVerdictEmulator,
    Emulator,
    FlakyEmulator,
    HrrEmulator,
    PmtuBlackholeEmulator,
    SigalgCodepointEmulator,
    SilentEmulator,
    SizeThresholdEmulator,
    SniOffsetEmulator,
    TinyFirstSegmentEmulator,
)
from pqproxy.probe import checks as catalogue
from pqproxy.probe import model
from pqproxy.probe.engine import Target
from pqproxy.probe.model import Diagnosis, ProbeResult, RunReport, TargetReport
from pqproxy.probe.runner import RunOptions, plan, run_suite
from pqproxy.probe.suite import Suite, load_suite, parse_suite
from tests.middleboxes import GOOD_NAME, TLSBackend, leaf_sha256
from tests.procs import free_port
from tests.sidecar_kit import Backend, Sidecar, server_args

HOST = "127.0.0.1"
TIMEOUT = 2.0  # seconds to wait for an answer; a silent drop costs this much
PAUSE = 0.3  # between the writes of a split hello: each write is its own read in the emulator


@dataclass
class Backends:
    good: TLSBackend  # certificate for good.test: where the probe's name belongs
    default: TLSBackend  # another certificate: where a router sends what it cannot place


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    """Two ``pqproxy server`` backends as in ``tests/middleboxes.py::tls_backend`` (the default one's
    certificate does not cover good.test), started side by side and drained quickly on stop."""
    work: Path = tmp_path_factory.mktemp("emulated")
    names = {"good": (GOOD_NAME, "localhost", HOST), "default": ("default.test",)}
    upstreams: list[Backend] = []
    sidecars: list[Sidecar] = []
    made: dict[str, TLSBackend] = {}
    try:
        for name, covered in names.items():
            pki = write_dev_pki(work / f"pki-{name}", alg="ecdsa", names=covered)
            upstreams.append(Backend("echo"))
            sidecars.append(Sidecar("server", server_args(pki, upstreams[-1].address, "--drain-timeout", "1"),
                                    admin=False, wait=False))
            made[name] = TLSBackend(sidecars[-1], upstreams[-1], leaf_sha256(pki["server"]), pki)
        for sidecar in sidecars:
            sidecar.wait_ready()
        yield Backends(made["good"], made["default"])
    finally:
        for sidecar in sidecars:
            sidecar.stop(check=False)
            stderr = sidecar.proc.proc.stderr
            if stderr is not None:  # the log reader is done once the process is gone
                sidecar.proc._reader.join(2)
                stderr.close()
        for upstream in upstreams:
            upstream.close()


def make_suite(*checks: str, profile: str = "chrome", attempts: int = 1, sizes: list[int] | None = None,
               refine: bool = True, probes: list[dict[str, Any]] | None = None) -> Suite:
    data: dict[str, Any] = {"name": "emulated", "checks": list(checks), "profile": profile, "attempts": attempts,
                            "timeout": TIMEOUT, "connect_timeout": 2.0, "pause": PAUSE, "raw": "no"}
    if sizes is not None:
        data["sweep"] = {"sizes": sizes, "refine": refine}
    if probes:
        data["probe"] = probes
    return parse_suite(data, "<emulated>")


def run(port: int, suite: Suite) -> tuple[RunReport, TargetReport]:
    report = trio.run(run_suite, [Target(HOST, port, GOOD_NAME)], suite, RunOptions())
    (target,) = report.targets
    return report, target


def probe(emulator: Emulator, suite: Suite) -> TargetReport:
    return run(emulator.port, suite)[1]


def ids(target: TargetReport) -> list[str]:
    return [d.id for d in target.diagnoses]


def results(target: TargetReport) -> dict[str, ProbeResult]:
    return {r.spec.id: r for r in target.results}


def diagnosis(target: TargetReport, diagnosis_id: str) -> Diagnosis:
    found = [d for d in target.diagnoses if d.id == diagnosis_id]
    assert found, f"no {diagnosis_id}: {[(d.id, d.summary) for d in target.diagnoses]}; " + "; ".join(
        f"{r.spec.id}={r.verdict}:{r.outcome.describe()}" for r in target.results)
    return found[0]


def only(target: TargetReport, diagnosis_id: str) -> Diagnosis:
    found = diagnosis(target, diagnosis_id)
    assert ids(target) == [diagnosis_id], [(d.id, d.summary) for d in target.diagnoses]
    return found




# --- the catalogue ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("router", [True, False], ids=["default-backend", "fin"])
def test_sni_offset(backends: Backends, router: bool) -> None:
    default = backends.default.port if router else None
    with SniOffsetEmulator(backends.good.port, default, names=(GOOD_NAME,)) as box:
        target = probe(box, make_suite("sni-offset", "codepoint", "size-threshold", sizes=[512, 2048, 4096]))
    found = only(target, "sni-offset")
    assert found.evidence == ["pq/sni-end@1100", "pq/sni-end@1000"]
    by_id = results(target)
    before, after = by_id["pq/sni-end@1000"], by_id["pq/sni-end@1100"]
    assert before.verdict == model.PASS and after.verdict == model.FAIL
    assert before.hello_size == after.hello_size == catalogue.SNI_PROBE_SIZE  # only the offset differs
    assert before.outcome.certificate_sha256 == backends.good.certificate_sha256
    if router:
        assert after.outcome.kind == model.SERVER_HELLO
        assert after.outcome.certificate_sha256 == backends.default.certificate_sha256
        assert "another backend" in after.reason
        assert box.count("forward: default backend") >= 1
    else:
        assert after.outcome.kind == model.FIN
        assert box.count("close: no server_name") >= 1
    # Same-size classical hellos with the name early all reach good.test: no size or codepoint story.
    assert all(r.verdict == model.PASS for k, r in by_id.items() if k.startswith(("size/", "codepoint/")))


def test_tiny_first_segment(backends: Backends) -> None:
    with TinyFirstSegmentEmulator(backends.good.port) as box:
        target = probe(box, make_suite("tiny-first-segment", "split-segments", "pmtu-blackhole"))
    found = only(target, "tiny-first-segment")
    assert found.details["failing_first_sizes"] == [1, 5]
    assert set(found.evidence) == {"pq/tiny-first@1", "pq/tiny-first@5", "pq/one-write", "pq/split@600"}
    by_id = results(target)
    assert by_id["pq/tiny-first@1"].outcome.kind == by_id["pq/tiny-first@5"].outcome.kind == model.RST
    for passing in ("pq/tiny-first@8", "pq/split@600", "pq/split@100", "classical/split@100", "pq/small-writes"):
        assert by_id[passing].verdict == model.PASS, passing
    assert box.count("reset: first read of") == 4  # two failing probes, each confirmed once


def refined_threshold(sweep: list[int], first_failing: int) -> int:
    """What the runner's binary search must end on for a box that refuses ``first_failing`` bytes and
    more: the same steps as ``runner.TargetRun.refine_sweep``."""
    ok = max(s for s in sweep if s < first_failing)
    bad = min(s for s in sweep if s >= first_failing)
    for _ in range(catalogue.MAX_REFINE_STEPS):
        if bad - ok <= catalogue.SWEEP_RESOLUTION:
            break
        middle = (ok + bad) // 2
        ok, bad = (ok, middle) if middle >= first_failing else (middle, bad)
    return bad


def test_size_threshold(backends: Backends) -> None:
    split_big = {"id": "custom/size-4096-split", "profile": "classical", "size": 4096,
                 "delivery": "split@1000,2000,3000", "control": catalogue.CLASSICAL_CONTROL}
    sweep = list(catalogue.DEFAULT_SWEEP)
    with SizeThresholdEmulator(backends.good.port, limit=3000) as box:
        target = probe(box, make_suite("size-threshold", "sni-offset", "split-segments", "codepoint", sizes=sweep,
                                       probes=[split_big]))
        first_failing = box.first_failing_size
    assert first_failing == 2996  # a 3000-byte record on the wire is a 2995-byte hello plus the 5-byte header
    found = only(target, "size-threshold")
    expected = refined_threshold(sweep, first_failing)
    assert expected == 3008
    assert found.threshold == expected
    assert first_failing <= found.threshold <= first_failing + catalogue.SWEEP_RESOLUTION
    assert found.details["largest_passing"] < first_failing
    assert found.evidence[:2] == [f"size/{expected}", catalogue.CLASSICAL_CONTROL]
    by_id = results(target)
    assert by_id[f"size/{expected}"].outcome.kind == model.RST
    # A hard cap whatever the split: the box reassembles the record, then refuses it.
    assert by_id["custom/size-4096-split"].verdict == model.FAIL
    assert by_id["custom/size-4096-split"].outcome.kind == model.RST
    # The 3072-byte sni-offset probes die by size, both of them: no sni-offset.
    assert by_id["pq/sni-end@1000"].verdict == model.FAIL
    assert by_id["pq/sni-end@1100"].verdict == model.INCONCLUSIVE


def test_codepoint(backends: Backends) -> None:
    with CodepointEmulator(backends.good.port) as box:
        target = probe(box, make_suite("codepoint", "split-segments", "size-threshold", "hrr", sizes=[512, 2048, 4096]))
    found = only(target, "codepoint")
    assert found.details["codepoints"] == ["X25519MLKEM768"]
    assert set(found.evidence) == {"codepoint/X25519MLKEM768", "codepoint/classical-padded"}
    assert "with a TLS alert" in found.summary
    by_id = results(target)
    bad = by_id["codepoint/X25519MLKEM768"]
    assert bad.verdict == model.FAIL
    assert bad.outcome.kind == model.ALERT and bad.outcome.alert == "illegal_parameter"
    assert by_id["codepoint/classical-padded"].verdict == model.PASS
    assert by_id["codepoint/X25519Kyber768Draft00"].verdict == model.PASS  # 0x6399 is not what the box hates
    # Every hello with 0x11EC gets the alert; their rules see a failed control and stay quiet.
    assert by_id["pq/one-write"].outcome.alert == "illegal_parameter"
    for r in (by_id["pq/split@600"], by_id["hrr/no-share"]):
        assert r.verdict == model.INCONCLUSIVE, r.spec.id
    assert box.count("answer: 0x11EC offered") >= 4


def test_sigalg_codepoint(backends: Backends) -> None:
    """The 2026 field case: an IPS signature resets every hello naming ML-DSA signature schemes, whatever its size.
    Before, the classical control itself named ML-DSA, so the target read as unreachable ("no TLS answer to a
    small classical hello (rst)", exit 2); now the controls name nothing post-quantum, each element is its own
    probe, and the report names the schemes, the extensions, and a workaround this run showed to work."""
    with SigalgCodepointEmulator(backends.good.port) as box:
        target = probe(box, make_suite("sigalg-codepoint", "codepoint", "split-segments", "hrr", "readiness",
                                       "populations"))
    assert target.reachable, target.error
    found = only(target, "sigalg-codepoint")
    assert found.details == {"schemes": ["mldsa44", "mldsa65", "mldsa87"],
                             "extensions": ["signature_algorithms", "signature_algorithms_cert"]}
    assert "at the TCP level (rst)" in found.summary
    assert found.workaround_checked is True and found.workaround_evidence == ["workaround/pq-without-mldsa"]
    by_id = results(target)
    for probe_id in ("sigalg/mldsa", "sigalg/mldsa44", "sigalg/mldsa65", "sigalg/mldsa87", "sigalg-cert/mldsa"):
        assert by_id[probe_id].verdict == model.FAIL and by_id[probe_id].outcome.kind == model.RST, probe_id
    for probe_id in ("classical/one-write", "codepoint/classical-padded", "codepoint/X25519MLKEM768",
                     "workaround/pq-without-mldsa"):
        assert by_id[probe_id].verdict == model.PASS, probe_id  # nothing post-quantum but the signatures matters
    # Chrome's own hello names ML-DSA: its shapes cannot be judged here, and no shape is blamed.
    assert by_id["pq/one-write"].outcome.kind == model.RST
    assert by_id["pq/split@600"].verdict == model.INCONCLUSIVE
    assert target.readiness is not None and target.readiness.verdict == "pq-ready"
    assert target.readiness.mldsa_signing is None  # the box reset the question: nothing is claimed
    # What an operator is asked: which clients does this path break? Those that name ML-DSA.
    assert target.populations == {
        "Chromium 156": "fails: rst", "Firefox ESR 153": "passes", "OpenSSL 3.5 (Node 26, curl)": "fails: rst",
        "Go 1.26": "passes", "Go 1.27 (ML-DSA)": "fails: rst"}, target.populations
    assert all(d.startswith(("forward", "reset")) for d in box.decisions)


def test_every_client_population_passes_a_clean_path(backends: Backends) -> None:
    _, target = run(backends.good.port, make_suite("populations"))
    assert target.populations == {label: "passes" for _, label, _ in catalogue.POPULATIONS}
    assert not target.diagnoses


def test_a_server_that_signs_with_mldsa_says_so(tmp_path: Path) -> None:
    """Readiness asks with only ML-DSA schemes: an ML-DSA-65 certificate signs (mldsa65), an ECDSA one cannot."""
    for alg, expected in (("mldsa65", (True, "mldsa65")), ("ecdsa", (False, None))):
        pki = write_dev_pki(tmp_path / alg, alg=alg, names=(GOOD_NAME, HOST))
        upstream = Backend("echo")
        server = Sidecar("server", server_args(pki, upstream.address), admin=False)
        try:
            _, target = run(server.port, make_suite("readiness"))
        finally:
            server.stop()
            upstream.close()
        assert target.readiness is not None
        assert (target.readiness.mldsa_signing, target.readiness.mldsa_scheme) == expected, target.readiness
        said = "signs with ML-DSA when asked (mldsa65)" if expected[0] else "cannot sign with ML-DSA"
        assert said in target.readiness.summary


def test_early_verdict(backends: Backends) -> None:
    with EarlyVerdictEmulator(backends.good.port) as box:
        target = probe(box, make_suite("early-verdict", "split-segments"))
    found = only(target, "early-verdict")  # not split-segments: a small split hello passes
    assert set(found.evidence) == {"pq/split@600", "pq/one-write", "pq/split@100", "classical/split@100",
                                   "classical/one-write", "hrr/classical-first"}
    assert "HelloRetryRequest into the hybrid group works" in found.summary
    by_id = results(target)
    for dropped in ("pq/split@600", "pq/split@100"):
        assert by_id[dropped].verdict == model.FAIL
        assert by_id[dropped].outcome.kind == model.TIMEOUT
    assert by_id["classical/split@100"].verdict == model.PASS
    hrr = by_id["hrr/classical-first"]
    assert hrr.verdict == model.PASS and hrr.outcome.hello_retry and hrr.outcome.group == "X25519MLKEM768"
    assert box.count("drop: first read of") >= 2


def test_hrr(backends: Backends) -> None:
    with HrrEmulator(backends.good.port) as box:
        target = probe(box, make_suite("hrr"))
    found = only(target, "hrr")
    assert found.evidence == ["hrr/no-share", "pq/one-write"]
    by_id = results(target)
    outcome = by_id["hrr/no-share"].outcome
    assert outcome.kind == model.TIMEOUT
    assert outcome.group == "X25519MLKEM768" and "after HelloRetryRequest" in outcome.detail
    assert box.count("drop: a second ClientHello") == 2  # the probe and its confirmation


def test_pmtu_blackhole(backends: Backends) -> None:
    with PmtuBlackholeEmulator(backends.good.port, mtu=1400) as box:
        target = probe(box, make_suite("pmtu-blackhole", "size-threshold", sizes=[1024, 2048], refine=False))
    found = only(target, "pmtu-blackhole")
    assert {"pq/one-write", "classical/one-write", "pq/small-writes"} <= set(found.evidence)
    by_id = results(target)
    assert by_id["pq/one-write"].outcome.kind == model.TIMEOUT
    assert by_id["pq/small-writes"].verdict == model.PASS
    # The sweep fails above the MTU too; size-threshold's rule defers to pmtu-blackhole.
    assert by_id["size/2048"].verdict == model.FAIL
    assert catalogue.size_bracket(catalogue.Judged(by_id)) == (1024, 2048)
    assert by_id["size/2048/small-writes"].verdict == model.PASS  # the same 2048 bytes, 400 at a time
    assert box.count("drop: a ") == 4  # pq/one-write and size/2048, each confirmed once


# --- no diagnosis where there is nothing to diagnose -----------------------------------------------------


@pytest.mark.parametrize("kind", ["closed-port", "silent", "backend-down"])
def test_target_down_for_the_whole_run(kind: str) -> None:
    suite = load_suite("default")
    suite.raw, suite.attempts, suite.timeout, suite.connect_timeout = "no", 1, TIMEOUT, 2.0
    if kind == "closed-port":
        report, target = run(free_port(), suite)
        words = "refused"
    else:
        box = SilentEmulator(free_port()) if kind == "silent" else Emulator(free_port())
        with box:
            report, target = run(box.port, suite)
        words = "no TLS answer"
    assert target.reachable is False
    assert words in (target.error or ""), target.error
    assert target.diagnoses == []
    assert [r.spec.id for r in target.results] == [catalogue.CLASSICAL_CONTROL]
    assert report.exit_code() == 2


@pytest.mark.parametrize("attempts", [1, 2])
def test_flaky_path_gives_no_diagnosis(backends: Backends, attempts: int) -> None:
    """A box that resets every second connection, whatever it carries.

    Was a weakness (attempts = 1): the runner rechecks a failed probe's control once, right after it; on an
    alternating path every probe lands on a reset and every recheck on a good connection, so each
    probe whose control passed becomes FAIL: ``classical/split@100`` gives split-segments and
    ``classical/records@64`` gives multi-record. Now a failed probe is followed by its control twice and
    then the probe again (probe, control, control, probe), and any failed recheck marks the target
    unstable: nothing is blamed on the path."""
    suite = load_suite("default")
    suite.raw, suite.attempts, suite.timeout = "no", attempts, TIMEOUT
    suite.pause = 0.05  # resets do not depend on the shape: no need for reads to stay apart
    with FlakyEmulator(backends.good.port, every=2) as box:
        target = probe(box, suite)
    assert target.reachable
    assert box.count("reset:") >= len(target.results) // 2
    assert any(r.verdict == model.INCONCLUSIVE for r in target.results)
    assert target.diagnoses == [], [(d.id, d.summary) for d in target.diagnoses]


@pytest.mark.parametrize("silent", [False, True])
def test_lossy_path_gives_no_diagnosis(backends: Backends, silent: bool) -> None:
    """A path that resets (or silently drops) a quarter of its connections at random, whatever they carry, probed
    with the ``default`` suite as shipped: probes side by side and waits learned from the answers change which
    connections are lost, never the rule: nothing post-quantum is blamed."""
    suite = load_suite("default")
    suite.raw = "no"
    with FlakyEmulator(backends.good.port, chance=0.25, seed=7, silent=silent) as box:
        target = probe(box, suite)
    assert target.reachable
    assert box.count("drop:" if silent else "reset:") > 0
    assert target.diagnoses == [], [(d.id, d.summary) for d in target.diagnoses]


def _verdicts(target: TargetReport) -> dict[str, str]:
    return {r.spec.id: r.verdict for r in target.results}


def test_silent_hold_is_diagnosed_like_a_reset_with_learned_waits(backends: Backends) -> None:
    """Issue 17's first slow path: every hello over 1,500 bytes on the wire is held, never answered (the
    ``default`` suite took 389 s here with 5 s waits one probe at a time). With the suite as shipped the waits
    are learned from the controls' answers, and the verdicts are those of the same box when it resets: the
    size-threshold diagnosis at the same size, the same probes failing. The results keep the plan's order,
    whatever order the probes side by side ended in."""
    suite = load_suite("default")
    suite.raw = "no"
    with SizeThresholdEmulator(backends.good.port, limit=1500) as box:
        resetting = probe(box, suite)
    with SizeThresholdEmulator(backends.good.port, limit=1500, silent=True) as box:
        silent = probe(box, suite)
    assert ids(resetting) == ids(silent) == ["size-threshold"]
    assert _verdicts(resetting) == _verdicts(silent)
    held, reset = diagnosis(silent, "size-threshold"), diagnosis(resetting, "size-threshold")
    assert (held.threshold, held.evidence) == (reset.threshold, reset.evidence)
    # The box judges only the first hello: the HelloRetryRequest route (a small first hello, the large one second)
    # gets through, and the workaround says so, checked.
    assert "HelloRetryRequest" in held.workaround and held.workaround_checked is True
    assert held.workaround_evidence == ["size/1487", "hrr/classical-first"], held.workaround_evidence
    assert any("timeout" in r.reason for r in silent.results if r.verdict == model.FAIL)
    assert silent.answer_timeout_s is not None and silent.answer_timeout_s < suite.timeout
    planned = [s.id for s in plan(suite, raw=False)]
    assert [r.spec.id for r in silent.results][: len(planned)] == planned


def test_silent_split_drop_is_early_verdict_with_learned_waits(backends: Backends) -> None:
    """Issue 17's second slow path (82 s before): a large hello in pieces dropped silently. The suite as shipped
    and the suite one probe at a time with fixed waits give every probe the same verdict."""
    suite = load_suite("default")
    suite.raw = "no"
    with EarlyVerdictEmulator(backends.good.port) as box:
        learned = probe(box, suite)
    assert ids(learned) == ["early-verdict"]
    assert learned.answer_timeout_s is not None and learned.answer_timeout_s < suite.timeout
    suite.adaptive_timeout, suite.parallel, suite.timeout = False, 1, TIMEOUT
    with EarlyVerdictEmulator(backends.good.port) as box:
        fixed = probe(box, suite)
    assert ids(fixed) == ["early-verdict"]
    assert _verdicts(learned) == _verdicts(fixed)
    assert fixed.answer_timeout_s == TIMEOUT


# --- known weaknesses of the rules, pinned -----------------------------------------------------------------


def test_sni_offset_box_is_not_multi_record(backends: Backends) -> None:
    """Was a weakness: the multi-record probes put server_name *last* (``sni_position="last"``), past byte
    1024 of a post-quantum hello, but their control ``pq/one-write`` keeps the profile's order. Behind
    a 1024-byte peek router that reassembles records perfectly, ``pq/records@512`` is misrouted while
    the control is not, and the rule reports multi-record. Deterministic with ``openssl35`` (server_name
    at byte 130); with ``chrome`` (extensions shuffled, server_name past byte 1024 half the time) the
    default suite gives multi-record or split-segments at random."""
    with SniOffsetEmulator(backends.good.port, backends.default.port, names=(GOOD_NAME,)) as box:
        target = probe(box, make_suite("sni-offset", "multi-record", profile="openssl35"))
    diagnosis(target, "sni-offset")
    by_id = results(target)
    assert by_id["pq/one-write"].verdict == model.PASS
    assert by_id["classical/records@64"].verdict == model.PASS  # records as such are fine
    assert ids(target) == ["sni-offset"]


def test_hrr_box_is_not_codepoint(backends: Backends) -> None:
    """Was a weakness: ``codepoint/X25519Kyber768Draft00`` only completes through a HelloRetryRequest (the
    server does not know 0x6399 and asks for X25519), while its control ``codepoint/classical-padded``
    needs none; behind a box that drops second ClientHellos the rule reports codepoint 0x6399."""
    with HrrEmulator(backends.good.port) as box:
        target = probe(box, make_suite("codepoint"))
    kyber = results(target)["codepoint/X25519Kyber768Draft00"]
    assert kyber.outcome.kind == model.TIMEOUT and "after HelloRetryRequest" in kyber.outcome.detail
    assert box.count("drop: a second ClientHello") == 2  # the probe and its confirmation
    assert target.diagnoses == []


def test_codepoint_box_does_not_change_the_servers_readiness(backends: Backends) -> None:
    """Was a weakness: the box's plaintext alert to the readiness probes that offer 0x11EC is read as the
    server's answer: ready/preference and ready/hrr-to-hybrid get no group, X25519MLKEM768 is listed as
    rejected, and the verdict says the server "prefers classical", while the same server, probed
    directly, is pq-ready and chooses X25519MLKEM768."""
    _, direct = run(backends.good.port, make_suite("readiness"))
    assert direct.readiness is not None and direct.readiness.verdict == "pq-ready"
    assert direct.readiness.preferred_group == "X25519MLKEM768"
    with CodepointEmulator(backends.good.port) as box:
        target = probe(box, make_suite("codepoint", "readiness"))
    diagnosis(target, "codepoint")
    assert results(target)["ready/preference"].outcome.alert == "illegal_parameter"
    readiness = target.readiness
    assert readiness is not None
    assert "prefers classical" not in readiness.summary


def test_pmtu_above_the_pq_hello_is_not_size_threshold(backends: Backends) -> None:
    """Was a weakness: pmtu-blackhole needs ``pq/one-write`` to die; size-threshold never checks "whatever
    the split". A hop that drops segments above 2400 bytes (larger than the PQ hello) kills
    ``size/3072`` in one write while the same 3072 bytes in small writes pass, and the rules report
    size-threshold (a cap on the hello) instead of a per-segment limit."""
    small_writes = {"id": "custom/size-3072-small-writes", "profile": "classical", "size": 3072,
                    "delivery": "split@1000,2000,3000", "control": catalogue.CLASSICAL_CONTROL}
    with PmtuBlackholeEmulator(backends.good.port, mtu=2400) as box:
        target = probe(box, make_suite("pmtu-blackhole", "size-threshold", sizes=[1024, 2048, 3072], refine=False,
                                       probes=[small_writes]))
    by_id = results(target)
    assert by_id["pq/one-write"].verdict == model.PASS  # the PQ hello (~2 KB) fits under this MTU
    assert by_id["size/3072"].outcome.kind == model.TIMEOUT
    assert by_id["custom/size-3072-small-writes"].verdict == model.PASS  # not a cap on the hello
    assert box.count("drop: a ") >= 2  # size/3072 and its confirmation
    assert "size-threshold" not in ids(target)
