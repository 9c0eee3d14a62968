"""Firewall-mark services on the host (issue 24), without root: what the core says a fwmark
service takes (pylvs.core.marks: ``taken``, ``replies``, ``vips``, ``per_address``), and how the
shell writes it: the nftables steal rules, the socket filter and the workers' fanout program
(run by tests.helpers.fanout's interpreter on scapy frames), the engine's VIPs, its reload and
a worker's, the metrics' labels and BGP's announcements."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

import schedulers
from pylvs.adm.config import Config
from pylvs.core import marks
from pylvs.core.marks import ANY_PORT, Endpoint, MarkRule, Marks
from pylvs.core.model import AF_INET6, RealServer, VirtualService, fwmark_key
from pylvs.ha import bgp, sync
from pylvs.ha.health import CheckSpec, ServerHealth, ServiceHealth
from pylvs.shell import bpf, config_file, fanout, metrics, nftables
from pylvs.shell.engine import Engine
from pylvs.shell.messages import Reload, SetMarks
from pylvs.shell.workers import WorkerRequests, sync_slots
from tests.helpers.fanout import run

VIP, OTHER = "192.0.2.100", "192.0.2.7"
WEB = [MarkRule("192.0.2.100/32", 1, 6, ((80, 80),)),
       MarkRule("192.0.2.100", 1, 6, ((443, 443), (8000, 8099)))]


def fwmark(mark: int, *servers: tuple[str, int, str], persistent: int = 0,
           af: int = 2) -> VirtualService:
    service = VirtualService("", "", 0, schedulers.get("rr")(), fwmark=mark, af=af,
                             persistence_timeout=persistent)
    for address, port, forward in servers:
        service.add_real_server(RealServer(address, port, forward=forward))
    return service


def plain(address: str, port: int, *servers: tuple[str, int, str]) -> VirtualService:
    service = VirtualService("udp", address, port, schedulers.get("rr")())
    for rip, rport, forward in servers:
        service.add_real_server(RealServer(rip, rport, forward=forward))
    return service


# --- the core's word: what a fwmark service takes --------------------------------------------

def test_a_fwmark_service_takes_what_its_rules_name_and_the_last_rule_first():
    web = fwmark(1, ("10.0.0.11", 0, "dr"), persistent=300)
    dns = plain(VIP, 53, ("10.0.0.21", 53, "dr"))
    assert marks.taken([dns, web], Marks(WEB)) == [
        Endpoint("tcp", VIP, (443, 443)), Endpoint("tcp", VIP, (8000, 8099)),
        Endpoint("tcp", VIP, (80, 80)), Endpoint("udp", VIP, (53, 53))]


def test_any_protocol_and_port_and_a_prefix_and_an_unserved_mark():
    rules = [MarkRule("198.51.100.8/30", 2), MarkRule("203.0.113.9", 3, 17),
             MarkRule("2001:db8::/126", 2, 6, ((53, 53),))]
    v4, v6 = fwmark(2, ("10.0.0.11", 0, "dr")), fwmark(2, ("2001:db8:2::1", 0, "dr"),
                                                        af=AF_INET6)
    assert marks.taken([v4], Marks(rules)) == [Endpoint("tcp", "198.51.100.8/30", ANY_PORT),
                                               Endpoint("udp", "198.51.100.8/30", ANY_PORT)]
    assert marks.taken([v6], Marks(rules)) == [Endpoint("tcp", "2001:db8::/126", (53, 53))]
    assert marks.vips([v4, v6], Marks(rules)) == [
        "198.51.100.8", "198.51.100.9", "198.51.100.10", "198.51.100.11",
        "2001:db8::", "2001:db8::1", "2001:db8::2", "2001:db8::3"]  # no service has mark 3


def test_nat_replies_come_from_the_port_the_packet_asked_unless_the_server_has_one():
    """cp->dport: a port-0 server (or any, through a persistent fwmark service) keeps the
    packet's port, so its replies come from every port the rules name."""
    kept = fwmark(1, ("10.0.0.11", 0, "nat"), ("10.0.0.12", 8080, "nat"), ("10.0.0.13", 0, "dr"))
    assert marks.replies([kept], Marks(WEB)) == [
        Endpoint("tcp", "10.0.0.12", (8080, 8080)), Endpoint("tcp", "10.0.0.11", (443, 443)),
        Endpoint("tcp", "10.0.0.11", (8000, 8099)), Endpoint("tcp", "10.0.0.11", (80, 80))]
    sticky = fwmark(1, ("10.0.0.12", 8080, "nat"), persistent=60)
    assert marks.replies([sticky], Marks(WEB)) == [
        Endpoint("tcp", "10.0.0.12", (443, 443)), Endpoint("tcp", "10.0.0.12", (8000, 8099)),
        Endpoint("tcp", "10.0.0.12", (80, 80))]
    assert marks.replies([plain(VIP, 53, ("10.0.0.21", 5353, "nat"))], Marks()) == [
        Endpoint("udp", "10.0.0.21", (5353, 5353))]


