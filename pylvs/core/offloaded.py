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
  no hop, its connections go back to Python (``follow_hops``);
- a link the fast path must not send into any more (``withdraw_link``: it drops those frames,
  ``DropWatch`` below) takes its connections out of the maps, their counts handed back
  first; they, and any connection offered later whose entries would send into it, stay with
  Python, still marked ``offloaded`` so that the core does not offer them again with every
  frame ("parked": in no map).

Times: the program stamps CLOCK_MONOTONIC in ns; ``clock_offset`` is what to add to its seconds
to get the caller's ``now``.

The links (at the end of the module): which of the director's links the program may send
frames into, and when it must stop, from facts the shell reads (pylvs.shell.interfaces,
pylvs.shell.offload). What a frame the program sends needs (measured on Linux 6.18,
docs/offload.md):

- XDP_TX back out a veth, or bpf_redirect into one, needs NAPI on the veth's *peer*: an XDP
  program there. Without one, every such frame is dropped; the director's own counters show it
  (XDP_TX: its TX dropped and ``rx_queue_N_xdp_tx_errors``; a redirect: the ingress link's RX
  dropped). GRO on the peer makes the kernel advertise the link as a redirect target
  (xdp-features ``ndo-xmit``) and yet passed 256 frames, then dropped every one.
- A NIC with native XDP takes XDP_TX; a redirect into it needs its ``ndo-xmit`` feature, which
  some drivers (virtio_net) only show while a program is attached to them.

``choose``: per link, fast or not and why, for ``offload = "auto"`` (only where the facts say
it works) and ``"xdp"`` (everywhere the program is attached, with a warning where the facts say
it will drop). ``DropWatch``: the safety net under both, turning the links' drop counters and
what the program forwarded into "this link drops what the fast path sends into it".
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
                 "seen", "withdrawn", "forwarded")

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
        self.withdrawn: set[str] = set()
        """Links the program must not send into (``withdraw_link``)."""
        self.forwarded = 0
        """Frames the program forwarded, as the stats rows folded so far counted them."""

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
        if hop is not None and self._through_withdrawn(conn, hop):
            return  # parked: Python forwards it, and the core does not offer it again
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

    def _through_withdrawn(self, conn: Connection, hop: NextHop) -> bool:
        """Its entries would send into a withdrawn link (toward the server, or NAT's way back)."""
        back = conn.return_hop
        return hop.interface in self.withdrawn or (
            back is not None and conn.forwarder.masquerades and back.interface in self.withdrawn)

    def via(self, link: str) -> list[bytes]:
        """The keys of the entries of the connections whose entries send into ``link``: what
        the shell reads before ``withdraw_link``."""
        return [key for conn, keys in self.keys.items()
                if self._through(conn, link) for key in keys]

    def _through(self, conn: Connection, link: str) -> bool:
        hop, back = self.hops.get(conn.server.ip), conn.return_hop
        return (hop is not None and hop.interface == link) or (
            back is not None and conn.forwarder.masquerades and back.interface == link)

    def withdraw_link(self, link: str, values: Mapping[bytes, bytes], clock_offset: float,
                      by_state: Mapping[int, int]) -> Writes:
        """The program must not send into ``link`` any more: its connections' entries (read
        into ``values``, key → map value, by the shell: ``via``) hand their counts back to the
        connections (``refresh``), then go; the connections stay with Python, parked."""
        self.withdrawn.add(link)
        leaving = {conn: keys for conn, keys in self.keys.items() if self._through(conn, link)}
        self._refresh(leaving, values, clock_offset, by_state)
        writes = Writes()
        for conn in leaving:
            writes.delete += self._forget(conn)
        return writes

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
            self.forwarded += inpkts + outpkts
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
        self._refresh(self.keys, values, clock_offset, by_state)

    def _refresh(self, conns: Mapping[Connection, list[bytes]], values: Mapping[bytes, bytes],
                 clock_offset: float, by_state: Mapping[int, int]) -> None:
        for conn, keys in conns.items():
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


# -- the links ---------------------------------------------------------------------------------

XDP_ACT_BASIC, XDP_ACT_REDIRECT, XDP_ACT_NDO_XMIT = 1, 2, 4
"""The netdev family's xdp-features bits (include/uapi/linux/netdev.h)."""
MODES = ("auto", "xdp")
"""The offload modes that load the program ("none" does not)."""


@dataclass(frozen=True)
class LinkFacts:
    """What the shell read of one link, after the program was attached where it could be."""
    name: str
    kind: str = ""
    """rtnetlink's IFLA_INFO_KIND: "veth", ""  for a NIC."""
    attached: bool = False
    """The program is on it (native XDP)."""
    error: str = ""
    """Why the program could not be attached."""
    xdp_features: int | None = None
    """The netdev family's xdp-features; None where the kernel does not say (before 6.3)."""
    peer: str = ""
    """A veth's peer, as "NAME" or "NAME in netns N"; "" when it could not be seen."""
    peer_xdp: int | None = None
    """The id of the XDP program on a veth's peer, 0 for none; None: could not be seen."""


@dataclass(frozen=True)
class LinkChoice:
    name: str
    fast: bool
    """The program may send frames into this link (its connections get map entries)."""
    reason: str
    warn: bool = False
    """Forced on (offload = "xdp") where the facts say its frames would be dropped."""


def choose(facts: LinkFacts, mode: str) -> LinkChoice:
    """The fast path on ``facts.name`` or not, and why. ``auto``: only where the facts say
    frames sent into it arrive; ``xdp``: wherever the program is attached."""
    works, reason = _verdict(facts)
    if mode == "xdp" and facts.attached:
        if not works:
            return LinkChoice(facts.name, True, f"offload = \"xdp\" although {reason}; "
                              f"watched for drops. The fix: {fix(facts)}", warn=True)
        return LinkChoice(facts.name, True, reason)
    return LinkChoice(facts.name, works and facts.attached, reason)


