"""A trace (pylvs.lab.trace's dict, as in trace.json) drawn: the lab's topology and a sequence
diagram of the traced connection, as one self-contained page (inline CSS, SVG and script;
nothing fetched) and as an SVG of the diagram alone, for slides (its own title, legend and
white background).

The diagram has a lifeline per host and a row per event (trace.events: each frame a host put
on its wire, in capture order): an arrow from the sender to the host that took it, or for a
broadcast or multicast a bus with a drop into every host on the segment; above it the packet
(and the tunnel it travels in), beside it the values on the wire (MACs, IPs and ports, the
outer header in TUN, the ARP or NDP question and answer), those the sender rewrote in red, and
the rewrite itself old → new. Capture noise left out of the trace is counted under it.

The page steps through the events (buttons, keys, ``?step=N``), draws the current one on the
topology, and shows per host the layers' decisions (trace.layers) and the frame it took and
the one it sent, field by field. Its script keeps the events and the step state in one object,
``window.pylvsTrace``, that other parts (a challenge mode) can extend. Pure: strings in, out.
"""

from __future__ import annotations

import html
import json
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from pylvs.lab import trace as tracing
from pylvs.lab.trace import encapsulation

ROLE_ORDER = {"client": 0, "router": 1, "director": 2, "real_server": 3}
COLOURS = {"client": "#2b6cb0", "director": "#c05621", "router": "#6b46c1",
           "real_server": "#2f855a"}
REWRITTEN, PLAIN = "#c53030", "#1a202c"
MONO, SANS = 6.7, 6.4  # px per character at 11px: monospace, sans-serif (a little generous)
GUTTER, MIN_COLUMN, LINE = 110, 150, 14
BROADCASTS = ("ff:ff:ff:ff:ff:ff", "33:33:")
NOISE_WORDS = {"DAD": "DAD probe", "router solicitation": "router solicitation",
               "router advertisement": "router advertisement"}
"""The noise kinds that take a plural (IGMP and MLD do not)."""

Trace = Mapping[str, Any]
Segment = tuple[str, bool]  # text, rewritten by the sender


def hosts_in_order(trace: Trace) -> list[str]:
    """Client, router, director, real servers: the order of a frame's way in."""
    seen = {w["host"] for hop in trace["hops"] for w in hop["wires"]}
    hosts = trace["hosts"]
    return sorted((h for h in hosts if h in seen),
                  key=lambda h: (ROLE_ORDER.get(hosts[h]["role"], 9), h))


def tunnel(fields: Mapping[str, Any]) -> str | None:
    """The tunnel a frame travels in, as its arrow says it: IP-in-IP, ip6ip6, 4in6, 6in4,
    "GUE (UDP 6080)", "GRE" or "GRE with checksum"; None outside a tunnel."""
    if "outer.src" not in fields:
        return None
    name = encapsulation(fields)
    if name == "GUE":
        return f"GUE (UDP {fields['outer.udp.dport']})"
    if name == "GRE" and fields.get("gre.csum"):
        return "GRE with checksum"
    return name


# -- the events, as rows -------------------------------------------------------------------------

def event_rows(trace: Trace) -> list[dict[str, Any]]:
    """trace.events with what the diagram and the page show of each: the hosts, the label,
    the values on the wire, the rewrites old → new, each host's layers."""
    events = trace.get("events") or tracing.events(trace["hops"])
    start = min((w["time"] for hop in trace["hops"] for w in hop["wires"]), default=0.0)
    return [_row(trace, n, event, start) for n, event in enumerate(events)]


def _row(trace: Trace, n: int, event: Mapping[str, Any], start: float) -> dict[str, Any]:
    hop = trace["hops"][event["hop"]]
    wires = hop["wires"]
    sent = wires[event["sent"]]
    f = sent["fields"]
    previous = wires[event["sent"] - 1]["fields"] if event["sent"] else {}
    return {"n": n, "hop": event["hop"], "sent": event["sent"], "taken": list(event["taken"]),
            "before": event.get("before"), "time": event["time"],
            "ms": round((event["time"] - start) * 1000, 3), "kind": hop["kind"],
            "packet": hop["packet"], "src": sent["host"], "wire": sent["wire"],
            "dst": [wires[j]["host"] for j in event["taken"]],
            "wires": [wires[j]["wire"] for j in event["taken"]],
            "broadcast": f.get("eth.dst", "").startswith(BROADCASTS),
            "tunnel": tunnel(f), "label": label(hop, f),
            "lines": frame_lines(f, sent.get("changed", [])),
            "rewrites": rewrites(previous, f, sent.get("changed", [])),
            "layers": tracing.layers(trace, event)}


def label(hop: Mapping[str, Any], f: Mapping[str, Any]) -> str:
    """What an arrow says above it: the packet, its tunnel, broadcast or multicast."""
    if hop["kind"] == "arp":
        text = f"ARP who-has {f['arp.pdst']}" if f["arp.op"] == "request" else \
            f"ARP {f['arp.psrc']} is-at"
    elif hop["kind"] == "ndp":
        text = f"NDP NS who-has {f['nd.target']}" if f["nd.type"] == "NS" else \
            f"NDP NA {f['nd.target']} is-at"
    else:
        name = tunnel(f)
        text = hop["packet"] + (f" in {name}" if name else "")
    dst = f.get("eth.dst", "")
    return text + (" (broadcast)" if dst == BROADCASTS[0] else
                   " (multicast)" if dst.startswith(BROADCASTS[1]) else "")


def frame_lines(f: Mapping[str, Any], changed: Sequence[str]) -> list[list[Segment]]:
    """The values on the wire, a line per header: [(text, rewritten), ...]."""
    marked = set(changed)

    def v(key: str, text: object) -> Segment:
        return str(text), key in marked

    lines = [[("eth   ", False), v("eth.src", f"{f['eth.src']} ({f['eth.src_host']})"),
              (" → ", False), v("eth.dst", f"{f['eth.dst']} ({f['eth.dst_host']})")]]
    if "arp.op" in f:
        lines.append([("arp   ", False), (f"who-has {f['arp.pdst']} tell {f['arp.psrc']}"
                                          if f["arp.op"] == "request" else
                                          f"{f['arp.psrc']} is-at {f['arp.hwsrc']}", False)])
        return lines
    if "nd.type" in f:
        answer = f"NA {f['nd.target']} is-at {f['nd.lladdr'] or f['eth.src']}" + (
            f" [{f['nd.flags']}]" if f.get("nd.flags") else "")
        lines += [[("ipv6  ", False), (f"{f['nd.src']} → {f['nd.dst']}", False)],
                  [("ndp   ", False), (f"NS who-has {f['nd.target']}"
                                       if f["nd.type"] == "NS" else answer, False)]]
        return lines
    if "outer.src" in f:
        lines.append([("outer ", False), v("outer.src", f["outer.src"]), (" → ", False),
                      v("outer.dst", f["outer.dst"]), (" ", False), _limit(f, "outer", v),
                      (f"  {_carries(f)}", False)])
    if "ip.src" in f:
        lines.append([("ip    ", False), *_end(f, "src", v), (" → ", False),
                      *_end(f, "dst", v), (" ", False), _limit(f, "ip", v)]
                     + _flags(f))
    return lines


