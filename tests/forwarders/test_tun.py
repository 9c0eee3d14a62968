"""TUN (ipvsadm -i): IP-in-IP as ip_vs_tunnel_xmit builds it, and the MTU rule; scapy as oracle."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

import schedulers
from forwarders import NextHop
from pylvs.core.director import Director
from pylvs.core.model import RealServer, VirtualService, ip_to_int
from pylvs.core.packet import decapsulate_ipip

VIP, RIP, DIRECTOR_IP = "192.0.2.100", "198.51.100.11", "192.0.2.2"
CLIENT_MAC, DIRECTOR_MAC, ROUTER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:09:01"


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def tun_director(proto: str = "tcp", mtu: int = 1500) -> Director:
    service = VirtualService(proto, VIP, 80, schedulers.get("rr")(), forward="tun")
    service.add_real_server(RealServer(RIP, 80, forward="tun"))
    director = Director([service])
    director.add_interface("eth0", _mac(DIRECTOR_MAC))
    director.set_hop(ip_to_int(RIP), NextHop(_mac(DIRECTOR_MAC), _mac(ROUTER_MAC), "eth0",
                                             ip_to_int(DIRECTOR_IP), mtu))
    return director


def frame(payload: bytes = b"", tos: int = 0, ttl: int = 64, df: bool = True,
          proto: str = "tcp", sport: int = 40000) -> bytes:
    l4 = TCP(sport=sport, dport=80, flags="S") if proto == "tcp" else UDP(sport=sport, dport=80)
    return bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC)
                 / IP(src="203.0.113.5", dst=VIP, tos=tos, ttl=ttl, flags="DF" if df else 0)
                 / l4 / payload)


@given(st.binary(max_size=400), st.integers(0, 255), st.integers(2, 255), st.booleans(),
       st.sampled_from(["tcp", "udp"]))
def test_encapsulation_wraps_the_packet_with_ttl_minus_one(payload, tos, ttl, df, proto):
    original = frame(payload, tos, ttl, df, proto)
    out, interface = tun_director(proto).handle(bytearray(original), 0.0)
    sent = Ether(bytes(out))
    outer = sent[IP]
    assert interface == "eth0" and (sent.src, sent.dst) == (DIRECTOR_MAC, ROUTER_MAC)
    assert (outer.proto, outer.src, outer.dst, outer.ihl) == (4, DIRECTOR_IP, RIP, 5)
    assert (outer.tos, outer.ttl, bool(outer.flags.DF)) == (tos, ttl - 1, df)
    assert outer.len == 20 + len(original) - 14
    fresh = outer.copy()
    del fresh.chksum
    assert IP(bytes(fresh)).chksum == outer.chksum
    expected = Ether(original)[IP]
    expected.ttl -= 1
    del expected.chksum
    assert decapsulate_ipip(bytes(out[14:])) == bytes(IP(bytes(expected)))


def test_fresh_ip_ids():
    director = tun_director()
    ids = {Ether(bytes(director.handle(bytearray(frame(sport=p)), 0.0)[0]))[IP].id
           for p in range(40000, 40005)}
    assert len(ids) == 5


def test_too_big_with_df_gets_fragmentation_needed_with_the_usable_mtu():
    director = tun_director()
    original = frame(b"x" * (1500 - 40))  # exactly 1500 bytes of IP: no room for 20 more
    reply, interface = director.handle(bytearray(original), 0.0)
    icmp = Ether(bytes(reply))
    assert interface == "eth0" and icmp.dst == CLIENT_MAC
    assert (icmp[IP].src, icmp[IP].dst) == (VIP, "203.0.113.5")
    assert (icmp[ICMP].type, icmp[ICMP].code, icmp[ICMP].nexthopmtu) == (3, 4, 1480)
    assert director.path_mtu[ip_to_int("203.0.113.5")] == 1480
    assert director.counters["frag_needed"] == 1
    assert director.handle(bytearray(frame(b"x" * (1480 - 40))), 0.0) is not None


def test_too_big_without_df_is_dropped():
    director = tun_director()
    assert director.handle(bytearray(frame(b"x" * 1460, df=False)), 0.0) is None
    assert director.counters["too_big_dropped"] == 1


@given(st.binary(max_size=200))
def test_decapsulation_never_raises(data):
    inner = decapsulate_ipip(data)
    assert inner is None or len(inner) >= 20


def test_decapsulation_refuses_other_protocols_and_lying_lengths():
    packet = bytes(IP(src=DIRECTOR_IP, dst=RIP, proto=4) / IP(src="203.0.113.5", dst=VIP) / b"x")
    assert decapsulate_ipip(packet) == bytes(IP(src="203.0.113.5", dst=VIP) / b"x")
    assert decapsulate_ipip(bytes(IP(dst=RIP) / UDP())) is None
    assert decapsulate_ipip(packet[:-1]) is None


@given(st.binary(max_size=300), st.integers(2, 255), st.sampled_from(["tcp", "udp"]),
       st.integers(0, 255), st.booleans())
def test_established_fast_path_equals_the_general_path(payload, ttl, proto, tos, df):
    fast, general = tun_director(proto), tun_director(proto)
    for director in (fast, general):
        director.handle_general(bytearray(frame(proto=proto)), 0.0)
    later = bytearray(frame(payload, tos=tos, ttl=ttl, df=df, proto=proto))

    def without_outer_id(out):  # each tunnelled packet gets a fresh IP ID (and so checksum)
        data, interface = out
        return data[:18] + data[20:24] + data[26:], interface

    for _ in range(2):
        out = fast.handle(bytearray(later), 1.0)
        assert without_outer_id(out) == without_outer_id(
            general.handle_general(bytearray(later), 1.0))
        outer = IP(bytes(out[0][14:34]))
        del outer.chksum
        assert IP(bytes(outer)).chksum.to_bytes(2, "big") == bytes(out[0][24:26])
    (a,), (b,) = list(fast.table), list(general.table)
    assert (a.state, a.expires) == (b.state, b.expires) and fast.counters == general.counters
