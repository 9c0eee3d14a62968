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

Which links the program goes on and sends into is pylvs.core.offloaded's (``choose``, from
what pylvs.shell.interfaces and xdp.features read); so is when a link drops what the program
sends into it (``DropWatch``, fed once a tick by ``watch`` with the links' IFLA_STATS64 drop
counters and what the program forwarded). A link withdrawn, at start or for its drops, is
marked in a map every data plane shares (``links``: with workers, each withdraws its own
connections from it at its next ``watch``); its connections go back to Python
(``FastPathLedger.withdraw_link``).
"""

from __future__ import annotations

import logging
import struct
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from pylvs.core import fastpath
from pylvs.core.director import Director
from pylvs.core.offloaded import (
    ZERO_ROW,
    Drops,
    DropWatch,
    FastPathLedger,
    LinkChoice,
    LinkFacts,
    Withdrawal,
    Writes,
    choose,
    dropped_since,
    fix,
    row_key,
    worth_attaching,
)
from pylvs.shell import xdp
from pylvs.shell.interfaces import interface_index, link_drops, link_facts

log = logging.getLogger("pylvs")


class OffloadError(RuntimeError):
    pass


FAST, AT_START, FOR_DROPS = 0, 1, 2
"""A link's word in the shared ``links`` map: the program sends into it; withdrawn at start
(the facts); withdrawn for its drops."""
_WORD = struct.Struct("<I")


class Offload:
    """The maps and program (made, loaded and attached by the process that owns the host
    state), and one data plane's connections in them (its ``ledger``); ``joined`` gives a forked
    worker its own view of the same maps, with its own rows of the stats map."""

    def __init__(self, interfaces: list[str], max_entries: int, attach: bool = True,
                 mode: str = "xdp") -> None:
        self.ledger = FastPathLedger({name: interface_index(name) for name in interfaces})
        self.mode = mode
        """"xdp": on every interface; "auto": only where the facts say it works."""
        self.conns: xdp.Map | None = None
        self.conns6: xdp.Map | None = None
        self.stats: xdp.Map | None = None
        self.links: xdp.Map | None = None
        self.program: xdp.Program | None = None
        self.attached: list[str] = []
        self.counters: Counter[str] = Counter()
        """The shell's own counts: offload_refused (the map was full), xdp_links_withdrawn
        (links this data plane found dropping the program's frames)."""
        self.facts: dict[str, LinkFacts] = {}
        self.choices: dict[str, LinkChoice] = {}
        """Each interface: the fast path sends into it or not, and why (at start)."""
        self.withdrawals: dict[str, Withdrawal] = {}
        self.baseline: dict[str, Drops] = {}
        """The links' drop counters when the program went on (``report``)."""
        self.watcher: DropWatch | None = None
        self.watched = 0
        """The ledger's ``forwarded`` at the last ``watch``."""
        try:
            self._load(max_entries)
            if attach:
                self._attach(interfaces)
        except (OSError, NetlinkError) as exc:
            self.close()
            raise OffloadError(f"no XDP offload: {exc}") from None
        except OffloadError:
            self.close()
            raise

    def _attach(self, interfaces: list[str]) -> None:
        """The program on the interfaces (``auto``: those the facts allow, and it stays only
        where it works), then the start's choices and the drop counters' baseline."""
        errors: dict[str, str] = {}
        for name in interfaces:
            facts = link_facts(name)
            if self.mode == "auto" and not worth_attaching(facts):
                self.facts[name] = facts
                continue
            try:
                xdp.attach(name, self.program)  # type: ignore[arg-type]
                self.attached.append(name)
            except OSError as exc:
                if self.mode != "auto":
                    raise
                errors[name] = exc.strerror or str(exc)
            self.facts[name] = replace(facts, attached=name in self.attached,
                                       error=errors.get(name, ""), xdp_features=xdp.features(name))
        self.choices = {name: choose(facts, self.mode)
                        for name, facts in self.facts.items()}
        self._leave_unfit()
        self.baseline = link_drops(self.attached)
        self.watcher = DropWatch(dict(self.baseline))

    def _leave_unfit(self) -> None:
        """Off the links the fast path does not send into (``auto``), and those marked; none
        left: no fast path at all."""
        for name, choice in self.choices.items():
            if choice.fast:
                continue
            if self.mode == "auto" and name in self.attached:
                xdp.detach(name)
                self.attached.remove(name)
            self._mark(name, AT_START)
        if not any(choice.fast for choice in self.choices.values()):
            raise OffloadError("; ".join(f"{name}: {choice.reason}"
                                         for name, choice in self.choices.items()))

    @classmethod
    def joined(cls, owner: Offload, worker: int) -> Offload:
        """In a worker forked from ``owner``'s process: the same maps (their descriptors came
        with the fork), stats rows of its own, nothing to detach when it ends."""
        view = cls.__new__(cls)
        view.conns, view.stats, view.program = owner.conns, owner.stats, owner.program
        view.conns6, view.links, view.mode = owner.conns6, owner.links, owner.mode
        view.attached, view.counters = [], Counter()
        view.ledger = FastPathLedger(owner.ledger.ifindex,
                                     worker * fastpath.SLOTS_PER_WORKER)
        view.ledger.withdrawn = set(owner.ledger.withdrawn)
        view.facts, view.choices = owner.facts, owner.choices
        view.withdrawals, view.baseline = {}, owner.baseline
        view.watcher, view.watched = DropWatch(dict(owner.baseline)), 0
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
                             fastpath.STATS_SLOTS + 1, "pylvs_stats")
        self.links = xdp.Map(xdp.BPF_MAP_TYPE_ARRAY, 4, _WORD.size,
                             max(1, len(self.ledger.ifindex)), "pylvs_links")
        self.program = xdp.Program(fastpath.program(self.conns.fd, self.stats.fd,
                                                    self.conns6.fd, tunnels=True,
                                                    partial=True),
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

    # -- the links ------------------------------------------------------------------------------

    def _mark(self, name: str, word: int) -> None:
        """``name`` withdrawn, in this ledger and in the map every data plane reads."""
        self.ledger.withdrawn.add(name)
        if self.links is not None:
            self.links.update(_WORD.pack(self._position(name)), _WORD.pack(word))

    def _position(self, name: str) -> int:
        return list(self.ledger.ifindex).index(name)

    def marks(self) -> dict[str, int]:
        """Each link's word in the shared map (FAST, AT_START, FOR_DROPS)."""
        if self.links is None:
            return {}
        found = {}
        for position, name in enumerate(self.ledger.ifindex):
            value = self.links.lookup(_WORD.pack(position))
            found[name] = _WORD.unpack(value)[0] if value is not None else FAST
        return found

    def watch(self, director: Director) -> list[Withdrawal]:
        """Once a tick: the links another data plane withdrew, then the links' drops against
        what this one's program forwarded since the last call; a link that drops what the
        program sends into it is withdrawn. Returns the links withdrawn for their drops."""
        self._follow_marks(director)
        forwarded, self.watched = self.ledger.forwarded - self.watched, self.ledger.forwarded
        if self.watcher is None:
            return []
        fast = [name for name in self.ledger.ifindex if name not in self.ledger.withdrawn]
        found = self.watcher.observe(link_drops(self.baseline), forwarded, fast)
        for withdrawal in found:
            self.withdrawals[withdrawal.link] = withdrawal
            self._withdraw(director, withdrawal.link, FOR_DROPS)
            self.counters["xdp_links_withdrawn"] += 1
            log.warning(self.said(withdrawal))
        return found

    def _follow_marks(self, director: Director) -> None:
        """The links another data plane (a worker) withdrew, withdrawn here too."""
        for name, word in self.marks().items():
            if word != FAST and name not in self.ledger.withdrawn:
                self._withdraw(director, name, word)

    def said(self, withdrawal: Withdrawal) -> str:
        """The log's words for a link withdrawn for its drops: what, how seen, the fix."""
        name, where = withdrawal.link, withdrawal.counted_on or withdrawal.link
        counted = withdrawal.how if where == name else f"{withdrawal.how} on {where}"
        return (f"XDP fast path: {name} dropped {withdrawal.dropped} frames the program sent "
                f"into it ({counted}) while the program forwarded {withdrawal.forwarded}; its "
                f"connections go back to Python, which forwards them from now on. The fix: "
                f"{fix(self.facts.get(name))}")

    def _withdraw(self, director: Director, name: str, word: int) -> None:
        """Its connections out of the maps, their counts handed back first; Python forwards
        them (pylvs.core.offloaded.FastPathLedger.withdraw_link)."""
        keys = self.ledger.via(name)
        values = {key: value for key in keys
                  for value in [self._map(key).lookup(key)] if value is not None}
        offset = time.monotonic() - time.clock_gettime(time.CLOCK_MONOTONIC)
        self._write(self.ledger.withdraw_link(name, values, offset,
                                              director.table.timeouts.by_state))
        self._mark(name, word)

    def report(self) -> dict[str, Any]:
        """For pylvs status and the metrics: each link's state and why, its drops since the
        program went on (RX and TX dropped), and the frames the program passed up because
        their checksum was partial."""
        marks, drops = self.marks(), dropped_since(self.baseline,
                                                          link_drops(self.baseline))
        links = {}
        for name, choice in self.choices.items():
            word = marks.get(name, FAST)
            reason = choice.reason
            if word == FOR_DROPS:
                seen = self.withdrawals.get(name)
                reason = self.said(seen) if seen is not None else \
                    f"withdrawn: it dropped what the fast path sent into it (see the log); " \
                    f"{fix(self.facts.get(name))}"
            links[name] = {"fast": word == FAST, "reason": reason,
                           "dropped": drops.get(name, 0)}
        return {"mode": self.mode, "links": links, "partial": self._partial()}

    def _partial(self) -> int:
        row = self.stats.lookup(row_key(fastpath.PROGRAM_ROW)) if self.stats else None
        return fastpath.STATS.unpack(row)[fastpath.PARTIAL] if row is not None else 0

    def close(self) -> None:
        for name in self.attached:
            try:
                xdp.detach(name)
            except OSError as exc:
                log.error("could not take the XDP program off %s: %s", name, exc)
        self.attached = []
        for closing in (self.program, self.conns, self.conns6, self.stats, self.links):
            if closing is not None:
                closing.close()
        self.ledger.clear()
