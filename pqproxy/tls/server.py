"""The server side of the TLS 1.3 handshake (RFC 8446 §2, §4), one method per step.

Read top to bottom, ``process_client_hello`` is the table of contents: check the ClientHello, pick the
cipher suite and group (a HelloRetryRequest when the client has no share for the group we want),
check for resumption or an external PSK, pick the certificate, then send ServerHello,
EncryptedExtensions, CertificateRequest?, Certificate, CertificateVerify and Finished. The client's
Certificate?, CertificateVerify? and Finished follow; then NewSessionTicket.
"""

from __future__ import annotations

import datetime
import hashlib
import struct
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from . import certificates, chain_validation
from .alerts import AlertDescription, TLSAlert, decode_error, illegal_parameter, unexpected_message
from .client_hello import ClientHelloInfo, read_client_hello
from .codepoints import (
    HELLO_RETRY_REQUEST_RANDOM,
    TLS12,
    TLS13,
    ExtensionType,
    HandshakeType,
    PskKeyExchangeMode,
    signature_scheme_name,
)
from .connection import MAX_EARLY_DATA_SKIP, TLSConnection
from .events import ClientHelloReceived, Event, HandshakeComplete
from .extensions import (
    ImportedIdentity,
    KeyShareEntry,
    KeyShareHelloRetryRequest,
    KeyShareServerHello,
    OfferedPsks,
    PreSharedKeyServerHello,
    ProtocolNameList,
    RecordSizeLimit,
    SignatureSchemeList,
    SupportedVersionsServer,
    ext,
)
from .groups import GROUPS, group_name
from .key_schedule import (
    CIPHER_SUITES,
    CipherSuiteInfo,
    KeySchedule,
    Transcript,
    finished_verify_data,
    resumption_psk,
    secrets_equal,
)
from .messages import (
    Certificate,
    CertificateEntry,
    CertificateRequest,
    CertificateVerify,
    EncryptedExtensions,
    Extension,
    Finished,
    NewSessionTicket,
    ServerHello,
)
from .psk import import_external_psk, message_hash
from .session import TicketState

# Go's reason, and ours: "not to let cheap ClientHello messages cause too much work".
MAX_PSK_IDENTITIES_TRIED = 5


@dataclass
class _AcceptedPsk:
    index: int
    psk: bytes
    kind: str  # "resumption" or "external"
    external_identity: bytes | None
    ticket: TicketState | None = None
    client_certificate: Any = None  # resumption: the client's certificate from the ticket (x509.Certificate)


