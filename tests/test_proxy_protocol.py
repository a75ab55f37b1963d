"""PROXY protocol v2: exact encodings, strict decoding, round trips, and interop with a real HAProxy.

The HAProxy tests run Debian's haproxy (2.6) on loopback, both ways: HAProxy accepting our headers
(``accept-proxy``; it checks our CRC32c and echoes the addresses and authority it understood), and HAProxy
terminating TLS and sending its own header with ``send-proxy-v2`` (``proxy-v2-options ssl,cert-cn,...``) to a
listener of ours that decodes it. Without haproxy they skip; with CI=true they fail.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pqproxy.certs import write_dev_pki
from pqproxy.proxy.proxy_protocol import (
    PP2_CLIENT_CERT_CONN,
    PP2_CLIENT_CERT_SESS,
    PP2_CLIENT_SSL,
    PP2_SUBTYPE_SSL_CIPHER,
    PP2_SUBTYPE_SSL_CN,
    PP2_SUBTYPE_SSL_GROUP,
    PP2_SUBTYPE_SSL_VERSION,
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_CRC32C,
    PP2_TYPE_NOOP,
    PP2_TYPE_SSL,
    PP2_TYPE_UNIQUE_ID,
    SIGNATURE,
    Command,
    Family,
    Transport,
    crc32c,
    decode_v2,
    encode_local,
    encode_tlv,
    encode_v2,
    parse_ssl_tlv,
    tls_tlvs,
    v2_header_length,
)
from tests.procs import stop_process, wait_listening

# --- encoding ------------------------------------------------------------------------------------------------


def test_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C catalogue's check value
    assert crc32c(b"") == 0


def test_ipv4_exact_bytes() -> None:
    header = encode_v2(("192.168.0.1", 56324), ("192.168.0.11", 443))
    assert header == (
        SIGNATURE + b"\x21\x11\x00\x0c" + bytes([192, 168, 0, 1, 192, 168, 0, 11]) + struct.pack("!HH", 56324, 443)
    )


def test_ipv6_exact_bytes() -> None:
    header = encode_v2(("2001:db8::1", 1), ("2001:db8::2", 65535))
    assert header[12:16] == b"\x21\x21\x00\x24"
    assert header[16:32] == bytes.fromhex("20010db8000000000000000000000001")
    assert header[32:48] == bytes.fromhex("20010db8000000000000000000000002")
    assert header[48:] == b"\x00\x01\xff\xff"


def test_local_exact_bytes() -> None:
    assert encode_local() == SIGNATURE + b"\x20\x00\x00\x00"
    decoded = decode_v2(encode_local([(PP2_TYPE_NOOP, b"")], crc32c=True))
    assert decoded.command == Command.LOCAL and decoded.family == Family.UNSPEC
    assert decoded.source is None and decoded.crc_verified is True


def test_mapped_and_mixed_families() -> None:
    mapped = decode_v2(encode_v2(("::ffff:10.0.0.1", 1000), ("10.0.0.2", 443)))
    assert mapped.family == Family.INET and mapped.source == ("10.0.0.1", 1000)
    mixed = decode_v2(encode_v2(("10.0.0.1", 1000), ("2001:db8::2", 443)))
    assert mixed.family == Family.INET6
    assert mixed.source == ("::ffff:a00:1", 1000) and mixed.destination == ("2001:db8::2", 443)


@pytest.mark.parametrize(
    ("source", "destination"),
    [
        (("localhost", 1), ("10.0.0.1", 2)),
        (("10.0.0.1", 65536), ("10.0.0.2", 2)),
        (("10.0.0.1", -1), ("10.0.0.2", 2)),
        (("10.0.0.1", 1), ("10.0.0.300", 2)),
    ],
)
def test_encode_refuses_bad_addresses(source: tuple[str, int], destination: tuple[str, int]) -> None:
    with pytest.raises(ValueError):
        encode_v2(source, destination)


def test_encode_refuses_bad_tlvs() -> None:
    with pytest.raises(ValueError):
        encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), [(0x100, b"")])
    with pytest.raises(ValueError):
        encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), [(0xE0, bytes(65536))])
    with pytest.raises(ValueError):  # the whole body would exceed the 16-bit length
        encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), [(0xE0, bytes(40000)), (0xE1, bytes(40000))])
    with pytest.raises(ValueError):
        encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), [(PP2_TYPE_CRC32C, bytes(4))])


# --- the TLS TLVs --------------------------------------------------------------------------------------------


def test_tls_tlvs_full() -> None:
    tlvs = tls_tlvs("TLSv1.3", "TLS_AES_128_GCM_SHA256", "X25519MLKEM768", "api.example", "h2", True, "client-1")
    assert [t for t, _ in tlvs] == [PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_SSL]
    assert tlvs[0][1] == b"h2" and tlvs[1][1] == b"api.example"
    value = tlvs[2][1]
    assert value[0] == PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
    assert value[1:5] == b"\x00\x00\x00\x00"
    assert value[5:] == (
        encode_tlv(PP2_SUBTYPE_SSL_VERSION, b"TLSv1.3")
        + encode_tlv(PP2_SUBTYPE_SSL_CN, b"client-1")
        + encode_tlv(PP2_SUBTYPE_SSL_CIPHER, b"TLS_AES_128_GCM_SHA256")
        + encode_tlv(PP2_SUBTYPE_SSL_GROUP, b"X25519MLKEM768")
    )
    info = decode_v2(encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), tlvs)).ssl
    assert info is not None
    assert (info.version, info.cipher, info.group, info.cn) == (
        "TLSv1.3",
        "TLS_AES_128_GCM_SHA256",
        "X25519MLKEM768",
        "client-1",
    )
    assert info.client_cert_verified is True


def test_tls_tlvs_minimal_and_flags() -> None:
    tlvs = tls_tlvs("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", None, None, None, None, "ignored")
    assert [t for t, _ in tlvs] == [PP2_TYPE_SSL]
    info = parse_ssl_tlv(tlvs[0][1])
    assert info.client == PP2_CLIENT_SSL and info.verify != 0  # "non-zero otherwise"
    assert info.cn is None and info.group is None and info.client_cert_verified is None
    unverified = parse_ssl_tlv(tls_tlvs("TLSv1.3", "X", None, None, None, False, "c")[0][1])
    assert unverified.client == PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
    assert unverified.verify != 0 and unverified.client_cert_verified is False
    resumed = parse_ssl_tlv(tls_tlvs("TLSv1.3", "X", None, None, None, True, "c", resumed=True)[0][1])
    assert resumed.client == PP2_CLIENT_SSL | PP2_CLIENT_CERT_SESS and resumed.verify == 0


def test_tls_tlvs_refuse_non_ascii_and_long_sni() -> None:
    with pytest.raises(ValueError):
        tls_tlvs("TLSv1.3", "TLS_AES_128_GCM_SHA256", "X25519\u00e9", None, None, None, None)
    with pytest.raises(ValueError):
        tls_tlvs("TLSv1.3", "TLS_AES_128_GCM_SHA256", None, "a" * 256, None, None, None)


# --- strict decoding -----------------------------------------------------------------------------------------

GOOD = encode_v2(
    ("192.0.2.1", 40000),
    ("198.51.100.2", 443),
    tls_tlvs("TLSv1.3", "TLS_AES_128_GCM_SHA256", "X25519MLKEM768", "localhost", "h2", True, "client"),
    crc32c=True,
)


def _with_body(body: bytes, ver_cmd: int = 0x21, fam: int = 0x11) -> bytes:
    return SIGNATURE + bytes((ver_cmd, fam)) + struct.pack("!H", len(body)) + body


ADDR4 = bytes(8) + b"\x00\x01\x00\x02"


def _ssl_value(client: int, subs: bytes) -> bytes:
    return struct.pack("!BI", client, 0) + subs


BAD_HEADERS = {
    "wrong signature": b"\r\n\r\n\x00\r\nQUIX\n" + GOOD[12:],
    "version 1 byte": _with_body(ADDR4, ver_cmd=0x11),
    "command 2": _with_body(ADDR4, ver_cmd=0x22),
    "family 4": _with_body(ADDR4, fam=0x41),
    "transport 3": _with_body(ADDR4, fam=0x13),
    "inet without transport": _with_body(ADDR4, fam=0x10),
    "short address block": _with_body(ADDR4[:-1]),
    "short ipv6 block": _with_body(bytes(35), fam=0x21),
    "TLV header cut": _with_body(ADDR4 + b"\xe0\x00"),
    "TLV value overruns": _with_body(ADDR4 + b"\xe0\x00\x05abc"),
    "two CRC32C": _with_body(ADDR4 + encode_tlv(PP2_TYPE_CRC32C, bytes(4)) * 2),
    "CRC32C of 3 bytes": _with_body(ADDR4 + encode_tlv(PP2_TYPE_CRC32C, bytes(3))),
    "CRC32C mismatch": _with_body(ADDR4 + encode_tlv(PP2_TYPE_CRC32C, b"\x01\x02\x03\x04")),
    "SSL value too short": _with_body(ADDR4 + encode_tlv(PP2_TYPE_SSL, b"\x01\x00\x00\x00")),
    "SSL sub-TLV overruns": _with_body(ADDR4 + encode_tlv(PP2_TYPE_SSL, _ssl_value(1, b"\x21\x00\x09TLSv1.3"))),
    "SSL without version": _with_body(ADDR4 + encode_tlv(PP2_TYPE_SSL, _ssl_value(1, b""))),
    "SSL undefined client bit": _with_body(
        ADDR4 + encode_tlv(PP2_TYPE_SSL, _ssl_value(0x09, encode_tlv(PP2_SUBTYPE_SSL_VERSION, b"TLSv1.3")))
    ),
    "SSL non-ASCII cipher": _with_body(
        ADDR4
        + encode_tlv(
            PP2_TYPE_SSL,
            _ssl_value(1, encode_tlv(PP2_SUBTYPE_SSL_VERSION, b"TLSv1.3") + encode_tlv(0x23, "\u00e9".encode())),
        )
    ),
    "SSL duplicate version": _with_body(
        ADDR4 + encode_tlv(PP2_TYPE_SSL, _ssl_value(1, encode_tlv(PP2_SUBTYPE_SSL_VERSION, b"TLSv1.3") * 2))
    ),
    "SSL empty CN": _with_body(
        ADDR4
        + encode_tlv(
            PP2_TYPE_SSL,
            _ssl_value(1, encode_tlv(PP2_SUBTYPE_SSL_VERSION, b"TLSv1.3") + encode_tlv(PP2_SUBTYPE_SSL_CN, b"")),
        )
    ),
    "authority not UTF-8": _with_body(ADDR4 + encode_tlv(PP2_TYPE_AUTHORITY, b"\xff\xfe")),
    "authority too long": _with_body(ADDR4 + encode_tlv(PP2_TYPE_AUTHORITY, b"a" * 256)),
    "two authorities": _with_body(ADDR4 + encode_tlv(PP2_TYPE_AUTHORITY, b"a") * 2),
    "empty ALPN": _with_body(ADDR4 + encode_tlv(PP2_TYPE_ALPN, b"")),
    "unique id too long": _with_body(ADDR4 + encode_tlv(PP2_TYPE_UNIQUE_ID, bytes(129))),
    "trailing byte": GOOD + b"\x00",
    "truncated": GOOD[:-1],
    "only the signature": SIGNATURE,
    "empty": b"",
}


@pytest.mark.parametrize("name", list(BAD_HEADERS))
def test_decode_refuses(name: str) -> None:
    with pytest.raises(ValueError):
        decode_v2(BAD_HEADERS[name])


def test_decode_good() -> None:
    header = decode_v2(GOOD)
    assert header.command == Command.PROXY and header.family == Family.INET and header.transport == Transport.STREAM
    assert header.source == ("192.0.2.1", 40000) and header.destination == ("198.51.100.2", 443)
    assert header.authority == "localhost" and header.alpn == b"h2" and header.crc_verified is True
    assert header.length == len(GOOD)


def test_crc_can_be_reported_instead_of_enforced() -> None:
    corrupted = bytearray(GOOD)
    corrupted[17] ^= 0x01  # one bit of the source address
    with pytest.raises(ValueError, match="CRC32C"):
        decode_v2(bytes(corrupted))
    header = decode_v2(bytes(corrupted), verify_crc=False)
    assert header.crc_verified is False and header.source == ("192.1.2.1", 40000)


def test_length_bound() -> None:
    big = encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), [(0xE0, bytes(20000))])
    with pytest.raises(ValueError, match="limit"):
        decode_v2(big)
    assert decode_v2(big, max_length=len(big)).tlv(0xE0) == bytes(20000)
    with pytest.raises(ValueError, match="limit"):
        v2_header_length(big[:16])


def test_header_length_on_prefixes() -> None:
    for cut in range(16):
        assert v2_header_length(GOOD[:cut]) is None
    assert v2_header_length(GOOD[:16]) == len(GOOD)
    assert v2_header_length(GOOD + b"GET / HTTP/1.1\r\n") == len(GOOD)
    with pytest.raises(ValueError):
        v2_header_length(b"GET / HTTP/1.1\r\n")  # refused at once, not after 16 bytes
    with pytest.raises(ValueError):
        v2_header_length(b"\x16\x03\x01")
    with pytest.raises(ValueError):
        v2_header_length(SIGNATURE + b"\x11\x11\x00\x0c")  # the version nibble


def test_unix_and_unspec_families() -> None:
    src = b"/run/client.sock".ljust(108, b"\x00")
    dst = b"/run/server.sock".ljust(108, b"\x00")
    header = decode_v2(_with_body(src + dst, fam=0x31))
    assert header.family == Family.UNIX and header.source is None
    assert header.unix_source == b"/run/client.sock" and header.unix_destination == b"/run/server.sock"
    unspec = decode_v2(_with_body(encode_tlv(0xE0, b"x"), fam=0x00))
    assert unspec.family == Family.UNSPEC and unspec.tlv(0xE0) == b"x"
    # LOCAL with an address block: the block is skipped (the real endpoints count), the TLVs still parse.
    local = decode_v2(_with_body(ADDR4 + encode_tlv(0xE1, b"y"), ver_cmd=0x20))
    assert local.command == Command.LOCAL and local.source is None and local.tlv(0xE1) == b"y"


# --- properties ----------------------------------------------------------------------------------------------

ipv4 = st.ip_addresses(v=4).map(str)


def _not_ipv4_mapped(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not isinstance(address, ipaddress.IPv6Address) or address.ipv4_mapped is None


ipv6 = st.ip_addresses(v=6).filter(_not_ipv4_mapped).map(str)  # IPv4-mapped ones are written as IPv4
ports = st.integers(0, 65535)
plain_types = st.integers(0, 255).filter(
    lambda t: t not in (PP2_TYPE_CRC32C, PP2_TYPE_SSL, PP2_TYPE_AUTHORITY, PP2_TYPE_ALPN, PP2_TYPE_UNIQUE_ID)
)
plain_tlvs = st.lists(st.tuples(plain_types, st.binary(max_size=200)), max_size=8)
ascii_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
utf8_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=40)


@st.composite
def tls_tlv_lists(draw: st.DrawFn) -> list[tuple[int, bytes]]:
    return tls_tlvs(
        draw(st.sampled_from(["TLSv1.3", "TLSv1.2"])),
        draw(ascii_text),
        draw(st.none() | ascii_text),
        draw(st.none() | st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,20}){0,3}", fullmatch=True)),
        draw(st.none() | ascii_text),
        draw(st.none() | st.booleans()),
        draw(st.none() | utf8_text),
        resumed=draw(st.booleans()),
    )


@settings(max_examples=300, deadline=None)
@given(
    family=st.sampled_from([4, 6]),
    data=st.data(),
    tlvs=plain_tlvs,
    tls=st.none() | tls_tlv_lists(),
    with_crc=st.booleans(),
)
def test_round_trip(
    family: int, data: st.DataObject, tlvs: list[tuple[int, bytes]], tls: list[tuple[int, bytes]] | None, with_crc: bool
) -> None:
    addresses = ipv4 if family == 4 else ipv6
    source = (data.draw(addresses), data.draw(ports))
    destination = (data.draw(addresses), data.draw(ports))
    all_tlvs = (tls or []) + tlvs
    encoded = encode_v2(source, destination, all_tlvs, crc32c=with_crc)
    header = decode_v2(encoded, max_length=len(encoded))
    assert header.source == source and header.destination == destination
    assert header.family == (Family.INET if family == 4 else Family.INET6)
    expected = all_tlvs + ([(PP2_TYPE_CRC32C, header.tlv(PP2_TYPE_CRC32C) or b"")] if with_crc else [])
    assert header.tlvs == expected
    assert header.crc_verified is (True if with_crc else None)
    assert v2_header_length(encoded + b"payload", max_length=len(encoded)) == len(encoded)


@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_mutations_only_raise_value_error(data: st.DataObject) -> None:
    raw = bytearray(GOOD)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        decode_v2(bytes(raw[:cut]), verify_crc=data.draw(st.booleans()))
    except ValueError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_value_error(blob: bytes) -> None:
    for candidate in (blob, SIGNATURE + blob, SIGNATURE + b"\x21" + blob):
        try:
            decode_v2(candidate)
        except ValueError:
            pass


def test_every_truncation_is_refused() -> None:
    for cut in range(len(GOOD)):
        with pytest.raises(ValueError):
            decode_v2(GOOD[:cut])


# --- a real HAProxy ------------------------------------------------------------------------------------------

HOST = "127.0.0.1"
STEP = 10.0


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if os.access(p, os.X_OK)), None)
    if found:
        return found
    message = "haproxy not installed (apt-get install haproxy): the PROXY protocol interop tests need it"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class HAProxy:
    accept_port: int  # frontend with accept-proxy: answers with what it read from our header
    tls_port: int  # TLS frontend that forwards with send-proxy-v2 to `backend`
    backend: socket.socket  # our listener, HAProxy's server
    pki: dict[str, Path]




@pytest.fixture(scope="module")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HAProxy]:
    binary = haproxy_binary()
    work = tmp_path_factory.mktemp("haproxy")
    pki = write_dev_pki(work / "pki", alg="ecdsa", names=("localhost", HOST))
    combined = work / "server-combined.pem"
    combined.write_bytes(pki["server"].read_bytes() + pki["server_key"].read_bytes())
    backend = socket.create_server((HOST, 0))
    backend.settimeout(STEP)
    accept_port, tls_port = _free_port(), _free_port()
    config = work / "haproxy.cfg"
    config.write_text(
        f"""global
    maxconn 64
