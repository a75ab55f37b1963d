"""captures/ and the pcap reader: real hellos, then every way a hello's bytes can be cut and shuffled on the wire.

First the committed captures (made by ``python -m pqproxy.probe.captures``; not rerun here): each parses,
says what the real client really sends, and the README table is exactly what the files give. Then
synthetic captures written with scapy: a hello split over TCP segments and over TLS records, segments out
of order, retransmitted and overlapping, a capture that starts mid-connection, sequence numbers that
wrap, Ethernet padding, other link types, holes, and the bounds. A hypothesis property cuts and shuffles
a stream at random and asks for the same bytes back.
"""

from __future__ import annotations

import itertools
import json
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, Ether
from scapy.packet import Packet, Padding, Raw

from pqproxy.probe import captures, go_hello, pcap
from pqproxy.probe.captures import CLIENTS, MANIFEST, README, render_table, table_in
from pqproxy.probe.pcap import (
    load_client_hello,
    read_client_hellos,
    summarise,
    trim_to_first_connection,
    write_pcap,
)
from pqproxy.probe.profiles import build_probe_hello
from pqproxy.tls.codepoints import POST_QUANTUM_GROUPS, ExtensionType, NamedGroup, is_grease
from pqproxy.tls.extensions import (
    KeyShareClientHello,
    KeyShareServerHello,
    NamedGroupList,
    SignatureSchemeList,
    SupportedVersionsServer,
)
from pqproxy.tls.groups import DEFAULT_GROUPS, group_name
from pqproxy.tls.hello import HelloSpec, build_client_hello, client_hello_records
from pqproxy.tls.messages import ClientHello, Extension, ServerHello
from pqproxy.tls.server import TLSServer
from tests.tls_helpers import DevPKI, handshake_messages, parse_records, server_config, server_hello_of

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
SNI = "pqproxy.test"
X25519MLKEM768 = int(NamedGroup.X25519MLKEM768)
X25519 = int(NamedGroup.x25519)
MLDSA = {0x0904, 0x0905, 0x0906}  # draft-ietf-tls-mldsa: mldsa44, mldsa65, mldsa87

# -- the committed captures -------------------------------------------------------------------------------


def _first(name: str) -> pcap.CapturedHello:
    hellos = read_client_hellos(CAPTURES / name)
    assert hellos, f"{name}: no ClientHello"
    return hellos[0]


def _extension(message: bytes, ext_type: int) -> bytes:
    return next(e.data for e in ClientHello.decode(message[4:]).extensions if e.type == ext_type)


def _schemes(message: bytes, ext_type: int = ExtensionType.signature_algorithms) -> list[int]:
    return SignatureSchemeList.decode(_extension(message, ext_type)).schemes


def _groups_and_shares(message: bytes) -> tuple[list[int], list[tuple[int, int]]]:
    hello = ClientHello.decode(message[4:])
    by_type = {e.type: e.data for e in hello.extensions}
    groups = NamedGroupList.decode(by_type[ExtensionType.supported_groups]).groups
    shares = KeyShareClientHello.decode(by_type[ExtensionType.key_share]).client_shares
    return groups, [(s.group, len(s.key_exchange)) for s in shares]


def test_the_captures_are_there_and_each_holds_one_connection_with_one_hello() -> None:
    files = sorted(p.name for p in CAPTURES.glob("*.pcap"))
    assert files == sorted(c.file for c in CLIENTS)
    manifest = json.loads((CAPTURES / MANIFEST).read_text())
    for name in files:
        hellos = read_client_hellos(CAPTURES / name)
        assert len(hellos) == 1, f"{name}: trimmed to the first connection, so exactly one hello"
        hello = hellos[0]
        assert hello.client.host == hello.server.host == "127.0.0.1"
        decoded = hello.decode()
        assert decoded.encode() == hello.message  # the codec round-trips real hellos byte for byte
        assert summarise(hello)["server_name"] == SNI
        assert manifest[name]["client"]


