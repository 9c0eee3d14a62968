"""TUN by GUE and GRE through the director (ipvsadm --tun-type gue|gre), as IPVS's
ipvs_gue_encap and ipvs_gre_encap: the real server's bound forwarder sends pylvs.core.encap's
bytes, on the general path and the short ways alike, with the GUE source port of the
connection; the MTU check counts each type's own overhead; and, in the kernel, the XDP entries
the forwarder makes send what director.handle sends."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

import schedulers
from forwarders import NextHop
from pylvs.core import encap, fastpath
from pylvs.core.director import Director
from pylvs.core.ebpf import XDP_REDIRECT
from pylvs.core.ipv6 import parse6
from pylvs.core.model import RealServer, VirtualService, ip_to_int
from pylvs.core.outbox import Count
from pylvs.core.packet import parse
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

TUNNELS = [("gue", "nocsum"), ("gue", "csum"), ("gue", "remcsum"), ("gre", "nocsum"),
           ("gre", "csum")]
PORT = 6080


def director(vip: str, server: str, tun_type: str, flags: str, mtu: int = 1500) -> Director:
    service = VirtualService("tcp", vip, 80, schedulers.get("rr")(), "tun")
    service.add_real_server(RealServer(server, 80, forward="tun", tun_type=tun_type,
                                       tun_port=PORT if tun_type == "gue" else 0,
                                       tun_flags=flags))
    d = Director([service])
    d.add_interface("eth0", mac_of(DIRECTOR_MAC))
    source = DIRECTOR6 if ":" in server else DIRECTOR4
    d.set_hop(ip_to_int(server), NextHop(mac_of(DIRECTOR_MAC), mac_of(RS_MAC), "eth0",
                                         ip_to_int(source), mtu))
    return d


def frame(vip: str, flags: str, payload: bytes = b"", sport: int = 40000) -> bytearray:
    ip = (IPv6(src=CLIENT6, dst=vip) if ":" in vip
          else IP(src="203.0.113.5", dst=vip, flags="DF"))
    return bytearray(bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / ip /
                           TCP(sport=sport, dport=80, flags=flags) / payload))


def expected(sent: bytearray, server: str, tun_type: str, flags: str, ip_id: int) -> bytes:
    flow = parse(sent) or parse6(sent)
    family = 6 if ":" in server else 4
    source = DIRECTOR6 if family == 6 else DIRECTOR4
    return bytes(encap.tunnel_xmit(bytearray(sent), flow, tun_type, family, ip_to_int(source),
                                   ip_to_int(server), mac_of(RS_MAC) + mac_of(DIRECTOR_MAC),
                                   port=PORT, flags=flags, ip_id=ip_id,
                                   sport=encap.gue_source_port(flow)))


def _outer_id_out(out: bytes) -> bytes:
    """An outer IPv4 header's ID and checksum (a shared counter numbers them) left out."""
    return out[:18] + out[20:24] + out[26:] if out[12:14] == b"\x08\x00" else out


@pytest.mark.parametrize(("vip", "server"), [(VIP4, RS4), (VIP6, RS6[0]), (VIP4, RS6[0]),
                                             (VIP6, RS4)])
@pytest.mark.parametrize(("tun_type", "flags"), TUNNELS)
def test_each_frame_leaves_as_encap_builds_it(vip, server, tun_type, flags):
    d = director(vip, server, tun_type, flags)
    for tcp_flags, payload in (("S", b""), ("A", b"x" * 100), ("PA", b"y" * 7)):
        sent = frame(vip, tcp_flags, payload)
        out, interface = d.handle(bytearray(sent), 0.0)
        assert interface == "eth0"
        assert _outer_id_out(bytes(out)) == _outer_id_out(expected(sent, server, tun_type,
                                                                    flags, 0))
    assert d.counters[Count.FORWARDED] == 3


