"""IPVS's defences against a full table (/proc/sys/net/ipv4/vs/): drop_entry, drop_packet and
secure_tcp, switched on by memory as update_defense_level does once a second.

Each strategy has a mode: 0 off, 1 automatic and idle, 2 automatic and on (the kernel writes 2
back into the sysctl while memory is short, 1 when it is not), 3 always on. Memory is short when
the host's free and buffer pages (``availmem``, what si_meminfo counts; the I/O shell reads it)
are below ``amemthresh``. While on:

- drop_packet drops one in ``drop_rate`` packets that would make a new connection, where
  drop_rate is amemthresh / (amemthresh - availmem) in the automatic mode and ``am_droprate``
  in mode 3 (ip_vs_todrop);
- drop_entry looks, each second, at 1/32 of the connections and removes those a flood
  makes: every SYN_RECV and SYNACK entry, and some ESTABLISHED (or UDP) ones that saw at most 8
  client packets and none for 60 s (ip_vs_random_dropentry; the kernel draws a random 1/32 of
  its hash buckets, pylvs.core.director walks the table 1/32 a second);
- secure_tcp moves TCP connections by IPVS's tcp_states_dos table, in which an INPUT-ONLY SYN
  leads to SYNACK and only the three-way handshake reaches ESTABLISHED.

Plain state: time and memory are handed in.
"""

from __future__ import annotations

from collections.abc import Iterable

from pylvs.core.conntrack import ESTABLISHED, SYN_RECV, SYNACK, UDP_STATE, Connection, Timeouts
from pylvs.core.sysctls import Sysctls

SCAN_SHARE = 32
"""1/32 of the table is looked at each second."""
QUIET_SECONDS = 60
"""An ESTABLISHED entry refreshed more recently is never dropped (todrop_entry)."""
MAX_DROP_PACKETS = 8


class Defense:
    """What update_defense_level decided, and the packet and entry drops it leads to."""

    def __init__(self, sysctls: Sysctls | None = None) -> None:
        self.sysctls = sysctls or Sysctls()
        self.drop_entries = False
        self.drop_rate = 0
        self.drop_counter = 0
        self.secure = False
        self._entry_counters = [0] * (MAX_DROP_PACKETS + 1)

    def set(self, name: str, value: int) -> None:
        """A write to the sysctl; takes effect at the next update, as in IPVS."""
        self.sysctls.check(name, value)
        setattr(self.sysctls, name, value)

    def update(self, availmem: int) -> bool:
        """One pass of update_defense_level; True when the TCP state table changes."""
        s = self.sysctls
        nomem = availmem < s.amemthresh
        self.drop_entries, s.drop_entry = _switch(s.drop_entry, nomem)
        on, s.drop_packet = _switch(s.drop_packet, nomem)
        if not on:
            self.drop_rate = 0
        elif s.drop_packet == 3:
            self.drop_rate = s.am_droprate
        else:
            self.drop_rate = self.drop_counter = s.amemthresh // (s.amemthresh - availmem)
        secure, s.secure_tcp = _switch(s.secure_tcp, nomem)
        changed, self.secure = secure != self.secure, secure
        return changed

    def todrop(self) -> bool:
        """ip_vs_todrop: drop this new connection's packet? One in drop_rate."""
        if not self.drop_rate:
            return False
        self.drop_counter -= 1
        if self.drop_counter > 0:
            return False
        self.drop_counter = self.drop_rate
        return True

    def doomed(self, connections: Iterable[Connection], timeouts: Timeouts, now: float
               ) -> list[Connection]:
        """Of the entries looked at this second, those ip_vs_random_dropentry removes (none
        unless drop_entry is on)."""
        if not self.drop_entries:
            return []
        out = []
        for conn in connections:
            if conn.proto == 6 and conn.state in (SYN_RECV, SYNACK):
                out.append(conn)
            elif ((conn.proto != 6 or conn.state == ESTABLISHED)
                  and self._todrop_entry(conn, timeouts, now)):
                out.append(conn)
        return out

    def _todrop_entry(self, conn: Connection, timeouts: Timeouts, now: float) -> bool:
        """todrop_entry: refreshed in the last 60 s (its timer has more than its state's timeout
        less 60 s to run) or no or more than 8 client packets: kept; else one in N for an entry
        with N packets (a counter per N, as the kernel's)."""
        state = conn.state if conn.proto == 6 else UDP_STATE
        if conn.expires - now > timeouts.by_state[state] - QUIET_SECONDS:
            return False
        packets = conn.in_pkts
        if not 0 < packets <= MAX_DROP_PACKETS:
            return False
        self._entry_counters[packets] -= 1
        if self._entry_counters[packets] > 0:
            return False
        self._entry_counters[packets] = packets
        return True


def _switch(mode: int, nomem: bool) -> tuple[bool, int]:
    """One strategy's (on, mode written back): 1 and 2 follow memory, 0 and 3 stay."""
    if mode in (1, 2):
        return nomem, 2 if nomem else 1
    return mode == 3, mode