def test_chromium_sends_a_large_post_quantum_hello_with_grease() -> None:
    hello = _first("chromium.pcap")
    facts = summarise(hello)
    groups, shares = _groups_and_shares(hello.message)
    assert "Chromium" in json.loads((CAPTURES / MANIFEST).read_text())["chromium.pcap"]["client"]
    # REFERENCE.md §1: GREASE, X25519MLKEM768, X25519, P-256, P-384; shares GREASE, X25519MLKEM768, X25519.
    assert facts["supported_groups"] == ["GREASE", "X25519MLKEM768", "X25519", "secp256r1", "secp384r1"]
    assert facts["key_shares"] == [("GREASE", 1), ("X25519MLKEM768", 1216), ("X25519", 32)]
    assert groups[1] == X25519MLKEM768 and (X25519MLKEM768, 1216) in shares and (X25519, 32) in shares
    assert facts["grease"]
    assert facts["extensions"][0] == facts["extensions"][-1] == "GREASE"
    assert "encrypted_client_hello" in facts["extensions"]  # the GREASE ECH extension
    assert facts["alpn"] == ["h2", "http/1.1"]
    assert facts["size"] > 1500  # no longer fits in one 1500-byte-MTU segment
    assert facts["records"] == 1 and facts["record_bytes"] == facts["size"] + 5


def test_node26_openssl35_offers_x25519mlkem768_first_with_two_shares() -> None:
    facts = summarise(_first("node26-openssl35.pcap"))
    assert facts["supported_groups"][:2] == ["X25519MLKEM768", "X25519"]
    assert facts["key_shares"] == [("X25519MLKEM768", 1216), ("X25519", 32)]
    assert not facts["grease"]
    assert facts["size"] > 1500


def test_pqproxy_client_sends_its_default_groups() -> None:
    facts = summarise(_first("pqproxy-client.pcap"))
    assert facts["supported_groups"] == [group_name(g) for g in DEFAULT_GROUPS]
    assert facts["key_shares"] == [("X25519MLKEM768", 1216), ("X25519", 32)]
    assert facts["supported_versions"] == ["TLS1.3"]


def test_classical_hello_has_no_post_quantum_group_and_is_small() -> None:
    hello = _first("classical.pcap")
    groups, shares = _groups_and_shares(hello.message)
    assert not set(groups) & POST_QUANTUM_GROUPS
    assert [g for g, _ in shares] == [X25519]
    assert len(hello.message) < 600  # REFERENCE.md §1: a classical hello is about 250-600 bytes
    node = _first("node26-openssl35.pcap")
    assert len(node.message) - len(hello.message) > 1184  # the ML-KEM-768 key is the difference


# -- Firefox ESR (captured) --------------------------------------------------------------------------------


def test_firefox_esr_offers_x25519mlkem768_by_default_with_three_shares() -> None:
    hello = _first("firefox-esr.pcap")
    facts = summarise(hello)
    client = json.loads((CAPTURES / MANIFEST).read_text())["firefox-esr.pcap"]["client"]
    assert client.startswith("Mozilla Firefox 153.8.0esr") and "firefox-esr" in client
    # Debian's Firefox ESR 153, no pref touched: the hybrid first, then classical and FFDHE; three shares.
    assert facts["supported_groups"] == ["X25519MLKEM768", "X25519", "secp256r1", "secp384r1", "secp521r1",
                                         "ffdhe2048", "ffdhe3072"]
    assert facts["key_shares"] == [("X25519MLKEM768", 1216), ("X25519", 32), ("secp256r1", 65)]
    assert facts["size"] == 1890 and facts["records"] == 1 and facts["record_bytes"] == 1895
    assert facts["supported_versions"] == ["TLS1.3", "TLS1.2"]
    assert facts["alpn"] == ["h2", "http/1.1"]
    assert not facts["grease"]  # NSS sends no GREASE values
    assert len(hello.decode().legacy_session_id) == 32


