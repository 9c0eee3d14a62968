"""Direct routing (ipvsadm -g, "Route"), as IPVS's ip_vs_dr_xmit does it.

Only the link layer changes: the destination MAC becomes the real server's and the source MAC the
director's. The IP header keeps VIP as destination; TTL is decremented and the IP checksum updated
incrementally (RFC 1624). The caller has already refused frames with TTL <= 1. Replies never pass
the director.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forwarders import Forwarder, NextHop, register
from pylvs.core.packet import ETH_HLEN

if TYPE_CHECKING:
    from pylvs.core.conntrack import Connection
    from pylvs.core.packet import Flow


def route(frame: bytearray, hop: NextHop, l3off: int = ETH_HLEN) -> bytearray:
    """The whole of DR: the hop's MACs, TTL − 1 with the IP checksum updated."""
    frame[0:12] = hop.macs
    csum = ((frame[l3off + 10] << 8) | frame[l3off + 11]) + 0x100  # TTL is the high byte
    frame[l3off + 8] -= 1
    csum = (csum & 0xFFFF) + (csum >> 16)
    if csum == 0xFFFF:  # the same number; a from-scratch sum of a header is never 0xFFFF
        csum = 0
    frame[l3off + 10] = csum >> 8
    frame[l3off + 11] = csum & 0xFF
    return frame


@register
class DirectRouting(Forwarder):
    name, flag, label, lb_kind, conn_flag = "dr", "-g", "Route", "DR", 0x0003

    def forward(self, frame: bytearray, flow: Flow, conn: Connection, hop: NextHop
                ) -> bytearray:
        return route(frame, hop, flow.l3off)

    def established(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                    ip_len: int) -> bytearray:
        return route(frame, hop)
