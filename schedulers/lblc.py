"""Locality-based least connection, as ip_vs_lblc.c, for cache clusters (fwmark services).

A cache maps each destination address to the server last chosen for it. The cached server is
kept while it is available and not "overloaded" in lblc's own sense: more active connections than
its weight while some server has fewer than half its weight active. Otherwise the wlc choice is
taken and cached. Entries unused for ``expiration`` seconds (sysctl lblc_expiration, 24 h) go;
the time is ``self.now``, set by the director before each pick (no clock is read here).
"""

from __future__ import annotations

from collections.abc import Sequence

from pylvs.core.model import RealServer
from pylvs.core.packet import Flow
from schedulers import register
from schedulers.ranking import Ranked
from schedulers.wlc import WeightedLeastConnection

EXPIRATION = 24 * 60 * 60.0


def lblc_overloaded(server: RealServer, servers: Sequence[RealServer]) -> bool:
    if server.activeconns <= server.weight:
        return False
    return any(s.activeconns * 2 < s.weight for s in servers)


class LocalityBased(Ranked):
    """What lblc and lblcr share: the wlc choice, and entries that expire unused."""

    better = staticmethod(WeightedLeastConnection.better)

    def __init__(self, flags: Sequence[str] = (), expiration: float = EXPIRATION) -> None:
        super().__init__(flags)
        self.expiration = expiration


@register
class LocalityBasedLeastConnection(LocalityBased):
    name = "lblc"

    def __init__(self, flags: Sequence[str] = (), expiration: float = EXPIRATION) -> None:
        super().__init__(flags, expiration)
        self.cache: dict[int, tuple[RealServer, float]] = {}

    def update(self, servers: Sequence[RealServer]) -> None:
        super().update(servers)
        members = {id(s) for s in servers}
        self.cache = {k: v for k, v in self.cache.items() if id(v[0]) in members}

    def pick(self, servers: Sequence[RealServer], flow: Flow) -> RealServer | None:
        now = self.now
        entry = self.cache.get(flow.daddr)
        if entry is not None and now - entry[1] > self.expiration:
            del self.cache[flow.daddr]
            entry = None
        if entry is not None:
            server = entry[0]
            self.cache[flow.daddr] = (server, now)
            if server.weight > 0 and not lblc_overloaded(server, servers):
                return server
        server = self.ranking.best
        if server is not None:
            self.cache[flow.daddr] = (server, now)
        return server
