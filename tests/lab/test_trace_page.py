"""trace.html and trace.svg from a trace (pylvs.lab.trace_page), and what trace.py gives them
(events in capture order, the noise it left out, each host's layers), on traces the tests build
from scapy frames: every frame's values on the diagram, rewrites old → new, broadcasts drawn as
broadcasts, a packet's way cut where an ARP it waited for happened, nothing fetched."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import ICMPv6MLReport2, ICMPv6ND_NS, ICMPv6ND_RS, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from pylvs.lab import capture, trace, trace_page
from tests.helpers.traces import (
    CIP,
    CLIENT,
    DIRECTOR,
    ROUTER,
    ROUTER_IN,
    RS1,
    VIP,
    dr_trace,
    frames,
    hosts,
    syn,
    wire,
)

SVG = "{http://www.w3.org/2000/svg}"
RIP = "172.16.0.11"
SERVICE = {"scheduler": "rr", "real_servers": {"192.168.1.11:80": "Route"}}


def diagram_text(svg: str) -> str:
    return "".join(ET.fromstring(svg).itertext())


def event_groups(svg: str) -> list[ET.Element]:
    return ET.fromstring(svg).findall(f"{SVG}g[@class='arrow']")


def tun_waiting_for_arp() -> dict:
    """A TUN SYN that waits in the router while it asks who has the real server's address."""
    inner = IP(src=CIP, dst=VIP, ttl=63, id=7) / TCP(sport=40000, dport=80, flags="S", seq=1000)
    wrapped = Ether(src=DIRECTOR, dst=ROUTER) / IP(src="192.168.1.2", dst=RIP, ttl=63,
                                                  id=99) / inner
    routed = Ether(src=ROUTER_IN, dst=RS1) / IP(src="192.168.1.2", dst=RIP, ttl=62,
                                               id=99) / inner
    who_has = Ether(src=ROUTER_IN, dst=trace.BROADCAST) / ARP(op=1, hwsrc=ROUTER_IN,
                                                             psrc="172.16.0.1", pdst=RIP)
    is_at = Ether(src=RS1, dst=ROUTER_IN) / ARP(op=2, hwsrc=RS1, psrc=RIP, hwdst=ROUTER_IN,
                                               pdst="172.16.0.1")
    timed = [("client-eth0.pcap", 1.0, syn(CLIENT, DIRECTOR)),
             ("director-eth0.pcap", 1.0001, syn(CLIENT, DIRECTOR)),
             ("director-eth0.pcap", 1.002, wrapped), ("router-eth0.pcap", 1.0021, wrapped),
             ("router-eth1.pcap", 1.0025, who_has), ("rs1-eth0.pcap", 1.0026, who_has),
             ("rs1-eth0.pcap", 1.0027, is_at), ("router-eth1.pcap", 1.0028, is_at),
             ("router-eth1.pcap", 1.003, routed), ("rs1-eth0.pcap", 1.0031, routed)]
    return trace.build("tun", hosts([f"{RIP}/24", f"{VIP}/32"], router=True),
                       [wire("client"), wire("director"), wire("router"),
                        wire("router", "br2", "eth1"), wire("rs1", "br2")], frames(*timed), VIP)


def test_every_frame_on_the_diagram_carries_its_macs_and_addresses():
    for built in (dr_trace(), tun_waiting_for_arp()):
        text = diagram_text(trace_page.sequence_svg(built))
        for hop in built["hops"]:
            for obs in hop["wires"]:
                f = obs["fields"]
                values = [f["eth.src"], f["eth.dst"], f.get("ip.src", f.get("arp.psrc")),
                          f.get("ip.dst", f.get("arp.pdst")), f.get("outer.src", ""),
                          f.get("outer.dst", "")]
                assert all(v in text for v in values), (hop["packet"], values)
    text = diagram_text(trace_page.sequence_svg(tun_waiting_for_arp()))
    assert f"outer 192.168.1.2 → {RIP} ttl 63  IP-in-IP proto 4" in text
    assert f"ip    {CIP}:40000 → {VIP}:80 ttl 63  [S]" in text


