"""GUE and GRE as IPVS sends them (pylvs.core.encap): every header field of what
gue_encapsulate, gre_encapsulate and tunnel_xmit make, both inner and both outer families, against
the same packet built by scapy (GRE and UDP are scapy's, with their checksums; scapy has no GUE,
so its 4 or 12 bytes are written out by hand from include/net/gue.h); the remote-checksum option
only for a partial packet; the MTU each type leaves; the GUE source port; and the unwrapping the
real server does."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, Ether
from scapy.packet import Raw

from pylvs.core import encap
from pylvs.core.csum_delta import fold
from pylvs.core.ipv6 import parse6, pseudo_sum6
from pylvs.core.packet import checksum, parse
from pylvs.core.tunnel6 import Verdict, ecn_encapsulate

MACS = bytes.fromhex("0a00000000aa" "0a00000000bb")
ADDR4 = st.integers(1, (1 << 32) - 1)
ADDR6 = st.integers(1, (1 << 128) - 1)
PORT = st.integers(1, 0xFFFF)
PROTO = st.sampled_from(["tcp", "udp"])
FLAGS = st.sampled_from(["nocsum", "csum", "remcsum"])
FAMILY = st.sampled_from([4, 6])


def text(addr: int, family: int) -> str:
    return str(ipaddress.IPv4Address(addr) if family == 4 else ipaddress.IPv6Address(addr))


def frame_of(family: int, src: int, dst: int, sport: int, dport: int, proto: str = "tcp",
             payload: bytes = b"", ttl: int = 64, tos: int = 0, df: bool = True) -> bytes:
    upper = TCP(sport=sport, dport=dport, flags="A") if proto == "tcp" else \
        UDP(sport=sport, dport=dport)
    if family == 4:
        ip = IP(src=text(src, 4), dst=text(dst, 4), ttl=ttl, tos=tos, flags="DF" if df else 0)
    else:
        ip = IPv6(src=text(src, 6), dst=text(dst, 6), hlim=ttl, tc=tos, fl=0x12345)
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip / upper
                 / Raw(payload))


def flow_of(frame: bytes):
    return parse(frame) if frame[12:14] == b"\x08\x00" else parse6(frame)


def outer_of(frame: bytes, server: int, src: int, dst: int, proto: int, ip_id: int):
    """scapy's outer header for the inner packet of ``frame``, as IPVS fills it."""
    inner = Ether(frame).payload
    if isinstance(inner, IP):
        dsfield, ttl, df = inner.tos, inner.ttl, bool(inner.flags & 2)
    else:
        dsfield, ttl, df = inner.tc, inner.hlim, False
    if server == 4:
        return IP(src=text(src, 4), dst=text(dst, 4), tos=ecn_encapsulate(dsfield), ttl=ttl,
                  flags="DF" if df else 0, id=0 if df else ip_id, proto=proto)
    return IPv6(src=text(src, 6), dst=text(dst, 6), tc=ecn_encapsulate(dsfield), fl=0,
                hlim=ttl, nh=proto)


def addresses(server: int):
    return ADDR4 if server == 4 else ADDR6


# -- GUE ---------------------------------------------------------------------------------------


@settings(max_examples=150)
@given(FAMILY, FAMILY, PROTO, FLAGS, st.integers(0, 255), st.integers(1, 255), st.booleans(),
       st.binary(max_size=300), PORT, st.integers(0, 0xFFFF), st.data())
