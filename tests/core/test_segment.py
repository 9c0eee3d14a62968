"""Software TCP segmentation of GSO super-frames, checked against scapy's view of the result."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import Ether

from pylvs.core.segment import client_address, needs_segmenting, segment_tcp

SRC_MAC, DST_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"


def _big(payload: bytes, flags: str = "FPA", seq: int = 1000) -> bytes:
    return bytes(Ether(src=SRC_MAC, dst=DST_MAC) / IP(src="203.0.113.5", dst="192.0.2.100", id=7) /
                 TCP(sport=40000, dport=80, seq=seq, flags=flags) / payload)


@given(st.binary(min_size=1, max_size=9000), st.integers(min_value=576, max_value=1500),
       st.integers(min_value=0, max_value=2**32 - 1))
def test_segments_fit_and_carry_the_whole_stream(payload, mtu, seq):
    frame = _big(payload, seq=seq)
    segments = segment_tcp(frame, mtu) if needs_segmenting(frame, mtu) else [bytearray(frame)]
    assert segments
    stream = b""
    for i, seg in enumerate(segments):
        assert len(seg) <= 14 + mtu
        pkt = Ether(bytes(seg))
        ip, tcp = pkt[IP], pkt[TCP]
        assert ip.len == len(seg) - 14
        fresh = ip.copy()
        del fresh.chksum
        assert IP(bytes(fresh)).chksum == ip.chksum
        assert tcp.seq == (seq + len(stream)) % 2**32
        last = i == len(segments) - 1
        assert bool(tcp.flags & 0x01) == last and bool(tcp.flags & 0x08) == last
        stream += bytes(tcp.payload)
    assert stream == payload
    if len(segments) > 1:
        assert [Ether(bytes(s))[IP].id for s in segments] == list(range(7, 7 + len(segments)))


def test_non_tcp_is_not_segmented():
    frame = bytes(Ether(src=SRC_MAC, dst=DST_MAC) / IP(dst="192.0.2.100") / UDP(dport=53)
                  / (b"x" * 3000))
    assert segment_tcp(frame, 1500) == []


def test_short_or_garbage_input_is_refused():
    assert segment_tcp(b"\x00" * 20, 1500) == []
    assert segment_tcp(b"\xff" * 3000, 1500) == []


@given(st.binary(min_size=1, max_size=9000), st.integers(min_value=1280, max_value=1500),
       st.integers(min_value=0, max_value=2**32 - 1), st.booleans())
def test_ipv6_segments_fit_and_carry_the_whole_stream(payload, mtu, seq, tso_zero):
    """IPv6's payload length per segment (a TSO sender may leave it 0); no ID, no checksum."""
    frame = bytearray(bytes(Ether(src=SRC_MAC, dst=DST_MAC) / IPv6(src="2001:db8:1::5",
                                                                   dst="2001:db8::100") /
                            TCP(sport=40000, dport=80, seq=seq, flags="FPA") / payload))
    if tso_zero and needs_segmenting(frame, mtu):
        frame[18:20] = b"\x00\x00"
    segments = segment_tcp(frame, mtu) if needs_segmenting(frame, mtu) else [frame]
    stream = b""
    for i, seg in enumerate(segments):
        assert len(seg) <= 14 + mtu
        pkt = Ether(bytes(seg))
        assert pkt[IPv6].plen == len(seg) - 54
        assert pkt[TCP].seq == (seq + len(stream)) % 2**32
        last = i == len(segments) - 1
        assert bool(pkt[TCP].flags & 0x01) == last and bool(pkt[TCP].flags & 0x08) == last
        stream += bytes(pkt[TCP].payload)
    assert stream == payload
    assert client_address(segments[0]) == int(ipaddress.IPv6Address("2001:db8:1::5"))


def test_ipv6_behind_an_extension_header_is_not_segmented():
    frame = bytes(Ether(src=SRC_MAC, dst=DST_MAC) / IPv6(dst="2001:db8::100") /
                  IPv6ExtHdrDestOpt() / TCP(dport=80) / (b"x" * 3000))
    assert segment_tcp(frame, 1500) == []
