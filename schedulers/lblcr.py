"""Locality-based least connection with replication, as ip_vs_lblcr.c.

Each destination address has a set of servers (newest first). A new connection goes to the
set's least loaded member (wlc rule); if that one is overloaded in lblc's sense, or the set has
none, the least loaded server of the whole service (wlc) joins the set and takes it. A set of
more than one member that has not changed for ``expiration`` seconds drops its most loaded one.
The time is ``self.now``, set by the director before each pick, as for lblc. Sets are keyed by
the whole destination address, IPv4 or IPv6, as lblc's cache (``LocalityBased.chain`` is the
kernel's ip_vs_lblcr_hashkey).
"""

from __future__ import annotations

from collections.abc import Sequence

from pylvs.core.model import RealServer
from pylvs.core.packet import Flow
from schedulers import register
from schedulers.lblc import EXPIRATION, LocalityBased, lblc_overloaded


class ServerSet:
    def __init__(self, now: float) -> None:
        self.members: list[RealServer] = []
        self.lastmod = now
        self.lastuse = now

    def insert(self, server: RealServer, now: float) -> None:
        if any(m is server for m in self.members):
            return
        self.members.insert(0, server)
        self.lastmod = now

    def erase(self, server: RealServer, now: float) -> None:
        self.members = [m for m in self.members if m is not server]
        self.lastmod = now

    def least(self) -> RealServer | None:
        """ip_vs_dest_set_min: wlc over the members."""
        least: RealServer | None = None
        for server in self.members:
            if server.overloaded:
                continue
            if least is None:
                if server.weight > 0:
                    least = server
            elif least.overhead() * server.weight > server.overhead() * least.weight:
                least = server
        return least

    def most(self) -> RealServer | None:
        """ip_vs_dest_set_max: the most loaded member per weight."""
        most: RealServer | None = None
        for server in self.members:
            if most is None:
                if server.weight > 0:
                    most = server
            elif (server.weight > 0
                  and most.overhead() * server.weight < server.overhead() * most.weight):
                most = server
        return most


@register
class LocalityBasedLeastConnectionReplication(LocalityBased):
    name = "lblcr"

    def __init__(self, flags: Sequence[str] = (), expiration: float = EXPIRATION) -> None:
        super().__init__(flags, expiration)
        self.sets: dict[int, ServerSet] = {}

    def update(self, servers: Sequence[RealServer]) -> None:
        super().update(servers)
        members = {id(s) for s in servers}
        for entry in self.sets.values():
            entry.members = [m for m in entry.members if id(m) in members]

    def pick(self, servers: Sequence[RealServer], flow: Flow) -> RealServer | None:
        now = self.now
        entry = self.sets.get(flow.daddr)
        if entry is not None and now - entry.lastuse > self.expiration:
            del self.sets[flow.daddr]
            entry = None
        if entry is None:
            server = self.ranking.best
            if server is not None:
                self.sets[flow.daddr] = entry = ServerSet(now)
                entry.insert(server, now)
            return server
        entry.lastuse = now
        server = entry.least()
        if len(entry.members) > 1 and now - entry.lastmod > self.expiration:
            most = entry.most()
            if most is not None:
                entry.erase(most, now)
        if server is not None and not lblc_overloaded(server, servers):
            return server
        server = self.ranking.best
        if server is not None:
            entry.insert(server, now)
        return server