def test_firefox_esr_signature_schemes_name_no_ml_dsa() -> None:
    message = _first("firefox-esr.pcap").message
    assert _schemes(message) == [0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601,
                                 0x0203, 0x0201]
    assert not MLDSA & set(_schemes(message))
    # delegated_credentials (RFC 9345, 0x0022): ECDSA and the SHA-1 one, no ML-DSA either
    assert SignatureSchemeList.decode(_extension(message, 0x0022)).schemes == [0x0403, 0x0503, 0x0603, 0x0203]


def test_firefox_esr_extensions_and_suites() -> None:
    hello = _first("firefox-esr.pcap")
    facts = summarise(hello)
    assert facts["extensions"] == [
        "server_name", "extended_master_secret", "renegotiation_info", "supported_groups", "ec_point_formats",
        "session_ticket", "application_layer_protocol_negotiation", "status_request", "0x0022",
        "signed_certificate_timestamp", "key_share", "supported_versions", "signature_algorithms",
        "psk_key_exchange_modes", "record_size_limit", "compress_certificate", "encrypted_client_hello",
    ]
    assert hello.decode().cipher_suites[:3] == [0x1301, 0x1303, 0x1302]  # NSS puts ChaCha20 second
    assert facts["cipher_suites"] == 16
    assert _extension(hello.message, ExtensionType.record_size_limit) == (2**14 + 1).to_bytes(2, "big")
    ech = _extension(hello.message, ExtensionType.encrypted_client_hello)
    assert ech[0] == 0 and len(ech) == 281  # an outer ECH (GREASE: no ECH config was known for pqproxy.test)


# -- Go 1.26 (built from source, not captured) --------------------------------------------------------------


def test_go126_is_marked_as_built_not_captured() -> None:
    entry = json.loads((CAPTURES / MANIFEST).read_text())["go126.pcap"]
    assert "not captured" in entry["client"] and "Go 1.26" in entry["client"]
    assert "NOT CAPTURED" in entry["how"]
    assert "handshake_client.go" in entry["source"] and "defaults.go" in entry["source"]
    assert "built from Go 1.26 source defaults, not captured" in (CAPTURES / README).read_text()


def test_go126_offers_the_go_126_groups_and_two_shares_from_one_x25519_key() -> None:
    hello = _first("go126.pcap")
    facts = summarise(hello)
    assert facts["supported_groups"] == ["X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024", "X25519",
                                         "secp256r1", "secp384r1", "secp521r1"]
    assert facts["key_shares"] == [("X25519MLKEM768", 1216), ("X25519", 32)]
    shares = KeyShareClientHello.decode(_extension(hello.message, ExtensionType.key_share)).client_shares
    assert shares[0].key_exchange[1184:] == shares[1].key_exchange  # the hybrid's X25519 key, reused
    assert facts["size"] == 1499 and facts["record_bytes"] == 1504 and facts["records"] == 1
    assert facts["supported_versions"] == ["TLS1.3", "TLS1.2"]


def test_go126_suites_schemes_and_extensions_are_the_documented_defaults() -> None:
    hello = _first("go126.pcap")
    decoded = hello.decode()
    facts = summarise(hello)
    assert decoded.cipher_suites == [0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC009, 0xC013, 0xC00A,
                                     0xC014, 0x1301, 0x1302, 0x1303]
    assert list(go_hello.CIPHER_SUITES) == decoded.cipher_suites
    assert _schemes(hello.message) == [0x0804, 0x0403, 0x0807, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0503,
                                       0x0603]
    assert _schemes(hello.message, ExtensionType.signature_algorithms_cert) == [*_schemes(hello.message),
                                                                               0x0201, 0x0203]
    # Go 1.26 names no ML-DSA scheme: that is Go 1.27 (golang/go#78888, #81199), whatever REFERENCE.md §4 says.
    assert not MLDSA & set(_schemes(hello.message))
    assert not MLDSA & set(_schemes(hello.message, ExtensionType.signature_algorithms_cert))
    assert not facts["grease"]
    assert not any(is_grease(e.type) for e in decoded.extensions)
    assert facts["extensions"] == [
        "server_name", "ec_point_formats", "renegotiation_info", "extended_master_secret",
        "signed_certificate_timestamp", "status_request", "supported_groups", "signature_algorithms",
        "signature_algorithms_cert", "supported_versions", "key_share",
    ]  # no session_ticket, psk_key_exchange_modes or ALPN: tls.Dial has no session cache and no NextProtos
    assert decoded.legacy_version == 0x0303 and decoded.legacy_compression_methods == b"\x00"
    assert len(decoded.legacy_session_id) == 32
    assert _extension(hello.message, ExtensionType.status_request) == b"\x01\x00\x00\x00\x00"
    assert _extension(hello.message, ExtensionType.ec_point_formats) == b"\x01\x00"