class ServerHandshake:
    # defer_client_hello: the first ClientHello waits in ``pending`` for continue_handshake (client_hello.py).
    # Class attributes, so that the usual handshake, which never defers, does not pay to set them.
    defer_client_hello = False
    pending: ClientHelloInfo | None = None

    def __init__(self, conn: TLSConnection) -> None:
        self.conn = conn
        self.config = conn.config
        self.state = "wait_client_hello"
        self.done = False
        self.transcript = Transcript()
        self.first: ClientHelloInfo | None = None
        self.facts: ClientHelloInfo | None = None
        self.suite: CipherSuiteInfo | None = None
        self.group: int | None = None
        self.hello_retry = False
        self.hello_retry_raw = b""
        self.ccs_sent = False
        self.psk: _AcceptedPsk | None = None
        self.send_certificate = True
        self.chain: Any = None
        self.signature_scheme: int | None = None
        self.alpn: bytes | None = None
        self.schedule: KeySchedule | None = None
        self.client_hs_secret = b""
        self.server_hs_secret = b""
        self.client_app_secret = b""
        self.requested_client_certificate = False
        self.client_certificate: Any = None
        self.client_certificate_der = b""  # its DER, as it came (in the Certificate message, or the ticket)
        self.client_hello_size = 0

    def handle(self, msg_type: int, body: bytes, raw: bytes) -> None:
        state = self.state
        if msg_type == HandshakeType.client_hello and state in ("wait_client_hello", "wait_client_hello2"):
            if self.first is None:
                self.client_hello_size = len(raw)  # known even when the hello is refused: for logs and metrics
            self.process_client_hello(read_client_hello(body, raw))
        elif msg_type == HandshakeType.certificate and state == "wait_client_certificate":
            self.process_client_certificate(Certificate.decode(body), raw)
        elif msg_type == HandshakeType.certificate_verify and state == "wait_client_certificate_verify":
            self.process_client_certificate_verify(CertificateVerify.decode(body), raw)
        elif msg_type == HandshakeType.finished and state == "wait_finished":
            self.process_client_finished(Finished.decode(body), raw)
        else:
            raise unexpected_message(f"handshake message type {msg_type} in state {state}")

    # --- ClientHello ------------------------------------------------------------------------

    def process_client_hello(self, facts: ClientHelloInfo) -> None:
        if self.first is None and self.defer_client_hello:
            # As Go's GetConfigForClient: the caller sees the hello before we answer it, and may change our
            # configuration (QKD keys, SNI routes) or take the connection elsewhere (a TLS 1.2 client).
            self.pending, self.state = facts, "wait_config"
            self.conn.emit(ClientHelloReceived(facts))
            self.conn.pause()  # raises: nothing after this runs until continue_handshake
        self.answer_client_hello(facts)

    def continue_after_client_hello(self, config: Any) -> None:
        facts, self.pending = self.pending, None
        if facts is None:
            raise RuntimeError("continue_handshake before a ClientHelloReceived event")
        if config is not None:
            self.config = config
        self.state = "wait_client_hello"
        self.answer_client_hello(facts)

    def answer_client_hello(self, facts: ClientHelloInfo) -> None:
        client_groups = self.check_client_hello(facts)
        if self.first is None:
            if facts.early_data:
                # We never accept 0-RTT (replayable); RFC 8446 §4.2.10 says skip what the client sends.
                self.conn.early_data_skip = MAX_EARLY_DATA_SKIP
        else:
            self.check_second_client_hello(self.first, facts)
            # RFC 8446 §4.2.10: after a HelloRetryRequest, refused early data is skipped up to the second
            # ClientHello; what follows it is the client's second flight, and a record that fails is bad_record_mac.
            self.conn.early_data_skip = 0
        self.facts = facts
        if self.suite is None:
            self.suite = self.pick_cipher_suite(facts)
        group, needs_retry = self.pick_group(facts, client_groups)
        if needs_retry:
            if self.hello_retry:
                raise illegal_parameter(f"second ClientHello has no key share for {group_name(group)}")
            self.send_hello_retry_request(facts, group)
            return
        self.group = group
        if not self.hello_retry:
            self.transcript.set_hash(self.suite.hash_name)
        self.transcript.update(facts.raw)
        self.psk = self.check_for_resumption(facts)
        if self.psk is not None and self.psk.client_certificate is not None:
            self.client_certificate = self.psk.client_certificate  # who the resumed session's client is
            self.client_certificate_der = self.psk.ticket.client_certificate if self.psk.ticket else b""
        if self.config.require_external_psk and (self.psk is None or self.psk.kind != "external"):
            raise TLSAlert(AlertDescription.unknown_psk_identity, "an external PSK is required and none matched",
                           "psk_required")
        self.send_certificate = self.psk is None or (self.psk.kind == "external" and facts.cert_with_extern_psk)
        if self.send_certificate:
            self.pick_certificate(facts)
        self.alpn = self.pick_alpn(facts)
        self.send_server_hello(facts)
        self.send_encrypted_extensions(facts)
        if self.send_certificate:
            self.send_certificate_request()
            self.send_server_certificate()
            self.send_server_certificate_verify()
        self.send_server_finished()

    def check_client_hello(self, facts: ClientHelloInfo) -> set[int]:
        """What RFC 8446 §4.1.2, §4.2 and §9.2 ask of what a ClientHello offers (its form is read_client_hello's).
        Returns the client's supported_groups as a set."""
        hello, seen = facts.hello, facts.seen
        if TLS13 not in facts.versions:
            # A TLS 1.2-only client (or older): refused, as the proxy's default policy wants.
            raise TLSAlert(AlertDescription.protocol_version, "client does not offer TLS 1.3", "tls12_only_client")
        if hello.legacy_version != TLS12:
            raise TLSAlert(AlertDescription.protocol_version, f"legacy_version 0x{hello.legacy_version:04x}")
        if hello.legacy_compression_methods != b"\x00":
            raise illegal_parameter("TLS 1.3 ClientHello must offer only the null compression method")
        if (ExtensionType.supported_groups in seen) != (ExtensionType.key_share in seen):
            raise TLSAlert(AlertDescription.missing_extension, "supported_groups and key_share must come together")
        if ExtensionType.supported_groups not in seen:
            raise TLSAlert(AlertDescription.missing_extension, "no supported_groups: psk_ke is not allowed here")
        if facts.offered_psks is not None:
            if not facts.psk_modes:
                raise TLSAlert(AlertDescription.missing_extension, "pre_shared_key without psk_key_exchange_modes")
            if len(facts.offered_psks.identities) != len(facts.offered_psks.binders):
                raise illegal_parameter("PSK identities and binders differ in number")
        if facts.cert_with_extern_psk and facts.offered_psks is None:
            # RFC 8773: the extension asks for a certificate beside an external PSK, which the client must offer.
            raise illegal_parameter("tls_cert_with_extern_psk without pre_shared_key")
        # RFC 8446 §4.2.8: one share per group, each for a group in supported_groups (the server may check: we
        # do, for every share, known group or not; with sets, so a hello of thousands costs no quadratic work).
        share_groups = facts.key_share_groups
        offered = set(facts.groups)
        if not offered.issuperset(share_groups):
            stray = next(g for g in share_groups if g not in offered)
            raise illegal_parameter(f"key share for {group_name(stray)} not in supported_groups")
        if len(share_groups) != len(facts.shares) and len(set(share_groups)) != len(share_groups):
            raise illegal_parameter("two key shares for one group")
        return offered

    def check_second_client_hello(self, first: ClientHelloInfo, second: ClientHelloInfo) -> None:
        """RFC 8446 §4.1.2: the second hello is the first but for key_share, cookie, PSK and padding."""
        a, b = first.hello, second.hello
        if (a.random != b.random or a.legacy_session_id != b.legacy_session_id
                or a.cipher_suites != b.cipher_suites or first.groups != second.groups
                or first.server_name != second.server_name or first.alpn != second.alpn
                or first.signature_schemes != second.signature_schemes):
            raise illegal_parameter("second ClientHello changed more than RFC 8446 §4.1.2 allows")
        if second.early_data:
            raise illegal_parameter("early_data in the ClientHello after a HelloRetryRequest")
        if len(second.shares) != 1:
            raise illegal_parameter("second ClientHello must carry exactly the requested key share")

    def pick_cipher_suite(self, facts: ClientHelloInfo) -> CipherSuiteInfo:
        offered = set(facts.hello.cipher_suites)
        for code in self.config.cipher_suites:
            if code in offered:
                return CIPHER_SUITES[code]
        raise TLSAlert(AlertDescription.handshake_failure, "no cipher suite in common")

    def pick_group(self, facts: ClientHelloInfo, client_groups: set[int]) -> tuple[int, bool]:
        """(group, needs HelloRetryRequest). By default a post-quantum group wins even at the cost of a
        HelloRetryRequest, as Go 1.24+ does (draft-ietf-tls-key-share-prediction). Walks our preference order and
        stops at the first fit: with a client like every real one, that is the first group we look at."""
        config, shares = self.config, facts.shares
        preference = config.group_selection == "server-preference"
        if not preference:
            first_pq = None
            for group in config.post_quantum_groups:
                if group in client_groups:
                    if group in shares:
                        return group, False
                    if first_pq is None:
                        first_pq = group
            if first_pq is not None:
                return first_pq, True
        if config.require_post_quantum and client_groups.isdisjoint(config.post_quantum_groups):
            raise TLSAlert(AlertDescription.insufficient_security, "client offers no hybrid or ML-KEM group",
                           "no_hybrid_group")
        first = None
        for group in config.groups:
            if group in client_groups:
                if preference or group in shares:
                    return group, group not in shares
                if first is None:
                    first = group
        if first is None:
            raise TLSAlert(AlertDescription.handshake_failure, "no key exchange group in common", "no_common_group")
        return first, True

    # --- HelloRetryRequest (RFC 8446 §4.1.4) ---------------------------------------------------

    def send_hello_retry_request(self, facts: ClientHelloInfo, group: int) -> None:
        assert self.suite is not None
        self.hello_retry = True
        self.first = facts
        self.transcript.set_hash(self.suite.hash_name)
        self.transcript.update(facts.raw)
        self.transcript.restart_after_hello_retry()
        hrr = ServerHello(
            random=HELLO_RETRY_REQUEST_RANDOM,
            legacy_session_id_echo=facts.hello.legacy_session_id,
            cipher_suite=self.suite.code,
            extensions=[
                ext(ExtensionType.supported_versions, SupportedVersionsServer(TLS13)),
                ext(ExtensionType.key_share, KeyShareHelloRetryRequest(group)),
            ],
        )
        raw = hrr.encode()
        self.hello_retry_raw = raw
        self.transcript.update(raw)
        self.conn.send_handshake(raw)
        self._maybe_send_ccs(facts)
        self.state = "wait_client_hello2"

    def _maybe_send_ccs(self, facts: ClientHelloInfo) -> None:
        # RFC 8446 §D.4: middlebox compatibility mode, when the client sent a session id.
        if facts.hello.legacy_session_id and not self.ccs_sent:
            self.conn.send_change_cipher_spec()
            self.ccs_sent = True

    # --- PSKs: resumption and external (RFC 8446 §4.2.11, RFC 9258, RFC 8773) -------------------

    def check_for_resumption(self, facts: ClientHelloInfo) -> _AcceptedPsk | None:
        offered = facts.offered_psks
        if offered is None or PskKeyExchangeMode.psk_dhe_ke not in facts.psk_modes:
            return None
        assert self.suite is not None
        now = self.config.clock()
        for index, identity in enumerate(offered.identities[:MAX_PSK_IDENTITIES_TRIED]):
            accepted = self._resolve_psk(index, identity.identity, facts, now)
            if accepted is None:
                continue
            self._check_binder(accepted, offered, index, facts)
            return accepted
        return None

    def _resolve_psk(self, index: int, identity: bytes, facts: ClientHelloInfo, now: float) -> _AcceptedPsk | None:
        assert self.suite is not None
        sealer = self.config.ticket_sealer
        if sealer is not None:
            state = sealer.open(identity, now)
            if state is not None:
                if (CIPHER_SUITES.get(state.cipher_suite) is None
                        or CIPHER_SUITES[state.cipher_suite].hash_name != self.suite.hash_name
                        or not state.authenticated_at <= now < state.authenticated_at + state.lifetime
                        or state.server_name != (facts.server_name or "").encode()
                        or state.context != self.config.ticket_context):
                    return None
                resumed, client_certificate = self.resumed_client_authentication(state, now)
                if not resumed:
                    return None
                return _AcceptedPsk(index, state.psk, "resumption", None, state, client_certificate)
        if not self.config.external_psks:
            return None
        imported = _parse_imported_identity(identity)
        if imported is not None:
            kdf_hash = {1: "sha256", 2: "sha384"}.get(imported.target_kdf)
            if imported.target_protocol != TLS13 or kdf_hash != self.suite.hash_name:
                return None
            key = self.config.external_psks.get(imported.external_identity)
            if key is None:
                return None
            _wire, ipsk = import_external_psk(imported.external_identity, key, imported.context, kdf_hash)
            return _AcceptedPsk(index, ipsk, "external-imported", imported.external_identity)
        key = self.config.external_psks.get(identity)
        if key is None or self.suite.hash_name != "sha256":  # RFC 8446 §4.2.11: SHA-256 unless said otherwise
            return None
        return _AcceptedPsk(index, key, "external", identity)

    def resumed_client_authentication(self, state: TicketState, now: float) -> tuple[bool, Any]:
        """May this ticket's session be resumed under our client-authentication policy, and as which client?
        Its authentication is the full handshake's, so it must meet the policy still: a certificate when one is
        required, one that has not expired, and one the allow-list takes (Go's crypto/tls checks the same)."""
        if not state.client_certificate:
            return not self.config.require_client_certificate, None
        try:
            certificate = x509.load_der_x509_certificate(state.client_certificate)
        except ValueError:
            return False, None
        if now > certificate.not_valid_after_utc.timestamp():
            return False, None
        allowed = self.config.client_certificate_allowed
        if allowed is not None and not allowed(certificate):
            return False, None
        return True, certificate

    def _check_binder(self, accepted: _AcceptedPsk, offered: OfferedPsks, index: int, facts: ClientHelloInfo) -> None:
        assert self.suite is not None
        binder = offered.binders[index]
        hash_name = self.suite.hash_name
        if len(binder) != self.suite.hash_len:
            raise TLSAlert(AlertDescription.decrypt_error, "PSK binder has the wrong length")
        truncated = facts.raw[: len(facts.raw) - offered.binders_length()]
        h = hashlib.new(hash_name)
        if self.hello_retry:
            assert self.first is not None
            h.update(message_hash(hash_name, self.first.raw))
            h.update(self.hello_retry_raw)
        h.update(truncated)
        schedule = KeySchedule(hash_name, accepted.psk)
        binder_key = schedule.binder_key(imported=accepted.kind == "external-imported",
                                         resumption=accepted.kind == "resumption")
        expected = finished_verify_data(hash_name, binder_key, h.digest())
        if not secrets_equal(expected, binder):
            raise TLSAlert(AlertDescription.decrypt_error, "PSK binder does not verify")
        if accepted.kind == "external-imported":
            accepted.kind = "external"

    # --- certificate and ALPN ---------------------------------------------------------------

    def pick_certificate(self, facts: ClientHelloInfo) -> None:
        chain = _certificate_for(self.config.sni_certificates, facts.server_name) or self.config.certificate_chain
        if chain is None:
            raise TLSAlert(AlertDescription.internal_error, "no certificate configured")
        if not facts.signature_schemes:
            raise TLSAlert(AlertDescription.missing_extension, "no signature_algorithms")
        scheme = chain.choose_signature_scheme(facts.signature_schemes)
        if scheme is None:
            raise TLSAlert(AlertDescription.handshake_failure, "no signature scheme in common with our certificate")
        self.chain, self.signature_scheme = chain, scheme

    def pick_alpn(self, facts: ClientHelloInfo) -> bytes | None:
        if not facts.alpn or not self.config.alpn_protocols:
            return None
        for protocol in self.config.alpn_protocols:
            if protocol in facts.alpn:
                return protocol
        raise TLSAlert(AlertDescription.no_application_protocol, "no ALPN protocol in common")  # RFC 7301 §3.2

    # --- ServerHello, EncryptedExtensions ---------------------------------------------------

    def send_server_hello(self, facts: ClientHelloInfo) -> None:
        suite, group = self.suite, self.group
        assert suite is not None and group is not None
        server_share, shared_secret = GROUPS[group].server_respond(facts.shares[group])
        # The order of RFC 8448's traces, so that they can be reproduced byte for byte.
        extensions = []
        if self.psk is not None:
            extensions.append(ext(ExtensionType.pre_shared_key, PreSharedKeyServerHello(self.psk.index)))
        extensions.append(ext(ExtensionType.key_share, KeyShareServerHello(KeyShareEntry(group, server_share))))
        extensions.append(ext(ExtensionType.supported_versions, SupportedVersionsServer(TLS13)))
        if self.psk is not None and self.psk.kind == "external" and facts.cert_with_extern_psk:
            extensions.append(ext(ExtensionType.tls_cert_with_extern_psk))
        hello = ServerHello(
            random=self.config.entropy(32),
            legacy_session_id_echo=facts.hello.legacy_session_id,
            cipher_suite=suite.code,
            extensions=extensions,
        )
        raw = hello.encode()
        self.transcript.update(raw)
        self.conn.send_handshake(raw)
        self._maybe_send_ccs(facts)
        schedule = KeySchedule(suite.hash_name, self.psk.psk if self.psk else None)
        schedule.enter_handshake(shared_secret)
        del shared_secret
        th = self.transcript.digest()
        self.client_hs_secret = schedule.derive_secret(b"c hs traffic", th)
        self.server_hs_secret = schedule.derive_secret(b"s hs traffic", th)
        self.conn.set_write_secret(suite, self.server_hs_secret)
        self.conn.set_read_secret(suite, self.client_hs_secret)
        self.schedule = schedule

    def send_encrypted_extensions(self, facts: ClientHelloInfo) -> None:
        extensions: list[Extension] = []
        if facts.server_name is not None and self.send_certificate:
            extensions.append(Extension(ExtensionType.server_name, b""))  # RFC 6066 §3: we used the name
        if self.alpn is not None:
            extensions.append(ext(ExtensionType.application_layer_protocol_negotiation, ProtocolNameList([self.alpn])))
        if facts.record_size_limit is not None:
            self.conn.set_peer_record_size_limit(facts.record_size_limit)
            if self.config.record_size_limit is not None:
                extensions.append(ext(ExtensionType.record_size_limit, RecordSizeLimit(self.config.record_size_limit)))
        self._send(EncryptedExtensions(extensions).encode())

    # --- CertificateRequest, Certificate, CertificateVerify, Finished ---------------------------

    def send_certificate_request(self) -> None:
        if not self.config.trust_store or self.psk is not None:
            return
        self.requested_client_certificate = True
        request = CertificateRequest(b"", [
            ext(ExtensionType.signature_algorithms, SignatureSchemeList(list(self.config.signature_schemes)))
        ])
        self._send(request.encode())

    def send_server_certificate(self) -> None:
        chain = self.chain
        if chain.certificate_message is None:  # the same bytes for every handshake with this chain
            chain.certificate_message = Certificate(b"", [CertificateEntry(der) for der in chain.der]).encode()
        self._send(chain.certificate_message)

    def send_server_certificate_verify(self) -> None:
        assert self.signature_scheme is not None
        signature = self.chain.sign(
            self.signature_scheme, certificates.certificate_verify_input(True, self.transcript.digest()))
        self._send(CertificateVerify(self.signature_scheme, signature).encode())

    def send_server_finished(self) -> None:
        suite, schedule = self.suite, self.schedule
        assert suite is not None and schedule is not None
        verify_data = finished_verify_data(suite.hash_name, self.server_hs_secret, self.transcript.digest())
        self._send(Finished(verify_data).encode())
        self.server_hs_secret = b""
        schedule.enter_master()
        th = self.transcript.digest()
        self.client_app_secret = schedule.derive_secret(b"c ap traffic", th)
        self.conn.set_write_secret(suite, schedule.derive_secret(b"s ap traffic", th))
        self.state = "wait_client_certificate" if self.requested_client_certificate else "wait_finished"

    def _send(self, raw: bytes) -> None:
        self.transcript.update(raw)
        self.conn.send_handshake(raw)

    # --- the client's flight ----------------------------------------------------------------

    def process_client_certificate(self, certificate: Certificate, raw: bytes) -> None:
        if certificate.certificate_request_context:
            raise illegal_parameter("client Certificate has a request context")
        self.transcript.update(raw)
        if not certificate.certificate_list:
            if self.config.require_client_certificate:
                raise TLSAlert(AlertDescription.certificate_required, "client sent no certificate",
                               "client_certificate_missing")
            self.state = "wait_finished"
            return
        for entry in certificate.certificate_list:
            if entry.extensions:
                raise TLSAlert(AlertDescription.unsupported_extension, "CertificateEntry extension not requested")
        assert self.config.trust_store is not None
        try:
            self.client_certificate = chain_validation.verify_client_chain(
                [e.cert_data for e in certificate.certificate_list], self.config.trust_store,
                now=datetime.datetime.fromtimestamp(self.config.clock(), tz=datetime.UTC),
                profile=self.config.verify_profile,
            )
        except TLSAlert as alert:
            alert.code = "client_certificate_invalid"
            raise
        allowed = self.config.client_certificate_allowed
        if allowed is not None and not allowed(self.client_certificate):
            raise TLSAlert(AlertDescription.access_denied, "client certificate name is not allowed",
                           "client_not_allowed")
        self.client_certificate_der = bytes(certificate.certificate_list[0].cert_data)
        self.state = "wait_client_certificate_verify"

    def process_client_certificate_verify(self, verify: CertificateVerify, raw: bytes) -> None:
        if verify.algorithm not in self.config.signature_schemes:
            raise illegal_parameter(f"client signed with scheme 0x{verify.algorithm:04x} we did not offer")
        certificates.verify_signature(
            self.client_certificate.public_key(), verify.algorithm, verify.signature,
            certificates.certificate_verify_input(False, self.transcript.digest()),
            certificates.is_pss_certificate(self.client_certificate),
        )
        self.transcript.update(raw)
        self.state = "wait_finished"

    def process_client_finished(self, finished: Finished, raw: bytes) -> None:
        suite, schedule = self.suite, self.schedule
        assert suite is not None and schedule is not None
        if len(finished.verify_data) != suite.hash_len:
            raise decode_error("Finished has the wrong length")
        expected = finished_verify_data(suite.hash_name, self.client_hs_secret, self.transcript.digest())
        if not secrets_equal(expected, finished.verify_data):
            raise TLSAlert(AlertDescription.decrypt_error, "client Finished does not verify")
        self.transcript.update(raw)
        self.conn.early_data_skip = 0
        self.conn.set_read_secret(suite, self.client_app_secret)
        resumption_master = schedule.derive_secret(b"res master", self.transcript.digest())
        schedule.wipe()
        self.client_hs_secret = self.client_app_secret = b""
        self.state = "connected"
        self.done = True
        self.conn.finish_handshake()
        facts = self.facts
        assert facts is not None
        psk = self.psk
        self.conn.emit(HandshakeComplete(
            group=group_name(self.group) if self.group is not None else None,
            cipher_suite=suite.name,
            alpn_protocol=self.alpn.decode("ascii", "replace") if self.alpn else None,
            server_name=facts.server_name,
            resumed=psk is not None and psk.kind == "resumption",
            psk=psk.kind if psk else None,
            psk_identity=psk.external_identity if psk else None,
            peer_certificate=self.client_certificate,
            signature_scheme=signature_scheme_name(self.signature_scheme) if self.send_certificate else None,
            hello_retry=self.hello_retry,
            client_hello_size=self.client_hello_size,
        ))
        if PskKeyExchangeMode.psk_dhe_ke in facts.psk_modes:
            self.send_new_session_tickets(resumption_master, facts)
        self.release()

    def release(self) -> None:
        """Drop what only the handshake needed (the ClientHellos, the transcript, the key schedule): a
        server holds thousands of established connections, and these were several KB of each."""
        self.first = self.facts = None
        self.transcript = Transcript()
        self.hello_retry_raw = b""
        self.schedule = None
        self.psk = None

    def send_new_session_tickets(self, resumption_master: bytes, facts: ClientHelloInfo) -> None:
        sealer, suite = self.config.ticket_sealer, self.suite
        if sealer is None or suite is None:
            return
        now = self.config.clock()
        # A resumed session's tickets keep the time of the full handshake that authenticated the client, and
        # say how long they have left: resuming never extends a client's authentication.
        resumed = self.psk.ticket if self.psk is not None and self.psk.kind == "resumption" else None
        authenticated_at = resumed.authenticated_at if resumed is not None else now
        lifetime = int(authenticated_at + self.config.ticket_lifetime - now)
        client_certificate = self.client_certificate_der
        if lifetime <= 0 or len(client_certificate) > 0xFFFF:
            return
        for i in range(self.config.session_tickets):
            nonce = struct.pack(">B", i)
            age_add = int.from_bytes(self.config.entropy(4), "big")
            state = TicketState(
                suite.code, resumption_psk(suite, resumption_master, nonce), authenticated_at,
                self.config.ticket_lifetime, age_add, (facts.server_name or "").encode(), self.alpn or b"",
                self.config.ticket_context, client_certificate,
            )
            ticket = NewSessionTicket(lifetime, age_add, nonce, sealer.seal(state, now))
            self.conn.send_handshake(ticket.encode())


