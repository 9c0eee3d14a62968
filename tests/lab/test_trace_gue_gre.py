"""The trace of a GUE or GRE lab (``pylvs lab tun --tun-type gue|gre --trace``, issue 24), on
frames the director's own code builds (pylvs.core.encap.tunnel_xmit): the outer header, GUE's UDP
and GUE header or the GRE header, and the inner packet found under them, hop by hop; UDP is GUE
only on the port the lab names."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, Ether

from pylvs.core import encap
from pylvs.core.ipv6 import parse6
from pylvs.core.packet import parse
from pylvs.lab import trace, trace_page

CLIENT, DIRECTOR, RS1, ROUTER, ROUTER_IN = ("02:00:00:00:00:05", "02:00:00:00:00:02",
                                            "02:00:00:00:00:11", "02:00:00:00:00:01",
                                            "02:00:00:00:01:01")
GUE_PORT, SPORT = 6080, 40123
LAB = {4: {"vip": "192.168.1.100", "cip": "192.168.1.5", "dip": "192.168.1.2",
           "rip": "172.16.0.11", "vip_len": 32, "len": 24,
           "router": ["192.168.1.1/24", "172.16.0.1/24"]},
       6: {"vip": "2001:db8:1::100", "cip": "2001:db8:1::5", "dip": "2001:db8:1::2",
           "rip": "2001:db8:172:16::11", "vip_len": 128, "len": 64,
           "router": ["2001:db8:1::1/64", "2001:db8:172:16::1/64"]}}


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def client_syn(family: int) -> bytes:
    lab = LAB[family]
    ip = IP(src=lab["cip"], dst=lab["vip"], ttl=64, id=7, flags="DF") if family == 4 else \
        IPv6(src=lab["cip"], dst=lab["vip"], hlim=64, fl=0x12345)
    return bytes(Ether(src=CLIENT, dst=DIRECTOR) / ip / TCP(sport=40000, dport=80, flags="S",
                                                             seq=1000))


def wrapped(family: int, tun_type: str, flags: str = "nocsum") -> tuple[bytes, bytes]:
    """The director's frame to the router (pylvs.core.encap's) and the router's to rs1 (new
    MACs, the outer TTL or hop limit − 1)."""
    lab = LAB[family]
    frame = bytearray(client_syn(family))
    flow = parse(frame) if family == 4 else parse6(frame)
    src, dst = (int(ipaddress.ip_address(lab[k])) for k in ("dip", "rip"))
    out = encap.tunnel_xmit(frame, flow, tun_type, family, src, dst, mac(ROUTER) + mac(DIRECTOR),
                            port=GUE_PORT, flags=flags, ip_id=99, sport=SPORT)
    routed = bytearray(out)
    routed[0:12] = mac(RS1) + mac(ROUTER_IN)
    routed[14 + (8 if family == 4 else 7)] -= 1
    return bytes(out), bytes(routed)


def hosts(family: int) -> dict:
    lab = LAB[family]
    return {"client": {"role": "client", "ip": [f"{lab['cip']}/{lab['len']}"], "mac": [CLIENT]},
            "director": {"role": "director", "mac": [DIRECTOR],
                         "ip": [f"{lab['dip']}/{lab['len']}", f"{lab['vip']}/{lab['vip_len']}"]},
            "router": {"role": "router", "ip": lab["router"], "mac": [ROUTER, ROUTER_IN]},
            "rs1": {"role": "real_server", "mac": [RS1],
                    "ip": [f"{lab['rip']}/{lab['len']}", f"{lab['vip']}/{lab['vip_len']}"]}}


def wire(host: str, bridge: str = "br0", ifname: str = "eth0") -> dict:
    return {"file": f"{host}-{ifname}.pcap", "host": host, "interface": ifname,
            "bridge": bridge, "link": f"{host} {ifname} <-> {bridge}"}


def tun_trace(family: int, tun_type: str, flags: str = "nocsum",
              gue_ports: tuple[int, ...] = (GUE_PORT,)) -> dict:
    syn = client_syn(family)
    to_router, to_rs = wrapped(family, tun_type, flags)
    timed = [("client-eth0.pcap", 1.0, syn), ("director-eth0.pcap", 1.0001, syn),
             ("director-eth0.pcap", 1.002, to_router), ("router-eth0.pcap", 1.0021, to_router),
             ("router-eth1.pcap", 1.003, to_rs), ("rs1-eth0.pcap", 1.0031, to_rs)]
    frames: dict[str, list[tuple[float, bytes]]] = {}
    for file, when, frame in timed:
        frames.setdefault(file, []).append((when, frame))
    return trace.build("tun", hosts(family),
                       [wire("client"), wire("director"), wire("router"),
                        wire("router", "br2", "eth1"), wire("rs1", "br2")], frames,
                       LAB[family]["vip"], family=family, gue_ports=gue_ports)


def syn_hop(built: dict) -> dict:
    return next(h for h in built["hops"] if h["packet"] == "SYN")


@pytest.mark.parametrize("family", [4, 6])
def test_gue_the_outer_header_udp_to_the_tun_port_and_the_gue_header(family):
    lab = LAB[family]
    built = tun_trace(family, "gue")
    wires = syn_hop(built)["wires"]
    assert [w["host"] for w in wires] == ["client", "director", "director", "router", "router",
                                          "rs1"]
    sent = wires[2]["fields"]
    assert {k: v for k, v in sent.items() if k.startswith(("outer.", "gue."))
            and not k.endswith((".ttl", ".id", ".hlim", ".flow"))} == {
        "outer.src": lab["dip"], "outer.dst": lab["rip"], "outer.proto": 17,
        "outer.udp.sport": SPORT, "outer.udp.dport": GUE_PORT, "outer.udp.csum": 0,
        "gue.proto": 4 if family == 4 else 41}
    assert (sent["ip.src"], sent["ip.dst"], sent["tcp.dport"]) == (lab["cip"], lab["vip"], 80)
    assert {"outer.udp.sport", "outer.udp.dport", "gue.proto"} <= set(wires[2]["changed"])
    limit = "outer.ttl" if family == 4 else "outer.hlim"
    assert wires[4]["changed"] == ["eth.dst", "eth.src", limit]
    says = syn_hop(built)["says"]
    assert says[0] == (f"the director wrapped the packet in a new IPv{family} header "
                       f"{lab['dip']} → {lab['rip']}, UDP {SPORT} → {GUE_PORT} (no checksum) "
                       f"and a GUE header (protocol {sent['gue.proto']}) and sent it to router; "
                       f"inside, the packet still goes to {lab['vip']}: TUN")
    assert says[1].startswith("the router routed it: new MACs (to rs1), the outer header's")
    assert says[2] == (f"rs1 unwraps the GUE packet (UDP to its port {GUE_PORT}, the GUE header "
                       f"of protocol {sent['gue.proto']} off): its stack gets {lab['cip']} → "
                       f"{lab['vip']} (the VIP it holds)")
    rip = f"[{lab['rip']}]" if family == 6 else lab["rip"]
    assert built["connection"]["real_server"] == f"{rip}:80"
    assert built["connection"]["real_server_host"] == "rs1"
    text = trace.render(built)
    proto = "proto 17" if family == 4 else "nh 17"
    assert (f"{proto}, udp *{SPORT} → *{GUE_PORT}, *gue proto {sent['gue.proto']}]"
            in text)
    assert f"{proto}, udp {SPORT} → {GUE_PORT}, gue proto {sent['gue.proto']}]" in text


def test_gue_with_a_udp_checksum_says_nothing_of_its_absence():
    built = tun_trace(4, "gue", "csum")
    sent = syn_hop(built)["wires"][2]["fields"]
    assert sent["outer.udp.csum"] != 0
    assert f"UDP {SPORT} → {GUE_PORT} and a GUE header (protocol 4)" in syn_hop(built)["says"][0]


def test_udp_is_gue_only_on_the_port_the_lab_names():
    to_router, _ = wrapped(4, "gue")
    assert trace.dissect(to_router, (GUE_PORT,))["gue.proto"] == 4
    for ports in ((), (6081,)):
        plain = trace.dissect(to_router, ports)
        assert "outer.src" not in plain and "gue.proto" not in plain
        assert plain["ip.proto"] == 17 and "tcp.flags" not in plain
    built = tun_trace(4, "gue", gue_ports=())  # then the tunnelled copies are no hop
    assert [w["host"] for w in syn_hop(built)["wires"]] == ["client", "director"]
    assert built["connection"]["real_server"] is None


def test_udp_to_the_port_that_is_not_gue_data_is_not_unwrapped():
    lab = LAB[4]
    inner = IP(src=lab["cip"], dst=lab["vip"]) / TCP(sport=40000, dport=80, flags="S")
    outer = Ether(src=DIRECTOR, dst=ROUTER) / IP(src=lab["dip"], dst=lab["rip"]) / UDP(
        sport=SPORT, dport=GUE_PORT)
    for header in (bytes((0x20, 4, 0, 0)),  # a control message
                   bytes((0x40, 4, 0, 0)),  # variant 1 (not what IPVS sends)
                   bytes((0, 47, 0, 0)),  # another protocol
                   bytes((0, 41, 0, 0))):  # protocol 41 around an IPv4 packet
        fields = trace.dissect(bytes(outer / (header + bytes(inner))), (GUE_PORT,))
        assert "gue.proto" not in fields and "outer.src" not in fields, header


def test_gue_options_are_skipped():
    lab = LAB[4]
    inner = IP(src=lab["cip"], dst=lab["vip"], id=7) / TCP(sport=40000, dport=80, flags="S")
    frame = Ether(src=DIRECTOR, dst=ROUTER) / IP(src=lab["dip"], dst=lab["rip"]) / UDP(
        sport=SPORT, dport=GUE_PORT) / (encap.gue_header(4, (20, 36)) + bytes(inner))
    fields = trace.dissect(bytes(frame), (GUE_PORT,))
    assert (fields["gue.proto"], fields["ip.dst"], fields["tcp.dport"]) == (4, lab["vip"], 80)


@pytest.mark.parametrize(("flags", "csum"), [("nocsum", False), ("csum", True)])
def test_gre_with_and_without_its_checksum(flags, csum):
    lab = LAB[4]
    built = tun_trace(4, "gre", flags)
    wires = syn_hop(built)["wires"]
    sent = wires[2]["fields"]
    assert (sent["outer.proto"], sent["gre.proto"], sent["gre.csum"]) == (47, 0x0800, csum)
    assert "outer.udp.sport" not in sent and "gue.proto" not in sent
    assert {"outer.proto", "gre.proto", "gre.csum"} <= set(wires[2]["changed"])
    assert wires[4]["changed"] == ["eth.dst", "eth.src", "outer.ttl"]
    says = syn_hop(built)["says"]
    header = "(protocol 0x0800, checksum)" if csum else "(protocol 0x0800)"
    assert says[0] == (f"the director wrapped the packet in a new IPv4 header {lab['dip']} → "
                       f"{lab['rip']} (IP protocol 47) and a GRE header {header} and sent it to "
                       f"router; inside, the packet still goes to {lab['vip']}: TUN")
    checked = ", its checksum checked" if csum else ""
    assert says[2] == (f"rs1 unwraps the GRE packet (the GRE header of protocol 0x0800 off"
                       f"{checked}): its stack gets {lab['cip']} → {lab['vip']} (the VIP it "
                       f"holds)")
    assert built["connection"]["real_server"] == f"{lab['rip']}:80"
    text = trace.render(built)
    assert ("proto 47, *gre proto 0x0800" + (" *csum]" if csum else "]")) in text


def test_gre_over_ipv6_carries_ipv6():
    lab = LAB[6]
    built = tun_trace(6, "gre")
    sent = syn_hop(built)["wires"][2]["fields"]
    assert (sent["outer.proto"], sent["gre.proto"], sent["ip.dst"]) == (47, 0x86DD, lab["vip"])
    assert (f"a new IPv6 header {lab['dip']} → {lab['rip']} (next header 47) and a GRE header "
            f"(protocol 0x86DD)") in syn_hop(built)["says"][0]
    assert "nh 47, *gre proto 0x86DD]" in trace.render(built)


def test_gre_key_and_sequence_are_skipped_and_other_versions_left_alone():
    lab = LAB[4]
    inner = IP(src=lab["cip"], dst=lab["vip"], id=7) / TCP(sport=40000, dport=80, flags="S")
    outer = Ether(src=DIRECTOR, dst=ROUTER) / IP(src=lab["dip"], dst=lab["rip"], proto=47)
    keyed = struct.pack("!HHII", encap.GRE_KEY | encap.GRE_SEQ, 0x0800, 5, 6) + bytes(inner)
    fields = trace.dissect(bytes(outer / keyed))
    assert (fields["gre.proto"], fields["gre.csum"], fields["ip.dst"]) == (0x0800, False,
                                                                           lab["vip"])
    pptp = struct.pack("!HH", 1, 0x0800) + bytes(inner)  # version 1 (PPTP's enhanced GRE)
    assert "gre.proto" not in trace.dissect(bytes(outer / pptp))
    assert "gre.proto" in trace.dissect(bytes(Ether() / IP(src=lab["dip"], dst=lab["rip"])
                                              / GRE() / inner))  # scapy's own GRE too


def test_the_page_labels_the_tunnel_of_each_arrow():
    for built, label in ((tun_trace(4, "gue"), "SYN in GUE (UDP 6080)"),
                         (tun_trace(6, "gue"), "SYN in GUE (UDP 6080)"),
                         (tun_trace(4, "gre"), "SYN in GRE"),
                         (tun_trace(4, "gre", "csum"), "SYN in GRE with checksum"),
                         (tun_trace(4, "ipip"), "SYN in IP-in-IP")):
        arrows = trace_page.arrows(built)
        assert [a["tunnel"] for a in arrows if a["src"] == "client"] == [None]
        assert {a["tunnel"] for a in arrows if a["src"] in ("director", "router")} == \
            {label.removeprefix("SYN in ")}
        svg = trace_page.sequence_svg(built)
        assert f"<title>{label} [" in svg
        assert "<title>SYN [" not in svg and "<title>SYN</title>" in svg  # the client's
