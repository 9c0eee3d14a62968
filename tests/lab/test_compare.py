"""`pylvs lab compare` without a lab: a mixed lab's wires as scapy frames (one connection through
each of rs1 DR, rs2 NAT, rs3 TUN), split into three traces; the table of the director's
rewrites read from those traces' own records; its text and its page."""

from __future__ import annotations

import argparse
import copy
import re
from html.parser import HTMLParser

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from pylvs.lab import compare, compare_page, trace

CLIENT, DIRECTOR, DIRECTOR_IN = "02:00:00:00:00:05", "02:00:00:00:00:02", "02:00:00:00:01:02"
ROUTER, ROUTER_IN = "02:00:00:00:00:01", "02:00:00:00:02:01"
RS1, RS2, RS3 = "02:00:00:00:00:11", "02:00:00:00:01:12", "02:00:00:00:02:13"
VIP, CIP, DIP = "192.168.1.100", "192.168.1.5", "192.168.1.2"
NAT_RIP, TUN_RIP = "10.0.0.12", "172.16.0.13"
PORTS = {"dr": 40001, "nat": 40002, "tun": 40003}
MODES = {"rs1": "dr", "rs2": "nat", "rs3": "tun"}


def hosts() -> dict:
    def host(role: str, ips: list[str], **interfaces: str) -> dict:
        return {"role": role, "ip": ips, "mac": list(interfaces.values()),
                "interfaces": interfaces}
    return {"client": host("client", [f"{CIP}/24"], eth0=CLIENT),
            "director": host("director", [f"{DIP}/24", f"{VIP}/32", "10.0.0.1/24"],
                             eth0=DIRECTOR, eth1=DIRECTOR_IN),
            "router": host("router", ["192.168.1.1/24", "172.16.0.1/24"], eth0=ROUTER,
                           eth1=ROUTER_IN),
            "rs1": host("real_server", [f"{VIP}/32", "192.168.1.11/24"], eth0=RS1),
            "rs2": host("real_server", [f"{NAT_RIP}/24"], eth0=RS2),
            "rs3": host("real_server", [f"{VIP}/32", f"{TUN_RIP}/24"], eth0=RS3)}


def wires() -> list[dict]:
    points = [("client", "eth0", "br0"), ("director", "eth0", "br0"),
              ("director", "eth1", "br1"), ("router", "eth0", "br0"), ("router", "eth1", "br2"),
              ("rs1", "eth0", "br0"), ("rs2", "eth0", "br1"), ("rs3", "eth0", "br2")]
    return [{"file": f"{h}-{i}.pcap", "host": h, "interface": i, "port": h, "bridge": b,
             "link": f"{h} {i} <-> {b}"} for h, i, b in points]


def syn(src: str, dst: str, sport: int, to: str = VIP, ttl: int = 64):
    return Ether(src=src, dst=dst) / IP(src=CIP, dst=to, ttl=ttl, id=sport) / TCP(
        sport=sport, dport=80, flags="S", seq=1000)


def synack(src: str, dst: str, dport: int, frm: str = VIP, ttl: int = 64):
    return Ether(src=src, dst=dst) / IP(src=frm, dst=CIP, ttl=ttl, id=0) / TCP(
        sport=80, dport=dport, flags="SA", seq=5000, ack=1001)


def tunnelled(src: str, dst: str, outer_ttl: int):
    return Ether(src=src, dst=dst) / IP(src=DIP, dst=TUN_RIP, ttl=outer_ttl, id=9) / IP(
        src=CIP, dst=VIP, ttl=63, id=PORTS["tun"]) / TCP(sport=PORTS["tun"], dport=80,
                                                          flags="S", seq=1000)


