"""IPv6 parsing (ipv6_find_hdr's walk), checksums and hop limit; scapy builds the packets."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from pylvs.core.ipv6 import (
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    NEXTHDR_NONE,
    complete_l4_checksum6,
    decrement_hop_limit,
    dr_xmit6,
    l4_checksum6,
    l4_checksum_ok6,
    nat_reply6,
    nat_xmit6,
    parse6,
    rewrite_endpoint6,
)

NUMBER = {"hbh": 0, "rt": 43, "frag": 44, "ah": 51, "dst": 60,
          "tcp": IPPROTO_TCP, "udp": IPPROTO_UDP, "icmp": IPPROTO_ICMPV6, "none": NEXTHDR_NONE}
CSUM_AT = {"tcp": 16, "udp": 6, "icmp": 2}
ADDR = st.integers(0, (1 << 128) - 1)
PORT = st.integers(0, 0xFFFF)


def text(addr: int) -> str:
    return str(ipaddress.IPv6Address(addr))


def ext_layer(kind: str, size: int, nh: int, frag: tuple = (0, 0, 0)):
    """One extension header of ``size`` units and its length in bytes."""
    if kind in ("hbh", "dst"):
        cls = IPv6ExtHdrHopByHop if kind == "hbh" else IPv6ExtHdrDestOpt
        return cls(nh=nh, options=[PadN(optdata=b"\x00" * (8 * size + 4))]), 8 * (size + 1)
    if kind == "rt":
        addresses = [f"2001:db8::{i + 1}" for i in range(size)]
        return IPv6ExtHdrRouting(nh=nh, addresses=addresses, segleft=0), 8 + 16 * size
    if kind == "ah":
        return AH(nh=nh, payloadlen=1 + size, spi=7, seq=9, icv=b"\xaa" * (4 * size)), 12 + 4 * size
    offset, more, ident = frag
    return IPv6ExtHdrFragment(nh=nh, offset=offset, m=more, id=ident), 8


def upper_layer(kind: str, sport: int, dport: int, flags: int, data: bytes):
    if kind == "tcp":
        return TCP(sport=sport, dport=dport, flags=flags) / Raw(data)
    if kind == "udp":
        return UDP(sport=sport, dport=dport) / Raw(data)
    if kind == "icmp":
        return ICMPv6EchoRequest(id=sport, seq=dport, data=data)
    return Raw(b"")


def build(chain: list[tuple[str, int]], upper: str, src: int = 1, dst: int = 2, sport: int = 1,
          dport: int = 2, flags: int = 0x02, data: bytes = b"", frag: tuple = (0, 0, 0),
          hlim: int = 64):
    """The frame, and each header's kind and length (the chain's, then the upper layer's)."""
    kinds = [kind for kind, _ in chain] + [upper]
    pkt = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IPv6(
        src=text(src), dst=text(dst), nh=NUMBER[kinds[0]], hlim=hlim)
    lengths = []
    for index, (kind, size) in enumerate(chain):
        layer, length = ext_layer(kind, size, NUMBER[kinds[index + 1]], frag)
        lengths.append(length)
        pkt = pkt / layer
    pkt = pkt / upper_layer(upper, sport, dport, flags, data)
    return bytes(pkt), lengths


def expected(chain, lengths, upper, frag):
    """ipv6_find_hdr's answer for the chain: (protocol, L4 offset) or None."""
    offset = 54
    for index, (kind, _size) in enumerate(chain):
        offset += lengths[index]
        if kind == "frag" and frag[0]:
            following = chain[index + 1][0] if index + 1 < len(chain) else upper
            return None if following in ("hbh", "rt", "dst", "ah", "frag") else (
                NUMBER[following], offset)
    return NUMBER[upper], offset


EXT = st.lists(st.tuples(st.sampled_from(["hbh", "rt", "dst", "ah"]), st.integers(0, 3)),
               max_size=4)
NO_AH = st.lists(st.tuples(st.sampled_from(["hbh", "rt", "dst"]), st.integers(0, 3)),
                 max_size=3)  # scapy leaves the checksum of what follows AH at 0
FRAG = st.one_of(st.none(), st.tuples(st.integers(0, 4), st.sampled_from([0, 0, 1, 185, 8191]),
                                      st.integers(0, 1), st.integers(0, 0xFFFFFFFF)))
UPPER = st.sampled_from(["tcp", "udp", "icmp", "none"])


def with_fragment(chain, frag):
    if frag is None:
        return list(chain), (0, 0, 0)
    chain = list(chain)
    chain.insert(min(frag[0], len(chain)), ("frag", 0))
    return chain, frag[1:]


