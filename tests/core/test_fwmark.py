"""Firewall-mark services in the director, as IPVS has them: a packet's mark (here, from the
mark rules) is looked up before its address and port (ip_vs_service_find), a real server of
port 0 keeps the packet's port, persistence goes by <IPPROTO_IP, client net, 0, mark, 0, daddr,
0> so a client's http and https meet one real server (ip_vs_sched_persist), and the connection
remembers the mark."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

import schedulers
from forwarders import NextHop
from pylvs.core.director import Director
from pylvs.core.marks import MarkRule, Marks
from pylvs.core.model import AF_INET6, RealServer, VirtualService, fwmark_key, ip_to_int

VIPS = ["207.175.44.110", "207.175.44.111"]
RS = ["192.168.10.1", "192.168.10.2", "192.168.10.3"]
MAC = bytes.fromhex("020000000002")


def fwmark_director(method: str = "dr", timeout: int = 0, rs_port: int = 0,
                    rules: tuple[MarkRule, ...] = (MarkRule("207.175.44.110/31", 1),),
                    extra: tuple[VirtualService, ...] = ()) -> Director:
    service = VirtualService("", "", 0, schedulers.get("rr")(), method, timeout, fwmark=1)
    for address in RS:
        service.add_real_server(RealServer(address, rs_port, forward=method))
    director = Director([service, *extra])
    director.set_marks(Marks(rules))
    director.add_interface("eth0", MAC)
    for i, address in enumerate(RS):
        director.set_hop(ip_to_int(address), NextHop(MAC, bytes([2, 0, 0, 0, 1, i]), "eth0"))
    return director


def packet(client: str, vip: str, sport: int, dport: int, proto: str = "tcp") -> bytearray:
    l4 = TCP(sport=sport, dport=dport, flags="S") if proto == "tcp" else UDP(sport=sport,
                                                                          dport=dport)
    return bytearray(bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                           / IP(src=client, dst=vip) / l4))


def server_of(director: Director, client: str, vip: str, sport: int, dport: int) -> str | None:
    conn = director.table.get((6, ip_to_int(client), sport, ip_to_int(vip), dport))
    return None if conn is None else conn.server.address


def test_a_marked_packet_goes_to_the_fwmark_service_whatever_its_port():
    director = fwmark_director()
    for i, (vip, port) in enumerate([(VIPS[0], 80), (VIPS[1], 443), (VIPS[0], 8080)]):
        assert director.handle(packet("203.0.113.5", vip, 40000 + i, port), 0.0) is not None
    (service,) = director.services.values()
    assert service.stats.conns == 3
    assert {server_of(director, "203.0.113.5", VIPS[0], 40000, 80)} <= set(RS)
    conn = director.table.get((6, ip_to_int("203.0.113.5"), 40001, ip_to_int(VIPS[1]), 443))
    assert conn is not None and conn.fwmark == 1 and conn.dport == 443


def test_an_unmarked_packet_is_not_the_fwmark_services():
    director = fwmark_director()
    assert director.handle(packet("203.0.113.5", "207.175.44.112", 40000, 80), 0.0) is None
    (service,) = director.services.values()
    assert service.stats.conns == 0


def test_the_mark_is_looked_up_before_address_and_port():
    """ip_vs_service_find: the fwmark table first, so a marked packet to a VIP:port that also
    has its own service goes to the fwmark service."""
    own = VirtualService("tcp", VIPS[0], 80, schedulers.get("rr")())
    own.add_real_server(RealServer("10.9.9.9", 80))
    director = fwmark_director(extra=(own,))
    director.set_hop(ip_to_int("10.9.9.9"), NextHop(MAC, bytes(6), "eth0"))
    director.handle(packet("203.0.113.5", VIPS[0], 40000, 80), 0.0)
    assert server_of(director, "203.0.113.5", VIPS[0], 40000, 80) in RS
    director.set_marks(Marks())
    director.handle(packet("203.0.113.5", VIPS[0], 40001, 80), 0.0)
    assert server_of(director, "203.0.113.5", VIPS[0], 40001, 80) == "10.9.9.9"


def test_a_mark_without_a_service_falls_back_to_address_and_port():
    own = VirtualService("tcp", VIPS[0], 80, schedulers.get("rr")())
    own.add_real_server(RealServer("10.9.9.9", 80))
    director = fwmark_director(rules=(MarkRule("207.175.44.110/31", 2),), extra=(own,))
    director.set_hop(ip_to_int("10.9.9.9"), NextHop(MAC, bytes(6), "eth0"))
    director.handle(packet("203.0.113.5", VIPS[0], 40000, 80), 0.0)
    assert server_of(director, "203.0.113.5", VIPS[0], 40000, 80) == "10.9.9.9"


def test_nat_to_a_port_0_server_keeps_the_packets_port():
    director = fwmark_director("nat")
    out = director.handle(packet("203.0.113.5", VIPS[1], 40000, 443), 0.0)
    assert out is not None
    sent = Ether(bytes(out[0]))
    assert sent[IP].dst in RS and sent[TCP].dport == 443


def test_nat_to_a_server_with_a_port_uses_it_without_persistence():
    """ip_vs_schedule: dest->port ? dest->port : vport."""
    director = fwmark_director("nat", rs_port=8000)
    out = director.handle(packet("203.0.113.5", VIPS[1], 40000, 443), 0.0)
    assert out is not None and Ether(bytes(out[0]))[TCP].dport == 8000


def test_persistent_nat_keeps_the_packets_port_even_where_the_server_has_one():
    """ip_vs_sched_persist: dport = the packet's, the server's only where the packet went to
    the service's own port (0 for a fwmark service)."""
    director = fwmark_director("nat", timeout=300, rs_port=8000)
    out = director.handle(packet("203.0.113.5", VIPS[1], 40000, 443), 0.0)
    assert out is not None and Ether(bytes(out[0]))[TCP].dport == 443


