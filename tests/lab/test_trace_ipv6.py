"""The trace of an IPv6 lab, on frames built with scapy as each host would have put them on its
wire: NDP where IPv4 has ARP (who answers the Neighbor Solicitation for the VIP, and why the
real servers stay quiet), the hop limit where IPv4 has the TTL, the four TUN encapsulations,
and IPv6's own chatter (router solicitations, MLD, DAD) left out of the hops."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import (
    ICMPv6MLReport2,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import Ether

from pylvs.lab import trace, trace_page

CLIENT, DIRECTOR, RS1, ROUTER, ROUTER_IN = ("02:00:00:00:00:05", "02:00:00:00:00:02",
                                            "02:00:00:00:00:11", "02:00:00:00:00:01",
                                            "02:00:00:00:01:01")
VIP, CIP, DIP = "2001:db8:1::100", "2001:db8:1::5", "2001:db8:1::2"
RIP = "2001:db8:1::11"
CLIENT_LL, RS1_LL = "fe80::5", "fe80::11"
SOLICITED_VIP = "ff02::1:ff00:100"
SOLICITED_MAC = "33:33:ff:00:01:00"


def hosts(rs_ip: list[str], router: bool = False) -> dict:
    found = {"client": {"role": "client", "ip": [f"{CIP}/64", f"{CLIENT_LL}/64"],
                        "mac": [CLIENT]},
             "director": {"role": "director", "ip": [f"{DIP}/64", f"{VIP}/128", "fe80::2/64"],
                          "mac": [DIRECTOR]},
             "rs1": {"role": "real_server", "ip": rs_ip, "mac": [RS1]}}
    if router:
        found["router"] = {"role": "router", "ip": ["2001:db8:1::1/64",
                                                    "2001:db8:172:16::1/64", "fe80::1/64"],
                           "mac": [ROUTER, ROUTER_IN]}
    return found


def wire(host: str, bridge: str = "br0", ifname: str = "eth0") -> dict:
    return {"file": f"{host}-{ifname}.pcap", "host": host, "interface": ifname,
            "bridge": bridge, "link": f"{host} {ifname} <-> {bridge}"}


def frames(*timed: tuple[str, float, object]) -> dict[str, list[tuple[float, bytes]]]:
    out: dict[str, list[tuple[float, bytes]]] = {}
    for file, when, pkt in timed:
        out.setdefault(file, []).append((when, bytes(pkt)))
    return out


def syn(src_mac: str, dst_mac: str, hlim: int = 64, dst: str = VIP, dport: int = 80):
    return Ether(src=src_mac, dst=dst_mac) / IPv6(src=CIP, dst=dst, hlim=hlim, fl=0x12345) / \
        TCP(sport=40000, dport=dport, flags="S", seq=1000)


def synack(src_mac: str, dst_mac: str, src: str = VIP, hlim: int = 64):
    return Ether(src=src_mac, dst=dst_mac) / IPv6(src=src, dst=CIP, hlim=hlim, fl=0x54321) / \
        TCP(sport=80, dport=40000, flags="SA", seq=5000, ack=1001)


def who_has_vip():
    return Ether(src=CLIENT, dst=SOLICITED_MAC) / IPv6(src=CIP, dst=SOLICITED_VIP, hlim=255) / \
        ICMPv6ND_NS(tgt=VIP) / ICMPv6NDOptSrcLLAddr(lladdr=CLIENT)


def vip_is_at(mac: str):
    return Ether(src=mac, dst=CLIENT) / IPv6(src=VIP, dst=CIP, hlim=255) / \
        ICMPv6ND_NA(tgt=VIP, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac)


NOISE = [
    Ether(src=RS1, dst="33:33:00:00:00:02") / IPv6(src=RS1_LL, dst="ff02::2") / ICMPv6ND_RS(),
    Ether(src=RS1, dst="33:33:00:00:00:16") / IPv6(src=RS1_LL, dst="ff02::16", hlim=1)
    / IPv6ExtHdrHopByHop() / ICMPv6MLReport2(),
    Ether(src=CLIENT, dst="33:33:ff:00:00:05") / IPv6(src="::", dst="ff02::1:ff00:5")
    / ICMPv6ND_NS(tgt=CIP),  # DAD's probe
]


def dr_trace(rs_answers: bool = False) -> dict:
    timed = [("client-eth0.pcap", 0.0, who_has_vip()), ("director-eth0.pcap", 0.0001,
                                                        who_has_vip()),
             ("rs1-eth0.pcap", 0.0001, who_has_vip()),
             ("director-eth0.pcap", 0.001, vip_is_at(DIRECTOR)),
             ("client-eth0.pcap", 0.0011, vip_is_at(DIRECTOR)),
             ("client-eth0.pcap", 1.0, syn(CLIENT, DIRECTOR)),
             ("director-eth0.pcap", 1.0001, syn(CLIENT, DIRECTOR)),
             ("director-eth0.pcap", 1.002, syn(DIRECTOR, RS1, hlim=63)),
             ("rs1-eth0.pcap", 1.0021, syn(DIRECTOR, RS1, hlim=63)),
             ("rs1-eth0.pcap", 1.003, synack(RS1, CLIENT)),
             ("client-eth0.pcap", 1.0031, synack(RS1, CLIENT))]
    timed += [("rs1-eth0.pcap", 0.5 + i / 10, noise) for i, noise in enumerate(NOISE)]
    if rs_answers:
        timed += [("rs1-eth0.pcap", 0.0009, vip_is_at(RS1)),
                  ("client-eth0.pcap", 0.00095, vip_is_at(RS1))]
    return trace.build("dr", hosts([f"{VIP}/128", f"{RIP}/64", f"{RS1_LL}/64"]),
                       [wire("client"), wire("director"), wire("rs1")], frames(*timed), VIP,
                       family=6)


def hop(built: dict, name: str) -> dict:
    return next(h for h in built["hops"] if h["packet"] == name)


def test_ndp_for_the_vip_is_answered_by_the_director_and_the_noise_is_left_out():
    built = dr_trace()
    assert [h["packet"] for h in built["hops"]] == [
        f"NDP: who has {VIP}?", f"NDP: {VIP} is at {DIRECTOR}", "SYN", "SYN-ACK"]
    asks = built["hops"][0]["says"][0]
    assert asks == (f"client asks: who has {VIP}? tell {CIP} (a Neighbor Solicitation to "
                    f"{SOLICITED_VIP}, {VIP}'s solicited-node multicast group) (heard by "
                    f"director, rs1)")
    answer = built["hops"][1]["says"]
    assert answer[0] == f"director answers: {VIP} is at {DIRECTOR} (a Neighbor Advertisement)"
    assert answer[1].startswith("only the director answers for the VIP: rs1 holds it on lo, ")
    assert "ndisc_recv_ns" in answer[1] and "IPv6 needs no arp_ignore" in answer[1]


def test_dissect_leaves_out_router_solicitations_mld_and_dad():
    assert [trace.dissect(bytes(frame)) for frame in NOISE] == [None, None, None]
    fields = trace.dissect(bytes(who_has_vip()))
    assert fields is not None
    assert {k: fields[k] for k in ("nd.type", "nd.src", "nd.dst", "nd.target", "nd.lladdr")} == {
        "nd.type": "NS", "nd.src": CIP, "nd.dst": SOLICITED_VIP, "nd.target": VIP,
        "nd.lladdr": CLIENT}
    assert trace.dissect(bytes(vip_is_at(DIRECTOR)))["nd.flags"] == "SO"


def test_a_real_server_answering_for_the_vip_is_named():
    built = dr_trace(rs_answers=True)
    lie = hop(built, f"NDP: {VIP} is at {RS1}")
    assert "rs1 answered for the VIP" in lie["says"][1] and "not on lo" in lie["says"][1]
    honest = hop(built, f"NDP: {VIP} is at {DIRECTOR}")
    assert not any(say.startswith("only the director answers") for say in honest["says"])


def test_the_ipv6_dr_director_changes_only_the_macs_and_the_hop_limit():
    built = dr_trace()
    assert built["family"] == 6
    assert built["connection"] == {"client": f"[{CIP}]:40000", "vip": f"[{VIP}]:80",
                                   "real_server": f"[{RIP}]:80", "real_server_host": "rs1"}
    wires = hop(built, "SYN")["wires"]
    assert [w["changed"] for w in wires] == [[], [], ["eth.dst", "eth.src", "ip.hlim"], []]
    says = hop(built, "SYN")["says"]
    assert says[0] == ("the director changed only the MACs (now to rs1) and the hop limit; the "
                       "IP addresses and ports are as the client sent them: DR")
    assert says[1] == f"rs1 takes a packet to {VIP} as its own: it holds the VIP (on lo, as a /128)"
    assert hop(built, "SYN-ACK")["says"][-1].endswith("the director never saw it")


def test_render_shows_the_hop_limit_and_the_flow_label_where_ipv4_has_ttl_and_id():
    text = trace.render(dr_trace())
    assert text.startswith(f"trace (dr, IPv6): connection [{CIP}]:40000 → [{VIP}]:80, served by "
                           f"rs1 ([{RIP}]:80)")
    forwarded = [line for line in text.splitlines() if "director eth0 sends" in line
                 and "[S]" in line]
    assert len(forwarded) == 1
    assert f"{CIP} → {VIP} *hlim 63 flow 0x12345  40000 → 80 [S]" in forwarded[0]
    assert f"*{DIRECTOR}(director) → *{RS1}(rs1)" in forwarded[0]
    ns_line = next(line for line in text.splitlines() if "client eth0   sends" in line
                   and "NDP" in line)
    assert f"→ {SOLICITED_MAC}(multicast)  NDP NS who-has {VIP} from {CIP} to " \
           f"{SOLICITED_VIP}" in ns_line


def test_the_sequence_diagram_draws_a_solicitation_as_a_multicast():
    built = dr_trace()
    first = trace_page.arrows(built)[0]
    assert first["packet"] == f"NDP: who has {VIP}?" and first["broadcast"]
    assert "ff02::1:ff00:100" in trace_page.page(built)


def tunnelled(outer, wrapped_inner, router_mac_in: str = ROUTER_IN):
    """The director's frame to the router, and the router's to rs1, of one tunnelled SYN."""
    to_router = Ether(src=DIRECTOR, dst=ROUTER) / outer(63) / wrapped_inner
    to_rs = Ether(src=router_mac_in, dst=RS1) / outer(62) / wrapped_inner
    return to_router, to_rs


def tun_trace(outer, wrapped_inner, client_syn, rs_ip: list[str], vip: str, port: int = 80):
    to_router, to_rs = tunnelled(outer, wrapped_inner)
    timed = [("client-eth0.pcap", 1.0, client_syn), ("director-eth0.pcap", 1.0001, client_syn),
             ("director-eth0.pcap", 1.002, to_router), ("router-eth0.pcap", 1.0021, to_router),
             ("router-eth1.pcap", 1.003, to_rs), ("rs1-eth0.pcap", 1.0031, to_rs)]
    return trace.build("tun", hosts(rs_ip, router=True),
                       [wire("client"), wire("director"), wire("router"),
                        wire("router", "br2", "eth1"), wire("rs1", "br2")], frames(*timed), vip,
                       port, family=6)


def test_ip6ip6_the_outer_ipv6_header_and_its_hop_limit_at_the_router():
    inner = syn(CLIENT, DIRECTOR, hlim=63)[IPv6]
    built = tun_trace(lambda h: IPv6(src=DIP, dst="2001:db8:172:16::11", hlim=h, nh=41), inner,
                      syn(CLIENT, DIRECTOR), ["2001:db8:172:16::11/64", f"{VIP}/128"], VIP)
    wires = hop(built, "SYN")["wires"]
    assert wires[2]["fields"]["outer.proto"] == 41 and wires[2]["fields"]["ip.hlim"] == 63
    assert wires[4]["changed"] == ["eth.dst", "eth.src", "outer.hlim"]
    says = hop(built, "SYN")["says"]
    assert says[0] == (f"the director wrapped the packet in a new IPv6 header {DIP} → "
                       f"2001:db8:172:16::11 (next header 41: ip6ip6) and sent it to router; "
                       f"inside, the packet still goes to {VIP}: TUN")
    assert says[1].startswith("the router routed it: new MACs (to rs1), the outer header's "
                              "hop limit − 1")
    assert says[2] == (f"rs1 unwraps the ip6ip6 packet: its stack gets {CIP} → {VIP} (the VIP "
                       f"it holds)")
    assert built["connection"]["real_server"] == "[2001:db8:172:16::11]:80"
    assert "[outer 2001:db8:1::2 → *2001:db8:172:16::11 *hlim 63 nh 41]" in trace.render(built)


def test_6in4_an_ipv6_vip_tunnelled_to_an_ipv4_real_server():
    inner = syn(CLIENT, DIRECTOR, hlim=63, dport=8080)[IPv6]
    built = tun_trace(lambda t: IP(src="192.168.1.2", dst="172.16.0.11", ttl=t, proto=41),
                      inner, syn(CLIENT, DIRECTOR, dport=8080), ["172.16.0.11/24",
                                                                 f"{VIP}/128"], VIP, port=8080)
    says = hop(built, "SYN")["says"]
    assert "a new IPv4 header 192.168.1.2 → 172.16.0.11 (IP protocol 41: IPv6 in IPv4, 6in4)" \
        in says[0]
    assert "the outer header's TTL − 1" in says[1] and "unwraps the 6in4 packet" in says[2]
    assert built["connection"]["real_server"] == "172.16.0.11:8080"


def test_4in6_an_ipv4_packet_in_an_ipv6_header():
    inner = IP(src="192.168.1.5", dst="192.168.1.100", ttl=63, id=9) / TCP(
        sport=40000, dport=8080, flags="S", seq=1000)
    client_syn = Ether(src=CLIENT, dst=DIRECTOR) / IP(src="192.168.1.5", dst="192.168.1.100",
                                                      ttl=64, id=9) / TCP(
        sport=40000, dport=8080, flags="S", seq=1000)
    built = tun_trace(lambda h: IPv6(src=DIP, dst="2001:db8:172:16::11", hlim=h, nh=4), inner,
                      client_syn, ["2001:db8:172:16::11/64", "192.168.1.100/32"],
                      "192.168.1.100", port=8080)
    says = hop(built, "SYN")["says"]
    assert "(next header 4: IPv4 in IPv6, 4in6)" in says[0]
    assert "unwraps the 4in6 packet" in says[2]
    assert built["connection"]["real_server"] == "[2001:db8:172:16::11]:8080"


def test_nat66_rewrites_the_destination_in_and_the_source_out():
    inside = syn(DIRECTOR, RS1, hlim=63, dst="2001:db8:10::11")
    reply = synack(RS1, DIRECTOR, src="2001:db8:10::11")
    out = synack(DIRECTOR, CLIENT, hlim=63)
    timed = [("client-eth0.pcap", 1.0, syn(CLIENT, DIRECTOR)),
             ("director-eth0.pcap", 1.0001, syn(CLIENT, DIRECTOR)),
             ("director-eth1.pcap", 1.002, inside), ("rs1-eth0.pcap", 1.0021, inside),
             ("rs1-eth0.pcap", 1.003, reply), ("director-eth1.pcap", 1.0031, reply),
             ("director-eth0.pcap", 1.004, out), ("client-eth0.pcap", 1.0041, out)]
    built = trace.build("nat", hosts(["2001:db8:10::11/64"]),
                        [wire("client"), wire("director"), wire("director", "br1", "eth1"),
                         wire("rs1", "br1")], frames(*timed), VIP, family=6)
    syn_hop, synack_hop = hop(built, "SYN"), hop(built, "SYN-ACK")
    assert syn_hop["wires"][2]["changed"] == ["eth.dst", "eth.src", "ip.dst", "ip.hlim"]
    assert (f"rewrote the destination [{VIP}]:80 → [2001:db8:10::11]:80 (and the MACs, hop "
            f"limit, TCP checksum): NAT") in syn_hop["says"][0]
    assert synack_hop["wires"][2]["changed"] == ["eth.dst", "eth.src", "ip.hlim", "ip.src"]
    assert synack_hop["says"][-1].endswith("the answer came back through the director")
