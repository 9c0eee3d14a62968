"""The XDP fast path for IPv6 (pylvs.core.fastpath, issue 22): its IPv6 entries, and, in the
kernel (BPF_PROG_TEST_RUN, root), the program's output frame equal, byte for byte, to what the
Python reference (pylvs.core.ipv6's dr_xmit6, nat_xmit6, nat_reply6; pylvs.core.tunnel6's
tunnel_xmit) makes of the same frame: DR, NAT66 both ways, ip6ip6, 6in4 and 4in6; checksums
also checked against scapy's. Whatever Python must see passes to the kernel untouched: TCP SYN,
FIN or RST, extension headers, ICMPv6, hop limit ≤ 1, a UDP checksum of 0, a frame too big for
the hop, a malformed one, a miss. And the IPv4 program inside it is the one it always was."""

from __future__ import annotations

import ipaddress
import os
import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from pylvs.core import csum_delta, fastpath
from pylvs.core.ebpf import XDP_PASS, XDP_REDIRECT
from pylvs.core.ipv6 import dr_xmit6, l4_checksum6, nat_reply6, nat_xmit6, parse6
from pylvs.core.packet import parse
from pylvs.core.tunnel6 import ecn_encapsulate, tunnel_xmit
from tests.helpers.directors import (
    CLIENT6,
    CLIENT_MAC,
    DIRECTOR_MAC,
    RS4,
    RS6,
    VIP4,
    VIP6,
    director6,
    dr_director,
    nat_director,
    tun_director,
)
from tests.helpers.frames import dr_frame, inbound, reply, tun_frame

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: bpf() and BPF_PROG_TEST_RUN")
MACS = bytes.fromhex("0a00000000aa" "0a00000000bb")
BACK = bytes.fromhex("0a00000000cc" "0a00000000dd")
OUT, IN = 3, 2  # interfaces: the program redirects (XDP_REDIRECT) to either in a test run
ADDR6 = st.integers(1, (1 << 128) - 1)
ADDR4 = st.integers(1, (1 << 32) - 1)
PORT = st.integers(1, 0xFFFF)
PROTO = st.sampled_from(["tcp", "udp"])
FLAGS = st.sampled_from(["A", "PA", "U", "", "EA", "CA"])
NUMBER = {"tcp": 6, "udp": 17}
SLOT = 5


def text6(addr: int) -> str:
    return str(ipaddress.IPv6Address(addr))


def text4(addr: int) -> str:
    return str(ipaddress.IPv4Address(addr))


def b16(addr: int) -> bytes:
    return addr.to_bytes(16, "big")


def frame6(src: int, dst: int, sport: int, dport: int, proto: str = "tcp", flags: str = "A",
           payload: bytes = b"", hlim: int = 64, tc: int = 0, fl: int = 0) -> bytes:
    upper = TCP(sport=sport, dport=dport, flags=flags) if proto == "tcp" else \
        UDP(sport=sport, dport=dport)
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                 / IPv6(src=text6(src), dst=text6(dst), hlim=hlim, tc=tc, fl=fl)
                 / upper / Raw(payload))


def frame4(src: int, dst: int, sport: int, dport: int, proto: str = "tcp", flags: str = "A",
           payload: bytes = b"", ttl: int = 64, tos: int = 0, df: bool = True) -> bytes:
    upper = TCP(sport=sport, dport=dport, flags=flags) if proto == "tcp" else \
        UDP(sport=sport, dport=dport)
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                 / IP(src=text4(src), dst=text4(dst), ttl=ttl, tos=tos,
                      flags="DF" if df else 0) / upper / Raw(payload))


def key_of(frame: bytes) -> bytes:
    """The IPv6 map's key of a frame whose IPv6 header is followed by TCP or UDP: the 36
    bytes an IPv6 connection's key12 holds, and its next header."""
    return fastpath.key6(frame[20], frame[22:58])


def scapy_l4_checksum_ok(out: bytes) -> bool:
    """scapy computes the TCP/UDP checksum of ``out``'s (inner) packet again: the same?"""
    packet = Ether(out)
    upper = packet[TCP] if TCP in packet else packet[UDP]
    sent = upper.chksum
    del upper.chksum
    return Ether(bytes(packet))[upper.__class__].chksum == sent


