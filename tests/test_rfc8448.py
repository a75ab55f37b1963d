"""RFC 8448's traces reproduced by pqproxy's own key schedule, codec, record layer and server engine."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa, x25519

from pqproxy.tls import certificates as certificates_module
from pqproxy.tls import groups as groups_module
from pqproxy.tls.certificates import CertificateChain, certificate_verify_input, verify_signature
from pqproxy.tls.codepoints import ContentType, SignatureScheme
from pqproxy.tls.config import TLSConfig
from pqproxy.tls.key_schedule import (
    CIPHER_SUITES,
    KeySchedule,
    finished_verify_data,
    resumption_psk,
    traffic_key_iv,
)
from pqproxy.tls.messages import (
    Certificate,
    CertificateVerify,
    ClientHello,
    EncryptedExtensions,
    EndOfEarlyData,
    Finished,
    NewSessionTicket,
    ServerHello,
)
from pqproxy.tls.record import RecordCipher, RecordLayer
from pqproxy.tls.server import TLSServer
from tests.vectors.rfc8448 import RESUMED_0RTT, SERVER_RSA_KEY, SIMPLE_1RTT

AES128 = CIPHER_SUITES[0x1301]


def v(trace: dict[str, str], name: str) -> bytes:
    return bytes.fromhex(trace[name])


def sha256(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


# --- key schedule (RFC 8446 §7.1) --------------------------------------------------------------


@pytest.mark.parametrize("trace", [SIMPLE_1RTT, RESUMED_0RTT], ids=["1rtt", "resumed"])
def test_key_schedule_matches_trace(trace: dict[str, str]) -> None:
    psk = v(trace, "psk") if "psk" in trace else None
    schedule = KeySchedule("sha256", psk)
    assert schedule.secret == v(trace, "early_secret")
    if psk is not None:
        assert schedule.binder_key(resumption=True) == v(trace, "binder_key")
        ch_hash = sha256(v(trace, "client_hello"))
        assert ch_hash == v(trace, "handshake_hash_ch")
        assert schedule.derive_secret(b"c e traffic", ch_hash) == v(trace, "client_early_traffic_secret")
    schedule.enter_handshake(v(trace, "ecdhe_shared_secret"))
    assert schedule.secret == v(trace, "handshake_secret")
    th = sha256(v(trace, "client_hello"), v(trace, "server_hello"))
    assert th == v(trace, "handshake_hash_ch_sh")
    c_hs = schedule.derive_secret(b"c hs traffic", th)
    s_hs = schedule.derive_secret(b"s hs traffic", th)
    assert c_hs == v(trace, "client_handshake_traffic_secret")
    assert s_hs == v(trace, "server_handshake_traffic_secret")
    assert traffic_key_iv(AES128, s_hs) == (v(trace, "server_handshake_write_key"),
                                            v(trace, "server_handshake_write_iv"))
    assert traffic_key_iv(AES128, c_hs) == (v(trace, "client_handshake_write_key"),
                                            v(trace, "client_handshake_write_iv"))

    server_flight = [v(trace, "encrypted_extensions")]
    if "certificate" in trace:
        server_flight += [v(trace, "certificate"), v(trace, "certificate_verify")]
    th_before_sf = sha256(v(trace, "client_hello"), v(trace, "server_hello"), *server_flight)
    assert finished_verify_data("sha256", s_hs, th_before_sf) == v(trace, "server_finished_verify_data")

    schedule.enter_master()
    assert schedule.secret == v(trace, "master_secret")
    th_sf = sha256(v(trace, "client_hello"), v(trace, "server_hello"), *server_flight, v(trace, "server_finished"))
    assert th_sf == v(trace, "handshake_hash_ch_sf")
    assert schedule.derive_secret(b"c ap traffic", th_sf) == v(trace, "client_application_traffic_secret")
    assert schedule.derive_secret(b"s ap traffic", th_sf) == v(trace, "server_application_traffic_secret")
    assert schedule.derive_secret(b"exp master", th_sf) == v(trace, "exporter_master_secret")

    client_flight = [v(trace, "end_of_early_data")] if "end_of_early_data" in trace else []
    assert finished_verify_data("sha256", c_hs, sha256(
        v(trace, "client_hello"), v(trace, "server_hello"), *server_flight, v(trace, "server_finished"), *client_flight
    )) == v(trace, "client_finished_verify_data")
    th_cf = sha256(v(trace, "client_hello"), v(trace, "server_hello"), *server_flight, v(trace, "server_finished"),
                   *client_flight, v(trace, "client_finished"))
    assert schedule.derive_secret(b"res master", th_cf) == v(trace, "resumption_master_secret")


def test_resumption_psk_and_binder() -> None:
    t = SIMPLE_1RTT
    psk = resumption_psk(AES128, v(t, "resumption_master_secret"), v(t, "ticket_nonce"))
    assert psk == v(t, "resumption_psk") == v(RESUMED_0RTT, "psk")
    r = RESUMED_0RTT
    binder_key = KeySchedule("sha256", psk).binder_key(resumption=True)
    assert sha256(v(r, "client_hello_prefix")) == v(r, "binder_hash")
    assert finished_verify_data("sha256", binder_key, v(r, "binder_hash")) == v(r, "binder")
    # The complete hello is the prefix with the binders list appended (RFC 8446 §4.2.11.2).
    assert v(r, "client_hello") == v(r, "client_hello_prefix") + b"\x00\x21\x20" + v(r, "binder")


# --- codec: every message decodes and re-encodes to the same bytes -----------------------------------

_MESSAGES = [
    ("client_hello", ClientHello), ("server_hello", ServerHello), ("encrypted_extensions", EncryptedExtensions),
    ("certificate", Certificate), ("certificate_verify", CertificateVerify), ("server_finished", Finished),
    ("client_finished", Finished), ("new_session_ticket", NewSessionTicket), ("end_of_early_data", EndOfEarlyData),
]


_MESSAGE_CASES = [
    pytest.param(trace, name, cls, id=f"{trace_id}-{name}")
    for trace, trace_id in ((SIMPLE_1RTT, "1rtt"), (RESUMED_0RTT, "resumed"))
    for name, cls in _MESSAGES
    if name in trace  # the resumed trace has no Certificate, the simple one no EndOfEarlyData
]


@pytest.mark.parametrize(("trace", "name", "cls"), _MESSAGE_CASES)
def test_messages_round_trip(trace: dict[str, str], name: str, cls: type) -> None:
    raw = v(trace, name)
    assert raw[0] == cls.msg_type
    message = cls.decode(raw[4:])
    assert message.encode() == raw


# --- records: protect and unprotect exactly as the trace -----------------------------------------

_PROTECTED = [
    # (trace, record, secret protecting it, sequence number, content type)
    (SIMPLE_1RTT, "server_handshake_record", "server_handshake_traffic_secret", 0, ContentType.handshake),
    (SIMPLE_1RTT, "client_finished_record", "client_handshake_traffic_secret", 0, ContentType.handshake),
    (SIMPLE_1RTT, "new_session_ticket_record", "server_application_traffic_secret", 0, ContentType.handshake),
    (SIMPLE_1RTT, "server_application_data_record", "server_application_traffic_secret", 1,
     ContentType.application_data),
    (SIMPLE_1RTT, "client_application_data_record", "client_application_traffic_secret", 0,
     ContentType.application_data),
    (SIMPLE_1RTT, "client_alert_record", "client_application_traffic_secret", 1, ContentType.alert),
    (SIMPLE_1RTT, "server_alert_record", "server_application_traffic_secret", 2, ContentType.alert),
    (RESUMED_0RTT, "server_handshake_record", "server_handshake_traffic_secret", 0, ContentType.handshake),
    (RESUMED_0RTT, "end_of_early_data_record", "client_early_traffic_secret", 1, ContentType.handshake),
    (RESUMED_0RTT, "client_finished_record", "client_handshake_traffic_secret", 0, ContentType.handshake),
]


@pytest.mark.parametrize(("trace", "record", "secret", "seq", "content_type"), _PROTECTED,
                         ids=[f"{'1rtt' if p[0] is SIMPLE_1RTT else 'resumed'}-{p[1]}" for p in _PROTECTED])
def test_record_protection(trace: dict[str, str], record: str, secret: str, seq: int, content_type: int) -> None:
    wire = v(trace, record)
    payload_key = record.replace("_record", "_record_payload")
    payload = v(trace, payload_key if payload_key in trace else record.replace("_record", "_payload"))
    reader = RecordLayer()
    reader.read_cipher = RecordCipher(AES128, v(trace, secret))
    reader.read_cipher.seq = seq
    reader.feed(wire)
    assert reader.next_record() == (content_type, payload)
    writer = RecordLayer()
    writer.write_cipher = RecordCipher(AES128, v(trace, secret))
    writer.write_cipher.seq = seq
    assert writer.encode(content_type, payload) == wire


@pytest.mark.parametrize("trace", [SIMPLE_1RTT, RESUMED_0RTT], ids=["1rtt", "resumed"])
def test_plaintext_records(trace: dict[str, str]) -> None:
    layer = RecordLayer()
    layer.feed(v(trace, "client_hello_record") + v(trace, "server_hello_record"))
    assert layer.next_record() == (ContentType.handshake, v(trace, "client_hello"))
    assert layer.next_record() == (ContentType.handshake, v(trace, "server_hello"))
    assert layer.next_record() is None


# --- the server engine replays §3 ----------------------------------------------------------------


def _rfc8448_server_chain() -> CertificateChain:
    k = {name: int(value, 16) for name, value in SERVER_RSA_KEY.items()}
    public = rsa.RSAPublicNumbers(k["public_exponent"], k["modulus"])
    private = rsa.RSAPrivateNumbers(k["prime1"], k["prime2"], k["private_exponent"], k["exponent1"],
                                    k["exponent2"], k["coefficient"], public).private_key()
    cert_der = Certificate.decode(v(SIMPLE_1RTT, "certificate")[4:]).certificate_list[0].cert_data
    from cryptography import x509

    # The trace's key is RSA-1024, which CertificateChain.load refuses (too weak to deploy); build it directly.
    return CertificateChain([x509.load_der_x509_certificate(cert_der)], [cert_der], private)


def test_server_engine_replays_simple_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    t = SIMPLE_1RTT
    monkeypatch.setattr(certificates_module, "MIN_RSA_BITS", 1024)  # the trace's RSA key is 1024 bits
    server_key = x25519.X25519PrivateKey.from_private_bytes(v(t, "server_ephemeral_private"))
    monkeypatch.setattr(groups_module.x25519.X25519PrivateKey, "generate", staticmethod(lambda: server_key))
    server_random = ServerHello.decode(v(t, "server_hello")[4:]).random
    entropy = iter([server_random])
    config = TLSConfig(
        certificate_chain=_rfc8448_server_chain(), groups=(0x001D,), cipher_suites=(0x1301,), session_tickets=0,
        entropy=lambda n: next(entropy) if n == 32 else bytes(n),
    )
    server = TLSServer(config)
    assert server.receive_data(v(t, "client_hello_record")) == []
    out = server.data_to_send()

    # ServerHello byte for byte, as the trace's record.
    sh_record = v(t, "server_hello_record")
    assert out[: len(sh_record)] == sh_record
    # The rest is the server's protected flight; the trace's handshake keys open it.
    reader = RecordLayer()
    reader.read_cipher = RecordCipher(AES128, v(t, "server_handshake_traffic_secret"))
    reader.feed(out[len(sh_record):])
    content_type, flight = reader.next_record()  # type: ignore[misc]
    assert content_type == ContentType.handshake
    ee_len = int.from_bytes(flight[1:4], "big") + 4
    cert_len = int.from_bytes(flight[ee_len + 1 : ee_len + 4], "big") + 4
    assert flight[ee_len : ee_len + cert_len] == v(t, "certificate")
    cv_raw = flight[ee_len + cert_len :]
    cv_len = int.from_bytes(cv_raw[1:4], "big") + 4
    cv = CertificateVerify.decode(cv_raw[4:cv_len])
    assert cv.algorithm == SignatureScheme.rsa_pss_rsae_sha256
    transcript = sha256(v(t, "client_hello"), v(t, "server_hello"), flight[: ee_len + cert_len])
    # RSA-PSS is randomised, so the signature differs from the trace's; it must verify under the trace's key.
    leaf = config.certificate_chain.certificates[0]
    verify_signature(leaf.public_key(), cv.algorithm, cv.signature, certificate_verify_input(True, transcript))
