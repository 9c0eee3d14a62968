"""Masquerading (ipvsadm -m, "Masq"), as IPVS's ip_vs_nat_xmit and the SNAT-back of replies.

Inbound the destination VIP:vport becomes RIP:rport (ports may differ: only NAT maps them); the
client's address is kept, so the real server's route back must pass the director, which turns
the reply's source RIP:rport back into VIP:vport. Checksums are updated incrementally (RFC 1624),
TTL decremented both ways. An ICMP error about a connection has its quoted packet rewritten
the same way (ip_vs_nat_icmp), so that each side sees only the addresses it knows. A frame of an
established connection with a plain header takes a shorter way to the same bytes: the deltas of
its rewrite are worked out once per connection (pylvs.core.csum_delta), and the XDP fast path's
map entries (``xdp_entries``, both ways) carry the same ones. IPv6 is NAT66 by
pylvs.core.ipv6 (nat_xmit6, nat_reply6: no header checksum, the pseudo-header's addresses in the
TCP/UDP checksum); an ICMPv6 error's quoted packet is rewritten as ip_vs_nat_icmp_v6 does, its
checksum then computed afresh.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pylvs.core import csum_delta, fastpath
from pylvs.core.forwarding import Forwarder, NextHop, register
from pylvs.core.ipv6 import Flow6, l4_checksum6, nat_reply6, nat_xmit6, plain_flow6
from pylvs.core.packet import checksum, csum_update32, decrement_ttl, rewrite_endpoint, set_macs

if TYPE_CHECKING:
    from pylvs.core.conntrack import Connection
    from pylvs.core.icmp import Quoted
    from pylvs.core.packet import Flow


@register
class Masquerade(Forwarder):
    name, flag, label, lb_kind, conn_flag = "nat", "-m", "Masq", "NAT", 0x0000
    masquerades = True

    def forward(self, frame: bytearray, flow: Flow | Flow6, conn: Connection, hop: NextHop
                ) -> bytearray:
        if isinstance(flow, Flow6):
            return nat_xmit6(frame, flow, conn.server.ip, conn.dport, hop.macs)
        rewrite_endpoint(frame, flow, False, conn.server.ip, conn.dport)
        return _send(frame, hop)

    def reply(self, frame: bytearray, flow: Flow | Flow6, conn: Connection, hop: NextHop
              ) -> bytearray:
        if isinstance(flow, Flow6):
            return nat_reply6(frame, flow, conn.vaddr, conn.vport, hop.macs)
        rewrite_endpoint(frame, flow, True, conn.vaddr, conn.vport)
        return _send(frame, hop)

    def relay_error(self, frame: bytearray, flow: Flow | Flow6, quoted: Quoted,
                    conn: Connection, hop: NextHop, inbound: bool) -> bytearray:
        if isinstance(flow, Flow6):
            return _relay_error6(self, frame, flow, quoted, conn, hop, inbound)
        if inbound:  # it quotes an answer the client had from the VIP: now from the real server
            rewrite_quoted(frame, flow, quoted, True, conn.server.ip, conn.dport)
            return self.forward(frame, flow, conn, hop)
        # it quotes what the real server had from the client, addressed to the VIP
        rewrite_quoted(frame, flow, quoted, False, conn.vaddr, conn.vport)
        return self.reply(frame, flow, conn, hop)

    def established(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                    ip_len: int) -> bytearray:
        """The same rewrite as ``forward``, by the connection's precomputed deltas."""
        plan = conn.rewrite or _plan(conn)
        return _rewrite(frame, hop, conn.proto, 30, 36, *plan[0])

    def reply_established(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                          ip_len: int) -> bytearray:
        plan = conn.rewrite or _plan(conn)
        return _rewrite(frame, hop, conn.proto, 26, 34, *plan[1])

    def established6(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                     payload_len: int) -> bytearray | None:
        """nat_xmit6's bytes by the connection's precomputed delta (a UDP checksum of 0, which
        IPv6 forbids, is recomputed by ``forward``)."""
        plan = conn.rewrite or _plan6(conn)
        return _rewrite6(self, frame, conn, hop, flags, payload_len, 38, 56, *plan[0])

    def reply_established6(self, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
                           payload_len: int) -> bytearray | None:
        plan = conn.rewrite or _plan6(conn)
        return _rewrite6(self, frame, conn, hop, flags, payload_len, 22, 54, *plan[1])

    def xdp_entries(self, conn: Connection, hop: NextHop, ifindex: Mapping[str, int],
                    slot: int) -> list[tuple[bytes, fastpath.AnyEntry]]:
        """Toward the real server through ``hop``, and back to the client through the hop
        the client's frames came from (none yet: no fast path), by the connection's plan."""
        back = conn.return_hop
        if back is None or back.interface not in ifindex:
            return []
        if len(conn.key12) != 12:
            vip = conn.vaddr.to_bytes(16, "big") + conn.vport.to_bytes(2, "big")
            rip = conn.server.ip.to_bytes(16, "big") + conn.dport.to_bytes(2, "big")
            return [(fastpath.key6(conn.proto, conn.key12),
                     fastpath.nat6(True, ifindex[hop.interface], hop.macs, hop.mtu, vip, rip,
                                   slot=slot)),
                    (fastpath.key6(conn.proto, conn.reply_key12),
                     fastpath.nat6(False, ifindex[back.interface], back.macs, fastpath.NO_MTU,
                                   rip, vip, slot=slot))]
        plan = conn.rewrite or _plan(conn)
        return [(fastpath.key(conn.proto, conn.key12),
                 fastpath.nat_planned(True, ifindex[hop.interface], hop.macs, hop.mtu, *plan[0],
                                      slot=slot)),
                (fastpath.key(conn.proto, conn.reply_key12),
                 fastpath.nat_planned(False, ifindex[back.interface], back.macs,
                                      fastpath.NO_MTU, *plan[1], slot=slot))]


