"""Weighted failover, as ip_vs_fo.c: the available server of the highest weight, the first in
the list on ties."""

from __future__ import annotations

from pylvs.core.model import RealServer
from schedulers import register
from schedulers.ranking import Ranked


@register
class WeightedFailover(Ranked):
    name = "fo"

    @staticmethod
    def better(b: RealServer, a: RealServer) -> bool:
        return b.weight > a.weight