def timed_frames() -> list[tuple[str, float, object]]:
    who = Ether(src=CLIENT, dst=trace.BROADCAST) / ARP(op=1, hwsrc=CLIENT, psrc=CIP, pdst=VIP)
    is_at = Ether(src=DIRECTOR, dst=CLIENT) / ARP(op=2, hwsrc=DIRECTOR, psrc=VIP, hwdst=CLIENT,
                                                 pdst=CIP)
    dr, nat, tun = PORTS["dr"], PORTS["nat"], PORTS["tun"]
    return [("client-eth0.pcap", 0.0, who), ("director-eth0.pcap", 0.0001, who),
            ("director-eth0.pcap", 0.001, is_at), ("client-eth0.pcap", 0.0011, is_at),
            # DR: rs1, its answer straight to the client
            ("client-eth0.pcap", 1.0, syn(CLIENT, DIRECTOR, dr)),
            ("director-eth0.pcap", 1.0001, syn(CLIENT, DIRECTOR, dr)),
            ("director-eth0.pcap", 1.002, syn(DIRECTOR, RS1, dr, ttl=63)),
            ("rs1-eth0.pcap", 1.0021, syn(DIRECTOR, RS1, dr, ttl=63)),
            ("rs1-eth0.pcap", 1.003, synack(RS1, CLIENT, dr)),
            ("client-eth0.pcap", 1.0031, synack(RS1, CLIENT, dr)),
            # NAT: rs2 behind the director's eth1, its answer back through the director
            ("client-eth0.pcap", 2.0, syn(CLIENT, DIRECTOR, nat)),
            ("director-eth0.pcap", 2.0001, syn(CLIENT, DIRECTOR, nat)),
            ("director-eth1.pcap", 2.002, syn(DIRECTOR_IN, RS2, nat, NAT_RIP, 63)),
            ("rs2-eth0.pcap", 2.0021, syn(DIRECTOR_IN, RS2, nat, NAT_RIP, 63)),
            ("rs2-eth0.pcap", 2.003, synack(RS2, DIRECTOR_IN, nat, NAT_RIP)),
            ("director-eth1.pcap", 2.0031, synack(RS2, DIRECTOR_IN, nat, NAT_RIP)),
            ("director-eth0.pcap", 2.004, synack(DIRECTOR, CLIENT, nat, ttl=63)),
            ("client-eth0.pcap", 2.0041, synack(DIRECTOR, CLIENT, nat, ttl=63)),
            # TUN: rs3 behind the router, its answer through the router
            ("client-eth0.pcap", 3.0, syn(CLIENT, DIRECTOR, tun)),
            ("director-eth0.pcap", 3.0001, syn(CLIENT, DIRECTOR, tun)),
            ("director-eth0.pcap", 3.002, tunnelled(DIRECTOR, ROUTER, 63)),
            ("router-eth0.pcap", 3.0021, tunnelled(DIRECTOR, ROUTER, 63)),
            ("router-eth1.pcap", 3.003, tunnelled(ROUTER_IN, RS3, 62)),
            ("rs3-eth0.pcap", 3.0031, tunnelled(ROUTER_IN, RS3, 62)),
            ("rs3-eth0.pcap", 3.004, synack(RS3, ROUTER_IN, tun)),
            ("router-eth1.pcap", 3.0041, synack(RS3, ROUTER_IN, tun)),
            ("router-eth0.pcap", 3.005, synack(ROUTER, CLIENT, tun, ttl=63)),
            ("client-eth0.pcap", 3.0051, synack(ROUTER, CLIENT, tun, ttl=63))]


def frames() -> dict[str, list[tuple[float, bytes]]]:
    out: dict[str, list[tuple[float, bytes]]] = {w["file"]: [] for w in wires()}
    for file, when, pkt in timed_frames():
        out[file].append((when, bytes(pkt)))
    return out


@pytest.fixture(scope="module")
def traces() -> dict:
    return compare.split(MODES, hosts(), wires(), frames(), VIP, 80)


def cells(sections: list[compare.Section], packet: str, method: str) -> dict:
    part = next(s for s in sections if s.packet == packet)
    return {field: by_method[method] for field, by_method in part.rows}


def changed_rows(sections: list[compare.Section], packet: str, method: str) -> set[str]:
    return {f for f, c in cells(sections, packet, method).items() if c is not None and c.changed}


