"""The catalogue as code: for each REFERENCE.md §3 id, the probes that test it and the rule that reads them.

Every probe names its control: the same hello unsplit (for shapes), small (for sizes) or classical (for
codepoints). The root of the tree is ``classical/one-write``: a small, ordinary hello in one write. If
that fails the target is down or not a TLS server, and nothing is blamed on post-quantum.

Rules only read verdicts (``FAIL``: failed while the control passed), so a flaky or down target gives
``inconclusive`` probes and no diagnosis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..tls.codepoints import SignatureScheme
from ..tls.config import CLASSICAL_SIGNATURE_SCHEMES
from . import model
from .model import Diagnosis, ProbeResult, ProbeSpec

CLASSICAL_CONTROL = "classical/one-write"
PQ_CONTROL = "pq/one-write"
SNI_LAST_CONTROL = "pq/one-write-sni-last"
SNI_PEEK = 1024  # the fixed peek buffer of the sni-offset family
SNI_PROBE_SIZE = 3072  # both sni-offset probes are padded to this, so only the offset differs
CODEPOINT_PROBE_SIZE = 1600
CODEPOINT_CONTROL = "codepoint/classical-padded"
# ML-DSA (draft-ietf-tls-mldsa): the signature codepoints an IPS signature reset Go 1.27 clients on (golang/go #81199).
MLDSA_SCHEMES = ("mldsa44", "mldsa65", "mldsa87")
SIGALG_WITHOUT_MLDSA = "workaround/pq-without-mldsa"
DEFAULT_SWEEP = (512, 1024, 1400, 1600, 2048, 3072, 4096, 6144, 8192)
SWEEP_RESOLUTION = 16  # bytes: the binary search stops when the bracket is this narrow
MAX_REFINE_STEPS = 10

CHECK_IDS = (*model.DIAGNOSIS_IDS, "readiness", "populations")
# The clients an operator is asked about, each sending its own hello (captures/, or built from source): the
# report says which of them a path breaks ("Chromium passes, Go 1.27 is reset").
POPULATIONS: tuple[tuple[str, str, str], ...] = (
    ("chromium", "Chromium 156", "replay:chromium"),
    ("firefox-esr", "Firefox ESR 153", "replay:firefox-esr"),
    ("openssl35", "OpenSSL 3.5 (Node 26, curl)", "replay:node26-openssl35"),
    ("go126", "Go 1.26", "replay:go126"),
    ("go127", "Go 1.27 (ML-DSA)", "go127"),
)
QUIC_CHECKS = frozenset({"quic-multi-initial"})  # run over QUIC (a suite with transport = "quic"), never TCP
QUIC_CLASSICAL_CONTROL = "quic/classical-one-initial"
QUIC_PQ_CONTROL = "quic/pq-one-initial"
QUIC_FIRST_CRYPTO = 1100  # bytes of the hello in the first Initial, as Chrome splits a post-quantum hello

READINESS_GROUPS = ("X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024", "MLKEM768", "MLKEM1024",
                    "X25519", "secp256r1", "secp384r1")


READY_MLDSA = "ready/sig-mldsa"


def _hrr_route(check: str) -> ProbeSpec:
    return _spec("hrr/classical-first", "classical", control=CLASSICAL_CONTROL, check=check,
                 groups=["X25519", "X25519MLKEM768"], key_shares=["X25519"], expect="server_hello",
                 description="a small one-segment hello; the server may HRR into ML-KEM")


def _codepoint_control(check: str) -> ProbeSpec:
    return _spec(CODEPOINT_CONTROL, "classical", control=CLASSICAL_CONTROL, check=check, size=CODEPOINT_PROBE_SIZE,
                 description="classical groups and signature schemes only, padded to the size of the others")


def _spec(id: str, profile: str, delivery: str = "one-write", *, control: str | None, check: str,
          description: str, size: int | None = None, expect: str = "tls", **options: object) -> ProbeSpec:
    return ProbeSpec(id=id, profile=profile, delivery=delivery, size=size, control=control, check=check,
                     expect=expect, description=description, options=dict(options))


def controls(pq_profile: str, transport: str = "tcp") -> list[ProbeSpec]:
    if transport == "quic":
        return [
            _spec(QUIC_CLASSICAL_CONTROL, "classical", "quic-one", control=None, check="control",
                  description="a small classical hello in one Initial: is a QUIC server there at all"),
            _spec(QUIC_PQ_CONTROL, pq_profile, "quic-one", control=QUIC_CLASSICAL_CONTROL, check="control",
                  description="the post-quantum hello in one (large) Initial: the control of the multi-Initial shapes"),
        ]
    return [
        _spec(CLASSICAL_CONTROL, "classical", control=None, check="control",
              description="a small classical hello in one write: is the target there at all"),
        _spec(PQ_CONTROL, pq_profile, control=CLASSICAL_CONTROL, check="control", sni_position="first",
              description="the post-quantum hello in one write: the control of every shape"),
    ]


def probes_for(check: str, pq_profile: str, sweep: Iterable[int] = DEFAULT_SWEEP) -> list[ProbeSpec]:
    """The probes of one check (controls not included)."""
    p = pq_profile
    if check == "split-segments":
        return [
            _spec("pq/split@600", p, "split@600", control=PQ_CONTROL, check=check, sni_position="first",
                  description="the hello in two writes, cut at byte 600, with a pause"),
            _hrr_route(check),
            _spec("pq/split@100", p, "split@100", control=PQ_CONTROL, check=check, sni_position="first",
                  description="the hello in two writes, cut at byte 100 (before the extensions)"),
            _spec("classical/split@100", "classical", "split@100", control=CLASSICAL_CONTROL, check=check,
                  description="a SMALL hello split in two: is it the split, or the size"),
        ]
    if check == "tiny-first-segment":
        return [
            _spec(f"pq/tiny-first@{n}", p, f"tiny-first@{n}", control=PQ_CONTROL, check=check, sni_position="first",
                  description=f"a first write of {n} byte(s), then the rest")
            for n in (1, 5, 8)
        ]
    if check == "multi-record":
        return [
            _spec(SNI_LAST_CONTROL, p, control=CLASSICAL_CONTROL, check=check, sni_position="last",
                  description="one record, one write, server_name last: the control of the records probes"),
            _spec("pq/records@512", p, "records@512", control=SNI_LAST_CONTROL, check=check, sni_position="last",
                  description="the hello in several TLS records (server_name in a later one), one write"),
            _spec("classical/records@64", "classical", "records@64", control=CLASSICAL_CONTROL, check=check,
                  sni_position="last", description="a small hello in two records, one write"),
            _spec("pq/records-writes@512", p, "records-writes@512", control=SNI_LAST_CONTROL, check=check,
                  sni_position="last", description="several records, one write each"),
        ]
    if check == "sni-offset":
        return [
            _spec(f"pq/sni-end@{SNI_PEEK - 24}", p, control=PQ_CONTROL, check=check, size=SNI_PROBE_SIZE,
                  sni_end=SNI_PEEK - 24, description=f"server_name ends before byte {SNI_PEEK}"),
            _spec(f"pq/sni-end@{SNI_PEEK + 76}", p, control=f"pq/sni-end@{SNI_PEEK - 24}", check=check,
                  size=SNI_PROBE_SIZE, sni_end=SNI_PEEK + 76,
                  description=f"server_name ends after byte {SNI_PEEK}, same size"),
        ]
    if check == "codepoint":
        control = CODEPOINT_CONTROL
        return [
            _codepoint_control(check),
            _spec("codepoint/X25519MLKEM768", "classical", control=control, check=check,
                  size=CODEPOINT_PROBE_SIZE, groups=["X25519MLKEM768", "X25519"], key_shares=["X25519MLKEM768"],
                  description="0x11EC offered (X25519 allowed by HRR)"),
            _spec("codepoint/X25519Kyber768Draft00", "classical", control=control, check=check,
                  size=CODEPOINT_PROBE_SIZE, groups=["X25519Kyber768Draft00", "X25519"],
                  key_shares=["X25519Kyber768Draft00"], description="the pre-standard 0x6399 offered"),
        ]
    if check == "sigalg-codepoint":
        classical = [SignatureScheme(s).name for s in CLASSICAL_SIGNATURE_SCHEMES]
        return [
            _codepoint_control(check),
            _spec("sigalg/mldsa", "classical", control=CODEPOINT_CONTROL, check=check, size=CODEPOINT_PROBE_SIZE,
                  signature_schemes=[*MLDSA_SCHEMES, *classical],
                  description="the classical hello with mldsa44, mldsa65 and mldsa87 in signature_algorithms"),
            *(_spec(f"sigalg/{scheme}", "classical", control=CODEPOINT_CONTROL, check=check,
                    size=CODEPOINT_PROBE_SIZE, signature_schemes=[scheme, *classical],
                    description=f"only {scheme} added to signature_algorithms")
              for scheme in MLDSA_SCHEMES),
            _spec("sigalg-cert/mldsa", "classical", control=CODEPOINT_CONTROL, check=check,
                  size=CODEPOINT_PROBE_SIZE, signature_schemes_cert=[*MLDSA_SCHEMES, *classical],
                  description="ML-DSA in signature_algorithms_cert only"),
            _spec(SIGALG_WITHOUT_MLDSA, pq_profile, control=CLASSICAL_CONTROL, check=check,
                  without_signature_schemes=list(MLDSA_SCHEMES),
                  description="the post-quantum hello without its ML-DSA schemes: does leaving them out get through"),
        ]
    if check == "size-threshold":
        return [
            _spec(f"size/{n}", "classical", control=CLASSICAL_CONTROL, check=check, size=n,
                  description=f"a classical hello padded to {n} bytes, one write")
            for n in sorted(set(sweep))
        ]
    if check == "pmtu-blackhole":
        return [
            _spec("pq/small-writes", p, "split@400,800,1200,1600,2000", control=CLASSICAL_CONTROL, check=check,
                  sni_position="first",
                  description="the hello in writes of 400 bytes: segments far below any path MTU"),
        ]
    if check == "early-verdict":
        return [*probes_for("split-segments", pq_profile)]
    if check == "hrr":
        return [
            _spec("hrr/no-share", "classical", control=PQ_CONTROL, check=check,
                  groups=["X25519MLKEM768", "X25519"], key_shares=[], expect="server_hello",
                  description="no key share: the server must HelloRetryRequest, then gets the hybrid share"),
        ]
    if check == "readiness":
        specs = [
            _spec(f"ready/{g}", "classical", control=CLASSICAL_CONTROL, check=check, groups=[g], key_shares=[g],
                  expect="answer", description=f"only {g} offered")
            for g in READINESS_GROUPS
        ]
        specs.append(_spec("ready/preference", "classical", control=CLASSICAL_CONTROL, check=check,
                           groups=["X25519", "secp256r1", "X25519MLKEM768", "SecP256r1MLKEM768", "MLKEM768"],
                           key_shares=["X25519", "X25519MLKEM768", "MLKEM768"], expect="answer",
                           description="classical listed first, shares for all kinds: whose preference wins"))
        specs.append(_spec("ready/hrr-to-hybrid", "classical", control=CLASSICAL_CONTROL, check=check,
                           groups=["X25519", "X25519MLKEM768"], key_shares=["X25519"], expect="answer",
                           description="only an X25519 share: does the server ask for the hybrid one"))
        specs.append(_spec(READY_MLDSA, "classical", control=CLASSICAL_CONTROL, check=check,
                           signature_schemes=list(MLDSA_SCHEMES), expect="answer",
                           description="only ML-DSA signature schemes offered: can the server sign with ML-DSA"))
        return specs
    if check == "populations":
        return [
            _spec(f"population/{name}", profile, control=CLASSICAL_CONTROL, check=check,
                  description=f"{label}'s own hello, in one write (its kernel cuts it as the path's MSS says)")
            for name, label, profile in POPULATIONS
        ]
    if check == "quic-multi-initial":
        first = QUIC_FIRST_CRYPTO
        return [
            _spec("quic/pq-two-initials", p, f"quic-split@{first}", control=QUIC_PQ_CONTROL, check=check,
                  description=f"the hello over two Initials, {first} bytes in the first, as Chrome sends it"),
            _spec("quic/pq-two-initials-reordered", p, f"quic-reorder@{first}", control=QUIC_PQ_CONTROL,
                  check=check, description="the same two Initials, the second sent first"),
            _spec("quic/pq-three-initials", p, "quic-split@600,1200", control=QUIC_PQ_CONTROL, check=check,
                  description="the hello over three Initials"),
            _spec("quic/pq-two-initials-pad1350", p, f"quic-split@{first}/pad=1350", control=QUIC_PQ_CONTROL,
                  check=check, description="two Initials in datagrams padded to 1350 bytes"),
            _spec("quic/pq-two-initials-pad1472", p, f"quic-split@{first}/pad=1472", control=QUIC_PQ_CONTROL,
                  check=check, description="two Initials in datagrams padded to 1472 bytes (a full 1500 MTU)"),
            _spec("quic/classical-two-initials", "classical", "quic-split@100", control=QUIC_CLASSICAL_CONTROL,
                  check=check, description="even a small classical hello over two Initials"),
            _spec("quic/pq-one-initial-frames-reordered", p, f"quic-frames@{first}", control=QUIC_PQ_CONTROL,
                  check=check, description="one Initial, its two CRYPTO frames in reverse order"),
        ]
    raise ValueError(f"unknown check {check!r} (known: {', '.join(CHECK_IDS)})")


# --- rules ------------------------------------------------------------------------------------------


@dataclass
class Judged:
    """The results of one target by probe id, with helpers for the rules."""

    by_id: dict[str, ProbeResult]

    def get(self, probe_id: str) -> ProbeResult | None:
        return self.by_id.get(probe_id)

    def failed(self, probe_id: str) -> bool:
        r = self.by_id.get(probe_id)
        return r is not None and r.verdict == model.FAIL

    def passed(self, probe_id: str) -> bool:
        r = self.by_id.get(probe_id)
        return r is not None and r.verdict == model.PASS

    def with_prefix(self, prefix: str) -> list[ProbeResult]:
        return [r for k, r in self.by_id.items() if k.startswith(prefix)]

    def evidence(self, *results: ProbeResult | None) -> list[str]:
        ids: list[str] = []
        for r in results:
            if r is None:
                continue
            for probe_id in (r.spec.id, r.spec.control):
                if probe_id and probe_id not in ids and probe_id in self.by_id:
                    ids.append(probe_id)
        return ids


def _said(r: ProbeResult) -> str:
    """A probe and what it met; the reason only when it adds something (it often is the outcome again)."""
    said = r.outcome.describe()
    reason = r.reason if r.reason and not r.reason.startswith(said) else r.reason[len(said):].lstrip("; ")
    return f"{r.spec.id}: {said}" + (f" ({reason})" if reason else "")


SILENT = (model.TIMEOUT, model.RST)


def rule_split_segments(j: Judged) -> Diagnosis | None:
    large = [r for r in (j.get("pq/split@600"), j.get("pq/split@100")) if r is not None and r.verdict == model.FAIL]
    small = j.get("classical/split@100")
    small_failed = small is not None and small.verdict == model.FAIL
    if not large and not small_failed:
        return None
    if large and not small_failed and small is not None and small.verdict == model.PASS and all(
        r.outcome.kind in SILENT for r in large
    ):
        return None  # a silent drop of large split hellos only: early-verdict's rule speaks for it
    failing = [*large, *([small] if small_failed and small is not None else [])]
    how = "even a small hello fails when split" if small_failed else "the post-quantum hello fails when split"
    return Diagnosis(
        "split-segments",
        f"The path reads only the first segment of the hello: one write works, two writes with a pause do not "
        f"({how}). {'; '.join(_said(r) for r in failing)}",
        evidence=j.evidence(*failing),
    )


def rule_tiny_first(j: Judged) -> Diagnosis | None:
    tiny = [r for r in j.with_prefix("pq/tiny-first@") if r.verdict == model.FAIL]
    if not tiny or j.failed("pq/split@600") or j.failed("pq/split@100"):
        return None  # any split fails: split-segments covers it
    sizes = ", ".join(r.spec.delivery.split("@")[1] for r in tiny)
    return Diagnosis(
        "tiny-first-segment",
        f"The path needs more bytes in the first segment: a first write of {sizes} byte(s) fails while larger "
        f"splits work. {'; '.join(_said(r) for r in tiny)}",
        evidence=j.evidence(*tiny, j.get("pq/split@600")),
        details={"failing_first_sizes": [int(r.spec.delivery.split("@")[1]) for r in tiny]},
    )


def rule_multi_record(j: Judged) -> Diagnosis | None:
    one_write = [r for r in (j.get("pq/records@512"), j.get("classical/records@64")) if r and r.verdict == model.FAIL]
    separate = j.get("pq/records-writes@512")
    splits_fine = all(j.passed(p) for p in ("pq/split@600", "pq/split@100") if j.get(p) is not None)
    if one_write:
        return Diagnosis(
            "multi-record",
            "The path cannot read a ClientHello that spans several TLS records (legal, RFC 8446 §5.1), even in one "
            f"write. {'; '.join(_said(r) for r in one_write)}",
            evidence=j.evidence(*one_write, separate),
        )
    if separate is not None and separate.verdict == model.FAIL and splits_fine and j.get("pq/split@600"):
        # Squid bug 5266 has this shape: records in one read parse, the same records across reads do not,
        # while one record cut across reads is fine.
        return Diagnosis(
            "multi-record",
            "The path cannot read a ClientHello whose TLS records arrive in separate reads, although it reads "
            f"several records in one write and one record split across segments. {_said(separate)}",
            evidence=j.evidence(separate, j.get("pq/records@512"), j.get("pq/split@600")),
            details={"records_across_reads_only": True},
        )
    return None


def rule_sni_offset(j: Judged) -> Diagnosis | None:
    after = j.get(f"pq/sni-end@{SNI_PEEK + 76}")
    if after is None or after.verdict != model.FAIL:
        return None
    return Diagnosis(
        "sni-offset",
        f"The path finds server_name only in the first ~{SNI_PEEK} bytes: the same-size hello fails when "
        f"server_name ends at byte {SNI_PEEK + 76} and works when it ends at {SNI_PEEK - 24}. {_said(after)}",
        evidence=j.evidence(after),
        details={"works_until": SNI_PEEK - 24, "fails_from": SNI_PEEK + 76},
    )


def rule_codepoint(j: Judged) -> Diagnosis | None:
    # A failure after a HelloRetryRequest means the codepoint itself got through: the hrr rule's business.
    bad = [r for r in j.with_prefix("codepoint/") if r.spec.id != "codepoint/classical-padded"
           and r.verdict == model.FAIL and not r.outcome.hello_retry]
    if not bad:
        return None
    names = [r.spec.id.split("/", 1)[1] for r in bad]
    alerts = [r for r in bad if r.outcome.kind == model.ALERT]
    how = "with a TLS alert" if alerts else "at the TCP level"
    return Diagnosis(
        "codepoint",
        f"The path fails on the post-quantum codepoint(s) {', '.join(names)} {how}, while the same-size classical "
        f"hello works. {'; '.join(_said(r) for r in bad)}",
        evidence=j.evidence(*bad),
        details={"codepoints": names},
    )


def rule_sigalg_codepoint(j: Judged) -> Diagnosis | None:
    bad = [r for r in (*j.with_prefix("sigalg/"), *j.with_prefix("sigalg-cert/")) if r.verdict == model.FAIL]
    if not bad:
        return None
    ids = {r.spec.id for r in bad}
    extensions = sorted({"signature_algorithms_cert" if r.spec.id.startswith("sigalg-cert/")
                         else "signature_algorithms" for r in bad})
    single = [scheme for scheme in MLDSA_SCHEMES if f"sigalg/{scheme}" in ids]
    tried_single = [scheme for scheme in MLDSA_SCHEMES if j.get(f"sigalg/{scheme}") is not None]
    if single:
        which = ", ".join(single)
    elif tried_single:
        which = "mldsa44, mldsa65 and mldsa87 together (none of them alone)"
    else:
        which = "the ML-DSA schemes"
    how = "with a TLS alert" if any(r.outcome.kind == model.ALERT for r in bad) else \
        f"at the TCP level ({bad[0].outcome.kind})"
    return Diagnosis(
        "sigalg-codepoint",
        f"The path refuses hellos that name ML-DSA signature schemes ({which}) in {' and '.join(extensions)}, "
        f"{how}, while the same-size classical hello works: an inspection signature keyed on the codepoints, not "
        f"a size or a split (Go 1.27 clients met one in 2026). {'; '.join(_said(r) for r in bad)}",
        evidence=j.evidence(*bad),
        details={"schemes": single or list(MLDSA_SCHEMES), "extensions": extensions},
    )


def size_bracket(j: Judged) -> tuple[int, int] | None:
    """(largest passing size, smallest failing size) when failures are all above the passes."""
    sizes = sorted((r.spec.size, r.verdict) for r in j.with_prefix("size/")
                   if r.spec.size is not None and r.spec.delivery == "one-write")
    passing = [s for s, v in sizes if v == model.PASS]
    failing = [s for s, v in sizes if v == model.FAIL]
    if not failing or not passing:
        return None
    if max(passing) > min(failing):
        return None  # not monotone: not a size limit
    return max(passing), min(failing)


def rule_size_threshold(j: Judged) -> Diagnosis | None:
    bracket = size_bracket(j)
    if bracket is None:
        return None
    if _pmtu_shape(j):
        return None
    ok, bad = bracket
    split = j.get(small_writes_id(bad))
    if split is not None and split.verdict != model.FAIL:
        return None  # the same size gets through in small writes: not a cap on the hello
    if j.failed(small_writes_id(ok)):
        return None  # a size that passes in one write fails in pieces: the first segment decides (early-verdict)
    failing = [r for r in j.with_prefix("size/") if r.verdict == model.FAIL and r.spec.delivery == "one-write"]
    return Diagnosis(
        "size-threshold",
        f"The path refuses hellos of {bad} bytes and more, whatever the split; {ok} bytes work. "
        f"At {bad}: {failing[0].outcome.describe() if failing else ''}",
        evidence=j.evidence(*sorted(failing, key=lambda r: r.spec.size or 0)[:3], split),
        threshold=bad,
        details={"largest_passing": ok, "smallest_failing": bad},
    )


def small_writes_id(size: int) -> str:
    return f"size/{size}/small-writes"


def _pmtu_shape(j: Judged) -> bool:
    """Large single writes die silently, the same bytes in small writes get through: for the PQ hello,
    or for the smallest size the sweep found failing."""
    large = j.get(PQ_CONTROL)
    small_writes = j.get("pq/small-writes")
    if (large is not None and large.verdict == model.FAIL and large.outcome.kind == model.TIMEOUT
            and small_writes is not None and small_writes.verdict == model.PASS):
        return True
    bracket = size_bracket(j)
    if bracket is None:
        return False
    failing, split = j.get(f"size/{bracket[1]}"), j.get(small_writes_id(bracket[1]))
    return (failing is not None and failing.outcome.kind == model.TIMEOUT
            and split is not None and split.verdict == model.PASS)


def rule_pmtu_blackhole(j: Judged) -> Diagnosis | None:
    if not _pmtu_shape(j):
        return None
    large = j.get(PQ_CONTROL)
    evidence = [large, j.get("pq/small-writes")] if large is not None and large.verdict == model.FAIL else []
    bracket = size_bracket(j)
    details: dict[str, object] = {}
    if bracket is not None:
        evidence += [j.get(f"size/{bracket[1]}"), j.get(small_writes_id(bracket[1]))]
        details = {"largest_passing_write": bracket[0], "smallest_failing_write": bracket[1]}
    return Diagnosis(
        "pmtu-blackhole",
        "Full-size segments die on the path and no ICMP 'fragmentation needed' comes back: a large hello in one "
        "write times out, the same bytes in small writes work, a small hello works.",
        evidence=j.evidence(*evidence),
        details=details,
    )


def rule_early_verdict(j: Judged) -> Diagnosis | None:
    small = j.get("classical/split@100")
    if small is None or small.verdict != model.PASS:
        return None  # even a small split hello fails: split-segments
    hrr = j.get("hrr/classical-first")
    route = ""
    if hrr is not None and hrr.verdict == model.PASS and hrr.outcome.hello_retry:
        route = " A small hello with HelloRetryRequest into the hybrid group works."
    large = [r for r in (j.get("pq/split@600"), j.get("pq/split@100")) if r is not None and r.verdict == model.FAIL]
    if large and all(r.outcome.kind in SILENT for r in large):
        return Diagnosis(
            "early-verdict",
            "An inspection rule drops the post-quantum hello when it arrives in pieces (silent drop or reset), "
            f"before reassembly; a small split hello passes.{route} {'; '.join(_said(r) for r in large)}",
            evidence=j.evidence(*large, small, hrr),
        )
    return _early_verdict_by_segment(j, small, hrr, route)


def _early_verdict_by_segment(j: Judged, small: ProbeResult, hrr: ProbeResult | None,
                              route: str) -> Diagnosis | None:
    """On a real path the kernel cuts a large hello itself, so the unsplit control fails as well and the split
    probes say nothing. The size sweep tells instead: a size that passes in one segment fails silently in
    small writes, and so does the smallest failing size; what decides is whether the whole record is in the
    first segment, not its size."""
    bracket = size_bracket(j)
    if bracket is None:
        return None
    ok, bad = bracket
    pieces = [j.get(small_writes_id(ok)), j.get(small_writes_id(bad))]
    one_write = j.get(f"size/{bad}")
    if one_write is None or one_write.outcome.kind not in SILENT:
        return None
    if not all(r is not None and r.verdict == model.FAIL and r.outcome.kind in SILENT for r in pieces):
        return None
    return Diagnosis(
        "early-verdict",
        f"An inspection rule judges the hello on its first segment and silently drops it when the record does not "
        f"end there: {ok} bytes pass in one segment and fail in 400-byte writes; {bad} bytes (more than one "
        f"segment) fail in any shape; a small split hello passes.{route}",
        evidence=j.evidence(one_write, *pieces, small, hrr),
        details={"largest_passing_write": ok, "smallest_failing_write": bad},
    )


def rule_hrr(j: Judged) -> Diagnosis | None:
    r = j.get("hrr/no-share")
    if r is None or r.verdict != model.FAIL:
        return None
    return Diagnosis(
        "hrr",
        f"The HelloRetryRequest path breaks: with no key share the handshake does not complete, while the "
        f"post-quantum hello with a share works. {_said(r)}",
        evidence=j.evidence(r),
    )


def rule_quic_multi_initial(j: Judged) -> Diagnosis | None:
    failing = [r for r in j.with_prefix("quic/") if r.spec.check == "quic-multi-initial" and r.verdict == model.FAIL]
    if not failing:
        return None
    control = j.get(QUIC_PQ_CONTROL)
    shapes = ", ".join(r.spec.id.removeprefix("quic/") for r in failing)
    return Diagnosis(
        "quic-multi-initial",
        f"The path (or server) reads only the first QUIC Initial: a ClientHello over several Initials gets no "
        f"answer ({shapes}) while the same hello in one Initial does; browsers then fall back to TCP without a "
        f"word. {_said(failing[0])}",
        evidence=j.evidence(*failing, control),
        details={"failing_shapes": [r.spec.delivery for r in failing]},
    )


RULES: dict[str, Callable[[Judged], Diagnosis | None]] = {
    "split-segments": rule_split_segments,
    "tiny-first-segment": rule_tiny_first,
    "multi-record": rule_multi_record,
    "sni-offset": rule_sni_offset,
    "codepoint": rule_codepoint,
    "sigalg-codepoint": rule_sigalg_codepoint,
    "size-threshold": rule_size_threshold,
    "pmtu-blackhole": rule_pmtu_blackhole,
    "early-verdict": rule_early_verdict,
    "hrr": rule_hrr,
    "quic-multi-initial": rule_quic_multi_initial,
}


# --- workarounds ------------------------------------------------------------------------------------
# For each diagnosis: what would avoid it, and the probes whose passing shows, on this path, that it does.

_HRR_ROUTE = ("hrr/classical-first",)
WORKAROUNDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "split-segments": ("advertise X25519MLKEM768 without its share and send an X25519 share (a small first hello; "
                       "the server asks for the hybrid share by HelloRetryRequest), for gear that reads only the first "
                       "hello; or fix the gear to reassemble (HAProxy: tcp-request inspect-delay with a content rule)",
                       _HRR_ROUTE),
    "early-verdict": ("advertise X25519MLKEM768 without its share (HelloRetryRequest): the first hello stays in one "
                      "segment, and the rule judges only the first", _HRR_ROUTE),
    "multi-record": ("send the hello in one TLS record (every mainstream client does; a library that cuts records "
                     "small should not)", (SNI_LAST_CONTROL,)),
    "sni-offset": ("put server_name early in the hello (OpenSSL and Go do; Chrome shuffles), or raise the gear's "
                   "peek buffer", (f"pq/sni-end@{SNI_PEEK - 24}",)),
    "tiny-first-segment": ("write the hello in one piece (any normal client does)", (PQ_CONTROL,)),
    "codepoint": ("a classical-only hello gets through (or inspect in proxy mode instead of flow mode, FortiGate)",
                  (CODEPOINT_CONTROL,)),
    "sigalg-codepoint": ("leave ML-DSA out of signature_algorithms (pqproxy's client does unless an ML-DSA key is "
                         "in sight; Go 1.26 names none)", (SIGALG_WITHOUT_MLDSA,)),
    "size-threshold": ("keep the hello under the threshold (one key share; no padding), or raise the gear's buffer "
                       "(nginx ssl_preread and Envoy's tls_inspector take 16 KiB)", ()),
    "pmtu-blackhole": ("clamp the TCP MSS on the tunnel (iptables -j TCPMSS --clamp-mss-to-pmtu) or lower the MTU: "
                       "the same hello in small segments gets through", ("pq/small-writes",)),
    "hrr": ("send the hybrid key share in the first hello (no HelloRetryRequest)", (PQ_CONTROL,)),
    "quic-multi-initial": ("browsers fall back to TCP by themselves; a hello in one Initial gets through where the "
                           "path MTU allows", (QUIC_PQ_CONTROL,)),
}


def populations(results: list[ProbeResult]) -> dict[str, str]:
    """Client population -> what its hello met on this path: "passes", "fails: <outcome>" (its control passed),
    or "unknown: <why>" (a failure the run cannot blame on the path)."""
    by_id = {r.spec.id: r for r in results}
    said: dict[str, str] = {}
    for name, label, _ in POPULATIONS:
        r = by_id.get(f"population/{name}")
        if r is None or r.verdict == model.SKIPPED:
            continue
        if r.verdict == model.PASS:
            said[label] = "passes"
        elif r.verdict == model.FAIL:
            o = r.outcome
            said[label] = f"fails: {f'alert {o.alert}' if o.kind == model.ALERT else o.kind}"
        else:
            said[label] = f"unknown: {r.reason or r.outcome.describe()}"
    return said


def add_workaround(d: Diagnosis, j: Judged) -> None:
    text, probes = WORKAROUNDS.get(d.id, ("", ()))
    d.workaround = text
    if d.id == "size-threshold" and d.details.get("largest_passing"):
        passing = j.get(f"size/{d.details['largest_passing']}")
        probes = (passing.spec.id,) if passing is not None else ()
        d.workaround = f"keep the hello under {d.threshold} bytes (one key share, no padding), or " + \
            text.split(", or ", 1)[1]
        hrr = j.get(_HRR_ROUTE[0])
        if hrr is not None and hrr.verdict == model.PASS and hrr.outcome.hello_retry:
            # Gear that caps only the first hello lets the second, large one through: shown, so say it.
            d.workaround += ("; or a small first hello that names the hybrid group without its share (the server "
                             "asks for it by HelloRetryRequest)")
            probes = (*probes, hrr.spec.id)
    present = [p for p in probes if j.get(p) is not None]
    if not present:
        d.workaround_checked = None
        return
    d.workaround_evidence = present
    route = [j.get(p) for p in present]
    ok = all(r is not None and r.verdict == model.PASS for r in route)
    if ok and d.id in ("split-segments", "early-verdict"):
        # The HelloRetryRequest route only proves something if the server did retry into the hybrid group.
        ok = all(r is not None and r.outcome.hello_retry for r in route)
    d.workaround_checked = ok


def diagnose(results: list[ProbeResult], checks: Iterable[str]) -> list[Diagnosis]:
    judged = Judged({r.spec.id: r for r in results})
    wanted = set(checks)
    out = []
    for diagnosis_id in model.DIAGNOSIS_IDS:
        rule = RULES.get(diagnosis_id)
        if rule is None or diagnosis_id not in wanted:
            continue
        found = rule(judged)
        if found is not None:
            add_workaround(found, judged)
            out.append(found)
    return out
