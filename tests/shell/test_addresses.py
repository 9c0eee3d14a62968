"""VIPs on an interface (pylvs.shell.addresses), against a real kernel: two namespaces joined by a
veth pair (tests.helpers.veth)."""

from __future__ import annotations

from pylvs.shell import addresses
from tests.helpers.veth import DIR_IP, NEEDS_NAMESPACES, VIP, in_ns, ip

pytestmark = NEEDS_NAMESPACES


def test_add_remove_vip(topo):
    assert in_ns(topo.d, addresses.add_vip, "vd", VIP) is True
    assert f"{VIP}/32" in ip("-n", topo.d, "addr", "show", "dev", "vd")
    assert in_ns(topo.d, addresses.add_vip, "vd", VIP) is False
    in_ns(topo.d, addresses.remove_vip, "vd", VIP)
    assert f"{VIP}/32" not in ip("-n", topo.d, "addr", "show", "dev", "vd")
    in_ns(topo.d, addresses.remove_vip, "vd", VIP)  # idempotent
    assert DIR_IP in ip("-n", topo.d, "addr", "show", "dev", "vd")