def test_the_client_connections_are_found_in_order_and_split_one_per_method(traces):
    assert compare.client_connections(frames(), wires(), VIP, 80) == [
        (CIP, PORTS["dr"]), (CIP, PORTS["nat"]), (CIP, PORTS["tun"])]
    assert list(traces) == ["dr", "nat", "tun"]
    for method, built in traces.items():
        assert built["mode"] == method
        assert built["connection"]["client"] == f"{CIP}:{PORTS[method]}"
        assert MODES[built["connection"]["real_server_host"]] == method
        ports = {w["fields"]["tcp.sport"] if w["fields"]["ip.src"] == CIP
                 else w["fields"]["tcp.dport"]
                 for hop in built["hops"] if hop["kind"] == "tcp" for w in hop["wires"]}
        assert ports == {PORTS[method]}  # nothing of the other connections
        assert built["hops"][0]["packet"] == "ARP: who has 192.168.1.100?"  # kept for each


def test_only_drops_the_other_connections_segments_and_keeps_the_rest():
    kept = compare.only(frames(), (CIP, PORTS["nat"]))
    client = [trace.dissect(f) for _, f in kept["client-eth0.pcap"]]
    assert [f.get("tcp.sport", f.get("tcp.dport")) for f in client if "tcp.flags" in f] == [
        PORTS["nat"], 80]
    assert sum("arp.op" in f for f in client) == 2
    assert compare.client_port({"eth.src": CLIENT}, CIP) is None


def test_the_syn_row_by_row_dr_macs_and_ttl_nat_the_address_tun_an_outer_header(traces):
    sections = compare.table(traces)
    assert changed_rows(sections, "SYN", "dr") == {"eth.src", "eth.dst", "ip.ttl"}
    assert changed_rows(sections, "SYN", "nat") == {"eth.src", "eth.dst", "ip.dst", "ip.ttl"}
    assert changed_rows(sections, "SYN", "tun") == {"eth.src", "eth.dst", "ip.ttl", "outer"}
    dr, nat, tun = (cells(sections, "SYN", m) for m in ("dr", "nat", "tun"))
    assert (dr["eth.dst"].before, dr["eth.dst"].after) == (DIRECTOR, RS1)
    assert (dr["eth.dst"].before_host, dr["eth.dst"].after_host) == ("director", "rs1")
    assert (nat["ip.dst"].before, nat["ip.dst"].after) == (VIP, NAT_RIP)
    assert nat["eth.src"].after == DIRECTOR_IN
    assert tun["outer"].before == "none"
    assert tun["outer"].after == f"[outer {DIP} → {TUN_RIP} ttl 63 proto 4]"
    assert (tun["ip.dst"].before, tun["ip.dst"].changed) == (VIP, False)  # the inner packet's
    assert (dr["ip.ttl"].before, dr["ip.ttl"].after) == ("64", "63")
    assert all(cells(sections, "SYN", m)["other"].text() == "none" for m in traces)
    part = sections[0]
    assert part.paths == {"dr": "client → director → rs1", "nat": "client → director → rs2",
                          "tun": "client → director → router → rs3"}
    assert part.wires == {"dr": "eth0 → eth0", "nat": "eth0 → eth1", "tun": "eth0 → eth0"}


def test_the_answer_crosses_the_director_only_in_nat(traces):
    sections = compare.table(traces)
    assert all(c is None for c in cells(sections, "SYN-ACK", "dr").values())
    assert all(c is None for c in cells(sections, "SYN-ACK", "tun").values())
    nat = cells(sections, "SYN-ACK", "nat")
    assert (nat["ip.src"].before, nat["ip.src"].after, nat["ip.src"].changed) == (
        NAT_RIP, VIP, True)
    assert changed_rows(sections, "SYN-ACK", "nat") == {"eth.src", "eth.dst", "ip.src",
                                                        "ip.ttl"}
    assert sections[1].paths["dr"] == "rs1 → client"
    assert sections[1].wires == {"dr": None, "nat": "eth1 → eth0", "tun": None}


def test_the_table_says_what_the_trace_recorded(traces):
    """The marks come from the trace's own ``changed`` list, not from the method's name."""
    altered = copy.deepcopy(traces)
    forwarded = compare.at_director(compare.tcp_hop(altered["dr"], "SYN"))
    assert forwarded is not None
    forwarded[1]["changed"].remove("ip.ttl")
    forwarded[1]["changed"].append("ip.id")
    sections = compare.table(altered)
    assert changed_rows(sections, "SYN", "dr") == {"eth.src", "eth.dst", "other"}
    assert cells(sections, "SYN", "dr")["other"].text() == (
        f"* ip.id {PORTS['dr']} → ip.id {PORTS['dr']}")


