"""`pylvs lab compare`: the same request through DR, NAT and TUN, side by side.

One mixed lab (rs1 DR, rs2 NAT, rs3 TUN behind one director and one virtual service, rr), every
wire captured, the same curl sent once per method: rr gives each real server, so each method,
one connection. The captures are split per connection (a connection's trace is built from every
frame but the TCP segments of the client's other connections, so the ARP that came before it
stays) into three traces (pylvs.lab.trace), one per method. The table says, for the client's
SYN and for its answer (the SYN-ACK), what the director did to it: each field as the director
took it and as it sent it on, marked where the trace's own ``changed`` list says it changed.
The page (compare_page) draws the three sequence diagrams side by side above that table.

Sans-IO but ``command``, ``run`` and ``write``: ``split`` and ``table`` take what capture and
trace give, ``render`` returns the table as text.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pylvs.lab import trace

METHODS = ("dr", "nat", "tun")
PACKETS = ("SYN", "SYN-ACK")
TITLES = {"SYN": "the client's SYN", "SYN-ACK": "the answer, the SYN-ACK"}
TUNNEL = ("outer.", "gue.", "gre.")
"""The fields of the header a TUN director puts in front (pylvs.lab.trace's names)."""
NO_DIRECTOR = "—"

Fields = dict[str, Any]
Frames = Mapping[str, Sequence[tuple[float, bytes]]]


def client_connections(frames: Frames, wires: Sequence[Mapping[str, str]], vip: str,
                       port: int, gue_ports: Collection[int] = ()) -> list[tuple[str, int]]:
    """(address, port) of each connection the client opened to ``vip``:``port``, in order:
    the SYNs on the client's own wire."""
    found: list[tuple[str, int]] = []
    for wire in wires:
        if wire["host"] != "client":
            continue
        for _, frame in frames.get(wire["file"], ()):
            f = trace.dissect(frame, gue_ports) or {}
            if (f.get("tcp.flags") == "S" and f.get("ip.dst") == vip
                    and f.get("tcp.dport") == port and "outer.src" not in f
                    and (f["ip.src"], f["tcp.sport"]) not in found):
                found.append((f["ip.src"], f["tcp.sport"]))
    return found


def client_port(fields: Mapping[str, Any], client_ip: str) -> int | None:
    """The client's port of a TCP segment to or from ``client_ip`` (the inner packet's in a
    tunnel), else None."""
    if "tcp.flags" not in fields:
        return None
    if fields["ip.src"] == client_ip:
        return int(fields["tcp.sport"])
    if fields["ip.dst"] == client_ip:
        return int(fields["tcp.dport"])
    return None


def only(frames: Frames, client: tuple[str, int], gue_ports: Collection[int] = ()
         ) -> dict[str, list[tuple[float, bytes]]]:
    """Every frame but the TCP segments of the client's other connections."""
    kept: dict[str, list[tuple[float, bytes]]] = {}
    for file, timed in frames.items():
        kept[file] = [(when, frame) for when, frame in timed
                      if client_port(trace.dissect(frame, gue_ports) or {}, client[0])
                      in (None, client[1])]
    return kept


def split(modes: Mapping[str, str], hosts: Mapping[str, Mapping[str, Any]],
          wires: Sequence[Mapping[str, str]], frames: Frames, vip: str, port: int,
          family: int = 4, gue_ports: Collection[int] = ()) -> dict[str, Fields]:
    """One trace per method (``modes``: real server host → dr, nat or tun): of the first of
    the client's connections that method's real server took, its ``mode`` the method."""
    found: dict[str, Fields] = {}
    for client in client_connections(frames, wires, vip, port, gue_ports):
        built = trace.build("mixed", hosts, wires, only(frames, client, gue_ports), vip, port,
                            family=family, gue_ports=gue_ports)
        method = modes.get((built["connection"] or {}).get("real_server_host", ""))
        if method is not None and method not in found:
            found[method] = {**built, "mode": method}
    return {method: found[method] for method in METHODS if method in found}


@dataclass(frozen=True)
class Cell:
    """One field of one method's packet: as the director took it and as it sent it on."""

    before: str
    after: str
    changed: bool
    before_host: str = ""
    after_host: str = ""
    """For a MAC: whose it is."""

    def text(self) -> str:
        return f"* {self.before} → {self.after}" if self.changed else self.before


@dataclass(frozen=True)
class Section:
    """One packet (SYN or SYN-ACK) in each method: its path, the director's wires it came in
    and went out on, and per field a cell (None where the director never saw the packet)."""

    packet: str
    paths: dict[str, str]
    wires: dict[str, str | None]
    rows: list[tuple[str, dict[str, Cell | None]]]


def tcp_hop(built: Mapping[str, Any], packet: str) -> Fields | None:
    """The trace's hop of ``packet`` (SYN, SYN-ACK), alone or first in a combined name."""
    return next((hop for hop in built["hops"] if hop["kind"] == "tcp"
                 and hop["packet"].split(" + ")[0] == packet), None)


def at_director(hop: Mapping[str, Any]) -> tuple[Fields, Fields, list[str]] | None:
    """The hop's copy as the director took it, as it sent it on, and what changed between
    them (the trace's own ``changed`` of the copy sent, recomputed only if another copy came
    between); None when the director never forwarded it."""
    wires = hop["wires"]
    got = next((i for i, w in enumerate(wires)
                if w["host"] == "director" and w["direction"] == "received"), None)
    if got is None:
        return None
    sent = next((j for j in range(got + 1, len(wires)) if wires[j]["host"] == "director"
                 and wires[j]["direction"] == "sent"), None)
    if sent is None:
        return None
    before, after = wires[got], wires[sent]
    changed = (list(after.get("changed", [])) if sent == got + 1
               else trace.changed(before["fields"], after["fields"]))
    return before, after, changed


def path(hop: Mapping[str, Any]) -> str:
    """The hosts the hop went through, in order."""
    hosts: list[str] = []
    for wire in hop["wires"]:
        if not hosts or hosts[-1] != wire["host"]:
            hosts.append(wire["host"])
    return " → ".join(hosts)


def outer_text(f: Mapping[str, Any]) -> str:
    """The header a TUN director put in front, as one cell says it; "none" without one."""
    if "outer.src" not in f:
        return "none"
    hop = f"hlim {f['outer.hlim']}" if "outer.hlim" in f else f"ttl {f['outer.ttl']}"
    text = f"outer {f['outer.src']} → {f['outer.dst']} {hop} proto {f['outer.proto']}"
    if "gue.proto" in f:
        text += (f", udp {f['outer.udp.sport']} → {f['outer.udp.dport']}, "
                 f"gue proto {f['gue.proto']}")
    if "gre.proto" in f:
        text += f", gre proto 0x{f['gre.proto']:04X}" + (" csum" if f.get("gre.csum") else "")
    return f"[{text}]"


def field_rows(family: int) -> tuple[str, ...]:
    ttl = "ip.hlim" if family == 6 else "ip.ttl"
    return ("eth.src", "eth.dst", "ip.src", "ip.dst", "tcp.sport", "tcp.dport", ttl, "outer",
            "other")


def cell(row: str, before: Mapping[str, Any], after: Mapping[str, Any],
         changed: Collection[str], rows: Collection[str]) -> Cell:
    """``row``'s cell: a field, the tunnel's header ("outer") or every other change
    ("other")."""
    if row == "outer":
        return Cell(outer_text(before), outer_text(after),
                    any(k.startswith(TUNNEL) for k in changed))
    if row == "other":
        rest = [k for k in changed if k not in rows and not k.startswith(TUNNEL)]
        return Cell(", ".join(f"{k} {before.get(k, 'none')}" for k in rest) or "none",
                    ", ".join(f"{k} {after.get(k, 'none')}" for k in rest) or "none",
                    bool(rest))
    hosts = (before.get(f"{row}_host", ""), after.get(f"{row}_host", ""))
    return Cell(str(before.get(row, "none")), str(after.get(row, "none")), row in changed,
                *hosts)


def section(traces: Mapping[str, Mapping[str, Any]], packet: str) -> Section:
    """``packet`` in each method's trace, at the director."""
    family = next(iter(traces.values())).get("family", 4) if traces else 4
    rows = field_rows(family)
    paths: dict[str, str] = {}
    wires: dict[str, str | None] = {}
    cells: dict[str, dict[str, Cell | None]] = {row: {} for row in rows}
    for method, built in traces.items():
        hop = tcp_hop(built, packet)
        seen = None if hop is None else at_director(hop)
        paths[method] = "not seen" if hop is None else path(hop)
        wires[method] = (None if seen is None
                         else f"{seen[0]['interface']} → {seen[1]['interface']}")
        for row in rows:
            cells[row][method] = None if seen is None else cell(
                row, seen[0]["fields"], seen[1]["fields"], seen[2], rows)
    return Section(packet, paths, wires, [(row, cells[row]) for row in rows])


def table(traces: Mapping[str, Mapping[str, Any]]) -> list[Section]:
    """The director's rewrite of the client's SYN and of its answer, per method."""
    return [section(traces, packet) for packet in PACKETS]


def server_of(built: Mapping[str, Any]) -> str:
    connection = built.get("connection") or {}
    return f"{connection.get('real_server_host', '?')} ({connection.get('real_server', '?')})"


def says(built: Mapping[str, Any], packet: str = "SYN") -> list[str]:
    """What the trace says of the director's part in ``packet``."""
    hop = tcp_hop(built, packet)
    return [] if hop is None else [s for s in hop.get("says", []) if "the director" in s]


def render(traces: Mapping[str, Mapping[str, Any]], sections: Sequence[Section]) -> str:
    """The table as text: a column per method, * before each field the director changed."""
    methods = list(traces)
    heads = [f"{m.upper()}: {server_of(traces[m])}" for m in methods]
    rows: list[tuple[str, Sequence[str]]] = []
    for part in sections:
        rows += [(TITLES[part.packet], heads), ("path", [part.paths[m] for m in methods]),
                 ("director's wires", [part.wires[m] or "never sees it" for m in methods])]
        rows += [(name, [NO_DIRECTOR if c[m] is None else c[m].text() for m in methods])
                 for name, c in part.rows]
        rows.append(("", [""] * len(methods)))
    lines = _columns(rows)
    lines.append("the trace says:")
    lines += [f"  {m.upper()}: {s}" for m in methods for s in says(traces[m])]
    lines.append(f"MACs: {macs(traces, sections)}")
    return "\n".join(lines) + "\n"


def _columns(rows: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    widths = [max(len(r[0]) for r in rows)]
    widths += [max(len(r[1][i]) for r in rows) for i in range(len(rows[0][1]))]
    return [("  " + "  ".join(text.ljust(w) for text, w in zip([name, *cells], widths,
                                                                strict=True))).rstrip()
            for name, cells in rows]


def macs(traces: Mapping[str, Mapping[str, Any]], sections: Sequence[Section]) -> str:
    """Whose each MAC in the table is."""
    owners: dict[str, str] = {}
    for built in traces.values():
        for name, host in built["hosts"].items():
            named = {mac: f"{name} {ifname}"
                     for ifname, mac in host.get("interfaces", {}).items()}
            for mac in host.get("mac", []):
                owners.setdefault(mac, named.get(mac, name))
    used = {mac for part in sections for row, cells in part.rows if row.startswith("eth.")
            for c in cells.values() if c is not None for mac in (c.before, c.after)}
    return ", ".join(f"{owners[m]} {m}" for m in sorted(used, key=lambda m: (owners.get(m, m), m))
                     if m in owners)


def write(directory: str, traces: Mapping[str, Fields]) -> tuple[str, list[str]]:
    """Each method's trace (trace-METHOD.json, .txt, .html, .svg), compare.html and
    compare.txt into ``directory``; returns the table as text and the files written."""
    from pylvs.lab import compare_page, trace_page
    sections = table(traces)
    text = render(traces, sections)
    files: dict[str, str] = {}
    for method, built in traces.items():
        files[f"trace-{method}.json"] = json.dumps(built, indent=1) + "\n"
        files[f"trace-{method}.txt"] = trace.render(built)
        files[f"trace-{method}.html"] = trace_page.page(built)
        files[f"trace-{method}.svg"] = trace_page.sequence_svg(built)
    files["compare.html"] = compare_page.page(traces, sections)
    files["compare.txt"] = text
    for name, content in files.items():
        with open(os.path.join(directory, name), "w") as fh:
            fh.write(content)
    return text, list(files)


def missing(traces: Iterable[str]) -> list[str]:
    return [m for m in METHODS if m not in set(traces)]


def command(args: argparse.Namespace) -> int:
    """`pylvs lab compare [--ipv6] [--tun-type T] [--out DIR]`, from commands.lab (root
    checked): the arguments, then the run; a fresh directory goes if the run does not end."""
    if (refused := _refused(args)) is not None:
        print(f"pylvs lab: {refused}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    directory, fresh = _out_dir(args.out)
    done = False
    try:
        rc = run(directory, 6 if args.ipv6 else 4, args.tun_type)
        done = True
        return rc
    except KeyboardInterrupt:
        print("pylvs lab compare: interrupted; the lab was removed", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError, OSError, subprocess.CalledProcessError) as exc:
        print(f"pylvs lab compare: {exc}; the lab was removed", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if fresh and not done:  # half a comparison in a directory of our own
            shutil.rmtree(directory, ignore_errors=True)


def _refused(args: argparse.Namespace) -> str | None:
    if args.mode != "compare":
        return "--out goes with compare (pylvs lab compare --out DIR)"
    others = (args.ha or args.keep or args.explain or args.mistake or args.trace is not None
              or args.name is not None or args.servers != 3 or args.requests != 9
              or args.scheduler != "rr")
    if others:
        return ("compare takes --ipv6, --tun-type and --out only (its lab is fixed: rs1 DR, "
                "rs2 NAT, rs3 TUN, rr, one request through each)")
    if not shutil.which("tcpdump"):
        return "compare needs tcpdump (apt-get install tcpdump)"
    return None


def _out_dir(arg: str | None) -> tuple[str, bool]:
    """--out DIR, made if missing; without it a fresh one under /tmp. Returns it and whether
    this run made it fresh."""
    if arg is None:
        return tempfile.mkdtemp(prefix="pylvs-compare-", dir="/tmp"), True
    os.makedirs(arg, exist_ok=True)
    return os.path.abspath(arg), False


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(directory: str, family: int = 4, tun_type: str = "ipip") -> int:
    """The mixed lab, its wires captured into ``directory``, one request per method; then,
    the lab removed, the traces, the page and the table."""
    from pylvs.lab.topology import TUN_PORTS, Lab
    with Lab(servers=3, mode="mixed", family=family, tun_type=tun_type) as lab:
        modes = dict(zip(lab.server_names, lab.server_modes, strict=True))
        print(f"lab compare ({lab.label}, {tun_type}): client {lab.client_ip}, director "
              f"{lab.director_ip}, VIP {lab.vip}, rr over "
              + ", ".join(f"{n} {m.upper()} ({ip})" for (n, m), ip
                          in zip(modes.items(), lab.server_ips, strict=True)))
        print(f"  {lab.where()}", flush=True)
        lab.setup()
        hosts, wires, target = _capture_requests(lab, directory)
    frames = {w["file"]: trace.read_pcap(os.path.join(directory, w["file"])) for w in wires}
    gue_ports = (TUN_PORTS["gue"],) if tun_type == "gue" else ()
    traces = split(modes, hosts, wires, frames, target.vip, target.port, family, gue_ports)
    if lost := missing(traces):
        raise RuntimeError(f"no traced connection went through {', '.join(lost)}")
    text, files = write(directory, traces)
    print(f"\nat the director, as it took each packet and as it sent it on (* changed):\n"
          f"{text}")
    print(f"compare written to {directory}: compare.html (open it in a browser), "
          + ", ".join([w["file"] for w in wires] + [f for f in files if f != "compare.html"]))
    return 0


def _capture_requests(lab: Any, directory: str) -> tuple[dict[str, dict[str, object]],
                                                          list[dict[str, str]], Any]:
    """Every wire captured while the client sends the same request once per method."""
    from pylvs.lab import capture, demo
    from pylvs.lab.topology import lab_config
    captures = capture.Captures(lab, directory)
    director = None
    try:
        lab.configure_real_servers()
        lab.start_http_servers()
        director = demo.DirectorProcess(lab, lab_config(lab, "rr"))
        target = lab.traced_target()
        typed = f"curl {'-6 -g ' if target.family == 6 else ''}{target.url()}"
        for number in range(1, len(METHODS) + 1):
            print(f"request {number:3d}: {typed} -> {lab.curl('/', target).strip()}",
                  flush=True)
        hosts = capture.describe_hosts(lab)  # while the director holds the VIP
        return hosts, captures.manifest(), target
    finally:
        captures.stop()
        if director is not None:
            director.stop()
