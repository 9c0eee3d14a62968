"""IPv6 frames at fixed offsets: the header, its extension headers, TCP/UDP/ICMPv6 on top; the
upper-layer checksums over the IPv6 pseudo-header; the hop limit.

``parse6`` walks the extension headers as the kernel's ipv6_find_hdr (net/ipv6/exthdrs_core.c)
does when IPVS fills its ip_vs_iphdr (include/net/ip_vs.h, ip_vs_fill_iph_skb_off, target -1):
hop-by-hop, routing and destination options are skipped by ``(hdrlen + 1) * 8``, AH by its own
unit ``(hdrlen + 2) * 4``, a first fragment's header by 8; a non-first fragment stops the walk
(its upper-layer protocol is the fragment header's next header, and it carries no L4 header);
No Next Header (59) is an upper layer of its own. It never raises: anything malformed or
truncated (a payload length past the frame, an extension header past the payload, a first
fragment without a whole TCP/UDP/ICMPv6 header, a non-first fragment whose next header is an
extension header: ipv6_find_hdr's -ENOENT) gives None. Jumbograms (payload length 0 and the
hop-by-hop Jumbo option) are not parsed: their hop-by-hop header runs past the payload.

Checksums are RFC 8200 §8.1's: over the source and destination, the upper-layer length (32 bits:
the payload after the extension headers, as IPVS's csum_ipv6_magic(..., skb->len - offset, ...))
and the upper-layer protocol. In IPv6 a UDP checksum of 0 is invalid, and a computed 0 is sent as
0xFFFF (CSUM_MANGLED_0). A fragment's checksum covers the reassembled packet and cannot be
computed from one fragment; an incremental update of a first fragment's is still exact. IPv6 has
no header checksum, so the hop limit is only a byte. No sockets here.
"""

from __future__ import annotations

import struct

from pylvs.core.csum_delta import delta, fold
from pylvs.core.packet import ETH_HLEN, Buffer, checksum

ETH_P_IPV6 = 0x86DD
IPV6_HLEN = 40
NEXTHDR_HOP, NEXTHDR_ROUTING, NEXTHDR_FRAGMENT = 0, 43, 44
NEXTHDR_AUTH, NEXTHDR_NONE, NEXTHDR_DEST = 51, 59, 60
IPPROTO_IPIP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_IPV6, IPPROTO_ICMPV6 = 4, 6, 17, 41, 58

_EXT = frozenset((NEXTHDR_HOP, NEXTHDR_ROUTING, NEXTHDR_FRAGMENT, NEXTHDR_AUTH, NEXTHDR_DEST))
_L4_MIN = {IPPROTO_TCP: 20, IPPROTO_UDP: 8, IPPROTO_ICMPV6: 8}
_CSUM_OFFSET = {IPPROTO_TCP: 16, IPPROTO_UDP: 6, IPPROTO_ICMPV6: 2}
_HEAD = struct.Struct("!IHBB")
_ADDRS = struct.Struct("!QQQQ")
_WORDS = struct.Struct("!16H")
_FRAG = struct.Struct("!HI")
_PORTS = struct.Struct("!HH")
_H = struct.Struct("!H")


