"""The fast path's ledger (pylvs.core.offloaded), with no kernel: the maps are dicts here, and the
program's counts are written into the values as the program would (packets, bytes, last time in
ns at the start of an entry; a stats row's four counters)."""

from __future__ import annotations

import struct

from forwarders import NextHop
from pylvs.core import fastpath
from pylvs.core.conntrack import ESTABLISHED
from pylvs.core.model import ip_to_int
from pylvs.core.offloaded import SOON, ZERO_ROW, FastPathLedger, Writes, row_key
from tests.helpers.directors import dr_director, nat_director
from tests.helpers.frames import dr_frame, inbound, reply

IFINDEX = {"eth0": 2, "eth1": 3}
SECOND = 1_000_000_000


class Maps:
    """The connection map and the stats map as the shell would keep them: what the ledger said
    to write, written."""

    def __init__(self, ledger: FastPathLedger) -> None:
        self.ledger = ledger
        self.conns: dict[bytes, bytes] = {}
        self.rows: dict[bytes, bytes] = {}

    def write(self, writes: Writes) -> None:
        for key in writes.delete:
            del self.conns[key]
        for key in writes.rows:
            self.rows[key] = ZERO_ROW
        for install in writes.put:
            self.conns.update(install.entries)
            self.ledger.installed(install)

    def count(self, key: bytes, packets: int, octets: int, last_ns: int) -> None:
        """As the program does on a hit: the entry's counters and last time."""
        self.conns[key] = struct.pack("<QQQ", packets, octets, last_ns) + self.conns[key][24:]

    def count_row(self, slot: int, *counters: int) -> None:
        self.rows[row_key(slot)] = fastpath.STATS.pack(*counters)


def _offloading(director=None):
    """A director offering to a fast path, its ledger and the maps it writes."""
    director = director or dr_director()
    director.outbox.start_offering()
    ledger = FastPathLedger(IFINDEX)
    return director, ledger, Maps(ledger)


def _dr_established(director, sport=40000, now=1.0):
    for flags in ("S", "A"):
        director.handle(bytearray(dr_frame(sport=sport, flags=flags)), now)
    return director.table.get((6, ip_to_int("203.0.113.5"), sport, ip_to_int("192.0.2.100"),
                               80))


def _offered(director, ledger, maps):
    offered, withdrawn = director.outbox.take_offers()
    maps.write(ledger.plan(offered, withdrawn, director.hops))


def test_an_established_connection_gets_its_entry_and_its_server_a_fresh_row():
    director = dr_director()
    director.outbox.start_offering()
    ledger, conn = FastPathLedger(IFINDEX), _dr_established(director)
    assert conn.offloaded and director.outbox.has_offers()
    offered, withdrawn = director.outbox.take_offers()
    writes = ledger.plan(offered, withdrawn, director.hops)
    assert writes.delete == [] and writes.rows == [row_key(0)]
    (install,) = writes.put
    ((key, value),) = install.entries
    assert key == fastpath.key(6, conn.key12) and fastpath.slot(value) == 0
    assert value == fastpath.for_connection(conn, director.hops[conn.server.ip], IFINDEX,
                                            0)[0][1].pack()
    ledger.installed(install)
    assert ledger.keys == {conn: [key]} and ledger.rows() == [row_key(0)]
    assert not director.outbox.has_offers()


def test_a_worker_counts_in_rows_of_its_own():
    director = dr_director()
    director.outbox.start_offering()
    ledger = FastPathLedger(IFINDEX, first_slot=3 * fastpath.SLOTS_PER_WORKER)
    maps = Maps(ledger)
    for sport in (40000, 40001, 40002):  # rr: one connection on each real server
        _dr_established(director, sport)
    _offered(director, ledger, maps)
    first = 3 * fastpath.SLOTS_PER_WORKER
    assert sorted(maps.rows) == [row_key(first + i) for i in range(3)]
    assert sorted(fastpath.slot(v) for v in maps.conns.values()) == [first, first + 1, first + 2]


def test_a_connection_that_leaves_its_state_or_the_table_leaves_the_map():
    director, ledger, maps = _offloading()
    conn = _dr_established(director)
    _offered(director, ledger, maps)
    assert len(maps.conns) == 1
    director.handle(bytearray(dr_frame(flags="FA")), 2.0)  # passed up by the program
    assert not conn.offloaded
    _offered(director, ledger, maps)
    assert maps.conns == {} and ledger.keys == {}
    other = _dr_established(director, 40001)
    _offered(director, ledger, maps)
    director.table.remove(other)
    _offered(director, ledger, maps)
    assert maps.conns == {} and ledger.keys == {} and not other.offloaded