def _parse_imported_identity(identity: bytes) -> ImportedIdentity | None:
    try:
        return ImportedIdentity.decode(identity)
    except TLSAlert:
        return None


def _certificate_for(table: Any, name: str | None) -> Any:
    if not table or name is None:
        return None
    if name in table:
        return table[name]
    _, _, rest = name.partition(".")
    return table.get("*." + rest) if rest else None


class TLSServer(TLSConnection):
    """A server-side connection: feed it the client's bytes.

    ``defer_client_hello``: stop after the first ClientHello with a ``ClientHelloReceived(info)`` event, and go on
    only when ``continue_handshake(config)`` is called (client_hello.py says why)."""

    def __init__(self, config: Any, *, defer_client_hello: bool = False) -> None:
        super().__init__(config, is_client=False)
        self.handshake = ServerHandshake(self)
        self._handshake = self.handshake
        if defer_client_hello:
            self.handshake.defer_client_hello = True

    def continue_handshake(self, config: Any = None) -> list[Event]:
        """Answer the ClientHello that ``ClientHelloReceived`` showed, under ``config`` if given (it replaces the
        configuration for this connection), then go on with whatever bytes arrived meanwhile."""
        if config is not None:
            self.config = config
        return self.resume(lambda: self.handshake.continue_after_client_hello(config))
