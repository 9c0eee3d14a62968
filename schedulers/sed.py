"""Shortest expected delay, as ip_vs_sed.c: wlc with overhead = active connections + 1
(inactive ones ignored): the server that would finish the new connection soonest."""

from __future__ import annotations

from pylvs.core.model import RealServer
from schedulers import register
from schedulers.ranking import Ranked


def expected_delay_better(b: RealServer, a: RealServer) -> bool:
    return (a.activeconns + 1) * b.weight > (b.activeconns + 1) * a.weight


@register
class ShortestExpectedDelay(Ranked):
    name = "sed"
    better = staticmethod(expected_delay_better)
