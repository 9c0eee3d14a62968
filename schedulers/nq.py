"""Never queue, as ip_vs_nq.c: the first idle server (no active connection) in list order;
when none is idle, the shortest-expected-delay choice."""

from __future__ import annotations

from collections.abc import Sequence

from pylvs.core.model import RealServer
from pylvs.core.packet import Flow
from schedulers import Scheduler, register
from schedulers.ranking import Tournament, available
from schedulers.sed import expected_delay_better


@register
class NeverQueue(Scheduler):
    name = "nq"

    def __init__(self, flags: Sequence[str] = ()) -> None:
        super().__init__(flags)
        self.idle = Tournament(lambda b, a: False,
                               lambda s: available(s) and s.activeconns == 0)
        self.delay = Tournament(expected_delay_better, available)

    def changed(self, server: RealServer) -> None:
        self.idle.changed(server)
        self.delay.changed(server)

    def update(self, servers: Sequence[RealServer]) -> None:
        for server in servers:
            server.watcher = self.changed
        self.idle.rebuild(servers)
        self.delay.rebuild(servers)

    def pick(self, servers: Sequence[RealServer], flow: Flow) -> RealServer | None:
        return self.idle.best or self.delay.best
