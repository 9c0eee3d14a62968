"""ICMP errors about tracked connections (reference §6.4), relayed per method; scapy as oracle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, IPerror, TCPerror
from scapy.layers.l2 import Ether

import schedulers
from forwarders import NextHop
from pylvs.core.director import Director
from pylvs.core.model import RealServer, VirtualService, ip_to_int
from pylvs.core.packet import decapsulate_ipip

VIP, RIP, CLIENT, DIRECTOR_IP = "192.0.2.100", "10.0.0.11", "203.0.113.5", "192.0.2.2"
CLIENT_MAC, DIRECTOR_MAC, RS_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:01:11"
RPORT = {"dr": 80, "tun": 80, "nat": 8080}


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def director_with_connection(method: str) -> Director:
    service = VirtualService("tcp", VIP, 80, schedulers.get("rr")(), forward=method)
    service.add_real_server(RealServer(RIP, RPORT[method], forward=method))
    director = Director([service])
    director.add_interface("eth0", _mac(DIRECTOR_MAC))
    director.set_hop(ip_to_int(RIP), NextHop(_mac(DIRECTOR_MAC), _mac(RS_MAC), "eth0",
                                             ip_to_int(DIRECTOR_IP)))
    syn = Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IP(src=CLIENT, dst=VIP) / TCP(
        sport=40000, dport=80, flags="S")
    assert director.handle(bytearray(bytes(syn)), 0.0) is not None
    return director


def from_client(quoted_sport: int = 80, icmp_type: int = 3, code: int = 4) -> bytes:
    """The client could not take a packet the connection sent it (VIP:80 → client:40000)."""
    return bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IP(src=CLIENT, dst=VIP)
                 / ICMP(type=icmp_type, code=code)
                 / IP(src=VIP, dst=CLIENT, ttl=50) / TCP(sport=quoted_sport, dport=40000))


def fresh_checksums_hold(frame: bytes) -> None:
    pkt = Ether(frame)
    clean = Ether(frame)
    del clean[IP].chksum, clean[ICMP].chksum, clean[IPerror].chksum
    clean = Ether(bytes(clean))
    assert pkt[IP].chksum == clean[IP].chksum
    assert pkt[ICMP].chksum == clean[ICMP].chksum
    assert pkt[IPerror].chksum == clean[IPerror].chksum


@pytest.mark.parametrize("icmp_type,code", [(3, 4), (3, 3), (11, 0), (4, 0)])
def test_dr_relays_client_errors_to_the_real_server_unchanged(icmp_type, code):
    director = director_with_connection("dr")
    original = from_client(icmp_type=icmp_type, code=code)
    out, _ = director.handle(bytearray(original), 0.0)
    assert out[:6] == _mac(RS_MAC)
    sent, before = Ether(bytes(out)), Ether(original)
    assert sent[IP].ttl == before[IP].ttl - 1
    assert bytes(sent[ICMP]) == bytes(before[ICMP])
    assert director.counters["icmp_relayed"] == 1


def test_tun_relays_client_errors_through_the_tunnel():
    director = director_with_connection("tun")
    out, _ = director.handle(bytearray(from_client()), 0.0)
    inner = IP(decapsulate_ipip(bytes(out[14:])))
    assert (inner.src, inner.dst, inner[ICMP].type) == (CLIENT, VIP, 3)


def test_nat_rewrites_client_errors_for_the_real_server():
    director = director_with_connection("nat")
    out, _ = director.handle(bytearray(from_client()), 0.0)
    pkt = Ether(bytes(out))
    assert (pkt[IP].src, pkt[IP].dst) == (CLIENT, RIP)
    assert (pkt[IPerror].src, pkt[IPerror].dst, pkt[TCPerror].sport) == (RIP, CLIENT, 8080)
    fresh_checksums_hold(bytes(out))


def test_nat_rewrites_real_server_errors_so_the_client_sees_the_vip():
    director = director_with_connection("nat")
    error = bytes(Ether(src=RS_MAC, dst=DIRECTOR_MAC) / IP(src=RIP, dst=CLIENT)
                  / ICMP(type=3, code=3) / IP(src=CLIENT, dst=RIP) / TCP(sport=40000, dport=8080))
    out, _ = director.handle(bytearray(error), 0.0)
    pkt = Ether(bytes(out))
    assert pkt.dst == CLIENT_MAC
    assert (pkt[IP].src, pkt[IP].dst) == (VIP, CLIENT)
    assert (pkt[IPerror].src, pkt[IPerror].dst, pkt[TCPerror].dport) == (CLIENT, VIP, 80)
    fresh_checksums_hold(bytes(out))


def test_errors_of_no_connection_bad_checksum_or_other_types_are_not_relayed():
    director = director_with_connection("dr")
    assert director.handle(bytearray(from_client(quoted_sport=81)), 0.0) is None
    broken = bytearray(from_client())
    broken[14 + 20 + 2] ^= 0xFF
    assert director.handle(broken, 0.0) is None
    assert director.counters["icmp_dropped"] == 2
    echo = bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IP(src=CLIENT, dst=VIP) / ICMP())
    assert director.handle(bytearray(echo), 0.0) is None
    assert director.counters["icmp_relayed"] == 0


@settings(max_examples=200)
@given(st.sampled_from(["dr", "nat", "tun"]), st.integers(0, 90), st.binary(min_size=1,
                                                                             max_size=6),
       st.integers(0, 100))
def test_mutated_or_truncated_icmp_errors_never_raise(method, offset, junk, cut):
    director = director_with_connection(method)
    frame = bytearray(from_client())
    frame[offset:offset + len(junk)] = junk
    director.handle(frame, 0.0)
    director.handle(bytearray(from_client()[:cut]), 0.0)
