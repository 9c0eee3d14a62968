"""ICMPv6 errors: those the director sends, when it may, and the packet a relayed one quotes.

An error the director sends is built as the kernel's icmp6_send (net/ipv6/icmp.c) builds it: to
the invoking packet's source, from its destination (the VIP: a local address, ipv6_chk_addr),
the 32-bit word after type, code and checksum carrying ``value`` (the MTU of Packet Too Big),
then as much of the invoking packet as keeps the error within IPV6_MIN_MTU, 1280 bytes (RFC 4443
§2.4 (c)), the checksum over the pseudo-header. Its hop limit is ip6_sk_dst_hoplimit's for the
ICMPv6 socket, whose own hop limit is unset (-1): the route's, i.e. net.ipv6.conf.*.hop_limit,
64 by default (RFC 4443 leaves it to the node). Traffic class and flow label are 0 (the kernel
may hash a flow label: net.ipv6.auto_flowlabels).

``may_answer`` keeps IPVS's and icmp6_send's rules on when an error may be sent at all; an error
about a tracked connection (ip_vs_in_icmp_v6, ip_vs_out_icmp_v6) is found by ``quoted6``.
"""

from __future__ import annotations

import struct

from pylvs.core.icmp import Quoted
from pylvs.core.ipv6 import (
    ETH_P_IPV6,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV6_HLEN,
    Flow6,
    pseudo_sum6,
    walk,
)
from pylvs.core.packet import Buffer, checksum

DEST_UNREACH, PACKET_TOO_BIG, TIME_EXCEEDED, PARAM_PROBLEM = 1, 2, 3, 4
NO_ROUTE, ADM_PROHIBITED, ADDR_UNREACH, PORT_UNREACH = 0, 1, 3, 4
HOPLIMIT, FRAG_REASSEMBLY = 0, 1
INFO_MASK = 0x80
MIN_MTU = 1280
ERROR_HOP_LIMIT = 64
MAX_QUOTE = MIN_MTU - IPV6_HLEN - 8
_HEAD = struct.Struct("!BBHI")
_IP6 = struct.Struct("!IHBB")
_ADDRS = struct.Struct("!QQQQ")


def error_frame6(frame: Buffer, flow: Flow6, icmp_type: int, code: int, src_mac: bytes,
                 value: int = 0) -> bytearray:
    """An Ethernet frame carrying the ICMPv6 error about ``frame`` back to its sender's MAC."""
    l3 = flow.l3off
    quote = frame[l3:l3 + min(flow.ip_len, MAX_QUOTE)]
    icmp = bytearray(_HEAD.pack(icmp_type, code, 0, value & 0xFFFFFFFF))
    icmp += quote
    header = bytearray(_IP6.pack(0x60000000, len(icmp), IPPROTO_ICMPV6, ERROR_HOP_LIMIT))
    header += frame[l3 + 24:l3 + 40]  # from the address the packet was sent to (the VIP)
    header += frame[l3 + 8:l3 + 24]
    struct.pack_into("!H", icmp, 2,
                     checksum(icmp, pseudo_sum6(header, 0, len(icmp), IPPROTO_ICMPV6)))
    out = bytearray(frame[6:12])
    out += src_mac
    out += ETH_P_IPV6.to_bytes(2, "big")
    out += header
    out += icmp
    return out


def _multicast(addr: int) -> bool:
    return addr >> 120 == 0xFF


def may_answer(flow: Flow6, icmp_type: int = DEST_UNREACH) -> bool:
    """Whether the director may send an ICMPv6 error of ``icmp_type`` about this packet.

    Not for a non-first fragment (ip_vs_xmit.c ensure_mtu_is_adequate: "only send ICMP too big
    on first fragment", ``!ipvsh->fragoffs``; ip_vs_core.c ip_vs_leave reads the ports, which
    such a fragment has not); not about an ICMPv6 error (icmp6_send's is_ineligible: type
    without ICMPV6_INFOMSG_MASK; RFC 4443 §2.4 (e.1)); not to an unspecified or multicast source
    (icmp6_send's "Source addr check"); and to a multicast destination only Packet Too Big
    (icmp6_send's "Dest addr check", RFC 4443 §2.4 (e.3)).
    """
    if flow.frag_off:
        return False
    if flow.proto == IPPROTO_ICMPV6 and not flow.icmp_type & INFO_MASK:
        return False
    if flow.saddr == 0 or _multicast(flow.saddr):
        return False
    return icmp_type == PACKET_TOO_BIG or not _multicast(flow.daddr)


def quoted6(frame: Buffer, flow: Flow6) -> Quoted | None:
    """The TCP/UDP packet an ICMPv6 error (type < 128) quotes, as ip_vs_in_icmp_v6 reads it, or
    None: informational messages are not errors (ICMPV6_INFOMSG_MASK), an error behind a
    fragment header is dropped (errors are never fragmented), the quoted header is walked by
    ipv6_find_hdr within what was quoted (ip_vs_fill_iph_skb_icmp), a quoted non-first fragment
    is not handled ("Cannot handle fragmented embedded protocol"), and the ports must be there.
    """
    if flow.proto != IPPROTO_ICMPV6 or flow.icmp_type < 0 or flow.icmp_type & INFO_MASK:
        return None
    if flow.fragment:
        return None
    l3, end = flow.l4off + 8, flow.end
    if l3 + IPV6_HLEN > end or frame[l3] >> 4 != 6:
        return None
    nexthdr = frame[l3 + 6]
    walked = walk(frame, l3 + IPV6_HLEN, nexthdr, end)
    if walked is None:
        return None
    proto, l4, _fragment, frag_off, _more, _ident = walked
    if proto not in (IPPROTO_TCP, IPPROTO_UDP) or frag_off or l4 + 4 > end:
        return None
    s_hi, s_lo, d_hi, d_lo = _ADDRS.unpack_from(frame, l3 + 8)
    sport, dport = struct.unpack_from("!HH", frame, l4)
    return Quoted(proto, (s_hi << 64) | s_lo, (d_hi << 64) | d_lo, sport, dport, l3, l4)