class Flow6:
    """What one IPv6 frame says about its connection (addresses as 128-bit ints)."""

    af = 10  # AF_INET6: the schedulers' hash keys fold addresses by family (Flow: 2)
    __slots__ = ("proto", "saddr", "daddr", "sport", "dport", "l3off", "l4off", "tcp_flags",
                 "hop_limit", "payload_len", "icmp_type", "icmp_code", "fragment", "frag_off",
                 "more_fragments", "frag_id")

    def __init__(self, proto: int, saddr: int, daddr: int, sport: int, dport: int, l3off: int,
                 l4off: int, tcp_flags: int, hop_limit: int, payload_len: int,
                 icmp_type: int = -1, icmp_code: int = -1, fragment: bool = False,
                 frag_off: int = 0, more_fragments: bool = False, frag_id: int = 0) -> None:
        self.proto, self.saddr, self.daddr = proto, saddr, daddr
        self.sport, self.dport = sport, dport
        self.l3off, self.l4off = l3off, l4off
        self.tcp_flags, self.hop_limit, self.payload_len = tcp_flags, hop_limit, payload_len
        self.icmp_type, self.icmp_code = icmp_type, icmp_code
        self.fragment, self.frag_off = fragment, frag_off
        self.more_fragments, self.frag_id = more_fragments, frag_id

    @property
    def ip_len(self) -> int:
        """The whole IPv6 packet's length: header, extension headers and payload."""
        return IPV6_HLEN + self.payload_len

    @property
    def ttl(self) -> int:
        """The hop limit, by IPv4's name: what the director checks before it forwards."""
        return self.hop_limit

    @property
    def end(self) -> int:
        """The frame offset just past the packet (Ethernet padding, if any, is beyond)."""
        return self.l3off + IPV6_HLEN + self.payload_len

    @property
    def first_fragment(self) -> bool:
        """Not a fragment, or the fragment at offset 0: the one with the L4 header."""
        return self.frag_off == 0

    def __repr__(self) -> str:
        frag = f", frag={self.frag_off}{'+' if self.more_fragments else ''}" if self.fragment \
            else ""
        return (f"Flow6(proto={self.proto}, [{self.saddr:#x}]:{self.sport} -> "
                f"[{self.daddr:#x}]:{self.dport}, flags={self.tcp_flags:#x}, "
                f"hlim={self.hop_limit}{frag})")


def plain_flow6(frame: Buffer, proto: int, flags: int, payload_len: int) -> Flow6:
    """The Flow6 of a frame the caller found to have TCP or UDP right after a 40-byte header."""
    s_hi, s_lo, d_hi, d_lo = _ADDRS.unpack_from(frame, ETH_HLEN + 8)
    sport, dport = _PORTS.unpack_from(frame, ETH_HLEN + IPV6_HLEN)
    return Flow6(proto, (s_hi << 64) | s_lo, (d_hi << 64) | d_lo, sport, dport, ETH_HLEN,
                 ETH_HLEN + IPV6_HLEN, flags, frame[ETH_HLEN + 7], payload_len)


def walk(frame: Buffer, start: int, nexthdr: int,
         end: int) -> tuple[int, int, bool, int, bool, int] | None:
    """ipv6_find_hdr(target -1) from ``start`` (just past an IPv6 header whose next header is
    ``nexthdr``), every extension header within ``end``: (upper-layer protocol, its offset,
    fragment header seen, fragment offset in bytes, more fragments, identification) or None."""
    fragment, frag_off, more, ident = False, 0, False, 0
    while nexthdr in _EXT:
        if start + 8 > end:  # every extension header is at least 8 bytes
            return None
        following = frame[start]
        if nexthdr == NEXTHDR_FRAGMENT:
            word, ident = _FRAG.unpack_from(frame, start + 2)
            fragment, frag_off, more = True, word & 0xFFF8, bool(word & 1)
            if frag_off:
                if following in _EXT:
                    return None
                return following, start + 8, True, frag_off, more, ident
            size = 8
        elif nexthdr == NEXTHDR_AUTH:
            size = (frame[start + 1] + 2) << 2
        else:
            size = (frame[start + 1] + 1) << 3
        if start + size > end:
            return None
        nexthdr, start = following, start + size
    return nexthdr, start, fragment, frag_off, more, ident


def _is_ipv6(frame: Buffer, offset: int) -> bool:
    if offset < 0 or offset + IPV6_HLEN > len(frame) or frame[offset] >> 4 != 6:
        return False
    return offset < 2 or (frame[offset - 2] == 0x86 and frame[offset - 1] == 0xDD)


