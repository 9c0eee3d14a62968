"""ICMP errors: those the director sends, and those it relays for a connection.

An error the director sends back to a client is built as the kernel's icmp_send does: it quotes
the offending IP packet (header and as much data as keeps the whole error within 576 bytes,
RFC 1812 §4.3.2.3) and comes from the packet's own destination, the VIP, because the VIP is a
local address of the director. An error about a tracked connection (ip_vs_in_icmp,
ip_vs_out_icmp) is found by the packet it quotes and, in NAT, rewritten so that each side sees
only the addresses it knows (the NAT forwarder's part).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pylvs.core.packet import (
    ETH_P_IP,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Buffer,
    Flow,
    checksum,
)

DEST_UNREACH, TIME_EXCEEDED = 3, 11
PORT_UNREACH, FRAG_NEEDED = 3, 4
TTL_EXPIRED = 0
MAX_ERROR = 576
ERROR_TTL = 64


def error_frame(frame: Buffer, flow: Flow, icmp_type: int, code: int, src_mac: bytes,
                next_hop_mtu: int = 0) -> bytearray:
    """An Ethernet frame carrying the ICMP error about ``frame`` back to its sender's MAC."""
    quoted = bytes(frame[flow.l3off:flow.l3off + min(flow.ip_len, MAX_ERROR - 28)])
    rest = next_hop_mtu if icmp_type == DEST_UNREACH and code == FRAG_NEEDED else 0
    icmp = bytearray(struct.pack("!BBHI", icmp_type, code, 0, rest) + quoted)
    struct.pack_into("!H", icmp, 2, checksum(icmp))
    ip = bytearray(struct.pack("!BBHHHBBHII", 0x45, 0xC0, 20 + len(icmp), 0, 0, ERROR_TTL,
                               IPPROTO_ICMP, 0, flow.daddr, flow.saddr))
    struct.pack_into("!H", ip, 10, checksum(ip))
    eth = bytes(frame[6:12]) + src_mac + struct.pack("!H", ETH_P_IP)
    return bytearray(eth) + ip + icmp



SOURCE_QUENCH = 4
RELATED = (DEST_UNREACH, SOURCE_QUENCH, TIME_EXCEEDED)
_QUOTED = struct.Struct("!BxHHHBB2xII")


@dataclass(slots=True)
class Quoted:
    """The packet an ICMP error quotes (the first bytes of what its sender could not deliver)."""

    proto: int
    saddr: int
    daddr: int
    sport: int
    dport: int
    l3off: int
    l4off: int


def quoted(frame: Buffer, flow: Flow) -> Quoted | None:
    """The TCP/UDP packet a related ICMP error (ip_vs_in_icmp's types) is about, or None."""
    if flow.proto != IPPROTO_ICMP or flow.icmp_type not in RELATED:
        return None
    l3 = flow.l4off + 8
    end = flow.l3off + flow.ip_len
    if l3 + 20 > end:
        return None
    vihl, _len, _id, _frag, _ttl, proto, saddr, daddr = _QUOTED.unpack_from(frame, l3)
    l4 = l3 + (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or l4 < l3 + 20 or l4 + 4 > end or proto not in (IPPROTO_TCP, IPPROTO_UDP):
        return None
    sport, dport = struct.unpack_from("!HH", frame, l4)
    return Quoted(proto, saddr, daddr, sport, dport, l3, l4)


def checksum_ok(frame: Buffer, flow: Flow) -> bool:
    return checksum(frame[flow.l4off:flow.l3off + flow.ip_len]) == 0
