"""TUN with IPv6 (ip6ip6, 4in6, 6in4) as ip_vs_tunnel_xmit(_v6) builds it, and IPVS's MTU
verdicts (__ip_vs_get_out_rt(_v6)'s tunnel minimum, ensure_mtu_is_adequate); scapy builds the
packets and dissects the results."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
)
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from pylvs.core.ipv6 import parse6
from pylvs.core.packet import parse
from pylvs.core.tunnel6 import (
    OUTER_IPV4,
    OUTER_IPV6,
    OUTER_NONE,
    Verdict,
    ecn_encapsulate,
    encapsulate6,
    mtu_check,
    mtu_verdict,
    tunnel_xmit,
)

MACS = bytes.fromhex("0a0000000001" "0a0000000002")
ADDR6 = st.integers(0, (1 << 128) - 1)
ADDR4 = st.integers(1, (1 << 32) - 1)
PORT = st.integers(1, 0xFFFF)
EXT = st.lists(st.tuples(st.sampled_from(["hbh", "rt", "dst"]), st.integers(0, 2)), max_size=3)
UPPER = st.sampled_from(["tcp", "udp"])
NUMBER = {"hbh": 0, "rt": 43, "dst": 60, "tcp": 6, "udp": 17}


def text6(addr: int) -> str:
    return str(ipaddress.IPv6Address(addr))


def addr6(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


def text4(addr: int) -> str:
    return str(ipaddress.IPv4Address(addr))


def l4(upper: str, sport: int, dport: int, data: bytes):
    if upper == "tcp":
        return TCP(sport=sport, dport=dport, flags="PA") / Raw(data)
    return UDP(sport=sport, dport=dport) / Raw(data)


def frame6(ext, upper, src=1, dst=2, sport=1000, dport=80, data=b"", tc=0, fl=0, hlim=64):
    """An Ethernet frame of IPv6 with the extension headers ``ext``, checksums by scapy."""
    kinds = [kind for kind, _ in ext] + [upper]
    pkt = IPv6(src=text6(src), dst=text6(dst), nh=NUMBER[kinds[0]], tc=tc, fl=fl, hlim=hlim)
    for index, (kind, size) in enumerate(ext):
        nh = NUMBER[kinds[index + 1]]
        if kind == "rt":
            pkt = pkt / IPv6ExtHdrRouting(nh=nh, segleft=0,
                                          addresses=[f"2001:db8::{i + 1}" for i in range(size)])
        else:
            cls = IPv6ExtHdrHopByHop if kind == "hbh" else IPv6ExtHdrDestOpt
            pkt = pkt / cls(nh=nh, options=[PadN(optdata=b"\x00" * (8 * size + 4))])
    pkt = pkt / l4(upper, sport, dport, data)
    return bytearray(bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt))


def frame4(upper, src=1, dst=2, sport=1000, dport=80, data=b"", tos=0, ttl=64, df=True,
           ip_id=1, options=0):
    pkt = IP(src=text4(src), dst=text4(dst), tos=tos, ttl=ttl, id=ip_id,
             flags="DF" if df else 0, options=[b"\x01" * (4 * options)] if options else [])
    pkt = pkt / l4(upper, sport, dport, data)
    return bytearray(bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt))


def checksums_valid(packet: bytes) -> bool:
    """scapy recomputes the IPv4 header's and the TCP/UDP checksums: the same bytes."""
    cls = IPv6 if packet[0] >> 4 == 6 else IP
    dissected = cls(packet)
    if cls is IP:
        del dissected[IP].chksum
    layer = TCP if TCP in dissected else UDP
    del dissected[layer].chksum
    return bytes(dissected) == packet


def ecn_of(dsfield: int) -> int:
    return 2 if dsfield & 3 == 3 else dsfield & 3


def test_ecn_encapsulate_copies_the_ds_field_but_ce():
    for dscp in (0, 0x2E << 2, 0xFC):
        assert [ecn_encapsulate(dscp | ecn) for ecn in range(4)] == [dscp, dscp | 1, dscp | 2,
                                                                    dscp | 2]


@settings(max_examples=80, deadline=None)
@given(EXT, UPPER, ADDR6, ADDR6, PORT, PORT, st.binary(max_size=60), st.integers(0, 255),
       st.integers(0, 0xFFFFF), st.integers(2, 255), ADDR6, ADDR6)
