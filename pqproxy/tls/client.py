"""The client side of the TLS 1.3 handshake (RFC 8446 §2, §4), one method per message.

``ClientHandshake.start`` sends the ClientHello; ``handle`` takes each server message in the order of
RFC 8446 §A.1: ServerHello (or HelloRetryRequest), EncryptedExtensions, CertificateRequest?,
Certificate, CertificateVerify, Finished; then the client's own flight.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from . import certificates, chain_validation
from .alerts import AlertDescription, TLSAlert, decode_error, illegal_parameter, unexpected_message
from .codepoints import (
    TLS12,
    TLS13,
    ExtensionType,
    HandshakeType,
    PskKeyExchangeMode,
    signature_scheme_name,
)
from .connection import TLSConnection
from .events import HandshakeComplete, SessionTicketReceived
from .extensions import (
    Cookie,
    KeyShareClientHello,
    KeyShareEntry,
    KeyShareHelloRetryRequest,
    KeyShareServerHello,
    NamedGroupList,
    OfferedPsks,
    PreSharedKeyServerHello,
    ProtocolNameList,
    PskIdentity,
    PskKeyExchangeModes,
    RecordSizeLimit,
    ServerNameList,
    SignatureSchemeList,
    SupportedVersionsClient,
    SupportedVersionsServer,
    check_extension_block,
    empty_extension,
    ext,
)
from .groups import GROUPS, ClientKeyShare, group_name
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
    ClientHello,
    EncryptedExtensions,
    Extension,
    Finished,
    NewSessionTicket,
    ServerHello,
)
from .psk import import_external_psk, message_hash
from .session import MAX_TICKET_LIFETIME, SessionTicket

# A server could send tickets forever; keep the first few and ignore the rest.
MAX_TICKETS_PER_CONNECTION = 8
_SERVER_HELLO_EXTENSIONS = frozenset(
    {ExtensionType.key_share, ExtensionType.supported_versions, ExtensionType.pre_shared_key,
     ExtensionType.tls_cert_with_extern_psk}
)
_HRR_EXTENSIONS = frozenset({ExtensionType.key_share, ExtensionType.supported_versions, ExtensionType.cookie})
_ENCRYPTED_EXTENSIONS_ALLOWED = frozenset(
    {ExtensionType.server_name, ExtensionType.supported_groups, ExtensionType.application_layer_protocol_negotiation,
     ExtensionType.record_size_limit}
)


@dataclass
class _OfferedPsk:
    psk: bytes
    hash_name: str
    kind: str  # "resumption" or "external"
    imported: bool
    wire_identity: bytes
    external_identity: bytes | None
    obfuscated_age: int
    ticket: SessionTicket | None = None



class ClientHandshake:
    def __init__(self, conn: TLSConnection) -> None:
        self.conn = conn
        self.config = conn.config
        self.state = "start"
        self.done = False
        self.transcript = Transcript()
        self.key_shares: dict[int, ClientKeyShare] = {}
        self.offered_psks: list[_OfferedPsk] = []
        self.client_hello: ClientHello | None = None
        self.client_hello1_raw = b""
        self.client_hello_size = 0
        self.hello_retry_raw = b""
        self.hello_retry_suite: int | None = None
        self.hello_retry_group: int | None = None
        self.suite: CipherSuiteInfo | None = None
        self.schedule: KeySchedule | None = None
        self.group: int | None = None
        self.selected_psk: _OfferedPsk | None = None
        self.server_sends_certificate = True
        self.certificate_request: CertificateRequest | None = None
        self.server_certificate: Any = None
        self.signature_scheme: int | None = None
        self.alpn: bytes | None = None
        self.client_hs_secret = b""
        self.server_hs_secret = b""
        self.resumption_master_secret = b""
        self.tickets_received = 0
        self.ccs_sent = False
        server_name = self.config.server_name
        self.sni: str | None = None
        if server_name and not _is_ip_literal(server_name):
            self.sni = server_name.rstrip(".")  # RFC 6066 §3: no trailing dot, no IP literals

    # --- ClientHello --------------------------------------------------------------------------

    def start(self) -> None:
        config = self.config
        now = config.clock()
        self._prepare_psks(now)
        assert config.key_share_groups is not None
        for group in config.key_share_groups:
            self.key_shares[group] = GROUPS[group].client_generate()
        session_id = config.entropy(32) if config.compatibility_mode else b""
        hello = ClientHello(random=config.entropy(32), legacy_session_id=session_id,
                            cipher_suites=list(config.cipher_suites), extensions=self._extensions())
        self.client_hello = hello
        raw = self._encode_with_binders(hello, prefix_for_hash=None)
        self.client_hello1_raw = raw
        self.client_hello_size = len(raw)
        self.transcript.update(raw)
        self.conn.send_handshake(raw)
        self.state = "wait_server_hello"

    def start_with_hello(self, hello: ClientHello, key_shares: dict[int, ClientKeyShare]) -> None:
        """Start from a ClientHello someone else built (the probe's, with GREASE, padding, any order).

        The message goes into ``data_to_send`` like ours would; a probe may take it out and deliver it in
        its own shape. The rest of the handshake (HRR, ServerHello, the server's flight) is checked as
        usual against ``config``, which must name the groups and suites the hello offers. Shares for groups
        we do not implement are not in ``key_shares``: a server choosing one fails the handshake.
        """
        if any(e.type == ExtensionType.pre_shared_key for e in hello.extensions):
            raise ValueError("a prebuilt ClientHello cannot offer PSKs (their binders need the key schedule)")
        self.key_shares = dict(key_shares)
        self.client_hello = hello
        raw = hello.encode()
        self.client_hello1_raw = raw
        self.client_hello_size = len(raw)
        self.transcript.update(raw)
        self.conn.send_handshake(raw)
        self.state = "wait_server_hello"

    def _prepare_psks(self, now: float) -> None:
        config = self.config
        ticket: SessionTicket | None = config.resume_session
        if (
            ticket is not None
            and not ticket.expired(now)
            and ticket.cipher_suite in config.cipher_suites
            and (ticket.server_name is None or ticket.server_name == self.sni)
        ):
            self.offered_psks.append(
                _OfferedPsk(ticket.psk, CIPHER_SUITES[ticket.cipher_suite].hash_name, "resumption", False,
                            ticket.ticket, None, ticket.obfuscated_age(now), ticket)
            )
        epsk = config.external_psk
        if epsk is not None:
            if epsk.imported:
                wire, key = import_external_psk(epsk.identity, epsk.key, epsk.context, epsk.hash_name)
            else:
                wire, key = epsk.identity, epsk.key
            self.offered_psks.append(
                _OfferedPsk(key, epsk.hash_name, "external", epsk.imported, wire, epsk.identity, 0)
            )

    def _extensions(self) -> list[Extension]:
        config = self.config
        out: list[Extension] = []
        if self.sni:
            out.append(ext(ExtensionType.server_name, ServerNameList.for_host(self.sni)))
        out.append(ext(ExtensionType.supported_groups, NamedGroupList(list(config.groups))))
        out.append(ext(ExtensionType.signature_algorithms, SignatureSchemeList(list(config.signature_schemes))))
        if config.alpn_protocols:
            out.append(ext(ExtensionType.application_layer_protocol_negotiation,
                           ProtocolNameList(list(config.alpn_protocols))))
        if config.record_size_limit is not None:
            out.append(ext(ExtensionType.record_size_limit, RecordSizeLimit(config.record_size_limit)))
        out.append(ext(ExtensionType.supported_versions, SupportedVersionsClient([TLS13])))
        out.append(ext(ExtensionType.key_share, KeyShareClientHello(
            [KeyShareEntry(g, s.key_exchange) for g, s in self.key_shares.items()])))
        # psk_dhe_ke only: every session keeps (EC)DHE + ML-KEM forward secrecy. Sent always, as OpenSSL and
        # Go do, because it also tells the server we can use its tickets.
        out.append(ext(ExtensionType.psk_key_exchange_modes, PskKeyExchangeModes([PskKeyExchangeMode.psk_dhe_ke])))
        if self.offered_psks:
            if self.config.external_psk is not None and self.config.external_psk.with_certificate:
                out.append(ext(ExtensionType.tls_cert_with_extern_psk))
            out.append(self._pre_shared_key_placeholder())  # RFC 8446 §4.2.11: last
        return out

    def _pre_shared_key_placeholder(self) -> Extension:
        offered = OfferedPsks(
            [PskIdentity(p.wire_identity, p.obfuscated_age) for p in self.offered_psks],
            [bytes(32 if p.hash_name == "sha256" else 48) for p in self.offered_psks],
        )
        return ext(ExtensionType.pre_shared_key, offered)

    def _encode_with_binders(self, hello: ClientHello, prefix_for_hash: bytes | None) -> bytes:
        """Encode the hello, computing each PSK binder over the truncated hello (RFC 8446 §4.2.11.2)."""
        raw = hello.encode()
        if not self.offered_psks:
            return raw
        binders_len = 2 + sum(1 + (32 if p.hash_name == "sha256" else 48) for p in self.offered_psks)
        truncated = raw[:-binders_len]
        binders = []
        for p in self.offered_psks:
            h = hashlib.new(p.hash_name)
            if prefix_for_hash is not None:
                h.update(message_hash(p.hash_name, self.client_hello1_raw))
                h.update(self.hello_retry_raw)
            h.update(truncated)
            early = KeySchedule(p.hash_name, p.psk)
            binder_key = early.binder_key(imported=p.imported, resumption=p.kind == "resumption")
            binders.append(finished_verify_data(p.hash_name, binder_key, h.digest()))
        raw = truncated + OfferedPsks([], binders).encode_binders()
        offered = OfferedPsks([PskIdentity(p.wire_identity, p.obfuscated_age) for p in self.offered_psks], binders)
        hello.extensions[-1] = ext(ExtensionType.pre_shared_key, offered)
        return raw

    # --- dispatch -----------------------------------------------------------------------------

    def handle(self, msg_type: int, body: bytes, raw: bytes) -> None:
        state = self.state
        if msg_type == HandshakeType.server_hello and state == "wait_server_hello":
            hello = ServerHello.decode(body)
            if hello.is_hello_retry_request:
                self.process_hello_retry_request(hello, raw)
            else:
                self.process_server_hello(hello, raw)
        elif msg_type == HandshakeType.encrypted_extensions and state == "wait_encrypted_extensions":
            self.process_encrypted_extensions(EncryptedExtensions.decode(body), raw)
        elif msg_type == HandshakeType.certificate_request and state == "wait_certificate_or_request":
            self.process_certificate_request(CertificateRequest.decode(body), raw)
        elif msg_type == HandshakeType.certificate and state in ("wait_certificate_or_request", "wait_certificate"):
            self.process_certificate(Certificate.decode(body), raw)
        elif msg_type == HandshakeType.certificate_verify and state == "wait_certificate_verify":
            self.process_certificate_verify(CertificateVerify.decode(body), raw)
        elif msg_type == HandshakeType.finished and state == "wait_finished":
            self.process_finished(Finished.decode(body), raw)
        elif msg_type == HandshakeType.new_session_ticket and state == "connected":
            self.process_new_session_ticket(NewSessionTicket.decode(body))
        else:
            raise unexpected_message(f"handshake message type {msg_type} in state {state}")

    # --- HelloRetryRequest (RFC 8446 §4.1.4) -----------------------------------------------

    def _check_common_server_hello(self, hello: ServerHello, allowed: frozenset[int], what: str) -> set[int]:
        assert self.client_hello is not None
        if hello.legacy_version != TLS12:
            raise TLSAlert(AlertDescription.protocol_version, f"{what} legacy_version 0x{hello.legacy_version:04x}")
        seen = check_extension_block(hello.extensions, what)
        sv = _find(hello, ExtensionType.supported_versions)
        if sv is None:
            raise TLSAlert(AlertDescription.protocol_version, "server does not speak TLS 1.3 (no supported_versions)")
        if SupportedVersionsServer.decode(sv).selected_version != TLS13:
            raise illegal_parameter("server selected a version we did not offer")
        if hello.legacy_session_id_echo != self.client_hello.legacy_session_id:
            raise illegal_parameter("legacy_session_id_echo does not match")
        if hello.cipher_suite not in self.config.cipher_suites:
            raise illegal_parameter(f"server chose cipher suite 0x{hello.cipher_suite:04x} we did not offer")
        if hello.legacy_compression_method != 0:
            raise illegal_parameter("non-null compression method")
        for t in seen:
            if t not in allowed:
                raise TLSAlert(AlertDescription.unsupported_extension, f"{what} carries extension 0x{t:04x}")
        return seen

    def process_hello_retry_request(self, hello: ServerHello, raw: bytes) -> None:
        assert self.client_hello is not None
        if self.hello_retry_raw:
            raise unexpected_message("a second HelloRetryRequest")
        self._check_common_server_hello(hello, _HRR_EXTENSIONS, "HelloRetryRequest")
        suite = CIPHER_SUITES[hello.cipher_suite]
        ks = _find(hello, ExtensionType.key_share)
        cookie = _find(hello, ExtensionType.cookie)
        selected: int | None = None
        if ks is not None:
            selected = KeyShareHelloRetryRequest.decode(ks).selected_group
            if selected not in self.config.groups or selected in self.key_shares:
                raise illegal_parameter(f"HelloRetryRequest asks for group {group_name(selected)}")
        elif cookie is None:
            raise illegal_parameter("HelloRetryRequest would not change the ClientHello")
        self.hello_retry_suite = hello.cipher_suite
        self.hello_retry_group = selected
        self.transcript.set_hash(suite.hash_name)
        self.transcript.restart_after_hello_retry()
        self.transcript.update(raw)
        self.hello_retry_raw = raw
        # RFC 8446 §4.1.4: drop PSKs whose hash does not fit the suite the server chose.
        self.offered_psks = [p for p in self.offered_psks if p.hash_name == suite.hash_name]
        new_extensions: list[Extension] = []
        for e in self.client_hello.extensions:
            if e.type == ExtensionType.key_share and selected is not None:
                self.key_shares = {selected: GROUPS[selected].client_generate()}
                e = ext(ExtensionType.key_share, KeyShareClientHello(
                    [KeyShareEntry(selected, self.key_shares[selected].key_exchange)]))
            elif e.type in (ExtensionType.pre_shared_key, ExtensionType.cookie):
                continue
            if e.type == ExtensionType.tls_cert_with_extern_psk and not self.offered_psks:
                continue
            new_extensions.append(e)
        if cookie is not None:
            new_extensions.append(ext(ExtensionType.cookie, Cookie(Cookie.decode(cookie).cookie)))
        if self.offered_psks:
            new_extensions.append(self._pre_shared_key_placeholder())
        self.client_hello.extensions = new_extensions
        raw2 = self._encode_with_binders(self.client_hello, prefix_for_hash=b"hrr")
        if self.config.compatibility_mode and not self.ccs_sent:
            self.conn.send_change_cipher_spec()
            self.ccs_sent = True
        self.transcript.update(raw2)
        self.conn.send_handshake(raw2)

    # --- ServerHello (RFC 8446 §4.1.3) --------------------------------------------------------

    def process_server_hello(self, hello: ServerHello, raw: bytes) -> None:
        seen = self._check_common_server_hello(hello, _SERVER_HELLO_EXTENSIONS, "ServerHello")
        if self.hello_retry_suite is not None and hello.cipher_suite != self.hello_retry_suite:
            raise illegal_parameter("ServerHello cipher suite differs from the HelloRetryRequest's")
        suite = CIPHER_SUITES[hello.cipher_suite]
        psk: bytes | None = None
        psk_raw = _find(hello, ExtensionType.pre_shared_key)
        if psk_raw is not None:
            index = PreSharedKeyServerHello.decode(psk_raw).selected_identity
            if index >= len(self.offered_psks):
                raise illegal_parameter("server selected a PSK identity we did not offer")
            chosen = self.offered_psks[index]
            if chosen.hash_name != suite.hash_name:
                raise illegal_parameter("selected PSK does not match the cipher suite's hash")
            self.selected_psk = chosen
            psk = chosen.psk
            cert_with_psk = ExtensionType.tls_cert_with_extern_psk in seen
            if cert_with_psk and not (chosen.kind == "external" and self.config.external_psk is not None
                                      and self.config.external_psk.with_certificate):
                raise TLSAlert(AlertDescription.unsupported_extension, "tls_cert_with_extern_psk not offered")
            self.server_sends_certificate = cert_with_psk
        elif ExtensionType.tls_cert_with_extern_psk in seen:
            raise illegal_parameter("tls_cert_with_extern_psk without pre_shared_key")
        ks_raw = _find(hello, ExtensionType.key_share)
        if ks_raw is None:
            # We offer only psk_dhe_ke, so a key share is always needed.
            raise TLSAlert(AlertDescription.missing_extension, "ServerHello has no key_share")
        server_share = KeyShareServerHello.decode(ks_raw).server_share
        share = self.key_shares.get(server_share.group)
        if share is None:
            raise illegal_parameter(f"server answered group {group_name(server_share.group)} we sent no share for")
        shared_secret = share.finish(server_share.key_exchange)
        self.key_shares.clear()
        self.group = server_share.group
        self.suite = suite
        if self.hello_retry_suite is None:
            self.transcript.set_hash(suite.hash_name)
        self.transcript.update(raw)
        schedule = KeySchedule(suite.hash_name, psk)
        schedule.enter_handshake(shared_secret)
        del shared_secret
        th = self.transcript.digest()
        self.client_hs_secret = schedule.derive_secret(b"c hs traffic", th)
        self.server_hs_secret = schedule.derive_secret(b"s hs traffic", th)
        self.schedule = schedule
        self.conn.set_read_secret(suite, self.server_hs_secret)
        self.state = "wait_encrypted_extensions"

    # --- EncryptedExtensions (RFC 8446 §4.3.1) ------------------------------------------------

    def process_encrypted_extensions(self, ee: EncryptedExtensions, raw: bytes) -> None:
        seen = check_extension_block(ee.extensions, "EncryptedExtensions")
        for t in seen:
            if t not in _ENCRYPTED_EXTENSIONS_ALLOWED:
                raise TLSAlert(AlertDescription.unsupported_extension, f"EncryptedExtensions carries 0x{t:04x}")
        for e in ee.extensions:
            if e.type == ExtensionType.server_name:
                empty_extension(e.data, "server_name")
                if self.sni is None:
                    raise TLSAlert(AlertDescription.unsupported_extension, "server_name acknowledged but not sent")
            elif e.type == ExtensionType.application_layer_protocol_negotiation:
                protocols = ProtocolNameList.decode(e.data).protocols
                if len(protocols) != 1 or protocols[0] not in self.config.alpn_protocols:
                    raise illegal_parameter("server selected an ALPN protocol we did not offer")
                self.alpn = protocols[0]
            elif e.type == ExtensionType.record_size_limit:
                if self.config.record_size_limit is None:
                    raise TLSAlert(AlertDescription.unsupported_extension, "record_size_limit not offered")
                limit = RecordSizeLimit.decode(e.data).limit
                if limit < 64:
                    raise illegal_parameter(f"record_size_limit {limit} below 64")
                self.conn.set_peer_record_size_limit(limit)
            elif e.type == ExtensionType.supported_groups:
                NamedGroupList.decode(e.data)  # the server's preferences: informative only
        self.transcript.update(raw)
        self.state = "wait_certificate_or_request" if self.server_sends_certificate else "wait_finished"

    # --- CertificateRequest, Certificate, CertificateVerify (RFC 8446 §4.3.2, §4.4.2, §4.4.3) ----

    def process_certificate_request(self, request: CertificateRequest, raw: bytes) -> None:
        if request.certificate_request_context:
            raise illegal_parameter("CertificateRequest context must be empty during the handshake")
        check_extension_block(request.extensions, "CertificateRequest")
        if _find_ext(request.extensions, ExtensionType.signature_algorithms) is None:
            raise TLSAlert(AlertDescription.missing_extension, "CertificateRequest without signature_algorithms")
        self.certificate_request = request
        self.transcript.update(raw)
        self.state = "wait_certificate"

    def process_certificate(self, certificate: Certificate, raw: bytes) -> None:
        if certificate.certificate_request_context:
            raise illegal_parameter("server Certificate has a request context")
        if not certificate.certificate_list:
            raise decode_error("server sent an empty certificate list")
        for entry in certificate.certificate_list:
            if entry.extensions:
                # We request neither OCSP stapling nor SCTs (RFC 8446 §4.4.2).
                raise TLSAlert(AlertDescription.unsupported_extension, "CertificateEntry extension not requested")
        chain = [e.cert_data for e in certificate.certificate_list]
        if self.config.verify_peer:
            if not self.config.trust_store:
                raise TLSAlert(AlertDescription.internal_error, "no trust store to verify the server with")
            self.server_certificate = chain_validation.verify_server_chain(
                chain, self.config.trust_store, self.config.server_name, now=_utc(self.config.clock()),
                profile=self.config.verify_profile,
            )
        else:
            try:
                self.server_certificate = x509.load_der_x509_certificate(chain[0])
            except ValueError:
                raise TLSAlert(AlertDescription.bad_certificate, "server certificate does not parse") from None
        self.transcript.update(raw)
        self.state = "wait_certificate_verify"

    def process_certificate_verify(self, verify: CertificateVerify, raw: bytes) -> None:
        if verify.algorithm not in self.config.signature_schemes:
            raise illegal_parameter(f"server signed with scheme 0x{verify.algorithm:04x} we did not offer")
        certificates.verify_signature(
            self.server_certificate.public_key(), verify.algorithm, verify.signature,
            certificates.certificate_verify_input(True, self.transcript.digest()),
            certificates.is_pss_certificate(self.server_certificate),
        )
        self.signature_scheme = verify.algorithm
        self.transcript.update(raw)
        self.state = "wait_finished"

    # --- Finished (RFC 8446 §4.4.4) and the client's flight ------------------------------------

    def process_finished(self, finished: Finished, raw: bytes) -> None:
        suite, schedule = self.suite, self.schedule
        assert suite is not None and schedule is not None
        if len(finished.verify_data) != suite.hash_len:
            raise decode_error("Finished has the wrong length")
        expected = finished_verify_data(suite.hash_name, self.server_hs_secret, self.transcript.digest())
        if not secrets_equal(expected, finished.verify_data):
            raise TLSAlert(AlertDescription.decrypt_error, "server Finished does not verify")
        self.transcript.update(raw)
        schedule.enter_master()
        th = self.transcript.digest()
        client_app = schedule.derive_secret(b"c ap traffic", th)
        server_app = schedule.derive_secret(b"s ap traffic", th)
        self.conn.set_read_secret(suite, server_app)
        self.send_client_flight()
        self.conn.set_write_secret(suite, client_app)
        self.resumption_master_secret = schedule.derive_secret(b"res master", self.transcript.digest())
        schedule.wipe()
        self.client_hs_secret = self.server_hs_secret = b""
        self.state = "connected"
        self.done = True
        self.conn.finish_handshake()
        psk = self.selected_psk
        self.conn.emit(HandshakeComplete(
            group=group_name(self.group) if self.group is not None else None,
            cipher_suite=suite.name,
            alpn_protocol=self.alpn.decode("ascii", "replace") if self.alpn else None,
            server_name=self.sni,
            resumed=psk is not None and psk.kind == "resumption",
            psk=psk.kind if psk else None,
            psk_identity=psk.external_identity if psk else None,
            peer_certificate=self.server_certificate,
            signature_scheme=signature_scheme_name(self.signature_scheme),
            hello_retry=bool(self.hello_retry_raw),
            client_hello_size=self.client_hello_size,
        ))

    def send_client_flight(self) -> None:
        suite = self.suite
        assert suite is not None
        if self.config.compatibility_mode and not self.ccs_sent:
            self.conn.send_change_cipher_spec()
            self.ccs_sent = True
        self.conn.set_write_secret(suite, self.client_hs_secret)
        if self.certificate_request is not None:
            self.send_client_certificate(self.certificate_request)
        finished = Finished(finished_verify_data(suite.hash_name, self.client_hs_secret, self.transcript.digest()))
        raw = finished.encode()
        self.transcript.update(raw)
        self.conn.send_handshake(raw)

    def send_client_certificate(self, request: CertificateRequest) -> None:
        chain = self.config.certificate_chain
        schemes_raw = _find_ext(request.extensions, ExtensionType.signature_algorithms)
        assert schemes_raw is not None
        peer_schemes = SignatureSchemeList.decode(schemes_raw).schemes
        scheme = chain.choose_signature_scheme(peer_schemes) if chain else None
        if chain is None or scheme is None:
            raw = Certificate(b"", []).encode()  # RFC 8446 §4.4.2: an empty list when we cannot comply
            self.transcript.update(raw)
            self.conn.send_handshake(raw)
            return
        raw = Certificate(b"", [CertificateEntry(der) for der in chain.der]).encode()
        self.transcript.update(raw)
        self.conn.send_handshake(raw)
        signature = chain.sign(scheme, certificates.certificate_verify_input(False, self.transcript.digest()))
        raw = CertificateVerify(scheme, signature).encode()
        self.transcript.update(raw)
        self.conn.send_handshake(raw)

    # --- NewSessionTicket (RFC 8446 §4.6.1) ---------------------------------------------------

    def process_new_session_ticket(self, nst: NewSessionTicket) -> None:
        if nst.ticket_lifetime > MAX_TICKET_LIFETIME:
            raise illegal_parameter("ticket lifetime over 7 days")
        self.tickets_received += 1
        if self.tickets_received > MAX_TICKETS_PER_CONNECTION or nst.ticket_lifetime == 0:
            return
        suite = self.suite
        assert suite is not None
        self.conn.emit(SessionTicketReceived(SessionTicket(
            ticket=nst.ticket,
            psk=resumption_psk(suite, self.resumption_master_secret, nst.ticket_nonce),
            cipher_suite=suite.code,
            ticket_age_add=nst.ticket_age_add,
            lifetime=nst.ticket_lifetime,
            received_at=self.config.clock(),
            server_name=self.sni,
            alpn_protocol=self.alpn,
        )))


def _find(hello: ServerHello, ext_type: int) -> bytes | None:
    return _find_ext(hello.extensions, ext_type)


def _find_ext(extensions: list[Extension], ext_type: int) -> bytes | None:
    for e in extensions:
        if e.type == ext_type:
            return e.data
    return None


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class TLSClient(TLSConnection):
    """A client-side connection; the ClientHello is ready in ``data_to_send`` as soon as it is made."""

    def __init__(self, config: Any, hello: ClientHello | None = None,
                 key_shares: dict[int, ClientKeyShare] | None = None) -> None:
        super().__init__(config, is_client=True)
        self.handshake = ClientHandshake(self)
        self._handshake = self.handshake
        if hello is None:
            self.handshake.start()
        else:
            self.handshake.start_with_hello(hello, key_shares or {})
