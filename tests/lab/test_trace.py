"""The trace's dissection, on frames built with scapy as each host would have put them on its
wire: the same packet found on every wire, what changed between wires, and the plain words."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from pylvs.lab import trace
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
    nat_trace,
    syn,
    wire,
)


def hop(built: dict, name: str) -> dict:
    return next(h for h in built["hops"] if h["packet"] == name)


def test_dr_syn_changes_only_macs_and_ttl_on_the_director():
    built = dr_trace()
    assert built["connection"] == {"client": f"{CIP}:40000", "vip": f"{VIP}:80",
                                   "real_server": "192.168.1.11:80", "real_server_host": "rs1"}
    wires = hop(built, "SYN")["wires"]
    assert [(w["host"], w["direction"]) for w in wires] == [
        ("client", "sent"), ("director", "received"), ("director", "sent"), ("rs1", "received")]
    assert [w["changed"] for w in wires] == [[], [], ["eth.dst", "eth.src", "ip.ttl"], []]
    assert wires[2]["fields"]["eth.dst_host"] == "rs1"
    says = hop(built, "SYN")["says"]
    assert says[0].endswith("DR") and "changed only the MACs" in says[0]
    assert "rs1 takes a packet to 192.168.1.100 as its own" in says[1]


def test_dr_answer_bypasses_the_director():
    synack_hop = hop(dr_trace(), "SYN-ACK")
    assert [w["host"] for w in synack_hop["wires"]] == ["rs1", "client"]
    assert synack_hop["wires"][0]["fields"]["ip.src"] == VIP
    assert synack_hop["says"][-1] == ("path: rs1 → client: the answer went from rs1 straight "
                                      "to the client: the director never saw it")


def test_arp_for_the_vip_is_answered_by_the_director_only():
    built = dr_trace()
    names = [h["packet"] for h in built["hops"]]
    assert names == ["ARP: who has 192.168.1.100?", f"ARP: {VIP} is at {DIRECTOR}", "SYN",
                     "SYN-ACK"]
    request = built["hops"][0]
    assert request["says"] == [f"client asks: who has {VIP}? tell {CIP} (heard by director, "
                               f"rs1)"]
    assert "only the director answers for the VIP: rs1 holds" in built["hops"][1]["says"][1]


def test_a_real_server_answering_arp_for_the_vip_is_named():
    built = dr_trace(rs_answers_arp=True)
    lie = hop(built, f"ARP: {VIP} is at {RS1}")
    assert "rs1 answered for the VIP" in lie["says"][1]
    assert "bypass the director" in lie["says"][1]
    honest = hop(built, f"ARP: {VIP} is at {DIRECTOR}")  # not "only the director answers"
    assert not any(say.startswith("only the director answers") for say in honest["says"])


def test_nat_rewrites_the_destination_in_and_the_source_out():
    built = nat_trace()
    assert built["connection"]["real_server"] == "10.0.0.11:80"
    syn_hop, synack_hop = hop(built, "SYN"), hop(built, "SYN-ACK")
    assert syn_hop["wires"][2]["changed"] == ["eth.dst", "eth.src", "ip.dst", "ip.ttl"]
    assert "rewrote the destination 192.168.1.100:80 → 10.0.0.11:80" in syn_hop["says"][0]
    assert synack_hop["wires"][2]["changed"] == ["eth.dst", "eth.src", "ip.src", "ip.ttl"]
    assert synack_hop["says"][-1].endswith("the answer came back through the director")


def test_tun_adds_an_outer_header_the_router_routes_and_the_real_server_unwraps():
    inner = IP(src=CIP, dst=VIP, ttl=63, id=7) / TCP(sport=40000, dport=80, flags="S", seq=1000)
    wrapped = Ether(src=DIRECTOR, dst=ROUTER) / IP(src="192.168.1.2", dst="172.16.0.11",
                                                  ttl=63, id=99) / inner
    routed = Ether(src=ROUTER_IN, dst=RS1) / IP(src="192.168.1.2", dst="172.16.0.11", ttl=62,
                                               id=99) / inner
    timed = [("client-eth0.pcap", 1.0, syn(CLIENT, DIRECTOR)),
             ("director-eth0.pcap", 1.0001, syn(CLIENT, DIRECTOR)),
             ("director-eth0.pcap", 1.002, wrapped), ("router-eth0.pcap", 1.0021, wrapped),
             ("router-eth1.pcap", 1.003, routed), ("rs1-eth0.pcap", 1.0031, routed)]
    built = trace.build("tun", hosts(["172.16.0.11/24", f"{VIP}/32"], router=True),
                        [wire("client"), wire("director"), wire("router"),
                         wire("router", "br2", "eth1"), wire("rs1", "br2")], frames(*timed), VIP)
    wires = hop(built, "SYN")["wires"]
    assert [w["host"] for w in wires] == ["client", "director", "director", "router", "router",
                                          "rs1"]
    assert {"outer.src", "outer.dst", "outer.proto"} <= set(wires[2]["changed"])
    assert wires[4]["changed"] == ["eth.dst", "eth.src", "outer.ttl"]
    assert wires[5]["fields"]["ip.dst"] == VIP and wires[5]["fields"]["outer.proto"] == 4
    says = hop(built, "SYN")["says"]
    assert says[0].endswith("TUN") and "192.168.1.2 → 172.16.0.11" in says[0]
    assert says[1].startswith("the router routed it")
    assert says[2].startswith("rs1 unwraps the IP-in-IP packet")
    assert built["connection"]["real_server"] == "172.16.0.11:80"


def test_a_retransmitted_syn_is_not_another_hop_and_render_marks_changes():
    built = dr_trace()
    again = trace.build("dr", built["hosts"], built["captures"], frames(
        ("client-eth0.pcap", 1.0, syn(CLIENT, DIRECTOR)),
        ("client-eth0.pcap", 2.0, syn(CLIENT, DIRECTOR))), VIP)
    assert len(hop(again, "SYN")["wires"]) == 1
    text = trace.render(built)
    assert "trace (dr): connection 192.168.1.5:40000 → 192.168.1.100:80, served by rs1" in text
    forwarded = [line for line in text.splitlines() if "director eth0 sends" in line
                 and "[S]" in line]
    assert len(forwarded) == 1
    assert f"*{DIRECTOR}(director) → *{RS1}(rs1)" in forwarded[0]
    assert "*ttl 63" in forwarded[0] and "*192.168" not in forwarded[0]


def test_no_syn_no_connection():
    built = trace.build("dr", hosts([]), [wire("client")], {}, VIP)
    assert built["connection"] is None and built["hops"] == []
    assert trace.render(built) == "trace: no connection to the VIP was captured\n"