def _end(f: Mapping[str, Any], side: str, v: Any) -> list[Segment]:
    """An address and its port, each marked if rewritten: 192.168.1.5:58504, [2001:db8::5]:80."""
    address, port = f[f"ip.{side}"], f"tcp.{side[0]}port"
    if port not in f:
        return [v(f"ip.{side}", address)]
    return [v(f"ip.{side}", f"[{address}]" if ":" in address else address), (":", False),
            v(port, f[port])]


def _limit(f: Mapping[str, Any], prefix: str, v: Any) -> Segment:
    if f"{prefix}.hlim" in f:
        return v(f"{prefix}.hlim", f"hlim {f[prefix + '.hlim']}")
    return v(f"{prefix}.ttl", f"ttl {f[prefix + '.ttl']}")


def _flags(f: Mapping[str, Any]) -> list[Segment]:
    if "tcp.flags" not in f:
        return []
    return [(f"  [{f['tcp.flags']}]" + (f" len {f['tcp.len']}" if f["tcp.len"] else ""),
             False)]


def _carries(f: Mapping[str, Any]) -> str:
    """The tunnel header after the outer IP header, briefly."""
    if "gue.proto" in f:
        return (f"udp {f['outer.udp.sport']} → {f['outer.udp.dport']}, GUE proto "
                f"{f['gue.proto']}")
    if "gre.proto" in f:
        return f"GRE 0x{f['gre.proto']:04X}" + (" csum" if f["gre.csum"] else "")
    return f"{encapsulation(f)} proto {f['outer.proto']}"


def rewrites(before: Mapping[str, Any], after: Mapping[str, Any],
             changed: Sequence[str]) -> list[str]:
    """What the sender changed, old → new; a new outer header as one item."""
    if not before:
        return []
    out = []
    if "outer.src" in after and "outer.src" not in before:
        out.append(f"+ outer header {after['outer.src']} → {after['outer.dst']} "
                   f"({_carries(after)})")
    for key in changed:
        if key in before and key in after:
            out.append(tracing.rewrite(key, before, after))
        elif key in before:
            out.append(f"− {key}")
    return out


def arrows(trace: Trace) -> list[dict[str, Any]]:
    """One per (sender, taker) of each event: the hop, the wire indexes, the hosts, the
    packet, broadcast or not, the fields the sender changed, the tunnel."""
    out = []
    for row in event_rows(trace):
        hop = trace["hops"][row["hop"]]
        for j, host in zip(row["taken"], row["dst"], strict=True):
            out.append({"event": row["n"], "hop": row["hop"], "from": row["sent"], "to": j,
                        "src": row["src"], "dst": host, "packet": row["packet"],
                        "broadcast": row["broadcast"], "tunnel": row["tunnel"],
                        "changed": hop["wires"][row["sent"]].get("changed", [])})
    return out


# -- the challenge ------------------------------------------------------------------------------

NOBODY = "nobody"
"""The choice "no one answers" of a who-answers question."""
REWRITE_CHOICES = {"eth.src": "source MAC (eth.src)", "eth.dst": "destination MAC (eth.dst)",
                   "ip.src": "source IP address (ip.src)",
                   "ip.dst": "destination IP address (ip.dst)",
                   "ports": "a TCP port (tcp.sport or tcp.dport)", "ttl": "TTL (ip.ttl)",
                   "outer": "adds an outer IP header (a tunnel)",
                   "outer.ttl": "the outer header's TTL (outer.ttl)"}
"""A rewrite question's candidates: what a director or router might change, by name."""
FIELD_CHOICE = {"eth.src": "eth.src", "eth.dst": "eth.dst", "ip.src": "ip.src",
                "ip.dst": "ip.dst", "tcp.sport": "ports", "tcp.dport": "ports",
                "ip.ttl": "ttl", "ip.hlim": "ttl", "outer.ttl": "outer.ttl",
                "outer.hlim": "outer.ttl"}
"""A changed field → the candidate it belongs to (a field not here is a candidate of its own,
so the right set always covers every field the capture shows changed)."""
TUNNEL_PREFIXES = ("outer.", "gue.", "gre.")


def questions(trace: Trace, rows: Sequence[Mapping[str, Any]] | None = None
              ) -> list[dict[str, Any]]:
    """The challenge's questions, each asked before the step to its ``event`` (so about what
    the next frame will show) and answered by the capture: ``{"id", "event", "at", "kind",
    "filter", "host", "text", "multiple", "choices": [{"id", "text"}], "right": [ids],
    "explain": [lines]}``; ``at``: the event the question is about (the request, the frame
    the real server got, the director's or router's copy), ``explain``: that event's own
    lines (its rewrites, what the trace says of its hop, the takers' layers).

    - ``rewrite``: before a director or router sends on a packet it took in: which fields
      will it change? The right set: the fields its copy changed (``changed``), grouped as
      the candidates are; asked the first time a host makes a rewrite on a packet's way in
      or out, not again for the same rewrite of the connection's later packets.
    - ``answer``: after an ARP request or Neighbor Solicitation: who answers? The right set:
      the senders of the replies for the address asked, to the asker's MAC, that the capture
      holds after it (``nobody`` if none).
    - ``take``: after a real server got the connection's SYN: does it take it and answer?
      ``yes`` if the capture has its SYN-ACK, else ``no``.

    The choices of a rewrite and a who-answers question are many (tick each), a take
    question's one; ``filter``: the page's filter kind (tcp, arp) that shows the question."""
    rows = event_rows(trace) if rows is None else rows
    out: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for row in rows:
        hop = trace["hops"][row["hop"]]
        if row["before"] is not None and hop["kind"] == "tcp":
            q = _rewrite_question(trace, row)
            key = (q["host"], hop.get("side"), tuple(q["right"]))
            if key not in seen:
                seen.add(key)
                out.append(q)
        nxt = row["n"] + 1 if row["n"] + 1 < len(rows) else row["n"]
        f = hop["wires"][row["sent"]]["fields"]
        if f.get("arp.op") == "request" or f.get("nd.type") == "NS":
            out.append(_answer_question(trace, rows, row, nxt))
        if hop["kind"] == "tcp" and hop["packet"].startswith("SYN") and \
                not hop["packet"].startswith("SYN-ACK"):
            for j, host in zip(row["taken"], row["dst"], strict=True):
                if trace["hosts"].get(host, {}).get("role") == "real_server":
                    out.append(_take_question(trace, row, j, nxt))
    out.sort(key=lambda q: q["event"])
    for i, q in enumerate(out):
        q["id"] = f"q{i + 1}"
    return out


def _question(event: int, at: int, kind: str, host: str, text: str,
              choices: Mapping[str, str], right: Sequence[str],
              explain: Sequence[str]) -> dict[str, Any]:
    return {"id": "", "event": event, "at": at, "kind": kind,
            "filter": "arp" if kind == "answer" else "tcp", "host": host, "text": text,
            "multiple": kind != "take",
            "choices": [{"id": k, "text": v} for k, v in choices.items()],
            "right": sorted(right), "explain": list(explain)}


def rewrite_choice(key: str, before: Mapping[str, Any]) -> str:
    """The candidate a changed field belongs to: a field of a new outer header (or of its
    GUE or GRE header) is "outer", ip.ttl and ip.hlim are "ttl", ..."""
    if key.startswith(TUNNEL_PREFIXES) and "outer.src" not in before:
        return "outer"
    return FIELD_CHOICE.get(key, key)


