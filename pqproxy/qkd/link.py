"""A physical model of the QKD link behind the KME simulator: decoy-state BB84 over fibre.

Asymptotic secret key rate of decoy-state BB84 with weak coherent pulses, in the infinite-decoy limit:
H.-K. Lo, X. Ma, K. Chen, "Decoy State Quantum Key Distribution", PRL 94, 230504 (2005), with the
GLLP bound (Gottesman, Lo, Lütkenhaus, Preskill, QIC 4, 325 (2004)) and the channel model of
X. Ma, B. Qi, Y. Zhao, H.-K. Lo, "Practical decoy state for quantum key distribution", PRA 72, 012326
(2005), §II:

    eta  = t_fibre * eta_det,            t_fibre = 10^(-alpha * L / 10)                      (Ma eq. 2)
    Y_0  = dark count probability per pulse (both detectors)
    Q_mu = Y_0 + 1 - exp(-eta * mu)                      gain of the signal state          (Ma eq. 4)
    E_mu = (e_0 Y_0 + e_det (1 - exp(-eta * mu))) / Q_mu  its QBER, e_0 = 1/2               (Ma eq. 5)
    Y_1  = Y_0 + eta,  Q_1 = Y_1 * mu * exp(-mu)          single-photon yield and gain     (Ma eq. 3)
    e_1  = (e_0 Y_0 + e_det eta) / Y_1                    single-photon error rate
    R    = q * (Q_1 (1 - H2(e_1)) - Q_mu f H2(E_mu))      bits per pulse, q = 1/2 (BB84)   (Lo eq. 1)

with f the error-correction inefficiency (1.16, a typical CASCADE/LDPC figure) and H2 the binary entropy.
Bits per second are R times the pulse rate.

The eavesdropper is intercept-resend on a fraction p of the pulses: for each intercepted pulse Eve
measures in a random basis and resends; in the sifted key she causes an error with probability 1/4
(wrong basis half the time, then a coin toss at Bob), so the QBER becomes E' = E + p (1/4)(1 - 2E)
(errors that coincide cancel). The same holds for e_1. BB84 with one-way post-processing tolerates a
QBER of about 11% (P. Shor, J. Preskill, "Simple proof of security of the BB84 QKD protocol", PRL 85,
441 (2000)): above ``abort_qber`` the protocol aborts and the link makes no key. When the QBER falls
below it again the link needs ``recovery_s`` seconds (re-alignment and authentication) before it is up.

Everything here is a pure function of its parameters and the clock the caller gives; the simulator
turns rates into key material.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

UP, DOWN, RECOVERING, NO_KEY = "up", "aborted", "recovering", "no_key"


def h2(x: float) -> float:
    """Binary entropy in bits."""
    if x <= 0.0 or x >= 1.0:
        return 0.0
    return -x * math.log2(x) - (1 - x) * math.log2(1 - x)


@dataclass
class LinkParameters:
    length_km: float = 20.0
    loss_db_per_km: float = 0.2  # standard single-mode fibre at 1550 nm
    detector_efficiency: float = 0.10  # InGaAs APDs
    dark_count: float = 1e-6  # Y_0, per pulse
    misalignment: float = 0.015  # e_det: optical error probability
    mean_photon: float = 0.5  # mu of the signal state
    pulse_rate_hz: float = 100e6
    error_correction: float = 1.16  # f
    abort_qber: float = 0.11
    recovery_s: float = 2.0

    def check(self) -> None:
        problems = []
        if not 0 <= self.length_km <= 1000:
            problems.append("length_km must be 0..1000")
        if not 0 <= self.loss_db_per_km <= 10:
            problems.append("loss_db_per_km must be 0..10")
        if not 0 < self.detector_efficiency <= 1:
            problems.append("detector_efficiency must be in (0, 1]")
        if not 0 <= self.dark_count < 1:
            problems.append("dark_count must be in [0, 1)")
        if not 0 <= self.misalignment < 0.5:
            problems.append("misalignment must be in [0, 0.5)")
        if not 0 < self.mean_photon <= 2:
            problems.append("mean_photon must be in (0, 2]")
        if not 0 < self.pulse_rate_hz <= 1e11:
            problems.append("pulse_rate_hz must be in (0, 1e11]")
        if not 0 <= self.recovery_s <= 3600:
            problems.append("recovery_s must be 0..3600")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class LinkReading:
    qber: float  # E_mu, with the eavesdropper's errors
    key_rate_bps: float  # secret bits per second (0 when aborted or too lossy)
    state: str  # up, aborted, recovering, no_key
    transmittance: float  # eta


def _with_eve(error: float, fraction: float) -> float:
    return error + fraction * 0.25 * (1 - 2 * error)


def steady_state(p: LinkParameters, eavesdropper: float = 0.0) -> tuple[float, float, float]:
    """(QBER, secret key bits per pulse, eta) of the link, by the formulas above."""
    eta = 10 ** (-p.loss_db_per_km * p.length_km / 10) * p.detector_efficiency
    y0, mu, ed = p.dark_count, p.mean_photon, p.misalignment
    q_mu = y0 + 1 - math.exp(-eta * mu)
    e_mu = (0.5 * y0 + ed * (1 - math.exp(-eta * mu))) / q_mu if q_mu > 0 else 0.5
    y1 = y0 + eta
    q1 = y1 * mu * math.exp(-mu)
    e1 = (0.5 * y0 + ed * eta) / y1 if y1 > 0 else 0.5
    e_mu, e1 = _with_eve(e_mu, eavesdropper), _with_eve(e1, eavesdropper)
    rate = 0.5 * (q1 * (1 - h2(e1)) - q_mu * p.error_correction * h2(e_mu))
    return e_mu, max(rate, 0.0), eta


class Link:
    """The link's state over time: the eavesdropper can be switched on and off; ``read(now)`` says how the
    link is, and ``accrue(now)`` how many secret bits it made since the last call."""

    def __init__(self, parameters: LinkParameters, now: float) -> None:
        parameters.check()
        self.parameters = parameters
        self.eavesdropper = 0.0
        self._last = now
        self._aborted_at: float | None = None
        self._recovering_until: float | None = None
        self.disturbances = 0  # how many times the link aborted (an operator's "disturbance events")

    def set_eavesdropper(self, fraction: float, now: float) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("the intercepted fraction must be between 0 and 1")
        self.accrue(now)  # bits made before the change are made at the old rate
        self.eavesdropper = fraction
        self.read(now)  # an abort, or the start of the recovery, dates from the change, not from the next look

    def read(self, now: float) -> LinkReading:
        qber, per_pulse, eta = steady_state(self.parameters, self.eavesdropper)
        if qber > self.parameters.abort_qber:
            if self._aborted_at is None:
                self._aborted_at = now
                self.disturbances += 1
            self._recovering_until = None
            return LinkReading(qber, 0.0, DOWN, eta)
        if self._aborted_at is not None:  # the disturbance is gone: re-align before producing again
            self._aborted_at = None
            self._recovering_until = now + self.parameters.recovery_s
        if self._recovering_until is not None:
            if now < self._recovering_until:
                return LinkReading(qber, 0.0, RECOVERING, eta)
            self._recovering_until = None
        if per_pulse <= 0:
            return LinkReading(qber, 0.0, NO_KEY, eta)
        return LinkReading(qber, per_pulse * self.parameters.pulse_rate_hz, UP, eta)

    def accrue(self, now: float) -> float:
        """Secret bits produced since the previous call (at the rate of the state read now)."""
        elapsed = max(0.0, now - self._last)
        self._last = now
        return self.read(now).key_rate_bps * elapsed
