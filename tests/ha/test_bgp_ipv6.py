"""pylvs.ha.bgp for IPv6 (issue 23): IPv6 VIPs announced as /128, each family over the
sessions of that family, a dual-stack director announcing both, an IPv6 VIP withdrawn when its
services' real servers are all down, and what a config must hold for a VIP to have its way out
(unannounceable, neighbor_problem), with no socket."""

from __future__ import annotations

import pytest

import schedulers
from pylvs.core.model import RealServer, VirtualService
from pylvs.ha.bgp import (
    Bgp,
    Neighbor,
    announced,
    by_family,
    neighbor_problem,
    prefix,
    unannounceable,
)
from pylvs.ha.health import ServiceHealth

VIP4, VIP6, VIP6B = "192.0.2.100", "2001:db8:10:100::1", "2001:db8:10:100::2"
V4, V6 = Neighbor("10.0.0.1", 65000), Neighbor("2001:db8:10::1", 65000)


def _service(vip: str, port: int, weights: list[int]) -> VirtualService:
    service = VirtualService("tcp", vip, port, schedulers.get("mh")())
    for i, weight in enumerate(weights, start=1):
        address = f"2001:db8:10::{100 + i}" if ":" in vip else f"198.51.100.{i}"
        service.add_real_server(RealServer(address, port, weight=weight))
    return service


def test_an_ipv6_vip_is_a_128_and_an_ipv4_one_a_32():
    assert prefix(VIP6) == "2001:db8:10:100::1/128" and prefix(VIP4) == "192.0.2.100/32"
    assert by_family([VIP6, VIP4, VIP6B]) == {4: [VIP4], 6: [VIP6, VIP6B]}


def test_a_dual_stack_director_announces_both_ipv4_first_then_by_address():
    services = [_service(VIP6B, 80, [1]), _service(VIP6, 80, [1]), _service(VIP4, 80, [1])]
    assert announced(services, [], serving=True) == [VIP4, VIP6, VIP6B]
    assert announced(services, [], serving=False) == []


def test_an_ipv6_vip_goes_when_its_real_servers_are_all_down_and_the_ipv4_one_stays():
    services = [_service(VIP4, 80, [1]), _service(VIP6, 80, [0, 0]), _service(VIP6B, 80, [1])]
    assert announced(services, [], serving=True) == [VIP4, VIP6B]


def test_a_lost_quorum_withdraws_an_ipv6_vip():
    service = _service(VIP6, 80, [1])
    health = ServiceHealth(service.key, f"TCP [{VIP6}]:80", quorum=1, quorum_up=False)
    assert announced([service], [health], serving=True) == []
    health.quorum_up = True
    assert announced([service], [health], serving=True) == [VIP6]


def test_each_neighbour_carries_its_own_family():
    assert (V4.family, V6.family) == (4, 6)
    assert Bgp(65001, (V6, V4)).families == (4, 6)
    assert Bgp(65001, (V6,)).families == (6,)


def test_a_vip_of_a_family_no_session_carries_is_named():
    six = [_service(VIP4, 80, [1]), _service(VIP6, 80, [1])]
    assert unannounceable(Bgp(65001, (V4, V6)), six) is None
    assert unannounceable(Bgp(65001, (V4,)), six) == (
        "bgp.neighbor", f"virtual_server[1] ([{VIP6}]:80) is IPv6, and no [[bgp.neighbor]] is: "
        "an IPv6 VIP is announced only over a session to an IPv6 neighbour (the router's IPv6 "
        "address)")
    assert unannounceable(Bgp(65001, (V6,)), six) == (
        "bgp.neighbor", f"virtual_server[0] ({VIP4}:80) is IPv4, and no [[bgp.neighbor]] is: "
        "an IPv4 VIP is announced only over a session to an IPv4 neighbour (the router's IPv4 "
        "address)")


def test_a_running_bird_needs_the_routes_file_of_each_family_served():
    six = [_service(VIP6, 80, [1])]
    spec = Bgp(65001, (V6,), bird_socket="/run/bird.ctl", bird_include="/etc/bird/v4.conf")
    assert unannounceable(spec, six) == (
        "bgp.bird_include6", f"virtual_server[0] ([{VIP6}]:80) is IPv6: with bird_socket, "
        "bird_include6 names the file of IPv6 routes the running BIRD's ipv6 static protocol "
        "includes")
    ok = Bgp(65001, (V6,), bird_socket="/run/bird.ctl", bird_include6="/etc/bird/v6.conf")
    assert unannounceable(ok, six) is None and ok.include(6) == "/etc/bird/v6.conf"
    v4 = Bgp(65001, (V4,), bird_socket="/run/bird.ctl", bird_include6="/etc/bird/v6.conf")
    assert unannounceable(v4, [_service(VIP4, 80, [1])])[0] == "bgp.bird_include"


@pytest.mark.parametrize(("address", "words"), [
    ("2001:db8:10::1", ""),
    ("10.0.0.1", ""),
    ("fe80::1", "is link-local: give the router's global IPv6 address"),
    ("::ffff:10.0.0.1", "is IPv4-mapped: write the router's IPv4 address (10.0.0.1)"),
    ("ff02::2", "is not a router's unicast address"),
    ("::", "is not a router's unicast address"),
    ("::1", "is not a router's unicast address"),
    ("224.0.0.5", "is not a router's unicast address"),
])
def test_a_neighbour_is_a_routers_global_unicast_address(address, words):
    problem = neighbor_problem(address)
    assert (problem.startswith(words) if words else problem == ""), problem
