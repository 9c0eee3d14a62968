"""The --mistake labs' pure parts: the mistakes, their steps, the reading of what was seen;
and the command line's refusals (no root needed)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from pylvs.lab import mistakes
from pylvs.lab.topology import Lab

VIP = "192.168.1.100"


def test_each_mode_has_its_mistakes_and_others_are_refused():
    assert mistakes.for_mode("dr") == ["arp", "netmask"]
    assert mistakes.for_mode("tun") == ["rp_filter"] and mistakes.for_mode("nat") == ["route"]
    assert mistakes.validate("dr", "netmask").mode == "dr"
    with pytest.raises(ValueError, match="no mistake 'route' for a dr lab .*nat: route"):
        mistakes.validate("dr", "route")
    with pytest.raises(ValueError, match="no mistake 'arp' for a mixed lab"):
        Lab(mode="mixed", mistake="arp")


def test_the_mistaken_steps_as_typed():
    arp = [mistakes.step_line(s) for s in mistakes.dr_steps("arp", VIP, "eth0")]
    assert arp == ["(no arp_ignore, no arp_announce: the mistake)",
                   f"ip addr add {VIP}/32 dev lo"]
    netmask = mistakes.dr_steps("netmask", VIP, "eth0")
    assert [argv for argv, _ in netmask][-1] == ["ip", "addr", "add", f"{VIP}/24", "dev", "lo"]
    lines = [mistakes.step_line(s) for s in netmask]
    assert "sysctl -w net.ipv4.conf.eth0.arp_ignore=1" in lines
    assert lines[-1] == f"ip addr add {VIP}/24 dev lo   <- the mistake: /24, not /32"
    assert mistakes.tun_steps("rp_filter")[0][0] == ["sysctl", "-qw",
                                                     "net.ipv4.conf.all.rp_filter=1"]
    assert mistakes.nat_steps("route")[0][0] is None


NETSTAT = ("TcpExt: SyncookiesSent EmbryonicRsts IPReversePathFilter\n"
           "TcpExt: 0 2 5\n"
           "IpExt: InNoRoutes InOctets\n"
           "IpExt: 1 360\n")


def test_netstat_counters():
    counters = mistakes.netstat_counters(NETSTAT)
    assert counters["TcpExtEmbryonicRsts"] == 2 and counters["TcpExtIPReversePathFilter"] == 5
    assert counters["IpExtInOctets"] == 360


LISTING = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.168.1.100:80 rr
  -> 192.168.1.11:80              Route   1      1          3
  -> 192.168.1.12:80              Route   1      0          2
"""


def test_connections_seen_sums_active_and_inactive():
    assert mistakes.connections_seen(LISTING) == 6
    assert mistakes.connections_seen(LISTING.replace("1          3", "0          0")
                                     .replace("0          2", "0          0")) == 0


def test_answers_line():
    assert mistakes.answers_line(Counter(rs3=9)) == "rs3 answered 9 of the 9 requests: " \
                                                   "no balancing"
    assert mistakes.answers_line(Counter({mistakes.NO_ANSWER: 3})) == \
        "none of the 3 requests got an answer"
    assert mistakes.answers_line(Counter(rs1=1, rs2=1)) == "answers: rs1=1, rs2=1"


def wire(host: str, direction: str, **fields: object) -> dict:
    return {"host": host, "direction": direction, "fields": fields}


def hop(packet: str, kind: str, *wires: dict, side: str | None = None) -> dict:
    return {"packet": packet, "kind": kind, "side": side, "wires": list(wires)}


