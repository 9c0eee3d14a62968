"""Frames at fixed offsets: Ethernet, IPv4, TCP, UDP, ICMP; internet checksums.

Parsing reads only what the director needs into a small ``Flow`` and never raises: anything that
is not a whole, unfragmented IPv4 TCP/UDP/ICMP packet gives None. pylvs does not reassemble, so
fragments (first ones included) are not flows. Checksums are RFC 1071 sums; updates of a field
are RFC 1624's eqn. 3, valid only from a correct checksum (a partial one from an offloading sender
must be completed first with ``complete_l4_checksum``). No sockets here.
"""

from __future__ import annotations

import struct
import sys
from array import array

ETH_HLEN = 14
ETH_P_IP = 0x0800
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_L4_MIN = {IPPROTO_TCP: 20, IPPROTO_UDP: 8, IPPROTO_ICMP: 8}
_CSUM_OFFSET = {IPPROTO_TCP: 16, IPPROTO_UDP: 6}
_IP_HEAD = struct.Struct("!BxHHHBB2xII")
_PORTS = struct.Struct("!HH")
_H = struct.Struct("!H")
_I = struct.Struct("!I")
_LITTLE = sys.byteorder == "little"

Buffer = bytes | bytearray | memoryview


class Flow:
    """What one frame says about its connection."""

    af = 2  # AF_INET: the schedulers' hash keys fold addresses by family (Flow6: 10)
    __slots__ = ("proto", "saddr", "daddr", "sport", "dport", "l3off", "l4off", "tcp_flags",
                 "ttl", "ip_len", "icmp_type", "icmp_code")

    def __init__(self, proto: int, saddr: int, daddr: int, sport: int, dport: int, l4off: int,
                 tcp_flags: int, ttl: int, ip_len: int, icmp_type: int = -1,
                 icmp_code: int = -1) -> None:
        self.proto, self.saddr, self.daddr = proto, saddr, daddr
        self.sport, self.dport = sport, dport
        self.l3off, self.l4off = ETH_HLEN, l4off
        self.tcp_flags, self.ttl, self.ip_len = tcp_flags, ttl, ip_len
        self.icmp_type, self.icmp_code = icmp_type, icmp_code

    def __repr__(self) -> str:
        return (f"Flow(proto={self.proto}, {self.saddr:#x}:{self.sport} -> "
                f"{self.daddr:#x}:{self.dport}, flags={self.tcp_flags:#x}, ttl={self.ttl})")


def parse(frame: Buffer) -> Flow | None:
    size = len(frame)
    if size < ETH_HLEN + 20 or frame[12] != 0x08 or frame[13] != 0x00:
        return None
    vihl, ip_len, _id, frag, ttl, proto, saddr, daddr = _IP_HEAD.unpack_from(frame, ETH_HLEN)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20 or ip_len < ihl or ip_len > size - ETH_HLEN:
        return None
    if frag & 0x3FFF:  # MF set or a non-zero offset
        return None
    need = _L4_MIN.get(proto)
    l4 = ETH_HLEN + ihl
    if need is None or ip_len - ihl < need:
        return None
    if proto == IPPROTO_ICMP:
        return Flow(proto, saddr, daddr, 0, 0, l4, 0, ttl, ip_len, frame[l4], frame[l4 + 1])
    sport, dport = _PORTS.unpack_from(frame, l4)
    flags = 0
    if proto == IPPROTO_TCP:
        doff = frame[l4 + 12] >> 4
        if doff < 5 or doff * 4 > ip_len - ihl:
            return None
        flags = frame[l4 + 13]
    return Flow(proto, saddr, daddr, sport, dport, l4, flags, ttl, ip_len)


_PLAIN = struct.Struct("!IIHH")


def plain_flow(frame: Buffer, proto: int, flags: int, ip_len: int) -> Flow:
    """The Flow of a frame the caller found to have a plain 20-byte IP header."""
    saddr, daddr, sport, dport = _PLAIN.unpack_from(frame, ETH_HLEN + 12)
    return Flow(proto, saddr, daddr, sport, dport, ETH_HLEN + 20, flags, frame[ETH_HLEN + 8],
                ip_len)


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum(data: Buffer, initial: int = 0) -> int:
    """The internet checksum (RFC 1071) of data, starting from a partial 32-bit sum."""
    raw = bytes(data)
    if len(raw) % 2:
        raw += b"\x00"
    words = array("H", raw)
    if _LITTLE:
        words.byteswap()
    return ~_fold(initial + sum(words)) & 0xFFFF