@pytest.mark.parametrize(("tun_type", "flags", "overhead"), [
    ("gue", "nocsum", 32), ("gre", "nocsum", 24), ("gre", "csum", 28)])
def test_too_big_counts_the_tunnels_own_overhead(tun_type, flags, overhead):
    """ensure_mtu_is_adequate against the route's MTU less what this tunnel adds."""
    d = director(VIP4, RS4, tun_type, flags)
    fits = frame(VIP4, "S", b"x" * (1500 - overhead - 40))
    assert d.handle(fits, 0.0) is not None
    big = frame(VIP4, "A", b"x" * (1500 - overhead - 40 + 1))
    error = Ether(bytes(d.handle(big, 0.0)[0]))
    assert ICMP in error and error[ICMP].type == 3 and error[ICMP].code == 4
    assert error[ICMP].nexthopmtu == 1500 - overhead


root = pytest.mark.skipif(__import__("os").geteuid() != 0,
                          reason="loading an XDP program needs root")


@pytest.fixture(scope="module")
def loaded():
    from pylvs.shell import xdp
    conns = xdp.Map(xdp.BPF_MAP_TYPE_HASH, fastpath.KEY_SIZE, fastpath.VALUE_SIZE, 64, "e4")
    conns6 = xdp.Map(xdp.BPF_MAP_TYPE_HASH, fastpath.KEY6_SIZE, fastpath.VALUE6_SIZE, 64, "e6")
    stats = xdp.Map(xdp.BPF_MAP_TYPE_ARRAY, 4, fastpath.STATS.size, 8, "es")
    program = xdp.Program(fastpath.program(conns.fd, stats.fd, conns6.fd, tunnels=True),
                          "encap")
    yield conns, conns6, program
    for closing in (program, conns, conns6, stats):
        closing.close()


@root
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([(VIP4, RS4), (VIP6, RS6[0]), (VIP4, RS6[0]), (VIP6, RS4)]),
       st.sampled_from(TUNNELS), st.binary(max_size=200), st.integers(1024, 65535))
def test_the_forwarders_xdp_entries_send_what_the_director_sends(loaded, route, tunnel,
                                                                payload, sport):
    conns, conns6, program = loaded
    (vip, server), (tun_type, flags) = route, tunnel
    d = director(vip, server, tun_type, flags)
    d.handle(frame(vip, "S", sport=sport), 0.0)
    (conn,) = list(d.table)
    for table in (conns, conns6):
        for key in table.keys():
            table.delete(key)
    for key, entry in fastpath.for_connection(conn, d.hops[conn.server.ip], {"eth0": 3}):
        (conns6 if len(key) == fastpath.KEY6_SIZE else conns).update(key, entry.pack())
    sent = bytes(frame(vip, "A", payload, sport=sport))
    verdict, out = program.run(sent)
    assert verdict == XDP_REDIRECT
    assert _outer_id_out(out) == _outer_id_out(bytes(d.handle(bytearray(sent), 1.0)[0]))


def test_a_udp_service_tunnels_by_gue_too():
    d = Director([VirtualService("udp", VIP4, 53, schedulers.get("rr")(), "tun")])
    service = next(iter(d.services.values()))
    service.add_real_server(RealServer(RS4, 53, forward="tun", tun_type="gue", tun_port=PORT))
    d.add_interface("eth0", mac_of(DIRECTOR_MAC))
    d.set_hop(ip_to_int(RS4), NextHop(mac_of(DIRECTOR_MAC), mac_of(RS_MAC), "eth0",
                                      ip_to_int(DIRECTOR4)))
    sent = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IP(src="203.0.113.5", dst=VIP4) /
                 UDP(sport=5000, dport=53) / b"query")
    outer = Ether(bytes(d.handle(bytearray(sent), 0.0)[0]))
    assert outer[IP].proto == 17 and outer[UDP].dport == PORT
    assert bytes(outer[UDP].payload)[:4] == b"\x00\x04\x00\x00"  # GUE: version 0, proto 4
