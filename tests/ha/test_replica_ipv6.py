"""pylvs.ha.replica with IPv6 connections (issue 23): a master's IPv6 connections (beside IPv4
ones) through real sync messages into a backup, which installs them on the right IPv6 service
and forwards their next frames to the same real servers, as ip_vs_proc_conn does."""

from __future__ import annotations

import dataclasses

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

import schedulers
from forwarders import NextHop
from pylvs.adm.commands import adm
from pylvs.core.conntrack import ESTABLISHED
from pylvs.core.director import Director
from pylvs.core.model import AF_INET6, RealServer, VirtualService, ip_to_int
from pylvs.ha import replica, sync
from tests.helpers.directors import (
    CLIENT6,
    CLIENT_MAC,
    DIRECTOR6,
    DIRECTOR_MAC,
    RS4,
    RS6,
    VIP6,
    director6,
    mac_of,
)

VIP4, CLIENT4 = "192.0.2.100", "203.0.113.5"
RS_V4 = ["198.51.100.1", "198.51.100.2"]


def _rs_mac(i: int) -> bytes:
    return bytes([2, 0, 0, 0, 1, i])


def dual_director() -> Director:
    """An IPv4 and an IPv6 DR service on one port, two real servers each."""
    v4 = VirtualService("tcp", VIP4, 80, schedulers.get("rr")())
    v6 = VirtualService("tcp", VIP6, 80, schedulers.get("rr")())
    for service, servers in ((v4, RS_V4), (v6, RS6)):
        for address in servers:
            service.add_real_server(RealServer(address, 80))
    director = Director([v4, v6])
    director.add_interface("eth0", mac_of(DIRECTOR_MAC))
    for i, address in enumerate([*RS_V4, *RS6]):
        director.set_hop(ip_to_int(address), NextHop(mac_of(DIRECTOR_MAC), _rs_mac(i), "eth0",
                                                      ip_to_int(DIRECTOR6)))
    return director


def frame(src: str, sport: int, flags: str = "S", payload: bytes = b"") -> bytearray:
    layer = (IPv6(src=src, dst=VIP6) if ":" in src else IP(src=src, dst=VIP4))
    return bytearray(bytes(Ether(src=CLIENT_MAC, dst=DIRECTOR_MAC) / layer /
                           TCP(sport=sport, dport=80, flags=flags) / payload))


def _establish(director: Director, src: str, sport: int) -> None:
    for flags in ("S", "A", "PA"):
        director.handle(frame(src, sport, flags, b"x" if flags == "PA" else b""), 1.0)


def _messages(director: Director) -> list[bytes]:
    due = director.outbox.take_sync()
    return sync.encode([replica.to_wire(c, director.table.timeouts) for c in due], syncid=7)


def test_an_ipv6_connection_is_sent_at_its_third_packet_in_an_ipv6_entry():
    """The guard of issue 22 is gone: ConnectionTable.count_in puts IPv6 connections in the
    outbox by the kernel's rule, and to_wire writes their addresses in IPv6."""
    master = director6("dr", RS6)
    master.outbox.start_sync(sync.should_sync)
    for flags in ("S", "A"):
        master.handle(frame(CLIENT6, 40000, flags), 1.0)
    assert master.outbox.take_sync() == []
    master.handle(frame(CLIENT6, 40000, "PA", b"GET /"), 1.0)
    (conn,) = master.outbox.due
    (message,) = _messages(master)
    assert message[8] == sync.STYPE_F_INET6 and len(message) == 8 + 72
    (entry,) = sync.decode(message, 7)
    assert (entry.caddr, entry.cport, entry.vaddr, entry.vport, entry.daddr, entry.dport) == (
        CLIENT6, 40000, VIP6, 80, conn.server.address, 80)
    assert entry.state == ESTABLISHED and entry.timeout == 900 and entry.af == AF_INET6


