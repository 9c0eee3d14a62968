"""TUN with IPv6 (issue 22), as IPVS's ip_vs_tunnel_xmit_v6 and ip_vs_tunnel_xmit (both in
net/netfilter/ipvs/ip_vs_xmit.c): the encapsulation is picked by the real server's family, and
the MTU rules of every method and family (ensure_mtu_is_adequate).

- an IPv6 real server gets an outer IPv6 header (ip6_tnl's): next header 41 over an IPv6 packet
  (ip6ip6), 4 over an IPv4 one (4in6); traffic class from the inner, flow label 0, payload
  length the inner packet's, hop limit the inner's (already decremented);
- an IPv4 real server of an IPv6 service gets an outer IPv4 header of protocol 41 (6in4, sit's):
  TOS and TTL from the inner, DF clear (ip_vs_prepare_tunneled_skb sets ``*df = 0`` for an IPv6
  inner packet), the caller's IP ID (ip_select_ident: DF clear, so a hashed one), its checksum.

The outer traffic class / TOS is INET_ECN_encapsulate(inner, inner): the inner's, but CE
(ECN 3) becomes ECT(0) (ECN 2). The inner TTL or hop limit is decremented first (decrement_ttl
in __ip_vs_get_out_rt*), an IPv4 inner header's checksum then recomputed (ip_send_check in
ip_vs_prepare_tunneled_skb). The outer source is the director's address on the route to the
real server. IPv4 in IPv4 stays pylvs.core.packet.encapsulate_ipip. GUE and GRE are not here.
No sockets here.
"""

from __future__ import annotations

import struct
from enum import StrEnum

from pylvs.core.ipv6 import (
    ETH_P_IPV6,
    IPPROTO_ICMPV6,
    IPPROTO_IPIP,
    IPPROTO_IPV6,
    Flow6,
    decrement_hop_limit,
)
from pylvs.core.packet import (
    ETH_P_IP,
    IPPROTO_ICMP,
    Buffer,
    Flow,
    checksum,
    decrement_ttl,
    dont_fragment,
    ip_header_checksum,
)

OUTER_NONE, OUTER_IPV4, OUTER_IPV6 = 0, 4, 6
OVERHEAD = {OUTER_NONE: 0, OUTER_IPV4: 20, OUTER_IPV6: 40}
"""The bytes each encapsulation adds (sizeof(struct iphdr), sizeof(struct ipv6hdr))."""
TUNNEL_MIN_MTU = {OUTER_IPV4: 68, OUTER_IPV6: 1280}
"""Below this, a tunnel's MTU (the route's minus the overhead) drops every packet: the checks
``mtu < 68`` of __ip_vs_get_out_rt and ``mtu < IPV6_MIN_MTU`` of __ip_vs_get_out_rt_v6, by the
ROUTE's family (the outer header's), whatever the inner packet's."""
_IP6 = struct.Struct("!IHBB")
_IP4 = struct.Struct("!BBHHHBBHII")
_H = struct.Struct("!H")
_ICMP_RELATED = frozenset((3, 4, 11))  # what ip_vs_in_icmp relays: unreachable, quench, time


class Verdict(StrEnum):
    """What IPVS does with a packet of a given size on a route of a given MTU."""

    FITS = "fits"
    FRAGMENT = "fragment"
    """Sent, but larger than the MTU: the kernel fragments it (skb->ignore_df); pylvs does not."""
    TOO_BIG = "too_big"
    """Dropped, and ICMPv6 Packet Too Big (type 2) sent with the MTU."""
    FRAG_NEEDED = "frag_needed"
    """Dropped, and ICMP Destination Unreachable, Fragmentation Needed, sent with the MTU."""
    DROP = "drop"
    """Dropped without a word."""


def mtu_check(family: int, size: int, mtu: int, outer: int = OUTER_NONE, *, df: bool = False,
              first_fragment: bool = True, related_icmp: bool = False,
              pmtu_disc: bool = True, overhead: int | None = None) -> tuple[Verdict, int]:
    """The verdict for an inner packet of ``family`` (4 or 6) and ``size`` bytes (its IP
    header on) on a route of ``mtu`` with ``outer`` encapsulation, and the MTU it is measured
    against (the route's minus the overhead, as an ICMP error carries it).

    As __ip_vs_get_out_rt(_v6)'s tunnel check (``TUNNEL_MIN_MTU``) then ensure_mtu_is_adequate:
    IPv6 larger than the MTU is dropped, Packet Too Big sent only "on first fragment" and not
    about a relayed ICMP error (``!ipvsh->fragoffs && !ip_vs_iph_icmp(ipvsh)``; icmp6_send's
    own rules are icmpv6.may_answer's); IPv4 into a tunnel with pmtu_disc off is sent whatever
    its size; IPv4 with DF, larger, not a relayed ICMP error: Fragmentation Needed; other IPv4
    is sent, fragmented. The hop limit / TTL check comes before (decrement_ttl), not here.
    ``overhead``: the bytes the encapsulation adds, where they are more than the outer
    header's (GUE's UDP and GUE header, GRE's: pylvs.core.encap.overhead).
    """
    usable = mtu - (OVERHEAD[outer] if overhead is None else overhead)
    if outer and usable < TUNNEL_MIN_MTU[outer]:
        return Verdict.DROP, usable
    if size <= usable:
        return Verdict.FITS, usable
    if family == 6:
        if first_fragment and not related_icmp:
            return Verdict.TOO_BIG, usable
        return Verdict.DROP, usable
    if df and not related_icmp and (pmtu_disc or not outer):
        return Verdict.FRAG_NEEDED, usable
    return Verdict.FRAGMENT, usable