def _relay_error6(nat: Masquerade, frame: bytearray, flow: Flow6, q: Quoted, conn: Connection,
                  hop: NextHop, inbound: bool) -> bytearray:
    """ip_vs_nat_icmp_v6: the quoted packet's address and port, as ``relay_error`` for IPv4,
    the outer packet's by NAT66, then the ICMPv6 checksum over the final pseudo-header."""
    if inbound:
        _rewrite_quoted6(frame, q, True, conn.server.ip, conn.dport)
        out = nat.forward(frame, flow, conn, hop)
    else:
        _rewrite_quoted6(frame, q, False, conn.vaddr, conn.vport)
        out = nat.reply(frame, flow, conn, hop)
    struct.pack_into("!H", out, flow.l4off + 2, l4_checksum6(out, flow))
    return out


def _rewrite_quoted6(frame: bytearray, q: Quoted, source: bool, addr: int, port: int) -> None:
    addr_off = q.l3off + (8 if source else 24)
    frame[addr_off:addr_off + 16] = addr.to_bytes(16, "big")
    struct.pack_into("!H", frame, q.l4off + (0 if source else 2), port)


def _plan6(conn: Connection) -> tuple[tuple[bytes, int], tuple[bytes, int]]:
    """``_plan`` for NAT66: the 18 address+port bytes to write each way and the TCP/UDP
    checksum's delta (no header checksum, and the hop limit is in none)."""
    vip = conn.vaddr.to_bytes(16, "big") + conn.vport.to_bytes(2, "big")
    rip = conn.server.ip.to_bytes(16, "big") + conn.dport.to_bytes(2, "big")
    plan = ((rip, csum_delta.endpoint6(vip, rip)), (vip, csum_delta.endpoint6(rip, vip)))
    conn.rewrite = plan
    return plan


def _rewrite6(nat: Masquerade, frame: bytearray, conn: Connection, hop: NextHop, flags: int,
              payload_len: int, addr_off: int, port_off: int, endpoint: bytes,
              l4_delta: int) -> bytearray | None:
    """The address (at addr_off) and port (at port_off), MACs, hop limit − 1, the checksum by
    delta; UDP's computed 0 goes out as 0xFFFF."""
    csum_at = 70 if conn.proto == 6 else 60
    if conn.proto != 6 and not (frame[csum_at] or frame[csum_at + 1]):
        flow = plain_flow6(frame, conn.proto, flags, payload_len)
        inbound = addr_off == 38
        return nat.forward(frame, flow, conn, hop) if inbound else nat.reply(frame, flow, conn,
                                                                              hop)
    frame[0:12] = hop.macs
    frame[addr_off:addr_off + 16] = endpoint[:16]
    frame[port_off:port_off + 2] = endpoint[16:]
    frame[21] -= 1
    if not _apply(frame, csum_at, l4_delta) and conn.proto != 6:
        frame[csum_at] = frame[csum_at + 1] = 0xFF
    return frame


def _plan(conn: Connection) -> tuple[tuple[bytes, int, int], tuple[bytes, int, int]]:
    """Toward the server, and back: the 6 address+port bytes to write, the IP and the L4
    checksum deltas (RFC 1624, network order: csum_delta.endpoint)."""
    vip = struct.pack("!IH", conn.vaddr, conn.vport)
    rip = struct.pack("!IH", conn.server.ip, conn.dport)
    plan = ((rip, *csum_delta.endpoint(vip, rip)), (vip, *csum_delta.endpoint(rip, vip)))
    conn.rewrite = plan
    return plan


def _rewrite(frame: bytearray, hop: NextHop, proto: int, addr_off: int, port_off: int,
             endpoint: bytes, ip_delta: int, l4_delta: int) -> bytearray:
    """An address and port (at addr_off, port_off), MACs, TTL − 1, both checksums by delta;
    a UDP checksum of 0 (none) stays 0, a computed 0 goes out as 0xFFFF (as rewrite_endpoint)."""
    frame[0:12] = hop.macs
    frame[addr_off:addr_off + 4] = endpoint[:4]
    frame[port_off:port_off + 2] = endpoint[4:]
    frame[22] -= 1
    _apply(frame, 24, ip_delta)
    if proto == 6:
        _apply(frame, 50, l4_delta)
    elif frame[40] or frame[41]:
        if not _apply(frame, 40, l4_delta):
            frame[40] = frame[41] = 0xFF
    return frame


def _apply(frame: bytearray, at: int, delta: int) -> int:
    value = (~((frame[at] << 8) | frame[at + 1]) & 0xFFFF) + delta
    value = (value & 0xFFFF) + (value >> 16)
    value = ~((value & 0xFFFF) + (value >> 16)) & 0xFFFF
    frame[at], frame[at + 1] = value >> 8, value & 0xFF
    return value


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