def test_per_address_gives_bgp_each_vip_of_a_fwmark_service():
    web = fwmark(1, ("10.0.0.11", 0, "dr"))
    rules = Marks([*WEB, MarkRule(OTHER, 1)])
    views = marks.per_address([web], rules)
    assert [(v.address, v.key, v.real_servers is web.real_servers) for v in views] == [
        (VIP, fwmark_key(1), True), (OTHER, fwmark_key(1), True)]
    assert bgp.announced(views, [], True) == [OTHER, VIP]
    web.real_servers[0].weight = 0
    assert bgp.announced(marks.per_address([web], rules), [], True) == []


# --- the shell's texts and programs ----------------------------------------------------------

def test_the_steal_rules_write_prefixes_ranges_and_any_port():
    web = fwmark(1, ("10.0.0.11", 0, "nat"))
    rules = Marks([*WEB, MarkRule("198.51.100.8/30", 1)])
    text = nftables.StealRules("eth0", "t").ruleset(marks.taken([web], rules),
                                                    marks.replies([web], rules))
    lines = [line.strip() for line in text.splitlines()]
    for expected in ("ip daddr 198.51.100.8/30 meta l4proto tcp drop",
                     "ip daddr 198.51.100.8/30 meta l4proto udp drop",
                     "ip daddr 192.0.2.100 tcp dport 443 drop",
                     "ip daddr 192.0.2.100 tcp dport 8000-8099 drop",
                     "ip daddr 192.0.2.100 tcp dport 80 drop",
                     "ip saddr 10.0.0.11 tcp sport 8000-8099 drop",
                     "ip saddr 10.0.0.11 meta l4proto udp drop",
                     "ip daddr 198.51.100.8/30 icmp type { destination-unreachable, "
                     "source-quench, time-exceeded } drop"):
        assert expected in lines, text
    with pytest.raises(OSError):
        nftables.StealRules("eth0", "t").ruleset([("tcp", "192.0.2.0/33", 80)])


def _frame(packet) -> bytes:
    return bytes(Ether() / packet)


def test_the_socket_filter_passes_what_the_mark_rules_name_and_nothing_else():
    web = fwmark(1, ("10.0.0.11", 0, "nat"))
    rules = Marks([*WEB, MarkRule("198.51.100.8/30", 1, 17),
                   MarkRule("2001:db8::/126", 1, 6, ((53, 53),))])
    six = fwmark(1, ("2001:db8:2::1", 0, "dr"), af=AF_INET6)
    code = bpf.program(marks.taken([web, six], rules), marks.replies([web, six], rules))
    client = "203.0.113.5"
    passed = [IP(src=client, dst=VIP) / TCP(dport=80), IP(src=client, dst=VIP) / TCP(dport=443),
              IP(src=client, dst=VIP) / TCP(dport=8000), IP(src=client, dst=VIP) / TCP(dport=8099),
              IP(src=client, dst="198.51.100.11") / UDP(dport=7),
              IP(src="10.0.0.11", dst=client) / TCP(sport=8050),
              IP(src=client, dst="198.51.100.9") / ICMP(type=3) / IPerror() / TCPerror(),
              IPv6(src="2001:db8:1::5", dst="2001:db8::3") / TCP(dport=53)]
    kept = [IP(src=client, dst=VIP) / TCP(dport=81), IP(src=client, dst=VIP) / TCP(dport=7999),
            IP(src=client, dst=VIP) / TCP(dport=8100), IP(src=client, dst=VIP) / UDP(dport=80),
            IP(src=client, dst="198.51.100.12") / UDP(dport=7),
            IP(src=client, dst="198.51.100.9") / TCP(dport=7),
            IP(src="10.0.0.11", dst=client) / TCP(sport=22),
            IPv6(src="2001:db8:1::5", dst="2001:db8::4") / TCP(dport=53)]
    assert [run(code, _frame(p), absolute=True) for p in passed] == [bpf.ACCEPT_LEN] * 8
    assert [run(code, _frame(p), absolute=True) for p in kept] == [0] * 8


