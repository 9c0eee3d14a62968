"""IP-in-IP tunnelling (ipvsadm -i, "Tunnel"), as IPVS's ip_vs_tunnel_xmit.

The client's packet, TTL decremented, travels whole inside a new IPv4 header (protocol 4) from the
director's address on the route to the real server to the real server itself, through whatever
routers lie between; the real server unwraps it and answers the client directly from the VIP.
A frame of an established connection with a plain header gets the same bytes the short way, and
so does one the XDP fast path forwards (``xdp_entries``): both from the sum of the outer header's
constant words worked out once per connection (pylvs.core.csum_delta). The encapsulation is picked
by the real server's family, as IPVS does: an IPv6 real server is reached by ``toward(10)``'s
instance (ip6ip6, or 4in6 for an IPv4 service), an IPv6 connection to an IPv4 real server by 6in4
(pylvs.core.tunnel6).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pylvs.core import csum_delta, encap, fastpath
from pylvs.core.conntrack import unpack_key
from pylvs.core.forwarding import Forwarder, NextHop, register
from pylvs.core.ipv6 import Flow6, plain_flow6
from pylvs.core.packet import (
    IPPROTO_IPIP,
    Flow,
    decrement_ttl,
    encapsulate_ipip,
    plain_flow,
    set_macs,
)
from pylvs.core.tunnel6 import OUTER_IPV4, OUTER_IPV6, ecn_encapsulate, tunnel_xmit

if TYPE_CHECKING:
    from pylvs.core.conntrack import Connection


@register
class Tunnel(Forwarder):
    name, flag, label, lb_kind, conn_flag = "tun", "-i", "Tunnel", "TUN", 0x0002
    overhead = 20
    outer = OUTER_IPV4
    tunnel_type = "ipip"

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.to_ipv6: Tunnel | None = None
        self.encapsulations: dict[tuple[int, str, str], Encapsulation] = {}

    def toward(self, af: int, tunnel: tuple[str, str] = ("ipip", "nocsum")) -> Forwarder:
        """IP-in-IP: this instance, or the one toward IPv6 real servers; GUE and GRE: one
        instance per family, type and checksum option (each has its own overhead)."""
        if tunnel[0] != "ipip":
            key = (af, *tunnel)
            if key not in self.encapsulations:
                self.encapsulations[key] = Encapsulation(af, *tunnel)
            return self.encapsulations[key]
        if af != 10 or self.server_af == 10:
            return self
        if self.to_ipv6 is None:
            self.to_ipv6 = TunnelToIPv6()
        return self.to_ipv6

    def forward(self, frame: bytearray, flow: Flow | Flow6, conn: Connection, hop: NextHop
                ) -> bytearray:
        if isinstance(flow, Flow6):  # 6in4: to an IPv4 real server
            return tunnel_xmit(frame, flow, 4, hop.src_ip, conn.server.ip, hop.macs,
                               next(self.ids))
        decrement_ttl(frame)
        out = encapsulate_ipip(frame, flow, hop.src_ip, conn.server.ip, next(self.ids))
        set_macs(out, hop.dst_mac, hop.src_mac)
        return out

    def established(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                    ip_len: int) -> bytearray:
        """``forward``'s bytes the short way: the outer header's addresses and the sum of its
        constant words are worked out once per connection and hop."""
        plan = conn.rewrite
        if plan is None or plan[0] is not hop:
            plan = _plan(conn, hop)
        csum = ((frame[24] << 8) | frame[25]) + 0x100  # inner TTL − 1, as DR's rewrite
        frame[22] -= 1
        csum = (csum & 0xFFFF) + (csum >> 16)
        csum = 0 if csum == 0xFFFF else csum
        frame[24], frame[25] = csum >> 8, csum & 0xFF
        tos, df, ttl = frame[15], frame[20] & 0x40, frame[22]
        total, ip_id = ip_len + self.overhead, next(self.ids) & 0xFFFF
        outer = plan[2] + tos + total + ip_id + (df << 8) + (ttl << 8)
        outer = (outer & 0xFFFF) + (outer >> 16)
        outer = ~((outer & 0xFFFF) + (outer >> 16)) & 0xFFFF
        out = bytearray(hop.macs)
        out += frame[12:14]
        out += bytes((0x45, tos, total >> 8, total & 0xFF, ip_id >> 8, ip_id & 0xFF, df, 0,
                      ttl, IPPROTO_IPIP, outer >> 8, outer & 0xFF))
        out += plan[1]
        out += frame[14:14 + ip_len]
        return out

    def xdp_entries(self, conn: Connection, hop: NextHop, ifindex: Mapping[str, int],
                    slot: int) -> list[tuple[bytes, fastpath.AnyEntry]]:
        """The same outer header made by the program, from the connection's plan (6in4 for
        an IPv6 connection)."""
        if len(conn.key12) != 12:
            return [(fastpath.key6(conn.proto, conn.key12),
                     fastpath.tun6in4(ifindex[hop.interface], hop.macs, hop.mtu,
                                      hop.src_ip.to_bytes(4, "big"),
                                      conn.server.ip.to_bytes(4, "big"), slot=slot))]
        plan = conn.rewrite
        if plan is None or plan[0] is not hop:
            plan = _plan(conn, hop)
        _, addresses, constant = plan
        return [(fastpath.key(conn.proto, conn.key12),
                 fastpath.tun_planned(ifindex[hop.interface], hop.macs, hop.mtu, addresses,
                                      constant, slot=slot))]


class TunnelToIPv6(Tunnel):
    """TUN to an IPv6 real server: an outer IPv6 header (ip6ip6, or 4in6 for an IPv4 service),
    as ip_vs_tunnel_xmit_v6. ip6ip6 has a short way (``established6``: the outer addresses
    kept per connection and hop); 4in6's frames are all ``forward``'s."""

    overhead = 40
    outer = OUTER_IPV6
    server_af = 10

    def forward(self, frame: bytearray, flow: Flow | Flow6, conn: Connection, hop: NextHop
                ) -> bytearray:
        return tunnel_xmit(frame, flow, 6, hop.src_ip, conn.server.ip, hop.macs)

    def established(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                    ip_len: int) -> bytearray:
        return self.forward(frame, plain_flow(frame, conn.proto, flags, ip_len), conn, hop)

    def established6(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                     payload_len: int) -> bytearray:
        """tunnel_xmit's ip6ip6 bytes: the inner hop limit − 1, then an outer header whose
        traffic class is the inner's (CE as ECT(0)), flow label 0, next header 41."""
        plan = conn.rewrite
        if plan is None or plan[0] is not hop:
            addresses = hop.src_ip.to_bytes(16, "big") + conn.server.ip.to_bytes(16, "big")
            plan = conn.rewrite = (hop, addresses)
        frame[21] -= 1
        dsfield = ecn_encapsulate((frame[14] & 0x0F) << 4 | frame[15] >> 4)
        length = payload_len + 40
        out = bytearray(hop.macs)
        out += b"\x86\xdd"
        out += bytes((0x60 | dsfield >> 4, (dsfield & 0x0F) << 4, 0, 0, length >> 8,
                      length & 0xFF, 41, frame[21]))
        out += plan[1]
        out += frame[14:14 + length]
        return out

    def xdp_entries(self, conn: Connection, hop: NextHop, ifindex: Mapping[str, int],
                    slot: int) -> list[tuple[bytes, fastpath.AnyEntry]]:
        """ip6ip6 for an IPv6 connection; 4in6 (two entries, the IPv4 map's first) for an
        IPv4 one."""
        source, rip = hop.src_ip.to_bytes(16, "big"), conn.server.ip.to_bytes(16, "big")
        if len(conn.key12) != 12:
            return [(fastpath.key6(conn.proto, conn.key12),
                     fastpath.tun6(ifindex[hop.interface], hop.macs, hop.mtu, source, rip,
                                   slot=slot))]
        return fastpath.tun4in6(conn.proto, conn.key12, ifindex[hop.interface], hop.macs,
                                hop.mtu, source, rip, slot=slot)


