"""Prequal in L4 form: a scheduler plug-in built only through the public scheduler face.

Google's Prequal (Wydrowski, Kleinberg, Rumble, Yang, "Load is not what you should balance",
NSDI 2024) chooses among a few probed replicas by requests in flight (RIF) and latency, with
its hot-cold lexicographic rule: a replica whose RIF is above a quantile (``q_rif``) of the RIFs
seen lately is hot; among the cold ones the lowest latency wins; when all are hot, the lowest
RIF. In a director:

- the probe pool is ``probes`` (2 or 3) servers drawn at random for each new connection (a
  seeded ``rng``, as twos's): reading a server's counters costs nothing, so no probe is sent;
- RIF is the server's ``activeconns`` (this director's connections in SYN_RECV or ESTABLISHED);
- latency is an estimate fed from outside by ``observe(server, latency_ms)``: the health
  checks' measured response times (HTTP_GET times the status line), smoothed (``alpha``); a
  server never observed counts as 0 ms, so a new server is tried (its RIF still guards it).

Weights only say whether a server may be chosen (0 = quiesced, or OVERLOAD): Prequal balances
by what it measures, not by configured capacity. Use it as ``scheduler =
"bench.schedlab.prequal:Prequal"``, or as ``prequal`` once this module is imported.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from schedulers import Flow, RealServer, Scheduler, register

WINDOW = 64
"""RIF samples (of the probe pools) the hot threshold is taken from."""
REFRESH = 16
"""Picks between two computations of the threshold."""


@register
class Prequal(Scheduler):
    name = "prequal"

    def __init__(self, flags: Sequence[str] = (), rng: random.Random | None = None,
                 probes: int = 3, q_rif: float = 0.6, alpha: float = 0.5) -> None:
        super().__init__(flags)
        if not 1 <= probes <= 16 or not 0.0 < q_rif <= 1.0 or not 0.0 < alpha <= 1.0:
            raise ValueError("prequal: probes 1..16, q_rif and alpha in (0, 1]")
        self.rng = rng or random.Random()
        self.probes, self.q_rif, self.alpha = probes, q_rif, alpha
        self.latency: dict[RealServer, float] = {}
        """Milliseconds, per server: the smoothed health-check response time."""
        self.recent: list[int] = []
        self.slot = 0
        self.hot_above = 0
        self.countdown = 0

    def update(self, servers: Sequence[RealServer]) -> None:
        """A server that left takes its latency with it."""
        present = set(servers)
        self.latency = {s: ms for s, ms in self.latency.items() if s in present}

    def observe(self, server: RealServer, latency_ms: float) -> None:
        """One health check's response time: the estimate moves ``alpha`` of the way to it."""
        old = self.latency.get(server)
        self.latency[server] = latency_ms if old is None else old + self.alpha * (
            latency_ms - old)

    def pick(self, servers: Sequence[RealServer], flow: Flow) -> RealServer | None:
        pool = self._pool(servers)
        if not pool:
            return None
        self._note(pool)
        limit = self.hot_above
        cold = [s for s in pool if s.activeconns <= limit]
        if cold:
            latency = self.latency
            return min(cold, key=lambda s: (latency.get(s, 0.0), s.activeconns))
        return min(pool, key=lambda s: s.activeconns)

    def _pool(self, servers: Sequence[RealServer]) -> list[RealServer]:
        """``probes`` available servers drawn at random (with replacement); when every draw
        finds an unavailable one, the draws are made among the available ones."""
        count = len(servers)
        if not count:
            return []
        rnd = self.rng.random
        pool = [s for s in (servers[int(rnd() * count)] for _ in range(self.probes))
                if s.weight > 0 and not s.overloaded]
        if pool:
            return pool
        usable = [s for s in servers if s.weight > 0 and not s.overloaded]
        return [usable[int(rnd() * len(usable))] for _ in range(self.probes)] if usable else []

    def _note(self, pool: list[RealServer]) -> None:
        """The pool's RIFs into the window; the hot threshold (the ``q_rif`` quantile of the
        window) recomputed every ``REFRESH`` picks."""
        recent = self.recent
        for server in pool:
            if len(recent) < WINDOW:
                recent.append(server.activeconns)
            else:
                recent[self.slot] = server.activeconns
                self.slot = (self.slot + 1) % WINDOW
        self.countdown -= 1
        if self.countdown <= 0:
            ordered = sorted(recent)
            self.hot_above = ordered[int(self.q_rif * (len(ordered) - 1))]
            self.countdown = REFRESH
