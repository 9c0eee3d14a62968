"""Weighted round robin, as ip_vs_wrr.c.

State: ``di`` the gcd of the positive weights, ``mw`` the max weight less ``di - 1``, ``cw`` the
current weight and a cursor. Each pick walks on from the cursor to the first server not
overloaded whose weight is at least ``cw``; passing the end of the list lowers ``cw`` by ``di``
and a ``cw`` at or below zero starts again at ``mw``. Weights A=3, B=2, C=1 (list order A, B, C)
walk the passes cw=3: A; cw=2: A B; cw=1: A B C, so the sequence is A A B A B C, repeating.
``mw`` is lowered by ``di - 1`` so that the last pass is the one with ``cw`` = 1 for any gcd.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import gcd

from pylvs.core.model import RealServer
from pylvs.core.packet import Flow
from schedulers import Scheduler, register

HEAD = -1


@register
class WeightedRoundRobin(Scheduler):
    name = "wrr"

    def __init__(self, flags: Sequence[str] = ()) -> None:
        super().__init__(flags)
        self.cursor = HEAD
        self.di = 1
        self.mw = 0
        self.cw = 0

    def update(self, servers: Sequence[RealServer]) -> None:
        """ip_vs_wrr_dest_changed: back to the list head, cw kept within the new weights."""
        self.cursor = HEAD
        self.di = gcd(*(s.weight for s in servers if s.weight > 0)) or 1
        self.mw = max((s.weight for s in servers), default=0) - (self.di - 1)
        if self.cw > self.mw or not self.cw:
            self.cw = self.mw
        elif self.di > 1:
            self.cw = (self.cw // self.di) * self.di + 1

    def pick(self, servers: Sequence[RealServer], flow: Flow) -> RealServer | None:
        if self.mw <= 0:
            return None
        last = position = self.cursor
        stop: int | None = None
        last_pass = restarted = False
        while True:
            for i in range(position + 1, len(servers)):
                server = servers[i]
                if not server.overloaded and server.weight >= self.cw:
                    self.cursor = i
                    return server
                if i == stop:
                    return None
            self.cw -= self.di
            if self.cw <= 0:
                self.cw = self.mw
                if last_pass or last == HEAD:
                    return None
                restarted = True
            last_pass = self.cw <= self.di
            if last_pass and restarted and last != HEAD:
                stop = last
            position = HEAD