class Encapsulation(Tunnel):
    """TUN by GUE or GRE (ipvsadm --tun-type gue|gre), as ipvs_gue_encap and ipvs_gre_encap
    (pylvs.core.encap): the outer header of the real server's family, then UDP and the 4-byte
    GUE header to its --tun-port, or GRE's 4 bytes (8 with the checksum). The GUE source port
    is hashed from the flow once per connection."""

    def __init__(self, af: int, tun_type: str, flags: str) -> None:
        super().__init__()
        self.server_af = af
        self.tunnel = (tun_type, flags)
        self.family = 6 if af == 10 else 4
        self.overhead = encap.overhead(tun_type, self.family, flags)
        self.outer = OUTER_IPV6 if af == 10 else OUTER_IPV4
        self.tunnel_type = tun_type

    def toward(self, af: int, tunnel: tuple[str, str] = ("ipip", "nocsum")) -> Forwarder:
        return self

    def forward(self, frame: bytearray, flow: Flow | Flow6, conn: Connection, hop: NextHop
                ) -> bytearray:
        tun_type, flags = self.tunnel
        return encap.tunnel_xmit(frame, flow, tun_type, self.family, hop.src_ip, conn.server.ip,
                                 hop.macs, port=conn.server.tun_port, flags=flags,
                                 ip_id=next(self.ids), sport=_source_port(conn))

    def established(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                    ip_len: int) -> bytearray:
        return self.forward(frame, plain_flow(frame, conn.proto, flags, ip_len), conn, hop)

    def established6(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                     payload_len: int) -> bytearray:
        return self.forward(frame, plain_flow6(frame, conn.proto, flags, payload_len), conn,
                            hop)

    def xdp_entries(self, conn: Connection, hop: NextHop, ifindex: Mapping[str, int],
                    slot: int) -> list[tuple[bytes, fastpath.AnyEntry]]:
        """The program builds the same outer headers (fastpath.encap_entries), the GUE source
        port the connection's."""
        size = 16 if self.family == 6 else 4
        return fastpath.encap_entries(conn.proto, conn.key12, ifindex[hop.interface],
                                      hop.macs, hop.mtu, hop.src_ip.to_bytes(size, "big"),
                                      conn.server.ip.to_bytes(size, "big"), self.tunnel[0],
                                      self.tunnel[1], _source_port(conn), conn.server.tun_port,
                                      slot=slot)


def _source_port(conn: Connection) -> int:
    """The connection's GUE source port (encap.gue_source_port of its client's flow), worked
    out once and kept in ``conn.rewrite``."""
    if isinstance(conn.rewrite, int):
        return conn.rewrite
    caddr, vaddr, cport, vport = unpack_key(conn.key12)
    flow: Flow | Flow6 = (Flow(conn.proto, caddr, vaddr, cport, vport, 0, 0, 0, 0)
                          if len(conn.key12) == 12 else
                          Flow6(conn.proto, caddr, vaddr, cport, vport, 0, 0, 0, 0, 0))
    conn.rewrite = encap.gue_source_port(flow)
    return conn.rewrite


def _plan(conn: Connection, hop: NextHop) -> tuple[NextHop, bytes, int]:
    """The hop it was made for, the outer source and destination, and the sum of the outer
    header's words that do not change (csum_delta.ipip_constant), kept in ``conn.rewrite``:
    the connection's while its hop stays the same."""
    addresses = struct.pack("!II", hop.src_ip, conn.server.ip)
    plan = conn.rewrite = (hop, addresses, csum_delta.ipip_constant(addresses))
    return plan