def csum_update16(csum: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')."""
    return ~_fold((~csum & 0xFFFF) + (~old & 0xFFFF) + (new & 0xFFFF)) & 0xFFFF


def csum_update32(csum: int, old: int, new: int) -> int:
    csum = csum_update16(csum, old >> 16, new >> 16)
    return csum_update16(csum, old & 0xFFFF, new & 0xFFFF)


def ip_header_checksum(frame: Buffer, l3off: int = ETH_HLEN) -> int:
    ihl = (frame[l3off] & 0x0F) * 4
    header = bytearray(frame[l3off:l3off + ihl])
    header[10:12] = b"\x00\x00"
    return checksum(header)


def l4_checksum(frame: Buffer, flow: Flow) -> int:
    """TCP/UDP checksum from scratch over the pseudo-header and the segment (field as zero)."""
    l3, l4 = flow.l3off, flow.l4off
    length = flow.ip_len - (l4 - l3)
    pseudo = bytes(frame[l3 + 12:l3 + 20]) + struct.pack("!BBH", 0, flow.proto, length)
    segment = bytearray(frame[l4:l4 + length])
    offset = _CSUM_OFFSET[flow.proto]
    segment[offset:offset + 2] = b"\x00\x00"
    value = checksum(pseudo + segment)
    if flow.proto == IPPROTO_UDP and value == 0:
        return 0xFFFF
    return value


def complete_l4_checksum(frame: bytearray | memoryview, flow: Flow) -> None:
    """Write the full TCP/UDP checksum (for frames whose sender left it partial)."""
    offset = _CSUM_OFFSET.get(flow.proto)
    if offset is not None:
        _H.pack_into(frame, flow.l4off + offset, l4_checksum(frame, flow))


def decrement_ttl(frame: bytearray | memoryview, l3off: int = ETH_HLEN) -> int:
    """TTL − 1 with the IP checksum updated incrementally; returns the new TTL."""
    ttl = frame[l3off + 8]
    old_word = (ttl << 8) | frame[l3off + 9]
    frame[l3off + 8] = ttl - 1
    csum = _H.unpack_from(frame, l3off + 10)[0]
    _H.pack_into(frame, l3off + 10, csum_update16(csum, old_word, old_word - 0x100))
    return ttl - 1


def set_macs(frame: bytearray | memoryview, dst: bytes, src: bytes) -> None:
    frame[0:6] = dst
    frame[6:12] = src


def rewrite_endpoint(frame: bytearray | memoryview, flow: Flow, source: bool, addr: int,
                     port: int) -> None:
    """Set the source (or destination) address and port, IP and L4 checksums updated (RFC 1624).

    A UDP checksum of zero means "none" and stays zero; a computed zero is sent as 0xFFFF.
    """
    l3, l4 = flow.l3off, flow.l4off
    addr_off = l3 + (12 if source else 16)
    port_off = l4 + (0 if source else 2)
    old_addr = _I.unpack_from(frame, addr_off)[0]
    old_port = _H.unpack_from(frame, port_off)[0]
    _I.pack_into(frame, addr_off, addr)
    ip_csum = _H.unpack_from(frame, l3 + 10)[0]
    _H.pack_into(frame, l3 + 10, csum_update32(ip_csum, old_addr, addr))
    if source:
        flow.saddr = addr
    else:
        flow.daddr = addr
    offset = _CSUM_OFFSET.get(flow.proto)
    if offset is None:
        return
    _H.pack_into(frame, port_off, port)
    if source:
        flow.sport = port
    else:
        flow.dport = port
    csum_off = l4 + offset
    csum = _H.unpack_from(frame, csum_off)[0]
    if flow.proto == IPPROTO_UDP and csum == 0:
        return
    csum = csum_update16(csum_update32(csum, old_addr, addr), old_port, port)
    if flow.proto == IPPROTO_UDP and csum == 0:
        csum = 0xFFFF
    _H.pack_into(frame, csum_off, csum)


IPPROTO_IPIP = 4
IP_DF = 0x4000
_OUTER = struct.Struct("!BBHHHBBHII")


def dont_fragment(frame: Buffer, l3off: int = ETH_HLEN) -> bool:
    return bool(_H.unpack_from(frame, l3off + 6)[0] & IP_DF)


def encapsulate_ipip(frame: Buffer, flow: Flow, src: int, dst: int, ip_id: int) -> bytearray:
    """The frame's IP packet inside a new IPv4 header (protocol 4) from src to dst.

    As ip_vs_tunnel_xmit: TOS, TTL and DF copied from the inner header, a fresh IP ID. The
    Ethernet header is kept for the caller to address.
    """
    l3 = flow.l3off
    inner = frame[l3:l3 + flow.ip_len]
    frag = IP_DF if dont_fragment(frame, l3) else 0
    outer = bytearray(_OUTER.pack(0x45, frame[l3 + 1], 20 + flow.ip_len, ip_id & 0xFFFF, frag,
                                  frame[l3 + 8], IPPROTO_IPIP, 0, src, dst))
    _H.pack_into(outer, 10, checksum(outer))
    out = bytearray(frame[:l3])
    out += outer
    out += inner
    return out


def decapsulate_ipip(packet: Buffer) -> bytes | None:
    """The inner IPv4 packet of an IP-in-IP packet (starting at its outer IP header), or None."""
    if len(packet) < 40 or packet[0] >> 4 != 4 or packet[9] != IPPROTO_IPIP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = _H.unpack_from(packet, 2)[0]
    if ihl < 20 or total > len(packet) or total < ihl + 20 or packet[ihl] >> 4 != 4:
        return None
    inner = bytes(packet[ihl:total])
    if _H.unpack_from(inner, 2)[0] != len(inner):
        return None
    return inner