def parse6(frame: Buffer, offset: int = ETH_HLEN) -> Flow6 | None:
    """The Flow6 of the IPv6 packet at ``offset``, or None (count and drop).

    With ``offset`` >= 2 the two bytes before it must be the EtherType 0x86DD (Ethernet's, or
    802.1Q's inner one); ``offset`` 0 is a bare IPv6 packet.
    """
    if not _is_ipv6(frame, offset):
        return None
    _vtcfl, plen, nexthdr, hop_limit = _HEAD.unpack_from(frame, offset)
    end = offset + IPV6_HLEN + plen
    if end > len(frame):
        return None
    walked = walk(frame, offset + IPV6_HLEN, nexthdr, end)
    if walked is None:
        return None
    proto, l4, fragment, frag_off, more, ident = walked
    s_hi, s_lo, d_hi, d_lo = _ADDRS.unpack_from(frame, offset + 8)
    flow = Flow6(proto, (s_hi << 64) | s_lo, (d_hi << 64) | d_lo, 0, 0, offset, l4, 0,
                 hop_limit, plen, -1, -1, fragment, frag_off, more, ident)
    if frag_off:
        return flow
    need = _L4_MIN.get(proto)
    if need is None:
        return flow
    if l4 + need > end:
        return None
    if proto == IPPROTO_ICMPV6:
        flow.icmp_type, flow.icmp_code = frame[l4], frame[l4 + 1]
        return flow
    flow.sport, flow.dport = _PORTS.unpack_from(frame, l4)
    if proto == IPPROTO_TCP:
        doff = frame[l4 + 12] >> 4
        if doff < 5 or l4 + doff * 4 > end:
            return None
        flow.tcp_flags = frame[l4 + 13]
    return flow


def pseudo_sum6(frame: Buffer, l3off: int, length: int, proto: int) -> int:
    """The unfolded sum of RFC 8200 §8.1's pseudo-header of the packet at ``l3off``."""
    return sum(_WORDS.unpack_from(frame, l3off + 8)) + (length >> 16) + (length & 0xFFFF) + proto


def _csum_offset(flow: Flow6) -> int:
    offset = _CSUM_OFFSET.get(flow.proto)
    if offset is None or flow.fragment:
        raise ValueError(f"no computable checksum: proto {flow.proto}, fragment {flow.fragment}")
    return offset


def l4_checksum6(frame: Buffer, flow: Flow6) -> int:
    """The TCP/UDP/ICMPv6 checksum from scratch (the field as zero) of an unfragmented packet
    (ValueError for a fragment or another protocol); UDP's computed 0 is 0xFFFF."""
    offset = _csum_offset(flow)
    l4, end = flow.l4off, flow.end
    segment = bytearray(frame[l4:end])
    segment[offset:offset + 2] = b"\x00\x00"
    value = checksum(segment, pseudo_sum6(frame, flow.l3off, end - l4, flow.proto))
    if flow.proto == IPPROTO_UDP and value == 0:
        return 0xFFFF
    return value


def l4_checksum_ok6(frame: Buffer, flow: Flow6) -> bool:
    """The upper-layer checksum verifies (a UDP checksum of 0 never does in IPv6)."""
    offset = _csum_offset(flow)
    l4, end = flow.l4off, flow.end
    if flow.proto == IPPROTO_UDP and _H.unpack_from(frame, l4 + offset)[0] == 0:
        return False
    return checksum(frame[l4:end], pseudo_sum6(frame, flow.l3off, end - l4, flow.proto)) == 0


def complete_l4_checksum6(frame: bytearray | memoryview, flow: Flow6) -> bool:
    """Write the full checksum (for frames whose sender's offload left it partial); False, and
    nothing written, for a fragment or a protocol without one."""
    offset = _CSUM_OFFSET.get(flow.proto)
    if offset is None or flow.fragment:
        return False
    _H.pack_into(frame, flow.l4off + offset, l4_checksum6(frame, flow))
    return True