def test_trace_facts_of_a_bypass_and_of_a_lost_answer():
    bypass = {"hops": [
        hop(f"ARP: {VIP} is at aa", "arp", wire("rs2", "sent", **{"eth.src_host": "rs2"})),
        hop(f"ARP: {VIP} is at bb", "arp", wire("director", "sent",
                                                **{"eth.src_host": "director"})),
        hop("SYN", "tcp", wire("client", "sent"), wire("rs2", "received"), side="client"),
        hop("SYN-ACK", "tcp", wire("rs2", "sent"), wire("client", "received"), side="server")]}
    assert mistakes.trace_facts(bypass, VIP) == [
        f"2 hosts answered ARP for {VIP}: rs2, director",
        "the SYN went client → rs2: never through the director",
        "the SYN-ACK went rs2 → client"]
    lost = {"hops": [
        hop(f"ARP: {VIP} is at bb", "arp", wire("director", "sent",
                                                **{"eth.src_host": "director"})),
        hop("SYN", "tcp", wire("client", "sent"), wire("director", "received"),
            wire("director", "sent"), wire("rs1", "received"), side="client")]}
    assert mistakes.trace_facts(lost, VIP) == [
        f"only the director answered ARP for {VIP}",
        "the SYN went client → director → rs1",
        "no SYN-ACK appears on any wire: rs1's answer never left it"]
    assert mistakes.trace_facts({"hops": []}, VIP) == ["no SYN to the VIP was captured"]


def test_server_lines_say_it_once_then_the_facts():
    netmask = mistakes.MISTAKES["netmask"]
    way = "local 192.168.1.5 dev lo src 192.168.1.100"
    first = mistakes.server_line(netmask, "rs1", "192.168.1.5", way,
                                 {"TcpExtEmbryonicRsts": 2}, first=True)
    assert f"says `{way}`" in first and "TcpExtEmbryonicRsts = 2" in first
    assert mistakes.server_line(netmask, "rs2", "192.168.1.5", way, {}, first=False) == \
        f"in rs2: the same: `{way}`, TcpExtEmbryonicRsts = 0"
    route = mistakes.server_line(mistakes.MISTAKES["route"], "rs1", "192.168.1.5",
                                 "RTNETLINK answers: Network is unreachable", {}, first=True)
    assert "no way back to the client" in route


REPORT_ARP = ("check: this host as a dr real server for 192.168.1.100\n"
              "  WRONG  arp_ignore on eth0: ...\n"
              "2 of 3 steps wrong: arp_ignore on eth0, arp_announce on eth0\n")


def test_named_needs_a_failed_check_whose_wrong_steps_are_the_mistakes():
    arp = mistakes.MISTAKES["arp"]
    assert mistakes.named(arp, 1, REPORT_ARP)
    assert not mistakes.named(arp, 0, "all 3 steps right\n")
    assert not mistakes.named(mistakes.MISTAKES["netmask"], 1, REPORT_ARP)
    text, found = mistakes.checks_text(arp, [
        ("rs1", "ip netns exec p-rs1 pylvs realserver --check ...", 1, REPORT_ARP),
        ("rs2", "...", 0, "check: ...\nall 3 steps right\n")])
    assert not found
    assert text.splitlines()[0] == "$ ip netns exec p-rs1 pylvs realserver --check ...   (exit 1)"
    assert "    2 of 3 steps wrong: arp_ignore on eth0, arp_announce on eth0" in text
    assert text.splitlines()[-1] == "  rs2: exit 0: all 3 steps right"


def _pylvs(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pylvs", *argv], capture_output=True, text=True,
                          timeout=60)


def test_cli_refuses_a_mistake_of_another_mode_or_with_ha():
    wrong = _pylvs("lab", "nat", "--mistake", "arp")
    assert wrong.returncode == 2
    assert "no mistake 'arp' for a nat lab (there are dr: arp, netmask" in wrong.stderr
    assert _pylvs("lab", "dr", "--mistake", "arp", "--ha").returncode == 2


def test_cli_check_usage_errors():
    assert _pylvs("realserver", "--check", "--vip", "300.1.1.1").returncode == 2
    assert _pylvs("realserver", "--mode", "nat", "--vip", VIP, "--director", "10.0.0.1"
                  ).returncode == 2