def test_persistence_keeps_a_clients_ports_and_vips_on_one_server():
    director = fwmark_director(timeout=300)
    seen: dict[str, set[str | None]] = {}
    for host in range(1, 7):
        client = f"203.0.113.{host}"
        for i, (vip, port) in enumerate([(VIPS[0], 80), (VIPS[0], 443), (VIPS[1], 443)]):
            director.handle(packet(client, vip, 40000 + i, port), 0.0)
            seen.setdefault(client, set()).add(server_of(director, client, vip, 40000 + i, port))
    assert all(len(servers) == 1 for servers in seen.values())
    assert len(set().union(*seen.values())) == len(RS)
    assert len(director.table.templates) == 6


def test_the_template_row_is_ipvs_fwmark_template():
    director = fwmark_director(timeout=300)
    director.handle(packet("203.0.113.5", VIPS[0], 40000, 80), 0.0)
    (template,) = director.table.templates.values()
    server = template.server.address
    assert template.row(0.0) == (
        f"IP  05:00  NONE        203.0.113.5:0      0.0.0.1:0          {server}:0")
    rows = director.table.rows(0.0)
    assert f"TCP 01:00  SYN_RECV    203.0.113.5:40000  {VIPS[0]}:80  {server}:80" in rows


def test_an_ipv6_fwmark_template_puts_the_mark_in_the_first_word():
    """The kernel's union nf_inet_addr .ip = htonl(mark): the mark is the address's first 32
    bits, which inet_ntop writes 0:1::."""
    service = VirtualService("", "", 0, schedulers.get("rr")(), "dr", 300, fwmark=1,
                             af=AF_INET6)
    service.add_real_server(RealServer("2001:db8::11", 0))
    director = Director([service])
    director.set_marks(Marks([MarkRule("2001:db8::100", 1, 6, ((80, 80),))]))
    director.add_interface("eth0", MAC)
    director.set_hop(ip_to_int("2001:db8::11"), NextHop(MAC, bytes(6), "eth0"))
    frame = bytes(Ether() / IPv6(src="2001:db8::5", dst="2001:db8::100")
                  / TCP(sport=40000, dport=80, flags="S"))
    assert director.handle(bytearray(frame), 0.0) is not None
    assert service.key == fwmark_key(1, AF_INET6)
    (template,) = director.table.templates.values()
    assert "[0:1::]:0" in template.row(0.0) and template.row(0.0).startswith("IP ")


def test_rule_protocol_and_ports_limit_the_mark():
    rules = (MarkRule("207.175.44.110", 1, 6, ((80, 80), (8000, 8100))),)
    director = fwmark_director(rules=rules)
    assert director.handle(packet("203.0.113.5", VIPS[0], 40000, 8050), 0.0) is not None
    assert director.handle(packet("203.0.113.5", VIPS[0], 40001, 8101), 0.0) is None
    assert director.handle(packet("203.0.113.5", VIPS[0], 40002, 80, "udp"), 0.0) is None


def test_port_zero_service_is_the_addresses_catch_all():
    """ip_vs_service_find's last look: the address's port-0 service (persistent only)."""
    service = VirtualService("tcp", VIPS[0], 0, schedulers.get("rr")(), "dr", 300)
    service.add_real_server(RealServer(RS[0], 0))
    director = Director([service])
    director.add_interface("eth0", MAC)
    director.set_hop(ip_to_int(RS[0]), NextHop(MAC, bytes(6), "eth0"))
    assert director.handle(packet("203.0.113.5", VIPS[0], 40000, 22), 0.0) is not None
    (template,) = director.table.templates.values()
    assert template.row(0.0).split()[4:] == [f"{VIPS[0]}:0", f"{RS[0]}:0"]


@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0, 6, 17]),
                          st.integers(0, 3), st.integers(1, 5)), max_size=6),
       st.integers(0, 3), st.sampled_from([6, 17]), st.integers(0, 3))
def test_the_last_matching_rule_gives_the_mark(raw, host, proto, port):
    """As consecutive iptables MARK rules: each match sets the mark, the last one stays."""
    rules = [MarkRule(f"10.0.0.{h}", mark, p, ((q, q),)) for h, p, q, mark in raw]
    expected = 0
    for h, p, q, mark in raw:
        if h == host and p in (0, proto) and q == port:
            expected = mark
    marks = Marks(rules)
    assert marks.classify(2, proto, ip_to_int(f"10.0.0.{host}"), port) == expected
    assert marks.classify(2, proto, ip_to_int(f"10.0.0.{host}"), port) == expected


@pytest.mark.parametrize("kwargs, reason", [
    ({"mark": 0}, "mark 0"), ({"proto": 1}, "protocol 1"), ({"ports": ((90, 80),)}, "90:80"),
    ({"destination": "10.0.0.0/16"}, "more than 256"),
])
def test_a_bad_rule_says_why(kwargs, reason):
    with pytest.raises(ValueError, match=reason):
        MarkRule(**{"destination": "10.0.0.1", "mark": 1, **kwargs})


def test_rule_addresses_expand_prefixes():
    marks = Marks([MarkRule("207.175.44.110/31", 1), MarkRule("207.175.44.111", 2)])
    assert marks.addresses() == VIPS

