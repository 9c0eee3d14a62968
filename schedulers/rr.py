"""Round robin, as ip_vs_rr.c: walk on from the last choice to the next available server."""

from __future__ import annotations

from collections.abc import Sequence

from pylvs.core.model import RealServer
from pylvs.core.packet import Flow
from schedulers import Scheduler, register


@register
class RoundRobin(Scheduler):
    name = "rr"

    def __init__(self, flags: Sequence[str] = ()) -> None:
        super().__init__(flags)
        self.cursor: RealServer | None = None
        self.position = -1

    def update(self, servers: Sequence[RealServer]) -> None:
        """A deleted cursor hands over to its predecessor, as ip_vs_rr_del_dest does."""
        if self.cursor is None or any(s is self.cursor for s in servers):
            return
        before = self.position - 1
        self.cursor = servers[before] if 0 <= before < len(servers) else None
        self.position = before if self.cursor is not None else -1

    def pick(self, servers: Sequence[RealServer], flow: Flow) -> RealServer | None:
        count = len(servers)
        position = self.position
        if not (0 <= position < count and servers[position] is self.cursor):
            position = _index(servers, self.cursor)
        start = position + 1
        for step in range(count):
            server = servers[(start + step) % count]
            if server.available:
                self.cursor, self.position = server, (start + step) % count
                return server
        return None


def _index(servers: Sequence[RealServer], server: RealServer | None) -> int:
    """Position of the cursor; -1 (the list head) when there is none."""
    for i, candidate in enumerate(servers):
        if candidate is server:
            return i
    return -1
