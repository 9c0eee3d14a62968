"""compare.html: the three methods' traces side by side and the director's rewrite of each in
one table; self-contained (inline CSS and SVG, nothing fetched, no script). Pure: the traces
and compare.table's sections in, the page out.

Each diagram is trace_page.sequence_svg of that method's trace. Each cell of the table carries
what it shows as data (``data-method``, ``data-packet``, ``data-field``, ``data-before``,
``data-after``, ``data-changed``), so a test or a script reads the table without its layout.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from pylvs.lab import trace_page
from pylvs.lab.compare import NO_DIRECTOR, TITLES, Cell, Section, says, server_of

NAMES = {"dr": "DR (direct routing, -g)", "nat": "NAT (masquerading, -m)",
         "tun": "TUN (tunnelling, -i)"}


def page(traces: Mapping[str, Mapping[str, Any]], sections: Sequence[Section]) -> str:
    first = next(iter(traces.values()), {})
    vip = (first.get("connection") or {}).get("vip", "the VIP")
    title = f"pylvs lab compare: the same request to {vip} through DR, NAT and TUN"
    paths = "\n".join(_path(method, built) for method, built in traces.items())
    return _TEMPLATE.format(title=_e(title), paths=paths, table=_table(list(traces), sections))


def _path(method: str, built: Mapping[str, Any]) -> str:
    said = "".join(f"<p class=\"says\">{_e(s)}</p>" for s in says(built))
    return (f'<section class="path" data-method="{_e(method)}">'
            f"<h2>{_e(NAMES.get(method, method))}: {_e(server_of(built))}</h2>{said}"
            f"{trace_page.sequence_svg(built)}"
            f'<p><a href="trace-{_e(method)}.html">this connection hop by hop</a></p></section>')


def _table(methods: Sequence[str], sections: Sequence[Section]) -> str:
    head = "".join(f"<th>{_e(m.upper())}</th>" for m in methods)
    body = []
    for part in sections:
        body.append(f'<tr class="packet"><th colspan="{len(methods) + 1}">'
                    f"{_e(TITLES[part.packet])}</th></tr>")
        body.append(_plain_row("path", [part.paths[m] for m in methods]))
        body.append(_plain_row("the director's wires, in → out",
                               [part.wires[m] or "never sees it" for m in methods]))
        for field, cells in part.rows:
            tds = "".join(_cell(m, part.packet, field, cells[m]) for m in methods)
            body.append(f'<tr data-field="{_e(field)}"><th>{_e(field)}</th>{tds}</tr>')
    return (f'<table class="rewrite"><thead><tr><th>field</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _plain_row(name: str, texts: Sequence[str]) -> str:
    return f"<tr><th>{_e(name)}</th>" + "".join(f"<td>{_e(t)}</td>" for t in texts) + "</tr>"


def _cell(method: str, packet: str, field: str, cell: Cell | None) -> str:
    data = f'data-method="{_e(method)}" data-packet="{_e(packet)}" data-field="{_e(field)}"'
    if cell is None:
        return f'<td class="cell absent" {data}>{NO_DIRECTOR}</td>'
    shown = _value(cell.before, cell.before_host)
    if cell.changed:
        shown += f' <span class="to">→</span> {_value(cell.after, cell.after_host)}'
    return (f'<td class="cell{" changed" if cell.changed else ""}" {data} '
            f'data-before="{_e(cell.before)}" data-after="{_e(cell.after)}" '
            f'data-changed="{str(cell.changed).lower()}">{shown}</td>')


def _value(text: str, host: str) -> str:
    return _e(text) + (f' <span class="host">({_e(host)})</span>' if host else "")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #1a202c; }}
h1 {{ font-size: 1.2em; }} h2 {{ font-size: 1em; margin: .3em 0; }}
.paths {{ display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 1em;
  align-items: start; }}
.path {{ border: 1px solid #cbd5e0; padding: .6em; border-radius: 4px; min-width: 0; }}
.path svg {{ width: 100%; height: auto; }}
#actual:checked ~ .paths {{ display: flex; overflow-x: auto; }}
#actual:checked ~ .paths .path {{ flex: 0 0 auto; }}
#actual:checked ~ .paths svg {{ width: auto; }}
.says {{ color: #4a5568; font-size: .85em; margin: .2em 0; }}
table.rewrite {{ border-collapse: collapse; margin-top: 1em; font-size: .9em; }}
.rewrite th, .rewrite td {{ border: 1px solid #cbd5e0; padding: .3em .6em; text-align: left;
  vertical-align: top; }}
.rewrite td {{ font-family: monospace; }}
.rewrite tr.packet th {{ background: #edf2f7; }}
.rewrite td.changed {{ color: #c53030; font-weight: bold; background: #fff5f5; }}
.rewrite td.absent {{ color: #a0aec0; }}
.host {{ color: #4a5568; font-weight: normal; font-family: sans-serif; font-size: .85em; }}
</style></head><body>
<h1>{title}</h1>
<p>One director, one virtual service (rr), one real server per method; the client sent the same
request once per method, and every wire was captured. Each diagram is that connection's trace,
red where a host rewrote the frame.</p>
<input type="checkbox" id="actual"><label for="actual"> the diagrams at their own size, side by
side (scroll sideways)</label>
<div class="paths">
{paths}
</div>
<h2>What the director rewrote: each field as it took the packet → as it sent it on</h2>
<p>Red: changed (the trace's own record of the two copies); {absent}: the packet never crossed
the director.</p>
{table}
</body></html>
""".replace("{absent}", NO_DIRECTOR)
