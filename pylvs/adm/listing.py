"""A listing of several data planes (the workers of `[director] workers = N`): what each one's
listing needs (a snapshot of its counters and rates, as plain values that cross a process
boundary), and their union, which lists as one director that saw every client would. Services
go by their key (a fwmark one's: mark and family) and real servers by (family, address, port):
::1 is not 0.0.0.1.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from pylvs.core.director import Director
from pylvs.core.model import RealServer, Stats, VirtualService


def snapshot(director: Director) -> list:
    """What a listing needs of one worker: per service and real server, counters and rates."""
    return [[list(svc.key), _stats(svc.stats),
             [[rs.af, rs.ip, rs.port, rs.activeconns, rs.inactconns, rs.persistconns,
               _stats(rs.stats)] for rs in svc.real_servers]]
            for svc in director.services.values()]


def union(services: Iterable[VirtualService], snapshots: Iterable[list]) -> list[VirtualService]:
    """Copies of ``services`` whose counters are the sums of the workers' snapshots."""
    view = copy.deepcopy(list(services))
    by_key = {svc.key: svc for svc in view}
    for svc in view:
        svc.stats = Stats()
        for rs in svc.real_servers:
            rs.stats, rs.activeconns, rs.inactconns, rs.persistconns = Stats(), 0, 0, 0
    for shot in snapshots:
        for key, stats, servers in shot:
            svc = by_key.get(tuple(key))
            if svc is None:
                continue
            _add(svc.stats, stats)
            dests: dict[tuple[int, int, int], RealServer] = {
                (rs.af, rs.ip, rs.port): rs for rs in svc.real_servers}
            for af, ip, port, active, inactive, persistent, counts in servers:
                rs = dests.get((af, ip, port))
                if rs is not None:
                    rs.activeconns += active
                    rs.inactconns += inactive
                    rs.persistconns += persistent
                    _add(rs.stats, counts)
    return view


def _stats(stats: Stats) -> list[int]:
    return [*stats.counters(), *stats.averages()]


def _add(stats: Stats, values: list[int]) -> None:
    stats.add(values[:5], values[5:])


def union_connections(listings: Iterable[str]) -> str:
    """-Lnc of several workers: one title, every worker's rows."""
    head: list[str] = []
    rows: list[str] = []
    for listing in listings:
        lines = listing.splitlines(keepends=True)
        head = head or lines[:2]
        rows += lines[2:]
    return "".join(head + rows)