def test_ip6ip6_as_ip_vs_tunnel_xmit_v6(ext, upper, src, dst, sport, dport, data, tc, fl, hlim,
                                        director, server):
    frame = frame6(ext, upper, src, dst, sport, dport, data, tc, fl, hlim)
    inner = bytearray(frame[14:])
    inner[7] = hlim - 1  # the only change to the inner packet
    out = tunnel_xmit(bytearray(frame), parse6(frame), 6, director, server, MACS)
    pkt = Ether(bytes(out))
    assert bytes(out[:12]) == MACS and pkt.type == 0x86DD
    outer = pkt[IPv6]
    assert (outer.version, outer.tc, outer.fl, outer.plen, outer.nh, outer.hlim) == (
        6, ecn_encapsulate(tc), 0, len(inner), 41, hlim - 1)
    assert (addr6(outer.src), addr6(outer.dst)) == (director, server)
    assert outer.tc & 0xFC == tc & 0xFC and outer.tc & 3 == ecn_of(tc)
    assert bytes(out[54:]) == bytes(inner) == bytes(outer.payload)
    assert checksums_valid(bytes(inner))
    assert len(out) == len(frame) + 40


@settings(max_examples=80, deadline=None)
@given(UPPER, ADDR4, ADDR4, PORT, PORT, st.binary(max_size=60), st.integers(0, 255),
       st.integers(2, 255), st.booleans(), st.integers(0, 0xFFFF), st.integers(0, 3), ADDR6,
       ADDR6)
def test_4in6_as_ip_vs_tunnel_xmit_v6_with_an_ipv4_connection(upper, src, dst, sport, dport,
                                                             data, tos, ttl, df, ip_id, options,
                                                             director, server):
    frame = frame4(upper, src, dst, sport, dport, data, tos, ttl, df, ip_id, options)
    flow = parse(frame)
    out = tunnel_xmit(bytearray(frame), flow, 6, director, server, MACS)
    pkt = Ether(bytes(out))
    outer = pkt[IPv6]
    assert pkt.type == 0x86DD and bytes(out[:12]) == MACS
    assert (outer.tc, outer.fl, outer.plen, outer.nh, outer.hlim) == (
        ecn_encapsulate(tos), 0, flow.ip_len, 4, ttl - 1)
    assert (addr6(outer.src), addr6(outer.dst)) == (director, server)
    inner = bytes(out[54:])
    assert checksums_valid(inner)  # the inner header's checksum mended (ip_send_check)
    want = IP(bytes(frame[14:]))
    want.ttl = ttl - 1
    del want.chksum
    assert inner == bytes(want)


@settings(max_examples=80, deadline=None)
@given(EXT, UPPER, ADDR6, ADDR6, PORT, PORT, st.binary(max_size=60), st.integers(0, 255),
       st.integers(0, 0xFFFFF), st.integers(2, 255), ADDR4, ADDR4, st.integers(0, 0xFFFF))
def test_6in4_as_ip_vs_tunnel_xmit_with_an_ipv6_connection(ext, upper, src, dst, sport, dport,
                                                          data, tc, fl, hlim, director, server,
                                                          ip_id):
    frame = frame6(ext, upper, src, dst, sport, dport, data, tc, fl, hlim)
    inner = bytearray(frame[14:])
    inner[7] = hlim - 1
    out = tunnel_xmit(bytearray(frame), parse6(frame), 4, director, server, MACS, ip_id)
    pkt = Ether(bytes(out))
    outer = pkt[IP]
    assert pkt.type == 0x0800 and bytes(out[:12]) == MACS
    assert (outer.version, outer.ihl, outer.tos, outer.len, outer.id) == (
        4, 5, ecn_encapsulate(tc), 20 + len(inner), ip_id)
    assert (int(outer.flags), outer.frag, outer.ttl, outer.proto) == (0, 0, hlim - 1, 41)
    assert (outer.src, outer.dst) == (text4(director), text4(server))
    rebuilt = IP(bytes(out[14:]))
    del rebuilt.chksum
    assert bytes(rebuilt) == bytes(out[14:])  # the outer checksum, as scapy computes it
    assert bytes(out[34:]) == bytes(inner) and checksums_valid(bytes(inner))


def test_ipv4_in_ipv4_is_packet_encapsulate_ipips():
    frame = frame4("udp")
    with pytest.raises(ValueError):
        tunnel_xmit(frame, parse(frame), 4, 1, 2, MACS)


def test_encapsulation_keeps_the_link_header_and_padding_out():
    frame = frame6([], "udp", data=b"x")
    padded = frame + bytes(20)
    out = encapsulate6(padded, parse6(padded), 7, 8)
    assert len(out) == len(frame) + 40 and out[:12] == frame[:12]


# The MTU: IPVS's verdicts around each boundary.

