"""ICMP errors: those the director sends, and those it relays for a connection.

An error the director sends back to a client is built as the kernel's icmp_send does: it quotes
the offending IP packet (header and as much data as keeps the whole error within 576 bytes,
RFC 1812 §4.3.2.3) and comes from the packet's own destination, the VIP, because the VIP is a
local address of the director. An error about a tracked connection (ip_vs_in_icmp,
ip_vs_out_icmp) is found by the packet it quotes and, in NAT, rewritten so that each side sees
only the addresses it knows (the NAT forwarder's part). An error a router sends about a packet the
director tunnelled to a TUN real server quotes the tunnel packet (``tunnelled``): IPVS answers
the client inside it (ip_vs_in_icmp's IPIP, GUE and GRE case: pylvs.core.director).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pylvs.core.packet import (
    ETH_P_IP,
    IP_DF,
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
                next_hop_mtu: int = 0, *, info: int | None = None) -> bytearray:
    """An Ethernet frame carrying the ICMP error about ``frame`` back to its sender's MAC.
    ``info``: the 4 bytes after the checksum as given (icmp_send's ``info``, a relayed error's
    own); by default the next-hop MTU of a "fragmentation needed", else 0."""
    quoted = bytes(frame[flow.l3off:flow.l3off + min(flow.ip_len, MAX_ERROR - 28)])
    rest = next_hop_mtu if icmp_type == DEST_UNREACH and code == FRAG_NEEDED else 0
    if info is not None:
        rest = info & 0xFFFFFFFF
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
    return _quoted_at(frame, flow.l4off + 8, flow.l3off + flow.ip_len)


def _quoted_at(frame: Buffer, l3: int, end: int) -> Quoted | None:
    """The IPv4 TCP/UDP packet quoted from ``l3`` to ``end``, its ports included, or None."""
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


IPPROTO_IPIP, IPPROTO_GRE = 4, 47
GRE_CSUM = 0x8000
IP_OFFSET = 0x1FFF
TUNNEL_OUTER = 20
"""sizeof(struct iphdr): the outer header of every IPv4 tunnel IPVS sends."""
IPV4_MIN_MTU = 68
IP_RT_MIN_PMTU = 552
"""net.ipv4.route.min_pmtu's default (512 + 20 + 20): a lower report counts as this."""


@dataclass(slots=True)
class Tunnelled:
    """What a related ICMP error quotes of a tunnel packet: the outer header's source and
    destination, the tunnel (``ipip``, ``gue``, ``gre``), the UDP destination port (GUE's;
    else 0), the tunnel header's length (the kernel's ``ulen``: 0 for IP-in-IP), the client's
    packet inside (``inner``), whether that packet had DF, and where the quote ends."""

    tun_type: str
    outer_saddr: int
    outer_daddr: int
    port: int
    header_length: int
    inner: Quoted
    dont_fragment: bool
    end: int


def tunnelled(frame: Buffer, flow: Flow) -> Tunnelled | None:
    """The packet inside the tunnel packet a related ICMP error (unreachable, quench, time
    exceeded) quotes, as ip_vs_in_icmp looks past it: an IPv4 outer header, not a later
    fragment, of protocol 4 (IP-in-IP), 17 (UDP, then a GUE header of version 0, not a control
    message, proto/ctype 4: ipvs_udp_decap, whose length is 8 + 4 + Hlen * 4) or 47 (GRE of
    version 0 with no flag but C, protocol 0x0800: ipvs_gre_decap, 4 bytes or 8 with C:
    gre_calc_hlen); then an IPv4 TCP or UDP packet with its ports. None for anything else
    (IPv6 inside, 6in4, a GUE or GRE header cut off): as in the kernel, not a tunnel's."""
    if flow.proto != IPPROTO_ICMP or flow.icmp_type not in RELATED:
        return None
    outer, end = flow.l4off + 8, flow.l3off + flow.ip_len
    if outer + 20 > end:
        return None
    vihl, _len, _id, frag, _ttl, proto, saddr, daddr = _QUOTED.unpack_from(frame, outer)
    after = outer + (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or after < outer + 20 or frag & IP_OFFSET:
        return None
    port = 0
    if proto == IPPROTO_IPIP:
        tun_type, length = "ipip", 0
    elif proto == IPPROTO_UDP:
        if after + 12 > end or frame[after + 8] & 0xE0 or frame[after + 9] != IPPROTO_IPIP:
            return None
        tun_type, port = "gue", (frame[after + 2] << 8) | frame[after + 3]
        length = 12 + (frame[after + 8] & 0x1F) * 4
    elif proto == IPPROTO_GRE:
        if after + 4 > end:
            return None
        flags, ethertype = struct.unpack_from("!HH", frame, after)
        if flags & ~GRE_CSUM or ethertype != ETH_P_IP:
            return None
        tun_type, length = "gre", 8 if flags & GRE_CSUM else 4
    else:
        return None
    inner = _quoted_at(frame, after + length, end)
    if inner is None:
        return None
    df = bool(((frame[inner.l3off + 6] << 8) | frame[inner.l3off + 7]) & IP_DF)
    return Tunnelled(tun_type, saddr, daddr, port, length, inner, df, end)


def tunnel_mtu(reported: int, route_mtu: int, header_length: int) -> int:
    """The MTU ip_vs_in_icmp tells a client whose tunnelled packet a router past the director
    could not take with ``reported`` (its next-hop MTU): the route's PMTU after the report
    (ipv4_update_pmtu: lowered to the report, never below min_pmtu, never raised, then
    "prefer the resulting PMTU"), less the outer header and the tunnel header when it is above
    68 and them. IPVS takes off the outer 20 alone: for GUE/GRE the client's next packet is
    then too big by the tunnel header, and the director's own ensure_mtu_is_adequate, on the
    PMTU it just lowered, tells it the right MTU. pylvs lowers no route (the hop's MTU is the
    shell's), so it tells that MTU at once: IP-in-IP's is IPVS's, GUE's and GRE's the one the
    client ends with there."""
    mtu = min(route_mtu, max(reported, IP_RT_MIN_PMTU))
    overhead = TUNNEL_OUTER + header_length
    return mtu - overhead if mtu > IPV4_MIN_MTU + overhead else mtu
