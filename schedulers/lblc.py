"""Locality-based least connection, as ip_vs_lblc.c, for cache clusters (fwmark services).

A cache maps each destination address to the server last chosen for it. The cached server is
kept while it is available and not "overloaded" in lblc's own sense: more active connections than
its weight while some server has fewer than half its weight active. Otherwise the wlc choice is
taken and cached. Entries unused for ``expiration`` seconds (sysctl lblc_expiration, 24 h) go;
the time is ``self.now``, set by the director before each pick (no clock is read here).

The cache is keyed by the whole destination address (128 bits for IPv6), as ip_vs_lblc_get
matches entries with ip_vs_addr_equal; the kernel's hash (``chain``: the address folded as in
``hashing.fold``, then hash_32 into 2^10 chains) only picks the chain searched, so no pick
depends on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pylvs.core.model import RealServer
from pylvs.core.packet import Flow
from schedulers import register
from schedulers.hashing import flow_af, fold, hash_32
from schedulers.ranking import Ranked
from schedulers.wlc import WeightedLeastConnection

EXPIRATION = 24 * 60 * 60.0
TAB_BITS = 10
"""CONFIG_IP_VS_LBLC_TAB_BITS and CONFIG_IP_VS_LBLCR_TAB_BITS: 1024 hash chains."""


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

    @staticmethod
    def chain(flow: Flow) -> int:
        """ip_vs_lblc_hashkey / ip_vs_lblcr_hashkey of the flow's destination: the kernel's
        hash chain for its entry."""
        return hash_32(fold(flow.daddr, flow_af(flow)), TAB_BITS)


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
