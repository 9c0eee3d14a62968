"""The neighbour resolver (pylvs.shell.neighbours), against a real kernel: two namespaces joined
by a veth pair (tests.helpers.veth)."""

from __future__ import annotations

from pylvs.shell import neighbours
from tests.helpers.veth import NEEDS_NAMESPACES, PEER_IP, in_ns, ip

pytestmark = NEEDS_NAMESPACES


def test_neighbour_resolver(topo):
    peer_mac = topo.mac(topo.p, "vp")
    res = in_ns(topo.d, neighbours.NeighbourResolver, "vd")
    try:
        assert res.lookup(PEER_IP) is None  # nothing has talked yet
        assert res.resolve(PEER_IP, timeout=3.0) == peer_mac
        assert res.lookup(PEER_IP) == peer_mac
        assert res.resolve("198.51.100.77", timeout=0.3) is None  # nobody there
        static = "198.51.100.9"
        ip("-n", topo.d, "neigh", "replace", static, "lladdr", "02:00:00:00:00:09", "dev", "vd",
           "nud", "permanent")
        assert res.lookup(static) == bytes.fromhex("020000000009")
        assert res.refresh() == {}
        ip("-n", topo.d, "neigh", "replace", static, "lladdr", "02:00:00:00:00:0a", "dev", "vd",
           "nud", "permanent")
        assert res.refresh() == {static: bytes.fromhex("02000000000a")}
        assert res.lookup(static) == bytes.fromhex("02000000000a")
    finally:
        res.close()