def test_withdrawn_and_offered_again_in_one_batch_is_in_the_map_once():
    director, ledger, maps = _offloading()
    conn = _dr_established(director)
    _offered(director, ledger, maps)
    director.outbox.withdraw(conn)
    director.handle(bytearray(dr_frame(flags="A")), 2.0)  # established: offered again
    offered, withdrawn = director.outbox.take_offers()
    assert offered == [conn] and withdrawn == [conn]
    writes = ledger.plan(offered, withdrawn, director.hops)
    assert writes.delete == [fastpath.key(6, conn.key12)] and len(writes.put) == 1
    maps.write(writes)
    assert list(ledger.keys) == [conn] and conn.offloaded


def test_new_packets_raise_in_pkts_and_rearm_the_timer_from_the_last_time():
    director, ledger, maps = _offloading()
    conn = _dr_established(director, now=1.0)
    _offered(director, ledger, maps)
    key = fastpath.key(6, conn.key12)
    assert conn.expires == 1.0 + 900 and conn.in_pkts == 2
    maps.count(key, packets=5, octets=500, last_ns=100 * SECOND)
    ledger.refresh(maps.conns, clock_offset=0.5, by_state=director.table.timeouts.by_state)
    assert conn.in_pkts == 7 and conn.expires == 100.5 + 900
    ledger.refresh(maps.conns, 0.5, director.table.timeouts.by_state)  # nothing new
    assert conn.in_pkts == 7 and conn.expires == 100.5 + 900
    maps.count(key, packets=6, octets=600, last_ns=50 * SECOND)  # never earlier
    ledger.refresh(maps.conns, 0.5, director.table.timeouts.by_state)
    assert conn.in_pkts == 8 and conn.expires == 100.5 + 900


def test_only_the_connections_about_to_expire_are_read_but_for_a_listing():
    director, ledger, maps = _offloading()
    soon, later = _dr_established(director, 40000, now=1.0), _dr_established(director, 40001,
                                                                              now=100.0)
    _offered(director, ledger, maps)
    now = soon.expires - SOON
    assert ledger.wanted(now) == [fastpath.key(6, soon.key12)]
    assert sorted(ledger.wanted(now, everything=True)) == sorted(
        fastpath.key(6, c.key12) for c in (soon, later))
    assert ledger.wanted(1.0) == []


def test_a_nat_reply_entry_rearms_the_timer_too():
    director, ledger, maps = _offloading(nat_director())
    director.handle(bytearray(inbound("203.0.113.5", 40000, b"")), 1.0)
    director.handle(bytearray(reply("203.0.113.5", 40000, b"")), 1.0)
    director.handle(bytearray(inbound("203.0.113.5", 40000, b"", flags="A")), 1.0)
    (conn,) = director.table
    assert conn.state == ESTABLISHED and conn.offloaded
    _offered(director, ledger, maps)
    inward, back = fastpath.key(6, conn.key12), fastpath.key(6, conn.reply_key12)
    assert ledger.keys[conn] == [inward, back] and set(maps.conns) == {inward, back}
    maps.count(back, packets=3, octets=300, last_ns=200 * SECOND)
    ledger.refresh(maps.conns, 0.0, director.table.timeouts.by_state)
    assert conn.expires == 200 + 900 and conn.in_pkts == 2  # replies are not in_pkts


def test_a_stats_row_grows_its_server_and_service_stats_by_what_it_grew():
    director, ledger, maps = _offloading()
    conn = _dr_established(director)
    _offered(director, ledger, maps)
    server, service = conn.server.stats, conn.service.stats
    before = server.inpkts, server.inbytes, service.inpkts, service.inbytes
    maps.count_row(0, 10, 1000, 4, 400)
    ledger.fold(maps.rows, director.services.values())
    maps.count_row(0, 15, 1500, 4, 400)
    ledger.fold(maps.rows, director.services.values())
    assert (server.inpkts, server.inbytes, server.outpkts, server.outbytes) == (
        before[0] + 15, before[1] + 1500, 4, 400)
    assert (service.inpkts, service.inbytes) == (before[2] + 15, before[3] + 1500)


def test_a_deleted_server_gives_its_row_back_once_its_connections_are_gone():
    director, ledger, maps = _offloading()
    conn = _dr_established(director)
    _offered(director, ledger, maps)
    service = conn.service
    director.drop_connections(lambda c: c.server is conn.server)
    service.remove_real_server(conn.server)
    assert director.counters["nodest_expired"] == 1
    _offered(director, ledger, maps)
    maps.count_row(0, 2, 200, 0, 0)  # counted before it went
    ledger.fold(maps.rows, director.services.values())
    assert conn.server.stats.inpkts >= 2 and ledger.rows() == []
    _dr_established(director, 40001)
    _offered(director, ledger, maps)
    assert ledger.rows() == [row_key(0)]  # the row again, zeroed for its new server
    assert maps.rows[row_key(0)] == ZERO_ROW


