"""The sync daemon's halves on real sockets (issue 23): over an IPv6 group on a veth pair as
ip_vs_sync.c's make_send_sock/make_receive_sock do for mcast_af AF_INET6, and over IPv4 too,
each carrying IPv4 and IPv6 connections; -L --daemon's line for an IPv6 group; and the HA
runtime's refusals as ip_vs_genl_new_daemon has them (another family's real server)."""

from __future__ import annotations

import ipaddress
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

import schedulers
from forwarders import NextHop
from pylvs.adm import commands, ipvsadm
from pylvs.adm.config import Config
from pylvs.core.director import Director
from pylvs.core.model import RealServer, VirtualService, ip_to_int
from pylvs.ha import replica, sync
from pylvs.shell import fanout
from pylvs.shell.ha_runtime import HaRuntime
from pylvs.shell.sync_socket import SyncBackup, SyncMaster
from pylvs.shell.workers import sync_slots
from tests.helpers.fanout import run
from tests.helpers.veth import NEEDS_NAMESPACES, in_ns, with_ipv6

VIP4, VIP6 = "192.0.2.100", "2001:db8:1::100"
RS4, RS6 = "198.51.100.11", "2001:db8:2::11"
CLIENT4, CLIENT6 = "203.0.113.5", "2001:db8:1::5"
MAC = bytes.fromhex("020000000002")
INVALID = f"{commands.INVALID}\n"


def dual_director() -> Director:
    v4 = VirtualService("tcp", VIP4, 80, schedulers.get("rr")())
    v4.add_real_server(RealServer(RS4, 80))
    v6 = VirtualService("tcp", VIP6, 80, schedulers.get("rr")())
    v6.add_real_server(RealServer(RS6, 80))
    director = Director([v4, v6])
    director.add_interface("eth0", MAC)
    for address in (RS4, RS6):
        director.set_hop(ip_to_int(address), NextHop(MAC, MAC, "eth0"))
    return director


def _establish(director: Director, client: str, sport: int) -> None:
    layer = IPv6(src=client, dst=VIP6) if ":" in client else IP(src=client, dst=VIP4)
    for flags, payload in (("S", b""), ("A", b""), ("PA", b"x")):
        director.handle(bytearray(bytes(Ether(src=MAC, dst=MAC) / layer /
                                        TCP(sport=sport, dport=80, flags=flags) / payload)),
                        1.0)


def needs_namespaces(test):
    for mark in NEEDS_NAMESPACES:
        test = mark(test)
    return test


@needs_namespaces
@pytest.mark.parametrize("group", ["ff02::8848", "224.0.0.81"])
def test_both_families_of_connection_cross_either_family_of_transport(topo, group):
    """The master in one namespace sends two IPv6 connections and an IPv4 one; the backup in
    the other, joined to the group on its veth, installs all three on its own services."""
    with_ipv6(topo)
    transport = sync.Transport(group)
    master_director, backup_director = dual_director(), dual_director()
    master = in_ns(topo.d, SyncMaster, master_director, "vd", 5, transport)
    backup = in_ns(topo.p, SyncBackup, backup_director, "vp", 5, None, transport)
    try:
        assert (master.sock.family, backup.sock.family) == ((10, 10) if ":" in group else (2, 2))
        for client, sport in ((CLIENT6, 40001), (CLIENT4, 40002), (CLIENT6, 40003)):
            _establish(master_director, client, sport)
        master.poll(1.0)
        assert master.counters["sent"] == 1
        deadline = time.monotonic() + 5
        while backup.counters["received"] == 0 and time.monotonic() < deadline:
            backup.poll(1.0)
            time.sleep(0.02)
        assert dict(backup.counters) == {**dict.fromkeys(backup.counts, 0), "received": 1,
                                         "created": 3}
        assert sorted(c.row(2.0) for c in backup_director.table) == sorted(
            c.row(2.0) for c in master_director.table)
    finally:
        master.close()
        backup.close()


@needs_namespaces
def test_the_daemon_line_names_the_ipv6_group_and_its_maxlen(topo):
    """ipvsadm's list_daemon over netlink: group by inet_ntop, maxlen 1500 - 48 for a master,
    the veth's 1500 - 48 for a backup."""
    with_ipv6(topo)
    transport = sync.Transport("ff02:0:0::8848", 9000, 3)
    master = in_ns(topo.d, SyncMaster, dual_director(), "vd", 0, transport)
    backup = in_ns(topo.d, SyncBackup, dual_director(), "vd", 9, None, transport)
    try:
        assert master.describe() == ("master sync daemon (mcast=vd, syncid=0, maxlen=1452, "
                                     "group=ff02::8848, port=9000, ttl=3)")
        assert backup.describe() == ("backup sync daemon (mcast=vd, syncid=9, maxlen=1452, "
                                     "group=ff02::8848, port=9000, ttl=3)")
    finally:
        master.close()
        backup.close()


def _runtime(director: Director) -> HaRuntime:
    ha = HaRuntime(Config(interface="lo"), director, lambda what, step: step())
    ha.install_synced = lambda entries, now: replica.install(director, entries, now)
    return ha


def test_the_daemon_is_refused_while_a_real_server_is_of_another_family():
    """ip_vs_genl_new_daemon: mixed_address_family_dests > 0 → EINVAL, before the daemon is
    looked at (so before "Daemon has already run"); once that server is gone it starts."""
    director = dual_director()
    assert commands.answer(director, ipvsadm.parse(
        ["-a", "-t", f"[{VIP6}]:80", "-r", "198.51.100.12", "-i"]), 0.0)[0] == 0
    ha = _runtime(director)
    for role in ("master", "backup"):
        reply = ha.daemon(ipvsadm.parse(["--start-daemon", role, "--mcast-interface", "lo"]))
        assert (reply.rc, reply.stderr) == (255, INVALID)
    assert ha.sync_daemons == {} and not ha.syncing
    assert commands.answer(director, ipvsadm.parse(
        ["-d", "-t", f"[{VIP6}]:80", "-r", "198.51.100.12"]), 0.0)[0] == 0
    if os.geteuid() != 0:
        return
    try:
        reply = ha.daemon(ipvsadm.parse(["--start-daemon", "master", "--mcast-interface", "lo"]))
        assert reply.rc == 0 and ha.syncing
        again = ha.daemon(ipvsadm.parse(["--start-daemon", "master"]))
        assert (again.rc, again.stderr) == (255, "Daemon has already run\n")
    finally:
        ha.close()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 2**64 - 1), st.integers(1024, 65535)), min_size=1,
                max_size=20), st.integers(1, 4))
def test_synced_ipv6_connections_go_to_the_worker_their_frames_reach(clients, workers):
    """With workers, the supervisor hands each synced IPv6 connection to the worker the
    fanout program sends the client's frames to (by the client's address alone)."""
    director = dual_director()
    entries = [sync.SyncConn(6, str(ipaddress.IPv6Address((0x20010db8 << 96) | host)), port,
                             VIP6, 80, RS6, 80, 1, 0, 900) for host, port in clients]
    slots, unknown = sync_slots(entries, director.services.values(), workers)
    assert unknown == 0 and sum(map(len, slots.values())) == len(entries)
    code = fanout.program(*fanout.rules(director.services.values()))
    for slot, batch in slots.items():
        for entry in batch:
            packet = bytes(IPv6(src=entry.caddr, dst=VIP6) / TCP(sport=entry.cport, dport=80))
            assert run(code, packet) % workers == slot
