"""Source hashing, as ip_vs_sh.c: 256 buckets filled in list order by weight, keyed by the
client's address (and port with ``sh-port``); an unavailable server fails the connection unless
``sh-fallback`` probes on round the table. An IPv6 address is folded as ip_vs_sh_hashkey does
(``hashing.fold``)."""

from __future__ import annotations

from collections.abc import Sequence

from pylvs.core.model import RealServer
from pylvs.core.packet import Flow
from schedulers import Scheduler, register
from schedulers.hashing import MASK32, fill_buckets, flow_af, fold, hash_32, probe, unavailable

TAB_BITS = 8
TAB_SIZE = 1 << TAB_BITS


def bucket(addr: int, port: int, offset: int = 0) -> int:
    """ip_vs_sh_hashkey for ``addr`` = ntohl(addr_fold), the folded address."""
    return (offset + hash_32((port + addr) & MASK32, TAB_BITS)) & (TAB_SIZE - 1)


@register
class SourceHashing(Scheduler):
    name = "sh"
    FLAGS = ("sh-fallback", "sh-port")

    def __init__(self, flags: Sequence[str] = ()) -> None:
        super().__init__(flags)
        self.table: list[RealServer | None] = [None] * TAB_SIZE
        self.use_port = "sh-port" in self.flags
        self.fallback = "sh-fallback" in self.flags

    def update(self, servers: Sequence[RealServer]) -> None:
        self.table = fill_buckets(servers, TAB_SIZE, weighted=True)

    def key(self, flow: Flow) -> tuple[int, int]:
        """The hash inputs: the folded source address, the source port or 0."""
        return fold(flow.saddr, flow_af(flow)), flow.sport if self.use_port else 0

    def pick(self, servers: Sequence[RealServer], flow: Flow) -> RealServer | None:
        addr, port = self.key(flow)
        first = bucket(addr, port)
        if self.fallback:
            return probe(self.table, first, lambda offset: bucket(addr, port, offset))
        server = self.table[first]
        return None if server is None or unavailable(server) else server
