"""Directors with their services set up, as the core's and the forwarders' tests use them: DR
(dr_director), NAT (nat_director), TUN (tun_director), and the addresses and MACs they use."""

from __future__ import annotations

import schedulers
from forwarders import NextHop
from pylvs.core.director import Director
from pylvs.core.model import RealServer, VirtualService, ip_to_int

VIP = "192.0.2.100"
CLIENT_MAC, DIRECTOR_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
RS = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
NAT_RIP = "10.0.0.11"
OUTSIDE_MAC = "02:00:00:00:00:02"
INSIDE_MAC, RS_MAC = "02:00:00:00:01:02", "02:00:00:00:01:11"
TUN_RIP, DIRECTOR_IP = "198.51.100.11", "192.0.2.2"
ROUTER_MAC = "02:00:00:00:09:01"


def rs_mac(i: int) -> bytes:
    return bytes([2, 0, 0, 0, 1, i])


def dr_director(scheduler: str = "rr", weights=(1, 1, 1), proto: str = "tcp") -> Director:
    service = VirtualService(proto, VIP, 80, schedulers.get(scheduler)())
    for address, weight in zip(RS, weights, strict=True):
        service.add_real_server(RealServer(address, 80, weight=weight))
    director = Director([service])
    director.add_interface("eth0", bytes.fromhex(DIRECTOR_MAC.replace(":", "")))
    for i, address in enumerate(RS):
        director.set_hop(ip_to_int(address), NextHop(bytes.fromhex("020000000002"), rs_mac(i),
                                                      "eth0"))
    return director


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def nat_director(proto: str = "tcp") -> Director:
    service = VirtualService(proto, VIP, 80, schedulers.get("rr")(), forward="nat")
    service.add_real_server(RealServer(NAT_RIP, 8080, forward="nat"))
    director = Director([service])
    director.add_interface("eth0", _mac(OUTSIDE_MAC))
    director.add_interface("eth1", _mac(INSIDE_MAC))
    director.set_hop(ip_to_int(NAT_RIP), NextHop(_mac(INSIDE_MAC), _mac(RS_MAC), "eth1"))
    return director


def tun_director(proto: str = "tcp", mtu: int = 1500) -> Director:
    service = VirtualService(proto, VIP, 80, schedulers.get("rr")(), forward="tun")
    service.add_real_server(RealServer(TUN_RIP, 80, forward="tun"))
    director = Director([service])
    director.add_interface("eth0", _mac(DIRECTOR_MAC))
    director.set_hop(ip_to_int(TUN_RIP), NextHop(_mac(DIRECTOR_MAC), _mac(ROUTER_MAC), "eth0",
                                                 ip_to_int(DIRECTOR_IP), mtu))
    return director