# -- the entries, without a kernel ------------------------------------------------------------


def test_an_ipv6_entry_keeps_counters_and_slot_where_the_ipv4_one_has_them():
    entry = fastpath.dr6(7, MACS, 1500, slot=9)
    value = entry.pack(packets=3, octets=400, last_ns=77)
    assert len(value) == fastpath.VALUE6_SIZE == 88
    assert fastpath.counters(value) == (3, 400, 77) and fastpath.slot(value) == 9
    assert struct.unpack_from("<IB", value, fastpath.IFINDEX) == (7, fastpath.DR)
    assert value[fastpath.MACS:fastpath.MACS + 12] == MACS


def test_keys_are_the_36_bytes_and_the_protocol_and_a_4in6_key_is_no_frames():
    key36 = bytes(range(36))
    assert fastpath.key6(6, key36) == key36 + b"\x06\0\0\0"
    assert len(fastpath.key6(17, key36)) == fastpath.KEY6_SIZE
    side = fastpath.key4in6(6, bytes(range(12)))
    assert len(side) == fastpath.KEY6_SIZE and side[:12] == bytes(range(12))
    assert struct.unpack_from("<I", side, 36)[0] == 6 | fastpath.V4_IN_6
    with pytest.raises(ValueError):
        fastpath.key6(6, bytes(12))


@settings(max_examples=200)
@given(ADDR6, ADDR6, PORT, PORT, ADDR6, PORT, PROTO)
def test_a_nat66_entry_carries_the_delta_that_gives_scapys_checksum(client, vip, cport,
                                                                    vport, rip, rport, proto):
    frame = frame6(client, vip, cport, vport, proto, payload=b"data")
    old, new = b16(vip) + vport.to_bytes(2, "big"), b16(rip) + rport.to_bytes(2, "big")
    entry = fastpath.nat6(True, OUT, MACS, 1500, old, new)
    assert (entry.action, entry.address, entry.port) == (fastpath.NAT_IN, b16(rip),
                                                         rport.to_bytes(2, "big"))
    assert entry.l4_delta == csum_delta.swap(csum_delta.endpoint6(old, new))
    after = frame6(client, rip, cport, rport, proto, payload=b"data")   # scapy's checksum
    at = 54 + (16 if proto == "tcp" else 6)
    csum = struct.unpack_from("<H", frame, at)[0]
    updated = ~fastpath._fold((~csum & 0xFFFF) + entry.l4_delta) & 0xFFFF
    if proto == "udp" and updated == 0:
        updated = 0xFFFF
    assert struct.pack("<H", updated) == after[at:at + 2]


def test_a_tunnel_below_its_minimum_mtu_sends_everything_to_python():
    src, dst = b16(1), b16(2)
    assert fastpath.tun6(OUT, MACS, 1320, src, dst).mtu == 1320
    assert fastpath.tun6(OUT, MACS, 1319, src, dst).mtu == 0          # 1279 < IPV6_MIN_MTU
    assert fastpath.tun6in4(OUT, MACS, 88, bytes(4), bytes(4)).mtu == 88
    assert fastpath.tun6in4(OUT, MACS, 87, bytes(4), bytes(4)).mtu == 0
    four, six = fastpath.tun4in6(6, bytes(12), OUT, MACS, 1319, src, dst)
    assert four[1].mtu == six[1].mtu == 0
    four, six = fastpath.tun4in6(6, bytes(12), OUT, MACS, 65536, src, dst)
    assert len(four[1].pack()) == fastpath.VALUE_SIZE and four[1].mtu == fastpath.NO_MTU


def test_a_6in4_entry_sums_the_outer_headers_constant_words():
    addresses = bytes([198, 51, 100, 1, 10, 0, 0, 11])
    entry = fastpath.tun6in4(OUT, MACS, 1500, addresses[:4], addresses[4:])
    header = IP(src="198.51.100.1", dst="10.0.0.11", proto=41, ttl=0, id=0, flags=0, len=0)
    raw = bytes(header)
    # the constant words: version/IHL, protocol (TTL 0), the addresses; checksum computed by
    # scapy over exactly those plus zeros
    assert ~csum_delta.swap(entry.tun_sum) & 0xFFFF == int.from_bytes(raw[10:12], "big")
    assert entry.address[:4] == addresses[4:] and entry.tun_src[:4] == addresses[:4]


