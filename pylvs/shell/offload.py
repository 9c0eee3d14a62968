"""`offload = "xdp"`: the fast path (pylvs.core.fastpath) on the director's interfaces, its map
filled as connections become established and read back for IPVS's timers and counters.

The director core says which connections are ready (``Outbox.take_offers``: ESTABLISHED TCP
whose method needs nothing more from Python, UDP) and which are not any more (removed, or moved
to another state by a frame the program passed up). What that means for the maps, and what the
program's counts mean for IPVS's timers and statistics, is the core's
(pylvs.core.offloaded.FastPathLedger); this file only does the map I/O:

- ``apply``: the offers and withdrawals into the connection maps (new entries in one batch a
  map): IPv4 keys (fastpath.KEY_SIZE) into ``conns``, IPv6 ones (fastpath.KEY6_SIZE: IPv6
  connections and the outer addresses of 4in6 tunnels) into ``conns6``;
- ``read``: the stats rows into the servers' and services' stats, so -Ln --stats and --rate
  see every frame; the entries of the connections about to expire (``everything``: of all of
  them, before an -Lnc), so IPVS's expiry follows the frames the program forwarded.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from pylvs.core import fastpath
from pylvs.core.director import Director
from pylvs.core.offloaded import ZERO_ROW, FastPathLedger, Writes
from pylvs.shell import xdp
from pylvs.shell.interfaces import interface_index

log = logging.getLogger("pylvs")


class OffloadError(RuntimeError):
    pass


class Offload:
    """The maps and program (made, loaded and attached by the process that owns the host
    state), and one data plane's connections in them (its ``ledger``); ``joined`` gives a forked
    worker its own view of the same maps, with its own rows of the stats map."""

    def __init__(self, interfaces: list[str], max_entries: int, attach: bool = True) -> None:
        self.ledger = FastPathLedger({name: interface_index(name) for name in interfaces})
        self.conns: xdp.Map | None = None
        self.conns6: xdp.Map | None = None
        self.stats: xdp.Map | None = None
        self.program: xdp.Program | None = None
        self.attached: list[str] = []
        self.counters: Counter[str] = Counter()
        """The shell's own counts: offload_refused (the map was full)."""
        try:
            self._load(max_entries)
            for name in interfaces if attach else ():
                xdp.attach(name, self.program)  # type: ignore[arg-type]
                self.attached.append(name)
        except OSError as exc:
            self.close()
            raise OffloadError(f"no XDP offload: {exc}") from None

    @classmethod
    def joined(cls, owner: Offload, worker: int) -> Offload:
        """In a worker forked from ``owner``'s process: the same maps (their descriptors came
        with the fork), stats rows of its own, nothing to detach when it ends."""
        view = cls.__new__(cls)
        view.conns, view.stats, view.program = owner.conns, owner.stats, owner.program
        view.conns6 = owner.conns6
        view.attached, view.counters = [], Counter()
        view.ledger = FastPathLedger(owner.ledger.ifindex,
                                     worker * fastpath.SLOTS_PER_WORKER)
        return view

    def purge(self, worker: int) -> int:
        """A worker died: the entries it made go (its connections went with it)."""
        first = worker * fastpath.SLOTS_PER_WORKER
        gone = 0
        for conns in self._maps():
            for key, value in conns.items():
                if first <= fastpath.slot(value) < first + fastpath.SLOTS_PER_WORKER:
                    gone += conns.delete(key)
        return gone

    def _maps(self) -> list[xdp.Map]:
        return [conns for conns in (self.conns, self.conns6) if conns is not None]

    def _map(self, key: bytes) -> xdp.Map:
        """The connection map a key belongs to, by its size."""
        conns = self.conns6 if len(key) == fastpath.KEY6_SIZE else self.conns
        assert conns is not None
        return conns

    def _load(self, max_entries: int) -> None:
        self.conns = xdp.Map(xdp.BPF_MAP_TYPE_HASH, fastpath.KEY_SIZE, fastpath.VALUE_SIZE,
                             max(2, max_entries), "pylvs_conns", xdp.BPF_F_NO_PREALLOC)
        self.conns6 = xdp.Map(xdp.BPF_MAP_TYPE_HASH, fastpath.KEY6_SIZE, fastpath.VALUE6_SIZE,
                              max(2, max_entries), "pylvs_conns6", xdp.BPF_F_NO_PREALLOC)
        self.stats = xdp.Map(xdp.BPF_MAP_TYPE_ARRAY, 4, fastpath.STATS.size,
                             fastpath.STATS_SLOTS, "pylvs_stats")
        self.program = xdp.Program(fastpath.program(self.conns.fd, self.stats.fd,
                                                    self.conns6.fd, tunnels=True),
                                   "pylvs_fastpath")

    def apply(self, director: Director) -> None:
        """What the core offered and withdrew since the last call, into the map."""
        offered, withdrawn = director.outbox.take_offers()
        if offered or withdrawn:
            self._write(self.ledger.plan(offered, withdrawn, director.hops))

    def _write(self, writes: Writes) -> None:
        """The ledger's writes: deletions, fresh stats rows, then the new entries in one batch
        a map (BPF_MAP_UPDATE_BATCH), one connection at a time if a batch is refused."""
        stats = self.stats
        assert stats is not None
        for key in writes.delete:
            self._map(key).delete(key)
        for key in writes.rows:
            stats.update(key, ZERO_ROW)
        if not writes.put:
            return
        try:
            by_map: dict[int, tuple[xdp.Map, list[tuple[bytes, bytes]]]] = {}
            for install in writes.put:
                for entry in install.entries:
                    conns = self._map(entry[0])
                    by_map.setdefault(id(conns), (conns, []))[1].append(entry)
            for conns, entries in by_map.values():
                conns.update_many(entries)
            done = writes.put
        except OSError:  # the map is full, or no batches here: find out one by one
            done = []
            for install in writes.put:
                try:
                    for key, value in install.entries:
                        self._map(key).update(key, value)
                    done.append(install)
                except OSError as exc:  # Python forwards it, as without offload
                    for key in self.ledger.refused(install):
                        self._map(key).delete(key)
                    self.counters["offload_refused"] += 1
                    log.debug("offload refused: %s", exc)
        for install in done:
            self.ledger.installed(install)

    def read(self, director: Director, now: float, everything: bool = False) -> None:
        """The program's counts into the servers' stats, and the timers of the connections
        about to expire (``everything``: of all of them) from their entries' last times."""
        stats, ledger = self.stats, self.ledger
        assert stats is not None
        rows = {key: row for key in ledger.rows()
                for row in [stats.lookup(key)] if row is not None}
        ledger.fold(rows, director.services.values())
        self._write(ledger.follow_hops(director.hops))
        wanted = ledger.wanted(now, everything)
        if not wanted:
            return
        if everything:  # one batched read of the map beats n lookups
            values = {key: value for conns in self._maps() for key, value in conns.items()}
        else:
            values = {key: value for key in wanted
                      for value in [self._map(key).lookup(key)] if value is not None}
        offset = time.monotonic() - time.clock_gettime(time.CLOCK_MONOTONIC)
        ledger.refresh(values, offset, director.table.timeouts.by_state)

    """The name the shell calls today (pylvs.shell.dataplane): ``read``."""

    def close(self) -> None:
        for name in self.attached:
            try:
                xdp.detach(name)
            except OSError as exc:
                log.error("could not take the XDP program off %s: %s", name, exc)
        self.attached = []
        for closing in (self.program, self.conns, self.conns6, self.stats):
            if closing is not None:
                closing.close()
        self.ledger.clear()