def worth_attaching(facts: LinkFacts) -> bool:
    """``auto``: the program goes on a link only where it may work (not on a veth whose peer
    has no XDP program: attaching changes the peer's offloads for nothing)."""
    return facts.kind != "veth" or bool(facts.peer_xdp)


def _verdict(facts: LinkFacts) -> tuple[bool, str]:
    """Whether frames the program sends into the link arrive, and why."""
    if facts.kind == "veth":
        works, reason = _veth(facts)
        if not works or facts.attached:
            return works, reason
    if not facts.attached:
        return False, f"no native XDP here ({facts.error or 'not attached'})"
    features = facts.xdp_features
    if features is None:
        return True, "native XDP (the kernel does not say whether it takes redirected " \
                     "frames; watched for drops)"
    if not features & XDP_ACT_NDO_XMIT:
        return False, f"native XDP, but the driver takes no redirected frames " \
                      f"(xdp-features {features:#x})"
    return True, "native XDP, takes redirected frames"


def _veth(facts: LinkFacts) -> tuple[bool, str]:
    if facts.peer_xdp is None:
        return False, "a veth whose peer cannot be seen from here (frames sent into it " \
                      "need an XDP program on the peer)"
    if not facts.peer_xdp:
        return False, f"a veth whose peer ({facts.peer}) has no XDP program: frames the " \
                      f"program sent into it would be dropped"
    return True, f"a veth whose peer ({facts.peer}) has an XDP program (id " \
                 f"{facts.peer_xdp}): it takes the frames the program sends"


def fix(facts: LinkFacts | None) -> str:
    """What the operator can do about a link that drops what the fast path sends into it."""
    if facts is not None and facts.kind == "veth":
        peer = facts.peer or "the veth's peer"
        return (f"attach an XDP program to {peer} (one that passes everything will do: its "
                "NAPI then takes the frames; `ethtool -K PEER gro on` is not enough on Linux "
                "6.18), or set offload = \"none\"")
    return "the driver does not take the frames XDP sends (XDP_TX, redirect): a newer " \
           "driver may, else set offload = \"none\""


# -- the safety net -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Drops:
    """A link's drop counters (rtnetlink's IFLA_STATS64), cumulative."""
    rx: int = 0
    tx: int = 0


@dataclass(frozen=True)
class Withdrawal:
    """``link`` drops what the fast path sends into it: ``dropped`` frames over the last
    windows, while the program forwarded ``forwarded``; ``how``: the counter that said so, on
    the link ``counted_on`` (a failed redirect counts where the frame came in)."""
    link: str
    dropped: int
    forwarded: int
    how: str
    counted_on: str = ""


SHARE = 0.10
"""A window's drops above this share of what the program forwarded count against the link:
the failures this catches drop nearly everything (measured: 99.9%), while an overloaded
link's ring overflows stay well under it."""
MIN_FRAMES = 64
"""Fewer drops (or frames forwarded) in a window say nothing."""
STRIKES = 2
"""Consecutive windows of drops before the link is withdrawn: sustained, not a burst."""


@dataclass
class DropWatch:
    """The links' drop counters, window after window (each ``observe``), against what this data
    plane's program forwarded in the same window. A link's TX drops are its own; RX drops on a
    link are the redirects out of it that failed, so they count against the other fast links
    (against itself when it is the only one)."""
    last: dict[str, Drops]
    strikes: dict[str, int] = field(default_factory=dict)
    pending: dict[str, tuple[int, int, str, str]] = field(default_factory=dict)
    """Per link under suspicion: drops and frames forwarded so far, the counter and the link
    it counted on."""

    def observe(self, counts: Mapping[str, Drops], forwarded: int,
                fast: Iterable[str]) -> list[Withdrawal]:
        """One window: the counters now, what the program forwarded since the last window,
        the links still fast. Returns the links to withdraw."""
        fast = [name for name in fast if name in counts]
        blamed: dict[str, tuple[int, str, str]] = {}
        for name, now in counts.items():
            before = self.last.get(name, now)
            self.last[name] = now
            for drops, how, targets in ((now.tx - before.tx, "TX dropped", [name]),
                                        (now.rx - before.rx, "RX dropped",
                                         [n for n in fast if n != name] or [name])):
                if _suspect(drops, forwarded):
                    for target in targets:
                        blamed[target] = (blamed.get(target, (0,))[0] + drops, how, name)
        return self._strike(blamed, forwarded, fast)

    def _strike(self, blamed: Mapping[str, tuple[int, str, str]], forwarded: int,
                fast: list[str]) -> list[Withdrawal]:
        out = []
        for name in fast:
            if name not in blamed:
                self.strikes.pop(name, None)
                self.pending.pop(name, None)
                continue
            drops, how, where = blamed[name]
            total, sent, _, _ = self.pending.get(name, (0, 0, how, where))
            self.pending[name] = (total + drops, sent + forwarded, how, where)
            self.strikes[name] = self.strikes.get(name, 0) + 1
            if self.strikes[name] >= STRIKES:
                out.append(Withdrawal(name, *self.pending.pop(name)))
                del self.strikes[name]
        return out


def _suspect(drops: int, forwarded: int) -> bool:
    return forwarded >= MIN_FRAMES and drops >= max(MIN_FRAMES, SHARE * forwarded)


def dropped_since(baseline: Mapping[str, Drops], counts: Mapping[str, Drops]) -> dict[str, int]:
    """Each link's drops (RX and TX) since ``baseline``: what the status reports."""
    return {name: (now.rx + now.tx) - (baseline[name].rx + baseline[name].tx)
            for name, now in counts.items() if name in baseline}
