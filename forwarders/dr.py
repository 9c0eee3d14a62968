"""Direct routing (ipvsadm -g, "Route"), as IPVS's ip_vs_dr_xmit does it.

Only the link layer changes: the destination MAC becomes the real server's and the source MAC the
director's. The IP header keeps VIP as destination; TTL is decremented and the IP checksum updated
incrementally. The caller has already refused frames with TTL <= 1.
"""

from __future__ import annotations

from pylvs.packet import decrement_ttl, set_macs

from forwarders import NextHop, register


@register
class DirectRouting:
    name = "dr"

    def forward(self, frame: bytearray, hop: NextHop) -> bytearray:
        set_macs(frame, hop.dst_mac, hop.src_mac)
        decrement_ttl(frame)
        return frame
