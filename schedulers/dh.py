"""Destination hashing, as ip_vs_dh.c: 256 buckets given to the servers in turn (weights play no
part), keyed by the packet's destination address; an unavailable server fails the connection.
Meant for fwmark services in front of caches, where destinations vary. An IPv6 address is folded
as ip_vs_dh_hashkey does (``hashing.fold``)."""

from __future__ import annotations

from collections.abc import Sequence

from pylvs.core.model import RealServer
from pylvs.core.packet import Flow
from schedulers import Scheduler, register
from schedulers.hashing import fill_buckets, flow_af, fold, hash_32, unavailable

TAB_BITS = 8
TAB_SIZE = 1 << TAB_BITS


@register
class DestinationHashing(Scheduler):
    name = "dh"

    def __init__(self, flags: Sequence[str] = ()) -> None:
        super().__init__(flags)
        self.table: list[RealServer | None] = [None] * TAB_SIZE

    def update(self, servers: Sequence[RealServer]) -> None:
        self.table = fill_buckets(servers, TAB_SIZE, weighted=False)

    def pick(self, servers: Sequence[RealServer], flow: Flow) -> RealServer | None:
        server = self.table[hash_32(fold(flow.daddr, flow_af(flow)), TAB_BITS)]
        return None if server is None or unavailable(server) else server