def test_go126_capture_is_what_go_hello_builds() -> None:
    captured = _first("go126.pcap").decode()
    built = go_hello.build_go126_client_hello(SNI).hello
    assert [e.type for e in built.extensions] == [e.type for e in captured.extensions]
    for ours, theirs in zip(built.extensions, captured.extensions, strict=True):
        if ours.type != ExtensionType.key_share:
            assert ours.data == theirs.data, ours.type
    assert built.cipher_suites == captured.cipher_suites
    assert len(built.encode()) == len(captured.encode())
    with_alpn = go_hello.build_go126_client_hello(SNI, alpn=("h2", "http/1.1")).hello
    types = [e.type for e in with_alpn.extensions]
    assert types.index(ExtensionType.application_layer_protocol_negotiation) == types.index(
        ExtensionType.signature_algorithms_cert) + 1  # where marshalMsg puts it


def test_go126_records_use_the_tls10_record_version() -> None:
    records = go_hello.build_go126_client_hello(SNI).records()
    assert records[:3] == b"\x16\x03\x01" and len(records) == 1504


def test_pqproxy_server_engine_answers_the_built_go_hello_with_x25519mlkem768(pki: DevPKI) -> None:
    built = go_hello.build_go126_client_hello("localhost")
    server = TLSServer(server_config(pki))
    server.receive_data(built.records())
    server_hello, _ = server_hello_of(server.data_to_send())
    by_type = {e.type: e.data for e in server_hello.extensions}
    assert SupportedVersionsServer.decode(by_type[ExtensionType.supported_versions]).selected_version == 0x0304
    share = KeyShareServerHello.decode(by_type[ExtensionType.key_share]).server_share
    assert share.group == X25519MLKEM768 and len(share.key_exchange) == 1120
    assert server_hello.cipher_suite == 0x1301  # the client's first TLS 1.3 suite
    assert len(built.key_shares[X25519MLKEM768].finish(share.key_exchange)) == 64  # ML-KEM ss || X25519 ss


def test_go126_file_holds_pqproxys_server_hello_for_x25519mlkem768() -> None:
    from scapy.layers.inet import TCP
    from scapy.utils import rdpcap

    packets = rdpcap(str(CAPTURES / "go126.pcap"))
    flight = b"".join(bytes(p[TCP].payload) for p in packets if p[TCP].sport == 443 and bytes(p[TCP].payload))
    content_type, payload = parse_records(flight)[0]
    (msg_type, body), *_ = handshake_messages(payload)
    assert (content_type, msg_type) == (22, 2)
    server_hello = ServerHello.decode(body)
    key_share = next(e.data for e in server_hello.extensions if e.type == ExtensionType.key_share)
    assert KeyShareServerHello.decode(key_share).server_share.group == X25519MLKEM768


# -- the new captures as replay profiles and how they are made ------------------------------------------------


@pytest.mark.parametrize("name", ["go126", "firefox-esr"])
def test_new_captures_replay_byte_for_byte(name: str) -> None:
    probe = build_probe_hello(f"replay:{name}", None)
    assert probe.encode() == load_client_hello(CAPTURES / f"{name}.pcap")
    assert not probe.readable  # replayed: the private keys are not in the file
    assert X25519MLKEM768 in probe.groups


