"""The forwarding method as a core value (pylvs.core.forwarding): a real server binds its
registered forwarder, a connection the server's, copies keep the registry's instance, and the
XDP fast path's entries are what the connection's forwarder makes."""

from __future__ import annotations

import copy
import pickle

import pytest

from pylvs.core import fastpath, forwarding
from pylvs.core.model import RealServer
from tests.helpers.directors import dr_director, nat_director, tun_director
from tests.helpers.frames import dr_frame, inbound, tun_frame

IFINDEX = {"eth0": 2, "eth1": 3}


def test_a_real_server_binds_its_method_and_changes_it_whole():
    server = RealServer("198.51.100.1", 80)
    assert server.forward == forwarding.DEFAULT == "dr"
    assert server.forwarder is forwarding.REGISTRY["dr"]
    server.set_forward("nat")
    assert (server.forward, server.forwarder) == ("nat", forwarding.get("nat"))
    with pytest.raises(KeyError, match="unknown forwarding method"):
        server.set_forward("gre")
    assert (server.forward, server.forwarder) == ("nat", forwarding.get("nat"))
    with pytest.raises(KeyError):
        RealServer("198.51.100.1", 80, forward="gre")


def test_copies_and_pickles_keep_the_registrys_instance():
    server = RealServer("198.51.100.1", 80, forward="tun")
    for other in (copy.copy(server), copy.deepcopy(server), pickle.loads(pickle.dumps(server))):
        assert other.forwarder is forwarding.REGISTRY["tun"]


def test_a_connection_keeps_the_method_it_was_made_with():
    director = dr_director()
    director.handle(bytearray(dr_frame(sport=1000)), now=0.0)
    (first,) = director.table
    for server in director.services[(6, first.vaddr, 80)].real_servers:
        server.set_forward("tun")
    director.handle(bytearray(dr_frame(sport=1001)), now=0.0)
    (later,) = (conn for conn in director.table if conn is not first)
    assert (first.forwarder, later.forwarder) == (forwarding.get("dr"), forwarding.get("tun"))


def test_the_fast_path_takes_the_entries_the_forwarder_makes():
    director = dr_director()
    director.handle(bytearray(dr_frame()), now=0.0)
    (conn,) = director.table
    hop = director.hops[conn.server.ip]
    assert fastpath.for_connection(conn, hop, IFINDEX, slot=5) == [
        (fastpath.key(6, conn.key12), fastpath.dr(2, hop.macs, hop.mtu, slot=5))]
    assert fastpath.for_connection(conn, hop, {"eth9": 9}) == []

    class Slow(forwarding.Forwarder):
        name = "slow"

    conn.forwarder = Slow()
    assert fastpath.for_connection(conn, hop, IFINDEX) == []


def test_nat_and_tun_entries_are_the_same_from_a_plan_or_without():
    nat = nat_director()
    nat.handle(bytearray(inbound("203.0.113.9", 4000, b"")), now=0.0)
    tun = tun_director()
    tun.handle(bytearray(tun_frame()), now=0.0)
    for director in (nat, tun):
        (conn,) = director.table
        hop = director.hops[conn.server.ip]
        conn.rewrite = None
        fresh = conn.forwarder.xdp_entries(conn, hop, IFINDEX, 1)
        assert fresh and conn.rewrite is not None
        assert conn.forwarder.xdp_entries(conn, hop, IFINDEX, 1) == fresh
    (conn,) = nat.table
    (rip, *_), (vip, *_) = conn.rewrite
    hop = nat.hops[conn.server.ip]
    assert fastpath.for_connection(conn, hop, IFINDEX, slot=1) == [
        (fastpath.key(6, conn.key12), fastpath.nat(True, 3, hop.macs, hop.mtu, vip, rip, slot=1)),
        (fastpath.key(6, conn.reply_key12),
         fastpath.nat(False, IFINDEX[conn.return_hop.interface], conn.return_hop.macs,
                      fastpath.NO_MTU, rip, vip, slot=1))]
