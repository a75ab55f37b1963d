"""The early-verdict emulator's policy (``pqproxy.lab.nfqueue.EarlyVerdict``), on packets built with scapy.

The process around it (NFQUEUE, iptables) is exercised by the lab (tests/test_lab.py); here the verdicts
themselves: the first data segment decides, a condemned flow stays condemned, everything else passes,
and no packet, however malformed, raises.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP

from pqproxy.lab import nfqueue
from pqproxy.lab.nfqueue import EarlyVerdict


def segment(payload: bytes = b"", sport: int = 40000, flags: str = "PA") -> bytes:
    return bytes(IP(src="198.18.1.1", dst="198.18.4.2") / TCP(sport=sport, dport=4434, flags=flags) / payload)


def record(length: int, have: int | None = None) -> bytes:
    """The first ``have`` bytes of a handshake record announcing ``length`` bytes."""
    whole = bytes((22, 3, 1)) + length.to_bytes(2, "big") + bytes(length)
    return whole[: 5 + length if have is None else have]


def test_a_large_record_cut_by_the_first_segment_condemns_the_flow() -> None:
    policy = EarlyVerdict()
    assert policy.judge(segment(flags="S"), 0).accept  # the handshake passes
    first = policy.judge(segment(record(1900, have=1448)), 1)
    assert not first.accept and first.note.startswith("drop:")
    assert not policy.judge(segment(record(1900)[1448:]), 2).accept  # the rest
    assert not policy.judge(segment(record(1900, have=1448)), 3).accept  # a retransmission
    assert not policy.judge(segment(flags="FA"), 4).accept  # even its FIN
    assert policy.judged == {nfqueue.PASS: 0, nfqueue.CONDEMNED: 1}


def test_a_gso_super_packet_is_judged_by_its_first_wire_segment() -> None:
    # The sender's TCP may hand a whole 1.6 KB hello down as one GSO packet, which the lab's veths carry unsplit;
    # an Ethernet path cuts it at 1448 bytes, and that first segment is what the emulated IPS judges.
    policy = EarlyVerdict()
    whole = policy.judge(segment(record(1600)), 0)
    assert not whole.accept and "first segment of 1448 bytes (of a 1605-byte payload) of a 1600-byte" in whole.note
    # A record that does fit in the first segment still passes, however the sender packed it.
    assert EarlyVerdict().judge(segment(record(1400) + record(500)), 0).accept
    # A path with jumbo frames (a larger segment) sees the same packet whole.
    assert EarlyVerdict(segment=9000).judge(segment(record(1600)), 0).accept


def test_a_whole_record_a_small_record_or_no_record_passes_for_good() -> None:
    policy = EarlyVerdict()
    for port, first in ((1, record(1400)), (2, record(200, have=100)), (3, b"\x16\x03"), (4, b"GET / HTTP/1.1\r\n")):
        assert policy.judge(segment(first, sport=port), 0).accept
        # judged once: later segments, however they look, pass
        assert policy.judge(segment(record(1900, have=1448), sport=port), 1).accept
    assert policy.judged[nfqueue.PASS] == 4


def test_flows_are_bounded_and_forgotten() -> None:
    policy = EarlyVerdict()
    for port in range(nfqueue.MAX_FLOWS + 10):
        policy.judge(segment(record(1900, have=1448), sport=port % 65536), 0)
    assert len(policy.flows) == nfqueue.MAX_FLOWS
    assert policy.judge(segment(b"x", sport=nfqueue.MAX_FLOWS + 9), 1).accept is False  # still remembered
    later = nfqueue.FLOW_IDLE + 10
    assert policy.judge(segment(b"x", sport=nfqueue.MAX_FLOWS + 9), later).accept  # idle: forgotten, judged anew


def test_not_ipv4_tcp_is_accepted() -> None:
    policy = EarlyVerdict()
    assert policy.judge(bytes(IP(dst="198.18.4.2") / UDP(dport=443) / record(1900, have=1000)), 0).accept
    assert policy.judge(b"\x60" + bytes(39), 0).accept  # IPv6
    assert policy.flows == {}


@given(st.binary(max_size=200))
def test_any_bytes_get_a_verdict(packet: bytes) -> None:
    assert isinstance(EarlyVerdict().judge(packet, 0).accept, bool)


@given(st.binary(max_size=120))
def test_any_tcp_payload_gets_a_verdict(payload: bytes) -> None:
    policy = EarlyVerdict()
    assert isinstance(policy.judge(segment(payload), 0).accept, bool)
    assert len(policy.flows) <= 1
