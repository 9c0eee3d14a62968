"""Direct routing (ipvsadm -g, "Route"), as IPVS's ip_vs_dr_xmit does it.

Only the link layer changes: the destination MAC becomes the real server's and the source MAC the
director's. The IP header keeps VIP as destination; TTL is decremented and the IP checksum updated
incrementally. The caller has already refused frames with TTL <= 1. Replies never pass the
director.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forwarders import NextHop, register
from pylvs.core.packet import decrement_ttl, set_macs

if TYPE_CHECKING:
    from pylvs.core.conntrack import Connection
    from pylvs.core.packet import Flow


@register
class DirectRouting:
    name = "dr"
    overhead = 0

    def forward(self, frame: bytearray, flow: Flow, conn: Connection, hop: NextHop
                ) -> bytearray:
        set_macs(frame, hop.dst_mac, hop.src_mac)
        decrement_ttl(frame)
        return frame

    def reply(self, frame: bytearray, flow: Flow, conn: Connection, hop: NextHop) -> None:
        return None