def test_the_sender_s_rewrites_are_red_and_said_old_to_new():
    built = dr_trace()
    rows = trace_page.event_rows(built)
    forwarded = next(r for r in rows if r["packet"] == "SYN" and r["src"] == "director")
    assert forwarded["rewrites"] == [f"dst MAC {DIRECTOR} → {RS1}", f"src MAC {CLIENT} → "
                                     f"{DIRECTOR}", "TTL 64 → 63"]
    red = [t for line in forwarded["lines"] for t, rewritten in line if rewritten]
    assert red == [f"{DIRECTOR} (director)", f"{RS1} (rs1)", "ttl 63"]
    svg = trace_page.sequence_svg(built)
    assert f"rewrote: dst MAC {DIRECTOR} → {RS1}; src MAC {CLIENT} → {DIRECTOR}" in \
        diagram_text(svg)
    client = next(r for r in rows if r["packet"] == "SYN" and r["src"] == "client")
    assert client["rewrites"] == [] and not any(red for line in client["lines"]
                                                for _, red in line)
    wrapped = next(r for r in trace_page.event_rows(tun_waiting_for_arp())
                   if r["src"] == "director")
    assert wrapped["rewrites"][0] == f"+ outer header 192.168.1.2 → {RIP} (IP-in-IP proto 4)"


def test_events_follow_the_capture_and_the_text_resumes_the_waiting_packet():
    built = tun_waiting_for_arp()
    order = [(built["hops"][e["hop"]]["packet"], built["hops"][e["hop"]]["wires"][e["sent"]]
              ["host"]) for e in built["events"]]
    assert order == [("SYN", "client"), ("SYN", "director"), (f"ARP: who has {RIP}?", "router"),
                     (f"ARP: {RIP} is at {RS1}", "rs1"), ("SYN", "router")]
    assert [e["time"] for e in built["events"]] == sorted(e["time"] for e in built["events"])
    text = trace.render(built)
    assert text.index("\nSYN\n") < text.index(f"\nARP: who has {RIP}?\n") < \
        text.index("\nSYN (continued)\n")
    assert text.index("=> the director wrapped") > text.index("\nSYN (continued)\n")
    asks = next(h for h in built["hops"] if h["packet"] == f"ARP: who has {RIP}?")
    assert asks["says"][-1] == (f"router holds the SYN meanwhile: it sends it on to {RIP}'s "
                                f"MAC once the answer comes")


def test_noise_is_left_out_of_the_hops_counted_and_said():
    rs = Ether(src=CLIENT, dst="33:33:00:00:00:02") / IPv6(src="fe80::1", dst="ff02::2") / \
        ICMPv6ND_RS()
    mld = Ether(src=CLIENT, dst="33:33:00:00:00:16") / IPv6(src="fe80::1", dst="ff02::16") / \
        ICMPv6MLReport2()
    dad = Ether(src=CLIENT, dst="33:33:ff:00:00:01") / IPv6(src="::", dst="ff02::1:ff00:1") / \
        ICMPv6ND_NS(tgt="fe80::1")
    igmp = Ether(src=CLIENT, dst="01:00:5e:00:00:16") / IP(src=CIP, dst="224.0.0.22",
                                                           proto=2) / Raw(b"\x22" + b"\0" * 7)
    assert [trace.noise_kind(bytes(f)) for f in (rs, mld, dad, igmp)] == [
        "router solicitation", "MLD", "DAD", "IGMP"]
    assert trace.noise_kind(bytes(syn(CLIENT, DIRECTOR))) is None
    base = dr_trace()
    noisy = frames(("client-eth0.pcap", 0.0, rs), ("director-eth0.pcap", 0.0, rs),
                   ("client-eth0.pcap", 0.1, mld), ("client-eth0.pcap", 0.2, dad),
                   ("client-eth0.pcap", 0.3, igmp), ("client-eth0.pcap", 1.0,
                                                     syn(CLIENT, DIRECTOR)))
    built = trace.build("dr", base["hosts"], base["captures"], noisy, VIP)
    assert built["noise"] == {"DAD": 1, "IGMP": 1, "MLD": 1, "router solicitation": 2}
    assert [h["packet"] for h in built["hops"]] == ["SYN"]
    said = ("Left out of the hops: 5 frames of noise that hosts send on their own (1 DAD "
            "probe, 1 IGMP, 1 MLD, 2 router solicitations)")
    assert said in diagram_text(trace_page.sequence_svg(built))
    assert said in trace_page.page(built)
    assert dr_trace()["noise"] == {}