def _rewrite_question(trace: Trace, row: Mapping[str, Any]) -> dict[str, Any]:
    hop = trace["hops"][row["hop"]]
    wires = hop["wires"]
    took, sent = wires[row["before"]], wires[row["sent"]]
    before, after = took["fields"], sent["fields"]
    right = sorted({rewrite_choice(k, before) for k in sent.get("changed", [])})
    choices = dict(REWRITE_CHOICES)
    six = "ip.hlim" in after
    if six:
        choices["ttl"] = "hop limit (ip.hlim)"
    if "outer.src" not in before:
        del choices["outer.ttl"]
    elif "outer.hlim" in before:
        choices["outer.ttl"] = "the outer header's hop limit (outer.hlim)"
    for extra in right:
        choices.setdefault(extra, extra)
    host = row["src"]
    text = (f"{host} took the {hop['packet']} in on {took['interface']} "
            f"({before['eth.src_host']} → {host}). Which fields will {host} change when it "
            f"sends it on?")
    forwards = sum(1 for a, b in zip(wires[:row["sent"]], wires[1:row["sent"] + 1],
                                     strict=True)
                   if a["host"] == b["host"] and (a["direction"], b["direction"]) ==
                   ("received", "sent"))
    says = hop.get("says") or []
    explain = [f"{host} sent it on to {after['eth.dst_host']}: "
               + "; ".join(row["rewrites"])]
    if forwards - 1 < len(says):
        explain.append(says[forwards - 1])
    return _question(row["n"], row["n"], "rewrite", host, text, choices, right, explain)


def _answer_question(trace: Trace, rows: Sequence[Mapping[str, Any]],
                     row: Mapping[str, Any], event: int) -> dict[str, Any]:
    hop = trace["hops"][row["hop"]]
    f = hop["wires"][row["sent"]]["fields"]
    ndp = hop["kind"] == "ndp"
    asked = f["nd.target"] if ndp else f["arp.pdst"]
    replies = [r for r in rows[row["n"] + 1:]
               if _answers(trace["hops"][r["hop"]], r, asked, f["eth.src"])]
    repliers = list(dict.fromkeys(r["src"] for r in replies))
    order = hosts_in_order(trace)
    candidates = sorted(set(row["dst"]) | set(repliers),
                        key=lambda h: (order.index(h) if h in order else len(order), h))
    choices = {h: f"{h} ({trace['hosts'][h]['role'].replace('_', ' ')})"
               for h in candidates if h in trace["hosts"]}
    choices[NOBODY] = "no one"
    what = "a Neighbor Solicitation" if ndp else "an ARP request"
    asker = f["nd.src"] if ndp else f["arp.psrc"]
    text = (f"{row['src']} asks ({what}): who has {asked}? tell {asker}. Who answers? "
            f"(tick each host that does)")
    explain = [say for r in replies for say in trace["hops"][r["hop"]].get("says", [])]
    if not replies:
        explain.append(f"no answer to {row['src']} for {asked} is in the capture")
    layer = "NDP" if ndp else "ARP"
    for view in row["layers"][1:]:
        said = next((x["in"] for x in view["layers"] if x["layer"] == layer and x["in"]), None)
        if said:
            explain.append(f"{view['host']}: {said}")
    return _question(event, row["n"], "answer", row["src"], text, choices,
                     repliers or [NOBODY], explain)


def _answers(hop: Mapping[str, Any], row: Mapping[str, Any], asked: str, asker: str) -> bool:
    """The event ``row`` is a reply for ``asked`` sent to the asker's MAC."""
    f = hop["wires"][row["sent"]]["fields"]
    if hop["kind"] == "arp" and f["arp.op"] != "request":
        return bool(f["arp.psrc"] == asked and f["eth.dst"] == asker)
    if hop["kind"] == "ndp" and f["nd.type"] == "NA":
        return bool(f["nd.target"] == asked and f["eth.dst"] == asker)
    return False


def _take_question(trace: Trace, row: Mapping[str, Any], taken: int,
                   event: int) -> dict[str, Any]:
    hop = trace["hops"][row["hop"]]
    obs = hop["wires"][taken]
    host, f = obs["host"], obs["fields"]
    answered = any(h["packet"].startswith("SYN-ACK") and h["wires"][0]["host"] == host
                   and h["wires"][0]["direction"] == "sent" for h in trace["hops"])
    inside = f" inside a tunnel to {f['outer.dst']}" if "outer.dst" in f else ""
    to = f"[{f['ip.dst']}]" if ":" in f["ip.dst"] else f["ip.dst"]
    text = (f"{host} got the SYN to {to}:{f['tcp.dport']}{inside}. Does {host} take it as "
            f"its own and answer it?")
    choices = {"yes": "yes: its stack takes it and answers with a SYN-ACK",
               "no": "no: it drops it, no SYN-ACK comes from it"}
    view = next((v for v in row["layers"] if v["host"] == host and v["in"] == taken), None)
    explain = [f"{host} {x['layer']} in: {x['in']}"  # bottom-up, as a frame is read
               for x in reversed((view or {}).get("layers", []))
               if x["in"] and x["layer"] not in ("L1", "L2")]
    explain += [say for say in hop.get("says", []) if say.startswith(f"{host} ")]
    explain.append(f"the capture has {host}'s SYN-ACK" if answered else
                   f"the capture has no SYN-ACK from {host}")
    return _question(event, row["n"], "take", host, text, choices,
                     ["yes" if answered else "no"], explain)


# -- the sequence diagram ------------------------------------------------------------------------

def title(trace: Trace) -> str:
    connection = trace.get("connection") or {}
    mode = trace["mode"] + (" IPv6" if trace.get("family") == 6 else "")
    tunnels = {t for hop in trace["hops"] for w in hop["wires"]
               if (t := tunnel(w["fields"])) is not None and w["direction"] == "sent"}
    how = f" ({', '.join(sorted(tunnels))})" if tunnels else ""
    return (f"pylvs lab {mode}{how}: {connection.get('client', '?')} → "
            f"{connection.get('vip', '?')}, served by "
            f"{connection.get('real_server_host', '?')} ({connection.get('real_server', '?')})")


def subtitle(trace: Trace) -> str:
    """What the director did to the SYN, as the trace says it (DR, NAT or TUN)."""
    for hop in trace["hops"]:
        if hop["packet"].startswith("SYN") and hop.get("side") == "client":
            return next((s for s in hop["says"] if s.endswith((": DR", ": NAT", ": TUN"))),
                        "")
    return ""


def noise_text(trace: Trace) -> str:
    noise = trace.get("noise") or {}
    if not noise:
        return "No capture noise was left out."
    kinds = ", ".join(f"{count} {NOISE_WORDS[kind]}{'s' if count != 1 else ''}"
                      if kind in NOISE_WORDS else f"{count} {kind}"
                      for kind, count in noise.items())
    total = sum(noise.values())
    return (f"Left out of the hops: {total} frame{'s' if total != 1 else ''} of noise that "
            f"hosts send on their own ({kinds}), counted over every pcap.")