def test_fanout_hashes_a_persistent_fwmark_services_clients_by_address_on_every_port():
    """All of a client's connections, to every port the rules give the service (and its NAT
    servers' replies), meet one worker: the one its persistence template is in."""
    web = fwmark(1, ("10.0.0.11", 0, "nat"), persistent=300)
    other = plain("192.0.2.50", 53, ("10.0.0.21", 53, "nat"))
    front, back = fanout.rules([web, other], Marks(WEB))
    assert [(r.address, r.port, r.by_address) for r in front] == [
        (VIP, (443, 443), True), (VIP, (8000, 8099), True), (VIP, (80, 80), True),
        ("192.0.2.50", (53, 53), False)]
    assert {(r.address, r.port, r.by_address) for r in back} == {
        ("10.0.0.11", (443, 443), True), ("10.0.0.11", (8000, 8099), True),
        ("10.0.0.11", (80, 80), True), ("10.0.0.21", (53, 53), False)}
    code = fanout.program(front, back)
    client = "203.0.113.77"
    values = {run(code, bytes(IP(src=client, dst=VIP) / TCP(sport=sport, dport=dport)))
              for sport, dport in ((40000, 80), (40001, 443), (40002, 8042))}
    values.add(run(code, bytes(IP(src="10.0.0.11", dst=client) / TCP(sport=8042, dport=40002))))
    assert values == {fanout.client_hash(client, 0, True)}
    assert run(code, bytes(IP(src=client, dst=VIP) / TCP(dport=8100))) == 0


def test_synced_fwmark_connections_go_to_the_worker_of_their_client():
    web = fwmark(1, ("10.0.0.11", 0, "dr"), persistent=300)
    entries = [sync.SyncConn(6, f"203.0.113.{n}", 40000 + n, VIP, 443, "10.0.0.11", 443, 0, 0,
                             900, fwmark=1) for n in range(1, 30)]
    slots, unknown = sync_slots([*entries, sync.SyncConn(6, "203.0.113.1", 1, VIP, 443,
                                                         "10.0.0.11", 443, 0, 0, 900)],
                                [web], 3, Marks(WEB))
    assert unknown == 1  # no mark: no service of VIP:443
    code = fanout.program(*fanout.rules([web], Marks(WEB)))
    for slot, batch in slots.items():
        for entry in batch:
            frame = bytes(IP(src=entry.caddr, dst=VIP) / TCP(sport=entry.cport, dport=443))
            assert run(code, frame) % 3 == slot


# --- the engine: VIPs and steal rules follow the marks, at start and on reload ----------------

class FakeHost:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def follow(self, *args) -> None:
        self.calls.append(args)


def _engine(rules: list[MarkRule]) -> tuple[Engine, FakeHost]:
    web = fwmark(1, ("10.0.0.11", 0, "dr"), persistent=300)
    engine = Engine(Config("lo", services=[web, plain(OTHER, 53, ("10.0.0.21", 53, "dr"))],
                           marks=rules))
    host = FakeHost()
    engine.host = host  # type: ignore[assignment]
    return engine, host


