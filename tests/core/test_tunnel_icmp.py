"""ICMP errors from inside a tunnel, as IPVS's ip_vs_in_icmp handles them (issue 24): a router
between the director and a TUN real server (IP-in-IP, GUE, GRE) cannot take a packet the
director tunnelled and tells the director, quoting the outer packet; the director finds the
connection by the client's packet inside and answers the client from the VIP, a
"fragmentation needed" with the router's MTU less the outer header and the tunnel header.
The errors are built from the director's own output frames; scapy is the oracle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, IPerror, TCPerror
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6
from scapy.layers.l2 import Ether

import schedulers
from forwarders import NextHop
from pylvs.core import icmp
from pylvs.core.director import Director
from pylvs.core.model import RealServer, VirtualService, ip_to_int
from pylvs.core.outbox import Count
from tests.helpers.directors import (
    CLIENT6,
    CLIENT_MAC,
    DIRECTOR4,
    DIRECTOR6,
    DIRECTOR_MAC,
    ROUTER_MAC,
    RS4,
    RS6,
    VIP4,
    VIP6,
    director6,
    mac_of,
)

CLIENT, ROUTER = "203.0.113.5", "198.51.100.1"
GUE_PORT = 6080
TUNNELS = [("ipip", "nocsum", 20), ("gue", "nocsum", 32), ("gue", "csum", 32),
           ("gue", "remcsum", 32), ("gre", "nocsum", 24), ("gre", "csum", 28)]
"""Each --tun-type and checksum option, and what it adds: the outer header's 20 bytes and the
tunnel header's (GUE's UDP and GUE header 12, GRE's 4, 8 with its checksum). A packet from a
wire has a full checksum, so remcsum sends the plain GUE header."""
PAYLOAD = b"z" * 1200


def tun_director(tun_type: str, flags: str) -> Director:
    service = VirtualService("tcp", VIP4, 80, schedulers.get("rr")(), "tun")
    service.add_real_server(RealServer(RS4, 80, forward="tun", tun_type=tun_type,
                                       tun_port=GUE_PORT if tun_type == "gue" else 0,
                                       tun_flags=flags))
    d = Director([service])
    d.add_interface("eth0", mac_of(DIRECTOR_MAC))
    d.set_hop(ip_to_int(RS4), NextHop(mac_of(DIRECTOR_MAC), mac_of(ROUTER_MAC), "eth0",
                                      ip_to_int(DIRECTOR4)))
    return d


def from_client(flags: str, payload: bytes = b"", sport: int = 40000, df: bool = True
                ) -> bytes:
    return bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC)
                 / IP(src=CLIENT, dst=VIP4, ttl=60, flags="DF" if df else 0)
                 / TCP(sport=sport, dport=80, flags=flags) / payload)


def connected(tun_type: str, flags: str, df: bool = True, mtu: int = 1500
              ) -> tuple[Director, bytes, bytes]:
    """A director with a connection (its SYN sent), the client's data packet and the frame
    the director tunnelled it in; then the route's MTU is ``mtu``."""
    d = tun_director(tun_type, flags)
    assert d.handle(bytearray(from_client("S", df=df)), 0.0) is not None
    data = from_client("PA", PAYLOAD, df=df)
    out, interface = d.handle(bytearray(data), 1.0)
    assert interface == "eth0" and out[:6] == mac_of(ROUTER_MAC)
    d.set_hop(ip_to_int(RS4), NextHop(mac_of(DIRECTOR_MAC), mac_of(ROUTER_MAC), "eth0",
                                      ip_to_int(DIRECTOR4), mtu))
    return d, data, bytes(out)


def router_error(tunnelled: bytes, icmp_type: int = 3, code: int = 4, mtu: int = 1400,
                 to: str = DIRECTOR4, rest: int | None = None) -> bytes:
    """What a Linux router sends back about the frame ``tunnelled``: to its outer source, the
    outer packet quoted as far as the whole error stays within 576 bytes (icmp_send)."""
    if rest is None:
        rest = mtu if (icmp_type, code) == (3, 4) else 0
    header = bytes((icmp_type, code, 0, 0)) + rest.to_bytes(4, "big")
    error = ICMP(header + tunnelled[14:14 + 576 - 28])
    del error.chksum  # scapy computes it again, the bytes as they are
    return bytes(Ether(src=ROUTER_MAC, dst=DIRECTOR_MAC) / IP(src=ROUTER, dst=to, ttl=63)
                 / error)


def checksums_hold(frame: bytes) -> None:
    pkt, clean = Ether(frame), Ether(frame)
    del clean[IP].chksum, clean[ICMP].chksum
    clean = Ether(bytes(clean))
    assert (pkt[IP].chksum, pkt[ICMP].chksum) == (clean[IP].chksum, clean[ICMP].chksum)