def mtu_verdict(frame: Buffer, flow: Flow | Flow6, mtu: int, outer: int = OUTER_NONE,
                pmtu_disc: bool = True, overhead: int | None = None) -> tuple[Verdict, int]:
    """``mtu_check`` for the packet ``flow`` describes (a relayed ICMP error is one IPVS's
    ip_vs_in_icmp(_v6) handles: ICMPv6 errors, ICMP unreachable, source quench, time exceeded)."""
    if isinstance(flow, Flow6):
        related = flow.proto == IPPROTO_ICMPV6 and 0 <= flow.icmp_type < 128
        return mtu_check(6, flow.ip_len, mtu, outer, first_fragment=flow.first_fragment,
                         related_icmp=related, pmtu_disc=pmtu_disc, overhead=overhead)
    related = flow.proto == IPPROTO_ICMP and flow.icmp_type in _ICMP_RELATED
    return mtu_check(4, flow.ip_len, mtu, outer, df=dont_fragment(frame, flow.l3off),
                     related_icmp=related, pmtu_disc=pmtu_disc, overhead=overhead)


def ecn_encapsulate(dsfield: int) -> int:
    """INET_ECN_encapsulate(inner, inner): the outer TOS / traffic class, CE as ECT(0)."""
    return dsfield & 0xFC | (2 if dsfield & 3 == 3 else dsfield & 3)


def _inner(frame: Buffer, flow: Flow | Flow6) -> tuple[int, int, int, int]:
    """The inner packet's offset, length, DS field and TTL / hop limit."""
    l3 = flow.l3off
    if isinstance(flow, Flow6):
        return l3, flow.ip_len, (frame[l3] & 0x0F) << 4 | frame[l3 + 1] >> 4, frame[l3 + 7]
    return l3, flow.ip_len, frame[l3 + 1], frame[l3 + 8]


def _ethernet(frame: Buffer, l3: int, ethertype: int) -> bytearray:
    out = bytearray(frame[:l3])
    if l3 >= 2:
        _H.pack_into(out, l3 - 2, ethertype)
    return out


def encapsulate6(frame: Buffer, flow: Flow | Flow6, src: int,
                 dst: int) -> bytearray:
    """The packet inside an outer IPv6 header from ``src`` to ``dst`` (128-bit ints): ip6ip6
    (next header 41) for an IPv6 packet, 4in6 (4) for an IPv4 one; as ip_vs_tunnel_xmit_v6.
    The link header before it is kept, its EtherType made IPv6's, for the caller to address."""
    l3, length, dsfield, hop_limit = _inner(frame, flow)
    nexthdr = IPPROTO_IPV6 if isinstance(flow, Flow6) else IPPROTO_IPIP
    out = _ethernet(frame, l3, ETH_P_IPV6)
    out += _IP6.pack(0x60000000 | ecn_encapsulate(dsfield) << 20, length, nexthdr, hop_limit)
    out += src.to_bytes(16, "big")
    out += dst.to_bytes(16, "big")
    out += frame[l3:l3 + length]
    return out


def encapsulate_6in4(frame: Buffer, flow: Flow6, src: int, dst: int,
                     ip_id: int) -> bytearray:
    """The IPv6 packet inside an outer IPv4 header (protocol 41) from ``src`` to ``dst``
    (32-bit ints), as ip_vs_tunnel_xmit for an IPv6 connection: DF clear, ``ip_id``."""
    l3, length, dsfield, hop_limit = _inner(frame, flow)
    outer = bytearray(_IP4.pack(0x45, ecn_encapsulate(dsfield), 20 + length, ip_id & 0xFFFF, 0,
                                hop_limit, IPPROTO_IPV6, 0, src, dst))
    _H.pack_into(outer, 10, checksum(outer))
    out = _ethernet(frame, l3, ETH_P_IP)
    out += outer
    out += frame[l3:l3 + length]
    return out


def tunnel_xmit(frame: bytearray, flow: Flow | Flow6, server_family: int, src: int, dst: int,
                macs: bytes, ip_id: int = 0) -> bytearray:
    """The whole of TUN toward a real server of ``server_family`` (4 or 6) for an IPv6
    packet, or an IPv4 one toward an IPv6 server: the inner TTL / hop limit − 1 (the caller
    checked it is > 1), the encapsulation, the hop's 12 MAC bytes (dst then src)."""
    if isinstance(flow, Flow6):
        decrement_hop_limit(frame, flow)
    elif server_family == 6:
        decrement_ttl(frame, flow.l3off)
        _H.pack_into(frame, flow.l3off + 10, ip_header_checksum(frame, flow.l3off))
    else:
        raise ValueError("IPv4 in IPv4 is packet.encapsulate_ipip's")
    if server_family == 6:
        out = encapsulate6(frame, flow, src, dst)
    else:
        out = encapsulate_6in4(frame, flow, src, dst, ip_id)
    out[0:12] = macs
    return out