# -- in the kernel ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded():
    from pylvs.shell import xdp
    conns = xdp.Map(xdp.BPF_MAP_TYPE_HASH, fastpath.KEY_SIZE, fastpath.VALUE_SIZE, 64, "test4")
    conns6 = xdp.Map(xdp.BPF_MAP_TYPE_HASH, fastpath.KEY6_SIZE, fastpath.VALUE6_SIZE, 64,
                     "test6")
    stats = xdp.Map(xdp.BPF_MAP_TYPE_ARRAY, 4, fastpath.STATS.size, 8, "stats")
    program = xdp.Program(fastpath.program(conns.fd, stats.fd, conns6.fd), "fastpath6")
    yield conns, conns6, stats, program
    for closing in (program, conns, conns6, stats):
        closing.close()


def _install(loaded, entries: list[tuple[bytes, object]]) -> None:
    conns, conns6, _, _ = loaded
    for table in (conns, conns6):
        for key in table.keys():
            table.delete(key)
    for key, entry in entries:
        (conns6 if len(key) == fastpath.KEY6_SIZE else conns).update(key, entry.pack())


def _forwarded(loaded, frame: bytes) -> bytes:
    verdict, out = loaded[3].run(frame)
    assert verdict == XDP_REDIRECT, Ether(frame).summary()
    return out


