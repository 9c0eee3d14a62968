"""`offload = "xdp"`: the fast path (pylvs.core.fastpath) on the director's interfaces, its map
filled as connections become established and read back for IPVS's timers and counters.

The director core says which connections are ready (``ConnectionTable.offered``: ESTABLISHED
TCP whose method needs nothing more from Python, UDP) and which are not any more
(``withdrawn``: removed, or moved to another state by a frame the program passed up). This
file only carries that to the maps, and brings back what the program counted:

- each real server's packets and bytes (a row of the stats map per server), into its and its
  service's stats, so -Ln --stats and --rate see every frame;
- each connection's last time and packets, before its timer would run out (and for every
  connection before an -Lnc), so IPVS's expiry follows the frames the program forwarded.
"""

from __future__ import annotations

import logging
import struct
import time

from forwarders import NextHop
from pylvs.core import fastpath
from pylvs.core.conntrack import UDP_STATE, Connection
from pylvs.core.director import Director
from pylvs.core.model import RealServer
from pylvs.shell import xdp
from pylvs.shell.interfaces import interface_index

log = logging.getLogger("pylvs")

SOON = 2.0
"""Seconds: a connection whose timer runs out sooner is refreshed from its entry."""


class OffloadError(RuntimeError):
    pass


class Offload:
    """The maps and program (made, loaded and attached by the process that owns the host
    state), and one data plane's connections in them; ``joined`` gives a forked worker its own
    view of the same maps, with its own rows of the stats map."""

    def __init__(self, interfaces: list[str], max_entries: int, attach: bool = True) -> None:
        self.ifindex = {name: interface_index(name) for name in interfaces}
        self.first_slot = 0
        self.conns: xdp.Map | None = None
        self.stats: xdp.Map | None = None
        self.program: xdp.Program | None = None
        self.attached: list[str] = []
        self.keys: dict[Connection, list[bytes]] = {}
        """Offloaded connections and their entries' keys."""
        self.last_packets: dict[Connection, int] = {}
        self.hops: dict[int, NextHop] = {}
        """The hop each real server's entries were made with (remade when it changes)."""
        self.slots: dict[int, int] = {}
        """id(RealServer) → its row in the stats map."""
        self.servers: dict[int, RealServer] = {}
        self.seen: dict[int, tuple[int, int, int, int]] = {}
        """The stats row as last folded into the server's stats."""
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
        view.__dict__.update({name: value for name, value in vars(owner).items()
                              if not isinstance(value, dict | list)})
        view.ifindex = dict(owner.ifindex)
        view.attached, view.keys, view.last_packets, view.hops = [], {}, {}, {}
        view.slots, view.servers, view.seen = {}, {}, {}
        view.first_slot = worker * fastpath.SLOTS_PER_WORKER
        return view

    def purge(self, worker: int) -> int:
        """A worker died: the entries it made go (its connections went with it)."""
        first = worker * fastpath.SLOTS_PER_WORKER
        gone = 0
        for key, value in self.conns.items():  # type: ignore[union-attr]
            if first <= fastpath.slot(value) < first + fastpath.SLOTS_PER_WORKER:
                gone += self.conns.delete(key)  # type: ignore[union-attr]
        return gone

    def _load(self, max_entries: int) -> None:
        self.conns = xdp.Map(xdp.BPF_MAP_TYPE_HASH, fastpath.KEY_SIZE, fastpath.VALUE_SIZE,
                             max(2, max_entries), "pylvs_conns", xdp.BPF_F_NO_PREALLOC)
        self.stats = xdp.Map(xdp.BPF_MAP_TYPE_ARRAY, 4, fastpath.STATS.size,
                             fastpath.STATS_SLOTS, "pylvs_stats")
        self.program = xdp.Program(fastpath.program(self.conns.fd, self.stats.fd),
                                   "pylvs_fastpath")

    def apply(self, director: Director) -> None:
        """What the core offered and withdrew since the last call, into the map: the new
        entries in one batch (BPF_MAP_UPDATE_BATCH), one by one if the batch is refused."""
        table = director.table
        offered, withdrawn = table.offered or [], table.withdrawn
        if withdrawn:
            table.withdrawn = []
            for conn in withdrawn:
                self._withdraw(conn)
        if not offered:
            return
        table.offered = []
        ready = [(conn, entries) for conn in offered if conn.offloaded
                 for entries in [self._entries(director, conn)] if entries]
        batch = [(key, entry.pack()) for _, entries in ready for key, entry in entries]
        try:
            self.conns.update_many(batch)  # type: ignore[union-attr]
        except OSError:  # the map is full, or no batches here: find out entry by entry
            ready = [(conn, entries) for conn, entries in ready
                     if self._install(director, conn, entries)]
        for conn, entries in ready:
            self._installed(director, conn, entries)

    def _entries(self, director: Director, conn: Connection) -> list[tuple[bytes,
                                                                            fastpath.Entry]]:
        hop = director.hops.get(conn.server.ip)
        slot = self._slot(conn.server)
        entries = [] if hop is None or slot is None else fastpath.for_connection(
            conn, hop, self.ifindex, slot)
        if not entries:
            conn.offloaded = False
        return entries

    def _install(self, director: Director, conn: Connection,
                 entries: list[tuple[bytes, fastpath.Entry]]) -> bool:
        try:
            for key, entry in entries:
                self.conns.update(key, entry.pack())  # type: ignore[union-attr]
        except OSError as exc:  # the map is full: Python forwards it, as without offload
            conn.offloaded = False
            for key, _ in entries:
                self.conns.delete(key)  # type: ignore[union-attr]
            director.counters["offload_refused"] += 1
            log.debug("offload refused: %s", exc)
            return False
        return True

    def _installed(self, director: Director, conn: Connection,
                   entries: list[tuple[bytes, fastpath.Entry]]) -> None:
        self.keys[conn] = [key for key, _ in entries]
        self.last_packets[conn] = 0
        self.hops.setdefault(conn.server.ip, director.hops[conn.server.ip])

    def _offer(self, director: Director, conn: Connection) -> None:
        entries = self._entries(director, conn)
        if entries and self._install(director, conn, entries):
            self._installed(director, conn, entries)

    def _withdraw(self, conn: Connection) -> None:
        keys = self.keys.pop(conn, None)
        self.last_packets.pop(conn, None)
        for key in keys or ():
            self.conns.delete(key)  # type: ignore[union-attr]

    def _slot(self, server: RealServer) -> int | None:
        slot = self.slots.get(id(server))
        if slot is None:
            used = set(self.slots.values())
            slot = next((s for s in range(self.first_slot,
                                          self.first_slot + fastpath.SLOTS_PER_WORKER)
                         if s not in used), None)
            if slot is None:
                return None
            self.stats.update(struct.pack("<I", slot), bytes(fastpath.STATS.size))  # type: ignore[union-attr]
            self.slots[id(server)], self.servers[id(server)] = slot, server
            self.seen[id(server)] = (0, 0, 0, 0)
        return slot

    def sync(self, director: Director, now: float, everything: bool = False) -> None:
        """The program's counts into the servers' stats, and the timers of the connections
        about to expire (``everything``: of all of them) from their entries' last times."""
        self._fold_stats(director)
        self._follow_hops(director)
        timeouts = director.table.timeouts.by_state
        offset = time.monotonic() - time.clock_gettime(time.CLOCK_MONOTONIC)
        conns = self.conns
        assert conns is not None
        values = dict(conns.items()) if everything else None  # one batch beats n lookups
        for conn, keys in list(self.keys.items()):
            if not everything and conn.expires > now + SOON:
                continue
            value = values.get(keys[0]) if values is not None else conns.lookup(keys[0])
            if value is None:
                continue
            packets, _, last_ns = fastpath.counters(value)
            if packets > self.last_packets[conn]:
                conn.in_pkts += packets - self.last_packets[conn]
                self.last_packets[conn] = packets
                state = conn.state if conn.proto == 6 else UDP_STATE
                conn.expires = max(conn.expires, last_ns / 1e9 + offset + timeouts[state])
            if len(keys) > 1:  # a NAT reply refreshes the timer too
                reply = values.get(keys[1]) if values is not None else conns.lookup(keys[1])
                if reply is not None and fastpath.counters(reply)[0]:
                    state = conn.state if conn.proto == 6 else UDP_STATE
                    conn.expires = max(conn.expires, fastpath.counters(reply)[2] / 1e9 + offset
                                       + timeouts[state])

    def _fold_stats(self, director: Director) -> None:
        services = {id(rs): svc for svc in director.services.values() for rs in svc.real_servers}
        for ident, server in list(self.servers.items()):
            row = self.stats.lookup(struct.pack("<I", self.slots[ident]))  # type: ignore[union-attr]
            if row is None:
                continue
            now = fastpath.STATS.unpack(row)
            before = self.seen[ident]
            delta = [a - b for a, b in zip(now, before, strict=True)]
            self.seen[ident] = now
            service = services.get(ident)
            for stats in (server.stats, service.stats if service else None):
                if stats is None:
                    continue
                stats.inpkts += delta[0]
                stats.inbytes += delta[1]
                stats.outpkts += delta[2]
                stats.outbytes += delta[3]
            if service is None and not any(c.server is server for c in self.keys):
                self._free(ident)

    def _free(self, ident: int) -> None:
        del self.servers[ident], self.slots[ident], self.seen[ident]

    def _follow_hops(self, director: Director) -> None:
        """A real server's next hop changed (its MAC, say): its entries are made again."""
        for ip, hop in list(self.hops.items()):
            current = director.hops.get(ip)
            if current is hop:
                continue
            del self.hops[ip]
            for conn in [c for c in self.keys if c.server.ip == ip]:
                self._withdraw(conn)
                if current is not None:
                    self._offer(director, conn)
                else:
                    conn.offloaded = False

    def close(self) -> None:
        for name in self.attached:
            try:
                xdp.detach(name)
            except OSError as exc:
                log.error("could not take the XDP program off %s: %s", name, exc)
        self.attached = []
        for closing in (self.program, self.conns, self.stats):
            if closing is not None:
                closing.close()
        self.keys.clear()