def test_gue_is_scapys_udp_around_the_four_byte_header(family, server, proto, flags, tos, ttl,
                                                       df, payload, dport, ip_id, data):
    client, vip = data.draw(addresses(family)), data.draw(addresses(family))
    src, dst = data.draw(addresses(server)), data.draw(addresses(server))
    cport, vport = data.draw(PORT), data.draw(PORT)
    frame = frame_of(family, client, vip, cport, vport, proto, payload, ttl, tos, df)
    flow = flow_of(frame)
    out = encap.gue_encapsulate(frame, flow, src, dst, server, dport, flags, ip_id)
    sport = encap.gue_source_port(flow)
    gue = bytes((0, 4 if family == 4 else 41, 0, 0))         # variant 0, hlen 0, flags 0
    udp = UDP(sport=sport, dport=dport, chksum=0 if flags == "nocsum" else None)
    expected = (Ether(frame[:14]) / outer_of(frame, server, src, dst, 17, ip_id) / udp
                / Raw(gue + frame[14:]))
    expected[Ether].type = 0x0800 if server == 4 else 0x86DD
    assert out == bytes(expected)
    dissected = Ether(out)
    assert dissected[UDP].len == 8 + 4 + len(frame) - 14
    if flags == "nocsum":
        assert dissected[UDP].chksum == 0     # over IPv6 too: udp6_set_csum(nocheck)
    else:
        assert dissected[UDP].chksum != 0


def test_a_gue_checksum_computed_as_zero_is_sent_as_ffff():
    """With sport 0 the checksum is ~S; a source port of that value makes the sum 0xFFFF and
    the computed checksum 0 (the inner packet's own checksum keeps its payload out of it)."""
    frame = frame_of(4, 0xC0000205, 0xC0000264, 40000, 80, "udp", b"data")
    first = encap.gue_encapsulate(frame, parse(frame), 0xAC100001, 0xAC10000B, 4, 6080,
                                  "csum", 1, sport=0)
    sport = int.from_bytes(first[40:42], "big")
    out = encap.gue_encapsulate(frame, parse(frame), 0xAC100001, 0xAC10000B, 4, 6080, "csum",
                                1, sport=sport)
    assert out[40:42] == b"\xff\xff"
    datagram = bytearray(out[34:])
    datagram[6:8] = b"\0\0"
    assert checksum(datagram, encap._pseudo_sum(4, 0xAC100001, 0xAC10000B, 17,
                                                len(datagram))) == 0
    assert Ether(out)[UDP].chksum == 0xFFFF


def test_gue_refuses_port_zero_as_ip_vs_add_dest_does():
    frame = frame_of(4, 1, 2, 3, 4)
    with pytest.raises(ValueError, match="tunnel port"):
        encap.gue_encapsulate(frame, parse(frame), 5, 6, 4, 0, "nocsum", 1)
    with pytest.raises(ValueError, match="flags"):
        encap.gue_encapsulate(frame, parse(frame), 5, 6, 4, 1, "checksum", 1)


def partial_frame(family: int, proto: str, payload: bytes) -> bytes:
    """A frame whose TCP or UDP checksum is partial, as a local sender with offload leaves
    it: the folded pseudo-header sum, not complemented (~tcp_v4_check(len, s, d, 0))."""
    frame = bytearray(frame_of(family, 0xC0000205 if family == 4 else 0x20010DB8 << 96 | 5,
                               0xC0000264 if family == 4 else 0x20010DB8 << 96 | 0x100,
                               40000, 80, proto, payload))
    flow = flow_of(bytes(frame))
    at = flow.l4off + (16 if proto == "tcp" else 6)
    length = flow.ip_len - (flow.l4off - flow.l3off)
    if family == 4:
        pseudo = sum(struct.unpack("!4H", frame[26:34])) + flow.proto + length
    else:
        pseudo = pseudo_sum6(frame, 14, length, flow.proto)
    frame[at:at + 2] = fold(pseudo).to_bytes(2, "big")
    return bytes(frame)


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_remcsum_adds_its_option_only_for_a_partial_checksum(family, proto):
    full = frame_of(family, 0xC0000205 if family == 4 else 0x20010DB8 << 96 | 5,
                    0xC0000264 if family == 4 else 0x20010DB8 << 96 | 0x100, 40000, 80,
                    proto, b"hello")
    plain = encap.gue_encapsulate(full, flow_of(full), 1, 2, 4, 6080, "remcsum", 9)
    assert plain == encap.gue_encapsulate(full, flow_of(full), 1, 2, 4, 6080, "csum", 9)
    assert encap.header_length("gue", "remcsum") == 12
    partial = partial_frame(family, proto, b"hello")
    out = encap.gue_encapsulate(partial, flow_of(partial), 1, 2, 4, 6080, "remcsum", 9,
                                partial=True)
    gue = out[42:54]
    start = 20 if family == 4 else 40
    field = start + (16 if proto == "tcp" else 6)
    # Hlen 2, proto, flag P; the private flags word: REMCSUM; csum_start, start + csum_offset
    assert gue == struct.pack("!BBHIHH", 2, 4 if family == 4 else 41, 1, 0x80000000, start,
                              field)
    assert out[54:] == partial[14:]                      # the inner checksum left partial
    assert Ether(out)[UDP].len == 8 + 12 + len(partial) - 14
    assert encap.header_length("gue", "remcsum", partial=True) == 20
    # the real server completes it (skb_remcsum_process): scapy's full checksum
    got_family, inner = encap.gue_decapsulate(out[42:])
    assert got_family == family and inner == full[14:]
    # and the outer UDP checksum covers the datagram as sent
    datagram = bytearray(out[34:])
    datagram[6:8] = b"\0\0"
    assert out[40:42] == encap.udp_checksum(4, 1, 2, datagram).to_bytes(2, "big")