@pytest.mark.parametrize(("tun_type", "flags", "overhead"), TUNNELS)
def test_fragmentation_needed_in_the_tunnel_tells_the_client_the_mtu_less_the_tunnel(
        tun_type, flags, overhead):
    d, data, tunnelled = connected(tun_type, flags)
    out, interface = d.handle(bytearray(router_error(tunnelled, mtu=1400)), 2.0)
    reply = Ether(bytes(out))
    assert interface == "eth0" and (reply.src, reply.dst) == (DIRECTOR_MAC, ROUTER_MAC)
    assert (reply[IP].src, reply[IP].dst) == (VIP4, CLIENT)
    assert (reply[ICMP].type, reply[ICMP].code, reply[ICMP].nexthopmtu) == (3, 4,
                                                                           1400 - overhead)
    checksums_hold(bytes(out))
    # the client's packet as the director sent it inside (its TTL one less), as far as the
    # router quoted it: 548 bytes of the outer packet less the outer and tunnel headers
    inner = tunnelled[14 + overhead:]
    sent_inner = IP(data[14:])
    sent_inner.ttl -= 1
    del sent_inner.chksum
    assert inner == bytes(sent_inner)
    assert bytes(out)[14 + 28:] == inner[:548 - overhead]
    assert (reply[IPerror].src, reply[IPerror].dst, reply[TCPerror].sport) == (CLIENT, VIP4,
                                                                               40000)
    assert d.path_mtu[ip_to_int(CLIENT)] == 1400 - overhead
    assert d.counters[Count.ICMP_RELAYED] == 1
    (conn,) = list(d.table)
    assert conn.server.stats.outpkts == conn.service.stats.outpkts == 1  # ip_vs_out_stats


@pytest.mark.parametrize(("tun_type", "flags", "overhead"), TUNNELS)
def test_the_client_fits_the_tunnel_after_it(tun_type, flags, overhead):
    """With the MTU it was told, the client's next packet and the tunnel's bytes fit the
    router's link exactly."""
    d, _, tunnelled = connected(tun_type, flags)
    out, _ = d.handle(bytearray(router_error(tunnelled, mtu=1400)), 2.0)
    mtu = Ether(bytes(out))[ICMP].nexthopmtu
    fitting = from_client("PA", b"y" * (mtu - 40))
    again, _ = d.handle(bytearray(fitting), 3.0)
    assert len(again) - 14 == 1400


@pytest.mark.parametrize(("reported", "route", "expected"), [
    (1400, 1500, 1400), (1600, 1500, 1500), (1500, 1400, 1400), (300, 1500, 552),
    (0, 1500, 552), (300, 500, 500)])
@pytest.mark.parametrize(("tun_type", "header"), [("ipip", 0), ("gue", 12), ("gre", 8)])
def test_the_mtu_is_the_routes_resulting_pmtu_less_the_tunnel(reported, route, expected,
                                                              tun_type, header):
    """ipv4_update_pmtu lowers the route's PMTU to the report, not below min_pmtu (552) and
    never raises it; IPVS then prefers the route's PMTU (dst_mtu of the real server's route)
    and takes the outer and tunnel headers off when above 68 and them."""
    assert icmp.tunnel_mtu(reported, route, header) == expected - 20 - header
    d, _, tunnelled = connected(tun_type, "csum" if tun_type == "gre" and header == 8
                                else "nocsum", mtu=route)
    out, _ = d.handle(bytearray(router_error(tunnelled[:14 + 300], mtu=reported)), 2.0)
    assert Ether(bytes(out))[ICMP].nexthopmtu == expected - 20 - header


def test_a_tiny_route_mtu_is_told_as_it_is():
    """Not above 68 + the overhead: the route's PMTU itself (IPVS's ``if (mtu > 68 + …)``)."""
    assert icmp.tunnel_mtu(60, 80, 0) == 80
    assert icmp.tunnel_mtu(60, 100, 12) == 100
    assert icmp.tunnel_mtu(60, 101, 12) == 69


@pytest.mark.parametrize(("tun_type", "flags", "overhead"), TUNNELS)
@pytest.mark.parametrize(("icmp_type", "code", "rest"), [
    (3, 1, 0), (3, 13, 0), (11, 0, 0), (4, 0, 0), (3, 1, 0x00200000)])
