"""One connection, hop by hop: captured frames in, the trace's hops and its text out.

Sans-IO apart from ``read_pcap``: ``build`` takes each wire's frames as (time, bytes), the
hosts (addresses, MACs, roles) and the wires, and returns the manifest of trace.json; ``render``
turns it into trace.txt. A wire is one host's link into a bridge, captured at the bridge, so a
frame whose source MAC is the host's was sent by it and any other frame was sent to it.

The traced connection is the first SYN the client sends to the VIP. Its packets are told apart
by what no forwarding method rewrites (the innermost IP ID, TCP sequence and acknowledgement
numbers and flags), so the same packet is found on every wire it crossed, before and after the
director or the router changed it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

Fields = dict[str, Any]
BROADCAST = "ff:ff:ff:ff:ff:ff"
ARP_WINDOW = 1.0  # seconds: later copies of an ARP frame are a refresh, not this exchange
TCP_ORDER = ("SYN", "SYN-ACK", "request", "response", "FIN from the client",
             "FIN from the server")


def read_pcap(path: str) -> list[tuple[float, bytes]]:
    from scapy.utils import PcapReader
    with PcapReader(path) as reader:
        return [(float(pkt.time), bytes(pkt)) for pkt in reader]


def dissect(frame: bytes) -> Fields | None:
    """The L2/L3/L4 fields of an ARP or IPv4 frame (TUN: ``outer.*`` and the inner packet)."""
    eth = Ether(frame)
    fields: Fields = {"eth.src": eth.src, "eth.dst": eth.dst}
    if ARP in eth:
        arp = eth[ARP]
        fields.update({"arp.op": "request" if arp.op == 1 else "reply", "arp.psrc": arp.psrc,
                       "arp.hwsrc": arp.hwsrc, "arp.pdst": arp.pdst, "arp.hwdst": arp.hwdst})
        return fields
    if IP not in eth:
        return None
    ip = eth[IP]
    if ip.proto == 4 and isinstance(ip.payload, IP):
        fields.update({"outer.src": ip.src, "outer.dst": ip.dst, "outer.ttl": ip.ttl,
                       "outer.id": ip.id, "outer.proto": 4})
        ip = ip.payload
    fields.update({"ip.src": ip.src, "ip.dst": ip.dst, "ip.ttl": ip.ttl, "ip.id": ip.id,
                   "ip.proto": ip.proto})
    if isinstance(ip.payload, TCP):
        tcp = ip.payload
        fields.update({"tcp.sport": tcp.sport, "tcp.dport": tcp.dport,
                       "tcp.flags": str(tcp.flags), "tcp.seq": tcp.seq, "tcp.ack": tcp.ack,
                       "tcp.len": ip.len - ip.ihl * 4 - tcp.dataofs * 4})
    return fields


def mac_owners(hosts: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    owners = {BROADCAST: "broadcast", "00:00:00:00:00:00": "unknown"}
    for name, host in hosts.items():
        for mac in host["mac"]:
            owners[mac] = name
    return owners


def observations(hosts: Mapping[str, Mapping[str, Any]], wires: Sequence[Mapping[str, str]],
                 frames: Mapping[str, Sequence[tuple[float, bytes]]]) -> list[Fields]:
    """Every ARP and IPv4 frame on every wire, with who sent or got it there, in time order."""
    seen = []
    for wire in wires:
        own = set(hosts[wire["host"]]["mac"])
        for when, frame in frames.get(wire["file"], ()):
            fields = dissect(frame)
            if fields is None:
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
          port: int = 80) -> Fields:
    """The manifest of trace.json: hosts, captures, the traced connection and its hops."""
    seen = observations(hosts, wires, frames)
    trace: Fields = {"mode": mode, "hosts": dict(hosts), "captures": list(wires),
                     "connection": None, "hops": []}
    syn = _first_syn(seen, vip, port)
    if syn is None:
        return trace
    client = (syn["fields"]["ip.src"], syn["fields"]["tcp.sport"])
    hops = _tcp_hops(seen, client)
    end = max(obs["time"] for hop in hops for obs in hop["wires"])
    hops += _arp_hops(seen, _involved(hosts, hops, vip, client[0]), end)
    hops.sort(key=lambda hop: _order(hop["wires"][0]))
    owners = mac_owners(hosts)
    segments: dict[str, set[str]] = {}
    for wire in wires:
        segments.setdefault(wire["host"], set()).add(wire.get("bridge", ""))
    for hop in hops:
        _mark_changes(hop["wires"], owners)
        hop["says"] = explain_hop(hop, hosts, owners, segments)
    _no_false_quiet(hops, hosts, owners)
    trace["connection"] = _connection(hops, hosts, client, vip, port)
    trace["hops"] = hops
    return trace


def _no_false_quiet(hops: Sequence[Fields], hosts: Mapping[str, Mapping[str, Any]],
                    owners: Mapping[str, str]) -> None:
    """"Only the director answers for the VIP" is said of a reply only if no real server's
    reply for the same address is among the hops (a real server without arp_ignore answers
    too: the arp mistake)."""
    loud = {hop["wires"][0]["fields"]["arp.psrc"] for hop in hops
            if hop["kind"] == "arp" and hop["wires"][0]["fields"]["arp.op"] != "request"
            and hosts.get(owners.get(hop["wires"][0]["fields"]["arp.hwsrc"], ""), {}).get(
                "role") == "real_server"}
    for hop in hops:
        if hop["kind"] == "arp" and hop["wires"][0]["fields"].get("arp.psrc") in loud:
            hop["says"] = [say for say in hop["says"]
                           if not say.startswith("only the director answers for the VIP")]


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
            key = (side, f["ip.id"], f["tcp.seq"], f["tcp.ack"], f["tcp.flags"])
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
    """The addresses of the hosts the connection crossed, the VIP and the client."""
    names = {obs["host"] for hop in hops for obs in hop["wires"]}
    addresses = {vip, client_ip}
    for name in names:
        addresses |= {ip.split("/")[0] for ip in hosts[name]["ip"]}
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


def _mark_changes(wires: list[Fields], owners: Mapping[str, str]) -> None:
    previous: Fields | None = None
    for obs in wires:
        f = obs["fields"]
        f["eth.src_host"] = owners.get(f["eth.src"], "?")
        f["eth.dst_host"] = owners.get(f["eth.dst"], "?")
        obs["changed"] = [] if previous is None else changed(previous, f)
        previous = f


def changed(before: Fields, after: Fields) -> list[str]:
    """The fields that differ, appear or vanish between two copies of a packet."""
    keys = sorted((before.keys() | after.keys()) - {"eth.src_host", "eth.dst_host"})
    return [k for k in keys if before.get(k) != after.get(k)]


def _connection(hops: Sequence[Fields], hosts: Mapping[str, Mapping[str, Any]],
                client: tuple[str, int], vip: str, port: int) -> Fields:
    connection: Fields = {"client": f"{client[0]}:{client[1]}", "vip": f"{vip}:{port}",
                          "real_server": None}
    syn = next((hop for hop in hops if hop["packet"].startswith("SYN")), None)
    if syn is not None:
        for obs in syn["wires"]:
            if hosts[obs["host"]]["role"] == "real_server" and obs["direction"] == "received":
                ip = next(a.split("/")[0] for a in hosts[obs["host"]]["ip"]
                          if a.split("/")[0] != vip)
                connection["real_server"] = f"{ip}:{obs['fields']['tcp.dport']}"
                connection["real_server_host"] = obs["host"]
    return connection


# -- the plain-language lines ------------------------------------------------------------------

def explain_hop(hop: Fields, hosts: Mapping[str, Mapping[str, Any]],
                owners: Mapping[str, str], segments: Mapping[str, set[str]]) -> list[str]:
    """``segments``: each host's bridges, to know who could have heard an ARP request."""
    if hop["kind"] == "arp":
        return _explain_arp(hop, hosts, owners, segments)
    says = []
    wires = hop["wires"]
    for a, b in zip(wires, wires[1:], strict=False):
        if a["host"] == b["host"] and (a["direction"], b["direction"]) == ("received", "sent"):
            says.append(_explain_forward(hosts[a["host"]]["role"], a, b))
    last = wires[-1]
    f = last["fields"]
    if last["direction"] == "received" and "outer.src" in f:
        says.append(f"{last['host']} unwraps the IP-in-IP packet: its stack gets "
                    f"{f['ip.src']} → {f['ip.dst']} (the VIP it holds)")
    elif (hosts[last["host"]]["role"] == "real_server" and last["direction"] == "received"
          and f"{f['ip.dst']}/32" in hosts[last["host"]]["ip"]):
        says.append(f"{last['host']} takes a packet to {f['ip.dst']} as its own: it holds "
                    f"the VIP (on lo, as a /32)")
    says.append(_explain_path(hop, hosts))
    return says


