"""ICMPv6 errors the director sends (icmp6_send's layout) and quotes it relays
(ip_vs_in_icmp_v6's reading); scapy builds and dissects."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    PadN,
    TCPerror,
    UDPerror,
)
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from pylvs.core.icmpv6 import (
    DEST_UNREACH,
    ERROR_HOP_LIMIT,
    HOPLIMIT,
    MIN_MTU,
    PACKET_TOO_BIG,
    PORT_UNREACH,
    TIME_EXCEEDED,
    error_frame6,
    may_answer,
    quoted6,
)
from pylvs.core.ipv6 import IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, l4_checksum_ok6, parse6

CLIENT, VIP = "2001:db8:1::5", "2001:db8:100::80"
CLIENT_MAC, DIRECTOR_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
ERRORS = {DEST_UNREACH: ICMPv6DestUnreach, PACKET_TOO_BIG: ICMPv6PacketTooBig,
          TIME_EXCEEDED: ICMPv6TimeExceeded}


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def from_client(l4, data: bytes = b"", src: str = CLIENT, dst: str = VIP, ext=()) -> bytes:
    pkt = Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IPv6(src=src, dst=dst, hlim=57)
    for layer in ext:
        pkt = pkt / layer
    return bytes(pkt / l4 / Raw(data))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([(DEST_UNREACH, PORT_UNREACH, 0), (PACKET_TOO_BIG, 0, 1280),
                        (PACKET_TOO_BIG, 0, 1420), (TIME_EXCEEDED, HOPLIMIT, 0)]),
       st.sampled_from(["tcp", "udp"]), st.integers(0, 1500), st.booleans())
def test_error_frame6_is_what_icmp6_send_sends(kind, proto, size, with_ext):
    icmp_type, code, value = kind
    l4 = TCP(sport=40000, dport=80, flags="S") if proto == "tcp" else UDP(sport=40000, dport=53)
    ext = [IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00" * 4)])] if with_ext else []
    frame = from_client(l4, bytes(range(256)) * (size // 256) + bytes(size % 256), ext=ext)
    flow = parse6(frame)
    assert may_answer(flow, icmp_type)
    out = error_frame6(frame, flow, icmp_type, code, mac(DIRECTOR_MAC), value)
    pkt = Ether(bytes(out))
    assert (pkt.dst, pkt.src, pkt.type) == (CLIENT_MAC, DIRECTOR_MAC, 0x86DD)
    ip = pkt[IPv6]
    assert (ip.src, ip.dst, ip.nh, ip.hlim, ip.tc, ip.fl) == (VIP, CLIENT, 58, ERROR_HOP_LIMIT, 0,
                                                              0)
    assert len(out) - 14 == min(MIN_MTU, 48 + len(frame) - 14) == ip.plen + 40
    icmp = pkt[ERRORS[icmp_type]]
    assert (icmp.type, icmp.code) == (icmp_type, code)
    if icmp_type == PACKET_TOO_BIG:
        assert icmp.mtu == value
    assert bytes(out[62:]) == frame[14:14 + len(out) - 62]  # the invoking packet, cut
    clean = Ether(bytes(out))
    del clean[ERRORS[icmp_type]].cksum
    assert Ether(bytes(clean))[ERRORS[icmp_type]].cksum == icmp.cksum
    mine = parse6(out)
    assert mine.proto == IPPROTO_ICMPV6 and l4_checksum_ok6(out, mine)
    back = quoted6(out, mine)
    assert back is not None and back.proto == (IPPROTO_TCP if proto == "tcp" else IPPROTO_UDP)
    assert (back.sport, back.dport) == (40000, 80 if proto == "tcp" else 53)
    assert back.saddr == flow.saddr and back.daddr == flow.daddr


def test_may_answer_keeps_ipvs_and_icmp6_send_rules():
    def flow(l4, **kw):
        return parse6(from_client(l4, **kw))

    tcp = TCP(dport=80, flags="S")
    assert may_answer(flow(tcp))
    assert may_answer(flow(ICMPv6EchoRequest()))
    assert not may_answer(flow(ICMPv6DestUnreach() / IPv6(src=VIP, dst=CLIENT) / TCP()))
    assert not may_answer(flow(ICMPv6ParamProblem() / IPv6(src=VIP, dst=CLIENT) / TCP()))
    first = flow(tcp, ext=[IPv6ExtHdrFragment(offset=0, m=1)])
    assert first.fragment and may_answer(first, PACKET_TOO_BIG)
    later = flow(tcp, ext=[IPv6ExtHdrFragment(offset=100, m=1)])
    assert not may_answer(later, PACKET_TOO_BIG) and not may_answer(later)
    assert not may_answer(flow(tcp, src="::"))
    assert not may_answer(flow(tcp, src="ff02::1"))
    to_group = flow(UDP(dport=53), dst="ff05::2")
    assert not may_answer(to_group) and may_answer(to_group, PACKET_TOO_BIG)


def error_about(quoted, icmp=None, outer_ext=()) -> bytes:
    """An error from the client about a packet the connection sent it (VIP → client)."""
    icmp = ICMPv6DestUnreach(code=4) if icmp is None else icmp
    pkt = Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IPv6(src=CLIENT, dst=VIP)
    for layer in outer_ext:
        pkt = pkt / layer
    return bytes(pkt / icmp / quoted)


INNER_EXT = st.lists(st.sampled_from(["hbh", "dst", "frag0"]), max_size=3)


def inner_layers(kinds):
    made = {"hbh": lambda: IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\x00" * 4)]),
            "dst": lambda: IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00" * 12)]),
            "frag0": lambda: IPv6ExtHdrFragment(offset=0, m=1, id=3)}
    return [made[kind]() for kind in kinds]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([ICMPv6DestUnreach, ICMPv6PacketTooBig, ICMPv6TimeExceeded,
                        ICMPv6ParamProblem]),
       st.sampled_from(["tcp", "udp"]), INNER_EXT, st.integers(1, 0xFFFF), st.integers(1, 0xFFFF),
       st.integers(0, 130))
def test_quoted6_reads_the_quoted_five_tuple(icmp_cls, proto, ext, sport, dport, cut):
    l4 = TCP(sport=sport, dport=dport) if proto == "tcp" else UDP(sport=sport, dport=dport)
    inner = IPv6(src=VIP, dst=CLIENT)
    for layer in inner_layers(ext):
        inner = inner / layer
    whole = bytes(inner / l4 / Raw(b"payload"))
    quote = whole[:cut] if cut < len(whole) else whole
    frame = error_about(Raw(quote), icmp_cls())
    flow = parse6(frame)
    assert flow is not None and flow.icmp_type < 128
    got = quoted6(frame, flow)
    l4_at = 40 + sum({"hbh": 8, "dst": 16, "frag0": 8}[kind] for kind in ext)
    if len(quote) < l4_at + 4:
        assert got is None
        return
    assert (got.sport, got.dport) == (sport, dport)
    if quote == whole:  # scapy dissects only whole quotes
        pkt = Ether(frame)
        assert pkt[IPerror6].src == VIP
        error_l4 = pkt[TCPerror] if proto == "tcp" else pkt[UDPerror]
        assert (error_l4.sport, error_l4.dport) == (sport, dport)
    assert got.proto == (IPPROTO_TCP if proto == "tcp" else IPPROTO_UDP)
    assert (got.l3off, got.l4off) == (62, 62 + l4_at)
    assert got.saddr == int.from_bytes(frame[70:86], "big") == parse6(frame).daddr
    assert got.daddr == parse6(frame).saddr


def test_quoted6_is_none_for_informational_fragmented_or_unknown_quotes():
    quoted = IPv6(src=VIP, dst=CLIENT) / TCP(sport=80, dport=40000)
    assert quoted6(*_frame_flow(error_about(quoted))) is not None
    echo = error_about(Raw(bytes(quoted)), icmp=ICMPv6EchoRequest())
    assert quoted6(*_frame_flow(echo)) is None
    behind_fragment = error_about(quoted, outer_ext=[IPv6ExtHdrFragment(offset=0, m=0)])
    assert quoted6(*_frame_flow(behind_fragment)) is None
    later_fragment = IPv6(src=VIP, dst=CLIENT) / IPv6ExtHdrFragment(offset=8, m=1) / TCP()
    assert quoted6(*_frame_flow(error_about(later_fragment))) is None
    icmp_inside = IPv6(src=VIP, dst=CLIENT) / ICMPv6EchoRequest()
    assert quoted6(*_frame_flow(error_about(icmp_inside))) is None
    not_ipv6 = bytearray(error_about(quoted))
    not_ipv6[62] = 0x45
    assert quoted6(*_frame_flow(bytes(not_ipv6))) is None
    tcp = from_client(TCP(dport=80))
    assert quoted6(tcp, parse6(tcp)) is None


def _frame_flow(frame: bytes):
    flow = parse6(frame)
    assert flow is not None
    return frame, flow


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=0, max_size=100), st.integers(1, 127), st.integers(0, 255))
def test_quoted6_never_raises(junk, icmp_type, code):
    frame = error_about(Raw(junk), icmp=ICMPv6DestUnreach(type=icmp_type, code=code))
    flow = parse6(frame)
    if flow is not None:
        quoted6(frame, flow)
        quoted6(bytes(frame) + b"\x60", flow)
