"""The workers' fanout program, run by a small classic-BPF interpreter (the kernel runs it in
test_rings): every frame of a connection, either way, gets one value; persistence hashes the
address alone; frames of no rule get 0."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

import schedulers
from pylvs.core.model import RealServer, VirtualService
from pylvs.shell import fanout
from pylvs.shell.fanout import Rule
from tests.helpers.fanout import RIP, RIP6, VIP, VIP6, frames, frames6, run

addresses = st.integers(1, 2**32 - 2).map(lambda n: ".".join(str(b) for b in n.to_bytes(4,
                                                                                      "big")))
ports = st.integers(1, 65535)


@given(st.sampled_from(["tcp", "udp"]), addresses, ports, st.booleans())
def test_every_frame_of_a_connection_gets_one_value(proto, client, port, by_address):
    code = fanout.program([Rule(proto, VIP, 80, by_address)], [Rule(proto, RIP, 8080, by_address)])
    values = {run(code, frame) for frame in frames(proto, client, port)}
    assert len(values) == 1


@given(addresses, ports, ports)
def test_a_persistent_service_hashes_the_address_alone(client, port, other):
    code = fanout.program([Rule("tcp", VIP, 80, True)], [Rule("tcp", RIP, 8080, True)])
    assert run(code, frames("tcp", client, port)[0]) == run(code, frames("tcp", client, other)[0])


def test_clients_spread_and_other_frames_go_to_member_zero():
    code = fanout.program([Rule("tcp", VIP, 80, False)], [Rule("tcp", RIP, 8080, False)])
    shares = [0, 0, 0]
    for n in range(3000):
        shares[run(code, frames("tcp", f"203.0.{n // 250}.{n % 250 + 1}", 1024 + n)[0]) % 3] += 1
    assert min(shares) > 800, shares
    other = [bytes(IP(src="203.0.113.1", dst=VIP) / TCP(dport=81)),
             bytes(IP(src="203.0.113.1", dst=VIP) / UDP(dport=80)),
             bytes(IP(src=RIP, dst="203.0.113.1") / TCP(sport=8081)),
             struct.pack("!HH", 0x4500, 20)]
    assert [run(code, frame) for frame in other] == [0, 0, 0, 0]


def service(address: str, persistent: bool, *servers: tuple[str, int, str]) -> VirtualService:
    svc = VirtualService("tcp", address, 80, schedulers.get("rr")(),
                         persistence_timeout=360 if persistent else 0)
    for rip, port, forward in servers:
        svc.add_real_server(RealServer(rip, port, forward=forward))
    return svc


def test_sharing_a_nat_server_with_a_persistent_service_makes_a_service_hash_by_address():
    persistent = service("192.0.2.1", True, ("10.0.0.1", 80, "nat"))
    sharing = service("192.0.2.2", False, ("10.0.0.1", 80, "nat"), ("10.0.0.2", 80, "nat"))
    chained = service("192.0.2.3", False, ("10.0.0.2", 80, "nat"))
    alone = service("192.0.2.4", False, ("10.0.0.3", 80, "nat"), ("10.0.0.9", 80, "dr"))
    front, back = fanout.rules([persistent, sharing, chained, alone])
    assert [rule.by_address for rule in front] == [True, True, True, False]
    assert {(rule.address, rule.by_address) for rule in back} == {
        ("10.0.0.1", True), ("10.0.0.2", True), ("10.0.0.3", False)}


@given(st.sampled_from(["tcp", "udp"]), addresses, ports, st.booleans(),
       st.permutations(range(3)))
def test_the_hash_is_client_hash_and_an_order_maps_its_slot_to_a_member(proto, client, port,
                                                                       by_address, order):
    """After a worker died and was forked again, slot s is served by member order[s]."""
    rules = [Rule(proto, VIP, 80, by_address)], [Rule(proto, RIP, 8080, by_address)]
    plain, ordered = fanout.program(*rules), fanout.program(*rules, order=order)
    value = fanout.client_hash(client, port, by_address)
    for frame in frames(proto, client, port):
        assert run(plain, frame) == value
        assert run(ordered, frame) == order[value % 3]
    other = bytes(IP(src="203.0.113.1", dst=VIP) / TCP(dport=81))
    assert run(ordered, other) == 0


addresses6 = st.integers(1, 2**128 - 2).map(lambda n: str(ipaddress.IPv6Address(n)))


@given(st.sampled_from(["tcp", "udp"]), addresses6, ports, addresses, ports)
def test_every_ipv6_frame_of_a_client_gets_its_address_hash(proto, client, port, client4, port4):
    """Dual stack: the IPv6 part hashes the client's address alone (a later fragment has no
    ports), and the IPv4 rules beside it still give client_hash."""
    code = fanout.program([Rule(proto, VIP6, 80, False), Rule(proto, VIP, 80, False)],
                          [Rule(proto, RIP6, 8080, False), Rule(proto, RIP, 8080, False)])
    assert {run(code, frame) for frame in frames6(proto, client, port)} == {
        fanout.client_hash(client, port, False)}
    assert {run(code, frame) for frame in frames(proto, client4, port4)} == {
        fanout.client_hash(client4, port4, False)}


def test_ipv6_frames_of_no_rule_go_to_member_zero():
    code = fanout.program([Rule("tcp", VIP6, 80, False)], [])
    stray = bytes(IPv6(src="2001:db8:1::1", dst="2001:db8::200") / TCP(dport=80))
    assert run(code, stray) == 0
    client = frames6("tcp", "2001:db8:1::1", 1000)[0]
    assert run(code, client) == fanout.client_hash("2001:db8:1::1", 1000, False) != 0