def _explain_forward(role: str, a: Fields, b: Fields) -> str:
    before, after = a["fields"], b["fields"]
    who = "the director" if role == "director" else f"the {role}" if role == "router" else a["host"]
    to = after["eth.dst_host"]
    if "outer.src" in after and "outer.src" not in before:
        return (f"{who} wrapped the packet in a new IP header {after['outer.src']} → "
                f"{after['outer.dst']} (IP protocol 4) and sent it to {to}; inside, the packet "
                f"still goes to {after['ip.dst']}: TUN")
    if (before["ip.dst"], before["tcp.dport"]) != (after["ip.dst"], after["tcp.dport"]):
        return (f"{who} rewrote the destination {before['ip.dst']}:{before['tcp.dport']} → "
                f"{after['ip.dst']}:{after['tcp.dport']} (and the MACs, TTL, checksums): NAT")
    if (before["ip.src"], before["tcp.sport"]) != (after["ip.src"], after["tcp.sport"]):
        return (f"{who} rewrote the source {before['ip.src']}:{before['tcp.sport']} → "
                f"{after['ip.src']}:{after['tcp.sport']}, so the client sees the VIP answer: "
                f"NAT's way back")
    if role == "router":
        layer = "outer header's " if "outer.src" in after else ""
        return (f"the router routed it: new MACs (to {to}), the {layer}TTL − 1; "
                f"the IP addresses stay, as at every routed hop")
    return (f"{who} changed only the MACs (now to {to}) and the TTL; the IP addresses and "
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


# -- trace.txt ---------------------------------------------------------------------------------

def render(trace: Fields) -> str:
    connection = trace["connection"]
    if connection is None:
        return "trace: no connection to the VIP was captured\n"
    lines = [f"trace ({trace['mode']}): connection {connection['client']} → "
             f"{connection['vip']}, served by {connection.get('real_server_host', '?')} "
             f"({connection['real_server']})",
             "  one line per wire it crossed; * marks what changed since the previous wire"]
    start = trace["hops"][0]["wires"][0]["time"] if trace["hops"] else 0.0
    width = max((len(f"{o['host']} {o['interface']}") for hop in trace["hops"]
                 for o in hop["wires"]), default=10)
    for hop in trace["hops"]:
        lines.append("")
        lines.append(hop["packet"])
        for obs in hop["wires"]:
            lines.append(_wire_line(obs, start, width))
        lines += [f"  => {line}" for line in hop["says"]]
    return "\n".join(lines) + "\n"


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
    if "outer.src" in f:
        parts.append(m("outer.src", "[outer " + f["outer.src"]) + " → "
                     + m("outer.dst", f["outer.dst"]) + " "
                     + m("outer.ttl", f"ttl {f['outer.ttl']}") + " proto 4]")
    parts.append(m("ip.src", f["ip.src"]) + " → " + m("ip.dst", f["ip.dst"]) + " "
                 + m("ip.ttl", f"ttl {f['ip.ttl']}") + " " + m("ip.id", f"id {f['ip.id']}"))
    if "tcp.flags" in f:
        parts.append(m("tcp.sport", str(f["tcp.sport"])) + " → "
                     + m("tcp.dport", str(f["tcp.dport"])) + f" [{f['tcp.flags']}]"
                     + (f" len {f['tcp.len']}" if f["tcp.len"] else ""))
    return "  ".join(parts)
