"""What the director knows of its connections on the XDP fast path (pylvs.core.fastpath), and
IPVS's timer and counter rules for them, without a map: the I/O shell (pylvs.shell.offload) reads
and writes the maps and hands the bytes in and out.

The ledger holds, for one data plane:

- per offloaded connection, its entries' keys in the connection maps (IPv4's keys are
  fastpath.KEY_SIZE bytes, IPv6's KEY6_SIZE: the shell writes each to its map) and the packet
  count of its first entry as last read (a 4in6 tunnel's second entry holds only its outer
  addresses and counts nothing);
- per real server, its row in the stats map (``first_slot`` .. ``first_slot`` +
  SLOTS_PER_WORKER − 1: a worker's own rows), that row as last folded, and the next hop its
  entries were made with.

And the rules:

- an offered connection gets the entries its forwarder makes (``plan``); one that cannot have
  them (no hop, no row left, a method the program lacks) stays in Python (``offloaded``
  False); one the map refused too (``refused``);
- a connection's new packets (its entry's counters) raise ``in_pkts`` and move ``expires`` to
  the entry's last time plus its state's timeout; a NAT reply entry's counts move the timer too
  (``refresh``);
- a stats row's growth goes into the server's and its service's stats (``fold``);
- a server whose hop changed has its connections' entries made again with the new hop, or, with
  no hop, its connections go back to Python (``follow_hops``).

Times: the program stamps CLOCK_MONOTONIC in ns; ``clock_offset`` is what to add to its seconds
to get the caller's ``now``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pylvs.core import fastpath
from pylvs.core.conntrack import UDP_STATE, Connection

if TYPE_CHECKING:
    from pylvs.core.forwarding import NextHop
    from pylvs.core.model import RealServer, VirtualService

SOON = 2.0
"""Seconds: a connection whose timer runs out sooner is refreshed from its entry."""
ROW = struct.Struct("<I")
"""A stats map key: the row's index."""
ZERO_ROW = bytes(fastpath.STATS.size)


def row_key(slot: int) -> bytes:
    return ROW.pack(slot)


@dataclass(slots=True)
class Install:
    """One connection's entries to put in the connection map: (key, packed value)."""
    conn: Connection
    hop: NextHop
    entries: list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Writes:
    """What the shell must do to the maps, in this order: delete ``delete`` (connection map
    keys), zero the stats rows ``rows`` (their keys), then put each of ``put`` and tell the
    ledger which went in (``installed``) and which the map refused (``refused``)."""
    delete: list[bytes] = field(default_factory=list)
    rows: list[bytes] = field(default_factory=list)
    put: list[Install] = field(default_factory=list)


