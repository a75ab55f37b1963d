"""TLS alerts (RFC 8446 §6) and the one exception type the engine raises inside itself.

Every failure inside the engine is a ``TLSAlert``: the connection turns it into a fatal alert on the
wire and an ``AlertSent`` event, so no other exception ever escapes ``receive_data``.
"""

from __future__ import annotations

import enum


class AlertLevel(enum.IntEnum):
    warning = 1
    fatal = 2


class AlertDescription(enum.IntEnum):
    close_notify = 0
    unexpected_message = 10
    bad_record_mac = 20
    record_overflow = 22
    handshake_failure = 40
    bad_certificate = 42
    unsupported_certificate = 43
    certificate_revoked = 44
    certificate_expired = 45
    certificate_unknown = 46
    illegal_parameter = 47
    unknown_ca = 48
    access_denied = 49
    decode_error = 50
    decrypt_error = 51
    protocol_version = 70
    insufficient_security = 71
    internal_error = 80
    inappropriate_fallback = 86
    user_canceled = 90
    missing_extension = 109
    unsupported_extension = 110
    unrecognized_name = 112
    bad_certificate_status_response = 113
    unknown_psk_identity = 115
    certificate_required = 116
    no_application_protocol = 120


def alert_name(code: int) -> str:
    try:
        return AlertDescription(code).name
    except ValueError:
        return f"unknown_alert_{code}"


class TLSAlert(Exception):
    """A protocol failure: the alert to send and, for logs, why."""

    def __init__(self, description: AlertDescription, reason: str = "", code: str | None = None) -> None:
        super().__init__(f"{description.name}: {reason}" if reason else description.name)
        self.description = description
        self.reason = reason
        # A stable machine-readable name for policy refusals (metrics labels), e.g. "no_hybrid_group".
        self.code = code


def decode_error(reason: str) -> TLSAlert:
    return TLSAlert(AlertDescription.decode_error, reason)


def illegal_parameter(reason: str) -> TLSAlert:
    return TLSAlert(AlertDescription.illegal_parameter, reason)


def unexpected_message(reason: str) -> TLSAlert:
    return TLSAlert(AlertDescription.unexpected_message, reason)