def test_a_tunnel_below_its_minimum_drops_everything():
    """__ip_vs_get_out_rt_v6: ``mtu < IPV6_MIN_MTU`` by an IPv6 route (ip6ip6 and 4in6 alike);
    __ip_vs_get_out_rt: ``mtu < 68`` by an IPv4 route (6in4: an IPv6 packet may then get a
    Packet Too Big below 1280, as the kernel sends it)."""
    for family in (4, 6):
        assert mtu_check(family, 100, 1319, OUTER_IPV6) == (Verdict.DROP, 1279)
        assert mtu_check(family, 100, 1320, OUTER_IPV6) == (Verdict.FITS, 1280)
    assert mtu_check(6, 60, 87, OUTER_IPV4) == (Verdict.DROP, 67)
    assert mtu_check(6, 60, 88, OUTER_IPV4) == (Verdict.FITS, 68)
    assert mtu_check(6, 69, 88, OUTER_IPV4) == (Verdict.TOO_BIG, 68)
    assert mtu_check(6, 1280, 1300, OUTER_NONE) == (Verdict.FITS, 1300)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([OUTER_NONE, OUTER_IPV4, OUTER_IPV6]), st.integers(1320, 9000),
       st.integers(-1, 1), st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_verdicts_around_the_mtu(outer, mtu, step, df, first, related, pmtu_disc):
    usable = mtu - {OUTER_NONE: 0, OUTER_IPV4: 20, OUTER_IPV6: 40}[outer]
    size = usable + step
    v6 = mtu_check(6, size, mtu, outer, first_fragment=first, related_icmp=related,
                   pmtu_disc=pmtu_disc)
    v4 = mtu_check(4, size, mtu, outer, df=df, related_icmp=related, pmtu_disc=pmtu_disc)
    if step <= 0:
        assert v6 == v4 == (Verdict.FITS, usable)
        return
    assert v6 == (Verdict.TOO_BIG if first and not related else Verdict.DROP, usable)
    frag_needed = df and not related and (pmtu_disc or outer == OUTER_NONE)
    assert v4 == (Verdict.FRAG_NEEDED if frag_needed else Verdict.FRAGMENT, usable)


def ether():
    """An Ethernet header with both MACs (scapy would look the destination up otherwise)."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def sized6(size: int, head=None):
    """An IPv6 UDP frame whose packet is ``size`` bytes."""
    pkt = IPv6(src="2001:db8::1", dst="2001:db8::2")
    if head is not None:
        pkt = pkt / head
    pkt = pkt / UDP(sport=1, dport=2)
    pkt = pkt / Raw(b"x" * (size - len(pkt)))
    frame = bytes(ether() / pkt)
    assert len(frame) == 14 + size
    return frame


def sized4(size: int, df: bool, upper=None):
    pkt = IP(src="192.0.2.1", dst="192.0.2.2", flags="DF" if df else 0)
    pkt = pkt / (upper if upper is not None else UDP(sport=1, dport=2))
    pkt = pkt / Raw(b"x" * (size - len(pkt)))
    return bytes(ether() / pkt)


@pytest.mark.parametrize("outer,mtu", [(OUTER_NONE, 1500), (OUTER_IPV6, 1500),
                                       (OUTER_IPV4, 1500), (OUTER_IPV6, 1320)])
def test_mtu_verdict_reads_the_packet(outer, mtu):
    usable = mtu - {OUTER_NONE: 0, OUTER_IPV4: 20, OUTER_IPV6: 40}[outer]
    for size, want in ((usable - 1, Verdict.FITS), (usable, Verdict.FITS),
                       (usable + 1, Verdict.TOO_BIG)):
        frame = sized6(size)
        assert mtu_verdict(frame, parse6(frame), mtu, outer) == (want, usable)
    later = sized6(usable + 1, IPv6ExtHdrFragment(nh=17, offset=8, m=1))
    assert parse6(later).frag_off and mtu_verdict(later, parse6(later), mtu, outer)[0] == \
        Verdict.DROP  # no Packet Too Big about a non-first fragment
    first = sized6(usable + 1, IPv6ExtHdrFragment(nh=17, offset=0, m=1))
    assert mtu_verdict(first, parse6(first), mtu, outer)[0] == Verdict.TOO_BIG
    error = bytes(ether() / IPv6() / ICMPv6DestUnreach() / Raw(b"q" * (usable + 1 - 48)))
    assert mtu_verdict(error, parse6(error), mtu, outer)[0] == Verdict.DROP
    echo = bytes(ether() / IPv6() / ICMPv6EchoRequest(data=b"q" * (usable + 1 - 48)))
    assert mtu_verdict(echo, parse6(echo), mtu, outer)[0] == Verdict.TOO_BIG
    for df, want in ((True, Verdict.FRAG_NEEDED), (False, Verdict.FRAGMENT)):
        fits, big = sized4(usable, df), sized4(usable + 1, df)
        assert mtu_verdict(fits, parse(fits), mtu, outer) == (Verdict.FITS, usable)
        assert mtu_verdict(big, parse(big), mtu, outer) == (want, usable)
        if outer:
            assert mtu_verdict(big, parse(big), mtu, outer, pmtu_disc=False)[0] == \
                Verdict.FRAGMENT
    icmp_error = sized4(usable + 1, True, ICMP(type=3, code=1))
    assert mtu_verdict(icmp_error, parse(icmp_error), mtu, outer)[0] == Verdict.FRAGMENT
