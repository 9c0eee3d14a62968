"""Weighted overflow, as ip_vs_ovf.c: the highest-weight server whose active connections do not
exceed its weight, the first in the list on ties; the next one takes over when it is full.
Only active connections count, so it suits TCP, not UDP."""

from __future__ import annotations

from pylvs.core.model import RealServer
from schedulers import register
from schedulers.ranking import Ranked, available


@register
class WeightedOverflow(Ranked):
    name = "ovf"

    @staticmethod
    def eligible(server: RealServer) -> bool:
        return available(server) and server.activeconns <= server.weight

    @staticmethod
    def better(b: RealServer, a: RealServer) -> bool:
        return b.weight > a.weight