def csum_update128(csum: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3 for a 16-byte field (an IPv6 address) changed from ``old`` to ``new``."""
    change = delta(old.to_bytes(16, "big"), new.to_bytes(16, "big"))
    return ~fold((~csum & 0xFFFF) + change) & 0xFFFF


def csum_update_port(csum: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3 for a 16-bit field (a port)."""
    return ~fold((~csum & 0xFFFF) + (~old & 0xFFFF) + (new & 0xFFFF)) & 0xFFFF


def rewrite_endpoint6(frame: bytearray | memoryview, flow: Flow6, source: bool, addr: int,
                      port: int) -> None:
    """Set the source (or destination) address and, with an L4 header, port; the TCP, UDP or
    ICMPv6 checksum updated incrementally (RFC 1624), as IPVS's tcp/udp_fast_csum_update: the
    address is in the pseudo-header. UDP's result 0 is sent as 0xFFFF (CSUM_MANGLED_0). A
    non-first fragment has no L4 header: only its address changes; ICMPv6 has no port."""
    l3 = flow.l3off
    addr_off = l3 + (8 if source else 24)
    old_addr = flow.saddr if source else flow.daddr
    frame[addr_off:addr_off + 16] = addr.to_bytes(16, "big")
    if source:
        flow.saddr = addr
    else:
        flow.daddr = addr
    offset = _CSUM_OFFSET.get(flow.proto)
    if offset is None or flow.frag_off:
        return
    csum_off = flow.l4off + offset
    csum = csum_update128(_H.unpack_from(frame, csum_off)[0], old_addr, addr)
    if flow.proto != IPPROTO_ICMPV6:
        port_off = flow.l4off + (0 if source else 2)
        csum = csum_update_port(csum, _H.unpack_from(frame, port_off)[0], port)
        _H.pack_into(frame, port_off, port)
        if source:
            flow.sport = port
        else:
            flow.dport = port
    if flow.proto == IPPROTO_UDP and csum == 0:
        csum = 0xFFFF
    _H.pack_into(frame, csum_off, csum)


def decrement_hop_limit(frame: bytearray | memoryview, flow: Flow6) -> int:
    """Hop limit − 1 (no header checksum in IPv6); returns the new one. The caller checks
    ``flow.hop_limit > 1`` first (else Time Exceeded, as ip6_forward)."""
    hop_limit = frame[flow.l3off + 7] - 1
    frame[flow.l3off + 7] = hop_limit
    flow.hop_limit = hop_limit
    return hop_limit


# The rewrites of DR and NAT66 (tunnel6 has TUN's). ``macs`` is the hop's 12 bytes: the next
# hop's MAC, then the director's (forwarding.NextHop.macs).

def dr_xmit6(frame: bytearray, flow: Flow6, macs: bytes) -> bytearray:
    """The whole of DR, as ip_vs_dr_xmit_v6: the MACs and the hop limit − 1 (decrement_ttl in
    __ip_vs_get_out_rt_v6; the caller checked it is > 1); no header checksum to mend."""
    frame[0:12] = macs
    decrement_hop_limit(frame, flow)
    return frame


def _masquerade6(frame: bytearray, flow: Flow6, source: bool, addr: int, port: int,
                 macs: bytes) -> bytearray:
    csum_at = flow.l4off + 6
    zero = (flow.proto == IPPROTO_UDP and not flow.fragment
            and frame[csum_at] == frame[csum_at + 1] == 0)
    rewrite_endpoint6(frame, flow, source, addr, port)
    if zero:  # udp_dnat/snat_handler: no fast update of a zero checksum, a full calculation
        complete_l4_checksum6(frame, flow)
    return dr_xmit6(frame, flow, macs)


def nat_xmit6(frame: bytearray, flow: Flow6, rip: int, rport: int, macs: bytes) -> bytearray:
    """NAT66 toward the real server, as ip_vs_nat_xmit_v6: the destination becomes
    [rip]:rport (tcp/udp_dnat_handler's incremental update over the pseudo-header), then DR's
    MACs and hop limit − 1. A non-first fragment only changes its address."""
    return _masquerade6(frame, flow, False, rip, rport, macs)


def nat_reply6(frame: bytearray, flow: Flow6, vip: int, vport: int, macs: bytes) -> bytearray:
    """NAT66 of a real server's reply, as handle_response (tcp/udp_snat_handler, then the
    source address): the source becomes [vip]:vport; MACs and hop limit − 1 (ip6_forward's)."""
    return _masquerade6(frame, flow, True, vip, vport, macs)