settings_ = settings(max_examples=80, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@root
@settings_
@given(ADDR6, ADDR6, PORT, PORT, PROTO, FLAGS, st.integers(2, 255), st.integers(0, 255),
       st.integers(0, 0xFFFFF), st.binary(max_size=300))
def test_dr6_leaves_as_dr_xmit6(loaded, client, vip, sport, dport, proto, flags, hlim, tc, fl,
                                payload):
    frame = frame6(client, vip, sport, dport, proto, flags, payload, hlim, tc, fl)
    _install(loaded, [(key_of(frame), fastpath.dr6(OUT, MACS, 1500, slot=SLOT))])
    out = _forwarded(loaded, frame)
    assert out == bytes(dr_xmit6(bytearray(frame), parse6(frame), MACS))


@root
@settings_
@given(ADDR6, ADDR6, ADDR6, PORT, PORT, PORT, PROTO, FLAGS, st.integers(2, 255),
       st.binary(max_size=300))
def test_nat66_both_ways_leaves_as_nat_xmit6_and_nat_reply6(loaded, client, vip, rip, cport,
                                                           vport, rport, proto, flags, hlim,
                                                           payload):
    vip18, rip18 = b16(vip) + vport.to_bytes(2, "big"), b16(rip) + rport.to_bytes(2, "big")
    there = frame6(client, vip, cport, vport, proto, flags, payload, hlim)
    back = frame6(rip, client, rport, cport, proto, flags, payload, hlim)
    assume(key_of(there) != key_of(back))  # two directions, two entries
    _install(loaded, [(key_of(there), fastpath.nat6(True, OUT, MACS, 1500, vip18, rip18, SLOT)),
                      (key_of(back), fastpath.nat6(False, IN, BACK, fastpath.NO_MTU, rip18,
                                                   vip18, SLOT))])
    out = _forwarded(loaded, there)
    assert out == bytes(nat_xmit6(bytearray(there), parse6(there), rip, rport, MACS))
    assert scapy_l4_checksum_ok(out)
    out = _forwarded(loaded, back)
    assert out == bytes(nat_reply6(bytearray(back), parse6(back), vip, vport, BACK))
    assert scapy_l4_checksum_ok(out)


@root
@settings_
@given(ADDR6, ADDR6, PORT, PORT, PROTO, st.integers(2, 255), st.integers(0, 255),
       st.integers(0, 0xFFFFF), st.binary(max_size=400), ADDR6, ADDR6)
def test_ip6ip6_leaves_as_tunnel_xmit(loaded, client, vip, cport, vport, proto, hlim, tc, fl,
                                      payload, src, rip):
    frame = frame6(client, vip, cport, vport, proto, "A", payload, hlim, tc, fl)
    _install(loaded, [(key_of(frame), fastpath.tun6(OUT, MACS, 1500, b16(src), b16(rip),
                                                    SLOT))])
    out = _forwarded(loaded, frame)
    assert out == bytes(tunnel_xmit(bytearray(frame), parse6(frame), 6, src, rip, MACS))
    outer = Ether(out)[IPv6]
    assert (outer.nh, outer.fl, outer.tc, outer.hlim) == (41, 0, ecn_encapsulate(tc), hlim - 1)
    assert outer.plen == len(frame) - 14


@root
@settings_
@given(ADDR6, ADDR6, PORT, PORT, PROTO, st.integers(2, 255), st.integers(0, 255),
       st.binary(max_size=400), ADDR4, ADDR4)
def test_6in4_leaves_as_tunnel_xmit_its_ip_id_the_entrys_count(loaded, client, vip, cport,
                                                               vport, proto, hlim, tc,
                                                               payload, src, rip):
    frame = frame6(client, vip, cport, vport, proto, "A", payload, hlim, tc)
    key = key_of(frame)
    _install(loaded, [(key, fastpath.tun6in4(OUT, MACS, 1500, src.to_bytes(4, "big"),
                                             rip.to_bytes(4, "big"), SLOT))])
    out = _forwarded(loaded, frame)
    packets = fastpath.counters(loaded[1].lookup(key))[0]
    assert out == bytes(tunnel_xmit(bytearray(frame), parse6(frame), 4, src, rip, MACS,
                                    ip_id=packets))
    outer = Ether(out)[IP]
    sent = outer.chksum
    del outer.chksum
    assert IP(bytes(outer)).chksum == sent and outer.proto == 41 and outer.flags == 0


@root
@settings_
@given(ADDR4, ADDR4, PORT, PORT, PROTO, st.integers(2, 255), st.integers(0, 255),
       st.booleans(), st.binary(max_size=400), ADDR6, ADDR6)
def test_4in6_leaves_as_tunnel_xmit(loaded, client, vip, cport, vport, proto, ttl, tos, df,
                                    payload, src, rip):
    frame = frame4(client, vip, cport, vport, proto, "A", payload, ttl, tos, df)
    _install(loaded, fastpath.tun4in6(NUMBER[proto], frame[26:38], OUT, MACS, 1500, b16(src),
                                      b16(rip), SLOT))
    out = _forwarded(loaded, frame)
    assert out == bytes(tunnel_xmit(bytearray(frame), parse(frame), 6, src, rip, MACS))
    inner = Ether(out)[IP]
    sent = inner.chksum
    del inner.chksum
    assert IP(bytes(inner)).chksum == sent and inner.ttl == ttl - 1


@root
def test_4in6_without_its_addresses_passes_uncounted(loaded):
    frame = frame4(0xC0000201, 0xC0000264, 4000, 80)
    entries = fastpath.tun4in6(6, frame[26:38], OUT, MACS, 1500, b16(1), b16(2), SLOT)
    _install(loaded, entries[:1])
    assert loaded[3].run(frame) == (XDP_PASS, frame)
    assert fastpath.counters(loaded[0].lookup(entries[0][0]))[0] == 0


@root
def test_a_udp_checksum_of_zero_passes_to_python_which_computes_it(loaded):
    frame = bytearray(frame6(1, 2, 5353, 53, "udp", payload=b"query"))
    frame[60:62] = b"\0\0"
    _install(loaded, [(key_of(frame), fastpath.nat6(True, OUT, MACS, 1500, b16(2) + b"\0\x35",
                                                    b16(3) + b"\0\x35"))])
    assert loaded[3].run(bytes(frame)) == (XDP_PASS, bytes(frame))


@root
def test_a_nat66_udp_checksum_computed_as_zero_goes_out_as_ffff(loaded):
    shape = frame6(1, 3, 5353, 8053, "udp", payload=b"ab\0\0")  # as it leaves, last word 0
    flow = parse6(shape)
    zeroed = bytearray(shape)
    zeroed[60:62] = b"\0\0"
    word = l4_checksum6(zeroed, flow)  # that word as the last one makes the sum 0xFFFF
    assert word != 0xFFFF
    frame = frame6(1, 2, 5353, 53, "udp", payload=b"ab" + word.to_bytes(2, "big"))
    _install(loaded, [(key_of(frame), fastpath.nat6(True, OUT, MACS, 1500, b16(2) + b"\0\x35",
                                                    b16(3) + b"\x1f\x75"))])
    out = _forwarded(loaded, frame)
    assert out == bytes(nat_xmit6(bytearray(frame), parse6(frame), 3, 8053, MACS))
    assert out[60:62] == b"\xff\xff" and scapy_l4_checksum_ok(out)


@root
@pytest.mark.parametrize("flags", ["S", "F", "R", "FA", "SA", "RA", "FPA"])
def test_what_may_change_a_state_passes_to_python_untouched(loaded, flags):
    established = frame6(1, 2, 4000, 80)
    frame = frame6(1, 2, 4000, 80, flags=flags)
    _install(loaded, [(key_of(established), fastpath.dr6(OUT, MACS, 1500))])
    assert loaded[3].run(frame) == (XDP_PASS, frame)
    assert loaded[3].run(established)[0] == XDP_REDIRECT


def _with_header(header) -> bytes:
    return bytes(Ether() / IPv6(src=text6(1), dst=text6(2)) / header
                 / TCP(sport=4000, dport=80, flags="A") / Raw(b"x" * 20))


@root
@pytest.mark.parametrize("header", [IPv6ExtHdrHopByHop(), IPv6ExtHdrRouting(),
                                    IPv6ExtHdrDestOpt(), IPv6ExtHdrFragment(m=1),
                                    IPv6ExtHdrFragment(offset=8)],
                         ids=["hop-by-hop", "routing", "destination", "fragment 0", "fragment"])
def test_extension_headers_pass_even_when_their_bytes_are_a_key(loaded, header):
    frame = _with_header(header)
    plain = frame6(1, 2, 4000, 80)
    _install(loaded, [(key_of(plain), fastpath.dr6(OUT, MACS, 1500)),
                      (fastpath.key6(6, frame[22:58]), fastpath.dr6(OUT, MACS, 1500)),
                      (fastpath.key6(frame[20], frame[22:58]), fastpath.dr6(OUT, MACS, 1500))])
    assert loaded[3].run(frame) == (XDP_PASS, frame)


@root
def test_misses_low_hop_limits_icmpv6_and_malformed_frames_pass(loaded):
    established = frame6(1, 2, 4000, 80, payload=b"y" * 40)
    _install(loaded, [(key_of(established), fastpath.dr6(OUT, MACS, 1500))])
    icmp = bytes(Ether() / IPv6(src=text6(1), dst=text6(2)) / ICMPv6EchoRequest(id=4000))
    long_plen = bytearray(established)
    long_plen[18:20] = (len(established) - 54 + 1).to_bytes(2, "big")   # past the frame
    short_plen = bytearray(established)
    short_plen[18:20] = (19).to_bytes(2, "big")                          # TCP header past it
    bad_offset = bytearray(established)
    bad_offset[66] = 0x40                                                # data offset 4
    cases = [
        frame6(1, 2, 4001, 80),                                          # no such connection
        frame6(1, 2, 4000, 80, hlim=1),
        frame6(1, 2, 4000, 80, hlim=0),
        frame6(1, 2, 4000, 80, proto="udp"),                             # another protocol
        icmp,
        bytes(long_plen),
        bytes(short_plen),
        bytes(bad_offset),
        established[:60],                                                # cut short
        bytes([*established[:14], 0x40, *established[15:]]),            # version 4
    ]
    for frame in cases:
        assert loaded[3].run(frame) == (XDP_PASS, frame), Ether(frame).summary()
    assert loaded[3].run(established)[0] == XDP_REDIRECT


@root
@pytest.mark.parametrize(("method", "overhead"), [("dr", 0), ("nat", 0), ("ip6ip6", 40),
                                                  ("6in4", 20)])
def test_a_frame_past_the_hops_mtu_passes_one_that_fits_does_not(loaded, method, overhead):
    mtu = 1400
    fits = frame6(1, 2, 4000, 80, payload=b"z" * (mtu - overhead - 60))   # IPv6+TCP: 60
    too_big = frame6(1, 2, 4000, 80, payload=b"z" * (mtu - overhead - 59))
    entry = {"dr": fastpath.dr6(OUT, MACS, mtu),
             "nat": fastpath.nat6(True, OUT, MACS, mtu, b16(2) + b"\0\x50", b16(3) + b"\0\x50"),
             "ip6ip6": fastpath.tun6(OUT, MACS, mtu, b16(7), b16(8)),
             "6in4": fastpath.tun6in4(OUT, MACS, mtu, bytes(4), bytes(4))}[method]
    _install(loaded, [(key_of(fits), entry)])
    assert loaded[3].run(too_big) == (XDP_PASS, too_big)
    assert loaded[3].run(fits)[0] == XDP_REDIRECT


@root
def test_4in6_checks_the_mtu_with_its_40_bytes(loaded):
    mtu = 1400
    fits = frame4(0xC0000201, 0xC0000264, 4000, 80, payload=b"z" * (mtu - 40 - 40))
    too_big = frame4(0xC0000201, 0xC0000264, 4000, 80, payload=b"z" * (mtu - 40 - 39))
    _install(loaded, fastpath.tun4in6(6, fits[26:38], OUT, MACS, mtu, b16(1), b16(2)))
    assert loaded[3].run(too_big) == (XDP_PASS, too_big)
    assert loaded[3].run(fits)[0] == XDP_REDIRECT


@root
def test_a_tunnel_below_the_ipv6_minimum_passes_everything(loaded):
    frame = frame6(1, 2, 4000, 80)
    _install(loaded, [(key_of(frame), fastpath.tun6(OUT, MACS, 1319, b16(7), b16(8)))])
    assert loaded[3].run(frame) == (XDP_PASS, frame)


@root
def test_counters_time_and_stats_rows_of_ipv6_entries(loaded):
    conns, conns6, stats, program = loaded
    rip18, vip18 = b16(3) + b"\x1f\x90", b16(2) + b"\0\x50"
    there = [frame6(1, 2, 4000, 80, payload=b"x" * n) for n in (0, 100, 200)]
    back = frame6(3, 1, 8080, 4000, payload=b"y" * 1000)
    _install(loaded, [(key_of(there[0]), fastpath.nat6(True, OUT, MACS, 1500, vip18, rip18,
                                                       SLOT)),
                      (key_of(back), fastpath.nat6(False, IN, BACK, fastpath.NO_MTU, rip18,
                                                   vip18, SLOT))])
    stats.update(struct.pack("<I", SLOT), bytes(fastpath.STATS.size))
    for frame in there + [back]:
        assert program.run(frame)[0] == XDP_REDIRECT
    packets, octets, last_ns = fastpath.counters(conns6.lookup(key_of(there[0])))
    assert (packets, octets) == (3, 3 * 60 + 300) and last_ns > 0
    assert fastpath.STATS.unpack(stats.lookup(struct.pack("<I", SLOT))) == (3, 480, 1, 1060)
    frame = frame4(0xC0000201, 0xC0000264, 4000, 80, payload=b"w" * 10)
    entries = fastpath.tun4in6(6, frame[26:38], OUT, MACS, 1500, b16(1), b16(2), SLOT)
    _install(loaded, entries)
    assert program.run(frame)[0] == XDP_REDIRECT
    assert fastpath.counters(conns.lookup(entries[0][0]))[:2] == (1, 50)
    assert fastpath.counters(conns6.lookup(entries[1][0]))[0] == 0


# -- the IPv4 program within ------------------------------------------------------------------


def test_without_an_ipv6_map_the_program_is_the_ipv4_one():
    assert fastpath.program(3, 4) != fastpath.program(3, 4, 5)
    assert len(fastpath.program(3, 4)) < len(fastpath.program(3, 4, 5))


@pytest.fixture(scope="module")
def ipv4_only():
    from pylvs.shell import xdp
    conns = xdp.Map(xdp.BPF_MAP_TYPE_HASH, fastpath.KEY_SIZE, fastpath.VALUE_SIZE, 64, "test4")
    stats = xdp.Map(xdp.BPF_MAP_TYPE_ARRAY, 4, fastpath.STATS.size, 8, "stats")
    program = xdp.Program(fastpath.program(conns.fd, stats.fd), "fastpath4")
    yield conns, program
    for closing in (program, conns, stats):
        closing.close()


@root
@settings_
@given(st.sampled_from(["dr", "nat", "nat_reply", "tun"]), PORT, st.integers(0, 255),
       st.binary(max_size=300), st.sampled_from(["A", "PA", "S", "F", "R", ""]), PROTO)
def test_ipv4_frames_leave_both_programs_the_same(loaded, ipv4_only, method, cport, ttl,
                                                 payload, flags, proto):
    if method == "dr":
        director, first = dr_director(), dr_frame(sport=cport)
        frame = dr_frame(sport=cport, ttl=ttl, flags=flags, payload=payload)
    elif method == "tun":
        director, first = tun_director(proto), tun_frame(proto=proto)
        frame = bytearray(tun_frame(payload, 0, ttl, True, proto))
    else:
        director, first = nat_director(proto), inbound("203.0.113.9", cport, b"", proto)
        make = inbound if method == "nat" else reply
        packet = Ether(make("203.0.113.9", cport, payload, proto, flags))
        packet[IP].ttl = ttl
        frame = bytes(packet.__class__(bytes(packet)))
    director.handle(bytearray(first), now=0.0)
    entries = [entry for conn in director.table
               for entry in fastpath.for_connection(conn, director.hops[conn.server.ip],
                                                    {"eth0": 2, "eth1": 3}, slot=SLOT)]
    _install(loaded, entries)
    for key in ipv4_only[0].keys():
        ipv4_only[0].delete(key)
    for key, entry in entries:
        ipv4_only[0].update(key, entry.pack())
    assert loaded[3].run(bytes(frame)) == ipv4_only[1].run(bytes(frame))


# -- against the director: what for_connection installs forwards as director.handle does ----


def _director_frames(method: str, servers: list[str], vip: str, proto: str, payload: bytes,
                     hlim: int) -> tuple[object, bytes]:
    """A director with one connection made by its first frame, and the next frame."""
    d = director6(method, servers, vip=vip, proto=proto, rport=8080)
    l4 = (lambda flags: TCP(sport=40000, dport=80, flags=flags)) if proto == "tcp" else (
        lambda flags: UDP(sport=40000, dport=80))
    ip = (lambda: IPv6(src=CLIENT6, dst=vip, hlim=hlim)) if ":" in vip else (
        lambda: IP(src="203.0.113.5", dst=vip, ttl=hlim))
    for flags in ("S", "A"):
        sent = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / ip() / l4(flags) / payload)
        if flags == "S":
            d.handle(bytearray(sent), 0.0)
    return d, sent


@root
@settings_
@given(st.sampled_from([("dr", RS6, VIP6), ("nat", RS6[:1], VIP6), ("tun", RS6[:1], VIP6),
                        ("tun", [RS4], VIP6), ("tun", RS6[:1], VIP4)]),
       PROTO, st.binary(max_size=200), st.integers(2, 255))
def test_for_connection_forwards_as_the_director(loaded, method, proto, payload, hlim):
    """DR, NAT66, ip6ip6, 6in4 and 4in6: the bound forwarder's entries give director.handle's
    bytes (6in4's outer IP ID and checksum aside: the program numbers by its count)."""
    forward, servers, vip = method
    d, sent = _director_frames(forward, servers, vip, proto, payload, hlim)
    (conn,) = list(d.table)
    _install(loaded, fastpath.for_connection(conn, d.hops[conn.server.ip], {"eth0": 7},
                                             slot=SLOT))
    out = _forwarded(loaded, sent)
    expected = bytes(d.handle(bytearray(sent), 1.0)[0])
    if ":" not in servers[0] and ":" in vip:  # 6in4
        out, expected = (x[:18] + x[20:24] + x[26:] for x in (out, expected))
    assert out == expected