def test_building_go126_needs_no_browser_server_or_root(tmp_path: Path) -> None:
    manifest = captures.capture_all(tmp_path, ["go126"])
    assert list(manifest) == ["go126.pcap"] and manifest["go126.pcap"]["source"] == go_hello.GO_SOURCES
    [hello] = read_client_hellos(tmp_path / "go126.pcap")
    assert summarise(hello)["key_shares"] == [("X25519MLKEM768", 1216), ("X25519", 32)]
    assert "`go126.pcap`" in render_table(tmp_path)
    with pytest.raises(captures.CaptureError, match="unknown client"):
        captures.capture_all(tmp_path, ["netscape"])


def test_a_missing_firefox_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PQPROXY_FIREFOX", raising=False)
    monkeypatch.setattr(captures.shutil, "which", lambda name: None)
    with pytest.raises(captures.CaptureError, match=r"apt-get install --no-install-recommends firefox-esr"):
        captures.firefox_binary()


def test_firefox_profile_keeps_tls_defaults_and_resolves_to_loopback(tmp_path: Path) -> None:
    prefs = captures.FIREFOX_PREFS
    assert prefs["network.dns.forceResolve"] == "127.0.0.1"
    assert not [name for name in prefs if name.startswith(("security.tls.", "security.ssl", "network.http.http3"))]
    assert prefs["network.captive-portal-service.enabled"] is False
    assert prefs["network.connectivity-service.enabled"] is False
    assert prefs["app.normandy.enabled"] is False and prefs["toolkit.telemetry.enabled"] is False


def test_readme_table_is_what_the_files_say() -> None:
    table = table_in((CAPTURES / README).read_text())
    assert table is not None, "captures/README.md lost its table markers"
    assert table == render_table(CAPTURES), "captures/README.md is stale: run python -m pqproxy.probe.captures"


def test_load_client_hello_gives_the_first_hello() -> None:
    raw = load_client_hello(CAPTURES / "chromium.pcap")
    assert raw == _first("chromium.pcap").message
    assert raw[0] == 1 and int.from_bytes(raw[1:4], "big") == len(raw) - 4


# -- synthetic captures -----------------------------------------------------------------------------------

CLIENT = ("127.0.0.1", 40000)
SERVER = ("127.0.0.1", 443)


def _hello(**spec: Any) -> bytes:
    return build_client_hello(HelloSpec(server_name=SNI, grease=True, alpn=[b"h2"], **spec)).encode()


HELLO = _hello()  # X25519MLKEM768 + X25519 shares: about 1.5 KB


def _records(message: bytes, fragments: Sequence[int] | None = None) -> bytes:
    return client_hello_records(message, fragments)


def _packet(src: tuple[str, int], dst: tuple[str, int], seq: int, payload: bytes = b"", flags: str = "PA",
            *, link: str = "ether") -> Packet:
    if ":" in src[0]:
        net: Packet = IPv6(src=src[0], dst=dst[0])
    else:
        net = IP(src=src[0], dst=dst[0])
    pkt = net / TCP(sport=src[1], dport=dst[1], flags=flags, seq=seq % (1 << 32), ack=1)
    if payload:
        pkt = pkt / Raw(payload)
    if link == "sll":
        return CookedLinux() / pkt
    frame = Ether() / pkt
    if len(frame) < 60:  # as a NIC delivers it: Ethernet pads short frames, IP's length says where data ends
        frame = frame / Padding(b"\x00" * (60 - len(frame)))
    return frame


def _conversation(pieces: Sequence[tuple[int, bytes]], *, isn: int = 1000, syn: bool = True,
                  client: tuple[str, int] = CLIENT, server: tuple[str, int] = SERVER,
                  server_reply: bytes = b"", link: str = "ether") -> list[Packet]:
    """Packets of one connection: SYN, SYN-ACK, then (offset, bytes) client pieces in the order given."""
    packets = []
    if syn:
        packets.append(_packet(client, server, isn, flags="S", link=link))
        packets.append(_packet(server, client, 5000, flags="SA", link=link))
    packets += [_packet(client, server, isn + 1 + offset, data, link=link) for offset, data in pieces]
    if server_reply:
        packets.append(_packet(server, client, 5001, server_reply, link=link))
    return packets


