"""`pylvs top`: a live terminal view (rich) of the services and real servers of a running
director, refreshed each second; ``--once`` prints one frame and exits.

It is a client of the control socket like `pylvs adm` and `pylvs status`, and asks only what
they ask: `-L -n`, `-L -n --rate --exact` and `-L -n --stats --exact` (ipvsadm's listings,
summed over the workers by the director) and Status (the health checks' and VRRP's text, the
counters as data). Their texts are ipvsadm's fixed layouts, so parsing them is exact, and top
shows nothing that `pylvs adm` would not: no request of its own to keep in step. The parsing
(``parse_listing``, ``parse_health``, ``frame``) is pure and is tested on its own; the rest
asks and draws.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pylvs.adm import ipvsadm
from pylvs.shell import control
from pylvs.shell.messages import AdmLine, Status

LISTINGS = {"table": ["-L", "-n"], "rate": ["-L", "-n", "--rate", "--exact"],
            "stats": ["-L", "-n", "--stats", "--exact"]}
WIDE = 200
"""Columns for a frame printed where there is no terminal (a pipe, a test): every column.
On a terminal the view takes its width, and shows the columns that fit whole (``fitted``):
at 80, the names, weights, connections and the rates of connections and packets."""
PASSED = {"forwarded", "replied", "sent", "segmented", "icmp_relayed", "icmp_sent",
          "one_packet", "expired", "frag_needed"}
"""Counters that are not drops: shown as traffic, the others as drops."""
_SERVICE = re.compile(r"^(TCP|UDP|FWM)\s+(\S+)\s*(.*)$")
_SERVER = re.compile(r"^\s+->\s+(\S+)\s*(.*)$")
_HEALTH_SERVICE = re.compile(r"^(TCP|UDP) (\S+)\s+quorum")
_HEALTH_SERVER = re.compile(r"^\s+->\s+(\S+)\s+(\S+)\s+(UP|DOWN)\b")


# --- pure: ipvsadm's texts into rows ----------------------------------------------------------

Listing = dict[str, tuple[list[str], dict[str, list[str]]]]
"""Service ("TCP 192.168.1.100:80") → its row's cells after the name, and each real server
("192.168.1.11:80") → its cells, in the listing's order."""


def parse_listing(text: str) -> Listing:
    """One `ipvsadm -L -n` listing (plain, --rate or --stats) into cells."""
    found: Listing = {}
    servers: dict[str, list[str]] | None = None
    for line in text.splitlines():
        service, server = _SERVICE.match(line), _SERVER.match(line)
        if service:
            servers = {}
            found[f"{service[1]} {service[2]}"] = (service[3].split(), servers)
        elif server and servers is not None and server[1] != "RemoteAddress:Port":
            servers[server[1]] = server[2].split()
    return found


def parse_health(text: str) -> dict[tuple[str, str], str]:
    """`pylvs status`'s check lines: (service, real server) → UP or DOWN."""
    found: dict[tuple[str, str], str] = {}
    service = ""
    for line in text.splitlines():
        head, row = _HEALTH_SERVICE.match(line), _HEALTH_SERVER.match(line)
        if head:
            service = f"{head[1]} {head[2]}"
        elif row and service:
            found[(service, row[1])] = row[3]
    return found


@dataclass
class Row:
    """One line of the view: a service (server False) or one of its real servers."""
    name: str
    server: bool
    method: str = ""
    weight: str = ""
    active: str = ""
    inactive: str = ""
    rates: list[str] = field(default_factory=list)
    """CPS, InPPS, OutPPS, InBPS, OutBPS (ipvsadm's estimates)."""
    totals: list[str] = field(default_factory=list)
    """Conns, InPkts, OutPkts (ipvsadm's --stats)."""
    health: str = "-"


@dataclass
class Frame:
    rows: list[Row]
    connections: int = 0
    max_connections: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    ha: list[str] = field(default_factory=list)
    """`pylvs status`'s VRRP lines (one per instance) and BGP lines."""


_HA_LINES = ("VRRP", "BGP:", "  neighbor ")


def frame(table: str, rate: str, stats: str, status_text: str,
          status_data: dict[str, Any] | None) -> Frame:
    """What the director said, as the view's rows: every service and real server of the
    table, and the checked servers a check took out of it (DOWN, nothing else known)."""
    rates, totals = parse_listing(rate), parse_listing(stats)
    health = parse_health(status_text)
    rows: list[Row] = []
    for name, (cells, servers) in parse_listing(table).items():
        rows.append(Row(name, False, cells[0] if cells else "", rates=_cells(rates, name, None),
                        totals=_cells(totals, name, None)[:3]))
        for address, dest in servers.items():
            rows.append(Row(address, True, *dest[:4], rates=_cells(rates, name, address),
                            totals=_cells(totals, name, address)[:3],
                            health=health.get((name, address), "-")))
        rows += [Row(address, True, health=f"{state} (out)")
                 for (service, address), state in health.items()
                 if service == name and address not in servers]
    data = status_data or {}
    ha = [line for line in status_text.splitlines() if line.startswith(_HA_LINES)]
    return Frame(rows, data.get("connections", 0), data.get("max_connections", 0),
                 dict(data.get("counters", {})), ha)


