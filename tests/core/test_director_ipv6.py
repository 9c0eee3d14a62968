"""The director's IPv6 path (issue 22), frame in, frame out, as IPVS's ip_vs_in does it for
AF_INET6: DR (MACs, hop limit − 1), NAT66 both ways, TUN by the real server's family (ip6ip6,
4in6, 6in4), the ICMPv6 errors it sends (port unreachable, time exceeded, Packet Too Big) and those
it relays, fragments after the first, persistence by prefix length, and ipvsadm -Lnc's rows.
Every checksum is checked against scapy's own."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP, TCPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6PacketTooBig,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
    IPv6ExtHdrFragment,
    fragment6,
)
from scapy.layers.l2 import Ether

from pylvs.core.model import AF_INET6, ip_to_int
from pylvs.core.outbox import Count
from tests.helpers.directors import (
    CLIENT6,
    CLIENT_MAC,
    DIRECTOR4,
    DIRECTOR6,
    DIRECTOR_MAC,
    RS4,
    RS6,
    RS_MAC,
    VIP4,
    VIP6,
    mac_of,
)
from tests.helpers.directors import director6 as director


def frame(src: str = CLIENT6, dst: str = VIP6, sport: int = 40000, dport: int = 80,
          flags: str = "S", hlim: int = 64, payload: bytes = b"", proto: str = "tcp",
          tc: int = 0) -> bytearray:
    l4 = TCP(sport=sport, dport=dport, flags=flags) if proto == "tcp" else UDP(sport=sport,
                                                                             dport=dport)
    return bytearray(bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IPv6(
        src=src, dst=dst, hlim=hlim, tc=tc) / l4 / payload))


def _checksum_ok(packet) -> bool:
    layer = packet[TCP] if TCP in packet else packet[UDP]
    given_sum = layer.chksum
    del layer.chksum
    return type(packet)(bytes(packet))[type(layer)].chksum == given_sum


def test_dr_rewrites_only_the_macs_and_the_hop_limit() -> None:
    d = director("dr", RS6)
    sent = frame(hlim=9, payload=b"x" * 20)
    out, interface = d.handle(bytearray(sent), 0.0)
    assert interface == "eth0"
    assert out[:12] == mac_of(RS_MAC) + mac_of(DIRECTOR_MAC)
    assert out[14 + 7] == 8
    assert out[12:21] == sent[12:21] and out[22:] == sent[22:]
    assert d.counters[Count.FORWARDED] == 1
    assert len(d.table) == 1


@given(st.integers(1024, 65535), st.binary(max_size=64), st.sampled_from(["tcp", "udp"]))
def test_nat66_both_ways_keeps_checksums_scapy_agrees(cport: int, payload: bytes,
                                                      proto: str) -> None:
    d = director("nat", RS6[:1], proto=proto, rport=8080)
    out, _ = d.handle(frame(sport=cport, payload=payload, proto=proto), 0.0)
    inbound = Ether(bytes(out))
    assert inbound[IPv6].dst == RS6[0] and inbound[IPv6].src == CLIENT6
    assert (inbound[TCP] if proto == "tcp" else inbound[UDP]).dport == 8080
    assert _checksum_ok(inbound)
    l4 = TCP(sport=8080, dport=cport, flags="SA") if proto == "tcp" else UDP(sport=8080,
                                                                             dport=cport)
    answer = bytearray(bytes(Ether(src=RS_MAC, dst=DIRECTOR_MAC) / IPv6(
        src=RS6[0], dst=CLIENT6) / l4 / payload))
    back, interface = d.handle(answer, 0.1)
    reply = Ether(bytes(back))
    assert reply[IPv6].src == VIP6 and reply[IPv6].dst == CLIENT6
    assert (reply[TCP] if proto == "tcp" else reply[UDP]).sport == 80
    assert reply.dst == CLIENT_MAC and interface == "eth0"
    assert _checksum_ok(reply)
    assert d.counters[Count.REPLIED] == 1


def test_ip6ip6_to_an_ipv6_real_server() -> None:
    d = director("tun", RS6[:1])
    out, _ = d.handle(frame(payload=b"hello"), 0.0)
    outer = Ether(bytes(out))
    assert outer.type == 0x86DD and outer[IPv6].nh == 41
    assert outer[IPv6].src == DIRECTOR6 and outer[IPv6].dst == RS6[0]
    inner = outer[IPv6].payload
    assert isinstance(inner, IPv6) and inner.dst == VIP6 and inner.hlim == 63
    assert outer[IPv6].plen == len(bytes(inner))


def test_6in4_to_an_ipv4_real_server_of_an_ipv6_service() -> None:
    d = director("tun", [RS4])
    out, _ = d.handle(frame(payload=b"hello"), 0.0)
    outer = Ether(bytes(out))
    assert outer.type == 0x0800 and outer[IP].proto == 41
    assert outer[IP].src == DIRECTOR4 and outer[IP].dst == RS4
    assert isinstance(outer[IP].payload, IPv6) and outer[IP].payload.dst == VIP6
    chksum = outer[IP].chksum
    del outer[IP].chksum
    assert IP(bytes(outer[IP]))[IP].chksum == chksum


def test_4in6_to_an_ipv6_real_server_of_an_ipv4_service() -> None:
    d = director("tun", RS6[:1], vip=VIP4)
    sent = bytearray(bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IP(
        src="203.0.113.5", dst=VIP4, ttl=30) / TCP(sport=40000, dport=80, flags="S")))
    for handled in (sent, bytearray(sent)):  # the general path, then the established one's
        out, _ = d.handle(handled, 0.0)
        outer = Ether(bytes(out))
        assert outer.type == 0x86DD and outer[IPv6].nh == 4 and outer[IPv6].dst == RS6[0]
        assert outer[IPv6].payload[IP].ttl == 29
    assert d.table.by_proto[6] and next(iter(d.table)).server.af == AF_INET6


def test_hop_limit_one_is_answered_with_time_exceeded_from_the_vip() -> None:
    d = director("dr", RS6)
    out, interface = d.handle(frame(hlim=1), 0.0)
    error = Ether(bytes(out))
    assert ICMPv6TimeExceeded in error and error[ICMPv6TimeExceeded].code == 0
    assert error[IPv6].src == VIP6 and error[IPv6].dst == CLIENT6 and error.dst == CLIENT_MAC
    assert d.counters[Count.TTL_EXCEEDED] == 1


def test_no_real_server_is_port_unreachable() -> None:
    d = director("dr", [])
    out, _ = d.handle(frame(), 0.0)
    error = Ether(bytes(out))
    assert ICMPv6DestUnreach in error and error[ICMPv6DestUnreach].code == 4
    chksum = error[ICMPv6DestUnreach].cksum
    del error[ICMPv6DestUnreach].cksum
    assert Ether(bytes(error))[ICMPv6DestUnreach].cksum == chksum


@pytest.mark.parametrize(("forward", "mtu", "expected"), [("dr", 1300, 1300), ("tun", 1400, 1360)])
def test_too_big_is_packet_too_big_with_the_usable_mtu(forward: str, mtu: int,
                                                       expected: int) -> None:
    d = director(forward, RS6[:1], mtu=mtu)
    out, _ = d.handle(frame(payload=b"x" * 1400, flags="S"), 0.0)
    error = Ether(bytes(out))
    assert ICMPv6PacketTooBig in error and error[ICMPv6PacketTooBig].mtu == expected
    assert d.path_mtu[ip_to_int(CLIENT6)] == expected


def test_a_tunnel_below_1280_drops_without_a_word() -> None:
    d = director("tun", RS6[:1], mtu=1300)
    assert d.handle(frame(payload=b"x" * 10), 0.0) is None
    assert d.counters[Count.TOO_BIG_DROPPED] == 1


def test_a_later_fragment_follows_its_first_fragments_connection() -> None:
    packet = IPv6(src=CLIENT6, dst=VIP6) / IPv6ExtHdrFragment(id=7) / UDP(
        sport=5000, dport=80) / (b"y" * 200)
    d = director("dr", RS6, proto="udp")
    pieces = fragment6(packet, 120)
    assert len(pieces) >= 2
    outs = [d.handle(bytearray(bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / p)), 0.0)
            for p in pieces]
    assert all(out is not None for out in outs)
    assert {bytes(out[0][:6]) for out in outs} == {mac_of(RS_MAC)}
    stray = IPv6(src=CLIENT6, dst=VIP6) / IPv6ExtHdrFragment(id=8, offset=10) / (b"z" * 16)
    assert d.handle(bytearray(bytes(Ether() / stray)), 0.0) is None
    assert d.counters[Count.FRAGMENT_NO_CONNECTION] == 1


def test_nat66_relays_a_clients_icmpv6_error_with_the_quoted_packet_rewritten() -> None:
    d = director("nat", RS6[:1], rport=8080)
    d.handle(frame(sport=41000), 0.0)
    quoted = IPv6(src=VIP6, dst=CLIENT6) / TCP(sport=80, dport=41000, flags="SA")
    error = bytearray(bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IPv6(
        src=CLIENT6, dst=VIP6) / ICMPv6DestUnreach(code=4) / quoted))
    out, _ = d.handle(error, 0.1)
    relayed = Ether(bytes(out))
    assert relayed[IPv6].dst == RS6[0]
    assert relayed[IPerror6].src == RS6[0] and relayed[TCPerror].sport == 8080
    chksum = relayed[ICMPv6DestUnreach].cksum
    del relayed[ICMPv6DestUnreach].cksum
    assert Ether(bytes(relayed))[ICMPv6DestUnreach].cksum == chksum
    assert d.counters[Count.ICMP_RELAYED] == 1


def test_persistence_by_prefix_length_keeps_a_clients_64_on_one_server() -> None:
    d = director("dr", RS6, persistent=300, netmask="64")
    first = d.handle(frame(src="2001:db8:1::5", sport=1000), 0.0)[0][:6]
    second = d.handle(frame(src="2001:db8:1::ffff", sport=1001), 0.0)[0][:6]
    assert first == second
    assert [t.key[-1] for t in d.table.templates.values()] == [AF_INET6]


def test_an_ipv6_service_is_not_taken_for_the_ipv4_address_in_its_last_32_bits() -> None:
    d = director("dr", RS6, vip="::c000:264")  # ::192.0.2.100
    sent = bytearray(bytes(Ether(dst=DIRECTOR_MAC) / IP(src="203.0.113.5", dst="192.0.2.100") /
                           TCP(dport=80, flags="S")))
    assert d.handle(sent, 0.0) is None
    assert len(d.table) == 0


def test_lnc_rows_write_ipv6_as_ipvsadm_does() -> None:
    d = director("dr", RS6[:1])
    d.handle(frame(sport=40000), 0.0)
    (row,) = d.table.rows(0.0)
    assert row == ("TCP 01:00  SYN_RECV    [2001:db8:1::5]:40000 [2001:db8::100]:80 "
                   "[2001:db8:2::1]:80")


def fast_ids(servers: list[str]):
    """6in4's outer IP ID comes from one counter for every director: left out (with the
    header checksum it is in) where the two compared frames have one."""
    if ":" in servers[0]:
        return bytes
    return lambda out: bytes(out[:18] + out[20:24] + out[26:])


@given(st.sampled_from([("dr", RS6), ("nat", RS6[:1]), ("tun", RS6[:1]), ("tun", [RS4])]),
       st.sampled_from(["tcp", "udp"]), st.binary(max_size=40), st.integers(2, 255),
       st.integers(0, 255))
def test_the_short_way_gives_the_general_paths_bytes(method, proto, payload, hlim,
                                                     tc) -> None:
    """_established6 (header, then TCP/UDP at once) against handle_general, both ways."""
    forward, servers = method
    fast, general = (director(forward, servers, proto=proto, rport=8080) for _ in range(2))
    for d in (fast, general):
        d.handle(frame(proto=proto), 0.0)
    sent = frame(flags="A", hlim=hlim, payload=payload, proto=proto, tc=tc)
    out, ids = fast.handle(bytearray(sent), 1.0), fast_ids(servers)
    expected = general.handle_general(bytearray(sent), 1.0)
    assert (ids(out[0]), out[1]) == (ids(expected[0]), expected[1])
    if forward == "nat":
        l4 = TCP(sport=8080, dport=40000, flags="A") if proto == "tcp" else UDP(sport=8080,
                                                                                dport=40000)
        answer = bytes(Ether(src=RS_MAC, dst=DIRECTOR_MAC) / IPv6(src=RS6[0], dst=CLIENT6) /
                       l4 / payload)
        assert fast.handle(bytearray(answer), 1.0) == general.handle_general(bytearray(answer),
                                                                             1.0)
    assert fast.counters == general.counters
    assert [c.state for c in fast.table] == [c.state for c in general.table]