def _cut(stream: bytes, cuts: Sequence[int]) -> list[tuple[int, bytes]]:
    edges = [0, *sorted(set(c for c in cuts if 0 < c < len(stream))), len(stream)]
    return [(a, stream[a:b]) for a, b in itertools.pairwise(edges)]


def _write(tmp_path: Path, packets: list[Packet], name: str = "t.pcap") -> Path:
    return write_pcap(tmp_path / name, packets)


def test_one_segment_one_record(tmp_path: Path) -> None:
    stream = _records(HELLO)
    [found] = read_client_hellos(_write(tmp_path, _conversation([(0, stream)])))
    assert found.message == HELLO
    assert (found.records, found.record_bytes, found.segments) == (1, len(HELLO) + 5, 1)
    assert found.client == pcap.Endpoint(*CLIENT) and found.server == pcap.Endpoint(*SERVER)


def test_hello_split_over_several_tcp_segments(tmp_path: Path) -> None:
    stream = _records(HELLO)
    pieces = _cut(stream, [1, 700, 1400])  # a 1-byte first segment too (REFERENCE.md §3 tiny-first-segment)
    [found] = read_client_hellos(_write(tmp_path, _conversation(pieces)))
    assert found.message == HELLO and found.segments == 4 and found.records == 1


def test_hello_split_over_several_tls_records(tmp_path: Path) -> None:
    # Fragments of 1 and 2 bytes split the 4-byte handshake header itself across three records.
    stream = _records(HELLO, [1, 2, 300, 16])
    [found] = read_client_hellos(_write(tmp_path, _conversation([(0, stream)])))
    assert found.message == HELLO
    assert found.records == 5 and found.record_bytes == len(stream) == len(HELLO) + 5 * 5
    assert summarise(found)["records"] == 5
    assert summarise(found.message)["records"] == 1  # bare bytes: the minimum layout


def test_records_and_segments_cut_independently(tmp_path: Path) -> None:
    stream = _records(HELLO, [500, 500])
    pieces = _cut(stream, [3, 503, 506, 1100])  # segment edges inside record headers
    [found] = read_client_hellos(_write(tmp_path, _conversation(pieces)))
    assert found.message == HELLO and found.records == 3 and found.segments == 5