defaults
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend pp_in
    mode http
    bind {HOST}:{accept_port} accept-proxy
    http-request return status 200 content-type text/plain lf-string "src=%[src] sport=%[src_port] dst=%[dst] \
dport=%[dst_port] authority=%[fc_pp_authority]"
frontend tls_in
    mode tcp
    bind {HOST}:{tls_port} ssl crt {combined} ca-file {pki["ca"]} verify optional
    unique-id-format pqproxy-%[src_port]
    default_backend to_us
backend to_us
    mode tcp
    server us {HOST}:{backend.getsockname()[1]} send-proxy-v2 \
proxy-v2-options ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,crc32c,unique-id
"""
    )
    check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True, timeout=STEP)
    assert check.returncode == 0, check.stdout + check.stderr
    log = work / "haproxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_listening(accept_port, proc, log, timeout=STEP)
        wait_listening(tls_port, proc, log, timeout=STEP)
        yield HAProxy(accept_port, tls_port, backend, pki)
    finally:
        stop_process(proc)
        backend.close()


def _ask_haproxy(port: int, header: bytes) -> bytes:
    """Send `header` and an HTTP request; the body HAProxy answers (b"" when it dropped the connection)."""
    with socket.create_connection((HOST, port), timeout=STEP) as s:
        s.sendall(header + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = b""
        try:
            while chunk := s.recv(4096):
                response += chunk
        except ConnectionResetError:
            pass
    return response.partition(b"\r\n\r\n")[2]


@pytest.mark.interop
def test_haproxy_accepts_our_headers(haproxy: HAProxy) -> None:
    tlvs = tls_tlvs("TLSv1.3", "TLS_AES_128_GCM_SHA256", "X25519MLKEM768", "localhost", "h2", True, "client")
    v4 = _ask_haproxy(haproxy.accept_port, encode_v2(("203.0.113.7", 51234), ("192.0.2.10", 8443), tlvs, crc32c=True))
    assert v4 == b"src=203.0.113.7 sport=51234 dst=192.0.2.10 dport=8443 authority=localhost"
    v6 = _ask_haproxy(haproxy.accept_port, encode_v2(("2001:db8::1", 1), ("2001:db8::2", 65535), tlvs))
    assert v6 == b"src=2001:db8::1 sport=1 dst=2001:db8::2 dport=65535 authority=localhost"
    local = _ask_haproxy(haproxy.accept_port, encode_local(crc32c=True))
    assert local.startswith(b"src=127.0.0.1 ") and f"dport={haproxy.accept_port} ".encode() in local


@pytest.mark.interop
def test_haproxy_refuses_a_bad_checksum(haproxy: HAProxy) -> None:
    header = bytearray(encode_v2(("203.0.113.7", 51234), ("192.0.2.10", 8443), crc32c=True))
    header[-1] ^= 0x01
    assert _ask_haproxy(haproxy.accept_port, bytes(header)) == b""


@pytest.mark.interop
@pytest.mark.parametrize("client_cert", [False, True])
def test_we_decode_haproxy_headers(haproxy: HAProxy, client_cert: bool) -> None:
    received: dict[str, bytes] = {}

    def serve_one() -> None:
        conn, _ = haproxy.backend.accept()
        with conn:
            conn.settimeout(STEP)
            buf = b""
            while (n := v2_header_length(buf)) is None or len(buf) < n + 4:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                buf += chunk
            received["data"] = buf

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    ctx = ssl.create_default_context(cafile=str(haproxy.pki["ca"]))
    if client_cert:
        ctx.load_cert_chain(str(haproxy.pki["client"]), str(haproxy.pki["client_key"]))
    with (
        socket.create_connection((HOST, haproxy.tls_port), timeout=STEP) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"ping")
        local = tls.getsockname()[:2]
        cipher = tls.cipher()
        version = tls.version()
        thread.join(STEP)
    assert not thread.is_alive()
    data = received["data"]
    length = v2_header_length(data)
    assert length is not None
    header = decode_v2(data[:length])
    assert data[length:] == b"ping"
    assert header.command == Command.PROXY and header.crc_verified is True
    assert header.source == local and header.destination == (HOST, haproxy.tls_port)
    assert header.authority == "localhost"
    assert header.tlv(PP2_TYPE_UNIQUE_ID) == f"pqproxy-{local[1]}".encode()
    info = header.ssl
    assert info is not None and cipher is not None
    assert info.version == version and info.cipher == cipher[0]
    if client_cert:
        assert info.client == PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
        assert info.verify == 0 and info.cn == "client" and info.client_cert_verified is True
    else:
        assert info.client == PP2_CLIENT_SSL and info.cn is None and info.client_cert_verified is None