class _Layout:
    """Where things go in the diagram: columns, the values' column, the rows' heights."""

    def __init__(self, trace: Trace, rows: Sequence[Mapping[str, Any]]) -> None:
        self.hosts = hosts_in_order(trace)
        self.header = {h: _host_lines(trace, h, macs=False) for h in self.hosts}
        widest = max((len(line) for lines in self.header.values() for line in lines),
                     default=10)
        labels = max((len(r["label"]) for r in rows), default=10)
        self.column = max(MIN_COLUMN, int(widest * SANS) + 24, int(labels * SANS / 2) + 20)
        self.x = {h: GUTTER + self.column // 2 + i * self.column
                  for i, h in enumerate(self.hosts)}
        self.values_x = GUTTER + self.column * max(1, len(self.hosts)) + 10
        longest = max((sum(len(t) for t, _ in line) for r in rows for line in r["lines"]),
                      default=40)
        self.wrapped = {r["n"]: _pack(r["rewrites"]) for r in rows}
        longest = max([longest, *(len(x) for w in self.wrapped.values() for x in w)])
        self.width = int(self.values_x + longest * MONO + 20)
        self.heads = _wrap(title(trace), 110)
        self.sub = _wrap(subtitle(trace), int(self.width / SANS) - 4)
        self.top = 24 + 20 * len(self.heads) + 15 * len(self.sub) + 8
        self.box = 20 + 13 * max((len(v) - 1 for v in self.header.values()), default=0)
        self.first_row = self.top + self.box + 14
        self.heights = [max(38, LINE * (len(r["lines"]) + len(self.wrapped[r["n"]])) + 12)
                        for r in rows]
        self.bottom = self.first_row + sum(self.heights)
        self.height = self.bottom + 110


def _pack(items: Sequence[str], width: int = 84) -> list[str]:
    """The rewrites on as few lines as fit ``width``, none cut: "rewrote: a; b", "  c"."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + 2 + len(item) <= width:
            lines[-1] += f"; {item}"
        else:
            lines.append(("rewrote: " if not lines else "         ") + item)
    return lines


def _wrap(text: str, width: int = 96) -> list[str]:
    return textwrap.wrap(text, width, break_on_hyphens=False) if text else []


def _host_lines(trace: Trace, host: str, macs: bool) -> list[str]:
    """A host's box: its name and role, its addresses (not IPv6's link-local), its MACs."""
    info = trace["hosts"][host]
    lines = [f"{host} ({info['role'].replace('_', ' ')})"]
    lines += [a for a in info.get("ip", []) if not a.startswith("fe80:")]
    if macs:
        named = info.get("interfaces") or {f"mac{i}": m for i, m in enumerate(info["mac"])}
        lines += [f"{name} {mac}" for name, mac in named.items()]
    return lines


def sequence_svg(trace: Trace) -> str:
    """The diagram alone: title, lifelines, a row per event, the legend and the noise."""
    rows = event_rows(trace)
    layout = _Layout(trace, rows)
    w, h = layout.width, layout.height
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="sequence" width="{w}" '
             f'height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">',
             _DEFS, f'<rect class="paper" width="{w}" height="{h}" fill="#fff"/>']
    parts += _titles(layout)
    parts += [_lifeline(trace, layout, host) for host in layout.hosts]
    y = layout.first_row
    for row, height in zip(rows, layout.heights, strict=True):
        parts.append(_event(row, layout, y, height))
        y += height
    parts.append(_legend(trace, layout))
    parts.append("</svg>")
    return "\n".join(parts)


_DEFS = ('<defs><marker id="head-plain" markerWidth="8" markerHeight="8" refX="7" refY="4" '
         f'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="{PLAIN}"/></marker>'
         '<marker id="head-red" markerWidth="8" markerHeight="8" refX="7" refY="4" '
         f'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="{REWRITTEN}"/></marker></defs>')


def _titles(layout: _Layout) -> list[str]:
    parts = [f'<text class="title" x="16" y="{26 + 20 * i}" font-size="16" '
             f'font-weight="bold">{_e(line)}</text>' for i, line in enumerate(layout.heads)]
    base = 26 + 20 * len(layout.heads)
    parts += [f'<text class="subtitle" x="16" y="{base + 15 * i}" font-size="12" '
              f'fill="#4a5568">{_e(line)}</text>' for i, line in enumerate(layout.sub)]
    return parts


def _lifeline(trace: Trace, layout: _Layout, host: str) -> str:
    x, lines = layout.x[host], layout.header[host]
    colour = COLOURS.get(trace["hosts"][host]["role"], "#444")
    half = (layout.column - 16) // 2
    text = "".join(
        f'<text x="{x}" y="{layout.top + 14 + 13 * i}" fill="#fff" text-anchor="middle"'
        + (' font-weight="bold">' if i == 0 else ' font-size="10">') + f"{_e(line)}</text>"
        for i, line in enumerate(lines))
    return (f'<g class="host" data-host="{_e(host)}"><rect x="{x - half}" y="{layout.top}" '
            f'width="{2 * half}" height="{layout.box}" rx="4" fill="{colour}"/>{text}'
            f'<line x1="{x}" y1="{layout.top + layout.box}" x2="{x}" y2="{layout.bottom}" '
            'stroke="#a0aec0" stroke-dasharray="3,3"/></g>')


def _event(row: Mapping[str, Any], layout: _Layout, y: int, height: int) -> str:
    red = bool(row["rewrites"])
    colour = REWRITTEN if red else PLAIN
    ay = y + 20
    xs = layout.x[row["src"]]
    tip = row["label"] + (" [rewrote: " + "; ".join(row["rewrites"]) + "]" if red else "")
    parts = [f'<g class="arrow" data-event="{row["n"]}" data-hop="{row["hop"]}" '
             f'data-from="{row["sent"]}" data-kind="{row["kind"]}" '
             f'data-src="{_e(row["src"])}" data-dst="{_e(" ".join(row["dst"]))}" tabindex="0">',
             f"<title>{_e(tip)}</title>",
             f'<rect class="band" x="0" y="{y}" width="{layout.width}" height="{height}" '
             'fill="transparent"/>',
             f'<text class="when" x="10" y="{ay - 4}" font-size="10" fill="#4a5568">'
             f'#{row["n"] + 1}</text><text class="when" x="10" y="{ay + 9}" font-size="10" '
             f'fill="#4a5568">{row["ms"]:.3f} ms</text>']
    targets = [layout.x[d] for d in row["dst"] if d in layout.x]
    if row["broadcast"]:
        parts.append(_bus(xs, targets, ay, colour))
    else:
        parts += [f'<line x1="{xs}" y1="{ay}" x2="{x}" y2="{ay}" stroke="{colour}" '
                  f'stroke-width="1.8" marker-end="url(#head-{"red" if red else "plain"})"/>'
                  for x in targets]
    mid = (min([xs, *targets]) + max([xs, *targets])) / 2 if targets else xs
    parts.append(f'<text class="label" x="{mid}" y="{ay - 5}" text-anchor="middle" '
                 f'fill="{colour}" font-weight="bold" stroke="#fff" stroke-width="3" '
                 f'paint-order="stroke">{_e(row["label"])}</text>')
    parts.append(_values(row, layout, y))
    parts.append("</g>")
    return "".join(parts)


def _bus(xs: float, targets: Sequence[float], y: int, colour: str) -> str:
    """A broadcast: a dashed bus over the segment, a dot at the sender, a drop into each
    host that took a copy."""
    left, right = min([xs, *targets]), max([xs, *targets])
    drops = "".join(f'<line class="drop" x1="{x}" y1="{y}" x2="{x}" y2="{y + 11}" '
                    f'stroke="{colour}" stroke-width="1.6" marker-end="url(#head-plain)"/>'
                    for x in targets)
    return (f'<line class="bus" x1="{left}" y1="{y}" x2="{right}" y2="{y}" stroke="{colour}" '
            f'stroke-width="1.8" stroke-dasharray="6,3"/><circle cx="{xs}" cy="{y}" r="4" '
            f'fill="{colour}"/>{drops}')


def _values(row: Mapping[str, Any], layout: _Layout, y: int) -> str:
    x = layout.values_x
    out = [f'<text class="values" font-family="monospace" x="{x}" y="{y + 4}">']
    for i, line in enumerate(row["lines"]):
        spans = "".join(
            f'<tspan fill="{REWRITTEN}" font-weight="bold">{_e(t)}</tspan>' if red else _e(t)
            for t, red in line)
        out.append(f'<tspan x="{x}" dy="{LINE if i else 12}" xml:space="preserve">{spans}'
                   "</tspan>")
    out += [f'<tspan class="rewrite" x="{x}" dy="{LINE}" fill="{REWRITTEN}" '
            f'xml:space="preserve">{_e(line)}</tspan>' for line in layout.wrapped[row["n"]]]
    out.append("</text>")
    return "".join(out)


def _legend(trace: Trace, layout: _Layout) -> str:
    y = layout.bottom + 24
    x = 16
    items = [
        (f'<line x1="{x}" y1="{y}" x2="{x + 40}" y2="{y}" stroke="{PLAIN}" stroke-width="1.8"'
         ' marker-end="url(#head-plain)"/>',
         "a frame as its sender put it on the wire (a row per frame, in capture order: #, "
         "ms since the first); its values on the right"),
        (f'<line x1="{x}" y1="{y + 18}" x2="{x + 40}" y2="{y + 18}" stroke="{REWRITTEN}" '
         'stroke-width="1.8" marker-end="url(#head-red)"/>',
         "the sender rewrote it: the new values in red, \"rewrote: old → new\" under them"),
        (f'<line x1="{x}" y1="{y + 36}" x2="{x + 40}" y2="{y + 36}" stroke="{PLAIN}" '
         f'stroke-width="1.8" stroke-dasharray="6,3"/><circle cx="{x}" cy="{y + 36}" r="4" '
         f'fill="{PLAIN}"/><line x1="{x + 40}" y1="{y + 36}" x2="{x + 40}" y2="{y + 46}" '
         f'stroke="{PLAIN}" marker-end="url(#head-plain)"/>',
         "broadcast or multicast: one frame, a copy dropped to every host on the segment"),
    ]
    parts = ['<g class="legend">']
    for i, (sample, text) in enumerate(items):
        parts.append(f'{sample}<text x="{x + 56}" y="{y + 18 * i + 4}">{_e(text)}</text>')
    parts.append(f'<text class="noise" x="{x}" y="{y + 18 * len(items) + 12}" '
                 f'fill="#4a5568">{_e(noise_text(trace))}</text></g>')
    return "".join(parts)


# -- the topology --------------------------------------------------------------------------------

def topology_svg(trace: Trace) -> str:
    """The bridges as bars, each host above its links, with its addresses and MACs whole;
    an empty group (``topology-current``) where the page draws the current event."""
    bridges = sorted({c["bridge"] for c in trace["captures"]})
    hosts = hosts_in_order(trace) or sorted(trace["hosts"])
    boxes = {h: _host_lines(trace, h, macs=True) for h in hosts}
    widest = max((len(line) for lines in boxes.values() for line in lines), default=10)
    column = max(MIN_COLUMN, int(widest * MONO) + 20)
    x = {h: 20 + column // 2 + i * column for i, h in enumerate(hosts)}
    box = 8 + 13 * max((len(v) for v in boxes.values()), default=1)
    bars = {b: box + 50 + 46 * i for i, b in enumerate(bridges)}
    width = 40 + column * max(1, len(hosts))
    height = box + 60 + 46 * len(bridges)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="topology" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
             f'font-size="11">', _DEFS]
    for bridge, y in bars.items():
        links = [c for c in trace["captures"] if c["bridge"] == bridge]
        subnet = links[0]["link"].split("(", 1)[-1].rstrip(")") if links else ""
        parts.append(f'<line x1="10" y1="{y}" x2="{width - 10}" y2="{y}" stroke="#718096" '
                     f'stroke-width="6"/><text x="12" y="{y + 17}">{_e(bridge)}: '
                     f'{_e(subnet)}</text>')
    for host in hosts:
        parts += _links(trace, host, x[host], box, bars)
    for host in hosts:
        parts.append(_topology_host(trace, host, x[host], column, box, boxes[host]))
    parts.append('<g id="topology-current"></g></svg>')
    return "\n".join(parts)


def _links(trace: Trace, host: str, x: int, box: int, bars: Mapping[str, int]) -> list[str]:
    """A host's links down to their bridges, side by side when it has several."""
    links = [c for c in trace["captures"] if c["host"] == host]
    out = []
    for k, link in enumerate(links):
        lx = x + int((k - (len(links) - 1) / 2) * 28)
        y = bars.get(link["bridge"], box + 50)
        out.append(f'<line class="link" data-wire="{_e(link["file"])}" data-host="{_e(host)}"'
                   f' x1="{lx}" y1="{box + 6}" x2="{lx}" y2="{y}" stroke="#a0aec0" '
                   f'stroke-width="2"/><text x="{lx + 3}" y="{y - 5}" font-size="10">'
                   f'{_e(link["interface"])}</text>')
    return out


