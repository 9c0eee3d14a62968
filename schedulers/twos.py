"""Power of two choices, as ip_vs_twos.c (Linux ≥ 6.3): two servers drawn at random in
proportion to their weights, the one with less overhead per weight taken.

Draws are ``random() % (total weight + 1)`` walked down the list as the kernel does, so the first
server gets one draw more than its weight. The random source is injectable.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Sequence

from pylvs.core.model import RealServer
from pylvs.core.packet import Flow
from schedulers import Scheduler, register
from schedulers.ranking import available


@register
class PowerOfTwoChoices(Scheduler):
    name = "twos"

    def __init__(self, flags: Sequence[str] = (), rng: random.Random | None = None) -> None:
        super().__init__(flags)
        self.rng = rng or random.Random()
        self.dirty = True
        self.eligible: list[RealServer] = []
        self.cumulative: list[int] = []
        self.usable: dict[int, bool] = {}

    def changed(self, server: RealServer) -> None:
        """Counters change all the time; only a change of OVERLOAD redraws the weights."""
        if self.usable.get(id(server)) != available(server):
            self.dirty = True

    def update(self, servers: Sequence[RealServer]) -> None:
        for server in servers:
            server.watcher = self.changed
        self.dirty = True

    def _refresh(self, servers: Sequence[RealServer]) -> None:
        self.usable = {id(s): available(s) for s in servers}
        self.eligible = [s for s in servers if self.usable[id(s)]]
        total, self.cumulative = 0, []
        for server in self.eligible:
            total += server.weight
            self.cumulative.append(total)
        self.dirty = False

    def _draw(self, total: int) -> RealServer:
        """The first server whose running weight reaches the draw, as the kernel's walk."""
        return self.eligible[bisect_left(self.cumulative,
                                         self.rng.getrandbits(32) % (total + 1))]

    def pick(self, servers: Sequence[RealServer], flow: Flow) -> RealServer | None:
        if self.dirty:
            self._refresh(servers)
        if not self.eligible:
            return None
        total = self.cumulative[-1]
        first, second = self._draw(total), self._draw(total)
        if second.weight * first.overhead() > first.weight * second.overhead():
            return second
        return first
