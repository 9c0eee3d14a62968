"""IPv6 fragments after the first: which connection each belongs to.

pylvs does not reassemble. A fragment other than the first carries no TCP/UDP header, so its
connection cannot be found by ports; it is found by the fragment zero that came before it, by
(source, destination, identification) as RFC 8200 §4.5 identifies the packet. The first
fragment's connection is remembered when it passes, with which way it went (to the real server,
or back from a NAT one), for the reassembly time of RFC 8200 (60 s); a bounded number of packets
is remembered (a flood of first fragments starts the memory again, as the return hops do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pylvs.core.conntrack import Connection
    from pylvs.core.ipv6 import Flow6

REASSEMBLY_TIMEOUT = 60.0
MAX_PACKETS = 4096

FragmentKey = tuple[int, int, int]
"""(source, destination, identification)."""


class Fragments:
    def __init__(self) -> None:
        self.packets: dict[FragmentKey, tuple[Connection, bool, float]] = {}

    def remember(self, flow: Flow6, conn: Connection, inbound: bool, now: float) -> None:
        """A first fragment (offset 0, more to come) of ``conn``, going ``inbound`` or back."""
        if len(self.packets) >= MAX_PACKETS:
            self.expire(now)
            if len(self.packets) >= MAX_PACKETS:
                self.packets.clear()
        self.packets[(flow.saddr, flow.daddr, flow.frag_id)] = (conn, inbound,
                                                                now + REASSEMBLY_TIMEOUT)

    def find(self, flow: Flow6, now: float) -> tuple[Connection, bool] | None:
        """The connection a later fragment belongs to, and its way, if its first one passed."""
        found = self.packets.get((flow.saddr, flow.daddr, flow.frag_id))
        if found is None or found[2] <= now:
            return None
        return found[0], found[1]

    def expire(self, now: float) -> None:
        for key in [k for k, (_, _, until) in self.packets.items() if until <= now]:
            del self.packets[key]
