"""Post-quantum readiness of a server, from the ``ready/*`` probes (checks.probes_for("readiness")).

- accepted groups: offered alone (with a share), the server answered with a ServerHello for it;
- preference: offered classical first with shares for X25519, X25519MLKEM768 and MLKEM768, what it chose;
- HRR into a hybrid: offered only an X25519 share, did it ask for a hybrid share instead;
- authentication: the certificate's signature algorithm and the CertificateVerify scheme it used, and whether it
  can sign with ML-DSA at all (offered only mldsa44/65/87: a CertificateVerify with one, or handshake_failure).

Verdicts: ``pq-ready`` (accepts a hybrid group and chooses post-quantum when the client offers both),
``pq-capable`` (accepts one, but prefers classical when given the choice), ``not-pq-ready`` (no
post-quantum group accepted), ``unknown`` (the probes did not get answers).
"""

from __future__ import annotations

from ..tls.groups import GROUPS
from . import model
from .checks import READINESS_GROUPS, READY_MLDSA
from .model import ProbeResult, Readiness

_PQ_NAMES = {g.name for g in GROUPS.values() if g.post_quantum}
_HYBRID_NAMES = {g.name for g in GROUPS.values() if g.post_quantum and g.ecdh is not None}
_PQ_SIGNATURES = ("ML-DSA", "mldsa", "SLH-DSA")


def assess(results: list[ProbeResult]) -> Readiness | None:
    by_id = {r.spec.id: r for r in results if r.spec.check == "readiness"}
    if not by_id:
        return None
    accepted, rejected = [], []
    for name in READINESS_GROUPS:
        r = by_id.get(f"ready/{name}")
        if r is None:
            continue
        answers = [o for o in r.attempts if o.kind in (model.SERVER_HELLO, model.ALERT, model.HELLO_RETRY_REQUEST)]
        if not answers:
            continue
        if any(o.kind == model.SERVER_HELLO and o.group == name for o in answers):
            accepted.append(name)
        else:
            rejected.append(name)
    preference = by_id.get("ready/preference")
    preferred = _chosen(preference)
    hrr_probe = by_id.get("ready/hrr-to-hybrid")
    hrr_to_hybrid: bool | None = None
    if hrr_probe is not None and hrr_probe.attempts and hrr_probe.outcome.kind == model.SERVER_HELLO:
        outcome = hrr_probe.outcome
        hrr_to_hybrid = bool(outcome.hello_retry and outcome.group in _PQ_NAMES)
    cert_sig = scheme = None
    for r in results:
        for o in r.attempts:
            if o.certificate_signature and cert_sig is None:
                cert_sig, scheme = o.certificate_signature, o.signature_scheme
    pq_sig = bool(cert_sig and any(m.lower() in cert_sig.lower() for m in _PQ_SIGNATURES))

    if not accepted and not rejected:
        verdict, summary = "unknown", "no readiness probe got a TLS answer"
    elif not any(g in _PQ_NAMES for g in accepted):
        verdict, summary = "not-pq-ready", "accepts no post-quantum group: traffic can be recorded now, decrypted later"
    elif preferred in _PQ_NAMES or hrr_to_hybrid:
        hybrid = [g for g in accepted if g in _HYBRID_NAMES]
        verdict = "pq-ready"
        summary = f"chooses {preferred or 'a post-quantum group'} when offered classical first"
        if hybrid:
            summary += f"; hybrid groups accepted: {', '.join(hybrid)}"
        if hrr_to_hybrid:
            summary += "; asks for the hybrid share by HelloRetryRequest"
    elif preferred is None and hrr_to_hybrid is None:
        # No ServerHello to the preference probes: the path (or the server) refused them, so the server's
        # preference is unknown here; never call that "prefers classical".
        verdict = "pq-capable"
        why = preference.outcome.describe() if preference is not None and preference.attempts else "not run"
        summary = (f"accepts {', '.join(g for g in accepted if g in _PQ_NAMES)}; its preference could not be "
                   f"read on this path ({why})")
    else:
        verdict = "pq-capable"
        summary = f"accepts {', '.join(g for g in accepted if g in _PQ_NAMES)} but prefers {preferred or 'classical'}"
    if cert_sig:
        summary += f"; certificate signed with {cert_sig}" + (" (post-quantum)" if pq_sig else " (classical)")
    mldsa_signing, mldsa_scheme = _mldsa_signing(by_id.get(READY_MLDSA))
    if mldsa_signing is not None:
        summary += (f"; signs with ML-DSA when asked ({mldsa_scheme})" if mldsa_signing
                    else "; cannot sign with ML-DSA")
    return Readiness(
        verdict=verdict, summary=summary, accepted_groups=accepted, rejected_groups=rejected,
        preferred_group=preferred, hrr_to_hybrid=hrr_to_hybrid, certificate_signature=cert_sig,
        signature_scheme=scheme, pq_signature=pq_sig, mldsa_signing=mldsa_signing, mldsa_scheme=mldsa_scheme,
    )


def _mldsa_signing(r: ProbeResult | None) -> tuple[bool | None, str | None]:
    """Offered only ML-DSA schemes: a ServerHello whose CertificateVerify used one is a yes, an alert is a no
    (handshake_failure: no scheme in common), anything else (no answer, an unreadable flight) tells nothing."""
    if r is None:
        return None, None
    for o in r.attempts:
        if o.kind == model.SERVER_HELLO and o.signature_scheme and o.signature_scheme.startswith("mldsa"):
            return True, o.signature_scheme
    if any(o.kind == model.ALERT for o in r.attempts):
        return False, None
    return None, None


def _chosen(r: ProbeResult | None) -> str | None:
    if r is None:
        return None
    for o in r.attempts:
        if o.kind == model.SERVER_HELLO and o.group:
            return o.group
    return None
