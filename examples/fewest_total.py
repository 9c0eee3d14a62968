"""A pylvs scheduler plug-in: the real server that has been given the fewest connections so far.

Use it with ``scheduler = "examples.fewest_total:FewestTotal"`` (the module must be importable by
``pylvs run``), or register it under the entry point group ``pylvs.schedulers`` and name it.
"""

from __future__ import annotations

from collections.abc import Sequence

from schedulers import Flow, RealServer, Scheduler


class FewestTotal(Scheduler):
    name = "fewest"

    def pick(self, servers: Sequence[RealServer], flow: Flow) -> RealServer | None:
        usable = [s for s in servers if s.weight > 0 and not s.overloaded]
        return min(usable, key=lambda s: s.stats.conns, default=None)