def test_a_broadcast_is_one_bus_with_a_drop_into_every_host_that_took_it():
    built = dr_trace()
    groups = event_groups(trace_page.sequence_svg(built))
    first = groups[0]
    assert first.get("data-kind") == "arp" and first.get("data-dst") == "director rs1"
    assert len(first.findall(f"{SVG}line[@class='bus']")) == 1
    assert len(first.findall(f"{SVG}line[@class='drop']")) == 2
    assert first.find(f"{SVG}circle") is not None  # the sender
    label = first.find(f"{SVG}text[@class='label']").text
    assert label == f"ARP who-has {VIP} (broadcast)"
    unicast = groups[1]  # the director's answer: an arrow, no bus
    assert unicast.find(f"{SVG}line[@class='bus']") is None
    assert len(unicast.findall(f"{SVG}line")) == 1
    items = [a for a in trace_page.arrows(built) if a["event"] == 0]
    assert [(a["src"], a["dst"], a["broadcast"]) for a in items] == [
        ("client", "director", True), ("client", "rs1", True)]


def test_the_layers_say_what_each_host_decided_from_the_capture():
    built = dr_trace()
    built["service"] = SERVICE
    forwarded = next(e for e in built["events"] if built["hops"][e["hop"]]["packet"] == "SYN"
                     and e["before"] is not None)
    director, rs1 = trace.layers(built, forwarded)
    assert (director["host"], rs1["host"]) == ("director", "rs1")
    rows = {row["layer"]: row for row in director["layers"]}
    assert [row["layer"] for row in director["layers"]] == ["L4", "L3", "L2", "L1"]
    assert rows["L4"]["in"] == (f"TCP {VIP}:80 is a virtual service: a new connection → "
                                f"scheduler rr chose rs1 (192.168.1.11:80, Route)")
    assert rows["L2"]["out"] == (f"rewrite dst MAC {DIRECTOR} → {RS1} (rs1); src MAC "
                                 f"{CLIENT} → {DIRECTOR} (its eth0)")
    assert rows["L3"]["out"] == f"{CIP} → {VIP} kept; TTL 64 → 63"
    rs_rows = {row["layer"]: row["in"] for row in rs1["layers"]}
    assert rs_rows["L3"] == f"dst {VIP} is its own (it holds the VIP): accept"
    assert rs_rows["L4"].endswith("a new connection to its port 80; it answers with a SYN-ACK")
    del built["service"]
    assert "its scheduler chose rs1 (192.168.1.11:80)" in \
        trace.layers(built, forwarded)[0]["layers"][0]["in"]
    who_has = trace.layers(built, built["events"][0])
    quiet = next(v for v in who_has if v["host"] == "rs1")["layers"][0]["in"]
    assert quiet == f"who has {VIP}? it holds {VIP}, but not on eth0: no answer (arp_ignore=1)"
    answers = next(v for v in who_has if v["host"] == "director")["layers"][0]["in"]
    assert answers == f"who has {VIP}? its own address → it answers: is-at {DIRECTOR}"