class FastPathLedger:
    """One data plane's offloaded connections and real servers (see the module)."""

    __slots__ = ("ifindex", "first_slot", "keys", "last_packets", "hops", "slots", "servers",
                 "seen")

    def __init__(self, ifindex: Mapping[str, int], first_slot: int = 0) -> None:
        self.ifindex = dict(ifindex)
        """The interfaces the program is on, by name: their indexes."""
        self.first_slot = first_slot
        self.keys: dict[Connection, list[bytes]] = {}
        """Offloaded connections (in the map) and their entries' keys, inbound first."""
        self.last_packets: dict[Connection, int] = {}
        """Each one's inbound entry's packet count as last read."""
        self.hops: dict[int, NextHop] = {}
        """Real server address → the hop its entries were made with."""
        self.slots: dict[int, int] = {}
        """id(RealServer) → its row in the stats map."""
        self.servers: dict[int, RealServer] = {}
        self.seen: dict[int, tuple[int, ...]] = {}
        """id(RealServer) → its stats row as last folded into its stats."""

    # -- offers and withdrawals -----------------------------------------------------------------

    def plan(self, offered: Iterable[Connection], withdrawn: Iterable[Connection],
             hops: Mapping[int, NextHop]) -> Writes:
        """What the core's offers and withdrawals (``Outbox.take_offers``) mean for the maps,
        with the real servers' next hops as they are now."""
        writes = Writes()
        for conn in withdrawn:
            writes.delete += self._forget(conn)
        for conn in dict.fromkeys(offered):
            if conn.offloaded and conn not in self.keys:
                self._add(writes, conn, hops)
        return writes

    def _add(self, writes: Writes, conn: Connection, hops: Mapping[int, NextHop]) -> None:
        hop = hops.get(conn.server.ip)
        slot = None if hop is None else self._slot(conn.server, writes)
        entries = [] if hop is None or slot is None else fastpath.for_connection(
            conn, hop, self.ifindex, slot)
        if not entries:  # Python forwards it, as without offload
            conn.offloaded = False
            return
        writes.put.append(Install(conn, hop, [(key, entry.pack())  # type: ignore[arg-type]
                                              for key, entry in entries]))

    def installed(self, install: Install) -> None:
        """``install``'s entries are in the map."""
        conn = install.conn
        self.keys[conn] = [key for key, _ in install.entries]
        self.last_packets[conn] = 0
        self.hops.setdefault(conn.server.ip, install.hop)

    def refused(self, install: Install) -> list[bytes]:
        """The map refused ``install`` (full): Python forwards the connection. Returns the keys
        to delete (what of it went in)."""
        install.conn.offloaded = False
        return [key for key, _ in install.entries]

    def _forget(self, conn: Connection) -> list[bytes]:
        self.last_packets.pop(conn, None)
        return self.keys.pop(conn, None) or []

    def _slot(self, server: RealServer, writes: Writes) -> int | None:
        """The server's stats row, a free one of this data plane's taken (to be zeroed) if it
        has none yet; None when all are taken."""
        ident = id(server)
        slot = self.slots.get(ident)
        if slot is None:
            used = set(self.slots.values())
            slot = next((s for s in range(self.first_slot,
                                          self.first_slot + fastpath.SLOTS_PER_WORKER)
                         if s not in used), None)
            if slot is None:
                return None
            writes.rows.append(row_key(slot))
            self.slots[ident], self.servers[ident] = slot, server
            self.seen[ident] = (0, 0, 0, 0)
        return slot

    def follow_hops(self, hops: Mapping[int, NextHop]) -> Writes:
        """A real server's next hop changed (its MAC, say): its connections' entries are made
        again with the new one; with none, they go back to Python."""
        writes = Writes()
        for ip, hop in list(self.hops.items()):
            current = hops.get(ip)
            if current is hop:
                continue
            del self.hops[ip]
            for conn in [c for c in self.keys if c.server.ip == ip]:
                writes.delete += self._forget(conn)
                if current is not None:
                    self._add(writes, conn, hops)
                else:
                    conn.offloaded = False
        return writes

    # -- what the program counted ---------------------------------------------------------------

    def rows(self) -> list[bytes]:
        """The stats map keys of the rows to read for ``fold``."""
        return [row_key(slot) for slot in self.slots.values()]

    def fold(self, rows: Mapping[bytes, bytes], services: Iterable[VirtualService]) -> None:
        """The stats rows read (key → value; a missing one is skipped): what each grew by since
        the last fold, into its server's and that server's service's stats. A server no service
        holds and no connection uses any more gives its row back."""
        service_of = {id(rs): svc for svc in services for rs in svc.real_servers}
        for ident, server in list(self.servers.items()):
            row = rows.get(row_key(self.slots[ident]))
            if row is None:
                continue
            now = fastpath.STATS.unpack(row)
            inpkts, inbytes, outpkts, outbytes = (a - b for a, b in
                                                  zip(now, self.seen[ident], strict=True))
            self.seen[ident] = now
            service = service_of.get(ident)
            for stats in (server.stats, None if service is None else service.stats):
                if stats is not None:
                    stats.inpkts += inpkts
                    stats.inbytes += inbytes
                    stats.outpkts += outpkts
                    stats.outbytes += outbytes
            if service is None and not any(c.server is server for c in self.keys):
                del self.servers[ident], self.slots[ident], self.seen[ident]

    def wanted(self, now: float, everything: bool = False) -> list[bytes]:
        """The connection map keys to read for ``refresh``: the entries of the connections
        whose timer runs out within SOON seconds (``everything``: of all of them)."""
        return [key for conn, keys in self.keys.items()
                if everything or conn.expires <= now + SOON for key in keys]

    def refresh(self, values: Mapping[bytes, bytes], clock_offset: float,
                by_state: Mapping[int, int]) -> None:
        """The entries read (key → map value; a missing one is skipped) into their
        connections: new inbound packets raise ``in_pkts``; the last time of an entry that
        counted packets re-arms the timer (never earlier) with the state's timeout
        (``by_state``: Timeouts.by_state)."""
        for conn, keys in self.keys.items():
            value = values.get(keys[0])
            if value is not None:
                packets, _, last_ns = fastpath.counters(value)
                if packets > self.last_packets[conn]:
                    conn.in_pkts += packets - self.last_packets[conn]
                    self.last_packets[conn] = packets
                    self._rearm(conn, last_ns, clock_offset, by_state)
            reply = values.get(keys[1]) if len(keys) > 1 else None
            if reply is not None:  # a NAT reply refreshes the timer too
                packets, _, last_ns = fastpath.counters(reply)
                if packets:
                    self._rearm(conn, last_ns, clock_offset, by_state)

    @staticmethod
    def _rearm(conn: Connection, last_ns: int, clock_offset: float,
               by_state: Mapping[int, int]) -> None:
        state = conn.state if conn.proto == 6 else UDP_STATE
        conn.expires = max(conn.expires, last_ns / 1e9 + clock_offset + by_state[state])

    def clear(self) -> None:
        """The maps are closed (the director stops): forget them."""
        self.keys.clear()
        self.last_packets.clear()
        self.hops.clear()