def _topology_host(trace: Trace, host: str, x: int, column: int, box: int,
                   lines: Sequence[str]) -> str:
    colour = COLOURS.get(trace["hosts"][host]["role"], "#444")
    half = (column - 12) // 2
    text = "".join(
        f'<text x="{x}" y="{20 + 13 * i}" fill="#fff" text-anchor="middle"'
        + (' font-weight="bold">' if i == 0 else ' font-size="10" font-family="monospace">')
        + f"{_e(line)}</text>" for i, line in enumerate(lines))
    return (f'<g class="host" data-host="{_e(host)}"><rect x="{x - half}" y="6" '
            f'width="{2 * half}" height="{box}" rx="4" fill="{colour}"/>{text}</g>')


# -- the page ------------------------------------------------------------------------------------

def page(trace: Trace) -> str:
    """trace.html: title, the player (step, back, filters), topology, diagram, each host's
    layers and frames, the events and the hops in words."""
    rows = event_rows(trace)
    data = {"mode": trace["mode"], "family": trace.get("family", 4),
            "connection": trace.get("connection"), "hosts": trace["hosts"],
            "captures": trace["captures"], "hops": trace["hops"], "events": rows,
            "noise": trace.get("noise") or {}, "service": trace.get("service"),
            "questions": questions(trace, rows)}
    blob = json.dumps(data).replace("</", "<\\/")
    options = "".join(f'<option value="{_e(h)}">{_e(h)}</option>'
                      for h in hosts_in_order(trace))
    return _TEMPLATE.format(title=_e(title(trace)), subtitle=_e(subtitle(trace)),
                            noise=_e(noise_text(trace)), topology=topology_svg(trace),
                            sequence=sequence_svg(trace), data=blob, hosts=options,
                            script=_SCRIPT)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em 1.5em; color: #1a202c; }}
