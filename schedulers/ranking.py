"""The leftmost best real server of a list, kept current in O(log n) per change.

IPVS's least-connection family scans its list on every new connection and keeps the first server
that no later one strictly beats. A tournament tree over the list positions gives the same answer
(a parent holds its left child's winner unless the right child's is strictly better) and needs
only the path from one leaf to the root to be replayed when one server's counters change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pylvs.core.model import RealServer
from pylvs.core.packet import Flow
from schedulers import Scheduler

Better = Callable[[RealServer, RealServer], bool]
"""better(b, a): b strictly beats a."""


class Tournament:
    def __init__(self, better: Better, eligible: Callable[[RealServer], bool]) -> None:
        self.better = better
        self.eligible = eligible
        self.size = 1
        self.tree: list[RealServer | None] = [None, None]
        self.index: dict[int, int] = {}

    def rebuild(self, servers: Sequence[RealServer]) -> None:
        size = 1
        while size < len(servers):
            size *= 2
        self.size = size
        self.index = {id(server): i for i, server in enumerate(servers)}
        tree: list[RealServer | None] = [None] * (2 * size)
        for i, server in enumerate(servers):
            tree[size + i] = server if self.eligible(server) else None
        self.tree = tree
        for node in range(size - 1, 0, -1):
            tree[node] = self._winner(tree[2 * node], tree[2 * node + 1])

    def _winner(self, left: RealServer | None, right: RealServer | None) -> RealServer | None:
        if left is None:
            return right
        if right is None or not self.better(right, left):
            return left
        return right

    def changed(self, server: RealServer) -> None:
        position = self.index.get(id(server))
        if position is None:
            return
        tree = self.tree
        node = self.size + position
        tree[node] = server if self.eligible(server) else None
        node //= 2
        while node:
            tree[node] = self._winner(tree[2 * node], tree[2 * node + 1])
            node //= 2

    @property
    def best(self) -> RealServer | None:
        return self.tree[1]


def available(server: RealServer) -> bool:
    return server.weight > 0 and not server.overloaded


class Ranked(Scheduler):
    """A scheduler whose choice is the leftmost eligible server no later one strictly beats."""

    def __init__(self, flags: Sequence[str] = ()) -> None:
        super().__init__(flags)
        self.ranking = Tournament(self.better, self.eligible)

    @staticmethod
    def eligible(server: RealServer) -> bool:
        return available(server)

    @staticmethod
    def better(b: RealServer, a: RealServer) -> bool:
        raise NotImplementedError

    def update(self, servers: Sequence[RealServer]) -> None:
        for server in servers:
            server.watcher = self.ranking.changed
        self.ranking.rebuild(servers)

    def pick(self, servers: Sequence[RealServer], flow: Flow) -> RealServer | None:
        return self.ranking.best
