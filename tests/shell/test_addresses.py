"""VIPs on an interface (pylvs.shell.addresses), against a real kernel: two namespaces joined by a
veth pair (tests.helpers.veth)."""

from __future__ import annotations

import socket

import pytest

from pylvs.shell import addresses
from tests.helpers.veth import (
    DIR_IP,
    DIR_IP6,
    NEEDS_NAMESPACES,
    PEER_IP,
    PEER_IP6,
    VIP,
    VIP6,
    in_ns,
    ip,
    with_ipv6,
)

pytestmark = NEEDS_NAMESPACES


def test_add_remove_vip(topo):
    assert in_ns(topo.d, addresses.add_vip, "vd", VIP) is True
    assert f"{VIP}/32" in ip("-n", topo.d, "addr", "show", "dev", "vd")
    assert in_ns(topo.d, addresses.add_vip, "vd", VIP) is False
    in_ns(topo.d, addresses.remove_vip, "vd", VIP)
    assert f"{VIP}/32" not in ip("-n", topo.d, "addr", "show", "dev", "vd")
    in_ns(topo.d, addresses.remove_vip, "vd", VIP)  # idempotent
    assert DIR_IP in ip("-n", topo.d, "addr", "show", "dev", "vd")






def _vip6_line(topo) -> str | None:
    out = ip("-n", topo.d, "-6", "addr", "show", "dev", "vd")
    return next((line for line in out.splitlines() if f"{VIP6}/128" in line), None)


def test_add_remove_ipv6_vip(topo):
    with_ipv6(topo)
    assert in_ns(topo.d, addresses.add_vip, "vd", VIP6) is True
    line = _vip6_line(topo)
    assert line is not None and "nodad" in line and "tentative" not in line, line
    assert "deprecated" in line, line  # keepalived's preferred_lft 0: never a source address
    assert in_ns(topo.d, addresses.add_vip, "vd", VIP6) is False
    assert in_ns(topo.d, addresses.add_vip, "vd", "2001:db8:0::100") is False  # same address
    own6 = in_ns(topo.d, addresses.interface_addresses, "vd", socket.AF_INET6)
    assert VIP6 in own6 and DIR_IP6 in own6 and VIP not in own6
    assert any(a.startswith("fe80:") for a in own6)  # link-local is the director's own too
    assert in_ns(topo.d, addresses.interface_addresses, "vd") == [DIR_IP]  # IPv4 as before
    in_ns(topo.d, addresses.remove_vip, "vd", VIP6)
    assert _vip6_line(topo) is None
    in_ns(topo.d, addresses.remove_vip, "vd", VIP6)  # idempotent
    assert DIR_IP6 in ip("-n", topo.d, "-6", "addr", "show", "dev", "vd")


def test_route_ipv6(topo):
    with_ipv6(topo)
    ip("-n", topo.d, "-6", "route", "add", "2001:db8:1::/64", "via", PEER_IP6, "dev", "vd")
    on_link = in_ns(topo.d, addresses.route, PEER_IP6)
    assert on_link == addresses.Route("vd", None, DIR_IP6)
    via = in_ns(topo.d, addresses.route, "2001:db8:1::5")
    assert via == addresses.Route("vd", PEER_IP6, DIR_IP6)
    with pytest.raises(OSError):
        in_ns(topo.d, addresses.route, "2001:db8:2::1")  # no route there
    assert in_ns(topo.d, addresses.route, PEER_IP) == addresses.Route("vd", None, DIR_IP)
    in_ns(topo.d, addresses.add_vip, "vd", VIP6)  # held deprecated: still not a source
    assert in_ns(topo.d, addresses.route, "2001:db8:1::5") == addresses.Route("vd", PEER_IP6,
                                                                             DIR_IP6)