@settings(max_examples=200, deadline=None)
@given(EXT, FRAG, UPPER, ADDR, ADDR, PORT, PORT, st.integers(0, 0xFF), st.binary(max_size=40),
       st.integers(0, 255))
def test_parse6_walks_extension_headers_as_ipv6_find_hdr(ext, frag, upper, src, dst, sport,
                                                          dport, flags, data, hlim):
    chain, frag_facts = with_fragment(ext, frag)
    frame, lengths = build(chain, upper, src, dst, sport, dport, flags, data, frag_facts, hlim)
    flow = parse6(frame)
    want = expected(chain, lengths, upper, frag_facts)
    if want is None:
        assert flow is None
        return
    assert flow is not None
    assert (flow.proto, flow.l4off, flow.l3off) == (*want, 14)
    assert (flow.saddr, flow.daddr, flow.hop_limit) == (src, dst, hlim)
    assert flow.payload_len == len(frame) - 54 and flow.end == len(frame)
    assert flow.fragment == (frag is not None)
    if frag is not None:
        assert (flow.frag_off, flow.more_fragments, flow.frag_id) == (
            frag_facts[0] * 8, bool(frag_facts[1]), frag_facts[2])
    first = frag is None or frag_facts[0] == 0
    assert flow.first_fragment == first
    if first and upper in ("tcp", "udp"):
        assert (flow.sport, flow.dport) == (sport, dport)
        assert flow.tcp_flags == (flags if upper == "tcp" else 0)
    else:
        assert (flow.sport, flow.dport, flow.tcp_flags) == (0, 0, 0)
    if first and upper == "icmp":
        assert (flow.icmp_type, flow.icmp_code) == (128, 0)
    else:
        assert flow.icmp_type == -1


def test_a_non_first_fragment_has_no_l4_header():
    frame, _ = build([("hbh", 0), ("frag", 0)], "tcp", frag=(185, 1, 77))
    flow = parse6(frame)
    assert (flow.proto, flow.l4off, flow.sport, flow.dport) == (IPPROTO_TCP, 54 + 16, 0, 0)
    assert (flow.frag_off, flow.more_fragments, flow.frag_id) == (1480, True, 77)
    assert parse6(build([("frag", 0), ("dst", 0)], "tcp", frag=(1, 0, 0))[0]) is None


def test_an_ah_header_is_skipped_in_its_own_unit():
    frame, _ = build([("ah", 2), ("dst", 1)], "udp", sport=5353, dport=53)
    flow = parse6(frame)
    assert (flow.proto, flow.l4off, flow.dport) == (IPPROTO_UDP, 54 + 20 + 16, 53)


def test_malformed_headers_give_none():
    frame = bytearray(build([("hbh", 1)], "tcp", data=b"x" * 10)[0])
    assert parse6(frame) is not None
    assert parse6(frame[:-1]) is None  # payload length past the frame
    assert parse6(bytes(frame) + b"\x00" * 6) is not None  # Ethernet padding is fine
    longer = bytearray(frame)
    longer[55] = 0xFF  # the hop-by-hop header runs past the payload
    assert parse6(longer) is None
    short_tcp = bytearray(frame)
    short_tcp[14 + 40 + 16 + 12] = 0x40  # data offset 4 words
    assert parse6(short_tcp) is None
    wide_tcp = bytearray(frame)
    wide_tcp[14 + 40 + 16 + 12] = 0xF0  # 60 bytes of TCP header in a 30-byte segment
    assert parse6(wide_tcp) is None
    ipv4 = bytearray(frame)
    ipv4[12:14] = b"\x08\x00"
    assert parse6(ipv4) is None
    version = bytearray(frame)
    version[14] = 0x40
    assert parse6(version) is None
    assert parse6(frame[14:], 0) is not None  # a bare IPv6 packet
    for upper, need in (("tcp", 20), ("udp", 8), ("icmp", 8)):
        whole = bytearray(build([], upper)[0])
        cut = whole[:54 + need - 1]
        cut[18:20] = (need - 1).to_bytes(2, "big")
        assert parse6(cut) is None
    none = parse6(build([("dst", 0)], "none")[0])
    assert (none.proto, none.l4off, none.end) == (NEXTHDR_NONE, 62, 62)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 20), st.booleans())
def test_parse6_never_raises_on_arbitrary_bytes(data, offset, looks_ipv6):
    if looks_ipv6:
        data = bytes(12) + b"\x86\xdd\x60" + data
    parse6(data, offset)
    parse6(bytearray(data))
    parse6(memoryview(data))


