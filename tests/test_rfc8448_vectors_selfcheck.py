"""Internal-consistency checks of the transcribed RFC 8448 vectors (tests/vectors/rfc8448.py).

Uses only `cryptography` and the standard library (hashlib/hmac), never pqproxy, so a transcription error shows
up here rather than as a confusing failure in the engine's own tests.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.vectors.rfc8448 import RESUMED_0RTT, SERVER_RSA_KEY, SIMPLE_1RTT

SECTIONS = {"simple_1rtt": SIMPLE_1RTT, "resumed_0rtt": RESUMED_0RTT}
ZEROS = bytes(32)


def b(vectors: dict[str, str], name: str) -> bytes:
    return bytes.fromhex(vectors[name])


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def hkdf_label(label: str, context: bytes, length: int) -> bytes:
    full = b"tls13 " + label.encode()
    return length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context


def expand_label(secret: bytes, label: str, context: bytes, length: int) -> bytes:
    return hkdf_expand(secret, hkdf_label(label, context, length), length)


def raw_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def open_record(key: bytes, iv: bytes, seq: int, record: bytes) -> bytes:
    nonce = bytes(x ^ y for x, y in zip(iv, seq.to_bytes(12, "big"), strict=True))
    return AESGCM(key).decrypt(nonce, record[5:], record[:5])


@pytest.mark.parametrize("section", SECTIONS)
def test_x25519_keys_and_shared_secret(section: str) -> None:
    v = SECTIONS[section]
    client = X25519PrivateKey.from_private_bytes(b(v, "client_ephemeral_private"))
    server = X25519PrivateKey.from_private_bytes(b(v, "server_ephemeral_private"))
    assert raw_public(client) == b(v, "client_ephemeral_public")
    assert raw_public(server) == b(v, "server_ephemeral_public")
    ikm = b(v, "ecdhe_shared_secret")
    assert client.exchange(X25519PublicKey.from_public_bytes(b(v, "server_ephemeral_public"))) == ikm
    assert server.exchange(X25519PublicKey.from_public_bytes(b(v, "client_ephemeral_public"))) == ikm


def test_early_secret_from_zero_ikm() -> None:
    assert b(SIMPLE_1RTT, "early_secret_ikm") == ZEROS
    assert hkdf_extract(ZEROS, ZEROS) == b(SIMPLE_1RTT, "early_secret")


def test_resumption_psk_feeds_resumed_early_secret_and_binder() -> None:
    s, r = SIMPLE_1RTT, RESUMED_0RTT
    psk = expand_label(b(s, "resumption_master_secret"), "resumption", b(s, "ticket_nonce"), 32)
    assert psk == b(s, "resumption_psk") == b(r, "psk")
    early = hkdf_extract(ZEROS, psk)
    assert early == b(r, "early_secret")
    binder_key = expand_label(early, "res binder", sha256(b""), 32)
    assert binder_key == b(r, "binder_key")
    prefix = b(r, "client_hello_prefix")
    assert sha256(prefix) == b(r, "binder_hash")
    finished_key = expand_label(binder_key, "finished", b"", 32)
    assert finished_key == b(r, "binder_finished_key")
    binder = hmac.new(finished_key, sha256(prefix), hashlib.sha256).digest()
    assert binder == b(r, "binder")
    assert b(r, "client_hello") == prefix + bytes.fromhex("002120") + binder == b(r, "client_hello_record_payload")


@pytest.mark.parametrize("section", SECTIONS)
def test_handshake_key_schedule(section: str) -> None:
    v = SECTIONS[section]
    ch, sh = b(v, "client_hello"), b(v, "server_hello")
    assert b(v, "client_hello_record") == bytes.fromhex("160301") + len(ch).to_bytes(2, "big") + ch
    assert b(v, "server_hello_record") == bytes.fromhex("160303") + len(sh).to_bytes(2, "big") + sh

    assert b(v, "empty_hash") == sha256(b"")
    assert b(v, "hkdf_label_derived") == hkdf_label("derived", sha256(b""), 32)
    derived = expand_label(b(v, "early_secret"), "derived", sha256(b""), 32)
    assert derived == b(v, "derived_secret_for_handshake")
    handshake_secret = hkdf_extract(derived, b(v, "ecdhe_shared_secret"))
    assert handshake_secret == b(v, "handshake_secret")

    transcript = sha256(ch + sh)
    assert transcript == b(v, "handshake_hash_ch_sh")
    assert b(v, "c_hs_traffic_info") == hkdf_label("c hs traffic", transcript, 32)
    chts = expand_label(handshake_secret, "c hs traffic", transcript, 32)
    assert chts == b(v, "client_handshake_traffic_secret")
    shts = expand_label(handshake_secret, "s hs traffic", transcript, 32)
    assert shts == b(v, "server_handshake_traffic_secret")

    assert b(v, "hkdf_label_key") == hkdf_label("key", b"", 16)
    assert b(v, "hkdf_label_iv") == hkdf_label("iv", b"", 12)
    assert expand_label(shts, "key", b"", 16) == b(v, "server_handshake_write_key")
    assert expand_label(shts, "iv", b"", 12) == b(v, "server_handshake_write_iv")
    assert expand_label(chts, "key", b"", 16) == b(v, "client_handshake_write_key")
    assert expand_label(chts, "iv", b"", 12) == b(v, "client_handshake_write_iv")

    master_derived = expand_label(handshake_secret, "derived", sha256(b""), 32)
    assert master_derived == b(v, "derived_secret_for_master")
    assert hkdf_extract(master_derived, ZEROS) == b(v, "master_secret")


@pytest.mark.parametrize("section", SECTIONS)
def test_server_flight_finished_and_application_secrets(section: str) -> None:
    v = SECTIONS[section]
    key, iv = b(v, "server_handshake_write_key"), b(v, "server_handshake_write_iv")
    payload = b(v, "server_handshake_record_payload")
    assert open_record(key, iv, 0, b(v, "server_handshake_record")) == payload + b"\x16"

    ch_sh = b(v, "client_hello") + b(v, "server_hello")
    if section == "simple_1rtt":
        flight = b(v, "encrypted_extensions") + b(v, "certificate") + b(v, "certificate_verify")
    else:
        flight = b(v, "encrypted_extensions")
    assert payload == flight + b(v, "server_finished")

    finished_key = expand_label(b(v, "server_handshake_traffic_secret"), "finished", b"", 32)
    assert finished_key == b(v, "server_finished_key")
    verify_data = hmac.new(finished_key, sha256(ch_sh + flight), hashlib.sha256).digest()
    assert verify_data == b(v, "server_finished_verify_data")
    assert b(v, "server_finished") == bytes.fromhex("14000020") + verify_data

    transcript = sha256(ch_sh + payload)
    assert transcript == b(v, "handshake_hash_ch_sf")
    master = b(v, "master_secret")
    assert expand_label(master, "c ap traffic", transcript, 32) == b(v, "client_application_traffic_secret")
    assert expand_label(master, "s ap traffic", transcript, 32) == b(v, "server_application_traffic_secret")
    assert expand_label(master, "exp master", transcript, 32) == b(v, "exporter_master_secret")


def test_simple_certificate_verify_signature() -> None:
    v, k = SIMPLE_1RTT, {name: int(value, 16) for name, value in SERVER_RSA_KEY.items()}
    p, q, d, e, n = k["prime1"], k["prime2"], k["private_exponent"], k["public_exponent"], k["modulus"]
    assert p * q == n
    public_numbers = rsa.RSAPublicNumbers(e, n)
    numbers = rsa.RSAPrivateNumbers(p, q, d, k["exponent1"], k["exponent2"], k["coefficient"], public_numbers)
    public_key = numbers.private_key().public_key()
    cv = b(v, "certificate_verify")
    assert cv[4:6] == bytes.fromhex("0804")  # rsa_pss_rsae_sha256
    transcript = b(v, "client_hello") + b(v, "server_hello") + b(v, "encrypted_extensions") + b(v, "certificate")
    signed = b" " * 64 + b"TLS 1.3, server CertificateVerify\x00" + sha256(transcript)
    public_key.verify(cv[8:], signed, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())


@pytest.mark.parametrize("section", SECTIONS)
def test_client_finished_and_resumption_master(section: str) -> None:
    v = SECTIONS[section]
    transcript = b(v, "client_hello") + b(v, "server_hello") + b(v, "server_handshake_record_payload")
    if section == "resumed_0rtt":
        eoed = b(v, "end_of_early_data")
        early_key, early_iv = b(v, "client_early_write_key"), b(v, "client_early_write_iv")
        assert open_record(early_key, early_iv, 1, b(v, "end_of_early_data_record")) == eoed + b"\x16"
        transcript += eoed
    finished_key = expand_label(b(v, "client_handshake_traffic_secret"), "finished", b"", 32)
    assert finished_key == b(v, "client_finished_key")
    verify_data = hmac.new(finished_key, sha256(transcript), hashlib.sha256).digest()
    assert verify_data == b(v, "client_finished_verify_data")
    cf = b(v, "client_finished")
    assert cf == bytes.fromhex("14000020") + verify_data == b(v, "client_finished_record_payload")
    key, iv = b(v, "client_handshake_write_key"), b(v, "client_handshake_write_iv")
    assert open_record(key, iv, 0, b(v, "client_finished_record")) == cf + b"\x16"
    assert sha256(transcript + cf) == b(v, "handshake_hash_ch_cf")
    rms = expand_label(b(v, "master_secret"), "res master", sha256(transcript + cf), 32)
    assert rms == b(v, "resumption_master_secret")


@pytest.mark.parametrize("section", SECTIONS)
def test_application_records(section: str) -> None:
    v = SECTIONS[section]
    c_secret, s_secret = b(v, "client_application_traffic_secret"), b(v, "server_application_traffic_secret")
    ckey, civ = expand_label(c_secret, "key", b"", 16), expand_label(c_secret, "iv", b"", 12)
    skey, siv = expand_label(s_secret, "key", b"", 16), expand_label(s_secret, "iv", b"", 12)
    assert (ckey, civ) == (b(v, "client_application_write_key"), b(v, "client_application_write_iv"))
    assert (skey, siv) == (b(v, "server_application_write_key"), b(v, "server_application_write_iv"))
    server_seq = 0
    if section == "simple_1rtt":
        nst = b(v, "new_session_ticket")
        assert b(v, "new_session_ticket_record_payload") == nst
        assert open_record(skey, siv, 0, b(v, "new_session_ticket_record")) == nst + b"\x16"
        server_seq = 1
    else:
        secret = b(v, "client_early_traffic_secret")
        assert secret == expand_label(b(v, "early_secret"), "c e traffic", sha256(b(v, "client_hello")), 32)
        ekey, eiv = b(v, "client_early_write_key"), b(v, "client_early_write_iv")
        assert (ekey, eiv) == (expand_label(secret, "key", b"", 16), expand_label(secret, "iv", b"", 12))
        early = b(v, "early_application_data_payload")
        assert open_record(ekey, eiv, 0, b(v, "early_application_data_record")) == early + b"\x17"
    c_data, s_data = b(v, "client_application_data_payload"), b(v, "server_application_data_payload")
    assert open_record(ckey, civ, 0, b(v, "client_application_data_record")) == c_data + b"\x17"
    assert open_record(skey, siv, server_seq, b(v, "server_application_data_record")) == s_data + b"\x17"
    c_alert, s_alert = b(v, "client_alert_payload"), b(v, "server_alert_payload")
    assert c_alert == s_alert == bytes.fromhex("0100")
    assert open_record(ckey, civ, 1, b(v, "client_alert_record")) == c_alert + b"\x15"
    assert open_record(skey, siv, server_seq + 1, b(v, "server_alert_record")) == s_alert + b"\x15"


# (info key, label, transcript-hash key or None for an empty context, output length)
INFO_LABELS = [
    ("hkdf_label_finished", "finished", None, 32),
    ("c_hs_traffic_info", "c hs traffic", "handshake_hash_ch_sh", 32),
    ("s_hs_traffic_info", "s hs traffic", "handshake_hash_ch_sh", 32),
    ("c_ap_traffic_info", "c ap traffic", "handshake_hash_ch_sf", 32),
    ("s_ap_traffic_info", "s ap traffic", "handshake_hash_ch_sf", 32),
    ("exp_master_info", "exp master", "handshake_hash_ch_sf", 32),
    ("res_master_info", "res master", "handshake_hash_ch_cf", 32),
]


@pytest.mark.parametrize("section", SECTIONS)
def test_printed_hkdf_labels_and_plaintext_payloads(section: str) -> None:
    v = SECTIONS[section]
    for info_key, label, context_key, length in INFO_LABELS:
        context = b(v, context_key) if context_key else b""
        assert b(v, info_key) == hkdf_label(label, context, length), info_key
    assert b(v, "client_hello_record_payload") == b(v, "client_hello")
    assert b(v, "server_hello_record_payload") == b(v, "server_hello")
    if section == "simple_1rtt":
        assert b(v, "resumption_info") == hkdf_label("resumption", b(v, "ticket_nonce"), 32)
        nst = b(v, "new_session_ticket")
        assert nst[12:15] == b"\x02" + b(v, "ticket_nonce")  # ticket_nonce field of the NewSessionTicket
    else:
        transcript = sha256(b(v, "client_hello"))
        assert transcript == b(v, "handshake_hash_ch")
        assert b(v, "c_e_traffic_info") == hkdf_label("c e traffic", transcript, 32)
        assert b(v, "e_exp_master_info") == hkdf_label("e exp master", transcript, 32)
        early_exporter = expand_label(b(v, "early_secret"), "e exp master", transcript, 32)
        assert early_exporter == b(v, "early_exporter_master_secret")
        assert b(v, "end_of_early_data_record_payload") == b(v, "end_of_early_data") == bytes.fromhex("05000000")
