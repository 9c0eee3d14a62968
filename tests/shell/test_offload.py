"""The fast path's glue (pylvs.shell.offload) on real BPF maps (root; the program is loaded, not
attached): the core's offers and withdrawals reach the connection map, what the program counts
there comes back into IPVS's timers and statistics, and a full map leaves connections in Python,
counted; IPv6 keys (and 4in6's second entry) go to the IPv6 map."""

from __future__ import annotations

import os
import struct
from types import SimpleNamespace

import pytest

from forwarders import NextHop
from pylvs.core import fastpath
from pylvs.core.conntrack import UDP_STATE
from pylvs.core.model import ip_to_int
from pylvs.core.offloaded import row_key
from tests.helpers.directors import dr_director
from tests.helpers.frames import dr_frame

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: bpf()")
SECOND = 1_000_000_000


def _offload(max_entries=64):
    from pylvs.shell.offload import Offload, OffloadError
    try:
        return Offload(["lo"], max_entries, attach=False)
    except OffloadError as exc:
        pytest.skip(str(exc))


def _director():
    director = dr_director()
    for ip in list(director.hops):
        director.set_hop(ip, NextHop(bytes(6), bytes.fromhex("020000000001"), "lo"))
    director.outbox.start_offering()
    return director


def _connect(director, sport, now=1.0):
    for flags in ("S", "A"):
        director.handle(bytearray(dr_frame(sport=sport, flags=flags)), now)
    return director.table.get((6, ip_to_int("203.0.113.5"), sport, ip_to_int("192.0.2.100"),
                               80))


def test_offers_reach_the_map_and_its_counts_come_back():
    offload, director = _offload(), _director()
    try:
        conn = _connect(director, 40000)
        offload.apply(director)
        key = fastpath.key(6, conn.key12)
        value = offload.conns.lookup(key)
        assert value is not None and not director.outbox.has_offers()
        offload.conns.update(key, struct.pack("<QQQ", 4, 400, 50 * SECOND) + value[24:])
        offload.stats.update(row_key(fastpath.slot(value)), fastpath.STATS.pack(4, 400, 0, 0))
        before = conn.server.stats.inpkts
        offload.read(director, 2.0, everything=True)
        assert conn.in_pkts == 6 and conn.server.stats.inpkts == before + 4
        assert conn.expires >= 50 + 900 - 1
        director.handle(bytearray(dr_frame(flags="FA")), 3.0)
        offload.apply(director)
        assert offload.conns.lookup(key) is None and offload.ledger.keys == {}
    finally:
        offload.close()


def test_a_full_map_leaves_the_connection_in_python_counted():
    offload, director = _offload(max_entries=2), _director()
    try:
        conns = [_connect(director, sport) for sport in (40000, 40001, 40002)]
        offload.apply(director)
        assert sum(c.offloaded for c in conns) == 2
        assert offload.counters["offload_refused"] == 1
        assert "offload_refused" not in director.counters
    finally:
        offload.close()


class _Conn:
    """Enough of a connection for the ledger's bookkeeping (IPv6 connections are conntrack's)."""

    def __init__(self, server_ip: int) -> None:
        self.server = type("Server", (), {"ip": server_ip})()
        self.offloaded = True
        self.proto, self.state, self.expires, self.in_pkts = 17, 0, 0.0, 0


def test_ipv6_keys_go_to_the_ipv6_map_and_4in6_to_both():
    """Routed by key size: written, read back into the timers, deleted, purged."""
    from pylvs.core.offloaded import Install, Writes
    offload = _offload()
    try:
        assert offload.conns6 is not None
        macs, hop = bytes(12), NextHop(bytes(6), bytes(6), "lo")
        six = (fastpath.key6(6, bytes(range(36))), fastpath.dr6(1, macs, 1500, slot=3).pack())
        four_in_six = [(key, entry.pack()) for key, entry in fastpath.tun4in6(
            17, bytes(range(12)), 1, macs, 1500, bytes(16), bytes(range(16)), slot=3)]
        installs = [Install(_Conn(1), hop, [six]), Install(_Conn(2), hop, four_in_six)]
        offload._write(Writes(put=installs))
        assert offload.conns6.lookup(six[0]) == six[1]
        assert offload.conns.lookup(four_in_six[0][0]) == four_in_six[0][1]
        assert offload.conns6.lookup(four_in_six[1][0]) == four_in_six[1][1]
        assert len(offload.ledger.keys) == 2
        counted = struct.pack("<QQQ", 4, 400, 50 * SECOND)
        offload.conns6.update(six[0], counted + six[1][24:])
        offload.conns.update(four_in_six[0][0], counted + four_in_six[0][1][24:])
        director = SimpleNamespace(services={}, hops={1: hop, 2: hop},
                                   table=SimpleNamespace(timeouts=SimpleNamespace(
                                       by_state={UDP_STATE: 300})))
        for everything in (False, True):  # the few about to expire, or all of them
            offload.read(director, 1.0, everything)  # type: ignore[arg-type]
        conns = [install.conn for install in installs]
        assert [c.in_pkts for c in conns] == [4, 4] and all(c.expires >= 300 for c in conns)
        offload._write(Writes(delete=[six[0]]))
        assert offload.conns6.lookup(six[0]) is None
        assert offload.purge(0) == 2                      # a worker's entries, in both maps
        assert offload.conns.keys() == [] and offload.conns6.keys() == []
    finally:
        offload.close()
