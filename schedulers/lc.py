"""Least connection, as ip_vs_lc.c: the smallest overhead (active × 256 + inactive) wins."""

from __future__ import annotations

from collections.abc import Sequence

from pylvs.model import RealServer
from pylvs.packet import Flow
from schedulers import Scheduler, register


@register
class LeastConnection(Scheduler):
    name = "lc"

    def pick(self, servers: Sequence[RealServer], flow: Flow) -> RealServer | None:
        least: RealServer | None = None
        least_overhead = 0
        for server in servers:
            if not server.available:
                continue
            overhead = server.overhead()
            if least is None or overhead < least_overhead:
                least, least_overhead = server, overhead
        return least
