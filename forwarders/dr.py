"""Direct routing (ipvsadm -g, "Route"), as IPVS's ip_vs_dr_xmit does it.

Only the link layer changes: the destination MAC becomes the real server's and the source MAC the
director's. The IP header keeps VIP as destination; TTL is decremented and the IP checksum updated
incrementally (RFC 1624). The caller has already refused frames with TTL <= 1. Replies never pass
the director. Every frame has its IP header at offset 14 (pylvs.core.packet parses no VLANs). The
XDP fast path's entry (``xdp_entries``) makes the program do the same. IPv6 is the same with the
hop limit (ip_vs_dr_xmit_v6: no header checksum), through pylvs.core.ipv6.dr_xmit6.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pylvs.core import fastpath
from pylvs.core.forwarding import Forwarder, NextHop, register
from pylvs.core.ipv6 import Flow6, dr_xmit6

if TYPE_CHECKING:
    from pylvs.core.conntrack import Connection
    from pylvs.core.packet import Flow


@register
class DirectRouting(Forwarder):
    name, flag, label, lb_kind, conn_flag = "dr", "-g", "Route", "DR", 0x0003

    def forward(self, frame: bytearray, flow: Flow, conn: Connection, hop: NextHop
                ) -> bytearray:
        if isinstance(flow, Flow6):
            return dr_xmit6(frame, flow, hop.macs)
        return self.established(frame, conn, hop, flow.tcp_flags, flow.ip_len)

    def established(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                    ip_len: int) -> bytearray:
        """The whole of DR: the hop's MACs, TTL − 1 with the IP checksum updated."""
        frame[0:12] = hop.macs
        csum = ((frame[24] << 8) | frame[25]) + 0x100  # TTL is the high byte of its word
        frame[22] -= 1
        csum = (csum & 0xFFFF) + (csum >> 16)
        if csum == 0xFFFF:  # the same number; a from-scratch sum of a header is never 0xFFFF
            csum = 0
        frame[24] = csum >> 8
        frame[25] = csum & 0xFF
        return frame

    def established6(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                     payload_len: int) -> bytearray:
        """dr_xmit6's bytes: the hop's MACs, the hop limit − 1."""
        frame[0:12] = hop.macs
        frame[21] -= 1
        return frame

    def xdp_entries(self, conn: Connection, hop: NextHop, ifindex: Mapping[str, int],
                    slot: int) -> list[tuple[bytes, fastpath.AnyEntry]]:
        if len(conn.key12) != 12:
            return [(fastpath.key6(conn.proto, conn.key12),
                     fastpath.dr6(ifindex[hop.interface], hop.macs, hop.mtu, slot=slot))]
        return [(fastpath.key(conn.proto, conn.key12),
                 fastpath.dr(ifindex[hop.interface], hop.macs, hop.mtu, slot=slot))]
