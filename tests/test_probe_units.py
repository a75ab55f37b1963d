"""The probe's parts without a network: shapes, profiles, suites, the answer reader, verdicts, readiness."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pqproxy.probe import checks, model
from pqproxy.probe.delivery import cut, parse_shape, wire_bytes, writes
from pqproxy.probe.engine import ResponseReader, Target, parse_target
from pqproxy.probe.model import Outcome, ProbeResult, ProbeSpec
from pqproxy.probe.profiles import build_probe_hello, extensions_start, server_name_end
from pqproxy.probe.readiness import assess
from pqproxy.probe.runner import (
    ANSWER_FACTOR,
    ANSWER_SLACK,
    MIN_ANSWER_TIMEOUT,
    RunOptions,
    TargetRun,
    judge,
    plan,
)
from pqproxy.probe.suite import load_suite, parse_suite, shipped_suites
from pqproxy.tls.codepoints import ExtensionType, NamedGroup, is_grease
from pqproxy.tls.extensions import KeyShareClientHello, NamedGroupList
from pqproxy.tls.messages import ClientHello

# --- delivery shapes ---------------------------------------------------------------------------------


def test_shapes_parse_and_print_back() -> None:
    for text in ("one-write", "split@600", "split@3,700", "tiny-first@1", "records@512", "records-writes@100,200",
                 "raw-segments@100", "raw-cuts@3,900", "raw-reorder@600", "split@600/pause=0.5"):
        assert str(parse_shape(text)) == text


@pytest.mark.parametrize("bad", ["", "two-writes", "split", "split@x", "split@0", "tiny-first@9", "one-write@3",
                                 "split@600/delay=1", "split@600/pause=99", "raw-segments@1,2"])
def test_bad_shapes_say_why(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_shape(bad)


def test_writes_cut_exactly_where_asked_inside_the_record_header_too() -> None:
    handshake = build_probe_hello("chrome", "a.test").encode()
    wire = wire_bytes(handshake, parse_shape("one-write"))
    assert wire[:1] == b"\x16" and int.from_bytes(wire[3:5], "big") == len(handshake)
    pieces = writes(handshake, parse_shape("split@3,700"))
    assert [len(p) for p in pieces] == [3, 697, len(wire) - 700]
    assert b"".join(pieces) == wire
    assert writes(handshake, parse_shape("tiny-first@1"))[0] == b"\x16"


def test_records_shapes_fragment_the_handshake_message() -> None:
    handshake = build_probe_hello("chrome", "a.test").encode()
    one = writes(handshake, parse_shape("records@512"))
    assert len(one) == 1
    several = writes(handshake, parse_shape("records-writes@512,512"))
    assert [int.from_bytes(p[3:5], "big") for p in several] == [512, 512, len(handshake) - 1024]
    assert all(p[0] == 0x16 for p in several)
    assert b"".join(p[5:] for p in several) == handshake


@given(st.binary(min_size=1, max_size=400), st.lists(st.integers(-5, 500), max_size=8))
def test_cut_never_loses_or_reorders_bytes(data: bytes, offsets: list[int]) -> None:
    pieces = cut(data, tuple(offsets))
    assert b"".join(pieces) == data
    assert all(pieces)


# --- profiles ----------------------------------------------------------------------------------------------


def _groups(hello: ClientHello) -> list[int]:
    body = next(e.data for e in hello.extensions if e.type == ExtensionType.supported_groups)
    return NamedGroupList.decode(body).groups


def _shares(hello: ClientHello) -> list[tuple[int, int]]:
    body = next(e.data for e in hello.extensions if e.type == ExtensionType.key_share)
    return [(s.group, len(s.key_exchange)) for s in KeyShareClientHello.decode(body).client_shares]


def test_chrome_profile_has_chromes_layout() -> None:
    hello = build_probe_hello("chrome", "www.example.test").hello
    assert is_grease(hello.extensions[0].type) and is_grease(hello.extensions[-1].type)
    assert is_grease(hello.cipher_suites[0])
    assert _shares(hello)[1:] == [(NamedGroup.X25519MLKEM768, 1216), (NamedGroup.x25519, 32)]
    assert is_grease(_shares(hello)[0][0])
    types = {e.type for e in hello.extensions}
    assert {ExtensionType.encrypted_client_hello, ExtensionType.application_settings,
            ExtensionType.compress_certificate} <= types
    assert 1800 < len(hello.encode()) < 2100  # the ECH GREASE payload length varies, as in Chromium
    # Shuffled: the order differs between hellos (eight tries all equal would be a 1 in 10^30 event).
    orders = {tuple(e.type for e in build_probe_hello("chrome", "x.test").hello.extensions if not is_grease(e.type))
              for _ in range(8)}
    assert len(orders) > 1


@pytest.mark.parametrize(("profile", "capture"), [("chrome", "chromium"), ("openssl35", "node26-openssl35")])
def test_profiles_match_the_real_clients_captured(profile: str, capture: str) -> None:
    from pqproxy.probe.pcap import summarise

    real = summarise(build_probe_hello(f"replay:{capture}", None).encode())
    ours = summarise(build_probe_hello(profile, "pqproxy.test").encode())
    for key in ("supported_groups", "key_shares", "supported_versions", "cipher_suites", "grease"):
        assert ours[key] == real[key], key
    assert sorted(ours["extensions"]) == sorted(real["extensions"])
    assert abs(ours["size"] - real["size"]) <= 96  # GREASE ECH payload and SNI length differ


@pytest.mark.parametrize("profile", ["chrome", "openssl35", "classical", "mlkem1024"])
@pytest.mark.parametrize("size", [3500, 5000, 16384])
def test_profiles_pad_to_the_exact_size(profile: str, size: int) -> None:
    assert len(build_probe_hello(profile, "pad.test", size=size).encode()) == size


def test_server_name_lands_at_the_asked_offset_and_size_is_kept() -> None:
    for end in (1000, 1100):
        hello = build_probe_hello("chrome", "sni.test", size=3072, options={"sni_end": end}).hello
        assert server_name_end(hello) == end
        assert len(hello.encode()) == 3072
    with pytest.raises(ValueError):
        build_probe_hello("classical", "sni.test", options={"sni_end": 20})


def test_sni_last_puts_server_name_after_everything() -> None:
    hello = build_probe_hello("chrome", "late.test", options={"sni_position": "last"}).hello
    assert hello.extensions[-1].type == ExtensionType.server_name
    assert server_name_end(hello) == len(hello.encode()) + 5


def test_profile_options_are_strict() -> None:
    with pytest.raises(ValueError, match="unknown option"):
        build_probe_hello("classical", "a.test", options={"grups": ["X25519"]})
    with pytest.raises(ValueError, match="unknown profile"):
        build_probe_hello("firefox", "a.test")
    hello = build_probe_hello("classical", "a.test", options={"groups": ["X25519Kyber768Draft00", "X25519"],
                                                              "key_shares": ["X25519Kyber768Draft00"]}).hello
    assert _groups(hello) == [0x6399, 0x001D] and _shares(hello) == [(0x6399, 1216)]


def test_extensions_start_matches_the_encoding() -> None:
    hello = build_probe_hello("openssl35", "a.test").hello
    wire = wire_bytes(hello.encode(), parse_shape("one-write"))
    first = hello.extensions[0]
    start = extensions_start(hello)
    assert wire[start : start + 2] == first.type.to_bytes(2, "big")


# --- targets and suites ----------------------------------------------------------------------------


def test_targets_parse() -> None:
    assert parse_target("example.com:8443").server_name == "example.com"
    t = parse_target("[::1]:443", "x.test")
    assert (t.host, t.port, t.server_name, str(t)) == ("::1", 443, "x.test", "[::1]:443")
    assert parse_target("10.0.0.1").port == 443 and parse_target("10.0.0.1").server_name is None
    for bad in ("host:port", "host:0", ":443"):
        with pytest.raises(ValueError):
            parse_target(bad)


def test_shipped_suites_load_and_plan() -> None:
    assert {"default", "quick", "sweep", "readiness", "ci", "quic"} <= set(shipped_suites())
    for name in shipped_suites():
        suite = load_suite(name)
        specs = plan(suite, raw=True)
        ids = [s.id for s in specs]
        assert len(ids) == len(set(ids)), name
        assert ids[0] == (checks.QUIC_CLASSICAL_CONTROL if suite.transport == "quic" else checks.CLASSICAL_CONTROL)
        assert all(parse_shape(s.delivery).quic == (suite.transport == "quic") for s in specs), name
        known = set(ids)
        assert all(s.control is None or s.control in known for s in specs), name
    default = load_suite("default")
    assert set(model.DIAGNOSIS_IDS) - set(default.checks) == {"quic-multi-initial"}


@pytest.mark.parametrize(("data", "words"), [
    ({"checks": ["split-segment"]}, "checks must be"),
    ({"checks": ["hrr"], "atempts": 2}, "unknown key"),
    ({"checks": ["hrr"], "attempts": 0}, "attempts must be"),
    ({"checks": ["hrr"], "timeout": "5"}, "timeout must be"),
    ({"checks": ["hrr"], "sweep": {"sizes": [10]}}, "sweep.sizes"),
    ({"checks": ["hrr"], "parallel": 0}, "parallel must be"),
    ({"checks": ["hrr"], "parallel": 17}, "parallel must be"),
    ({"checks": ["hrr"], "parallel": 2.5}, "parallel must be"),
    ({"checks": ["hrr"], "adaptive_timeout": "yes"}, "adaptive_timeout must be"),
    ({}, "nothing to run"),
    ({"probe": [{"id": "x", "delivery": "split@"}]}, "probe x"),
    ({"probe": [{"id": "x", "colour": "red"}]}, "unknown key"),
])
def test_bad_suites_say_what_is_wrong(data: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_suite(data, "test.toml")


def test_suite_speed_keys() -> None:
    default = load_suite("default")
    assert (default.adaptive_timeout, default.parallel) == (True, 4)
    suite = parse_suite({"checks": ["hrr"], "adaptive_timeout": False, "parallel": 1}, "test.toml")
    assert (suite.adaptive_timeout, suite.parallel) == (False, 1)


def _run(suite_data: dict[str, object]) -> TargetRun:
    suite = parse_suite({"checks": ["hrr"], **suite_data}, "test.toml")
    return TargetRun(Target("127.0.0.1", 443), suite, RunOptions(), raw_ok=False, raw_note="")


def test_the_wait_is_learned_from_answers_and_only_widens() -> None:
    run = _run({"timeout": 5.0})
    run.answer_seen(Outcome(model.SERVER_HELLO, wait_ms=20))
    assert run.timeout == 5.0  # not learning until the first control has answered
    run.learning = True
    run.answer_seen(Outcome(model.SERVER_HELLO, wait_ms=10))
    assert run.timeout == MIN_ANSWER_TIMEOUT  # 4 x 20 ms + 0.25 s is below the floor
    run.answer_seen(Outcome(model.SERVER_HELLO, wait_ms=800))
    assert run.timeout == pytest.approx(ANSWER_FACTOR * 0.8 + ANSWER_SLACK)
    run.answer_seen(Outcome(model.SERVER_HELLO, wait_ms=30))
    assert run.timeout == pytest.approx(ANSWER_FACTOR * 0.8 + ANSWER_SLACK)  # a fast answer never narrows it
    run.answer_seen(Outcome(model.SERVER_HELLO, wait_ms=0))  # not measured (QUIC, raw): no evidence
    run.answer_seen(Outcome(model.SERVER_HELLO, wait_ms=4000))
    assert run.timeout == 5.0  # never past the suite's timeout


def test_the_wait_stays_fixed_without_adaptive_timeout() -> None:
    run = _run({"timeout": 3.0, "adaptive_timeout": False})
    run.learning = run.suite.adaptive_timeout
    run.answer_seen(Outcome(model.SERVER_HELLO, wait_ms=5))
    assert run.timeout == 3.0


# --- the answer reader ---------------------------------------------------------------------------------


def _hello() -> object:
    return build_probe_hello("classical", "r.test")


def test_reader_names_alerts_and_non_tls() -> None:
    reader = ResponseReader(_hello())  # type: ignore[arg-type]
    reader.feed(b"\x15\x03\x03\x00\x02\x02\x28")
    assert reader.outcome is not None and (reader.outcome.kind, reader.outcome.alert) == ("alert", "handshake_failure")
    reader = ResponseReader(_hello())  # type: ignore[arg-type]
    reader.feed(b"SSH-2.0-OpenSSH_9.2\r\n")
    assert reader.outcome is not None and reader.outcome.kind == "not_tls" and "SSH-2.0" in reader.outcome.detail


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_reader_never_raises_on_any_bytes(chunks: list[bytes]) -> None:
    reader = ResponseReader(_hello())  # type: ignore[arg-type]
    for chunk in chunks:
        reader.feed(chunk)
    for kind in (model.FIN, model.RST, model.TIMEOUT):
        assert reader.finish(kind).kind in model.OUTCOME_KINDS


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=5, max_size=200))
def test_reader_on_random_handshake_records(body: bytes) -> None:
    record = b"\x16\x03\x03" + len(body).to_bytes(2, "big") + body
    reader = ResponseReader(_hello())  # type: ignore[arg-type]
    reader.feed(record)
    assert reader.finish(model.FIN).kind in model.OUTCOME_KINDS


# --- verdicts -------------------------------------------------------------------------------------------


def _result(probe_id: str, control: str | None, *outcomes: Outcome, check: str = "split-segments",
            expect: str = "tls", size: int | None = None) -> ProbeResult:
    spec = ProbeSpec(id=probe_id, control=control, check=check, expect=expect, size=size)
    return ProbeResult(spec, 1000, 1005, list(outcomes), passed=True)


def _sh(cert: str = "aa", matches: bool | None = True, group: str = "X25519MLKEM768") -> Outcome:
    return Outcome(model.SERVER_HELLO, group=group, certificate_sha256=cert, certificate_matches_name=matches)


def test_misrouting_by_name_is_a_failure_against_a_good_control() -> None:
    root = _result("classical/one-write", None, _sh())
    control = _result("pq/one-write", "classical/one-write", _sh())
    split = _result("pq/split@600", "pq/one-write", _sh("bb", matches=False))
    judge([root, control, split], {}, "good.test")
    assert (control.verdict, split.verdict) == ("pass", "fail")
    assert "not for good.test" in split.reason


def test_misrouting_by_fingerprint_when_no_certificate_matches_the_name() -> None:
    root = _result("classical/one-write", None, _sh("aa", None))
    control = _result("pq/one-write", "classical/one-write", _sh("aa", None))
    split = _result("pq/split@600", "pq/one-write", _sh("bb", None))
    judge([root, control, split], {}, None)
    assert split.verdict == "fail" and "another server" in split.reason


def test_a_failure_with_a_failing_control_is_inconclusive_never_blamed() -> None:
    root = _result("classical/one-write", None, _sh())
    control = _result("pq/one-write", "classical/one-write", Outcome(model.TIMEOUT))
    split = _result("pq/split@600", "pq/one-write", Outcome(model.RST))
    judge([root, control, split], {}, "x.test")
    assert control.verdict == "fail"  # the PQ hello fails where a classical one works
    assert split.verdict == "inconclusive"
    assert checks.diagnose([root, control, split], ["split-segments"]) == []


def test_a_control_that_fails_at_the_moment_of_the_recheck_makes_it_inconclusive() -> None:
    root = _result("classical/one-write", None, _sh())
    control = _result("pq/one-write", "classical/one-write", _sh())
    split = _result("pq/split@600", "pq/one-write", Outcome(model.RST))
    judge([root, control, split], {"pq/split@600": [Outcome(model.REFUSED)]}, "x.test")
    assert split.verdict == "inconclusive"


def test_size_threshold_rule_needs_monotone_failures() -> None:
    root = _result("classical/one-write", None, _sh())
    sizes = [_result(f"size/{n}", "classical/one-write", _sh() if n < 3000 else Outcome(model.RST),
                     check="size-threshold", size=n) for n in (1024, 2048, 2990, 3010, 4096)]
    judge([root, *sizes], {}, "x.test")
    (diagnosis,) = checks.diagnose([root, *sizes], ["size-threshold"])
    assert (diagnosis.id, diagnosis.threshold) == ("size-threshold", 3010)
    bumpy = [_result(f"size/{n}", "classical/one-write", Outcome(model.RST) if n == 2048 else _sh(),
                     check="size-threshold", size=n) for n in (1024, 2048, 4096)]
    judge([root, *bumpy], {}, "x.test")
    assert checks.diagnose([root, *bumpy], ["size-threshold"]) == []


def test_readiness_verdicts() -> None:
    def ready(group: str, answer: Outcome) -> ProbeResult:
        return _result(f"ready/{group}", "classical/one-write", answer, check="readiness", expect="answer")

    refuse = Outcome(model.ALERT, alert="handshake_failure")
    pq = [ready(g, _sh(group=g) if g in ("X25519MLKEM768", "X25519") else refuse) for g in checks.READINESS_GROUPS]
    prefers_pq = _result("ready/preference", None, _sh(group="X25519MLKEM768"), check="readiness")
    r = assess([*pq, prefers_pq])
    assert r is not None and r.verdict == "pq-ready" and r.accepted_groups == ["X25519MLKEM768", "X25519"]
    prefers_classical = _result("ready/preference", None, _sh(group="X25519"), check="readiness")
    r = assess([*pq, prefers_classical])
    assert r is not None and r.verdict == "pq-capable"
    classical_only = [ready(g, _sh(group=g) if g == "X25519" else refuse) for g in checks.READINESS_GROUPS]
    r = assess(classical_only)
    assert r is not None and r.verdict == "not-pq-ready"