def test_the_text_marks_each_change_and_names_each_mac(traces):
    text = compare.render(traces, compare.table(traces))
    lines = text.splitlines()
    assert lines[0].split() == ["the", "client's", "SYN", "DR:", "rs1", "(192.168.1.11:80)",
                                "NAT:", "rs2", "(10.0.0.12:80)", "TUN:", "rs3",
                                "(172.16.0.13:80)"]
    ip_dst = next(line for line in lines if line.strip().startswith("ip.dst"))
    assert f"* {VIP} → {NAT_RIP}" in ip_dst and ip_dst.count("*") == 1
    assert "never sees it" in text and compare.NO_DIRECTOR in text
    assert any(s.startswith("  NAT: the director rewrote the destination") for s in lines)
    assert f"director eth1 {DIRECTOR_IN}" in lines[-1] and f"rs1 eth0 {RS1}" in lines[-1]


def test_outer_text_names_gue_and_gre():
    base = {"outer.src": "2001:db8:1::2", "outer.dst": "2001:db8:172:16::13", "outer.hlim": 63,
            "outer.proto": 17, "outer.udp.sport": 5000, "outer.udp.dport": 6080,
            "gue.proto": 41}
    assert compare.outer_text(base) == ("[outer 2001:db8:1::2 → 2001:db8:172:16::13 hlim 63 "
                                        "proto 17, udp 5000 → 6080, gue proto 41]")
    gre = {"outer.src": DIP, "outer.dst": TUN_RIP, "outer.ttl": 63, "outer.proto": 47,
           "gre.proto": 0x0800, "gre.csum": True}
    assert compare.outer_text(gre).endswith("proto 47, gre proto 0x0800 csum]")
    assert compare.outer_text({"ip.src": CIP}) == "none"


class Cells(HTMLParser):
    """The page's table cells (their data-*) and the diagrams in each method's section."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str, str], dict] = {}
        self.diagrams: list[str] = []
        self.method = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("class") == "path":
            self.method = a["data-method"]
        if tag == "svg" and "sequence" in (a.get("class") or ""):
            self.diagrams.append(self.method)
        if tag == "td" and "data-field" in a:
            self.cells[(a["data-method"], a["data-packet"], a["data-field"])] = a


def test_the_page_has_three_diagrams_and_the_table_as_data(traces):
    sections = compare.table(traces)
    html = compare_page.page(traces, sections)
    parsed = Cells()
    parsed.feed(html)
    assert parsed.diagrams == ["dr", "nat", "tun"]
    for part in sections:
        for field, by_method in part.rows:
            for method, cell in by_method.items():
                td = parsed.cells[(method, part.packet, field)]
                if cell is None:
                    assert "absent" in td["class"] and "data-before" not in td
                else:
                    assert (td["data-before"], td["data-after"]) == (cell.before, cell.after)
                    assert td["data-changed"] == str(cell.changed).lower()
    fetched = re.findall(r'\s(?:src|href)="(?!#|trace-)[^"]*"|<link|@import|url\((?!#)', html)
    assert not fetched  # self-contained: only the three traces' own pages are linked
    assert 'href="trace-nat.html"' in html


def test_compare_refuses_what_it_does_not_take():
    def args(**given: object) -> argparse.Namespace:
        base = {"mode": "compare", "ha": False, "keep": False, "explain": False, "mistake": None,
                "trace": None, "name": None, "servers": 3, "requests": 9, "scheduler": "rr",
                "ipv6": False, "tun_type": "ipip", "out": None}
        return argparse.Namespace(**{**base, **given})
    assert compare.command(args(keep=True)) == 2
    assert compare.command(args(servers=5)) == 2
    assert compare.command(args(mode="dr", out="/tmp/x")) == 2


def test_the_command_line_knows_compare_and_out():
    from pylvs import cli
    parsed = cli._parser().parse_args(["lab", "compare", "--ipv6", "--tun-type", "gre",
                                       "--out", "/tmp/somewhere"])
    assert (parsed.mode, parsed.ipv6, parsed.tun_type, parsed.out) == (
        "compare", True, "gre", "/tmp/somewhere")