def test_other_errors_from_the_tunnel_reach_the_client_as_they_are(tun_type, flags, overhead,
                                                                    icmp_type, code, rest):
    """IPVS relays every related error (unreachable, quench, time exceeded) with its type,
    code and 4 bytes (``info = ic->un.gateway``); only "fragmentation needed" is rewritten."""
    d, data, tunnelled = connected(tun_type, flags)
    error = router_error(tunnelled, icmp_type, code, rest=rest)
    out, _ = d.handle(bytearray(error), 2.0)
    reply = Ether(bytes(out))
    assert (reply[IP].src, reply[IP].dst) == (VIP4, CLIENT)
    assert (reply[ICMP].type, reply[ICMP].code) == (icmp_type, code)
    assert bytes(reply[ICMP])[4:8] == rest.to_bytes(4, "big")
    assert bytes(out)[14 + 28:] == tunnelled[14 + overhead:][:548 - overhead]
    checksums_hold(bytes(out))
    assert d.path_mtu == {}
    assert d.counters[Count.ICMP_RELAYED] == 1


@pytest.mark.parametrize(("tun_type", "flags", "overhead"), TUNNELS)
def test_errors_about_no_connection_or_broken_are_dropped_and_counted(tun_type, flags,
                                                                      overhead):
    d, _, tunnelled = connected(tun_type, flags)
    # the packet inside is of no connection: another client port
    other = bytearray(tunnelled)
    tcp = 14 + overhead + 20
    other[tcp:tcp + 2] = (40001).to_bytes(2, "big")
    assert d.handle(bytearray(router_error(bytes(other))), 2.0) is None
    # the error's checksum is wrong
    broken = bytearray(router_error(tunnelled))
    broken[14 + 20 + 2] ^= 0xFF
    assert d.handle(broken, 2.0) is None
    # not addressed to the director's address on the route to the real server
    assert d.handle(bytearray(router_error(tunnelled, to="198.51.100.77")), 2.0) is None
    assert d.counters[Count.ICMP_DROPPED] == 3
    assert d.counters[Count.ICMP_RELAYED] == 0 and d.path_mtu == {}


@pytest.mark.parametrize(("tun_type", "flags", "overhead"), TUNNELS)
def test_fragmentation_needed_for_a_client_without_df_is_dropped(tun_type, flags, overhead):
    """"Client uses PMTUD?": without DF on the client's packet nothing is sent."""
    d, _, tunnelled = connected(tun_type, flags, df=False)
    assert d.handle(bytearray(router_error(tunnelled)), 2.0) is None
    assert d.counters[Count.ICMP_DROPPED] == 1 and d.path_mtu == {}


def test_a_udp_error_to_another_port_is_not_a_tunnels():
    """ipvs_udp_decap finds no GUE real server on that port: the common path, which knows
    no connection of the outer UDP packet."""
    d, _, tunnelled = connected("gue", "nocsum")
    moved = bytearray(tunnelled)
    moved[14 + 20 + 2:14 + 20 + 4] = (GUE_PORT + 1).to_bytes(2, "big")
    moved[14 + 20 + 6:14 + 20 + 8] = b"\0\0"
    assert d.handle(bytearray(router_error(bytes(moved))), 2.0) is None
    assert d.counters[Count.ICMP_RELAYED] == 0


def test_a_quote_of_another_tunnel_type_is_not_a_tunnels():
    """Only a real server tunnelled to with that type is a tunnel's (ip_vs_find_tunnel)."""
    d, _, tunnelled = connected("gre", "nocsum")
    assert d.handle(bytearray(router_error(tunnelled)), 2.0) is not None
    as_ipip = bytearray(tunnelled)
    as_ipip[14 + 9] = 4  # the GRE packet claimed to be IP-in-IP
    assert d.handle(bytearray(router_error(bytes(as_ipip))), 2.0) is None


def test_ipv6_tunnels_are_left_as_ipvs_leaves_them():
    """ip_vs_in_icmp_v6 has no tunnel case: a Packet Too Big quoting an ip6ip6 packet finds
    no protocol of IPVS's (next header 41) and is not answered."""
    d = director6("tun", [RS6[0]], VIP6)
    syn = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IPv6(src=CLIENT6, dst=VIP6)
                / TCP(sport=40000, dport=80, flags="S"))
    out, _ = d.handle(bytearray(syn), 0.0)
    error = bytes(Ether(src=ROUTER_MAC, dst=DIRECTOR_MAC)
                  / IPv6(src="2001:db8:2::1:1", dst=DIRECTOR6)
                  / ICMPv6PacketTooBig(mtu=1400) / bytes(out[14:]))
    assert d.handle(bytearray(error), 1.0) is None
    assert d.counters[Count.ICMP_RELAYED] == 0


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(TUNNELS), st.integers(0, 120), st.binary(min_size=1, max_size=6),
       st.integers(0, 200))
def test_mutated_or_truncated_tunnel_errors_never_raise(tunnel, offset, junk, cut):
    d, _, tunnelled = connected(*tunnel[:2])
    error = bytearray(router_error(tunnelled))
    error[offset:offset + len(junk)] = junk
    d.handle(error, 2.0)
    d.handle(bytearray(router_error(tunnelled)[:cut]), 2.0)
