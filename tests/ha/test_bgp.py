"""pylvs.ha.bgp: which VIPs a director announces, with no socket."""

from __future__ import annotations

import schedulers
from pylvs.core.model import RealServer, VirtualService
from pylvs.ha.bgp import Bgp, Neighbor, announced
from pylvs.ha.health import ServiceHealth

VIPS = ["192.0.2.100", "192.0.2.20"]


def _service(vip: str, port: int, weights: list[int]) -> VirtualService:
    service = VirtualService("tcp", vip, port, schedulers.get("mh")())
    for i, weight in enumerate(weights, start=1):
        service.add_real_server(RealServer(f"198.51.100.{i}", port, weight=weight))
    return service


def test_every_served_vip_is_announced_in_address_order():
    services = [_service(VIPS[0], 80, [1, 1]), _service(VIPS[1], 80, [1])]
    assert announced(services, [], serving=True) == ["192.0.2.20", "192.0.2.100"]


def test_nothing_while_the_director_does_not_serve():
    assert announced([_service(VIPS[0], 80, [1])], [], serving=False) == []


def test_a_vip_goes_when_one_of_its_services_has_no_live_server():
    services = [_service(VIPS[0], 80, [1]), _service(VIPS[0], 443, [0, 0]),
                _service(VIPS[1], 80, [2])]
    assert announced(services, [], serving=True) == ["192.0.2.20"]


def test_a_lost_quorum_withdraws_even_with_a_sorry_server_in_the_table():
    service = _service(VIPS[0], 80, [1])  # the sorry server, as health puts it in the table
    health = ServiceHealth(service.key, "TCP 192.0.2.100:80", quorum=2, quorum_up=False,
                           sorry_server=("198.51.100.1", 80))
    assert announced([service], [health], serving=True) == []
    health.quorum_up = True
    assert announced([service], [health], serving=True) == [VIPS[0]]


def test_keepalive_is_a_third_of_the_hold_time():
    assert Bgp(65001, (Neighbor("10.0.0.1", 65000),), hold_time=9).keepalive_time == 3
    assert Bgp(65001, (Neighbor("10.0.0.1", 65000),), hold_time=4).keepalive_time == 1
