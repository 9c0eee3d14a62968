"""A trace's inputs as each host would have put its frames on its wire (hosts, wires, SYN and
SYN-ACK frames), and a whole DR trace built from them (dr_trace)."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from pylvs.lab import trace

CLIENT, DIRECTOR, RS1, ROUTER = ("02:00:00:00:00:05", "02:00:00:00:00:02",
                                  "02:00:00:00:00:11", "02:00:00:00:00:01")
DIRECTOR_IN, ROUTER_IN = "02:00:00:00:01:02", "02:00:00:00:01:01"
VIP, CIP = "192.168.1.100", "192.168.1.5"


def hosts(rs_ip: list[str], director_macs: tuple[str, ...] = (DIRECTOR,),
          router: bool = False) -> dict:
    found = {"client": {"role": "client", "ip": [f"{CIP}/24"], "mac": [CLIENT]},
             "director": {"role": "director", "ip": ["192.168.1.2/24", f"{VIP}/32"],
                          "mac": list(director_macs)},
             "rs1": {"role": "real_server", "ip": rs_ip, "mac": [RS1]}}
    if router:
        found["router"] = {"role": "router", "ip": ["192.168.1.1/24", "172.16.0.1/24"],
                           "mac": [ROUTER, ROUTER_IN]}
    return found


def wire(host: str, bridge: str = "br0", ifname: str = "eth0") -> dict:
    return {"file": f"{host}-{ifname}.pcap", "host": host, "interface": ifname,
            "bridge": bridge, "link": f"{host} {ifname} <-> {bridge}"}


def syn(src_mac: str, dst_mac: str, dst: str = VIP, ttl: int = 64, dport: int = 80):
    return Ether(src=src_mac, dst=dst_mac) / IP(src=CIP, dst=dst, ttl=ttl, id=7) / TCP(
        sport=40000, dport=dport, flags="S", seq=1000)


def synack(src_mac: str, dst_mac: str, src: str = VIP, ttl: int = 64):
    return Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=CIP, ttl=ttl, id=0) / TCP(
        sport=80, dport=40000, flags="SA", seq=5000, ack=1001)


def frames(*timed: tuple[str, float, object]) -> dict[str, list[tuple[float, bytes]]]:
    out: dict[str, list[tuple[float, bytes]]] = {}
    for file, when, pkt in timed:
        out.setdefault(file, []).append((when, bytes(pkt)))
    return out


def dr_trace(rs_answers_arp: bool = False) -> dict:
    on_director = syn(CLIENT, DIRECTOR)
    forwarded = syn(DIRECTOR, RS1, ttl=63)
    answer = synack(RS1, CLIENT)
    who_has = Ether(src=CLIENT, dst=trace.BROADCAST) / ARP(op=1, hwsrc=CLIENT, psrc=CIP,
                                                          pdst=VIP)
    is_at = Ether(src=DIRECTOR, dst=CLIENT) / ARP(op=2, hwsrc=DIRECTOR, psrc=VIP,
                                                 hwdst=CLIENT, pdst=CIP)
    timed = [("client-eth0.pcap", 0.0, who_has), ("director-eth0.pcap", 0.0001, who_has),
             ("rs1-eth0.pcap", 0.0001, who_has), ("director-eth0.pcap", 0.001, is_at),
             ("client-eth0.pcap", 0.0011, is_at),
             ("client-eth0.pcap", 1.0, on_director), ("director-eth0.pcap", 1.0001, on_director),
             ("director-eth0.pcap", 1.002, forwarded), ("rs1-eth0.pcap", 1.0021, forwarded),
             ("rs1-eth0.pcap", 1.003, answer), ("client-eth0.pcap", 1.0031, answer)]
    if rs_answers_arp:
        lie = Ether(src=RS1, dst=CLIENT) / ARP(op=2, hwsrc=RS1, psrc=VIP, hwdst=CLIENT,
                                              pdst=CIP)
        timed += [("rs1-eth0.pcap", 0.0009, lie), ("client-eth0.pcap", 0.00095, lie)]
    return trace.build("dr", hosts([f"{VIP}/32", "192.168.1.11/24"]),
                       [wire("client"), wire("director"), wire("rs1")], frames(*timed), VIP)


def nat_trace() -> dict:
    """A NAT connection's SYN and SYN-ACK through the director's two wires (eth0 outside, eth1
    inside, to rs1 at 10.0.0.11)."""
    inside = syn(DIRECTOR_IN, RS1, dst="10.0.0.11", ttl=63)
    reply = synack(RS1, DIRECTOR_IN, src="10.0.0.11")
    out = synack(DIRECTOR, CLIENT, ttl=63)
    timed = [("client-eth0.pcap", 1.0, syn(CLIENT, DIRECTOR)),
             ("director-eth0.pcap", 1.0001, syn(CLIENT, DIRECTOR)),
             ("director-eth1.pcap", 1.002, inside), ("rs1-eth0.pcap", 1.0021, inside),
             ("rs1-eth0.pcap", 1.003, reply), ("director-eth1.pcap", 1.0031, reply),
             ("director-eth0.pcap", 1.004, out), ("client-eth0.pcap", 1.0041, out)]
    return trace.build("nat", hosts(["10.0.0.11/24"], (DIRECTOR, DIRECTOR_IN)),
                       [wire("client"), wire("director"), wire("director", "br1", "eth1"),
                        wire("rs1", "br1")], frames(*timed), VIP)