def test_the_backup_installs_both_families_on_their_services_and_forwards_alike():
    """One message with IPv4 and IPv6 entries; the backup creates each on the service of its
    family (an IPv6 service's key carries AF_INET6), on the master's real server; -Lnc and
    -Ln (ActiveConn) match the master's; the next frames go where the master's go."""
    master, backup = dual_director(), dual_director()
    master.outbox.start_sync(sync.should_sync)
    clients = [(CLIENT4, 40001), (CLIENT6, 40002), (CLIENT4, 40003), (CLIENT6, 40004),
               ("2001:db8:1::6", 40005)]
    for src, sport in clients:
        _establish(master, src, sport)
    (message,) = _messages(master)
    assert len(message) == 8 + 2 * 36 + 3 * 72
    counts = replica.install(backup, sync.decode(message, 7), 1.0)
    assert counts == {"created": 5}
    rows = sorted(adm(master, ["-L", "-n", "-c"], 2.0)[1].splitlines())
    assert sorted(adm(backup, ["-L", "-n", "-c"], 2.0)[1].splitlines()) == rows
    assert any(f"[{CLIENT6}]:40002" in row and f"[{VIP6}]:80" in row for row in rows)
    assert adm(backup, ["-L", "-n"], 2.0) == adm(master, ["-L", "-n"], 2.0)
    for src, sport in clients:
        out, _ = backup.handle(frame(src, sport, "A"), 3.0)
        expected, _ = master.handle(frame(src, sport, "A"), 3.0)
        assert out is not None and Ether(bytes(out)).dst == Ether(bytes(expected)).dst


def test_a_second_message_refreshes_the_ipv6_connection_it_made():
    master, backup = director6("dr", RS6), director6("dr", RS6)
    master.outbox.start_sync(sync.should_sync)
    _establish(master, CLIENT6, 40000)
    entries = sync.decode(_messages(master)[0], 7)
    assert replica.install(backup, entries, 1.0) == {"created": 1}
    assert replica.install(backup, entries, 2.0) == {"refreshed": 1}
    assert len(backup.table) == 1


def test_entries_of_an_unknown_ipv6_service_or_server_are_counted():
    """No IPv6 service at that address or port, or no such real server in it; and an IPv6
    entry never matches an IPv4 service whose address is its IPv4-mapped twin."""
    master = director6("dr", RS6)
    master.outbox.start_sync(sync.should_sync)
    _establish(master, CLIENT6, 40000)
    (entry,) = sync.decode(_messages(master)[0], 7)
    backup = director6("dr", RS6)
    unknown = [dataclasses.replace(entry, vport=81),
               dataclasses.replace(entry, daddr="2001:db8:2::99")]
    assert replica.install(backup, unknown, 2.0) == {"unknown_destination": 2}
    mapped = VirtualService("tcp", "192.0.2.100", 80, schedulers.get("rr")())
    mapped.add_real_server(RealServer("198.51.100.11", 80))
    v4_only = Director([mapped])
    twin = dataclasses.replace(entry, vaddr="::ffff:192.0.2.100", daddr="::ffff:198.51.100.11")
    assert replica.install(v4_only, [twin], 2.0) == {"unknown_destination": 1}


def test_a_connection_to_a_real_server_of_the_other_family_is_not_syncable():
    """A tunnelled real server of the other family (6in4): no sync entry can carry it (IPVS
    refuses such servers while it syncs); a same-family one is syncable."""
    mixed, same = director6("tun", [RS4]), director6("tun", RS6)
    for director in (mixed, same):
        director.outbox.start_sync(sync.should_sync)
        _establish(director, CLIENT6, 40000)
    (conn,) = mixed.outbox.take_sync()
    assert not replica.syncable(conn)
    (conn,) = same.outbox.take_sync()
    assert replica.syncable(conn)
    assert replica.to_wire(conn, same.table.timeouts).flags & sync.IP_VS_CONN_F_FWD_MASK == (
        sync.IP_VS_CONN_F_TUNNEL)