def test_the_engine_gives_the_director_the_marks_and_holds_their_addresses():
    engine, host = _engine(WEB)
    engine.director.set_marks(Marks(WEB))  # as start() does, before the host follows
    engine.running = True
    engine.follow()
    stolen, replies, wanted, vips = host.calls[-1]
    assert wanted == {VIP, OTHER} == vips
    assert stolen == [Endpoint("tcp", VIP, (443, 443)), Endpoint("tcp", VIP, (8000, 8099)),
                      Endpoint("tcp", VIP, (80, 80)), Endpoint("udp", OTHER, (53, 53))]
    engine.set_master(True, frozenset({VIP}))  # several VRRP instances: only VIP held
    assert [s.fwmark for s in engine.served()[0]] == [1]
    assert host.calls[-1][2] == {VIP}


def test_a_reload_gives_the_director_new_mark_rules_and_the_host_follows(monkeypatch):
    engine, host = _engine(WEB)
    engine.director.set_marks(Marks(WEB))
    engine.running = True
    new = Config("lo", services=list(engine.config.services), marks=[MarkRule(OTHER, 1, 6)])
    monkeypatch.setattr(config_file, "load", lambda *args: (new, []))
    reply = engine.handle(Reload())
    assert reply.rc == 0 and reply.stdout == "mark rules: 1 (were 2)\n"
    assert engine.director.marks.rules == (MarkRule(OTHER, 1, 6),)
    assert engine.config.marks == [MarkRule(OTHER, 1, 6)]
    assert host.calls[-1][0][:2] == [Endpoint("tcp", OTHER, ANY_PORT),
                                     Endpoint("udp", OTHER, (53, 53))]
    assert host.calls[-1][2] == {OTHER}


def test_a_worker_takes_the_mark_rules_its_supervisor_sends():
    engine, _ = _engine([])
    engine.requests = WorkerRequests(engine)
    assert engine.handle(SetMarks(tuple(WEB))).rc == 0
    assert engine.director.marks.rules == tuple(WEB)
    assert engine.director.marks.classify(2, 6, int.from_bytes(bytes([192, 0, 2, 100]), "big"),
                                          8050) == 1


# --- what is shown: no empty address, no 0.0.0.1 ---------------------------------------------

def test_metrics_label_a_fwmark_service_as_node_exporter_reads_proc_net_ip_vs():
    web = fwmark(10, ("10.0.0.11", 0, "dr"))
    assert metrics.backend_labels(web, web.real_servers[0]) == (
        "", "0", "10.0.0.11", "0", "FWM", "0000000A")
    health = ServiceHealth(web.key, "FWM 10", [ServerHealth(web.real_servers[0],
                                                            CheckSpec("tcp", port=80))])
    assert metrics.health_part([health])[0].labels == ("", "0", "10.0.0.11", "0", "FWM", "tcp")
    dns = plain(VIP, 53, ("10.0.0.21", 53, "dr"))
    assert metrics.backend_labels(dns, dns.real_servers[0]) == (
        VIP, "53", "10.0.0.21", "53", "UDP", "")


def test_an_ipv6_fwmark_prefix_and_a_port_zero_service_reach_the_workers_and_python():
    """The fanout's IPv6 part takes a mark rule's prefix; a port-0 service (IPVS's catch-all)
    is any port to the filter and the fanout, as to the steal rules."""
    six = fwmark(1, ("2001:db8:2::1", 0, "dr"), persistent=60, af=AF_INET6)
    catch_all = plain(OTHER, 0, ("10.0.0.21", 0, "dr"))
    rules = Marks([MarkRule("2001:db8::/126", 1, 6)])
    code = fanout.program(*fanout.rules([six, catch_all], rules))
    client = "2001:db8:1::5"
    hashed = run(code, bytes(IPv6(src=client, dst="2001:db8::2") / TCP(sport=1, dport=443)))
    assert hashed == fanout.client_hash(client, 0, True) != 0
    assert run(code, bytes(IPv6(src=client, dst="2001:db8::4") / TCP(dport=443))) == 0
    assert run(code, bytes(IP(src="203.0.113.5", dst=OTHER) / UDP(sport=9, dport=5353))) == \
        fanout.client_hash("203.0.113.5", 9, False)
    socket_filter = bpf.program(marks.taken([six, catch_all], rules))
    assert run(socket_filter, _frame(IP(src="203.0.113.5", dst=OTHER) / UDP(dport=5353)),
               absolute=True) == bpf.ACCEPT_LEN