# -- GRE ---------------------------------------------------------------------------------------


@settings(max_examples=150)
@given(FAMILY, FAMILY, PROTO, st.sampled_from(["nocsum", "csum", "remcsum"]),
       st.integers(0, 255), st.integers(1, 255), st.booleans(), st.binary(max_size=300),
       st.integers(0, 0xFFFF), st.data())
def test_gre_is_scapys_gre(family, server, proto, flags, tos, ttl, df, payload, ip_id, data):
    client, vip = data.draw(addresses(family)), data.draw(addresses(family))
    src, dst = data.draw(addresses(server)), data.draw(addresses(server))
    frame = frame_of(family, client, vip, data.draw(PORT), data.draw(PORT), proto, payload, ttl,
                     tos, df)
    out = encap.gre_encapsulate(frame, flow_of(frame), src, dst, server, flags, ip_id)
    csum = flags == "csum"                               # remcsum means nothing to GRE
    gre = GRE(chksum_present=int(csum), proto=0x0800 if family == 4 else 0x86DD)
    expected = (Ether(frame[:14]) / outer_of(frame, server, src, dst, 47, ip_id) / gre
                / Raw(frame[14:]))
    expected[Ether].type = 0x0800 if server == 4 else 0x86DD
    assert out == bytes(expected)
    at = 34 if server == 4 else 54
    assert len(out) - len(frame) == (20 if server == 4 else 40) + (8 if csum else 4)
    if csum:
        assert out[at:at + 2] == b"\x80\x00" and checksum(out[at:]) == 0
        sent = Ether(out)[GRE].chksum
        rebuilt = Ether(out)
        del rebuilt[GRE].chksum
        assert Ether(bytes(rebuilt))[GRE].chksum == sent    # scapy's GRE checksum
    else:
        assert out[at:at + 2] == b"\x00\x00"


# -- the whole of it ---------------------------------------------------------------------------


@settings(max_examples=100)
@given(FAMILY, FAMILY, st.sampled_from(["gue", "gre"]), FLAGS, st.integers(2, 255),
       st.binary(max_size=200), st.data())
