"""pylvs.ha.replica: a master's connections through real sync messages into a backup, which then
forwards their next frames to the same real servers (IPVS's sync daemon, ip_vs_proc_conn)."""

from __future__ import annotations

import dataclasses

from scapy.layers.l2 import Ether

from pylvs.adm.commands import adm
from pylvs.core.conntrack import ESTABLISHED, FIN_WAIT
from pylvs.ha import replica, sync
from tests.helpers.directors import dr_director
from tests.helpers.frames import dr_frame


def _master():
    director = dr_director("rr")
    director.outbox.start_sync(sync.should_sync)
    return director


def _messages(director, now=1.0) -> list[bytes]:
    conns = [replica.to_wire(c, director.table.timeouts) for c in director.outbox.take_sync()]
    return sync.encode(conns, syncid=7)


def test_a_connection_is_sent_at_its_third_packet_and_on_fin():
    master = _master()
    for flags in ("S", "A"):
        master.handle(bytearray(dr_frame(flags=flags)), 1.0)
    assert master.outbox.take_sync() == []
    master.handle(bytearray(dr_frame(flags="PA", payload=b"GET /")), 1.0)
    (conn,) = master.outbox.due
    (entry,) = sync.decode(_messages(master)[0], 7)
    assert (entry.caddr, entry.cport, entry.vaddr, entry.vport, entry.daddr, entry.dport) == (
        "203.0.113.5", 40000, "192.0.2.100", 80, conn.server.address, 80)
    assert entry.state == ESTABLISHED and entry.timeout == 900
    assert entry.flags == sync.IP_VS_CONN_F_DROUTE | sync.IP_VS_CONN_F_NOOUTPUT
    master.handle(bytearray(dr_frame(flags="FA")), 1.0)
    (entry,) = sync.decode(_messages(master)[0], 7)
    assert entry.state == FIN_WAIT and entry.flags & sync.IP_VS_CONN_F_INACTIVE


def test_the_backup_keeps_each_connection_on_its_real_server():
    master, backup = _master(), dr_director("rr")
    sources = [f"203.0.113.{n}" for n in range(1, 7)]
    for src in sources:
        for flags in ("S", "A", "PA"):
            master.handle(bytearray(dr_frame(src=src, flags=flags)), 1.0)
    counts = {}
    for message in _messages(master):
        counts.update(replica.install(backup, sync.decode(message, 7), 1.0))
    assert counts == {"created": 6}
    rows = sorted(adm(master, ["-L", "-n", "-c"], 2.0)[1].splitlines())
    assert sorted(adm(backup, ["-L", "-n", "-c"], 2.0)[1].splitlines()) == rows
    assert adm(backup, ["-L", "-n"], 2.0) == adm(master, ["-L", "-n"], 2.0)  # ActiveConn too
    for src in sources:
        out, _ = backup.handle(bytearray(dr_frame(src=src, flags="A")), 3.0)
        expected, _ = master.handle(bytearray(dr_frame(src=src, flags="A")), 3.0)
        assert Ether(bytes(out)).dst == Ether(bytes(expected)).dst
    assert len({Ether(bytes(backup.handle(bytearray(dr_frame(src=src, flags="A")), 3.0)[0])).dst
                for src in sources}) == 3  # rr spread them: the backup did not re-pick


def test_entries_for_unknown_services_or_servers_are_skipped_and_counted():
    master, backup = _master(), dr_director("rr")
    for flags in ("S", "A", "PA"):
        master.handle(bytearray(dr_frame(flags=flags)), 1.0)
    (entry,) = sync.decode(_messages(master)[0], 7)
    unknown = [dataclasses.replace(entry, vport=81), dataclasses.replace(entry, daddr="10.9.9.9")]
    assert replica.install(backup, unknown, 2.0) == {"unknown_destination": 2}
    assert len(backup.table) == 0
