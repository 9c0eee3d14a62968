"""The one way out of the core: what the director and its connection table decided, kept for the
I/O shell to take.

The core writes here as it works; the shell drains it between batches and never writes into a
core object:

- ``counts``: the core's counters by reason (``Count``), cumulative; the shell reads them and
  keeps its own counts elsewhere;
- ``take_rules_changed()``: the rules changed (``Director.changed``) since the last take;
- ``take_offers()``: with a fast path (``start_offering``), the connections that became ready
  for it and those that are not any more (removed, or moved on from their state);
- ``take_sync()``: while a sync daemon sends (``start_sync``), the connections due to go to the
  backups, by the rule it gave.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pylvs.core.conntrack import Connection


class Count(StrEnum):
    """Every counter the core keeps, by its name in ``pylvs status`` and the metrics. A member is
    its string: ``counts["forwarded"]`` and ``counts[Count.FORWARDED]`` are the same entry."""

    FORWARDED = "forwarded"
    """A client's frame sent on to its real server."""
    REPLIED = "replied"
    """A NAT real server's frame sent back to its client."""
    ONE_PACKET = "one_packet"
    """A datagram of a one-packet service (ipvsadm -o), scheduled and sent."""
    ICMP_RELAYED = "icmp_relayed"
    """An ICMP error about a connection, passed on."""
    ICMP_SENT = "icmp_sent"
    """An ICMP error the director made (unreachable, time exceeded, fragmentation needed)."""
    FRAG_NEEDED = "frag_needed"
    """A frame too big for its hop, with DF (IPv6: a first fragment or whole packet): the client
    was told the MTU (ICMP fragmentation needed, ICMPv6 Packet Too Big)."""
    EXPIRED = "expired"
    """Connections and templates whose timer ran out."""
    NOT_PARSED = "not_parsed"
    """Dropped: not an IPv4 or IPv6 frame pylvs parses."""
    FRAGMENT_NO_CONNECTION = "fragment_no_connection"
    """Dropped: an IPv6 fragment after the first, whose first fragment did not pass."""
    NOT_SERVICE = "not_service"
    """Left alone: for no service and no connection."""
    NO_CONNECTION = "no_connection"
    """Dropped: a TCP frame that may not start a connection, for none."""
    REPLY_NO_CONNECTION = "reply_no_connection"
    """Dropped: from a NAT real server, for no connection."""
    NO_DESTINATION = "no_destination"
    """Refused: no real server could take the connection."""
    NO_NEXT_HOP = "no_next_hop"
    """Dropped: the real server's next hop is not known yet."""
    TTL_EXCEEDED = "ttl_exceeded"
    """Dropped: TTL ≤ 1."""
    TOO_BIG_DROPPED = "too_big_dropped"
    """Dropped: too big for the hop, without DF (pylvs does not fragment)."""
    ICMP_DROPPED = "icmp_dropped"
    """Dropped: an ICMP error about no connection, or broken."""
    TABLE_FULL = "table_full"
    """Refused: the table holds max_connections."""
    DEFENSE_DROPPED_PACKETS = "defense_dropped_packets"
    """Dropped by drop_packet (pylvs.core.defense)."""
    DEFENSE_DROPPED_ENTRIES = "defense_dropped_entries"
    """Connections removed by drop_entry (pylvs.core.defense)."""
    NODEST_EXPIRED = "nodest_expired"
    """Connections removed with their real server or service (expire_nodest_conn)."""


SyncRule = Callable[[int, int, int, int], bool]
"""(protocol, state at the last sync, state now, client packets) → send it now."""


class Outbox:
    """What leaves the core. The core's side is its attributes and ``offer``/``withdraw``
    (pylvs.core.conntrack); the shell's side is the ``take_*`` methods and the switches."""

    __slots__ = ("counts", "rules_changed", "offered", "withdrawn", "sync_due", "due")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        """The core's counters (``Count``), never reset."""
        self.rules_changed = False
        """Set by ``Director.changed``; ``take_rules_changed`` clears it."""
        self.offered: list[Connection] | None = None
        """None: no fast path; else the connections offered to it since the last take."""
        self.withdrawn: list[Connection] = []
        """Offloaded connections removed, or moved on from the state they were offered in."""
        self.sync_due: SyncRule | None = None
        """While a sync daemon sends: when a connection is due (pylvs.ha.sync's rule)."""
        self.due: list[Connection] = []
        """The connections due to go to the backups since the last take."""

    # -- the core's side ------------------------------------------------------------------------

    def offer(self, conn: Connection) -> None:
        """``conn`` is ready for the fast path (only while ``offering``)."""
        conn.offloaded = True
        self.offered.append(conn)  # type: ignore[union-attr]

    def withdraw(self, conn: Connection) -> None:
        """``conn`` leaves the fast path: Python forwards it again."""
        conn.offloaded = False
        self.withdrawn.append(conn)

    # -- the shell's side -----------------------------------------------------------------------

    def take_rules_changed(self) -> bool:
        """Whether the rules changed since the last call."""
        changed, self.rules_changed = self.rules_changed, False
        return changed

    def start_offering(self) -> None:
        """A fast path is there: offer it connections from now on."""
        if self.offered is None:
            self.offered = []

    @property
    def offering(self) -> bool:
        return self.offered is not None

    def has_offers(self) -> bool:
        """Connections offered or withdrawn wait to be taken."""
        return bool(self.offered or self.withdrawn)

    def take_offers(self) -> tuple[list[Connection], list[Connection]]:
        """(offered, withdrawn) since the last call. Carry the withdrawn out first: one may be
        offered again after it was withdrawn, and only those still ``offloaded`` count."""
        offered, withdrawn = self.offered, self.withdrawn
        if offered:
            self.offered = []
        self.withdrawn = []
        return offered or [], withdrawn

    def start_sync(self, due: SyncRule) -> None:
        """A sync daemon sends: collect each connection when ``due`` says it goes."""
        self.sync_due, self.due = due, []

    def stop_sync(self) -> None:
        self.sync_due, self.due = None, []

    @property
    def syncing(self) -> bool:
        return self.sync_due is not None

    def take_sync(self) -> list[Connection]:
        """The connections due to go to the backups since the last call, each once."""
        due, self.due = self.due, []
        return list(dict.fromkeys(due))
