"""A trace (pylvs.lab.trace's dict, as in trace.json) drawn: the lab's topology and a sequence
diagram of the traced connection's hops, as one self-contained page (inline CSS, SVG and
script; nothing fetched) and as an SVG of the diagram alone, for slides.

In the diagram each host has a lifeline; each frame a host put on its wire is an arrow to every
host that took it off (dashed when broadcast), labelled with the packet, the tunnel it travels
in (TUN: "in IP-in-IP", "in GUE (UDP 6080)", "in GRE", ...) and, where a host in between
rewrote it, the fields that changed. Clicking an arrow (or a hop in the list) shows
both ends' headers, the changed fields marked. Pure: strings in, strings out.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pylvs.lab.trace import encapsulation

ROLE_ORDER = {"client": 0, "router": 1, "director": 2, "real_server": 3}
COLUMN, ROW, TOP, LEFT = 170, 34, 60, 90
COLOURS = {"client": "#2b6cb0", "director": "#c05621", "router": "#6b46c1",
           "real_server": "#2f855a"}

Trace = Mapping[str, Any]


def hosts_in_order(trace: Trace) -> list[str]:
    """Client, router, director, real servers: the order of a frame's way in."""
    seen = {w["host"] for hop in trace["hops"] for w in hop["wires"]}
    hosts = trace["hosts"]
    return sorted((h for h in hosts if h in seen),
                  key=lambda h: (ROLE_ORDER.get(hosts[h]["role"], 9), h))


def arrows(trace: Trace) -> list[dict[str, Any]]:
    """One per (sender, receiver) of each frame: hop and wire indexes, the hosts, the label."""
    out: list[dict[str, Any]] = []
    for index, hop in enumerate(trace["hops"]):
        wires = hop["wires"]
        for i, sent in enumerate(wires):
            if sent["direction"] != "sent":
                continue
            takers = []
            for j in range(i + 1, len(wires)):
                if wires[j]["direction"] == "sent":
                    break
                takers.append(j)
            for j in takers:
                out.append({"hop": index, "from": i, "to": j, "src": sent["host"],
                            "dst": wires[j]["host"], "packet": hop["packet"],
                            "broadcast": sent["fields"].get("eth.dst", "").startswith(
                                ("ff:ff:ff:ff:ff:ff", "33:33:")),  # IPv6 multicast too
                            "changed": sent.get("changed", []),
                            "tunnel": tunnel(sent["fields"])})
    return out


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


def sequence_svg(trace: Trace) -> str:
    hosts = hosts_in_order(trace)
    column = {host: LEFT + i * COLUMN for i, host in enumerate(hosts)}
    rows = _rows(arrows(trace))
    height = TOP + ROW * (max(rows.values(), default=0) + 2)
    width = LEFT * 2 + COLUMN * max(1, len(hosts) - 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="sequence" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
             'font-size="11">',
             '<defs><marker id="head" markerWidth="8" markerHeight="8" refX="7" refY="4" '
             'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#333"/></marker></defs>']
    for host in hosts:
        x, colour = column[host], COLOURS.get(trace["hosts"][host]["role"], "#444")
        parts.append(f'<g class="host" data-host="{_e(host)}"><rect x="{x - 50}" y="8" '
                     f'width="100" height="26" rx="4" fill="{colour}"/><text x="{x}" y="25" '
                     f'fill="#fff" text-anchor="middle" font-weight="bold">{_e(host)}</text>'
                     f'<line x1="{x}" y1="34" x2="{x}" y2="{height - 10}" stroke="#bbb" '
                     'stroke-dasharray="3,3"/></g>')
    for n, arrow in enumerate(arrows(trace)):  # a broadcast's row is labelled once
        parts.append(_arrow(arrow, column, TOP + ROW * rows[n], rows.get(n - 1) != rows[n]))
    parts.append("</svg>")
    return "\n".join(parts)


def _rows(all_arrows: Sequence[dict[str, Any]]) -> dict[int, int]:
    """A row per frame a host sent (its receivers share it), in time order."""
    rows: dict[int, int] = {}
    row, last = -1, None
    for n, arrow in enumerate(all_arrows):
        if (arrow["hop"], arrow["from"]) != last:
            row, last = row + 1, (arrow["hop"], arrow["from"])
        rows[n] = row
    return rows


def _arrow(arrow: Mapping[str, Any], column: Mapping[str, int], y: int, labelled: bool
           ) -> str:
    x1, x2 = column[arrow["src"]], column[arrow["dst"]]
    label = arrow["packet"] + (f" in {arrow['tunnel']}" if arrow.get("tunnel") else "") + (
        f" [{', '.join(arrow['changed'])} changed]" if arrow["changed"] else "")
    dash = ' stroke-dasharray="5,3"' if arrow["broadcast"] else ""
    colour = "#c53030" if arrow["changed"] else "#333"
    return (f'<g class="arrow" data-hop="{arrow["hop"]}" data-from="{arrow["from"]}" '
            f'data-to="{arrow["to"]}" tabindex="0"><title>{_e(label)}</title>'
            f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}" stroke-width="1.6"'
            f'{dash} marker-end="url(#head)"/>' + (
                f'<text x="{(x1 + x2) / 2}" y="{y - 4}" text-anchor="middle" fill="{colour}">'
                f'{_e(_short(label))}</text>' if labelled else "") + '</g>')


