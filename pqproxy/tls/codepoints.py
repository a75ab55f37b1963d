"""IANA codepoints used by the engine (RFC 8446 §B, RFC 10024, draft-ietf-tls-mlkem, draft-ietf-tls-mldsa).

Values the engine does not know stay plain ints wherever the wire can carry them (extensions,
groups, signature schemes), so that probes can send and parsers can skip unknown codepoints.
"""

from __future__ import annotations

import enum


class ContentType(enum.IntEnum):
    change_cipher_spec = 20
    alert = 21
    handshake = 22
    application_data = 23


class HandshakeType(enum.IntEnum):
    client_hello = 1
    server_hello = 2
    new_session_ticket = 4
    end_of_early_data = 5
    encrypted_extensions = 8
    certificate = 11
    certificate_request = 13
    certificate_verify = 15
    finished = 20
    key_update = 24
    message_hash = 254


class ExtensionType(enum.IntEnum):
    server_name = 0
    max_fragment_length = 1
    status_request = 5
    supported_groups = 10
    ec_point_formats = 11
    signature_algorithms = 13
    use_srtp = 14
    heartbeat = 15
    application_layer_protocol_negotiation = 16
    signed_certificate_timestamp = 18
    client_certificate_type = 19
    server_certificate_type = 20
    padding = 21
    encrypt_then_mac = 22
    extended_master_secret = 23
    compress_certificate = 27
    record_size_limit = 28
    session_ticket = 35
    tls_cert_with_extern_psk = 33
    pre_shared_key = 41
    early_data = 42
    supported_versions = 43
    cookie = 44
    psk_key_exchange_modes = 45
    certificate_authorities = 47
    oid_filters = 48
    post_handshake_auth = 49
    signature_algorithms_cert = 50
    key_share = 51
    application_settings = 17613
    encrypted_client_hello = 0xFE0D
    renegotiation_info = 0xFF01


class NamedGroup(enum.IntEnum):
    secp256r1 = 0x0017
    secp384r1 = 0x0018
    secp521r1 = 0x0019
    x25519 = 0x001D
    x448 = 0x001E
    ffdhe2048 = 0x0100  # RFC 7919: offered by OpenSSL clients; named here so probes and captures can say so
    ffdhe3072 = 0x0101
    ffdhe4096 = 0x0102
    ffdhe6144 = 0x0103
    ffdhe8192 = 0x0104
    MLKEM512 = 0x0200
    MLKEM768 = 0x0201
    MLKEM1024 = 0x0202
    SecP256r1MLKEM768 = 0x11EB
    X25519MLKEM768 = 0x11EC
    SecP384r1MLKEM1024 = 0x11ED
    X25519Kyber768Draft00 = 0x6399


class SignatureScheme(enum.IntEnum):
    rsa_pkcs1_sha256 = 0x0401
    rsa_pkcs1_sha384 = 0x0501
    rsa_pkcs1_sha512 = 0x0601
    ecdsa_secp256r1_sha256 = 0x0403
    ecdsa_secp384r1_sha384 = 0x0503
    ecdsa_secp521r1_sha512 = 0x0603
    rsa_pss_rsae_sha256 = 0x0804
    rsa_pss_rsae_sha384 = 0x0805
    rsa_pss_rsae_sha512 = 0x0806
    ed25519 = 0x0807
    ed448 = 0x0808
    rsa_pss_pss_sha256 = 0x0809
    rsa_pss_pss_sha384 = 0x080A
    rsa_pss_pss_sha512 = 0x080B
    ecdsa_brainpoolP256r1tls13_sha256 = 0x081A  # RFC 8734
    ecdsa_brainpoolP384r1tls13_sha384 = 0x081B
    ecdsa_brainpoolP512r1tls13_sha512 = 0x081C
    mldsa44 = 0x0904
    mldsa65 = 0x0905
    mldsa87 = 0x0906


class CipherSuite(enum.IntEnum):
    TLS_AES_128_GCM_SHA256 = 0x1301
    TLS_AES_256_GCM_SHA384 = 0x1302
    TLS_CHACHA20_POLY1305_SHA256 = 0x1303
    TLS_EMPTY_RENEGOTIATION_INFO_SCSV = 0x00FF


class PskKeyExchangeMode(enum.IntEnum):
    psk_ke = 0
    psk_dhe_ke = 1


class KeyUpdateRequest(enum.IntEnum):
    update_not_requested = 0
    update_requested = 1


TLS13 = 0x0304
TLS12 = 0x0303
LEGACY_RECORD_VERSION = 0x0303

# RFC 8701: GREASE values are 0x?A?A with both bytes equal.
GREASE_VALUES: tuple[int, ...] = tuple(0x0A0A + 0x1010 * i for i in range(16))


def is_grease(value: int) -> bool:
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


# Groups that give post-quantum security: a "hybrid or ML-KEM" group, for require-hybrid policy.
POST_QUANTUM_GROUPS = frozenset(
    {
        NamedGroup.MLKEM512,
        NamedGroup.MLKEM768,
        NamedGroup.MLKEM1024,
        NamedGroup.SecP256r1MLKEM768,
        NamedGroup.X25519MLKEM768,
        NamedGroup.SecP384r1MLKEM1024,
    }
)

# HelloRetryRequest is a ServerHello with this random (RFC 8446 §4.1.3).
HELLO_RETRY_REQUEST_RANDOM = bytes.fromhex(
    "CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C"
)
# RFC 8446 §4.1.3: downgrade sentinels in ServerHello.random of TLS 1.2/1.1 servers.
DOWNGRADE_TLS12 = bytes.fromhex("444F574E47524401")
DOWNGRADE_TLS11 = bytes.fromhex("444F574E47524400")


def signature_scheme_name(scheme: int | None) -> str | None:
    if scheme is None:
        return None
    try:
        return SignatureScheme(scheme).name
    except ValueError:
        return f"0x{scheme:04x}"
