"""TUN (ipvsadm -i): IP-in-IP as ip_vs_tunnel_xmit builds it, and the MTU rule; scapy as oracle."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether

from pylvs.core.model import ip_to_int
from pylvs.core.packet import decapsulate_ipip
from tests.helpers.directors import (
    CLIENT_MAC,
    DIRECTOR_IP,
    DIRECTOR_MAC,
    ROUTER_MAC,
    VIP,
    tun_director,
)
from tests.helpers.directors import TUN_RIP as RIP
from tests.helpers.frames import tun_frame


@given(st.binary(max_size=400), st.integers(0, 255), st.integers(2, 255), st.booleans(),
       st.sampled_from(["tcp", "udp"]))
def test_encapsulation_wraps_the_packet_with_ttl_minus_one(payload, tos, ttl, df, proto):
    original = tun_frame(payload, tos, ttl, df, proto)
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
    ids = {Ether(bytes(director.handle(bytearray(tun_frame(sport=p)), 0.0)[0]))[IP].id
           for p in range(40000, 40005)}
    assert len(ids) == 5


def test_too_big_with_df_gets_fragmentation_needed_with_the_usable_mtu():
    director = tun_director()
    original = tun_frame(b"x" * (1500 - 40))  # exactly 1500 bytes of IP: no room for 20 more
    reply, interface = director.handle(bytearray(original), 0.0)
    icmp = Ether(bytes(reply))
    assert interface == "eth0" and icmp.dst == CLIENT_MAC
    assert (icmp[IP].src, icmp[IP].dst) == (VIP, "203.0.113.5")
    assert (icmp[ICMP].type, icmp[ICMP].code, icmp[ICMP].nexthopmtu) == (3, 4, 1480)
    assert director.path_mtu[ip_to_int("203.0.113.5")] == 1480
    assert director.counters["frag_needed"] == 1
    assert director.handle(bytearray(tun_frame(b"x" * (1480 - 40))), 0.0) is not None


def test_too_big_without_df_is_dropped():
    director = tun_director()
    assert director.handle(bytearray(tun_frame(b"x" * 1460, df=False)), 0.0) is None
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
        director.handle_general(bytearray(tun_frame(proto=proto)), 0.0)
    later = bytearray(tun_frame(payload, tos=tos, ttl=ttl, df=df, proto=proto))

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
