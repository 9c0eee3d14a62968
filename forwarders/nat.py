"""Masquerading (ipvsadm -m, "Masq"), as IPVS's ip_vs_nat_xmit and the SNAT-back of replies.

Inbound the destination VIP:vport becomes RIP:rport (ports may differ: only NAT maps them); the
client's address is kept, so the real server's route back must pass the director, which turns
the reply's source RIP:rport back into VIP:vport. Checksums are updated incrementally (RFC 1624),
TTL decremented both ways. An ICMP error about a connection has its quoted packet rewritten
the same way (ip_vs_nat_icmp), so that each side sees only the addresses it knows.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from forwarders import Forwarder, NextHop, register
from pylvs.core.packet import checksum, csum_update32, decrement_ttl, rewrite_endpoint, set_macs

if TYPE_CHECKING:
    from pylvs.core.conntrack import Connection
    from pylvs.core.icmp import Quoted
    from pylvs.core.packet import Flow


@register
class Masquerade(Forwarder):
    name, flag, label, lb_kind, conn_flag = "nat", "-m", "Masq", "NAT", 0x0000
    masquerades = True

    def forward(self, frame: bytearray, flow: Flow, conn: Connection, hop: NextHop
                ) -> bytearray:
        rewrite_endpoint(frame, flow, False, conn.server.ip, conn.server.port)
        return _send(frame, hop)

    def reply(self, frame: bytearray, flow: Flow, conn: Connection, hop: NextHop
              ) -> bytearray:
        rewrite_endpoint(frame, flow, True, conn.vaddr, conn.vport)
        return _send(frame, hop)

    def relay_error(self, frame: bytearray, flow: Flow, quoted: Quoted, conn: Connection,
                    hop: NextHop, inbound: bool) -> bytearray:
        if inbound:  # it quotes an answer the client had from the VIP: now from the real server
            rewrite_quoted(frame, flow, quoted, True, conn.server.ip, conn.server.port)
            return self.forward(frame, flow, conn, hop)
        # it quotes what the real server had from the client, addressed to the VIP
        rewrite_quoted(frame, flow, quoted, False, conn.vaddr, conn.vport)
        return self.reply(frame, flow, conn, hop)


def _send(frame: bytearray, hop: NextHop) -> bytearray:
    set_macs(frame, hop.dst_mac, hop.src_mac)
    decrement_ttl(frame)
    return frame


def rewrite_quoted(frame: bytearray, flow: Flow, q: Quoted, source: bool, addr: int,
                   port: int) -> None:
    """Set the quoted packet's source (or destination) address and port, as ip_vs_nat_icmp:
    its IP header checksum updated, the ICMP checksum computed afresh."""
    addr_off = q.l3off + (12 if source else 16)
    old = struct.unpack_from("!I", frame, addr_off)[0]
    struct.pack_into("!I", frame, addr_off, addr)
    csum = struct.unpack_from("!H", frame, q.l3off + 10)[0]
    struct.pack_into("!H", frame, q.l3off + 10, csum_update32(csum, old, addr))
    struct.pack_into("!H", frame, q.l4off + (0 if source else 2), port)
    struct.pack_into("!H", frame, flow.l4off + 2, 0)
    end = flow.l3off + flow.ip_len
    struct.pack_into("!H", frame, flow.l4off + 2, checksum(frame[flow.l4off:end]))
