"""Weighted least connection, ipvsadm's default, as ip_vs_wlc.c.

The first available server is the initial choice; a later one replaces it when
``overhead_least * weight_d > overhead_d * weight_least``: overhead per weight compared by cross
multiplication, so a server of weight 0 can never win and ties stay with the earlier server.
"""

from __future__ import annotations

from collections.abc import Sequence

from pylvs.model import RealServer
from pylvs.packet import Flow
from schedulers import Scheduler, register


@register
class WeightedLeastConnection(Scheduler):
    name = "wlc"

    def pick(self, servers: Sequence[RealServer], flow: Flow) -> RealServer | None:
        least: RealServer | None = None
        least_overhead = 0
        for server in servers:
            if server.overloaded:
                continue
            if least is None:
                if server.weight > 0:
                    least, least_overhead = server, server.overhead()
                continue
            overhead = server.overhead()
            if least_overhead * server.weight > overhead * least.weight:
                least, least_overhead = server, overhead
        return least
