"""Directors with their services set up, as the core's and the forwarders' tests use them: DR
(dr_director), NAT (nat_director), TUN (tun_director), an IPv6 service of any method
(director6), and the addresses and MACs they use."""

from __future__ import annotations

import schedulers
from forwarders import NextHop
from pylvs.core.director import Director
from pylvs.core.model import RealServer, VirtualService, ip_to_int

VIP = "192.0.2.100"
CLIENT_MAC, DIRECTOR_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
RS_MAC = "02:00:00:00:01:11"
RS = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
NAT_RIP = "10.0.0.11"
OUTSIDE_MAC = "02:00:00:00:00:02"
INSIDE_MAC = "02:00:00:00:01:02"
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


def mac_of(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def nat_director(proto: str = "tcp") -> Director:
    service = VirtualService(proto, VIP, 80, schedulers.get("rr")(), forward="nat")
    service.add_real_server(RealServer(NAT_RIP, 8080, forward="nat"))
    director = Director([service])
    director.add_interface("eth0", mac_of(OUTSIDE_MAC))
    director.add_interface("eth1", mac_of(INSIDE_MAC))
    director.set_hop(ip_to_int(NAT_RIP), NextHop(mac_of(INSIDE_MAC), mac_of(RS_MAC), "eth1"))
    return director


def tun_director(proto: str = "tcp", mtu: int = 1500) -> Director:
    service = VirtualService(proto, VIP, 80, schedulers.get("rr")(), forward="tun")
    service.add_real_server(RealServer(TUN_RIP, 80, forward="tun"))
    director = Director([service])
    director.add_interface("eth0", mac_of(DIRECTOR_MAC))
    director.set_hop(ip_to_int(TUN_RIP), NextHop(mac_of(DIRECTOR_MAC), mac_of(ROUTER_MAC), "eth0",
                                                 ip_to_int(DIRECTOR_IP), mtu))
    return director


# IPv6: a client, a VIP and real servers of both families, for any method (director6).
VIP6, CLIENT6 = "2001:db8::100", "2001:db8:1::5"
RS6 = ["2001:db8:2::1", "2001:db8:2::2"]
DIRECTOR6 = "2001:db8:2::fe"
RS4, DIRECTOR4, VIP4 = "198.51.100.11", "198.51.100.254", "192.0.2.100"


def director6(forward: str, servers: list[str], vip: str = VIP6, proto: str = "tcp",
              port: int = 80, rport: int = 80, mtu: int = 1500, persistent: int = 0,
              netmask: str = "") -> Director:
    service = VirtualService(proto, vip, port, schedulers.get("rr")(), forward,
                             persistent, netmask)
    for address in servers:
        service.add_real_server(RealServer(address, rport, forward=forward))
    d = Director([service])
    d.add_interface("eth0", mac_of(DIRECTOR_MAC))
    for address in servers:
        source = DIRECTOR6 if ":" in address else DIRECTOR4
        d.set_hop(ip_to_int(address), NextHop(mac_of(DIRECTOR_MAC), mac_of(RS_MAC), "eth0",
                                              ip_to_int(source), mtu))
    return d