def _cells(listing: Listing, service: str, server: str | None) -> list[str]:
    if service not in listing:
        return []
    cells, servers = listing[service]
    return cells if server is None else servers.get(server, [])


@dataclass(frozen=True)
class Column:
    header: str
    rank: int
    """Importance: where the terminal is too narrow for every column, the highest ranks go."""
    right: bool = True


COLUMNS = (Column("Service / real server", 0, right=False), Column("Sched/Fwd", 8, right=False),
           Column("Weight", 3), Column("ActiveConn", 1), Column("InActConn", 2),
           Column("CPS", 4), Column("InPPS", 5), Column("OutPPS", 6), Column("InBPS", 9),
           Column("OutBPS", 10), Column("Conns", 11), Column("InPkts", 12),
           Column("OutPkts", 13), Column("Health", 7, right=False))
UNCHECKED = 14
"""Health's rank when no real server is checked ("-" everywhere): the first to go."""
GAP = 1
"""Spaces between two columns (ipvsadm's listings are as tight)."""


def cells(row: Row) -> list[str]:
    """A row's text in COLUMNS' order."""
    name = f"  -> {row.name}" if row.server else row.name
    return [name, row.method, row.weight, row.active, row.inactive, *_pad(row.rates, 5),
            *_pad(row.totals, 3), row.health]


def fitted(table: list[list[str]], width: int, checked: bool) -> list[int]:
    """The columns (indexes into COLUMNS) that fit ``width`` whole, the most important first:
    each one kept in full, or not at all. The first (the names) always, folded if need be."""
    widths = [max([len(column.header), *(len(row[i]) for row in table)])
              for i, column in enumerate(COLUMNS)]
    ranks = [UNCHECKED if column.header == "Health" and not checked else column.rank
             for column in COLUMNS]
    kept, used = [0], widths[0]
    for i in sorted(range(1, len(COLUMNS)), key=ranks.__getitem__):
        if used + GAP + widths[i] > width:
            break
        kept.append(i)
        used += GAP + widths[i]
    return sorted(kept)


def render(view: Frame, where: str, width: int = WIDE) -> Group:
    """The frame as rich renderables for a terminal ``width`` columns wide: a title, the
    table (the columns that fit: see ``fitted``), the table size and counters."""
    rows = [cells(row) for row in view.rows]
    checked = any(row.health != "-" for row in view.rows)
    kept = fitted(rows, width, checked)
    table = Table(box=box.SIMPLE, padding=(0, 0), show_edge=False)
    for i in kept:
        column = COLUMNS[i]
        table.add_column(column.header, justify="right" if column.right else "left",
                         no_wrap=i != 0, overflow="fold")
    for row, texts in zip(view.rows, rows, strict=True):
        table.add_row(*(texts[i] for i in kept), style=None if row.server else "bold")
    lines = _footer(view)
    hidden = [COLUMNS[i].header for i in range(len(COLUMNS)) if i not in kept]
    if hidden:
        lines.append(f"not shown at {width} columns: {', '.join(hidden)}")
    title = Text(f"pylvs top  {where}  {time.strftime('%H:%M:%S')}", style="bold")
    return Group(title, table, Text("\n".join(lines)))


def _footer(view: Frame) -> list[str]:
    counters = {k: v for k, v in sorted(view.counters.items()) if v}
    passed = {k: v for k, v in counters.items() if k in PASSED}
    drops = {k: v for k, v in counters.items() if k not in PASSED}
    return [*view.ha, f"connections {view.connections} (max {view.max_connections})",
            "traffic: " + (", ".join(f"{k} {v}" for k, v in passed.items()) or "none yet"),
            "drops: " + (", ".join(f"{k} {v}" for k, v in drops.items()) or "none")]


def _pad(cells: list[str], count: int) -> list[str]:
    return (cells + ["-"] * count)[:count]


# --- the shell: ask, draw ---------------------------------------------------------------------

def fetch(socket_path: str) -> Frame:
    """One frame's worth of answers from the director on ``socket_path``."""
    texts = {}
    for key, argv in LISTINGS.items():
        reply = control.ask(socket_path, AdmLine(argv))
        if reply.rc != 0:
            raise ValueError(reply.stderr.strip() or f"{' '.join(argv)} refused ({reply.rc})")
        texts[key] = reply.stdout
    status = control.ask(socket_path, Status())
    return frame(texts["table"], texts["rate"], texts["stats"], status.stdout,
                 status.data if isinstance(status.data, dict) else None)


def run(socket_path: str, once: bool = False, interval: float = 1.0) -> int:
    """`pylvs top`: one frame (``once``), or a live view until Ctrl-C."""
    console = Console() if sys.stdout.isatty() else Console(width=WIDE)
    try:
        if once:
            console.print(render(fetch(socket_path), socket_path, console.width))
            return 0
        with Live(render(fetch(socket_path), socket_path, console.width), console=console,
                  auto_refresh=False, screen=console.is_terminal) as live:
            while True:
                time.sleep(max(0.1, interval))
                live.update(render(fetch(socket_path), socket_path, console.width),
                            refresh=True)
    except KeyboardInterrupt:
        return 0
    except (OSError, ValueError) as exc:  # DirectorNotRunning is a ConnectionError
        print(f"pylvs top: {exc}", file=sys.stderr)
        return ipvsadm.EXIT_DIRECTOR
