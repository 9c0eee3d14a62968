"""Persistence (ipvsadm -p/-M): templates made, reused, re-armed, expired and invalidated as
ip_vs_sched_persist does, and shown by -Lnc and -Ln as ipvsadm shows them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

import schedulers
from forwarders import NextHop
from pylvs.adm.commands import adm
from pylvs.core.director import Director
from pylvs.core.model import RealServer, VirtualService, ip_to_int

VIP = "192.0.2.100"
RS = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]


def persistent(timeout: int = 360, netmask: str = "255.255.255.255") -> Director:
    service = VirtualService("tcp", VIP, 80, schedulers.get("rr")(), "dr", timeout, netmask)
    for address in RS:
        service.add_real_server(RealServer(address, 80))
    director = Director([service])
    for i, address in enumerate(RS):
        director.set_hop(ip_to_int(address), NextHop(bytes(6), bytes([2, 0, 0, 0, 1, i]), "eth0"))
    return director


def syn(director: Director, client: str, sport: int, now: float, flags: str = "S") -> str | None:
    frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                  / IP(src=client, dst=VIP) / TCP(sport=sport, dport=80, flags=flags))
    if director.handle(bytearray(frame), now) is None:
        return None
    conn = director.table.get((6, ip_to_int(client), sport, ip_to_int(VIP), 80))
    return conn.server.address if conn else None


def templates(director: Director, now: float) -> list[str]:
    return [row for row in director.table.rows(now) if " NONE " in row or " ASSURED " in row]


def test_one_client_sticks_others_are_scheduled():
    director = persistent()
    first = {syn(director, "203.0.113.5", port, 0.0) for port in range(40000, 40020)}
    assert len(first) == 1
    assert syn(director, "203.0.113.6", 40000, 0.0) not in first
    (service,) = director.services.values()
    assert sum(rs.persistconns for rs in service.real_servers) == 2
    assert sum(rs.stats.conns for rs in service.real_servers) == 21


def test_netmask_groups_a_network():
    director = persistent(netmask="255.255.255.0")
    servers = {syn(director, f"203.0.113.{host}", 40000, 0.0) for host in range(1, 30)}
    assert len(servers) == 1
    assert templates(director, 0.0) == [
        f"TCP 06:00  NONE        203.0.113.0:0      {VIP + ':80':<18} {servers.pop()}:80"]


def test_template_row_turns_assured_when_a_connection_is_established():
    director = persistent()
    server = syn(director, "203.0.113.5", 40000, 0.0)
    syn(director, "203.0.113.5", 40000, 1.0, flags="A")
    assert templates(director, 1.0) == [
        f"TCP 05:59  ASSURED     203.0.113.5:0      {VIP + ':80':<18} {server}:80"]


def test_template_lives_while_it_controls_and_goes_after():
    director = persistent(timeout=10)
    server = syn(director, "203.0.113.5", 40000, 0.0)
    syn(director, "203.0.113.5", 40000, 1.0, flags="A")  # ESTABLISHED: 900 s
    director.tick(11.0)
    assert templates(director, 11.0)[0].startswith("TCP 01:00  ASSURED")  # re-armed 60 s
    assert syn(director, "203.0.113.5", 40001, 12.0) == server
    for conn in list(director.table):
        director.table.remove(conn)
    director.tick(12.0 + 10.0)
    assert templates(director, 22.0) == []


def test_removed_server_invalidates_its_template():
    director = persistent()
    server = syn(director, "203.0.113.5", 40000, 0.0)
    (service,) = director.services.values()
    service.remove_real_server(service.find_real_server(server, 80))
    assert syn(director, "203.0.113.5", 40001, 1.0) not in (None, server)


def test_quiesced_server_keeps_its_persistent_clients():
    director = persistent()
    server = syn(director, "203.0.113.5", 40000, 0.0)
    (service,) = director.services.values()
    service.find_real_server(server, 80).set_weight(0)
    assert syn(director, "203.0.113.5", 40001, 1.0) == server
    assert syn(director, "203.0.113.77", 40001, 1.0) != server


def test_ln_shows_persistence_and_mask():
    director = persistent(netmask="255.255.255.0")
    rc, out, _ = adm(director, ["-Ln"], 0.0)
    assert f"TCP  {VIP}:80 rr persistent 360 mask 255.255.255.0" in out.splitlines()


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 359)), min_size=1, max_size=40))
def test_a_client_keeps_its_server_until_its_template_expires(events):
    director = persistent(timeout=360)
    now, seen, last = 0.0, {}, {}
    for port, (client, gap) in enumerate(events, start=40000):
        now += gap
        director.tick(now)
        address = f"203.0.113.{client + 1}"
        server = syn(director, address, port, now)
        if address in seen and now - last[address] < 360:
            assert server == seen[address]
        seen[address], last[address] = server, now


def test_adm_lnc_lists_templates_with_connections():
    director = persistent()
    syn(director, "203.0.113.5", 40000, 0.0)
    rc, out, _ = adm(director, ["-Lnc"], 0.0)
    sources = [line.split()[3] for line in out.splitlines()[2:]]
    assert rc == 0 and sorted(sources) == ["203.0.113.5:0", "203.0.113.5:40000"]
