"""Least connection, as ip_vs_lc.c: the smallest overhead (active × 256 + inactive) wins, the
first in the list on ties."""

from __future__ import annotations

from pylvs.core.model import RealServer
from schedulers import register
from schedulers.ranking import Ranked


@register
class LeastConnection(Ranked):
    name = "lc"

    @staticmethod
    def better(b: RealServer, a: RealServer) -> bool:
        return b.overhead() < a.overhead()
