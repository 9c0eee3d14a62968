"""One connection, hop by hop: captured frames in, the trace's hops and its text out.

Sans-IO apart from ``read_pcap``: ``build`` takes each wire's frames as (time, bytes), the
hosts (addresses, MACs, roles) and the wires, and returns the manifest of trace.json; ``render``
turns it into trace.txt. A wire is one host's link into a bridge, captured at the bridge, so a
frame whose source MAC is the host's was sent by it and any other frame was sent to it.

The traced connection is the first SYN the client sends to the VIP. Its packets are told apart
by what no forwarding method rewrites (the innermost IP ID, or IPv6 flow label, TCP sequence and
acknowledgement numbers and flags), so the same packet is found on every wire it crossed, before
and after the director or the router changed it.

GUE and GRE (the labs' --tun-type gue|gre, pylvs.core.encap's layouts): the outer header's
``outer.*`` fields as for IP-in-IP, then GUE's UDP (``outer.udp.*``) and GUE header (``gue.*``),
or the GRE header (``gre.*``), then the inner packet. A UDP datagram is taken for GUE only when
it goes to a port the caller names (``gue_ports``: the lab's tun port) and starts with a GUE
header of variant 0 carrying protocol 4 or 41; GRE is IP protocol 47, version 0, no routing.

IPv6 (the labs' --ipv6 and dualstack): Neighbor Discovery where IPv4 has ARP (a Neighbor
Solicitation "who has", a Neighbor Advertisement "is at"), the hop limit where IPv4 has the TTL,
and the four TUN encapsulations (IP-in-IP, ip6ip6, 4in6, 6in4). What every IPv6 host sends on
its own is left out of the hops: router solicitations and advertisements, MLD reports and
queries, and DAD's solicitations (from the unspecified address ::); so is IPv4's IGMP. The
trace counts them (``noise``: frames in the pcaps, by kind), so a page can say what it left out.

Events: each frame a host put on a wire, with the hosts that took it off, in the order they
were captured (``events``). A packet's hops are one group in trace.json, but another exchange
can happen while it waits in a host (TUN: the router asks who has the real server's address
between taking the director's copy and sending its own), so trace.txt follows the events and
says "(continued)" where a packet's way resumes. ``layers`` says, per host an event touches,
what each layer did with the frame, from the capture alone (and the director's -Ln, when the
caller adds it as ``service``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Ether

from pylvs.core.encap import (
    GRE_CSUM,
    GRE_HLEN,
    GRE_KEY,
    GRE_ROUTING,
    GRE_SEQ,
    GRE_VERSION,
    GUE_HLEN,
    IPPROTO_GRE,
    IPPROTO_IPIP,
    IPPROTO_IPV6,
)
from pylvs.core.ipv6 import ETH_P_IPV6
from pylvs.core.packet import ETH_P_IP, IPPROTO_UDP

Fields = dict[str, Any]
_EXTENSIONS = (IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment)
ND_NS, ND_NA = 135, 136
NOISE6 = frozenset((130, 131, 132, 133, 134, 143))
"""ICMPv6 that hosts send on their own: MLD query, report, done (130-132), router
solicitation and advertisement (133, 134), MLDv2 report (143)."""
NOISE_NAMES = {130: "MLD", 131: "MLD", 132: "MLD", 143: "MLD", 133: "router solicitation",
               134: "router advertisement"}
IPPROTO_IGMP = 2
ENCAPSULATIONS = {(4, 4): "IP-in-IP", (6, 6): "ip6ip6", (6, 4): "4in6", (4, 6): "6in4"}
"""(outer version, inner version) → the name of the tunnel."""
GUE_INNER = {IPPROTO_IPIP: 4, IPPROTO_IPV6: 6}
"""GUE's proto/ctype → the inner packet's version."""
GRE_INNER = {ETH_P_IP: 4, ETH_P_IPV6: 6}
"""GRE's protocol type (an EtherType) → the inner packet's version."""
BROADCAST = "ff:ff:ff:ff:ff:ff"
ARP_WINDOW = 1.0  # seconds: later copies of an ARP frame are a refresh, not this exchange
TCP_ORDER = ("SYN", "SYN-ACK", "request", "response", "FIN from the client",
             "FIN from the server")


def read_pcap(path: str) -> list[tuple[float, bytes]]:
    from scapy.utils import PcapReader
    with PcapReader(path) as reader:
        return [(float(pkt.time), bytes(pkt)) for pkt in reader]


def dissect(frame: bytes, gue_ports: Collection[int] = ()) -> Fields | None:
    """The L2/L3/L4 fields of an ARP, IPv4 or IPv6 frame (TUN: ``outer.*`` and the inner
    packet, with ``outer.udp.*`` and ``gue.*`` for UDP to one of ``gue_ports`` that carries
    GUE, ``gre.*`` for GRE; NDP: ``nd.*``); None for anything else and for IPv6's noise
    (NOISE6, DAD)."""
    eth = Ether(frame)
    fields: Fields = {"eth.src": eth.src, "eth.dst": eth.dst}
    if ARP in eth:
        arp = eth[ARP]
        fields.update({"arp.op": "request" if arp.op == 1 else "reply", "arp.psrc": arp.psrc,
                       "arp.hwsrc": arp.hwsrc, "arp.pdst": arp.pdst, "arp.hwdst": arp.hwdst})
        return fields
    ip = eth.payload
    if not isinstance(ip, (IP, IPv6)):
        return None
    upper = _upper(ip)
    if isinstance(ip, IPv6) and type(upper).__name__.startswith("ICMPv6"):
        return _ndp(fields, ip, upper)
    if isinstance(upper, (IP, IPv6)) and _proto(ip) in (4, 41):
        fields.update(_addresses("outer", ip))
        fields["outer.proto"] = _proto(ip)
        ip = upper
        upper = _upper(ip)
    elif (tunnelled := _gue_or_gre(ip, upper, gue_ports)) is not None:
        fields.update(_addresses("outer", ip))
        fields["outer.proto"] = _proto(ip)
        fields.update(tunnelled[0])
        ip = tunnelled[1]
        upper = _upper(ip)
    fields.update(_addresses("ip", ip))
    fields["ip.proto"] = _proto(ip)
    if isinstance(upper, TCP):
        if isinstance(ip, IP):
            length = ip.len - ip.ihl * 4 - upper.dataofs * 4
        else:  # the payload length less the extension headers (any padding is in both)
            extensions = len(bytes(ip.payload)) - len(bytes(upper))
            length = ip.plen - extensions - upper.dataofs * 4
        fields.update({"tcp.sport": upper.sport, "tcp.dport": upper.dport,
                       "tcp.flags": str(upper.flags), "tcp.seq": upper.seq,
                       "tcp.ack": upper.ack, "tcp.len": length})
    return fields


def _gue_or_gre(ip: Any, upper: Any, gue_ports: Collection[int]) -> tuple[Fields, Any] | None:
    """The tunnel header's fields and the inner packet of a GUE or GRE packet (as
    pylvs.core.encap lays them out), else None."""
    proto = _proto(ip)
    if isinstance(ip, IP) and ip.frag:  # a later fragment: no tunnel header in it
        return None
    if proto == IPPROTO_UDP and isinstance(upper, UDP) and upper.dport in gue_ports:
        found = _gue(bytes(upper.payload))
        if found is not None:
            return {"outer.udp.sport": upper.sport, "outer.udp.dport": upper.dport,
                    "outer.udp.csum": upper.chksum, **found[0]}, found[1]
    elif proto == IPPROTO_GRE:
        return _gre(bytes(upper))
    return None


def _gue(data: bytes) -> tuple[Fields, Any] | None:
    """A GUE data message of variant 0 (no C bit) carrying protocol 4 or 41, its options
    (Hlen words) skipped."""
    if len(data) < GUE_HLEN or data[0] >> 6 != 0 or data[0] & 0x20:
        return None
    start = GUE_HLEN + ((data[0] & 0x1F) << 2)
    version = GUE_INNER.get(data[1])
    inner = _ip_packet(data[start:], version)
    return None if inner is None else ({"gue.proto": data[1]}, inner)


def _gre(data: bytes) -> tuple[Fields, Any] | None:
    """A GRE packet of version 0 without routing carrying IPv4 or IPv6 (0x0800, 0x86DD); its
    checksum, key and sequence number skipped."""
    if len(data) < GRE_HLEN:
        return None
    flags, proto = struct.unpack_from("!HH", data)
    if flags & (GRE_VERSION | GRE_ROUTING):
        return None
    start = GRE_HLEN + 4 * sum(bool(flags & bit) for bit in (GRE_CSUM, GRE_KEY, GRE_SEQ))
    inner = _ip_packet(data[start:], GRE_INNER.get(proto))
    if inner is None:
        return None
    return {"gre.proto": proto, "gre.csum": bool(flags & GRE_CSUM)}, inner


def _ip_packet(data: bytes, version: int | None) -> Any:
    """An IPv4 or IPv6 packet of ``version`` (scapy's), None if ``data`` is not one."""
    if version is None or len(data) < (20 if version == 4 else 40) or data[0] >> 4 != version:
        return None
    return IP(data) if version == 4 else IPv6(data)


def _upper(ip: Any) -> Any:
    """What an IP header carries: IPv6's past its extension headers."""
    payload = ip.payload
    while isinstance(payload, _EXTENSIONS):
        payload = payload.payload
    return payload


def _proto(ip: Any) -> int:
    """The upper-layer protocol: IPv4's protocol, IPv6's last next header."""
    if isinstance(ip, IP):
        return int(ip.proto)
    header = ip
    while isinstance(header.payload, _EXTENSIONS):
        header = header.payload
    return int(header.nh)


def _addresses(prefix: str, ip: Any) -> Fields:
    """IPv4: src, dst, ttl, id; IPv6: src, dst, hlim (the hop limit) and flow (the flow label,
    which no method rewrites: the packet's mark where IPv4 has the ID)."""
    if isinstance(ip, IP):
        return {f"{prefix}.src": ip.src, f"{prefix}.dst": ip.dst, f"{prefix}.ttl": ip.ttl,
                f"{prefix}.id": ip.id}
    return {f"{prefix}.src": ip.src, f"{prefix}.dst": ip.dst, f"{prefix}.hlim": ip.hlim,
            f"{prefix}.flow": ip.fl}


def _ndp(fields: Fields, ip: Any, icmp: Any) -> Fields | None:
    """A Neighbor Solicitation or Advertisement's fields; None for the rest of ICMPv6 (the
    noise, and errors, which the trace leaves out as it does ICMP) and for DAD's probes."""
    kind = int(icmp.type)
    if kind not in (ND_NS, ND_NA) or (kind == ND_NS and ip.src == "::"):
        return None
    option = icmp.getlayer(ICMPv6NDOptSrcLLAddr if kind == ND_NS else ICMPv6NDOptDstLLAddr)
    lladdr = option.lladdr if option is not None else ""
    fields.update({"nd.type": "NS" if kind == ND_NS else "NA", "nd.src": ip.src,
                   "nd.dst": ip.dst, "nd.target": icmp.tgt, "nd.lladdr": lladdr})
    if kind == ND_NA:
        fields["nd.flags"] = "".join(flag for flag, on in (("R", icmp.R), ("S", icmp.S),
                                                           ("O", icmp.O)) if on)
    return fields


def owner(owners: Mapping[str, str], mac: str) -> str:
    """Who a MAC is: a host, broadcast, or (33:33:..., IPv6's) multicast."""
    if mac in owners:
        return owners[mac]
    return "multicast" if mac.startswith("33:33:") else "?"


def mac_owners(hosts: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    owners = {BROADCAST: "broadcast", "00:00:00:00:00:00": "unknown"}
    for name, host in hosts.items():
        for mac in host["mac"]:
            owners[mac] = name
    return owners


def noise_kind(frame: bytes) -> str | None:
    """What a frame is if it is noise that hosts send on their own: "IGMP", "MLD", "router
    solicitation", "router advertisement" or "DAD" (a Neighbor Solicitation from ::)."""
    ip = Ether(frame).payload
    if isinstance(ip, IP):
        return "IGMP" if ip.proto == IPPROTO_IGMP else None
    if not isinstance(ip, IPv6):
        return None
    icmp = _upper(ip)
    if not type(icmp).__name__.startswith("ICMPv6"):
        return None
    if int(icmp.type) == ND_NS and ip.src == "::":
        return "DAD"
    return NOISE_NAMES.get(int(icmp.type))


def observations(hosts: Mapping[str, Mapping[str, Any]], wires: Sequence[Mapping[str, str]],
                 frames: Mapping[str, Sequence[tuple[float, bytes]]],
                 gue_ports: Collection[int] = (),
                 noise: dict[str, int] | None = None) -> list[Fields]:
    """Every ARP, IPv4 and IPv6 frame (but the noise, counted by kind into ``noise``) on
    every wire, with who sent or got it there, in time order (``gue_ports``: dissect's)."""
    seen = []
    for wire in wires:
        own = set(hosts[wire["host"]]["mac"])
        for when, frame in frames.get(wire["file"], ()):
            fields = dissect(frame, gue_ports)
            if fields is None or fields.get("ip.proto") == IPPROTO_IGMP:
                kind = noise_kind(frame)
                if kind is not None and noise is not None:
                    noise[kind] = noise.get(kind, 0) + 1
                continue
            seen.append({"time": when, "wire": wire["file"], "host": wire["host"],
                         "interface": wire["interface"],
                         "direction": "sent" if fields["eth.src"] in own else "received",
                         "fields": fields})
    return sorted(seen, key=_order)


def _order(obs: Fields) -> tuple[float, int]:
    """Time, and for a tie the sender's copy first."""
    return obs["time"], 0 if obs["direction"] == "sent" else 1


def build(mode: str, hosts: Mapping[str, Mapping[str, Any]],
          wires: Sequence[Mapping[str, str]],
          frames: Mapping[str, Sequence[tuple[float, bytes]]], vip: str,
          port: int = 80, family: int = 4, gue_ports: Collection[int] = ()) -> Fields:
    """The manifest of trace.json: hosts, captures, the traced connection and its hops.
    ``family``: the lab's (6 for an IPv6 lab; a dual-stack lab's is 4, its VIP says which).
    ``gue_ports``: the UDP ports a GUE real server listens on (the lab's tun port): UDP to
    them that carries GUE is dissected as a tunnel, no other UDP is."""
    noise: dict[str, int] = {}
    seen = observations(hosts, wires, frames, gue_ports, noise)
    trace: Fields = {"mode": mode, "family": family, "hosts": dict(hosts),
                     "captures": list(wires), "connection": None, "hops": [], "events": [],
                     "noise": dict(sorted(noise.items()))}
    syn = _first_syn(seen, vip, port)
    if syn is None:
        return trace
    client = (syn["fields"]["ip.src"], syn["fields"]["tcp.sport"])
    hops = _tcp_hops(seen, client)
    end = max(obs["time"] for hop in hops for obs in hop["wires"])
    involved = _involved(hosts, hops, vip, client[0])
    hops += _arp_hops(seen, involved, end)
    hops += _ndp_hops(seen, involved, end)
    hops.sort(key=lambda hop: _order(hop["wires"][0]))
    owners = mac_owners(hosts)
    segments: dict[str, set[str]] = {}
    for wire in wires:
        segments.setdefault(wire["host"], set()).add(wire.get("bridge", ""))
    for hop in hops:
        _mark_changes(hop["wires"], owners)
        hop["says"] = explain_hop(hop, hosts, owners, segments)
    _no_false_quiet(hops, hosts, owners)
    waiting(hops)
    trace["connection"] = _connection(hops, hosts, client, vip, port)
    trace["hops"] = hops
    trace["events"] = events(hops)
    return trace


def events(hops: Sequence[Fields]) -> list[Fields]:
    """Each frame a host sent (``hop``, its wire index ``sent``) with the wires that took it
    (``taken``) and, when the sender had taken the packet in before, that wire (``before``),
    in the order they were captured: the sender's copy's time, then the hop's order."""
    out = []
    for index, hop in enumerate(hops):
        wires = hop["wires"]
        for i, obs in enumerate(wires):
            if obs["direction"] != "sent":
                continue
            taken = []
            for j in range(i + 1, len(wires)):
                if wires[j]["direction"] == "sent":
                    break
                taken.append(j)
            before = wires[i - 1] if i else None
            inside = (before is not None and before["host"] == obs["host"]
                      and before["direction"] == "received")
            out.append({"hop": index, "sent": i, "taken": taken,
                        "before": i - 1 if inside else None, "time": obs["time"]})
    return sorted(out, key=lambda e: (e["time"], e["hop"], e["sent"]))


def _no_false_quiet(hops: Sequence[Fields], hosts: Mapping[str, Mapping[str, Any]],
                    owners: Mapping[str, str]) -> None:
    """"Only the director answers for the VIP" is said of a reply only if no real server's
    reply for the same address is among the hops (a real server without arp_ignore answers
    too: the arp mistake; in IPv6, one holding the VIP on an NDP device)."""
    loud = {_answered(hop) for hop in hops
            if _answered(hop) is not None and hosts.get(owners.get(
                hop["wires"][0]["fields"]["eth.src"], ""), {}).get("role") == "real_server"}
    for hop in hops:
        if _answered(hop) in loud:
            hop["says"] = [say for say in hop["says"]
                           if not say.startswith("only the director answers for the VIP")]


def _answered(hop: Fields) -> str | None:
    """The address an ARP reply or a Neighbor Advertisement answers for, else None."""
    f = hop["wires"][0]["fields"]
    if hop["kind"] == "arp" and f["arp.op"] != "request":
        return str(f["arp.psrc"])
    if hop["kind"] == "ndp" and f["nd.type"] == "NA":
        return str(f["nd.target"])
    return None


def _first_syn(seen: Iterable[Fields], vip: str, port: int) -> Fields | None:
    for obs in seen:
        f = obs["fields"]
        if (obs["direction"] == "sent" and f.get("tcp.flags") == "S" and f["ip.dst"] == vip
                and f["tcp.dport"] == port and "outer.src" not in f):
            return obs
    return None


def _side(fields: Fields, client: tuple[str, int]) -> str | None:
    if (fields.get("ip.src"), fields.get("tcp.sport")) == client:
        return "client"
    if (fields.get("ip.dst"), fields.get("tcp.dport")) == client:
        return "server"
    return None


def _tcp_hops(seen: Sequence[Fields], client: tuple[str, int]) -> list[Fields]:
    """The connection's SYN, SYN-ACK, first request and response segments and FINs."""
    groups: dict[tuple[Any, ...], list[Fields]] = {}
    for obs in seen:
        f = obs["fields"]
        side = _side(f, client)
        if side is not None:
            key = (side, f.get("ip.id", f.get("ip.flow")), f["tcp.seq"], f["tcp.ack"],
                   f["tcp.flags"])
            groups.setdefault(key, []).append(obs)
    named: dict[tuple[Any, ...], list[str]] = {}
    for key, group in groups.items():
        for name in _names(key[0], group[0]["fields"]):
            if not any(name in names for names in named.values()):
                named.setdefault(key, []).append(name)
    return [{"packet": " + ".join(names), "kind": "tcp", "side": key[0],
             "wires": _first_copies(groups[key])}
            for key, names in sorted(named.items(), key=lambda kv: TCP_ORDER.index(kv[1][0]))]


def _names(side: str, fields: Fields) -> list[str]:
    flags, length = fields["tcp.flags"], fields["tcp.len"]
    names = []
    if flags == "S":
        names.append("SYN")
    elif flags == "SA":
        names.append("SYN-ACK")
    if length > 0:
        names.append("request" if side == "client" else "response")
    if "F" in flags:
        names.append(f"FIN from the {side}")
    return names


def _first_copies(group: Sequence[Fields], window: float | None = None) -> list[Fields]:
    """Each wire's first copy in each direction (a retransmission is not another hop)."""
    start = group[0]["time"]
    firsts: dict[tuple[str, str], Fields] = {}
    for obs in group:
        if window is not None and obs["time"] - start > window:
            break
        firsts.setdefault((obs["wire"], obs["direction"]), obs)
    return sorted(({**obs, "fields": dict(obs["fields"])} for obs in firsts.values()),
                  key=_order)


def _involved(hosts: Mapping[str, Mapping[str, Any]], hops: Sequence[Fields], vip: str,
              client_ip: str) -> set[str]:
    """The addresses of the hosts the connection crossed, the VIP and the client: of each
    host, those of the family its frames of the connection had on the wire (the outer header's
    for a tunnel), so a dual-stack lab's trace of an IPv6 connection tunnelled over IPv4 shows
    the ARP of the tunnel's hops and the NDP of the rest, and nothing of the hosts' other
    connections."""
    addresses = {vip, client_ip}
    for hop in hops:
        for obs in hop["wires"]:
            six = ":" in obs["fields"].get("outer.src", obs["fields"]["ip.src"])
            addresses |= {ip.split("/")[0] for ip in hosts[obs["host"]]["ip"]
                          if (":" in ip) == six}
    return addresses


def _arp_hops(seen: Sequence[Fields], involved: set[str], end: float) -> list[Fields]:
    """Each ARP request and reply between the hosts involved, up to the connection's end."""
    groups: dict[tuple[str, ...], list[Fields]] = {}
    for obs in seen:
        f = obs["fields"]
        if obs["time"] > end:
            break
        if "arp.op" in f and f["arp.psrc"] in involved and f["arp.pdst"] in involved:
            key = (f["arp.op"], f["arp.psrc"], f["arp.pdst"], f["arp.hwsrc"])
            groups.setdefault(key, []).append(obs)
    return [{"packet": f"ARP: who has {key[2]}?" if key[0] == "request" else
             f"ARP: {key[1]} is at {key[3]}", "kind": "arp",
             "wires": _first_copies(group, ARP_WINDOW)} for key, group in groups.items()]


def _ndp_hops(seen: Sequence[Fields], involved: set[str], end: float) -> list[Fields]:
    """Each Neighbor Solicitation and Advertisement between the hosts involved (their
    link-local addresses too), up to the connection's end."""
    groups: dict[tuple[str, ...], list[Fields]] = {}
    for obs in seen:
        f = obs["fields"]
        if obs["time"] > end:
            break
        if "nd.type" in f and f["nd.target"] in involved and f["nd.src"] in involved:
            if f["nd.type"] == "NS":
                key = ("NS", f["nd.src"], f["nd.target"], f["eth.src"])
            else:
                key = ("NA", f["nd.target"], f["nd.lladdr"] or f["eth.src"], f["eth.src"])
            groups.setdefault(key, []).append(obs)
    return [{"packet": f"NDP: who has {key[2]}?" if key[0] == "NS" else
             f"NDP: {key[1]} is at {key[2]}", "kind": "ndp",
             "wires": _first_copies(group, ARP_WINDOW)} for key, group in groups.items()]


def _mark_changes(wires: list[Fields], owners: Mapping[str, str]) -> None:
    previous: Fields | None = None
    for obs in wires:
        f = obs["fields"]
        f["eth.src_host"] = owner(owners, f["eth.src"])
        f["eth.dst_host"] = owner(owners, f["eth.dst"])
        obs["changed"] = [] if previous is None else changed(previous, f)
        previous = f


def changed(before: Fields, after: Fields) -> list[str]:
    """The fields that differ, appear or vanish between two copies of a packet."""
    keys = sorted((before.keys() | after.keys()) - {"eth.src_host", "eth.dst_host"})
    return [k for k in keys if before.get(k) != after.get(k)]


def _connection(hops: Sequence[Fields], hosts: Mapping[str, Mapping[str, Any]],
                client: tuple[str, int], vip: str, port: int) -> Fields:
    connection: Fields = {"client": _endpoint(client[0], client[1]),
                          "vip": _endpoint(vip, port), "real_server": None}
    syn = next((hop for hop in hops if hop["packet"].startswith("SYN")), None)
    if syn is not None:
        for obs in syn["wires"]:
            if hosts[obs["host"]]["role"] == "real_server" and obs["direction"] == "received":
                ip = _server_address(obs["fields"], hosts[obs["host"]], vip)
                connection["real_server"] = _endpoint(ip, obs["fields"]["tcp.dport"])
                connection["real_server_host"] = obs["host"]
    return connection


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _server_address(f: Fields, host: Mapping[str, Any], vip: str) -> str:
    """The real server's address the director sent to: the tunnel's outer destination, NAT's
    rewritten one, or (DR) the host's own address of the VIP's family."""
    if "outer.dst" in f:
        return str(f["outer.dst"])
    if f["ip.dst"] != vip:
        return str(f["ip.dst"])
    own = [a.split("/")[0] for a in host["ip"]]
    return next((a for a in own if a != vip and (":" in a) == (":" in vip)
                 and not a.startswith("fe80:")), next(a for a in own if a != vip))


# -- the plain-language lines ------------------------------------------------------------------

def explain_hop(hop: Fields, hosts: Mapping[str, Mapping[str, Any]],
                owners: Mapping[str, str], segments: Mapping[str, set[str]]) -> list[str]:
    """``segments``: each host's bridges, to know who could have heard an ARP request."""
    if hop["kind"] == "arp":
        return _explain_arp(hop, hosts, owners, segments)
    if hop["kind"] == "ndp":
        return _explain_ndp(hop, hosts, owners, segments)
    says = []
    wires = hop["wires"]
    for a, b in zip(wires, wires[1:], strict=False):
        if a["host"] == b["host"] and (a["direction"], b["direction"]) == ("received", "sent"):
            says.append(_explain_forward(hosts[a["host"]]["role"], a, b))
    last = wires[-1]
    f = last["fields"]
    whole = "/128" if ":" in f["ip.dst"] else "/32"
    if last["direction"] == "received" and "outer.src" in f:
        says.append(f"{last['host']} unwraps the {encapsulation(f)} packet{_unwrapped(f)}: its "
                    f"stack gets {f['ip.src']} → {f['ip.dst']} (the VIP it holds)")
    elif (hosts[last["host"]]["role"] == "real_server" and last["direction"] == "received"
          and f"{f['ip.dst']}{whole}" in hosts[last["host"]]["ip"]):
        says.append(f"{last['host']} takes a packet to {f['ip.dst']} as its own: it holds "
                    f"the VIP (on lo, as a {whole})")
    says.append(_explain_path(hop, hosts))
    return says


def encapsulation(f: Fields) -> str:
    """GUE or GRE (their headers say), else IP-in-IP, ip6ip6, 4in6 or 6in4: a tunnelled
    packet's outer and inner versions."""
    if "gue.proto" in f:
        return "GUE"
    if "gre.proto" in f:
        return "GRE"
    outer = 6 if ":" in f["outer.src"] else 4
    return ENCAPSULATIONS[(outer, 6 if ":" in f["ip.src"] else 4)]


def _tunnel_header(f: Fields) -> str:
    """GUE's UDP and GUE header or the GRE header, as the trace says it."""
    if "gue.proto" in f:
        csum = "" if f["outer.udp.csum"] else " (no checksum)"
        return (f"UDP {f['outer.udp.sport']} → {f['outer.udp.dport']}{csum} and a GUE header "
                f"(protocol {f['gue.proto']})")
    return f"a GRE header (protocol 0x{f['gre.proto']:04X}{', checksum' if f['gre.csum'] else ''})"


def _unwrapped(f: Fields) -> str:
    """What a GUE or GRE real server takes off, beyond the outer header ("" for the rest)."""
    if "gue.proto" in f:
        return (f" (UDP to its port {f['outer.udp.dport']}, the GUE header of protocol "
                f"{f['gue.proto']} off)")
    if "gre.proto" in f:
        checked = ", its checksum checked" if f["gre.csum"] else ""
        return f" (the GRE header of protocol 0x{f['gre.proto']:04X} off{checked})"
    return ""


def _outer_header(f: Fields) -> str:
    """The new header a TUN director put in front, as the trace says it."""
    name = encapsulation(f)
    if name == "GUE":
        return (f"a new IPv{6 if ':' in f['outer.src'] else 4} header {f['outer.src']} → "
                f"{f['outer.dst']}, {_tunnel_header(f)}")
    if name == "GRE":
        six = ":" in f["outer.src"]
        return (f"a new IPv{6 if six else 4} header {f['outer.src']} → {f['outer.dst']} "
                f"({'next header' if six else 'IP protocol'} 47) and {_tunnel_header(f)}")
    if ":" not in f["outer.src"]:
        if name == "IP-in-IP":
            return f"a new IP header {f['outer.src']} → {f['outer.dst']} (IP protocol 4)"
        return (f"a new IPv4 header {f['outer.src']} → {f['outer.dst']} (IP protocol 41: "
                f"IPv6 in IPv4, 6in4)")
    what = "41: ip6ip6" if name == "ip6ip6" else "4: IPv4 in IPv6, 4in6"
    return f"a new IPv6 header {f['outer.src']} → {f['outer.dst']} (next header {what})"


def _explain_forward(role: str, a: Fields, b: Fields) -> str:
    before, after = a["fields"], b["fields"]
    who = "the director" if role == "director" else f"the {role}" if role == "router" else a["host"]
    to = after["eth.dst_host"]
    ttl = "hop limit" if "ip.hlim" in after else "TTL"
    if "outer.src" in after and "outer.src" not in before:
        return (f"{who} wrapped the packet in {_outer_header(after)} and sent it to {to}; "
                f"inside, the packet still goes to {after['ip.dst']}: TUN")
    if (before["ip.dst"], before["tcp.dport"]) != (after["ip.dst"], after["tcp.dport"]):
        sums = "checksums" if ttl == "TTL" else "TCP checksum"
        return (f"{who} rewrote the destination {_endpoint(before['ip.dst'], before['tcp.dport'])}"
                f" → {_endpoint(after['ip.dst'], after['tcp.dport'])} (and the MACs, {ttl}, "
                f"{sums}): NAT")
    if (before["ip.src"], before["tcp.sport"]) != (after["ip.src"], after["tcp.sport"]):
        return (f"{who} rewrote the source {_endpoint(before['ip.src'], before['tcp.sport'])} → "
                f"{_endpoint(after['ip.src'], after['tcp.sport'])}, so the client sees the VIP "
                f"answer: NAT's way back")
    if role == "router":
        outer = "outer.src" in after
        limit = ("hop limit" if "outer.hlim" in after else "TTL") if outer else ttl
        layer = "outer header's " if outer else ""
        return (f"the router routed it: new MACs (to {to}), the {layer}{limit} − 1; "
                f"the IP addresses stay, as at every routed hop")
    return (f"{who} changed only the MACs (now to {to}) and the {ttl}; the IP addresses and "
            f"ports are as the client sent them: DR")


def _explain_path(hop: Fields, hosts: Mapping[str, Mapping[str, Any]]) -> str:
    path = list(dict.fromkeys(obs["host"] for obs in hop["wires"]))
    roles = {hosts[name]["role"] for name in path}
    line = "path: " + " → ".join(path)
    if hop.get("side") == "server":
        if "director" in roles:
            return f"{line}: the answer came back through the director"
        how = "through the router" if "router" in roles else "straight"
        return f"{line}: the answer went from {path[0]} {how} to the client: " \
               f"the director never saw it"
    return line


def _explain_arp(hop: Fields, hosts: Mapping[str, Mapping[str, Any]],
                 owners: Mapping[str, str], segments: Mapping[str, set[str]]) -> list[str]:
    first = hop["wires"][0]
    f = first["fields"]
    sender = owners.get(f["arp.hwsrc"], "?")
    if f["arp.op"] == "request":
        heard = [obs["host"] for obs in hop["wires"] if obs["direction"] == "received"]
        return [f"{sender} asks: who has {f['arp.pdst']}? tell {f['arp.psrc']}"
                + (f" (heard by {', '.join(heard)})" if heard else "")]
    says = [f"{sender} answers: {f['arp.psrc']} is at {f['arp.hwsrc']}"]
    heard = segments.get(sender, set())
    vips = [name for name, host in hosts.items() if host["role"] == "real_server"
            and f"{f['arp.psrc']}/32" in host["ip"] and segments.get(name, set()) & heard]
    if hosts.get(sender, {}).get("role") == "real_server" and f"{f['arp.psrc']}/32" in \
            hosts[sender]["ip"]:
        says.append(f"{sender} answered for the VIP: the client will send to {sender} "
                    f"directly and bypass the director (its arp_ignore is not 1)")
    elif vips:
        verb = "holds" if len(vips) == 1 else "hold"
        says.append(f"only the director answers for the VIP: {', '.join(vips)} {verb} it on "
                    f"lo, but arp_ignore=1 keeps {'it' if len(vips) == 1 else 'them'} quiet")
    return says


def _explain_ndp(hop: Fields, hosts: Mapping[str, Mapping[str, Any]],
                 owners: Mapping[str, str], segments: Mapping[str, set[str]]) -> list[str]:
    first = hop["wires"][0]
    f = first["fields"]
    sender = owners.get(f["eth.src"], "?")
    target = f["nd.target"]
    if f["nd.type"] == "NS":
        heard = [obs["host"] for obs in hop["wires"] if obs["direction"] == "received"]
        to = (f"to {f['nd.dst']}, {target}'s solicited-node multicast group"
              if f["nd.dst"].startswith("ff02::1:ff") else f"to {f['nd.dst']}")
        return [f"{sender} asks: who has {target}? tell {f['nd.src']} (a Neighbor Solicitation "
                f"{to})" + (f" (heard by {', '.join(heard)})" if heard else "")]
    mac = f["nd.lladdr"] or f["eth.src"]
    says = [f"{sender} answers: {target} is at {mac} (a Neighbor Advertisement"
            + (", from a router" if "R" in f.get("nd.flags", "") else "") + ")"]
    heard = segments.get(sender, set())
    vips = [name for name, host in hosts.items() if host["role"] == "real_server"
            and f"{target}/128" in host["ip"] and segments.get(name, set()) & heard]
    if hosts.get(sender, {}).get("role") == "real_server" and f"{target}/128" in \
            hosts[sender]["ip"]:
        says.append(f"{sender} answered for the VIP: the client will send to {sender} "
                    f"directly and bypass the director (it holds the VIP on a device that "
                    f"speaks NDP, not on lo)")
    elif vips:
        verb = "holds" if len(vips) == 1 else "hold"
        them = "its" if len(vips) == 1 else "their"
        says.append(f"only the director answers for the VIP: {', '.join(vips)} {verb} it on "
                    f"lo, but a Linux host answers a Neighbor Solicitation only for an address "
                    f"on the device it arrived on (ndisc_recv_ns), and {them} eth0 never joined "
                    f"the VIP's solicited-node group: IPv6 needs no arp_ignore")
    return says


# -- trace.txt ---------------------------------------------------------------------------------

def render(trace: Fields) -> str:
    connection = trace["connection"]
    if connection is None:
        return "trace: no connection to the VIP was captured\n"
    mode = f"{trace['mode']}, IPv6" if trace.get("family") == 6 else trace["mode"]
    lines = [f"trace ({mode}): connection {connection['client']} → "
             f"{connection['vip']}, served by {connection.get('real_server_host', '?')} "
             f"({connection['real_server']})",
             "  one line per wire it crossed; * marks what changed since the previous wire"]
    start = trace["hops"][0]["wires"][0]["time"] if trace["hops"] else 0.0
    width = max((len(f"{o['host']} {o['interface']}") for hop in trace["hops"]
                 for o in hop["wires"]), default=10)
    current, started = -1, set()
    for index, wires, last in runs(trace["hops"]):
        hop = trace["hops"][index]
        if index != current:
            lines += ["", hop["packet"] + (" (continued)" if index in started else "")]
            current = index
            started.add(index)
        lines += [_wire_line(obs, start, width) for obs in wires]
        if last:
            lines += [f"  => {line}" for line in hop["says"]]
    return "\n".join(lines) + "\n"


def runs(hops: Sequence[Fields]) -> list[tuple[int, list[Fields], bool]]:
    """Each hop's wires cut before every copy a host sent, the pieces in capture order: (the
    hop's index, its wires in the piece, whether it is the hop's last piece)."""
    pieces = []
    for index, hop in enumerate(hops):
        wires = hop["wires"]
        cuts = [i for i, obs in enumerate(wires) if i and obs["direction"] == "sent"]
        bounds = list(zip([0, *cuts], [*cuts, len(wires)], strict=True))
        for k, (a, b) in enumerate(bounds):
            pieces.append((wires[a]["time"], index, k, wires[a:b], k == len(bounds) - 1))
    pieces.sort(key=lambda p: p[:3])
    return [(index, wires, last) for _, index, _, wires, last in pieces]


def _wire_line(obs: Fields, start: float, width: int) -> str:
    f, marked = obs["fields"], set(obs["changed"])

    def m(key: str, text: str) -> str:
        return f"*{text}" if key in marked else text

    where = f"{obs['host']} {obs['interface']}".ljust(width)
    verb = "sends" if obs["direction"] == "sent" else "gets "
    parts = [f"  {(obs['time'] - start) * 1000:8.3f} ms  {where} {verb}",
             m("eth.src", f"{f['eth.src']}({f['eth.src_host']})") + " → "
             + m("eth.dst", f"{f['eth.dst']}({f['eth.dst_host']})")]
    if "arp.op" in f:
        parts.append(f"ARP who-has {f['arp.pdst']} tell {f['arp.psrc']}"
                     if f["arp.op"] == "request" else
                     f"ARP {f['arp.psrc']} is-at {f['arp.hwsrc']}")
        return "  ".join(parts)
    if "nd.type" in f:
        parts.append(f"NDP NS who-has {f['nd.target']} from {f['nd.src']} to {f['nd.dst']}"
                     if f["nd.type"] == "NS" else
                     f"NDP NA {f['nd.target']} is-at {f['nd.lladdr'] or f['eth.src']}"
                     + (f" [{f['nd.flags']}]" if f.get("nd.flags") else ""))
        return "  ".join(parts)
    if "outer.src" in f:
        if "outer.hlim" in f:
            limit, proto = m("outer.hlim", f"hlim {f['outer.hlim']}"), "nh"
        else:
            limit, proto = m("outer.ttl", f"ttl {f['outer.ttl']}"), "proto"
        parts.append(m("outer.src", "[outer " + f["outer.src"]) + " → "
                     + m("outer.dst", f["outer.dst"]) + " " + limit
                     + f" {proto} {f['outer.proto']}" + _tunnel_wire(f, m) + "]")
    if "ip.hlim" in f:
        parts.append(m("ip.src", f["ip.src"]) + " → " + m("ip.dst", f["ip.dst"]) + " "
                     + m("ip.hlim", f"hlim {f['ip.hlim']}") + " "
                     + m("ip.flow", f"flow {f['ip.flow']:#x}"))
    else:
        parts.append(m("ip.src", f["ip.src"]) + " → " + m("ip.dst", f["ip.dst"]) + " "
                     + m("ip.ttl", f"ttl {f['ip.ttl']}") + " " + m("ip.id", f"id {f['ip.id']}"))
    if "tcp.flags" in f:
        parts.append(m("tcp.sport", str(f["tcp.sport"])) + " → "
                     + m("tcp.dport", str(f["tcp.dport"])) + f" [{f['tcp.flags']}]"
                     + (f" len {f['tcp.len']}" if f["tcp.len"] else ""))
    return "  ".join(parts)


def _tunnel_wire(f: Fields, m: Callable[[str, str], str]) -> str:
    """GUE's UDP ports and GUE protocol, or GRE's protocol (and csum), in a wire's line."""
    if "gue.proto" in f:
        return (", udp " + m("outer.udp.sport", str(f["outer.udp.sport"])) + " → "
                + m("outer.udp.dport", str(f["outer.udp.dport"])) + ", "
                + m("gue.proto", f"gue proto {f['gue.proto']}"))
    if "gre.proto" in f:
        return ", " + m("gre.proto", f"gre proto 0x{f['gre.proto']:04X}") + (
            " " + m("gre.csum", "csum") if f["gre.csum"] else "")
    return ""


# -- what each layer of a host did, per event ----------------------------------------------------

FIELD_NAMES = {"eth.src": "src MAC", "eth.dst": "dst MAC", "ip.src": "src", "ip.dst": "dst",
               "ip.ttl": "TTL", "ip.hlim": "hop limit", "ip.id": "IP ID", "ip.flow": "flow label",
               "tcp.sport": "src port", "tcp.dport": "dst port", "outer.src": "outer src",
               "outer.dst": "outer dst", "outer.ttl": "outer TTL", "outer.hlim": "outer hop limit"}
"""A field's name for people, in the rewrites (old → new)."""
LAYER_RANK = {"L4": 7, "L3": 6, "GUE": 5, "GRE": 5, "L4 outer": 4, "L3 outer": 3, "ARP": 3,
              "NDP": 3, "L2": 2, "L1": 1}
"""A host's layers top-down (a tunnel's inner headers above its outer ones)."""
SEGMENT_DOES = {"SYN": "a new connection to its port {dport}",
                "SYN-ACK": "the answer to its SYN: the connection is established",
                "request": "the request, for the server on port {dport}",
                "response": "the response, for its socket",
                "FIN from the client": "the client closes its side",
                "FIN from the server": "the server closes its side"}


def rewrite(key: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """One field the sender changed, as "dst MAC a → b"."""
    return f"{FIELD_NAMES.get(key, key)} {before.get(key)} → {after.get(key)}"


class _Facts:
    """What the trace knows of its hosts, for the layers' decisions."""

    def __init__(self, trace: Mapping[str, Any]) -> None:
        self.hosts: Mapping[str, Mapping[str, Any]] = trace["hosts"]
        self.hops: Sequence[Fields] = trace["hops"]
        self.connection: Mapping[str, Any] = trace.get("connection") or {}
        self.service: Mapping[str, Any] = trace.get("service") or {}

    def role(self, host: str) -> str:
        return str(self.hosts.get(host, {}).get("role", ""))

    def holds(self, host: str, address: str) -> bool:
        return any(a.split("/")[0] == address for a in self.hosts.get(host, {}).get("ip", []))

    def owner(self, address: str) -> str | None:
        """Who holds an address (the director, for a VIP the real servers hold too)."""
        holders = [h for h in self.hosts if self.holds(h, address)]
        return next((h for h in holders if self.role(h) != "real_server"),
                    holders[0] if holders else None)

    def interface(self, host: str, mac: str) -> str:
        names = self.hosts.get(host, {}).get("interfaces", {})
        return next((name for name, own in names.items() if own == mac), "")

    def answer(self, host: str, address: str) -> str | None:
        """The MAC ``host`` answered ARP or NDP for ``address`` with, if it did."""
        for hop in self.hops:
            first = hop["wires"][0]
            if _answered(hop) == address and first["host"] == host \
                    and first["direction"] == "sent":
                f = first["fields"]
                return str(f.get("arp.hwsrc") or f.get("nd.lladdr") or f["eth.src"])
        return None

    def sends(self, host: str, packet: str) -> bool:
        return any(hop["packet"].startswith(packet) and hop["wires"][0]["host"] == host
                   and hop["wires"][0]["direction"] == "sent" for hop in self.hops)


def layers(trace: Mapping[str, Any], event: Mapping[str, Any]) -> list[Fields]:
    """Per host an event touches, the sender first, then each taker: ``{"host", "role",
    "in", "out", "layers"}``, ``in``/``out`` the wire indexes of the copy it took and the one
    it sent (or None), ``layers`` top-down ``{"layer", "in", "out"}``: what each layer did
    with the frame it took (read bottom-up) and how it made the one it sent (top-down)."""
    facts = _Facts(trace)
    hop = trace["hops"][event["hop"]]
    views = [_view(facts, hop, event.get("before"), event["sent"])]
    views += [_view(facts, hop, j, None) for j in event["taken"]]
    return views


def _view(facts: _Facts, hop: Fields, took: int | None, sent: int | None) -> Fields:
    wires = hop["wires"]
    taken = wires[took] if took is not None else None
    out = wires[sent] if sent is not None else None
    host = (out or taken or {}).get("host", "?")
    rows: dict[str, Fields] = {}
    for layer, text in _inbound(facts, hop, taken) if taken else []:
        rows.setdefault(layer, {"layer": layer, "in": None, "out": None})["in"] = text
    for layer, text in _outbound(facts, hop, taken, out) if out else []:
        rows.setdefault(layer, {"layer": layer, "in": None, "out": None})["out"] = text
    ordered = sorted(rows.values(), key=lambda row: -LAYER_RANK.get(row["layer"], 0))
    return {"host": host, "role": facts.role(host), "in": took, "out": sent, "layers": ordered}


def _ethertype(f: Fields) -> str:
    if "arp.op" in f:
        return "ARP"
    first = f.get("outer.src", f.get("ip.src", f.get("nd.src", "")))
    return "IPv6" if ":" in str(first) else "IPv4"


def _inbound(facts: _Facts, hop: Fields, obs: Fields) -> list[tuple[str, str]]:
    """Bottom-up: what each layer of the host that took ``obs`` did with it."""
    rows = [("L1", f"in on {obs['interface']}"), ("L2", _l2_in(facts, obs))]
    if hop["kind"] == "arp":
        rows.append(("ARP", _arp_in(facts, obs)))
    elif hop["kind"] == "ndp":
        rows.append(("NDP", _ndp_in(facts, obs)))
    else:
        rows += _tunnel_in(facts, obs) + _ip_in(facts, hop, obs)
    return rows


def _l2_in(facts: _Facts, obs: Fields) -> str:
    f, host = obs["fields"], obs["host"]
    dst, kind = f["eth.dst"], _ethertype(f)
    if dst == BROADCAST:
        return f"dst MAC {dst}: broadcast, every host on the segment takes it ({kind})"
    if dst.startswith("33:33:"):
        group = f" of {f['nd.dst']}" if "nd.dst" in f else ""
        return f"dst MAC {dst}: the multicast MAC{group}, flooded to every port ({kind})"
    if dst in facts.hosts.get(host, {}).get("mac", []):
        return f"dst MAC {dst} is its own ({obs['interface']}): take it ({kind})"
    return f"dst MAC {dst} is not its own: drop it"


def _arp_in(facts: _Facts, obs: Fields) -> str:
    f, host = obs["fields"], obs["host"]
    if f["arp.op"] != "request":
        return f"{f['arp.psrc']} is at {f['arp.hwsrc']}: into its ARP table"
    return _solicited(facts, host, obs["interface"], f["arp.pdst"], "is-at", "arp_ignore=1")


def _ndp_in(facts: _Facts, obs: Fields) -> str:
    f, host = obs["fields"], obs["host"]
    if f["nd.type"] != "NS":
        return f"{f['nd.target']} is at {f['nd.lladdr'] or f['eth.src']}: into its " \
               f"neighbour table"
    return _solicited(facts, host, obs["interface"], f["nd.target"],
                      "a Neighbor Advertisement, at", "Linux answers only for the device asked")


def _solicited(facts: _Facts, host: str, interface: str, asked: str, reply: str,
               why: str) -> str:
    """Who has ``asked``? as ``host`` decided it: answered, held but quiet, or not its own."""
    mac = facts.answer(host, asked)
    if mac is not None:
        return f"who has {asked}? its own address → it answers: {reply} {mac}"
    if facts.holds(host, asked):
        quiet = f" ({why})" if facts.role(host) == "real_server" else ""
        return f"who has {asked}? it holds {asked}, but not on {interface}: no answer{quiet}"
    return f"who has {asked}? not its address: no answer"


def _tunnel_in(facts: _Facts, obs: Fields) -> list[tuple[str, str]]:
    """A tunnelled packet's outer headers at the host that took it."""
    f, host = obs["fields"], obs["host"]
    if "outer.src" not in f:
        return []
    limit = f"hop limit {f['outer.hlim']}" if "outer.hlim" in f else f"TTL {f['outer.ttl']}"
    if not facts.holds(host, f["outer.dst"]):
        return [("L3 outer", f"dst {f['outer.dst']} is not its own: route it on ({limit}); "
                             f"what it carries is payload here")]
    rows = [("L3 outer", f"dst {f['outer.dst']} is its own, protocol {f['outer.proto']} "
                         f"({encapsulation(f)}) → unwrap")]
    if "gue.proto" in f:
        rows += [("L4 outer", f"UDP to port {f['outer.udp.dport']}: its GUE decapsulator's "
                              f"socket"),
                 ("GUE", f"protocol {f['gue.proto']} → the inner packet")]
    elif "gre.proto" in f:
        checked = ", its checksum checked" if f["gre.csum"] else ""
        rows.append(("GRE", f"protocol 0x{f['gre.proto']:04X}{checked} → the inner packet"))
    return rows


def _ip_in(facts: _Facts, hop: Fields, obs: Fields) -> list[tuple[str, str]]:
    f, host = obs["fields"], obs["host"]
    if "outer.src" in f and not facts.holds(host, f["outer.dst"]):
        return []
    limit = f"hop limit {f['ip.hlim']}" if "ip.hlim" in f else f"TTL {f['ip.ttl']}"
    here = _endpoint(f["ip.dst"], f["tcp.dport"])
    if facts.role(host) == "director" and here == facts.connection.get("vip"):
        return [("L3", f"dst {f['ip.dst']} is the VIP: pylvs reads the frame off the wire "
                       f"before the kernel"), ("L4", _virtual_service(facts, hop, obs))]
    if facts.role(host) == "director" and hop.get("side") == "server":
        return [("L3", f"dst {f['ip.dst']} is the client's, not its own"),
                ("L4", f"from {_endpoint(f['ip.src'], f['tcp.sport'])}: the answer of a "
                       f"connection in its table → the source goes back to the VIP (Masq)")]
    if facts.holds(host, f["ip.dst"]):
        vip = " (it holds the VIP)" if facts.role(host) == "real_server" and \
            here == facts.connection.get("vip") else ""
        return [("L3", f"dst {f['ip.dst']} is its own{vip}: accept"),
                ("L4", _segment_in(facts, hop, obs))]
    return [("L3", f"dst {f['ip.dst']} is not its own: route it on ({limit})")]


def _virtual_service(facts: _Facts, hop: Fields, obs: Fields) -> str:
    """The director's decision: a new connection scheduled, or one it already has."""
    f = obs["fields"]
    service = f"TCP {_endpoint(f['ip.dst'], f['tcp.dport'])} is a virtual service"
    chosen = _chosen(facts, hop, obs)
    if chosen is None:
        return f"{service}; no copy of this packet left the director"
    host, address = chosen
    how = facts.service.get("real_servers", {}).get(address, "")
    to = f"{host} ({address}{', ' + how if how else ''})"
    if f["tcp.flags"] == "S":
        scheduler = facts.service.get("scheduler")
        who = f"scheduler {scheduler}" if scheduler else "its scheduler"
        return f"{service}: a new connection → {who} chose {to}"
    client = _endpoint(f["ip.src"], f["tcp.sport"])
    return f"{service}: {client} is in its connection table → {to}"


def _chosen(facts: _Facts, hop: Fields, obs: Fields) -> tuple[str, str] | None:
    """The real server (host, address:port) the director sent ``obs``'s packet on to."""
    wires = hop["wires"]
    later = wires[wires.index(obs) + 1:]
    sent = next((w for w in later if w["host"] == obs["host"] and w["direction"] == "sent"),
                None)
    if sent is None:
        return None
    f = sent["fields"]
    if "outer.dst" in f:
        host = facts.owner(f["outer.dst"]) or f["eth.dst_host"]
        return host, _endpoint(f["outer.dst"], f["tcp.dport"])
    host = f["eth.dst_host"]
    if host not in facts.hosts:
        return None
    vip = obs["fields"]["ip.dst"]
    return host, _endpoint(_server_address(f, facts.hosts[host], vip), f["tcp.dport"])


def _segment_in(facts: _Facts, hop: Fields, obs: Fields) -> str:
    f = obs["fields"]
    segment = f"TCP {f['tcp.sport']} → {f['tcp.dport']} [{f['tcp.flags']}]" + (
        f", {f['tcp.len']} bytes" if f["tcp.len"] else "")
    does = [SEGMENT_DOES[name].format(dport=f["tcp.dport"])
            for name in hop["packet"].split(" + ") if name in SEGMENT_DOES]
    if hop["packet"].startswith("SYN") and hop.get("side") == "client" \
            and facts.sends(obs["host"], "SYN-ACK"):
        does.append("it answers with a SYN-ACK")
    return f"{segment}: {'; '.join(does)}" if does else segment


def _outbound(facts: _Facts, hop: Fields, taken: Fields | None, sent: Fields
              ) -> list[tuple[str, str]]:
    """Top-down: how the host made the frame it sent (from the one it took, if any)."""
    f = sent["fields"]
    last = [("L2", _l2_out(facts, taken, sent)), ("L1", f"out on {sent['interface']}")]
    if hop["kind"] == "arp":
        return [("ARP", _arp_out(f)), *last]
    if hop["kind"] == "ndp":
        return [("NDP", _ndp_out(f)), *last]
    if taken is None:
        return _originated(facts, hop, sent) + last
    return _forwarded(facts, taken, sent) + last


def _arp_out(f: Fields) -> str:
    if f["arp.op"] == "request":
        return f"who has {f['arp.pdst']}? tell {f['arp.psrc']}: it needs {f['arp.pdst']}'s MAC"
    return f"{f['arp.psrc']} is its own: is-at {f['arp.hwsrc']}, to {f['arp.pdst']}"


def _ndp_out(f: Fields) -> str:
    if f["nd.type"] == "NS":
        return f"Neighbor Solicitation {f['nd.src']} → {f['nd.dst']}: who has " \
               f"{f['nd.target']}? it needs its MAC"
    return f"Neighbor Advertisement {f['nd.src']} → {f['nd.dst']}: {f['nd.target']} is at " \
           f"{f['nd.lladdr'] or f['eth.src']}"


def _l2_out(facts: _Facts, taken: Fields | None, sent: Fields) -> str:
    f = sent["fields"]
    dst, who = f["eth.dst"], f["eth.dst_host"]
    if dst == BROADCAST:
        to = f"dst MAC {dst}: broadcast to every host on the segment"
    elif dst.startswith("33:33:"):
        to = f"dst MAC {dst}: the multicast MAC of {f.get('nd.dst', 'its group')}"
    else:
        to = f"dst MAC {dst} ({who})"
    own = f"src MAC {f['eth.src']} (its {sent['interface']})"
    if taken is not None:
        before = taken["fields"]
        if "eth.dst" in sent["changed"]:
            to = f"rewrite {rewrite('eth.dst', before, f)} ({who})"
        if "eth.src" in sent["changed"]:
            own = f"{rewrite('eth.src', before, f)} (its {sent['interface']})"
    return f"{to}; {own}"


def _originated(facts: _Facts, hop: Fields, sent: Fields) -> list[tuple[str, str]]:
    f = sent["fields"]
    limit = f"hop limit {f['ip.hlim']}" if "ip.hlim" in f else f"TTL {f['ip.ttl']}"
    nexthop = f["eth.dst_host"]
    route = (f"{f['ip.dst']} is on its link: straight to {nexthop}"
             if facts.holds(nexthop, f["ip.dst"]) else
             f"{f['ip.dst']} is not on its link: via {nexthop}, its gateway")
    segment = f"TCP {f['tcp.sport']} → {f['tcp.dport']} [{f['tcp.flags']}]" + (
        f", {f['tcp.len']} bytes" if f["tcp.len"] else "")
    return [("L4", f"{segment}: the {hop['packet']}"),
            ("L3", f"{f['ip.src']} → {f['ip.dst']}, {limit}; {route}")]


def _forwarded(facts: _Facts, taken: Fields, sent: Fields) -> list[tuple[str, str]]:
    """What a director or router changed, layer by layer, old → new."""
    before, after, changed = taken["fields"], sent["fields"], sent["changed"]
    rows = []
    if facts.role(sent["host"]) != "router":
        ports = [rewrite(k, before, after) for k in changed if k.startswith("tcp.")]
        rows.append(("L4", "rewrite " + ", ".join(ports) if ports else
                     f"ports kept: {after['tcp.sport']} → {after['tcp.dport']}"))
    inner = [rewrite(k, before, after) for k in changed if k.startswith("ip.")]
    kept = f"{after['ip.src']} → {after['ip.dst']}"
    if "outer.src" in after and "outer.src" not in before:
        rows.append(("L3 outer", f"wrap in {_outer_header(after)}"))
    elif "outer.src" in after:
        outer = [rewrite(k, before, after) for k in changed if k.startswith("outer.")]
        rows.append(("L3 outer", f"{after['outer.src']} → {after['outer.dst']} kept"
                     + (f"; {', '.join(outer)}" if outer else "")))
        return rows
    addresses = [c for c in inner if c.startswith(("src ", "dst "))]
    rows.append(("L3", ("rewrite " + ", ".join(inner)) if addresses else
                 f"{kept} kept" + (f"; {', '.join(inner)}" if inner else "")))
    return rows


def waiting(hops: Sequence[Fields]) -> None:
    """An ARP request or Neighbor Solicitation sent by a host that held a packet of the
    connection meanwhile, and sent it on to the MAC the answer gave: say so."""
    answers: dict[str, set[str]] = {}
    for hop in hops:
        if (address := _answered(hop)) is not None:
            f = hop["wires"][0]["fields"]
            answers.setdefault(address, set()).add(
                str(f.get("arp.hwsrc") or f.get("nd.lladdr") or f["eth.src"]))
    for hop in hops:
        first = hop["wires"][0]
        f = first["fields"]
        asked = f.get("arp.pdst") if f.get("arp.op") == "request" else \
            f.get("nd.target") if f.get("nd.type") == "NS" else None
        if asked is None or first["direction"] != "sent":
            continue
        held = _held(hops, first["host"], first["time"], answers.get(asked, set()))
        if held is not None:
            hop["says"].append(f"{first['host']} holds the {held} meanwhile: it sends it on to "
                               f"{asked}'s MAC once the answer comes")


def _held(hops: Sequence[Fields], host: str, when: float, macs: set[str]) -> str | None:
    """The packet ``host`` took before ``when`` and sent on after it to one of ``macs``."""
    for hop in hops:
        wires = hop["wires"]
        for a, b in zip(wires, wires[1:], strict=False):
            if (a["host"], a["direction"], b["host"], b["direction"]) == (
                    host, "received", host, "sent") and a["time"] < when < b["time"] \
                    and b["fields"]["eth.dst"] in macs:
                return str(hop["packet"])
    return None