def test_the_router_routes_the_outer_header_and_the_real_server_unwraps_it():
    built = tun_waiting_for_arp()
    last = built["events"][-1]
    router, rs1 = trace.layers(built, last)
    assert {r["layer"]: r["out"] for r in router["layers"]}["L3 outer"] == \
        f"192.168.1.2 → {RIP} kept; outer TTL 63 → 62"
    assert [r["layer"] for r in rs1["layers"]] == ["L4", "L3", "L3 outer", "L2", "L1"]
    assert rs1["layers"][2]["in"] == f"dst {RIP} is its own, protocol 4 (IP-in-IP) → unwrap"


def test_the_standalone_svg_has_a_title_a_legend_and_a_background():
    svg = trace_page.sequence_svg(dr_trace())
    root = ET.fromstring(svg)
    assert root.find(f"{SVG}rect[@class='paper']").get("fill") == "#fff"
    assert root.find(f"{SVG}text[@class='title']").text == (
        f"pylvs lab dr: {CIP}:40000 → {VIP}:80, served by rs1 (192.168.1.11:80)")
    assert root.find(f"{SVG}text[@class='subtitle']").text.endswith(": DR")
    legend = " ".join(root.find(f"{SVG}g[@class='legend']").itertext())
    assert "broadcast or multicast" in legend and "old → new" in legend
    assert "…" not in " ".join(root.itertext())  # nothing cut


def test_the_page_is_self_contained_and_names_every_host_and_hop():
    built = dr_trace()
    page = trace_page.page(built)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no network, no CDN
    for host in trace_page.hosts_in_order(built):
        assert f'data-host="{host}"' in page
    data = json.loads(re.search(r'<script id="trace-data" type="application/json">(.*?)'
                                r"</script>", page, re.S).group(1))
    assert [h["packet"] for h in data["hops"]] == [h["packet"] for h in built["hops"]]
    assert [e["n"] for e in data["events"]] == list(range(len(built["events"])))
    assert {"layers", "rewrites", "lines", "src", "dst", "kind"} <= set(data["events"][0])
    assert "window.pylvsTrace" in page and 'id="topology-current"' in page
    ET.fromstring(trace_page.topology_svg(built))


def test_the_topology_shows_each_host_s_addresses_and_macs_whole():
    built = tun_waiting_for_arp()
    text = diagram_text(trace_page.topology_svg(built))
    for host in built["hosts"].values():
        assert all(a in text for a in host["ip"]) and all(m in text for m in host["mac"])


def test_text_from_the_capture_cannot_break_out_of_the_page():
    built = dr_trace()
    built["hops"][2]["packet"] = "</script><script>alert(1)</script>"  # the SYN's
    page = trace_page.page(built)
    assert page.count("</script>") == 2  # the data's and the code's own ends, nothing earlier
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in trace_page.sequence_svg(built)


def test_the_director_s_listing_names_the_scheduler_and_the_methods():
    listing = ("IP Virtual Server version 1.2.1 (size=4096)\n"
               "Prot LocalAddress:Port Scheduler Flags\n"
               "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
               "TCP  192.168.1.100:8080 wlc\n"
               "  -> 192.168.1.11:8080             Route   1      0          0\n"
               "TCP  192.168.1.100:80 rr\n"
               "  -> 192.168.1.11:80               Route   1      1          3\n"
               "  -> 10.0.0.12:80                  Masq    1      1          3\n"
               "TCP  [2001:db8:1::100]:80 sh\n"
               "  -> [2001:db8:1::11]:80           Route   1      0          0\n")
    assert capture.parse_service(listing, "192.168.1.100:80") == {
        "scheduler": "rr", "real_servers": {"192.168.1.11:80": "Route", "10.0.0.12:80": "Masq"}}
    assert capture.parse_service(listing, "[2001:db8:1::100]:80")["scheduler"] == "sh"
    assert capture.parse_service(listing, "192.168.1.100:443") is None
