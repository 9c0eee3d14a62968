"""Weighted least connection, ipvsadm's default, as ip_vs_wlc.c.

The first available server is the initial choice; a later one replaces it when
``overhead_least * weight_d > overhead_d * weight_least``: overhead per weight compared by cross
multiplication, so a server of weight 0 can never win and ties stay with the earlier server.
"""

from __future__ import annotations

from pylvs.core.model import RealServer
from schedulers import register
from schedulers.ranking import Ranked


@register
class WeightedLeastConnection(Ranked):
    name = "wlc"

    @staticmethod
    def better(b: RealServer, a: RealServer) -> bool:
        return a.overhead() * b.weight > b.overhead() * a.weight