def topology_svg(trace: Trace) -> str:
    """The bridges as bars, each host above its links: what connects to what."""
    bridges = sorted({c["bridge"] for c in trace["captures"]})
    hosts = hosts_in_order(trace) or sorted(trace["hosts"])
    column = {host: LEFT + i * COLUMN for i, host in enumerate(hosts)}
    width = LEFT * 2 + COLUMN * max(1, len(hosts) - 1)
    height = 90 + 50 * len(bridges)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="topology" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
             'font-size="11">']
    for b, bridge in enumerate(bridges):
        y = 80 + 50 * b
        links = [c for c in trace["captures"] if c["bridge"] == bridge]
        subnet = links[0]["link"].split("(", 1)[-1].rstrip(")") if links else ""
        parts.append(f'<line x1="20" y1="{y}" x2="{width - 20}" y2="{y}" stroke="#718096" '
                     f'stroke-width="6"/><text x="22" y="{y + 18}">{_e(bridge)}: '
                     f'{_e(subnet)}</text>')
        for link in links:
            x = column.get(link["host"])
            if x is not None:
                parts.append(f'<line x1="{x}" y1="40" x2="{x}" y2="{y}" stroke="#a0aec0"/>'
                             f'<text x="{x + 4}" y="{y - 6}">{_e(link["interface"])}</text>')
    for host in hosts:
        info, x = trace["hosts"][host], column[host]
        addresses = ", ".join(a.split("/")[0] for a in info.get("ip", [])
                              if not a.startswith("fe80:"))  # IPv6's link-local: NDP's own
        parts.append(f'<g class="host" data-host="{_e(host)}"><rect x="{x - 55}" y="6" '
                     f'width="110" height="34" rx="4" fill="{COLOURS.get(info["role"], "#444")}"'
                     f'/><text x="{x}" y="20" fill="#fff" text-anchor="middle" '
                     f'font-weight="bold">{_e(host)}</text><text x="{x}" y="34" fill="#fff" '
                     f'text-anchor="middle" font-size="9">{_e(_short(addresses, 26))}</text>'
                     '</g>')
    parts.append("</svg>")
    return "\n".join(parts)


def page(trace: Trace) -> str:
    """trace.html: topology, diagram, the hops in words; headers on click."""
    connection = trace.get("connection") or {}
    title = (f"pylvs lab {trace['mode']}: {connection.get('client', '?')} → "
             f"{connection.get('vip', '?')}, served by {connection.get('real_server', '?')}")
    data = json.dumps({"hops": trace["hops"], "arrows": arrows(trace)}).replace("</", "<\\/")
    return _TEMPLATE.format(title=_e(title), topology=topology_svg(trace),
                            sequence=sequence_svg(trace), data=data)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #1a202c; }}
h1 {{ font-size: 1.2em; }} h2 {{ font-size: 1em; margin-top: 1.5em; }}
.arrow {{ cursor: pointer; }} .arrow:hover line, .arrow.chosen line {{ stroke-width: 3; }}
#details {{ font-family: monospace; font-size: 12px; white-space: pre; background: #f7fafc;
  border: 1px solid #cbd5e0; padding: .8em; min-height: 4em; }}
#hops li {{ cursor: pointer; margin: .2em 0; }} .changed {{ color: #c53030; font-weight: bold; }}
.says {{ color: #4a5568; margin-left: 1em; }}
</style></head><body>
<h1>{title}</h1>
<h2>The lab</h2>
{topology}
<h2>The connection, hop by hop (click an arrow)</h2>
{sequence}
<h2>Headers</h2>
<div id="details">Click an arrow or a hop below.</div>
<h2>Hops</h2>
<ol id="hops"></ol>
<script id="trace-data" type="application/json">{data}</script>
<script>
const trace = JSON.parse(document.getElementById("trace-data").textContent);
const details = document.getElementById("details");
function show(hop, from, to) {{
  const wires = trace.hops[hop].wires, a = wires[from], b = wires[to === undefined ? from : to];
  const lines = [trace.hops[hop].packet, ""];
  for (const [label, w] of [["sent by " + a.host + " on " + a.interface, a],
                            ["taken by " + b.host + " on " + b.interface, b]]) {{
    lines.push(label + ":");
    for (const [k, v] of Object.entries(w.fields)) {{
      const mark = (w.changed || []).includes(k) ? "<span class=changed>* </span>" : "  ";
      const text = k === "gre.proto"  // an EtherType, as trace.txt writes it
        ? "0x" + v.toString(16).toUpperCase().padStart(4, "0") : String(v);
      lines.push(mark + k + " = " + text.replace(/</g, "&lt;"));
    }}
    lines.push("");
  }}
  lines.push(...(trace.hops[hop].says || []).map(s => "=> " + s));
  details.innerHTML = lines.join("\\n");
  document.querySelectorAll(".arrow").forEach(g => g.classList.toggle("chosen",
    +g.dataset.hop === hop && +g.dataset.from === from));
}}
document.querySelectorAll(".arrow").forEach(g => g.addEventListener("click",
  () => show(+g.dataset.hop, +g.dataset.from, +g.dataset.to)));
const list = document.getElementById("hops");
trace.hops.forEach((hop, i) => {{
  const item = document.createElement("li");
  item.className = "hop-item";
  item.textContent = hop.packet + ": " + hop.wires.map(w => w.host).join(" → ");
  for (const s of hop.says || []) {{
    const say = document.createElement("div"); say.className = "says"; say.textContent = s;
    item.appendChild(say);
  }}
  item.addEventListener("click", () => show(i, 0, hop.wires.length - 1));
  list.appendChild(item);
}});
</script></body></html>
"""