def test_a_server_whose_hop_changed_has_its_entries_made_again():
    director, ledger, maps = _offloading()
    conn = _dr_established(director)
    _offered(director, ledger, maps)
    key = fastpath.key(6, conn.key12)
    assert ledger.follow_hops(director.hops) == Writes()
    moved = NextHop(bytes.fromhex("020000000002"), bytes.fromhex("0200000009aa"), "eth0")
    director.set_hop(conn.server.ip, moved)
    writes = ledger.follow_hops(director.hops)
    assert writes.delete == [key] and writes.put[0].hop is moved
    maps.write(writes)
    assert maps.conns[key][32:44] == moved.macs and conn.offloaded
    del director.hops[conn.server.ip]  # no hop: Python forwards it (and counts no_next_hop)
    maps.write(ledger.follow_hops(director.hops))
    assert maps.conns == {} and not conn.offloaded and ledger.keys == {}


def test_a_connection_the_map_refused_goes_back_to_python_and_is_offered_again():
    director = dr_director()
    director.outbox.start_offering()
    ledger = FastPathLedger(IFINDEX)
    conn = _dr_established(director)
    offered, withdrawn = director.outbox.take_offers()
    (install,) = ledger.plan(offered, withdrawn, director.hops).put
    assert ledger.refused(install) == [fastpath.key(6, conn.key12)]
    assert not conn.offloaded and ledger.keys == {}
    director.handle(bytearray(dr_frame(flags="A")), 2.0)
    assert director.outbox.take_offers() == ([conn], [])


def test_no_entries_for_a_server_without_a_hop_or_an_interface_the_program_is_on():
    director = dr_director()
    director.outbox.start_offering()
    conn = _dr_established(director)
    offered, _ = director.outbox.take_offers()
    hops = {ip: hop for ip, hop in director.hops.items() if ip != conn.server.ip}
    assert FastPathLedger(IFINDEX).plan(offered, [], hops) == Writes()
    assert not conn.offloaded
    conn.offloaded = True
    assert FastPathLedger({"eth9": 9}).plan(offered, [], director.hops).put == []
    assert not conn.offloaded


def test_a_withdrawn_link_hands_the_counts_back_and_its_connections_stay_with_python():
    director, ledger, maps = _offloading()
    conn = _dr_established(director, now=1.0)
    _offered(director, ledger, maps)
    key = fastpath.key(6, conn.key12)
    maps.count(key, packets=5, octets=500, last_ns=100 * SECOND)
    assert ledger.via("eth0") == [key] and ledger.via("eth1") == []
    writes = ledger.withdraw_link("eth0", {key: maps.conns[key]}, 0.5,
                                  director.table.timeouts.by_state)
    assert writes == Writes(delete=[key])
    maps.write(writes)
    assert conn.in_pkts == 2 + 5 and conn.expires == 100.5 + 900  # what the program saw
    assert maps.conns == {} and ledger.keys == {} and conn.offloaded  # parked
    director.handle(bytearray(dr_frame(flags="A")), 200.0)  # Python forwards it ...
    assert director.outbox.take_offers() == ([], [])  # ... and the core offers it no more
    later = _dr_established(director, 40001, now=201.0)
    _offered(director, ledger, maps)  # a new one through the link: parked at once
    assert later.offloaded and ledger.keys == {} and maps.conns == {}
    director.table.remove(later)
    _offered(director, ledger, maps)  # gone: nothing of it was in the map
    assert maps.conns == {}


def test_a_nat_connection_leaves_with_either_of_its_links():
    for link in ("eth0", "eth1"):
        director, ledger, maps = _offloading(nat_director())
        director.handle(bytearray(inbound("203.0.113.5", 40000, b"")), 1.0)
        director.handle(bytearray(reply("203.0.113.5", 40000, b"")), 1.0)
        director.handle(bytearray(inbound("203.0.113.5", 40000, b"", flags="A")), 1.0)
        _offered(director, ledger, maps)
        assert len(maps.conns) == 2 and len(ledger.via(link)) == 2
        maps.write(ledger.withdraw_link(link, dict(maps.conns), 0.0,
                                        director.table.timeouts.by_state))
        assert maps.conns == {} and link in ledger.withdrawn


def test_the_ledger_tallies_what_the_program_forwarded_both_ways():
    director, ledger, maps = _offloading()
    _dr_established(director)
    _offered(director, ledger, maps)
    maps.count_row(0, 10, 1000, 4, 400)
    ledger.fold(maps.rows, director.services.values())
    maps.count_row(0, 15, 1500, 6, 600)
    ledger.fold(maps.rows, director.services.values())
    assert ledger.forwarded == 21