def test_tunnel_xmit_decrements_then_encapsulates_and_addresses(family, server, tun_type, flags,
                                                                ttl, payload, data):
    client, vip = data.draw(addresses(family)), data.draw(addresses(family))
    src, dst = data.draw(addresses(server)), data.draw(addresses(server))
    frame = frame_of(family, client, vip, 40000, 80, "tcp", payload, ttl)
    out = encap.tunnel_xmit(bytearray(frame), flow_of(frame), tun_type, server, src, dst, MACS,
                            port=6080, flags=flags, ip_id=5)
    assert out[:12] == MACS
    inner = Ether(out).payload.payload
    if tun_type == "gue":
        inner = (IP if family == 4 else IPv6)(bytes(inner.payload)[4:])
    else:
        inner = inner.payload
    if family == 4:
        assert inner.ttl == ttl - 1
        sent = inner.chksum
        del inner.chksum
        assert IP(bytes(inner)).chksum == sent                 # ip_send_check
    else:
        assert inner.hlim == ttl - 1
    outer = Ether(out).payload
    assert (outer.ttl if server == 4 else outer.hlim) == ttl - 1
    # the same as decrementing by hand and encapsulating
    by_hand = bytearray(frame)
    flow = flow_of(frame)
    if family == 4:
        by_hand[22] -= 1
        by_hand[24:26] = b"\0\0"
        by_hand[24:26] = checksum(by_hand[14:34]).to_bytes(2, "big")
    else:
        by_hand[21] -= 1
    flow = flow_of(bytes(by_hand))
    if tun_type == "gue":
        expected = encap.gue_encapsulate(by_hand, flow, src, dst, server, 6080, flags, 5)
    else:
        expected = encap.gre_encapsulate(by_hand, flow, src, dst, server, flags, 5)
    assert out == MACS + expected[12:]


def test_tunnel_xmit_keeps_ip_in_ip_as_it_was():
    from pylvs.core.packet import encapsulate_ipip
    from pylvs.core.tunnel6 import tunnel_xmit
    frame = frame_of(4, 0xC0000205, 0xC0000264, 40000, 80)
    out = encap.tunnel_xmit(bytearray(frame), parse(frame), "ipip", 4, 1, 2, MACS, ip_id=3)
    mine = bytearray(frame)
    mine[22] -= 1
    mine[24:26] = b"\0\0"
    mine[24:26] = checksum(mine[14:34]).to_bytes(2, "big")
    assert out == MACS + encapsulate_ipip(mine, parse(bytes(mine)), 1, 2, 3)[12:]
    six = frame_of(6, 5, 6, 40000, 80)
    assert encap.tunnel_xmit(bytearray(six), parse6(six), "ipip", 6, 1, 2, MACS) == \
        tunnel_xmit(bytearray(six), parse6(six), 6, 1, 2, MACS)


def test_the_outer_ip_id_is_zero_with_df_and_the_callers_without():
    """ip_select_ident(net, skb, NULL): no socket, DF set and ignore_df not yet: ID 0."""
    with_df = frame_of(4, 1, 2, 3, 4, df=True)
    without = frame_of(4, 1, 2, 3, 4, df=False)
    six = frame_of(6, 1, 2, 3, 4)
    for frame, df, ident in ((with_df, True, 0), (without, False, 77), (six, False, 77)):
        out = encap.gre_encapsulate(frame, flow_of(frame), 9, 10, 4, "nocsum", 77)
        assert Ether(out)[IP].id == ident and bool(Ether(out)[IP].flags & 2) == df
    out = encap.gre_encapsulate(with_df, parse(with_df), 9, 10, 4, "nocsum", 77,
                                pmtu_disc=False)
    assert Ether(out)[IP].id == 77 and not Ether(out)[IP].flags & 2


def test_ce_is_sent_as_ect0_outside():
    frame = frame_of(4, 1, 2, 3, 4, tos=0xB8 | 3)
    out = encap.gue_encapsulate(frame, parse(frame), 9, 10, 6, 6080, "nocsum", 1)
    assert Ether(out)[IPv6].tc == 0xB8 | 2 and Ether(out)[IPv6].fl == 0