@settings(max_examples=60, deadline=None)
@given(EXT, FRAG, UPPER, st.binary(max_size=30), st.data())
def test_truncated_or_mutated_frames_give_none_or_a_flow_never_an_exception(ext, frag, upper,
                                                                              data, draw):
    chain, frag_facts = with_fragment(ext, frag)
    frame, _ = build(chain, upper, data=data, frag=frag_facts)
    cut = draw.draw(st.integers(0, len(frame) - 1))
    assert parse6(frame[:cut]) is None
    mutated = bytearray(frame)
    at = draw.draw(st.integers(14, len(frame) - 1))
    mutated[at] = draw.draw(st.integers(0, 255))
    flow = parse6(mutated)
    assert flow is None or flow.end <= len(mutated)


# Checksums: scapy's are the oracle.

def scapy_checksum(frame: bytes, upper: str, l4off: int) -> int:
    return int.from_bytes(frame[l4off + CSUM_AT[upper]:l4off + CSUM_AT[upper] + 2], "big")


@settings(max_examples=150, deadline=None)
@given(NO_AH, st.sampled_from(["tcp", "udp", "icmp"]), ADDR, ADDR, PORT, PORT,
       st.binary(max_size=60), st.integers(0, 0xFFFF))
def test_checksums_equal_scapys(ext, upper, src, dst, sport, dport, data, junk):
    frame, _ = build(ext, upper, src, dst, sport, dport, 0x18, data)
    flow = parse6(frame)
    want = scapy_checksum(frame, upper, flow.l4off)
    assert l4_checksum6(frame, flow) == want
    assert l4_checksum_ok6(frame, flow)
    at = flow.l4off + CSUM_AT[upper]
    for value in (0, junk):
        broken = bytearray(frame)
        broken[at:at + 2] = value.to_bytes(2, "big")
        assert l4_checksum_ok6(broken, flow) == (value == want)
        assert l4_checksum6(broken, flow) == want
        assert complete_l4_checksum6(broken, flow)
        assert bytes(broken) == frame


def test_udp_zero_checksum_is_invalid_and_a_computed_zero_is_sent_as_ffff():
    frame, _ = build([], "udp", data=b"\x00\x00")
    flow = parse6(frame)
    filler = l4_checksum6(frame, flow)  # this payload makes the one's complement sum 0xFFFF
    frame, _ = build([], "udp", data=filler.to_bytes(2, "big"))
    flow = parse6(frame)
    assert l4_checksum6(frame, flow) == 0xFFFF == scapy_checksum(frame, "udp", flow.l4off)
    assert l4_checksum_ok6(frame, flow)
    zero = bytearray(frame)
    zero[flow.l4off + 6:flow.l4off + 8] = b"\x00\x00"
    assert not l4_checksum_ok6(zero, flow)


def test_fragments_and_other_protocols_have_no_computable_checksum():
    frame, _ = build([("frag", 0)], "tcp", frag=(0, 1, 5))
    flow = parse6(frame)
    with pytest.raises(ValueError):
        l4_checksum6(frame, flow)
    assert not complete_l4_checksum6(bytearray(frame), flow)
    none = build([], "none")[0]
    assert not complete_l4_checksum6(bytearray(none), parse6(none))


@settings(max_examples=150, deadline=None)
@given(NO_AH, st.sampled_from(["tcp", "udp", "icmp"]), ADDR, ADDR, PORT, PORT, ADDR, PORT,
       st.booleans(), st.binary(max_size=40))
def test_incremental_rewrite_equals_a_full_recomputation(ext, upper, src, dst, sport, dport,
                                                        addr, port, source, data):
    frame, _ = build(ext, upper, src, dst, sport, dport, 0x10, data)
    out = bytearray(frame)
    flow = parse6(out)
    rewrite_endpoint6(out, flow, source, addr, port)
    again = parse6(out)
    assert (again.saddr, again.daddr) == ((addr, dst) if source else (src, addr))
    if upper != "icmp":
        assert (again.sport, again.dport) == ((port, dport) if source else (sport, port))
        assert (flow.sport, flow.dport) == (again.sport, again.dport)
    assert (flow.saddr, flow.daddr) == (again.saddr, again.daddr)
    assert scapy_checksum(out, upper, flow.l4off) == l4_checksum6(out, again)
    assert l4_checksum_ok6(out, again)
    rebuilt = Ether(bytes(out))
    layer, field = {"tcp": (TCP, "chksum"), "udp": (UDP, "chksum"),
                    "icmp": (ICMPv6EchoRequest, "cksum")}[upper]
    delattr(rebuilt[layer], field)
    assert bytes(rebuilt) == bytes(out)