h1 {{ font-size: 1.25em; margin: .2em 0; }} h2 {{ font-size: 1em; margin: 1.2em 0 .4em; }}
.subtitle, .noise {{ color: #4a5568; margin: .2em 0; }}
#controls {{ position: sticky; top: 0; background: #fff; padding: .4em 0; z-index: 2;
  border-bottom: 1px solid #e2e8f0; display: flex; flex-wrap: wrap; gap: .6em;
  align-items: center; }}
#controls button {{ font-size: 1em; }} #position {{ font-weight: bold; }}
.keys {{ color: #718096; font-size: .85em; }}
#now {{ font-family: monospace; margin: .5em 0; }}
main {{ display: flex; flex-direction: column; gap: 1em; }} #panel {{ order: -1; }}
@media (min-width: 1400px) {{
  main {{ display: grid; grid-template-columns: minmax(0, 1fr) minmax(380px, 30%);
    gap: 1.2em; align-items: start; }}
  #panel {{ order: 0; position: sticky; top: 3.2em; max-height: calc(100vh - 4em);
    overflow: auto; }}
}}
#diagram {{ overflow-x: auto; }} #diagram svg {{ max-width: 100%; height: auto; }}
body.actual-size #diagram svg {{ max-width: none; }}
.arrow {{ cursor: pointer; }} .arrow:hover .band {{ fill: #f7fafc; }}
.arrow.current .band {{ fill: #fefcbf; }} .arrow.dim {{ opacity: .25; }}
.host-view {{ border: 1px solid #cbd5e0; border-radius: 4px; margin: .5em 0; padding: .4em; }}
.host-view h3 {{ font-size: .95em; margin: .1em 0 .3em; }}
table {{ border-collapse: collapse; font-size: 12px; width: 100%; }}
td, th {{ border: 1px solid #e2e8f0; padding: 2px 4px; vertical-align: top; text-align: left; }}
th {{ background: #edf2f7; }} td.layer {{ font-weight: bold; white-space: nowrap; }}
.pdu td {{ font-family: monospace; }} .changed {{ color: #c53030; font-weight: bold; }}
#events li {{ cursor: pointer; font-family: monospace; font-size: 12px; }}
#events li.current {{ background: #fefcbf; }} #events li.hidden {{ display: none; }}
#hops li {{ cursor: pointer; margin: .2em 0; }} .says {{ color: #4a5568; margin-left: 1em; }}
#topology-current line, #topology-current path {{ fill: none; stroke-width: 3; }}
#challenge {{ border: 2px solid #6b46c1; border-radius: 4px; padding: .4em .8em;
  margin: .5em 0; background: #faf5ff; }}
#challenge .ask {{ font-weight: bold; }} #challenge label.choice {{ display: block; }}
#challenge .verdict {{ font-weight: bold; }} #challenge .right {{ color: #2f855a; }}
#challenge .wrong {{ color: #c53030; }} #challenge .is-right {{ font-weight: bold; }}
#challenge .explain {{ color: #4a5568; }} #score {{ font-weight: bold; color: #6b46c1; }}
.arrow.future {{ visibility: hidden; }} #events li.future, #hops li.future {{ display: none; }}
body[data-challenge="on"] .subtitle {{ display: none; }}
</style></head><body>
<h1>{title}</h1>
<p class="subtitle">{subtitle}</p>
<p class="noise">{noise}</p>
<div id="controls">
<button id="first" title="first (Home)">|&#x25C0;</button>
<button id="back" title="back (&#x2190; or k)">&#x25C0; back</button>
<button id="next" title="step (&#x2192; or j)">step &#x25B6;</button>
<button id="last" title="last (End)">&#x25B6;|</button>
<span id="position"></span>
<span>show: <label><input type="radio" name="kind" value="all" checked> all</label>
<label><input type="radio" name="kind" value="arp"> ARP/NDP</label>
<label><input type="radio" name="kind" value="tcp"> TCP</label></span>
<label>host: <select id="host-filter"><option value="">any</option>{hosts}</select></label>
<label><input type="checkbox" id="actual-size"> diagram at its own size</label>
<label title="before some steps, a question about the next frame, checked against the capture">
<input type="checkbox" id="challenge-toggle"> challenge</label> <span id="score"></span>
<span class="keys">keys: &#x2190; &#x2192; (k j), Home, End</span>
</div>
<div id="now"></div>
<div id="challenge" data-state="off" hidden><div id="question"></div>
<details id="challenge-answered"><summary>answered</summary><ol id="challenge-log"></ol>
</details></div>
<h2>The lab (the current frame drawn on it)</h2>
{topology}
<main>
<div id="diagram"><h2>The connection, frame by frame (click a row)</h2>
{sequence}
</div>
<div id="panel">
<h2>At each host: layers (in &#x2191; bottom-up, out &#x2193; top-down) and frames</h2>
<div id="host-views"></div>
<h2>What this packet shows</h2><ul id="says"></ul>
<h2>Events</h2><ol id="events"></ol>
</div>
</main>
<h2>The packets in words</h2>
<ol id="hops"></ol>
<script id="trace-data" type="application/json">{data}</script>
<script>{script}</script></body></html>
"""

_SCRIPT = r"""
"use strict";
const data = JSON.parse(document.getElementById("trace-data").textContent);
const $ = id => document.getElementById(id);
const esc = s => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const HIDDEN = new Set(["eth.src_host", "eth.dst_host"]);

// The page's state, for whatever extends it (a challenge mode): data is trace.json's with
// the events as rows; state.index is the current event (0-based); hooks.beforeStep(from, to)
// may return false to refuse a step, hooks.afterRender(view) runs after each drawing.
const view = window.pylvsTrace = {
  data, events: data.events,
  state: {index: data.events.length ? 0 : -1, filter: {kind: "all", host: ""}},
  hooks: {beforeStep: [], afterRender: []},
  matches(e) {
    const f = this.state.filter;
    const kind = e.kind === "tcp" ? "tcp" : "arp";
    return (f.kind === "all" || f.kind === kind)
      && (!f.host || e.src === f.host || e.dst.includes(f.host));
  },
  visible() { return this.events.filter(e => this.matches(e)).map(e => e.n); },
  go(index) {
    if (index === undefined || index < 0 || index >= this.events.length) return false;
    for (const hook of this.hooks.beforeStep)
      if (hook(this.state.index, index) === false) return false;
    this.state.index = index;
    this.render();
    return true;
  },
  step(delta) {
    const shown = this.visible();
    const at = shown.indexOf(this.state.index);
    const next = at < 0 ? (delta > 0 ? shown.find(n => n > this.state.index)
                                     : [...shown].reverse().find(n => n < this.state.index))
                        : shown[at + delta];
    return this.go(next);
  },
  first() { return this.go(this.visible()[0]); },
  last() { const shown = this.visible(); return this.go(shown[shown.length - 1]); },
  setFilter(kind, host) {
    if (kind !== undefined) this.state.filter.kind = kind;
    if (host !== undefined) this.state.filter.host = host;
    const shown = this.visible();
    if (!shown.includes(this.state.index) && shown.length) this.go(shown[0]);
    else this.render();
  },
  render() { render(this); for (const hook of this.hooks.afterRender) hook(this); },
};

function fieldText(key, value) {
  if (value === undefined || value === null) return "";
  if (key === "gre.proto") return "0x" + value.toString(16).toUpperCase().padStart(4, "0");
  if (key.endsWith(".flow")) return "0x" + value.toString(16);  // as trace.txt writes it
  return String(value);
}

function pduTable(took, sent) {
  const keys = [...new Set([...Object.keys(took ? took.fields : {}),
                            ...Object.keys(sent ? sent.fields : {})])]
    .filter(k => !HIDDEN.has(k));
  const head = "<tr><th>field</th>" + (took ? "<th>in (taken)</th>" : "")
    + (sent ? "<th>out (sent)</th>" : "") + "</tr>";
  const rows = keys.map(k => {
    const a = took ? fieldText(k, took.fields[k]) : null;
    const b = sent ? fieldText(k, sent.fields[k]) : null;
    const changed = sent && (sent.changed || []).includes(k) && took;
    const out = sent === undefined || sent === null ? "" : changed
      ? `<td class="changed">${esc(a || "(none)")} → ${esc(b || "(none)")}</td>`
      : `<td>${esc(b)}</td>`;
    return `<tr${changed ? ' class="changed"' : ""}><td>${esc(k)}</td>`
      + (took ? `<td>${esc(a)}</td>` : "") + out + "</tr>";
  });
  return `<table class="pdu">${head}${rows.join("")}</table>`;
}

function hostView(e, v) {
  const wires = data.hops[e.hop].wires;
  const took = v.in === null ? null : wires[v.in], sent = v.out === null ? null : wires[v.out];
  const rows = v.layers.map(l => `<tr><td class="layer">${esc(l.layer)}</td>`
    + `<td>${esc(l.in || "")}</td><td>${esc(l.out || "")}</td></tr>`).join("");
  const where = [took && "took it on " + took.interface, sent && "sent it on " + sent.interface]
    .filter(Boolean).join(", ");
  return `<div class="host-view" data-host="${esc(v.host)}"><h3>${esc(v.host)} `
    + `(${esc(v.role.replace("_", " "))}): ${esc(where)}</h3>`
    + `<table class="layers"><tr><th>layer</th><th>in &#x2191;</th><th>out &#x2193;</th></tr>`
    + `${rows}</table>${pduTable(took, sent)}</div>`;
}

function drawTopology(e) {
  const overlay = $("topology-current");
  overlay.innerHTML = "";
  document.querySelectorAll(".topology .host").forEach(g => g.classList.toggle("active",
    !!e && (g.dataset.host === e.src || e.dst.includes(g.dataset.host))));
  if (!e) return;
  const link = w => document.querySelector(`.topology .link[data-wire="${w}"]`);
  const from = link(e.wire);
  if (!from) return;
  const sx = +from.getAttribute("x1"), top = +from.getAttribute("y1");
  const bar = +from.getAttribute("y2");
  const colour = e.rewrites.length ? "#c53030" : "#d69e2e";
  let paths = "";
  for (const w of e.wires) {
    const to = link(w);
    if (!to) continue;
    const tx = +to.getAttribute("x1");
    paths += `<path d="M${sx},${top} V${bar} H${tx} V${+to.getAttribute("y1") + 2}" `
      + `stroke="${colour}" marker-end="url(#head-red)"/>`;
  }
  overlay.innerHTML = paths + `<circle cx="${sx}" cy="${top}" r="5" fill="${colour}"/>`;
}

function render(v) {
  const e = v.events[v.state.index];
  const shown = v.visible();
  document.body.dataset.current = v.state.index;
  document.querySelectorAll(".sequence .arrow").forEach(g => {
    g.classList.toggle("current", +g.dataset.event === v.state.index);
    g.classList.toggle("dim", !shown.includes(+g.dataset.event));
  });
  document.querySelectorAll("#events li").forEach(li => {
    li.classList.toggle("current", +li.dataset.event === v.state.index);
    li.classList.toggle("hidden", !shown.includes(+li.dataset.event));
  });
  const at = shown.indexOf(v.state.index);
  $("position").textContent = e ? `event ${e.n + 1} of ${v.events.length}`
    + (shown.length !== v.events.length ? ` (${at + 1} of ${shown.length} shown)` : "")
    : "no events";
  drawTopology(e);
  if (!e) { $("now").textContent = "No connection was captured."; return; }
  const wire = data.hops[e.hop].wires[e.sent];
  $("now").textContent = `#${e.n + 1}  ${e.ms.toFixed(3)} ms  ${e.src} ${wire.interface} sends `
    + `${e.label} to ${e.dst.join(", ")}`
    + (e.rewrites.length ? "  —  rewrote: " + e.rewrites.join("; ") : "");
  $("host-views").innerHTML = e.layers.map(h => hostView(e, h)).join("");
  $("says").innerHTML = (data.hops[e.hop].says || []).map(s => `<li>${esc(s)}</li>`).join("");
  const row = document.querySelector(`.sequence .arrow[data-event="${e.n}"]`);
  if (row && row.scrollIntoView && document.hasFocus()) row.scrollIntoView({block: "nearest"});
}

function build() {
  const list = $("events");
  for (const e of data.events) {
    const li = document.createElement("li");
    li.className = "event-item";
    li.dataset.event = e.n;
    li.textContent = `${e.ms.toFixed(3)} ms  ${e.src} → ${e.dst.join(", ")}  ${e.label}`;
    li.addEventListener("click", () => view.go(e.n));
    list.appendChild(li);
  }
  const hops = $("hops");
  data.hops.forEach((hop, i) => {
    const item = document.createElement("li");
    item.className = "hop-item";
    const path = [];
    for (const w of hop.wires) if (path[path.length - 1] !== w.host) path.push(w.host);
    item.textContent = hop.packet + ": " + path.join(" → ");
    for (const s of hop.says || []) {
      const say = document.createElement("div"); say.className = "says"; say.textContent = s;
      item.appendChild(say);
    }
    const first = data.events.find(e => e.hop === i);
    if (first) item.addEventListener("click", () => view.go(first.n));
    hops.appendChild(item);
  });
  document.querySelectorAll(".sequence .arrow").forEach(g =>
    g.addEventListener("click", () => view.go(+g.dataset.event)));
  $("first").onclick = () => view.first();
  $("last").onclick = () => view.last();
  $("back").onclick = () => view.step(-1);
  $("next").onclick = () => view.step(1);
  document.querySelectorAll('input[name="kind"]').forEach(r =>
    r.addEventListener("change", () => view.setFilter(r.value)));
  $("host-filter").addEventListener("change", ev => view.setFilter(undefined, ev.target.value));
  $("actual-size").addEventListener("change", ev =>
    document.body.classList.toggle("actual-size", ev.target.checked));
  document.addEventListener("keydown", onKey);
}

function onKey(ev) {
  if (ev.target && ev.target.tagName === "SELECT") return;
  const moves = {ArrowRight: 1, ArrowDown: 1, j: 1, n: 1, ArrowLeft: -1, ArrowUp: -1, k: -1,
                 p: -1};
  if (ev.key in moves) view.step(moves[ev.key]);
  else if (ev.key === "Home") view.first();
  else if (ev.key === "End") view.last();
  else return;
  ev.preventDefault();
}

// ?kind=arp|tcp&host=NAME&step=N (1-based)&keys=ArrowRight,ArrowRight,ArrowLeft: a state to
// open on, or key presses to replay (what a test or a link to one frame needs);
// &challenge=1 turns the challenge on after the step, and &answers=a,b;c answers its
// questions as they come (choice ids, a comma between two of one answer, ";" between answers).
function fromQuery() {
  const q = new URLSearchParams(location.search);
  if (q.has("kind") || q.has("host"))
    view.setFilter(q.get("kind") || undefined, q.get("host") || undefined);
  if (q.has("step")) view.go(+q.get("step") - 1);
  if (q.get("challenge") === "1") view.challenge.enable(true);
  if (q.has("answers"))
    view.challenge.script = q.get("answers").split(";").map(a => a.split(",").filter(Boolean));
  for (const key of (q.get("keys") || "").split(",").filter(Boolean))
    document.dispatchEvent(new KeyboardEvent("keydown", {key, bubbles: true}));
}

// The challenge (its checkbox, or ?challenge=1): a step forward past an event that has a
// question (data.questions, made from the capture with their choices and right answers) is
// refused and the question asked; the answer is compared with the capture's, the verdict and
// the event's own lines shown, the score kept; the next step goes on. Only questions the
// kind filter shows are asked (ARP/NDP: who answers; TCP: rewrites, does it take it).
const challenge = view.challenge = {
  on: false, questions: data.questions || [], answers: {}, asking: null, target: null,
  script: [],
  enable(on) {
    this.on = !!on;
    $("challenge-toggle").checked = this.on;
    document.body.dataset.challenge = this.on ? "on" : "off";
    if (!this.on) { this.asking = null; this.target = null; }
    view.render();
  },
  due(from, to) {
    if (!this.on || to <= from) return null;
    const kind = view.state.filter.kind;
    return this.questions.find(q => q.event > from && q.event <= to && !(q.id in this.answers)
      && (kind === "all" || kind === q.filter)) || null;
  },
  answer(choices) {  // the ids ticked; true if they are the capture's, false if not
    const q = this.asking;
    if (!q || q.id in this.answers) return null;
    const given = [...new Set(choices)].sort(), right = [...q.right].sort();
    const ok = given.length === right.length && given.every((c, i) => c === right[i]);
    this.answers[q.id] = {given, ok};
    view.render();
    return ok;
  },
  score() {
    const all = Object.values(this.answers);
    return {right: all.filter(a => a.ok).length, answered: all.length,
            total: this.questions.length};
  },
  stepOn() { return this.target === null ? view.step(1) : view.go(this.target); },
};
view.hooks.beforeStep.push((from, to) => {
  const q = challenge.due(from, to);
  if (q === null) { challenge.target = null; return true; }
  challenge.target = to;
  if (challenge.asking !== q) { challenge.asking = q; view.render(); }
  if (challenge.script.length) challenge.answer(challenge.script.shift());
  return false;
});
view.hooks.afterRender.push(() => { hideAhead(); drawChallenge(); });
const lastOfHop = data.hops.map((_, i) =>
  Math.max(-1, ...data.events.filter(e => e.hop === i).map(e => e.n)));

// In the challenge the page tells nothing ahead of the current frame: the diagram's rows and
// the events after it, a packet's lines before its way is over, and while a question on the
// current frame waits, what its takers did with it.
function hideAhead() {
  const on = challenge.on, at = view.state.index, e = view.events[at];
  document.querySelectorAll(".sequence .arrow, #events li").forEach(el =>
    el.classList.toggle("future", on && +el.dataset.event > at));
  document.querySelectorAll("#hops .hop-item").forEach((li, i) =>
    li.classList.toggle("future", on && lastOfHop[i] > at));
  if (!on || !e) return;
  const open = challenge.questions.some(q => q.at === at && q.kind !== "rewrite"
                                            && !(q.id in challenge.answers));
  if (open || lastOfHop[e.hop] > at)
    $("says").innerHTML = "<li>(the challenge keeps what this packet shows until "
      + (open ? "its question is answered)</li>" : "its last frame)</li>");
  if (open)
    document.querySelectorAll("#host-views .host-view").forEach((div, i) => {
      if (i > 0) div.innerHTML = `<h3>${esc(div.dataset.host)}: what it does with the frame `
        + `is hidden until the challenge's question is answered</h3>`;
    });
}

function choiceText(q, id) {
  const c = q.choices.find(c => c.id === id);
  return c ? c.text : id;
}

function drawChallenge() {
  const box = $("challenge"), c = challenge, q = c.asking;
  box.hidden = !c.on;
  const s = c.score();
  $("score").textContent = c.on ? `score: ${s.right} of ${s.answered} right` : "";
  if (!c.on) { box.dataset.state = "off"; return; }
  const done = q ? c.answers[q.id] : undefined;
  box.dataset.state = !q ? "waiting" : done === undefined ? "asking" : done.ok ? "right"
    : "wrong";
  box.dataset.question = q ? q.id : "";
  $("challenge-log").innerHTML = c.questions.filter(x => x.id in c.answers).map(x => {
    const a = c.answers[x.id];
    return `<li data-question="${x.id}" data-verdict="${a.ok ? "right" : "wrong"}">`
      + `#${x.event + 1} ${esc(x.text)} <span class="${a.ok ? "right" : "wrong"}">`
      + `${a.ok ? "right" : "wrong"}</span>: ${esc(x.right.map(r => choiceText(x, r))
        .join(", "))}</li>`;
  }).join("");
  const panel = $("question");
  if (!q) {
    panel.innerHTML = `<p>Challenge: before a step to a frame there is a question on, the `
      + `page asks what that frame will show; the capture says who is right `
      + `(${c.questions.length} questions in this trace).</p>`;
    return;
  }
  const type = q.multiple ? "checkbox" : "radio";
  const picked = done ? new Set(done.given) : new Set();
  const choices = q.choices.map(ch => {
    const right = q.right.includes(ch.id), bad = picked.has(ch.id) && !right;
    const mark = done ? (right ? " is-right" : "") + (bad ? " wrong" : "") : "";
    const sign = !done ? "" : right ? ' <span class="right">&#x2713;</span>'
      : bad ? ' <span class="wrong">&#x2717;</span>' : "";
    return `<label class="choice${mark}"><input type="${type}" name="choice" `
      + `value="${esc(ch.id)}"${picked.has(ch.id) ? " checked" : ""}${done ? " disabled" : ""}>`
      + ` ${esc(ch.text)}${sign}</label>`;
  }).join("");
  let html = `<p class="ask">Before #${q.event + 1}: ${esc(q.text)}</p>`
    + `<form id="challenge-form">${choices}`
    + (done ? "" : `<button type="submit" id="check">check</button>`) + `</form>`;
  if (done) {
    html += done.ok ? `<p class="verdict right">Right: the capture agrees.</p>`
      : `<p class="verdict wrong">Wrong: the capture says: `
        + `${esc(q.right.map(r => choiceText(q, r)).join("; "))}.</p>`;
    html += `<ul class="explain">${q.explain.map(l => `<li>${esc(l)}</li>`).join("")}</ul>`;
    if (c.target !== null)
      html += `<button id="step-on">step on to #${c.target + 1} &#x25B6;</button>`;
  }
  panel.innerHTML = html;
  const form = $("challenge-form");
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    c.answer([...form.querySelectorAll('input[name="choice"]:checked')].map(i => i.value));
  });
  if ($("step-on")) $("step-on").onclick = () => c.stepOn();
}

build();
$("challenge-toggle").addEventListener("change", ev => challenge.enable(ev.target.checked));
view.render();
fromQuery();
"""