# -- the MTU -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("tun_type", "server", "flags", "partial", "expected"), [
    ("ipip", 4, "nocsum", False, 20), ("ipip", 6, "nocsum", False, 40),
    ("gue", 4, "nocsum", False, 32), ("gue", 4, "csum", False, 32),
    ("gue", 4, "remcsum", False, 32), ("gue", 4, "remcsum", True, 40),
    ("gue", 6, "csum", False, 52), ("gue", 6, "remcsum", True, 60),
    ("gre", 4, "nocsum", False, 24), ("gre", 4, "csum", False, 28),
    ("gre", 4, "remcsum", False, 24), ("gre", 6, "nocsum", False, 44),
    ("gre", 6, "csum", False, 48),
])
def test_the_overhead_of_each_type(tun_type, server, flags, partial, expected):
    assert encap.overhead(tun_type, server, flags, partial) == expected


def test_the_mtu_checks_follow_tunnel6s_rules_with_each_overhead():
    # the usable MTU is the route's less the whole overhead, and what an ICMP error carries
    assert encap.tunnel_mtu_check(4, 1468, 1500, "gue", 4, df=True) == (Verdict.FITS, 1468)
    assert encap.tunnel_mtu_check(4, 1469, 1500, "gue", 4, df=True) == (Verdict.FRAG_NEEDED,
                                                                         1468)
    assert encap.tunnel_mtu_check(4, 1469, 1500, "gue", 4) == (Verdict.FRAGMENT, 1468)
    assert encap.tunnel_mtu_check(6, 1473, 1500, "gre", 4, "csum") == (Verdict.TOO_BIG, 1472)
    assert encap.tunnel_mtu_check(6, 1448, 1500, "gue", 6) == (Verdict.FITS, 1448)
    # below 68 (an IPv4 route) or 1280 (IPv6) after every header: dropped without a word
    assert encap.tunnel_mtu_check(4, 60, 100, "gue", 4)[0] is Verdict.FITS
    assert encap.tunnel_mtu_check(4, 60, 99, "gue", 4) == (Verdict.DROP, 67)
    assert encap.tunnel_mtu_check(6, 60, 1332, "gue", 6)[0] is Verdict.FITS
    assert encap.tunnel_mtu_check(6, 60, 1331, "gue", 6) == (Verdict.DROP, 1279)
    assert encap.tunnel_mtu_check(4, 60, 1327, "gre", 6, "csum") == (Verdict.DROP, 1279)
    frame = frame_of(4, 1, 2, 3, 4, payload=b"x" * 1429)                     # 1469 bytes
    assert encap.tunnel_mtu_verdict(frame, parse(frame), 1500, "gue", 4) == (
        Verdict.FRAG_NEEDED, 1468)
    assert encap.tunnel_mtu_verdict(frame, parse(frame), 1500, "gue", 4, pmtu_disc=False) == (
        Verdict.FRAGMENT, 1468)


# -- the source port ---------------------------------------------------------------------------


def test_the_port_mapping_is_udp_flow_src_ports():
    low, high = encap.LOCAL_PORT_RANGE
    assert (low, high) == (32768, 60999)
    # hash ^= hash << 16; ((u64)hash * (high - low)) >> 32) + low
    assert encap.port_from_hash(0x80000000) == ((0x80000000 * 28231) >> 32) + low
    assert encap.port_from_hash(0x00000001) == ((0x00010001 * 28231) >> 32) + low
    assert encap.port_from_hash(0xFFFFFFFF) == low          # folded to 0x0000FFFF
    assert encap.port_from_hash(0x0000FFFF) == high - 1     # folded to 0xFFFFFFFF
    assert encap.port_from_hash(0, 1, 65535) == 1


@given(FAMILY, PROTO, st.data())
def test_the_source_port_is_the_flows_and_the_same_both_ways(family, proto, data):
    a, b = data.draw(addresses(family)), data.draw(addresses(family))
    pa, pb = data.draw(PORT), data.draw(PORT)
    there = flow_of(frame_of(family, a, b, pa, pb, proto))
    back = flow_of(frame_of(family, b, a, pb, pa, proto))
    port = encap.gue_source_port(there)
    assert 32768 <= port < 60999
    assert port == encap.gue_source_port(back) == encap.gue_source_port(there)
    assert encap.flow_hash(there) != 0