def test_rewriting_a_non_first_fragment_changes_only_the_address():
    frame, _ = build([("frag", 0)], "tcp", sport=1000, dport=80, frag=(10, 0, 1))
    out = bytearray(frame)
    flow = parse6(out)
    rewrite_endpoint6(out, flow, False, 0x20010DB8 << 96 | 5, 8080)
    assert out[38:54] == (0x20010DB8 << 96 | 5).to_bytes(16, "big")
    assert out[:38] == frame[:38] and out[54:] == frame[54:]


def test_decrement_hop_limit():
    frame = bytearray(build([("hbh", 0)], "udp", hlim=64)[0])
    flow = parse6(frame)
    assert decrement_hop_limit(frame, flow) == 63 == flow.hop_limit == frame[21]
    assert Ether(bytes(frame))[IPv6].hlim == 63
    assert parse6(frame).hop_limit == 63


# DR's and NAT66's rewrites (ip_vs_dr_xmit_v6, ip_vs_nat_xmit_v6 and the replies' SNAT): the
# frame scapy builds with the new fields is the oracle, checksums computed afresh by scapy.

HOP_MACS = bytes.fromhex("0a00000000aa" "0a00000000bb")
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def addressed(frame: bytes) -> bytes:
    return HOP_MACS + frame[12:]


@settings(max_examples=80, deadline=None)
@given(NO_AH, st.sampled_from(["tcp", "udp", "icmp"]), ADDR, ADDR, st.integers(2, 255),
       st.binary(max_size=40))
def test_dr_xmit6_changes_the_macs_and_the_hop_limit(ext, upper, src, dst, hlim, data):
    frame, _ = build(ext, upper, src, dst, 1000, 80, 0x18, data, hlim=hlim)
    out = bytearray(frame)
    assert dr_xmit6(out, parse6(out), HOP_MACS) is out
    want, _ = build(ext, upper, src, dst, 1000, 80, 0x18, data, hlim=hlim - 1)
    assert bytes(out) == addressed(want)


@settings(max_examples=100, deadline=None)
@given(NO_AH, st.sampled_from(["tcp", "udp"]), ADDR, ADDR, PORT, PORT, ADDR, PORT,
       st.integers(2, 255), st.binary(max_size=40))
def test_nat66_both_ways_equals_scapys_frames(ext, upper, client, vip, cport, vport, rip,
                                             rport, hlim, data):
    inbound, _ = build(ext, upper, client, vip, cport, vport, 0x18, data, hlim=hlim)
    out = bytearray(inbound)
    flow = parse6(out)
    assert nat_xmit6(out, flow, rip, rport, HOP_MACS) is out
    want, _ = build(ext, upper, client, rip, cport, rport, 0x18, data, hlim=hlim - 1)
    assert bytes(out) == addressed(want)
    assert (flow.daddr, flow.dport, flow.hop_limit) == (rip, rport, hlim - 1)
    reply, _ = build(ext, upper, rip, client, rport, cport, 0x12, data, hlim=hlim)
    back = bytearray(reply)
    nat_reply6(back, parse6(back), vip, vport, HOP_MACS)
    want, _ = build(ext, upper, vip, client, vport, cport, 0x12, data, hlim=hlim - 1)
    assert bytes(back) == addressed(want)


def test_nat66_computes_a_zero_udp_checksum_in_full():
    """udp_dnat_handler: no fast update of a zero checksum ("full checksum calculation")."""
    frame = bytearray(bytes(ETH / IPv6(src="2001:db8::1", dst="2001:db8::80")
                            / UDP(sport=5000, dport=53, chksum=0) / Raw(b"query")))
    nat_xmit6(frame, parse6(frame), 0x20010DB8000000000000000000000005, 5353, HOP_MACS)
    want = bytes(ETH / IPv6(src="2001:db8::1", dst="2001:db8::5", hlim=63)
                 / UDP(sport=5000, dport=5353) / Raw(b"query"))
    assert bytes(frame) == addressed(want)


def test_nat66_of_a_non_first_fragment_changes_only_the_address():
    frame, _ = build([("frag", 0)], "tcp", sport=1000, dport=80, frag=(10, 0, 1))
    out = bytearray(frame)
    nat_xmit6(out, parse6(out), 0x20010DB8 << 96 | 5, 8080, HOP_MACS)
    assert out[38:54] == (0x20010DB8 << 96 | 5).to_bytes(16, "big")
    assert out[21] == frame[21] - 1 and out[54:] == frame[54:]