def test_out_of_order_retransmitted_and_overlapping_segments(tmp_path: Path) -> None:
    stream = _records(HELLO, [900])
    pieces = _cut(stream, [100, 600, 1200])
    overlap = (50, stream[50:650])  # straddles two segments
    shuffled = [pieces[3], pieces[1], overlap, pieces[0], pieces[1], pieces[2], pieces[3]]
    packets = _conversation(shuffled, server_reply=b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")
    [found] = read_client_hellos(_write(tmp_path, packets))  # the ServerHello-led server flow is not a hello
    assert found.message == HELLO and found.records == 2


def test_first_copy_wins_when_a_retransmission_differs(tmp_path: Path) -> None:
    stream = _records(HELLO)
    pieces = _cut(stream, [800])
    garbled = (800, bytes(len(pieces[1][1])))
    [found] = read_client_hellos(_write(tmp_path, _conversation([pieces[0], pieces[1], garbled])))
    assert found.message == HELLO


def test_capture_started_mid_connection_with_the_second_segment_first(tmp_path: Path) -> None:
    pieces = _cut(_records(HELLO), [700])
    [found] = read_client_hellos(_write(tmp_path, _conversation([pieces[1], pieces[0]], syn=False)))
    assert found.message == HELLO


@pytest.mark.parametrize("isn", [(1 << 32) - 1, (1 << 32) - 600, (1 << 32) - 1200])
def test_sequence_numbers_that_wrap(tmp_path: Path, isn: int) -> None:
    pieces = _cut(_records(HELLO), [500, 1000])
    for syn in (True, False):
        packets = _conversation([pieces[2], pieces[0], pieces[1]], isn=isn, syn=syn)
        [found] = read_client_hellos(_write(tmp_path, packets, f"wrap-{syn}.pcap"))
        assert found.message == HELLO


def test_ipv6_and_linux_cooked_captures(tmp_path: Path) -> None:
    pieces = _cut(_records(HELLO), [600])
    v6 = _conversation(pieces, client=("::1", 40001), server=("::1", 443))
    [found] = read_client_hellos(_write(tmp_path, v6, "v6.pcap"))
    assert found.message == HELLO and str(found.client) == "[::1]:40001"
    sll = _conversation(pieces, link="sll")
    [found] = read_client_hellos(_write(tmp_path, sll, "sll.pcap"))
    assert found.message == HELLO


def test_two_connections_in_capture_order_and_trimming_keeps_the_first(tmp_path: Path) -> None:
    other = _hello(key_shares=(X25519,))
    first = _conversation([(0, _records(HELLO))], client=("127.0.0.1", 40001))
    second = _conversation(_cut(_records(other), [10]), client=("127.0.0.1", 40002))
    path = _write(tmp_path, first + second)
    assert [h.message for h in read_client_hellos(path)] == [HELLO, other]
    assert load_client_hello(path) == HELLO
    kept = trim_to_first_connection(path, tmp_path / "trimmed.pcap")
    assert kept == len(first)
    assert [h.message for h in read_client_hellos(tmp_path / "trimmed.pcap")] == [HELLO]


def test_a_hole_means_no_hello(tmp_path: Path) -> None:
    pieces = _cut(_records(HELLO), [500, 1000])
    path = _write(tmp_path, _conversation([pieces[0], pieces[2]]))
    assert read_client_hellos(path) == []
    with pytest.raises(ValueError, match=r"t\.pcap: no TLS ClientHello"):
        load_client_hello(path)


def test_no_client_hello_is_a_clear_error(tmp_path: Path) -> None:
    http = _conversation([(0, b"GET / HTTP/1.1\r\nHost: pqproxy.test\r\n\r\n")])
    server_hello_only = _conversation([(0, b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")])
    for name, packets in (("http.pcap", http), ("sh.pcap", server_hello_only), ("empty.pcap", [])):
        path = _write(tmp_path, packets, name)
        with pytest.raises(ValueError, match=name.replace(".", r"\.") + ": no TLS ClientHello"):
            load_client_hello(path)
    with pytest.raises(ValueError, match=r"missing\.pcap"):
        load_client_hello(tmp_path / "missing.pcap")
    (tmp_path / "junk.pcap").write_bytes(b"this is not a capture at all")
    with pytest.raises(ValueError, match=r"junk\.pcap: not a pcap"):
        load_client_hello(tmp_path / "junk.pcap")


def test_bounds_on_packets_and_stream_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    late = _conversation([(0, b"x")], client=("127.0.0.1", 40001)) + _conversation([(0, _records(HELLO))])
    path = _write(tmp_path, late)
    assert len(read_client_hellos(path)) == 1
    monkeypatch.setattr(pcap, "MAX_PACKETS", 3)  # the hello's data packet is the 6th
    assert read_client_hellos(path) == []
    monkeypatch.undo()
    monkeypatch.setattr(pcap, "MAX_STREAM_BYTES", 1000)  # a hello longer than what is kept is never complete
    assert read_client_hellos(path) == []


def test_not_tls_and_oversized_records_are_refused() -> None:
    assert pcap.client_hello_from_stream(b"") is None
    assert pcap.client_hello_from_stream(b"\x17\x03\x03\x00\x05hello") is None  # application data
    assert pcap.client_hello_from_stream(b"\x16\x03\x03\x40\x01" + bytes(0x4001)) is None  # over 2^14
    assert pcap.client_hello_from_stream(b"\x16\x03\x03\x00\x00") is None  # empty handshake record
    assert pcap.client_hello_from_stream(_records(HELLO)[:-1]) is None  # cut short


def test_summarise_names_everything() -> None:
    hello = build_client_hello(HelloSpec(server_name=SNI, key_shares=(X25519MLKEM768, (0x6399, b"\x01" * 1216)),
                                         groups=(X25519MLKEM768, 0x6399, 0x0101, X25519),
                                         extra_extensions=[Extension(0xCA34, b"\x00\x01")]))
    facts = summarise(hello.encode())
    assert facts["supported_groups"] == ["X25519MLKEM768", "X25519Kyber768Draft00", "ffdhe3072", "X25519"]
    assert facts["key_shares"] == [("X25519MLKEM768", 1216), ("X25519Kyber768Draft00", 1216)]
    assert facts["extensions"][-1] == "0xca34" and facts["extensions"][0] == "server_name"
    assert facts["size"] == len(hello.encode()) and facts["record_bytes"] == facts["size"] + 5
    assert facts["cipher_suites"] == 3 and facts["alpn"] == [] and not facts["grease"]
    with pytest.raises(ValueError, match="not a ClientHello"):
        summarise(b"\x02\x00\x00\x00")
    with pytest.raises(ValueError, match="length"):
        summarise(hello.encode()[:-1])
    with pytest.raises(ValueError, match="malformed"):
        summarise(b"\x01\x00\x00\x02\x03\x03")


# -- property: any cutting and shuffling gives the same bytes back ----------------------------------------

STREAM_TAIL = b"\x14\x03\x03\x00\x01\x01" + b"\x17\x03\x03\x00\x10" + bytes(16)  # CCS and a record after it


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fragments=st.lists(st.integers(1, 700), max_size=4),
    cuts=st.lists(st.integers(1, 1700), max_size=8),
    seed=st.integers(0, 2**32 - 1),
    duplicates=st.integers(0, 3),
    overlaps=st.lists(st.tuples(st.integers(0, 1600), st.integers(1, 400)), max_size=3),
    isn=st.sampled_from([0, 1000, (1 << 32) - 700]),
    syn=st.booleans(),
)
def test_any_segmentation_and_order_reassembles_the_same_hello(
    fragments: list[int], cuts: list[int], seed: int, duplicates: int, overlaps: list[tuple[int, int]],
    isn: int, syn: bool,
) -> None:
    stream = _records(HELLO, fragments) + STREAM_TAIL
    pieces = _cut(stream, cuts)
    rng = random.Random(seed)
    pieces += [rng.choice(pieces) for _ in range(duplicates)]
    pieces += [(start, stream[start : start + length]) for start, length in overlaps if start < len(stream)]
    rng.shuffle(pieces)
    if not syn:
        # Without the SYN the stream starts at the lowest sequence number seen: keep one copy of byte 0.
        assert any(offset == 0 for offset, _ in pieces)
    with tempfile.TemporaryDirectory() as tmp:
        [found] = read_client_hellos(_write(Path(tmp), _conversation(pieces, isn=isn, syn=syn)))
    records = _records(HELLO, fragments)
    assert found.message == HELLO
    assert (found.record_bytes, found.records) == (len(records), (len(records) - len(HELLO)) // 5)


def test_the_go127_profile_is_go126_with_mldsa() -> None:
    """Go 1.27 added ML-DSA to both signature lists (golang/go #78888, #81199); nothing else differs."""
    from pqproxy.probe.go_hello import build_go126_client_hello, build_go127_client_hello
    from pqproxy.probe.profiles import build_probe_hello
    from pqproxy.tls.extensions import SignatureSchemeList

    def lists(hello: object) -> dict[int, list[int]]:
        return {e.type: SignatureSchemeList.decode(e.data).schemes
                for e in hello.extensions if e.type in (13, 50)}  # type: ignore[attr-defined]

    old, new = build_go126_client_hello("a.test"), build_go127_client_hello("a.test")
    assert [e.type for e in old.hello.extensions] == [e.type for e in new.hello.extensions]
    for ext_type, schemes in lists(new.hello).items():
        assert schemes == [*lists(old.hello)[ext_type], 0x0904, 0x0905, 0x0906]
    probe = build_probe_hello("go127", "b.test")
    assert lists(probe.hello)[13][-3:] == [0x0904, 0x0905, 0x0906] and probe.server_name == "b.test"
