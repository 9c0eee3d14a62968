"""The neighbour resolver (pylvs.shell.neighbours), against a real kernel: two namespaces joined
by a veth pair (tests.helpers.veth)."""

from __future__ import annotations

import socket
import time

from pylvs.shell import neighbours
from tests.helpers.veth import (
    NEEDS_NAMESPACES,
    PEER_IP,
    PEER_IP6,
    in_ns,
    ip,
    with_ipv6,
)

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






def test_neighbour_resolver_ipv6(topo):
    with_ipv6(topo)
    peer_mac = topo.mac(topo.p, "vp")
    res = in_ns(topo.d, neighbours.NeighbourResolver, "vd")
    try:
        assert res.lookup(PEER_IP6) is None  # nothing has talked yet
        assert res.resolve(PEER_IP6, timeout=3.0) == peer_mac  # Neighbor Solicitation
        assert res.lookup(PEER_IP6) == peer_mac
        assert res.lookup("2001:db8:0:0::2") == peer_mac  # any spelling of the address
        assert "2001:db8::2 dev vd lladdr" in ip("-n", topo.d, "-6", "neigh", "show")
        assert res.resolve(PEER_IP, timeout=3.0) == peer_mac  # IPv4 in the same resolver
        assert res.resolve("2001:db8::77", timeout=0.3) is None  # nobody there
        static = "2001:db8::9"
        ip("-n", topo.d, "-6", "neigh", "replace", static, "lladdr", "02:00:00:00:00:09",
           "dev", "vd", "nud", "permanent")
        assert res.lookup(static) == bytes.fromhex("020000000009")
        assert res.refresh() == {}
        ip("-n", topo.d, "-6", "neigh", "replace", static, "lladdr", "02:00:00:00:00:0a",
           "dev", "vd", "nud", "permanent")
        assert res.refresh() == {static: bytes.fromhex("02000000000a")}
        assert res.lookup(static) == bytes.fromhex("02000000000a")
        assert res.lookup(PEER_IP) == peer_mac and res.lookup(PEER_IP6) == peer_mac
    finally:
        res.close()


def test_neighbour_probe_by_datagram_ipv6(topo):
    """The fallback probe alone (a UDP datagram over AF_INET6) makes the kernel solicit too; its
    socket is made in the calling thread's namespace, hence in_ns."""
    with_ipv6(topo)
    res = in_ns(topo.d, neighbours.NeighbourResolver, "vd")
    try:
        assert res.lookup(PEER_IP6) is None
        in_ns(topo.d, res._send_discard, socket.AF_INET6, PEER_IP6)
        deadline = time.monotonic() + 3.0
        while res.lookup(PEER_IP6) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert res.lookup(PEER_IP6) == topo.mac(topo.p, "vp")
    finally:
        res.close()
