"""Masquerading (ipvsadm -m, "Masq"), as IPVS's ip_vs_nat_xmit and the SNAT-back of replies.

Inbound the destination VIP:vport becomes RIP:rport (ports may differ: only NAT maps them); the
client's address is kept, so the real server's route back must pass the director, which turns
the reply's source RIP:rport back into VIP:vport. Checksums are updated incrementally (RFC 1624),
TTL decremented both ways.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forwarders import NextHop, register
from pylvs.core.packet import decrement_ttl, rewrite_endpoint, set_macs

if TYPE_CHECKING:
    from pylvs.core.conntrack import Connection
    from pylvs.core.packet import Flow


@register
class Masquerade:
    name = "nat"
    overhead = 0

    def forward(self, frame: bytearray, flow: Flow, conn: Connection, hop: NextHop
                ) -> bytearray:
        rewrite_endpoint(frame, flow, False, conn.server.ip, conn.server.port)
        set_macs(frame, hop.dst_mac, hop.src_mac)
        decrement_ttl(frame)
        return frame

    def reply(self, frame: bytearray, flow: Flow, conn: Connection, hop: NextHop
              ) -> bytearray:
        rewrite_endpoint(frame, flow, True, conn.vaddr, conn.vport)
        set_macs(frame, hop.dst_mac, hop.src_mac)
        decrement_ttl(frame)
        return frame
