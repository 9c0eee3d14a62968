"""ICMP errors the director sends back to a client, as the kernel's icmp_send builds them.

The error quotes the offending IP packet (header and as much data as keeps the whole error within
576 bytes, RFC 1812 §4.3.2.3) and comes from the packet's own destination, the VIP, because the
VIP is a local address of the director.
"""

from __future__ import annotations

import struct

from pylvs.packet import ETH_P_IP, IPPROTO_ICMP, Buffer, Flow, checksum

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