def test_flows_spread_over_the_range():
    ports = {encap.gue_source_port(parse(frame_of(4, 0xC0000205, 0xC0000264, cport, 80)))
             for cport in range(40000, 42000)}
    assert len(ports) > 1900                            # 2,000 flows, few collisions
    assert min(ports) < 33500 and max(ports) > 60000


# -- the real server's side ----------------------------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("flags", ["nocsum", "csum"])
def test_what_is_sent_unwraps_to_the_inner_packet(family, flags):
    frame = frame_of(family, 1, 2, 40000, 80, "tcp", b"payload")
    for server in (4, 6):
        at = 14 + (20 if server == 4 else 40)
        out = encap.gue_encapsulate(frame, flow_of(frame), 5, 6, server, 6080, flags, 1)
        assert encap.gue_decapsulate(out[at + 8:]) == (family, frame[14:])
        out = encap.gre_encapsulate(frame, flow_of(frame), 5, 6, server, flags, 1)
        assert encap.gre_decapsulate(out[at:]) == (family, frame[14:])


def test_gue_variant_1_is_the_packet_itself():
    frame = frame_of(4, 1, 2, 3, 4)
    assert encap.gue_decapsulate(frame[14:]) == (4, frame[14:])


@pytest.mark.parametrize(("payload", "reason"), [
    (b"\x00\x04", "malformed"),
    (b"\x20\x04\x00\x00", "control"),                    # C set
    (b"\x80\x04\x00\x00", "malformed"),                  # version 2
    (b"\x00\x04\x00\x02", "unknown_flags"),
    (b"\x01\x04\x00\x01\x40\x00\x00\x00", "unknown_flags"),   # a private flag fou lacks
    (b"\x00\x04\x00\x01", "malformed"),                  # P without its options
    (b"\x01\x11\x00\x00\x00\x00\x00\x00", "not_ip"),     # proto/ctype 17
    (b"\x00\x00\x00\x00", "not_ip"),                     # proto/ctype 0: dropped
])
def test_what_fou_drops_is_refused_with_a_reason(payload, reason):
    with pytest.raises(encap.NotDecapsulated) as caught:
        encap.gue_decapsulate(payload)
    assert caught.value.reason == reason


def test_gre_checks_its_checksum_and_refuses_what_it_cannot_read():
    frame = frame_of(4, 1, 2, 3, 4, payload=b"abc")
    out = bytearray(encap.gre_encapsulate(frame, parse(frame), 5, 6, 4, "csum", 1))
    good = bytes(out[34:])
    out[-1] ^= 0xFF
    for payload, reason in ((bytes(out[34:]), "bad_checksum"), (b"\x00\x00", "malformed"),
                            (b"\x00\x01\x08\x00" + frame[14:], "unsupported"),   # version 1
                            (b"\x40\x00\x08\x00" + frame[14:], "unsupported"),   # routing
                            (b"\x80\x00\x08\x00", "malformed"),
                            (b"\x00\x00\x65\x58" + frame[14:], "not_ip")):       # Ethernet
        with pytest.raises(encap.NotDecapsulated) as caught:
            encap.gre_decapsulate(payload)
        assert caught.value.reason == reason
    assert encap.gre_decapsulate(good) == (4, frame[14:])
    keyed = b"\x30\x00\x08\x00" + b"KEY!" + b"SEQ#" + frame[14:]          # K and S skipped
    assert encap.gre_decapsulate(keyed) == (4, frame[14:])


def test_the_constants_are_ip_vs_hs():
    assert encap.TUN_TYPES == {"ipip": 0, "gue": 1, "gre": 2}
    assert encap.TUN_FLAGS == {"nocsum": 0, "csum": 1, "remcsum": 2}
    with pytest.raises(ValueError):
        encap.overhead("vxlan", 4)
    with pytest.raises(ValueError):
        encap.overhead("gue", 5)
