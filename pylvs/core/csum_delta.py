"""RFC 1624's incremental checksum updates, worked out once per connection, in network order.

A rewrite that changes the same words of every frame (NAT's address and port, the TTL) changes
the internet checksums by the same one's-complement delta, ``~m + m'`` summed over the changed
16-bit words: ``HC' = ~(~HC + delta)``. A tunnel's outer header likewise has a constant part
whose sum is computed once. Both the Python short paths (forwarders' ``established``) and the XDP
fast path's map entries take their values from here. The program reads words little-endian; the
one's-complement sum of byte-swapped words is the byte-swapped sum (swapping is multiplying by
2^8 modulo 0xFFFF), so its value is ``swap`` of the one computed here.
"""

from __future__ import annotations

import struct

from pylvs.core.packet import IPPROTO_IPIP

TTL = 0xFEFF
"""TTL − 1 as a delta of its 16-bit word (TTL high, protocol low): ~0x0100."""


def fold(value: int) -> int:
    """A sum folded into 16 bits by end-around carries (0 only for a sum of 0)."""
    while value >> 16:
        value = (value & 0xFFFF) + (value >> 16)
    return value


def swap(value: int) -> int:
    """A folded 16-bit sum or delta as a little-endian reader of the same words has it."""
    return ((value & 0xFF) << 8) | (value >> 8)


def delta(old: bytes, new: bytes) -> int:
    """RFC 1624's ~m + m' over the 16-bit words (network order) ``old`` becomes ``new``,
    folded."""
    words = len(old) // 2
    return fold(sum((~o & 0xFFFF) + n for o, n in zip(struct.unpack(f"!{words}H", old),
                                                      struct.unpack(f"!{words}H", new),
                                                      strict=True)))


def endpoint(old: bytes, new: bytes) -> tuple[int, int]:
    """An address and port (4 + 2 bytes) rewritten, and the TTL decremented: the IP header
    checksum's delta (the address's and the TTL's) and the TCP or UDP checksum's (the address
    is in the pseudo-header, the port in the header)."""
    address = delta(old[:4], new[:4])
    return fold(address + TTL), fold(address + delta(old[4:6], new[4:6]))


def ipip_constant(addresses: bytes) -> int:
    """The folded sum of an outer IPv4 header's words that are the same in every frame of a
    tunnel (version and header length, protocol 4, source and destination: the 8 address bytes
    given); TOS, length, ID, DF and TTL are added per frame."""
    return fold(0x4500 + IPPROTO_IPIP + sum(struct.unpack("!4H", addresses)))


def endpoint6(old: bytes, new: bytes) -> int:
    """An IPv6 address and port (16 + 2 bytes) rewritten: the TCP or UDP checksum's delta (the
    address is in the pseudo-header, the port in the header). IPv6 has no header checksum, and
    its hop limit is in no checksum."""
    return delta(old, new)


def ipv4_outer_constant(addresses: bytes, proto: int) -> int:
    """``ipip_constant`` for an outer IPv4 header of protocol ``proto``: 41 for 6in4 (an IPv6
    packet inside, as ip_vs_tunnel_xmit sends an IPv6 connection to an IPv4 real server)."""
    return fold(0x4500 + proto + sum(struct.unpack("!4H", addresses)))


def gue_udp_constant(addresses: bytes, sport: int, dport: int, inner_proto: int) -> int:
    """The folded sum of what GUE's UDP checksum covers that is the same in every frame of a
    connection: the outer addresses (8 or 32 bytes given) and protocol 17 of the pseudo-header,
    the two ports, and the GUE header's words (proto/ctype ``inner_proto``, flags 0). The UDP
    length (counted twice: pseudo-header and header) and the inner packet are added per
    frame."""
    words = len(addresses) // 2
    return fold(sum(struct.unpack(f"!{words}H", addresses)) + 17 + sport + dport + inner_proto)
