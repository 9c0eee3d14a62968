"""IP-in-IP tunnelling (ipvsadm -i, "Tunnel"), as IPVS's ip_vs_tunnel_xmit.

The client's packet, TTL decremented, travels whole inside a new IPv4 header (protocol 4) from the
director's address on the route to the real server to the real server itself, through whatever
routers lie between; the real server unwraps it and answers the client directly from the VIP.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from forwarders import Forwarder, NextHop, register
from pylvs.core.packet import decrement_ttl, encapsulate_ipip, set_macs

if TYPE_CHECKING:
    from pylvs.core.conntrack import Connection
    from pylvs.core.packet import Flow


@register
class Tunnel(Forwarder):
    name, flag, label, lb_kind, conn_flag = "tun", "-i", "Tunnel", "TUN", 0x0002
    overhead = 20
    tunnel_type = "ipip"

    def __init__(self) -> None:
        self.ids = itertools.count(1)

    def forward(self, frame: bytearray, flow: Flow, conn: Connection, hop: NextHop
                ) -> bytearray:
        decrement_ttl(frame)
        out = encapsulate_ipip(frame, flow, hop.src_ip, conn.server.ip, next(self.ids))
        set_macs(out, hop.dst_mac, hop.src_mac)
        return out
