"""Frames built for the core's and the forwarders' tests: a client's TCP frame to the DR director
(dr_frame), a NAT client's and real server's (inbound, reply), a TUN client's (tun_frame)."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from tests.helpers.directors import (
    CLIENT_MAC,
    DIRECTOR_MAC,
    INSIDE_MAC,
    NAT_RIP,
    OUTSIDE_MAC,
    RS_MAC,
    VIP,
)


def dr_frame(src="203.0.113.5", sport=40000, flags="S", ttl=64, dport=80, payload=b"") -> bytes:
    return bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / IP(src=src, dst=VIP, ttl=ttl)
                 / TCP(sport=sport, dport=dport, flags=flags) / payload)


def l4(proto: str, sport: int, dport: int, flags: str = "S"):
    return TCP(sport=sport, dport=dport, flags=flags) if proto == "tcp" else UDP(sport=sport,
                                                                                dport=dport)


def inbound(client: str, cport: int, payload: bytes, proto: str = "tcp", flags: str = "S"):
    return bytes(Ether(src=CLIENT_MAC, dst=OUTSIDE_MAC) / IP(src=client, dst=VIP, ttl=64)
                 / l4(proto, cport, 80, flags) / payload)


def reply(client: str, cport: int, payload: bytes, proto: str = "tcp", flags: str = "SA"):
    return bytes(Ether(src=RS_MAC, dst=INSIDE_MAC) / IP(src=NAT_RIP, dst=client, ttl=64)
                 / l4(proto, 8080, cport, flags) / payload)


def tun_frame(payload: bytes = b"", tos: int = 0, ttl: int = 64, df: bool = True,
              proto: str = "tcp", sport: int = 40000) -> bytes:
    l4 = TCP(sport=sport, dport=80, flags="S") if proto == "tcp" else UDP(sport=sport, dport=80)
    return bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC)
                 / IP(src="203.0.113.5", dst=VIP, tos=tos, ttl=ttl, flags="DF" if df else 0)
                 / l4 / payload)
